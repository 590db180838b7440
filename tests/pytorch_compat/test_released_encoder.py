"""The released PyTorch encoder (`down_tr*`) converted into the Keras U-Net's depth_0..7."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pytorch_compat import UNet3D  # noqa: E402
from pytorch_compat.released import (NOT_CONVERTED, load_released_encoder,  # noqa: E402
                                     released_encoder_arrays, save_released_encoder)
from tests.pytorch_compat.helpers import randomise_torch  # noqa: E402

KEYS = Path(__file__).resolve().parents[3] / "shared" / "reference_data" / \
    "official_pt_state_dict.txt"


def _released(model):
    """The release's checkpoint form: a dict with a `module.`-prefixed state_dict."""
    return {"state_dict": {"module." + k: v for k, v in model.state_dict().items()},
            "optimizer_state_dict": {}, "epoch": 3}


def _torch_encoder(model, x):
    with torch.no_grad():
        for level in (model.down_tr64, model.down_tr128, model.down_tr256, model.down_tr512):
            x, _ = level(x)
    return x.numpy()


@pytest.fixture
def released(rng):
    model = randomise_torch(UNet3D(n_class=1, n_base_filters=4), rng).eval()
    with torch.no_grad():  # a few tiny variances: the gamma fallback of the epsilon shift
        model.down_tr64.ops[0].bn1.running_var[:2] = torch.tensor([1e-4, 5e-4])
    return model


@pytest.mark.skipif(not KEYS.is_file(), reason="shared/reference_data not present")
def test_release_keys_cover_the_encoder():
    names = {line.split()[0] for line in KEYS.read_text().splitlines() if line.strip()}
    model = UNet3D()  # the release's width: the key list is the checkpoint's
    ours = {"module." + k for k in model.state_dict()}
    assert ours == names  # same keys as the released checkpoint
    state = {k: torch.zeros(tuple(v.shape)) for k, v in model.state_dict().items()}
    arrays = released_encoder_arrays({"state_dict": {"module." + k: v for k, v in state.items()}})
    assert list(arrays)[:2] == ["depth_0_conv", "depth_0_bn"] and len(arrays) == 16
    assert arrays["depth_7_conv"][0].shape == (3, 3, 3, 256, 512)
    assert arrays["depth_6_conv"][0].shape == (3, 3, 3, 256, 256)


def test_keras_encoder_computes_the_released_features(released, rng):
    from models_genesis.models.heads import target_model

    keras_model = target_model("classification", (16, 16, 8, 1), n_base_filters=4)
    info = load_released_encoder(keras_model, _released(released))
    assert info["not_converted"] == list(NOT_CONVERTED)
    x = rng.random((2, 1, 16, 16, 8)).astype("float32")
    expected = _torch_encoder(released, torch.from_numpy(x))  # (2, 32, 2, 2, 1)
    import keras

    encoder = keras.Model(keras_model.inputs, keras_model.get_layer("depth_7_relu").output)
    got = np.asarray(encoder([np.moveaxis(x, 1, -1)], training=False))
    np.testing.assert_allclose(np.moveaxis(got, -1, 1), expected, rtol=1e-4, atol=1e-5)


def test_saved_file_initialises_a_classifier(released, tmp_path):
    from models_genesis.models.heads import target_model
    from models_genesis.models.weights import read_keras2_weights

    path = save_released_encoder(_released(released), tmp_path / "encoder.h5")
    layers = read_keras2_weights(path)
    assert sorted(layers) == sorted(f"depth_{i}_{k}" for i in range(8) for k in ("conv", "bn"))
    model = target_model("classification", (16, 16, 8, 1), n_base_filters=4, weights=path)
    kernel = np.asarray(model.get_layer("depth_3_conv").weights[0])
    w = released.down_tr128.ops[1].conv1.weight.detach().numpy()
    np.testing.assert_array_equal(kernel, w.transpose(2, 3, 4, 1, 0))
    with pytest.raises(ValueError, match="depth_8_conv"):  # the decoder is not in the file
        target_model("segmentation", (16, 16, 8, 1), n_base_filters=4, weights=path)


def test_not_a_released_checkpoint():
    with pytest.raises(ValueError, match="lacks"):
        released_encoder_arrays({"state_dict": {"conv.weight": torch.zeros(1)}})
