"""Every model kind of the package round-trips through `.keras` with `keras.saving.load_model`
alone (no `custom_objects`), under TensorFlow (here), JAX and PyTorch (one subprocess each).

The subprocesses load the files written here under TensorFlow, having imported nothing but
`keras` and `models_genesis` (the package registers its objects when Keras loads), and must
compute the same outputs; then they save each model so built under their own backend and load it
again. (Building anew there would cost twice: JAX compiles every random initializer per shape.)
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import models_genesis
from models_genesis.saving import load_model
from tests.models.saved_model_kinds import KINDS, inputs_for, predictions, round_trip

REPO = Path(__file__).resolve().parents[2]

OTHER_BACKEND = """
import sys
import numpy as np
import keras
import models_genesis  # noqa: F401  (registers the package's Keras objects)

folder = sys.argv[1]
expected = np.load(folder + "/expected.npz")
names = sorted({k.split("/")[0] for k in expected.files})
loaded = {}
for name in names:
    model = loaded[name] = keras.saving.load_model(f"{folder}/{name}.keras")
    x = [expected[f"{name}/x{i}"] for i in range(int(expected[f"{name}/n_inputs"]))]
    out = model(x[0] if len(x) == 1 else x, training=False)
    out = out if isinstance(out, (list, tuple)) else list(out.values()) if isinstance(out, dict) else [out]
    for i, o in enumerate(out):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(o), expected[f"{name}/y{i}"],
                                   rtol=1e-4, atol=1e-5, err_msg=name)
print("loaded", len(loaded))

from tests.models.saved_model_kinds import round_trip

# each model, now built by this backend, saved by it and loaded again
for name, model in loaded.items():
    round_trip(model, f"{folder}/{keras.config.backend()}_{name}.keras")
print("round trips", len(loaded), keras.config.backend())
"""


def test_the_api_is_what_a_script_needs():
    for name in models_genesis.__all__:
        assert getattr(models_genesis, name) is not None, name
    with pytest.raises(AttributeError, match="no_such_name"):
        models_genesis.no_such_name  # noqa: B018


@pytest.mark.large
def test_every_model_kind_round_trips_under_tensorflow_jax_and_torch(tmp_path):
    keras.utils.set_random_seed(0)
    expected = {}
    for name, build in KINDS.items():
        model = build()
        again = round_trip(model, tmp_path / f"{name}.keras")
        if name.startswith("segmentation"):  # the package's own loss object, not a copy
            assert again.loss is models_genesis.dice_loss
        x = inputs_for(model)
        x = x if isinstance(x, list) else [x]
        expected[f"{name}/n_inputs"] = np.array(len(x))
        expected.update({f"{name}/x{i}": a for i, a in enumerate(x)})
        outs = predictions(model, x[0] if len(x) == 1 else x)
        expected.update({f"{name}/y{i}": o for i, o in enumerate(outs)})
        assert all(np.isfinite(o).all() for o in outs)
    np.savez(tmp_path / "expected.npz", **expected)

    procs = {}
    for backend in ("jax", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                   JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "keras"), str(REPO),
                                                            os.environ.get("PYTHONPATH")])))
        procs[backend] = subprocess.Popen(
            [sys.executable, "-c", OTHER_BACKEND, str(tmp_path)], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for backend, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{backend}:\n{out}\n{err[-3000:]}"
        assert f"loaded {len(KINDS)}" in out and f"round trips {len(KINDS)} {backend}" in out


def test_a_keras_file_of_another_project_is_refused_naming_it(tmp_path, capsys):
    @keras.saving.register_keras_serializable(package="someone_else")
    class Doubling(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = keras.Input((3,))
    path = tmp_path / "theirs.keras"
    keras.Model(inputs, Doubling()(inputs)).save(path)
    from keras.src.saving import object_registration

    del object_registration.GLOBAL_CUSTOM_OBJECTS["someone_else>Doubling"]  # not importable here
    with pytest.raises(ValueError, match="theirs.keras.*another project"):
        load_model(path)
    # the command that loads models says it in one line
    from models_genesis.cli import main

    argv = ["predict-volume", "--model", str(path), "--input", str(tmp_path),
            "--output", str(tmp_path / "mask.nii.gz")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("models-genesis predict-volume: error: Cannot load --model")
    assert "theirs.keras" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "mask.nii.gz").exists()
    notzip = tmp_path / "notes.keras"
    notzip.write_text("not a model")
    with pytest.raises(ValueError, match="notes.keras.*not a Keras"):
        load_model(notzip)
    zipped = tmp_path / "archive.keras"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("readme.txt", "a zip of something else")
    with pytest.raises(ValueError, match="archive.keras"):
        load_model(zipped)


def test_every_registered_object_lives_in_a_module_that_saving_imports():
    """`register_all` imports `SERIALIZABLE_MODULES` only: a Keras object registered anywhere else
    would be missing when a `.keras` file is loaded in a fresh process."""
    from models_genesis.saving import SERIALIZABLE_MODULES

    package = Path(models_genesis.__file__).parent
    registering = sorted(
        "models_genesis." + ".".join(path.relative_to(package).with_suffix("").parts)
        for path in package.rglob("*.py")
        if "register_keras_serializable(" in path.read_text(encoding="utf-8")
        and path.name != "saving.py")
    assert registering == sorted(SERIALIZABLE_MODULES)
