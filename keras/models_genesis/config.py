"""Configuration: frozen dataclasses with the paper's and the release's defaults.

`PretrainConfig` holds the proxy-task schedule (REFERENCE 5), `FinetuneConfig` the target-task
protocol (REFERENCE 6), and `TARGET_TASKS` states only what differs between the five target tasks
(paper Table 1). Override a field with `dataclasses.replace(config, field=value)`; `to_json` /
`from_json` store a config next to the checkpoints it produced.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Optional, Tuple


def _check_fields(cls, values: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"Unknown {cls.__name__} field(s): {unknown}. Valid fields: {sorted(names)}."
        )
    return values


class _JsonConfig:
    """Mixin: JSON round trip, written atomically (temporary name, then rename)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, path) -> str:
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, values: dict):
        values = dict(_check_fields(cls, values))
        for f in dataclasses.fields(cls):
            # JSON has no tuples: restore them where the default is a tuple.
            if f.name in values and isinstance(values[f.name], list):
                values[f.name] = tuple(values[f.name])
        return cls(**values)

    @classmethod
    def from_json(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


@dataclass(frozen=True)
class TargetTask:
    """What one target task fixes (paper Table 1, REFERENCE 6).

    Attributes:
        code: short name used on the command line (`ncc`, `ncs`, `ecc`, `lcs`, `bms`).
        description: one line.
        kind: `"classification"` (head on `depth_7_relu`) or `"segmentation"` (`depth_13_relu`).
        input_shape: crop size (rows, cols, deps); each must be divisible by 8.
        batch_size: release batch size.
        learning_rate: Adam learning rate.
        patience: early-stopping patience (epochs, on validation).
        metric: the paper's headline metric (`"auc"` or `"iou"`).
        modality: `"ct"` or `"mri"` (selects the intensity normalisation).
    """

    code: str
    description: str
    kind: str
    input_shape: Tuple[int, int, int]
    batch_size: int
    learning_rate: float
    patience: int
    metric: str
    modality: str = "ct"


TARGET_TASKS = {
    "ncc": TargetTask("ncc", "lung nodule false-positive reduction (LUNA16)", "classification",
                      (64, 64, 32), 24, 1e-3, 10, "auc"),
    "ncs": TargetTask("ncs", "lung nodule segmentation (LIDC-IDRI)", "segmentation",
                      (64, 64, 32), 16, 1e-3, 50, "iou"),
    "ecc": TargetTask("ecc", "pulmonary embolism false-positive reduction (CTPA)",
                      "classification", (64, 64, 64), 24, 1e-3, 38, "auc"),
    "lcs": TargetTask("lcs", "liver segmentation (LiTS 2017)", "segmentation",
                      (64, 64, 32), 16, 1e-2, 20, "iou"),
    "bms": TargetTask("bms", "brain tumour segmentation (BraTS 2018 FLAIR)", "segmentation",
                      (64, 64, 32), 16, 1e-3, 30, "iou", modality="mri"),
}


def get_target_task(code: str) -> TargetTask:
    """Return the registered target task `code`; raise `ValueError` listing the valid codes."""
    key = str(code).lower()
    if key not in TARGET_TASKS:
        raise ValueError(
            f"Unknown target task. Valid tasks: {sorted(TARGET_TASKS)}. Received: task={code!r}."
        )
    return TARGET_TASKS[key]


