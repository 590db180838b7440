"""`from_preset`: the Genesis U-Net of a named pretrained-weight file, as keras-hub loads presets.

A preset name (`models.presets.PRETRAINED_WEIGHTS`) or a weight file is resolved exactly as the
CLI's `--weights` (`resolve_weights`: `$MODELS_GENESIS_WEIGHTS`, else `./pretrained_weights`);
the 3D presets fill `unet_model_3d`, the 2D ones `unet_model_2d`.
"""

from __future__ import annotations

import os
from typing import Optional

import keras

from models_genesis.models.presets import PRETRAINED_WEIGHTS, resolve_weights
from models_genesis.models.unet2d import unet_model_2d
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import load_keras2_weights, read_keras2_weights


def from_preset(preset, input_shape: Optional[tuple] = None, *, weights_dir=None,
                **kwargs) -> keras.Model:
    """Build the Genesis U-Net and fill it from a preset name or a weight file.

    Args:
        preset: a key of `PRETRAINED_WEIGHTS` ("genesis_chest_ct", "genesis_chest_ct_2d",
            "genesis_chest_xray") or the path of a Keras 2 `.h5` weight file.
        input_shape: the model's input; defaults to the release's `(64, 64, 32, 1)` (3D files)
            or `(64, 64, 1)` (2D files). Spatial sizes may be any multiple of 8 (or None): the
            weights do not depend on them.
        weights_dir: folder of the preset files (default `paths.weights_dir()`).
        **kwargs: passed to `unet_model_3d` / `unet_model_2d` (`n_base_filters` must match the
            file's, 32 for the release).

    Returns:
        The `keras.Model`, every layer filled (by name) from the file.

    Raises:
        ValueError: an unknown preset name (the message lists them), the PyTorch preset, or a
            file that does not fit the model (the first layer that does not fit is named).
        FileNotFoundError: a missing file, or a preset whose file is not in `weights_dir`.

    Example:
        >>> unet = from_preset("genesis_chest_ct")           # 3D, (64, 64, 32, 1)
        >>> unet = from_preset("genesis_chest_ct", (128, 128, 64, 1))
    """
    key = str(preset).lower()
    if PRETRAINED_WEIGHTS.get(key, {}).get("framework") == "torch":
        keras_presets = sorted(k for k, v in PRETRAINED_WEIGHTS.items()
                               if v["framework"] == "keras")
        raise ValueError(f"Preset {key!r} is the PyTorch release: load it with "
                         f"`pytorch_compat.UNet3D`, not with Keras. Keras presets: "
                         f"{keras_presets}. Received: preset={preset!r}.")
    path = os.fspath(resolve_weights(preset, weights_dir))
    kernel = read_keras2_weights(path).get("depth_0_conv", [None])[0]
    dims = 2 if kernel is not None and kernel.ndim == 4 else 3
    if input_shape is None:
        input_shape = (64, 64, 1) if dims == 2 else (64, 64, 32, 1)
    build = unet_model_2d if dims == 2 else unet_model_3d
    model = build(tuple(input_shape), **kwargs)
    load_keras2_weights(model, path, by_name=True)
    return model
