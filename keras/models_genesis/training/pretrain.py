"""Pre-training Models Genesis: restore original cubes from transformed ones (paper Sec. 2).

`pretrain(config)` trains `unet_model_3d` to map a transformed cube back to its original with the
release's schedule (REFERENCE 5: SGD lr 1.0 momentum 0.9, MSE, ReduceLROnPlateau, EarlyStopping,
best-val_loss checkpoint, batch 6 reduced by 2 on out-of-memory errors, one epoch = all training
cubes). Everything is written to `config.out_dir`:

    config.json            the config used
    best.weights.h5        best weights, Keras 3
    Genesis_Chest_CT.h5    the same weights in the release's Keras 2 layout (name configurable)
    training_log.csv       one row per epoch, continued by a resumed run
    backup/                BackupAndRestore state: rerunning the same command resumes
    samples/, tensorboard/, figures/
    metrics.json           validation MSE of the model and of doing nothing (the identity)
    result.json            written last: the run is finished
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import warnings
from typing import Dict, Optional, Sequence

import keras
import numpy as np

from models_genesis.atomic import write_json
from models_genesis.config import MIXED_PRECISION, PretrainConfig
from models_genesis.data.cube_files import find_cube_files, open_cubes
from models_genesis.models.unet3d import FINAL_CONV_NAME, unet_model_3d

# Fields that must match to resume a run: they fix the weights' and the optimizer's layout.
_RESUME_KEYS = ("cube_shape", "n_base_filters", "depth", "optimizer", "mixed_precision")
_OUTPUTS = ("config", "best_weights", "keras2_weights", "best_state", "csv_log", "metrics",
            "result", "backup", "samples", "tensorboard", "figures")


def run_paths(out_dir, config: PretrainConfig) -> Dict[str, str]:
    """Return the paths a run writes in `out_dir` (see the module docstring)."""
    out = os.path.abspath(os.fspath(out_dir))
    names = {"config": "config.json", "best_weights": "best.weights.h5",
             "keras2_weights": config.keras2_weights_name, "best_state": "best.json",
             "csv_log": "training_log.csv", "metrics": "metrics.json", "result": "result.json",
             "backup": "backup", "samples": "samples", "tensorboard": "tensorboard",
             "figures": "figures"}
    return {"out_dir": out, **{k: os.path.join(out, v) for k, v in names.items()}}


def _prepare_run_dir(paths, config, *, resume: bool, overwrite: bool) -> str:
    """Refuse a finished run (unless resume/overwrite) or a different architecture; return mode."""
    if resume and overwrite:
        raise ValueError("`resume` and `overwrite` exclude each other. Received both.")
    finished = os.path.isfile(paths["result"])
    started = os.path.isfile(paths["config"])
    if overwrite:
        return "fresh"
    if finished and not resume:
        raise FileExistsError(
            f"{paths['out_dir']!r} holds a finished pre-training run ({paths['result']}). Pass "
            "resume=True (--resume) to train it further or overwrite=True (--overwrite) to start "
            "over, or choose another output folder."
        )
    if started:
        old = PretrainConfig.from_json(paths["config"])
        diff = {k: (getattr(old, k), getattr(config, k)) for k in _RESUME_KEYS
                if getattr(old, k) != getattr(config, k)}
        if diff:
            raise ValueError(
                f"{paths['out_dir']!r} holds a run with another architecture or optimizer "
                f"(field: (stored, requested)): {diff}. Use --overwrite or another output folder."
            )
        return "resume"
    return "fresh"


def _clear_outputs(paths) -> None:
    for key in _OUTPUTS:
        path = paths[key]
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.isfile(path):
            os.remove(path)


def find_pretraining_cubes(config: PretrainConfig) -> Dict[str, list]:
    """Find and check the training and validation cube files of `config`.

    Raises:
        FileNotFoundError: no data folder or no cube file for a subset.
        ValueError: the files hold cubes of another shape than `config.cube_shape`.
    """
    if config.data_dir is None:
        raise ValueError("`data_dir` must name the folder of cube files. Received: data_dir=None.")
    out = {}
    for split, subsets in (("train", config.train_subsets), ("val", config.val_subsets)):
        try:
            files = find_cube_files(config.data_dir, subsets, config.cube_shape, config.scale)
        except FileNotFoundError:
            try:
                other = find_cube_files(config.data_dir, subsets, None, config.scale)
            except (FileNotFoundError, ValueError):
                raise
            raise ValueError(
                f"The {split} cube files {other} hold cubes of another shape than "
                f"cube_shape={config.cube_shape}. Pass the files' shape as cube_shape or extract "
                "cubes of this shape."
            ) from None
        for path in files:
            cubes = open_cubes(path, config.cube_shape)
            if len(cubes) == 0:
                raise ValueError(f"Cube file {path!r} holds no cubes.")
        out[split] = files
    return out


def build_restoration_model(config: PretrainConfig):
    """Build the U-Net of `config` under the current dtype policy.

    Returns:
        `(unet, model)`: `unet` is `unet_model_3d` (its weights are what is saved); `model`
        is what trains, the same layers with a float32 sigmoid under mixed precision (so the
        outputs and the loss are float32), or `unet` itself otherwise.
    """
    unet = unet_model_3d((*config.cube_shape, 1), depth=config.depth,
                         n_base_filters=config.n_base_filters,
                         kernel_initializer=config.kernel_initializer,
                         bn_momentum=float(config.bn_momentum))
    if keras.mixed_precision.global_policy().compute_dtype == "float32":
        return unet, unet
    logits = unet.get_layer(FINAL_CONV_NAME).output
    out = keras.layers.Activation("sigmoid", dtype="float32", name="output_float32")(logits)
    return unet, keras.Model(unet.input, out, name="restoration_mixed_precision")


def load_initial_weights(unet, weights) -> str:
    """Fill `unet` from a Keras 2 `.h5` (e.g. `Genesis_Chest_CT.h5`), a Keras 3 `.weights.h5` or a
    preset name; raise `ValueError` naming the file when its architecture differs."""
    from models_genesis.models.presets import resolve_weights
    from models_genesis.models.weights import load_keras2_weights

    path = os.fspath(resolve_weights(weights))
    if path.endswith(".weights.h5"):
        try:
            unet.load_weights(path)
        except ValueError as exc:
            raise ValueError(f"Cannot load {path!r} into the U-Net of this config "
                             f"(another architecture?): {exc}") from exc
    else:
        load_keras2_weights(unet, path)
    return path


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device out-of-memory error of any backend (TF, JAX/XLA, torch)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"ResourceExhaustedError", "OutOfMemoryError"}:
        return True
    text = str(exc)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def evaluate_restoration(model, dataset, steps: Optional[int] = None) -> Dict[str, float]:
    """Validation MSE of `model`, of the identity (returning the transformed input) and of the
    best constant (the originals' mean voxel value: a model that learned nothing about images).

    Args:
        model: maps transformed cubes `(B, r, c, d, 1)` to restorations.
        dataset: yields `(transformed, original)` batches (e.g. a validation `RestorationDataset`).
        steps: batches to use; None -> all.

    Returns:
        `{"model_mse", "identity_mse", "constant_mse", "ratio", "n_cubes"}`; ratio = model /
        identity.
    """
    n_batches = len(dataset) if steps is None else min(int(steps), len(dataset))
    sums, n = np.zeros(4), 0
    for i in range(n_batches):
        x, y = (np.asarray(a, np.float64) for a in dataset[i])
        pred = keras.ops.convert_to_numpy(model(x.astype(np.float32), training=False))
        sums += [np.mean((pred - y) ** 2, axis=(1, 2, 3, 4)).sum(),
                 np.mean((x - y) ** 2, axis=(1, 2, 3, 4)).sum(),
                 np.mean(y, axis=(1, 2, 3, 4)).sum(), np.mean(y ** 2, axis=(1, 2, 3, 4)).sum()]
        n += len(x)
    model_mse, identity_mse, mean, mean_sq = (sums / max(n, 1)).tolist()
    return {"model_mse": model_mse, "identity_mse": identity_mse,
            "constant_mse": mean_sq - mean ** 2,
            "ratio": model_mse / identity_mse if identity_mse > 0 else float("nan"), "n_cubes": n}


def _datasets(config, files, batch_size):
    """Training and validation pair generators. `steps_per_epoch` / `validation_steps` become the
    generators' `samples_per_epoch`, so each epoch is one whole pass of its generator: batch i of
    epoch e is made from (seed, e, i), and validation sees the same pairs every epoch."""
    from models_genesis.data.restoration_dataset import RestorationDataset

    kw = dict(scheme=config.scheme, seed=config.seed, workers=config.workers,
              use_multiprocessing=config.use_multiprocessing,
              max_queue_size=config.max_queue_size)
    steps = {"train": config.steps_per_epoch, "val": config.validation_steps}
    samples = {k: None if v is None else v * batch_size for k, v in steps.items()}
    train = RestorationDataset(files["train"], batch_size, shuffle=True,
                               samples_per_epoch=samples["train"], **kw)
    val = RestorationDataset(files["val"], batch_size, shuffle=False, validation=True,
                             samples_per_epoch=samples["val"], **kw)
    return train, val


def _compile(model, config):
    if config.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum)
    else:
        opt = keras.optimizers.Adam(learning_rate=config.learning_rate)
    model.compile(optimizer=opt, loss=config.loss)


def _warn_if_cpu_bf16_conv_gradient_is_wrong(config) -> None:
    """Warn where TensorFlow's CPU (oneDNN) bf16 Conv3D filter gradient is known to be wrong.

    Measured with TensorFlow 2.21: the gradient is garbage (often inf/NaN) when a feature map has
    2 rows, e.g. the coarsest level of 16-row cubes at depth 4. 64x64x32 and 32x32x16 are fine.
    The bug is in the CPU kernel, so machines with a GPU are not warned.
    """
    if config.mixed_precision != "bf16" or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    rows = [config.cube_shape[0] // 2 ** level for level in range(config.depth)]
    if 2 in rows and not tf.config.list_logical_devices("GPU"):
        warnings.warn(
            f"mixed_precision='bf16' on TensorFlow's CPU with cube_shape={tuple(config.cube_shape)} "
            f"and depth={config.depth}: a feature map has 2 rows ({rows}), where TensorFlow's "
            "bf16 Conv3D gradient on CPU is wrong. Train in float32 here, or use larger cubes.",
            stacklevel=3)


def pretrain(config: PretrainConfig, *, resume: bool = False, overwrite: bool = False,
             callbacks: Sequence[keras.callbacks.Callback] = (), verbose="auto") -> Dict:
    """Pre-train Models Genesis on the restoration proxy task (paper Sec. 2, REFERENCE 5).

    Rerunning an interrupted run with the same config continues from its last finished epoch.

    Args:
        config: a `PretrainConfig` with `data_dir` and `out_dir` set.
        resume: train a finished run further (e.g. with more `epochs`).
        overwrite: delete the outputs of a previous run in `out_dir` and start over.
        callbacks: extra Keras callbacks.
        verbose: `fit`'s verbosity.

    Returns:
        dict: `paths` (see `run_paths`), `metrics` (`evaluate_restoration` on the validation
        set with the best weights), `batch_size` (after any out-of-memory fallback), `epochs`
        (epochs done in all), `best_val_loss`, `best_epoch`, `replicas` (devices the batch
        was split over), `is_chief` (False on the other workers of a multi-worker run, which write
        to `out_dir/workers/worker_{i}`).

    Raises:
        ValueError, FileNotFoundError, FileExistsError: bad config, missing or mis-shaped cubes,
            weights of another architecture, a finished run in `out_dir`; all before training.
    """
    if not isinstance(config, PretrainConfig):
        raise TypeError(f"`config` must be a PretrainConfig. Received: config={type(config)}.")
    if config.out_dir is None:
        raise ValueError("`out_dir` must name the run folder. Received: out_dir=None.")
    from models_genesis.training import distribute

    strategy = distribute.get_strategy(config.strategy)  # first: before any other TF op
    is_chief, task = distribute.worker_role()
    out_dir = config.out_dir if is_chief else os.path.join(config.out_dir, "workers", f"worker_{task}")
    paths = run_paths(out_dir, config)
    mode = _prepare_run_dir(paths, config, resume=resume, overwrite=overwrite)
    files = find_pretraining_cubes(config)
    previous_policy = keras.mixed_precision.global_policy()
    if config.mixed_precision:
        _warn_if_cpu_bf16_conv_gradient_is_wrong(config)
        keras.mixed_precision.set_global_policy(MIXED_PRECISION[config.mixed_precision])
    try:
        keras.utils.set_random_seed(config.seed)
        with distribute.strategy_scope(strategy):
            unet, model = build_restoration_model(config)
            if config.weights is not None:
                load_initial_weights(unet, config.weights)
            _compile(model, config)
        data = _datasets(config, files, config.batch_size)
        samples = data[1][0]  # one batch of pairs: shape or transformation errors show here
        if mode == "fresh":
            _clear_outputs(paths)
        elif os.path.isfile(paths["result"]):
            os.remove(paths["result"])
        os.makedirs(paths["out_dir"], exist_ok=True)
        config.to_json(paths["config"])
        result = _fit_with_fallback(config, paths, files, data, samples if is_chief else None,
                                    unet, model, callbacks, verbose, strategy)
        return {**result, "replicas": distribute.replicas(strategy), "is_chief": is_chief}
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _fit_with_fallback(config, paths, files, data, samples, unet, model, extra, verbose,
                       strategy=None) -> Dict:
    """`fit`, retrying with the batch size reduced by 2 on out-of-memory errors (the release).

    Under `multiworker`, `distribute.fit_distributed` trains instead of `fit` (which cannot run
    under MultiWorkerMirroredStrategy); there `batch_size` is the batch of each replica."""
    from models_genesis.training.callbacks import restoration_callbacks

    batch = config.batch_size
    while True:
        train, val = data if batch == config.batch_size else _datasets(config, files, batch)
        cbs = restoration_callbacks(config, paths, target=unet, datasets=(train, val),
                                    samples=samples) + list(extra)
        try:
            if config.strategy == "multiworker":
                from models_genesis.training.distribute import fit_distributed

                history = fit_distributed(strategy, model, train, val, epochs=config.epochs,
                                          loss=config.loss, callbacks=cbs, verbose=verbose)
            else:
                history = model.fit(train, validation_data=val, epochs=config.epochs,
                                    callbacks=cbs, verbose=verbose)
            break
        except Exception as exc:  # noqa: BLE001  (each backend raises its own OOM type)
            if not is_out_of_memory(exc) or batch - 2 < 1:
                raise
            print(f"Out of memory with batch size {batch}: retrying with batch size {batch - 2} "
                  f"({type(exc).__name__}).")
            batch -= 2
    best = cbs[2]
    if not np.isfinite(best.best):
        raise FloatingPointError(
            f"Pre-training in {paths['out_dir']!r} diverged: no epoch gave a finite val_loss, so "
            f"no weights were saved. Lower `learning_rate` (now {config.learning_rate}) or use "
            f"`optimizer='adam'`.")
    if os.path.isfile(paths["best_weights"]):
        unet.load_weights(paths["best_weights"])
    metrics = evaluate_restoration(model, val)
    epochs_done = history.epoch[-1] + 1 if history.epoch else model._initial_epoch
    result = {"paths": paths, "metrics": metrics, "batch_size": batch, "epochs": int(epochs_done),
              "best_val_loss": best.best, "best_epoch": best.best_epoch,
              "config": dataclasses.asdict(config)}
    write_json(paths["metrics"], metrics)
    print(f"validation MSE: model {metrics['model_mse']:.6f}, identity (transformed input) "
          f"{metrics['identity_mse']:.6f} (ratio {metrics['ratio']:.3f}), best constant "
          f"{metrics['constant_mse']:.6f}")
    if samples is not None and config.figures:
        from models_genesis.training.restoration_figures import draw_run_figures

        result["figures"] = draw_run_figures(model, samples[1][0], paths["figures"],
                                             seed=config.seed)
    write_json(paths["result"], result, default=str)
    return result
