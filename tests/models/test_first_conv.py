"""One-channel Genesis weights in a C-channel model: the first conv repeated over C and scaled by
1/C, so a C-channel copy of an image gives the same first activations (docs/your_own_data.md)."""

import keras
import numpy as np
import pytest

from models_genesis.models.heads import segmentation_model
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import (adapt_first_conv, init_from_genesis,
                                           load_keras2_weights, save_keras2_weights)
from tests.pytorch_compat.helpers import randomise_keras


@pytest.fixture(scope="module")
def one_channel(tmp_path_factory):
    model = randomise_keras(unet_model_3d((16, 16, 8, 1), n_base_filters=2),
                            np.random.default_rng(0))
    path = tmp_path_factory.mktemp("w") / "genesis.h5"
    return model, str(save_keras2_weights(model, path))


def _first(model, x):
    return keras.ops.convert_to_numpy(
        keras.Model(model.input, model.get_layer("depth_0_conv").output)(x))


@pytest.mark.parametrize("channels", [2, 4])
def test_copies_of_one_image_give_the_same_first_activations(one_channel, channels):
    model, path = one_channel
    wide = unet_model_3d((16, 16, 8, channels), n_base_filters=2)
    load_keras2_weights(wide, path)
    x = np.random.default_rng(1).random((2, 16, 16, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(_first(wide, np.repeat(x, channels, -1)), _first(model, x),
                               rtol=1e-5, atol=1e-6)
    kernel = wide.get_layer("depth_0_conv").kernel.numpy()
    assert kernel.shape[-2] == channels
    np.testing.assert_allclose(kernel.sum(axis=-2, keepdims=True),
                               model.get_layer("depth_0_conv").kernel.numpy(), rtol=1e-5)
    # the rest of the body is loaded as stored
    np.testing.assert_array_equal(wide.get_layer("depth_1_conv").kernel.numpy(),
                                  model.get_layer("depth_1_conv").kernel.numpy())


def test_target_model_and_refusals(one_channel):
    model, path = one_channel
    seg = segmentation_model((16, 16, 8, 3), 3, n_base_filters=2)
    assert "depth_0_conv" in init_from_genesis(seg, path)["loaded"]
    assert seg.output_shape == (None, 16, 16, 8, 3)
    with pytest.raises(ValueError, match="one-channel kernel"):
        adapt_first_conv(np.zeros((3, 3, 3, 2, 4)), 3)
    # a 2-channel file does not fill a 3-channel model: only one channel is adapted
    two = save_keras2_weights(unet_model_3d((16, 16, 8, 2), n_base_filters=2),
                              path.replace(".h5", "_2ch.h5"))
    with pytest.raises(ValueError, match="depth_0_conv"):
        load_keras2_weights(unet_model_3d((16, 16, 8, 3), n_base_filters=2), two)


def test_pytorch_side_adapts_the_same_way(one_channel):
    torch = pytest.importorskip("torch")
    from pytorch_compat import KerasUNet3D, load_keras_weights

    model, path = one_channel
    wide = KerasUNet3D(in_channels=3, n_base_filters=2).eval()
    load_keras_weights(wide, path)
    x = np.random.default_rng(2).random((1, 16, 16, 8, 1), dtype=np.float32)
    with torch.no_grad():
        out = wide.depth_0_conv(torch.from_numpy(np.repeat(x, 3, -1).transpose(0, 4, 1, 2, 3)))
    np.testing.assert_allclose(out.numpy().transpose(0, 2, 3, 4, 1), _first(model, x),
                               rtol=1e-4, atol=1e-5)
