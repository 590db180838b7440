"""`models-genesis` entry point and the `summary` command."""

import subprocess
import sys

from models_genesis.cli import main
from tests.keras2_files import release_weights, write_keras2_file


def test_console_help_runs_without_heavy_imports():
    out = subprocess.run([sys.executable, "-m", "models_genesis.cli", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "summary" in out.stdout
    probe = "import sys, models_genesis.cli as c; c.build_parser(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_summary_prints_count_and_loads_weights(tmp_path, rng, capsys):
    path = write_keras2_file(str(tmp_path / "w.h5"), release_weights(rng, n_base_filters=4))
    assert main(["summary", "--input-shape", "16", "16", "8", "1", "--n-base-filters", "4",
                 "--weights", path, "--by-name"]) == 0
    out = capsys.readouterr().out
    assert "depth_13_relu" in out and "loaded 29 layers" in out


def test_summary_rejects_unknown_preset(capsys):
    assert main(["summary", "--input-shape", "16", "16", "8", "1", "--n-base-filters", "2",
                 "--weights", "no_such_preset"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("models-genesis summary: error:") and "genesis_chest_ct" in err
