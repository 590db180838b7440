"""The notebooks: each one executes afresh, top to bottom, on the phantoms (small-data mode).

Every notebook is rebuilt from its source (`notebooks/src/NN_name.py`) by
`notebooks/build_notebooks.py`, executed with nbclient in a kernel of this interpreter with
`MODELS_GENESIS_NOTEBOOK_SMALL=1`, in a temporary working directory (nothing is written in the
repository), and fails on any cell error. Each test then checks numbers the notebook computed
(written to `WORK/summaries/NN_name.json`) and the figures it saved. The notebooks share one
work folder per session, so the demo pre-training is done once (by the first notebook that needs
it) and reused, as in real use. A last test checks that the committed notebooks are current
(their cells equal the sources) and carry outputs.
"""

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "notebooks" / "build_notebooks.py"


def _load_build():
    spec = importlib.util.spec_from_file_location("build_notebooks", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()
NAMES = build.notebook_names()


@pytest.fixture(scope="session")
def notebook_work(tmp_path_factory):
    """One work folder for all notebooks of the session (the shared, cached pre-training)."""
    return tmp_path_factory.mktemp("notebook_work")


def _summary(work: Path, name: str) -> dict:
    path = work / "summaries" / f"{name}.json"
    assert path.is_file(), f"{name} did not write its summary {path}"
    return json.loads(path.read_text(encoding="utf-8"))


def _in_unit(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0


def _check_00(s, work):
    assert s["weights_source"] in ("released", "demo")
    assert s["scan_shape"] == s["restored_shape"]
    assert _in_unit(s["restoration_mse"]) and _in_unit(s["constant_mse"])
    assert s["encoder_weights_equal"] is True
    assert Path(s["figure"]).is_file()


def _check_01(s, work):
    assert s["n_combinations"] == 12
    assert s["cube_shape"] == [64, 64, 32]
    for key, expected in s["expected"].items():  # Monte-Carlo frequencies of the unified scheme
        assert abs(s["frequencies"][key] - expected) < 4 * math.sqrt(0.25 / s["n_draws"]) + 0.01, key
    assert 0.3 < s["changed_shuffling"] <= 1.0 and s["shuffling_histogram_shift"] < 0.02
    assert 0.0 < s["changed_inner"] < 0.25 < s["changed_outer"] < 1.0
    assert (work / "figures" / "01_combinations.png").is_file()


def _check_02(s, work):
    assert s["cubes_accepted"] >= 6 and s["crops_tried"] >= s["cubes_accepted"]
    assert _in_unit(s["model_mse"]) and _in_unit(s["identity_mse"])
    assert s["model_mse"] < s["identity_mse"]  # restoring beats returning the transformed input
    assert math.isfinite(s["difference_inside"]) and math.isfinite(s["difference_outside"])
    for name in ("02_restorations.png", "02_difference_map.png", "02_training_curve.png"):
        assert name in s["figures"]


def _check_target(s, work, metric, volume_score=False):
    """`volume_score`: the headline score is over whole test volumes (LCS, BMS), not `metric`
    (over the test crops), so it is only checked to be a score."""
    results = s["results"]
    assert set(results) == {"genesis", "he_uniform"}
    for r in results.values():
        assert _in_unit(r[metric]) and _in_unit(r["score"])
        assert volume_score or r["score"] == r[metric]
        assert r["n_train"] > 0 and r["n_test"] > 0 and r["epochs"] >= 1
        if metric == "mean_iou":
            assert _in_unit(r["dice"]) and _in_unit(r["foreground_iou"])
    assert sum(s["counts"].values()) > 0


def _check_08(s, work):
    assert s["n_runs"] == len(s["inits"]) * s["runs"] * len(s["fractions"])
    assert all(_in_unit(v) for v in s["scores"])
    rows = s["summary"]
    assert {r["method"] for r in rows} == set(s["inits"])
    assert all(r["n"] == s["runs"] for r in rows)
    assert sum(bool(r["is_best"]) for r in rows) == len(s["fractions"])
    assert all(Path(p).is_file() for p in s["figures"].values()) and "bars" in s["figures"]


def _check_09(s, work):
    from models_genesis.methods import ENCODER_METHODS, RESTORATION_METHODS, encoder_layer_names
    from models_genesis.models.weights import read_keras2_weights

    assert sorted(s["methods"]) == sorted(RESTORATION_METHODS + ENCODER_METHODS)
    pairs = s["pair_checks"]  # what each maker did to one cube
    assert pairs["jigsaw_label_restores_patches"] and pairs["rubik_label_restores_patches"]
    assert pairs["inpainting_equal_outside_cutouts"] and 0 < pairs["inpainting_cutout_fraction"] < 0.5
    assert pairs["patch_shuffling_keeps_values"] and pairs["patch_shuffling_changed_fraction"] > 0
    assert 0 < pairs["denoising_noise_sd"] <= 0.1 * 1.02  # sigma ~ U[0, 0.1], one per cube
    options = s["options"]
    bernoulli = -(math.log(1 / 3) / 3 + 2 / 3 * math.log(2 / 3))
    rubik = options["rubik"]  # orientation: 16 outputs, summed or averaged, times a weight
    outputs = 16 if rubik.get("orientation_reduction", "sum") == "sum" else 1
    chance = {"jigsaw": math.log(options["jigsaw"]["n_permutations"]),
              "rubik": math.log(rubik["n_permutations"])
              + rubik.get("orientation_weight", 1.0) * outputs * bernoulli,
              "deepcluster": math.log(options["deepcluster"]["n_clusters"])}
    encoder = encoder_layer_names(4)
    for name, r in s["pretraining"].items():
        assert math.isfinite(r["reached"]) and r["reached"] > 0 and r["epochs"] >= 1
        assert r["ratio"] == pytest.approx(r["reached"] / r["level"])
        layers = list(read_keras2_weights(r["weights"]))
        if name in ENCODER_METHODS:
            assert r["writes"] == "encoder" and layers == encoder
            assert r["level"] == pytest.approx(chance[name])
        else:  # the identity's MSE; the whole U-Net is saved
            assert r["writes"] == "unet" and set(encoder) < set(layers)
            assert _in_unit(r["reached"]) and 0 < r["level"] < 1
    assert s["pretraining"]["genesis"]["ratio"] < 1  # restoring beats the transformed input
    assert s["inits"] == s["methods"] + ["he_uniform"]
    assert s["n_runs"] == len(s["inits"]) * s["runs"] and all(_in_unit(v) for v in s["scores"])
    rows = s["summary"]
    # a method whose pre-training did not learn its proxy task is marked " †" in Table 3
    flagged = {r["method"].split(" ")[0] for r in rows if r["method"].endswith(" †")}
    assert sorted(r["method"].split(" ")[0] for r in rows) == sorted(s["inits"])
    assert flagged == {name for name, r in s["pretraining"].items() if not r["proxy_learned"]}
    assert all(r["n"] == s["runs"] for r in rows) and sum(bool(r["is_best"]) for r in rows) == 1
    assert {"09_pairs.png", "09_pretraining_curves.png"} <= set(s["figures"])
    assert "bars" in s["experiment_figures"]
    assert all(Path(p).is_file() for p in s["experiment_figures"].values())


def _check_10(s, work):
    # 2D kernels hold 9 weights against 27 in 3D: about a third of the 3D U-Net's 16,324,929.
    assert 16_324_929 / 4 < s["unet2d_parameters"] < 16_324_929 / 2
    for key in ("pretrain_2d_metrics", "pretrain_xray_metrics"):
        m = s[key]
        assert _in_unit(m["model_mse"]) and _in_unit(m["identity_mse"]), key
        assert m["model_mse"] < m["identity_mse"], key  # restoring beats the transformed input
    results = s["results"]
    assert results and all(_in_unit(r["score"]) for r in results)
    assert {r["input"] for r in results} == {"2d", "2.5d", "3d"}  # NCC is a classification task
    assert {"random", "genesis", "genesis_xray"} <= {r["init"] for r in results}
    assert not any(r["init"] == "genesis_xray" for r in results if r["input"] == "3d")
    assert s["table4"].startswith("| Task: NCC") and "3D volume-based input" in s["table4"]


def _check_11(s, work):
    assert set(s["results"]) == {"genesis", "he_uniform"}
    for r in s["results"].values():
        assert r["metric"] == "volume_mean_dice" and _in_unit(r["score"])
        assert len(r["volume_label_dice"]) == 2 and r["n_test_volumes"] >= 1
    assert {"dataset.json", "splits_final.json", "imagesTr", "labelsTr"} <= set(s["prepared"])
    assert s["prediction_shape"] == s["input_shape"]
    assert set(s["prediction_labels"]) <= {0, 1, 2}
    assert Path(s["figure"]).is_file()


CHECKS = {"00_quick_start": _check_00, "01_transformations": _check_01, "02_pretraining": _check_02,
          "03_ncc": lambda s, w: _check_target(s, w, "auc"),
          "04_ncs": lambda s, w: _check_target(s, w, "mean_iou"),
          "05_ecc": lambda s, w: _check_target(s, w, "auc"),
          "06_lcs": lambda s, w: _check_target(s, w, "mean_iou", volume_score=True),
          "07_bms": lambda s, w: _check_target(s, w, "mean_iou", volume_score=True),
          "08_protocol": _check_08, "09_methods": _check_09, "10_genesis_2d": _check_10, "11_your_own_data": _check_11}


def test_every_notebook_has_a_check():
    assert sorted(CHECKS) == NAMES


@pytest.mark.large
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, notebook_work, tmp_path, monkeypatch):
    nb = build.build_notebook(name)
    build.execute_notebook(nb, cwd=tmp_path, small=True, work_dir=notebook_work, timeout=600,
                           extra_env={"MODELS_GENESIS_WEIGHTS": str(tmp_path / "no_weights")})
    code = [c for c in nb.cells if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "a code cell did not run"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    summary = _summary(notebook_work, name)
    CHECKS[name](summary, notebook_work)
    if name == "00_quick_start":  # the test never sees released weights, so the demo ones
        assert summary["weights_source"] == "demo"
    assert not any(tmp_path.iterdir()), "the notebook wrote outside its work folder"


def test_parse_percent_cells_and_includes():
    cells = build.parse_percent("# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n"
                                "# %% include: _setup.py\n# %%\ny = 2\n")
    assert cells[0] == ("markdown", "# Title\n\ntext")
    assert cells[1] == ("code", "x = 1")
    assert cells[-1] == ("code", "y = 2")
    assert any("MODELS_GENESIS_NOTEBOOK_SMALL" in body for _, body in cells[2:-1])
    with pytest.raises(ValueError, match="unknown cell marker"):
        build.parse_percent("# %% [raw]\nx\n")
    with pytest.raises(FileNotFoundError, match="missing_part.py"):
        build.parse_percent("# %% include: missing_part.py\n")


def test_write_notebook_is_atomic_and_valid(tmp_path):
    nb = build.build_notebook(NAMES[0])
    path = build.write_notebook(nb, tmp_path / "nb.ipynb")
    assert Path(path).is_file() and not list(tmp_path.glob(".*.tmp"))
    assert build.check_notebooks([NAMES[0]], tmp_path.parent / "missing")[0].endswith(
        f"missing; run notebooks/build_notebooks.py {NAMES[0]}")


def test_committed_notebooks_are_current_and_executed():
    """The committed notebooks equal their sources and carry the outputs of a full run."""
    problems = build.check_notebooks(NAMES)
    assert not problems, "\n".join(problems)
    import nbformat

    for name in NAMES:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        images = [o for c in nb.cells if c["cell_type"] == "code" for o in c["outputs"]
                  if "image/png" in o.get("data", {})]
        assert images, f"{name}.ipynb shows no figure"
        assert (ROOT / "notebooks" / f"{name}.ipynb").stat().st_size < 2_000_000
