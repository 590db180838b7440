"""Released Keras 2.2.4 weight files: loading (both variants, both layouts), errors, export."""

import os
import zipfile

import keras
import numpy as np
import pytest

from models_genesis.layout import to_channels_first
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import (
    init_from_genesis,
    load_keras2_weights,
    read_keras2_weights,
    save_keras2_weights,
)
from tests.keras2_files import release_weights, write_keras2_file

SMALL = dict(n_base_filters=4)


def _assert_filled(model, weighted):
    for name, arrays in weighted:
        layer = model.get_layer(name)
        assert len(layer.weights) == len(arrays)
        for var, (_, arr) in zip(layer.weights, arrays):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(var), arr, err_msg=name)


@pytest.fixture
def small_file(tmp_path, rng):
    weighted = release_weights(rng, n_base_filters=4)
    return write_keras2_file(str(tmp_path / "Genesis_small.h5"), weighted), weighted


@pytest.mark.large
@pytest.mark.parametrize("full_model", [False, True])
def test_release_size_file_fills_both_layouts_through_keras_load_weights(tmp_path, rng, full_model):
    weighted = release_weights(rng)
    path = write_keras2_file(str(tmp_path / "Genesis_Chest_CT.h5"), weighted, full_model=full_model)
    x = rng.random((1, 64, 64, 32, 1), dtype=np.float32)
    last = unet_model_3d((64, 64, 32, 1))
    last.load_weights(path)  # Keras 3's own loader, as users call it
    _assert_filled(last, weighted)
    first = unet_model_3d((1, 64, 64, 32), data_format="channels_first")
    first.load_weights(path)
    _assert_filled(first, weighted)
    np.testing.assert_allclose(first.predict(to_channels_first(x), verbose=0)[:, 0],
                               last.predict(x, verbose=0)[..., 0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("full_model", [False, True])
@pytest.mark.parametrize("by_name", [False, True])
def test_load_keras2_weights_fills_every_layer(tmp_path, rng, full_model, by_name):
    weighted = release_weights(rng, n_base_filters=4)
    path = write_keras2_file(str(tmp_path / "w.h5"), weighted, full_model=full_model)
    for data_format, shape in (("channels_last", (16, 16, 8, 1)), ("channels_first", (1, 16, 16, 8))):
        model = unet_model_3d(shape, data_format=data_format, **SMALL)
        filled = load_keras2_weights(model, path, by_name=by_name)
        assert len(filled) == 29
        _assert_filled(model, weighted)


def test_by_name_fills_the_auto_named_final_conv(small_file):
    path, weighted = small_file
    model = unet_model_3d((16, 16, 8, 1), **SMALL)
    model.load_weights(path, by_name=True)  # Keras 3's by-name loader: names must agree
    _assert_filled(model, weighted)


def test_by_name_alias_for_other_auto_names(tmp_path, rng):
    weighted = release_weights(rng, n_base_filters=4, final_name="conv3d_19")
    path = write_keras2_file(str(tmp_path / "w.h5"), weighted)
    model = unet_model_3d((16, 16, 8, 1), **SMALL)
    load_keras2_weights(model, path, by_name=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("conv3d_1").weights[0]),
                                  weighted[-1][1][0][1])


def test_other_architecture_raises_and_loads_nothing(tmp_path, rng):
    path = write_keras2_file(str(tmp_path / "w8.h5"), release_weights(rng, n_base_filters=8))
    model = unet_model_3d((16, 16, 8, 1), **SMALL)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    with pytest.raises(ValueError, match=r"depth_0_conv.*\(3, 3, 3, 1, 4\).*\(3, 3, 3, 1, 8\)"):
        load_keras2_weights(model, path)
    for old, var in zip(before, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(var), old)
    shallow = unet_model_3d((16, 16, 8, 1), depth=3, **SMALL)
    with pytest.raises(ValueError, match="holds 29 layers with weights.*21"):
        load_keras2_weights(shallow, path)


def test_bad_files_raise_clear_errors(tmp_path, small_file):
    path, _ = small_file
    model = unet_model_3d((16, 16, 8, 1), **SMALL)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        load_keras2_weights(model, tmp_path / "missing.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(open(path, "rb").read()[:3000])
    with pytest.raises(ValueError, match="truncated"):
        load_keras2_weights(model, truncated)
    pt = tmp_path / "Genesis_Chest_CT.pt"
    with zipfile.ZipFile(pt, "w") as z:
        z.writestr("archive/data.pkl", b"not a keras file")
    with pytest.raises(ValueError, match="pytorch_compat"):
        load_keras2_weights(model, pt)


def test_init_from_genesis_loads_the_body_and_reports_the_head(small_file):
    from models_genesis.models.heads import classification_model

    path, weighted = small_file
    model = classification_model((16, 16, 8, 1), **SMALL)
    report = init_from_genesis(model, path)
    assert report["loaded"] == [f"depth_{i}_{k}" for i in range(8) for k in ("conv", "bn")]
    assert report["initialised"] == ["fc1", "classifier"]
    _assert_filled(model, [(n, a) for n, a in weighted if n in report["loaded"]])


def test_export_reads_back_in_keras3_and_our_reader(tmp_path, rng):
    model = unet_model_3d((16, 16, 8, 1), **SMALL)
    for var in model.weights:
        var.assign(rng.standard_normal(tuple(var.shape)).astype("float32") * 0.1)
    path = save_keras2_weights(model, str(tmp_path / "Genesis_Chest_CT.h5"))
    assert not os.path.exists(path + ".tmp")
    stored = read_keras2_weights(path)
    assert list(stored)[0] == "depth_0_conv" and list(stored)[-1] == "conv3d_1"
    again = unet_model_3d((16, 16, 8, 1), **SMALL)
    again.load_weights(path)
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def _tf_keras_unet(tf_keras, shape, n_base_filters, depth=4):
    """The release topology written with Keras 2 (tf_keras), as the release's code builds it."""
    L = tf_keras.layers
    inputs = tf_keras.Input(shape)
    x, skips, i = inputs, [], 0

    def block(x, n):
        nonlocal i
        x = L.Conv3D(n, 3, padding="same", name=f"depth_{i}_conv")(x)
        x = L.BatchNormalization(name=f"depth_{i}_bn")(x)
        x = L.Activation("relu", name=f"depth_{i}_relu")(x)
        i += 1
        return x

    for level in range(depth):
        x = block(block(x, n_base_filters * 2 ** level), n_base_filters * 2 ** (level + 1))
        if level < depth - 1:
            skips.append(x)
            x = L.MaxPooling3D(2)(x)
    for level in range(depth - 2, -1, -1):
        x = L.concatenate([L.UpSampling3D(2)(x), skips[level]], axis=-1)
        x = block(block(x, skips[level].shape[-1]), skips[level].shape[-1])
    x = L.Activation("sigmoid")(L.Conv3D(1, 1)(x))
    return tf_keras.Model(inputs, x)


def test_keras2_reads_our_export_and_we_read_keras2(tmp_path, rng):
    tf_keras = pytest.importorskip("tf_keras")
    ours = unet_model_3d((16, 16, 8, 1), **SMALL)
    for var in ours.weights:
        var.assign(rng.standard_normal(tuple(var.shape)).astype("float32") * 0.1)
    for layer in ours.layers:
        if layer.name.endswith("_bn"):
            layer.weights[3].assign(rng.uniform(0.5, 1.5, tuple(layer.weights[3].shape)).astype("float32"))
    x = rng.random((2, 16, 16, 8, 1), dtype=np.float32)
    expected = ours.predict(x, verbose=0)
    theirs = _tf_keras_unet(tf_keras, (16, 16, 8, 1), 4)
    theirs.load_weights(save_keras2_weights(ours, str(tmp_path / "ours.h5")))
    np.testing.assert_allclose(theirs.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    # And the other way: a file written by Keras 2 itself fills our model (by order and by name).
    theirs.save_weights(str(tmp_path / "keras2.h5"))
    for by_name in (False, True):
        back = unet_model_3d((16, 16, 8, 1), **SMALL)
        load_keras2_weights(back, tmp_path / "keras2.h5", by_name=by_name)
        np.testing.assert_allclose(back.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
