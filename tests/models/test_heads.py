"""Target heads: where they attach, their outputs, and Genesis initialisation."""

import keras
import numpy as np
import pytest

from models_genesis.layout import to_channels_first
from models_genesis.models.heads import classification_model, segmentation_model, target_model
from models_genesis.models.unet3d import unet_model_3d
from tests.keras2_files import release_weights, write_keras2_file


def _source(layer):
    return layer.input._keras_history[0].name


def test_classification_head_sits_on_the_encoder():
    model = classification_model((16, 16, 8, 1), n_classes=1, n_base_filters=4)
    assert _source(model.get_layer("gap")) == "depth_7_relu"
    assert model.get_layer("fc1").units == 1024
    assert model.get_layer("classifier").activation.__name__ == "sigmoid"
    assert model.output.shape == (None, 1)
    assert not any(layer.name.startswith("depth_8") for layer in model.layers)
    encoder = sum(int(np.prod(w.shape)) for layer in model.layers if layer.name.startswith("depth_")
                  for w in layer.weights)
    assert model.count_params() == encoder + (64 * 1024 + 1024) + (1024 + 1)


def test_segmentation_head_sits_on_the_decoder_and_softmax_spans_channels(rng):
    model = segmentation_model((16, 16, 8, 1), n_classes=3, n_base_filters=4)
    assert _source(model.get_layer("segmentation_conv")) == "depth_13_relu"
    out = model.predict(rng.random((2, 16, 16, 8, 1), dtype=np.float32), verbose=0)
    assert out.shape == (2, 16, 16, 8, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


def test_channels_first_segmentation_matches_channels_last(rng):
    last = segmentation_model((16, 16, 8, 1), n_classes=2, n_base_filters=8)
    first = segmentation_model((1, 16, 16, 8), n_classes=2, n_base_filters=8,
                               data_format="channels_first")
    for var in last.weights:
        var.assign(rng.uniform(0.5, 1.0, tuple(var.shape)).astype("float32") * 0.2)
    first.set_weights(last.get_weights())
    x = rng.random((1, 16, 16, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(first.predict(to_channels_first(x), verbose=0),
                               to_channels_first(last.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)


def test_genesis_weights_fill_the_body_and_leave_the_head(tmp_path, rng):
    weighted = dict(release_weights(rng, n_base_filters=4))
    path = write_keras2_file(str(tmp_path / "g.h5"), list(weighted.items()))
    keras.utils.set_random_seed(0)
    model = segmentation_model((16, 16, 8, 1), n_classes=2, n_base_filters=4, weights=path)
    for i in range(14):
        kernel = keras.ops.convert_to_numpy(model.get_layer(f"depth_{i}_conv").weights[0])
        np.testing.assert_array_equal(kernel, weighted[f"depth_{i}_conv"][0][1])
    head = keras.ops.convert_to_numpy(model.get_layer("segmentation_conv").weights[0])
    assert head.shape == (1, 1, 1, 8, 2)  # new, not the release's single-channel conv3d_1


def test_a_file_from_another_size_is_refused(tmp_path, rng):
    path = write_keras2_file(str(tmp_path / "g8.h5"), release_weights(rng, n_base_filters=8))
    with pytest.raises(ValueError, match="depth_0_conv"):
        classification_model((16, 16, 8, 1), n_base_filters=4, weights=path)


def test_bad_head_arguments():
    with pytest.raises(ValueError, match="kind"):
        target_model("detection", (16, 16, 8, 1))
    with pytest.raises(ValueError, match="activation"):
        segmentation_model((16, 16, 8, 1), activation="relu", n_base_filters=2)
    with pytest.raises(ValueError, match="divisible"):
        classification_model((20, 16, 8, 1), n_base_filters=2)


def test_release_head_recipe_matches_builder():
    """The README recipe (take depth_7_relu from unet_model_3d) builds the same layers."""
    base = unet_model_3d((16, 16, 8, 1), n_base_filters=4)
    x = keras.layers.GlobalAveragePooling3D()(base.get_layer("depth_7_relu").output)
    x = keras.layers.Dense(1024, activation="relu")(x)
    recipe = keras.Model(base.input, keras.layers.Dense(1, activation="sigmoid")(x))
    assert recipe.count_params() == classification_model((16, 16, 8, 1), n_base_filters=4).count_params()


def test_linear_head_is_a_linear_classifier_on_the_pooled_encoder():
    model = target_model("classification", (16, 16, 8, 1), n_base_filters=4, head="linear")
    assert _source(model.get_layer("classifier")) == "gap"
    assert _source(model.get_layer("gap")) == "depth_7_relu"
    assert not any(layer.name == "fc1" for layer in model.layers)
    assert model.get_layer("classifier").activation.__name__ == "sigmoid"
    encoder = sum(int(np.prod(w.shape)) for layer in model.layers if layer.name.startswith("depth_")
                  for w in layer.weights)
    assert model.count_params() == encoder + 64 + 1
    # Before the sigmoid the output is affine in the pooled features.
    features = keras.Model(model.input, model.get_layer("gap").output)
    x = np.random.default_rng(0).random((3, 16, 16, 8, 1), dtype=np.float32)
    f = features.predict(x, verbose=0)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.get_layer("classifier").weights)
    p = model.predict(x, verbose=0)
    np.testing.assert_allclose(np.log(p / (1 - p)), f @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_freeze_blocks_fixes_weights_and_batchnorm_statistics(rng):
    from models_genesis.models.heads import encoder_blocks, freeze_blocks

    keras.utils.set_random_seed(0)
    model = target_model("classification", (16, 16, 8, 1), n_base_filters=2, head="linear")
    frozen = freeze_blocks(model, encoder_blocks(4))
    assert frozen == [f"depth_{i}_{k}" for i in range(8) for k in ("conv", "bn")]
    assert [w.name for w in model.trainable_weights] == ["kernel", "bias"]  # the classifier
    before = {layer.name: [keras.ops.convert_to_numpy(w) for w in layer.weights]
              for layer in model.layers if layer.name.startswith("depth_")}
    head_before = keras.ops.convert_to_numpy(model.get_layer("classifier").kernel)
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="binary_crossentropy")
    x = (rng.random((4, 16, 16, 8, 1)) * 3).astype(np.float32)  # far from the BN's init stats
    model.fit(x, np.array([0, 1, 0, 1], np.float32), epochs=2, batch_size=4, verbose=0)
    for name, values in before.items():
        for old, new in zip(values, model.get_layer(name).weights):
            np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new), err_msg=name)
    assert not np.allclose(head_before, keras.ops.convert_to_numpy(model.get_layer("classifier").kernel))
    # A trainable BatchNorm does update its moving statistics on the same data.
    keras.utils.set_random_seed(0)
    free = target_model("classification", (16, 16, 8, 1), n_base_filters=2, head="linear")
    mean = keras.ops.convert_to_numpy(free.get_layer("depth_0_bn").moving_mean)
    free.compile(optimizer="adam", loss="binary_crossentropy")
    free.fit(x, np.array([0, 1, 0, 1], np.float32), epochs=1, batch_size=4, verbose=0)
    assert not np.allclose(mean, keras.ops.convert_to_numpy(free.get_layer("depth_0_bn").moving_mean))


@pytest.mark.parametrize("kwargs, message", [
    (dict(head="mlp"), "head"),
    (dict(kind="classification", frozen_blocks=(9,)), "no block depth_9"),
    (dict(frozen_blocks=(-1,)), "ints >= 0"),
])
def test_bad_head_or_blocks_are_refused(kwargs, message):
    args = dict(kind="segmentation", input_shape=(16, 16, 8, 1), n_base_filters=2)
    with pytest.raises(ValueError, match=message):
        target_model(**{**args, **kwargs})
