"""Which cases a downloaded target-task data set holds: one job per case for `prepare_case`.

`list_cases(task, data_dir, out_dir)` reads the layout the task's `TargetTask.layout` names (the
same readers as the task loaders in `models_genesis.data.target_tasks`) and returns the jobs, the
parameters recorded in the manifest, the loader options a prepared folder is read with, and the
items refused before any case is read (e.g. a CSV row whose scan is missing).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from models_genesis.config import get_target_task
from models_genesis.data.target_tasks.lidc_consensus import lidc_prepare_jobs
from models_genesis.data.target_tasks.bms import BRATS_LABELS, find_brats_cases
from models_genesis.data.target_tasks.candidates import check_candidate_table
from models_genesis.data.target_tasks.common import SkipLog, check_input_shape
from models_genesis.data.target_tasks.custom import custom_prepare_jobs
from models_genesis.data.target_tasks.ecc import find_volumes, read_candidate_csv
from models_genesis.data.target_tasks.lcs import find_lits_cases
from models_genesis.data.target_tasks.ncc import find_candidates_csv, subset_of
from models_genesis.data.target_tasks.ncs import find_masks
from models_genesis.data.io.csv_tables import ANNOTATION_COLUMNS, read_table
from models_genesis.data.io.volumes import index_volumes


def _candidate_table(task: str, data_dir: str, candidates_csv: Optional[str]):
    # pandas (0.7 s) on first use: `prepare` of the segmentation tasks never needs it.
    import pandas as pd

    if task == "ecc":
        return read_candidate_csv(data_dir, candidates_csv or "candidates.csv")
    path = find_candidates_csv(data_dir, candidates_csv)
    table = pd.read_csv(path, dtype={"seriesuid": str, "FileName": str})
    if "seriesuid" not in table.columns and "FileName" in table.columns:
        table = table.rename(columns={"FileName": "seriesuid"})
    return check_candidate_table(table, path), path


def _candidate_jobs(task, data_dir, common, candidates_csv):
    volumes = index_volumes(data_dir, "subset*/*.mhd") if task == "ncc" else find_volumes(data_dir)
    table, csv_path = _candidate_table(task, data_dir, candidates_csv)
    refused = [{"item": f"{csv_path}: seriesuid {uid}",
                "reason": f"has no volume under {data_dir} "
                          f"({int((table.seriesuid == uid).sum())} candidate rows)"}
               for uid in sorted(set(table["seriesuid"]) - set(volumes))]
    jobs = []
    for uid, rows in table[table["seriesuid"].isin(list(volumes))].groupby("seriesuid",
                                                                          sort=True):
        record = {"subset": subset_of(volumes[uid])} if task == "ncc" else {}
        jobs.append({**common, "case": uid, "image": volumes[uid], "record": record,
                     "world": rows[["coordX", "coordY", "coordZ"]].to_numpy(float),
                     "labels": rows["class"].to_numpy(np.int64)})
    return jobs, {"candidates_csv": csv_path}, refused


def _ncs_jobs(data_dir, common):
    """NCS from LIDC-IDRI as downloaded (DICOM series + XML reading: `lidc_prepare_jobs`), or,
    when `data_dir` holds an `annotations.csv`, from volumes + `masks/` + `annotations.csv` (the
    chest phantoms' layout)."""
    csv_path = os.path.join(data_dir, "annotations.csv")
    if not os.path.isfile(csv_path):
        return lidc_prepare_jobs(data_dir, common)
    volumes = index_volumes(data_dir, "subset*/*.mhd")
    masks = find_masks(data_dir)
    table = read_table(csv_path, ANNOTATION_COLUMNS, unique=ANNOTATION_COLUMNS[:4])
    refused = [{"item": f"{csv_path}: seriesuid {uid}", "reason": "has no volume or no mask"}
               for uid in sorted(set(table["seriesuid"]) - (set(volumes) & set(masks)))]
    jobs = []
    for uid, rows in table[table["seriesuid"].isin(list(set(volumes) & set(masks)))].groupby(
            "seriesuid", sort=True):
        nodules = rows[["coordX", "coordY", "coordZ", "diameter_mm"]].to_numpy(float).tolist()
        jobs.append({**common, "case": uid, "image": volumes[uid], "mask": masks[uid],
                     "allowed_labels": tuple(range(256)), "nodules": nodules})
    return jobs, {"annotations_csv": csv_path}, refused


def list_cases(task: str, data_dir, out_dir, *, on_error: str = "stop", input_shape=None,
               spacing="task", candidates_csv: Optional[str] = None,
               custom_options: Optional[dict] = None, **reader_options) -> tuple:
    """List the cases of a download as jobs for `prepare_case`.

    Args:
        task: target-task code.
        data_dir: the data set as downloaded (the layout of `TargetTask.layout`).
        out_dir: the prepared folder.
        on_error: `"stop"` or `"skip"` (passed to the jobs that check items inside a case).
        input_shape: crop of the NCC/ECC crops; None: the task's.
        spacing: resampling spacing (mm); `"task"` takes the task's (`TargetTask.spacing`).
        candidates_csv: NCC/ECC candidate CSV name or path (default: `candidates.csv`, and for
            NCC also `candidates_V2.csv`).
        custom_options: task `custom`'s options (`intensity`, `classification_csv`, `fold`;
            see `models_genesis.data.target_tasks.custom.custom_prepare_jobs`).
        **reader_options: options of the LIDC-IDRI reader (`consensus_level`, `min_readers`;
            see `models_genesis.data.target_tasks.lidc_consensus`), NCS only; None values are left out.

    Returns:
        `(jobs, parameters, loader_options, refused)`.
    """
    t = get_target_task(task)
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"Data folder not found: {data_dir}")
    spacing = t.spacing if isinstance(spacing, str) and spacing == "task" else spacing
    spacing = None if spacing is None else tuple(float(s) for s in spacing)
    shape = check_input_shape(input_shape, t.code)
    parameters = {"modality": t.modality, "intensity_window": t.intensity_window,
                  "spacing": spacing}
    reader_options = _options_of_one_task(reader_options, t.code, "ncs", "NCS (LIDC-IDRI)")
    custom_options = _options_of_one_task(custom_options or {}, t.code, "custom", "task custom")
    common = {"task": t.code, "out_dir": os.path.abspath(os.fspath(out_dir)),
              "on_error": on_error, "spacing": spacing, "modality": t.modality,
              **reader_options}
    jobs, extra, loader_options, refused = _task_jobs(
        t.code, data_dir, common, shape=shape, on_error=on_error, candidates_csv=candidates_csv,
        custom_options=custom_options)
    if spacing is not None and t.code == "bms":
        raise ValueError(f"`spacing` resampling is not offered for bms (BraTS is already 1 mm "
                         f"isotropic; the loader keeps each scan's grid). "
                         f"Received: spacing={spacing}.")
    if not jobs:
        raise FileNotFoundError(f"No {t.code.upper()} cases found under {data_dir} "
                                f"(expected layout: {t.layout}).")
    return jobs, {**parameters, **extra}, loader_options, refused


def _options_of_one_task(options: dict, code: str, only: str, what: str) -> dict:
    """`options` without its None values; they apply to the task `only` (`what` names it).

    Raises:
        ValueError: options left for another task than `only`.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if options and code != only:
        raise ValueError(f"{sorted(options)} apply to {what} only. Received: task={code!r}.")
    return options


def _task_jobs(code: str, data_dir: str, common: dict, *, shape, on_error: str,
               candidates_csv: Optional[str], custom_options: dict) -> tuple:
    """`(jobs, extra parameters, loader_options, refused)` of the task `code`, read from the
    layout of its download (`common`: the fields every job holds)."""
    if code == "custom":
        return custom_prepare_jobs(data_dir, common, **custom_options)
    if code in ("ncc", "ecc"):
        jobs, extra, refused = _candidate_jobs(code, data_dir, {**common, "input_shape": shape},
                                               candidates_csv)
        return jobs, {"input_shape": shape, **extra}, {}, refused
    if code == "ncs":
        jobs, extra, refused = _ncs_jobs(data_dir, common)
        return jobs, extra, {"volume_pattern": "images/*.nii*", "spacing": None}, refused
    if code == "lcs":
        jobs = [{**common, "case": case, "image": image, "mask": mask,
                 "allowed_labels": (0, 1, 2)}
                for case, (image, mask) in find_lits_cases(data_dir).items()]
        return jobs, {}, {}, []
    skips = SkipLog("skip" if on_error == "skip" else "raise")
    jobs = [{**common, "case": case, "image": image, "mask": mask,
             "allowed_labels": BRATS_LABELS,
             "record": {"group": os.path.basename(os.path.dirname(os.path.dirname(image)))}}
            for case, (image, mask) in find_brats_cases(data_dir, skips).items()]
    return jobs, {}, {}, list(skips.items)
