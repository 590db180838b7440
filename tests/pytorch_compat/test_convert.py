"""Keras <-> PyTorch conversion: same outputs both ways, through objects and files, heads too."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from models_genesis.models.heads import classification_model, segmentation_model  # noqa: E402
from models_genesis.models.unet3d import unet_model_3d  # noqa: E402
from models_genesis.models.weights import load_keras2_weights, save_keras2_weights  # noqa: E402
from pytorch_compat import (  # noqa: E402
    GenesisClassifier,
    GenesisSegmenter,
    KerasUNet3D,
    UNet3D,
    keras_to_torch,
    load_keras_weights,
    read_keras_weights,
    save_keras_weights,
    torch_to_keras,
)
from tests.pytorch_compat.helpers import randomise_keras, randomise_torch, relative_error  # noqa: E402

SHAPE = (16, 16, 8, 1)
SMALL = dict(n_base_filters=4)
TOL = 1e-4


def to_torch(x):
    """channels_last numpy (N, r, c, d, C) -> channels_first tensor (N, C, r, c, d)."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def run_torch(model, x):
    with torch.no_grad():
        y = model.eval()(to_torch(x)).numpy()
    return np.moveaxis(y, 1, -1) if y.ndim == 5 else y


def assert_same(reference, other):
    assert float(np.std(reference)) > 1e-3, "outputs too flat to compare"
    assert relative_error(reference, other) < TOL


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    return rng.random((2,) + SHAPE, dtype=np.float32)


@pytest.fixture(scope="module")
def keras_unet(data):
    model = randomise_keras(unet_model_3d(SHAPE, activation_name="linear", **SMALL),
                            np.random.default_rng(2))
    return model, model.predict(data, verbose=0)


def test_keras_model_to_torch(keras_unet, data):
    model, expected = keras_unet
    converted = keras_to_torch(model)
    assert isinstance(converted, KerasUNet3D) and converted.activation == "linear"
    assert (converted.depth, converted.n_base_filters, converted.n_labels) == (4, 4, 1)
    assert_same(expected, run_torch(converted, data))
    # The channels_first Keras model holds the same weights and takes PyTorch's layout as is.
    cf = unet_model_3d((1,) + SHAPE[:3], activation_name="linear", data_format="channels_first",
                       **SMALL)
    cf.set_weights(model.get_weights())
    x_cf = np.moveaxis(data, -1, 1)
    with torch.no_grad():
        y_torch = keras_to_torch(cf)(torch.from_numpy(np.ascontiguousarray(x_cf))).numpy()
    assert_same(cf.predict(x_cf, verbose=0), y_torch)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_torch_model_to_keras(data, rng, data_format):
    model = randomise_torch(KerasUNet3D(activation="linear", **SMALL), rng)
    expected = run_torch(model, data)
    shape = SHAPE if data_format == "channels_last" else (1,) + SHAPE[:3]
    converted = torch_to_keras(model, input_shape=shape, data_format=data_format)
    x = data if data_format == "channels_last" else np.moveaxis(data, -1, 1)
    y = converted.predict(x, verbose=0)
    assert_same(expected, y if data_format == "channels_last" else np.moveaxis(y, 1, -1))


@pytest.mark.parametrize("fmt", ["keras2.h5", "full_model.h5", "model.weights.h5", "model.keras"])
def test_keras_files_to_torch(keras_unet, data, tmp_path, fmt):
    model, expected = keras_unet
    path = tmp_path / fmt
    if fmt == "keras2.h5":
        save_keras2_weights(model, path)
    elif fmt == "full_model.h5":  # Keras' legacy full-model HDF5 (weights under model_weights)
        keras.saving.save_model(model, path)
    elif fmt.endswith(".weights.h5"):
        model.save_weights(path)
    else:
        model.save(path)
    assert sorted(read_keras_weights(path)) == sorted(l.name for l in model.layers if l.weights)
    converted = keras_to_torch(path, activation="linear")
    assert_same(expected, run_torch(converted, data))


@pytest.mark.parametrize("fmt", ["keras2.h5", "model.weights.h5", "model.keras"])
def test_torch_to_keras_files(data, tmp_path, fmt):
    model = randomise_torch(KerasUNet3D(activation="linear", **SMALL), np.random.default_rng(3))
    expected = run_torch(model, data)
    path = tmp_path / fmt
    assert save_keras_weights(model, path, input_shape=SHAPE) == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [fmt]  # no temporary left behind
    if fmt == "model.keras":
        restored = keras.saving.load_model(path)
    else:
        restored = unet_model_3d(SHAPE, activation_name="linear", **SMALL)
        if fmt == "keras2.h5":
            load_keras2_weights(restored, path)
        else:
            restored.load_weights(path)
    assert_same(expected, restored.predict(data, verbose=0))


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_heads_both_ways(data, kind):
    build = classification_model if kind == "classification" else segmentation_model
    extra = dict(dense_units=8) if kind == "classification" else {}
    k_model = randomise_keras(build(SHAPE, n_classes=3, **SMALL, **extra), np.random.default_rng(4))
    converted = keras_to_torch(k_model)
    assert isinstance(converted, GenesisClassifier if kind == "classification" else GenesisSegmenter)
    assert converted.activation == "softmax" and converted.n_classes == 3
    expected = k_model.predict(data, verbose=0)
    got = run_torch(converted, data)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=1e-5)  # softmax over classes
    assert_same(expected, got)
    randomise_torch(converted, np.random.default_rng(5))
    back = torch_to_keras(converted, input_shape=SHAPE)
    assert_same(run_torch(converted, data), back.predict(data, verbose=0))


def test_genesis_weights_initialise_torch_heads(keras_unet):
    model, _ = keras_unet
    seg = GenesisSegmenter(n_classes=2, **SMALL)
    head_before = seg.segmentation_conv.weight.detach().clone()
    report = load_keras_weights(seg, model, strict=False)
    assert report["initialised"] == ["segmentation_conv"] and report["unused"] == ["conv3d_1"]
    assert len(report["loaded"]) == 28  # 14 blocks x (conv, bn)
    assert torch.equal(seg.segmentation_conv.weight, head_before)
    kernel = model.get_layer("depth_13_conv").kernel.numpy()
    np.testing.assert_array_equal(seg.unet.depth_13_conv.weight.detach().numpy(),
                                  kernel.transpose(4, 3, 0, 1, 2))
    np.testing.assert_array_equal(seg.unet.depth_5_bn.running_var.numpy(),
                                  model.get_layer("depth_5_bn").moving_variance.numpy())
    cls = GenesisClassifier(n_classes=1, dense_units=8, **SMALL)
    report = load_keras_weights(cls, model, strict=False)
    assert report["initialised"] == ["fc1", "classifier"]
    assert "depth_8_conv" in report["unused"] and "depth_7_bn" in report["loaded"]
    with pytest.raises(ValueError, match="unused source layers"):
        load_keras_weights(GenesisClassifier(dense_units=8, **SMALL), model)


def test_fine_tuning_in_torch_updates_converted_weights(keras_unet, data):
    model, _ = keras_unet
    cls = GenesisClassifier(n_classes=1, activation="linear", dense_units=8, **SMALL)
    load_keras_weights(cls, model, strict=False)
    optimiser = torch.optim.SGD(cls.parameters(), lr=0.01)
    x, target = to_torch(data), torch.tensor([[1.0], [0.0]])
    losses = []
    for _ in range(3):
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(cls.train()(x), target)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert float(cls.unet.depth_0_conv.weight.grad.abs().sum()) > 0
    assert losses[-1] < losses[0]


def test_batchnorm_training_update_matches_keras(data):
    k_model = randomise_keras(unet_model_3d(SHAPE, **SMALL), np.random.default_rng(6))
    t_model = keras_to_torch(k_model).train()
    k_model(data, training=True)
    with torch.no_grad():
        t_model(to_torch(data))
    for name in ("depth_0_bn", "depth_7_bn", "depth_13_bn"):
        layer, module = k_model.get_layer(name), getattr(t_model, name)
        np.testing.assert_allclose(module.running_mean.numpy(), layer.moving_mean.numpy(),
                                   rtol=1e-4, atol=1e-5)
        # PyTorch keeps the unbiased batch variance, Keras the biased one (n / (n - 1)).
        np.testing.assert_allclose(module.running_var.numpy(), layer.moving_variance.numpy(),
                                   rtol=1e-3)


def test_mismatches_raise_and_change_nothing(keras_unet, tmp_path):
    model, _ = keras_unet
    wide = KerasUNet3D(n_base_filters=8)
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    with pytest.raises(ValueError, match=r"Shape mismatch at layer 'depth_0_conv'"):
        load_keras_weights(wide, model)
    assert all(torch.equal(before[k], v) for k, v in wide.state_dict().items())
    with pytest.raises(TypeError, match="ConvTranspose3d"):
        torch_to_keras(UNet3D(n_base_filters=4), unet_model_3d(SHAPE, **SMALL))
    pt = tmp_path / "Genesis_Chest_CT.pt"
    torch.save({"state_dict": UNet3D(n_base_filters=4).state_dict()}, pt)
    with pytest.raises(ValueError, match="load_checkpoint"):
        keras_to_torch(pt)
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        keras_to_torch(tmp_path / "nothing.h5")
    with pytest.raises(TypeError, match="Received: source of type int"):
        read_keras_weights(3)
    with pytest.raises(ValueError, match="must end with"):
        save_keras_weights(KerasUNet3D(**SMALL), tmp_path / "weights.pt")
