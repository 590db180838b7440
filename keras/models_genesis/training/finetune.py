"""Fine-tuning on a target task: one run of the paper's protocol (Sec. 3.2, REFERENCE 6).

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
from typing import Optional

import keras
import numpy as np

from models_genesis.atomic import write_json
from models_genesis.config import FinetuneConfig, SCRATCH_INITS
from models_genesis.data.candidate_crops import predict_candidates
from models_genesis.data.target_dataset import TargetDataset
from models_genesis.data.target_tasks import subsample_fraction
from models_genesis.evaluation.metrics import (DiceCoefficient, MeanIoUOverThresholds, auc_score,
                                               dice_coefficient, dice_loss, iou_score, mean_iou)
from models_genesis.evaluation.whole_volume import VOLUME_SCORE_DEFINITION, score_test_volumes
from models_genesis.methods import ENCODER_METHODS, RESTORATION_METHODS, encoder_layer_names
from models_genesis.models.heads import encoder_blocks, target_model
from models_genesis.models.presets import PRETRAINED_WEIGHTS, resolve_weights
from models_genesis.models.unet3d import BN_MOMENTUM
from models_genesis.models.weights import load_keras2_weights, read_keras2_weights
from models_genesis.outputs import check_output_dir, refuse_to_replace, remove_outputs
from models_genesis.training.callbacks import BestWeights
from models_genesis.training.finetune_data import (check_candidate_data, is_lazy, load_run_data,
                                                   run_task)
from models_genesis.training.resume import EpochLog

IOU_DEFINITION = ("mean_iou: the paper's IoU, two-class (background, foreground) mean IoU "
                  "averaged over thresholds 0.50:0.05:0.95; foreground_iou: IoU of the "
                  "foreground binarised at 0.5")
_SPLITS = ("train", "valid", "test")
# What a run writes in its `out_dir` (see the module docstring).
RUN_FILES = ("finetune_config.json", "task.json", "best.weights.h5", "history.csv",
             "model.keras", "results.json")


def _check_split(data, split: str, kind: str, spatial) -> tuple:
    """Return (x, y) of one split as float32 channels_last arrays, or raise ValueError."""
    x, y = getattr(data, f"x_{split}", None), getattr(data, f"y_{split}", None)
    if x is None or y is None:
        raise ValueError(f"`data` must provide x_{split} and y_{split}. Received: "
                         f"x_{split}={type(x).__name__}, y_{split}={type(y).__name__}.")
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 5 or x.shape[-1] != 1 or x.shape[0] == 0:
        raise ValueError(f"`x_{split}` must be a non-empty (N, rows, cols, deps, 1) array "
                         f"(channels_last). Received: x_{split}.shape={x.shape}.")
    if spatial is not None and tuple(x.shape[1:4]) != tuple(spatial):
        raise ValueError(f"`x_{split}` crops must be {tuple(spatial)} (the training crop). "
                         f"Received: x_{split}.shape={x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`x_{split}` holds NaN or infinite values.")
    if kind == "classification":
        if y.shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise ValueError(f"`y_{split}` must hold one label per crop, shape ({x.shape[0]},). "
                             f"Received: y_{split}.shape={y.shape}.")
        y = y.reshape(-1)
    elif y.shape != x.shape:
        raise ValueError(f"`y_{split}` masks must be on the grid of `x_{split}`, shape {x.shape}. "
                         f"Received: y_{split}.shape={y.shape}.")
    values = np.unique(y)
    if not np.all(np.isin(values, (0, 1))):
        raise ValueError(f"`y_{split}` must hold binary labels 0/1. Received values: "
                         f"{values[:10].tolist()}.")
    return x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)


def validate_target_data(data, kind: str, input_shape=None) -> dict:
    """Check a `TargetData` before training and return its splits as float32 arrays.

    Args:
        data: object with `x_train, y_train, x_valid, y_valid, x_test, y_test`; x of shape
            (N, rows, cols, deps, 1) in [0, 1]; y labels (N,) for classification or masks of the
            shape of x for segmentation, binary.
        kind: `"classification"` or `"segmentation"`.
        input_shape: expected crop (rows, cols, deps), or None to take the training crop.

    Returns:
        `{"train": (x, y), "valid": (x, y), "test": (x, y)}`; classification y as (N,).

    Raises:
        ValueError: a missing split, wrong shapes (masks on another grid), non-binary labels,
            a crop not divisible by 8, a training set with one class or only empty masks, a
            classification test set with one class (its AUC would be undefined).
    """
    spatial = None if input_shape is None else tuple(int(s) for s in input_shape)
    splits = {}
    for split in _SPLITS:
        splits[split] = _check_split(data, split, kind, spatial)
        spatial = splits[split][0].shape[1:4]
    if any(s % 8 for s in spatial):
        raise ValueError("Crops must be divisible by 8 in every axis (three 2x poolings of the "
                         f"U-Net). Received: crop {tuple(spatial)}.")
    _check_labels(kind, splits["train"][1], "y_train")
    if kind == "classification":
        _check_labels(kind, splits["test"][1], "y_test")
    return splits


def _check_labels(kind: str, y, name: str) -> None:
    if kind == "classification" and np.unique(y).size < 2:
        raise ValueError(f"`{name}` must hold both classes (0 and 1) to train and to compute the "
                         f"AUC. Received: only {np.unique(y).tolist()}.")
    if kind == "segmentation" and not np.any(y):
        raise ValueError(f"Every mask of `{name}` is empty; there is no foreground to learn.")


def _genesis_weights(config: FinetuneConfig) -> Optional[str]:
    """The weight file of a method init (a path; for genesis also a preset name), checked
    against what `pretrain --method config.init` writes (`check_method_weights`); None for
    the scratch initialisers."""
    if config.init in SCRATCH_INITS:
        return None
    if not config.weights:
        raise ValueError(f"`init={config.init!r}` needs a pre-trained weight file in `weights` "
                         f"(the one `pretrain --method {config.init}` wrote; for genesis also a "
                         "preset name). Received: weights=None.")

    name = os.fspath(config.weights)
    preset = config.init == "genesis" and str(name).lower() in PRETRAINED_WEIGHTS
    if not preset and not os.path.isfile(name):
        raise FileNotFoundError(
            f"Weight file not found: {name!r} (`weights`). Give an existing file"
            + (f" or a preset name {sorted(PRETRAINED_WEIGHTS)}." if config.init == "genesis"
               else "."))
    path = os.fspath(resolve_weights(name)) if preset else name
    check_method_weights(path, config.init)
    return path


def check_method_weights(path: str, method: str) -> None:
    """Refuse, before training, a weight file that `pretrain --method method` cannot have written.

    Restoration methods (genesis, denoising, inpainting, patch_shuffling) write the whole U-Net
    in the Keras 2 layout: the file must hold the encoder and the decoder layers. Encoder
    methods (jigsaw, rubik, deepcluster) write the encoder `depth_0..7` only: the file must hold
    it and no decoder (a whole U-Net is a restoration method's). Only these layers are read.

    Raises:
        ValueError: a Keras 3 `.weights.h5` file, a file of the other kind, or a file missing
            expected layers (the message names the first one and the file's layers).
    """
    if str(path).endswith(".weights.h5"):
        raise ValueError(f"`finetune` reads the Keras 2 layout file that `pretrain` writes next to "
                         f"{os.path.basename(path)!r} (Genesis_Chest_CT.h5 or {method}.h5). "
                         f"Received: weights={path!r}.")
    layers = set(read_keras2_weights(path))
    decoder = [f"depth_{i}_conv" for i in range(8, 14)]
    missing = [name for name in encoder_layer_names() + (decoder if method in RESTORATION_METHODS
                                                          else []) if name not in layers]
    listed = f"{sorted(layers)[:8]}... ({len(layers)} layers with weights)"
    if method in RESTORATION_METHODS and missing and not set(encoder_layer_names()) - layers:
        raise ValueError(f"{path!r} holds an encoder only (depth_0..7; written by an encoder "
                         f"method, one of {list(ENCODER_METHODS)}), but `init={method!r}` loads "
                         f"the whole U-Net that `pretrain --method {method}` writes.")
    if missing:
        raise ValueError(f"{path!r} is not a `pretrain --method {method}` weight file: layer "
                         f"{missing[0]!r} is missing (and {len(missing) - 1} more). The file "
                         f"holds {listed}.")
    if method in ENCODER_METHODS and set(decoder) & layers:
        raise ValueError(f"{path!r} holds a whole U-Net (written by a restoration method, one of "
                         f"{list(RESTORATION_METHODS)}), but `init={method!r}` loads the encoder "
                         f"that `pretrain --method {method}` writes. Use that method as --init.")


def build_finetune_model(config: FinetuneConfig, kind: str, spatial, weights: Optional[str]):
    """The task's head model, its body from `weights` or from scratch with `config.init`.

    What is loaded: for a restoration init (genesis, denoising, inpainting, patch_shuffling)
    every `depth_*` layer of the model (the encoder for classification, the whole U-Net for
    segmentation); for an encoder init (jigsaw, rubik, deepcluster) the encoder `depth_0..7`,
    the decoder of a segmentation model keeping its initialiser like the head.
    """
    # Pre-trained: the layers not loaded (head, decoder) keep Keras' default (glorot_uniform).
    initializer = "glorot_uniform" if weights is not None else config.init
    encoder_only = weights is not None and config.init in ENCODER_METHODS
    model = target_model(kind, tuple(spatial) + (1,), n_base_filters=config.n_base_filters,
                         kernel_initializer=initializer,
                         weights=None if encoder_only else weights, head=config.head,
                         frozen_blocks=frozen_blocks(config),
                         bn_momentum=(BN_MOMENTUM if config.bn_momentum is None
                                      else float(config.bn_momentum)))
    if encoder_only:
        load_keras2_weights(model, weights, layers=encoder_layer_names())
    return model


def frozen_blocks(config: FinetuneConfig) -> tuple:
    """The `depth_{i}` blocks a run keeps fixed: `freeze_blocks`, plus depth_0..7 with
    `freeze_encoder` (transfer scenario 1, Sec. 3.2)."""
    blocks = set(config.freeze_blocks) | (set(encoder_blocks()) if config.freeze_encoder else set())
    return tuple(sorted(blocks))


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
    weights = _genesis_weights(config)
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
            splits["train"] = _check_split(data, "train", task.kind,
                                           splits["valid"][0].shape[1:4])
            _check_labels(task.kind, splits["train"][1], "y_train (after label_fraction)")
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
            counts = {name: len(data.rows[name]) for name in _SPLITS}
        else:
            (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (splits[s] for s in _SPLITS)
            train = TargetDataset(x_tr, y_tr, batch_size=config.batch_size, shuffle=True,
                                  augment=config.augment, seed=config.seed, **loader)
            valid = TargetDataset(x_va, y_va, batch_size=config.batch_size, shuffle=False,
                                  augment=False, seed=config.seed, **loader)
            counts = {name: len(splits[name][0]) for name in _SPLITS}
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
