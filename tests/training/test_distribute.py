"""tf.distribute for real on CPU: MirroredStrategy over 2 logical CPUs, MultiWorkerMirroredStrategy
with two local worker processes over loopback. Each runs in fresh processes (devices and
collectives must be configured before TensorFlow starts)."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from models_genesis.data.io.cube_files import cube_file_name, save_cubes
from models_genesis.training.distribute import get_strategy, replicas, strategy_scope, worker_role

SHAPE = (16, 16, 16)

# One tiny pre-training run; prints a JSON line with what the test checks.
_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from models_genesis.training import distribute
    if sys.argv[3] == "split":
        distribute.split_cpu(2)
    from models_genesis.config import PretrainConfig
    from models_genesis.training.pretrain import pretrain
    config = PretrainConfig(data_dir=sys.argv[1], out_dir=sys.argv[2], cube_shape=(16, 16, 16),
                            n_base_filters=2, batch_size=4, epochs=1, steps_per_epoch=2,
                            validation_steps=1, tensorboard=False, figures=False, sample_every=0,
                            workers=0, strategy=sys.argv[4])
    result = pretrain(config, verbose=0)
    print("RESULT " + json.dumps({"replicas": result["replicas"], "is_chief": result["is_chief"],
                                  "weights": result["paths"]["best_weights"],
                                  "val_loss": result["best_val_loss"]}))
""")


@pytest.fixture(scope="module")
def cube_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cubes")
    rng = np.random.default_rng(0)
    for s in range(7):
        save_cubes(os.path.join(folder, cube_file_name(4, SHAPE, s)),
                   rng.random((4, *SHAPE), dtype=np.float32))
    return str(folder)


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout[-2000:]
    return json.loads(lines[-1][len("RESULT "):])


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_get_strategy_none_and_errors():
    assert get_strategy("none") is None and replicas(None) == 1
    with strategy_scope(None):
        pass
    with pytest.raises(ValueError, match="strategy"):
        get_strategy("tpu")


def test_worker_role_from_tf_config():
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert worker_role({}) == (True, 0)
    assert worker_role({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})}) == (False, 1)
    assert worker_role({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})}) == (True, 0)
    with_chief = {**cluster, "chief": ["127.0.0.1:3"]}
    assert worker_role({"TF_CONFIG": json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}})}) == (False, 0)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        worker_role({"TF_CONFIG": "{not json"})


@pytest.mark.large
def test_mirrored_strategy_over_two_logical_cpus(cube_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, cube_dir, str(tmp_path / "run"), "split",
                           "mirrored"], env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _result(proc.stdout)
    assert res["replicas"] == 2 and res["is_chief"]
    assert np.isfinite(res["val_loss"]) and os.path.isfile(res["weights"])


# Two workers of one multi-worker run: each prints its role, the weights before and after training
# (sum of |w| of each variable) and the epoch logs.
_WORKER_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    from models_genesis.config import PretrainConfig
    from models_genesis.training.pretrain import pretrain

    class Record(keras.callbacks.Callback):
        def checksum(self):
            return [float(np.abs(keras.ops.convert_to_numpy(w)).sum()) for w in self.model.weights]
        def on_train_begin(self, logs=None):
            self.begin, self.logs = self.checksum(), []
        def on_epoch_end(self, epoch, logs=None):
            self.logs.append({k: float(v) for k, v in logs.items()})
        def on_train_end(self, logs=None):
            self.end = self.checksum()

    config = PretrainConfig(data_dir=sys.argv[1], out_dir=sys.argv[2], cube_shape=(16, 16, 16),
                            n_base_filters=2, batch_size=2, epochs=int(sys.argv[3]), steps_per_epoch=4,
                            validation_steps=1, tensorboard=False, figures=False, sample_every=0,
                            workers=0, strategy="multiworker")
    record = Record()
    result = pretrain(config, callbacks=[record], verbose=0, resume=sys.argv[4] == "resume")
    print("RESULT " + json.dumps({"replicas": result["replicas"], "is_chief": result["is_chief"],
                                  "paths": result["paths"], "val_loss": result["best_val_loss"],
                                  "epochs": result["epochs"], "begin": record.begin,
                                  "end": record.end, "logs": record.logs}))
""")


def _h5_arrays(path):
    import h5py

    out = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.append((name, obj[()])) if hasattr(obj, "shape") else None)
    return out


def _run_two_workers(cube_dir, run, epochs, resume=False):
    """Launch the two workers of one multi-worker run; return (chief, other) results."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _WORKER_SCRIPT, cube_dir, str(run), str(epochs),
             "resume" if resume else "fresh"],
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    outs = []
    try:
        for proc in procs:
            outs.append(proc.communicate(timeout=150))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-3000:]
    return tuple(_result(out) for out, _ in outs)


@pytest.mark.large
def test_multi_worker_mirrored_strategy_two_local_workers(cube_dir, tmp_path):
    run = tmp_path / "run"
    chief, other = _run_two_workers(cube_dir, run, epochs=2)
    assert chief["is_chief"] and not other["is_chief"]
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["epochs"] == other["epochs"] == 2
    # Synchronous replicas: the same weights at the start, after every step (same logs), at the end.
    np.testing.assert_allclose(chief["begin"], other["begin"], rtol=1e-6)
    np.testing.assert_allclose(chief["end"], other["end"], rtol=1e-5)
    for key in ("loss", "val_loss", "learning_rate"):
        mine, theirs = ([log[key] for log in res["logs"]] for res in (chief, other))
        assert mine == pytest.approx(theirs, rel=1e-5), key
    assert not np.allclose(chief["begin"], chief["end"], rtol=1e-3)  # it trained
    assert all(np.isfinite([log["loss"], log["val_loss"]]).all() for log in chief["logs"])
    assert [log["learning_rate"] for log in chief["logs"]] == [1.0, 1.0]
    assert chief["val_loss"] == pytest.approx(min(log["val_loss"] for log in chief["logs"]))
    # The chief wrote the run; the other worker only its own folder inside it.
    paths, own = chief["paths"], other["paths"]
    assert paths["out_dir"] == str(run) and own["out_dir"] == str(run / "workers" / "worker_1")
    assert sorted(os.listdir(run / "workers")) == ["worker_1"]
    chief_names = {os.path.basename(v) for k, v in paths.items() if k != "out_dir"}
    assert set(os.listdir(run)) <= chief_names | {"workers"}
    for key in ("config", "best_weights", "keras2_weights", "csv_log", "metrics", "result"):
        assert os.path.isfile(paths[key]), key
    with open(paths["csv_log"]) as f:
        rows = f.read().splitlines()
    assert rows[0].split(",")[0] == "epoch" and [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    a, b = _h5_arrays(paths["best_weights"]), _h5_arrays(own["best_weights"])
    assert [n for n, _ in a] == [n for n, _ in b] and len(a) > 20
    for (_, x), (_, y) in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert len(_h5_arrays(paths["keras2_weights"])) >= len(a) // 2
    # --resume with one more epoch: both workers restore the backup and train epoch 2 only.
    again, other_again = _run_two_workers(cube_dir, run, epochs=3, resume=True)
    assert again["epochs"] == other_again["epochs"] == 3
    assert len(again["logs"]) == len(other_again["logs"]) == 1
    np.testing.assert_allclose(again["begin"], chief["end"], rtol=1e-6)  # restored, not re-initialised
    np.testing.assert_allclose(again["end"], other_again["end"], rtol=1e-5)
    with open(paths["csv_log"]) as f:
        assert [r.split(",")[0] for r in f.read().splitlines()[1:]] == ["0", "1", "2"]


class _Batches(keras.utils.PyDataset):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def test_fit_distributed_matches_fit_on_one_replica(rng):
    """On one replica the loop is `fit`: same batches, loss, optimizer steps and callbacks."""
    import tensorflow as tf

    from models_genesis.training.distribute import fit_distributed

    x = rng.random((12, 4, 4, 4, 1), dtype=np.float32)
    y = rng.random((12, 4, 4, 4, 1), dtype=np.float32)
    batches = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])

    def build():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((4, 4, 4, 1)), keras.layers.Conv3D(2, 3, padding="same"),
                                  keras.layers.BatchNormalization(), keras.layers.Conv3D(1, 1)])
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
        return model

    reference = build()
    history = reference.fit(_Batches(batches), validation_data=_Batches(batches[:2]), epochs=3,
                            shuffle=False, verbose=0)
    with strategy.scope():
        model = build()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=100)
    ours = fit_distributed(strategy, model, batches, batches[:2], epochs=3, callbacks=[stop],
                           verbose=0)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(ours.history[key], history.history[key], rtol=1e-4)
    for w, v in zip(model.weights, reference.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(w), keras.ops.convert_to_numpy(v),
                                   rtol=1e-4, atol=1e-6)


def test_replica_batches_take_their_own_batch_indices():
    """Replica r of R takes batch step*R + r; past the end, batch 0 with weight 0."""
    import tensorflow as tf

    from models_genesis.training.distribute import _replica_batches

    class ThreeReplicas:  # what the strategy does with the function: one call per replica
        num_replicas_in_sync = 3

        def experimental_distribute_values_from_function(self, fn):
            return [fn(tf.distribute.experimental.ValueContext(r, 3)) for r in range(3)]

    batches = [(np.full((2, 1), i, np.float32), np.full((2, 1), -i, np.float32)) for i in range(7)]
    got = _replica_batches(ThreeReplicas(), batches, 1)
    assert [float(x[0, 0]) for x, _, _ in got] == [3, 4, 5]
    assert all(float(w.numpy().min()) == 1 for _, _, w in got)
    got = _replica_batches(ThreeReplicas(), batches, 2)
    assert [float(x[0, 0]) for x, _, _ in got] == [6, 0, 0]
    assert [w.numpy().tolist() for _, _, w in got] == [[1, 1], [0, 0], [0, 0]]
