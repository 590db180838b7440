"""Your own data set's `dataset.json`: the Medical Segmentation Decathlon and nnU-Net v2 layouts.

The layout is detected from `dataset.json` (docs/your_own_data.md):

* Medical Segmentation Decathlon (`TaskNN_Name/`): `modality` (`{"0": "FLAIR", "1": "T1w"}`),
  `labels` (`{"0": "background", "1": "edema"}`), `training` (a list of
  `{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}`); a multi-modal image is
  one 4D NIfTI file (channels on the 4th axis).
* nnU-Net v2 raw (`DatasetNNN_Name/`): `channel_names` (`{"0": "CT"}`), `labels`
  (`{"background": 0, "liver": 1}`), `file_ending` (`".nii.gz"`); the channels of case `x` are
  `imagesTr/x_0000.nii.gz`, `x_0001.nii.gz`, ..., its labels `labelsTr/x.nii.gz`; the split is
  nnU-Net's `splits_final.json` (a list of `{"train": [...], "val": [...]}`, one per fold) when
  it lies in the folder.

Volume-level classification: a CSV with columns `case,label` beside `imagesTr/`
(`classification.csv`, or the name given); `labels` and `labelsTr/` are then not needed.

`read_dataset_spec(folder)` returns a `DatasetSpec`; every problem is a `ValueError` naming the
file and what was expected (cases that cannot be used are listed in `refused`, for
`--on-error skip`).
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from models_genesis.data.io.volumes import volume_key

LAYOUTS = ("decathlon", "nnunetv2")
DATASET_JSON = "dataset.json"
SPLITS_JSON = "splits_final.json"
CLASSIFICATION_CSV = "classification.csv"


@dataclass(frozen=True)
class DatasetSpec:
    """What a data set's `dataset.json` (and folder) declares.

    Attributes:
        root: the data set folder.
        layout: `"decathlon"` or `"nnunetv2"`.
        channel_names: the name of each input channel, in order (e.g. `("FLAIR", "T1w")`).
        label_values: the label values of a segmentation data set, background 0 first; the
            classes of the model are their indices. Empty for classification.
        label_names: the name of each value of `label_values`.
        file_ending: the image files' extension (`.nii.gz`).
        cases: case id -> `(image files, label file or None)`: one file per channel
            (nnU-Net v2) or one file holding every channel (Decathlon, 4D when multi-modal).
        refused: `{"case", "item", "reason"}` of cases that cannot be used (a missing channel file).
        splits: nnU-Net's folds (`splits_final.json`: list of `{"train", "val"}`), or None.
        classification: case id -> class label (from the classification CSV), or None.
        classification_csv: the CSV's path, or None.
    """

    root: str
    layout: str
    channel_names: Tuple[str, ...]
    label_values: Tuple[int, ...]
    label_names: Tuple[str, ...]
    file_ending: str
    cases: Dict[str, Tuple[Tuple[str, ...], Optional[str]]]
    refused: List[dict] = field(default_factory=list)
    splits: Optional[List[dict]] = None
    classification: Optional[Dict[str, int]] = None
    classification_csv: Optional[str] = None

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    @property
    def kind(self) -> str:
        return "segmentation" if self.classification is None else "classification"


def _numbered(mapping, path: str, key: str) -> Tuple[str, ...]:
    """`{"0": "FLAIR", "1": "T1w"}` -> ("FLAIR", "T1w"), checking the keys are 0..n-1."""
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"{path}: `{key}` must map channel numbers to names, e.g. "
                         f'{{"0": "CT"}}. Received: {key}={mapping!r}.')
    try:
        items = sorted((int(k), str(v)) for k, v in mapping.items())
    except (TypeError, ValueError):
        raise ValueError(f"{path}: the keys of `{key}` must be channel numbers 0, 1, ... "
                         f"Received: {sorted(mapping)}.") from None
    if [k for k, _ in items] != list(range(len(items))):
        raise ValueError(f"{path}: `{key}` must number the channels 0..{len(items) - 1}. "
                         f"Received: {[k for k, _ in items]}.")
    return tuple(v for _, v in items)


def _labels(meta: dict, layout: str, path: str) -> Tuple[Tuple[int, ...], Tuple[str, ...]]:
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{path}: `labels` is missing or empty; expected the label values and "
                         'their names, e.g. {"background": 0, "tumour": 1} (nnU-Net v2) or '
                         '{"0": "background", "1": "tumour"} (Decathlon).')
    pairs = labels.items() if layout == "decathlon" else ((v, k) for k, v in labels.items())
    out = {}
    for value, name in pairs:
        if isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: label {name!r} is a region ({value}; nnU-Net's "
                             "region-based training); expected one integer value per label.")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: label {name!r} has the value {value!r}; expected an "
                             "integer.") from None
        if number in out or str(number) != str(value).strip():
            raise ValueError(f"{path}: label values must be distinct integers. "
                             f"Received: {value!r} for {name!r}.")
        out[number] = str(name)
    if 0 not in out:
        raise ValueError(f"{path}: `labels` must include the background, value 0. "
                         f"Received values: {sorted(out)}.")
    if len(out) < 2:
        raise ValueError(f"{path}: `labels` must name at least one foreground label besides the "
                         f"background 0. Received: {labels!r}.")
    values = tuple(sorted(out))
    return values, tuple(out[v] for v in values)


def _inside(root: str, relative: str) -> str:
    return os.path.normpath(os.path.join(root, relative))


def _visible(paths):
    """Drop macOS resource files (`._x.nii.gz`), which the Decathlon's archives hold."""
    return [p for p in paths if not os.path.basename(p).startswith(".")]


def _decathlon_cases(root: str, meta: dict, path: str, labelled: bool):
    cases, refused = {}, []
    entries = meta.get("training")
    if entries is None:  # no list: every image in imagesTr/
        entries = [{"image": os.path.relpath(p, root)}
                   for p in _visible(sorted(glob.glob(os.path.join(root, "imagesTr", "*.nii*"))))]
    if not isinstance(entries, list):
        raise ValueError(f"{path}: `training` must be a list of {{\"image\", \"label\"}} entries. "
                         f"Received: {type(entries).__name__}.")
    for entry in entries:
        if not isinstance(entry, dict) or "image" not in entry:
            raise ValueError(f"{path}: each `training` entry must be {{\"image\": ..., \"label\": "
                             f"...}}. Received: {entry!r}.")
        image = _inside(root, entry["image"])
        case = volume_key(image)
        label = _inside(root, entry["label"]) if labelled and entry.get("label") else None
        if not os.path.isfile(image):
            refused.append({"case": case, "item": image,
                            "reason": f"listed in {path} but missing"})
        elif labelled and (label is None or not os.path.isfile(label)):
            refused.append({"case": case, "item": image,
                            "reason": f"its label file {label} (from {path}) is missing"})
        else:
            cases[case] = ((image,), label)
    return cases, refused


def _nnunet_cases(root: str, n_channels: int, ending: str, labelled: bool):
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")
    found: Dict[str, Dict[int, str]] = {}
    for p in _visible(sorted(glob.glob(os.path.join(root, "imagesTr", "*" + ending)))):
        m = pattern.match(os.path.basename(p))
        if m:
            found.setdefault(m.group(1), {})[int(m.group(2))] = p
    cases, refused = {}, []
    for case, files in sorted(found.items()):
        missing = [f"{case}_{c:04d}{ending}" for c in range(n_channels) if c not in files]
        label = os.path.join(root, "labelsTr", case + ending) if labelled else None
        if missing:
            refused.append({"case": case, "item": os.path.join(root, "imagesTr", case),
                            "reason": f"has {n_channels - len(missing)} of the {n_channels} "
                                      f"channel files dataset.json declares (channel_names); "
                                      f"missing {', '.join(missing)}"})
        elif label is not None and not os.path.isfile(label):
            refused.append({"case": case, "item": label,
                            "reason": f"missing: case {case} has images but no label file"})
        else:
            cases[case] = (tuple(files[c] for c in range(n_channels)), label)
    return cases, refused


def _read_classification(csv_path: str, known) -> Dict[str, int]:
    # pandas (0.7 s) on first use.
    import pandas as pd

    table = pd.read_csv(csv_path, dtype={"case": str})
    if not {"case", "label"} <= set(table.columns):
        raise ValueError(f"{csv_path}: expected the columns case,label. "
                         f"Received columns: {list(table.columns)}.")
    unknown = sorted(set(table["case"]) - set(known))
    if unknown:
        raise ValueError(f"{csv_path}: names {len(unknown)} case(s) with no image in imagesTr/, "
                         f"e.g. {unknown[:5]}; expected the case ids of the image files.")
    if table["case"].duplicated().any():
        raise ValueError(f"{csv_path}: case {table['case'][table['case'].duplicated()].iloc[0]!r} "
                         "appears twice.")
    labels = pd.to_numeric(table["label"], errors="coerce")
    if labels.isna().any() or (labels != labels.round()).any():
        raise ValueError(f"{csv_path}: `label` must be an integer class per case. Received: "
                         f"{table['label'][labels.isna() | (labels != labels.round())].iloc[0]!r}.")
    if labels.nunique() < 2:
        raise ValueError(f"{csv_path}: a classification needs at least two classes. Received "
                         f"only {sorted(labels.unique().tolist())}.")
    return {str(c): int(v) for c, v in zip(table["case"], labels)}


def read_dataset_spec(data_dir, *, classification_csv: Optional[str] = None) -> DatasetSpec:
    """Read `dataset.json` of a Decathlon or nnU-Net v2 folder and find its cases.

    Args:
        data_dir: the data set folder (`TaskNN_Name/` or `DatasetNNN_Name/`).
        classification_csv: a `case,label` CSV (a path, or a name inside `data_dir`) for
            volume-level classification; None uses `classification.csv` when present.

    Raises:
        FileNotFoundError: no folder, no `dataset.json`, or no case.
        ValueError: a `dataset.json` without `labels` (segmentation) or without `channel_names`
            / `modality`, a CSV naming unknown cases; the message names the file.
    """
    root = os.fspath(data_dir)
    path, meta = _read_dataset_json(root)
    layout, channels = _layout_and_channels(meta, path)
    csv_path = _classification_csv_path(root, classification_csv)
    labelled = csv_path is None
    values, names = _labels(meta, layout, path) if labelled else ((), ())
    ending = str(meta.get("file_ending", ".nii.gz"))
    if layout == "decathlon":
        cases, refused = _decathlon_cases(root, meta, path, labelled)
    else:
        cases, refused = _nnunet_cases(root, len(channels), ending, labelled)
    if not cases and not refused:
        raise FileNotFoundError(f"No cases under {os.path.join(root, 'imagesTr')} (expected "
                                + ("{case}.nii.gz" if layout == "decathlon" else
                                   "{case}_0000" + ending) + f" files, {layout} layout).")
    splits = _read_splits(root)
    classes = None
    if csv_path is not None:
        known = set(cases) | {r["case"] for r in refused}
        classes = _read_classification(csv_path, known)
        cases = {c: v for c, v in cases.items() if c in classes}
    return DatasetSpec(root, layout, channels, values, names, ending, cases, refused, splits,
                       classes, csv_path)


def _read_dataset_json(root: str) -> Tuple[str, dict]:
    """`(path, meta)`: the path of `root`'s `dataset.json` and its JSON object."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Data folder not found: {root}")
    path = os.path.join(root, DATASET_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: a data set in the Decathlon or nnU-Net v2 "
                                "layout has a dataset.json beside imagesTr/.")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}).") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object. Received: {type(meta).__name__}.")
    return path, meta


def _layout_and_channels(meta: dict, path: str) -> Tuple[str, Tuple[str, ...]]:
    """The layout (from the key naming the channels) and the channel names."""
    if "channel_names" in meta:
        return "nnunetv2", _numbered(meta["channel_names"], path, "channel_names")
    if "modality" in meta:
        return "decathlon", _numbered(meta["modality"], path, "modality")
    raise ValueError(f"{path}: has neither `channel_names` (nnU-Net v2) nor `modality` "
                     "(Decathlon); expected the input channels, e.g. "
                     '"channel_names": {"0": "CT"}.')


def _classification_csv_path(root: str, classification_csv: Optional[str]) -> Optional[str]:
    """The classification CSV: `classification_csv` (a path, or a name inside `root`), else
    `classification.csv` when present; None for a segmentation data set."""
    csv_path = classification_csv
    if csv_path is not None and not os.path.isabs(csv_path) and not os.path.isfile(csv_path):
        csv_path = os.path.join(root, csv_path)
    if csv_path is None and os.path.isfile(os.path.join(root, CLASSIFICATION_CSV)):
        csv_path = os.path.join(root, CLASSIFICATION_CSV)
    if csv_path is not None and not os.path.isfile(csv_path):
        raise FileNotFoundError(f"Classification CSV not found: {csv_path}")
    return csv_path


def _read_splits(root: str) -> Optional[List[dict]]:
    """nnU-Net's folds from `root`'s `splits_final.json`, or None when there is none."""
    split_path = os.path.join(root, SPLITS_JSON)
    if not os.path.isfile(split_path):
        return None
    with open(split_path, encoding="utf-8") as f:
        splits = json.load(f)
    if not isinstance(splits, list) or not all(
            isinstance(s, dict) and {"train", "val"} <= set(s) for s in splits):
        raise ValueError(f"{split_path}: expected nnU-Net's list of folds "
                         '[{"train": [...], "val": [...]}, ...].')
    return splits
