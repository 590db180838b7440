"""`models-genesis pretrain` reports what the library decided about a finished run: an
undertrained run is a note with exit 0 (an error with `--strict`), a diverged one an error."""

import pytest

from models_genesis.cli import main
from models_genesis.training import pretrain as pretrain_module
from models_genesis.training.divergence import check_restoration_run

WORSE = {"model_mse": 0.06, "identity_mse": 0.02, "constant_mse": 0.05}


@pytest.fixture
def finished_run(monkeypatch, tmp_path):
    """`pretrain` replaced by its last step: the check of a run with `losses` per epoch."""
    def run(losses):
        def fake(config, *, resume=False, overwrite=False, strict=False, **kwargs):
            status, note = check_restoration_run(WORSE, losses, out_dir=config.out_dir,
                                                 strict=strict)
            paths = {"out_dir": config.out_dir, "best_weights": "b.weights.h5",
                     "keras2_weights": "b.h5", "metrics": "metrics.json"}
            return {"paths": paths, "metrics": WORSE, "status": status, "status_message": note}
        monkeypatch.setattr(pretrain_module, "pretrain", fake)
        (tmp_path / "cubes").mkdir(exist_ok=True)
        return ["pretrain", "--data", str(tmp_path / "cubes")]
    return run


def test_undertrained_is_a_note_and_exit_0_unless_strict(finished_run, capsys, tmp_path):
    argv = finished_run([0.5, 0.4, 0.35])
    assert main(argv + ["--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert "note: pre-training is undertrained" in captured.out and "--strict" in captured.out
    assert "diverged" not in captured.out + captured.err and "Warning" not in captured.err
    assert main(argv + ["--out", str(tmp_path / "strict"), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("models-genesis pretrain: error: pre-training is undertrained")
    assert len(err.splitlines()) == 1 and "run" in err


def test_rising_loss_is_diverged_and_exit_2(finished_run, capsys, tmp_path):
    assert main(finished_run([0.5, 0.7]) + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pre-training diverged: the training loss rose" in err and len(err.splitlines()) == 1
