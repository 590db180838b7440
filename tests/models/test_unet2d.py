"""The 2D U-Net, its heads, the ImageNet encoder option and 2D/3D weight files."""

import importlib.util

import numpy as np
import pytest

from models_genesis.models.heads2d import target_model_2d
from models_genesis.models.unet2d import FINAL_CONV_NAME_2D, unet_model_2d
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import init_from_genesis, load_keras2_weights, save_keras2_weights

SMALL = dict(depth=3, n_base_filters=2)


def test_unet2d_names_and_shapes_follow_the_3d_unet():
    m2 = unet_model_2d((32, 32, 1), **SMALL)
    m3 = unet_model_3d((32, 32, 16, 1), **SMALL)
    names2 = [layer.name for layer in m2.layers if layer.weights]
    names3 = [layer.name for layer in m3.layers if layer.weights]
    assert names2 == [n if n != "conv3d_1" else FINAL_CONV_NAME_2D for n in names3]
    assert m2.get_layer("depth_5_relu").output.shape == (None, 8, 8, 16)   # encoder, depth 3
    assert m2.get_layer("depth_9_relu").output.shape == (None, 32, 32, 4)  # decoder
    assert m2.output.shape == (None, 32, 32, 1)
    # Kernels are the 3D ones without their depth axis.
    for a, b in zip(m2.weights, m3.weights):
        shape3 = tuple(b.shape)
        assert tuple(a.shape) == (shape3[:2] + shape3[3:] if len(shape3) == 5 else shape3)


def test_unet2d_release_size():
    assert unet_model_2d((64, 64, 1)).count_params() == 5_449_473


def test_channels_first_gives_the_same_outputs(rng):
    a = unet_model_2d((32, 32, 1), **SMALL)
    b = unet_model_2d((1, 32, 32), data_format="channels_first", **SMALL)
    b.set_weights(a.get_weights())
    x = rng.random((2, 32, 32, 1), dtype=np.float32)
    ya = a.predict(x, verbose=0)
    yb = b.predict(np.moveaxis(x, -1, 1), verbose=0)
    np.testing.assert_allclose(np.moveaxis(yb, 1, -1), ya, atol=1e-6)


@pytest.mark.parametrize("shape,match", [((32, 32, 16, 1), "must have 3 entries"),
                                         ((30, 32, 1), "divisible by 4")])
def test_bad_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        unet_model_2d(shape, **SMALL)


def test_weight_round_trip_2d(tmp_path, rng):
    a = unet_model_2d((32, 32, 1), **SMALL)
    path = save_keras2_weights(a, tmp_path / "Genesis_Chest_CT_2D.h5")
    b = unet_model_2d((32, 32, 1), kernel_initializer="he_uniform", **SMALL)
    load_keras2_weights(b, path)
    x = rng.random((2, 32, 32, 1), dtype=np.float32)
    np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
    c = unet_model_2d((32, 32, 1), **SMALL)  # by name: the final conv matches conv2d*
    assert FINAL_CONV_NAME_2D in load_keras2_weights(c, path, by_name=True)


def test_2d_file_in_3d_builder_and_reverse_are_refused(tmp_path):
    p2 = save_keras2_weights(unet_model_2d((32, 32, 1), **SMALL), tmp_path / "two.h5")
    p3 = save_keras2_weights(unet_model_3d((32, 32, 16, 1), **SMALL), tmp_path / "three.h5")
    with pytest.raises(ValueError, match=r"two.h5.*holds 2D conv kernels.*unet_model_2d"):
        load_keras2_weights(unet_model_3d((32, 32, 16, 1), **SMALL), p2)
    with pytest.raises(ValueError, match=r"three.h5.*holds 3D conv kernels.*unet_model_3d"):
        load_keras2_weights(unet_model_2d((32, 32, 1), **SMALL), p3)
    with pytest.raises(ValueError, match="2D conv kernels"):
        init_from_genesis(unet_model_3d((32, 32, 16, 1), **SMALL), p2)
    with pytest.raises(ValueError, match="3D conv kernels"):
        target_model_2d("segmentation", (32, 32, 3), weights=p3, **SMALL)


def test_heads_2d_and_3_channel_init_from_a_1_channel_file(tmp_path, rng):
    genesis = unet_model_2d((32, 32, 1), **SMALL)
    path = save_keras2_weights(genesis, tmp_path / "g2d.h5")
    seg = target_model_2d("segmentation", (32, 32, 3), 2, weights=path, **SMALL)
    cls = target_model_2d("classification", (32, 32, 3), 1, weights=path, dense_units=8, **SMALL)
    assert seg.output.shape == (None, 32, 32, 2) and cls.output.shape == (None, 1)
    k1 = genesis.get_layer("depth_0_conv").kernel.numpy()
    k3 = seg.get_layer("depth_0_conv").kernel.numpy()
    np.testing.assert_allclose(k3, np.repeat(k1, 3, axis=2) / 3, rtol=1e-6)
    # A constant 3-channel image gives the first block the 1-channel model's pre-activation.
    x1 = np.full((1, 32, 32, 1), 0.3, np.float32)
    import keras

    f1 = keras.Model(genesis.input, genesis.get_layer("depth_0_conv").output)
    f3 = keras.Model(seg.input, seg.get_layer("depth_0_conv").output)
    np.testing.assert_allclose(f3.predict(np.repeat(x1, 3, -1), verbose=0),
                               f1.predict(x1, verbose=0), rtol=1e-5, atol=1e-6)
    enc = [n for n in cls.layers if n.name.startswith("depth_") and n.weights]
    assert max(int(layer.name.split("_")[1]) for layer in enc) == 5  # classification: encoder only
    np.testing.assert_array_equal(cls.get_layer("depth_5_conv").kernel.numpy(),
                                  genesis.get_layer("depth_5_conv").kernel.numpy())


@pytest.mark.skipif(importlib.util.find_spec("keras_hub") is None,
                    reason="keras-hub is not installed (pip install 'models-genesis[2d]')")
def test_imagenet_encoder_builds_without_weights():
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(  # a tiny ResNet: 2 stages, strides 4 and 8
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3))
    seg = target_model_2d("segmentation", (32, 32, 3), 1, encoder="imagenet", backbone=backbone)
    assert seg.output.shape == (None, 32, 32, 1)
    assert seg.get_layer("decoder_2_conv1").output.shape == (None, 32, 32, 64)  # 3 stages: 8 -> 1
    y = seg.predict(np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32), verbose=0)
    assert np.all((y > 0) & (y < 1))
    with pytest.raises(ValueError, match="applies to encoder='genesis'"):
        target_model_2d("classification", (32, 32, 3), encoder="imagenet", backbone=backbone,
                        weights="x.h5")
