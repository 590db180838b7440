"""`models-genesis finetune`, `experiment` and `predict-volume`: thin wrappers.

* `finetune`: one run (`models_genesis.training.finetune.finetune`);
* `experiment`: the paper's tables: named initialisations x tasks x runs x label fractions, Table
  3's layout and Figs. 3, 5, 6 (`models_genesis.pipeline.experiment.run_experiment`), resumable;
* `predict-volume`: a fine-tuned model applied to one whole scan
  (`models_genesis.evaluation.whole_volume.predict_volume`: the run's task decides between
  segmenting by sliding windows and scoring candidates).
"""

from __future__ import annotations

import argparse
import json
import os

from models_genesis.cli import PLACEMENT_FLAGS, RANGES, UserError, devices_type, ranged
from models_genesis.config import METHOD_NAMES, MIXED_PRECISION, SCRATCH_INITS, STRATEGIES
from models_genesis.outputs import check_output_dir, claim_output_dir

# Pre-training methods (weights from `pretrain --method M`, given with --weights) and the
# paper's scratch initialisers.
_INITS = METHOD_NAMES + SCRATCH_INITS
_PAPER_TASKS = ("ncc", "ncs", "ecc", "lcs", "bms")  # Table 3's columns (`experiment`)
_TASKS = _PAPER_TASKS + ("custom",)  # and your own data set (`finetune`)
# argparse dest -> FinetuneConfig field, for the training options both commands share.
_TRAINING_OPTIONS = ("epochs", "batch_size", "learning_rate", "patience", "n_base_filters",
                     "input_shape", "steps_per_epoch", "validation_steps", "fold", "workers",
                     "head", "freeze_blocks", "bn_momentum", "tensorboard", "devices", "strategy",
                     "mixed_precision")


def _data_options(task: str, args, data_dir) -> dict:
    """The task loader's options from the flags (for several tasks: those the task takes)."""
    from models_genesis.data.target_tasks.options import options_from_args, task_options
    from models_genesis.data.target_tasks.prepared_data import with_negative_sampling

    if getattr(args, "tasks", None) and len(args.tasks) > 1:
        valid = task_options(task)
        args = argparse.Namespace(**{k: (v if k in valid else None) for k, v in vars(args).items()})
    return with_negative_sampling(task, data_dir, options_from_args(task, args, data_dir))


def _overrides(args, with_data_options: bool = True) -> dict:
    values = {k: getattr(args, k) for k in _TRAINING_OPTIONS if getattr(args, k) is not None}
    if values.get("mixed_precision") == "none":
        values.pop("mixed_precision")
    for name in ("input_shape", "freeze_blocks"):
        if name in values:
            values[name] = tuple(values[name])
    if args.no_augment:
        values["augment"] = False
    if args.freeze_encoder:
        values["freeze_encoder"] = True
    if with_data_options:
        options = _data_options(args.task, args, args.data)
        if options:
            values["data_options"] = options
    return values


def _data_dirs(values):
    """`--data DIR` or `--data TASK=DIR ...` -> a folder or `{task: folder}`."""
    pairs = [v for v in values if "=" in v]
    if not pairs:
        if len(values) != 1:
            raise UserError("--data takes one folder, or TASK=DIR for each task. "
                            f"Received: --data {' '.join(values)}.")
        return values[0]
    if len(pairs) != len(values):
        raise UserError("--data mixes TASK=DIR and bare folders; give TASK=DIR for each task. "
                        f"Received: --data {' '.join(values)}.")
    out = dict(v.split("=", 1) for v in values)
    if len(out) != len(values):
        raise UserError(f"--data names a task twice. Received: --data {' '.join(values)}.")
    return out


def _add_training_options(p, experiment: bool = False) -> None:
    """The options `finetune` and `experiment` share (`experiment`: several tasks and --data)."""
    _add_task_options(p, experiment)
    p.add_argument("--out", required=True,
                   help="folder the runs write their models, histories and results to (one "
                   "run: also task.json)")
    p.add_argument("--seed", type=ranged(RANGES["seed"]), default=0,
                   help="seed of the split, the label subset, the augmentation and the initial "
                   "weights; run r of an experiment uses seed + r (default 0)")
    _add_schedule_options(p)
    _add_transfer_options(p)
    _add_placement_options(p)
    from models_genesis.data.target_tasks.options import LOADER_OPTIONS, add_loader_arguments

    add_loader_arguments(p.add_argument_group("data loading (the task loader's options)"),
                         [o.name for o in LOADER_OPTIONS if o.name != "fold"])
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="write TensorBoard logs to OUT/tensorboard (default: on, as pretrain; "
                   "needs TensorFlow)")
    p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2),
                   help="what Keras prints per epoch: 0 nothing, 1 a progress bar, 2 one line "
                   "(default 2)")


def _add_task_options(p, experiment: bool) -> None:
    """--task (finetune) or --tasks (experiment), with the --weights and --data they take."""
    if experiment:
        p.add_argument("--tasks", "--task", required=True, nargs="+", choices=_PAPER_TASKS,
                       metavar="TASK",
                       help=f"target tasks, Table 3's columns ({', '.join(_PAPER_TASKS)})")
        p.add_argument("--weights", help="weight file or preset name of a bare pre-training "
                       "method in --inits (e.g. genesis)")
        p.add_argument("--data", required=True, nargs="+", metavar="DIR|TASK=DIR",
                       help="the tasks' data: TASK=DIR for each task, or one folder (for several "
                       "tasks, its subfolder named after each task if present, else the folder)")
    else:
        p.add_argument("--task", required=True, choices=_TASKS,
                       help="target task to fine-tune on (paper Table 1; custom: your own data "
                       "set in the Decathlon or nnU-Net v2 layout, docs/your_own_data.md); its "
                       "data set, head, loss and metric follow from it")
        p.add_argument("--weights", help="Genesis weight file or preset name (for --init genesis)")
        p.add_argument("--data", required=True, help="folder of the target-task data")


def _add_schedule_options(p) -> None:
    """Schedule, U-Net width, crop size, BMS fold and batch loading (defaults: the task's)."""
    p.add_argument("--epochs", type=ranged(RANGES["epochs"]),
                   help="maximum number of epochs; early stopping on the validation loss usually "
                   "ends sooner (default and release: 10000)")
    p.add_argument("--batch-size", type=ranged(RANGES["batch_size"]),
                   help="crops per training step (default: the task's, paper Table 1: 24 for "
                   "NCC and ECC, 16 for NCS, LCS and BMS)")
    p.add_argument("--learning-rate", "--lr", type=ranged(RANGES["learning_rate"]),
                   help="Adam's learning rate (default: the task's, 1e-3; LCS 1e-2)")
    p.add_argument("--patience", type=ranged(RANGES["patience"]),
                   help="epochs without improvement of the validation loss before early "
                   "stopping (default: the task's: NCC 10, NCS 50, ECC 38, LCS 20, BMS 30)")
    p.add_argument("--n-base-filters", type=ranged(RANGES["n_base_filters"]),
                   help="filters of the U-Net's first convolution; must match --weights "
                   "(default and release: 32)")
    p.add_argument("--input-shape", type=ranged(RANGES["side"]), nargs=3, metavar=("R", "C", "D"),
                   help="crop size in voxels, each divisible by 8 (default: the task's, "
                   "64 64 32; ECC 64 64 64)")
    p.add_argument("--steps-per-epoch", type=ranged(RANGES["steps_per_epoch"]),
                   help="training steps per epoch (default: one pass over the training data)")
    p.add_argument("--validation-steps", type=ranged(RANGES["validation_steps"]),
                   help="validation batches per epoch (default: one pass over the validation "
                   "data)")
    p.add_argument("--fold", type=ranged(RANGES["fold"]),
                   help="which of the three cross-validation folds is the test split (BMS only)")
    p.add_argument("--workers", type=ranged(RANGES["workers"]),
                   help="threads loading and augmenting batches while the model trains "
                   "(default 1)")
    p.add_argument("--no-augment", action="store_true", help="turn the 3D augmentation off")


def _add_transfer_options(p) -> None:
    """The head, the blocks kept fixed and BatchNorm's momentum (transfer scenario 1, Sec. 3.2)."""
    p.add_argument("--head", choices=("release", "linear"), help="classification head: release "
                   "(Dense 1024 -> Dense 1, default) or linear (pooled encoder -> Dense 1: the "
                   "linear probe of transfer scenario 1, Sec. 3.2)")
    p.add_argument("--freeze-encoder", action="store_true", help="keep the encoder (depth_0..7) "
                   "fixed, BatchNorm in inference mode (with --head linear: a linear probe)")
    p.add_argument("--freeze-blocks", type=ranged(RANGES["block"]), nargs="+", metavar="I", help="keep the U-Net "
                   "blocks depth_I fixed (0..13; e.g. 0 1 2 3: the first two encoder stages)")
    p.add_argument("--bn-momentum", type=ranged(RANGES["bn_momentum"]), metavar="M", help="BatchNorm momentum of the "
                   "moving statistics during fine-tuning, in [0, 1) (default: the model's 0.99; "
                   "e.g. 0.9 for runs of a few dozen steps)")


def _add_placement_options(p) -> None:
    """The devices, distribution strategy and mixed precision of training (docs/gpu.md)."""
    p.add_argument("--devices", type=devices_type, metavar="N|auto", help="devices each batch is "
                   "split over (default 1; auto: all present). JAX: keras.distribution."
                   "DataParallel; TensorFlow: a MirroredStrategy over N devices. The batch size "
                   "must be divisible by N")
    p.add_argument("--strategy", choices=STRATEGIES, help="tf.distribute strategy to spread "
                   "training over GPUs or machines (TensorFlow backend only): none (default), "
                   "mirrored or multiworker")
    p.add_argument("--mixed-precision", choices=[*MIXED_PRECISION, "none"], help="bf16 or fp16 "
                   "compute (outputs and loss float32); default none. fp16 needs a GPU, bf16 on "
                   "a GPU compute capability 8.0+")


def _check_placement(args, tasks, parallel_runs: int = 1) -> None:
    """The devices, batch size and mixed precision of the command, checked before any work
    (`training.devices`), with errors naming the flags."""
    from models_genesis.config import get_target_task
    from models_genesis.training import devices

    for task in tasks:
        batch = args.batch_size or get_target_task(task).batch_size
        mixed = None if args.mixed_precision in (None, "none") else args.mixed_precision
        devices.check_options(args.strategy or "none", args.devices or 1, batch, mixed,
                              names=PLACEMENT_FLAGS)
    if parallel_runs != 1:
        devices.device_groups(parallel_runs, args.devices or 1, names=PLACEMENT_FLAGS)


def _finetune(args) -> int:
    from models_genesis.config import FinetuneConfig
    from models_genesis.training.finetune import finetune

    _check_placement(args, [args.task])
    claim_output_dir(args.out, "finetune", overwrite=args.overwrite, inputs=[("--data", args.data)],
                     legacy=lambda folder: os.path.isfile(os.path.join(folder,
                                                                       "finetune_config.json")))
    config = FinetuneConfig(task=args.task, init=args.init, weights=args.weights,
                            data_dir=args.data, out_dir=args.out, seed=args.seed,
                            label_fraction=args.label_fraction, **_overrides(args))
    result = finetune(config, verbose=args.verbose, overwrite=args.overwrite)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _experiment(args) -> int:
    from models_genesis.pipeline.experiment import run_experiment

    _check_placement(args, args.tasks, args.parallel_runs)
    data = _data_dirs(args.data)
    dirs = data if isinstance(data, dict) else {t: data for t in args.tasks}
    claim_output_dir(args.out, "experiment", overwrite=args.overwrite,
                     inputs=[("--data", d) for d in sorted(set(dirs.values()))],
                     legacy=lambda folder: os.path.isfile(os.path.join(folder, "results.csv")))
    options = {t: _data_options(t, args, dirs.get(t)) for t in args.tasks}
    out = run_experiment(args.tasks, args.inits, args.runs, args.label_fractions, data, args.out,
                         weights=args.weights, seed=args.seed,
                         overrides=_overrides(args, with_data_options=False),
                         data_options={t: o for t, o in options.items() if o},
                         verbose=args.verbose, curve=args.curve,
                         parallel_runs=args.parallel_runs)
    print(out["table"])
    print(f"\n{out['n_trained']} run(s) trained, {out['n_resumed']} found in {out['results_csv']}")
    print("figures: " + ", ".join(out["figures"].values()))
    return 0


def _check_predict_args(args) -> str:
    """Refuse bad numbers and paths before the model is loaded; return the model file."""
    from models_genesis.evaluation.whole_volume import run_model_file

    model_path = run_model_file(args.model)
    checks = [("--threshold", args.threshold, 0.0 < args.threshold < 1.0, "in (0, 1)"),
              ("--overlap", args.overlap, 0.0 <= args.overlap < 1.0, "in [0, 1)"),
              ("--batch-size", args.batch_size, args.batch_size >= 1, "an integer >= 1"),
              ("--crop-scale", args.crop_scale, args.crop_scale is None or args.crop_scale > 0,
               "> 0")]
    if args.window:
        checks.append(("--window", args.window, min(args.window) >= 1, "3 positive sizes"))
    for option, value, ok, expected in checks:
        if not ok:
            raise UserError(f"{option} must be {expected}. Received: {option} {value}.")
    for path in args.input:
        if not os.path.isfile(path) and not os.path.isdir(path):
            raise FileNotFoundError(f"--input: no scan at {path!r}.")
        if os.path.abspath(args.output) == os.path.abspath(path):
            raise UserError(f"--output must differ from --input: the scan would be overwritten. "
                            f"Received: --output {args.output}.")
    check_output_dir(os.path.dirname(os.path.abspath(args.output)), name="--output's folder")
    if os.path.isdir(args.output):
        raise UserError(f"--output must be a file name (e.g. mask.nii.gz); {args.output!r} is a "
                        "folder.")
    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"--output {args.output!r} exists; pass --overwrite to replace it "
                              "or give another file name.")
    return model_path


# What `--output` may be: a volume SimpleITK writes (a mask), or a CSV (scored candidates).
_VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


def _check_predict_output(args, task) -> None:
    """Refuse, before the model is loaded, an `--output` of the wrong kind and an option the run
    would ignore (`--candidates` for a segmentation model)."""
    output = args.output.lower()
    if task is not None and task.channels is not None and task.kind == "classification":
        if args.candidates or not output.endswith(".json"):  # a whole-volume classifier
            raise UserError(f"{args.model} classifies whole volumes (task custom): --output must "
                            "be a .json file of the class probabilities, without --candidates. "
                            f"Received: --output {args.output}.")
        return
    if task is not None and task.kind == "classification":
        if not args.candidates:
            raise UserError(f"{args.model} is a {task.code} classifier: give --candidates (a CSV "
                            "of coordX, coordY, coordZ in world mm) to score them.")
        if not output.endswith(".csv"):
            raise UserError(f"--output must be a .csv file: a {task.code} classifier writes the "
                            f"candidates with a probability column. Received: --output "
                            f"{args.output}.")
        if not os.path.isfile(args.candidates):
            raise FileNotFoundError(f"--candidates: no CSV at {args.candidates!r}.")
        return
    if args.candidates:
        what = f"a {task.code} segmentation model" if task is not None else "a model without task.json"
        raise UserError(f"--candidates is for NCC/ECC classifiers; {args.model} is {what}, "
                        f"which segments the whole scan and would ignore it. Received: "
                        f"--candidates {args.candidates}.")
    if not output.endswith(_VOLUME_SUFFIXES):
        raise UserError(f"--output must be a volume file ({', '.join(_VOLUME_SUFFIXES)}): the "
                        f"mask is written with the scan's geometry. Received: --output "
                        f"{args.output}.")


def _predict_volume(args) -> int:
    from models_genesis.evaluation.whole_volume import load_run_task, predict_volume
    from models_genesis.saving import load_model

    model_path = _check_predict_args(args)
    # task.json first (named in every error about it), then the cheap checks, then the model.
    task, notes = load_run_task(model_path, normalization=args.normalization,
                                crop_scale=args.crop_scale, window=args.window)
    _check_predict_output(args, task)
    model = load_model(model_path, compile=False, what="--model")
    for note in notes:
        print(note)
    out = predict_volume(model, args.input, args.output, task=task, candidates=args.candidates,
                         window=args.window, overlap=args.overlap, threshold=args.threshold,
                         normalization=args.normalization, crop_scale=args.crop_scale,
                         batch_size=args.batch_size)
    print(f"wrote {out['path']}")
    return 0


def register(subparsers) -> None:
    """Add `finetune`, `experiment` and `predict-volume` to the `models-genesis` parser."""
    _register_finetune(subparsers)
    _register_experiment(subparsers)
    _register_predict_volume(subparsers)


def _register_finetune(subparsers) -> None:
    f = subparsers.add_parser("finetune", help="fine-tune one model on a target task and score "
                              "the test split (AUC, or the paper's IoU + Dice)")
    _add_training_options(f)
    f.add_argument("--init", required=True, choices=_INITS,
                   help="a pre-training method (needs --weights: the Keras 2 .h5 file "
                   "`pretrain --method M` wrote; genesis also takes a preset name) or a scratch "
                   "initialiser")
    f.add_argument("--label-fraction", type=ranged(RANGES["label_fraction"]), default=1.0,
                   help="fraction of the training labels used, in (0, 1] (default 1)")
    f.add_argument("--overwrite", action="store_true",
                   help="delete an earlier run's files in --out (only those a run writes) and "
                   "train again; without it, an --out holding a run is refused")
    f.set_defaults(func=_finetune)


def _register_experiment(subparsers) -> None:
    e = subparsers.add_parser("experiment", help="the paper's tables: initialisations x tasks x "
                              "runs x label fractions; Table 3 (mean +- s.d., t-tests), Figs. 3, "
                              "5, 6 (resumable)")
    _add_training_options(e, experiment=True)
    e.add_argument("--inits", nargs="+", required=True, metavar="NAME[=FILE]",
                   help="named initialisations, Table 3's rows: scratch (uniform glorot_uniform "
                   "he_uniform), METHOD=FILE (genesis=G.h5 rubik=R.h5 ...), METHOD_LABEL=FILE "
                   "(genesis_nonlinear=N.h5: Fig. 3's schemes), or a bare method with --weights")
    e.add_argument("--runs", type=ranged(RANGES["runs"]), default=10, help="runs per method (default 10)")
    e.add_argument("--label-fractions", type=ranged(RANGES["label_fraction"]), nargs="+", default=[1.0],
                   help="fractions of the training labels (default 1.0; several: Fig. 6)")
    e.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty folder that is not an experiment's (only the "
                   "experiment's files are written there; other files are kept). An "
                   "experiment's own folder is resumed without it")
    e.add_argument("--curve", choices=("metric", "loss"), default="metric",
                   help="Fig. 5 plots the validation metric (Dice / AUC, default) or loss")
    e.add_argument("--parallel-runs", type=ranged(RANGES["processes"]), default=1, metavar="K",
                   help="train K independent runs at once, each in its own process: on GPUs each "
                   "run gets its own --devices of them (K x --devices must not exceed the GPUs); "
                   "on CPUs the K processes share the cores. The results are those of one run "
                   "after another (default 1)")
    e.set_defaults(func=_experiment)


def _register_predict_volume(subparsers) -> None:
    p = subparsers.add_parser("predict-volume", help="segment a whole scan by sliding windows "
                              "and write the mask with the scan's geometry (.nii.gz)")
    p.add_argument("--model", required=True, help="model.keras from `finetune`, or its run folder")
    p.add_argument("--input", required=True, nargs="+", metavar="FILE",
                   help="the scan to segment or score (.nii, .nii.gz, .mhd or another SimpleITK "
                   "format); for a `custom` run with several channels, one file per channel in "
                   "order (case_0000.nii.gz case_0001.nii.gz) or one 4D file")
    p.add_argument("--output", required=True, help="mask file to write (e.g. mask.nii.gz; a "
                   "`custom` classifier writes JSON: the class probabilities)")
    p.add_argument("--window", type=ranged(RANGES["side"]), nargs=3, metavar=("R", "C", "D"),
                   help="window size; default: the run's crop (task.json), else the model's "
                   "input size")
    p.add_argument("--overlap", type=ranged(RANGES["overlap"]), default=0.5,
                   help="share of a window that overlaps its neighbour, in [0, 1) (default 0.5)")
    p.add_argument("--threshold", type=ranged(RANGES["threshold"]), default=0.5,
                   help="probability in (0, 1) above which a voxel is foreground in the mask "
                   "(default 0.5)")
    p.add_argument("--normalization", choices=("ct", "minmax", "mri", "none"),
                   help="intensity scaling of the scan, only to override the run's own "
                   "(task.json, written by finetune, is the default): ct (clip [-1000, 1000] "
                   "HU, scale to [0, 1]), mri or minmax (per-scan min-max, as the MRI "
                   "loaders), none (already in [0, 1]). A run without task.json: ct")
    p.add_argument("--batch-size", type=ranged(RANGES["batch_size"]), default=4,
                   help="windows predicted per model call; lower it when memory runs out "
                   "(default 4)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--crop-scale", type=ranged(RANGES["crop_scale"]),
                   help="scan voxels per model voxel (BMS: 1.5625, 100x100x50 crops resized to "
                   "64x64x32); default: the run's (task.json), else 1")
    p.add_argument("--candidates", help="NCC/ECC models: CSV of candidates (coordX, coordY, "
                   "coordZ in world mm; rows of other seriesuids are left out) to score; "
                   "--output is then a CSV with a probability column")
    p.set_defaults(func=_predict_volume)
