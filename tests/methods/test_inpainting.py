"""In-painting (App. A.2, C.2): cutouts, their mask, and the loss on the cutouts only."""

import keras
import numpy as np
import pytest

from models_genesis.methods import inpainting, make_options


def test_cutouts_change_only_masked_voxels_and_every_cube_has_one(rng):
    cubes = rng.random((16, 16, 16, 16), dtype=np.float32)
    x, y = inpainting.make_pairs(cubes, rng, make_options("inpainting"))
    assert y.shape == (16, 16, 16, 16, 2)
    original, mask = y[..., 0], y[..., 1]
    np.testing.assert_array_equal(original, cubes)
    assert set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(x[mask == 0], cubes[mask == 0])
    assert np.all(mask.sum(axis=(1, 2, 3)) > 0)
    # Boxes keep the 3-voxel margin and are at most dim // 3 per side (5 boxes of 5^3 at most).
    assert not mask[:, :3].any() and not mask[:, -3:].any()
    assert mask.sum(axis=(1, 2, 3)).max() <= 5 * 5 ** 3


def test_masked_mse_is_zero_outside_the_cutout_and_matches_a_hand_computation(rng):
    cubes = rng.random((3, 16, 16, 16), dtype=np.float32)
    _, y = inpainting.make_pairs(cubes, rng, make_options("inpainting"))
    original, mask = y[..., :1], y[..., 1:]
    outside = original + (1 - mask) * rng.random(original.shape, dtype=np.float32)
    loss = keras.ops.convert_to_numpy(inpainting.masked_mse(y, outside))
    np.testing.assert_allclose(loss, 0.0, atol=1e-7)
    pred = rng.random(original.shape, dtype=np.float32)
    loss = keras.ops.convert_to_numpy(inpainting.masked_mse(y, pred))
    hand = [((pred[k] - original[k]) ** 2)[mask[k] == 1].mean() for k in range(3)]
    np.testing.assert_allclose(loss, hand, rtol=1e-5)
    # As Keras reduces it in training: the mean over the batch.
    identity = keras.Sequential([keras.Input(pred.shape[1:]), keras.layers.Identity()])
    identity.compile(loss=inpainting.loss(make_options("inpainting")))
    total = identity.evaluate(pred, y, batch_size=3, verbose=0)
    np.testing.assert_allclose(total, np.mean(hand), rtol=1e-5)


def test_whole_cube_loss_is_app_c2s_inner_cutout(rng):
    cubes = rng.random((2, 16, 16, 16), dtype=np.float32)
    options = make_options("inpainting", {"loss_region": "whole"})
    x, y = inpainting.make_pairs(cubes, rng, options)
    assert y.shape == cubes.shape and inpainting.loss(options) == "mse"
    with pytest.raises(ValueError, match="loss_region"):
        make_options("inpainting", {"loss_region": "edges"})
    with pytest.raises(ValueError, match="do not fit"):
        inpainting.check(make_options("inpainting"), (16, 16, 6), 4)
