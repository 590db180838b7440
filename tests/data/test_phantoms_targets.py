"""Phantoms of the target tasks: LiTS-like abdomen, BraTS-like brain, CTPA-like PE candidates."""

import os

import numpy as np
import pandas as pd
import pytest

from models_genesis.data.phantoms.abdomen import draw_abdomen, make_abdomen_phantoms
from models_genesis.data.phantoms.brain import BRATS_DIRECTION, draw_brain, make_brain_phantoms
from models_genesis.data.phantoms.pe import draw_ctpa, make_pe_phantoms
from models_genesis.data.phantoms.targets import TARGET_PHANTOMS, get_phantom_maker
from models_genesis.data.io.volumes import read_volume

ABDOMEN = dict(shape=(64, 64, 32), spacing=(4.0, 4.0, 6.0))


def test_abdomen_anatomy_in_hounsfield_units():
    hu, labels = draw_abdomen(**ABDOMEN, rng=np.random.default_rng(1))
    assert hu.dtype == np.int16 and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) <= {0, 1, 2}
    liver = np.median(hu[labels == 1])
    assert 40 < liver < 80
    assert np.median(hu[0, 0, :]) < -900  # air in the corner, outside the body
    if (labels == 2).any():
        assert np.median(hu[labels == 2]) < liver - 10  # hypodense tumour
    # Tumours lie inside the liver: the liver plus tumour is one region, not a separate blob.
    from scipy import ndimage

    _, n = ndimage.label(labels > 0)
    assert n == 1


def test_abdomen_deterministic_per_seed():
    a = draw_abdomen(**ABDOMEN, rng=np.random.default_rng((0, 3)))
    b = draw_abdomen(**ABDOMEN, rng=np.random.default_rng((0, 3)))
    c = draw_abdomen(**ABDOMEN, rng=np.random.default_rng((1, 3)))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_abdomen_files_in_lits_layout(tmp_path):
    summary = make_abdomen_phantoms(tmp_path, n=2, seed=0, start=5, **ABDOMEN)
    assert sorted(os.listdir(tmp_path)) == ["segmentation-5.nii", "segmentation-6.nii",
                                            "volume-5.nii", "volume-6.nii"]
    vol, seg = (read_volume(p) for p in summary["cases"][0])
    assert vol.shape == seg.shape == ABDOMEN["shape"]
    np.testing.assert_allclose(vol.spacing, ABDOMEN["spacing"])
    np.testing.assert_allclose(vol.origin, seg.origin)
    hu, labels = draw_abdomen(**ABDOMEN, rng=np.random.default_rng((0, 5)))
    np.testing.assert_array_equal(vol.array, hu)
    np.testing.assert_array_equal(seg.array, labels)


def test_brain_flair_intensities_and_labels():
    img, labels = draw_brain((64, 64, 48), (1.0, 1.0, 1.0), rng=np.random.default_rng(0))
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 4}
    assert img.min() == 0 and 800 < img.max() < 2000  # skull-stripped, FLAIR-like range
    brain = img > 0
    assert 0.2 < brain.mean() < 0.7
    assert not (labels[~brain] > 0).any()  # tumour inside the brain
    healthy = np.median(img[brain & (labels == 0)])
    assert np.median(img[labels == 2]) > 1.8 * healthy  # hyperintense oedema
    _, lgg = draw_brain((64, 64, 48), (1.0, 1.0, 1.0), rng=np.random.default_rng(0), grade="LGG")
    assert 4 not in np.unique(lgg)


def test_brain_files_in_brats_layout(tmp_path):
    summary = make_brain_phantoms(tmp_path, n=4, seed=0, shape=(48, 48, 32))
    assert [os.path.basename(os.path.dirname(f)) for f in summary["cases"]] == ["HGG"] * 3 + ["LGG"]
    folder = summary["cases"][0]
    pid = os.path.basename(folder)
    assert pid.startswith("Brats18_") and pid.endswith("_1")
    flair = read_volume(os.path.join(folder, f"{pid}_flair.nii.gz"), orientation=None)
    seg = read_volume(os.path.join(folder, f"{pid}_seg.nii.gz"), orientation=None)
    np.testing.assert_allclose(flair.direction, BRATS_DIRECTION)  # as stored: RAS
    # Read as every loader reads it: reoriented to LPS, the x and y axes flipped.
    standard = read_volume(os.path.join(folder, f"{pid}_flair.nii.gz"))
    np.testing.assert_array_equal(standard.array, flair.array[::-1, ::-1])
    assert flair.shape == seg.shape == (48, 48, 32)
    healthy = (seg.array == 0) & (flair.array > 0)
    assert flair.array[seg.array > 0].mean() > flair.array[healthy].mean()


def test_pe_candidates_mark_filling_defects(tmp_path):
    summary = make_pe_phantoms(tmp_path, n=2, seed=0, shape=(64, 64, 48), fp_per_tp=4)
    table = pd.read_csv(summary["candidates"])
    assert list(table.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "class"]
    assert set(table["class"]) == {0, 1}
    assert summary["n_positives"] == int(table["class"].sum())
    for uid, rows in table.groupby("seriesuid"):
        vol = read_volume(tmp_path / f"{uid}.nii.gz")
        ijk = np.rint(vol.world_to_voxel(rows[["coordX", "coordY", "coordZ"]].to_numpy()))
        assert np.all((ijk >= 0) & (ijk < vol.shape))
        values = vol.array[tuple(ijk.astype(int).T)]
        tp = values[rows["class"].to_numpy() == 1]
        fp = values[rows["class"].to_numpy() == 0]
        assert np.all(tp < 200) and np.median(tp) < 120  # dark clot (~50 HU), not contrast (~350)
        assert np.mean(fp > 200) >= 0.3  # half the false positives sit on contrast-filled vessels


def test_pe_deterministic_per_seed():
    a = draw_ctpa((64, 64, 48), (2.0, 2.0, 2.0), rng=np.random.default_rng(0))
    b = draw_ctpa((64, 64, 48), (2.0, 2.0, 2.0), rng=np.random.default_rng(0))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_phantom_registry():
    assert set(TARGET_PHANTOMS) == {"chest", "abdomen", "brain", "pe", "xray"}
    assert get_phantom_maker("brain") is make_brain_phantoms
    with pytest.raises(ValueError, match="Valid kinds"):
        get_phantom_maker("knee")
    with pytest.raises(ValueError, match="`n` must be"):
        make_abdomen_phantoms("unused", n=0)
