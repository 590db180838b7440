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
    task = config.target_task
    # Devices, batch size and mixed precision checked before any work (`training.devices`).
    placement = devices.placement(config.strategy, config.devices, config.batch_size,
                                  config.mixed_precision)
    if config.out_dir is not None:  # before any work: never train into a run's files
        check_output_dir(config.out_dir, name="out_dir")
        if not overwrite:
            refuse_to_replace(run_files(config.out_dir), where=config.out_dir,
                              what="files of a fine-tuning run")
    weights = init_weights_file(config)
    if data is None:
        data = load_run_data(config, task)
    task = task_for_data(task, data)  # task custom: kind, channels and classes of the data set
    classes = dict(n_channels=task.n_channels, n_classes=task.n_classes)
    lazy = is_lazy(data)  # a prepared NCC/ECC folder: crops read from disk batch by batch
    if lazy:
        data = check_candidate_data(data, config, explicit_shape)
        spatial = tuple(data.input_shape)
    else:
        splits = validate_target_data(data, task.kind, explicit_shape, **classes)
        if config.label_fraction < 1.0:
            data = subsample_fraction(data, config.label_fraction,
                                      rng=np.random.default_rng([config.seed, 0x1ABE1]))
            splits["train"] = check_split(data, "train", task.kind,
                                           splits["valid"][0].shape[1:4], **classes)
            check_labels(task.kind, splits["train"][1], "y_train (after label_fraction)")
        spatial = splits["train"][0].shape[1:4]
    task_run = run_task(task, data, config, spatial)  # written as task.json beside the model
    config = dataclasses.replace(config, input_shape=tuple(int(s) for s in spatial))
    keras.utils.set_random_seed(int(config.seed))
    out_dir = config.out_dir
    scratch = None
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
            model = build_finetune_model(config, task.kind, spatial, weights, **classes)
            _compile(model, config, task.kind, run_eagerly, task.n_classes)

        if out_dir is None:
            scratch = tempfile.TemporaryDirectory(prefix="finetune_")
            work_dir = scratch.name
        else:
            work_dir = os.fspath(out_dir)
            remove_outputs(run_files(work_dir))  # an earlier run's (`overwrite`): never loaded
            os.makedirs(work_dir, exist_ok=True)
            config.to_json(os.path.join(work_dir, "finetune_config.json"))
            task_run.to_json(os.path.join(work_dir, "task.json"))
        loader = dict(workers=config.workers, use_multiprocessing=False)
        if lazy:
            train, valid = (data.dataset(name, batch_size=config.batch_size, seed=config.seed,
                                         augment=config.augment, **loader)
                            for name in ("train", "valid"))
            counts = {name: len(data.rows[name]) for name in SPLITS}
        else:
            (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (splits[s] for s in SPLITS)
            train = TargetDataset(x_tr, y_tr, batch_size=config.batch_size, shuffle=True,
                                  augment=config.augment, seed=config.seed, **loader)
            valid = TargetDataset(x_va, y_va, batch_size=config.batch_size, shuffle=False,
                                  augment=False, seed=config.seed, **loader)
            counts = {name: len(splits[name][0]) for name in SPLITS}
        if placement.n_devices > 1:  # every training batch split evenly over the devices
            n_train = len(train.x) if hasattr(train, "x") else len(getattr(train, "labels", ()))
            train = devices.whole_batches(train, n_train, config.batch_size, placement.n_devices)
        if placement.strategy is not None:
            devices.check_even_validation(counts["valid"], config.batch_size, placement.n_devices)
        for name, steps, dataset in (("steps_per_epoch", config.steps_per_epoch, train),
                                     ("validation_steps", config.validation_steps, valid)):
            if steps is not None and steps > len(dataset):
                raise ValueError(f"`{name}` must be at most the {len(dataset)} batches of one pass "
                                 f"(Keras stops when the data run out). Received: {name}={steps}.")

        checkpoint = os.path.join(work_dir, "best.weights.h5")
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                restore_best_weights=True)
        callbacks = [
            stopper,
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.lr_factor,
                                              patience=config.lr_patience, min_lr=config.min_lr),
            # Both written to a temporary name, then renamed: a kill never leaves half a file.
            # An interrupted fine-tuning does not resume: it is rerun with `overwrite`.
            BestWeights(model, checkpoint),
            EpochLog(os.path.join(work_dir, "history.csv")),
        ] + placement.callbacks() + extra_callbacks  # placement's: validation without the split
        if config.tensorboard and out_dir is not None:
            board = tensorboard_callback(os.path.join(work_dir, "tensorboard"))
            callbacks += [board] if board is not None else []
        start = time.perf_counter()
        history = model.fit(train, validation_data=valid, epochs=config.epochs,
                            steps_per_epoch=config.steps_per_epoch,
                            validation_steps=config.validation_steps, callbacks=callbacks,
                            verbose=verbose)
        if os.path.isfile(checkpoint):
            model.load_weights(checkpoint)
        run_scope.enter_context(devices.without_split())  # test batches of any size
        if lazy:  # every test candidate, one batch at a time

            paths, indices, y_te = data.split("test")
            y_prob = predict_candidates(model, paths, indices, batch_size=config.batch_size)
        else:
            y_prob = model.predict(x_te, batch_size=config.batch_size, verbose=0)
        seconds = time.perf_counter() - start
        metrics = score_test(task.kind, y_te, y_prob, task.n_classes)
        if task.kind == "segmentation" and getattr(data, "test_volumes", ()):
            metrics.update(score_test_volumes(model, data.test_volumes, task_run,
                                              batch_size=config.batch_size,
                                              progress=verbose not in (0, 2)),
                           volume_score_definition=VOLUME_SCORE_DEFINITION)
        val_loss = np.asarray(history.history.get("val_loss", []), dtype=float)
        finite = np.isfinite(val_loss)
        volume = "volume_" if "n_test_volumes" in metrics else ""
        result = {
            "task": task.code, "init": config.init, "seed": int(config.seed),
            "label_fraction": float(config.label_fraction),
            "metric": ("accuracy" if "accuracy" in metrics else
                       "auc" if task.kind == "classification" else
                       volume + ("mean_dice" if task.n_classes > 1 else "mean_iou")),
            **metrics,
            "n_train": int(counts["train"]), "n_valid": int(counts["valid"]),
            "n_test": int(counts["test"]),
            "epochs": int(len(history.history.get("loss", []))),
            # 0 / NaN when no epoch gave a finite validation loss (diverged training).
            "best_epoch": (int(np.argmin(np.where(finite, val_loss, np.inf))) + 1
                           if finite.any() else 0),
            "best_val_loss": float(val_loss[finite].min()) if finite.any() else float("nan"),
            "seconds": float(seconds), "weights": weights, "out_dir": out_dir,
            "head": config.head, "frozen_blocks": list(frozen_blocks(config)),
            "devices": placement.n_devices,
        }
        result["score"] = result[result["metric"]]
        if task.kind == "segmentation" and task.n_classes == 1:
            result["iou_definition"] = IOU_DEFINITION
        if out_dir is not None:
            model_path = os.path.join(work_dir, "model.keras")
            model.save(model_path + ".tmp.keras")
            os.replace(model_path + ".tmp.keras", model_path)
            write_json(os.path.join(work_dir, "results.json"), result)
        return result
    finally:
        run_scope.close()
        if scratch is not None:
            scratch.cleanup()
