"""Table 4 / Fig. 7 in one call: 2D, 2.5D and 3D rows on one target task (paper Sec. 4.5)."""

import os

import numpy as np
import pytest

from models_genesis.data.target_tasks.common import TargetData
from models_genesis.models.unet2d import unet_model_2d
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import save_keras2_weights
from models_genesis.pipeline.compare2d import run_2d_comparison, table4


def test_table4_layout():
    results = [{"input": "2d", "init": "random", "score": s} for s in (0.96, 0.98)]
    results += [{"input": "3d", "init": "genesis", "score": 0.9834}]
    table = table4(results, "ncc", "classification").splitlines()
    assert table[0] == "| Task: NCC (AUC, %) | Random | ImageNet | Genesis |"
    assert table[2] == "| 2D slice-based input | 97.00±1.41 | - | - |"
    assert table[3] == "| 3D volume-based input | - | n/a | 98.34±0.00 |"


@pytest.mark.large
def test_run_2d_comparison_on_a_tiny_ncc(tmp_path, rng):
    def split(n):
        x = rng.random((n, 16, 16, 8, 1)).astype(np.float32)
        y = (np.arange(n) % 2).astype(np.int64)
        x[y == 1, 6:10, 6:10, 3:5] = 1.0  # positives: a bright centre
        return x, y

    (xtr, ytr), (xva, yva), (xte, yte) = split(8), split(4), split(6)
    data = TargetData("ncc", xtr, ytr, xva, yva, xte, yte)
    w2 = save_keras2_weights(unet_model_2d((16, 16, 1), depth=3, n_base_filters=2), tmp_path / "g2.h5")
    w3 = save_keras2_weights(unet_model_3d((16, 16, 8, 1), n_base_filters=2), tmp_path / "g3.h5")
    out = run_2d_comparison("ncc", data, tmp_path / "cmp", weights_3d=w3, weights_2d=w2, runs=1,
                            extra_2d={"genesis_xray": w2}, epochs=1, batch_size=4, depth_2d=3,
                            n_base_filters_2d=2, n_base_filters_3d=2, run_eagerly=True)
    cells = {(r["input"], r["init"]) for r in out["results"]}
    assert cells == {("2d", "random"), ("2d", "genesis"), ("2d", "genesis_xray"),
                     ("2.5d", "random"), ("2.5d", "genesis"), ("2.5d", "genesis_xray"),
                     ("3d", "random"), ("3d", "genesis")}
    assert all(0.0 <= r["score"] <= 1.0 for r in out["results"])
    lines = open(out["paths"]["table"], encoding="utf-8").read().splitlines()
    assert len(lines) == 5 and lines[0].endswith("| Genesis | genesis_xray |")  # header, rule, 3 rows
    assert lines[4].startswith("| 3D volume-based input |") and lines[4].endswith("| n/a |")
    assert os.path.getsize(out["paths"]["figure"]) > 0
