"""Pre-training Models Genesis: restore original cubes from transformed ones (paper Sec. 2).

`pretrain(config)` trains `unet_model_3d` to map a transformed cube back to its original with the
release's schedule (docs/release_reference.md, 'Pre-training schedule': SGD lr 1.0 momentum 0.9, MSE, ReduceLROnPlateau, EarlyStopping, best-val_loss
checkpoint, batch 6 reduced by 2 on out-of-memory errors, one epoch = all training cubes);
`config.method` selects another proxy task of `models_genesis.methods` (the self-supervised
baselines of Table 3, App. A) with the same outputs (methods that train an encoder save the
encoder layers `depth_0..7` only), each with its authors' optimiser and schedule
(`config.METHOD_TRAINING`, docs/methods.md: DeepCluster a fixed number of epochs, keeping the
last weights). What a run writes to `config.out_dir`, and when a rerun resumes it, is
`training.run_folder`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from typing import Dict, Sequence

import keras
import numpy as np

from models_genesis.atomic import write_json
from models_genesis.config import MIXED_PRECISION, PretrainConfig
from models_genesis.data.io.cube_files import check_cube_values, find_cube_files, open_cubes
from models_genesis.data.pretraining.run_batches import RunBatches
from models_genesis.evaluation.restoration import evaluate_restoration
from models_genesis.methods import get_method, make_options, proxy_summary
from models_genesis.models.presets import resolve_weights
from models_genesis.models.unet2d import restoration_model_2d
from models_genesis.models.weights import load_keras2_weights
from models_genesis.training import devices, distribute
from models_genesis.training.callbacks import BestWeights, restoration_callbacks
from models_genesis.training.divergence import check_restoration_run, logged_losses
from models_genesis.training.distribute import fit_distributed
from models_genesis.training.restoration_figures import draw_run_figures
from models_genesis.training.resume import RunBackup, epochs_done
from models_genesis.training.run_folder import clear_outputs, prepare_run_dir, run_paths


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
            check_cube_values(path, cubes)  # one pass at load, not inside a training step
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
    config = config.with_method_training()  # the method's optimiser and schedule, recorded
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


def _datasets(config, files, batch_size, n_split: int = 1):
    """Training and validation pair generators. `steps_per_epoch` / `validation_steps` become the
    generators' `samples_per_epoch`, so each epoch is one whole pass of its generator: batch i of
    epoch e is made from (seed, e, i), and validation sees the same pairs every epoch. With
    batches split over `n_split` devices by Keras (`devices.data_parallel`), a last training
    batch they cannot share evenly is left out (`devices.whole_batch_samples`)."""
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
    whole = devices.whole_batch_samples(train.samples_per_epoch, batch_size, n_split)
    if whole != train.samples_per_epoch:
        print(f"{train.samples_per_epoch - whole} training samples per epoch left out: the last "
              f"batch cannot be split evenly over {n_split} devices.")
        train = make_dataset(files["train"], batch_size, shuffle=True, validation=False,
                             samples_per_epoch=whole, **kw)
    val = make_dataset(files["val"], batch_size, shuffle=False, validation=True,
                       samples_per_epoch=samples["val"], **kw)
    return train, val


def _training_data(config, train, method_callbacks):
    """What `fit` trains on: `RunBatches(train, config.epochs)`, the run's batches read through
    one iterator whose prefetching crosses epoch boundaries (`data.pretraining.run_batches`; `fit` then
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
    return {**{k: float(v) for k, v in values.items()}, "n_val": len(val) * val.batch_size,
            "chance_level": method.chance_level(method_options(config))}


def make_optimizer(config: PretrainConfig) -> keras.optimizers.Optimizer:
    """The optimiser of `config` (its method's own where a field is None, `METHOD_TRAINING`).

    `weight_decay` is Keras' (`w -= lr * weight_decay * w` each step), which for SGD without
    momentum equals PyTorch's L2 term (DeepCluster's); with momentum it is close to it.
    """
    config = config.with_method_training()
    decay = float(config.weight_decay) or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum,
                                    weight_decay=decay)
    return keras.optimizers.Adam(learning_rate=config.learning_rate, weight_decay=decay)


def _compile(model, config):
    opt = make_optimizer(config)
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
             callbacks: Sequence[keras.callbacks.Callback] = (), verbose="auto",
             strict: bool = False) -> Dict:
    """Pre-train Models Genesis on the restoration proxy task (paper Sec. 2,
    docs/release_reference.md, 'Pre-training schedule').

    Rerunning an interrupted run with the same config continues from its last finished epoch.

    Args:
        config: a `PretrainConfig` with `data_dir` and `out_dir` set.
        resume: train a finished run further (e.g. with more `epochs`).
        overwrite: delete the outputs of a previous run in `out_dir` and start over.
        callbacks: extra Keras callbacks.
        verbose: `fit`'s verbosity.
        strict: raise `UndertrainedError` (a ValueError) for a run that completed its schedule
            but restores worse than doing nothing, instead of warning (`training.divergence`).

    Returns:
        dict: `paths` (see `run_paths`), `metrics` (`evaluate_restoration` on the validation
        set with the best weights), `batch_size` (after any out-of-memory fallback), `epochs`
        (epochs done in all), `best_val_loss`, `best_epoch`, `status` ("trained" or
        "undertrained": see `training.divergence`) and `status_message` (None, or why the run
        is undertrained), `replicas` (devices the batch
        was split over), `is_chief` (False on the other workers of a multi-worker run, which write
        to `out_dir/workers/worker_{i}`).

    Raises:
        ValueError, FileNotFoundError, FileExistsError: bad config, missing or mis-shaped cubes,
            weights of another architecture, a finished run in `out_dir`; all before training.
        FloatingPointError: the run diverged (a NaN loss, or a rising loss and weights that
            restore worse than doing nothing), after its files are written.
        UndertrainedError: with `strict`, a run that restores worse than doing nothing.

    Warns:
        UndertrainedWarning: without `strict`, a run that completed its schedule but restores
            worse than returning the transformed input and than the best constant.
    """
    if not isinstance(config, PretrainConfig):
        raise TypeError(f"`config` must be a PretrainConfig. Received: config={type(config)}.")
    if config.out_dir is None:
        raise ValueError("`out_dir` must name the run folder. Received: out_dir=None.")

    # First: a tf.distribute strategy must precede any other TF op. Devices, batch and mixed
    # precision are checked before any work.
    placement = devices.placement(config.strategy, config.devices, config.batch_size,
                                  config.mixed_precision)
    is_chief, task = distribute.worker_role()
    out_dir = config.out_dir if is_chief else os.path.join(config.out_dir, "workers", f"worker_{task}")
    method_options(config)  # an unknown method or option fails before the data are read
    files = find_pretraining_cubes(config)
    config = resolve_method(config, files)  # every option's value, as config.json records it
    paths = run_paths(out_dir, config)
    mode = prepare_run_dir(paths, config, resume=resume, overwrite=overwrite)
    previous_policy = keras.mixed_precision.global_policy()
    if config.mixed_precision:
        _warn_if_cpu_bf16_conv_gradient_is_wrong(config)
        keras.mixed_precision.set_global_policy(MIXED_PRECISION[config.mixed_precision])
    run_scope = contextlib.ExitStack()
    try:
        run_scope.enter_context(placement.scope())  # JAX: keras.distribution over the devices
        keras.utils.set_random_seed(config.seed)
        with placement.build_scope():
            unet, model = build_restoration_model(config)
            if config.weights is not None:
                load_initial_weights(unet, config.weights)
            _compile(model, config)
        n_split = placement.n_devices if placement.splits_with_keras else 1
        data = _datasets(config, files, config.batch_size, n_split)
        samples = _sample_pairs(config, data[1])  # shape or transformation errors show here
        if is_chief:
            print_chance_level(config, data[1])
        else:
            samples = None  # the chief alone draws the figures
        _start_run_files(paths, config, mode)
        history, cbs, batch, val = _fit_with_fallback(
            config, paths, files, data, samples, unet, model, callbacks, verbose, placement,
            continue_stopped=resume)
        result = _finish_run(config, paths, unet, model, val, history, cbs, batch, samples)
        result = {**result, "replicas": placement.n_devices, "is_chief": is_chief}
        status, note = check_restoration_run(result["metrics"], logged_losses(paths["csv_log"]),
                                             out_dir=paths["out_dir"], strict=strict)
        return {**result, "status": status, "status_message": note}
    finally:
        run_scope.close()
        keras.mixed_precision.set_global_policy(previous_policy)


def _sample_pairs(config, val):
    """The first validation batch of pairs `(x, y)`, made before any file is written; returned
    for restoration methods (`y` without a mask channel: the figures' samples), else None."""
    pairs = val[0]
    if get_method(config.method).WRITES != "unet":
        return None
    return pairs[0], pairs[1][..., :1]


def _start_run_files(paths, config, mode: str) -> None:
    """Clear an earlier run's outputs (`mode` "fresh") or its stale `result` (a resumed run),
    then write the run's `config`."""
    if mode == "fresh":
        clear_outputs(paths)
    elif os.path.isfile(paths["result"]):
        os.remove(paths["result"])
    os.makedirs(paths["out_dir"], exist_ok=True)
    config.to_json(paths["config"])


def _fit_with_fallback(config, paths, files, data, samples, unet, model, extra, verbose,
                       placement=None, continue_stopped: bool = False):
    """`fit`, retrying with the batch size reduced by 2 on out-of-memory errors (the release).

    Under `multiworker`, `distribute.fit_distributed` trains instead of `fit` (which cannot run
    under MultiWorkerMirroredStrategy); there `batch_size` is the batch of each replica.
    `fit` gets `shuffle=False`: the pair generator already visits the cubes in an order drawn
    from (seed, epoch), while Keras' shuffle would draw from Python's global `random`, reseeded
    when a run restarts, so a resumed run would differ from an uninterrupted one. Where it can
    (`_training_data`), `fit` reads the whole run through one iterator (`RunBatches`), so its
    prefetching does not restart at every epoch. `placement` (`devices.placement`) says where
    the batches train.

    Returns:
        `(history, callbacks, batch_size, val)` of the fit that finished.
    """
    placement = placement or devices.Placement(None, 1)
    strategy, n_split = placement.strategy, placement.n_devices
    batch = config.batch_size
    while True:
        split = n_split if placement.splits_with_keras else 1
        train, val = data if batch == config.batch_size else _datasets(config, files, batch, split)
        own = get_method(config.method).callbacks(method_options(config), unet, model,
                                                  (train, val))
        fed = (train if config.strategy == "multiworker"
               else _training_data(config, train, own))
        cbs = restoration_callbacks(config, paths, target=unet, datasets=(fed, val),
                                    samples=samples, continue_stopped=continue_stopped)
        # The method's own (deepcluster: re-cluster before each epoch), after the backup's
        # restore at the start of training.
        cbs += own
        cbs += placement.callbacks()
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
            return history, cbs, batch, val
        except Exception as exc:  # noqa: BLE001  (each backend raises its own OOM type)
            if not is_out_of_memory(exc) or batch - 2 < 1 or (batch - 2) % n_split:
                raise
            print(f"Out of memory with batch size {batch}: retrying with batch size {batch - 2} "
                  f"({type(exc).__name__}).")
            batch -= 2


def _finish_run(config, paths, unet, model, val, history, callbacks, batch_size: int,
                samples) -> Dict:
    """Restore the best weights, score them on `val` (batches split by Keras are scored
    without the split, `devices`) and write the run's metrics, figures (`samples`, genesis 3D)
    and result.

    Raises:
        FloatingPointError: no epoch gave a finite val_loss (the run diverged).
    """
    best = next(cb for cb in callbacks if isinstance(cb, BestWeights))
    backup = next(cb for cb in callbacks if isinstance(cb, RunBackup))
    if not np.isfinite(best.best):
        raise FloatingPointError(
            f"Pre-training in {paths['out_dir']!r} diverged: no epoch gave a finite val_loss, so "
            f"no weights were saved. Lower `learning_rate` (now {config.learning_rate}) or use "
            f"`optimizer='adam'`.")
    if os.path.isfile(paths["best_weights"]):
        unet.load_weights(paths["best_weights"])
    with devices.without_split():
        metrics = final_metrics(config, model, val)
    result = {"paths": paths, "metrics": metrics, "batch_size": batch_size,
              "epochs": epochs_done(history, backup),
              "best_val_loss": best.best, "best_epoch": best.best_epoch,
              "config": dataclasses.asdict(config)}
    write_json(paths["metrics"], metrics)
    _print_final_metrics(config, metrics)
    if samples is not None and config.figures and config.method == "genesis" and config.dims == 3:
        result["figures"] = draw_run_figures(model, samples[1][0], paths["figures"],
                                             seed=config.seed)
    write_json(paths["result"], result, default=str)
    return result


def _print_final_metrics(config, metrics: Dict) -> None:
    """Print the validation scores of the best weights, and whether the proxy task was learned."""
    if "model_mse" in metrics:
        print(f"validation MSE: model {metrics['model_mse']:.6f}, identity (transformed input) "
              f"{metrics['identity_mse']:.6f} (ratio {metrics['ratio']:.3f}), best constant "
              f"{metrics['constant_mse']:.6f}")
    else:
        print(f"validation: {metrics}")
    proxy = proxy_summary(config.method, metrics)
    if proxy["proxy_learned"] is not None:
        print(f"proxy task ({config.method}): {proxy['proxy_metric']} {proxy['proxy_score']} "
              f"against {proxy['proxy_chance']} for a model that learned nothing: "
              + ("learned." if proxy["proxy_learned"] else
                 "NOT above it; fine-tuning from these weights compares nothing learned."))
