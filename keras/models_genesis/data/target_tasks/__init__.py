"""Target-task data: the five tasks of the paper (Sec. 3.2, Table 1; docs/release_reference.md,
'Target tasks') in their formats.

`load_target_data("ncs", data_dir, seed=0)` dispatches through `TARGET_LOADERS` to one module per
task and returns a `TargetData`: crops `(N, rows, cols, deps, 1)` float32 in [0, 1] for train,
validation and test, with labels `(N,)` (NCC, ECC) or masks `(N, rows, cols, deps, 1)` (NCS, LCS,
BMS), and an `info` dict of counts and skipped items. `subsample_fraction` keeps a stratified share
of the training labels (the annotation-efficiency study, paper Fig. 6).

Example:
    >>> data = load_target_data("lcs", "datasets/lits", seed=0, input_shape=(64, 64, 32))
    >>> data.x_train.shape, data.info["counts"]
"""

from __future__ import annotations

import inspect
import os

from models_genesis.config import get_target_task
from models_genesis.data.target_tasks.bms import load_bms
from models_genesis.data.target_tasks.common import TargetData, subsample_fraction
from models_genesis.data.target_tasks.ecc import load_ecc
from models_genesis.data.target_tasks.lcs import load_lcs
from models_genesis.data.target_tasks.ncc import load_ncc
from models_genesis.data.target_tasks.ncs import load_ncs

TARGET_LOADERS = {"ncc": load_ncc, "ncs": load_ncs, "ecc": load_ecc, "lcs": load_lcs,
                  "bms": load_bms}


def load_target_data(task_code: str, data_dir, *, seed: int = 0, input_shape=None,
                     **options) -> TargetData:
    """Load the data of target task `task_code` from `data_dir`.

    Args:
        task_code: `ncc`, `ncs`, `ecc`, `lcs` or `bms` (see `models_genesis.config.TARGET_TASKS`).
        data_dir: the task's folder, in the format its module documents.
        seed: seeds splits, crop positions and undersampling; same seed, same data.
        input_shape: crop (rows, cols, deps), each a multiple of 8; None takes the task's.
        **options: the task loader's keyword options (e.g. `fold=2, split_dir=...` for BMS,
            `negative_ratio=10` for NCC/ECC, `errors="skip"` for all).

    A folder written by `models-genesis prepare` (it has a `manifest.json`) is read with the
    options the manifest records; NCC/ECC crops then stay on disk (see `prepared`).

    Returns:
        `TargetData`, or for a prepared NCC/ECC folder a `CandidateData` (read lazily).

    Raises:
        ValueError: an unknown task, an unknown option, or bad data (see each loader).
    """
    # Here, not at the top: data.target_tasks.prepare_case imports data.target_tasks (import cycle).
    from models_genesis.data.target_tasks.prepare_case import read_manifest

    code = get_target_task(task_code).code
    loader = TARGET_LOADERS[code]
    manifest = read_manifest(data_dir) if os.path.isdir(os.fspath(data_dir)) else None
    if manifest is not None:  # a folder written by `models-genesis prepare`
        # Here, not at the top: prepared loads Keras, and this module is on `--help`'s import path.
        from models_genesis.data.target_tasks.prepared_data import load_prepared

        try:
            return load_prepared(code, data_dir, manifest, loader, seed=seed,
                                 input_shape=input_shape, **options)
        except TypeError as exc:
            raise ValueError(f"Bad options for the prepared {code!r} folder {data_dir} ({exc}). "
                             f"Received: options={sorted(options)}.") from None
    try:
        inspect.signature(loader).bind(data_dir, seed=seed, input_shape=input_shape, **options)
    except TypeError as exc:
        raise ValueError(f"Bad options for target task {code!r} ({exc}). Received: "
                         f"options={sorted(options)}.") from None
    return loader(data_dir, seed=seed, input_shape=input_shape, **options)


__all__ = ["TARGET_LOADERS", "TargetData", "load_target_data", "subsample_fraction", "load_ncc",
           "load_ncs", "load_ecc", "load_lcs", "load_bms"]
