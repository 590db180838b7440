# %% [markdown]
# # NCC: lung nodule false-positive reduction (LUNA16)
#
# **Task** (paper Sec. 3.2.1, Table 1): a nodule detector proposes candidate locations in chest
# CT; classify each 64x64x32 crop around a candidate as a true nodule (1) or a false positive
# (0). LUNA16 has 888 scans; patients are split 445 / 178 / 265 (train / validation / test);
# the metric is the **AUC** over candidates.
#
# **Model**: the Genesis U-Net's encoder, `depth_7_relu` -> GlobalAveragePooling3D ->
# Dense(1024, relu) -> Dense(1, sigmoid); binary cross-entropy, Adam lr 1e-3, batch 24,
# early-stopping patience 10 (docs/release_reference.md, 'Target tasks'). **Comparison**: Genesis
# initialisation against a scratch baseline (`he_uniform`, the most reliable scratch initialiser in
# the paper, Sec. 4.2).

# %% include: _setup.py

# %% include: _genesis_weights.py

# %% include: _target_task.py

# %% [markdown]
# ## Switching to real data: LUNA16 and the paper's settings
#
# > **Real data.** Set `DATA_DIR` to your LUNA16 folder: `subset0/` ... `subset9/` holding
# > `<seriesuid>.mhd` + `.raw`, and `candidates_V2.csv` as downloaded (754,975 candidates, 1,557
# > nodules; `candidates.csv` is used instead when present) with columns
# > `seriesuid, coordX, coordY, coordZ, class` in world millimetres. The split is by subsets
# > (0-4 train, 5-6 validation, 7-9 test; or pass `split=` with lists of seriesuids), and the
# > paper's settings below replace the demo's: 64x64x32 crops, the full U-Net (32 base filters),
# > the released `Genesis_Chest_CT.h5` (put it in `pretrained_weights/`), batch 24, lr 1e-3,
# > patience 10 (the task's defaults), up to 10,000 epochs with early stopping. All crops would
# > take about 370 GiB, so this notebook keeps every nodule and `NEGATIVE_RATIO` false positives
# > per nodule in memory (10: about 9 GB), test split included. For the paper's test over every
# > candidate, prepare the crops once and train from disk on the command line
# > (`datasets/README.md`, LUNA16):
# > `models-genesis prepare --task ncc --data datasets/luna16 --out datasets/luna16_ncc`, then
# > `models-genesis finetune --task ncc --data datasets/luna16_ncc ...`.

# %%
DATA_DIR = None  # e.g. "datasets/luna16"
NEGATIVE_RATIO = 10  # false positives kept per nodule with real data (None: all of them)
PAPER_SETTINGS = dict(input_shape=(64, 64, 32), n_base_filters=32, epochs=10000)
PAPER_WEIGHTS = "genesis_chest_ct"  # preset: pretrained_weights/Genesis_Chest_CT.h5
TASK = get_target_task("ncc")
print(TASK)

# %% [markdown]
# ## 1. Data: candidates in the LUNA16 format
#
# The chest phantoms are written like LUNA16, and their `candidates.csv` lists true nodules
# (class 1) and vessel bifurcations that a detector would confuse with nodules (class 0).
# `load_target_data("ncc", ...)` converts world millimetres to voxels, cuts a crop around each
# candidate, scales [-1000, 1000] HU to [0, 1] and splits by subsets, so no patient is in two
# splits.

# %%
from models_genesis.data.target_tasks import load_target_data

if DATA_DIR is not None:
    data_dir, settings, weights = DATA_DIR, PAPER_SETTINGS, PAPER_WEIGHTS
else:
    pretraining = demo_pretraining()
    data_dir, weights = CHEST_DIR, pretraining["paths"]["keras2_weights"]
    settings = demo_settings(pretraining)
from models_genesis.data.target_tasks.ncc import find_candidates_csv

print(pd.read_csv(find_candidates_csv(data_dir)).head(4).to_string(index=False))
real = {"negative_ratio": NEGATIVE_RATIO} if DATA_DIR is not None else {}
data = load_target_data("ncc", data_dir, seed=0, input_shape=settings["input_shape"], **real)
print("crops per split:", data.info["counts"], "| nodules:", data.info["positives"],
      "| skipped:", data.info["n_skipped"])
print("split:", data.info.get("split_source"))

# %%
plot_candidates(data, "nodule", "03_ncc_candidates.png")

# %% [markdown]
# ## 2. Genesis against scratch
#
# The same seed for both runs: the same crops, order and augmentation (flips, transposes,
# rotations, Gaussian noise); only the initialisation differs. `finetune` keeps the weights of
# the best validation epoch and scores the test split.

# %%
results, models = finetune_inits("ncc", data, ["genesis", "he_uniform"], weights, settings)
table = results_table(results, ["auc"])
table

# %%
probabilities = {k: m.predict(data.x_test, verbose=0).ravel() for k, m in models.items()}
plot_classification(data.y_test, probabilities, data.x_test, "03_ncc_predictions.png",
                    title="NCC test candidates")

# %% [markdown]
# ## 3. Where the paper's number comes from
#
# Table 3 (NCC column): Genesis Chest CT **98.34 ± 0.44%** AUC against 96.03 ± 1.82% for the
# best scratch initialiser (`he_uniform`; `uniform` 94.74 ± 1.97, `glorot_uniform` 94.25 ± 5.07):
# mean ± s.d. over **10 runs** of each method with the full U-Net on 64x64x32 crops, scored on the
# 265 test patients of LUNA16, with an independent two-sample t-test against the best (p = 0.05;
# `08_protocol` runs this protocol). The footnote compares with the LUNA16 challenge: 0.971
# official score against the winner's 0.968. Fig. 6: Genesis saves about 30% of the annotations.
# The numbers above come from **one** run of a small U-Net on a few phantom scans: they show the
# pipeline working, not the paper's result.

# %%
save_task_summary("03_ncc", "ncc", results, data, ("auc",))
