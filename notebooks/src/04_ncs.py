# %% [markdown]
# # NCS: lung nodule segmentation (LIDC-IDRI)
#
# **Task** (paper Sec. 3.2.2, Table 1): segment the nodule in a 64x64x32 crop around it; the
# LIDC-IDRI scans are resampled to 1 mm and split 510 / 100 / 408 cases. **Metrics**: the paper's
# IoU — the two-class (background and foreground) mean IoU averaged over thresholds 0.50 to 0.95
# in steps of 0.05 (`mean_iou`, the release's definition) — and the Dice coefficient; we also
# print the plain foreground IoU at 0.5, which is much lower (the release's notebook: 77.14%
# mean IoU against 59.22% foreground IoU).
#
# **Model**: the whole Genesis U-Net, `depth_13_relu` -> Conv3D(1, 1x1x1) -> sigmoid; loss
# 1 - Dice (smooth 1), Adam lr 1e-3, batch 16, patience 50 (docs/release_reference.md, 'Target
# tasks'); against a scratch `he_uniform` baseline.

# %% include: _setup.py

# %% include: _genesis_weights.py

# %% include: _target_task.py

# %% [markdown]
# ## Switching to real data: LIDC-IDRI and the paper's settings
#
# > **Real data.** Either the release's preprocessed arrays in one folder
# > (`x_train_64x64x32.npy`, `m_train_64x64x32.npy`, and the same for `valid` and `test`), or
# > volumes with nodule masks: `subset*/<id>.mhd`, `masks/<id>.mhd` (or `.nii.gz`, label > 0 is
# > nodule) and `annotations.csv` (`seriesuid, coordX, coordY, coordZ, diameter_mm`); the loader
# > resamples to 1 mm and crops around each nodule. Set `DATA_DIR` and the paper's settings
# > replace the demo's: 64x64x32 crops, 32 base filters, the released weights, batch 16, lr 1e-3,
# > patience 50, up to 10,000 epochs.

# %%
DATA_DIR = None  # e.g. "datasets/lidc_ncs"
PAPER_SETTINGS = dict(input_shape=(64, 64, 32), n_base_filters=32, epochs=10000)
PAPER_WEIGHTS = "genesis_chest_ct"
print(get_target_task("ncs"))

# %% [markdown]
# ## 1. Data: nodule crops and masks
#
# The chest phantoms carry a nodule mask per scan (`masks/<seriesuid>.mhd`, one label per
# nodule) and `annotations.csv`; patients are split at random in the paper's proportions.

# %%
from models_genesis.data.target_tasks import load_target_data

if DATA_DIR is not None:
    data_dir, settings, weights = DATA_DIR, PAPER_SETTINGS, PAPER_WEIGHTS
else:
    pretraining = demo_pretraining()
    data_dir, weights = CHEST_DIR, pretraining["paths"]["keras2_weights"]
    settings = demo_settings(pretraining, epochs=20, patience=8)
data = load_target_data("ncs", data_dir, seed=0, input_shape=settings["input_shape"])
fg = {s: float(np.mean(data.split(s)[1])) for s in ("train", "valid", "test")}
print("crops per split:", data.info["counts"], "| patients:", data.info["patients"],
      "| skipped:", data.info["n_skipped"])
print("foreground share per split:", {k: round(v, 3) for k, v in fg.items()})

# %% [markdown]
# ## 2. Genesis against scratch

# %%
results, models = finetune_inits("ncs", data, ["genesis", "he_uniform"], weights, settings)
print(results["genesis"]["iou_definition"])
table = results_table(results, ["mean_iou", "dice", "foreground_iou"])
table

# %%
predictions = {k: m.predict(data.x_test, verbose=0) for k, m in models.items()}
plot_segmentations(data.x_test, data.y_test, predictions, "04_ncs_predictions.png",
                   title="NCS test crops: true outline and each model's mask (red)")

# %% [markdown]
# ## 3. Where the paper's number comes from
#
# Table 3 (NCS column): Genesis Chest CT **77.62 ± 0.64%** IoU against 76.44 ± 0.45% for
# `he_uniform` (`uniform` 75.48 ± 0.43, `glorot_uniform` 74.05 ± 1.97): the mean IoU over
# thresholds 0.50:0.05:0.95 (Sec. 3.2.2), mean ± s.d. over **10 runs** on the 408 test cases,
# t-test against the best. The footnote gives a Dice of 75.86 ± 0.90% against 74.05% for Wu et
# al. (2018). Fig. 6: Genesis saves about 50% of the annotations. Our numbers come from one run
# of a small U-Net on phantom nodules.

# %%
save_task_summary("04_ncs", "ncs", results, data, ("mean_iou", "dice", "foreground_iou"))
