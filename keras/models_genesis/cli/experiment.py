"""`models-genesis finetune`, `experiment` and `predict-volume`: thin wrappers.

* `finetune`: one run (`models_genesis.training.finetune.finetune`);
* `experiment`: the paper's protocol over methods, runs and label fractions
  (`models_genesis.pipeline.experiment.run_experiment`), resumable;
* `predict-volume`: sliding-window whole-volume segmentation of one scan written with the
  source geometry (`models_genesis.evaluation.sliding_window.predict_volume_to_file`).
"""

from __future__ import annotations

import json
import os

_INITS = ("genesis", "uniform", "glorot_uniform", "he_uniform")
_TASKS = ("ncc", "ncs", "ecc", "lcs", "bms")
# argparse dest -> FinetuneConfig field, for the training options both commands share.
_TRAINING_OPTIONS = ("epochs", "batch_size", "learning_rate", "patience", "n_base_filters",
                     "input_shape", "steps_per_epoch", "validation_steps", "fold", "workers")


def _overrides(args) -> dict:
    values = {k: getattr(args, k) for k in _TRAINING_OPTIONS if getattr(args, k) is not None}
    if "input_shape" in values:
        values["input_shape"] = tuple(values["input_shape"])
    if args.no_augment:
        values["augment"] = False
    return values


def _add_training_options(p) -> None:
    p.add_argument("--task", required=True, choices=_TASKS, help="target task")
    p.add_argument("--weights", help="Genesis weight file or preset name (for --init genesis)")
    p.add_argument("--data", required=True, help="folder of the target-task data")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 10000; early stopping)")
    p.add_argument("--batch-size", type=int, help="default: the task's (Table 1)")
    p.add_argument("--learning-rate", "--lr", type=float, help="default: the task's")
    p.add_argument("--patience", type=int, help="early-stopping patience; default: the task's")
    p.add_argument("--n-base-filters", type=int, help="U-Net width (default 32, the release)")
    p.add_argument("--input-shape", type=int, nargs=3, metavar=("R", "C", "D"),
                   help="crop size, each divisible by 8; default: the task's")
    p.add_argument("--steps-per-epoch", type=int, help="default: one pass over the data")
    p.add_argument("--validation-steps", type=int, help="default: one pass")
    p.add_argument("--fold", type=int, help="cross-validation fold (BMS)")
    p.add_argument("--workers", type=int, help="data-loading workers (default 1)")
    p.add_argument("--no-augment", action="store_true", help="turn the 3D augmentation off")
    p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras fit verbosity")


def _finetune(args) -> int:
    from models_genesis.config import FinetuneConfig
    from models_genesis.training.finetune import finetune

    config = FinetuneConfig(task=args.task, init=args.init, weights=args.weights,
                            data_dir=args.data, out_dir=args.out, seed=args.seed,
                            label_fraction=args.label_fraction, **_overrides(args))
    result = finetune(config, verbose=args.verbose)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _experiment(args) -> int:
    from models_genesis.pipeline.experiment import run_experiment

    out = run_experiment(args.task, args.inits, args.runs, args.label_fractions, args.data,
                         args.out, weights=args.weights, seed=args.seed,
                         overrides=_overrides(args), verbose=args.verbose)
    print(out["table"])
    if out["annotation_saved"] is not None:
        saved = out["annotation_saved"]
        print(f"\nannotation saved by genesis against {saved['baseline']}: "
              f"{100 * saved['saved']:.0f}%" + (" (lower bound)" if saved["lower_bound"] else ""))
    print(f"\n{out['n_trained']} run(s) trained, {out['n_resumed']} found in {out['results_csv']}")
    return 0


def _predict_volume(args) -> int:
    import keras

    from models_genesis.evaluation.sliding_window import predict_volume_to_file

    model_path = args.model
    if os.path.isdir(model_path):
        model_path = os.path.join(model_path, "model.keras")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"No model file at {model_path!r}: give the `model.keras` that "
                                "`models-genesis finetune` writes, or its run folder.")
    model = keras.saving.load_model(model_path, compile=False)
    window = tuple(args.window) if args.window else tuple(model.input_shape[1:4])
    normalization = None if args.normalization == "none" else args.normalization
    path = predict_volume_to_file(model, args.input, args.output, window=window,
                                  overlap=args.overlap, threshold=args.threshold,
                                  normalization=normalization, batch_size=args.batch_size,
                                  crop_scale=args.crop_scale)
    print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    f = subparsers.add_parser("finetune", help="fine-tune one model on a target task and score "
                              "the test split (AUC, or the paper's IoU + Dice)")
    _add_training_options(f)
    f.add_argument("--init", required=True, choices=_INITS,
                   help="genesis (needs --weights) or a scratch initialiser")
    f.add_argument("--label-fraction", type=float, default=1.0,
                   help="fraction of the training labels used, in (0, 1] (default 1)")
    f.set_defaults(func=_finetune)

    e = subparsers.add_parser("experiment", help="the paper's protocol: runs per method and label "
                              "fraction, mean +- s.d., t-tests, figures (resumable)")
    _add_training_options(e)
    e.add_argument("--inits", nargs="+", required=True, choices=_INITS, help="methods compared")
    e.add_argument("--runs", type=int, default=10, help="runs per method (default 10)")
    e.add_argument("--label-fractions", type=float, nargs="+", default=[1.0],
                   help="fractions of the training labels (default 1.0)")
    e.set_defaults(func=_experiment)

    p = subparsers.add_parser("predict-volume", help="segment a whole scan by sliding windows "
                              "and write the mask with the scan's geometry (.nii.gz)")
    p.add_argument("--model", required=True, help="model.keras from `finetune`, or its run folder")
    p.add_argument("--input", required=True, help="scan (.nii/.nii.gz/.mhd)")
    p.add_argument("--output", required=True, help="mask file to write (e.g. mask.nii.gz)")
    p.add_argument("--window", type=int, nargs=3, metavar=("R", "C", "D"),
                   help="window size; default: the model's input size")
    p.add_argument("--overlap", type=float, default=0.5, help="window overlap in [0, 1) (0.5)")
    p.add_argument("--threshold", type=float, default=0.5, help="foreground threshold (0.5)")
    p.add_argument("--normalization", choices=("ct", "minmax", "mri", "none"), default="ct",
                   help="intensity normalisation as in training: ct (clip [-1000, 1000] HU, "
                   "scale; NCS, LCS), minmax (per-scan min-max; BMS), mri (clip [0, 4000]), "
                   "none (already in [0, 1])")
    p.add_argument("--batch-size", type=int, default=4, help="windows per model call (4)")
    p.add_argument("--crop-scale", type=float, default=1.0,
                   help="scan voxels per model voxel, for models trained on resized crops "
                   "(BMS: 1.5625, 100x100x50 crops resized to 64x64x32); default 1")
    p.set_defaults(func=_predict_volume)
