"""The released PyTorch encoder (`Genesis_Chest_CT.pt`, `down_tr*`) in the Keras U-Net.

The released PyTorch model (docs/release_reference.md, 'The PyTorch release') has the Keras U-Net's
encoder: the same four levels of two conv blocks, the same widths, max pooling in between. Its eight
encoder blocks map one to one onto the Keras blocks `depth_0` .. `depth_7`:

| PyTorch (state_dict, `module.` prefix removed) | Keras |
|---|---|
| `down_tr64.ops.0`, `down_tr64.ops.1` | `depth_0`, `depth_1` |
| `down_tr128.ops.0`, `down_tr128.ops.1` | `depth_2`, `depth_3` |
| `down_tr256.ops.0`, `down_tr256.ops.1` | `depth_4`, `depth_5` |
| `down_tr512.ops.0`, `down_tr512.ops.1` | `depth_6`, `depth_7` |

each `.conv1.weight (out, in, 3, 3, 3)` -> `depth_i_conv` kernel `(3, 3, 3, in, out)` (transpose
`(2, 3, 4, 1, 0)`, no flip), `.conv1.bias` -> bias, `.bn1.{weight, bias, running_mean,
running_var}` -> `depth_i_bn` gamma, beta, moving_mean, moving_variance. PyTorch's BatchNorm adds
eps 1e-5 to the variance, Keras' 1e-3: the moving variance is shifted by the difference so the
converted encoder computes the same features in inference mode (a channel whose variance is below
the difference keeps variance 0 and gets its gamma scaled instead).

**What cannot be converted: the decoder.** The release's decoder up-samples with ConvTranspose3d
(`up_tr*.up_conv`, learned 2x2x2 kernels keeping the channel count) where the Keras U-Net uses
parameter-free UpSampling3D, so the following blocks see other inputs and other widths
(`up_tr256.ops.0` takes 512 + 256 = 768 channels, `depth_8` takes 512 + 256 from an up-sampled
512); `up_tr*` and `out_tr` have no Keras counterpart and are left out. The converted file
therefore initialises the classification tasks (NCC, ECC: head on `depth_7_relu`) from the
PyTorch release; segmentation (whole U-Net) needs the Keras release `Genesis_Chest_CT.h5`.
Also note that the released PyTorch BatchNorm normalises with batch statistics even at inference
(docs/release_reference.md, 'The PyTorch release'); the running statistics converted here are the
ones stored in the checkpoint.

Example:
    >>> from pytorch_compat.released import save_released_encoder
    >>> save_released_encoder("Genesis_Chest_CT.pt", "Genesis_Chest_CT_encoder.h5")  # doctest: +SKIP
    # models-genesis finetune --task ncc --init genesis --weights Genesis_Chest_CT_encoder.h5 ...
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Dict, List

import numpy as np
import torch

from pytorch_compat.checkpoint import extract_state_dict

ENCODER_BLOCKS = OrderedDict(
    (f"{level}.ops.{j}", 2 * k + j)
    for k, level in enumerate(("down_tr64", "down_tr128", "down_tr256", "down_tr512"))
    for j in (0, 1))
ENCODER_BLOCKS_KERAS = tuple(f"depth_{i}_{kind}" for i in range(8) for kind in ("conv", "bn"))
NOT_CONVERTED = ("up_tr256", "up_tr128", "up_tr64", "out_tr")
TORCH_BN_EPSILON = 1e-5
KERAS_BN_EPSILON = 1e-3


def _load(checkpoint):
    if isinstance(checkpoint, (str, os.PathLike)):
        path = os.fspath(checkpoint)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Checkpoint file not found: {path!r}.")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for foreign or damaged files
            raise ValueError(f"Cannot read {path!r} as a PyTorch checkpoint: {exc}") from exc
        return extract_state_dict(obj, source=path), path
    return extract_state_dict(checkpoint), "checkpoint"


def released_encoder_arrays(checkpoint, *, torch_epsilon: float = TORCH_BN_EPSILON,
                            keras_epsilon: float = KERAS_BN_EPSILON
                            ) -> "OrderedDict[str, List[np.ndarray]]":
    """Keras arrays of the encoder blocks of a released checkpoint.

    Args:
        checkpoint: `Genesis_Chest_CT.pt` (path) or a loaded checkpoint / state_dict (with or
            without the `module.` prefix).
        torch_epsilon, keras_epsilon: the BatchNorm epsilons (see the module docstring).

    Returns:
        `{"depth_0_conv": [kernel, bias], "depth_0_bn": [gamma, beta, mean, variance], ...}`
        for blocks 0..7, in the Keras layout, float32.

    Raises:
        ValueError: a key of the encoder missing, or shapes that are not an encoder's.
    """
    state, source = _load(checkpoint)
    out: "OrderedDict[str, List[np.ndarray]]" = OrderedDict()
    previous = 1
    for prefix, i in ENCODER_BLOCKS.items():
        keys = [f"{prefix}.conv1.weight", f"{prefix}.conv1.bias", f"{prefix}.bn1.weight",
                f"{prefix}.bn1.bias", f"{prefix}.bn1.running_mean", f"{prefix}.bn1.running_var"]
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"`{source}` is not the released UNet3D: it lacks {missing[:3]} "
                             f"(encoder block depth_{i}). Its first keys: {list(state)[:4]}.")
        w, b, gamma, beta, mean, var = (state[k].detach().cpu().numpy().astype(np.float32)
                                        for k in keys)
        if w.ndim != 5 or w.shape[2:] != (3, 3, 3) or w.shape[1] != previous or \
                any(a.shape != (w.shape[0],) for a in (b, gamma, beta, mean, var)):
            raise ValueError(f"`{source}`: {prefix}.conv1.weight has shape {w.shape}; expected "
                             f"(out, {previous}, 3, 3, 3) with matching bias and BatchNorm.")
        previous = w.shape[0]
        shifted = var + np.float32(torch_epsilon - keras_epsilon)
        small = shifted < 0  # keep var 0 there and rescale gamma: same output in inference
        gamma = np.where(small, gamma * np.sqrt(keras_epsilon / (var + torch_epsilon)), gamma)
        out[f"depth_{i}_conv"] = [np.ascontiguousarray(w.transpose(2, 3, 4, 1, 0)), b]
        out[f"depth_{i}_bn"] = [gamma.astype(np.float32), beta, mean,
                                np.maximum(shifted, 0).astype(np.float32)]
    return out


def load_released_encoder(keras_model, checkpoint, **kwargs) -> Dict[str, list]:
    """Fill the `depth_0..7` layers of a Keras Genesis model (U-Net or a target head) from the
    released checkpoint; every shape is checked before anything is assigned.

    Returns:
        `{"loaded": [Keras layer names], "not_converted": [PyTorch modules left out]}`.
    """
    _assign(keras_model, released_encoder_arrays(checkpoint, **kwargs))
    return {"loaded": list(ENCODER_BLOCKS_KERAS), "not_converted": list(NOT_CONVERTED)}


def _assign(keras_model, arrays) -> None:
    layers = {layer.name: layer for layer in keras_model.layers}
    missing = [n for n in arrays if n not in layers]
    if missing:
        raise ValueError(f"The Keras model has no layers {missing[:3]}: build a Genesis U-Net or "
                         "target model (depth_0..7 encoder blocks).")
    for name, values in arrays.items():
        expected = [tuple(v.shape) for v in layers[name].weights]
        if expected != [tuple(v.shape) for v in values]:
            raise ValueError(f"Shape mismatch at layer {name!r}: the Keras model holds {expected}, "
                             f"the checkpoint gives {[tuple(v.shape) for v in values]} (is "
                             "n_base_filters the checkpoint's?).")
    for name, values in arrays.items():
        for var, value in zip(layers[name].weights, values):
            var.assign(value)


def save_released_encoder(checkpoint, path, **kwargs) -> str:
    """Write the released encoder as a Keras 2 HDF5 weight file holding `depth_0..7` only.

    The file initialises `finetune --init genesis --weights FILE` for the classification tasks
    (NCC, ECC) and `target_model("classification", ..., weights=FILE)`.

    Returns:
        `path`.
    """
    # Keras (8.9 s to import with TensorFlow) loads only for the Keras side of a conversion.
    import keras

    from models_genesis.models.unet3d import unet_model_3d
    from models_genesis.models.weights import save_keras2_weights

    arrays = released_encoder_arrays(checkpoint, **kwargs)
    width = int(arrays["depth_0_conv"][0].shape[-1])
    unet = unet_model_3d((None, None, None, 1), n_base_filters=width)
    _assign(unet, arrays)
    encoder = keras.Model(unet.inputs, unet.get_layer("depth_7_relu").output,
                          name="genesis_encoder")
    return save_keras2_weights(encoder, path)
