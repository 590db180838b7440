"""Data-parallel training on several devices (`training.devices`): the checks, and for real on CPU
with two virtual devices, JAX's `keras.distribution.DataParallel` against one device with the same
global batch (pre-training and fine-tuning), and TensorFlow's MirroredStrategy for fine-tuning.
The multi-device runs are subprocesses: the device count is fixed when the backend starts."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from models_genesis.config import FinetuneConfig, PretrainConfig, parse_devices
from models_genesis.training import devices

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Records the loss after each training step and the weights at the end.
_RECORD = textwrap.dedent("""
    import json, sys
    import keras, numpy as np

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.losses = []
        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))
        def on_train_end(self, logs=None):
            self.weights = [keras.ops.convert_to_numpy(w).astype("float64").ravel().tolist()
                            for w in self.model.weights]

    def report(n, record, **extra):
        print("RESULT " + json.dumps({"devices": n, "losses": record.losses,
                                      "weights": record.weights, **extra}))
""")

_PRETRAIN = _RECORD + textwrap.dedent("""
    from models_genesis.config import PretrainConfig
    from models_genesis.training.pretrain import pretrain
    for n in (1, 2):
        record = Record()
        config = PretrainConfig(data_dir=sys.argv[1], out_dir=sys.argv[2] + f"/run{n}",
                                cube_shape=(16, 16, 16), n_base_filters=2, batch_size=4, epochs=1,
                                steps_per_epoch=3, validation_steps=1, tensorboard=False,
                                figures=False, sample_every=0, workers=0, devices=n)
        result = pretrain(config, callbacks=[record], verbose=0)
        report(n, record, replicas=result["replicas"], val_loss=result["best_val_loss"])
""")

# Fine-tuning on random crops (train 8 = 2 batches of 4; valid argv[5]: JAX validates a last batch
# of 1 without the split, TensorFlow's replicas need one they can share; test 4).
_FINETUNE = _RECORD + textwrap.dedent("""
    from models_genesis.config import FinetuneConfig
    from models_genesis.data.target_tasks.common import TargetData
    from models_genesis.training.finetune import finetune
    from models_genesis.training import distribute
    if sys.argv[3] == "split":
        distribute.split_cpu(2)
    rng = np.random.default_rng(0)
    def part(k):
        x = rng.random((k, 16, 16, 8, 1), dtype=np.float32)
        return x, (x > 0.6).astype(np.float32)
    (a, b), (c, d), (e, f) = part(8), part(int(sys.argv[5])), part(4)
    data = TargetData(task="ncs", x_train=a, y_train=b, x_valid=c, y_valid=d, x_test=e, y_test=f)
    for n in [int(v) for v in sys.argv[2].split(",")]:
        record = Record()
        config = FinetuneConfig(task="ncs", init="he_uniform", n_base_filters=2, epochs=1,
                                batch_size=4, input_shape=(16, 16, 8), augment=False, devices=n,
                                out_dir=sys.argv[1] + f"/run{n}", mixed_precision=sys.argv[4]
                                if sys.argv[4] != "none" else None)
        result = finetune(config, data, verbose=0, callbacks=[record])
        report(n, record, score=result["score"],
               val_loss=result["best_val_loss"], replicas=result["devices"])
""")


def _env(backend, **extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=backend,
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join(
                   [os.path.join(ROOT, "keras"), ROOT, os.environ.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def _results(proc) -> list:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines()
            if line.startswith("RESULT ")]


def _assert_same_steps(one, two):
    assert one["devices"] == 1 and two["devices"] == 2 and two["replicas"] == 2
    assert len(one["losses"]) == len(two["losses"]) >= 2
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4)
    assert len(one["weights"]) == len(two["weights"]) > 10
    # atol: Adam's normalised first steps turn rounding noise in the ~0 gradient of the conv
    # biases before BatchNorm into updates of up to ~1e-4 (measured 8.7e-5); kernels agree ~1e-5.
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-4)


@pytest.fixture(scope="module")
def cube_dir(tmp_path_factory):
    from models_genesis.data.io.cube_files import cube_file_name, save_cubes

    folder = tmp_path_factory.mktemp("cubes")
    rng = np.random.default_rng(0)
    for s in range(7):
        save_cubes(os.path.join(folder, cube_file_name(4, (16, 16, 16), s)),
                   rng.random((4, 16, 16, 16), dtype=np.float32))
    return str(folder)


JAX_TWO_DEVICES = dict(XLA_FLAGS="--xla_force_host_platform_device_count=2")


@pytest.mark.large
def test_jax_two_devices_pretrain_like_one_device(cube_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-c", _PRETRAIN, cube_dir, str(tmp_path)],
                          env=_env("jax", **JAX_TWO_DEVICES), capture_output=True, text=True,
                          timeout=300)
    one, two = _results(proc)
    assert one["replicas"] == 1
    _assert_same_steps(one, two)


@pytest.mark.large
def test_jax_two_devices_finetune_like_one_device(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _FINETUNE, str(tmp_path), "1,2",
                           "none", "none", "3"], env=_env("jax", **JAX_TWO_DEVICES),
                          capture_output=True, text=True, timeout=300)
    one, two = _results(proc)
    _assert_same_steps(one, two)
    assert two["score"] == pytest.approx(one["score"], rel=1e-3, abs=1e-4)


@pytest.mark.large
def test_tf_mirrored_strategy_finetunes_over_two_logical_cpus(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _FINETUNE, str(tmp_path), "2",
                           "split", "none", "6"], env=_env("tensorflow"), capture_output=True,
                          text=True, timeout=300)
    (two,) = _results(proc)
    assert two["replicas"] == 2 and len(two["losses"]) == 2
    assert np.isfinite(two["losses"]).all() and np.isfinite(two["score"])
    assert os.path.isfile(tmp_path / "run2" / "model.keras")


@pytest.mark.large
def test_finetune_bf16_keeps_outputs_float32_and_trains(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _FINETUNE, str(tmp_path), "1",
                           "none", "bf16", "3"], env=_env("jax"), capture_output=True, text=True,
                          timeout=300)
    (one,) = _results(proc)
    assert np.isfinite(one["losses"]).all() and np.isfinite(one["score"])
    with open(tmp_path / "run1" / "finetune_config.json") as f:
        assert json.load(f)["mixed_precision"] == "bf16"


def test_parse_devices():
    assert parse_devices(2) == 2 and parse_devices("3") == 3 and parse_devices("AUTO") == "auto"
    for bad in (0, -1, "two", 1.5, True, None):
        with pytest.raises(ValueError, match="devices"):
            parse_devices(bad)
    with pytest.raises(ValueError, match="devices"):
        FinetuneConfig(devices=0)
    with pytest.raises(ValueError, match="strategy"):
        FinetuneConfig(strategy="tpu")
    assert PretrainConfig(devices="auto").devices == "auto"


CLI = {"devices": "--devices", "batch_size": "--batch-size",
       "mixed_precision": "--mixed-precision", "parallel_runs": "--parallel-runs"}


def test_resolve_devices_checks_count_and_batch():
    two = ["gpu:0", "gpu:1"]
    assert devices.resolve_devices(1, 6, present=two) == 1
    assert devices.resolve_devices("auto", 6, present=two) == 2
    with pytest.raises(ValueError, match=r"--devices must be at most the 2 device\(s\) present "
                       r"\(gpu:0, gpu:1.*Received: --devices 3"):
        devices.resolve_devices(3, 6, names=CLI, present=two)
    with pytest.raises(ValueError, match=r"--batch-size must be divisible by the 2 devices.*"
                       r"Received: --batch-size 5"):
        devices.resolve_devices(2, 5, names=CLI, present=two)
    with pytest.raises(ValueError, match=r"batch_size must be divisible.*batch_size=5"):
        devices.resolve_devices("auto", 5, present=two)
    with pytest.raises(ValueError, match="--devices must be a positive integer"):
        devices.resolve_devices("many", 4, names=CLI, present=two)
    # The machine's own devices: one CPU here (no virtual devices in this process).
    present = devices.available_devices()
    assert present and all(":" in d for d in present)
    with pytest.raises(ValueError, match="at most"):
        devices.resolve_devices(len(present) + 1, 64)


def test_mixed_precision_needs_a_device_that_computes_in_it():
    devices.check_mixed_precision(None)
    devices.check_mixed_precision("bf16", present=["cpu:0"])
    devices.check_mixed_precision("fp16", present=["gpu:0"], capabilities=[(7, 0)])
    devices.check_mixed_precision("bf16", present=["gpu:0"], capabilities=[(9, 0)])
    with pytest.raises(ValueError, match=r"--mixed-precision fp16 needs a GPU.*CPU"):
        devices.check_mixed_precision("fp16", names=CLI, present=["cpu:0"])
    with pytest.raises(ValueError, match=r"fp16 needs a GPU.*TPU"):
        devices.check_mixed_precision("fp16", present=["tpu:0"])
    with pytest.raises(ValueError, match=r"bf16 needs GPUs of compute capability 8.0.*7\.5"):
        devices.check_mixed_precision("bf16", present=["gpu:0"], capabilities=[(7, 5), (8, 0)])
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        devices.check_mixed_precision("fp8", present=["gpu:0"])


def test_device_groups_of_parallel_runs():
    four = [f"gpu:{i}" for i in range(4)]
    assert devices.device_groups(2, 2, present=four) == [[0, 1], [2, 3]]
    assert devices.device_groups(4, "auto", present=four) == [[0], [1], [2], [3]]
    assert devices.device_groups(3, 1, present=["cpu:0"]) == [None, None, None]  # processes
    with pytest.raises(ValueError, match=r"--parallel-runs 3 runs of 2 device\(s\) each need "
                       r"more than the 4"):
        devices.device_groups(3, 2, names=CLI, present=four)
    with pytest.raises(ValueError, match="--parallel-runs must be a positive integer"):
        devices.device_groups(0, 1, names=CLI, present=four)


def test_whole_batches_leave_out_only_a_batch_the_devices_cannot_share():
    assert devices.whole_batch_samples(10, 4, 2) == 10  # last batch of 2: one per device
    assert devices.whole_batch_samples(9, 4, 2) == 8
    assert devices.whole_batch_samples(9, 4, 1) == 9

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1)
            self.epochs = 0

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return np.full((4 if i < 2 else 1, 1), i), np.zeros(4 if i < 2 else 1)

        def on_epoch_end(self):
            self.epochs += 1

    ds = Batches()
    assert devices.whole_batches(ds, 9, 4, 1) is ds
    kept = devices.whole_batches(ds, 9, 4, 2)
    assert len(kept) == 2 and kept[1][0][0, 0] == 1
    kept.on_epoch_end()
    assert ds.epochs == 1


def test_one_device_placement_changes_nothing():
    place = devices.placement("none", 1, 4)
    assert place.strategy is None and place.n_devices == 1 and place.callbacks() == []
    with place.scope(), place.build_scope():
        assert not place.splits_with_keras


def test_tf_strategies_need_an_even_last_validation_batch():
    devices.check_even_validation(6, 4, 2)
    devices.check_even_validation(8, 4, 2)
    with pytest.raises(ValueError, match=r"last validation batch \(3 of 7 samples"):
        devices.check_even_validation(7, 4, 2)
