"""`prepare`: per-case files, manifest, resuming after a kill, skipping a corrupt case."""

import json
import os

import numpy as np
import pytest

from models_genesis.data.target_tasks.prepare_case import MANIFEST, read_manifest
from models_genesis.data.io.volumes import read_volume
from models_genesis.pipeline import prepare as prepare_module
from models_genesis.pipeline.prepare import prepare_dataset


@pytest.fixture
def lits(tmp_path):
    from models_genesis.data.phantoms.abdomen import make_abdomen_phantoms

    out = tmp_path / "lits"
    make_abdomen_phantoms(out, n=3, seed=0, shape=(32, 32, 16), spacing=(4.0, 4.0, 6.0))
    return out


def _mtimes(folder):
    return {p: os.stat(os.path.join(folder, p)).st_mtime_ns
            for p in ("cases/volume-0.nii.gz", "cases/segmentation-0.nii.gz")}


def test_prepare_writes_cases_and_manifest(lits, tmp_path):
    out = tmp_path / "prepared"
    manifest = prepare_dataset("lcs", lits, out, progress=False)
    assert manifest["n_done"] == 3 and manifest["skipped"] == []
    saved = read_manifest(out)
    assert saved["task"] == "lcs" and saved["source"] == os.path.abspath(lits)
    assert saved["versions"]["SimpleITK"] and saved["versions"]["numpy"] == np.__version__
    assert sorted(saved["cases"]) == ["volume-0", "volume-1", "volume-2"]
    source, copy = read_volume(lits / "volume-1.nii"), read_volume(out / "cases/volume-1.nii.gz")
    np.testing.assert_array_equal(copy.array, source.array)  # values and geometry kept
    assert copy.spacing == source.spacing and copy.origin == source.origin
    labels = read_volume(out / "cases/segmentation-1.nii.gz").array
    np.testing.assert_array_equal(labels, read_volume(lits / "segmentation-1.nii").array)


def test_killed_run_resumes_without_redoing_finished_cases(lits, tmp_path, monkeypatch):
    out = tmp_path / "prepared"
    real = prepare_module.prepare_case
    calls = []

    def killed_at_second(job):
        calls.append(job["case"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run is killed while preparing the second case
        return real(job)

    monkeypatch.setattr(prepare_module, "prepare_case", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("lcs", lits, out, progress=False)
    assert list(read_manifest(out)["cases"]) == ["volume-0"]
    before = _mtimes(out)
    monkeypatch.setattr(prepare_module, "prepare_case", real)
    manifest = prepare_dataset("lcs", lits, out, progress=False)
    assert (manifest["n_done"], manifest["n_resumed"]) == (2, 1)
    assert _mtimes(out) == before  # the finished case was not written again
    assert sorted(manifest["cases"]) == ["volume-0", "volume-1", "volume-2"]
    again = prepare_dataset("lcs", lits, out, progress=False)
    assert (again["n_done"], again["n_resumed"]) == (0, 3)


def test_a_case_whose_files_are_gone_is_redone(lits, tmp_path):
    out = tmp_path / "prepared"
    prepare_dataset("lcs", lits, out, progress=False)
    os.remove(out / "cases/segmentation-2.nii.gz")
    manifest = prepare_dataset("lcs", lits, out, progress=False)
    assert (manifest["n_done"], manifest["n_resumed"]) == (1, 2)
    assert (out / "cases/segmentation-2.nii.gz").is_file()


def test_corrupt_case_skipped_or_stops(lits, tmp_path):
    with open(lits / "volume-1.nii", "r+b") as f:  # a damaged download: truncated
        f.truncate(200)
    with pytest.raises(ValueError, match="volume-1"):
        prepare_dataset("lcs", lits, tmp_path / "stop", progress=False)
    stopped = read_manifest(tmp_path / "stop")
    assert "volume-1" not in stopped["cases"] and stopped["skipped"] == []
    manifest = prepare_dataset("lcs", lits, tmp_path / "skip", on_error="skip", progress=False)
    assert sorted(manifest["cases"]) == ["volume-0", "volume-2"]
    (entry,) = manifest["skipped"]
    assert entry["case"] == "volume-1" and "volume-1.nii" in entry["item"] and entry["reason"]
    summary = prepare_module.skipped_summary(manifest)
    assert "1 item(s) skipped" in summary and "volume-1" in summary


def test_other_settings_are_refused(lits, tmp_path):
    out = tmp_path / "prepared"
    prepare_dataset("lcs", lits, out, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        prepare_dataset("lcs", lits, out, spacing=(2.0, 2.0, 2.0), progress=False)
    with pytest.raises(ValueError, match="must differ"):
        prepare_dataset("lcs", lits, lits, progress=False)
    with open(out / MANIFEST) as f:
        assert json.load(f)["parameters"]["spacing"] is None


def test_workers_give_the_same_files(lits, tmp_path):
    one = prepare_dataset("lcs", lits, tmp_path / "one", progress=False)
    two = prepare_dataset("lcs", lits, tmp_path / "two", workers=2, progress=False)
    assert one["cases"] == two["cases"]
    for case in ("volume-0", "volume-2"):
        a = read_volume(tmp_path / "one" / f"cases/{case}.nii.gz").array
        b = read_volume(tmp_path / "two" / f"cases/{case}.nii.gz").array
        np.testing.assert_array_equal(a, b)


def test_prepare_command(lits, tmp_path, capsys):
    from models_genesis.cli import main

    with open(lits / "segmentation-2.nii", "r+b") as f:
        f.truncate(300)
    assert main(["prepare", "--task", "lcs", "--data", str(lits), "--out",
                 str(tmp_path / "a"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "volume-2" in err and "--on-error skip" in err
    assert main(["prepare", "--task", "lcs", "--data", str(lits), "--out", str(tmp_path / "b"),
                 "--quiet", "--on-error", "skip", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 case(s) prepared" in out and "1 item(s) skipped" in out and "volume-2" in out
    assert main(["prepare", "--task", "lcs", "--data", str(lits), "--out", str(tmp_path / "c"),
                 "--quiet", "--consensus-level", "0.5"]) == 2
    assert "NCS (LIDC-IDRI) only" in capsys.readouterr().err


def test_resume_removes_a_killed_runs_temporary_files(lits, tmp_path):
    out = tmp_path / "prepared"
    prepare_dataset("lcs", lits, out, progress=False)
    (out / "cases" / ".tmp-write-abc123").mkdir()  # what SIGKILL leaves inside write_volume
    (out / "cases" / ".tmp-write-abc123" / "volume-1.nii.gz").write_bytes(b"half")
    (out / "crops.npy.tmp-4242").write_bytes(b"half")
    (tmp_path / "user.tmp").write_bytes(b"not ours")
    prepare_dataset("lcs", lits, out, progress=False)
    assert sorted(os.listdir(out / "cases")) == sorted(
        f"{k}-{i}.nii.gz" for k in ("volume", "segmentation") for i in range(3))
    assert not (out / "crops.npy.tmp-4242").exists() and (tmp_path / "user.tmp").exists()
