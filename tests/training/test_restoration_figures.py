"""Restoration figures: the 12 combinations (Fig. D.14) and the difference map (Sec. 5.6)."""

import keras
import numpy as np
import pytest

from models_genesis.training.restoration_figures import (
    difference_map, plot_difference_map, plot_restoration_combinations, restoration_combinations,
)


def _identity_model(shape=(None, None, None, 1)):
    inp = keras.Input(shape)
    return keras.Model(inp, keras.layers.Activation("linear")(inp))


def _inverting_model(shape=(None, None, None, 1)):
    inp = keras.Input(shape)
    return keras.Model(inp, keras.layers.Lambda(lambda t: 1.0 - t)(inp))


def test_combinations_transform_each_way_and_every_model_restores(rng):
    cube = rng.random((32, 32, 32), dtype=np.float32)  # local shuffling needs dim // 10 >= 2
    res = restoration_combinations({"identity": _identity_model(), "invert": _inverting_model()},
                                   cube, seed=3)
    assert len(res["combinations"]) == 12 and res["combinations"][0] == "identity"
    assert res["transformed"].shape == (12, 32, 32, 32)
    np.testing.assert_array_equal(res["transformed"][0], cube)
    assert all(not np.array_equal(t, cube) for t in res["transformed"][1:])
    np.testing.assert_allclose(res["restored"]["identity"], res["transformed"], atol=1e-6)
    np.testing.assert_allclose(res["restored"]["invert"], 1 - res["transformed"], atol=1e-6)
    again = restoration_combinations(_identity_model(), cube, seed=3)
    np.testing.assert_array_equal(again["transformed"], res["transformed"])
    assert list(again["restored"]) == ["restoration"]


def test_difference_map_is_input_minus_restoration(rng):
    cube = rng.random((16, 16, 16, 1), dtype=np.float32)
    assert not np.any(difference_map(_identity_model(), cube)["difference"])
    res = difference_map(_inverting_model(), cube)
    np.testing.assert_allclose(res["difference"], 2 * cube[..., 0] - 1, atol=1e-6)
    with pytest.raises(ValueError, match="rows, cols, deps"):
        difference_map(_identity_model(), np.zeros((16, 16)))


def test_figures_are_written_as_png(rng, tmp_path):
    cube = rng.random((16, 16, 16), dtype=np.float32)
    paths = [plot_restoration_combinations(_identity_model(), cube, tmp_path / "d14.png"),
             plot_difference_map(_identity_model(), cube, tmp_path / "sub" / "diff.png")]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["d14.png", "diff.png"]
