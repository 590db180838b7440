"""The key of an experiment folder: what its runs were trained with, so a resume never mixes.

`experiment.json` in the experiment folder records, for the settings every run shares (`seed`,
the `FinetuneConfig` overrides), each named initialisation (its method and, for pre-trained
weights, the file and its SHA-256) and each task (its data folder as an absolute path and the
train/valid/test counts of the data loaded from it). A resumed experiment may add tasks and
methods (the table grows), but what it shares with the saved key must be equal; otherwise
`check_experiment_key` raises one `ValueError` line naming what changed, before any training.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

from models_genesis.atomic import write_json
from models_genesis.methods import METHODS, proxy_summary

KEY_FILE = "experiment.json"
KEY_FORMAT = 2
_SHARED = ("seed", "overrides")


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def method_entry(init: str, weights: Optional[str]) -> dict:
    """Key entry of one named initialisation: its method, weight file and the file's SHA-256."""
    if weights is None:
        return {"init": init, "weights": None, "sha256": None}
    path = os.path.abspath(os.fspath(weights))
    return {"init": init, "weights": path, "sha256": sha256_file(path)}


def method_proxy(init: str, weights: Optional[str]) -> dict:
    """The proxy-task score of the pre-training that wrote `weights` (`methods.proxy_summary` of
    the `metrics.json` `pretrain` writes beside them); all None for a scratch initialisation or
    weights without a run folder (e.g. the released `Genesis_Chest_CT.h5`)."""
    path = None if weights is None else os.path.join(os.path.dirname(os.path.abspath(
        os.fspath(weights))), "metrics.json")
    metrics = None
    if init in METHODS and path is not None and os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                metrics = json.load(f)
        except (OSError, ValueError):
            metrics = None
    return proxy_summary(init, metrics) if init in METHODS else proxy_summary("genesis", None)


def task_entry(data_dir, counts: Optional[dict] = None) -> dict:
    """Key entry of one task: absolute data folder (None: data given in memory) and counts
    (run_experiment adds the task loader's `options`)."""
    folder = None if data_dir is None else os.path.abspath(os.fspath(data_dir))
    return {"data_dir": folder,
            "counts": None if counts is None else {k: int(v) for k, v in sorted(counts.items())}}


def _changes(saved: dict, key: dict) -> list:
    """What differs between the saved key and the new one, in words (first items first)."""
    out = []
    for field in _SHARED:
        if saved.get(field) != key.get(field):
            out.append(f"`{field}` changed (saved {saved.get(field)!r}, now {key.get(field)!r})")
    for name, new in key.get("methods", {}).items():
        old = saved.get("methods", {}).get(name)
        if old is None:
            continue
        if old["init"] != new["init"]:
            out.append(f"method {name!r} is now `{new['init']}` (the saved runs used "
                       f"`{old['init']}`)")
        elif old["sha256"] != new["sha256"]:
            out.append(f"the weights of {name!r} changed: {new['weights']!r} has SHA-256 "
                       f"{str(new['sha256'])[:12]}..., the saved runs used {old['weights']!r} "
                       f"with {str(old['sha256'])[:12]}...")
    for task, new in key.get("tasks", {}).items():
        old = saved.get("tasks", {}).get(task)
        if old is None:
            continue
        if old.get("options") != new.get("options"):
            out.append(f"the loader options of {task!r} changed (saved {old.get('options')}, now "
                       f"{new.get('options')})")
        elif None not in (old["data_dir"], new["data_dir"]) and old["data_dir"] != new["data_dir"]:
            out.append(f"the data folder of {task!r} changed (saved {old['data_dir']!r}, now "
                       f"{new['data_dir']!r})")
        elif None not in (old["counts"], new["counts"]) and old["counts"] != new["counts"]:
            out.append(f"the data counts of {task!r} changed (saved {old['counts']}, now "
                       f"{new['counts']})")
    return out


def _merge(saved: dict, key: dict) -> dict:
    merged = json.loads(json.dumps(saved))
    for part in ("methods", "tasks"):
        for name, entry in key.get(part, {}).items():
            old = merged.setdefault(part, {}).get(name)
            if old is None:
                merged[part][name] = entry
            else:  # fill what the saved entry did not know (counts, a folder)
                merged[part][name] = {k: (entry[k] if old.get(k) is None else old[k])
                                      for k in entry}
    return merged


def check_experiment_key(out_dir, key: dict) -> dict:
    """Write the key of a new experiment, or check a resumed one against it and extend it.

    Args:
        out_dir: the experiment folder (holds `experiment.json`).
        key: `{"seed", "overrides", "methods": {name: method_entry}, "tasks": {code:
            task_entry}}`; tasks may be given twice, first without counts, then with them.

    Returns:
        The key now stored (the saved one extended by new methods, tasks and counts).

    Raises:
        ValueError: `out_dir` holds an experiment whose shared settings, method weights (by
            SHA-256), data folder or data counts differ from `key`: one line naming them.
    """
    path = os.path.join(os.fspath(out_dir), KEY_FILE)
    key = dict(json.loads(json.dumps(key)), format=KEY_FORMAT)
    if not os.path.isfile(path):
        write_json(path, key)
        return key
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    if saved.get("format") != KEY_FORMAT:
        raise ValueError(f"{os.fspath(out_dir)!r} holds an experiment written by an older version "
                         f"(no data or weights key in {KEY_FILE}); its results cannot be resumed "
                         "safely. Use another output folder.")
    changes = _changes(saved, key)
    if changes:
        raise ValueError(f"{os.fspath(out_dir)!r} holds an experiment with other settings, so its "
                         "results cannot be resumed: " + "; ".join(changes) + ". Use another "
                         "output folder, or the experiment's settings.")
    merged = _merge(saved, key)
    if merged != saved:
        write_json(path, merged)
    return merged
