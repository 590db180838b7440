"""`models-genesis make-phantoms` and `models-genesis extract-cubes`: the data stage."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-phantoms", help="write a synthetic phantom data set in a real format "
        "(default: LUNA16-like chest CT)",
        description="Write synthetic scans in the real formats. chest: LUNA16 layout, "
        "subsetK/*.mhd + .raw (int16 HU), annotations.csv, candidates.csv and masks/*.mhd "
        "(pre-training, NCC, NCS); abdomen: LiTS volume-N.nii + segmentation-N.nii (LCS); "
        "brain: BraTS 2018 folders with *_flair.nii.gz + *_seg.nii.gz (BMS); pe: CTPA-like "
        "volumes + candidates.csv (ECC).")
    p.add_argument("--kind", choices=("chest", "abdomen", "brain", "pe"), default="chest",
                   help="which data set to write (default chest)")
    p.add_argument("--out", default="datasets/phantom", help="output folder")
    p.add_argument("--n", type=int, default=None,
                   help="number of scans (chest: default 20, >= --subsets; others: default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subsets", type=int, default=10, help="chest only: number of subset folders")
    p.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                   help="voxels per scan (default: the generator's, e.g. 192 192 96 for chest)")
    p.set_defaults(func=_make_phantoms)

    p = subparsers.add_parser(
        "extract-cubes", help="extract proxy-task cubes from scans (bat_*.npy per subset)",
        description="Random crops away from the borders, filtered for tissue (REFERENCE 3), "
        "written as bat_{scale}_s_{r}x{c}x{d}_{subset}.npy plus a JSON manifest.")
    p.add_argument("--data", required=True, help="folder holding subsetK/ folders")
    p.add_argument("--subsets", nargs="+", required=True, help="subsets, e.g. 0 1 2 3 4")
    p.add_argument("--out", required=True, help="output folder for the cube files")
    p.add_argument("--preset", choices=("release", "demo"), default="release",
                   help="release: 64x64x32 cubes, borders 100/30; demo: 32x32x16 for phantoms")
    p.add_argument("--cube-shape", type=int, nargs=3, metavar=("R", "C", "D"), default=None)
    p.add_argument("--scale", type=int, default=None, help="cubes per scan")
    p.add_argument("--dtype", choices=("float16", "float32", "float64"), default=None)
    p.add_argument("--pattern", default="*.mhd", help="scan file pattern inside a subset folder")
    p.add_argument("--workers", type=int, default=None, help="processes (0/1: none)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_extract_cubes)


def _make_phantoms(args) -> int:
    from models_genesis.data.phantoms.targets import get_phantom_maker

    options = {"seed": args.seed}
    if args.n is not None:
        options["n"] = args.n
    if args.shape is not None:
        options["shape"] = tuple(args.shape)
    if args.kind == "chest":
        options["n_subsets"] = args.subsets
    summary = get_phantom_maker(args.kind)(args.out, **options)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _extract_cubes(args) -> int:
    import dataclasses

    from models_genesis.data.subvolumes import ExtractionConfig, extract_cubes

    config = ExtractionConfig.demo() if args.preset == "demo" else ExtractionConfig()
    overrides = {"cube_shape": tuple(args.cube_shape) if args.cube_shape else None,
                 "scale": args.scale, "dtype": args.dtype}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    summary = extract_cubes(args.data, args.subsets, args.out, config=config, seed=args.seed,
                            workers=args.workers, pattern=args.pattern)
    print(json.dumps({k: v for k, v in summary.items() if k != "skipped"}, indent=2))
    for skip in summary["skipped"]:
        print(f"skipped {skip['path']}: {skip['reason']} ({skip['detail']})")
    return 0
