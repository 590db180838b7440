"""Did a restoration pre-training learn anything? Diverged, undertrained or trained.

A restoration model has learned something once its validation MSE beats doing nothing: returning
the transformed input (the identity) or the best constant image (`evaluate_restoration`). A run
whose best weights do not beat both is one of two things, and the words differ:

* **diverged**: the loss became NaN or infinite, or the training loss rose over the run (e.g.
  SGD at a huge learning rate). The weights are worthless: `FloatingPointError`.
* **undertrained**: the run finished the schedule it was asked for (its epochs, or early
  stopping) with a finite loss that did not rise, but too short to beat doing nothing yet (a
  4-step smoke run). A warning (`UndertrainedWarning`), or with `strict=True` an
  `UndertrainedError`, so that such weights never pass for pre-trained ones without a word.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from typing import Optional, Sequence


class UndertrainedWarning(UserWarning):
    """A pre-training completed its schedule but does not yet restore better than doing nothing."""


class UndertrainedError(ValueError):
    """`UndertrainedWarning` raised as an error (`pretrain(..., strict=True)`)."""


def logged_losses(csv_log) -> list:
    """The training loss of every epoch in a run's CSV log (`EpochLog`), NaN where not a number;
    [] without a log."""
    if csv_log is None or not os.path.isfile(csv_log):
        return []
    with open(csv_log, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        try:
            out.append(float(row.get("loss", "nan")))
        except ValueError:
            out.append(float("nan"))
    return out


def restoration_status(metrics: dict, losses: Sequence[float] = ()) -> tuple:
    """Classify a finished restoration run.

    Args:
        metrics: `evaluate_restoration` of the best weights (`model_mse`, `identity_mse`,
            `constant_mse`); other metrics (an encoder method's) give "trained".
        losses: the training loss of each epoch, in order.

    Returns:
        `(status, message)`: status "trained", "undertrained" or "diverged"; message None for
        "trained", else one line saying why.
    """
    model, identity = metrics.get("model_mse"), metrics.get("identity_mse")
    constant = metrics.get("constant_mse")
    if None in (model, identity, constant):
        return "trained", None
    model, identity, constant = float(model), float(identity), float(constant)
    if math.isfinite(model) and (model <= identity or model <= constant):
        return "trained", None
    losses = [float(v) for v in losses]
    bad_loss = [i + 1 for i, v in enumerate(losses) if not math.isfinite(v)]
    if not math.isfinite(model) or bad_loss:
        where = f"the training loss of epoch {bad_loss[0]} is {losses[bad_loss[0] - 1]}" \
            if bad_loss else f"the validation MSE of the model is {model}"
        return "diverged", (f"pre-training diverged: {where}. Lower the learning rate or use the "
                            "Adam optimizer, and rerun with overwrite.")
    versus = (f"the validation MSE of the model ({model:.6g}) is worse than returning the "
              f"transformed input ({identity:.6g}) and than the best constant ({constant:.6g})")
    if len(losses) >= 2 and losses[-1] > losses[0]:
        return "diverged", (f"pre-training diverged: the training loss rose from {losses[0]:.6g} "
                            f"(epoch 1) to {losses[-1]:.6g} (epoch {len(losses)}) and {versus}. "
                            "Lower the learning rate or use the Adam optimizer, and rerun with "
                            "overwrite.")
    return "undertrained", (f"pre-training is undertrained: it completed its {len(losses)} "
                            f"epoch(s) without a rising loss, but {versus}, so the weights "
                            "restore nothing yet. Train longer (more epochs or steps per epoch; "
                            "resume the run) before using them.")


def check_restoration_run(metrics: dict, losses: Sequence[float] = (), *,
                          out_dir: Optional[str] = None, strict: bool = False) -> tuple:
    """Raise or warn when a restoration run restores worse than doing nothing.

    Args:
        metrics, losses: see `restoration_status`.
        out_dir: the run folder, named in the message.
        strict: raise `UndertrainedError` for an undertrained run instead of warning.

    Returns:
        `(status, message)`: "trained" (message None) or "undertrained" (the warning's text).

    Raises:
        FloatingPointError: a diverged run.
        UndertrainedError: an undertrained run with `strict`.
    """
    status, message = restoration_status(metrics, losses)
    if message is not None and out_dir is not None:
        message = f"{message} (run folder {os.fspath(out_dir)!r})"
    if status == "diverged":
        raise FloatingPointError(message)
    if status == "undertrained":
        if strict:
            raise UndertrainedError(message)
        warnings.warn(message, UndertrainedWarning, stacklevel=3)
    return status, message
