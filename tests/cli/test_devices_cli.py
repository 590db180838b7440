"""Bad device options of `pretrain`, `finetune` and `experiment`: one line naming the flag, exit
status 2, before any work (no data read, no file written)."""

import os

import pytest

from models_genesis.cli import main
from models_genesis.training import devices

TWO_GPUS = ["gpu:0", "gpu:1"]


def _pretrain(t, *extra):
    return ["pretrain", "--data", str(t / "no_cubes"), "--out", str(t / "run"),
            "--batch-size", "4", *extra]


def _finetune(t, *extra):
    return ["finetune", "--task", "ncs", "--init", "he_uniform", "--data", str(t / "no_data"),
            "--out", str(t / "run"), "--batch-size", "4", *extra]


def _experiment(t, *extra):
    return ["experiment", "--tasks", "ncs", "--inits", "he_uniform", "--data",
            str(t / "no_data"), "--out", str(t / "run"), "--batch-size", "4", *extra]


# (id, command, extra flags, devices present (None: this machine's), message parts)
CASES = [
    ("pretrain-too-many", _pretrain, ["--devices", "64"], None,
     ["--devices must be at most the", "device(s) present", "Received: --devices 64"]),
    ("finetune-too-many", _finetune, ["--devices", "64"], None,
     ["--devices must be at most", "Received: --devices 64"]),
    ("experiment-too-many", _experiment, ["--devices", "64"], None, ["--devices must be at most"]),
    ("pretrain-batch-not-divisible", _pretrain, ["--devices", "2", "--batch-size", "5"],
     TWO_GPUS, ["--batch-size must be divisible by the 2 devices", "Received: --batch-size 5"]),
    ("finetune-batch-not-divisible", _finetune, ["--devices", "auto", "--batch-size", "3"],
     TWO_GPUS, ["--batch-size must be divisible by the 2 devices of --devices"]),
    ("experiment-task-batch-not-divisible", _experiment, ["--devices", "2", "--batch-size", "3"],
     TWO_GPUS, ["--batch-size must be divisible"]),
    ("pretrain-fp16-on-cpu", _pretrain, ["--mixed-precision", "fp16"], ["cpu:0"],
     ["--mixed-precision fp16 needs a GPU", "CPU", "Received: --mixed-precision fp16"]),
    ("finetune-fp16-on-cpu", _finetune, ["--mixed-precision", "fp16"], ["cpu:0"],
     ["--mixed-precision fp16 needs a GPU"]),
    ("experiment-parallel-runs-over-gpus", _experiment, ["--parallel-runs", "3"], TWO_GPUS,
     ["--parallel-runs 3 runs of 1 device(s) each need more than the 2 device(s) present"]),
]


@pytest.mark.parametrize("command, extra, present, parts", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_device_options_fail_before_any_work(command, extra, present, parts, tmp_path,
                                                 monkeypatch, capsys):
    if present is not None:
        monkeypatch.setattr(devices, "available_devices", lambda: list(present))
        monkeypatch.setattr(devices, "gpu_compute_capabilities", lambda: [(9, 0)] * len(present))
    argv = command(tmp_path, *extra)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"models-genesis {argv[0]}: error: "), err
    for part in parts:
        assert part in err, (part, err)
    assert os.listdir(tmp_path) == []  # nothing read or written: the checks come first
