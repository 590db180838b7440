"""Pretrained weights as presets: a name resolves to a file in `pretrained_weights/`.

The release publishes `Genesis_Chest_CT.h5` (Keras 2.2.4, the 3D U-Net of `unet_model_3d`) and
`Genesis_Chest_CT.pt` (PyTorch, a different decoder: see `pytorch_compat`). They are not
redistributed here; `pretrained_weights/README.md` says where to get them. No checksum is pinned
because the release publishes none.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from models_genesis.paths import weights_dir as default_dir

PRETRAINED_WEIGHTS = {
    "genesis_chest_ct": {
        "file": "Genesis_Chest_CT.h5",
        "framework": "keras",
        "description": "Models Genesis pre-trained on 623 LUNA16 chest CTs (paper Sec. 3.1), "
        "Keras 2.2.4 HDF5, channels_first (1, 64, 64, 32) input; fills unet_model_3d.",
        "sha256": None,
    },
    # Genesis 2D (paper Table 1): the release publishes no 2D file in its README, so these names
    # are this package's (after the paper's model names), written by `pretrain --dims 2`.
    "genesis_chest_ct_2d": {
        "file": "Genesis_Chest_CT_2D.h5",
        "framework": "keras",
        "description": "Genesis Chest CT 2D from `pretrain --preset release_2d` (axial LUNA16 "
        "slices); fills unet_model_2d of the same depth and width. Not a release file.",
        "sha256": None,
    },
    "genesis_chest_xray": {
        "file": "Genesis_Chest_Xray.h5",
        "framework": "keras",
        "description": "Genesis Chest X-ray from `pretrain --preset release_2d "
        "--keras2-weights-name Genesis_Chest_Xray.h5` on ChestX-ray14 crops (data.pretraining.xray_crops); fills "
        "unet_model_2d. Not a release file.",
        "sha256": None,
    },
    "genesis_chest_ct_pytorch": {
        "file": "Genesis_Chest_CT.pt",
        "framework": "torch",
        "description": "The PyTorch release (ConvTranspose3d decoder): load with "
        "pytorch_compat.UNet3D, not with Keras.",
        "sha256": None,
    },
}


def looks_like_path(name) -> bool:
    """True for a name with a folder or a file suffix (`runs/a.h5`, `w.h5`), which is taken as
    a missing file rather than an unknown preset."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    return isinstance(name, os.PathLike) or os.sep in text or "/" in text or bool(Path(text).suffix)


def resolve_weights(name_or_path, weights_dir: Optional[os.PathLike] = None) -> Path:
    """Return the path of weights given a preset name or a file path.

    Args:
        name_or_path: a key of `PRETRAINED_WEIGHTS` or a path to a weight file.
        weights_dir: folder holding preset files. Defaults to `paths.weights_dir()`.

    Raises:
        ValueError: neither a file nor a known preset name (lists the presets).
        FileNotFoundError: a path (with a folder or a file suffix) that does not exist, or a
            preset whose file is not in `weights_dir` (says where to get it).

    Example:
        >>> resolve_weights("genesis_chest_ct")  # pretrained_weights/Genesis_Chest_CT.h5
    """
    path = Path(os.fspath(name_or_path))
    if path.is_file():
        return path
    key = str(name_or_path).lower()
    if key not in PRETRAINED_WEIGHTS and looks_like_path(name_or_path):
        raise FileNotFoundError(
            f"Weight file not found: {os.fspath(name_or_path)!r} (nor is it one of the presets "
            f"{sorted(PRETRAINED_WEIGHTS)}).")
    if key not in PRETRAINED_WEIGHTS:
        raise ValueError(
            f"Weights must be an existing file or one of the presets {sorted(PRETRAINED_WEIGHTS)}. "
            f"Received: weights={name_or_path!r}."
        )
    if weights_dir is None:
        weights_dir = default_dir()
    found = Path(weights_dir) / PRETRAINED_WEIGHTS[key]["file"]
    if not found.is_file():
        raise FileNotFoundError(
            f"Preset {key!r} expects {found}; it is not there. See pretrained_weights/README.md "
            "for where the release publishes it."
        )
    return found
