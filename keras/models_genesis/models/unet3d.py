"""The release's 3D U-Net (`unet_model_3d`), layer for layer (paper Sec. 3,
docs/release_reference.md, 'U-Net topology').

A *conv block* is Conv3D(3x3x3, same, bias) -> BatchNormalization -> ReLU, named
`depth_{i}_conv`, `depth_{i}_bn`, `depth_{i}_relu` with i counting blocks in build order.
The encoder has `depth` levels of two blocks (`n_base_filters * 2**d` then twice that), with
MaxPooling3D(2) between levels; `depth_7_relu` is its output at the default depth 4. The decoder
up-samples with UpSampling3D(2), concatenates [upsampled, skip] on the channel axis and applies
two blocks whose width equals the skip's; `depth_13_relu` is its output. A Conv3D(n_labels, 1x1x1)
named `conv3d_1` (the release's auto-generated name, kept on purpose so that by-name loading of
`Genesis_Chest_CT.h5` fills it) and a sigmoid give the restoration.

Computation is channels_last. `data_format="channels_first"` builds the same layers behind a
transpose at the input and the output, so arrays in the release's `(N, 1, rows, cols, deps)` layout
go in and come out, the weights are identical, and the outputs equal the channels_last model's
(TensorFlow's channels_first Conv3D is slow on CPU, and Keras 3 on TensorFlow 2.21 adds the bias of
a channels_first conv along the wrong axis when the last spatial size equals the filter count).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import keras
from keras import layers

ENCODER_OUTPUT = "depth_{}_relu"  # formatted with 2 * depth - 1 (depth_7_relu at depth 4)
FINAL_CONV_NAME = "conv3d_1"
BN_MOMENTUM = 0.99  # Keras 2 BatchNormalization defaults (the release)
BN_EPSILON = 1e-3
DATA_FORMATS = ("channels_last", "channels_first")
# Layers of a U-Net by spatial dims (`unet_model_2d` builds the same topology in 2D).
LAYERS = {2: (layers.Conv2D, layers.MaxPooling2D, layers.UpSampling2D),
          3: (layers.Conv3D, layers.MaxPooling3D, layers.UpSampling3D)}


def resolve_initializer(kernel_initializer):
    """Return a Keras initializer for `kernel_initializer`.

    `"uniform"` means what it meant in Keras 2: RandomUniform(-0.05, 0.05), the paper's
    "uniform" scratch baseline. `"glorot_uniform"` and `"he_uniform"` are the other two baselines;
    any other Keras initializer name, config or instance is passed to `keras.initializers.get`.
    """
    if isinstance(kernel_initializer, str) and kernel_initializer.lower() == "uniform":
        return keras.initializers.RandomUniform(minval=-0.05, maxval=0.05)
    try:
        return keras.initializers.get(kernel_initializer)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            "`kernel_initializer` must be 'uniform', 'glorot_uniform', 'he_uniform' or any Keras "
            f"initializer. Received: kernel_initializer={kernel_initializer!r}."
        ) from exc


def spatial_input_shape(input_shape: Sequence[int], data_format: str,
                        dims: int = 3) -> Tuple[int, ...]:
    """Validate `input_shape` for `data_format` and return it as channels_last (r, c[, d], ch)."""
    if data_format not in DATA_FORMATS:
        raise ValueError(f"`data_format` must be one of {DATA_FORMATS}. Received: data_format={data_format!r}.")
    shape = tuple(input_shape)
    if len(shape) != dims + 1:
        spatial = "rows, cols, deps" if dims == 3 else "rows, cols"
        raise ValueError(
            f"`input_shape` must have {dims + 1} entries for a {dims}D U-Net: ({spatial}, channels) "
            f"for channels_last or (channels, {spatial}) for channels_first. "
            f"Received: input_shape={shape}."
        )
    if data_format == "channels_first":
        shape = shape[1:] + shape[:1]
    return shape


def check_divisible(spatial: Sequence[Optional[int]], depth: int) -> None:
    """Raise `ValueError` unless every known spatial size is divisible by 2**(depth-1)."""
    factor = 2 ** (depth - 1)
    bad = [s for s in spatial if s is not None and s % factor]
    if bad:
        raise ValueError(
            f"Every spatial size must be divisible by {factor} (the {depth - 1} poolings of a "
            f"depth-{depth} U-Net). Received: spatial shape={tuple(spatial)}."
        )


def conv_block(x, n_filters: int, index: int, *, batch_normalization: bool = True,
               kernel_initializer="glorot_uniform", bn_momentum: float = BN_MOMENTUM, dims: int = 3):
    """Conv3D(3x3x3) (Conv2D(3x3) for `dims=2`) -> BatchNormalization -> ReLU, named
    `depth_{index}_conv/_bn/_relu`."""
    x = LAYERS[dims][0](n_filters, 3, padding="same", kernel_initializer=kernel_initializer,
                      name=f"depth_{index}_conv")(x)
    if batch_normalization:
        x = layers.BatchNormalization(axis=-1, momentum=bn_momentum, epsilon=BN_EPSILON,
                                      name=f"depth_{index}_bn")(x)
    return layers.Activation("relu", name=f"depth_{index}_relu")(x)


def unet_core(inputs, *, depth: int = 4, n_base_filters: int = 32, batch_normalization: bool = True,
              kernel_initializer="glorot_uniform",
              bn_momentum: float = BN_MOMENTUM, dims: int = 3) -> Dict[str, object]:
    """Build the U-Net body on a channels_last tensor (`bn_momentum`: see `unet_model_3d`).

    `dims=2` builds the same blocks, names and widths with 2D layers (`unet_model_2d`).

    Returns:
        dict with `"encoder"` (the last encoder block, `depth_{2*depth-1}_relu`) and `"decoder"`
        (the last decoder block, `depth_{4*depth-3}_relu`): the tensors the heads attach to.
    """
    init = resolve_initializer(kernel_initializer)
    block = dict(batch_normalization=batch_normalization, kernel_initializer=init,
                 bn_momentum=bn_momentum, dims=dims)
    _, pool, upsample = LAYERS[dims]
    x, skips, index = inputs, [], 0
    for level in range(depth):
        width = n_base_filters * 2 ** level
        x = conv_block(x, width, index, **block)
        x = conv_block(x, width * 2, index + 1, **block)
        index += 2
        if level < depth - 1:
            skips.append(x)
            x = pool(2, name=f"pool_{level}")(x)
    encoder = x
    for level in range(depth - 2, -1, -1):
        skip = skips[level]
        x = upsample(2, name=f"up_{level}")(x)
        x = layers.Concatenate(axis=-1, name=f"concat_{level}")([x, skip])
        for _ in range(2):
            x = conv_block(x, skip.shape[-1], index, **block)
            index += 1
    return {"encoder": encoder, "decoder": x}


def channel_edges(input_shape, data_format: str, name: str = "input"):
    """Return (model_input, channels_last_tensor) for an input in `data_format` (2D or 3D)."""
    inputs = keras.Input(shape=tuple(input_shape), name=name)
    if data_format == "channels_first":
        rank = len(tuple(input_shape))
        return inputs, layers.Permute((*range(2, rank + 1), 1), name="to_channels_last")(inputs)
    return inputs, inputs


def channels_last_to(x, data_format: str):
    """Transpose a channels_last 4D/5D tensor to `data_format` (identity for channels_last)."""
    if data_format == "channels_first":
        rank = len(x.shape) - 1
        return layers.Permute((rank, *range(1, rank)), name="to_channels_first")(x)
    return x


def unet_model_3d(input_shape=(64, 64, 32, 1), n_labels: int = 1, depth: int = 4,
                  n_base_filters: int = 32, batch_normalization: bool = True,
                  activation_name: str = "sigmoid", data_format: str = "channels_last",
                  kernel_initializer="glorot_uniform", name: str = "unet_model_3d",
                  bn_momentum: float = BN_MOMENTUM) -> keras.Model:
    """Build the release's 3D U-Net (Models Genesis' restoration network).

    Args:
        input_shape: tuple. `(rows, cols, deps, 1)` for channels_last (default
            `(64, 64, 32, 1)`), `(1, rows, cols, deps)` for channels_first. Spatial sizes may be
            None or any multiple of `2**(depth-1)` (8 at depth 4).
        n_labels: int. Output channels of the final 1x1x1 conv. Defaults to 1.
        depth: int. Encoder levels. Defaults to 4 (the release); blocks are numbered 0..4*depth-3.
        n_base_filters: int. Filters of the first block. Defaults to 32 (16,324,929 parameters).
        batch_normalization: bool. BatchNormalization after each conv. Defaults to True.
        activation_name: str. Output activation. Defaults to "sigmoid".
        data_format: str. Layout of the model's input and output; computation is always
            channels_last. Defaults to "channels_last".
        kernel_initializer: the conv kernels' initializer: "uniform" (Keras 2's
            RandomUniform(-0.05, 0.05)), "glorot_uniform" (default), "he_uniform", or any Keras
            initializer.
        name: str. The model's name.
        bn_momentum: float in [0, 1). Momentum of the BatchNormalization moving statistics.
            Defaults to 0.99 (Keras 2's, the release's): after N training steps the moving
            statistics still hold 0.99**N of their initial (0, 1), a third after 100 steps, so
            short runs (the demo's few hundred steps) infer with statistics far from the data's;
            0.9 suits them. Weights and their layout do not depend on it.

    Returns:
        A `keras.Model` with the release's layer names.

    Raises:
        ValueError: bad shape, depth, filter count, data format or initializer.

    Example:
        >>> model = unet_model_3d((64, 64, 32, 1))
        >>> model.load_weights("pretrained_weights/Genesis_Chest_CT.h5")  # doctest: +SKIP
    """
    for arg, value in (("depth", depth), ("n_base_filters", n_base_filters), ("n_labels", n_labels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}.")
    if isinstance(bn_momentum, bool) or not isinstance(bn_momentum, (int, float)) \
            or not 0 <= bn_momentum < 1:
        raise ValueError(f"`bn_momentum` must be a float in [0, 1). "
                         f"Received: bn_momentum={bn_momentum!r}.")
    cl_shape = spatial_input_shape(input_shape, data_format)
    check_divisible(cl_shape[:3], depth)
    inputs, x = channel_edges(input_shape, data_format)
    body = unet_core(x, depth=depth, n_base_filters=n_base_filters,
                     batch_normalization=batch_normalization, kernel_initializer=kernel_initializer,
                     bn_momentum=float(bn_momentum))
    out = layers.Conv3D(n_labels, 1, kernel_initializer=resolve_initializer(kernel_initializer),
                        name=FINAL_CONV_NAME)(body["decoder"])
    out = layers.Activation(activation_name, name="output")(out)
    return keras.Model(inputs, channels_last_to(out, data_format), name=name)
