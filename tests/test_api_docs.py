"""The three scripts of docs/api.md run as written, with smaller settings, and the preset names
resolve in Python as in the CLI.

Each script's upper-case settings at its top are replaced (tiny crops, U-Net width 2, one or two
epochs; pre-training keeps the demo preset's 32x32x16 cubes, the smallest its cutouts fit);
`genesis_chest_ct` resolves to a release-layout `Genesis_Chest_CT.h5` of random weights written
here into the folder named by `$MODELS_GENESIS_WEIGHTS`, as a user's download would be found.
"""

import re
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import models_genesis as mg
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import read_keras2_weights, save_keras2_weights
from tests.pytorch_compat.helpers import randomise_keras

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
SMALL = {"N_BASE_FILTERS": "2", "CROP": "(16, 16, 8)", "CUBE_SHAPE": "(32, 32, 16)",
         "EPOCHS": "1", "STEPS, EPOCHS": "2, 2"}


def _scripts():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 3, "docs/api.md has three scripts"
    return blocks


def _shrink(code: str) -> str:
    for name, value in SMALL.items():
        code = re.sub(rf"^{re.escape(name)} = [^#\n]*", f"{name} = {value}  ", code, flags=re.M)
    return code


@pytest.fixture
def release_file(tmp_path, monkeypatch):
    """A random-weights `Genesis_Chest_CT.h5` (width 2) in `$MODELS_GENESIS_WEIGHTS`."""
    folder = tmp_path / "weights"
    unet = randomise_keras(unet_model_3d((16, 16, 8, 1), n_base_filters=2),
                           np.random.default_rng(0))
    path = save_keras2_weights(unet, folder / "Genesis_Chest_CT.h5")
    monkeypatch.setenv("MODELS_GENESIS_WEIGHTS", str(folder))
    monkeypatch.chdir(tmp_path)
    return path


def _run(code):
    namespace = {"__name__": "__main__"}
    exec(compile(_shrink(code), str(DOC), "exec"), namespace)  # noqa: S102
    return namespace


def test_every_script_sets_what_the_test_shrinks():
    for code in _scripts():
        assert "CROP = (16, 16, 8)" in _shrink(code) or "CUBE_SHAPE = (32, 32, 16)" in _shrink(code)
        assert re.search(r"^EPOCHS = 1 |^STEPS, EPOCHS = 2, 2 ", _shrink(code), flags=re.M)


@pytest.mark.large
def test_finetune_script_trains_the_release_file_and_saves_a_loadable_model(release_file):
    ns = _run(_scripts()[0])
    model = ns["model"]
    again = keras.saving.load_model("my_segmentation.keras")
    x = ns["x"][:2]
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert model.loss is mg.dice_loss


@pytest.mark.large
def test_feature_extractor_script_keeps_the_file_s_encoder_fixed(release_file):
    ns = _run(_scripts()[1])
    file_layers = read_keras2_weights(release_file)
    for name in ("depth_0_conv", "depth_7_conv"):  # trained on top of, but never changed
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(ns["encoder"].get_layer(name).kernel),
            file_layers[name][0])
    assert ns["embed"].output.shape[-1] == file_layers["depth_7_conv"][0].shape[-1]


@pytest.mark.large
def test_pretraining_script_writes_release_layout_weights(release_file):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mg.UndertrainedWarning)  # two steps restore little
        ns = _run(_scripts()[2])
    result = ns["result"]
    assert result["status"] in ("trained", "undertrained")
    assert result["epochs"] == 2
    weights = read_keras2_weights(result["paths"]["keras2_weights"])
    assert weights["depth_0_conv"][0].shape == (3, 3, 3, 1, 8)  # the demo preset's width


def test_preset_names_resolve_in_python_as_in_the_cli(release_file):
    model = mg.segmentation_model((16, 16, 8, 1), n_base_filters=2, weights="genesis_chest_ct")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("depth_3_conv").kernel),
                                  read_keras2_weights(release_file)["depth_3_conv"][0])
    assert mg.resolve_weights("Genesis_Chest_CT") == Path(release_file)
    with pytest.raises(ValueError, match=r"genesis_chest_cta.*|presets.*genesis_chest_ct"):
        mg.segmentation_model((16, 16, 8, 1), n_base_filters=2, weights="genesis_chest_cta")
    with pytest.raises(FileNotFoundError, match="elsewhere.h5"):
        mg.classification_model((16, 16, 8, 1), n_base_filters=2, weights="elsewhere.h5")
    with pytest.raises(ValueError, match="pytorch_compat"):
        mg.from_preset("genesis_chest_ct_pytorch")
    with pytest.raises(FileNotFoundError, match="Genesis_Chest_Xray.h5"):
        mg.from_preset("genesis_chest_xray")
