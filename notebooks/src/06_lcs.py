# %% [markdown]
# # LCS: liver segmentation (LiTS 2017)
#
# **Task** (paper Sec. 3.2.4, Table 1): segment the liver in abdominal CT; LiTS provides 130
# labelled scans with labels 1 (liver) and 2 (lesion), both counted as liver here, split
# 100 / 15 / 15. **Metrics**: the paper's IoU (mean over thresholds 0.50:0.05:0.95) and Dice.
# Liver is a different organ and disease than the source (chest CT), same modality (Table 2).
#
# **Model**: the whole Genesis U-Net -> Conv3D(1, 1x1x1) -> sigmoid; 1 - Dice loss, Adam
# **lr 1e-2**, batch 16, patience 20 (docs/release_reference.md, 'Target tasks'); against scratch
# `he_uniform`. Whole scans are larger than the training crop: at the end we segment a full test
# scan with overlapping sliding windows and write the mask with the scan's geometry.

# %% include: _setup.py

# %% include: _genesis_weights.py

# %% include: _target_task.py

# %% [markdown]
# ## Switching to real data: LiTS and the paper's settings
#
# > **Real data.** One folder with LiTS' files: `volume-N.nii` (or `.nii.gz`) and
# > `segmentation-N.nii`, N = 0..130. The patients are split 100/15/15 at random (seeded) or as
# > given by `split=`. Set `DATA_DIR`; the paper's settings replace the demo's: 64x64x32 crops,
# > 32 base filters, the released weights, batch 16, lr 1e-2, patience 20.

# %%
DATA_DIR = None  # e.g. "datasets/lits"
PAPER_SETTINGS = dict(input_shape=(64, 64, 32), n_base_filters=32, epochs=10000)
PAPER_WEIGHTS = "genesis_chest_ct"
print(get_target_task("lcs"))

# %% [markdown]
# ## 1. Data: LiTS-like abdominal CT
#
# Phantoms in LiTS' names and labels (`volume-N.nii`, `segmentation-N.nii`; 1 liver, 2 tumour):
# a liver with hypodense tumours, aorta, kidneys, spine and bowel gas. Crops are cut half on
# the liver, half anywhere in the scan.

# %%
from models_genesis.data.phantoms.abdomen import make_abdomen_phantoms
from models_genesis.data.target_tasks import load_target_data

if DATA_DIR is not None:
    data_dir, settings, weights = DATA_DIR, PAPER_SETTINGS, PAPER_WEIGHTS
    crops_per_volume = 16
else:
    pretraining = demo_pretraining()
    weights = pretraining["paths"]["keras2_weights"]
    data_dir = WORK / "lits_phantoms"
    if not (data_dir / "volume-0.nii").is_file():
        make_abdomen_phantoms(data_dir, n=5 if SMALL else 10, seed=0,
                              shape=(96, 96, 48) if SMALL else (128, 128, 64))
    settings = demo_settings(pretraining)
    crops_per_volume = 8 if SMALL else 16
data = load_target_data("lcs", data_dir, seed=0, input_shape=settings["input_shape"],
                        crops_per_volume=crops_per_volume)
print("crops per split:", data.info["counts"], "| patients:", data.info["patients"],
      "| skipped:", data.info["n_skipped"])

# %% [markdown]
# ## 2. Genesis against scratch

# %%
results, models = finetune_inits("lcs", data, ["genesis", "he_uniform"], weights, settings)
table = results_table(results, ["mean_iou", "dice", "foreground_iou"])
table

# %%
predictions = {k: m.predict(data.x_test, verbose=0) for k, m in models.items()}
plot_segmentations(data.x_test, data.y_test, predictions, "06_lcs_predictions.png",
                   title="LCS test crops: true liver outline and each model's mask (red)")

# %% [markdown]
# ## 3. A whole test scan by sliding windows
#
# `segment_volume_to_file` normalises the scan like the training crops, covers it with windows
# of the training size (50% overlap, Gaussian blending), thresholds at 0.5 and writes the mask
# with the scan's spacing, origin and direction (`models-genesis predict-volume` does the same
# from the command line).

# %%
from models_genesis.data.io.volumes import read_volume
from models_genesis.evaluation.metrics import dice_coefficient
from models_genesis.evaluation.whole_volume import preprocessing_task, segment_volume_to_file

volume_path, truth_path = data.test_volumes[0]
mask_path = segment_volume_to_file(models["genesis"], volume_path,
                                   WORK / "lcs" / "predicted_mask.nii.gz",
                                   preprocessing_task(settings["input_shape"], normalization="ct"),
                                   overlap=0.5, batch_size=16)
scan, predicted = read_volume(volume_path), read_volume(mask_path)
truth = read_volume(truth_path).array > 0
whole_dice = dice_coefficient(truth, predicted.array)
print(f"{Path(volume_path).name}: {scan.array.shape} voxels -> {Path(mask_path).name}; same grid: "
      f"{predicted.array.shape == scan.array.shape and np.allclose(predicted.spacing, scan.spacing)}; "
      f"whole-scan Dice of the Genesis model: {100 * whole_dice:.1f}%")
z = int(np.argmax(truth.sum((0, 1))))
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
for ax, (title, mask) in zip(axes, (("truth", truth), ("Genesis, sliding windows", predicted.array))):
    ax.imshow(scan.array[:, :, z].T, cmap="gray", vmin=-200, vmax=300)
    ax.contour(np.asarray(mask[:, :, z], float).T, levels=[0.5], colors="r", linewidths=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
show(fig, "06_lcs_whole_scan.png")

# %% [markdown]
# ## 4. Where the paper's number comes from
#
# Table 3 (LCS column): Genesis Chest CT **85.10 ± 2.15%** IoU against 79.76 ± 5.43% for
# `he_uniform` (`uniform` 78.68 ± 4.23, `glorot_uniform` 77.82 ± 3.87), 10 runs on the 15 test
# scans; MedicalNet, supervised on LiTS itself, is slightly higher (85.52 ± 0.58) but not
# significantly so. The footnote gives a Dice of 93.19 ± 0.46% without post-processing against
# the challenge winner's 96.60% with it. Fig. 6: Genesis saves about 84% of the annotations. Our
# numbers come from one run of a small U-Net on phantoms.

# %%
save_task_summary("06_lcs", "lcs", results, data, ("mean_iou", "dice", "foreground_iou"), whole_scan_dice=whole_dice, mask_file=str(mask_path))
