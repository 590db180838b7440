# %% [markdown]
# # Models Genesis in Keras 3: quick start
#
# Models Genesis (Zhou et al., *Models Genesis*, Medical Image Analysis 2021; MICCAI 2019) are
# 3D U-Nets pre-trained **without labels** by restoring sub-volumes ("cubes") that were distorted
# by four transformations (paper Sec. 2). This notebook
#
# 1. builds the release's 3D U-Net, `unet_model_3d` (16,324,929 parameters, the release's layer
#    names);
# 2. loads Genesis weights: the released `Genesis_Chest_CT.h5` when it is in
#    `pretrained_weights/`, otherwise weights pre-trained here on the embedded phantoms; the
#    notebook prints which;
# 3. predicts a whole phantom CT scan with overlapping sliding windows and shows input,
#    restoration and their difference;
# 4. builds the release README's two fine-tuning models from those weights: classification on
#    `depth_7_relu`, segmentation on `depth_13_relu`.
#
# Everything runs offline on a CPU in a few minutes.

# %% include: _setup.py

# %% [markdown]
# ## 1. The release's 3D U-Net
#
# Four encoder levels of two conv blocks (Conv3D 3x3x3 -> BatchNorm -> ReLU, named
# `depth_{i}_conv/_bn/_relu`), max-pooling between levels, a decoder that up-samples,
# concatenates the skip connection and applies two more blocks, and a 1x1x1 conv with a sigmoid.
# Computation is channels_last: a batch is `(N, rows, cols, deps, 1)` in [0, 1].

# %%
from models_genesis import unet_model_3d

release_model = unet_model_3d((64, 64, 32, 1))
print(f"{release_model.name}: {release_model.count_params():,} parameters")
print("encoder output depth_7_relu: ", release_model.get_layer("depth_7_relu").output.shape)
print("decoder output depth_13_relu:", release_model.get_layer("depth_13_relu").output.shape)

# %% [markdown]
# ## 2. Weights: the released file, or our own
#
# > **Switch to the released weights.** Download `Genesis_Chest_CT.h5` (see
# > `pretrained_weights/README.md`) into `pretrained_weights/` (or point
# > `MODELS_GENESIS_WEIGHTS` at its folder) and rerun: the next cell then fills the full-size
# > model above with it, exactly as `model.load_weights("Genesis_Chest_CT.h5")` does, and the
# > rest of the notebook uses it with 64x64x32 windows (the paper's cube size).

# %%
from models_genesis.models.weights import load_keras2_weights
from models_genesis.paths import weights_dir

candidates = [weights_dir() / "Genesis_Chest_CT.h5",
              Path("..") / "pretrained_weights" / "Genesis_Chest_CT.h5"]
RELEASED = next((p for p in candidates if p.is_file()), None)
print("released weights:", RELEASED or f"not found in {[str(p.parent) for p in candidates]}")

# %% include: _genesis_weights.py

# %%
if RELEASED is not None:
    model, WEIGHTS, WINDOW = release_model, RELEASED, (64, 64, 32)
    model.load_weights(RELEASED)
    SOURCE = f"the RELEASED Genesis Chest CT weights ({RELEASED})"
else:
    pretraining = demo_pretraining()
    WEIGHTS = pretraining["paths"]["keras2_weights"]
    config = pretraining["result"]["config"]
    WINDOW = tuple(config["cube_shape"])
    model = unet_model_3d((*WINDOW, 1), n_base_filters=config["n_base_filters"])
    filled = load_keras2_weights(model, WEIGHTS)
    SOURCE = (f"OUR demo pre-training on the chest phantoms ({config['n_base_filters']} base "
              f"filters, {WINDOW} cubes, {pretraining['epochs']} epochs), NOT the released weights")
    print(f"validation MSE after pre-training: {pretraining['model_mse']:.4f}; doing nothing "
          f"(returning the transformed input): {pretraining['identity_mse']:.4f}")
print(f"Using {SOURCE}: {model.count_params():,} parameters, window {WINDOW}")

# %% [markdown]
# ## 3. Predict a whole scan with sliding windows
#
# A scan is larger than the model's window, so `sliding_window_inference` covers it with
# overlapping windows (50% overlap), predicts them in batches and blends them with Gaussian
# weights. The restoration model maps a scan to itself; where it cannot, the difference map
# highlights what it finds unusual (paper Sec. 5.6).

# %%
from models_genesis.data.io.intensity import normalize_intensity
from models_genesis.data.io.volumes import read_volume
from models_genesis.evaluation.sliding_window import sliding_window_inference

scan_path = sorted((CHEST_DIR / "subset7").glob("*.mhd"))[0] if RELEASED is None else None
if scan_path is None:  # with the released weights no phantoms were made yet: make one scan
    make_chest_phantoms(WORK / "one_phantom", n=1, n_subsets=1, seed=7, progress=False)
    scan_path = sorted((WORK / "one_phantom" / "subset0").glob("*.mhd"))[0]
scan = read_volume(scan_path)
x = normalize_intensity(scan.array, "ct")  # clip to [-1000, 1000] HU, scale to [0, 1]
restored = sliding_window_inference(model, x, window=WINDOW, overlap=0.5, batch_size=16)
restoration_mse = float(np.mean((restored - x) ** 2))
constant_mse = float(x.var())  # a "model" that returns the scan's mean intensity everywhere
print(f"scan {scan_path.name}: shape {x.shape}, spacing {tuple(round(s, 2) for s in scan.spacing)} mm")
print(f"restoration: shape {restored.shape}, range [{restored.min():.3f}, {restored.max():.3f}], "
      f"MSE to the input {restoration_mse:.5f} (returning the scan's mean everywhere: "
      f"{constant_mse:.5f})")

# %%
z = x.shape[2] // 2
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
for ax, image, title, kw in (
        (axes[0], x, "input (axial slice)", dict(cmap="gray", vmin=0, vmax=1)),
        (axes[1], restored, "restoration", dict(cmap="gray", vmin=0, vmax=1)),
        (axes[2], x - restored, "input - restoration", dict(cmap="coolwarm", vmin=-0.5, vmax=0.5))):
    im = ax.imshow(image[:, :, z].T, **kw)
    ax.set_title(title)
    ax.axis("off")
fig.colorbar(im, ax=axes[2], fraction=0.046)
fig.suptitle(f"Sliding-window restoration with {SOURCE.split(' (')[0]}", fontsize=10)
show(fig, "00_quick_start_restoration.png")
figure = FIGURES / "00_quick_start_restoration.png"

# %% [markdown]
# ## 4. Fine-tuning models from the Genesis weights
#
# The release README's recipes: for **classification**, `depth_7_relu` (the encoder's output) ->
# GlobalAveragePooling3D -> Dense(1024, relu) -> Dense(1, sigmoid); for **segmentation**,
# `depth_13_relu` -> Conv3D(1, 1x1x1) -> sigmoid. `classification_model` / `segmentation_model`
# build them, and `weights=` (or `init_from_genesis`) fills the U-Net layers by name: the encoder
# for classification, the whole U-Net for segmentation; the head keeps its initialisation.

# %%
from models_genesis import classification_model, init_from_genesis, segmentation_model

filters = model.get_layer("depth_0_conv").filters
classifier = classification_model((*WINDOW, 1), n_base_filters=filters)
segmenter = segmentation_model((*WINDOW, 1), n_base_filters=filters)
for name, target in (("classification", classifier), ("segmentation", segmenter)):
    report = init_from_genesis(target, WEIGHTS)
    print(f"{name}: output {target.output.shape}; {len(report['loaded'])} layers from Genesis "
          f"({report['loaded'][0]} ... {report['loaded'][-1]}); new: {report['initialised']}")
same = all(np.array_equal(a, b) for a, b in zip(classifier.get_layer("depth_7_conv").get_weights(),
                                                 model.get_layer("depth_7_conv").get_weights()))
print("classifier's depth_7_conv equals the pre-trained one:", same)

# %%
save_summary("00_quick_start", {
    "weights_source": "released" if RELEASED is not None else "demo",
    "window": WINDOW, "restoration_mse": restoration_mse, "constant_mse": constant_mse,
    "scan_shape": x.shape,
    "restored_shape": restored.shape, "encoder_weights_equal": same, "figure": str(figure)})

# %% [markdown]
# **Next:** `01_transformations` (what the model learns from), `02_pretraining` (the proxy task
# end to end), `03_ncc` ... `07_bms` (the five target tasks of the paper), `08_protocol` (10 runs,
# mean ± s.d., t-test).
