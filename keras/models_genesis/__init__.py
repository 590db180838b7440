"""Models Genesis for Keras 3.

Self-supervised 3D pre-training by image restoration (Zhou et al., "Models Genesis",
Medical Image Analysis 2021), rebuilt on Keras 3: the release's 3D U-Net and weight files,
the four transformations applied on the fly, pre-training, and fine-tuning on the five
target tasks (NCC, NCS, ECC, LCS, BMS).
"""

import importlib

__version__ = "0.1.0"

# Public names, imported on first use (PEP 562) so that `import models_genesis` and the CLI's
# `--help` stay light: Keras (and its backend) loads only when a model is asked for.
_EXPORTS = {
    "unet_model_3d": "models_genesis.models.unet3d",
    "classification_model": "models_genesis.models.heads",
    "segmentation_model": "models_genesis.models.heads",
    "target_model": "models_genesis.models.heads",
    "init_from_genesis": "models_genesis.models.weights",
    "load_keras2_weights": "models_genesis.models.weights",
    "read_keras2_weights": "models_genesis.models.weights",
    "save_keras2_weights": "models_genesis.models.weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models_genesis' has no attribute {name!r}")
