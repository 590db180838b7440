"""The release topology: names, parameter counts, initialisers, data formats."""

import keras
import numpy as np
import pytest

from models_genesis.layout import convert_layout, to_channels_first, to_channels_last
from models_genesis.models.unet3d import resolve_initializer, unet_model_3d
from tests.keras2_files import release_conv_channels


def _randomise(model, rng):
    """Non-zero biases, BN statistics and betas, so layout errors cannot hide behind zeros."""
    for layer in model.layers:
        for var in layer.weights:
            shape = tuple(var.shape)
            if "variance" in var.name or "gamma" in var.name:
                var.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            else:
                var.assign((rng.standard_normal(shape) * 0.2).astype("float32"))


def test_release_parameter_count_and_names():
    model = unet_model_3d((64, 64, 32, 1))
    assert model.count_params() == 16_324_929
    bn = sum(int(np.prod(v.shape)) for layer in model.layers if layer.name.endswith("_bn")
             for v in layer.weights)
    assert bn == 9_344
    weighted = [layer.name for layer in model.layers if layer.weights]
    expected = [f"depth_{i}_{kind}" for i in range(14) for kind in ("conv", "bn")] + ["conv3d_1"]
    assert weighted == expected
    for i in range(14):
        assert model.get_layer(f"depth_{i}_relu") is not None
    assert model.get_layer("depth_7_relu").output.shape[1:] == (8, 8, 4, 512)
    assert model.get_layer("depth_13_relu").output.shape[1:] == (64, 64, 32, 64)


def test_kernel_shapes_match_reference_topology():
    model = unet_model_3d((32, 32, 16, 1), n_base_filters=4)
    convs, last = release_conv_channels(4)
    for i, (cin, cout) in enumerate(convs):
        assert tuple(model.get_layer(f"depth_{i}_conv").weights[0].shape) == (3, 3, 3, cin, cout)
    assert tuple(model.get_layer("conv3d_1").weights[0].shape) == (1, 1, 1, last, 1)
    bn = model.get_layer("depth_0_bn")
    assert bn.momentum == pytest.approx(0.99) and bn.epsilon == pytest.approx(1e-3)


def test_decoder_concatenates_upsampled_then_skip():
    model = unet_model_3d((16, 16, 8, 1), n_base_filters=2)
    concat = model.get_layer("concat_0")
    sources = [t._keras_history[0].name for t in concat.input]
    assert sources == ["up_0", "depth_1_relu"]
    assert isinstance(model.get_layer("up_0"), keras.layers.UpSampling3D)


@pytest.mark.parametrize("depth,filters", [(3, 4), (2, 2)])
def test_smaller_models_build_and_predict(depth, filters):
    model = unet_model_3d((16, 16, 8, 1), depth=depth, n_base_filters=filters)
    out = model.predict(np.zeros((1, 16, 16, 8, 1), "float32"), verbose=0)
    assert out.shape == (1, 16, 16, 8, 1)
    assert f"depth_{4 * depth - 3}_relu" in [layer.name for layer in model.layers]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="divisible by 8"):
        unet_model_3d((60, 64, 32, 1))
    with pytest.raises(ValueError, match="input_shape"):
        unet_model_3d((64, 64, 32))
    with pytest.raises(ValueError, match="data_format"):
        unet_model_3d((64, 64, 32, 1), data_format="channels_middle")
    with pytest.raises(ValueError, match="n_base_filters"):
        unet_model_3d((64, 64, 32, 1), n_base_filters=0)
    with pytest.raises(ValueError, match="kernel_initializer"):
        unet_model_3d((16, 16, 8, 1), kernel_initializer="no_such_init")


@pytest.mark.parametrize("name,bound", [
    ("uniform", lambda fan_in, fan_out: 0.05),
    ("glorot_uniform", lambda fan_in, fan_out: np.sqrt(6 / (fan_in + fan_out))),
    ("he_uniform", lambda fan_in, fan_out: np.sqrt(6 / fan_in)),
])
def test_scratch_initialisers_have_their_keras_ranges(name, bound):
    keras.utils.set_random_seed(1)
    model = unet_model_3d((16, 16, 8, 1), n_base_filters=8, kernel_initializer=name)
    kernel = keras.ops.convert_to_numpy(model.get_layer("depth_3_conv").weights[0])
    fan_in, fan_out = 27 * kernel.shape[3], 27 * kernel.shape[4]
    limit = bound(fan_in, fan_out)
    assert np.abs(kernel).max() <= limit + 1e-7
    # Uniform on [-limit, limit]: s.d. limit / sqrt(3), and the range is nearly filled.
    assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.05)
    assert np.abs(kernel).max() > 0.95 * limit


def test_uniform_means_keras2_random_uniform():
    init = resolve_initializer("uniform")
    assert isinstance(init, keras.initializers.RandomUniform)
    assert (init.minval, init.maxval) == (-0.05, 0.05)
    assert isinstance(resolve_initializer(keras.initializers.Zeros()), keras.initializers.Zeros)


def test_channels_first_equals_channels_last(rng):
    # depth 8 == 8 filters at depth_0_conv: the TF channels_first bias bug's trigger.
    last = unet_model_3d((16, 16, 8, 1), n_base_filters=8)
    first = unet_model_3d((1, 16, 16, 8), n_base_filters=8, data_format="channels_first")
    _randomise(last, rng)
    first.set_weights(last.get_weights())
    x = rng.random((2, 16, 16, 8, 1), dtype=np.float32)
    out_last = last.predict(x, verbose=0)
    out_first = first.predict(to_channels_first(x), verbose=0)
    assert out_first.shape == (2, 1, 16, 16, 8)
    np.testing.assert_allclose(to_channels_last(out_first), out_last, rtol=1e-5, atol=1e-6)
    # A bias added on the wrong axis is the class of error this guards against: it moves outputs.
    wrong = last.get_layer("depth_0_conv").weights[1]
    wrong.assign(keras.ops.convert_to_numpy(wrong)[::-1].copy())
    assert np.abs(last.predict(x, verbose=0) - out_last).max() > 1e-4


def test_layout_helpers_round_trip(rng):
    x = rng.random((2, 1, 4, 6, 8))
    assert to_channels_last(x).shape == (2, 4, 6, 8, 1)
    np.testing.assert_array_equal(convert_layout(to_channels_last(x), "channels_last", "channels_first"), x)
    assert to_channels_last(x[0]).shape == (4, 6, 8, 1)
    with pytest.raises(ValueError, match="rank 5"):
        to_channels_last(x[0, 0, 0])


def test_keras3_save_and_reload_round_trip(tmp_path, rng):
    model = unet_model_3d((16, 16, 8, 1), n_base_filters=2)
    _randomise(model, rng)
    x = rng.random((1, 16, 16, 8, 1), dtype=np.float32)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), expected, rtol=1e-6)
    model.save_weights(tmp_path / "m.weights.h5")
    fresh = unet_model_3d((16, 16, 8, 1), n_base_filters=2)
    fresh.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), expected, rtol=1e-6)


def test_bn_momentum_reaches_every_batch_normalization_layer(rng):
    default = unet_model_3d((8, 8, 8, 1), depth=2, n_base_filters=2)
    short = unet_model_3d((8, 8, 8, 1), depth=2, n_base_filters=2, bn_momentum=0.9)
    bns = [layer for layer in short.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 6  # 4 * depth - 2 conv blocks
    assert all(layer.momentum == 0.99 for layer in default.layers
               if isinstance(layer, keras.layers.BatchNormalization))
    assert all(layer.momentum == 0.9 for layer in bns)
    assert [tuple(w.shape) for w in short.weights] == [tuple(w.shape) for w in default.weights]
    # One training step moves the first moving mean by (1 - momentum) of the batch mean.
    x = rng.random((2, 8, 8, 8, 1)).astype("float32")
    short.set_weights(default.get_weights())
    conv = keras.ops.convert_to_numpy(short.get_layer("depth_0_conv")(x))
    short(x, training=True)
    default(x, training=True)
    batch_mean = conv.mean(axis=(0, 1, 2, 3))
    for model, momentum in ((short, 0.9), (default, 0.99)):
        moved = keras.ops.convert_to_numpy(model.get_layer("depth_0_bn").moving_mean)
        np.testing.assert_allclose(moved, (1 - momentum) * batch_mean, rtol=1e-4, atol=1e-6)
    for bad in (1.0, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match="bn_momentum"):
            unet_model_3d((8, 8, 8, 1), depth=2, n_base_filters=2, bn_momentum=bad)
