"""PyTorch side of Models Genesis: the released model and weight conversion both ways.

* `UNet3D` is the released PyTorch model (`Genesis_Chest_CT.pt`, transposed-conv decoder, the
  release's module names); `load_checkpoint` reads the released checkpoint and state_dicts like it.
* `KerasUNet3D` is the Keras U-Net (`models_genesis.models.unet3d.unet_model_3d`) in PyTorch;
  `GenesisClassifier` and `GenesisSegmenter` mirror the Keras target-task heads.
* `keras_to_torch`, `load_keras_weights`, `torch_to_keras`, `save_keras_weights` convert weights
  between them (Keras model objects, Keras 2 HDF5, Keras 3 `.weights.h5` and `.keras`).
* `save_released_encoder`, `load_released_encoder` put the released `.pt` encoder (`down_tr*`)
  into the Keras U-Net's `depth_0..7`; its transposed-conv decoder cannot be converted.

torch is an optional dependency: `pip install models-genesis[torch]`.
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # torch missing (or hidden)
    raise ImportError(
        "`pytorch_compat` needs PyTorch, an optional dependency of Models Genesis. Install it with "
        "`pip install models-genesis[torch]` (from a clone: `pip install .[torch]`) or "
        "`pip install torch`."
    ) from exc

from pytorch_compat.checkpoint import extract_state_dict, load_checkpoint
from pytorch_compat.convert import (
    keras_to_torch,
    load_keras_weights,
    save_keras_weights,
    torch_to_keras,
    torch_to_keras_arrays,
)
from pytorch_compat.heads import GenesisClassifier, GenesisSegmenter
from pytorch_compat.keras_files import read_keras_weights
from pytorch_compat.keras_unet3d import KerasUNet3D
from pytorch_compat.released import load_released_encoder, save_released_encoder
from pytorch_compat.unet3d import UNet3D

__all__ = [
    "UNet3D",
    "KerasUNet3D",
    "GenesisClassifier",
    "GenesisSegmenter",
    "load_checkpoint",
    "extract_state_dict",
    "read_keras_weights",
    "load_keras_weights",
    "keras_to_torch",
    "torch_to_keras",
    "torch_to_keras_arrays",
    "save_keras_weights",
    "load_released_encoder",
    "save_released_encoder",
]
