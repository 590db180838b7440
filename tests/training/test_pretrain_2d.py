"""`pretrain --dims 2`: Genesis 2D on slice files, exported for `unet_model_2d` only."""

import numpy as np
import pytest

from models_genesis.config import PretrainConfig
from models_genesis.data.io.cube_files import cube_file_name, save_cubes
from models_genesis.models.unet2d import unet_model_2d
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import load_keras2_weights
from models_genesis.training.pretrain import pretrain


def test_config_dims():
    c = PretrainConfig.preset("release_2d")
    assert (c.dims, c.cube_shape, c.sample_shape) == (2, (64, 64, 1), (64, 64))
    assert c.keras2_weights_name == "Genesis_Chest_CT_2D.h5"  # never the 3D file's name
    assert PretrainConfig.preset("release_2d", keras2_weights_name="Genesis_Chest_Xray.h5") \
        .keras2_weights_name == "Genesis_Chest_Xray.h5"
    with pytest.raises(ValueError, match=r"dims=2.*\(rows, cols, 1\).*\(64, 64, 32\)"):
        PretrainConfig(dims=2)
    with pytest.raises(ValueError, match="`dims` must be 2 or 3"):
        PretrainConfig(dims=4)


@pytest.mark.large
def test_pretrain_2d_writes_a_2d_file(tmp_path, rng):
    data = tmp_path / "slices"
    for subset in ("0", "1"):
        slices = rng.random((8, 32, 32, 1)).astype(np.float32)
        save_cubes(data / cube_file_name(4, (32, 32, 1), subset), slices)
    config = PretrainConfig(data_dir=str(data), out_dir=str(tmp_path / "run"), dims=2,
                            cube_shape=(32, 32, 1), train_subsets=("0",), val_subsets=("1",),
                            n_base_filters=2, depth=3, batch_size=4, epochs=1, steps_per_epoch=2,
                            validation_steps=1, tensorboard=False, workers=0, optimizer="adam",
                            learning_rate=1e-3)
    result = pretrain(config, verbose=0)
    path = result["paths"]["keras2_weights"]
    assert path.endswith("Genesis_Chest_CT_2D.h5")
    assert np.isfinite(result["metrics"]["model_mse"]) and result["metrics"]["n_cubes"] == 4
    unet = unet_model_2d((32, 32, 1), n_base_filters=2, depth=3)
    assert "conv2d_1" in load_keras2_weights(unet, path)
    with pytest.raises(ValueError, match="Genesis_Chest_CT_2D.h5.*2D conv kernels"):
        load_keras2_weights(unet_model_3d((32, 32, 16, 1), n_base_filters=2, depth=3), path)
