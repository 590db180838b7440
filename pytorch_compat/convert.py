"""Convert Genesis weights between Keras and PyTorch (`KerasUNet3D` and the heads).

Layers are matched by name (the Keras layer `depth_3_bn` is the module `depth_3_bn`, also when
nested as `unet.depth_3_bn`) and converted by the PyTorch module's type:

* Conv3d: Keras kernel `(k1, k2, k3, in, out)` -> weight `(out, in, k1, k2, k3)`, a transpose
  `(4, 3, 0, 1, 2)` with no spatial flip (Keras' channels_last `(N, rows, cols, deps, C)` is
  PyTorch's `(N, C, rows, cols, deps)`); bias unchanged.
* BatchNorm3d: gamma, beta, moving_mean, moving_variance -> weight, bias, running_mean,
  running_var (`num_batches_tracked` is PyTorch-only and left alone).
* Linear: Keras kernel `(in, out)` -> weight `(out, in)`.

Every shape is checked before anything is assigned, so a failed conversion changes nothing.
A model with C input channels loads one-channel Genesis weights as the Keras side does: the first
conv's kernel repeated over the C channels and divided by C (`models_genesis.models.weights.
adapt_first_conv`; a C-channel copy of one image gives the same first activations).
The released PyTorch `UNet3D` does not convert: its transposed-conv decoder has no Keras twin.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from pytorch_compat.heads import GenesisClassifier, GenesisSegmenter
from pytorch_compat.keras_files import read_keras_weights
from pytorch_compat.keras_unet3d import FINAL_CONV_NAME, KerasUNet3D

_ORDER = {nn.Conv3d: ("weight", "bias"), nn.Linear: ("weight", "bias"),
          nn.BatchNorm3d: ("weight", "bias", "running_mean", "running_var")}
_TO_TORCH = {nn.Conv3d: (4, 3, 0, 1, 2), nn.Linear: (1, 0)}
_TO_KERAS = {nn.Conv3d: (2, 3, 4, 1, 0), nn.Linear: (1, 0)}
_BODY = re.compile(r"depth_\d+_(conv|bn)")


def _kind(module: nn.Module):
    for kind in _ORDER:
        if isinstance(module, kind):
            return kind
    if isinstance(module, nn.ConvTranspose3d):
        raise TypeError("The released UNet3D's ConvTranspose3d decoder has no counterpart in the "
                        "Keras U-Net: only KerasUNet3D, GenesisClassifier and GenesisSegmenter "
                        f"convert. Received a model with {type(module).__name__}.")
    raise TypeError(f"Cannot convert a {type(module).__name__}: only Conv3d, BatchNorm3d and "
                    "Linear modules have Keras counterparts here.")


def _leaves(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Modules holding parameters, keyed by their own (Keras) name: `unet.depth_0_conv` -> `depth_0_conv`."""
    found = [(path, module) for path, module in model.named_modules()
             if any(True for _ in module.parameters(recurse=False))]
    for _, module in found:
        _kind(module)  # unconvertible modules first: the clearer error
    out: "OrderedDict[str, nn.Module]" = OrderedDict()
    for path, module in found:
        name = path.rsplit(".", 1)[-1]
        if name in out:
            raise ValueError(f"Two modules are named {name!r}; layer names must be unique.")
        out[name] = module
    return out


def _tensor_names(module: nn.Module) -> List[str]:
    return [n for n in _ORDER[_kind(module)] if getattr(module, n, None) is not None]


def _alias_final_conv(arrays, names) -> None:
    """The Keras final conv may carry another automatic name (`conv3d_15`): use the last `conv3d*`."""
    if FINAL_CONV_NAME in names and FINAL_CONV_NAME not in arrays:
        convs = [n for n in arrays if n.startswith("conv3d")]
        if convs:
            arrays[FINAL_CONV_NAME] = arrays.pop(convs[-1])


def _match(targets, sources, strict: bool, where: str):
    missing = [n for n in targets if n not in sources]
    unused = [n for n in sources if n not in targets]
    body = [n for n in missing if _BODY.fullmatch(n)]
    if (strict and (missing or unused)) or body:
        raise ValueError(
            f"Layer names do not match ({where}): {len(missing)} layers without weights "
            f"{missing[:5]}, {len(unused)} unused source layers {unused[:5]}. Use strict=False to "
            "fill the U-Net body (every depth_* layer is still required) and keep a head's init."
        )
    return missing, unused


def _check(name, module, arrays, shapes, where):
    if len(arrays) != len(shapes):
        raise ValueError(f"Layer {name!r} ({type(module).__name__}) takes {len(shapes)} arrays; "
                         f"{where} holds {len(arrays)}.")
    for i, (arr, shape) in enumerate(zip(arrays, shapes)):
        if tuple(arr.shape) != tuple(shape):
            raise ValueError(f"Shape mismatch at layer {name!r}, array {i}: expected {tuple(shape)} "
                             f"(Keras layout), {where} holds {tuple(arr.shape)}.")


def load_keras_weights(model: nn.Module, source, *, strict: bool = True) -> Dict[str, List[str]]:
    """Fill a PyTorch model from Keras weights, by layer name.

    Args:
        model: `KerasUNet3D`, `GenesisClassifier` or `GenesisSegmenter`.
        source: a `keras.Model`, a Keras 2 HDF5 file, a Keras 3 `.weights.h5` or `.keras` file,
            or a dict `layer name -> [arrays]` (see `read_keras_weights`).
        strict: every module must be filled and every source layer used. With False, layers
            missing from `source` keep their initialisation (a new head) and extra source layers
            are ignored, but every `depth_*` layer of the U-Net body must be found.

    Returns:
        `{"loaded": [...], "initialised": [...], "unused": [...]}` layer names.

    Raises:
        ValueError: names or shapes that do not match (nothing is assigned then).
        TypeError: a module without Keras counterpart (e.g. the released UNet3D).
    """
    arrays = read_keras_weights(source)
    leaves = _leaves(model)
    _alias_final_conv(arrays, leaves)
    where = "the Keras weights"
    missing, unused = _match(leaves, arrays, strict, where)
    plan = []
    for name, module in leaves.items():
        if name in missing:
            continue
        kind, tensors = _kind(module), _tensor_names(module)
        if name == "depth_0_conv" and kind is nn.Conv3d and module.in_channels > 1 \
                and np.shape(arrays[name][0])[-2] == 1:
            # Keras (and TensorFlow) only when a multi-channel model meets one-channel weights.
            from models_genesis.models.weights import adapt_first_conv

            arrays[name] = [adapt_first_conv(arrays[name][0], module.in_channels)] + \
                list(arrays[name][1:])
        perm = _TO_TORCH.get(kind)
        converted = [np.transpose(a, perm) if i == 0 and perm else a
                     for i, a in enumerate(arrays[name])]
        shapes = [tuple(getattr(module, t).shape) for t in tensors]
        keras_shapes = [tuple(s[j] for j in _TO_KERAS[kind]) if i == 0 and perm else s
                        for i, s in enumerate(shapes)]
        _check(name, module, arrays[name], keras_shapes, where)
        plan.extend((getattr(module, t), c) for t, c in zip(tensors, converted))
    with torch.no_grad():
        for target, value in plan:
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return {"loaded": [n for n in leaves if n not in missing], "initialised": missing,
            "unused": unused}


def torch_to_keras_arrays(model: nn.Module) -> "OrderedDict[str, List[np.ndarray]]":
    """Return `model`'s weights as Keras layers would hold them: `name -> [arrays]`."""
    out: "OrderedDict[str, List[np.ndarray]]" = OrderedDict()
    for name, module in _leaves(model).items():
        perm = _TO_KERAS.get(_kind(module))
        values = [getattr(module, t).detach().cpu().numpy() for t in _tensor_names(module)]
        out[name] = [np.transpose(v, perm) if i == 0 and perm else v for i, v in enumerate(values)]
    return out


def _activation_of(source, name: str) -> Optional[str]:
    if not (hasattr(source, "get_layer") and name in {layer.name for layer in source.layers}):
        return None
    fn = getattr(source.get_layer(name), "activation", None)
    return getattr(fn, "__name__", None)


def keras_to_torch(source, *, activation: Optional[str] = None) -> nn.Module:
    """Build the PyTorch twin of a Keras Genesis model and fill it (strictly).

    The architecture is read from the weights: a `classifier` layer makes a `GenesisClassifier`,
    a `segmentation_conv` a `GenesisSegmenter`, otherwise a `KerasUNet3D` (width from
    `depth_0_conv`, depth from the number of blocks, labels from the final conv).

    Args:
        source: a `keras.Model` or Keras weight file (see `read_keras_weights`).
        activation: output activation; by default the Keras model's (for a file: sigmoid, or
            softmax for a head with several classes).

    Returns:
        The filled module, in `eval()` mode.

    Example:
        >>> model = keras_to_torch("pretrained_weights/Genesis_Chest_CT.h5")  # doctest: +SKIP
        >>> y = model(torch.rand(1, 1, 64, 64, 32))  # (1, 1, 64, 64, 32), sigmoid outputs
    """
    arrays = read_keras_weights(source)
    if "depth_0_conv" not in arrays:
        raise ValueError(f"`source` holds no `depth_0_conv` layer: not Genesis U-Net weights. Its "
                         f"layers: {list(arrays)[:6]}.")
    n_blocks = sum(1 for n in arrays if re.fullmatch(r"depth_\d+_conv", n))
    kernel = arrays["depth_0_conv"][0]
    size = dict(in_channels=int(kernel.shape[3]), n_base_filters=int(kernel.shape[4]))
    if "classifier" in arrays:
        act = activation or _activation_of(source, "classifier")
        model = GenesisClassifier(int(arrays["classifier"][0].shape[1]), act, depth=n_blocks // 2,
                                  dense_units=int(arrays["fc1"][0].shape[1]), **size)
    elif "segmentation_conv" in arrays:
        act = activation or _activation_of(source, "segmentation")
        model = GenesisSegmenter(int(arrays["segmentation_conv"][0].shape[-1]), act,
                                 depth=(n_blocks + 2) // 4, **size)
    else:
        _alias_final_conv(arrays, [FINAL_CONV_NAME])
        if FINAL_CONV_NAME not in arrays:
            raise ValueError(f"`source` has no final conv {FINAL_CONV_NAME!r}.")
        act = activation or _activation_of(source, "output") or "sigmoid"
        model = KerasUNet3D(n_labels=int(arrays[FINAL_CONV_NAME][0].shape[-1]),
                            depth=(n_blocks + 2) // 4, activation=act,
                            batch_normalization="depth_0_bn" in arrays, **size)
    load_keras_weights(model, arrays, strict=True)
    return model.eval()


def _keras_twin(model: nn.Module, input_shape, data_format: str, activation):
    # Keras (8.9 s to import with TensorFlow) loads only for the Keras side of a conversion.
    from models_genesis.models.heads import classification_model, segmentation_model
    from models_genesis.models.unet3d import unet_model_3d

    unet = model.unet if isinstance(model, (GenesisClassifier, GenesisSegmenter)) else model
    if not isinstance(unet, KerasUNet3D):
        raise TypeError("`model` must be a KerasUNet3D, GenesisClassifier or GenesisSegmenter (or "
                        f"pass `keras_model`). Received: {type(model).__name__}.")
    if input_shape is None:
        input_shape = (None, None, None, unet.in_channels)
        if data_format == "channels_first":
            input_shape = (unet.in_channels, None, None, None)
    size = dict(depth=unet.depth, n_base_filters=unet.n_base_filters, data_format=data_format)
    if isinstance(model, (GenesisClassifier, GenesisSegmenter)):
        act = activation or (None if model.activation == "linear" else model.activation)
        if isinstance(model, GenesisClassifier):
            return classification_model(input_shape, model.n_classes, act,
                                        dense_units=model.fc1.out_features, **size)
        return segmentation_model(input_shape, model.n_classes, act, **size)
    if not unet.include_top:
        raise ValueError("A KerasUNet3D without its top has no Keras builder; pass `keras_model`.")
    return unet_model_3d(input_shape, unet.n_labels, batch_normalization=unet.batch_normalization,
                         activation_name=activation or unet.activation, **size)


def torch_to_keras(model: nn.Module, keras_model=None, *, input_shape=None,
                   data_format: str = "channels_last", activation: Optional[str] = None,
                   strict: bool = True):
    """Copy PyTorch weights into a Keras model (built to match when `keras_model` is None).

    Args:
        model: `KerasUNet3D`, `GenesisClassifier` or `GenesisSegmenter`.
        keras_model: the Keras model to fill, matched by layer name. Defaults to one built with
            `unet_model_3d` / `classification_model` / `segmentation_model` to `model`'s config.
        input_shape: for the built model; defaults to any spatial size.
        data_format: for the built model. Defaults to "channels_last".
        activation: for the built model; defaults to `model`'s. A head returning logits
            ("linear") gets the Keras default (sigmoid for 1 class, softmax otherwise).
        strict: every weighted Keras layer must be filled and every module used.

    Returns:
        The filled `keras.Model`.
    """
    if keras_model is None:
        keras_model = _keras_twin(model, input_shape, data_format, activation)
    arrays = torch_to_keras_arrays(model)
    layers = OrderedDict((layer.name, layer) for layer in keras_model.layers if layer.weights)
    missing, _ = _match(layers, arrays, strict, "the PyTorch model")
    where = "the PyTorch model"
    for name, layer in layers.items():
        if name not in missing:
            _check(name, layer, arrays[name], [tuple(w.shape) for w in layer.weights], where)
    for name, layer in layers.items():
        if name not in missing:
            for var, value in zip(layer.weights, arrays[name]):
                var.assign(value)
    return keras_model


def save_keras_weights(model: nn.Module, path, **kwargs) -> str:
    """Write `model`'s weights as a Keras file, atomically, the format chosen by `path`'s suffix.

    `.keras` (Keras 3 model archive), `.weights.h5` (Keras 3 weights), or `.h5`/`.hdf5` (the
    release's Keras 2 layout, readable by Keras 2, Keras 3 and the release's code).
    `kwargs` go to `torch_to_keras` (e.g. `input_shape`, `data_format`).

    Returns:
        `path`.
    """
    path = os.fspath(path)
    if not path.endswith((".keras", ".h5", ".hdf5")):
        raise ValueError("`path` must end with .keras, .weights.h5, .h5 or .hdf5. "
                         f"Received: path={path!r}.")
    keras_model = torch_to_keras(model, **kwargs)
    if path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5"):
        # Keras (8.9 s to import with TensorFlow) loads only for the Keras side of a conversion.
        from models_genesis.models.weights import save_keras2_weights

        return save_keras2_weights(keras_model, path)
    folder, base = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{base}")
    if path.endswith(".keras"):
        keras_model.save(tmp)
    else:
        keras_model.save_weights(tmp)
    os.replace(tmp, path)
    return path
