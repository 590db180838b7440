"""Reading a prepared folder (`models-genesis prepare`; see `models_genesis.data.target_tasks.prepare_case`).

Segmentation tasks (NCS, LCS, BMS): the prepared files are in the layout the task loader reads,
so the loader runs on them with the options the manifest records (e.g. NCS is already at 1 mm).
Classification tasks (NCC, ECC): the crops stay on disk; `load_prepared_candidates` returns a
`CandidateData`, a table of crops per split that `finetune` serves through `CandidateDataset`
(per-epoch negative sampling, `negative_ratio` negatives per positive; the test split is scored
on every candidate).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd

from models_genesis.data.target_tasks.candidate_crops import DEFAULT_NEGATIVE_RATIO, CandidateDataset
from models_genesis.data.target_tasks.prepare_case import read_manifest
from models_genesis.data.target_tasks.common import SPLITS, check_split_ids, seeded_split
from models_genesis.data.target_tasks.ecc import read_release_split
from models_genesis.data.target_tasks.ncc import LUNA16_SUBSETS


@dataclass(frozen=True)
class CandidateData:
    """The crops of a prepared NCC/ECC folder, split by patient, read lazily.

    Attributes:
        task: `ncc` or `ecc`.
        paths, indices, labels: per candidate: crop file, index in it, class (0/1).
        rows: split name -> candidate rows (indices into the arrays above).
        input_shape: crop `(rows, cols, deps)`.
        negative_ratio: negatives per positive served per training epoch (None: all).
        info: counts, positives, patients, split source, skipped items.
    """

    task: str
    paths: np.ndarray
    indices: np.ndarray
    labels: np.ndarray
    rows: Dict[str, np.ndarray]
    input_shape: tuple
    negative_ratio: Optional[float] = DEFAULT_NEGATIVE_RATIO
    info: dict = field(default_factory=dict)
    test_volumes: tuple = ()

    def split(self, name: str):
        """`(paths, indices, labels)` of split `name`."""
        r = self.rows[name]
        return self.paths[r], self.indices[r], self.labels[r]

    def dataset(self, name: str, *, batch_size: int, seed: int, augment: bool = False,
                **kwargs) -> CandidateDataset:
        """Batches of split `name`: training draws fresh negatives each epoch, validation keeps
        one seeded draw; both serve `negative_ratio` negatives per positive."""
        paths, indices, labels = self.split(name)
        train = name == "train"
        return CandidateDataset(paths, indices, labels, batch_size=batch_size,
                                negative_ratio=self.negative_ratio, resample_each_epoch=train,
                                shuffle=train, augment=augment and train, seed=seed, **kwargs)

    def subsample(self, fraction: float, *, rng: np.random.Generator) -> "CandidateData":
        """Keep a stratified `fraction` of the training candidates (paper Fig. 6)."""
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"`fraction` must be in (0, 1]. Received: fraction={fraction!r}.")
        train = self.rows["train"]
        keep = [rng.choice(train[self.labels[train] == v],
                           size=max(1, int(round(fraction * np.sum(self.labels[train] == v)))),
                           replace=False)
                for v in (0, 1) if np.any(self.labels[train] == v)]
        rows = dict(self.rows, train=np.sort(np.concatenate(keep)))
        return dataclasses.replace(self, rows=rows, info=dict(self.info, label_fraction=fraction))


def _split(task, table, manifest, data_dir, *, seed, split, subsets, split_dir, fold,
           split_fractions):
    uids = sorted(set(table["seriesuid"]))
    if split is not None:
        return {k: list(split.get(k, ())) for k in SPLITS}, "user split"
    if task == "ncc":
        subsets = LUNA16_SUBSETS if subsets is None else subsets
        by_uid = table.groupby("seriesuid")["subset"].first()
        out = {n: sorted(u for u, s in by_uid.items() if int(s) in set(subsets.get(n, ())))
               for n in SPLITS}
        empty = [n for n in SPLITS if not out[n]]
        if empty:
            raise ValueError(f"{data_dir}: no prepared scans for the {empty} split(s): subsets "
                             f"{dict(subsets)} requested, the folder holds subsets "
                             f"{sorted(set(by_uid.astype(int)))}. Pass subsets to match.")
        return out, f"LUNA16 subsets {dict(subsets)}"
    if split_dir is not None:
        fold = 1 if fold is None else fold
        return read_release_split(split_dir, fold), f"{split_dir} fold {fold}"
    if fold is not None:
        raise ValueError(f"`fold` needs the release's split files train_cv-k/val_cv-k/test_cv-k"
                         f".csv: pass split_dir= (--split-dir). Received: fold={fold!r}, "
                         "split_dir=None.")
    fractions = (0.6, 0.1, 0.3) if split_fractions is None else split_fractions
    return (seeded_split(uids, fractions, rng=np.random.default_rng(seed)),
            f"seeded {tuple(fractions)} split (seed {seed})")


def load_prepared_candidates(data_dir, manifest: dict, *, seed: int = 0, input_shape=None,
                             negative_ratio: Optional[float] = DEFAULT_NEGATIVE_RATIO,
                             split: Optional[Dict[str, Sequence[str]]] = None,
                             subsets=None, split_dir=None, fold: Optional[int] = None,
                             split_fractions=None, spacing=None, candidates_csv=None,
                             errors: str = "raise") -> CandidateData:
    """Read a prepared NCC/ECC folder's table of crops and split it by patient.

    Args:
        data_dir: the prepared folder.
        manifest: its manifest.
        seed: seeds a drawn split (ECC) and the negative sampling.
        input_shape: must be the prepared crop (or None).
        negative_ratio: negatives per positive per epoch (default 10; None: all, every epoch).
        split, subsets, split_dir, fold, split_fractions: as in `load_ncc` / `load_ecc`.
        spacing, candidates_csv: must match what the folder was prepared with (or be None).
        errors: accepted for symmetry; bad items were handled by `prepare` (its manifest).
    """
    task = manifest["task"]
    params = manifest["parameters"]
    prepared_shape = tuple(params["input_shape"])
    for name, value, saved in (("input_shape", input_shape, prepared_shape),
                               ("spacing", spacing, params.get("spacing"))):
        if value is not None and tuple(value) != tuple(saved or ()):
            raise ValueError(f"{data_dir} was prepared with {name}={saved}; prepare again for "
                             f"another one. Received: {name}={tuple(value)}.")
    if candidates_csv is not None and os.path.basename(candidates_csv) != \
            os.path.basename(params.get("candidates_csv", "")):
        raise ValueError(f"{data_dir} was prepared from {params.get('candidates_csv')}. "
                         f"Received: candidates_csv={candidates_csv!r}.")
    if negative_ratio is not None and not float(negative_ratio) > 0:
        raise ValueError(f"`negative_ratio` must be > 0 or None. "
                         f"Received: negative_ratio={negative_ratio!r}.")
    path = os.path.join(os.fspath(data_dir), "candidates.csv")
    table = pd.read_csv(path, dtype={"seriesuid": str})
    split, source = _split(task, table, manifest, data_dir, seed=seed, split=split,
                           subsets=subsets, split_dir=split_dir, fold=fold,
                           split_fractions=split_fractions)
    check_split_ids(split, set(table["seriesuid"]), f"{task.upper()} split ({source})")
    split_of = {u: n for n in SPLITS for u in split[n]}
    which = table["seriesuid"].map(split_of)
    rows = {n: np.flatnonzero((which == n).to_numpy()) for n in SPLITS}
    labels = table["class"].to_numpy(np.int64)
    paths = np.asarray([os.path.join(os.fspath(data_dir), p) for p in table["crop_file"]],
                       dtype=object)
    info = {"counts": {n: int(len(r)) for n, r in rows.items()},
            "positives": {n: int(labels[r].sum()) for n, r in rows.items()},
            "patients": {n: len(split[n]) for n in SPLITS}, "split_source": source,
            "split": split, "negative_ratio": negative_ratio, "prepared": params,
            "skipped": manifest.get("skipped", []), "n_skipped": len(manifest.get("skipped", []))}
    return CandidateData(task, paths, table["crop_index"].to_numpy(np.int64), labels, rows,
                         prepared_shape, negative_ratio, info)


def load_prepared(task: str, data_dir, manifest: dict, loader, *, seed: int = 0,
                  input_shape=None, **options):
    """Load a prepared folder: NCC/ECC lazily (`CandidateData`), the others with `loader`."""
    if manifest["task"] != task:
        raise ValueError(f"{data_dir} was prepared for task {manifest['task']!r}. "
                         f"Received: task={task!r}.")
    if task in ("ncc", "ecc"):
        return load_prepared_candidates(data_dir, manifest, seed=seed, input_shape=input_shape,
                                        **options)
    saved = manifest["parameters"].get("spacing")
    spacing = options.pop("spacing", None)
    if spacing is not None and tuple(spacing) != tuple(saved or ()):
        raise ValueError(f"{data_dir} was prepared with spacing={saved}; prepare again for "
                         f"another one. Received: spacing={tuple(spacing)}.")
    data = loader(data_dir, seed=seed, input_shape=input_shape,
                  **{**manifest.get("loader_options", {}), **options})
    info = dict(data.info, prepared=manifest["parameters"],
                skipped=list(data.info.get("skipped", [])) + manifest.get("skipped", []))
    return dataclasses.replace(data, info=dict(info, n_skipped=len(info["skipped"])))


def with_negative_sampling(task: str, data_dir, options: dict) -> dict:
    """NCC/ECC loader options with the negative sampling made explicit.

    `negative_ratio` (negatives kept per positive for training and validation) defaults to
    `DEFAULT_NEGATIVE_RATIO` (10; the paper gives none); 0 keeps every negative. A prepared
    folder draws the training negatives afresh each epoch; a raw folder (read into memory)
    undersamples training and validation once, and the test split keeps every candidate, so the
    test AUC is over all of them. Other tasks' options are returned unchanged.
    """
    if task not in ("ncc", "ecc"):
        return dict(options)
    out = dict(options)
    ratio = out.get("negative_ratio", DEFAULT_NEGATIVE_RATIO)
    out["negative_ratio"] = None if ratio is not None and float(ratio) == 0 else ratio
    if out["negative_ratio"] is not None and read_manifest(data_dir) is None:
        out["undersample"] = ("train", "valid")
    return out
