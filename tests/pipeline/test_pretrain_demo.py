"""The demo pre-training reuses a finished run only when its settings are the current ones."""

import pytest

from models_genesis.data.phantoms.chest import make_chest_phantoms
from models_genesis.pipeline.pretrain_demo import run_demo_pretraining

TINY = dict(n_base_filters=2, epochs=1, steps_per_epoch=2, validation_steps=1, batch_size=2,
            figures=False, tensorboard=False)


@pytest.mark.large
def test_demo_reuses_a_finished_run_and_retrains_when_settings_change(tmp_path, capsys):
    phantoms = tmp_path / "phantoms"
    make_chest_phantoms(phantoms, n=7, seed=0, n_subsets=7, shape=(160, 160, 48), progress=False)
    first = run_demo_pretraining(tmp_path / "demo", phantom_dir=phantoms, workers=0, **TINY)
    assert first["identity_mse"] > 0 and first["epochs"] == 1
    capsys.readouterr()
    again = run_demo_pretraining(tmp_path / "demo", phantom_dir=phantoms, workers=0, **TINY)
    assert "reusing the finished run" in capsys.readouterr().out
    assert again["model_mse"] == first["model_mse"]
    changed = run_demo_pretraining(tmp_path / "demo", phantom_dir=phantoms, workers=0,
                                   **{**TINY, "epochs": 2})
    assert "used other settings" in capsys.readouterr().out
    assert changed["epochs"] == 2
    # Another cube shape: its cubes are extracted next to the first ones, which stay.
    before = sorted(p.name for p in (tmp_path / "demo" / "cubes").iterdir())
    other = run_demo_pretraining(tmp_path / "demo", phantom_dir=phantoms, workers=0,
                                 cube_shape=(16, 16, 16), **TINY)
    after = sorted(p.name for p in (tmp_path / "demo" / "cubes").iterdir())
    assert set(before) < set(after) and all("16x16x16" in n for n in set(after) - set(before))
    assert tuple(other["result"]["config"]["cube_shape"]) == (16, 16, 16)
