"""`models-genesis summary` and `models-genesis demo`."""

from __future__ import annotations

import os

from models_genesis.cli import RANGES, ranged


def _summary(args) -> int:
    from models_genesis.models.unet3d import unet_model_3d

    model = unet_model_3d(tuple(args.input_shape), n_base_filters=args.n_base_filters,
                          depth=args.depth, data_format=args.data_format)
    model.summary(line_length=110)
    print(f"parameters: {model.count_params():,}")
    if args.weights:
        from models_genesis.models.presets import resolve_weights
        from models_genesis.models.weights import load_keras2_weights

        path = resolve_weights(args.weights)
        filled = load_keras2_weights(model, path, by_name=args.by_name)
        print(f"loaded {len(filled)} layers from {path}")
    return 0


def _demo(args) -> int:
    from models_genesis.outputs import claim_output_dir
    from models_genesis.pipeline.demo import run_demo

    out = args.out or ("runs/demo_long" if args.long else "runs/demo")
    claim_output_dir(out, "demo", overwrite=args.overwrite, legacy=lambda folder: any(
        os.path.isdir(os.path.join(folder, name)) for name in ("pretrain", "comparison")))
    run_demo(out, overwrite=args.overwrite, long=args.long)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("summary", help="build the release's 3D U-Net, print its layers "
                              "and parameter count, optionally load weights")
    p.add_argument("--input-shape", type=ranged(RANGES["side"]), nargs=4, default=[64, 64, 32, 1],
                   metavar=("R", "C", "D", "CH"), help="model input shape (default 64 64 32 1)")
    p.add_argument("--n-base-filters", type=ranged(RANGES["n_base_filters"]), default=32,
                   help="filters of the first block (32)")
    p.add_argument("--depth", type=ranged(RANGES["depth"]), default=4,
                   help="levels of the U-Net's encoder (default and release: 4)")
    p.add_argument("--data-format", choices=["channels_last", "channels_first"],
                   default="channels_last",
                   help="layout of the model's input: channels_last (default) or channels_first "
                   "(the release's); the weights are the same")
    p.add_argument("--weights", help="a weight file or preset name (e.g. genesis_chest_ct)")
    p.add_argument("--by-name", action="store_true", help="match layers by name, not order")
    p.set_defaults(func=_summary)

    d = subparsers.add_parser("demo", help="the main job on the embedded phantoms: model, "
                              "pre-training (demo preset), linear probe and fine-tuning against "
                              "scratch")
    d.add_argument("--out", help="folder the demo writes everything to (default runs/demo, "
                   "with --long runs/demo_long)")
    d.add_argument("--long", action="store_true", help="the 25-45 minute version (2 CPU cores): "
                   "2x the pre-training (2,000 steps), 10 runs per arm, fine-tuning at 10 and "
                   "25%% of the labels")
    d.add_argument("--overwrite", action="store_true", help="redo steps whose outputs exist")
    d.set_defaults(func=_demo)
