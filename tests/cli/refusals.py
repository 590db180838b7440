"""The shared pieces of the tables of bad inputs (`test_bad_inputs.py`, `test_bad_inputs_files_and_bounds.py`):
the placeholders of a case's arguments, tiny run settings, the inputs every case may use, the
snapshot of a folder, and the one check each case makes."""

import hashlib
import os
import re

import keras
import numpy as np
import pandas as pd

from models_genesis.cli import main
from models_genesis.data.io.volumes import write_volume
from models_genesis.data.phantoms.chest import make_chest_phantoms
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import save_keras2_weights
from tests.helpers import make_data, write_cubes, write_release_arrays

W, T = "{w}", "{t}"



TINY_PRETRAIN = ["--cube-shape", "16", "16", "16", "--n-base-filters", "2", "--batch-size", "2",
                 "--epochs", "1", "--steps-per-epoch", "1", "--validation-steps", "1",
                 "--no-tensorboard", "--no-figures", "--workers", "0"]
TINY_FINETUNE = ["--epochs", "1", "--batch-size", "4", "--n-base-filters", "2",
                 "--input-shape", "16", "16", "8", "--no-augment", "--verbose", "0"]


def build_world(root):
    """Inputs shared by the cases, written under `root`: phantoms, cube files, target arrays,
    weights, a scan."""
    make_chest_phantoms(root / "phantom", n=2, n_subsets=2, shape=(64, 64, 32), progress=False)
    write_volume(np.full((96, 96, 40), -1000, np.int16), root / "air" / "subset0" / "air.mhd")
    lung = np.random.default_rng(0).uniform(-1000, -700, (96, 96, 40)).astype(np.int16)
    write_volume(lung, root / "absurd" / "subset0" / "thin.mhd", spacing=(0.1, 0.1, 12.0))
    (root / "empty" / "subset0").mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_cubes(root / "cubes", rng)
    (root / "cubes2").mkdir()
    for path in (root / "cubes").iterdir():
        os.symlink(path, root / "cubes2" / path.name)
    write_release_arrays(root / "ncs", make_data(rng, n=(8, 4, 4)))
    for name, edit in (("nocls", lambda t: t.drop(columns="class")),
                       ("textcoord", lambda t: t.assign(coordX="left"))):
        folder = root / name
        folder.mkdir()
        for sub in ("subset0", "subset1"):
            os.symlink(root / "phantom" / sub, folder / sub)
        edit(pd.read_csv(root / "phantom" / "candidates.csv")).to_csv(
            folder / "candidates.csv", index=False)
    (root / "notes.h5").write_text("not an HDF5 file\n", encoding="utf-8")
    (root / "a_file").write_text("a file, not a folder\n", encoding="utf-8")
    keras.utils.set_random_seed(0)
    unet_model_3d((16, 16, 8, 1), n_base_filters=4, depth=3).save_weights(
        root / "other.weights.h5")
    save_keras2_weights(unet_model_3d((16, 16, 8, 1), n_base_filters=4, depth=3),
                        root / "other_keras2.h5")
    write_volume(rng.uniform(-1000, 400, (20, 18, 8)).astype(np.int16), root / "scan.nii.gz")
    (root / "fake.keras").write_text("not a model\n", encoding="utf-8")
    return root


def _files(t, names):
    def make(t, w):
        for name in names:
            path = t / name
            if name.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"the user's {name}\n", encoding="utf-8")
    return make


def _without_progress_bars(text):
    """The lines of `text` without tqdm's progress bars (`name:  40%|####  | 2/5 ...`)."""
    parts = re.split(r"[\r\n]", re.sub(r"[^\r\n]*?\d+%\|[^\r\n\]]*\]", "\n", text))
    return [p for p in parts if p.strip()]


def _snapshot(*roots):
    state = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(folder, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                    state[path] = (digest, os.stat(path).st_mtime_ns)
                else:
                    state[path] = ("dir" if os.path.isdir(path) else "link", None)
    return state


def assert_refused_in_one_line(world, tmp_path, capsys, argv, parts, setup, may_create):
    """Run one case of a table of bad inputs: `main(argv)` returns 2 with one line
    `models-genesis CMD: error: ...` holding every string of `parts`, no traceback, every
    file that existed unchanged, and (unless `may_create`) no new file."""
    if setup is not None:
        setup(tmp_path, world)
    argv = [a.replace(W, str(world)).replace(T, str(tmp_path)) for a in argv]
    before = _snapshot(world, tmp_path)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = _without_progress_bars(err)
    assert len(lines) == 1 and lines[0].startswith(f"models-genesis {argv[0]}: error: "), err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    after = _snapshot(world, tmp_path)
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not changed, changed
    if not may_create:
        assert sorted(set(after) - set(before)) == []
