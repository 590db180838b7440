"""Pre-training Models Genesis: restore original cubes from transformed ones (paper Sec. 2).

`pretrain(config)` trains `unet_model_3d` to map a transformed cube back to its original with the
release's schedule; `config.method` selects another proxy task of `models_genesis.methods`
(the self-supervised baselines of Table 3, App. A) with the same schedule and outputs (methods
that train an encoder save the encoder layers `depth_0..7` only). The schedule is the
release's (REFERENCE 5: SGD lr 1.0 momentum 0.9, MSE, ReduceLROnPlateau, EarlyStopping,
best-val_loss checkpoint, batch 6 reduced by 2 on out-of-memory errors, one epoch = all training
cubes). Everything is written to `config.out_dir`:

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
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Dict, Optional, Sequence

import keras
import numpy as np

from models_genesis.atomic import write_json
from models_genesis.config import MIXED_PRECISION, PretrainConfig
from models_genesis.data.cube_files import find_cube_files, open_cubes
from models_genesis.data.run_batches import RunBatches
from models_genesis.methods import get_method, make_options
from models_genesis.models.presets import resolve_weights
from models_genesis.models.unet2d import restoration_model_2d
from models_genesis.models.weights import load_keras2_weights
from models_genesis.outputs import check_output_dir, remove_outputs
from models_genesis.training import distribute
from models_genesis.training.callbacks import BestWeights, restoration_callbacks
from models_genesis.training.distribute import fit_distributed
from models_genesis.training.restoration_figures import draw_run_figures
from models_genesis.training.resume import RunBackup, epochs_done

# Fields that must match to resume a run: they fix the weights' and the optimizer's layout.
_RESUME_KEYS = ("cube_shape", "n_base_filters", "depth", "optimizer", "mixed_precision",
                "method", "dims")
# Fields a rerun may change: how long and how the run is executed and logged, not what it learns.
_RERUN_FREE_KEYS = ("out_dir", "epochs", "patience", "workers", "use_multiprocessing",
                    "max_queue_size", "tensorboard", "sample_every", "figures")
_OUTPUTS = ("config", "best_weights", "keras2_weights", "best_state", "csv_log", "metrics",
            "result", "backup", "samples", "tensorboard", "figures")


def run_paths(out_dir, config: PretrainConfig) -> Dict[str, str]:
    """Return the paths a run writes in `out_dir` (see the module docstring)."""
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


def _stored_config(path) -> PretrainConfig:
    try:
        return PretrainConfig.from_json(path)
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path!r} is not a readable pre-training config ({exc}). Delete it or "
                         "pass overwrite=True (--overwrite) to start over.") from exc


def _config_changes(old: PretrainConfig, new: PretrainConfig) -> Dict[str, tuple]:
    """Fields (stored, requested) that differ, except those a rerun may change."""
    changes = {}
    for f in dataclasses.fields(PretrainConfig):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if f.name == "data_dir" and None not in (a, b):
            a, b = os.path.abspath(a), os.path.abspath(b)
        if f.name not in _RERUN_FREE_KEYS and a != b:
            changes[f.name] = (a, b)
    return changes


def _prepare_run_dir(paths, config, *, resume: bool, overwrite: bool) -> str:
    """Check `out_dir` before any work; return "fresh" or "resume".

    A run deletes or replaces only its own files (`_OUTPUTS`), and only with `overwrite`.
    Refused: an `out_dir` that is a file or not writable; a finished run (unless `resume` or
    `overwrite`); a started run whose stored `config.json` differs from `config` in a field
    other than `_RERUN_FREE_KEYS` (resuming would train with the stored settings while claiming
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
        diff = _config_changes(_stored_config(paths["config"]), config)
        if diff:
            what = (" (another architecture or optimizer)" if set(diff) & set(_RESUME_KEYS)
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


def _clear_outputs(paths) -> None:
    """Delete the files and folders of the run layout (`_OUTPUTS`) in `out_dir`, nothing else."""
    remove_outputs(paths[key] for key in _OUTPUTS)


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


def method_options(config: PretrainConfig):
    """The `Options` of `config.method` from `config.method_options` (and, for genesis,
    `config.scheme`); raises ValueError naming a bad option and the valid ones."""
    return make_options(config.method, config.method_options, scheme=config.scheme)


def resolve_method(config: PretrainConfig, files) -> PretrainConfig:
    """Check the method's options against the cubes and the loss before training; return
    `config` with every option's value in `method_options` (what config.json records).

    Raises:
        ValueError: bad options, cubes the method cannot use (e.g. too small), or
            `loss="mae"` for a method whose loss is not the whole-cube MSE.
    """
    method, options = get_method(config.method), method_options(config)
    n_train = sum(len(open_cubes(p, config.cube_shape)) for p in files["train"])
    method.check(options, config.sample_shape, n_train, depth=config.depth)
    if config.loss != "mse" and method.loss(options) != "mse":
        raise ValueError(f"`loss={config.loss!r}` replaces the whole-cube MSE of the restoration "
                         f"methods; method {config.method!r} has its own loss. Received: "
                         f"method={config.method!r}, loss={config.loss!r}.")
    return dataclasses.replace(config, method_options=dataclasses.asdict(options))


def build_restoration_model(config: PretrainConfig):
    """Build the model of `config.method` under the current dtype policy.

    Returns:
        `(saved, model)`: `saved` holds the weights that are written (`unet_model_3d` for the
        restoration methods, its encoder for the others); `model` is what trains (for
        restoration under mixed precision, the same layers with a float32 sigmoid, so the
        outputs and the loss are float32; `saved` itself in float32). With `dims=2`,
        `unet_model_2d` (Genesis 2D).
    """
    if config.dims == 2:
        return restoration_model_2d(config.sample_shape, n_base_filters=config.n_base_filters,
                                    depth=config.depth, kernel_initializer=config.kernel_initializer,
                                    bn_momentum=float(config.bn_momentum))
    return get_method(config.method).build_model(
        tuple(config.cube_shape), method_options(config), n_base_filters=config.n_base_filters,
        depth=config.depth, kernel_initializer=config.kernel_initializer,
        bn_momentum=float(config.bn_momentum))


def load_initial_weights(unet, weights) -> str:
    """Fill `unet` from a Keras 2 `.h5` (e.g. `Genesis_Chest_CT.h5`), a Keras 3 `.weights.h5` or a
    preset name; raise `ValueError` naming the file when its architecture differs."""
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
        model: maps transformed cubes `(B, r, c, d, 1)` to restorations; None gives the
            identity and the constant only (`model_mse` NaN).
        dataset: yields `(transformed, original)` batches (e.g. a validation `RestorationDataset`);
            an original `(B, r, c, d, 2)` carries a mask in its second channel (in-painting),
            and every MSE is then taken over the masked voxels only.
        steps: batches to use; None -> all.

    Returns:
        `{"model_mse", "identity_mse", "constant_mse", "ratio", "n_cubes"}`; ratio = model /
        identity.
    """
    n_batches = len(dataset) if steps is None else min(int(steps), len(dataset))
    sums, n = np.zeros(4), 0
    for i in range(n_batches):
        x, y = (np.asarray(a, np.float64) for a in dataset[i])
        y, weight = (y[..., :1], y[..., 1:]) if y.shape[-1] == 2 else (y, np.ones_like(y))
        axes = tuple(range(1, y.ndim))  # (1, 2, 3, 4); (1, 2, 3) for 2D
        count = np.maximum(weight.sum(axis=axes), 1.0)

        def cube_means(a):  # per-cube mean over the weighted (e.g. cutout) voxels
            return (weight * a).sum(axis=axes) / count

        pred = (np.full_like(y, np.nan) if model is None else
                keras.ops.convert_to_numpy(model(x.astype(np.float32), training=False)))
        sums += [cube_means((pred - y) ** 2).sum(), cube_means((x - y) ** 2).sum(),
                 cube_means(y).sum(), cube_means(y ** 2).sum()]
        n += len(x)
    model_mse, identity_mse, mean, mean_sq = (sums / max(n, 1)).tolist()
    return {"model_mse": model_mse, "identity_mse": identity_mse,
            "constant_mse": mean_sq - mean ** 2,
            "ratio": model_mse / identity_mse if identity_mse > 0 else float("nan"), "n_cubes": n}


def _datasets(config, files, batch_size):
    """Training and validation pair generators. `steps_per_epoch` / `validation_steps` become the
    generators' `samples_per_epoch`, so each epoch is one whole pass of its generator: batch i of
    epoch e is made from (seed, e, i), and validation sees the same pairs every epoch."""
    make_dataset = get_method(config.method).make_dataset
    kw = dict(options=method_options(config), cube_shape=config.sample_shape,
              seed=config.seed, workers=config.workers,
              use_multiprocessing=config.use_multiprocessing,
              max_queue_size=config.max_queue_size)
    if config.dims == 2:
        kw["dims"] = 2  # slices one voxel deep, handed to the scheme as (B, rows, cols)
    steps = {"train": config.steps_per_epoch, "val": config.validation_steps}
    samples = {k: None if v is None else v * batch_size for k, v in steps.items()}
    train = make_dataset(files["train"], batch_size, shuffle=True, validation=False,
                         samples_per_epoch=samples["train"], **kw)
    val = make_dataset(files["val"], batch_size, shuffle=False, validation=True,
                       samples_per_epoch=samples["val"], **kw)
    return train, val


def _training_data(config, train, method_callbacks):
    """What `fit` trains on: `RunBatches(train, config.epochs)`, the run's batches read through
    one iterator whose prefetching crosses epoch boundaries (`data.run_batches`; `fit` then
    needs `steps_per_epoch=len(train)`), or `train` itself (a new iterator at every epoch)."""
    if train.workers > 1 or (train.workers > 0 and train.use_multiprocessing):
        # Keras' OrderedEnqueuer feeds it: stopped at every epoch end, restarted from batch 0.
        return train
    if method_callbacks:
        # The method's callbacks change the data between epochs (deepcluster's Recluster sets
        # new cluster labels from the weights trained so far): no batch can be made before its
        # epoch starts.
        return train
    return RunBatches(train, config.epochs)


def method_loss(config):
    """The loss of `config.method` (`config.loss` replaces the whole-cube MSE)."""
    loss = get_method(config.method).loss(method_options(config))
    return config.loss if isinstance(loss, str) and loss == "mse" else loss


def print_chance_level(config, val) -> dict:
    """Print (and return) what a model that learned nothing would score on the validation set:
    the identity's MSE for restoration methods, the method's `chance_level` otherwise."""
    method = get_method(config.method)
    if method.WRITES == "unet":
        level = evaluate_restoration(None, val)
        print(f"doing-nothing level ({config.method}): validation MSE of the identity "
              f"{level['identity_mse']:.6f}, of the best constant {level['constant_mse']:.6f}")
        return {k: level[k] for k in ("identity_mse", "constant_mse")}
    level = method.chance_level(method_options(config))
    print(f"chance level ({config.method}): {level}")
    return level


def final_metrics(config, model, val) -> Dict[str, float]:
    """`evaluate_restoration` for restoration methods; otherwise the validation loss (and
    metrics) of `model` next to the method's `chance_level`."""
    method = get_method(config.method)
    if method.WRITES == "unet":
        return evaluate_restoration(model, val)
    values = model.evaluate(val, verbose=0, return_dict=True)
    return {**{k: float(v) for k, v in values.items()},
            "chance_level": method.chance_level(method_options(config))}


def _compile(model, config):
    if config.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum)
    else:
        opt = keras.optimizers.Adam(learning_rate=config.learning_rate)
    metrics = get_method(config.method).metrics(method_options(config))
    model.compile(optimizer=opt, loss=method_loss(config), metrics=metrics or None)


def _warn_if_cpu_bf16_conv_gradient_is_wrong(config) -> None:
    """Warn where TensorFlow's CPU (oneDNN) bf16 Conv3D filter gradient is known to be wrong.

    Measured with TensorFlow 2.21: the gradient is garbage (often inf/NaN) when a feature map has
    2 rows, e.g. the coarsest level of 16-row cubes at depth 4. 64x64x32 and 32x32x16 are fine.
    The bug is in the CPU kernel, so machines with a GPU are not warned.
    """
    if config.mixed_precision != "bf16" or keras.backend.backend() != "tensorflow":
        return
    # TensorFlow-only check: the module loads on any Keras backend.
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

    strategy = distribute.get_strategy(config.strategy)  # first: before any other TF op
    is_chief, task = distribute.worker_role()
    out_dir = config.out_dir if is_chief else os.path.join(config.out_dir, "workers", f"worker_{task}")
    method_options(config)  # an unknown method or option fails before the data are read
    files = find_pretraining_cubes(config)
    config = resolve_method(config, files)  # every option's value, as config.json records it
    paths = run_paths(out_dir, config)
    mode = _prepare_run_dir(paths, config, resume=resume, overwrite=overwrite)
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
        restores = get_method(config.method).WRITES == "unet"
        samples = (samples[0], samples[1][..., :1]) if restores else None  # drop a mask
        if is_chief:
            print_chance_level(config, data[1])
        if mode == "fresh":
            _clear_outputs(paths)
        elif os.path.isfile(paths["result"]):
            os.remove(paths["result"])
        os.makedirs(paths["out_dir"], exist_ok=True)
        config.to_json(paths["config"])
        result = _fit_with_fallback(config, paths, files, data, samples if is_chief else None,
                                    unet, model, callbacks, verbose, strategy,
                                    continue_stopped=resume)
        return {**result, "replicas": distribute.replicas(strategy), "is_chief": is_chief}
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _fit_with_fallback(config, paths, files, data, samples, unet, model, extra, verbose,
                       strategy=None, continue_stopped: bool = False) -> Dict:
    """`fit`, retrying with the batch size reduced by 2 on out-of-memory errors (the release).

    Under `multiworker`, `distribute.fit_distributed` trains instead of `fit` (which cannot run
    under MultiWorkerMirroredStrategy); there `batch_size` is the batch of each replica.
    `fit` gets `shuffle=False`: the pair generator already visits the cubes in an order drawn
    from (seed, epoch), while Keras' shuffle would draw from Python's global `random`, reseeded
    when a run restarts, so a resumed run would differ from an uninterrupted one. Where it can
    (`_training_data`), `fit` reads the whole run through one iterator (`RunBatches`), so its
    prefetching does not restart at every epoch."""
    batch = config.batch_size
    while True:
        train, val = data if batch == config.batch_size else _datasets(config, files, batch)
        own = get_method(config.method).callbacks(method_options(config), unet, model,
                                                  (train, val))
        fed = (train if config.strategy == "multiworker"
               else _training_data(config, train, own))
        cbs = restoration_callbacks(config, paths, target=unet, datasets=(fed, val),
                                    samples=samples, continue_stopped=continue_stopped)
        # The method's own (deepcluster: re-cluster before each epoch), after the backup's
        # restore at the start of training.
        cbs += own
        cbs += list(extra)
        try:
            if config.strategy == "multiworker":
                history = fit_distributed(strategy, model, train, val, epochs=config.epochs,
                                          loss=method_loss(config), callbacks=cbs,
                                          verbose=verbose)
            else:
                history = model.fit(fed, validation_data=val, epochs=config.epochs,
                                    steps_per_epoch=None if fed is train else len(train),
                                    callbacks=cbs, verbose=verbose, shuffle=False)
            break
        except Exception as exc:  # noqa: BLE001  (each backend raises its own OOM type)
            if not is_out_of_memory(exc) or batch - 2 < 1:
                raise
            print(f"Out of memory with batch size {batch}: retrying with batch size {batch - 2} "
                  f"({type(exc).__name__}).")
            batch -= 2
    best = next(cb for cb in cbs if isinstance(cb, BestWeights))
    backup = next(cb for cb in cbs if isinstance(cb, RunBackup))
    if not np.isfinite(best.best):
        raise FloatingPointError(
            f"Pre-training in {paths['out_dir']!r} diverged: no epoch gave a finite val_loss, so "
            f"no weights were saved. Lower `learning_rate` (now {config.learning_rate}) or use "
            f"`optimizer='adam'`.")
    if os.path.isfile(paths["best_weights"]):
        unet.load_weights(paths["best_weights"])
    metrics = final_metrics(config, model, val)
    result = {"paths": paths, "metrics": metrics, "batch_size": batch,
              "epochs": epochs_done(history, backup),
              "best_val_loss": best.best, "best_epoch": best.best_epoch,
              "config": dataclasses.asdict(config)}
    write_json(paths["metrics"], metrics)
    if "model_mse" in metrics:
        print(f"validation MSE: model {metrics['model_mse']:.6f}, identity (transformed input) "
              f"{metrics['identity_mse']:.6f} (ratio {metrics['ratio']:.3f}), best constant "
              f"{metrics['constant_mse']:.6f}")
    else:
        print(f"validation: {metrics}")
    if samples is not None and config.figures and config.method == "genesis" and config.dims == 3:
        result["figures"] = draw_run_figures(model, samples[1][0], paths["figures"],
                                             seed=config.seed)
    write_json(paths["result"], result, default=str)
    return result
