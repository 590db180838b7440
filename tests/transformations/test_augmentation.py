"""Tests of the fine-tuning 3D augmentation: one draw for image and mask, noise on the image."""

import numpy as np
import pytest

from models_genesis.transformations.augmentation import (AugmentationConfig, AugmentationParams,
                                                  apply_augmentation, augment_pair,
                                                  sample_augmentation_params)

GEOMETRY_ONLY = AugmentationConfig(flip_prob=0.5, transpose_prob=0.5, rotate_prob=0.5,
                                   noise_prob=0.0)
ALWAYS = AugmentationConfig(flip_prob=1.0, transpose_prob=1.0, rotate_prob=1.0, noise_prob=1.0,
                            noise_sd=0.1)


def _pair(rng, shape):
    mask = (rng.random(shape) > 0.5).astype(np.uint8)
    ramp = 0.125 * np.arange(mask.size).reshape(shape) / mask.size
    return (mask * 0.75 + ramp).astype(np.float32), mask


def test_image_and_mask_share_the_geometric_draw(rng):
    # The image encodes both the mask and each voxel's identity: any misalignment shows.
    image, mask = _pair(rng, (6, 6, 4, 1))
    for _ in range(20):
        x, y = augment_pair(image, mask, rng=rng, config=GEOMETRY_ONLY)
        assert x.shape == image.shape and y.shape == mask.shape
        assert x.dtype == image.dtype and y.dtype == mask.dtype
        np.testing.assert_array_equal(x >= 0.75, y.astype(bool))
        np.testing.assert_array_equal(np.sort(x.ravel()), np.sort(image.ravel()))  # a permutation


def test_deterministic_transforms():
    a = np.arange(2 * 2 * 3).reshape(2, 2, 3)
    flip = AugmentationParams(flips=(0,))
    np.testing.assert_array_equal(apply_augmentation(a, a, flip)[1], a[::-1])
    swap = AugmentationParams(permutation=(1, 0, 2))
    np.testing.assert_array_equal(apply_augmentation(a, None, swap)[0], a.transpose(1, 0, 2))
    rot = AugmentationParams(rotations=(((0, 1), 1),))
    np.testing.assert_array_equal(apply_augmentation(a, None, rot)[0], np.rot90(a, 1, (0, 1)))
    with pytest.raises(ValueError, match="change the shape"):
        apply_augmentation(a, None, AugmentationParams(permutation=(2, 1, 0)))


def test_only_equal_axes_are_transposed_or_quarter_turned(rng):
    for _ in range(30):
        p = sample_augmentation_params(rng, (8, 8, 4, 1), ALWAYS)
        assert p.permutation == (1, 0, 2)
        for plane, k in p.rotations:
            assert plane == (0, 1) or k == 2
    perms = {sample_augmentation_params(rng, (4, 4, 4), ALWAYS).permutation for _ in range(60)}
    assert len(perms) == 5 and (0, 1, 2) not in perms


def test_noise_touches_image_only_and_is_replayable(rng):
    image, mask = _pair(rng, (4, 4, 4))
    params = sample_augmentation_params(rng, image.shape, ALWAYS)
    x1, y1 = apply_augmentation(image, mask, params)
    x2, _ = apply_augmentation(image, mask, params)
    geometric = AugmentationParams(flips=params.flips, permutation=params.permutation,
                                   rotations=params.rotations)
    x0, y0 = apply_augmentation(image, mask, geometric)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(x1, x2)
    assert 0.05 < np.std(x1 - x0) < 0.2 and x1.dtype == np.float32
    with pytest.raises(TypeError, match="floating-point"):
        apply_augmentation(mask, None, params)


def test_prob_zero_is_identity_and_seed_reproducible(rng):
    images, masks = _pair(rng, (3, 4, 4, 2, 1))
    none = AugmentationConfig(0.0, 0.0, 0.0, 0.0)
    x, y = augment_pair(images, masks, rng=rng, config=none)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, masks)
    a = augment_pair(images, masks, rng=np.random.default_rng(3), config=ALWAYS)
    b = augment_pair(images, masks, rng=np.random.default_rng(3), config=ALWAYS)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_batch_gets_one_draw_per_sample(rng):
    images, masks = _pair(rng, (16, 4, 4, 2, 1))
    images[:] = images[:1]
    masks[:] = masks[:1]
    x, y = augment_pair(images, masks, rng=rng, config=GEOMETRY_ONLY)
    assert x.shape == images.shape and y.shape == masks.shape
    np.testing.assert_array_equal(x >= 0.75, y.astype(bool))
    assert len({xi.tobytes() for xi in x}) > 1  # samples differ


def test_bad_input():
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentationConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="spatial shape"):
        apply_augmentation(np.zeros((4, 4, 4)), np.zeros((4, 4, 2)), AugmentationParams())
    with pytest.raises(ValueError, match="B params"):
        apply_augmentation(np.zeros((2, 4, 4, 4, 1)), None, [AugmentationParams()])
