"""`models-genesis prepare`: read a downloaded target-task data set once, write the prepared one.

Cases (listed by `models_genesis.data.target_tasks.case_sources.list_cases`) are prepared in parallel
worker processes (`workers`), with a progress bar. The manifest is rewritten atomically after
each finished case, so a killed run resumes where it stopped: a case whose files exist and that
the manifest lists as done is not redone. A bad case stops the run (`on_error="stop"`, with a
one-line error naming the case and the reason; the cases finished before it are kept) or is
recorded in the manifest's `skipped` list (`on_error="skip"`) and summarised at the end.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib.metadata import PackageNotFoundError, version
from typing import Optional

from tqdm.auto import tqdm

from models_genesis.atomic import write_json
from models_genesis.data.target_tasks.case_sources import list_cases
from models_genesis.data.target_tasks.custom import write_custom_dataset_files
from models_genesis.data.target_tasks.prepare_case import (FORMAT, MANIFEST, case_checksums,
                                                           case_damage, prepare_case,
                                                           read_manifest, write_annotation_table,
                                                           write_candidate_table)
from models_genesis.outputs import claim_output_dir, owner_stamp

_ON_ERROR = ("stop", "skip")


def library_versions() -> dict:
    """Versions of the package and of the libraries that read and write the data."""
    out = {"python": platform.python_version()}
    for name in ("models-genesis", "numpy", "scipy", "SimpleITK", "pandas", "pydicom"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _start_manifest(out_dir: str, task: str, data_dir: str, parameters: dict,
                    loader_options: dict, overwrite: bool = False) -> dict:
    """A new manifest (always with `overwrite`), or the existing one when it was made with the
    same task and parameters."""
    settings = json.loads(json.dumps({"task": task, "parameters": parameters}))
    existing = None if overwrite else read_manifest(out_dir)
    if existing is None:
        if os.path.isfile(os.path.join(out_dir, MANIFEST)) and not overwrite:
            raise ValueError(f"{out_dir} holds a {MANIFEST} that is not a prepared data set's; "
                             "use another --out.")
        return {"format": FORMAT, **owner_stamp("prepare"), **settings, "source": os.path.abspath(data_dir),
                "loader_options": loader_options, "versions": library_versions(),
                "cases": {}, "skipped": [], "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    saved = {"task": existing.get("task"), "parameters": existing.get("parameters")}
    if saved != settings:
        raise ValueError(f"{out_dir} holds a data set prepared with other settings; it cannot be "
                         f"resumed. Use another --out. Saved: {saved}. Received: {settings}.")
    return existing


def remove_leftovers(out_dir: str) -> int:
    """Delete the temporary files a killed run left in a prepared folder (`.tmp-write-*`
    folders of `write_volume`, `*.tmp-PID` crop files and tables, `*.tmp`); return how many."""
    pattern = re.compile(r"(^\.tmp-write-|\.tmp-\d+$|\.tmp$)")
    removed = 0
    for root, dirs, files in os.walk(out_dir):
        for name in [d for d in dirs if pattern.search(d)]:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            dirs.remove(name)
            removed += 1
        for name in files:
            if pattern.search(name):
                os.remove(os.path.join(root, name))
                removed += 1
    return removed


def prepare_dataset(task: str, data_dir, out_dir, *, workers: int = 1, on_error: str = "stop",
                    retry_skipped: bool = False, progress: bool = True, input_shape=None,
                    spacing="task", candidates_csv: Optional[str] = None,
                    overwrite: bool = False, custom_options: Optional[dict] = None,
                    **reader_options) -> dict:
    """Prepare (or resume preparing) a target-task data set.

    Args:
        task: target-task code (`ncc`, `ncs`, `ecc`, `lcs`, `bms`).
        data_dir: the data set as downloaded.
        out_dir: the prepared folder (created; resumable).
        workers: worker processes (1: in this process).
        on_error: `"stop"` at the first bad case, or `"skip"` it and record why.
        retry_skipped: try the cases a previous run skipped again.
        progress: show a tqdm bar over cases.
        input_shape, spacing, candidates_csv, custom_options, **reader_options: see
            `list_cases` (e.g. `custom_options={"intensity": ["ct", "mr"], "fold": 0}`, or
            `consensus_level=0.5, min_readers=1` for LIDC-IDRI).
        overwrite: prepare every case again, and write into a non-empty folder that is not a
            prepared set (only the prepared layout's files are replaced); without it such a
            folder is refused before anything is read, and a prepared one is resumed.

    Returns:
        The manifest (dict), with `n_done`, `n_skipped` and `n_resumed` counts of this call.

    Raises:
        ValueError: bad arguments, a folder prepared with other settings, or (with
            `on_error="stop"`) the first bad case.
    """
    _check_run_options(on_error, workers)
    out_dir = os.fspath(out_dir)
    claim_prepared_dir(out_dir, data_dir, overwrite=overwrite)
    jobs, parameters, loader_options, refused = list_cases(
        task, data_dir, out_dir, on_error=on_error, input_shape=input_shape, spacing=spacing,
        candidates_csv=candidates_csv, custom_options=custom_options, **reader_options)
    if refused and on_error == "stop":
        raise ValueError(f"{refused[0]['item']}: {refused[0]['reason']} (and {len(refused) - 1} "
                         "more); pass --on-error skip to leave them out.")

    # A new manifest, or the one a killed run left (its temporary files removed).
    os.makedirs(out_dir, exist_ok=True)
    resuming = read_manifest(out_dir) is not None
    manifest = _start_manifest(out_dir, jobs[0]["task"], data_dir, parameters, loader_options,
                               overwrite=overwrite)
    if resuming:  # a killed run's temporary files (only in a folder prepare made)
        remove_leftovers(out_dir)
    manifest.update(owner_stamp("prepare"))  # also on a manifest older than the stamp

    # The cases left to do: not done, not skipped before, or done but damaged since.
    skipped_before = _reset_skipped(manifest, refused, retry_skipped)
    todo, notes = _cases_to_do(out_dir, jobs, manifest, skipped_before)
    for note in notes:
        print(f"note: {note}")
    n_resumed = len(jobs) - len(todo)
    path = os.path.join(out_dir, MANIFEST)
    write_json(path, manifest)

    # Prepare them, recording each one in the manifest as it finishes; the tables are written
    # from the cases done so far, even when the run stops.
    record = _CaseRecorder(manifest, out_dir, on_error)
    bar = tqdm(total=len(todo), desc=f"prepare {jobs[0]['task']}", unit="case",
               disable=not progress)
    try:
        _prepare_cases(todo, workers, record, bar)
    finally:
        bar.close()
        _write_tables(out_dir, manifest)
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(path, manifest)
    return {**manifest, "n_done": record.n_done, "n_skipped": record.n_skipped,
            "n_resumed": n_resumed, "notes": notes}


def _check_run_options(on_error: str, workers) -> None:
    """Refuse an unknown `on_error` or a `workers` that is not a positive integer."""
    if on_error not in _ON_ERROR:
        raise ValueError(f"`on_error` must be one of {_ON_ERROR}. Received: on_error={on_error!r}.")
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"`workers` must be a positive integer. Received: workers={workers!r}.")


def _reset_skipped(manifest: dict, refused: list, retry_skipped: bool) -> set:
    """Update the manifest's `skipped` list for this run; return the cases not to try again.

    Cases a previous run skipped stay skipped unless `retry_skipped`; items refused before
    (those without a case) are replaced by this run's `refused` items.
    """
    skipped_before = {s["case"] for s in manifest["skipped"] if "case" in s}
    if retry_skipped:
        manifest["skipped"] = [s for s in manifest["skipped"] if "case" not in s]
        skipped_before = set()
    manifest["skipped"] = [s for s in manifest["skipped"] if "case" in s] + \
        [{"item": r["item"], "reason": r["reason"]} for r in refused]
    return skipped_before


def _cases_to_do(out_dir: str, jobs: list, manifest: dict, skipped_before: set) -> tuple:
    """The jobs still to prepare, and notes on finished cases found damaged (prepared again).

    A damaged case is dropped from the manifest's `cases`.
    """
    notes = []
    todo = []
    for j in jobs:
        entry = manifest["cases"].get(j["case"])
        if j["case"] in skipped_before:
            continue
        if entry and entry.get("status") == "done":
            damage = case_damage(out_dir, j["task"], j["case"], entry)
            if damage is None:
                continue
            notes.append(f"case {j['case']} was finished but {damage}: prepared again")
            manifest["cases"].pop(j["case"])
        todo.append(j)
    return todo, notes


class _CaseRecorder:
    """Records each prepared or failed case in the manifest and rewrites it on disk.

    With `on_error="stop"` a failed case raises the run's one-line `ValueError`; with
    `"skip"` it is added to the manifest's `skipped` list.
    """

    def __init__(self, manifest: dict, out_dir: str, on_error: str):
        self.manifest = manifest
        self.out_dir = out_dir
        self.on_error = on_error
        self.n_done = 0
        self.n_skipped = 0

    def __call__(self, job: dict, result: Optional[dict] = None, error=None) -> None:
        manifest = self.manifest
        if error is None:
            skipped = result.pop("skipped_items", [])  # items inside a case (a candidate)
            manifest["cases"][job["case"]] = {
                "status": "done", **result,
                "checksums": case_checksums(self.out_dir, job["task"], job["case"],
                                            result.get("files"))}
            manifest["skipped"] += [{"item": s["item"], "reason": s["reason"]} for s in skipped]
            self.n_done += 1
        else:
            reason = " ".join(str(error).split()) or type(error).__name__
            manifest["cases"].pop(job["case"], None)
            if self.on_error == "skip":  # with "stop" a rerun tries the case again
                manifest["skipped"].append({"case": job["case"], "reason": reason,
                                            "item": job.get("image", job.get("folder", ""))})
                self.n_skipped += 1
        write_json(os.path.join(self.out_dir, MANIFEST), manifest)
        if error is not None and self.on_error == "stop":
            raise ValueError(f"case {job['case']} ({job.get('image', job.get('folder', ''))}): "
                             f"{reason} "
                             f"({self.n_done} case(s) finished this run are kept; pass "
                             "--on-error skip to leave bad cases out)") from error


def _prepare_cases(todo: list, workers, record: _CaseRecorder, bar) -> None:
    """Prepare each job, in this process (`workers=1`) or in a process pool, recording it."""
    if int(workers) == 1:
        for job in todo:
            _record_outcome(record, job, lambda: prepare_case(job))
            bar.update()
        return
    with ProcessPoolExecutor(max_workers=int(workers)) as pool:
        futures = {pool.submit(prepare_case, job): job for job in todo}
        try:
            for future in as_completed(futures):
                _record_outcome(record, futures[future], future.result)
                bar.update()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _record_outcome(record: _CaseRecorder, job: dict, outcome) -> None:
    """Record the result of `outcome()` for `job`, or the case error it raised."""
    try:
        result = outcome()
    except (ValueError, OSError, KeyError) as exc:
        record(job, error=exc)
    else:
        record(job, result)


def _write_tables(out_dir: str, manifest: dict) -> None:
    """Write the task's tables over the prepared cases (candidates, annotations, custom files)."""
    if manifest["task"] in ("ncc", "ecc"):
        write_candidate_table(out_dir, manifest)
    elif manifest["task"] == "ncs":
        write_annotation_table(out_dir, manifest)
    elif manifest["task"] == "custom":
        write_custom_dataset_files(out_dir, manifest)


def claim_prepared_dir(out_dir, data_dir, *, overwrite: bool = False) -> str:
    """Check, before the download is read, that `prepare` may write in `out_dir`: new, empty or
    a prepared set (its manifest); never the download itself, inside it or above it."""
    return claim_output_dir(out_dir, "prepare", markers=(MANIFEST,),
                            legacy=lambda folder: read_manifest(folder) is not None,
                            overwrite=overwrite, inputs=[("--data", data_dir)], name="--out")


def skipped_summary(manifest: dict, limit: int = 10) -> str:
    """A few lines naming the skipped items and why (all of them are in the manifest)."""
    skipped = manifest.get("skipped", [])
    if not skipped:
        return "no case skipped"
    lines = [f"{len(skipped)} item(s) skipped (see {MANIFEST}):"]
    lines += [f"  {s.get('case') or s['item']}: {s['reason']}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return "\n".join(lines)
