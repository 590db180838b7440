"""Every command fails safe on bad input: a table of mistakes a new user makes.

Each case runs `models_genesis.cli.main` in this process and asserts exit status 2, one line
`models-genesis CMD: error: ...` naming the file or option and what was expected, no traceback,
and that no file that existed before the command changed (bytes and mtime), and, unless the case
says otherwise, that no file was created. Every case is refused before any training.
"""

import pandas as pd
import pytest

from models_genesis.cli import main
from models_genesis.config import PretrainConfig
from tests.cli.refusals import (TINY_FINETUNE, TINY_PRETRAIN, T, W, _files,
                                assert_refused_in_one_line)


def _started_run(t, w):
    """An unfinished pre-training run in t/run: the config.json a run on the world's cubes
    writes (with the options `pretrain` resolves) and nothing else yet."""
    from models_genesis.training import pretrain

    config = PretrainConfig.preset("release", data_dir=str(w / "cubes"), out_dir=str(t / "run"),
                                   cube_shape=(16, 16, 16), n_base_filters=2, batch_size=2,
                                   epochs=1, steps_per_epoch=1, validation_steps=1,
                                   tensorboard=False, figures=False, workers=0)
    if hasattr(pretrain, "resolve_method"):
        config = pretrain.resolve_method(config, pretrain.find_pretraining_cubes(config))
    config.to_json(t / "run" / "config.json")


def _predict(*extra, model=W + "/fake.keras", scan=W + "/scan.nii.gz", output=T + "/m.nii.gz"):
    """A `predict-volume` command line on the shared files, then `extra` arguments."""
    return ["predict-volume", "--model", model, "--input", scan, "--output", output, *extra]


# (id, argv, message parts, setup(t, w) or None, files may be created)
CASES = [
    # make-phantoms
    ("phantoms-n-zero", ["make-phantoms", "--out", T + "/p", "--n", "0"], ["--n", "[1, 100000]", "0"],
     None, False),
    ("phantoms-n-negative", ["make-phantoms", "--out", T + "/p", "--n", "-3"], ["--n", "-3"],
     None, False),
    ("phantoms-out-is-file", ["make-phantoms", "--out", W + "/a_file", "--n", "1"],
     ["a_file", "is a file"], None, False),
    ("phantoms-out-under-file", ["make-phantoms", "--out", W + "/a_file/p", "--n", "1"],
     ["a_file", "lies under the file"], None, False),
    ("phantoms-tiny-shape", ["make-phantoms", "--out", T + "/p", "--n", "1", "--shape", "10",
                             "10", "10"], ["`shape`", "(64, 64, 32)"], None, False),
    ("phantoms-more-subsets-than-scans", ["make-phantoms", "--out", T + "/p", "--n", "3",
                                          "--subsets", "5"], ["n_subsets", "n=3"], None, False),
    ("phantoms-keep-user-csv", ["make-phantoms", "--out", T + "/p", "--n", "1", "--shape", "64",
                                "64", "32"], ["annotations.csv", "--overwrite"],
     _files(T, ["p/annotations.csv", "p/candidates.csv"]), False),
    ("phantoms-subsets-not-chest", ["make-phantoms", "--kind", "abdomen", "--out", T + "/p",
                                    "--subsets", "3"], ["--subsets", "chest"], None, False),
    ("phantoms-keep-user-volume", ["make-phantoms", "--kind", "abdomen", "--out", T + "/p",
                                   "--n", "1"], ["volume-0.nii", "--overwrite"],
     _files(T, ["p/volume-0.nii"]), False),
    # extract-cubes
    ("cubes-missing-data", ["extract-cubes", "--data", T + "/nothing", "--subsets", "0", "--out",
                            T + "/c"], ["nothing", "Subset folder not found"], None, False),
    ("cubes-missing-subset", ["extract-cubes", "--data", W + "/phantom", "--subsets", "5",
                              "--out", T + "/c"], ["subset5", "not found"], None, False),
    ("cubes-empty-subset", ["extract-cubes", "--data", W + "/empty", "--subsets", "0", "--out",
                            T + "/c"], ["empty", "*.mhd"], None, False),
    ("cubes-out-is-file", ["extract-cubes", "--data", W + "/phantom", "--subsets", "0", "--out",
                           W + "/a_file"], ["a_file", "is a file"], None, False),
    ("cubes-out-under-file", ["extract-cubes", "--data", W + "/phantom", "--subsets", "0",
                              "--out", W + "/a_file/c"], ["lies under the file"], None, False),
    ("cubes-scale-zero", ["extract-cubes", "--data", W + "/phantom", "--subsets", "0", "--out",
                          T + "/c", "--scale", "0"], ["--scale", "[1, 100000]"], None, False),
    ("cubes-shape-zero", ["extract-cubes", "--data", W + "/phantom", "--subsets", "0", "--out",
                          T + "/c", "--cube-shape", "0", "16", "8"], ["--cube-shape", "0"],
     None, False),
    ("cubes-all-air", ["extract-cubes", "--data", W + "/air", "--subsets", "0", "--out", T + "/c",
                       "--preset", "demo", "--cube-shape", "16", "16", "8", "--scale", "2",
                       "--workers", "0"], ["['0']", "gave no cube"], None, True),
    ("cubes-absurd-spacing", ["extract-cubes", "--data", W + "/absurd", "--subsets", "0", "--out",
                              T + "/c", "--preset", "demo", "--cube-shape", "16", "16", "8",
                              "--scale", "2", "--workers", "0"], ["gave no cube"], None, True),
    ("cubes-keep-existing", ["extract-cubes", "--data", W + "/phantom", "--subsets", "0", "--out",
                             T + "/c", "--preset", "demo", "--cube-shape", "16", "16", "8",
                             "--scale", "2"], ["bat_2_s_16x16x8_0.npy", "--overwrite"],
     _files(T, ["c/bat_2_s_16x16x8_0.npy"]), False),
    # pretrain
    ("pretrain-negative-epochs", ["pretrain", "--data", W + "/cubes", "--out", T + "/run",
                                  *TINY_PRETRAIN, "--epochs", "-1"], ["--epochs", "-1"], None,
     False),
    ("pretrain-zero-lr", ["pretrain", "--data", W + "/cubes", "--out", T + "/run",
                          *TINY_PRETRAIN, "--learning-rate", "0"], ["--learning-rate", "(0, 100]"],
     None, False),
    ("pretrain-zero-batch", ["pretrain", "--data", W + "/cubes", "--out", T + "/run",
                             *TINY_PRETRAIN, "--batch-size", "0"], ["--batch-size", "[1, 4096]"],
     None, False),
    ("pretrain-train-is-val", ["pretrain", "--data", W + "/cubes", "--out", T + "/run",
                               *TINY_PRETRAIN, "--train-subsets", "0", "1", "--val-subsets",
                               "1"], ["val_subsets", "['1']"], None, False),
    ("pretrain-missing-data", ["pretrain", "--data", T + "/nothing", "--out", T + "/run",
                               *TINY_PRETRAIN], ["nothing", "not found"], None, False),
    ("pretrain-out-is-file", ["pretrain", "--data", W + "/cubes", "--out", W + "/a_file",
                              *TINY_PRETRAIN], ["a_file", "is a file"], None, False),
    ("pretrain-keep-foreign-outputs", ["pretrain", "--data", W + "/cubes", "--out", T + "/run",
                                       *TINY_PRETRAIN], ["figures", "metrics.json", "--overwrite"],
     _files(T, ["run/figures/", "run/samples/", "run/metrics.json"]), False),
    ("pretrain-resume-other-data", ["pretrain", "--data", W + "/cubes2", "--out", T + "/run",
                                    *TINY_PRETRAIN], ["data_dir", "cubes2", "--overwrite"],
     _started_run, False),
    ("pretrain-resume-other-scheme", ["pretrain", "--data", W + "/cubes", "--out", T + "/run",
                                      *TINY_PRETRAIN, "--scheme", "nonlinear"],
     ["scheme: 'genesis' -> 'nonlinear'"], _started_run, False),
    ("pretrain-resume-other-lr", ["pretrain", "--data", W + "/cubes", "--out", T + "/run",
                                  *TINY_PRETRAIN, "--learning-rate", "0.01"],
     ["requested) learning_rate: 1.0 -> 0.01. A rerun"], _started_run, False),
    ("pretrain-weights-not-hdf5", ["pretrain", "--data", W + "/cubes", "--out", T + "/run",
                                   *TINY_PRETRAIN, "--weights", W + "/notes.h5"],
     ["notes.h5", "HDF5"], None, False),
    ("pretrain-weights-other-architecture", ["pretrain", "--data", W + "/cubes", "--out",
                                             T + "/run", *TINY_PRETRAIN, "--weights",
                                             W + "/other.weights.h5"],
     ["other.weights.h5", "architecture"], None, False),
    ("pretrain-cube-not-divisible", ["pretrain", "--data", W + "/cubes", "--out", T + "/run",
                                     *TINY_PRETRAIN, "--cube-shape", "15", "16", "16"],
     ["cube_shape", "multiple"], None, False),
    ("pretrain-resume-and-overwrite", ["pretrain", "--data", W + "/cubes", "--out", T + "/run",
                                       *TINY_PRETRAIN, "--resume", "--overwrite"],
     ["resume", "overwrite"], None, False),
    # finetune
    ("finetune-missing-data", ["finetune", "--task", "ncs", "--init", "he_uniform", "--data",
                               T + "/nothing", "--out", T + "/ft", *TINY_FINETUNE],
     ["nothing"], None, False),
    ("finetune-label-fraction-zero", ["finetune", "--task", "ncs", "--init", "he_uniform",
                                      "--data", W + "/ncs", "--out", T + "/ft", *TINY_FINETUNE,
                                      "--label-fraction", "0"], ["--label-fraction", "(0, 1]"],
     None, False),
    ("finetune-label-fraction-above-one", ["finetune", "--task", "ncs", "--init", "he_uniform",
                                           "--data", W + "/ncs", "--out", T + "/ft",
                                           *TINY_FINETUNE, "--label-fraction", "1.5"],
     ["--label-fraction", "1.5"], None, False),
    ("finetune-negative-epochs", ["finetune", "--task", "ncs", "--init", "he_uniform", "--data",
                                  W + "/ncs", "--out", T + "/ft", *TINY_FINETUNE, "--epochs",
                                  "-1"], ["--epochs", "-1"], None, False),
    ("finetune-zero-batch", ["finetune", "--task", "ncs", "--init", "he_uniform", "--data",
                             W + "/ncs", "--out", T + "/ft", *TINY_FINETUNE, "--batch-size",
                             "0"], ["--batch-size", "[1, 4096]"], None, False),
    ("finetune-bn-momentum-one", ["finetune", "--task", "ncs", "--init", "he_uniform", "--data",
                                  W + "/ncs", "--out", T + "/ft", *TINY_FINETUNE,
                                  "--bn-momentum", "1"], ["--bn-momentum", "[0, 1)"], None, False),
    ("finetune-crop-not-multiple-of-8", ["finetune", "--task", "ncs", "--init", "he_uniform",
                                         "--data", W + "/ncs", "--out", T + "/ft",
                                         *TINY_FINETUNE, "--input-shape", "12", "12", "12"],
     ["input_shape", "multiple of 8"], None, False),
    ("finetune-genesis-without-weights", ["finetune", "--task", "ncs", "--init", "genesis",
                                          "--data", W + "/ncs", "--out", T + "/ft",
                                          *TINY_FINETUNE], ["weights", "genesis"], None, False),
    ("finetune-missing-weights", ["finetune", "--task", "ncs", "--init", "genesis", "--weights",
                                  T + "/missing.h5", "--data", W + "/ncs", "--out", T + "/ft",
                                  *TINY_FINETUNE], ["missing.h5", "not found"], None, False),
    ("finetune-weights-not-hdf5", ["finetune", "--task", "ncs", "--init", "genesis",
                                   "--weights", W + "/notes.h5", "--data", W + "/ncs", "--out",
                                   T + "/ft", *TINY_FINETUNE], ["notes.h5", "HDF5"], None, False),
    ("finetune-weights-other-architecture", ["finetune", "--task", "ncs", "--init", "genesis",
                                             "--weights", W + "/other_keras2.h5", "--data",
                                             W + "/ncs", "--out", T + "/ft", *TINY_FINETUNE],
     ["other_keras2.h5"], None, False),
    ("finetune-out-is-file", ["finetune", "--task", "ncs", "--init", "he_uniform", "--data",
                              W + "/ncs", "--out", W + "/a_file", *TINY_FINETUNE],
     ["a_file", "is a file"], None, False),
    ("finetune-finished-run", ["finetune", "--task", "ncs", "--init", "he_uniform", "--data",
                               W + "/ncs", "--out", T + "/ft", *TINY_FINETUNE],
     ["results.json", "--overwrite"],
     _files(T, ["ft/model.keras", "ft/results.json", "ft/finetune_config.json"]), False),
    ("finetune-stale-checkpoint", ["finetune", "--task", "ncs", "--init", "he_uniform", "--data",
                                   W + "/ncs", "--out", T + "/ft", *TINY_FINETUNE],
     ["best.weights.h5", "--overwrite"], _files(T, ["ft/best.weights.h5"]), False),
    ("finetune-csv-missing-column", ["finetune", "--task", "ncc", "--init", "he_uniform",
                                     "--data", W + "/nocls", "--out", T + "/ft", *TINY_FINETUNE],
     ["candidates.csv", "class"], None, False),
    ("finetune-csv-text-coordinates", ["finetune", "--task", "ncc", "--init", "he_uniform",
                                       "--data", W + "/textcoord", "--out", T + "/ft",
                                       *TINY_FINETUNE], ["candidates.csv", "coordX", "left"],
     None, False),
    # experiment
    ("experiment-zero-runs", ["experiment", "--task", "ncs", "--inits", "he_uniform", "--runs",
                              "0", "--data", W + "/ncs", "--out", T + "/e", *TINY_FINETUNE],
     ["--runs", "[1, 1000]"], None, False),
    ("experiment-fraction-zero", ["experiment", "--task", "ncs", "--inits", "he_uniform",
                                  "--label-fractions", "0", "--data", W + "/ncs", "--out",
                                  T + "/e", *TINY_FINETUNE], ["--label-fractions", "(0, 1]"], None,
     False),
    ("experiment-genesis-without-weights", ["experiment", "--task", "ncs", "--inits", "genesis",
                                            "--data", W + "/ncs", "--out", T + "/e",
                                            *TINY_FINETUNE], ["weights", "genesis"], None, False),
    ("experiment-out-is-file", ["experiment", "--task", "ncs", "--inits", "he_uniform", "--data",
                                W + "/ncs", "--out", W + "/a_file", *TINY_FINETUNE],
     ["a_file", "is a file"], None, False),
    # predict-volume
    ("predict-threshold-above-one", _predict("--threshold", "1.5"),
     ["--threshold", "(0, 1)", "1.5"], None, False),
    ("predict-threshold-zero", _predict("--threshold", "0"), ["--threshold", "(0, 1)"], None,
     False),
    ("predict-overlap-one", _predict("--overlap", "1"), ["--overlap", "[0, 1)"], None, False),
    ("predict-overlap-negative", _predict("--overlap", "-0.1"), ["--overlap", "-0.1"], None,
     False),
    ("predict-batch-zero", _predict("--batch-size", "0"), ["--batch-size", "[1, 4096]"], None, False),
    ("predict-crop-scale-zero", _predict("--crop-scale", "0"), ["--crop-scale", "(0, 100]"], None,
     False),
    ("predict-missing-input", _predict(scan=T + "/nothing.nii.gz"),
     ["--input", "nothing.nii.gz"], None, False),
    ("predict-output-exists", _predict(), ["--output", "m.nii.gz", "--overwrite"],
     _files(T, ["m.nii.gz"]), False),
    ("predict-output-is-input", _predict(output=W + "/scan.nii.gz"), ["--output", "--input"],
     None, False),
    ("predict-missing-model", _predict(model=T + "/none.keras"), ["none.keras", "model.keras"],
     None, False),
    ("predict-model-not-keras", _predict(), ["fake.keras", "not a Keras `.keras` file"], None,
     False),
    # summary
    ("summary-weights-not-hdf5", ["summary", "--input-shape", "16", "16", "8", "1",
                                  "--n-base-filters", "2", "--depth", "3", "--weights",
                                  W + "/notes.h5"], ["notes.h5", "HDF5"], None, False),
    ("summary-weights-other-architecture", ["summary", "--input-shape", "16", "16", "8", "1",
                                            "--n-base-filters", "2", "--depth", "3", "--weights",
                                            W + "/other_keras2.h5"], ["other_keras2.h5"], None,
     False),
    ("summary-missing-weights", ["summary", "--input-shape", "16", "16", "8", "1",
                                 "--n-base-filters", "2", "--depth", "3", "--weights",
                                 T + "/missing.h5"], ["missing.h5"], None, False),
    ("summary-depth-zero", ["summary", "--depth", "0"], ["depth"], None, False),
    ("summary-zero-filters", ["summary", "--n-base-filters", "0"], ["--n-base-filters"], None,
     False),
    ("summary-shape-not-divisible", ["summary", "--input-shape", "15", "16", "8", "1", "--depth",
                                     "3"], ["15"], None, False),
    # demo
    ("demo-out-is-file", ["demo", "--out", W + "/a_file"], ["a_file", "is a file"], None, False),
]


def test_the_table_has_at_least_40_cases_over_every_command():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
    commands = {c[1][0] for c in CASES}
    assert commands == {"make-phantoms", "extract-cubes", "pretrain", "finetune", "experiment",
                        "predict-volume", "summary", "demo"}


@pytest.mark.parametrize("case_id, argv, parts, setup, may_create", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line(world, tmp_path, capsys, case_id, argv, parts, setup,
                                          may_create):
    assert_refused_in_one_line(world, tmp_path, capsys, argv, parts, setup, may_create)


def test_absurd_spacing_and_all_air_scans_are_reported(world, tmp_path, capsys):
    common = ["--preset", "demo", "--cube-shape", "16", "16", "8", "--scale", "2", "--workers",
              "0"]
    assert main(["extract-cubes", "--data", str(world / "absurd"), "--subsets", "0", "--out",
                 str(tmp_path / "a"), *common]) == 2
    out = capsys.readouterr().out
    assert "thin.mhd: implausible spacing" in out and "(0.1, 0.1, 12.0)" in out
    assert main(["extract-cubes", "--data", str(world / "air"), "--subsets", "0", "--out",
                 str(tmp_path / "b"), *common]) == 2
    out = capsys.readouterr().out
    assert "air.mhd: no cube passed the tissue filter" in out and "constant value" in out
    assert not list((tmp_path / "b").glob("*.npy"))


def test_pretraining_worse_than_doing_nothing_is_diverged_or_undertrained():
    from models_genesis.training.divergence import (UndertrainedError, UndertrainedWarning,
                                                    check_restoration_run)

    better, worse = (dict(model_mse=m, identity_mse=0.02, constant_mse=0.05) for m in (0.01, 0.06))
    assert check_restoration_run(better, [0.5, 0.4], out_dir="run") == ("trained", None)
    # model between identity and constant: beats a constant image, so it learned something
    assert check_restoration_run({**worse, "model_mse": 0.03}, [0.5, 0.6])[0] == "trained"
    # a finished short run whose loss fell: undertrained, a warning (an error when strict)
    with pytest.warns(UndertrainedWarning, match="undertrained.*0.06.*'run'"):
        status, message = check_restoration_run(worse, [0.5, 0.45], out_dir="run")
    assert status == "undertrained" and "diverged" not in message
    with pytest.raises(UndertrainedError, match="undertrained"):
        check_restoration_run(worse, [0.5, 0.45], strict=True)
    # NaN or a rising loss: diverged, always an error
    for losses, words in (([0.5, 0.9], "rose from 0.5"), ([0.5, float("nan")], "epoch 2")):
        with pytest.raises(FloatingPointError, match=f"diverged.*{words}"):
            check_restoration_run(worse, losses)
    with pytest.raises(FloatingPointError, match="diverged"):
        check_restoration_run({**worse, "model_mse": float("nan")}, [0.5, 0.4])


def test_make_phantoms_with_fewer_scans_than_subsets_then_overwrite_only_its_files(tmp_path,
                                                                                     capsys):
    out = tmp_path / "p"
    argv = ["make-phantoms", "--out", str(out), "--n", "6", "--shape", "64", "64", "32"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.glob("subset*")) == [f"subset{i}" for i in range(6)]
    assert "note: 6 scans in 6 subset folders" in printed
    assert "--train-subsets 0 1 2 --val-subsets 3" in printed
    summary = pd.read_json(out / "phantoms.json", typ="series")
    assert summary["split"] == {"train": ["0", "1", "2"], "val": ["3"], "test": ["4", "5"]}
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    before = (out / "annotations.csv").stat().st_mtime_ns
    assert main(argv) == 2  # the same command again: refused, nothing replaced
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "annotations.csv").stat().st_mtime_ns == before
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (out / "annotations.csv").stat().st_mtime_ns != before


@pytest.mark.large
def test_finetune_refuses_a_finished_run_and_overwrite_replaces_only_its_files(world, tmp_path,
                                                                              capsys):
    out = tmp_path / "ft"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    (out / "best.weights.h5").write_text("a stale checkpoint of another run", encoding="utf-8")
    argv = ["finetune", "--task", "ncs", "--init", "he_uniform", "--data", str(world / "ncs"),
            "--out", str(out), *TINY_FINETUNE]
    assert main(argv) == 2  # the stale checkpoint is refused, never loaded
    assert "best.weights.h5" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    first = (out / "results.json").read_bytes()
    assert main(argv) == 2  # a finished run: refused without --overwrite
    assert (out / "results.json").read_bytes() == first
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
