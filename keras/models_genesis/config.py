"""Configuration: frozen dataclasses with the paper's and the release's defaults.

`PretrainConfig` holds the proxy-task schedule (docs/release_reference.md, 'Pre-training schedule'),
`FinetuneConfig` the target-task protocol (docs/release_reference.md, 'Target tasks'), and
`TARGET_TASKS` states only what differs between the five target tasks (paper Table 1). Override a
field with `dataclasses.replace(config, field=value)`; `to_json` / `from_json` store a config next
to the checkpoints it produced.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

from models_genesis.atomic import write_json
from models_genesis.transformations.unified import TransformConfig


@dataclass(frozen=True)
class Range:
    """The values a number may take: `kind` (int or float), finite, within `[lo, hi]`.

    One table of ranges serves the configs' checks and the command line's parsing (the CLI turns
    a `Range` into an argparse type), so a number is refused where it is parsed, before any work.

    Attributes:
        kind: `int` or `float`.
        lo, hi: the bounds (None: unbounded on that side).
        lo_open, hi_open: exclude the bound itself (e.g. a learning rate > 0).
    """

    kind: type = int
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        """The range in words, e.g. "an integer in [1, 1000000]"."""
        what = "an integer" if self.kind is int else "a number"
        if self.lo is None and self.hi is None:
            return f"{what} (finite)"
        def text(v):
            return str(int(v)) if self.kind is int or float(v).is_integer() else f"{v:g}"

        lo = "-inf" if self.lo is None else text(self.lo)
        hi = "inf" if self.hi is None else text(self.hi)
        return (f"{what} in {'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}"
                f"{')' if self.hi_open or self.hi is None else ']'}")

    def accepts(self, value) -> bool:
        """Whether `value` lies in the range (bools and non-finite numbers never do)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and int(value) != value or not math.isfinite(value):
            return False
        if self.lo is not None and (value < self.lo or self.lo_open and value == self.lo):
            return False
        return not (self.hi is not None and (value > self.hi or self.hi_open and value == self.hi))

    def argtype(self, *, optional: bool = False):
        """An argparse `type` parsing a number in this range, refusing others while the command
        line is parsed (`optional`: `none` gives None). The range is kept as `.range`."""
        import argparse

        def parse(text):
            if optional and str(text).lower() == "none":
                return None
            try:
                value = float(text) if self.kind is float else int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"must be {self.describe()}. Received: {text!r}") from None
            if not self.accepts(value):
                raise argparse.ArgumentTypeError(f"must be {self.describe()}. Received: {text}")
            return value

        parse.__name__ = self.kind.__name__
        parse.range = self
        return parse

    def check(self, value, name: str):
        """Return `value` (as `kind`) if it lies in the range, else raise ValueError naming it."""
        try:
            number = float(value) if not isinstance(value, (bool, int)) else value
        except (TypeError, ValueError):
            number = None
        if number is None or not self.accepts(number):
            raise ValueError(f"`{name}` must be {self.describe()}. Received: {name}={value!r}.")
        return self.kind(number)


# Bounds of the fields of the configs below (and of the CLI options that set them). The upper
# bounds are far above any setting of the paper (Tables 1-3, App. A) and below what a machine
# can hold or finish.
MAX_EPOCHS = 1_000_000
MAX_STEPS = 10_000_000
CONFIG_RANGES: Dict[str, Range] = {
    "epochs": Range(int, 1, MAX_EPOCHS),
    "batch_size": Range(int, 1, 4096),
    "steps_per_epoch": Range(int, 1, MAX_STEPS),
    "validation_steps": Range(int, 1, MAX_STEPS),
    "patience": Range(int, 1, MAX_EPOCHS),
    "lr_patience": Range(int, 1, MAX_EPOCHS),
    "n_base_filters": Range(int, 1, 1024),
    "depth": Range(int, 1, 8),
    "max_queue_size": Range(int, 1, 10_000),
    "scale": Range(int, 1, 100_000),
    "workers": Range(int, 0, 1024),
    "sample_every": Range(int, 0, MAX_EPOCHS),
    "seed": Range(int, 0, 2 ** 32 - 1),
    "learning_rate": Range(float, 0, 100, lo_open=True),
    "lr_factor": Range(float, 0, 1, lo_open=True, hi_open=True),
    "min_lr": Range(float, 0, 100, lo_open=True),
    "adam_epsilon": Range(float, 0, 1, lo_open=True),
    "momentum": Range(float, 0, 1),
    "weight_decay": Range(float, 0, 1),
    "lr_min_delta": Range(float, 0, 1e3),
    "bn_momentum": Range(float, 0, 1, hi_open=True),
    "label_fraction": Range(float, 0, 1, lo_open=True),
    "fold": Range(int, 0, 100),
}
SIDE_RANGE = Range(int, 1, 4096)  # a crop, cube, window or image side in voxels
SPACING_RANGE = Range(float, 0.1, 50.0)  # mm: finer than any CT or MRI, coarser than none
# Arrays a command allocates are checked against this before they are allocated.
MAX_ALLOCATION_BYTES = 64 * 2 ** 30


def check_allocation(n_bytes, what: str, *, limit: Optional[int] = None) -> int:
    """Refuse, before allocating, arrays of `n_bytes` bytes in all (estimated by the caller).

    The limit is the smaller of `MAX_ALLOCATION_BYTES` and the machine's physical memory (where
    the OS says it), unless `limit` is given.

    Raises:
        ValueError: naming `what`, the estimate and the limit.
    """
    if limit is None:
        limit = MAX_ALLOCATION_BYTES
        try:
            limit = min(limit, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (AttributeError, ValueError, OSError):
            pass
    n_bytes = float(n_bytes)
    if not math.isfinite(n_bytes) or n_bytes > limit:
        raise ValueError(f"{what} would need {_size(n_bytes)} of memory, more than this machine "
                         f"allows ({_size(limit)}); choose smaller values.")
    return int(n_bytes)


def _size(n_bytes: float) -> str:
    if not math.isfinite(n_bytes):
        return "an unbounded amount"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return f"{n_bytes:.1f} PiB"


def _check_ranges(config, names) -> None:
    """Check the fields `names` of a config (None allowed) against `CONFIG_RANGES`."""
    for name in names:
        value = getattr(config, name)
        if value is not None:
            CONFIG_RANGES[name].check(value, name)


def _check_positive_integers(config, names) -> None:
    """Check that the fields `names` of a config are None or integers >= 1 (bools are not)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}.")


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
        return write_json(path, self.to_dict())

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
        """Read a config written by `to_json`; every error names the file.

        Raises:
            FileNotFoundError: no such file.
            ValueError: empty, not JSON, not an object, an unknown field or a bad value.
        """
        path = os.fspath(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            values = json.loads(text)
        except ValueError as exc:
            what = "is empty" if not text.strip() else f"is not JSON ({exc})"
            raise ValueError(f"{path!r} {what}; expected the {cls.__name__} that "
                             "models-genesis wrote there.") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path!r} must hold a JSON object of {cls.__name__} fields. "
                             f"Received: a JSON {type(values).__name__}.")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path!r}: {exc}") from None


@dataclass(frozen=True)
class TargetTask(_JsonConfig):
    """The single definition of one target task (paper Table 1, Sec. 3.2; docs/release_reference.md,
    'Target tasks').

    It states the data layout, the preprocessing, the split, the head and the metric. Fine-tuning
    writes the task of each run, with the values that run used, as `task.json` next to the model
    (`TargetTask.from_json(run / "task.json")`); `predict-volume --model RUN` and the evaluation
    read it back, so a preprocessing setting is never repeated by the user.

    Attributes:
        code: short name used on the command line (`ncc`, `ncs`, `ecc`, `lcs`, `bms`, and
            `custom`: your own data set, docs/your_own_data.md).
        description: one line.
        kind: `"classification"` (head on `depth_7_relu`) or `"segmentation"` (`depth_13_relu`).
        input_shape: crop size (rows, cols, deps) fed to the model; each divisible by 8.
        batch_size: release batch size.
        learning_rate: Adam learning rate.
        patience: early-stopping patience (epochs, on validation).
        metric: the paper's headline metric (`"auc"` or `"iou"`).
        modality: `"ct"` or `"mri"`: selects the intensity normalisation (`intensity_window`);
            `"per_channel"`: each channel as `channels` says (task `custom`).
        intensity_window: (lo, hi) clipped and scaled to [0, 1] (CT: [-1000, 1000] HU); None for
            `"mri"`, which means min-max scaling per patient (over the whole scan).
        spacing: voxel spacing in mm (x, y, z) every scan is resampled to first; None keeps each
            scan's own grid.
        crop_scale: scan voxels per model voxel: crops of `input_shape * crop_scale` voxels are
            resized to `input_shape` (BMS: 100x100x50 -> 64x64x32, 1.5625); 1 cuts `input_shape`.
        layout: the data set as downloaded (what `models-genesis prepare --task` reads).
        split: how patients are split into train / validation / test.
        head: the model built on the U-Net for this task.
        channels: the intensity scaling of each input channel (`"ct"`, `"mr"`, `"zscore"`,
            `"none"`; see `models_genesis.data.target_tasks.custom.CHANNEL_INTENSITIES`) with
            `modality="per_channel"` (your own data, task `custom`); None: one channel scaled
            by `modality`.
        n_classes: outputs of the head: 1 (a sigmoid over the foreground or the positive
            class, the paper's tasks) or the number of classes, background included (a
            softmax; task `custom`).
        label_values: the label value of each class (segmentation: the values of the data
            set's label files, 0 first; classification: the CSV's labels), written back by
            `predict-volume`; None for the paper's tasks.
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
    intensity_window: Optional[Tuple[float, float]] = (-1000.0, 1000.0)
    spacing: Optional[Tuple[float, float, float]] = None
    crop_scale: float = 1.0
    layout: str = ""
    split: str = ""
    head: str = ""
    channels: Optional[Tuple[str, ...]] = None
    n_classes: int = 1
    label_values: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        if self.kind not in ("classification", "segmentation"):
            raise ValueError("`kind` must be 'classification' or 'segmentation'. "
                             f"Received: kind={self.kind!r}.")
        if self.modality not in ("ct", "mri", "per_channel"):
            raise ValueError("`modality` must be 'ct', 'mri' or 'per_channel'. "
                             f"Received: modality={self.modality!r}.")
        if (self.modality == "per_channel") != (self.channels is not None):
            raise ValueError("`channels` (one intensity scaling per input channel) goes with "
                             "modality='per_channel', and only with it. Received: "
                             f"modality={self.modality!r}, channels={self.channels!r}.")
        if self.channels is not None:
            if isinstance(self.channels, str) or not len(self.channels):
                raise ValueError("`channels` must be a non-empty list of intensity scalings. "
                                 f"Received: channels={self.channels!r}.")
            object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        if isinstance(self.n_classes, bool) or int(self.n_classes) != self.n_classes \
                or self.n_classes < 1:
            raise ValueError(f"`n_classes` must be a positive integer. "
                             f"Received: n_classes={self.n_classes!r}.")
        object.__setattr__(self, "n_classes", int(self.n_classes))
        if self.label_values is not None:
            values = tuple(int(v) for v in self.label_values)
            n = max(2, self.n_classes)  # a sigmoid head has two classes
            if len(values) != n or len(set(values)) != len(values):
                raise ValueError(f"`label_values` must give {n} distinct values, one per class. "
                                 f"Received: label_values={self.label_values!r}.")
            object.__setattr__(self, "label_values", values)
        if self.modality == "ct" and self.intensity_window is None:
            raise ValueError("A CT task needs an `intensity_window` (lo, hi) in HU. "
                             "Received: intensity_window=None.")
        if self.intensity_window is not None:
            lo, hi = (float(v) for v in self.intensity_window)
            if not lo < hi:
                raise ValueError("`intensity_window` must be (lo, hi) with lo < hi. "
                                 f"Received: intensity_window={self.intensity_window!r}.")
            object.__setattr__(self, "intensity_window", (lo, hi))
        if self.spacing is not None:
            if isinstance(self.spacing, (str, bytes)) or len(tuple(self.spacing)) != 3:
                raise ValueError("`spacing` must be 3 sizes in mm (X, Y, Z) or None. "
                                 f"Received: spacing={self.spacing!r}.")
            spacing = tuple(SPACING_RANGE.check(v, "spacing") for v in self.spacing)
            object.__setattr__(self, "spacing", spacing)
        if not Range(float, 1.0, 100.0).accepts(_number(self.crop_scale)):
            raise ValueError("`crop_scale` must be a number in [1, 100]. "
                             f"Received: crop_scale={self.crop_scale!r}.")
        object.__setattr__(self, "crop_scale", float(self.crop_scale))
        shape = self.input_shape
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 3 \
                or not all(SIDE_RANGE.accepts(_number(v)) and int(v) % 8 == 0 for v in shape):
            raise ValueError("`input_shape` must be 3 sizes, each a positive multiple of 8 (three "
                             f"2x poolings) up to {SIDE_RANGE.hi}. "
                             f"Received: input_shape={self.input_shape!r}.")
        object.__setattr__(self, "input_shape", tuple(int(s) for s in shape))
        for name in ("batch_size", "patience"):
            CONFIG_RANGES[name].check(getattr(self, name), name)
        CONFIG_RANGES["learning_rate"].check(self.learning_rate, "learning_rate")

    @property
    def n_channels(self) -> int:
        """Input channels of the model (1 unless `channels` names several)."""
        return 1 if self.channels is None else len(self.channels)

    def preprocessing(self) -> dict:
        """The preprocessing of this task in one dict (what `task.json` readers need)."""
        return {"modality": self.modality, "intensity_window": self.intensity_window,
                "spacing": self.spacing, "input_shape": self.input_shape,
                "crop_scale": self.crop_scale, "channels": self.channels,
                "n_classes": self.n_classes, "label_values": self.label_values}


def _number(value):
    """`value` as a number where it is one (bools and text are not), else None."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_CLASSIFIER = ("U-Net encoder: depth_7_relu -> GlobalAveragePooling3D -> Dense(1024, relu) -> "
               "Dense(1, sigmoid); binary cross-entropy")
_SEGMENTER = "whole U-Net: depth_13_relu -> Conv3D(1, 1x1x1) -> sigmoid; loss 1 - Dice"

TARGET_TASKS = {
    "ncc": TargetTask(
        "ncc", "lung nodule false-positive reduction (LUNA16)", "classification",
        (64, 64, 32), 24, 1e-3, 10, "auc",
        layout="LUNA16: subset0/ .. subset9/{seriesuid}.mhd + .raw, candidates_V2.csv (or "
               "candidates.csv: seriesuid, coordX, coordY, coordZ, class; world mm)",
        split="LUNA16 subsets 0-4 / 5-6 / 7-9 (445 / 178 / 265 patients)", head=_CLASSIFIER),
    "ncs": TargetTask(
        "ncs", "lung nodule segmentation (LIDC-IDRI)", "segmentation",
        (64, 64, 32), 16, 1e-3, 50, "iou", spacing=(1.0, 1.0, 1.0),
        layout="LIDC-IDRI: DICOM series + the readers' XML per scan; or the release's "
               "x_/m_*_64x64x32.npy; or volumes + masks/ + annotations.csv (chest phantoms)",
        split="patient-level, seeded, 510 / 100 / 408", head=_SEGMENTER),
    "ecc": TargetTask(
        "ecc", "pulmonary embolism false-positive reduction (CTPA)", "classification",
        (64, 64, 64), 24, 1e-3, 38, "auc",
        layout="volumes {patient}.nii.gz (any SimpleITK format) + candidates.csv "
               "(seriesuid or FileName, coordX, coordY, coordZ, class; world mm)",
        split="the release's train_cv-k / val_cv-k / test_cv-k lists (--split-dir, --fold), or "
              "seeded 0.6 / 0.1 / 0.3", head=_CLASSIFIER),
    "lcs": TargetTask(
        "lcs", "liver segmentation (LiTS 2017)", "segmentation",
        (64, 64, 32), 16, 1e-2, 20, "iou",
        layout="LiTS: volume-N.nii[.gz] + segmentation-N.nii[.gz] (0 background, 1 liver, "
               "2 tumour; liver = 1 and 2)",
        split="patient-level, seeded, 100 / 15 / 15; test scored on whole volumes",
        head=_SEGMENTER),
    "bms": TargetTask(
        "bms", "brain tumour segmentation (BraTS 2018 FLAIR)", "segmentation",
        (64, 64, 32), 16, 1e-3, 30, "iou", modality="mri", intensity_window=None,
        crop_scale=100 / 64,
        layout="BraTS 2018: HGG/ and LGG/{patient}/{patient}_flair.nii.gz + _seg.nii.gz "
               "(labels 1, 2, 4 = tumour)",
        split="3 folds (the release's fold lists with --split-dir, or seeded); test = one "
              "fold, scored on whole volumes", head=_SEGMENTER),
    # Your own data (docs/your_own_data.md): kind, channels and classes come from the data
    # set's dataset.json (or a classification CSV) and are written to the run's task.json.
    "custom": TargetTask(
        "custom", "your own labelled data set (Medical Segmentation Decathlon or nnU-Net v2 "
        "layout)", "segmentation", (64, 64, 32), 16, 1e-3, 20, "dice",
        modality="per_channel", intensity_window=None, channels=("mr",), n_classes=2,
        layout="Decathlon: TaskNN_Name/imagesTr/{case}.nii.gz (4D when multi-modal), "
               "labelsTr/{case}.nii.gz, dataset.json (modality, labels, training); or nnU-Net "
               "v2: DatasetNNN_Name/imagesTr/{case}_{XXXX}.nii.gz (one file per channel), "
               "labelsTr/{case}.nii.gz, dataset.json (channel_names, labels, file_ending); "
               "classification: a CSV case,label beside imagesTr/",
        split="splits_final.json (nnU-Net) fold --fold, else a seeded 5-fold split; test = "
              "the fold, validation carved from the rest; scored on whole volumes",
        head="whole U-Net: depth_13_relu -> Conv3D(classes, 1x1x1) -> softmax; loss Dice + "
             "cross-entropy (classification: encoder -> Dense(1024) -> Dense(classes))"),
}


def get_target_task(code: str) -> TargetTask:
    """Return the registered target task `code`; raise `ValueError` listing the valid codes."""
    key = str(code).lower()
    if key not in TARGET_TASKS:
        raise ValueError(
            f"Unknown target task. Valid tasks: {sorted(TARGET_TASKS)}. Received: task={code!r}."
        )
    return TARGET_TASKS[key]


# Pre-training methods (`models_genesis.methods`, paper Table 3 and App. A): each writes weights
# that `FinetuneConfig(init=method)` loads. The scratch initialisers are the paper's baselines.
METHOD_NAMES = ("genesis", "denoising", "inpainting", "patch_shuffling", "jigsaw", "rubik",
                "deepcluster")
SCRATCH_INITS = ("uniform", "glorot_uniform", "he_uniform")
_INITS = METHOD_NAMES + SCRATCH_INITS


@dataclass(frozen=True)
class FinetuneConfig(_JsonConfig):
    """One fine-tuning run on a target task (paper Sec. 3.2;
    docs/release_reference.md, 'Target tasks').

    Fields left `None` take the task's value from `TARGET_TASKS`; call `resolve()` to fill them.

    Attributes:
        task: target-task code (`ncc`, `ncs`, `ecc`, `lcs`, `bms`).
        init: a pre-training method of `METHOD_NAMES` (`"genesis"`, `"denoising"`, ...: the
            weights `pretrain --method` wrote) or a scratch baseline initialiser (`"uniform"`,
            `"glorot_uniform"`, `"he_uniform"`).
        weights: weights file (or, for genesis, a preset name) for a method init; None for
            scratch.
        data_dir: folder of the target-task data.
        out_dir: folder for checkpoints, logs and this config as JSON.
        epochs: maximum epochs; early stopping ends a run sooner (the release sets 10000).
        batch_size, learning_rate, patience: None -> the task's value.
        lr_patience, lr_factor, min_lr: ReduceLROnPlateau on the validation loss (0.5, 6).
        adam_epsilon: Adam epsilon of the paper (1e-8; Keras' default is 1e-7).
        label_fraction: fraction of the training labels used, in (0, 1] (paper Fig. 6).
        seed: seed of this run (data order, label subset, augmentation, scratch weights).
        n_base_filters: filters of the first U-Net stage (32 in the paper).
        input_shape: crop (rows, cols, deps), each divisible by 8; None -> the task's crop.
        augment: apply the 3D augmentation (flips, transposes, rotations, noise).
        steps_per_epoch, validation_steps: None -> one pass over the data.
        fold: cross-validation fold (BMS uses 3 folds); None for tasks with a fixed split.
        workers: data-loading workers of the `PyDataset`.
        head: `"release"` (classification: Dense(1024) -> Dense(1)) or `"linear"` (a linear
            classifier on the pooled encoder features; transfer scenario 1, Sec. 3.2).
        freeze_encoder: keep the encoder (depth_0..7) fixed, BatchNorm in inference mode.
        freeze_blocks: other `depth_{i}` blocks (0..13) to keep fixed, e.g. `(0, 1, 2, 3)`.
        data_options: the task loader's keyword options (see `load_target_data`), e.g.
            `{"negative_ratio": 10, "errors": "skip", "split_dir": "splits/"}`; None: none.
        bn_momentum: momentum of every BatchNormalization layer's moving statistics during
            the run, in [0, 1); None keeps the model's (the release's 0.99, which a pre-trained
            model and a scratch one alike need hundreds of steps to move away from: short runs
            on few labels are validated and tested with statistics they were not trained with).
        tensorboard: write TensorBoard logs to `out_dir/tensorboard` (needs TensorFlow
            installed), as pre-training does; nothing without an `out_dir`.
        devices: devices each batch is split over (`training.devices`): an integer or
            `"auto"` (all present); JAX: `keras.distribution.DataParallel`, TensorFlow:
            `tf.distribute.MirroredStrategy`. `batch_size` must be divisible by it.
        strategy: `none`, `mirrored` or `multiworker` (tf.distribute, TensorFlow backend).
        mixed_precision: None, `bf16` or `fp16` (the head's output and the loss stay float32).
    """

    task: str = "ncs"
    init: str = "genesis"
    weights: Optional[str] = None
    data_dir: Optional[str] = None
    out_dir: Optional[str] = None
    epochs: int = 10000
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    patience: Optional[int] = None
    lr_patience: int = 6
    lr_factor: float = 0.5
    min_lr: float = 1e-6
    adam_epsilon: float = 1e-8
    label_fraction: float = 1.0
    seed: int = 0
    n_base_filters: int = 32
    input_shape: Optional[Tuple[int, int, int]] = None
    augment: bool = True
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    fold: Optional[int] = None
    workers: int = 1
    head: str = "release"
    freeze_encoder: bool = False
    freeze_blocks: Tuple[int, ...] = ()
    data_options: Optional[dict] = None
    bn_momentum: Optional[float] = None
    tensorboard: bool = True
    devices: Union[int, str] = 1
    strategy: str = "none"
    mixed_precision: Optional[str] = None

    def __post_init__(self):
        get_target_task(self.task)
        _check_placement(self)
        if self.data_options is not None and not isinstance(self.data_options, dict):
            raise ValueError("`data_options` must be a dict of loader options or None. "
                             f"Received: data_options={self.data_options!r}.")
        if self.head not in ("release", "linear"):
            raise ValueError("`head` must be 'release' or 'linear'. "
                             f"Received: head={self.head!r}.")
        blocks = tuple(self.freeze_blocks or ())
        if any(isinstance(b, bool) or int(b) != b or not 0 <= b <= 13 for b in blocks):
            raise ValueError("`freeze_blocks` must be U-Net block indices in 0..13 (depth_{i}). "
                             f"Received: freeze_blocks={self.freeze_blocks!r}.")
        object.__setattr__(self, "freeze_blocks", tuple(sorted({int(b) for b in blocks})))
        if self.init not in _INITS:
            raise ValueError(f"`init` must be one of {list(_INITS)}. Received: init={self.init!r}.")
        if self.init in SCRATCH_INITS and self.weights is not None:
            raise ValueError(f"`weights` is for a pre-training method's init; init={self.init!r} "
                             "trains from scratch and would ignore it. Drop --weights, or pass "
                             f"the method that wrote it as --init. Received: weights="
                             f"{self.weights!r}.")
        if not 0.0 < float(self.label_fraction) <= 1.0:
            raise ValueError("`label_fraction` must be in (0, 1]. "
                             f"Received: label_fraction={self.label_fraction!r}.")
        _check_positive_integers(self, ("epochs", "batch_size", "patience", "lr_patience",
                                        "n_base_filters", "steps_per_epoch", "validation_steps",
                                        "workers"))
        for name in ("learning_rate", "lr_factor", "min_lr", "adam_epsilon"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0:
                raise ValueError(f"`{name}` must be > 0. Received: {name}={value!r}.")
        _check_ranges(self, ("epochs", "batch_size", "patience", "lr_patience", "n_base_filters",
                             "steps_per_epoch", "validation_steps", "workers", "seed",
                             "learning_rate", "lr_factor", "min_lr", "adam_epsilon", "fold"))
        if self.bn_momentum is not None and (isinstance(self.bn_momentum, bool)
                                             or not 0 <= float(self.bn_momentum) < 1):
            raise ValueError("`bn_momentum` must be a float in [0, 1) or None. "
                             f"Received: bn_momentum={self.bn_momentum!r}.")
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if len(shape) != 3 or any(int(s) != s or s < 8 or s % 8 for s in shape):
                raise ValueError("`input_shape` must be 3 sizes, each a positive multiple of 8 "
                                 "(three 2x poolings). "
                                 f"Received: input_shape={self.input_shape!r}.")
            object.__setattr__(self, "input_shape", tuple(int(s) for s in shape))

    @property
    def target_task(self) -> TargetTask:
        """The `TargetTask` registered for `task`."""
        return get_target_task(self.task)

    def resolve(self) -> "FinetuneConfig":
        """Return a copy whose `None` task-dependent fields hold the task's values."""
        t = self.target_task
        filled = {
            "task": t.code,
            "batch_size": t.batch_size if self.batch_size is None else self.batch_size,
            "learning_rate": t.learning_rate if self.learning_rate is None else self.learning_rate,
            "patience": t.patience if self.patience is None else self.patience,
            "input_shape": t.input_shape if self.input_shape is None else self.input_shape,
        }
        return dataclasses.replace(self, **filled)


PRETRAIN_SCHEMES = ("genesis", "identity", "nonlinear", "local_shuffling", "outer_cutout",
                    "inner_cutout")
STRATEGIES = ("none", "mirrored", "multiworker")
MIXED_PRECISION = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def parse_devices(value) -> Union[int, str]:
    """A device count: a positive integer (also given as text) or `"auto"` (every device).

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if isinstance(value, bool) or number is None or number < 1 or number != float(value):
        raise ValueError(f"`devices` must be a positive integer or 'auto'. "
                         f"Received: devices={value!r}.")
    return number


def _check_placement(config) -> None:
    """Check (and normalise) `devices`, `strategy` and `mixed_precision` of a config."""
    object.__setattr__(config, "devices", parse_devices(config.devices))
    if config.strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {list(STRATEGIES)}. "
                         f"Received: strategy={config.strategy!r}.")
    if config.mixed_precision is not None and config.mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"`mixed_precision` must be None or one of {list(MIXED_PRECISION)}. "
                         f"Received: mixed_precision={config.mixed_precision!r}.")
_OPTIMIZERS = ("sgd", "adam")
_LOSSES = ("mse", "mae")
SCHEDULES = ("plateau", "fixed")
# Each method's training as its authors ran it (docs/methods.md holds the sources), where the
# Models Genesis paper does not say otherwise. The restoration methods share the release's schedule
# (docs/release_reference.md, 'Pre-training schedule': SGD 1.0, momentum 0.9, ReduceLROnPlateau and
# EarlyStopping on val_loss).
_RELEASE_TRAINING = {"optimizer": "sgd", "learning_rate": 1.0, "momentum": 0.9,
                     "weight_decay": 0.0, "schedule": "plateau"}
METHOD_TRAINING = {
    "genesis": _RELEASE_TRAINING,
    "denoising": _RELEASE_TRAINING,
    "inpainting": _RELEASE_TRAINING,
    "patch_shuffling": _RELEASE_TRAINING,
    # App. A.3 uses Taleb et al.'s (2020) implementation: Adam at 1e-4 (their public code's
    # algorithms/jigsaw.py and configs/train/jigsaw_3d.json), best val_loss kept.
    "jigsaw": {"optimizer": "adam", "learning_rate": 1e-4, "momentum": 0.0, "weight_decay": 0.0,
               "schedule": "plateau"},
    # Zhuang et al. (2019) state no optimiser we could find and published no code (App. A): the
    # 3D puzzle tasks' Adam at 1e-4 (Taleb et al. 2020), as Jigsaw, its closest relative.
    "rubik": {"optimizer": "adam", "learning_rate": 1e-4, "momentum": 0.0, "weight_decay": 0.0,
              "schedule": "plateau"},
    # Caron et al. (2018), public main.py: SGD, lr 0.05, momentum 0.9, weight decay 1e-5, a fixed
    # number of epochs (200), the last model.
    "deepcluster": {"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9,
                    "weight_decay": 1e-5, "schedule": "fixed"},
}
_METHOD_DEFAULTED = ("optimizer", "learning_rate", "momentum", "weight_decay", "schedule")
# PretrainConfig's numeric fields by the sign they must have (their bounds: `CONFIG_RANGES`).
_PRETRAIN_COUNTS = ("batch_size", "epochs", "steps_per_epoch", "validation_steps", "lr_patience",
                    "patience", "n_base_filters", "depth", "max_queue_size", "scale")
_PRETRAIN_NON_NEGATIVE = ("workers", "sample_every", "seed")
_PRETRAIN_POSITIVE_RATES = ("learning_rate", "lr_factor", "min_lr")
_PRETRAIN_NON_NEGATIVE_RATES = ("momentum", "weight_decay", "lr_min_delta")


@dataclass(frozen=True)
class PretrainConfig(_JsonConfig):
    """One pre-training run (paper Sec. 2, docs/release_reference.md, 'Cube extraction' and
    'Pre-training schedule'): Models Genesis' restoration or another proxy task of
    `models_genesis.methods` (`method`, paper Table 3 and App. A).

    Defaults are the release's; `PretrainConfig.preset("demo")` is the small phantom setting.

    Attributes:
        data_dir: folder of cube files `bat_{scale}_s_{r}x{c}x{d}_{subset}.npy`.
        out_dir: run folder (config, weights, logs, figures, resumable backup).
        cube_shape: cube (rows, cols, deps), each divisible by `2**(depth-1)`; (64, 64, 32).
            With `dims=2`: (rows, cols, 1), the slices of `data.pretraining.slices` (one voxel deep).
        dims: 3 (Genesis Chest CT, `unet_model_3d`) or 2 (Genesis Chest CT 2D / X-ray,
            `unet_model_2d` on slices or radiographs); presets `release_2d`, `demo_2d`.
        train_subsets, val_subsets: cube-file subsets; LUNA16 0-4 and 5-6.
        scale: cubes per scan in the file names to pick; None accepts any single one.
        scheme: `genesis` (combined), one ablation scheme (paper Fig. 3) or transformations
            joined with "+" (`nonlinear+local_shuffling`); method `genesis` only.
        method: the pre-training method (`METHOD_NAMES`, `models_genesis.methods`): `genesis`
            or a self-supervised baseline of Table 3 (App. A).
        method_options: the method's options (fields of its `Options`; for genesis, of
            `TransformConfig`) overriding the paper's values, as a dict or an `Options` /
            `TransformConfig` instance (stored as its dict); None for the defaults. `pretrain`
            stores every option's value here in the run's config.json.
        batch_size: 6; reduced by 2 on out-of-memory errors.
        epochs: maximum epochs (the release: 10000); early stopping ends runs sooner.
        steps_per_epoch, validation_steps: None -> one pass over all cubes.
        optimizer, learning_rate, momentum, weight_decay, schedule: None takes the method's own
            (`METHOD_TRAINING`, each from its authors; docs/methods.md): genesis and the
            restoration baselines the release's SGD at 1.0, momentum 0.9, no weight decay,
            `plateau` schedule; `pretrain` records the values used in config.json. `optimizer`
            is `sgd` (with `momentum`) or `adam`; `schedule` is `plateau` (ReduceLROnPlateau and
            EarlyStopping on val_loss, the best-val_loss weights kept: the release) or `fixed`
            (`epochs` epochs at a constant rate, the last weights kept: DeepCluster's, whose
            loss is not comparable between epochs since the clusters are redrawn).
        loss: `mse` (release) or `mae`, over the whole cube.
        lr_factor, lr_patience, lr_min_delta, min_lr: ReduceLROnPlateau on val_loss.
        patience: EarlyStopping patience on val_loss (50).
        n_base_filters, depth, kernel_initializer: the U-Net (`unet_model_3d`).
        bn_momentum: momentum of the BatchNormalization moving statistics (0.99, the release's;
            the demo's short run uses 0.9). The saved weights do not depend on it.
        weights: Keras 2 `.h5` or Keras 3 `.weights.h5` file to start from; None for scratch.
        mixed_precision: None, `bf16` or `fp16` (outputs and loss stay float32).
        strategy: `none`, `mirrored` or `multiworker` (tf.distribute, TensorFlow backend).
        devices: devices each batch is split over (`training.devices`): an integer or `"auto"`
            (all present); JAX: `keras.distribution.DataParallel`, TensorFlow (with strategy
            `none`): a MirroredStrategy over that many devices. `batch_size` must be divisible.
        workers, use_multiprocessing, max_queue_size: data loading of the `PyDataset`.
        seed: seed of the pairs (batch i of epoch e depends on seed, e and i) and the model.
        keras2_weights_name: file name of the best weights in the Keras 2 layout.
        tensorboard: write TensorBoard logs (needs TensorFlow installed).
        sample_every: write a PNG of input/restoration/original every N epochs (0: never).
        figures: draw the 12-combination restoration figure and the difference map at the end.
    """

    data_dir: Optional[str] = None
    out_dir: Optional[str] = None
    cube_shape: Tuple[int, int, int] = (64, 64, 32)
    dims: int = 3
    train_subsets: Tuple[str, ...] = ("0", "1", "2", "3", "4")
    val_subsets: Tuple[str, ...] = ("5", "6")
    scale: Optional[int] = None
    scheme: str = "genesis"
    method: str = "genesis"
    method_options: Optional[Dict[str, object]] = None
    batch_size: int = 6
    epochs: int = 10000
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    optimizer: Optional[str] = None
    learning_rate: Optional[float] = None
    momentum: Optional[float] = None
    weight_decay: Optional[float] = None
    schedule: Optional[str] = None
    loss: str = "mse"
    lr_factor: float = 0.5
    lr_patience: int = 10
    lr_min_delta: float = 1e-4
    min_lr: float = 1e-6
    patience: int = 50
    n_base_filters: int = 32
    depth: int = 4
    kernel_initializer: str = "glorot_uniform"
    bn_momentum: float = 0.99
    weights: Optional[str] = None
    mixed_precision: Optional[str] = None
    strategy: str = "none"
    devices: Union[int, str] = 1
    workers: int = 1
    use_multiprocessing: bool = False
    max_queue_size: int = 10
    seed: int = 0
    keras2_weights_name: str = "Genesis_Chest_CT.h5"
    tensorboard: bool = True
    sample_every: int = 1
    figures: bool = True

    def __post_init__(self):
        self._check_choices()
        _check_placement(self)
        self._check_numbers()
        self._check_cube_shape()
        # A batch of input and target cubes (float32) is the least a step holds.
        check_allocation(2 * 4 * int(self.batch_size) * math.prod(self.cube_shape),
                         f"a batch of {self.batch_size} cubes of {self.cube_shape}")
        self._check_subsets()
        if not str(self.keras2_weights_name).endswith((".h5", ".hdf5")):
            raise ValueError("`keras2_weights_name` must end in .h5 or .hdf5. "
                             f"Received: keras2_weights_name={self.keras2_weights_name!r}.")

    def _check_choices(self) -> None:
        """Check the named choices (method, scheme, optimiser, ...) and store `method_options`
        as a plain dict."""
        for name, choices in (("method", METHOD_NAMES), ("strategy", STRATEGIES),
                              ("optimizer", _OPTIMIZERS), ("loss", _LOSSES),
                              ("schedule", SCHEDULES)):
            if getattr(self, name) not in choices and not (
                    getattr(self, name) is None and name in _METHOD_DEFAULTED):
                raise ValueError(f"`{name}` must be one of {list(choices)}. "
                                 f"Received: {name}={getattr(self, name)!r}.")
        TransformConfig.for_scheme(self.scheme)  # named or composed ("a+b"); ValueError if not
        if self.method != "genesis" and self.scheme != "genesis":
            raise ValueError(f"`scheme` is an option of method 'genesis' only. Received: "
                             f"method={self.method!r}, scheme={self.scheme!r}.")
        if dataclasses.is_dataclass(self.method_options):  # e.g. a TransformConfig
            object.__setattr__(self, "method_options", dataclasses.asdict(self.method_options))
        if self.method_options is not None and not isinstance(self.method_options, dict):
            raise ValueError("`method_options` must be a dict of option names to values, or "
                             f"None. Received: method_options={self.method_options!r}.")
        if self.method_options is not None:  # JSON lists back to tuples, so configs compare
            object.__setattr__(self, "method_options", {
                str(k): tuple(v) if isinstance(v, list) else v
                for k, v in self.method_options.items()})

    def _check_numbers(self) -> None:
        """Check the counts and rates: their sign first, then their `CONFIG_RANGES`."""
        _check_positive_integers(self, _PRETRAIN_COUNTS)
        for name in _PRETRAIN_NON_NEGATIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}.")
        for names, strict in ((_PRETRAIN_POSITIVE_RATES, True),
                              (_PRETRAIN_NON_NEGATIVE_RATES, False)):
            for name in names:
                value = getattr(self, name)
                if value is None and name in _METHOD_DEFAULTED:
                    continue  # the method's own value (`with_method_training`)
                if not (float(value) > 0 if strict else float(value) >= 0):
                    raise ValueError(f"`{name}` must be {'>' if strict else '>='} 0. "
                                     f"Received: {name}={value!r}.")
        if not 0 <= float(self.bn_momentum) < 1:
            raise ValueError(f"`bn_momentum` must be in [0, 1). "
                             f"Received: bn_momentum={self.bn_momentum!r}.")
        if not float(self.lr_factor) < 1:
            raise ValueError(f"`lr_factor` must be < 1. Received: lr_factor={self.lr_factor!r}.")
        _check_ranges(self, _PRETRAIN_COUNTS + _PRETRAIN_NON_NEGATIVE + _PRETRAIN_POSITIVE_RATES
                      + _PRETRAIN_NON_NEGATIVE_RATES + ("bn_momentum",))

    def _check_cube_shape(self) -> None:
        """Check `dims` and `cube_shape` against the U-Net's poolings (2D: one voxel deep)."""
        if self.dims not in (2, 3):
            raise ValueError(f"`dims` must be 2 or 3. Received: dims={self.dims!r}.")
        shape = tuple(self.cube_shape)
        factor = 2 ** (int(self.depth) - 1)
        if self.dims == 2 and (len(shape) != 3 or shape[2] != 1):
            raise ValueError("With dims=2, `cube_shape` must be (rows, cols, 1): 2D slices are "
                             "stored one voxel deep (e.g. --cube-shape 64 64 1, or --preset "
                             f"release_2d). Received: cube_shape={self.cube_shape!r}.")
        if len(shape) != 3 or any(int(s) != s or s < factor or s % factor for s in shape[:self.dims]):
            raise ValueError(f"`cube_shape` must be 3 sizes, each a positive multiple of {factor} "
                             f"(the poolings of a depth-{self.depth} U-Net). "
                             f"Received: cube_shape={self.cube_shape!r}.")
        if self.dims == 2 and self.method != "genesis":
            raise ValueError("dims=2 (Genesis 2D) trains method='genesis' only. "
                             f"Received: method={self.method!r}.")
        if self.dims == 2 and self.keras2_weights_name == "Genesis_Chest_CT.h5":
            object.__setattr__(self, "keras2_weights_name", "Genesis_Chest_CT_2D.h5")  # not the 3D name
        if any(s > SIDE_RANGE.hi for s in shape):
            raise ValueError(f"`cube_shape` sides must be at most {SIDE_RANGE.hi}. "
                             f"Received: cube_shape={self.cube_shape!r}.")
        object.__setattr__(self, "cube_shape", tuple(int(s) for s in shape))

    def _check_subsets(self) -> None:
        """Store the subsets as text; refuse empty lists and subsets both train and validate."""
        for name in ("train_subsets", "val_subsets"):
            subsets = getattr(self, name)
            if isinstance(subsets, (str, int)) or not len(subsets):
                raise ValueError(f"`{name}` must be a non-empty list of subsets. "
                                 f"Received: {name}={subsets!r}.")
            object.__setattr__(self, name, tuple(str(s) for s in subsets))
        shared = sorted(set(self.train_subsets) & set(self.val_subsets))
        if shared:
            raise ValueError(f"`train_subsets` and `val_subsets` must not share subsets: "
                             f"validating on training cubes hides overfitting and picks the "
                             f"best weights on seen data. Received: both hold {shared}.")

    def with_method_training(self) -> "PretrainConfig":
        """This config with every training field left None (`optimizer`, `learning_rate`,
        `momentum`, `weight_decay`, `schedule`) set to its method's value (`METHOD_TRAINING`)."""
        own = METHOD_TRAINING[self.method]
        filled = {k: own[k] for k in _METHOD_DEFAULTED if getattr(self, k) is None}
        return dataclasses.replace(self, **filled) if filled else self

    @property
    def sample_shape(self) -> Tuple[int, ...]:
        """What one training sample is: `cube_shape`, or `(rows, cols)` with `dims=2`."""
        return tuple(self.cube_shape[:self.dims])

    @classmethod
    def preset(cls, name: str = "release", **overrides) -> "PretrainConfig":
        """Return the preset `name` (`release` or `demo`) with `overrides` applied."""
        if name not in PRETRAIN_PRESETS:
            raise ValueError(f"Unknown pre-training preset. Valid presets: "
                             f"{sorted(PRETRAIN_PRESETS)}. Received: preset={name!r}.")
        return cls(**{**PRETRAIN_PRESETS[name], **overrides})


# What differs from the release in each preset. `demo`: a short run on the embedded phantoms on
# a CPU. The release's SGD at lr 1.0 and BatchNormalization momentum 0.99 learn little in so few
# steps; Adam at 1e-3 and momentum 0.9 restore (docs/results.md, 'Log: what the demo pre-training
# learns in its budget'). Mixed bf16 is not the default: TensorFlow's CPU bf16 Conv3D gradient is
# wrong where a feature map has 2 rows (notebook 09's Jigsaw: NaN).
PRETRAIN_PRESETS = {
    "release": {},
    "demo": {
        "cube_shape": (32, 32, 16),
        "n_base_filters": 8,
        "batch_size": 8,
        "epochs": 10,
        "steps_per_epoch": 100,
        "validation_steps": 6,
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "bn_momentum": 0.9,
        "lr_patience": 3,
        "patience": 10,
    },
}
# Genesis 2D (paper Sec. 3.1, Table 1): the same schedule on 2D slices (`data.pretraining.slices`) or
# radiographs (`data.pretraining.xray_crops`), one voxel deep, with `unet_model_2d`; the 2D file names of
# `models.presets`. The slice size of the paper's 2D models is not stated: 64 x 64 here; the demo
# cuts 32 x 32 slices, the demo cubes' in-plane size (the tissue filter keeps too few 64 x 64
# slices of the small chest phantoms).
PRETRAIN_PRESETS["release_2d"] = {"dims": 2, "cube_shape": (64, 64, 1)}
# `demo_2d`: 500 steps (docs/genesis_2d.md).
PRETRAIN_PRESETS["demo_2d"] = {**PRETRAIN_PRESETS["demo"], "dims": 2, "cube_shape": (32, 32, 1),
                               "steps_per_epoch": 50}
