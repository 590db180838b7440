"""Loading the released checkpoint format: every accepted form, and clear errors otherwise."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pytorch_compat import UNet3D, extract_state_dict, load_checkpoint  # noqa: E402
from tests.pytorch_compat.helpers import randomise_torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def trained(rng):
    """A small UNet3D with seeded weights and its state_dict."""
    model = randomise_torch(UNet3D(n_class=2, n_base_filters=4), rng)
    return model, model.state_dict()


def _released_form(state, prefix=True):
    key = "module." if prefix else ""
    return {"state_dict": {key + k: v for k, v in state.items()},
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1.0, "params": [0]}]},
            "epoch": 7}


def _assert_same(model, state):
    got = model.state_dict()
    assert list(got) == list(state)
    for k in state:
        assert torch.equal(got[k], state[k]), k


@pytest.mark.parametrize("form", ["released", "released_no_prefix", "bare_prefixed", "bare"])
def test_accepted_forms_from_file(tmp_path, trained, form):
    _, state = trained
    obj = {
        "released": _released_form(state),
        "released_no_prefix": _released_form(state, prefix=False),
        "bare_prefixed": {"module." + k: v for k, v in state.items()},
        "bare": dict(state),
    }[form]
    path = tmp_path / "Genesis_small.pt"
    torch.save(obj, path)
    model = load_checkpoint(path)  # architecture read from the checkpoint
    assert isinstance(model, UNet3D) and (model.n_class, model.n_base_filters) == (2, 4)
    _assert_same(model, state)
    target = UNet3D(n_class=2, n_base_filters=4)
    assert load_checkpoint(obj, target) is target  # already-loaded objects too
    _assert_same(target, state)


def test_loaded_model_reproduces_outputs(trained, rng):
    source, state = trained
    model = load_checkpoint(_released_form(state), batch_statistics=True)
    assert model.batch_statistics
    x = torch.from_numpy(rng.random((1, 1, 16, 16, 8), dtype=np.float32))
    source.train()  # in train mode ordinary BN uses batch statistics, like the release's
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), source(x))


def test_extract_state_dict_strips_prefix(trained):
    _, state = trained
    out = extract_state_dict(_released_form(state))
    assert list(out) == list(state)


@pytest.mark.parametrize("obj, match", [
    ([1, 2], "Received: an object of type list"),
    ({"epoch": 3, "optimizer_state_dict": {}}, "holds no state_dict"),
    ({"state_dict": {"a": 1}}, "holds no state_dict"),
    ({}, "holds no state_dict"),
])
def test_not_a_checkpoint_raises(obj, match):
    with pytest.raises(ValueError, match=match):
        load_checkpoint(obj, UNet3D(n_base_filters=4))


def test_mixed_prefixes_raise(trained):
    _, state = trained
    items = list(state.items())
    mixed = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(items)}
    with pytest.raises(ValueError, match="all or none"):
        load_checkpoint(mixed, UNet3D(n_class=2, n_base_filters=4))


def test_mismatch_lists_keys_and_changes_nothing(trained):
    _, state = trained
    target = UNet3D(n_class=2, n_base_filters=8)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="shape mismatches") as info:
        load_checkpoint(state, target)
    assert "down_tr64.ops.0.conv1.weight" in str(info.value)
    _assert_same(target, before)
    partial = {k: v for k, v in state.items() if not k.startswith("out_tr")}
    partial["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"2 missing keys .*out_tr.*1 unexpected keys .*extra"):
        load_checkpoint(partial, UNet3D(n_class=2, n_base_filters=4))
    with pytest.raises(ValueError, match="not a checkpoint of the released UNet3D"):
        load_checkpoint(partial)


def test_bad_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint", encoding="utf-8")
    with pytest.raises(ValueError, match="Cannot read .*notes.pt"):
        load_checkpoint(text)


def test_import_without_torch_says_what_to_install():
    code = "import sys; sys.modules['torch'] = None; import pytorch_compat"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "pip install models-genesis[torch]" in proc.stderr
