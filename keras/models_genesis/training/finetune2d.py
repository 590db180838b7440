"""Fine-tuning 2D models on the 3D target tasks: the 2D / 2.5D baselines of paper Sec. 4.5.

`finetune_2d(data, inputs="2d" | "2.5d", init=...)` reformats a target task's crops
(`data.target_tasks.inputs2d`), builds `models.heads2d.target_model_2d`, trains it with the target tasks'
optimiser (Adam 1e-3, beta 0.9 / 0.999, Sec. 3.3) and early stopping on the validation loss, and
scores the test split the way Sec. 4.5 says:

* classification (NCC, ECC): one 2D input per candidate, cut at its centre (`slice_inputs`:
  three adjacent axial slices; `orthogonal_inputs`: axial, coronal, sagittal), AUC over
  candidates;
* segmentation (NCS, LCS, BMS): each axial slice (with its neighbours as channels) is segmented,
  the maps are stacked into a volume (`predict_slicewise`) and scored in 3D by
  `finetune.score_test`, exactly as the 3D models' crops.

`init`: "scratch" (the "Random" column, `kernel_initializer`), "genesis" (`weights=` a Genesis 2D
file: Genesis Chest CT 2D or X-ray) or "imagenet" (keras-hub backbone). The experiment runner
(`pipeline.experiment`) does not call this yet.
"""

from __future__ import annotations

import keras
import numpy as np

from models_genesis.data.target_tasks.inputs2d import (
    orthogonal_inputs, predict_slicewise, slice_inputs, slicewise_inputs, slicewise_targets,
)
from models_genesis.evaluation.metrics import dice_loss
from models_genesis.models.heads2d import target_model_2d
from models_genesis.training.finetune import score_test

INPUTS = ("2d", "2.5d")
INITS = ("scratch", "genesis", "imagenet")


def reformat(kind: str, inputs: str, x, y=None):
    """`(x2d, y2d)` of crops `x` `(N, r, c, d[, 1])` and labels/masks `y` for `inputs`.

    Raises:
        ValueError: an unknown `inputs`, or "2.5d" for segmentation (the paper's 2.5D inputs
            are for NCC and ECC only).
    """
    if inputs not in INPUTS:
        raise ValueError(f"`inputs` must be one of {INPUTS}. Received: inputs={inputs!r}.")
    if kind == "classification":
        x2 = slice_inputs(x) if inputs == "2d" else orthogonal_inputs(x)
        return x2.astype(np.float32), (None if y is None else np.asarray(y, np.float32))
    if inputs != "2d":
        raise ValueError("2.5D orthogonal inputs are defined for classification (NCC, ECC; "
                         "Table 4); segment slice by slice with inputs='2d'. Received: "
                         f"inputs={inputs!r} for segmentation.")
    return (slicewise_inputs(x).astype(np.float32),
            None if y is None else slicewise_targets(y).astype(np.float32))


def finetune_2d(data, kind: str, *, inputs: str = "2d", init: str = "scratch", weights=None,
                backbone=None, epochs: int = 100, batch_size: int = 32,
                learning_rate: float = 1e-3, patience: int = 10, depth: int = 4,
                n_base_filters: int = 32, kernel_initializer="he_uniform", seed: int = 0,
                verbose="auto", run_eagerly: bool = False) -> dict:
    """Fine-tune and test a 2D model on a target task's `TargetData` (paper Sec. 4.5).

    Args:
        data: `TargetData` (crops `(N, r, c, d, 1)` and labels or masks per split).
        kind: "classification" or "segmentation".
        inputs: "2d" (adjacent axial slices) or "2.5d" (orthogonal planes; classification).
        init: "scratch", "genesis" (with `weights`) or "imagenet" (with `backbone`, see
            `target_model_2d`).
        epochs, batch_size, learning_rate, patience: training; early stopping on `val_loss`
            restores the best weights.
        depth, n_base_filters, kernel_initializer: the 2D U-Net (genesis / scratch).
        seed: `keras.utils.set_random_seed`.
        verbose: Keras `fit` verbosity.
        run_eagerly: skip graph tracing (Keras `run_eagerly`): quicker for a handful of tiny
            steps (tests, smoke runs), slower for real training.

    Returns:
        `{"inputs", "init", "test": score_test(...), "epochs": n, "input_shape"}`.
    """
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}. Received: init={init!r}.")
    if (init == "genesis") != (weights is not None):
        raise ValueError("`weights` (a Genesis 2D file) goes with init='genesis' and only with it. "
                         f"Received: init={init!r}, weights={weights!r}.")
    keras.utils.set_random_seed(seed)
    xtr, ytr = reformat(kind, inputs, *data.split("train"))
    xva, yva = reformat(kind, inputs, *data.split("valid"))
    n_out = 1
    model = target_model_2d(kind, xtr.shape[1:], n_out,
                            encoder="imagenet" if init == "imagenet" else "genesis",
                            weights=weights, backbone=backbone, depth=depth,
                            n_base_filters=n_base_filters, kernel_initializer=kernel_initializer)
    opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    model.compile(optimizer=opt, loss="binary_crossentropy" if kind == "classification" else dice_loss,
                  run_eagerly=run_eagerly)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                         restore_best_weights=True)
    history = model.fit(xtr, ytr, validation_data=(xva, yva), epochs=epochs,
                        batch_size=batch_size, callbacks=[stop], verbose=verbose)
    x_test, y_test = data.split("test")
    if kind == "classification":
        prob = model.predict(reformat(kind, inputs, x_test)[0], batch_size=batch_size, verbose=0)
        test = score_test(kind, y_test, prob)
    else:
        volumes = predict_slicewise(model, x_test, batch_size=batch_size)  # (N, r, c, d, 1)
        test = score_test(kind, np.asarray(y_test).reshape(volumes.shape), volumes)
    return {"inputs": inputs, "init": init, "test": test, "epochs": len(history.epoch),
            "input_shape": list(xtr.shape[1:])}

