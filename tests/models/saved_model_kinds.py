"""Every kind of model the package builds or trains, tiny and compiled as the package compiles
it, for the `.keras` round trip of `test_saving.py` (imported by the test and by its JAX and
PyTorch subprocesses, so each backend checks the same list)."""

import keras
import numpy as np

from models_genesis.config import METHOD_NAMES
from models_genesis.evaluation.metrics import (DiceCoefficient, ForegroundIoU,
                                               MeanIoUOverThresholds, dice_loss)
from models_genesis.methods import get_method, make_options
from models_genesis.models.heads import classification_model, segmentation_model
from models_genesis.models.heads2d import target_model_2d
from models_genesis.models.unet2d import restoration_model_2d, unet_model_2d
from models_genesis.models.unet3d import unet_model_3d

TINY = dict(n_base_filters=2, depth=2)
SHAPE_3D = (8, 8, 8, 1)
SHAPE_2D = (8, 8, 1)


def _segmentation_metrics():
    return [DiceCoefficient(name="dice"), MeanIoUOverThresholds(name="mean_iou"),
            ForegroundIoU(name="foreground_iou")]


def _method_model(name):
    def build():
        method = get_method(name)
        options = make_options(name)
        _, model = method.build_model((16, 16, 16), options, **TINY)
        model.compile(optimizer="adam", loss=method.loss(options),
                      metrics=method.metrics(options) or None)
        model.optimizer.build(model.trainable_variables)  # saved with its slots, as after fit
        return model
    return build


def _head(builder, shape, loss, metrics, **kw):
    def build():
        model = builder(shape, **TINY, **kw)
        model.compile(optimizer="adam", loss=loss, metrics=metrics())
        model.optimizer.build(model.trainable_variables)
        return model
    return build


# name -> a function building the compiled model (fine-tuning compiles heads as `finetune` does)
KINDS = {
    "restoration_3d": _head(lambda shape, **kw: unet_model_3d(shape, **kw), SHAPE_3D, "mse",
                            lambda: []),
    "segmentation_3d": _head(segmentation_model, SHAPE_3D, dice_loss, _segmentation_metrics),
    "classification_3d": _head(classification_model, SHAPE_3D, "binary_crossentropy",
                               lambda: [keras.metrics.AUC(name="auc")], dense_units=4),
    "linear_probe_3d": _head(classification_model, SHAPE_3D, "binary_crossentropy",
                             lambda: [keras.metrics.AUC(name="auc")], head="linear",
                             frozen_blocks=(0, 1)),
    "restoration_2d": _head(lambda shape, **kw: restoration_model_2d(shape[:2], **kw)[1], SHAPE_2D,
                            "mse", lambda: []),
    "unet_2d": _head(lambda shape, **kw: unet_model_2d(shape, **kw), SHAPE_2D, "mse", lambda: []),
    "segmentation_2d": _head(lambda shape, **kw: target_model_2d("segmentation", shape, **kw),
                             SHAPE_2D, dice_loss, _segmentation_metrics),
    "classification_2d": _head(lambda shape, **kw: target_model_2d("classification", shape,
                                                                   dense_units=4, **kw),
                               SHAPE_2D, "binary_crossentropy", lambda: []),
    **{f"method_{name}": _method_model(name) for name in METHOD_NAMES},
}


def inputs_for(model, seed: int = 0):
    """Random inputs in [0, 1] of the model's input shape(s), batch 2."""
    rng = np.random.default_rng(seed)
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    arrays = [rng.random((2,) + s, dtype=np.float32) for s in shapes]
    return arrays[0] if len(arrays) == 1 else arrays


def predictions(model, x) -> list:
    """The model's outputs on `x` in inference mode, as a list of numpy arrays."""
    out = model(x, training=False)
    out = out if isinstance(out, (list, tuple)) else list(out.values()) \
        if isinstance(out, dict) else [out]
    return [keras.ops.convert_to_numpy(o) for o in out]


def round_trip(model, path):
    """Save `model` to `path`, load it with `keras.saving.load_model` alone and return it after
    checking that it computes the same, has the same weights, loss and metrics."""
    model.save(path)
    again = keras.saving.load_model(path)
    x = inputs_for(model)
    for a, b in zip(predictions(model, x), predictions(again, x)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [w.shape for w in again.weights] == [w.shape for w in model.weights]
    assert [layer.trainable for layer in again.layers] == [layer.trainable for layer in model.layers]
    # loss, metrics and optimizer rebuilt from the file serialise as the originals
    assert again.get_compile_config() == model.get_compile_config()
    return again
