# %% [markdown]
# # The paper's comparison: Models Genesis against six self-supervised 3D baselines (Table 3)
#
# Table 3 of the paper compares Models Genesis with the scratch initialisers and with six
# self-supervised methods, each revised in 3D (App. A) and pre-trained on the same LUNA16 cubes.
# They fall into two kinds:
#
# * **restoration** (the whole 3D U-Net learns to map a damaged cube back to its original, MSE):
#   `genesis` (the unified scheme, Sec. 2), `denoising` (additive Gaussian noise, App. A.1),
#   `inpainting` (cutout boxes, loss on the cutouts only, App. A.2) and `patch_shuffling`
#   (10 swaps of two equal patches, App. A.4). They save **the whole U-Net**;
# * **classification** (the U-Net's *encoder* learns to name something about the cube; the head
#   is thrown away): `jigsaw` (which of P permutations shuffled a 3x3x3 grid of patches,
#   App. A.3), `rubik` (order and 180-degree rotations of a 2x2x2 grid, App. A.6) and
#   `deepcluster` (the k-means cluster of the encoder's own features, App. A.5). They save
#   **the encoder** `depth_0..7`.
#
# All seven run through one command, `models-genesis pretrain --method M`, read the same cube
# files and write weights that `finetune --init M --weights FILE` loads. This notebook shows
# **(1)** what each method's proxy task looks like on one phantom cube, **(2)** a demo-size
# pre-training of each, measured against what a model that learned nothing scores, and
# **(3)** a small comparison in Table 3's layout on phantom NCC.

# %% include: _setup.py

# %% [markdown]
# ## Switching to real data and the paper's settings
#
# > **Real data.** Extract the release's 64x64x32 cubes from LUNA16 subsets 0-6 once
# > (`models-genesis extract-cubes --data datasets/luna16 --subsets 0 1 2 3 4 5 6 --out
# > datasets/luna16_cubes`), then pre-train every method on them with the paper's values (every
# > option's default; `config.json` records them):
# >
# > ```bash
# > for m in genesis denoising inpainting patch_shuffling jigsaw rubik deepcluster; do
# >     models-genesis pretrain --method $m --data datasets/luna16_cubes --out runs/$m
# > done
# > models-genesis experiment --tasks ncc ncs --data ncc=datasets/luna16 ncs=datasets/lidc_ncs \
# >     --inits genesis=runs/genesis/Genesis_Chest_CT.h5 denoising=runs/denoising/denoising.h5 \
# >             inpainting=runs/inpainting/inpainting.h5 jigsaw=runs/jigsaw/jigsaw.h5 \
# >             deepcluster=runs/deepcluster/deepcluster.h5 \
# >             patch_shuffling=runs/patch_shuffling/patch_shuffling.h5 rubik=runs/rubik/rubik.h5 \
# >             uniform glorot_uniform he_uniform --runs 10 --out runs/table3
# > ```
# >
# > The demo below changes what a CPU needs: 32x32x32 cubes from the phantoms, 4 base filters,
# > a few dozen steps per method, fewer permutations for Jigsaw and Rubik's cube (24 instead of
# > 100) and fewer clusters for DeepCluster (10 instead of 260: k cannot exceed the number of
# > training cubes), 1-2 fine-tuning runs instead of 10.

# %%
import dataclasses
import time

import pandas as pd

from models_genesis.config import PretrainConfig
from models_genesis.methods import ENCODER_METHODS, get_method, make_options

# Table 3's order of the self-supervised rows, Models Genesis last.
METHODS = ["denoising", "inpainting", "jigsaw", "deepcluster", "patch_shuffling", "rubik", "genesis"]
OPTIONS = {  # demo-size options; every other option keeps the paper's value
    "jigsaw": {"n_permutations": 24, "patch_units": 32, "fc_units": 64},
    "rubik": {"n_permutations": 24, "patch_units": 32},
    "deepcluster": {"n_clusters": 10, "pca_dims": 8, "fc_units": 64},
}
CUBE = (32, 32, 32)
N_BASE_FILTERS = 4  # the same width for every method: the fine-tuned models must match
SCHEDULE = (dict(epochs=1, steps_per_epoch=2, validation_steps=1) if SMALL
            else dict(epochs=5, steps_per_epoch=12, validation_steps=4))
options = {name: make_options(name, OPTIONS.get(name)) for name in METHODS}
for name in METHODS:
    print(f"{name:16s} writes the {get_method(name).WRITES:7s} options {options[name]}")

# %% [markdown]
# **Why 32x32x32 cubes.** The puzzle methods cut a cube into a grid and feed every patch to the
# U-Net's encoder, whose three poolings (depth 4) need patches of at least 8 voxels a side. With
# the demo's usual 32x32x16 cubes Jigsaw's patches would be 4 voxels deep; each method's `check`
# refuses such cubes before training, naming the smallest size that fits:

# %%
jigsaw, rubik = get_method("jigsaw"), get_method("rubik")
for shape in ((32, 32, 16), CUBE):
    for module in (jigsaw, rubik):
        try:
            module.check(options[module.NAME], shape, 100, depth=4)
            print(f"{module.NAME}, cubes {shape}: accepted")
        except ValueError as err:
            print(f"{module.NAME}, cubes {shape}: {err}")

# %% [markdown]
# ## The cubes
#
# The chest phantoms (the LUNA16 layout; shared with the other notebooks) give the unlabeled
# scans. Cubes of 32x32x32 are cut from subsets 0-6 as for the demo pre-training; deeper cubes
# hold more tissue, so the tissue filter's fraction is raised from 0.15 to 0.35 (and the z
# border lowered to 4 slices) to keep enough of them. Subsets 0-4 train, 5-6 validate.

# %%
from models_genesis.data.io.cube_files import find_cube_files, open_cubes
from models_genesis.data.phantoms.chest import make_chest_phantoms
from models_genesis.data.pretraining.cubes import ExtractionConfig
from models_genesis.pipeline.extract_cubes import extract_cubes

CHEST_DIR = WORK / "chest_phantoms"  # the phantoms of the other notebooks
if not (CHEST_DIR / "phantoms.json").is_file():
    make_chest_phantoms(CHEST_DIR, n=10 if SMALL else 20, seed=0,
                        shape=(128, 128, 64) if SMALL else (192, 192, 96))
CUBES = WORK / "methods" / "cubes"
SUBSETS = [str(k) for k in range(7)]
extraction = ExtractionConfig.demo(cube_shape=CUBE, tissue_fraction=0.35, border_z=4)
try:
    files = find_cube_files(CUBES, SUBSETS, CUBE)
except (FileNotFoundError, ValueError):
    summary = extract_cubes(CHEST_DIR, SUBSETS, CUBES, config=extraction, seed=0, workers=0,
                            progress=False, overwrite=True)  # the notebook's own folder
    files = find_cube_files(CUBES, SUBSETS, CUBE)
n_cubes = {s: len(open_cubes(f)) for s, f in zip(SUBSETS, files)}
print("cubes per subset:", n_cubes)
val_cubes = np.asarray(open_cubes(files[5]), dtype=np.float32)
cube = val_cubes[np.argmax(val_cubes.std(axis=(1, 2, 3)))]  # a validation cube with structure

# %% [markdown]
# ## 1. The seven proxy tasks on one cube
#
# The same validation cube through each method's own pair (or label) maker, as the training
# generators call them. Restoration methods: the input and the target (the original; for
# in-painting, the loss is taken inside the red outlines only). Jigsaw and Rubik's cube: the
# middle layer of the grid of shuffled patches, and the same patches put back by the label
# (Jigsaw: the permutation's index; Rubik's cube: the ordering's index and a rotation flag per
# sub-cube). DeepCluster has no pair: its label is the cube's current cluster.

# %%
from models_genesis.methods._puzzle import crop_patches, patch_shape, unshuffle_patches


def mosaic(patches, grid):
    """Middle axial slice of the middle layer of a grid of patches `(grid**3, pr, pc, pd)`,
    one voxel of gap (NaN) between patches: the 2D image `(grid * (pr + 1), grid * (pc + 1))`."""
    g, pr, pc, pd = patches.shape
    padded = np.pad(patches, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=np.nan)
    layer = padded.reshape(grid, grid, grid, pr + 1, pc + 1, pd)[:, :, grid // 2, :, :, pd // 2]
    return layer.transpose(0, 2, 1, 3).reshape(grid * (pr + 1), grid * (pc + 1))


batch, z = cube[None], CUBE[2] // 2
panels, checks = {}, {}
for k, name in enumerate(METHODS):
    method, opts, rng = get_method(name), options[name], np.random.default_rng(k)
    if name in ("jigsaw", "rubik"):
        grid = method.GRID
        patch = patch_shape(CUBE, grid, opts.patch_fraction)
        if name == "jigsaw":
            starts, labels = method.sample_jigsaw_params(1, CUBE, opts, rng=rng)
            x = method.apply_jigsaw(batch, starts, labels, opts)
            solved = unshuffle_patches(x, method.permutations(opts)[labels])
            note = f"label {labels[0]} of {opts.n_permutations} permutations"
        else:
            starts, labels, rotations = method.sample_rubik_params(1, CUBE, opts, rng=rng)
            x = method.apply_rubik(batch, starts, labels, rotations, opts)
            solved = method.solve_rubik(x, labels, method.orientation_targets(rotations), opts)
            note = f"order {labels[0]} of {opts.n_permutations}, {np.count_nonzero(rotations)} of 8 rotated"
        checks[f"{name}_label_restores_patches"] = bool(np.array_equal(solved, crop_patches(batch, starts, patch)))
        panels[name] = (mosaic(x[0], grid), mosaic(solved[0], grid), None, "shuffled patches",
                        f"put back by the label:\n{note}")
    elif name == "deepcluster":
        panels[name] = (cube[:, :, z], None, None, "the cube", None)
    else:
        x, y = method.make_pairs(batch, rng, opts)
        mask = y[0, ..., 1] if y.ndim == 5 else None  # in-painting: (original, cutout mask)
        y = y[..., 0] if y.ndim == 5 else y
        s = z if mask is None else int(np.argmax(mask.sum(axis=(0, 1))))  # a slice with cutouts
        panels[name] = (x[0][:, :, s], y[0][:, :, s], None if mask is None else mask[:, :, s],
                        "input", "target (original)")
        if name == "denoising":
            checks["denoising_noise_sd"] = float(np.std(x - y))
        if name == "inpainting":
            checks["inpainting_equal_outside_cutouts"] = bool(np.array_equal(x[0][mask == 0], y[0][mask == 0]))
            checks["inpainting_cutout_fraction"] = float(mask.mean())
        if name == "patch_shuffling":
            checks["patch_shuffling_keeps_values"] = bool(np.array_equal(np.sort(x, axis=None),
                                                                         np.sort(y, axis=None)))
            checks["patch_shuffling_changed_fraction"] = float(np.mean(x != y))

fig, axes = plt.subplots(2, len(METHODS), figsize=(2.3 * len(METHODS), 5.2))
for j, name in enumerate(METHODS):
    top, bottom, mask, top_title, bottom_title = panels[name]
    axes[0, j].imshow(top.T, cmap="gray", vmin=0, vmax=1)
    axes[0, j].set_title(f"{name}\n{top_title}", fontsize=8)
    if bottom is None:
        axes[1, j].text(0.5, 0.5, f"label: the cube's k-means\ncluster (k = {options[name].n_clusters})\n"
                        "of the encoder's features,\nre-clustered every epoch",
                        ha="center", va="center", fontsize=7, transform=axes[1, j].transAxes)
    else:
        axes[1, j].imshow(bottom.T, cmap="gray", vmin=0, vmax=1)
        axes[1, j].set_title(bottom_title, fontsize=7)
    if mask is not None:
        axes[1, j].contour(mask.T, levels=[0.5], colors="r", linewidths=0.8)
    for ax in axes[:, j]:
        ax.set_xticks([])
        ax.set_yticks([])
fig.suptitle(f"One validation cube {CUBE} (an axial slice) under each proxy task", fontsize=10)
show(fig, "09_pairs.png")
print(checks)

# %% [markdown]
# What the checks say: de-noising adds noise of one standard deviation per cube, drawn in
# [0, 0.1]; in-painting leaves every voxel outside its cutouts unchanged; patch shuffling only
# moves voxels (the sorted values are equal); the puzzles' labels put every patch back exactly.
#
# ## 2. A demo-size pre-training of each method
#
# `pretrain(PretrainConfig(method=M, method_options=...))`, the same function behind
# `models-genesis pretrain --method M`, with the same number of steps for every method. The
# restoration methods share the demo's schedule (Adam 1e-3, batch 8); the classification
# baselines train with their authors' optimiser (docs/methods.md: Jigsaw and Rubik's cube Adam
# 1e-4, DeepCluster SGD 0.05 with momentum 0.9 and weight decay 1e-5, a fixed number of epochs
# and the last weights), which `config.json` records. Before training, each run prints what a
# model that learned nothing scores on the validation set: for restoration, the MSE of returning
# the damaged input unchanged (for in-painting, over the cutout voxels); for classification, the
# chance level (loss and accuracy). At the end it says whether the proxy task was learned:
# restoration below doing nothing, classification above chance accuracy by 3 standard errors.

# %%
from models_genesis.training.pretrain import pretrain

runs, timings = {}, {}
for name in METHODS:
    config = PretrainConfig.preset(
        "demo", data_dir=str(CUBES), out_dir=str(WORK / "methods" / name), cube_shape=CUBE,
        method=name, method_options=OPTIONS.get(name), n_base_filters=N_BASE_FILTERS,
        train_subsets=SUBSETS[:5], val_subsets=SUBSETS[5:], workers=0, tensorboard=False,
        sample_every=0, figures=False, **SCHEDULE,
        # the classification baselines: their authors' optimiser, not the demo's
        **({"optimizer": None, "learning_rate": None} if name in ENCODER_METHODS else {}))
    print(f"--- {name} ---")
    start = time.perf_counter()
    runs[name] = pretrain(config, overwrite=True, verbose=0)  # the notebook's own run folder
    timings[name] = time.perf_counter() - start

# %%
from models_genesis.methods import proxy_summary

rows = []
for name in METHODS:
    m = runs[name]["metrics"]
    proxy = proxy_summary(name, m)
    if name in ENCODER_METHODS:
        reached, level, what = m["loss"], m["chance_level"]["loss"], "validation loss vs chance"
    else:
        reached, level = m["model_mse"], m["identity_mse"]
        what = "MSE vs identity" + (" (cutouts)" if name == "inpainting" else "")
    rows.append({"method": name, "writes": get_method(name).WRITES, "measure": what,
                 "reached": reached, "doing nothing / chance": level, "ratio": reached / level,
                 "proxy score": proxy["proxy_score"], "proxy chance": proxy["proxy_chance"],
                 "proxy learned": proxy["proxy_learned"],
                 "optimizer": runs[name]["config"]["optimizer"],
                 "learning rate": runs[name]["config"]["learning_rate"],
                 "epochs": runs[name]["epochs"], "seconds": round(timings[name], 1),
                 "weights": os.path.relpath(runs[name]["paths"]["keras2_weights"])})
pretraining = pd.DataFrame(rows).set_index("method")
pretraining

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for name in METHODS:
    log = pd.read_csv(runs[name]["paths"]["csv_log"])
    level = pretraining.loc[name, "doing nothing / chance"]
    style = "o--" if name in ENCODER_METHODS else "o-"
    ax.plot(log["epoch"] + 1, log["val_loss"] / level, style, label=name)
ax.axhline(1.0, color="grey", lw=1)
ax.set(xlabel="epoch", ylabel="validation loss / doing-nothing level", yscale="log",
       title="Below 1: better than a model that learned nothing")
ax.legend(fontsize=7, ncol=2)
show(fig, "09_pretraining_curves.png")

# %% [markdown]
# Reading the ratios: the restoration levels differ a lot between methods. De-noising's
# identity is very good already (noise of s.d. up to 0.1 costs an MSE of about 0.003 on
# average), and a few dozen steps of a small U-Net need not beat it; Models Genesis'
# transformations destroy far more, so its identity is much worse and easier to beat. Classification levels are the entropy of
# the labels. DeepCluster's loss is measured against the clustering of its last epoch, which
# changes every epoch: compare it with chance, not across epochs.
#
# ## 3. Table 3 in miniature: NCC from each method's weights
#
# `run_experiment` fine-tunes every named initialisation (`METHOD=FILE`, plus the scratch
# `he_uniform`) on phantom NCC (nodule false-positive reduction, AUC), with the same seeds for
# every method, and writes Table 3's layout: mean ± s.d. over runs, the best marked `*` and an
# independent two-sample t-test of the others against it (`?` where no test is possible: one
# run, or identical runs). NCC uses the encoder only, so all seven methods hand over the same
# part of the U-Net. Each row also carries its pre-training's proxy-task score (`proxy_*`
# columns, read from `metrics.json` beside the weights): a row whose pre-training did not beat
# chance (or doing nothing) is marked `†` with a footnote, since it compares weights that learned
# nothing.

# %%
import shutil

from models_genesis.data.target_tasks import load_target_data
from models_genesis.pipeline.experiment import run_experiment

RUNS = 1 if SMALL else 2
finetuning = dict(n_base_filters=N_BASE_FILTERS, input_shape=(32, 32, 16), batch_size=8,
                  epochs=1 if SMALL else 5, patience=1 if SMALL else 3,
                  steps_per_epoch=1 if SMALL else None, validation_steps=1 if SMALL else None)
inits = [f"{name}={runs[name]['paths']['keras2_weights']}" for name in METHODS] + ["he_uniform"]
data = load_target_data("ncc", CHEST_DIR, seed=0, input_shape=finetuning["input_shape"])
print("NCC crops per split:", data.info["counts"])
TABLE3 = WORK / "methods" / "table3_ncc"
shutil.rmtree(TABLE3, ignore_errors=True)  # new weights above: a resume would be refused
experiment = run_experiment("ncc", inits, runs=RUNS, data=data, out_dir=TABLE3, seed=0,
                            overrides=finetuning, verbose=0,
                            run_eagerly=SMALL)  # test-sized runs: faster without graph tracing
print(experiment["table"])
print("rows flagged (pre-training learned nothing):", sorted(experiment["proxy_flags"]) or "none")

# %% [markdown]
# The paper's NCC column (10 runs of the full U-Net on LUNA16, AUC in %) next to ours:

# %%
PAPER_NCC = {"denoising": (95.92, 1.83), "inpainting": (91.46, 2.97), "jigsaw": (95.47, 1.24),
             "deepcluster": (97.22, 0.55), "patch_shuffling": (91.93, 2.32),
             "rubik": (96.24, 1.27), "genesis": (98.34, 0.44), "he_uniform": (96.03, 1.82)}
summary = experiment["summary"]
comparison = pd.DataFrame([{
    "method": r["method"].split(" ")[0], "ours: AUC (%)": 100 * r["mean"], "s.d.": 100 * r["sd"],
    "runs": r["n"], "best": "*" if r["is_best"] else "", "p vs best": r["p_value"], "test": r["test"],
    "pre-training learned": pretraining["proxy learned"].get(r["method"].split(" ")[0], "-"),
    "paper: AUC (%)": "{:.2f} ± {:.2f}".format(*PAPER_NCC[r["method"].split(" ")[0]])}
    for r in summary.to_dict(orient="records")]).set_index("method").loc[METHODS + ["he_uniform"]]
comparison.round(2)

# %%
for name, path in experiment["figures"].items():
    print(name)
    display(Image(filename=path, width=520))

# %% [markdown]
# ## Reading the numbers
#
# These are single (or two) runs of a 4-filter U-Net pre-trained for a few dozen steps on
# phantoms: they show that every method's weights load and fine-tune through the same runner,
# not which method is better. The paper's ranking needs its scale: 64x64x32 cubes of 623 CT
# scans, the 32-filter U-Net trained to convergence, and 10 runs per cell (its gaps on NCC are
# one to seven AUC points, with standard deviations of 0.4 to 3).

# %%
save_summary("09_methods", {
    "methods": METHODS, "cube_shape": list(CUBE), "n_base_filters": N_BASE_FILTERS,
    "cubes_per_subset": n_cubes,
    "options": {k: dataclasses.asdict(v) for k, v in options.items()},
    "pair_checks": checks,
    "pretraining": {name: {"writes": r["writes"], "reached": r["reached"],
                           "level": r["doing nothing / chance"], "ratio": r["ratio"],
                           "proxy_learned": r["proxy learned"],
                           "optimizer": r["optimizer"], "learning_rate": r["learning rate"],
                           "epochs": int(r["epochs"]), "seconds": r["seconds"],
                           "weights": str(Path(runs[name]["paths"]["keras2_weights"]).resolve())}
                    for name, r in pretraining.to_dict(orient="index").items()},
    "task": "ncc", "runs": RUNS, "inits": [i.split("=")[0] for i in inits],
    "n_runs": int(len(experiment["results"])), "scores": experiment["results"]["score"].tolist(),
    "summary": summary.to_dict(orient="records"), "proxy_flags": experiment["proxy_flags"],
    "figures": sorted(p.name for p in FIGURES.glob("09_*.png")),
    "experiment_figures": {k: str(v) for k, v in experiment["figures"].items()}})
