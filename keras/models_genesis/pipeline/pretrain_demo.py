"""The pre-training demo: phantoms -> cubes -> a small Models Genesis, in minutes on 2 CPU cores.

`run_demo_pretraining(out_dir)` makes the embedded chest-CT phantoms (if absent), extracts
32x32x16 cubes (`ExtractionConfig.demo()`), pre-trains with `PretrainConfig.preset("demo")` and
reports the validation MSE of the model against that of doing nothing (returning the transformed
input): the model has learned to restore when its MSE is clearly below the identity's.
"""

from __future__ import annotations

import json
import math
import os
from typing import Dict, Optional, Sequence

import keras

from models_genesis.config import PretrainConfig
from models_genesis.data.io.cube_files import find_cube_files
from models_genesis.data.phantoms.chest import make_chest_phantoms
from models_genesis.data.pretraining.cubes import ExtractionConfig
from models_genesis.pipeline.extract_cubes import extract_cubes
from models_genesis.training.pretrain import find_pretraining_cubes, pretrain, resolve_method
from models_genesis.training.run_folder import run_paths

DEMO_SUBSETS = tuple(str(s) for s in range(7))  # train 0-4, validation 5-6 (the release's split)


class CosineDecay(keras.callbacks.Callback):
    """Set the learning rate before every step to `initial * (1 + cos(pi * t / total)) / 2`.

    `t` is the optimizer's step count, so a resumed run continues the same schedule. It replaces
    what `ReduceLROnPlateau` sets at an epoch end (the demo's run is too short for a plateau).

    Args:
        initial: the learning rate of step 0 (the config's `learning_rate`).
        total_steps: steps of the whole run (`epochs * steps_per_epoch`).
    """

    def __init__(self, initial: float, total_steps: int):
        super().__init__()
        self.initial, self.total_steps = float(initial), max(int(total_steps), 1)

    def on_train_batch_begin(self, batch, logs=None):
        t = min(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)), self.total_steps)
        self.model.optimizer.learning_rate = (
            self.initial * 0.5 * (1.0 + math.cos(math.pi * t / self.total_steps)))


def _phantoms(phantom_dir: str, n_phantoms: int, seed: int) -> str:
    if os.path.isfile(os.path.join(phantom_dir, "phantoms.json")):
        print(f"phantoms: reusing {phantom_dir}")
        return phantom_dir
    make_chest_phantoms(phantom_dir, n=n_phantoms, seed=seed)
    return phantom_dir


def _cubes(phantom_dir: str, cube_dir: str, seed: int, workers: Optional[int],
           cube_shape: Sequence[int]) -> str:
    extraction = ExtractionConfig.demo(cube_shape=tuple(cube_shape))
    try:
        find_cube_files(cube_dir, DEMO_SUBSETS, extraction.cube_shape, extraction.scale)
        print(f"cubes: reusing {cube_dir}")
    except (FileNotFoundError, ValueError):
        summary = extract_cubes(phantom_dir, DEMO_SUBSETS, cube_dir, config=extraction, seed=seed,
                                workers=workers, overwrite=True)  # the demo's own folder
        print(f"cubes: {summary['n_cubes']} per subset, {summary['n_skipped']} scans skipped")
    return cube_dir


def run_demo_pretraining(out_dir, *, phantom_dir=None, n_phantoms: int = 20, seed: int = 0,
                         overwrite: bool = False, workers: Optional[int] = None,
                         callbacks: Sequence = (), lr_schedule: str = "plateau",
                         cube_shape: Sequence[int] = (32, 32, 16), **overrides) -> Dict:
    """Make phantoms and cubes if absent, pre-train the demo preset, compare with the identity.

    Args:
        out_dir: demo folder: `phantoms/` (unless `phantom_dir`), `cubes/`, `pretrain/` (the run).
        phantom_dir: an existing or wanted phantom folder; default `out_dir/phantoms`.
        n_phantoms: scans to generate (2 per subset at the default 20).
        seed: seed of the phantoms, the cubes and the run.
        overwrite: redo the pre-training even when a finished run exists.
        workers: processes for the cube extraction (None: up to the CPU count).
        callbacks: extra Keras callbacks for `pretrain` (e.g. timers).
        lr_schedule: `plateau` (the release's ReduceLROnPlateau) or `cosine` (`CosineDecay`
            over the run's `epochs * steps_per_epoch` steps).
        cube_shape: the cubes extracted (`ExtractionConfig.demo`) and pre-trained on; cubes of
            another shape already in `out_dir/cubes` are kept (the shape is in their names).
        **overrides: `PretrainConfig` fields replacing the demo preset's (e.g. `epochs=5`).

    Returns:
        dict: `paths` (the run's files, plus `phantoms` and `cubes`), `model_mse`,
        `identity_mse`, `ratio` (model / identity), `constant_mse` (the originals' variance),
        `epochs`, and `result` (`pretrain`'s dict).
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    phantom_dir = os.fspath(phantom_dir) if phantom_dir else os.path.join(out_dir, "phantoms")
    _phantoms(phantom_dir, n_phantoms, seed)
    cube_dir = _cubes(phantom_dir, os.path.join(out_dir, "cubes"), seed, workers, cube_shape)
    config = PretrainConfig.preset("demo", data_dir=cube_dir,
                                   out_dir=os.path.join(out_dir, "pretrain"),
                                   seed=seed, cube_shape=tuple(cube_shape), **overrides)
    paths = run_paths(config.out_dir, config)
    finished = os.path.isfile(paths["result"]) and os.path.isfile(paths["config"])
    # `pretrain` stores every option's value (`resolve_method`): compare like with like.
    wanted = resolve_method(config, find_pretraining_cubes(config)) if finished else config
    if finished and not overwrite and PretrainConfig.from_json(paths["config"]) == wanted:
        print(f"pre-training: reusing the finished run in {config.out_dir}")
        with open(paths["result"], encoding="utf-8") as f:
            result = json.load(f)
    else:
        if finished and not overwrite:
            print(f"pre-training: the finished run in {config.out_dir} used other settings; "
                  "training again with the current demo preset")
        extra = list(callbacks)
        if lr_schedule == "cosine":
            extra.append(CosineDecay(config.learning_rate,
                                     config.epochs * (config.steps_per_epoch or 1)))
        result = pretrain(config, overwrite=overwrite or finished, callbacks=extra)
    metrics = result["metrics"]
    summary = {"paths": {**result["paths"], "phantoms": phantom_dir, "cubes": cube_dir},
               "model_mse": metrics["model_mse"], "identity_mse": metrics["identity_mse"],
               "ratio": metrics["ratio"], "constant_mse": metrics["constant_mse"],
               "epochs": result["epochs"], "result": result}
    print(f"demo pre-training: validation MSE {summary['model_mse']:.5f} (model) vs "
          f"{summary['identity_mse']:.5f} (identity: the transformed input), "
          f"ratio {summary['ratio']:.3f}; best constant {metrics['constant_mse']:.5f}")
    return summary
