"""Pre-training methods: Models Genesis and the paper's self-supervised 3D baselines (Table 3).

Each method is one module (named with the paper's words) exposing the same interface, so that
`models-genesis pretrain --method M` runs any of them on the same cube files (App. A):

    NAME, WRITES ("unet": the whole `unet_model_3d`; "encoder": its layers depth_0..7 only),
    Options (frozen dataclass, the paper's values as defaults), check(options, cube_shape,
    n_train_cubes), make_dataset(files, batch_size, *, options, cube_shape, seed, shuffle,
    validation, samples_per_epoch=None, **pydataset_kwargs), build_model(cube_shape, options, *,
    n_base_filters, depth, kernel_initializer, bn_momentum) -> (saved, trainable), loss(options),
    metrics(options), callbacks(options, saved, trainable, datasets), chance_level(options).

Modules are imported lazily (`get_method`), so a method that fails to import does not break
the others.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
from typing import Dict, Iterable, Optional

from models_genesis.config import METHOD_NAMES

METHODS: Dict[str, str] = {name: f"models_genesis.methods.{name}" for name in METHOD_NAMES}
# What each method writes, known without importing it (finetune checks weight files with it).
RESTORATION_METHODS = ("genesis", "denoising", "inpainting", "patch_shuffling")
ENCODER_METHODS = ("jigsaw", "rubik", "deepcluster")


def check_method_name(name) -> str:
    """Return `name` if it is a registered method; else raise ValueError listing them."""
    if name not in METHODS:
        raise ValueError(f"Unknown pre-training method. Valid methods: {sorted(METHODS)}. "
                         f"Received: method={name!r}.")
    return name


def get_method(name):
    """Import and return the module of method `name` (see the module docstring)."""
    return importlib.import_module(METHODS[check_method_name(name)])


def option_names(name) -> list:
    """The option names (fields of `Options`) of method `name`."""
    return [f.name for f in dataclasses.fields(get_method(name).Options)]


def make_options(name, values: Optional[dict] = None, *, scheme: str = "genesis"):
    """Build the `Options` of method `name` from a dict (e.g. `method_options` of a config).

    Lists (JSON) become tuples. For `genesis`, `scheme` (a name of `SCHEMES`, or one joined with
    "+" such as `nonlinear+local_shuffling`) sets the probabilities and `values` override fields
    of its `TransformConfig`; other methods take no scheme.

    Raises:
        ValueError: unknown method, an option the method does not have (the message names the
            valid ones), a scheme for another method, or a bad option value.
    """
    module = get_method(name)
    if isinstance(values, module.Options):
        values = dataclasses.asdict(values)
    values = dict(values or {})
    valid = option_names(name) + (["preset"] if hasattr(module, "options_for_scheme") else [])
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} of method {name!r}. Valid options: "
                         f"{valid}.")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    if hasattr(module, "options_for_scheme"):
        return module.options_for_scheme(scheme, **values)
    if scheme != "genesis":
        raise ValueError(f"`scheme` is an option of method 'genesis' only; method {name!r} has "
                         f"its own options {valid}. Received: scheme={scheme!r}.")
    try:
        return module.Options(**values)
    except TypeError as exc:  # e.g. a string where a number was expected
        raise ValueError(f"Bad option value for method {name!r}: {exc}. "
                         f"Received: {values}.") from exc


def parse_option_args(pairs: Iterable[str]) -> dict:
    """Parse `KEY=VALUE` strings (the CLI's `--option`) into a dict.

    Values are Python literals where they parse (`0.5`, `10`, `1,4` -> `(1, 4)`, `true`),
    strings otherwise (`loss_region=whole`).

    Raises:
        ValueError: an item without `=` or with an empty key.
    """
    out = {}
    for item in pairs:
        key, sep, text = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"Options must be given as KEY=VALUE. Received: {item!r}.")
        text = text.strip()
        lowered = {"true": True, "false": False, "none": None}
        if text.lower() in lowered:
            out[key] = lowered[text.lower()]
            continue
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def proxy_summary(name: str, metrics: Optional[dict]) -> dict:
    """Did pre-training learn its proxy task? From a run's `metrics.json` (`pretrain`).

    Restoration methods: validation MSE of the model against that of doing nothing (the
    transformed input itself), learned when lower. Classification methods: validation accuracy
    of each head against its chance level (`chance_level`), learned when every head is above it
    by 3 binomial standard errors over the `n_val` validation samples (a head that learned nothing
    stays within them with probability ~0.999).

    Returns:
        dict with `proxy_metric` (words), `proxy_score`, `proxy_chance` and `proxy_learned`
        (True / False; None when `metrics` is None or lacks the numbers).
    """
    unknown = {"proxy_metric": None, "proxy_score": None, "proxy_chance": None,
               "proxy_learned": None}
    if not metrics:
        return unknown
    if name in RESTORATION_METHODS:
        if "model_mse" not in metrics or "identity_mse" not in metrics:
            return unknown
        score, chance = float(metrics["model_mse"]), float(metrics["identity_mse"])
        return {"proxy_metric": "validation MSE (doing nothing: the transformed input's)",
                "proxy_score": score, "proxy_chance": chance, "proxy_learned": score < chance}
    chance = metrics.get("chance_level") or {}
    heads = [k for k in chance if k.endswith("accuracy") and k in metrics]
    if not heads:
        return unknown
    n = float(metrics.get("n_val") or 0)
    learned = all(
        n > 0 and float(metrics[k]) > chance[k] + 3 * (chance[k] * (1 - chance[k]) / n) ** 0.5
        for k in heads)
    return {"proxy_metric": "validation " + ", ".join(heads).replace("_", " "),
            "proxy_score": "; ".join(f"{float(metrics[k]):.4g}" for k in heads)
            if len(heads) > 1 else float(metrics[heads[0]]),
            "proxy_chance": "; ".join(f"{chance[k]:.4g}" for k in heads)
            if len(heads) > 1 else float(chance[heads[0]]),
            "proxy_learned": bool(learned)}


def encoder_layer_names(depth: int = 4) -> list:
    """Names of the encoder's weighted layers of a depth-`depth` `unet_model_3d`
    (`depth_0_conv`, `depth_0_bn`, ..., `depth_{2*depth-1}_bn`)."""
    return [f"depth_{i}_{kind}" for i in range(2 * depth) for kind in ("conv", "bn")]
