"""Fine-tuning 2D models on 3D target tasks (paper Sec. 4.5): reformatting, training, 3D scoring."""

import numpy as np
import pytest

from models_genesis.data.target_tasks.common import TargetData
from models_genesis.models.unet2d import unet_model_2d
from models_genesis.models.weights import save_keras2_weights
from models_genesis.training.finetune2d import finetune_2d, reformat


def _data(rng, kind):
    x = {s: rng.random((n, 16, 16, 8, 1)).astype(np.float32) for s, n in
         (("train", 8), ("valid", 4), ("test", 6))}
    if kind == "classification":
        y = {s: np.arange(len(v)) % 2 for s, v in x.items()}
    else:
        y = {s: (v > 0.7).astype(np.float32) for s, v in x.items()}
    return TargetData("ncc" if kind == "classification" else "ncs",
                      x["train"], y["train"], x["valid"], y["valid"], x["test"], y["test"])


def test_reformat_shapes(rng):
    data = _data(rng, "segmentation")
    x, y = reformat("segmentation", "2d", *data.split("train"))
    assert x.shape == (8 * 8, 16, 16, 3) and y.shape == (8 * 8, 16, 16, 1)
    assert reformat("classification", "2.5d", data.x_train)[0].shape == (8, 8, 8, 3)
    with pytest.raises(ValueError, match="2.5D orthogonal inputs are defined for classification"):
        reformat("segmentation", "2.5d", data.x_train)


@pytest.mark.large
@pytest.mark.parametrize("kind,inputs", [("classification", "2.5d"), ("segmentation", "2d")])
def test_finetune_2d_from_genesis_2d(tmp_path, rng, kind, inputs):
    weights = save_keras2_weights(unet_model_2d((16, 16, 1), depth=3, n_base_filters=2),
                                  tmp_path / "Genesis_Chest_CT_2D.h5")
    out = finetune_2d(_data(rng, kind), kind, inputs=inputs, init="genesis", weights=weights,
                      epochs=1, batch_size=8, depth=3, n_base_filters=2, verbose=0,
                      run_eagerly=True)
    key = "auc" if kind == "classification" else "dice"
    assert 0.0 <= out["test"][key] <= 1.0 and out["epochs"] == 1
    with pytest.raises(ValueError, match="goes with init='genesis'"):
        finetune_2d(_data(rng, kind), kind, init="scratch", weights=weights)

