"""The package's Keras objects in `.keras` files: registration and loading.

Every loss, metric and layer the package builds models with is decorated with
`keras.saving.register_keras_serializable(package="models_genesis")` in its own module:

* `evaluation.metrics`: `dice_coef`, `dice_loss` (the segmentation loss of the paper, Sec. 3.2),
  `dice_ce_loss` (task `custom`'s softmax segmentation),
  `DiceCoefficient`, `ForegroundIoU`, `MeanIoUOverThresholds`;
* `methods.keras_objects`: `masked_mse` (the in-painting loss on the cutouts, App. C.2),
  `MergePatches`, `SplitPatches` (the Siamese encoders of Jigsaw and Rubik's
  cube, App. A), `OrientationLoss` (Rubik's cube's orientation loss).

The initializers are Keras' own (`resolve_initializer`). `register_all()` imports those modules,
so their decorators have run; `import models_genesis` calls it as soon as Keras is imported (see
the package's `__init__`), so a user's script needs no `custom_objects`:

    import keras
    import models_genesis  # noqa: F401
    model = keras.saving.load_model("runs/lcs/model.keras")
"""

from __future__ import annotations

import importlib
import os
import zipfile

# The modules whose import registers the package's Keras objects.
SERIALIZABLE_MODULES = (
    "models_genesis.evaluation.metrics",
    "models_genesis.methods.keras_objects",
)


def register_all() -> None:
    """Import every module that defines a registered Keras object of the package."""
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(name)


def load_model(path, *, compile: bool = True, what: str = "model"):
    """`keras.saving.load_model(path)` with the package's objects registered, or a ValueError
    that names `path` and what was expected.

    Args:
        path: a `.keras` file (e.g. the `model.keras` of a fine-tuning run).
        compile: restore the loss, metrics and optimizer state too. Defaults to True.
        what: how errors name the file (e.g. "--model").

    Returns:
        The `keras.Model`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a `.keras` zip archive, or one whose objects Keras cannot rebuild (a
            model of another project with its own custom objects, or of another Keras version).
    """
    import keras

    register_all()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no model file at {path!r}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{what} {path!r} is not a Keras `.keras` file (a zip archive); "
                         "expected the `model.keras` that `models-genesis finetune` writes.")
    try:
        return keras.saving.load_model(path, compile=compile)
    except (ValueError, TypeError, KeyError, OSError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"Cannot load {what} {path!r} as a Models Genesis Keras model (a model "
                         f"of another project, or of another Keras version?): {first}") from exc
