"""The 2D commands: `make-phantoms --kind xray`, `extract-xray-crops`, `extract-cubes --slices`,
`pretrain --dims 2` errors, and their one-line errors (exit status 2)."""

import numpy as np
from PIL import Image

from models_genesis.cli import main
from models_genesis.data.pretraining.slices import open_slices


def test_xray_phantoms_then_crops_and_a_colour_image(tmp_path, capsys):
    data, out = tmp_path / "cxr", tmp_path / "crops"
    assert main(["make-phantoms", "--kind", "xray", "--out", str(data), "--n", "2",
                 "--shape", "64", "64", "32"]) == 0
    assert sorted(p.name for p in (data / "images").iterdir()) == ["00000001_000.png",
                                                                   "00000002_000.png"]
    assert np.asarray(Image.open(data / "images" / "00000001_000.png")).dtype == np.uint16
    assert main(["extract-xray-crops", "--data", str(data), "--out", str(out), "--subsets", "2",
                 "--scale", "3", "--crop-shape", "32", "32", "--image-size", "64", "64"]) == 0
    assert open_slices(out / "bat_3_s_32x32x1_0.npy").shape == (3, 32, 32)
    Image.fromarray(np.dstack([np.arange(64, dtype=np.uint8).reshape(8, 8)] * 2
                              + [np.zeros((8, 8), np.uint8)])).save(data / "images" / "00000002_000.png")
    capsys.readouterr()
    assert main(["extract-xray-crops", "--data", str(data), "--out", str(tmp_path / "o2"),
                 "--subsets", "2", "--scale", "3", "--crop-shape", "32", "32",
                 "--image-size", "64", "64"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # the lines above it are progress bars
    assert "Traceback" not in err and last.startswith("models-genesis extract-xray-crops: error:")
    assert "00000002_000.png" in last and "colour image" in last
    assert not list((tmp_path / "o2").glob("*.tmp.npy"))  # no half-written file left


def test_slices_and_pretrain_dims_errors(tmp_path, capsys):
    data = tmp_path / "ph"
    assert main(["make-phantoms", "--out", str(data), "--n", "1", "--subsets", "1",
                 "--shape", "128", "128", "48"]) == 0
    assert main(["extract-cubes", "--data", str(data), "--subsets", "0", "--out",
                 str(tmp_path / "s"), "--preset", "demo", "--slices", "32", "32", "--scale", "4",
                 "--workers", "0"]) == 0
    slices = open_slices(tmp_path / "s" / "bat_4_s_32x32x1_0.npy")
    assert slices.shape[1:] == (32, 32) and len(slices) >= 1
    capsys.readouterr()
    assert main(["pretrain", "--dims", "2", "--data", str(tmp_path / "s"),
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "models-genesis pretrain: error:" in err
    assert "(rows, cols, 1)" in err.strip().splitlines()[-1]
