# %% [markdown]
# # Genesis 2D: slices, radiographs, and 3D against 2D / 2.5D (paper Sec. 3.1, 4.5)
#
# The paper also trains **2D** Models Genesis (Table 1): *Genesis Chest CT 2D* on axial LUNA16
# slices and *Genesis Chest X-ray* on ChestX-ray14 radiographs, with the same four
# transformations and the same restoration task. Sec. 4.5 (Table 4, Fig. 7) then asks whether the
# usual shortcut for 3D data, cutting it into 2D inputs for an ImageNet model, can match 3D
# models: **2D slice-based** inputs (three adjacent axial slices as channels), **2.5D orthogonal**
# inputs (axial, coronal and sagittal planes through the candidate) and **3D volume-based**
# inputs, each from Random, ImageNet and Genesis initialisations. The paper's answer: 3D from
# Genesis Chest CT wins on every task.
#
# This notebook runs that whole path offline on phantoms: a 2D U-Net, 2D pairs, a demo-size 2D
# pre-training on phantom slices, radiograph phantoms (DRRs) in ChestX-ray14's layout, and the
# Table 4 comparison on phantom NCC.

# %% include: _setup.py

# %% include: _genesis_weights.py

# %% [markdown]
# ## Switching to real data
#
# > **Real data.** Slices: `models-genesis extract-cubes --data datasets/luna16 --subsets 0 1 2 3
# > 4 5 6 --out cubes_2d --slices 64 64` then `models-genesis pretrain --preset release_2d --data
# > cubes_2d --out runs/genesis_ct_2d` (writes `Genesis_Chest_CT_2D.h5`). Radiographs: unpack
# > ChestX-ray14 as `ROOT/images/*.png` with `ROOT/Data_Entry_2017.csv`, then
# > `models-genesis extract-xray-crops --data ROOT --out xray_crops` and `pretrain --preset
# > release_2d --data xray_crops --keras2-weights-name Genesis_Chest_Xray.h5`. ImageNet encoders
# > come from keras-hub (`pip install "models-genesis[2d]"`; set `IMAGENET = "resnet_50_imagenet"`
# > below: its weights download on first use). The release publishes no 2D weight file, so the
# > 2D files are ones you train.

# %%
IMAGENET = None  # e.g. "resnet_50_imagenet" (needs keras-hub and a download)

# %% [markdown]
# ## 1. The 2D U-Net
#
# `unet_model_2d` is `unet_model_3d` with 2D layers: the same blocks `depth_{i}_conv/_bn/_relu`,
# the encoder output `depth_7_relu` and the decoder output `depth_13_relu` at depth 4, and a
# final `conv2d_1`. The heads of `target_model_2d` are the 3D ones in 2D.

# %%
from models_genesis.models.heads2d import target_model_2d
from models_genesis.models.unet2d import unet_model_2d

release_2d = unet_model_2d((64, 64, 1))
print(f"2D U-Net (32 base filters, depth 4): {release_2d.count_params():,} parameters")
print("encoder output:", release_2d.get_layer("depth_7_relu").output.shape,
      "| decoder output:", release_2d.get_layer("depth_13_relu").output.shape)
clf = target_model_2d("classification", (64, 64, 3), n_base_filters=8)
print("classification head on 3-channel 2D inputs:", clf.output.shape)

# %% [markdown]
# ## 2. Axial slices from the chest phantoms, and 2D pairs
#
# Slices are crops one voxel deep, cut from the same scans as the cubes and written as cube files
# `bat_{scale}_s_{rows}x{cols}x1_{subset}.npy` (memory-mapped when read). The tissue filter looks
# at the slice's own pixels: a slice with more than 15% of pixels at or above -150 HU is dropped.

# %%
from models_genesis.data.pretraining.restoration_dataset import RestorationDataset
from models_genesis.data.pretraining.slices import open_slices, slice_config
from models_genesis.pipeline.extract_cubes import extract_slices

pretraining_3d = demo_pretraining()  # also makes the chest phantoms
SLICES = WORK / "slices_2d"
subsets = [str(k) for k in range(10)]
if not (SLICES / "bat_32_s_32x32x1_0.npy").is_file():
    summary = extract_slices(CHEST_DIR, subsets, SLICES, config=slice_config((32, 32), demo=True),
                             workers=0, progress=False, overwrite=True)
    print("slices per subset:", summary["n_cubes"])
slices = open_slices(SLICES / "bat_32_s_32x32x1_0.npy")
print("subset 0:", slices.shape, slices.dtype)
x, y = RestorationDataset([str(SLICES / "bat_32_s_32x32x1_0.npy")], 6, dims=2, seed=0)[0]
fig, axes = plt.subplots(2, 6, figsize=(9, 3.2))
for k in range(6):
    axes[0, k].imshow(x[k, ..., 0].T, cmap="gray", vmin=0, vmax=1)
    axes[1, k].imshow(y[k, ..., 0].T, cmap="gray", vmin=0, vmax=1)
    for ax in axes[:, k]:
        ax.axis("off")
axes[0, 0].set_title("transformed", fontsize=8, loc="left")
axes[1, 0].set_title("original", fontsize=8, loc="left")
show(fig, "10_pairs_2d.png")

# %% [markdown]
# ## 3. A demo-size Genesis Chest CT 2D
#
# `pretrain` with `dims=2` (the `demo_2d` preset: 32x32 slices, 8 base filters, Adam) trains
# `unet_model_2d` and exports `Genesis_Chest_CT_2D.h5` in the Keras 2 layout. That file fills
# `unet_model_2d` only: the 3D builder refuses it with a one-line error.

# %%
from models_genesis.config import PretrainConfig
from models_genesis.training.pretrain import pretrain

short = dict(epochs=1, steps_per_epoch=3, validation_steps=1) if SMALL else dict(epochs=6)
config_2d = PretrainConfig.preset("demo_2d", data_dir=str(SLICES), out_dir=str(WORK / "pretrain_2d"),
                                  train_subsets=subsets[:7], val_subsets=subsets[7:],
                                  workers=0, tensorboard=False, **short)
result_2d = pretrain(config_2d, overwrite=True, verbose=0)
weights_2d = result_2d["paths"]["keras2_weights"]
print(Path(weights_2d).name, {k: round(v, 5) for k, v in result_2d["metrics"].items()
                              if k.endswith("mse")})

from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import load_keras2_weights

try:
    load_keras2_weights(unet_model_3d((32, 32, 16, 1), n_base_filters=8), weights_2d)
except ValueError as err:
    print("3D builder:", err)

# %% [markdown]
# ## 4. Radiograph phantoms for Genesis Chest X-ray
#
# `make-phantoms --kind xray` projects chest phantoms along the antero-posterior axis: the
# attenuation `mu = 0.0193 mm^-1 (1 + HU/1000)` is summed along each ray and the radiograph
# shows `1 - exp(-L)`, written as 16-bit PNGs with `Data_Entry_2017.csv`, ChestX-ray14's layout.
# Each radiograph is normalised to [0, 1] by its own min and max, without clipping (Sec. 2.1).
# Random crops of the resized radiographs, split by patient, are the proxy-task files of a
# demo-size Genesis Chest X-ray (`Genesis_Chest_Xray.h5`).

# %%
from models_genesis.data.phantoms.xray import make_xray_phantoms
from models_genesis.data.pretraining.xray_crops import prepare_xray_crops, read_data_entry, read_radiograph

XRAY = WORK / "xray_phantoms"
if not (XRAY / "Data_Entry_2017.csv").is_file():
    make_xray_phantoms(XRAY, n=3 if SMALL else 6, shape=(128, 128, 64) if SMALL else (192, 192, 96),
                       progress=False, overwrite=True)
rows = read_data_entry(XRAY)
for r in rows[:3]:
    print(r["Image Index"], "| view", r["View Position"], "| patient", r["Patient ID"])
XRAY_CROPS = WORK / "xray_crops"
if not XRAY_CROPS.is_dir():  # the proxy-task files of `pretrain --dims 2` (patient-level subsets)
    print("crops per subset:", prepare_xray_crops(XRAY, XRAY_CROPS, n_subsets=3, scale=8,
                                                  crop_shape=(32, 32), image_size=(128, 128),
                                                  progress=False)["n_crops"])
config_xray = PretrainConfig.preset("demo_2d", data_dir=str(XRAY_CROPS),
                                    out_dir=str(WORK / "pretrain_xray"), train_subsets=("0", "1"),
                                    val_subsets=("2",), keras2_weights_name="Genesis_Chest_Xray.h5",
                                    workers=0, tensorboard=False, **short)
result_xray = pretrain(config_xray, overwrite=True, verbose=0)
weights_xray = result_xray["paths"]["keras2_weights"]
print(Path(weights_xray).name, {k: round(v, 5) for k, v in result_xray["metrics"].items()
                                if k.endswith("mse")})
fig, axes = plt.subplots(1, 3, figsize=(7, 3))
for ax, r in zip(axes, rows):
    ax.imshow(read_radiograph(XRAY / "images" / r["Image Index"]), cmap="gray")
    ax.set_title(r["Image Index"], fontsize=8)
    ax.axis("off")
show(fig, "10_xray_phantoms.png")

# %% [markdown]
# ## 5. 3D against 2D and 2.5D on phantom NCC (Table 4's layout)
#
# The same NCC crops feed three rows: the three centre axial slices (2D), the three orthogonal
# planes through the centre voxel (2.5D), and the crop itself (3D). Random is `he_uniform`;
# Genesis is our demo Genesis Chest CT (3D) and Genesis Chest CT 2D (2D rows); as in Fig. 7, the
# demo Genesis Chest X-ray is an extra 2D column; ImageNet runs only when `IMAGENET` names a
# keras-hub preset. Phantom-sized data and a few epochs: the numbers show the pipeline, not the
# paper's result.

# %%
from models_genesis.data.target_tasks import load_target_data
from models_genesis.pipeline.compare2d import run_2d_comparison

ncc = load_target_data("ncc", CHEST_DIR, seed=0, input_shape=(32, 32, 16))
print("NCC crops per split:", ncc.info["counts"])
comparison = run_2d_comparison(
    "ncc", ncc, WORK / "compare_2d_ncc", weights_3d=pretraining_3d["paths"]["keras2_weights"],
    weights_2d=weights_2d, extra_2d={"genesis_xray": weights_xray}, imagenet=IMAGENET,
    runs=1 if SMALL else 2,
    epochs=1 if SMALL else 15, patience=5, batch_size=8, depth_2d=4, n_base_filters_2d=8,
    n_base_filters_3d=pretraining_3d["result"]["config"]["n_base_filters"])
print(comparison["table"])
display(Image(filename=comparison["paths"]["figure"]))

# %%
save_summary("10_genesis_2d", {
    "unet2d_parameters": release_2d.count_params(),
    "pretrain_2d_metrics": result_2d["metrics"],
    "pretrain_xray_metrics": result_xray["metrics"],
    "table4": comparison["table"],
    "results": comparison["results"],
})
