"""Fail safe on bad files and out-of-bounds numbers: the classes of failure shared by every
command (a user's folder, truncated volumes, bounds before work, data checked at load, ignored
options, errors naming the file), and the inputs of `prepare`, `compare-2d`,
`extract-xray-crops`, `pretrain --method ... --option` and the `task.json` that
`predict-volume` reads back.

The table runs `models_genesis.cli.main` in this process, like `test_bad_inputs.py` (whose
helpers it uses): exit status 2, one line `models-genesis CMD: error: ...` naming the file or
option, no traceback, every pre-existing file byte-identical. The property test feeds every
numeric option of every command 0, a negative, a huge number and NaN, as the parsers declare
them, and asserts a one-line refusal within seconds, before any model is built.
"""

import argparse
import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from models_genesis.cli import build_parser, main
from models_genesis.data.io.cube_files import cube_file_name, save_cubes
from models_genesis.data.phantoms.abdomen import make_abdomen_phantoms
from tests.cli.refusals import (TINY_FINETUNE, TINY_PRETRAIN, T, W, _files,
                                assert_refused_in_one_line)


@pytest.fixture(scope="module")
def inputs(world, tmp_path_factory):  # noqa: F811
    """Inputs of the cases below, beside the shared world: LiTS-like volumes (one truncated),
    a ChestX-ray14 layout (one 3x2-pixel radiograph), cube files of NaN and of zeros, runs with
    bad task.json files."""
    root = world
    make_abdomen_phantoms(root / "lits", n=1, seed=0, shape=(32, 32, 16), spacing=(4.0, 4.0, 6.0))
    make_abdomen_phantoms(root / "lits_cut", n=1, seed=0, shape=(32, 32, 16),
                          spacing=(4.0, 4.0, 6.0))
    volume = next((root / "lits_cut").glob("volume-0.nii*"))
    data = volume.read_bytes()
    volume.write_bytes(data[:len(data) // 2])  # a download cut short
    dup = root / "dup_annotations"
    dup.mkdir()
    for sub in ("subset0", "subset1", "masks"):
        os.symlink(root / "phantom" / sub, dup / sub)
    table = (root / "phantom" / "annotations.csv").read_text(encoding="utf-8").splitlines()
    (dup / "annotations.csv").write_text("\n".join(table + table[1:2]) + "\n", encoding="utf-8")
    xray = root / "xray"
    (xray / "images").mkdir(parents=True)
    Image.fromarray(np.array([[0, 9], [3, 4], [5, 200]], np.uint8)).save(xray / "images" / "a.png")
    (xray / "Data_Entry_2017.csv").write_text("Image Index,Patient ID\na.png,1\n",
                                              encoding="utf-8")
    for name, fill in (("nan_cubes", np.nan), ("zero_cubes", 0.0)):
        for s in range(7):
            cubes = np.full((4, 16, 16, 16), fill, np.float32)
            cubes[1:] = np.random.default_rng(s).random((3, 16, 16, 16), dtype=np.float32)
            if fill == 0.0:
                cubes[:] = 0.0
            save_cubes(root / name / cube_file_name(4, (16, 16, 16), s), cubes)
    good = {"code": "ncs", "description": "d", "kind": "segmentation", "input_shape": [16, 16, 8],
            "batch_size": 4, "learning_rate": 0.001, "patience": 2, "metric": "iou",
            "spacing": [1.0, 1.0, 1.0]}
    tasks = {"task_empty": "", "task_not_json": "{not json", "task_list": "[1, 2]",
             "task_kind": json.dumps({**good, "kind": "detection"}),
             "task_shape_text": json.dumps({**good, "input_shape": "abc"}),
             "task_shape_edited": json.dumps({**good, "input_shape": [60, 60, 30]}),
             "task_spacing": json.dumps({**good, "spacing": [0.01, 0.01, 0.01]}),
             "task_ok": json.dumps(good)}
    for name, text in tasks.items():
        (root / name).mkdir()
        (root / name / "model.keras").write_text("not a model\n", encoding="utf-8")
        (root / name / "task.json").write_text(text, encoding="utf-8")
    return root


def _predict(run, *extra, output=T + "/m.nii.gz"):
    return ["predict-volume", "--model", W + "/" + run, "--input", W + "/scan.nii.gz",
            "--output", output, *extra]


PRETRAIN = ["pretrain", "--data", W + "/cubes", "--out", T + "/run", *TINY_PRETRAIN]
FINETUNE = ["finetune", "--task", "ncs", "--init", "he_uniform", "--data", W + "/ncs",
            "--out", T + "/ft", *TINY_FINETUNE]
XRAY = ["extract-xray-crops", "--data", W + "/xray", "--out", T + "/x"]
COMPARE = ["compare-2d", "--task", "ncs", "--data", W + "/ncs", "--out", T + "/c2", "--epochs",
           "1", "--runs", "1"]

# (id, argv, message parts, setup(t, w) or None, files may be created)
CASES = [
    # a user's folder or another command's run is not written into
    ("prepare-keep-user-annotations", ["prepare", "--task", "ncs", "--data", W + "/phantom",
                                       "--out", T + "/p"],
     ["--out", "/p'", "annotations.csv", "not a `models-genesis prepare` output", "--overwrite"],
     _files(T, ["p/annotations.csv"]), False),
    ("prepare-keep-user-candidates", ["prepare", "--task", "ncc", "--data", W + "/phantom",
                                      "--out", T + "/p"], ["candidates.csv", "--overwrite"],
     _files(T, ["p/candidates.csv"]), False),
    ("compare-2d-into-finetune-run", COMPARE, ["/c2'", "not a `models-genesis compare-2d`",
                                               "results.json", "--overwrite"],
     _files(T, ["c2/results.json", "c2/finetune_config.json", "c2/model.keras"]), False),
    ("xray-into-user-folder", XRAY, ["/x'", "notes.txt", "--overwrite"],
     _files(T, ["x/notes.txt"]), False),
    ("cubes-into-user-folder", ["extract-cubes", "--data", W + "/phantom", "--subsets", "0",
                                "--out", T + "/c", "--preset", "demo", "--cube-shape", "16", "16",
                                "8"], ["/c'", "notes.txt", "--overwrite"],
     _files(T, ["c/notes.txt"]), False),
    ("pretrain-into-finetune-run", PRETRAIN, ["/run'", "not a `models-genesis pretrain`"],
     _files(T, ["run/finetune_config.json", "run/results.json"]), False),
    ("finetune-into-pretrain-run", FINETUNE, ["/ft'", "not a `models-genesis finetune`"],
     _files(T, ["ft/config.json", "ft/Genesis_Chest_CT.h5"]), False),
    ("experiment-into-user-folder", ["experiment", "--task", "ncs", "--inits", "he_uniform",
                                     "--data", W + "/ncs", "--out", T + "/e", *TINY_FINETUNE],
     ["/e'", "notes.txt", "--overwrite"], _files(T, ["e/notes.txt"]), False),
    ("prepare-duplicated-annotation-rows", ["prepare", "--task", "ncs", "--data",
                                            W + "/dup_annotations", "--out", T + "/p"],
     ["annotations.csv", "rows 1 and", "Remove one"], None, False),
    # --out inside --data, refused before any work
    ("prepare-out-inside-data", ["prepare", "--task", "lcs", "--data", W + "/lits", "--out",
                                 W + "/lits/prepared"], ["--out", "lies inside --data"], None,
     False),
    ("prepare-data-inside-out", ["prepare", "--task", "lcs", "--data", W + "/lits", "--out",
                                 W], ["--out", "holds --data"], None, False),
    ("finetune-out-inside-data", ["finetune", "--task", "ncs", "--init", "he_uniform", "--data",
                                  W + "/ncs", "--out", W + "/ncs/run", *TINY_FINETUNE],
     ["lies inside --data"], None, False),
    # incomplete files are refused, naming the file
    ("prepare-truncated-volume", ["prepare", "--task", "lcs", "--data", W + "/lits_cut", "--out",
                                  T + "/p", "--quiet"], ["volume-0.nii", "truncated"], None, True),
    # bounds before work: parse-level and --option
    ("prepare-min-readers-above-four", ["prepare", "--task", "ncs", "--data", W + "/phantom",
                                        "--out", T + "/p", "--min-readers", "9"],
     ["--min-readers", "[1, 4]", "9"], None, False),
    ("prepare-zero-workers", ["prepare", "--task", "lcs", "--data", W + "/lits", "--out",
                              T + "/p", "--workers", "0"], ["--workers"], None, False),
    ("prepare-spacing-zero", ["prepare", "--task", "lcs", "--data", W + "/lits", "--out",
                              T + "/p", "--spacing", "0", "1", "1"], ["--spacing"], None, False),
    ("compare-2d-runs-zero", [*COMPARE[:-2], "--runs", "0"], ["--runs", "[1, 1000]"], None,
     False),
    ("xray-scale-zero", [*XRAY, "--scale", "0"], ["--scale"], None, False),
    ("xray-crop-shape-zero", [*XRAY, "--crop-shape", "0", "0"], ["--crop-shape"], None, False),
    ("xray-image-size-zero", [*XRAY, "--image-size", "0", "0"], ["--image-size"], None, False),
    ("xray-crop-exceeds-image", [*XRAY, "--crop-shape", "128", "128", "--image-size", "64",
                                 "64"], ["crop_shape", "exceeds", "image_size"], None, False),
    ("xray-tiny-radiograph", [*XRAY, "--subsets", "1"], ["a.png", "3x2 pixels"], None, True),
    ("pretrain-rubik-tiny-patches", [*PRETRAIN, "--method", "rubik", "--option",
                                     "n_permutations=2", "--option", "patch_fraction=1e-9"],
     ["rubik", "patch_fraction=1e-09"], None, False),
    ("pretrain-huge-n-swaps", [*PRETRAIN, "--method", "patch_shuffling", "--option",
                               "n_swaps=1000000000000"], ["n_swaps", "1000000000000"], None,
     False),
    ("pretrain-huge-sigma", [*PRETRAIN, "--method", "denoising", "--option", "sigma_max=1e30"],
     ["sigma_max", "1e+30"], None, False),
    ("pretrain-huge-cubes", [*PRETRAIN, "--cube-shape", "4096", "4096", "4096"],
     ["memory", "4096"], None, False),
    ("pretrain-epochs-nan", [*PRETRAIN, "--epochs", "nan"], ["--epochs", "nan"], None, False),
    ("pretrain-lr-nan", [*PRETRAIN, "--learning-rate", "nan"], ["--learning-rate"], None, False),
    # data checked at load, before any training step
    ("pretrain-nan-cubes", ["pretrain", "--data", W + "/nan_cubes", "--out", T + "/run",
                            *TINY_PRETRAIN], ["nan_cubes", "NaN", "cube 0"], None, True),
    ("pretrain-all-zero-cubes", ["pretrain", "--data", W + "/zero_cubes", "--out", T + "/run",
                                 *TINY_PRETRAIN], ["zero_cubes", "one value"], None, True),
    # an option the combination would ignore is refused up front
    ("finetune-weights-with-scratch-init", [*FINETUNE, "--weights", W + "/other_keras2.h5"],
     ["weights", "he_uniform", "other_keras2.h5"], None, False),
    ("predict-candidates-with-segmentation", _predict("task_ok", "--candidates",
                                                      W + "/phantom/candidates.csv"),
     ["--candidates", "segmentation"], None, False),
    # everything checkable before the expensive work is checked before it
    ("predict-output-suffix", _predict("task_ok", output=T + "/x.xyz"), ["--output", "x.xyz"],
     None, False),
    ("cubes-shape-not-multiple-of-8", ["extract-cubes", "--data", W + "/phantom", "--subsets",
                                       "0", "--out", T + "/c", "--cube-shape", "30", "30", "14"],
     ["--cube-shape", "multiples of 8", "30 30 14"], None, False),
    # every task.json problem names the file
    ("task-json-empty", _predict("task_empty"), ["task_empty/task.json", "empty"], None, False),
    ("task-json-not-json", _predict("task_not_json"), ["task_not_json/task.json", "not JSON"],
     None, False),
    ("task-json-a-list", _predict("task_list"), ["task_list/task.json", "list"], None, False),
    ("task-json-wrong-kind", _predict("task_kind"), ["task_kind/task.json", "detection"], None,
     False),
    ("task-json-shape-text", _predict("task_shape_text"), ["task_shape_text/task.json", "abc"],
     None, False),
    ("task-json-shape-edited", _predict("task_shape_edited"),
     ["task_shape_edited/task.json", "multiple of 8"], None, False),
    ("task-json-spacing-tiny", _predict("task_spacing"), ["task_spacing/task.json", "spacing",
                                                          "0.01"], None, False),
]


def test_the_table_covers_every_command_that_reads_files():
    assert len({c[0] for c in CASES}) == len(CASES)
    commands = {c[1][0] for c in CASES}
    assert {"prepare", "compare-2d", "extract-xray-crops", "pretrain", "predict-volume",
            "finetune", "extract-cubes", "experiment"} <= commands


@pytest.mark.parametrize("case_id, argv, parts, setup, may_create", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line(inputs, tmp_path, capsys, case_id, argv, parts,
                                                setup, may_create):
    assert_refused_in_one_line(inputs, tmp_path, capsys, argv, parts, setup, may_create)


# -- every numeric option of every command: 0, negative, huge, NaN --------------------------

def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _numeric_actions(sub):
    return [a for a in sub._actions if a.option_strings and a.type is not None
            and not a.choices and getattr(a.type, "__name__", "") in ("int", "float")]


def _required_argv(sub):
    """Valid-looking values of a command's required options (the bad value is the only error)."""
    argv = []
    for a in sub._actions:
        if a.required and a.option_strings:
            value = str(list(a.choices)[0]) if a.choices else "x"
            argv += [a.option_strings[0], value]
    return argv


def test_every_numeric_option_declares_its_range():
    unbounded = [(name, a.option_strings[0]) for name, sub in _subparsers().items()
                 for a in _numeric_actions(sub) if getattr(a.type, "range", None) is None]
    assert unbounded == []


def test_every_numeric_option_refuses_zero_negative_huge_and_nan_in_one_line(capsys):
    tried = 0
    for name, sub in _subparsers().items():
        for action in _numeric_actions(sub):
            rng = action.type.range
            n = action.nargs if isinstance(action.nargs, int) else 1
            for text in ("0", "-1", "1000000000000", "1e300", "nan"):
                try:
                    value = float(text) if rng.kind is float else int(text)
                except ValueError:
                    value = None  # "1e300" or "nan" for an integer: refused as text
                if value is not None and rng.accepts(value):
                    continue  # e.g. --seed 0: valid
                argv = [name, *_required_argv(sub), action.option_strings[0], *[text] * n]
                start = time.monotonic()
                capsys.readouterr()
                code = main(argv)
                err = capsys.readouterr().err
                assert time.monotonic() - start < 5, argv
                lines = [line for line in err.splitlines() if line.strip()]
                assert code == 2 and len(lines) == 1, (argv, err)
                assert lines[0].startswith(f"models-genesis {name}: error: argument "), err
                assert action.option_strings[0] in lines[0] and "Traceback" not in err
                tried += 1
    assert tried > 100


# -- the classes that need more than one command -----------------------------------------

def test_prepare_rerun_redoes_a_damaged_case_with_a_note(tmp_path, capsys):
    lits = tmp_path / "lits"
    make_abdomen_phantoms(lits, n=2, seed=0, shape=(32, 32, 16), spacing=(4.0, 4.0, 6.0))
    out = tmp_path / "prepared"
    argv = ["prepare", "--task", "lcs", "--data", str(lits), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["written_by"] == "prepare"
    sums = manifest["cases"]["volume-1"]["checksums"]
    image = out / "cases" / "volume-1.nii.gz"
    assert sums["cases/volume-1.nii.gz"]["size"] == image.stat().st_size
    good = image.read_bytes()
    image.write_bytes(good[:-10] + bytes(10))  # damaged after it was finished
    untouched = (out / "cases" / "volume-0.nii.gz").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "case volume-1 was finished but" in printed and "prepared again" in printed
    assert "1 now, 1 already done" in printed
    assert image.read_bytes() == good  # redone: the same bytes as the first time
    assert (out / "cases" / "volume-0.nii.gz").stat().st_mtime_ns == untouched


def test_overwrite_writes_into_a_users_folder_but_keeps_its_other_files(tmp_path, capsys):
    root = tmp_path / "xray"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (64, 80), dtype=np.uint8)).save(root / "images" / name)
    (root / "Data_Entry_2017.csv").write_text("Image Index,Patient ID\na.png,1\nb.png,2\n",
                                              encoding="utf-8")
    out = tmp_path / "x"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    argv = ["extract-xray-crops", "--data", str(root), "--out", str(out), "--subsets", "2",
            "--scale", "2", "--crop-shape", "16", "16", "--image-size", "32", "32"]
    assert main(argv) == 2  # a user's folder
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    manifest = json.loads((out / "bat_2_s_16x16x1_0.json").read_text(encoding="utf-8"))
    assert manifest["written_by"] == "extract-xray-crops"
    first = (out / "bat_2_s_16x16x1_0.npy").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2  # its own folder, but the files exist: only with --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "bat_2_s_16x16x1_0.npy").read_bytes() == first
    # Another command may not write there, even one writing files of the same naming.
    assert main(["extract-cubes", "--data", str(tmp_path / "none"), "--subsets", "0", "--out",
                 str(out)]) == 2
    assert "a `models-genesis extract-xray-crops` output" in capsys.readouterr().err


def test_compare_2d_refuses_an_empty_split_before_training():
    from models_genesis.data.target_tasks.common import TargetData
    from models_genesis.pipeline.compare2d import run_2d_comparison

    x = np.zeros((2, 16, 16, 8, 1), np.float32)
    data = TargetData("ncc", x, np.array([0, 1]), x[:0], np.zeros(0, np.int64), x, np.array([0, 1]),
                      info={})
    with pytest.raises(ValueError, match="valid"):
        run_2d_comparison("ncc", data, "unused", runs=1)
