import os

import numpy as np

from models_genesis.transformations.figures import plot_transformations
from models_genesis.transformations.unified import TransformConfig


def test_plot_transformations_writes_a_reproducible_figure(tmp_path, rng):
    cube = rng.random((32, 32, 16), dtype=np.float32)
    cfg = TransformConfig(local_windows=100)
    a = plot_transformations(cube, tmp_path / "a.png", seed=1, config=cfg)
    b = plot_transformations(cube, tmp_path / "b.png", seed=1, config=cfg)
    assert a == os.fspath(tmp_path / "a.png") and os.path.getsize(a) > 10000
    assert open(a, "rb").read() == open(b, "rb").read()
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]
