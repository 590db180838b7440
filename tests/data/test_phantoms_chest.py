"""Tests for models_genesis.data.phantoms.chest: anatomy in HU, labels, files, the filter."""

import numpy as np
import pandas as pd
import pytest

from models_genesis.data.phantoms.chest import make_chest_phantom, make_chest_phantoms
from models_genesis.data.pretraining.cubes import ExtractionConfig, sample_cube_starts, tissue_fractions
from models_genesis.data.io.volumes import Volume, read_volume

SHAPE = (112, 112, 56)


@pytest.fixture(scope="module")
def phantom():
    return make_chest_phantom(np.random.default_rng(7), shape=SHAPE, spacing=(0.8, 0.8, 2.0))


def test_deterministic_per_seed():
    a = make_chest_phantom(np.random.default_rng(1), shape=(64, 64, 32))
    b = make_chest_phantom(np.random.default_rng(1), shape=(64, 64, 32))
    c = make_chest_phantom(np.random.default_rng(2), shape=(64, 64, 32))
    np.testing.assert_array_equal(a["hu"], b["hu"])
    np.testing.assert_array_equal(a["nodule_mask"], b["nodule_mask"])
    assert a["spacing"] == b["spacing"] and not np.array_equal(a["hu"], c["hu"])


def test_anatomy_in_hounsfield_units(phantom):
    hu, lungs = phantom["hu"], phantom["lung_mask"]
    assert hu.dtype == np.int16 and hu.shape == SHAPE
    assert abs(np.median(hu[:5, :5, :]) + 1000) < 30  # air outside the body
    assert -900 < np.median(hu[lungs]) < -800  # lung parenchyma
    assert 0.01 < np.mean(hu[lungs] >= -150) < 0.15  # vessels and nodules in the lungs
    assert np.mean(hu[~phantom["body_mask"]] < -900) > 0.95  # blurred only at the skin
    bone = hu > 400  # ribs, spine, sternum: outside the lungs, a small part of the body
    assert 0.002 < bone.mean() < 0.05 and not np.any(bone & lungs)
    assert np.any((hu > -150) & (hu < -50))  # fat layer
    body = hu[SHAPE[0] // 2, :, 2]  # a low slice: liver / abdomen, no lung
    assert np.all(body[SHAPE[1] // 2 - 10: SHAPE[1] // 2 + 10] > -200)


def test_nodules_inside_lungs_and_labelled(phantom):
    labels, lungs = phantom["nodule_mask"], phantom["lung_mask"]
    vol = Volume(phantom["hu"], phantom["spacing"], phantom["origin"])
    assert 3 <= len(phantom["nodules"]) <= 6
    assert set(np.unique(labels)) == {0} | {n["label"] for n in phantom["nodules"]}
    assert not np.any(labels & ~lungs)
    for nod in phantom["nodules"]:
        ijk = np.round(vol.world_to_voxel(nod["center"])).astype(int)
        assert labels[tuple(ijk)] == nod["label"]
        assert 3.0 <= nod["diameter_mm"] <= 30.0
        volume_mm3 = (labels == nod["label"]).sum() * np.prod(phantom["spacing"])
        assert volume_mm3 < np.pi / 6 * (1.6 * nod["diameter_mm"]) ** 3
    fps = np.round(vol.world_to_voxel(phantom["false_positives"])).astype(int)
    assert len(fps) >= 3
    assert np.all(labels[tuple(fps.T)] == 0) and np.all(lungs[tuple(fps.T)])
    assert np.median(phantom["hu"][tuple(fps.T)]) > -400  # on vessels


def test_filter_keeps_lung_cubes_and_rejects_tissue(phantom):
    config = ExtractionConfig(cube_shape=(16, 16, 8), border_xy=8, border_z=4)
    hu, lungs = phantom["hu"], phantom["lung_mask"]
    starts = sample_cube_starts(hu.shape, rng=np.random.default_rng(0), config=config, n=2000)
    kept = tissue_fractions(hu, starts, config=config) <= config.tissue_fraction
    crops = [(slice(x, x + 16), slice(y, y + 16), slice(z, z + 8)) for x, y, z in starts]
    in_lung = np.array([lungs[c].mean() for c in crops])
    low = lungs | ~phantom["body_mask"]  # lungs or air outside the body: little tissue
    in_low = np.array([low[c].mean() for c in crops])
    assert (kept & (in_lung > 0.75)).sum() > 50
    assert in_low[kept].min() > 0.7  # every kept cube is mostly lung (or air)
    assert not kept[in_low < 0.6].any()  # tissue-heavy cubes are all rejected
    assert kept[in_lung > 0.97].mean() > 0.5  # cubes well inside the lungs are mostly kept


def test_make_chest_phantoms_writes_luna_layout(tmp_path):
    summary = make_chest_phantoms(tmp_path, n=3, seed=4, n_subsets=3, shape=(64, 64, 32),
                                  progress=False)
    assert summary["scans_per_subset"] == {0: 1, 1: 1, 2: 1}
    ann = pd.read_csv(tmp_path / "annotations.csv", dtype={"seriesuid": str})
    cand = pd.read_csv(tmp_path / "candidates.csv", dtype={"seriesuid": str})
    assert list(ann.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]
    assert (cand["class"] == 1).sum() == len(ann) == summary["n_nodules"] > 0
    assert (cand["class"] == 0).sum() > 0
    for _, row in ann.iterrows():
        paths = list(tmp_path.glob(f"subset*/{row.seriesuid}.mhd"))
        assert len(paths) == 1
        scan, mask = read_volume(paths[0]), read_volume(tmp_path / "masks" / paths[0].name)
        assert scan.array.dtype == np.int16 and mask.array.dtype == np.uint8
        assert mask.shape == scan.shape and mask.origin == scan.origin
        ijk = np.round(scan.world_to_voxel([row.coordX, row.coordY, row.coordZ])).astype(int)
        assert mask.array[tuple(ijk)] > 0
    with pytest.raises(ValueError, match="n_subsets"):
        make_chest_phantoms(tmp_path / "x", n=2, n_subsets=10)
