"""The Keras U-Net gives the same outputs under the TensorFlow, JAX and PyTorch backends.

The model is built and randomised under TensorFlow (this process), its weights saved as a Keras 3
`.weights.h5` file; subprocesses with `KERAS_BACKEND=jax` and `KERAS_BACKEND=torch` build the
same model in both data formats, load the file and predict the same inputs.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models_genesis.models.unet3d import unet_model_3d
from tests.pytorch_compat.helpers import randomise_keras, relative_error

REPO = Path(__file__).resolve().parents[2]
SPATIAL = (16, 16, 8)
SIZE = dict(n_base_filters=4, activation_name="linear")
BACKENDS = ("jax", "torch")

PREDICT = """
import sys
import numpy as np
import keras
from models_genesis.models.unet3d import unet_model_3d

weights, inputs, out = sys.argv[1:4]
x = np.load(inputs)
spatial = x.shape[1:4]
results = {"backend": np.array(keras.config.backend())}
for fmt, shape, xi in (("channels_last", spatial + (1,), x),
                       ("channels_first", (1,) + spatial, np.moveaxis(x, -1, 1))):
    # "zeros": JAX compiles every random initializer per shape (a minute); the file fills them.
    model = unet_model_3d(shape, n_base_filters=4, activation_name="linear", data_format=fmt,
                          kernel_initializer="zeros")
    model.load_weights(weights)
    results[fmt] = keras.ops.convert_to_numpy(model(xi, training=False))
np.savez(out, **results)
"""


def _backend_available(name):
    module = {"jax": "jax", "torch": "torch"}[name]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.mark.large
def test_same_outputs_under_tensorflow_jax_and_torch(tmp_path):
    rng = np.random.default_rng(0)
    model = randomise_keras(unet_model_3d(SPATIAL + (1,), **SIZE), rng)
    weights = tmp_path / "unet.weights.h5"
    model.save_weights(weights)
    x = rng.random((2,) + SPATIAL + (1,), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = model.predict(x, verbose=0)
    cf = unet_model_3d((1,) + SPATIAL, data_format="channels_first", **SIZE)
    cf.load_weights(weights)
    np.testing.assert_allclose(np.moveaxis(cf.predict(np.moveaxis(x, -1, 1), verbose=0), 1, -1),
                               expected, rtol=1e-5, atol=1e-5)
    assert float(expected.std()) > 1e-3

    backends = [b for b in BACKENDS if _backend_available(b)]
    if not backends:
        pytest.skip("neither jax nor torch is installed")
    procs = {}
    for backend in backends:  # run the backends side by side
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
                   JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        out = tmp_path / f"{backend}.npz"
        procs[backend] = (out, subprocess.Popen(
            [sys.executable, "-c", PREDICT, str(weights), str(tmp_path / "x.npy"), str(out)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for backend, (out, proc) in procs.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"KERAS_BACKEND={backend} failed:\n{stderr[-3000:]}"
        got = np.load(out)
        assert str(got["backend"]) == backend
        assert relative_error(expected, got["channels_last"]) < 1e-4, backend
        assert relative_error(expected, np.moveaxis(got["channels_first"], 1, -1)) < 1e-4, backend
    missing = sorted(set(BACKENDS) - set(backends))
    if missing:
        pytest.skip(f"compared TensorFlow with {backends}; not installed: {missing}")
