"""Tests for `models-genesis make-phantoms` and `models-genesis extract-cubes`."""

import json

import numpy as np
import pandas as pd

from models_genesis.cli import main
from models_genesis.data.io.cube_files import find_cube_files, open_cubes


def test_make_phantoms_then_extract_cubes(tmp_path, capsys):
    data, out = tmp_path / "phantom", tmp_path / "cubes"
    assert main(["make-phantoms", "--out", str(data), "--n", "2", "--subsets", "2",
                 "--seed", "3", "--shape", "128", "128", "48"]) == 0
    assert len(list((data / "subset0").glob("*.mhd"))) == 1
    assert len(list((data / "subset1").glob("*.raw"))) == 1
    assert len(pd.read_csv(data / "annotations.csv")) > 0
    assert json.loads((data / "phantoms.json").read_text(encoding="utf-8"))["n_scans"] == 2
    capsys.readouterr()
    assert main(["extract-cubes", "--data", str(data), "--subsets", "0", "1", "--out", str(out),
                 "--preset", "demo", "--cube-shape", "16", "16", "8", "--scale", "4",
                 "--dtype", "float16", "--workers", "0", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    files = find_cube_files(out, [0, 1], cube_shape=(16, 16, 8), scale=4)
    cubes = [open_cubes(f) for f in files]
    assert all(c.dtype == np.float16 and c.shape == (4, 16, 16, 8) for c in cubes)
    assert all(0 <= c.min() and c.max() <= 1 for c in cubes)
    manifest = json.loads((out / "bat_4_s_16x16x8_0.json").read_text(encoding="utf-8"))
    assert manifest["parameters"]["border_xy"] == 24 and manifest["seed"] == 1
    assert '"n_skipped": 0' in printed


def test_make_phantoms_kinds_write_each_real_layout(tmp_path, capsys):
    import pytest

    from models_genesis.data.io.volumes import read_volume

    assert main(["make-phantoms", "--kind", "abdomen", "--out", str(tmp_path / "lits"), "--n", "1",
                 "--shape", "64", "64", "32"]) == 0
    seg = read_volume(tmp_path / "lits" / "segmentation-0.nii")
    assert seg.shape == (64, 64, 32) and set(np.unique(seg.array)) <= {0, 1, 2}
    assert (seg.array == 1).any()
    assert main(["make-phantoms", "--kind", "brain", "--out", str(tmp_path / "brats"), "--n", "1",
                 "--shape", "64", "64", "48"]) == 0
    flair = sorted((tmp_path / "brats").rglob("*_flair.nii.gz"))
    assert len(flair) == 1 and len(list((tmp_path / "brats").rglob("*_seg.nii.gz"))) == 1
    assert main(["make-phantoms", "--kind", "kidney", "--out", str(tmp_path / "x")]) == 2
