"""`models-genesis prepare`: read a target-task data set as downloaded, write the prepared one once
(`models_genesis.pipeline.prepare.prepare_dataset`)."""

from __future__ import annotations

from models_genesis.cli import RANGES, ranged

_TASKS = ("ncc", "ncs", "ecc", "lcs", "bms")


def _prepare(args) -> int:
    from models_genesis.pipeline.prepare import prepare_dataset, skipped_summary

    manifest = prepare_dataset(
        args.task, args.data, args.out, workers=args.workers, on_error=args.on_error,
        retry_skipped=args.retry_skipped, progress=not args.quiet,
        input_shape=None if args.input_shape is None else tuple(args.input_shape),
        spacing="task" if args.spacing is None else tuple(args.spacing),
        candidates_csv=args.candidates_csv, consensus_level=args.consensus_level,
        min_readers=args.min_readers, overwrite=args.overwrite)
    done = sum(1 for c in manifest["cases"].values() if c.get("status") == "done")
    print(f"{args.task}: {done} case(s) prepared in {args.out} ({manifest['n_done']} now, "
          f"{manifest['n_resumed']} already done)")
    print(skipped_summary(manifest))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare", help="read a target-task data set as downloaded (LUNA16, LIDC-IDRI, LiTS, "
        "BraTS, ECC candidates) and write the prepared one once (resumable)")
    p.add_argument("--task", required=True, choices=_TASKS,
                   help="target task whose data set --data holds (paper Table 1)")
    p.add_argument("--data", required=True, help="the data set as downloaded")
    p.add_argument("--out", required=True,
                   help="folder the prepared data set is written to (created; a rerun with the "
                   "same settings resumes it)")
    p.add_argument("--workers", type=ranged(RANGES["processes"]), default=1,
                   help="processes reading cases in parallel (default 1)")
    p.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                   help="stop at the first bad case (default) or skip it and record why in "
                   "manifest.json")
    p.add_argument("--retry-skipped", action="store_true",
                   help="try again the cases an earlier run skipped")
    p.add_argument("--input-shape", type=ranged(RANGES["side"]), nargs=3, metavar=("R", "C", "D"),
                   help="NCC/ECC crop size (default: the task's, 64 64 32 / 64 64 64)")
    p.add_argument("--spacing", type=ranged(RANGES["spacing"]), nargs=3, metavar=("X", "Y", "Z"),
                   help="resample to this spacing in mm (default: the task's; NCS 1 1 1)")
    p.add_argument("--candidates-csv",
                   help="NCC/ECC candidate CSV name or path (default candidates.csv; NCC also "
                   "finds candidates_V2.csv)")
    from models_genesis.data.target_tasks.options import add_loader_arguments

    add_loader_arguments(p, ["consensus_level", "min_readers"])
    p.add_argument("--overwrite", action="store_true",
                   help="prepare every case again; also write into a non-empty folder that is "
                   "not a prepared set (only the prepared layout's files are replaced). Without "
                   "it such a folder is refused and a prepared one is resumed")
    p.add_argument("--quiet", action="store_true", help="do not show the progress bar")
    p.set_defaults(func=_prepare)
