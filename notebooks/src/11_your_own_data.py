# %% [markdown]
# # Your own data: a two-channel, two-label data set in the nnU-Net v2 layout
#
# Any labelled data set in the Medical Segmentation Decathlon or the nnU-Net v2 layout goes
# through the paper's path (Sec. 3.2) as task `custom` (`docs/your_own_data.md`):
#
# ```bash
# models-genesis prepare  --task custom --data Dataset501_Phantom --out prepared
# models-genesis finetune --task custom --data prepared --out run --init genesis --weights G.h5
# models-genesis predict-volume --model run --input case_0000.nii.gz case_0001.nii.gz --output seg.nii.gz
# ```
#
# This notebook writes a small brain-MRI data set of our own (phantoms saved as NIfTI: FLAIR and
# T1 channels, labels 1 oedema and 2 tumour core), runs the three commands, fine-tunes from
# Genesis and from scratch, and shows a held-out case with its predicted labels.

# %% include: _setup.py

# %% include: _genesis_weights.py

# %% [markdown]
# ## Switching to real data
#
# > **Real data.** Set `DATA_DIR` to a `DatasetNNN_Name/` (nnU-Net v2: `imagesTr/{case}_0000.nii.gz`
# > one file per channel, `labelsTr/`, `dataset.json` with `channel_names`, `labels`,
# > `file_ending`; `splits_final.json` is used when present) or a `TaskNN_Name/` (Decathlon: 4D
# > images, `dataset.json` with `modality`, `labels`, `training`). The paper's settings: 64x64x32
# > crops, 32 base filters, the released `Genesis_Chest_CT.h5`.

# %%
DATA_DIR = None  # e.g. "datasets/Task01_BrainTumour" or "datasets/Dataset501_Brain"
PAPER_SETTINGS = ["--input-shape", "64", "64", "32", "--n-base-filters", "32"]
PAPER_WEIGHTS = "genesis_chest_ct"

# %% [markdown]
# ## 1. The data set, as nnU-Net v2 lays it out

# %%
from models_genesis.cli import main
from models_genesis.data.phantoms.own_data import write_own_dataset
from models_genesis.data.target_tasks.custom import dataset_summary

if DATA_DIR is not None:
    data_dir, settings, weights = Path(DATA_DIR), PAPER_SETTINGS, PAPER_WEIGHTS
else:
    pretraining = demo_pretraining()
    weights = pretraining["paths"]["keras2_weights"]
    data_dir = WORK / "Dataset501_Phantom"
    if not (data_dir / "dataset.json").is_file():
        write_own_dataset(data_dir, layout="nnunetv2", n=6 if SMALL else 10,
                          shape=(32, 32, 32) if SMALL else (48, 48, 32), seed=0)
    width = str(pretraining["result"]["config"]["n_base_filters"])
    settings = ["--input-shape", "32", "32", "16", "--n-base-filters", width, "--batch-size",
                "8", "--bn-momentum", "0.9", "--crops-per-volume", "4" if SMALL else "16"]
    settings += (["--epochs", "1", "--steps-per-epoch", "1", "--validation-steps", "1"]
                 if SMALL else ["--epochs", "20", "--patience", "6"])
print(json.dumps(json.loads((data_dir / "dataset.json").read_text()), indent=1))
print(sorted(p.name for p in (data_dir / "imagesTr").iterdir())[:4], "...")
print(dataset_summary(data_dir))

# %% [markdown]
# ## 2. `prepare`: read and check every case once
#
# The prepared folder is itself in the nnU-Net v2 layout, with the split it was made with
# (`splits_final.json`: the five folds, seeded as nnU-Net seeds them) and a `manifest.json`.
# Each channel gets the intensity scaling of its name: `CT` the release's HU window, anything
# else (here FLAIR and T1) its own 0.5-99.5 percentiles, both to [0, 1] (`--intensity`
# overrides).

# %%
prepared = WORK / "prepared_own_data"
assert main(["prepare", "--task", "custom", "--data", str(data_dir), "--out", str(prepared),
             "--quiet"]) == 0
print(sorted(p.name for p in prepared.iterdir()))

# %% [markdown]
# ## 3. `finetune`: Genesis against scratch
#
# Genesis was pre-trained on one channel; its first convolution is repeated over the two input
# channels and divided by two, so two copies of one image would give the first layer exactly the
# one-channel activations. The head is a softmax over background, oedema and tumour core
# (Dice + cross-entropy); the held-out fold is scored on whole volumes, label by label.

# %%
import contextlib
import io

results = {}
for init in ("genesis", "he_uniform"):
    run = WORK / "own_data" / f"finetune_{init}"
    argv = ["finetune", "--task", "custom", "--data", str(prepared), "--out", str(run),
            "--init", init, "--overwrite", "--verbose", "0", *settings]
    if init == "genesis":
        argv += ["--weights", str(weights)]
    with contextlib.redirect_stdout(io.StringIO()):  # the command prints every result as JSON
        assert main(argv) == 0
    results[init] = json.loads((run / "results.json").read_text())
for init, r in results.items():
    labels = ", ".join(f"{100 * d:.1f}%" for d in r["volume_label_dice"])
    print(f"{init:>10}: mean Dice {100 * r['score']:.1f}% (oedema, core: {labels}) over "
          f"{r['n_test_volumes']} test volumes, {r['epochs']} epochs")

# %% [markdown]
# ## 4. `predict-volume`: a held-out case, in its own geometry

# %%
from models_genesis.data.io.volumes import read_volume

test_image = results["genesis"]["volume_scores"][0]["image"]
case = Path(test_image).name.replace("_0000.nii.gz", "")
inputs = [str(data_dir / "imagesTr" / f"{case}_{c:04d}.nii.gz") for c in range(2)]
predicted = WORK / "own_data" / f"{case}_predicted.nii.gz"
assert main(["predict-volume", "--model", str(WORK / "own_data" / "finetune_genesis"),
             "--input", *inputs, "--output", str(predicted), "--overwrite"]) == 0
flair, t1 = (read_volume(p) for p in inputs)
truth = read_volume(data_dir / "labelsTr" / f"{case}.nii.gz")
prediction = read_volume(predicted)
print("same geometry as the input:", prediction.shape == flair.shape,
      prediction.spacing == flair.spacing, prediction.direction == flair.direction)

# %%
from matplotlib.colors import ListedColormap

z = int(np.argmax((truth.array > 0).sum((0, 1))))
colours = ListedColormap([(0, 0, 0, 0), (1.0, 0.8, 0.0, 0.5), (1.0, 0.1, 0.1, 0.6)])
fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
for ax, (title, image, labels) in zip(axes, [
        ("FLAIR", flair.array, None), ("T1", t1.array, None),
        ("true labels", flair.array, truth.array), ("predicted (Genesis)", flair.array,
                                                      prediction.array)]):
    ax.imshow(image[:, :, z].T, cmap="gray")
    if labels is not None:
        ax.imshow(labels[:, :, z].T, cmap=colours, vmin=0, vmax=2, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.suptitle(f"{case}, slice {z}: oedema (yellow) and tumour core (red)", fontsize=10)
show(fig, "11_overlay.png")

# %%
save_summary("11_your_own_data", {
    "results": {k: {m: r[m] for m in ("metric", "score", "volume_label_dice", "epochs",
                                      "n_test_volumes")} for k, r in results.items()},
    "prepared": sorted(p.name for p in prepared.iterdir()),
    "prediction_shape": list(prediction.shape), "input_shape": list(flair.shape),
    "prediction_labels": sorted(int(v) for v in np.unique(prediction.array)),
    "figure": str(FIGURES / "11_overlay.png")})
