"""Weight files: the release's Keras 2 HDF5 layout, read and written without Keras 2.

`Genesis_Chest_CT.h5` was written by Keras 2.2.4, either weights-only (root attributes
`layer_names`, `keras_version`, `backend`) or as a full model (the same under a `model_weights`
group, next to a model and optimizer config that Keras 3 cannot parse). Each layer group lists its
arrays in the attribute `weight_names` (e.g. `depth_0_conv/kernel:0`); kernel shapes do not depend
on the data format (docs/release_reference.md, 'Weight file layout'), so one file fills
channels_first and channels_last models.

Keras 3's own `model.load_weights("Genesis_Chest_CT.h5")` reads both variants by layer order. The
functions here add what a user needs on top: loading by name (the release's final conv is the
auto-named `conv3d_1`), checking every shape before anything is assigned (never a partial load),
errors that name the first layer that does not fit, and export to the Keras 2 layout.

A model with C input channels (multi-modal MRI, your own data) loads a one-channel Genesis file:
the first convolution's kernel is repeated over the C channels and divided by C
(`adapt_first_conv`), so a C-channel copy of one image gives the first layer the same activations
as the one-channel model (docs/your_own_data.md).
"""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional

import h5py
import keras
import numpy as np

from models_genesis.models.presets import resolve_weights
from models_genesis.models.unet2d import FINAL_CONV_NAME_2D
from models_genesis.models.unet3d import FINAL_CONV_NAME

KERAS2_VERSION = "2.2.4"
FIRST_CONV_NAME = "depth_0_conv"  # the conv that sees the image's channels


def adapt_first_conv(kernel: np.ndarray, n_channels: int) -> np.ndarray:
    """A one-channel conv kernel `(..., 1, filters)` made `(..., n_channels, filters)`: repeated
    over the input channels and divided by `n_channels`, so the sum over channels of a C-channel
    copy of an image equals the one-channel response (the bias is unchanged).

    Raises:
        ValueError: a kernel that does not have one input channel.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim < 3 or kernel.shape[-2] != 1:
        raise ValueError(f"Only a one-channel kernel (..., 1, filters) is adapted to "
                         f"{n_channels} channels. Received: kernel.shape={kernel.shape}.")
    return np.repeat(kernel, int(n_channels), axis=-2) / np.asarray(n_channels, kernel.dtype)


def _adapt_channels(layer, arrays: list) -> list:
    """The file's arrays of `layer`, its first conv adapted to the model's input channels."""
    if layer.name != FIRST_CONV_NAME or not arrays or not layer.weights:
        return arrays
    want, have = tuple(layer.weights[0].shape), np.shape(arrays[0])
    if len(want) == len(have) and want[-2] != 1 and have[-2] == 1 \
            and want[:-2] + want[-1:] == have[:-2] + have[-1:]:
        return [adapt_first_conv(arrays[0], want[-2])] + list(arrays[1:])
    return arrays


def _weighted_layers(model) -> List:
    return [layer for layer in model.layers if layer.weights]


def _decode(values) -> List[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras2_weights(path) -> "OrderedDict[str, List[np.ndarray]]":
    """Read a Keras 2 (or Keras 3 legacy) HDF5 weight file.

    Args:
        path: `.h5` / `.hdf5` file, weights-only or full-model.

    Returns:
        Ordered dict `layer name -> [arrays]` in file order, layers without weights left out.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5 file (a PyTorch checkpoint is named as such), truncated, or not in
            the Keras layout.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weight file not found: {path!r}.")
    if zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is a zip archive, not a Keras HDF5 weight file: a PyTorch checkpoint "
            "(e.g. Genesis_Chest_CT.pt) is converted with `pytorch_compat`, and a `.keras` file "
            "is read with `keras.saving.load_model` or `model.load_weights`."
        )
    with open_hdf5(path, "an HDF5 weight file") as f:
        group = keras2_layer_group(f)
        if group is None:
            raise ValueError(
                f"{path!r} is an HDF5 file but not in the Keras weight layout: no `layer_names` "
                "attribute at its root or in a `model_weights` group. (A Keras 3 "
                "`.weights.h5` file is loaded with `model.load_weights`.)"
            )
        return read_keras2_group(group, path)


def open_hdf5(path: str, what: str):
    """`h5py.File(path, "r")`, or a ValueError naming `path` and `what` it was expected to be."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"Cannot open {path!r} as {what} (truncated or another format?): "
                         f"{exc}") from exc


def keras2_layer_group(f):
    """The group of an open HDF5 file holding Keras 2's `layer_names` (the root of a weights-only
    file, `model_weights` of a full-model file), or None: not the Keras 2 layout."""
    if "layer_names" in f.attrs:
        return f
    if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
        return f["model_weights"]
    return None


def read_keras2_group(group, path: str) -> "OrderedDict[str, list]":
    """`layer name -> [arrays]` of a `keras2_layer_group`, in file order; `path` names errors."""
    out = OrderedDict()
    try:
        for name in _decode(group.attrs["layer_names"]):
            weight_names = _decode(group[name].attrs.get("weight_names", []))
            if weight_names:
                out[name] = [np.asarray(group[name][w]) for w in weight_names]
    except (KeyError, OSError) as exc:
        raise ValueError(f"Weight file {path!r} is truncated or damaged: {exc}") from exc
    return out


def _match_by_name(model_layers, file_layers: Dict[str, list], path: str) -> List:
    """Pair each model layer with the file layer of the same name (the final conv by alias)."""
    pairs = []
    for layer in model_layers:
        name = layer.name
        if name not in file_layers and name in (FINAL_CONV_NAME, FINAL_CONV_NAME_2D):
            convs = [n for n in file_layers if n.startswith(name[:6])]  # conv3d* / conv2d*
            name = convs[-1] if convs else name
        if name not in file_layers:
            raise ValueError(
                f"Layer {layer.name!r} has no weights in {path!r}. The file's layers with "
                f"weights: {list(file_layers)[:6]}... ({len(file_layers)} in all)."
            )
        pairs.append((layer, name))
    return pairs


def _check_and_assign(pairs, file_layers: Dict[str, list], path: str) -> List[str]:
    """Check every array's shape first, then assign: never a partial load. A one-channel first
    conv is adapted to the model's input channels (`adapt_first_conv`)."""
    file_layers = dict(file_layers)
    for layer, name in pairs:
        file_layers[name] = arrays = _adapt_channels(layer, file_layers[name])
        if len(arrays) != len(layer.weights):
            raise ValueError(
                f"Layer {layer.name!r} expects {len(layer.weights)} arrays but {path!r} holds "
                f"{len(arrays)} for layer {name!r}."
            )
        for var, arr in zip(layer.weights, arrays):
            if len(var.shape) != arr.ndim and {len(var.shape), arr.ndim} == {4, 5}:
                want, got = len(var.shape) - 2, arr.ndim - 2
                raise ValueError(
                    f"{path!r} holds {got}D conv kernels (layer {name!r}: {tuple(arr.shape)}), a "
                    f"Genesis {got}D file; the model is {want}D (its {layer.name!r} expects "
                    f"{tuple(var.shape)}). Build it with unet_model_{got}d to use this file."
                )
            if tuple(var.shape) != tuple(arr.shape):
                raise ValueError(
                    f"Shape mismatch at layer {layer.name!r} (file layer {name!r}) for "
                    f"{var.name!r}: the model expects {tuple(var.shape)}, {path!r} holds "
                    f"{tuple(arr.shape)}. Is the file from another architecture or size?"
                )
    for layer, name in pairs:
        for var, arr in zip(layer.weights, file_layers[name]):
            var.assign(arr)
    return [layer.name for layer, _ in pairs]


def load_keras2_weights(model, path, *, by_name: bool = False,
                        layers: Optional[Iterable[str]] = None) -> List[str]:
    """Fill `model` from a Keras 2 HDF5 weight file, checking everything before assigning.

    Args:
        model: a `keras.Model`, e.g. from `unet_model_3d` (either data format).
        path: the weight file (`Genesis_Chest_CT.h5` or one we exported).
        by_name: match layers by name instead of by order. The model's final conv
            `conv3d_1` also matches the file's last `conv3d*` layer.
        layers: with `by_name`, only these model layers (default: all that hold weights).

    Returns:
        The names of the model layers that were filled.

    Raises:
        ValueError: layer count or shape mismatch, naming the first layer that does not fit and
            both shapes; a file that is not a Keras HDF5 weight file.
    """
    path = os.fspath(path)
    file_layers = read_keras2_weights(path)
    model_layers = _weighted_layers(model)
    if layers is not None:
        wanted = set(layers)
        model_layers = [layer for layer in model_layers if layer.name in wanted]
        missing = sorted(wanted - {layer.name for layer in model_layers})
        if missing:
            raise ValueError(f"`layers` names layers the model lacks or that hold no weights: {missing}.")
    if by_name or layers is not None:
        pairs = _match_by_name(model_layers, file_layers, path)
    else:
        names = list(file_layers)
        if len(names) != len(model_layers):
            k = min(len(names), len(model_layers))
            first = (model_layers[k].name if len(model_layers) > k else names[k])
            raise ValueError(
                f"{path!r} holds {len(names)} layers with weights, the model {model.name!r} has "
                f"{len(model_layers)}; the first without a partner is {first!r}. Use by_name=True "
                "(or `init_from_genesis`) to load part of a model."
            )
        pairs = list(zip(model_layers, names))
    return _check_and_assign(pairs, file_layers, path)


def init_from_genesis(model, path) -> Dict[str, List[str]]:
    """Initialise a target model's U-Net layers from a Genesis weight file, by layer name.

    Every `depth_*` layer of `model` (the encoder only, for a classification head; the whole
    U-Net, for segmentation) must be found in the file with the same shapes; the head's own layers
    keep their initialisation.

    Args:
        model: a target model (`models.heads.target_model`) or a U-Net.
        path: a weight file or a preset name of `models.presets.PRETRAINED_WEIGHTS` (e.g.
            "genesis_chest_ct"), resolved by `resolve_weights` as the CLI's `--weights` is.

    Returns:
        `{"loaded": [...], "initialised": [...]}` layer names.
    """
    path = os.fspath(resolve_weights(path))
    body = [layer.name for layer in _weighted_layers(model) if layer.name.startswith("depth_")]
    if not body:
        raise ValueError(f"Model {model.name!r} has no `depth_*` layers to initialise from {path!r}.")
    loaded = load_keras2_weights(model, path, layers=body)
    rest = [layer.name for layer in _weighted_layers(model) if layer.name not in set(loaded)]
    return {"loaded": loaded, "initialised": rest}


def save_keras2_weights(model, path, *, keras_version: str = KERAS2_VERSION) -> str:
    """Export `model`'s weights in the Keras 2 HDF5 layout, atomically.

    The file has the release's structure (`layer_names` for every layer, a group per layer
    with `weight_names` such as `depth_0_conv/kernel:0`), so `load_weights` of Keras 2
    (`tf_keras`) and of Keras 3 both read it, as does the release's own code.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras_version.encode("utf8")
        for layer in model.layers:
            g = f.create_group(layer.name)
            names = [f"{layer.name}/{var.name}:0" for var in layer.weights]
            g.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for n, var in zip(names, layer.weights):
                g.create_dataset(n, data=keras.ops.convert_to_numpy(var))
    os.replace(tmp, path)
    return path
