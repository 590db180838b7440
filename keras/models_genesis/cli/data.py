"""`models-genesis make-phantoms`, `extract-cubes` and `extract-xray-crops`: the data stage."""

from __future__ import annotations

import json

from models_genesis.cli import RANGES, UserError, ranged
from models_genesis.config import Range

_BORDER = Range(int, 0, 100_000)
_UNIT = Range(float, 0, 1)


def register(subparsers) -> None:
    """Add the data stage's subcommands to the `models-genesis` parser."""
    _register_make_phantoms(subparsers)
    _register_extract_cubes(subparsers)
    _register_extract_xray_crops(subparsers)


def _register_make_phantoms(subparsers) -> None:
    p = subparsers.add_parser(
        "make-phantoms", help="write a synthetic phantom data set in a real format "
        "(default: LUNA16-like chest CT)",
        description="Write synthetic scans in the real formats. chest: LUNA16 layout, "
        "subsetK/*.mhd + .raw (int16 HU), annotations.csv, candidates.csv and masks/*.mhd "
        "(pre-training, NCC, NCS); abdomen: LiTS volume-N.nii + segmentation-N.nii (LCS); "
        "brain: BraTS 2018 folders with *_flair.nii.gz + *_seg.nii.gz (BMS); pe: CTPA-like "
        "volumes + candidates.csv (ECC); xray: ChestX-ray14 layout, images/*.png (16-bit DRRs of "
        "chest phantoms) + Data_Entry_2017.csv (Genesis X-ray).")
    p.add_argument("--kind", choices=("chest", "abdomen", "brain", "pe", "xray"), default="chest",
                   help="which data set to write (default chest)")
    p.add_argument("--out", default="datasets/phantom",
                   help="folder the phantom data set is written to (default datasets/phantom)")
    p.add_argument("--n", type=ranged(RANGES["n_scans"]), default=None,
                   help="number of scans (chest: default 20, >= --subsets; others: default 6)")
    p.add_argument("--seed", type=ranged(RANGES["seed"]), default=0,
                   help="seed of the phantoms' anatomy and lesions: the same seed writes the "
                   "same scans (default 0)")
    p.add_argument("--subsets", type=ranged(RANGES["subsets"]), default=None,
                   help="chest only: number of subset folders (default 10, or --n if fewer)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files of an earlier phantom set with the same names (only the "
                   "files this command writes); without it, existing files are never replaced")
    p.add_argument("--shape", type=ranged(RANGES["side"]), nargs=3, metavar=("X", "Y", "Z"), default=None,
                   help="voxels per scan (default: the generator's, e.g. 192 192 96 for chest)")
    p.set_defaults(func=_make_phantoms)


def _register_extract_cubes(subparsers) -> None:
    p = subparsers.add_parser(
        "extract-cubes", help="extract proxy-task cubes from scans (bat_*.npy per subset)",
        description="Random crops away from the borders, filtered for tissue "
        "(docs/release_reference.md, 'Cube extraction'), written as "
        "bat_{scale}_s_{r}x{c}x{d}_{subset}.npy plus a JSON manifest. With --subsets: "
        "the LUNA16 layout (DATA/subsetK/*.mhd, one file per subset). Without: every scan under "
        "DATA, recursively (.nii, .nii.gz, .mhd, .mha, .nrrd files and DICOM series folders), "
        "split into bat_*_train.npy and bat_*_val.npy (pretrain --train-subsets train "
        "--val-subsets val); see docs/pretrain_your_own_scans.md.")
    _add_scan_options(p)
    _add_cube_options(p)
    p.add_argument("--pattern", default="*.mhd", help="scan file pattern inside a subset folder")
    p.add_argument("--workers", type=ranged(RANGES["workers"]), default=None,
                   help="processes reading scans in parallel (0 or 1: none)")
    p.add_argument("--seed", type=ranged(RANGES["seed"]), default=0,
                   help="seed of the random crop positions (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace cube files (and manifests) of the same names in --out")
    p.set_defaults(func=_extract_cubes)


def _add_scan_options(p) -> None:
    """extract-cubes: which scans are read, how they are split, and (MR) the foreground filter."""
    p.add_argument("--data", required=True,
                   help="folder holding subsetK/ folders (with --subsets) or any scans")
    p.add_argument("--subsets", nargs="+", default=None,
                   help="LUNA16 layout: subset folders to read, by number (subsetK), e.g. "
                   "0 1 2 3 4; one cube file per subset")
    p.add_argument("--modality", nargs="+", default=None, metavar="MODALITY",
                   help="any folder: ct (HU window, the release's tissue filter; default) or mr "
                   "(per-scan 0.5-99.5 percentile scaling, foreground filter), or GLOB=MODALITY "
                   "rules matched in order against each scan's path below --data, e.g. "
                   "'*_0000.nii.gz=ct' '*=mr'")
    p.add_argument("--val-ratio", type=ranged(Range(float, 0, 1, hi_open=True)), default=None,
                   help="any folder: fraction of scans for validation, seeded shuffle (default 0.2)")
    p.add_argument("--train-list", default=None,
                   help="any folder: text file of the training scans, one path a line relative "
                   "to --data (the other scans validate unless --val-list is given)")
    p.add_argument("--val-list", default=None,
                   help="any folder: text file of the validation scans, one path a line "
                   "relative to --data")
    p.add_argument("--foreground-threshold", type=ranged(_UNIT), default=None,
                   help="MR: a voxel scaled to [0, 1] is foreground from this value (default 0.1)")
    p.add_argument("--min-foreground", type=ranged(_UNIT), default=None,
                   help="MR: keep a cube when at least this fraction of it is foreground "
                   "(default 0.5; 0 turns the filter off)")


def _add_cube_options(p) -> None:
    """extract-cubes: the output folder and the cubes' size, number, borders and number type."""
    p.add_argument("--out", required=True, help="output folder for the cube files")
    p.add_argument("--preset", choices=("release", "demo"), default="release",
                   help="release: 64x64x32 cubes, borders 100/30; demo: 32x32x16 for phantoms")
    p.add_argument("--cube-shape", type=ranged(RANGES["side"]), nargs=3, metavar=("R", "C", "D"),
                   default=None,
                   help="cube size in voxels, rows cols depth (default: the preset's; release "
                   "64 64 32)")
    p.add_argument("--slices", type=ranged(RANGES["side"]), nargs=2, metavar=("R", "C"),
                   default=None,
                   help="cut 2D axial slices R x C instead (Genesis Chest CT 2D, pretrain --dims 2): "
                   "crops one voxel deep with the in-slice tissue filter, bat_*_RxCx1_*.npy")
    p.add_argument("--scale", type=ranged(RANGES["scale"]), default=None,
                   help="cubes wanted per scan, also in the file name bat_SCALE_s_... (default "
                   "and release: 32)")
    p.add_argument("--border-xy", type=ranged(_BORDER), default=None,
                   help="voxels kept free at each in-plane border (release 100, demo 24; a "
                   "240x240 brain MRI needs less than 100)")
    p.add_argument("--border-z", type=ranged(_BORDER), default=None,
                   help="slices kept free at each end in z (release 30, demo 8)")
    p.add_argument("--dtype", choices=("float16", "float32", "float64"), default=None,
                   help="number type of the written cubes; float16 halves the files (default: "
                   "the extraction config's)")


def _register_extract_xray_crops(subparsers) -> None:
    p = subparsers.add_parser(
        "extract-xray-crops", help="cut proxy-task crops from ChestX-ray14 radiographs "
        "(Genesis X-ray; bat_*_RxCx1_{subset}.npy for pretrain --dims 2)",
        description="Read ROOT/images/*.png and ROOT/Data_Entry_2017.csv, normalise each "
        "radiograph to [0, 1] by its min and max (no clipping, Sec. 2.1), resize, cut random "
        "crops and write one file per patient-level subset (data.pretraining.xray_crops).")
    p.add_argument("--data", required=True,
                   help="the ChestX-ray14 folder, holding images/ and Data_Entry_2017.csv")
    p.add_argument("--out", required=True, help="output folder for the crop files")
    p.add_argument("--subsets", type=ranged(RANGES["subsets"]), default=10,
                   help="number of subsets the patients are split into, one crop file each "
                   "(default 10)")
    p.add_argument("--scale", type=ranged(RANGES["scale"]), default=8,
                   help="crops per radiograph (default 8)")
    p.add_argument("--crop-shape", type=ranged(RANGES["side"]), nargs=2, metavar=("R", "C"),
                   default=(64, 64),
                   help="size of each crop in pixels, rows cols (default 64 64)")
    p.add_argument("--image-size", type=ranged(RANGES["side"]), nargs=2, metavar=("R", "C"),
                   default=(256, 256),
                   help="radiographs are resized to this first (default 256 256)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float32",
                   help="number type of the written crops; float16 halves the files (default "
                   "float32)")
    p.add_argument("--seed", type=ranged(RANGES["seed"]), default=0,
                   help="seed of the patient split and the crop positions (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a folder holding other files, and replace crop files (and "
                   "manifests) of the same names; other files are kept")
    p.set_defaults(func=_extract_xray_crops)


def _make_phantoms(args) -> int:
    from models_genesis.data.phantoms.targets import get_phantom_maker

    options = {"seed": args.seed, "overwrite": args.overwrite}
    if args.n is not None:
        options["n"] = args.n
    if args.shape is not None:
        options["shape"] = tuple(args.shape)
    if args.kind == "chest":
        options["n_subsets"] = args.subsets
    elif args.subsets is not None:
        raise UserError(f"--subsets is for --kind chest only. Received: --kind {args.kind}.")
    summary = get_phantom_maker(args.kind)(args.out, **options)
    print(json.dumps(summary, indent=2, default=str))
    if args.kind == "chest" and summary["n_subsets"] < 10:
        split = summary["split"]
        note = ("too few for a train/validation/test split" if split is None else
                "use them as " + ", ".join(f"{k} {' '.join(v)}" for k, v in split.items()) +
                f" (e.g. pretrain --train-subsets {' '.join(split['train'])} --val-subsets "
                f"{' '.join(split['val'])})")
        print(f"note: {summary['n_scans']} scans in {summary['n_subsets']} subset folders "
              f"instead of LUNA16's 10: {note}")
    return 0


def _extract_cubes(args) -> int:
    from models_genesis.pipeline.extract_cubes import extract_cubes, extract_cubes_from_folder

    _check_scan_selection(args)
    config = _extraction_config(args)
    if args.subsets is not None:
        summary = extract_cubes(args.data, args.subsets, args.out, config=config, seed=args.seed,
                                workers=args.workers, pattern=args.pattern,
                                overwrite=args.overwrite)
    else:
        summary = extract_cubes_from_folder(
            args.data, args.out, config=config, modality=args.modality or "ct",
            val_ratio=0.2 if args.val_ratio is None else args.val_ratio,
            train_list=args.train_list, val_list=args.val_list, seed=args.seed,
            workers=args.workers, overwrite=args.overwrite)
    _report_extraction(summary, args.data, args.out)
    return 0


def _check_scan_selection(args) -> None:
    """Refuse the any-folder options with --subsets, and --val-ratio with the scan lists."""
    folder_only = {"--modality": args.modality, "--val-ratio": args.val_ratio,
                   "--train-list": args.train_list, "--val-list": args.val_list}
    if args.subsets is not None:
        given = [k for k, v in folder_only.items() if v is not None]
        if given:
            raise UserError(f"{', '.join(given)} read any folder of scans, not the LUNA16 "
                            f"subsets: drop --subsets, or drop {', '.join(given)}.")
    if args.val_ratio is not None and (args.train_list or args.val_list):
        raise UserError("--val-ratio and --train-list/--val-list exclude each other. "
                        "Received both.")


def _extraction_config(args):
    """The `ExtractionConfig` of the preset (or of --slices) with the options given applied.

    Raises:
        UserError: --slices with --cube-shape, or sides `pretrain`'s U-Net would refuse.
    """
    import dataclasses

    from models_genesis.config import PretrainConfig
    from models_genesis.data.pretraining.cubes import ExtractionConfig

    config = ExtractionConfig.demo() if args.preset == "demo" else ExtractionConfig()
    if args.slices:
        from models_genesis.data.pretraining.slices import slice_config

        if args.cube_shape:
            raise UserError("--slices and --cube-shape exclude each other. Received both.")
        config = slice_config(args.slices, demo=args.preset == "demo")
    overrides = {"cube_shape": tuple(args.cube_shape) if args.cube_shape else None,
                 "scale": args.scale, "dtype": args.dtype, "border_xy": args.border_xy,
                 "border_z": args.border_z,
                 "foreground_threshold": args.foreground_threshold,
                 "min_foreground": args.min_foreground}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    # `pretrain`'s U-Net (depth 4) pools three times: refuse now what it would refuse later.
    factor = 2 ** (PretrainConfig.depth - 1)
    sides = config.cube_shape[:2] if args.slices else config.cube_shape
    if any(int(s) % factor for s in sides):
        flag = "--slices" if args.slices else "--cube-shape"
        raise UserError(f"{flag} sides must be multiples of {factor}: pretrain's depth-"
                        f"{PretrainConfig.depth} U-Net pools {PretrainConfig.depth - 1} times "
                        f"and refuses other cubes. Received: {flag} "
                        f"{' '.join(str(s) for s in (args.slices or args.cube_shape))}.")
    return config


def _report_extraction(summary: dict, data: str, out: str) -> None:
    """Print the summary, the split and the skipped scans; refuse subsets that gave no cube."""
    print(json.dumps({k: v for k, v in summary.items() if k not in ("skipped", "split")},
                     indent=2))
    if "split" in summary:
        print("split: " + ", ".join(f"{k} {len(v)} scans" for k, v in summary["split"].items())
              + f" (names in the .json manifests in {out}); pre-train with: models-genesis "
              f"pretrain --data {out} --train-subsets train"
              + (" --val-subsets val" if "val" in summary["split"] else ""))
    for skip in summary["skipped"]:
        print(f"skipped {skip['path']}: {skip['reason']} ({skip['detail']})")
    empty = [s for s, n in summary["n_cubes"].items() if n == 0]
    if empty:
        raise UserError(f"subset(s) {empty} of {data!r} gave no cube (see the skipped scans "
                        f"above and the .json manifests in {out!r}); no cube file was "
                        "written for them.")


def _extract_xray_crops(args) -> int:
    from models_genesis.data.pretraining.xray_crops import prepare_xray_crops

    summary = prepare_xray_crops(args.data, args.out, n_subsets=args.subsets, scale=args.scale,
                                 crop_shape=tuple(args.crop_shape),
                                 image_size=tuple(args.image_size), seed=args.seed,
                                 dtype=args.dtype, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0
