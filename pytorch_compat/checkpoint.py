"""Load the released PyTorch checkpoint (`Genesis_Chest_CT.pt`) and state_dicts like it.

The release saved `{'state_dict': ..., 'optimizer_state_dict': ..., 'epoch': ...}` from a
`DataParallel` model, so every key carries a `module.` prefix (docs/release_reference.md, 'The
PyTorch release'). `load_checkpoint` accepts that dict, a bare state_dict, or either without the
prefix, and checks every key and shape before assigning anything (never a partial load).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Dict, Optional

import torch

from pytorch_compat.unet3d import UNet3D

DATAPARALLEL_PREFIX = "module."
CHECKPOINT_KEYS = ("state_dict", "model_state_dict")


def _describe(obj) -> str:
    if isinstance(obj, Mapping):
        return f"a dict with keys {list(obj)[:8]}"
    return f"an object of type {type(obj).__name__}"


def extract_state_dict(checkpoint, *, source: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """Return the bare state_dict (no `module.` prefix) held by `checkpoint`.

    Args:
        checkpoint: the released checkpoint dict (`state_dict`, `optimizer_state_dict`,
            `epoch`), or a bare state_dict (str -> tensor); keys with or without `module.`.
        source: how to name `checkpoint` in error messages (e.g. its path).

    Returns:
        An ordered dict `key -> tensor` with the `module.` prefix removed.

    Raises:
        ValueError: not a dict, no tensors, a `state_dict` entry that is not a state_dict, or
            keys of which only some carry the `module.` prefix.
    """
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"`{source}` must be a checkpoint dict with a 'state_dict' entry or a state_dict "
            f"(names -> tensors). Received: {_describe(checkpoint)}."
        )
    state = checkpoint
    for key in CHECKPOINT_KEYS:
        if key in checkpoint and not isinstance(checkpoint[key], torch.Tensor):
            state = checkpoint[key]
            break
    if not isinstance(state, Mapping) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"`{source}` holds no state_dict: expected a dict of parameter names -> tensors, or a "
            f"dict with one under 'state_dict'. Received: {_describe(checkpoint)}"
            + (f" whose state_dict is {_describe(state)}." if state is not checkpoint else ".")
        )
    prefixed = [k.startswith(DATAPARALLEL_PREFIX) for k in state]
    if any(prefixed) and not all(prefixed):
        mixed = [k for k, p in zip(state, prefixed) if not p][:3]
        raise ValueError(
            f"`{source}`: some keys carry the DataParallel prefix {DATAPARALLEL_PREFIX!r} and some "
            f"do not (e.g. {mixed}); expected all or none."
        )
    cut = len(DATAPARALLEL_PREFIX) if all(prefixed) else 0
    return {k[cut:]: v for k, v in state.items()}


def _infer_unet3d(state: Mapping[str, torch.Tensor], source: str) -> UNet3D:
    first, last = "down_tr64.ops.0.conv1.weight", "out_tr.final_conv.weight"
    if first not in state or last not in state:
        raise ValueError(
            f"`{source}` is not a checkpoint of the released UNet3D: it lacks {first!r} or "
            f"{last!r}. Its first keys: {list(state)[:5]}."
        )
    return UNet3D(n_class=int(state[last].shape[0]), n_base_filters=int(state[first].shape[0]))


def load_checkpoint(checkpoint, model: Optional[torch.nn.Module] = None, *,
                    map_location="cpu", batch_statistics: bool = False) -> torch.nn.Module:
    """Fill a model from the released checkpoint (or any state_dict in the same forms).

    Args:
        checkpoint: a path (`Genesis_Chest_CT.pt`) or an already loaded object: the release's
            dict `{'state_dict', 'optimizer_state_dict', 'epoch'}` or a bare state_dict, keys with
            or without the `module.` prefix.
        model: the module to fill. Defaults to a `UNet3D` whose width and output count are read
            from the checkpoint.
        map_location: passed to `torch.load`. Defaults to "cpu".
        batch_statistics: for the default `UNet3D`: use the release's batch-statistics
            BatchNorm (see `UNet3D`). Ignored when `model` is given.

    Returns:
        `model`, with every parameter and buffer assigned.

    Raises:
        FileNotFoundError: no file at `checkpoint`.
        ValueError: the file is not a PyTorch checkpoint, holds no state_dict, or its keys or
            shapes do not match `model` (missing, unexpected and mismatched keys are listed).
    """
    source = "checkpoint"
    if isinstance(checkpoint, (str, os.PathLike)):
        source = os.fspath(checkpoint)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"Checkpoint file not found: {source!r}.")
        try:
            checkpoint = torch.load(source, map_location=map_location, weights_only=True)
        except Exception as exc:  # torch raises several types for foreign or damaged files
            raise ValueError(
                f"Cannot read {source!r} as a PyTorch checkpoint (a Keras `.h5`/`.keras` file is "
                f"converted with `pytorch_compat.keras_to_torch`): {exc}"
            ) from exc
    state = extract_state_dict(checkpoint, source=source)
    if model is None:
        model = _infer_unet3d(state, source)
        if batch_statistics:
            model = UNet3D(model.n_class, model.n_base_filters, batch_statistics=True)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: model {tuple(expected[k].shape)}, checkpoint {tuple(state[k].shape)}"
             for k in expected if k in state and expected[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"`{source}` does not fit {type(model).__name__}: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, {len(wrong)} "
            f"shape mismatches {wrong[:3]}."
        )
    model.load_state_dict(state, strict=True)
    return model
