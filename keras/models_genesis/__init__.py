"""Models Genesis for Keras 3.

Self-supervised 3D pre-training by image restoration (Zhou et al., "Models Genesis",
Medical Image Analysis 2021), rebuilt on Keras 3: the release's 3D U-Net and weight files,
the four transformations applied on the fly, pre-training, and fine-tuning on the five
target tasks (NCC, NCS, ECC, LCS, BMS).

The public API, for a user's own scripts (docs/api.md):

    import models_genesis as mg
    model = mg.segmentation_model((64, 64, 32, 1), weights="genesis_chest_ct")
    model.compile("adam", loss=mg.dice_loss, metrics=[mg.DiceCoefficient()])
    model.fit(mg.TargetDataset(x, y, batch_size=4, seed=0), epochs=10)
    model.save("lcs.keras")   # keras.saving.load_model("lcs.keras") after `import models_genesis`

Names load on first use (PEP 562), so `import models_genesis` and the CLI's `--help` stay light
(Keras and its backend load only when a model is asked for). The package's Keras objects (losses,
metrics, layers: `models_genesis.saving`) are registered as soon as Keras is imported, before or
after this package, so `keras.saving.load_model` needs no `custom_objects`.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_MODELS = "models_genesis.models"
_TRAINING = "models_genesis.training"
_TRANSFORMATIONS = "models_genesis.transformations"
_EXPORTS = {
    # 3D and 2D builders and heads (paper Sec. 2 and 3.2; the release's layer names)
    "unet_model_3d": f"{_MODELS}.unet3d",
    "target_model": f"{_MODELS}.heads",
    "classification_model": f"{_MODELS}.heads",
    "segmentation_model": f"{_MODELS}.heads",
    "encoder_blocks": f"{_MODELS}.heads",
    "freeze_blocks": f"{_MODELS}.heads",
    "unet_model_2d": f"{_MODELS}.unet2d",
    "restoration_model_2d": f"{_MODELS}.unet2d",
    "target_model_2d": f"{_MODELS}.heads2d",
    # pretrained weights: presets resolved as the CLI's --weights, weight files
    "PRETRAINED_WEIGHTS": f"{_MODELS}.presets",
    "resolve_weights": f"{_MODELS}.presets",
    "from_preset": f"{_MODELS}.pretrained",
    "init_from_genesis": f"{_MODELS}.weights",
    "load_keras2_weights": f"{_MODELS}.weights",
    "read_keras2_weights": f"{_MODELS}.weights",
    "save_keras2_weights": f"{_MODELS}.weights",
    # the transformations (paper Sec. 2.1) and the unified scheme
    "genesis_transform": f"{_TRANSFORMATIONS}.unified",
    "TransformConfig": f"{_TRANSFORMATIONS}.unified",
    "nonlinear_transformation": f"{_TRANSFORMATIONS}.nonlinear",
    "local_pixel_shuffling": f"{_TRANSFORMATIONS}.local_shuffling",
    "outer_cutout": f"{_TRANSFORMATIONS}.outer_cutout",
    "inner_cutout": f"{_TRANSFORMATIONS}.inner_cutout",
    "flip": f"{_TRANSFORMATIONS}.flip",
    # the pair PyDatasets: restoration pairs, target-task pairs (with the 3D augmentation)
    "RestorationDataset": "models_genesis.data.pretraining.restoration_dataset",
    "TargetDataset": "models_genesis.data.target_tasks.target_dataset",
    "TargetData": "models_genesis.data.target_tasks.common",
    "save_cubes": "models_genesis.data.io.cube_files",
    "cube_file_name": "models_genesis.data.io.cube_files",
    "load_target_data": "models_genesis.data.target_tasks",
    # configuration
    "PretrainConfig": "models_genesis.config",
    "FinetuneConfig": "models_genesis.config",
    "TargetTask": "models_genesis.config",
    "TARGET_TASKS": "models_genesis.config",
    # training, inference, losses and metrics
    "pretrain": f"{_TRAINING}.pretrain",
    "finetune": f"{_TRAINING}.finetune",
    "finetune_2d": f"{_TRAINING}.finetune2d",
    "UndertrainedWarning": f"{_TRAINING}.divergence",
    "UndertrainedError": f"{_TRAINING}.divergence",
    "predict_volume": "models_genesis.evaluation.whole_volume",
    "sliding_window_inference": "models_genesis.evaluation.sliding_window",
    "dice_loss": "models_genesis.evaluation.metrics",
    "DiceCoefficient": "models_genesis.evaluation.metrics",
    "ForegroundIoU": "models_genesis.evaluation.metrics",
    "MeanIoUOverThresholds": "models_genesis.evaluation.metrics",
    "load_model": "models_genesis.saving",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models_genesis' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


def _register_keras_objects() -> None:
    try:
        importlib.import_module("models_genesis.saving").register_all()
    except Exception as exc:  # noqa: BLE001  (never break `import keras` itself)
        import warnings

        warnings.warn(f"models_genesis could not register its Keras objects ({exc!r}): load "
                      "its `.keras` files with `models_genesis.load_model`.", stacklevel=2)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Run `_register_keras_objects` right after the module `keras` has been executed, so a
    `.keras` file loads whether Keras is imported before or after this package."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # once: let the other finders find Keras itself
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_then_register(module):
            execute(module)
            _register_keras_objects()

        spec.loader.exec_module = exec_then_register
        return spec


if "keras" in sys.modules:
    _register_keras_objects()
elif not any(isinstance(f, _RegisterAfterKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())
