"""Read Keras weights, whatever holds them, as `layer name -> [arrays]` in Keras' layout.

Sources: a `keras.Model`; a Keras 2 HDF5 file (the release's `Genesis_Chest_CT.h5`, weights-only
or full-model, and files written by `models_genesis.models.weights.save_keras2_weights` or Keras
3's legacy `.h5` saving); Keras 3's `.weights.h5`; Keras 3's `.keras` archive. Keras 3 files
name their groups after layer classes (`layers/conv3d_3/vars/0`) and record the layer's name in
the `vars` group's `name` attribute, which is what this reader keys on. Arrays keep Keras' order
(Conv3D: kernel `(k1, k2, k3, in, out)`, bias; BatchNormalization: gamma, beta, moving_mean,
moving_variance; Dense: kernel `(in, out)`, bias).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from typing import List

import h5py
import numpy as np

KERAS_ARCHIVE_WEIGHTS = "model.weights.h5"


def _keras3_group_arrays(root: h5py.Group, source: str) -> "OrderedDict[str, List[np.ndarray]]":
    """Collect `vars` groups under `root["layers"]` (nested models included)."""
    out: "OrderedDict[str, List[np.ndarray]]" = OrderedDict()
    unnamed = []

    def visit(path, obj):
        if not isinstance(obj, h5py.Group) or path.rsplit("/", 1)[-1] != "vars" or not len(obj):
            return
        name = obj.attrs.get("name")
        if name is None:
            unnamed.append(path)
            return
        name = name.decode("utf8") if isinstance(name, bytes) else str(name)
        out[name] = [np.asarray(obj[str(i)]) for i in range(len(obj))]

    root["layers"].visititems(visit)
    if unnamed:
        raise ValueError(
            f"{source!r} is a Keras 3 weight file that does not record layer names (written by an "
            f"older Keras 3; e.g. group {unnamed[0]!r}). Load it into its Keras model with "
            "`model.load_weights` and convert the model object instead."
        )
    return out


def _read_keras3_h5(f: h5py.File, source: str) -> "OrderedDict[str, List[np.ndarray]]":
    if "layers" not in f:
        raise ValueError(
            f"{source!r} is an HDF5 file but neither a Keras 2 weight file (no `layer_names` "
            "attribute) nor a Keras 3 `.weights.h5` file (no `layers` group)."
        )
    return _keras3_group_arrays(f, source)


def _from_model(model) -> "OrderedDict[str, List[np.ndarray]]":
    # Keras (8.9 s to import with TensorFlow) loads only for the Keras side of a conversion.
    import keras

    return OrderedDict(
        (layer.name, [keras.ops.convert_to_numpy(w) for w in layer.weights])
        for layer in model.layers if layer.weights
    )


def read_keras_weights(source) -> "OrderedDict[str, List[np.ndarray]]":
    """Return Keras weights as an ordered dict `layer name -> [numpy arrays]`.

    Args:
        source: a `keras.Model`; a path to a Keras 2 HDF5 file (`.h5`/`.hdf5`), a Keras 3
            `.weights.h5` file or a `.keras` archive; or an already read mapping
            `name -> [arrays]` (returned as an ordered dict).

    Returns:
        Layers that hold weights, arrays in Keras' layout; in model order for a model or a
        Keras 2 file, in the file's (alphabetical) group order for a Keras 3 file.

    Raises:
        FileNotFoundError: no file at `source`.
        TypeError: `source` is none of the above.
        ValueError: the file is not a Keras weight file (a PyTorch checkpoint is named as such),
            or is damaged.
    """
    if isinstance(source, Mapping):
        return OrderedDict((str(k), [np.asarray(a) for a in v]) for k, v in source.items())
    if hasattr(source, "layers") and hasattr(source, "get_layer"):
        return _from_model(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError("`source` must be a keras.Model, a path to a Keras weight file or a dict "
                        f"of layer name -> arrays. Received: source of type {type(source).__name__}.")
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Keras weight file not found: {path!r}.")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if KERAS_ARCHIVE_WEIGHTS not in archive.namelist():
                raise ValueError(
                    f"{path!r} is a zip archive without {KERAS_ARCHIVE_WEIGHTS!r}: not a `.keras` "
                    "file (a PyTorch checkpoint such as Genesis_Chest_CT.pt is read with "
                    "`pytorch_compat.load_checkpoint`)."
                )
            data = archive.read(KERAS_ARCHIVE_WEIGHTS)
        with h5py.File(io.BytesIO(data), "r") as f:
            return _read_keras3_h5(f, path)
    # Keras (8.9 s to import with TensorFlow) loads only for the Keras side of a conversion.
    from models_genesis.models.weights import keras2_layer_group, open_hdf5, read_keras2_group

    with open_hdf5(path, "a Keras HDF5 weight file") as f:
        group = keras2_layer_group(f)
        return _read_keras3_h5(f, path) if group is None else read_keras2_group(group, path)
