"""The model of a fine-tuning run: the task's head on the U-Net body, initialised from scratch
with one of the paper's baselines or from a pre-trained weight file, which is checked against what
the method named by `init` writes (`pretrain --method`), and the blocks the run keeps fixed.
"""

from __future__ import annotations

import os
from typing import Optional

from models_genesis.config import SCRATCH_INITS, FinetuneConfig
from models_genesis.methods import ENCODER_METHODS, RESTORATION_METHODS, encoder_layer_names
from models_genesis.models.heads import encoder_blocks, target_model
from models_genesis.models.presets import PRETRAINED_WEIGHTS, resolve_weights
from models_genesis.models.unet3d import BN_MOMENTUM
from models_genesis.models.weights import load_keras2_weights, read_keras2_weights


def init_weights_file(config: FinetuneConfig) -> Optional[str]:
    """The weight file of a method init (a path; for genesis also a preset name), checked
    against what `pretrain --method config.init` writes (`check_method_weights`); None for
    the scratch initialisers."""
    if config.init in SCRATCH_INITS:
        return None
    if not config.weights:
        raise ValueError(f"`init={config.init!r}` needs a pre-trained weight file in `weights` "
                         f"(the one `pretrain --method {config.init}` wrote; for genesis also a "
                         "preset name). Received: weights=None.")

    name = os.fspath(config.weights)
    preset = config.init == "genesis" and str(name).lower() in PRETRAINED_WEIGHTS
    if not preset and not os.path.isfile(name):
        raise FileNotFoundError(
            f"Weight file not found: {name!r} (`weights`). Give an existing file"
            + (f" or a preset name {sorted(PRETRAINED_WEIGHTS)}." if config.init == "genesis"
               else "."))
    path = os.fspath(resolve_weights(name)) if preset else name
    check_method_weights(path, config.init)
    return path


def check_method_weights(path: str, method: str) -> None:
    """Refuse, before training, a weight file that `pretrain --method method` cannot have written.

    Restoration methods (genesis, denoising, inpainting, patch_shuffling) write the whole U-Net
    in the Keras 2 layout: the file must hold the encoder and the decoder layers. Encoder
    methods (jigsaw, rubik, deepcluster) write the encoder `depth_0..7` only: the file must hold
    it and no decoder (a whole U-Net is a restoration method's). Only these layers are read.

    Raises:
        ValueError: a Keras 3 `.weights.h5` file, a file of the other kind, or a file missing
            expected layers (the message names the first one and the file's layers).
    """
    if str(path).endswith(".weights.h5"):
        raise ValueError(f"`finetune` reads the Keras 2 layout file that `pretrain` writes next to "
                         f"{os.path.basename(path)!r} (Genesis_Chest_CT.h5 or {method}.h5). "
                         f"Received: weights={path!r}.")
    layers = set(read_keras2_weights(path))
    decoder = [f"depth_{i}_conv" for i in range(8, 14)]
    missing = [name for name in encoder_layer_names() + (decoder if method in RESTORATION_METHODS
                                                          else []) if name not in layers]
    listed = f"{sorted(layers)[:8]}... ({len(layers)} layers with weights)"
    if method in RESTORATION_METHODS and missing and not set(encoder_layer_names()) - layers:
        raise ValueError(f"{path!r} holds an encoder only (depth_0..7; written by an encoder "
                         f"method, one of {list(ENCODER_METHODS)}), but `init={method!r}` loads "
                         f"the whole U-Net that `pretrain --method {method}` writes.")
    if missing:
        raise ValueError(f"{path!r} is not a `pretrain --method {method}` weight file: layer "
                         f"{missing[0]!r} is missing (and {len(missing) - 1} more). The file "
                         f"holds {listed}.")
    if method in ENCODER_METHODS and set(decoder) & layers:
        raise ValueError(f"{path!r} holds a whole U-Net (written by a restoration method, one of "
                         f"{list(RESTORATION_METHODS)}), but `init={method!r}` loads the encoder "
                         f"that `pretrain --method {method}` writes. Use that method as --init.")


def build_finetune_model(config: FinetuneConfig, kind: str, spatial, weights: Optional[str], *,
                         n_channels: int = 1, n_classes: int = 1):
    """The task's head model, its body from `weights` or from scratch with `config.init`.

    `n_channels` input channels (one-channel weights have their first conv adapted, see
    `models_genesis.models.weights.adapt_first_conv`); `n_classes` outputs (1: sigmoid, more:
    softmax).

    What is loaded: for a restoration init (genesis, denoising, inpainting, patch_shuffling)
    every `depth_*` layer of the model (the encoder for classification, the whole U-Net for
    segmentation); for an encoder init (jigsaw, rubik, deepcluster) the encoder `depth_0..7`,
    the decoder of a segmentation model keeping its initialiser like the head.
    """
    # Pre-trained: the layers not loaded (head, decoder) keep Keras' default (glorot_uniform).
    initializer = "glorot_uniform" if weights is not None else config.init
    encoder_only = weights is not None and config.init in ENCODER_METHODS
    model = target_model(kind, tuple(spatial) + (int(n_channels),), int(n_classes),
                         n_base_filters=config.n_base_filters,
                         kernel_initializer=initializer,
                         weights=None if encoder_only else weights, head=config.head,
                         frozen_blocks=frozen_blocks(config),
                         bn_momentum=(BN_MOMENTUM if config.bn_momentum is None
                                      else float(config.bn_momentum)))
    if encoder_only:
        load_keras2_weights(model, weights, layers=encoder_layer_names())
    return model


def frozen_blocks(config: FinetuneConfig) -> tuple:
    """The `depth_{i}` blocks a run keeps fixed: `freeze_blocks`, plus depth_0..7 with
    `freeze_encoder` (transfer scenario 1, Sec. 3.2)."""
    blocks = set(config.freeze_blocks) | (set(encoder_blocks()) if config.freeze_encoder else set())
    return tuple(sorted(blocks))
