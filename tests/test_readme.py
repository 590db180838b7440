"""The README's usage snippets run as written (with a release-shaped weight file in place)."""

import re
from pathlib import Path

import pytest

from tests.keras2_files import release_weights, write_keras2_file

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_gives_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text


@pytest.mark.large
@pytest.mark.parametrize("index", range(3))
def test_readme_snippet_runs(index, tmp_path, rng, monkeypatch):
    blocks = [b for b in _python_blocks() if "load_weights(\"pretrained_weights/Genesis_Chest_CT.h5\")" in b]
    assert len(blocks) == 3, "the README shows the model and the two fine-tuning recipes"
    (tmp_path / "pretrained_weights").mkdir()
    write_keras2_file(str(tmp_path / "pretrained_weights" / "Genesis_Chest_CT.h5"),
                      release_weights(rng), full_model=True)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(blocks[index], f"README.md block {index}", "exec"), namespace)
    model = namespace["model"]
    # The released weights really landed in the snippet's model.
    import keras
    import numpy as np

    kernel = keras.ops.convert_to_numpy(model.get_layer("depth_0_conv").weights[0])
    expected = dict(release_weights(np.random.default_rng(0)))["depth_0_conv"][0][1]
    if index == 0:  # no training happened in the first block
        np.testing.assert_array_equal(kernel, expected)
    else:
        assert np.corrcoef(kernel.ravel(), expected.ravel())[0, 1] > 0.9
