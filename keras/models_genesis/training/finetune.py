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
AUC over every candidate. Transfer scenario 1 (Sec. 3.2), the linear probe: `head="linear"`
(pooled encoder -> Dense(1)) with `freeze_encoder=True` (depth_0..7 fixed, BatchNorm in inference
mode); `freeze_blocks` fixes chosen blocks.

Files written to `config.out_dir` (when given): `finetune_config.json`, `task.json` (the run's
`TargetTask`: crop, intensity normalisation, spacing, crop scale, read back by
`predict-volume --model RUN`), `best.weights.h5` (the
best validation epoch), `history.csv`, `model.keras` (best weights; used by `predict-volume`) and
`results.json`. A run into a folder holding any of them is refused unless `overwrite`, which
deletes them (and nothing else) first, so an earlier run's checkpoint is never taken as this
run's result.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import keras
import numpy as np

from models_genesis.atomic import write_json
from models_genesis.config import FinetuneConfig
from models_genesis.data.target_tasks.candidate_crops import predict_candidates
from models_genesis.data.target_tasks.target_dataset import TargetDataset
from models_genesis.data.target_tasks import subsample_fraction
from models_genesis.evaluation.metrics import (DiceCoefficient, MeanIoUOverThresholds, auc_score,
                                               dice_coefficient, dice_loss, iou_score, mean_iou)
from models_genesis.evaluation.whole_volume import VOLUME_SCORE_DEFINITION, score_test_volumes
from models_genesis.outputs import check_output_dir, refuse_to_replace, remove_outputs
from models_genesis.training.callbacks import BestWeights
from models_genesis.training.finetune_data import (SPLITS, check_candidate_data, check_labels,
                                                   check_split, is_lazy, load_run_data, run_task,
                                                   validate_target_data)
from models_genesis.training.finetune_model import (build_finetune_model, frozen_blocks,
                                                    init_weights_file)
from models_genesis.training.resume import EpochLog

IOU_DEFINITION = ("mean_iou: the paper's IoU, two-class (background, foreground) mean IoU "
                  "averaged over thresholds 0.50:0.05:0.95; foreground_iou: IoU of the "
                  "foreground binarised at 0.5")
# What a run writes in its `out_dir` (see the module docstring).
RUN_FILES = ("finetune_config.json", "task.json", "best.weights.h5", "history.csv",
             "model.keras", "results.json")


def _compile(model, config: FinetuneConfig, kind: str, run_eagerly: bool = False):
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, beta_1=0.9,
                                      beta_2=0.999, epsilon=config.adam_epsilon)
    if kind == "classification":
        model.compile(optimizer=optimizer, loss="binary_crossentropy",
                      metrics=[keras.metrics.AUC(name="auc")], run_eagerly=run_eagerly)
    else:
        model.compile(optimizer=optimizer, loss=dice_loss, run_eagerly=run_eagerly,
                      metrics=[DiceCoefficient(name="dice"),
                               MeanIoUOverThresholds(name="mean_iou")])


def score_test(kind: str, y_true, y_prob) -> dict:
    """The paper's test metrics: `{"auc"}` or `{"mean_iou", "dice", "foreground_iou"}`."""
    if kind == "classification":
        return {"auc": auc_score(np.ravel(y_true), np.ravel(y_prob))}
    return {"mean_iou": mean_iou(y_true, y_prob), "dice": dice_coefficient(y_true, y_prob),
            "foreground_iou": iou_score(y_true, y_prob)}


def run_files(out_dir) -> list:
    """The files a fine-tuning run writes in `out_dir` (all it deletes with `overwrite`)."""
    return [os.path.join(os.fspath(out_dir), name) for name in RUN_FILES]


def finetune(config: FinetuneConfig, data=None, *, verbose="auto",
             run_eagerly: bool = False, overwrite: bool = False) -> dict:
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

    Returns:
        dict with `task, init, seed, label_fraction, metric` (`"auc"`, `"mean_iou"`, or
        `"volume_mean_iou"` when whole test volumes were scored; then also `volume_dice`,
        `volume_foreground_iou`, `volume_scores` per volume, `volume_score_definition`),
        `score` (that metric), the test metrics (`auc`; or `mean_iou`, `dice`,
        `foreground_iou`, with `iou_definition`), `n_train, n_valid, n_test`, `epochs`,
        `best_epoch`, `best_val_loss`, `seconds`, `weights` (loaded file or None), `out_dir`.

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
    config = config.resolve()
    task = config.target_task
    if config.out_dir is not None:  # before any work: never train into a run's files
        check_output_dir(config.out_dir, name="out_dir")
        if not overwrite:
            refuse_to_replace(run_files(config.out_dir), where=config.out_dir,
                              what="files of a fine-tuning run")
    weights = init_weights_file(config)
    if data is None:
        data = load_run_data(config, task)
    lazy = is_lazy(data)  # a prepared NCC/ECC folder: crops read from disk batch by batch
    if lazy:
        data = check_candidate_data(data, config, explicit_shape)
        spatial = tuple(data.input_shape)
    else:
        splits = validate_target_data(data, task.kind, explicit_shape)
        if config.label_fraction < 1.0:
            data = subsample_fraction(data, config.label_fraction,
                                      rng=np.random.default_rng([config.seed, 0x1ABE1]))
            splits["train"] = check_split(data, "train", task.kind,
                                           splits["valid"][0].shape[1:4])
            check_labels(task.kind, splits["train"][1], "y_train (after label_fraction)")
        spatial = splits["train"][0].shape[1:4]
    task_run = run_task(task, data, config, spatial)  # written as task.json beside the model
    config = dataclasses.replace(config, input_shape=tuple(int(s) for s in spatial))
    keras.utils.set_random_seed(int(config.seed))
    # Built before anything is written: weights that do not fit leave `out_dir` untouched.
    model = build_finetune_model(config, task.kind, spatial, weights)
    _compile(model, config, task.kind, run_eagerly)

    out_dir = config.out_dir
    scratch = None
    if out_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="finetune_")
        work_dir = scratch.name
    else:
        work_dir = os.fspath(out_dir)
        remove_outputs(run_files(work_dir))  # an earlier run's (`overwrite`): never loaded
        os.makedirs(work_dir, exist_ok=True)
        config.to_json(os.path.join(work_dir, "finetune_config.json"))
        task_run.to_json(os.path.join(work_dir, "task.json"))
    try:
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
        ]
        start = time.perf_counter()
        history = model.fit(train, validation_data=valid, epochs=config.epochs,
                            steps_per_epoch=config.steps_per_epoch,
                            validation_steps=config.validation_steps, callbacks=callbacks,
                            verbose=verbose)
        if os.path.isfile(checkpoint):
            model.load_weights(checkpoint)
        if lazy:  # every test candidate, one batch at a time

            paths, indices, y_te = data.split("test")
            y_prob = predict_candidates(model, paths, indices, batch_size=config.batch_size)
        else:
            y_prob = model.predict(x_te, batch_size=config.batch_size, verbose=0)
        seconds = time.perf_counter() - start
        metrics = score_test(task.kind, y_te, y_prob)
        if task.kind == "segmentation" and getattr(data, "test_volumes", ()):
            metrics.update(score_test_volumes(model, data.test_volumes, task_run,
                                              batch_size=config.batch_size,
                                              progress=verbose not in (0, 2)),
                           volume_score_definition=VOLUME_SCORE_DEFINITION)
        val_loss = np.asarray(history.history.get("val_loss", []), dtype=float)
        finite = np.isfinite(val_loss)
        result = {
            "task": task.code, "init": config.init, "seed": int(config.seed),
            "label_fraction": float(config.label_fraction),
            "metric": ("auc" if task.kind == "classification" else
                       "volume_mean_iou" if "volume_mean_iou" in metrics else "mean_iou"),
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
        }
        result["score"] = result[result["metric"]]
        if task.kind == "segmentation":
            result["iou_definition"] = IOU_DEFINITION
        if out_dir is not None:
            model_path = os.path.join(work_dir, "model.keras")
            model.save(model_path + ".tmp.keras")
            os.replace(model_path + ".tmp.keras", model_path)
            write_json(os.path.join(work_dir, "results.json"), result)
        return result
    finally:
        if scratch is not None:
            scratch.cleanup()
