"""Fine-tuning on a target task: one run of the paper's protocol (Sec. 3.2,
docs/release_reference.md, 'Target tasks').

A run builds the task's head model (classification on `depth_7_relu`, segmentation on
`depth_13_relu`), initialised from a Genesis weight file (`init="genesis"`) or from scratch with
one of the paper's baselines (`uniform`, `glorot_uniform`, `he_uniform`); trains it with Adam
(the task's learning rate, beta1 0.9, beta2 0.999, eps 1e-8) on binary cross-entropy
(classification) or 1 - Dice (segmentation), with early stopping and ReduceLROnPlateau(0.5, 6) on
the validation loss and a best checkpoint; then scores the test split with the paper's metric:
AUC for NCC/ECC; for NCS/LCS/BMS the paper's IoU (two-class mean IoU over thresholds
0.50:0.05:0.95, key `mean_iou`) together with Dice and the foreground IoU (`foreground_iou`).
When the data name whole test volumes (LCS, BMS: `test_volumes`), they are segmented by sliding
windows with the run's preprocessing and scored on each whole volume as in the paper
(`volume_mean_iou`, `volume_dice`, `volume_foreground_iou`; `score` is then `volume_mean_iou`);
the crop scores stay in `mean_iou`, `dice`, `foreground_iou`. A prepared NCC/ECC folder is read
lazily: every positive and `negative_ratio` fresh negatives per positive each epoch, and the test
AUC over every candidate. Task `custom` (your own data, docs/your_own_data.md) takes its kind,
input channels and classes from the data (`info["task_fields"]`): C-channel crops, a softmax
over the classes trained with Dice + cross-entropy, scored by the Dice of each label
(`mean_dice`, `label_dice`; on whole volumes `volume_mean_dice`, `volume_label_dice`), or a
whole-volume classifier (AUC for two classes, else `accuracy`).
Transfer scenario 1 (Sec. 3.2), the linear probe: `head="linear"`
(pooled encoder -> Dense(1)) with `freeze_encoder=True` (depth_0..7 fixed, BatchNorm in inference
mode); `freeze_blocks` fixes chosen blocks.

Files written to `config.out_dir` (when given): `finetune_config.json`, `task.json` (the run's
`TargetTask`: crop, intensity normalisation, spacing, crop scale, read back by
`predict-volume --model RUN`), `best.weights.h5` (the
best validation epoch), `history.csv`, `model.keras` (best weights; used by `predict-volume`),
`results.json` and, with `config.tensorboard` (the default), the TensorBoard logs in
`tensorboard/`. A run into a folder holding any of them is refused unless `overwrite`, which
deletes them (and nothing else) first, so an earlier run's checkpoint is never taken as this
run's result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time

import keras
import numpy as np

from models_genesis.atomic import write_json
from models_genesis.config import MIXED_PRECISION, FinetuneConfig
from models_genesis.data.target_tasks.candidate_crops import predict_candidates
from models_genesis.data.target_tasks.target_dataset import TargetDataset
from models_genesis.data.target_tasks import subsample_fraction
from models_genesis.evaluation.metrics import (DiceCoefficient, MeanIoUOverThresholds, auc_score,
                                               dice_ce_loss, dice_coefficient, dice_loss,
                                               iou_score, label_dice, mean_iou)
from models_genesis.evaluation.whole_volume import VOLUME_SCORE_DEFINITION, score_test_volumes
from models_genesis.outputs import check_output_dir, refuse_to_replace, remove_outputs
from models_genesis.training import devices
from models_genesis.training.callbacks import BestWeights, tensorboard_callback
from models_genesis.training.finetune_data import (SPLITS, check_candidate_data, check_labels,
                                                   check_split, is_lazy, load_run_data, run_task,
                                                   task_for_data, validate_target_data)
from models_genesis.training.finetune_model import (build_finetune_model, frozen_blocks,
                                                    init_weights_file)
from models_genesis.training.resume import EpochLog

IOU_DEFINITION = ("mean_iou: the paper's IoU, two-class (background, foreground) mean IoU "
                  "averaged over thresholds 0.50:0.05:0.95; foreground_iou: IoU of the "
                  "foreground binarised at 0.5")
# What a run writes in its `out_dir` (see the module docstring).
RUN_FILES = ("finetune_config.json", "task.json", "best.weights.h5", "history.csv",
             "model.keras", "results.json", "tensorboard")


def _compile(model, config: FinetuneConfig, kind: str, run_eagerly: bool = False,
             n_classes: int = 1):
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, beta_1=0.9,
                                      beta_2=0.999, epsilon=config.adam_epsilon)
    if n_classes > 1:  # a softmax head (task custom)
        model.compile(optimizer=optimizer, run_eagerly=run_eagerly,
                      loss=("sparse_categorical_crossentropy" if kind == "classification"
                            else dice_ce_loss),
                      metrics=(["accuracy"] if kind == "classification" else []))
    elif kind == "classification":
        model.compile(optimizer=optimizer, loss="binary_crossentropy",
                      metrics=[keras.metrics.AUC(name="auc")], run_eagerly=run_eagerly)
    else:
        model.compile(optimizer=optimizer, loss=dice_loss, run_eagerly=run_eagerly,
                      metrics=[DiceCoefficient(name="dice"),
                               MeanIoUOverThresholds(name="mean_iou")])


def score_test(kind: str, y_true, y_prob, n_classes: int = 1) -> dict:
    """The paper's test metrics: `{"auc"}` or `{"mean_iou", "dice", "foreground_iou"}`; for a
    softmax head (`n_classes` > 1) `{"accuracy"}` or `{"mean_dice", "label_dice"}` (the Dice of
    each foreground class of the argmax)."""
    if n_classes > 1:
        pred = np.argmax(np.asarray(y_prob), axis=-1)
        if kind == "classification":
            return {"accuracy": float(np.mean(pred == np.ravel(y_true)))}
        return label_dice(np.asarray(y_true)[..., 0], pred, n_classes)
    if kind == "classification":
        return {"auc": auc_score(np.ravel(y_true), np.ravel(y_prob))}
    return {"mean_iou": mean_iou(y_true, y_prob), "dice": dice_coefficient(y_true, y_prob),
            "foreground_iou": iou_score(y_true, y_prob)}


def run_files(out_dir) -> list:
    """The files a fine-tuning run writes in `out_dir` (all it deletes with `overwrite`)."""
    return [os.path.join(os.fspath(out_dir), name) for name in RUN_FILES]


def finetune(config: FinetuneConfig, data=None, *, verbose="auto",
             run_eagerly: bool = False, overwrite: bool = False, callbacks=()) -> dict:
    """Fine-tune one model on a target task and score it on the test split.

    Args:
        config: the run (`FinetuneConfig`); `None` task fields take the task's values
            (`TARGET_TASKS`). `init="genesis"` requires `weights` (file or preset name).
        data: a `TargetData` (splits as described in `validate_target_data`); None loads
            `config.data_dir` with `load_target_data`. Either way the training split is reduced
            to `config.label_fraction` (stratified) with a generator seeded by `config.seed` only,
            so runs with the same seed use the same labelled subset whatever their init.
        verbose: Keras `fit` verbosity (`"auto"`, 0, 1, 2).
        run_eagerly: skip graph tracing (Keras `run_eagerly`): quicker for a handful of tiny
            steps (tests, smoke runs), slower for real training.
        overwrite: delete the files of an earlier run in `config.out_dir` (`RUN_FILES`, nothing
            else) before training; without it, an `out_dir` holding any of them is refused.
        callbacks: extra Keras callbacks for `fit`.

    Returns:
        dict with `task, init, seed, label_fraction, metric` (`"auc"`, `"mean_iou"`, or
        `"volume_mean_iou"` when whole test volumes were scored; then also `volume_dice`,
        `volume_foreground_iou`, `volume_scores` per volume, `volume_score_definition`),
        `score` (that metric), the test metrics (`auc`; or `mean_iou`, `dice`,
        `foreground_iou`, with `iou_definition`), `n_train, n_valid, n_test`, `epochs`,
        `best_epoch`, `best_val_loss`, `seconds`, `weights` (loaded file or None), `out_dir`,
        `devices` (devices or replicas each batch was split over).

    Raises:
        ValueError: bad data (see `validate_target_data`), a crop not divisible by 8, a missing
            `data_dir`, `init="genesis"` without weights or with a file that does not fit.
        FileNotFoundError: a missing weight file.
        FileExistsError: `out_dir` holds an earlier run's files and `overwrite` is False.
        NotADirectoryError, PermissionError: `out_dir` is a file or not writable.

    Example:
        >>> cfg = FinetuneConfig(task="ncs", init="genesis", weights="Genesis_Chest_CT.h5",
        ...                      data_dir="datasets/ncs", out_dir="runs/ncs_genesis_0")
        >>> finetune(cfg)["mean_iou"]
    """
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"`config` must be a FinetuneConfig. Received: {type(config).__name__}.")
    explicit_shape = config.input_shape
    extra_callbacks = list(callbacks)
    config = config.resolve()
    # Devices, batch size and mixed precision checked before any work (`training.devices`).
    placement = devices.placement(config.strategy, config.devices, config.batch_size,
                                  config.mixed_precision)
    if config.out_dir is not None:  # before any work: never train into a run's files
        check_output_dir(config.out_dir, name="out_dir")
        if not overwrite:
            refuse_to_replace(run_files(config.out_dir), where=config.out_dir,
                              what="files of a fine-tuning run")
    weights = init_weights_file(config)

    # The data: the task's kind, channels and classes (task custom), checked splits and crop.
    if data is None:
        data = load_run_data(config, config.target_task)
    task = task_for_data(config.target_task, data)
    data, splits, spatial = _checked_data(data, config, task, explicit_shape)
    task_run = run_task(task, data, config, spatial)  # written as task.json beside the model
    config = dataclasses.replace(config, input_shape=tuple(int(s) for s in spatial))
    keras.utils.set_random_seed(int(config.seed))

    # The run's mixed-precision policy and (JAX) keras.distribution, both undone at the end.
    run_scope = contextlib.ExitStack()
    run_scope.callback(keras.mixed_precision.set_global_policy,
                       keras.mixed_precision.global_policy())
    try:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy(MIXED_PRECISION[config.mixed_precision])
        run_scope.enter_context(placement.scope())
        # Built before anything is written: weights that do not fit leave `out_dir` untouched.
        with placement.build_scope():
            model = build_finetune_model(config, task.kind, spatial, weights,
                                         n_channels=task.n_channels, n_classes=task.n_classes)
            _compile(model, config, task.kind, run_eagerly, task.n_classes)
        if config.out_dir is None:  # checkpoint and history in a folder deleted at the end
            work_dir = run_scope.enter_context(tempfile.TemporaryDirectory(prefix="finetune_"))
        else:
            work_dir = _start_run_folder(config, task_run)

        # Train, with early stopping on the validation loss, then restore the best epoch.
        train, valid, counts = _datasets(config, data, splits)
        train = _fit_data(config, placement, train, valid, counts["valid"])
        checkpoint = os.path.join(work_dir, "best.weights.h5")
        callbacks = _callbacks(config, model, work_dir, checkpoint, placement, extra_callbacks)
        start = time.perf_counter()
        history = model.fit(train, validation_data=valid, epochs=config.epochs,
                            steps_per_epoch=config.steps_per_epoch,
                            validation_steps=config.validation_steps, callbacks=callbacks,
                            verbose=verbose)
        if os.path.isfile(checkpoint):
            model.load_weights(checkpoint)

        # Score the test split: its crops, and its whole volumes where the data name them.
        run_scope.enter_context(devices.without_split())  # test batches of any size
        y_test, y_prob = _predict_test_split(model, data, splits, config.batch_size)
        seconds = time.perf_counter() - start
        metrics = _score_test_split(model, task_run, data, y_test, y_prob,
                                    batch_size=config.batch_size,
                                    progress=verbose not in (0, 2))
        result = _run_result(config, task, metrics, counts, history, seconds=seconds,
                             weights=weights, n_devices=placement.n_devices)
        if config.out_dir is not None:
            _save_run(work_dir, model, result)
        return result
    finally:
        run_scope.close()


def _checked_data(data, config: FinetuneConfig, task, explicit_shape):
    """Check the run's data and reduce its training split to `config.label_fraction`.

    Returns:
        `(data, splits, spatial)`: `splits` maps each of `SPLITS` to its checked `(x, y)`, or is
        None for a prepared NCC/ECC folder (crops read from disk batch by batch); `spatial` is
        the crop `(rows, cols, deps)`.
    """
    if is_lazy(data):
        data = check_candidate_data(data, config, explicit_shape)
        return data, None, tuple(data.input_shape)
    classes = dict(n_channels=task.n_channels, n_classes=task.n_classes)
    splits = validate_target_data(data, task.kind, explicit_shape, **classes)
    if config.label_fraction < 1.0:
        data = subsample_fraction(data, config.label_fraction,
                                  rng=np.random.default_rng([config.seed, 0x1ABE1]))
        splits["train"] = check_split(data, "train", task.kind,
                                      splits["valid"][0].shape[1:4], **classes)
        check_labels(task.kind, splits["train"][1], "y_train (after label_fraction)")
    return data, splits, splits["train"][0].shape[1:4]


def _start_run_folder(config: FinetuneConfig, task_run) -> str:
    """Delete an earlier run's files (`overwrite`: never loaded), create `config.out_dir` and
    write `finetune_config.json` and `task.json` there; return the folder."""
    work_dir = os.fspath(config.out_dir)
    remove_outputs(run_files(work_dir))
    os.makedirs(work_dir, exist_ok=True)
    config.to_json(os.path.join(work_dir, "finetune_config.json"))
    task_run.to_json(os.path.join(work_dir, "task.json"))
    return work_dir


def _datasets(config: FinetuneConfig, data, splits):
    """The training and validation batches, and the size of each split.

    Returns:
        `(train, valid, counts)`: a prepared folder's datasets (`splits` None) or
        `TargetDataset`s of the in-memory splits; `counts` maps each of `SPLITS` to its size.
    """
    loader = dict(workers=config.workers, use_multiprocessing=False)
    if splits is None:
        train, valid = (data.dataset(name, batch_size=config.batch_size, seed=config.seed,
                                     augment=config.augment, **loader)
                        for name in ("train", "valid"))
        return train, valid, {name: len(data.rows[name]) for name in SPLITS}
    (x_tr, y_tr), (x_va, y_va) = splits["train"], splits["valid"]
    train = TargetDataset(x_tr, y_tr, batch_size=config.batch_size, shuffle=True,
                          augment=config.augment, seed=config.seed, **loader)
    valid = TargetDataset(x_va, y_va, batch_size=config.batch_size, shuffle=False,
                          augment=False, seed=config.seed, **loader)
    return train, valid, {name: len(splits[name][0]) for name in SPLITS}


def _fit_data(config: FinetuneConfig, placement, train, valid, n_valid: int):
    """The training batches `fit` reads (with several devices, only those that split evenly over
    them), after checking the validation split and the step counts against the data.

    Raises:
        ValueError: `steps_per_epoch` or `validation_steps` above the batches of one pass, or a
            validation split a tf.distribute strategy cannot share (`devices`).
    """
    if placement.n_devices > 1:  # every training batch split evenly over the devices
        n_train = len(train.x) if hasattr(train, "x") else len(getattr(train, "labels", ()))
        train = devices.whole_batches(train, n_train, config.batch_size, placement.n_devices)
    if placement.strategy is not None:
        devices.check_even_validation(n_valid, config.batch_size, placement.n_devices)
    for name, steps, dataset in (("steps_per_epoch", config.steps_per_epoch, train),
                                 ("validation_steps", config.validation_steps, valid)):
        if steps is not None and steps > len(dataset):
            raise ValueError(f"`{name}` must be at most the {len(dataset)} batches of one pass "
                             f"(Keras stops when the data run out). Received: {name}={steps}.")
    return train


def _callbacks(config: FinetuneConfig, model, work_dir: str, checkpoint: str, placement,
               extra_callbacks) -> list:
    """The run's callbacks: early stopping and ReduceLROnPlateau on the validation loss, the
    best checkpoint, `history.csv`, the placement's, the caller's and TensorBoard's."""
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.lr_factor,
                                          patience=config.lr_patience, min_lr=config.min_lr),
        # Both written to a temporary name, then renamed: a kill never leaves half a file.
        # An interrupted fine-tuning does not resume: it is rerun with `overwrite`.
        BestWeights(model, checkpoint),
        EpochLog(os.path.join(work_dir, "history.csv")),
    ] + placement.callbacks() + extra_callbacks  # placement's: validation without the split
    if config.tensorboard and config.out_dir is not None:
        board = tensorboard_callback(os.path.join(work_dir, "tensorboard"))
        callbacks += [board] if board is not None else []
    return callbacks


def _predict_test_split(model, data, splits, batch_size: int):
    """`(y_true, y_prob)` of the test split: every candidate of a prepared folder (`splits`
    None), one batch at a time, or the in-memory test crops."""
    if splits is None:
        paths, indices, y_test = data.split("test")
        return y_test, predict_candidates(model, paths, indices, batch_size=batch_size)
    x_test, y_test = splits["test"]
    return y_test, model.predict(x_test, batch_size=batch_size, verbose=0)


def _score_test_split(model, task_run, data, y_test, y_prob, *, batch_size: int,
                      progress: bool) -> dict:
    """`score_test` of the test crops; for segmentation data that name whole test volumes
    (`data.test_volumes`), also their `volume_*` scores with the run's preprocessing."""
    metrics = score_test(task_run.kind, y_test, y_prob, task_run.n_classes)
    if task_run.kind == "segmentation" and getattr(data, "test_volumes", ()):
        metrics.update(score_test_volumes(model, data.test_volumes, task_run,
                                          batch_size=batch_size, progress=progress),
                       volume_score_definition=VOLUME_SCORE_DEFINITION)
    return metrics


def _metric_name(task, metrics: dict) -> str:
    """The key of `metrics` that is the run's `score`."""
    if "accuracy" in metrics:
        return "accuracy"
    if task.kind == "classification":
        return "auc"
    volume = "volume_" if "n_test_volumes" in metrics else ""
    return volume + ("mean_dice" if task.n_classes > 1 else "mean_iou")


def _best_validation_epoch(history):
    """`(best_epoch, best_val_loss)` of `history` (epochs counted from 1); `(0, nan)` when no
    epoch gave a finite validation loss (diverged training)."""
    val_loss = np.asarray(history.history.get("val_loss", []), dtype=float)
    finite = np.isfinite(val_loss)
    if not finite.any():
        return 0, float("nan")
    return int(np.argmin(np.where(finite, val_loss, np.inf))) + 1, float(val_loss[finite].min())


def _run_result(config: FinetuneConfig, task, metrics: dict, counts: dict, history, *,
                seconds: float, weights, n_devices: int) -> dict:
    """What `finetune` returns and writes as `results.json` (see its docstring)."""
    best_epoch, best_val_loss = _best_validation_epoch(history)
    result = {
        "task": task.code, "init": config.init, "seed": int(config.seed),
        "label_fraction": float(config.label_fraction),
        "metric": _metric_name(task, metrics),
        **metrics,
        "n_train": int(counts["train"]), "n_valid": int(counts["valid"]),
        "n_test": int(counts["test"]),
        "epochs": int(len(history.history.get("loss", []))),
        "best_epoch": best_epoch, "best_val_loss": best_val_loss,
        "seconds": float(seconds), "weights": weights, "out_dir": config.out_dir,
        "head": config.head, "frozen_blocks": list(frozen_blocks(config)),
        "devices": n_devices,
    }
    result["score"] = result[result["metric"]]
    if task.kind == "segmentation" and task.n_classes == 1:
        result["iou_definition"] = IOU_DEFINITION
    return result


def _save_run(work_dir: str, model, result: dict) -> None:
    """Write `model.keras` (the best weights; through a temporary name) and `results.json`."""
    model_path = os.path.join(work_dir, "model.keras")
    model.save(model_path + ".tmp.keras")
    os.replace(model_path + ".tmp.keras", model_path)
    write_json(os.path.join(work_dir, "results.json"), result)
