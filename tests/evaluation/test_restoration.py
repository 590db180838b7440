"""Restoration MSE per transformation combination."""

import keras
import numpy as np
import pytest

from models_genesis.evaluation.restoration import restoration_by_combination
from models_genesis.transformations.unified import COMBINATIONS, TransformConfig


def _identity_model(shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, keras.layers.Identity()(inputs))


def test_identity_model_scores_like_doing_nothing(rng):
    cubes = rng.random((3, 32, 32, 16), dtype=np.float32)
    config = TransformConfig(margin=1)
    table = restoration_by_combination(_identity_model((32, 32, 16, 1)), cubes, config=config)
    assert len(table) == len(COMBINATIONS) == 12
    np.testing.assert_allclose(table["model_mse"], table["identity_mse"], rtol=1e-6)
    assert table.loc["identity", "identity_mse"] == 0.0
    assert (table.drop(index="identity")["identity_mse"] > 0).all()


def test_a_perfect_restorer_has_zero_error(rng):
    cubes = np.full((2, 32, 32, 16), 0.3, np.float32)
    inputs = keras.Input((32, 32, 16, 1))
    constant = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 0 + 0.3)(inputs))
    table = restoration_by_combination(constant, cubes, config=TransformConfig(margin=1))
    assert table["model_mse"].max() < 1e-10
    with pytest.raises(ValueError, match="cubes"):
        restoration_by_combination(constant, cubes[0])
