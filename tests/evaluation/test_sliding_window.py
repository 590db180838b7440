"""Tests of whole-volume inference: blending reconstructs known maps, any size, file output."""

import keras
import numpy as np
import pytest

from models_genesis.evaluation.sliding_window import (_window_starts,
                                                      sliding_window_inference)


def _identity(batch):
    return batch


@pytest.mark.parametrize("shape", [(16, 12, 8), (9, 20, 5), (4, 4, 4), (17, 8, 13)])
@pytest.mark.parametrize("overlap", [0.0, 0.5])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_identity_is_reconstructed(rng, shape, overlap, blend):
    volume = rng.random(shape).astype(np.float32)
    out = sliding_window_inference(_identity, volume, window=(8, 8, 4), overlap=overlap,
                                   batch_size=3, blend=blend, progress=False)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, volume, rtol=1e-5, atol=1e-6)


def test_multichannel_and_channels_first(rng):
    volume = rng.random((10, 9, 6, 2)).astype(np.float32)
    calls = []

    def two_maps_cf(batch):  # channels_first in and out: (B, C, x, y, z) -> (B, 3, x, y, z)
        calls.append(batch.shape)
        return np.concatenate([batch, batch[:, :1] ** 2], axis=1)

    out = sliding_window_inference(two_maps_cf, volume, window=(4, 4, 4), overlap=0.5,
                                   data_format="channels_first", progress=False)
    assert calls[0][1:] == (2, 4, 4, 4)
    expected = np.concatenate([volume, volume[..., :1] ** 2], axis=-1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_window_starts_cover_and_overlap():
    np.testing.assert_array_equal(_window_starts(20, 8, 0.5), [0, 4, 8, 12])
    np.testing.assert_array_equal(_window_starts(21, 8, 0.5), [0, 4, 8, 12, 13])
    np.testing.assert_array_equal(_window_starts(16, 8, 0.0), [0, 8])
    np.testing.assert_array_equal(_window_starts(8, 8, 0.5), [0])


def test_position_dependent_model_is_blended():
    # A model whose output depends on the voxel's place in the window: constant blending returns
    # the average, over the windows covering a voxel, of its in-window x index.
    def index_map(batch):
        idx = np.arange(batch.shape[1], dtype=np.float32)[None, :, None, None, None]
        return np.broadcast_to(idx, batch.shape).copy()

    out = sliding_window_inference(index_map, np.zeros((8, 4, 4)), window=(4, 4, 4),
                                   overlap=0.5, blend="constant", progress=False)
    # windows start at x = 0, 2, 4: voxel 2 is index 2 in window 0 and 0 in window 2 -> 1;
    # voxel 3: indices 3 and 1 -> 2; voxel 4: 2 and 0 -> 1; voxel 5: 3 and 1 -> 2.
    np.testing.assert_allclose(out[:, 0, 0], [0, 1, 1, 2, 1, 2, 2, 3])


def test_tiny_keras_model_matches_direct_prediction(rng):
    inputs = keras.Input((8, 8, 4, 1))
    outputs = keras.layers.Conv3D(1, 1, activation="sigmoid")(inputs)  # pointwise: no context
    model = keras.Model(inputs, outputs)
    volume = rng.random((13, 8, 7)).astype(np.float32)
    out = sliding_window_inference(model, volume, window=(8, 8, 4), batch_size=2, progress=False)
    w, b = (np.asarray(v) for v in model.layers[1].get_weights())
    expected = 1 / (1 + np.exp(-(volume * w.ravel()[0] + b[0])))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_inference(_identity, np.zeros((8, 8, 8)), window=(4, 4, 4), overlap=1.0)
    with pytest.raises(ValueError, match="volume"):
        sliding_window_inference(_identity, np.zeros((8, 8)), window=(4, 4, 4))
    with pytest.raises(ValueError, match="per-voxel map"):
        sliding_window_inference(lambda b: b[:, 0, 0, 0], np.zeros((8, 8, 8)), window=(4, 4, 4),
                                 progress=False)
