"""The folder loop of cube extraction: every scan of a data set, in worker processes, to cube files.

`extract_cubes` reads each scan of `data_dir/subset{K}/`, cuts its cubes with
`data.pretraining.cubes.extract_cubes_from_volume` (the release's rule for one scan, paper Sec. 3.1)
and writes one cube file per subset with a JSON manifest: sources, parameters, seed, counts and the
skipped scans with their reasons. `extract_slices` does the same for the axial slices of Genesis
Chest CT 2D (`data.pretraining.slices`). `extract_cubes_from_folder` reads any folder of scans
(`find_scans`: NIfTI, MetaImage, NRRD files and DICOM series folders, recursively), CT or MR
(`ExtractionConfig.modality`), and writes one `train` and one `val` cube file.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import fnmatch
import glob
import logging
import multiprocessing
import os
import zlib
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from models_genesis.atomic import write_json
from models_genesis.data.io.cube_files import claim_cube_dir, cube_file_name, save_cubes
from models_genesis.data.io.dicom import read_dicom_series
from models_genesis.data.io.volumes import read_volume, reorient_volume, volume_key
from models_genesis.data.pretraining.cubes import (EXTRACTION_MODALITIES, ExtractionConfig,
                                                   ScanTooSmallError, extract_cubes_from_volume,
                                                   implausible_spacing)
from models_genesis.data.pretraining.slices import check_slice_config, slice_config
from models_genesis.outputs import owner_stamp, refuse_to_replace, remove_outputs

log = logging.getLogger(__name__)

SCAN_EXTENSIONS = (".nii.gz", ".nii", ".mhd", ".mha", ".nrrd")
# Files beside scans that are neither a scan nor a DICOM slice.
_NOT_DICOM = (".raw", ".zraw", ".json", ".csv", ".txt", ".md", ".xml", ".npy", ".png", ".jpg",
              ".gz", ".zip", ".py", ".ipynb", ".pkl", ".h5")


def _subset_key(subset) -> int:
    text = str(subset)
    return int(text) if text.isdigit() else zlib.crc32(text.encode())


def _extract_scan(task):
    """Worker: read one scan and extract its cubes; skips are returned with their reason."""
    subset, index, path, series_id, config, seed = task
    record = {"subset": str(subset), "index": index, "path": path,
              "seriesuid": series_id or volume_key(path)}
    if config.modality != "ct":
        record["modality"] = config.modality
    rng = np.random.default_rng([int(seed), _subset_key(subset), int(index)])
    try:
        if os.path.isdir(path):  # a DICOM series: uneven slice gaps resampled, with a note
            series = read_dicom_series(path, modality=None, series_uid=series_id)
            volume = reorient_volume(series.volume)
            if series.note:
                record["note"] = series.note
        else:
            volume = read_volume(path)
        problem = implausible_spacing(volume.spacing)
        if problem:
            return {**record, "status": "skipped", "reason": "implausible spacing",
                    "detail": problem}, None
        cubes, info = extract_cubes_from_volume(volume, rng=rng, config=config, return_info=True)
    except ScanTooSmallError as exc:
        return {**record, "status": "skipped", "reason": "too small", "detail": str(exc)}, None
    except (ValueError, FileNotFoundError) as exc:
        return {**record, "status": "skipped", "reason": "unreadable", "detail": str(exc)}, None
    if len(cubes) == 0:
        flat = (f"; {info['n_flat']} had one constant value (e.g. all air)"
                if info["n_flat"] else "")
        return {**record, "status": "skipped", "reason": "no cube passed the tissue filter",
                "detail": f"0 of {info['n_tries']} candidates passed{flat}"}, None
    record.update(status="ok", n_cubes=len(cubes), n_tries=info["n_tries"],
                  shape=list(volume.shape), spacing=list(volume.spacing))
    return record, cubes.astype(config.dtype)


def _claim_outputs(out_dir, subsets, config, overwrite, inputs) -> None:
    """Before any scan is read: `out_dir` may take extract-cubes' files (`claim_cube_dir`), and
    without `overwrite` none of the cube files and manifests to write exists."""
    claim_cube_dir(out_dir, "extract-cubes", overwrite=overwrite, inputs=inputs)
    if not overwrite:
        names = [cube_file_name(config.scale, config.cube_shape, s) for s in subsets]
        refuse_to_replace([os.path.join(out_dir, n[:-4] + ext) for n in names
                           for ext in (".npy", ".json")], where=out_dir, what="cube files")


def extract_cubes(data_dir, subsets: Sequence, out_dir, *, config: Optional[ExtractionConfig] = None,
                  seed: int = 0, workers: Optional[int] = None, pattern: str = "*.mhd",
                  subset_dir: str = "subset{}", progress: bool = True,
                  overwrite: bool = False) -> dict:
    """Extract the cubes of every scan in `data_dir/subset{K}/` and write one file per subset.

    Writes `out_dir/bat_{scale}_s_{r}x{c}x{d}_{subset}.npy` (`cube_files.save_cubes`, in
    `config.dtype`) and a JSON manifest beside it (same name, `.json`): sources, parameters,
    seed, counts and skipped scans with their reasons. Scan `i` of subset `K` is seeded with
    `(seed, K, i)`, so the output does not depend on `workers`.

    Args:
        data_dir: folder holding the subset folders (LUNA16 layout).
        subsets: subset names, e.g. `[0, 1, 2, 3, 4]`.
        out_dir: output folder (created).
        config: `ExtractionConfig` (default: the release's; `ExtractionConfig.demo()` for phantoms).
        seed: base seed.
        workers: processes (default: CPU count, at most 8); 0 or 1 runs in this process.
        pattern: file pattern of the scans in a subset folder.
        subset_dir: subset folder name, `{}` replaced by the subset.
        progress: show a tqdm bar.
        overwrite: replace cube files and manifests of the same names in `out_dir`.

    Returns:
        Summary dict: `files`, `n_cubes` and `n_scans` per subset, `n_skipped`,
        `skipped_by_reason`, `skipped` (path, reason, detail), `seed`, `config`.

    Raises:
        FileNotFoundError: a subset folder is missing or holds no scan matching `pattern`.
        FileExistsError: a cube file or manifest to write exists and `overwrite` is False.
        NotADirectoryError, PermissionError: `out_dir` is a file or not writable.
        All before any scan is read.
    """
    config = config or ExtractionConfig()
    data_dir, out_dir = os.fspath(data_dir), os.fspath(out_dir)
    subsets = [str(s) for s in subsets]
    if not subsets:
        raise ValueError("`subsets` must name at least one subset. Received: subsets=[].")
    _claim_outputs(out_dir, subsets, config, overwrite, inputs=[
        ("subset folder", os.path.join(data_dir, subset_dir.format(s))) for s in subsets])
    groups = {}
    for subset in subsets:
        folder = os.path.join(data_dir, subset_dir.format(subset))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Subset folder not found: {folder!r} (data_dir={data_dir!r}).")
        paths = sorted(glob.glob(os.path.join(folder, pattern)))
        if not paths:
            raise FileNotFoundError(f"Subset {subset!r} is empty: no scan matching {pattern!r} "
                                    f"in {folder!r}.")
        groups[subset] = [(p, None, config) for p in paths]
    summary = _extract_groups(groups, out_dir, config=config, seed=seed, workers=workers,
                              progress=progress)
    return {"data_dir": data_dir, **summary}


def _extract_groups(groups: Dict[str, list], out_dir, *, config, seed, workers,
                    progress, manifest_extras: Optional[Dict[str, dict]] = None) -> dict:
    """Extract `{subset: [(path, series_id, config), ...]}`; write a cube file per subset.

    `manifest_extras[subset]` is added to that subset's manifest.
    """
    tasks = [(subset, i, path, series_id, scan_config, seed)
             for subset, scans in groups.items()
             for i, (path, series_id, scan_config) in enumerate(scans)]
    workers = min(os.cpu_count() or 1, 8) if workers is None else int(workers)
    results = {}
    bar = tqdm(total=len(tasks), desc="extract-cubes", unit="scan", disable=not progress)
    if workers <= 1:
        for task in tasks:
            results[task[:2]] = _extract_scan(task)
            bar.update()
    else:
        with cf.ProcessPoolExecutor(min(workers, len(tasks)),
                                    mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_extract_scan, t): t[:2] for t in tasks}
            for future in cf.as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
    bar.close()
    os.makedirs(out_dir, exist_ok=True)
    summary = {"out_dir": out_dir, "seed": int(seed),
               "config": config.to_dict(), "files": {}, "n_cubes": {}, "n_scans": {},
               "skipped": [], "n_skipped": 0, "skipped_by_reason": {}}
    for subset in groups:
        records = [results[k] for k in sorted(k for k in results if k[0] == subset)]
        ok = [(rec, cubes) for rec, cubes in records if cubes is not None]
        skipped = [rec for rec, cubes in records if cubes is None]
        for rec in skipped:
            log.warning("Skipped %s: %s (%s)", rec["path"], rec["reason"], rec["detail"])
        name = cube_file_name(config.scale, config.cube_shape, subset)
        manifest = {**owner_stamp("extract-cubes"), "file": name, "subset": subset,
                    "seed": int(seed),
                    "parameters": config.to_dict(), "n_scans": len(records),
                    "n_cubes": sum(rec["n_cubes"] for rec, _ in ok),
                    "sources": [rec for rec, _ in ok], "skipped": skipped,
                    "skipped_by_reason": dict(Counter(rec["reason"] for rec in skipped)),
                    **(manifest_extras or {}).get(subset, {})}
        if ok:
            path = save_cubes(os.path.join(out_dir, name),
                              np.concatenate([cubes for _, cubes in ok]), dtype=config.dtype)
            summary["files"][subset] = path
        else:
            log.warning("Subset %s: no scan gave a cube; no file written.", subset)
            remove_outputs([os.path.join(out_dir, name)])  # an earlier run's, with `overwrite`
        write_json(os.path.join(out_dir, name[:-4] + ".json"), manifest)
        summary["n_cubes"][subset] = manifest["n_cubes"]
        summary["n_scans"][subset] = len(records)
        summary["skipped"] += [{k: rec[k] for k in ("path", "reason", "detail")} for rec in skipped]
    summary["n_skipped"] = len(summary["skipped"])
    summary["skipped_by_reason"] = dict(Counter(s["reason"] for s in summary["skipped"]))
    return summary


def _is_dicom_file(path: str) -> bool:
    if path.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def find_scans(data_dir) -> List[Tuple[str, Optional[str]]]:
    """Every scan under `data_dir`, recursively: `(path, series_id)` pairs, sorted by path.

    A file ending in `.nii.gz`, `.nii`, `.mhd`, `.mha` or `.nrrd` is one scan (`series_id`
    None); a folder holding DICOM files (`.dcm`, or `DICM` at byte 128) gives one scan per
    DICOM series in it (`path` the folder, `series_id` its SeriesInstanceUID).

    Raises:
        FileNotFoundError: `data_dir` is missing or holds no scan.
    """
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"Data folder not found: {data_dir!r}.")
    scans = []
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        files = sorted(f for f in files if not f.startswith("."))
        scans += [(os.path.join(root, f), None) for f in files
                  if f.lower().endswith(SCAN_EXTENSIONS)]
        others = [os.path.join(root, f) for f in files
                  if not f.lower().endswith(SCAN_EXTENSIONS + _NOT_DICOM)]
        if any(_is_dicom_file(p) for p in others[:8]):
            import SimpleITK as sitk  # on first use, as in data.io.volumes

            scans += [(root, series) for series in
                      sorted(sitk.ImageSeriesReader.GetGDCMSeriesIDs(root))]
    if not scans:
        raise FileNotFoundError(f"No scan in {data_dir!r}: looked for {', '.join(SCAN_EXTENSIONS)} "
                                f"files and DICOM series folders, recursively.")
    return scans


def _scan_name(data_dir, scan) -> str:
    path, series_id = scan
    rel = os.path.relpath(path, data_dir).replace(os.sep, "/")
    return f"{rel}#{series_id}" if series_id and os.path.isdir(path) else rel


def scan_modality(name: str, modality: Union[str, Sequence[str]]) -> str:
    """The modality of a scan: one name for all, or the first matching `GLOB=MODALITY` rule.

    Args:
        name: the scan's path relative to the data folder (`/`-separated).
        modality: `"ct"`, `"mr"`, or rules such as `["*_0000.nii.gz=ct", "*=mr"]` matched in
            order against `name` (fnmatch; `*` also matches `/`).

    Raises:
        ValueError: an unknown modality, a malformed rule, or no rule matches `name`.
    """
    rules = [modality] if isinstance(modality, str) else list(modality)
    for rule in rules:
        pattern, sep, value = rule.rpartition("=") if "=" in rule else ("*", "=", rule)
        if value not in EXTRACTION_MODALITIES or not pattern:
            raise ValueError(f"`modality` must be one of {list(EXTRACTION_MODALITIES)} or "
                             f"GLOB=MODALITY rules. Received: {rule!r}.")
        if fnmatch.fnmatchcase(name, pattern):
            return value
    raise ValueError(f"No modality rule matches scan {name!r}. Received rules: {rules}; add a "
                     f"last rule such as '*=ct'.")


def _read_list(path, data_dir, names: Dict[str, tuple]) -> List[str]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Scan list not found: {path!r}.")
    with open(path, "r", encoding="utf-8") as f:
        entries = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    out = []
    for entry in entries:
        name = (os.path.relpath(entry, data_dir).replace(os.sep, "/") if os.path.isabs(entry)
                else entry.replace(os.sep, "/"))
        if name not in names:
            raise ValueError(f"Scan list {path!r} names {entry!r}, which is not a scan found under "
                             f"{data_dir!r} (paths relative to it, e.g. "
                             f"{next(iter(names))!r}).")
        out.append(name)
    return out


def split_scans(names: Sequence[str], *, val_ratio: float = 0.2, seed: int = 0,
                train_list=None, val_list=None, data_dir=".") -> Dict[str, List[str]]:
    """Split scan names into `train` and `val`: by list files, or a seeded shuffle by ratio.

    Args:
        names: scan names (paths relative to `data_dir`).
        val_ratio: fraction of scans for validation when no list is given (rounded, at least one
            scan each when there are two or more and the ratio is above 0).
        seed: seed of the shuffle.
        train_list, val_list: text files, one scan path a line (relative to `data_dir`, or
            absolute); given one, the other split is every scan not listed.
        data_dir: the folder the names are relative to.

    Returns:
        `{"train": [...], "val": [...]}`, each sorted; `val` may be empty (ratio 0).

    Raises:
        ValueError: a bad ratio, a listed name that is not a scan, a scan in both lists, or an
            empty training split.
    """
    index = {n: n for n in names}
    if train_list is None and val_list is None:
        if not 0.0 <= val_ratio < 1.0:
            raise ValueError(f"`val_ratio` must be in [0, 1). Received: val_ratio={val_ratio!r}.")
        order = np.random.default_rng(seed).permutation(len(names))
        n_val = int(round(val_ratio * len(names)))
        if val_ratio > 0 and len(names) >= 2:
            n_val = min(max(n_val, 1), len(names) - 1)
        val = {names[i] for i in order[:n_val]}
        train = [n for n in names if n not in val]
    else:
        train = _read_list(train_list, data_dir, index) if train_list is not None else None
        val = _read_list(val_list, data_dir, index) if val_list is not None else None
        if train is None:
            train = [n for n in names if n not in set(val)]
        if val is None:
            val = [n for n in names if n not in set(train)]
        both = sorted(set(train) & set(val))
        if both:
            raise ValueError(f"Scans listed for both training and validation: {both[:5]}.")
    if not train:
        raise ValueError(f"The training split is empty ({len(names)} scans found).")
    return {"train": sorted(train), "val": sorted(val)}


def extract_cubes_from_folder(data_dir, out_dir, *, config: Optional[ExtractionConfig] = None,
                              modality: Union[str, Sequence[str]] = "ct", val_ratio: float = 0.2,
                              train_list=None, val_list=None, seed: int = 0,
                              workers: Optional[int] = None, progress: bool = True,
                              overwrite: bool = False) -> dict:
    """Extract cubes from every scan under `data_dir` (any layout; `find_scans`).

    Writes `bat_{scale}_s_{r}x{c}x{d}_train.npy` and `..._val.npy` (when the validation split is
    not empty) with their manifests, as `extract_cubes` does per subset: pre-train on them with
    `pretrain --train-subsets train --val-subsets val`. The manifests add `split`, the scan
    names of each side, so the split can be reused or audited.

    Args:
        data_dir: folder searched recursively.
        out_dir: output folder (created).
        config: `ExtractionConfig`; its `modality` is replaced per scan by `modality`.
        modality: `"ct"`, `"mr"`, or `GLOB=MODALITY` rules (`scan_modality`).
        val_ratio, train_list, val_list: the split (`split_scans`).
        seed: base seed (the split's shuffle and the crops).
        workers, progress, overwrite: as `extract_cubes`.

    Returns:
        The summary of `extract_cubes`, with `split` added.

    Raises:
        FileNotFoundError, ValueError: no scan, a bad modality rule or split; FileExistsError:
            outputs exist and `overwrite` is False. All before any scan is read.
    """
    config = config or ExtractionConfig()
    data_dir, out_dir = os.fspath(data_dir), os.fspath(out_dir)
    scans = {_scan_name(data_dir, s): s for s in find_scans(data_dir)}
    split = split_scans(list(scans), val_ratio=val_ratio, seed=seed, train_list=train_list,
                        val_list=val_list, data_dir=data_dir)
    split = {k: v for k, v in split.items() if v}
    _claim_outputs(out_dir, list(split), config, overwrite, inputs=[("data folder", data_dir)])
    groups = {subset: [(*scans[name], dataclasses.replace(
        config, modality=scan_modality(name, modality))) for name in names]
        for subset, names in split.items()}
    summary = _extract_groups(groups, out_dir, config=config, seed=seed, workers=workers,
                              progress=progress, manifest_extras={
                                  k: {"data_dir": data_dir, "split": v} for k, v in split.items()})
    return {"data_dir": data_dir, **summary, "split": split}


def extract_slices(data_dir, subsets: Sequence, out_dir, *,
                   config: Optional[ExtractionConfig] = None, **kwargs) -> dict:
    """Cut axial slices from every scan of `data_dir/subset{K}/`; one file per subset.

    Same arguments, seeding, manifests and skipped-scan report as `extract_cubes`
    (`**kwargs`: seed, workers, pattern, subset_dir, progress, overwrite); `config` defaults to
    `slice_config()` and must cut crops one voxel deep.

    Returns:
        The summary of `extract_cubes`; files `bat_{scale}_s_{rows}x{cols}x1_{subset}.npy`.
    """
    config = config or slice_config()
    check_slice_config(config)
    return extract_cubes(data_dir, subsets, out_dir, config=config, **kwargs)
