"""`models-genesis compare-2d`: 3D against 2D slice-based and 2.5D orthogonal inputs on one
target task (paper Sec. 4.5, Table 4, Fig. 7), `models_genesis.pipeline.compare2d`."""

from __future__ import annotations

import argparse
import json

from models_genesis.cli import RANGES, UserError, ranged


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare-2d", help="Table 4 / Fig. 7: 2D, 2.5D and 3D inputs from Random, ImageNet and "
        "Genesis on one target task",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=("ncc", "ncs", "ecc", "lcs", "bms"),
                   help="target task whose crops are fed as 3D cubes, 2D slices and 2.5D "
                   "orthogonal slices")
    p.add_argument("--data", required=True, help="the task's data folder (as for finetune)")
    p.add_argument("--out", required=True,
                   help="folder for the comparison's results (results.json, table4.md) and its "
                   "runs (runs/)")
    p.add_argument("--weights-3d", default=None,
                   help="Genesis Chest CT (3D) file or preset for the 3D Genesis cell")
    p.add_argument("--weights-2d", default=None,
                   help="Genesis 2D file or preset (genesis_chest_ct_2d, genesis_chest_xray)")
    p.add_argument("--extra-2d", nargs="+", default=(), metavar="NAME=FILE",
                   help="more Genesis 2D columns, e.g. genesis_xray=Genesis_Chest_Xray.h5 (Fig. 7)")
    p.add_argument("--imagenet", default=None,
                   help="keras-hub preset for the ImageNet cells, e.g. resnet_50_imagenet")
    p.add_argument("--runs", type=ranged(RANGES["runs"]), default=10,
                   help="runs per cell, each with its own seed (paper: 10)")
    p.add_argument("--seed", type=ranged(RANGES["seed"]), default=0,
                   help="seed of the split and of the first run; run r uses seed + r (default 0)")
    p.add_argument("--input-shape", type=ranged(RANGES["side"]), nargs=3,
                   metavar=("R", "C", "D"), default=None,
                   help="crop size in voxels, each divisible by 8 (default: the task's)")
    p.add_argument("--epochs", type=ranged(RANGES["epochs"]), default=100,
                   help="maximum epochs of every cell's training; early stopping usually ends "
                   "sooner (default 100)")
    p.add_argument("--batch-size", type=ranged(RANGES["batch_size"]), default=16,
                   help="crops per training step in every cell (default 16)")
    p.add_argument("--patience", type=ranged(RANGES["patience"]), default=10,
                   help="epochs without improvement of the validation loss before a cell's run "
                   "stops (default 10)")
    p.add_argument("--depth-2d", type=ranged(RANGES["depth"]), default=4,
                   help="encoder levels of the 2D U-Net; must match --weights-2d (default 4)")
    p.add_argument("--n-base-filters-2d", type=ranged(RANGES["n_base_filters"]), default=32,
                   help="filters of the 2D U-Net's first convolution; must match --weights-2d "
                   "(default 32)")
    p.add_argument("--n-base-filters-3d", type=ranged(RANGES["n_base_filters"]), default=32,
                   help="filters of the 3D U-Net's first convolution; must match --weights-3d "
                   "(default and release: 32)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished comparison's files (results.json, table4.md, "
                   "fig7.png, runs/3d_*), or write into a non-empty folder that is not a "
                   "comparison; other files are kept. Without it such a folder is refused "
                   "before any data is read")
    p.set_defaults(func=_compare_2d)


def _compare_2d(args) -> int:
    from models_genesis.data.target_tasks import load_target_data
    from models_genesis.data.target_tasks.common import TargetData
    from models_genesis.models.presets import resolve_weights
    from models_genesis.pipeline.compare2d import claim_comparison_dir, run_2d_comparison

    claim_comparison_dir(args.out, overwrite=args.overwrite, data_dir=args.data)
    data = load_target_data(args.task, args.data, seed=args.seed,
                            input_shape=tuple(args.input_shape) if args.input_shape else None)
    if not isinstance(data, TargetData):
        raise UserError(f"compare-2d needs the crops in memory; {args.data!r} is a prepared "
                        "folder read lazily. Pass the raw data folder instead.")
    weights = {k: None if v is None else str(resolve_weights(v))
               for k, v in (("weights_3d", args.weights_3d), ("weights_2d", args.weights_2d))}
    bad = [item for item in args.extra_2d if "=" not in item]
    if bad:
        raise UserError(f"--extra-2d takes NAME=FILE items. Received: {bad}.")
    extra = {name: str(resolve_weights(path))
             for name, path in (item.split("=", 1) for item in args.extra_2d)}
    out = run_2d_comparison(args.task, data, args.out, imagenet=args.imagenet, runs=args.runs,
                            seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                            patience=args.patience, depth_2d=args.depth_2d,
                            n_base_filters_2d=args.n_base_filters_2d,
                            n_base_filters_3d=args.n_base_filters_3d, extra_2d=extra,
                            overwrite=args.overwrite, **weights)
    print(out["table"])
    print(json.dumps(out["paths"], indent=2))
    return 0
