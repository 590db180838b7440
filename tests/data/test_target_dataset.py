"""`TargetDataset`: batching, per-epoch shuffling, paired augmentation seeded per batch."""

import numpy as np
import pytest

from models_genesis.data.target_tasks.target_dataset import TargetDataset
from models_genesis.transformations.augmentation import AugmentationConfig

SHAPE = (8, 8, 8)


def _masks(rng, n=10):
    m = (rng.random((n,) + SHAPE + (1,)) > 0.7).astype(np.float32)
    return 0.5 * m + 0.1, m  # the image is a function of the mask, so alignment is checkable


def test_batches_cover_every_sample_once_per_epoch(rng):
    x = np.arange(10, dtype=np.float32)[:, None, None, None, None] * np.ones((1,) + SHAPE + (1,))
    y = np.arange(10)
    ds = TargetDataset(x, y, batch_size=4, shuffle=True, seed=3)
    assert len(ds) == 3
    for _ in range(2):
        seen = []
        for i in range(len(ds)):
            xb, yb = ds[i]
            assert xb.dtype == np.float32 and xb.shape[1:] == SHAPE + (1,)
            np.testing.assert_array_equal(xb[:, 0, 0, 0, 0], yb)  # x and y stay paired
            seen += yb.astype(int).tolist()
        assert sorted(seen) == list(range(10))
        ds.on_epoch_end()
    assert not np.array_equal(ds.order(0), ds.order(1))
    np.testing.assert_array_equal(TargetDataset(x, y, batch_size=4).order(), np.arange(10))


def test_augmentation_is_paired_and_seeded_per_batch(rng):
    x, m = _masks(rng)
    config = AugmentationConfig(noise_prob=0.0)
    ds = TargetDataset(x, m, batch_size=5, augment=True, augmentation=config, seed=7)
    xb, mb = ds[1]
    np.testing.assert_allclose(xb, 0.5 * mb + 0.1)  # the same geometry for image and mask
    assert set(np.unique(mb).tolist()) <= {0.0, 1.0}
    assert not np.array_equal(xb, x[5:])  # something changed
    # Same (seed, epoch, index) -> same batch whatever was served before (any worker order).
    other = TargetDataset(x, m, batch_size=5, augment=True, augmentation=config, seed=7)
    other[0]
    np.testing.assert_array_equal(other[1][0], xb)
    ds.on_epoch_end()
    assert not np.array_equal(ds[1][0], xb)


def test_classification_labels_untouched_by_augmentation(rng):
    x, _ = _masks(rng)
    y = np.array([0, 1] * 5)
    xb, yb = TargetDataset(x, y, batch_size=10, augment=True, seed=0)[0]
    np.testing.assert_array_equal(yb, y.astype(np.float32))
    assert xb.shape == x.shape


def test_channels_first_and_no_channel_inputs(rng):
    x, m = _masks(rng, 4)
    cf = TargetDataset(np.moveaxis(x, -1, 1), np.moveaxis(m, -1, 1), batch_size=4,
                       data_format="channels_first")
    np.testing.assert_array_equal(cf[0][0], x)
    np.testing.assert_array_equal(TargetDataset(x[..., 0], m[..., 0], batch_size=4)[0][1], m)


def test_bad_arguments(rng):
    x, m = _masks(rng, 4)
    with pytest.raises(ValueError, match="batch_size"):
        TargetDataset(x, m, batch_size=0)
    with pytest.raises(ValueError, match="`y` must"):
        TargetDataset(x, m[:3], batch_size=2)
    with pytest.raises(ValueError, match="`y` must"):
        TargetDataset(x, m[:, :4], batch_size=2)
    with pytest.raises(ValueError, match="empty"):
        TargetDataset(x[:0], m[:0], batch_size=2)
    with pytest.raises(ValueError, match="data_format"):
        TargetDataset(x, m, batch_size=2, data_format="NCDHW")
    with pytest.raises(IndexError):
        TargetDataset(x, m, batch_size=2)[2]


def test_fits_a_keras_model(rng):
    import keras

    x, m = _masks(rng, 4)
    inputs = keras.Input(SHAPE + (1,))
    model = keras.Model(inputs, keras.layers.Conv3D(1, 1, activation="sigmoid")(inputs))
    model.compile("adam", "binary_crossentropy")
    history = model.fit(TargetDataset(x, m, batch_size=2, shuffle=True, augment=True), epochs=2,
                        verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
