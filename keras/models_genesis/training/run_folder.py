"""The folder of a pre-training run: what it writes, and when a rerun resumes or replaces it.

`training.pretrain.pretrain` writes everything to `config.out_dir`:

    config.json            the config used
    best.weights.h5        best weights, Keras 3
    Genesis_Chest_CT.h5    the same weights in the release's Keras 2 layout (name configurable;
                           `{method}.h5` for the other methods)
    training_log.csv       one row per epoch, continued by a resumed run
    backup/                the last finished epoch (`training.resume.RunBackup`: weights,
                           optimizer, callback counters): rerunning the same command resumes
                           it exactly; every file is written to a temporary name, then renamed
    samples/, tensorboard/, figures/
    metrics.json           validation MSE of the model and of doing nothing (the identity); for
                           the encoder methods, the validation loss and the chance level
    result.json            written last: the run is finished

A rerun of the same command resumes a started run; a rerun may change only how long and how the
run is executed and logged (`RERUN_FREE_KEYS`), never what it learns. A run deletes or replaces
only the files above (`OUTPUTS`), and only when asked to (`overwrite`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict

from models_genesis.config import PretrainConfig
from models_genesis.outputs import check_output_dir, remove_outputs

# Fields that must match to resume a run: they fix the weights' and the optimizer's layout.
RESUME_KEYS = ("cube_shape", "n_base_filters", "depth", "optimizer", "mixed_precision",
                "method", "dims")
# Fields a rerun may change: how long and how the run is executed and logged, not what it learns.
RERUN_FREE_KEYS = ("out_dir", "epochs", "patience", "workers", "use_multiprocessing",
                    "max_queue_size", "tensorboard", "sample_every", "figures")
OUTPUTS = ("config", "best_weights", "keras2_weights", "best_state", "csv_log", "metrics",
            "result", "backup", "samples", "tensorboard", "figures")


def run_paths(out_dir, config: PretrainConfig) -> Dict[str, str]:
    """Return the paths a run writes in `out_dir` (the layout of the module docstring)."""
    out = os.path.abspath(os.fspath(out_dir))
    keras2 = config.keras2_weights_name
    if config.method != "genesis" and keras2 == PretrainConfig.keras2_weights_name:
        keras2 = f"{config.method}.h5"  # not the release's name for another method's weights
    names = {"config": "config.json", "best_weights": "best.weights.h5",
             "keras2_weights": keras2, "best_state": "best.json",
             "csv_log": "training_log.csv", "metrics": "metrics.json", "result": "result.json",
             "backup": "backup", "samples": "samples", "tensorboard": "tensorboard",
             "figures": "figures"}
    return {"out_dir": out, **{k: os.path.join(out, v) for k, v in names.items()}}


def stored_config(path) -> PretrainConfig:
    try:
        return PretrainConfig.from_json(path)
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path!r} is not a readable pre-training config ({exc}). Delete it or "
                         "pass overwrite=True (--overwrite) to start over.") from exc


def config_changes(old: PretrainConfig, new: PretrainConfig) -> Dict[str, tuple]:
    """Fields (stored, requested) that differ, except those a rerun may change."""
    changes = {}
    # A run folder written before a training field existed stored None: the method's value.
    old, new = old.with_method_training(), new.with_method_training()
    for f in dataclasses.fields(PretrainConfig):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if f.name == "data_dir" and None not in (a, b):
            a, b = os.path.abspath(a), os.path.abspath(b)
        if f.name not in RERUN_FREE_KEYS and a != b:
            changes[f.name] = (a, b)
    return changes


def prepare_run_dir(paths, config, *, resume: bool, overwrite: bool) -> str:
    """Check `out_dir` before any work; return "fresh" or "resume".

    A run deletes or replaces only its own files (`OUTPUTS`), and only with `overwrite`.
    Refused: an `out_dir` that is a file or not writable; a finished run (unless `resume` or
    `overwrite`); a started run whose stored `config.json` differs from `config` in a field
    other than `RERUN_FREE_KEYS` (resuming would train with the stored settings while claiming
    the new ones); a fresh run into a non-empty folder that holds no run (no `config.json`).
    """
    if resume and overwrite:
        raise ValueError("`resume` and `overwrite` exclude each other. Received both.")
    out = check_output_dir(paths["out_dir"], name="out_dir")
    finished = os.path.isfile(paths["result"])
    started = os.path.isfile(paths["config"])
    if overwrite:
        return "fresh"
    if finished and not resume:
        raise FileExistsError(
            f"{out!r} holds a finished pre-training run ({paths['result']}). Pass "
            "resume=True (--resume) to train it further or overwrite=True (--overwrite) to start "
            "over, or choose another output folder."
        )
    if started:
        diff = config_changes(stored_config(paths["config"]), config)
        if diff:
            what = (" (another architecture or optimizer)" if set(diff) & set(RESUME_KEYS)
                    else "")
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"{out!r} holds a run with other settings{what} than requested (stored -> "
                f"requested) {listed}. A rerun resumes with the stored settings: repeat them, "
                "pass overwrite=True (--overwrite) to delete that run and start over, or choose "
                "another output folder."
            )
        return "resume"
    present = sorted(set(os.listdir(out)) - {"workers"}) if os.path.isdir(out) else []
    if present:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5
                                          else "")
        raise FileExistsError(
            f"{out!r} is not empty ({shown}) and holds no pre-training run (no config.json). "
            "Choose a new or empty output folder, or pass overwrite=True (--overwrite) to delete "
            "the files a run writes there (config.json, weights, logs, backup/, samples/, "
            "tensorboard/, figures/, metrics.json, result.json) and keep the others."
        )
    return "fresh"


def clear_outputs(paths) -> None:
    """Delete the files and folders of the run layout (`OUTPUTS`) in `out_dir`, nothing else."""
    remove_outputs(paths[key] for key in OUTPUTS)
