"""Test helpers: fill Keras and PyTorch models with seeded, non-trivial weights."""

import numpy as np

BN_DRAWS = {
    "gamma": lambda rng, shape: rng.uniform(0.5, 1.5, shape),
    "beta": lambda rng, shape: rng.normal(0.0, 0.1, shape),
    "moving_mean": lambda rng, shape: rng.normal(0.0, 0.3, shape),
    "moving_variance": lambda rng, shape: rng.uniform(0.5, 2.0, shape),
}


def _kernel(rng, shape):
    fan_in = int(np.prod(shape[:-1]))
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)


def randomise_keras(model, rng):
    """Draw every weight of a Keras model from `rng`: kernels He-scaled, biases small, BatchNorm
    gamma/beta/moving statistics away from their defaults (so a mixed-up mapping shows)."""
    for layer in model.layers:
        for var in layer.weights:
            name = var.name.split("/")[-1].split(":")[0]
            shape = tuple(var.shape)
            if name == "kernel":
                value = _kernel(rng, shape)
            elif name in BN_DRAWS:
                value = BN_DRAWS[name](rng, shape)
            else:  # bias
                value = rng.normal(0.0, 0.1, shape)
            var.assign(value.astype("float32"))
    return model


def randomise_torch(model, rng):
    """Same draws for a PyTorch model (Conv/Linear weight He-scaled, BN buffers non-trivial)."""
    import torch

    names = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
             "running_var": "moving_variance"}
    with torch.no_grad():
        for module in model.modules():
            is_bn = isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
            for name, tensor in list(module.named_parameters(recurse=False)) + list(
                    module.named_buffers(recurse=False)):
                shape = tuple(tensor.shape)
                if name == "num_batches_tracked":
                    continue
                if is_bn:
                    value = BN_DRAWS[names[name]](rng, shape)
                elif name == "weight":
                    fan_in = int(np.prod(shape[1:]))
                    value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
                else:
                    value = rng.normal(0.0, 0.1, shape)
                tensor.copy_(torch.from_numpy(value.astype("float32")))
    return model


def relative_error(a, b):
    """max |a - b| / max |a|."""
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    return float(np.abs(a - b).max() / np.abs(a).max())
