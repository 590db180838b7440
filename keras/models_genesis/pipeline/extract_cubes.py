"""The folder loop of cube extraction: every scan of a data set, in worker processes, to cube files.

`extract_cubes` reads each scan of `data_dir/subset{K}/`, cuts its cubes with
`data.pretraining.cubes.extract_cubes_from_volume` (the release's rule for one scan, paper Sec. 3.1)
and writes one cube file per subset with a JSON manifest: sources, parameters, seed, counts and the
skipped scans with their reasons. `extract_slices` does the same for the axial slices of Genesis
Chest CT 2D (`data.pretraining.slices`).
"""

from __future__ import annotations

import concurrent.futures as cf
import glob
import logging
import multiprocessing
import os
import zlib
from collections import Counter
from typing import Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from models_genesis.atomic import write_json
from models_genesis.data.io.cube_files import claim_cube_dir, cube_file_name, save_cubes
from models_genesis.data.pretraining.cubes import (ExtractionConfig, ScanTooSmallError,
                                            extract_cubes_from_volume, implausible_spacing)
from models_genesis.data.pretraining.slices import check_slice_config, slice_config
from models_genesis.data.io.volumes import read_volume, volume_key
from models_genesis.outputs import owner_stamp, refuse_to_replace, remove_outputs

log = logging.getLogger(__name__)


def _subset_key(subset) -> int:
    text = str(subset)
    return int(text) if text.isdigit() else zlib.crc32(text.encode())


def _extract_scan(task):
    """Worker: read one scan and extract its cubes; skips are returned with their reason."""
    subset, index, path, config, seed = task
    record = {"subset": str(subset), "index": index, "path": path, "seriesuid": volume_key(path)}
    rng = np.random.default_rng([int(seed), _subset_key(subset), int(index)])
    try:
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
    claim_cube_dir(out_dir, "extract-cubes", overwrite=overwrite, inputs=[
        ("subset folder", os.path.join(data_dir, subset_dir.format(s))) for s in subsets])
    if not overwrite:
        names = [cube_file_name(config.scale, config.cube_shape, s) for s in subsets]
        refuse_to_replace([os.path.join(out_dir, n[:-4] + ext) for n in names
                           for ext in (".npy", ".json")], where=out_dir, what="cube files")
    tasks = []
    for subset in subsets:
        folder = os.path.join(data_dir, subset_dir.format(subset))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Subset folder not found: {folder!r} (data_dir={data_dir!r}).")
        paths = sorted(glob.glob(os.path.join(folder, pattern)))
        if not paths:
            raise FileNotFoundError(f"Subset {subset!r} is empty: no scan matching {pattern!r} "
                                    f"in {folder!r}.")
        tasks += [(subset, i, p, config, seed) for i, p in enumerate(paths)]
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
    summary = {"data_dir": data_dir, "out_dir": out_dir, "seed": int(seed),
               "config": config.to_dict(), "files": {}, "n_cubes": {}, "n_scans": {},
               "skipped": [], "n_skipped": 0, "skipped_by_reason": {}}
    for subset in subsets:
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
                    "skipped_by_reason": dict(Counter(rec["reason"] for rec in skipped))}
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
