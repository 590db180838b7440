"""`extract-cubes --data DIR` on a plain folder of MRI NIfTI files, then a tiny `pretrain`."""

import json

import numpy as np
import pytest

from models_genesis.cli import main
from models_genesis.config import PretrainConfig
from models_genesis.data.io.cube_files import find_cube_files, open_cubes
from models_genesis.data.io.volumes import write_volume


def _mri_head(rng, shape=(40, 40, 40)):
    """A bright noisy ellipsoid on a dark background, with one hot outlier voxel (MR units)."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = ((grid / np.array([0.8, 0.7, 0.8])[:, None, None, None]) ** 2).sum(0) <= 1
    image = np.where(inside, 600.0, 5.0) + rng.normal(0, 20, shape)
    image[0, 0, 0] = 1e5  # an outlier: the percentile window ignores it
    return np.clip(image, 0, None).astype(np.float32)


@pytest.mark.large
def test_extract_cubes_from_a_folder_of_mri_then_pretrain(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "my_mri"
    names = ["site_a/sub-01/t1.nii.gz", "site_a/sub-02/t1.nii.gz", "site_b/sub-03.nii",
             "site_b/sub-04.nii.gz", "sub-05.mha"]
    for name in names:
        write_volume(_mri_head(rng), data / name, spacing=(1.0, 1.0, 1.2))
    (data / "site_b" / "notes.txt").write_text("not a scan", encoding="utf-8")
    cubes = tmp_path / "cubes"
    argv = ["extract-cubes", "--data", str(data), "--out", str(cubes), "--modality", "mr",
            "--val-ratio", "0.4", "--cube-shape", "16", "16", "16", "--scale", "4",
            "--border-xy", "2", "--border-z", "2", "--workers", "0", "--seed", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "--train-subsets train --val-subsets val" in printed
    train, val = find_cube_files(cubes, ["train", "val"], cube_shape=(16, 16, 16), scale=4)
    train, val = open_cubes(train), open_cubes(val)
    assert train.shape == (12, 16, 16, 16) and val.shape == (8, 16, 16, 16)
    for x in (train, val):
        # Percentile scaling, not min-max: the 1e5 outlier would squash the head to ~0.006.
        assert 0 <= x.min() and x.max() <= 1
        assert ((x >= 0.1).mean(axis=(1, 2, 3)) >= 0.5).all()  # the MR foreground rule
    manifest = json.loads((cubes / "bat_4_s_16x16x16_val.json").read_text(encoding="utf-8"))
    assert manifest["parameters"]["modality"] == "ct"  # the base config; each scan says its own
    assert {s["modality"] for s in manifest["sources"]} == {"mr"}
    train_names = json.loads((cubes / "bat_4_s_16x16x16_train.json").read_text("utf-8"))["split"]
    assert sorted(train_names + manifest["split"]) == sorted(names)
    assert len(manifest["split"]) == 2

    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(cubes), "--out", str(run), "--train-subsets", "train",
                 "--val-subsets", "val", "--cube-shape", "16", "16", "16", "--scale", "4",
                 "--n-base-filters", "2", "--batch-size", "4", "--epochs", "1",
                 "--steps-per-epoch", "2", "--validation-steps", "1", "--no-tensorboard",
                 "--no-figures", "--workers", "0"]) == 0
    assert (run / "best.weights.h5").is_file()
    assert PretrainConfig.from_json(run / "config.json").train_subsets == ("train",)


def test_extract_cubes_folder_lists_and_bad_input(tmp_path, capsys):
    rng = np.random.default_rng(1)
    data = tmp_path / "scans"
    for name in ("a.nii.gz", "c.nii.gz"):  # CT: lung-like HU, which the release's filter keeps
        write_volume(rng.normal(-850, 40, (24, 24, 24)).astype(np.int16), data / name)
    write_volume(_mri_head(rng, (24, 24, 24)), data / "b.nii.gz")
    (tmp_path / "val.txt").write_text("b.nii.gz\n", encoding="utf-8")
    common = ["--modality", "*b.nii.gz=mr", "*=ct", "--cube-shape", "8", "8", "8", "--scale", "2",
              "--border-xy", "1", "--border-z", "1", "--workers", "0"]
    assert main(["extract-cubes", "--data", str(data), "--out", str(tmp_path / "o"),
                 "--val-list", str(tmp_path / "val.txt"), *common]) == 0
    capsys.readouterr()
    val = json.loads((tmp_path / "o" / "bat_2_s_8x8x8_val.json").read_text(encoding="utf-8"))
    assert val["split"] == ["b.nii.gz"] and val["sources"][0]["modality"] == "mr"
    (tmp_path / "bad.txt").write_text("missing.nii.gz\n", encoding="utf-8")
    for extra, message in [(["--val-list", str(tmp_path / "bad.txt")], "missing.nii.gz"),
                           (["--subsets", "0", "--val-ratio", "0.2"], "--val-ratio"),
                           (["--modality", "pet"], "pet")]:
        assert main(["extract-cubes", "--data", str(data), "--out", str(tmp_path / "o2"),
                     *common, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("models-genesis extract-cubes: error:") and message in err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "o2").exists()
