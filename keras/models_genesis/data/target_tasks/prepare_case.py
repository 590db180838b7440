"""A prepared data set: each case of a downloaded target-task data set read, checked and written once.

`models-genesis prepare` (orchestrated by `models_genesis.pipeline.prepare`) runs
`prepare_case` on every case listed by `list_cases`. The prepared folder holds standard files
that the task loaders read like the downloads (`load_target_data` recognises it by its
`manifest.json`):

```
PREPARED/
  manifest.json                      format, task, source, parameters, versions, cases, skipped
  LCS   cases/volume-N.nii.gz, cases/segmentation-N.nii.gz
  BMS   cases/{patient}/{patient}_flair.nii.gz, {patient}_seg.nii.gz
  NCS   images/{seriesuid}.nii.gz, masks/{seriesuid}.nii.gz, annotations.csv
        (resampled to the task's spacing, 1 mm, once)
  NCC, ECC  crops/{seriesuid}.npy   float16 (n, rows, cols, deps) in [0, 1], memory-mappable
            crops/{seriesuid}.csv   one row per crop (crop_index, class, world mm)
            candidates.csv          every crop: seriesuid, crop_file, crop_index, class, subset
```

Image and mask files keep the physical geometry (spacing, origin, direction). Every file is
written under a temporary name and renamed, so a killed run leaves no half-written case.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, List, Optional

import numpy as np

from models_genesis.atomic import write_csv
from models_genesis.data.io.crop_files import write_crop_file
from models_genesis.data.target_tasks.cases import read_case
from models_genesis.data.target_tasks.common import (SkipLog, extract_crops, intensity_window,
                                                     scale_to_unit)
from models_genesis.data.io.volumes import Volume, read_volume, resample_volume, write_volume

MANIFEST = "manifest.json"
FORMAT = "models-genesis-prepared/1"
CHUNK = 32  # crops cut and written at a time: memory bounded whatever a scan's candidate count


def read_manifest(folder) -> Optional[dict]:
    """The manifest of a prepared folder, or None when `folder` is not one."""
    path = os.path.join(os.fspath(folder), MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        return None
    return manifest


def case_outputs(task: str, case_id: str) -> Dict[str, str]:
    """Files a finished case has in the prepared folder (relative paths)."""
    if task == "lcs":
        number = case_id.split("-")[-1]
        return {"image": f"cases/volume-{number}.nii.gz",
                "mask": f"cases/segmentation-{number}.nii.gz"}
    if task == "bms":
        return {"image": f"cases/{case_id}/{case_id}_flair.nii.gz",
                "mask": f"cases/{case_id}/{case_id}_seg.nii.gz"}
    if task == "ncs":
        return {"image": f"images/{case_id}.nii.gz", "mask": f"masks/{case_id}.nii.gz"}
    return {"crops": f"crops/{case_id}.npy", "table": f"crops/{case_id}.csv"}


def _segmentation_case(job: dict) -> dict:
    """Read, check (grid, labels), resample and write one image + mask."""
    spacing = job.get("spacing")
    if job.get("reader") is not None:
        image, labels = job["reader"](job)  # a Volume and labels on its grid (e.g. LIDC)
    else:
        case = read_case(job["image"], job["mask"], allowed_labels=job["allowed_labels"],
                         skips=SkipLog("raise"), spacing=spacing)
        image, labels = case
    array = np.asarray(image.array)
    if job["modality"] == "ct" and array.dtype.kind == "f":
        array = np.rint(array).astype(np.int16)  # resampled HU back to integers
    out = {k: os.path.join(job["out_dir"], v) for k, v in case_outputs(job["task"],
                                                                       job["case"]).items()}
    image = Volume(array, image.spacing, image.origin, image.direction)
    write_volume(labels.astype(np.uint8 if labels.max() < 256 else np.int32), out["mask"],
                 like=image)
    write_volume(image, out["image"])  # after the mask: a case is done when both exist
    result = {"shape": list(image.shape), "spacing": list(image.spacing),
              "foreground_voxels": int(np.count_nonzero(labels))}
    if job.get("nodules") is not None:  # NCS: the rows of the prepared annotations.csv
        result["nodules"] = job["nodules"]
    if job.get("notes"):  # e.g. a DICOM series resampled onto an even grid
        result["notes"] = list(job["notes"])
    result["skipped_items"] = list(job.get("skipped_items", []))
    return result


def _candidate_case(job: dict) -> dict:
    """Cut a crop around each candidate of one scan, streamed into `crops/{case}.npy`."""
    # pandas (0.7 s) on first use: `prepare` of the segmentation tasks never needs it.
    import pandas as pd

    volume = read_volume(job["image"])
    if job.get("spacing") is not None:
        volume = resample_volume(volume, job["spacing"], order=1)
    world = np.asarray(job["world"], dtype=float).reshape(-1, 3)
    labels = np.asarray(job["labels"], dtype=np.int64)
    ijk = np.rint(volume.world_to_voxel(world))
    inside = np.all((ijk >= 0) & (ijk < np.asarray(volume.shape)), axis=1)
    outside = [{"item": f"{job['case']} candidate at ({w[0]:.1f}, {w[1]:.1f}, {w[2]:.1f}) mm",
                "reason": f"lies outside its volume {job['image']} (shape {volume.shape})"}
               for w in world[~inside]]
    if outside and job["on_error"] == "stop":
        raise ValueError(f"{outside[0]['item']} {outside[0]['reason']}")
    array = np.asarray(volume.array)
    window = intensity_window(array, job["modality"])
    shape = tuple(job["input_shape"])
    kept = ijk[inside]

    def chunks():
        for start in range(0, len(kept), CHUNK):
            crops = extract_crops(array, kept[start:start + CHUNK], shape, pad_value=window[0])
            yield scale_to_unit(crops, window)

    out = {k: os.path.join(job["out_dir"], v) for k, v in case_outputs(job["task"],
                                                                       job["case"]).items()}
    os.makedirs(os.path.dirname(out["crops"]), exist_ok=True)
    write_crop_file(out["crops"], chunks(), len(kept), shape)
    table = pd.DataFrame({"crop_index": np.arange(len(kept)), "class": labels[inside],
                          "coordX": world[inside, 0], "coordY": world[inside, 1],
                          "coordZ": world[inside, 2]})
    write_csv(out["table"], table, tmp_suffix=f".tmp-{os.getpid()}")
    return {"n_crops": int(len(kept)), "n_positives": int(labels[inside].sum()),
            "skipped_items": outside, "shape": list(volume.shape)}


def prepare_case(job: dict) -> dict:
    """Prepare one case (run in a worker process); return what the manifest records of it.

    Args:
        job: from `list_cases`: `task`, `case`, `out_dir`, the source files and parameters.

    Returns:
        dict: `case`, `files` (relative paths) and the case's counts.

    Raises:
        ValueError, OSError: a bad case (the caller skips it or stops, `--on-error`).
    """
    if job["task"] in ("ncc", "ecc"):
        result = _candidate_case(job)
    else:
        result = _segmentation_case(job)
    return {"case": job["case"], "files": case_outputs(job["task"], job["case"]),
            **job.get("record", {}), **result}


def file_checksum(path) -> Dict[str, object]:
    """`{"size": bytes, "sha256": hex}` of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
    return {"size": os.path.getsize(path), "sha256": digest.hexdigest()}


def case_checksums(out_dir, task: str, case_id: str) -> Dict[str, Dict[str, object]]:
    """`file_checksum` of each file of a finished case, by relative path (for the manifest)."""
    return {rel: file_checksum(os.path.join(os.fspath(out_dir), rel))
            for rel in case_outputs(task, case_id).values()}


def case_damage(out_dir, task: str, case_id: str, entry: Optional[dict]) -> Optional[str]:
    """Why a case the manifest lists as done is not intact (a file missing, of another size or
    checksum than when it was written), or None when it is. Entries without checksums (older
    manifests) are checked for their files only."""
    recorded = (entry or {}).get("checksums") or {}
    for rel in case_outputs(task, case_id).values():
        path = os.path.join(os.fspath(out_dir), rel)
        if not os.path.isfile(path):
            return f"{path} is missing"
        if rel in recorded:
            if os.path.getsize(path) != recorded[rel].get("size"):
                return (f"{path} has {os.path.getsize(path)} bytes, {recorded[rel].get('size')} "
                        "when it was written")
            if file_checksum(path)["sha256"] != recorded[rel].get("sha256"):
                return f"{path} changed since it was written (SHA-256 differs)"
    return None


def case_is_done(out_dir, task: str, case_id: str, entry: Optional[dict]) -> bool:
    """A case is finished when the manifest lists it and its files are as they were written
    (`case_damage`)."""
    if not entry or entry.get("status") != "done":
        return False
    return case_damage(out_dir, task, case_id, entry) is None


def write_candidate_table(out_dir, manifest: dict) -> str:
    """Join the finished cases' crop tables into `candidates.csv` (atomic)."""
    # pandas (0.7 s) on first use: `prepare` of the segmentation tasks never needs it.
    import pandas as pd

    out_dir = os.fspath(out_dir)
    frames: List = []
    for case_id, entry in sorted(manifest["cases"].items()):
        if entry.get("status") != "done":
            continue
        files = case_outputs(manifest["task"], case_id)
        table = pd.read_csv(os.path.join(out_dir, files["table"]))
        table.insert(0, "crop_file", files["crops"])
        table.insert(0, "seriesuid", case_id)
        if entry.get("subset") is not None:
            table["subset"] = int(entry["subset"])
        frames.append(table)
    columns = ["seriesuid", "crop_file", "crop_index", "class", "coordX", "coordY", "coordZ"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return write_csv(os.path.join(out_dir, "candidates.csv"), table)


def write_annotation_table(out_dir, manifest: dict) -> str:
    """Join the finished NCS cases' nodule centres into `annotations.csv` (atomic)."""
    # pandas (0.7 s) on first use: `prepare` of the segmentation tasks never needs it.
    import pandas as pd

    rows = [{"seriesuid": case_id, "coordX": n[0], "coordY": n[1], "coordZ": n[2],
             "diameter_mm": n[3] if len(n) > 3 else np.nan}
            for case_id, entry in sorted(manifest["cases"].items())
            if entry.get("status") == "done" for n in entry.get("nodules", [])]
    table = pd.DataFrame(rows, columns=["seriesuid", "coordX", "coordY", "coordZ",
                                        "diameter_mm"])
    return write_csv(os.path.join(os.fspath(out_dir), "annotations.csv"), table)
