"""Each target task from a miniature download through `prepare`, `finetune` and
`predict-volume --model RUN`, with no preprocessing flag repeated."""

import glob
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from models_genesis.cli import main
from models_genesis.config import FinetuneConfig, TargetTask
from models_genesis.data.io.volumes import orientation_of, read_volume, write_volume
from models_genesis.pipeline.prepare import prepare_dataset
from models_genesis.training.finetune import finetune

pytestmark = pytest.mark.large

TINY = dict(n_base_filters=2, epochs=1, steps_per_epoch=1, validation_steps=1, batch_size=2,
            augment=False)


def _download(task, raw):
    """The task's data set in its downloaded layout, in miniature; returns (input scan, extra
    predict-volume arguments)."""
    if task in ("ncc",):
        from models_genesis.data.phantoms.chest import make_chest_phantoms

        make_chest_phantoms(raw, n=4, n_subsets=4, seed=0, shape=(64, 64, 32), progress=False)
        os.replace(raw / "candidates.csv", raw / "candidates_V2.csv")  # LUNA16's file name
        scan = sorted(glob.glob(str(raw / "subset2" / "*.mhd")))[0]
        return scan, ["--candidates", str(raw / "candidates_V2.csv")]
    if task == "ecc":
        from models_genesis.data.phantoms.pe import make_pe_phantoms

        make_pe_phantoms(raw, n=5, seed=0, shape=(48, 48, 48), fp_per_tp=3)
        return str(raw / "Patient10000.nii.gz"), ["--candidates", str(raw / "candidates.csv")]
    if task == "ncs":
        from models_genesis.data.phantoms.lidc import make_lidc_phantoms

        cases = make_lidc_phantoms(raw, n=4, seed=0, shape=(64, 64, 32))
        return next(c["folder"] for c in cases.values() if c["nodules"]), []
    if task == "lcs":
        from models_genesis.data.phantoms.abdomen import make_abdomen_phantoms

        make_abdomen_phantoms(raw, n=3, seed=0, shape=(32, 32, 16), spacing=(4.0, 4.0, 6.0))
        return str(raw / "volume-0.nii"), []
    from models_genesis.data.phantoms.brain import make_brain_phantoms

    make_brain_phantoms(raw, n=3, seed=0, shape=(40, 40, 24))
    return sorted(glob.glob(str(raw / "*" / "*" / "*_flair.nii.gz")))[0], []


@pytest.mark.parametrize("task,shape", [("ncc", (16, 16, 8)), ("ecc", (16, 16, 16)),
                                        ("ncs", (16, 16, 8)), ("lcs", (16, 16, 8)),
                                        ("bms", (16, 16, 8))])
def test_download_prepare_finetune_predict(tmp_path, task, shape, capsys):
    raw, prepared, run = tmp_path / "raw", tmp_path / "prepared", tmp_path / "run"
    scan, extra = _download(task, raw)
    crop = {"input_shape": shape} if task in ("ncc", "ecc") else {}
    manifest = prepare_dataset(task, raw, prepared, progress=False, **crop)
    assert manifest["n_done"] >= 3 and manifest["task"] == task
    options = {"ncs": {"split_fractions": (1, 1, 1)},  # few scans: the subsets that hold nodules
               "ncc": {"subsets": {"train": [1], "valid": [0], "test": [2, 3]}}}.get(task)
    result = finetune(FinetuneConfig(task=task, init="he_uniform", data_dir=str(prepared),
                                     out_dir=str(run), input_shape=shape, data_options=options,
                                     **TINY), verbose=0, run_eagerly=True)
    recorded = TargetTask.from_json(run / "task.json")
    assert recorded.input_shape == shape and recorded.code == task
    if task == "ncs":
        assert recorded.spacing == (1.0, 1.0, 1.0)  # resampled once by prepare
    if task == "bms":
        assert (recorded.modality, recorded.crop_scale) == ("mri", 100 / 64)
    if task in ("lcs", "bms"):  # the paper's scores on whole test volumes
        assert result["metric"] == "volume_mean_iou" and result["n_test_volumes"] >= 1
        assert result["score"] == result["volume_mean_iou"]
    if task in ("ncc", "ecc"):  # every test candidate scored, crops read from disk
        table = pd.read_csv(prepared / "candidates.csv", dtype={"seriesuid": str})
        assert result["n_test"] > result["n_train"] / 10 and 0.0 <= result["auc"] <= 1.0
        assert result["n_train"] + result["n_valid"] + result["n_test"] == len(table)
    out = tmp_path / ("scores.csv" if task in ("ncc", "ecc") else "mask.nii.gz")
    capsys.readouterr()
    assert main(["predict-volume", "--model", str(run), "--input", scan, "--output", str(out),
                 *extra]) == 0
    printed = capsys.readouterr().out
    assert "note:" not in printed  # nothing overridden, nothing missing
    if task in ("ncc", "ecc"):
        scores = pd.read_csv(out)
        assert len(scores) and scores["probability"].between(0, 1).all()
    else:
        source, mask = read_volume(scan), read_volume(out)
        assert mask.shape == source.shape and np.allclose(mask.spacing, source.spacing)
        assert set(np.unique(mask.array)) <= {0, 1}
    if task == "lcs":  # the same scan stored as an oblique RAS NIfTI: the same mask, on its grid
        c, s = np.cos(0.35), np.sin(0.35)
        ras = tuple((np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([-1.0, -1.0, 1.0]))
                    .reshape(-1))
        oblique = write_volume(source.array[::-1, ::-1], tmp_path / "ras.nii.gz",
                               spacing=source.spacing, origin=(50.0, 60.0, -7.0), direction=ras)
        assert main(["predict-volume", "--model", str(run), "--input", oblique, "--output",
                     str(tmp_path / "ras_mask.nii.gz")]) == 0
        stored = read_volume(oblique, orientation=None)
        ras_mask = read_volume(tmp_path / "ras_mask.nii.gz", orientation=None)
        assert orientation_of(stored.direction) == "RAS" and ras_mask.shape == stored.shape
        np.testing.assert_allclose(ras_mask.spacing, stored.spacing, rtol=1e-6)
        np.testing.assert_allclose(ras_mask.origin, stored.origin, atol=1e-5)
        np.testing.assert_allclose(ras_mask.direction, stored.direction, atol=1e-6)
        np.testing.assert_array_equal(ras_mask.array, mask.array[::-1, ::-1])


def test_run_without_task_json_keeps_the_old_flags(tmp_path, capsys):
    from models_genesis.data.phantoms.abdomen import make_abdomen_phantoms

    raw, run = tmp_path / "raw", tmp_path / "run"
    make_abdomen_phantoms(raw, n=3, seed=0, shape=(32, 32, 16), spacing=(4.0, 4.0, 6.0))
    finetune(FinetuneConfig(task="lcs", init="he_uniform", data_dir=str(raw), out_dir=str(run),
                            input_shape=(16, 16, 8), **TINY), verbose=0, run_eagerly=True)
    old = tmp_path / "old_run"
    old.mkdir()
    shutil.copy(run / "model.keras", old / "model.keras")  # a run from before task.json
    capsys.readouterr()
    assert main(["predict-volume", "--model", str(old), "--input", str(raw / "volume-1.nii"),
                 "--output", str(tmp_path / "m.nii.gz")]) == 0
    assert "has no task.json" in capsys.readouterr().out
    assert main(["predict-volume", "--model", str(run), "--input", str(raw / "volume-1.nii"),
                 "--output", str(tmp_path / "m2.nii.gz"), "--crop-scale", "2"]) == 0
    assert "crop_scale=2.0 given explicitly" in capsys.readouterr().out
    with open(run / "results.json") as f:
        assert json.load(f)["metric"] == "volume_mean_iou"
