# %% [markdown]
# # Pre-training Models Genesis: the restoration proxy task end to end
#
# The three steps of the framework (paper Sec. 2, Fig. 1): **(1)** crop sub-volumes ("cubes")
# from unlabeled CT scans, **(2)** transform them, **(3)** train a 3D U-Net to restore the
# originals with a mean-squared-error loss over the whole cube (Sec. 3.1). Here on the embedded
# synthetic chest CTs, which are written exactly like LUNA16 (`subsetK/<seriesuid>.mhd` + `.raw`
# in Hounsfield units), with the demo preset: 32x32x16 cubes, 8 base filters, a few minutes on a
# CPU. At the end: restorations of the 12 combinations (Fig. D.14) and a difference map that
# highlights what the model finds abnormal (Sec. 5.6).

# %% include: _setup.py

# %% [markdown]
# ## Switching to real data: LUNA16 and the paper's settings
#
# > **Real data.** Put LUNA16 in `datasets/luna16/` (`subset0/` ... `subset9/` with `.mhd`/`.raw`
# > scans, see `datasets/README.md`), then run the release's settings (docs/release_reference.md,
# > 'Cube extraction' and 'Pre-training schedule'): cubes of 64x64x32 from subsets 0-4 (training)
# > and 5-6 (validation), batch 6, SGD lr 1.0 momentum 0.9,
# > ReduceLROnPlateau(0.5, patience 10), EarlyStopping(patience 50), one epoch = all cubes:
# >
# > ```bash
# > models-genesis extract-cubes --data datasets/luna16 --subsets 0 1 2 3 4 5 6 --out datasets/luna16_cubes
# > models-genesis pretrain --data datasets/luna16_cubes --out runs/genesis_chest_ct   # --preset release
# > ```
# >
# > The run writes `Genesis_Chest_CT.h5` in the release's Keras 2 layout (and `best.weights.h5`),
# > resumes after a crash when rerun, and accepts `--mixed-precision bf16` and
# > `--strategy mirrored` on GPUs. The cell below lists what the demo preset changes.

# %%
import dataclasses

from models_genesis.config import PretrainConfig
from models_genesis.data.pretraining.cubes import ExtractionConfig

release, demo = PretrainConfig.preset("release"), PretrainConfig.preset("demo")
print(f"{'field':18s} {'release (paper)':>16s} {'demo (phantoms)':>16s}")
for f in dataclasses.fields(PretrainConfig):
    a, b = getattr(release, f.name), getattr(demo, f.name)
    if a != b:
        print(f"{f.name:18s} {str(a):>16s} {str(b):>16s}")
print("cube extraction, release:", ExtractionConfig().to_dict())
print("cube extraction, demo:   ", ExtractionConfig.demo().to_dict())

# %% [markdown]
# ## 1. Unlabeled scans
#
# The chest phantoms: lungs with vessel trees and nodules, airways, ribs, spine, heart, liver,
# in Hounsfield units with scanner noise, spread over ten `subsetK/` folders like LUNA16. (They
# also carry `annotations.csv`, `candidates.csv` and nodule masks for the NCC and NCS notebooks;
# pre-training uses none of these labels.)

# %% include: _genesis_weights.py

# %%
from models_genesis.data.io.volumes import index_volumes, read_volume

if not (CHEST_DIR / "phantoms.json").is_file():
    make_chest_phantoms(CHEST_DIR, n=10 if SMALL else 20, seed=0,
                        shape=(128, 128, 64) if SMALL else (192, 192, 96))
volumes = index_volumes(CHEST_DIR, "subset*/*.mhd")
scan = read_volume(sorted((CHEST_DIR / "subset3").glob("*.mhd"))[0])
print(f"{len(volumes)} scans; one of them: {scan.array.shape} voxels, spacing "
      f"{tuple(round(s, 2) for s in scan.spacing)} mm, HU in [{scan.array.min()}, {scan.array.max()}]")
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
for ax, z in zip(axes, np.linspace(0.3, 0.7, 3) * scan.array.shape[2]):
    ax.imshow(scan.array[:, :, int(z)].T, cmap="gray", vmin=-1000, vmax=400)
    ax.set_title(f"axial slice {int(z)} (HU window -1000..400)", fontsize=9)
    ax.axis("off")
show(fig, "02_scan.png")

# %% [markdown]
# ## 2. Cube extraction
#
# Random crops away from the borders; a crop is rejected when it holds too much tissue: for each
# voxel, the first of the next 3 slices above the -150 HU threshold gives a weight of 1, 0.5 or
# 0, and crops whose weights sum to more than 15% of the voxels are dropped
# (docs/release_reference.md, 'Cube extraction'). The paper keeps informative cubes that are neither
# empty air nor full tissue (Sec. 3.1). The intensities are clipped to [-1000, 1000] HU and scaled
# to [0, 1].

# %%
from models_genesis.data.pretraining.cubes import extract_cubes_from_volume

extraction = ExtractionConfig.demo()
cubes, info = extract_cubes_from_volume(scan, rng=np.random.default_rng(0), config=extraction,
                                        return_info=True)
print(f"{len(cubes)} cubes of {extraction.cube_shape} accepted out of {info['n_tries']} random "
      f"crops; values in [{cubes.min():.2f}, {cubes.max():.2f}]")
if len(cubes) < 6:
    raise RuntimeError(f"Expected at least 6 cubes from this scan for the figures; got {len(cubes)}.")
fig, axes = plt.subplots(2, 8, figsize=(13, 3.6))
for ax, c in zip(axes.flat, cubes):
    ax.imshow(c[:, :, c.shape[2] // 2].T, cmap="gray", vmin=0, vmax=1)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle("Accepted cubes (middle slices)", fontsize=10)
show(fig, "02_cubes.png")

# %% [markdown]
# ## 3. The generator
#
# `RestorationDataset` is a `keras.utils.PyDataset` yielding `(transformed, original)` batches
# `(B, rows, cols, deps, 1)`, transforming on the fly with the unified scheme (see
# `01_transformations`). Batch `i` of epoch `e` depends only on `(seed, e, i)`, so the pairs are
# the same whatever the number of workers, and validation pairs repeat every epoch.

# %%
from models_genesis.data.pretraining.restoration_dataset import RestorationDataset

generator = RestorationDataset(cubes, batch_size=6, seed=0)
x, y = generator[0]
again = RestorationDataset(cubes, batch_size=6, seed=0, workers=2)[0]
print(f"{len(generator)} batches per epoch; one batch: input {x.shape}, target {y.shape}; "
      f"same seed, same pairs: {np.array_equal(x, again[0]) and np.array_equal(y, again[1])}")
fig, axes = plt.subplots(2, 6, figsize=(11, 4))
for k in range(6):
    for row, (a, label) in enumerate(((x, "input"), (y, "target"))):
        axes[row, k].imshow(a[k, :, :, a.shape[3] // 2, 0].T, cmap="gray", vmin=0, vmax=1)
        axes[row, k].axis("off")
        axes[row, k].set_title(label, fontsize=8)
show(fig, "02_generator_pairs.png")

# %% [markdown]
# ## 4. A short pre-training
#
# `run_demo_pretraining` extracts the cubes of subsets 0-6, trains on 0-4 and validates on 5-6
# with the release's schedule (SGD lr 1.0, momentum 0.9, MSE, ReduceLROnPlateau, EarlyStopping,
# best-val_loss checkpoint) scaled down by the demo preset, and reports the validation MSE of the
# model against doing nothing (returning the transformed input). The run is shared with the
# other notebooks; if it exists already it is reused.

# %%
pretraining = demo_pretraining()
paths = pretraining["paths"]
import pandas as pd

log = pd.read_csv(paths["csv_log"])
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(log["epoch"] + 1, log["loss"], "o-", label="training")
ax.plot(log["epoch"] + 1, log["val_loss"], "o-", label="validation")
ax.axhline(pretraining["identity_mse"], color="grey", ls="--", label="doing nothing (identity)")
ax.set(xlabel="epoch", ylabel="MSE", yscale="log", title="Restoration loss")
ax.legend()
show(fig, "02_training_curve.png")
print(f"validation MSE: model {pretraining['model_mse']:.5f}, identity {pretraining['identity_mse']:.5f} "
      f"(ratio {pretraining['ratio']:.3f}) after {pretraining['epochs']} epochs")
print("weights in the release's Keras 2 layout:", os.path.relpath(paths["keras2_weights"]))

# %% [markdown]
# ## 5. Restorations of the 12 combinations (Fig. D.14)
#
# One validation cube under each combination of transformations, its restoration and the
# original: a qualitative check of what the model has learned.

# %%
from models_genesis.data.io.cube_files import find_cube_files, open_cubes
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.training.restoration_figures import (
    difference_map, plot_difference_map, plot_restoration_combinations,
)

config = pretraining["result"]["config"]
model = unet_model_3d((*config["cube_shape"], 1), n_base_filters=config["n_base_filters"])
model.load_weights(paths["best_weights"])
val_cubes = open_cubes(find_cube_files(paths["cubes"], ["5"], tuple(config["cube_shape"]))[0])
val_cube = val_cubes[np.argmax(val_cubes.std(axis=(1, 2, 3)))]
display(Image(filename=plot_restoration_combinations(model, val_cube,
                                                     FIGURES / "02_restorations.png", seed=1)))

# %% [markdown]
# ## 6. The difference map: finding what is abnormal (Sec. 5.6)
#
# Pass an **untransformed** scan through the model and subtract: normal anatomy is restored
# almost unchanged, while what the model did not see during pre-training is "restored away" and
# lights up in `input - restoration`. The paper shows Genesis Chest CT removing diffuse opacities
# from the lung, a detector trained with zero annotation. We imitate that: a ground-glass-like
# opacity (about -300 HU) is painted into a lung cube, and we compare the difference map inside
# and outside it.

# %%
from models_genesis.data.io.intensity import normalize_intensity

r, c, d = config["cube_shape"]
lungs = scan.array < -500  # air and lung
starts = info["starts"]
best = max(starts, key=lambda s: lungs[s[0]:s[0] + r, s[1]:s[1] + c, s[2]:s[2] + d].mean())
hu = scan.array[best[0]:best[0] + r, best[1]:best[1] + c, best[2]:best[2] + d].astype(np.float32)
grid_ = np.stack(np.meshgrid(*[np.arange(n) for n in (r, c, d)], indexing="ij"), -1)
centre, radii = np.array([r, c, d]) / 2, np.array([r, c, d]) / 5
opacity = (((grid_ - centre) / radii) ** 2).sum(-1) <= 1
abnormal = hu.copy()
abnormal[opacity & (hu < -500)] = -300 + 30 * np.random.default_rng(0).standard_normal(
    int((opacity & (hu < -500)).sum()))
cube_normal, cube_abnormal = (normalize_intensity(a, "ct") for a in (hu, abnormal))
maps = {name: difference_map(model, cube) for name, cube in (("normal", cube_normal),
                                                               ("opacity", cube_abnormal))}
inside = float(np.abs(maps["opacity"]["difference"][opacity]).mean())
outside = float(np.abs(maps["opacity"]["difference"][~opacity]).mean())
# Reference: a "model" returning the cube's mean everywhere would also light up bright regions.
flat = np.abs(cube_abnormal - cube_abnormal.mean())
print(f"mean |input - restoration|: inside the opacity {inside:.4f}, elsewhere {outside:.4f} "
      f"(ratio {inside / max(outside, 1e-8):.1f}); returning the cube's mean instead: ratio "
      f"{flat[opacity].mean() / max(flat[~opacity].mean(), 1e-8):.1f}")
print(f"restoration error of the normal cube: {np.mean(maps['normal']['difference'] ** 2):.5f} "
      f"(returning its mean: {cube_normal.var():.5f})")
display(Image(filename=plot_difference_map(model, cube_abnormal, FIGURES / "02_difference_map.png")))

# %%
save_summary("02_pretraining", {
    "n_scans": len(volumes), "cubes_accepted": len(cubes), "crops_tried": info["n_tries"],
    "model_mse": pretraining["model_mse"], "identity_mse": pretraining["identity_mse"],
    "epochs": pretraining["epochs"], "difference_inside": inside, "difference_outside": outside,
    "figures": sorted(p.name for p in FIGURES.glob("02_*.png"))})
