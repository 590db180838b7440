"""Test helper: write weight files in the Keras 2.2.4 HDF5 layout with plain h5py.

Independent of the package: the layer list and shapes come from the release's topology
(docs/release_reference.md, 'U-Net topology'), derived here from first principles, so a test fails
if the package's model drifts from it.
"""

import json

import h5py
import numpy as np


def release_conv_channels(n_base_filters=32, depth=4, in_channels=1):
    """(in, out) channels of depth_0_conv ... depth_{4*depth-3}_conv, and the final conv's input."""
    convs, ch, skips = [], in_channels, []
    for level in range(depth):
        width = n_base_filters * 2 ** level
        convs += [(ch, width), (width, 2 * width)]
        ch = 2 * width
        if level < depth - 1:
            skips.append(ch)
    for level in range(depth - 2, -1, -1):
        skip = skips[level]
        convs += [(ch + skip, skip), (skip, skip)]
        ch = skip
    return convs, ch


def release_weights(rng, n_base_filters=32, depth=4, n_labels=1, final_name="conv3d_1"):
    """Random arrays for every weighted layer of the release U-Net, in file order.

    Returns:
        list of (layer_name, [(weight_name, array), ...]).
    """
    convs, last = release_conv_channels(n_base_filters, depth)
    out = []
    for i, (cin, cout) in enumerate(convs):
        out.append((f"depth_{i}_conv", [
            (f"depth_{i}_conv/kernel:0", rng.standard_normal((3, 3, 3, cin, cout), dtype=np.float32) * 0.05),
            (f"depth_{i}_conv/bias:0", rng.standard_normal(cout, dtype=np.float32) * 0.1),
        ]))
        out.append((f"depth_{i}_bn", [
            (f"depth_{i}_bn/gamma:0", rng.uniform(0.5, 1.5, cout).astype(np.float32)),
            (f"depth_{i}_bn/beta:0", rng.standard_normal(cout, dtype=np.float32) * 0.1),
            (f"depth_{i}_bn/moving_mean:0", rng.standard_normal(cout, dtype=np.float32) * 0.1),
            (f"depth_{i}_bn/moving_variance:0", rng.uniform(0.5, 2.0, cout).astype(np.float32)),
        ]))
    out.append((final_name, [
        (f"{final_name}/kernel:0", rng.standard_normal((1, 1, 1, last, n_labels), dtype=np.float32) * 0.1),
        (f"{final_name}/bias:0", rng.standard_normal(n_labels, dtype=np.float32) * 0.1),
    ]))
    return out


def write_keras2_file(path, weighted, *, full_model=False, extra_layers=("input_1", "max_pooling3d_1")):
    """Write `weighted` (from `release_weights`) as Keras 2.2.4 would.

    With `full_model`, the weights go under `model_weights` next to a model config and an
    optimizer config that Keras 3 cannot parse, as `model.save()` of Keras 2.2.4 wrote them.
    """
    with h5py.File(path, "w") as f:
        if full_model:
            f.attrs["keras_version"] = b"2.2.4"
            f.attrs["backend"] = b"tensorflow"
            f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {
                "layers": [{"class_name": "Conv3D", "config": {"data_format": "channels_first",
                                                               "kernel_constraint": None}}]}}).encode()
            f.attrs["training_config"] = json.dumps({"optimizer_config": {
                "class_name": "SGD", "config": {"lr": 1.0, "momentum": 0.9, "decay": 0.0,
                                                "nesterov": False}}, "loss": "mse"}).encode()
            f.create_group("optimizer_weights").attrs["weight_names"] = [b"training/SGD/Variable:0"]
            f["optimizer_weights"].create_dataset("training/SGD/Variable:0", data=np.zeros(3))
            g = f.create_group("model_weights")
        else:
            g = f
        names = list(extra_layers) + [name for name, _ in weighted]
        g.attrs["layer_names"] = [n.encode() for n in names]
        g.attrs["keras_version"] = b"2.2.4"
        g.attrs["backend"] = b"tensorflow"
        for name in extra_layers:
            g.create_group(name).attrs["weight_names"] = []
        for name, arrays in weighted:
            lg = g.create_group(name)
            lg.attrs["weight_names"] = [w.encode() for w, _ in arrays]
            for w, arr in arrays:
                lg.create_dataset(w, data=arr)
    return path
