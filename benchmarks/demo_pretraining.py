"""One setting of the demo pre-training, measured: one row of the pre-training log.

The rows measured so far are in docs/results.md, 'Log: what the demo pre-training learns in its
budget' (records in benchmarks/results/demo_pretraining_log.json).

Runs `run_demo_pretraining` (phantoms and cubes written once into --data, reused by every
setting) with the demo preset plus the options given, then evaluates the best weights on the
demo's restoration table (`restoration_by_combination`, 32 cubes of validation subset 5, as
`pipeline.demo.restoration_table`) and prints one Markdown row:

    setting | wall s | steps | steps/s | first step of epochs 2+ (s) | steady step (s) |
    val model / identity / constant MSE | model/constant | identity-pair MSE |
    transformed combinations below doing nothing | worst combination ratio

and, below it, the per-combination table (model vs doing nothing).

    python benchmarks/demo_pretraining.py --name baseline
    python benchmarks/demo_pretraining.py --name lr3e-3 --learning-rate 3e-3
    python benchmarks/demo_pretraining.py --name cos --lr-schedule cosine --epochs 2 --steps 250
    python benchmarks/demo_pretraining.py --name "no curve" --option nonlinear_prob=0

Run one at a time (the machine's cores are shared); wall-clock includes the validation and the
callbacks of every epoch, not the phantom/cube preparation.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import time

import keras
import numpy as np

from models_genesis.config import PretrainConfig
from models_genesis.data.io.cube_files import find_cube_files, open_cubes
from models_genesis.evaluation.restoration import restoration_by_combination
from models_genesis.pipeline.demo import load_run_model
from models_genesis.pipeline.pretrain_demo import run_demo_pretraining


class StepTimes(keras.callbacks.Callback):
    """Wall-clock of every training step, and of each epoch's first step counted from the
    epoch's start (what the progress bar shows as the slow first step)."""

    def __init__(self, stall_log=None):
        super().__init__()
        self.stall_log = stall_log
        self.steps, self.first, self.gaps, self._t, self._last_end = [], [], [], None, None
        self.to_first_batch, self.traces = [], []  # epoch start -> batch 0 begins; retraces

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        if self.stall_log is not None:  # where a slow epoch start spends its time
            faulthandler.dump_traceback_later(5, file=self.stall_log)
        if self._last_end is not None:  # validation and epoch-end callbacks
            self.gaps.append(self._epoch_start - self._last_end)

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()
        if batch == 0:
            faulthandler.cancel_dump_traceback_later()
            self.to_first_batch.append(self._t - self._epoch_start)
            fn = getattr(self.model, "train_function", None)
            count = getattr(fn, "experimental_get_tracing_count", None)
            self.traces.append(count() if count else None)

    def on_train_batch_end(self, batch, logs=None):
        now = self._last_end = time.perf_counter()
        if batch == 0:
            self.first.append(now - self._epoch_start)
        else:
            self.steps.append(now - self._t)


def summarise(table) -> dict:
    """The targets in a restoration table: identity-pair MSE, transformed combinations below
    doing nothing (of 11), the local-shuffling ratio and the worst ratio with its combination."""
    transformed = table.drop(index="identity")
    return {"identity": float(table.loc["identity", "model_mse"]),
            "below": int((transformed["ratio"] < 1).sum()),
            "local_shuffling": float(table.loc["local_shuffling", "ratio"]),
            "worst": float(transformed["ratio"].max()), "worst_name": transformed["ratio"].idxmax()}


class RestorationCurve(keras.callbacks.Callback):
    """Every `every` epochs, the restoration table of the model being trained (the learning
    curve of the demo's targets: identity pairs, combinations below doing nothing, overall), on
    the first 32 cubes of `subset` in `cube_dir`, read when training starts (the demo extracts
    the cubes first)."""

    def __init__(self, cube_dir, subset, cube_shape, every, steps_per_epoch, seed=0):
        super().__init__()
        self.where = (cube_dir, subset, tuple(cube_shape))
        self.every, self.steps, self.seed, self.rows, self.cubes = every, steps_per_epoch, seed, [], None

    def on_train_begin(self, logs=None):
        cube_dir, subset, shape = self.where
        (path,) = find_cube_files(cube_dir, [subset], shape)
        self.cubes = np.asarray(open_cubes(path)[:32], dtype=np.float32)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        table = restoration_by_combination(self.model, self.cubes, seed=self.seed)
        row = {"steps": (epoch + 1) * self.steps, "val_loss": float(logs.get("val_loss", np.nan)),
               **summarise(table)}
        self.rows.append(row)
        print(f"\ncurve: {row}", flush=True)


def _parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="label of the row")
    p.add_argument("--data", default="/tmp/demo_sweep", help="folder with phantoms/ and cubes/")
    p.add_argument("--optimizer", choices=("adam", "sgd"))
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--lr-schedule", choices=("plateau", "cosine"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps", type=int, help="steps per epoch")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--filters", type=int, help="n_base_filters")
    p.add_argument("--depth", type=int)
    p.add_argument("--bn-momentum", type=float)
    p.add_argument("--mixed-precision", choices=("bf16", "fp16", "none"))
    p.add_argument("--validation-steps", type=int)
    p.add_argument("--tensorboard", type=int, choices=(0, 1))
    p.add_argument("--sample-every", type=int)
    p.add_argument("--figures", type=int, choices=(0, 1), default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cube-shape", type=int, nargs=3, default=(32, 32, 16),
                   help="cubes extracted (once per shape, into --data/cubes) and trained on")
    p.add_argument("--scheme", help="transformation scheme (PretrainConfig.scheme), e.g. identity")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a TransformConfig field of the scheme, a JSON value, e.g. "
                        "nonlinear_prob=0 (repeatable)")
    p.add_argument("--curve-every", type=int, default=0,
                   help="epochs between restoration tables during training (0: only at the end)")
    return p.parse_args(argv)


# flag (argparse dest) -> `run_demo_pretraining` keyword
_OVERRIDE_NAMES = {
    "optimizer": "optimizer", "learning_rate": "learning_rate", "epochs": "epochs",
    "steps": "steps_per_epoch", "batch_size": "batch_size", "filters": "n_base_filters",
    "depth": "depth", "bn_momentum": "bn_momentum", "mixed_precision": "mixed_precision",
    "validation_steps": "validation_steps", "sample_every": "sample_every",
    "lr_schedule": "lr_schedule", "scheme": "scheme"}


def _overrides(args) -> dict:
    """The demo preset's fields the flags change."""
    overrides = {_OVERRIDE_NAMES[k]: v for k, v in vars(args).items()
                 if k in _OVERRIDE_NAMES and v is not None}
    if args.mixed_precision == "none":
        overrides["mixed_precision"] = None
    if args.option:
        # JSON values: integer fields stay integers, sizes are lists ("local_max_window=[1,5]")
        overrides["method_options"] = {k: json.loads(v) for k, v in
                                       (o.split("=", 1) for o in args.option)}
    for flag in ("tensorboard", "figures"):
        if getattr(args, flag) is not None:
            overrides[flag] = bool(getattr(args, flag))
    return overrides


def _markdown_row(name, wall, timer, metrics, summary) -> str:
    """The setting's row of the pre-training log (columns: the module's docstring)."""
    steps = len(timer.steps) + len(timer.first)
    later_first = timer.first[1:] or [float("nan")]
    m = metrics
    return (f"| {name} | {wall:.0f} | {steps} | {steps / wall:.2f} | "
            f"{np.median(later_first):.1f} ({min(later_first):.1f}-{max(later_first):.1f}) | "
            f"{np.median(timer.steps):.2f} | {m['model_mse']:.5f} / {m['identity_mse']:.5f} / "
            f"{m['constant_mse']:.5f} | {m['model_mse'] / m['constant_mse']:.2f} | "
            f"{summary['identity']:.2e} | {summary['below']}/11 | "
            f"{summary['worst']:.2f} ({summary['worst_name']}) |")


def _print_step_times(timer) -> None:
    print("first step of each epoch (s):", " ".join(f"{t:.1f}" for t in timer.first))
    print("epoch end to next epoch start (s):", " ".join(f"{t:.1f}" for t in timer.gaps))
    print("epoch start to first batch (s):", " ".join(f"{t:.1f}" for t in timer.to_first_batch))
    print("train_function traces at each epoch's first batch:", timer.traces)


def main(argv=None):
    args = _parse_args(argv)
    overrides = _overrides(args)
    stall_log = open(os.path.join(args.data, "stalls.txt"), "a", encoding="utf-8")
    print(f"== {args.name}", file=stall_log, flush=True)
    timer = StepTimes(stall_log)
    extra = [timer]
    if args.curve_every:
        preset = PretrainConfig.preset("demo")
        curve = RestorationCurve(os.path.join(args.data, "cubes"), preset.val_subsets[0],
                                 args.cube_shape, args.curve_every,
                                 overrides.get("steps_per_epoch", preset.steps_per_epoch),
                                 args.seed)
        extra.append(curve)
    start = time.perf_counter()
    demo = run_demo_pretraining(args.data, phantom_dir=os.path.join(args.data, "phantoms"),
                                seed=args.seed, overwrite=True, workers=1, callbacks=extra,
                                cube_shape=tuple(args.cube_shape), **overrides)
    wall = time.perf_counter() - start

    # The best weights on the demo's restoration table.
    config, model, cubes = load_run_model(demo["paths"]["out_dir"])
    table = restoration_by_combination(model, cubes, seed=config.seed)
    m = demo["result"]["metrics"]
    row = _markdown_row(args.name, wall, timer, m, summarise(table))
    print("\n" + row)
    print(table.to_string(float_format=lambda v: f"{v:.5f}"))
    _print_step_times(timer)
    record = {"name": args.name, "overrides": overrides, "row": row, "wall_s": wall,
              "first_steps": timer.first, "epoch_end_gaps": timer.gaps,
              "to_first_batch": timer.to_first_batch, "traces": timer.traces, "median_step": float(np.median(timer.steps)),
              "metrics": m, "epochs": demo["epochs"], "best_epoch": demo["result"]["best_epoch"],
              "table": table.reset_index().to_dict(orient="records"),
              "curve": curve.rows if args.curve_every else None}
    with open(os.path.join(args.data, "results.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=str) + "\n")


if __name__ == "__main__":
    main()
