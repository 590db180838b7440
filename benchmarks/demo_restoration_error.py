"""Where a demo pre-training's error on untransformed cubes lies.

Measured so far: docs/results.md, 'Log: what the demo pre-training learns in its budget'.

Loads the restoration model of a finished pre-training run and, on 32 validation cubes (the
first of `config.val_subsets`, as `make demo`'s restoration table), prints:

* the MSE on untransformed cubes (doing nothing scores 0), in inference mode and with BatchNorm
  in training mode (batch statistics of 8 untransformed cubes);
* that error by intensity band of the original (share of voxels, MSE) and its mean (bias);
* inside the cube (4 voxels from each in-plane face, 2 from each depth face) against all voxels;
* the prediction against Gaussian-blurred originals (sigma in voxels): when the prediction is
  closest to a blur, the model returns a smoothed cube;
* the model on locally shuffled cubes (the combination it fails to beat doing nothing on) against
  untransformed ones: the same error on both means it does not tell them apart;
* a figure (`--figure`): original, prediction and difference, middle slice of 4 cubes.

    python benchmarks/demo_restoration_error.py runs/demo/pretrain --figure /tmp/identity.png
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from models_genesis.evaluation.restoration import restoration_by_combination
from models_genesis.pipeline.demo import load_run_model
from models_genesis.plotting import new_figure, save_figure

BANDS = ((0.0, 0.05), (0.05, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.01))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a finished pre-training folder (config.json, Genesis_Chest_CT.h5)")
    p.add_argument("--cubes", type=int, default=32)
    p.add_argument("--figure", help="PNG of original / prediction / difference")
    args = p.parse_args(argv)

    config, model, cubes = load_run_model(args.run, args.cubes)
    x = cubes[..., None]
    pred = model.predict(x, verbose=0)[..., 0]
    train_mode = np.concatenate([np.asarray(model(x[i:i + 8], training=True))[..., 0]
                                 for i in range(0, len(x), 8)])
    err = pred - cubes
    print(f"untransformed cubes: MSE {np.mean(err ** 2):.2e} (BatchNorm in training mode: "
          f"{np.mean((train_mode - cubes) ** 2):.2e}); mean error (bias) {err.mean():+.4f}; "
          f"cube variance {cubes.var():.4f}")
    print("by intensity band of the original: band | share of voxels | MSE")
    for lo, hi in BANDS:
        sel = (cubes >= lo) & (cubes < hi)
        if sel.any():
            print(f"  [{lo:.2f}, {min(hi, 1):.2f}) | {sel.mean():.3f} | {np.mean(err[sel] ** 2):.2e}")
    inner = err[:, 4:-4, 4:-4, 2:-2]
    print(f"inside (4 / 4 / 2 voxels from the faces, {inner.size / err.size:.0%} of the voxels): "
          f"MSE {np.mean(inner ** 2):.2e}; all voxels {np.mean(err ** 2):.2e}")
    for sigma in (0.5, 0.75, 1.0, 1.5):
        blurred = ndimage.gaussian_filter(cubes, sigma=(0, sigma, sigma, sigma))
        print(f"blur sigma {sigma}: prediction vs blurred original {np.mean((pred - blurred) ** 2):.2e}, "
              f"blurred vs original {np.mean((blurred - cubes) ** 2):.2e}")
    table = restoration_by_combination(model, cubes, seed=config.seed)
    ident, shuffled = table.loc["identity"], table.loc["local_shuffling"]
    print(f"model on untransformed cubes {ident.model_mse:.2e}, on locally shuffled cubes "
          f"{shuffled.model_mse:.2e} (doing nothing {shuffled.identity_mse:.2e}): ratio "
          f"{ident.model_mse / shuffled.model_mse:.2f}")
    if args.figure:
        fig, axes = new_figure(3, 4, figsize=(10, 7.5))
        mid = cubes.shape[-1] // 2
        for k in range(4):
            for row, (image, cmap, lim) in enumerate(((cubes[k], "gray", (0, 1)),
                                                      (pred[k], "gray", (0, 1)),
                                                      (err[k], "bwr", (-0.3, 0.3)))):
                axes[row, k].imshow(image[..., mid], cmap=cmap, vmin=lim[0], vmax=lim[1])
                axes[row, k].axis("off")
        for row, label in enumerate(("original", "prediction", "prediction - original")):
            axes[row, 0].set_title(label, fontsize=8, loc="left")
        print("figure:", save_figure(fig, args.figure, dpi=90))


if __name__ == "__main__":
    main()
