"""Independent fine-tuning runs of an experiment trained at once, one process per run.

Each worker process takes one group of devices for its whole life (`training.devices.
device_groups`: its own GPUs through `CUDA_VISIBLE_DEVICES`, or the shared CPU) and trains the
runs it is handed with `finetune`, exactly as one run after another would: a run's result depends
only on its config and data (its seed sets the weights, the labelled subset, the data order), not
on the process it runs in. Processes are started with `spawn`, so each imports its Keras backend
afresh after its devices are set.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, List, Optional, Tuple


def _take_devices(groups) -> None:
    """Pool initializer: claim one device group before the backend starts."""
    group = groups.get()
    if group is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in group)


def _finetune_one(config, data, verbose, run_eagerly) -> dict:
    from models_genesis.training.finetune import finetune

    # overwrite: a run missing from results.csv is redone from scratch in its own folder.
    return finetune(config, data, verbose=verbose, run_eagerly=run_eagerly, overwrite=True)


def finetune_runs(jobs: Iterable[Tuple[object, object]], groups: List[Optional[list]], *,
                  verbose=0, run_eagerly: bool = False,
                  on_result: Optional[Callable[[int, dict], None]] = None) -> List[dict]:
    """Fine-tune `(config, data)` jobs, `len(groups)` at a time, one process per device group.

    Args:
        jobs: `(FinetuneConfig, data)` pairs (`data` as `finetune` takes it; sent to a worker
            with each job).
        groups: one entry per worker: the GPU indices it sees, or None (all devices: CPUs).
        verbose, run_eagerly: as `finetune`.
        on_result: called as `on_result(i, result)` for job i, in the order of `jobs` (so a
            results file fills in the same order as with one run after another).

    Returns:
        The results, in the order of `jobs`.
    """
    jobs = list(jobs)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    for group in groups:
        queue.put(group)
    results = []
    with ProcessPoolExecutor(max_workers=len(groups), mp_context=context,
                             initializer=_take_devices, initargs=(queue,)) as pool:
        futures = [pool.submit(_finetune_one, config, data, verbose, run_eagerly)
                   for config, data in jobs]
        try:
            for i, future in enumerate(futures):
                results.append(future.result())
                if on_result is not None:
                    on_result(i, results[-1])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # the runs started finish; no new one
            raise
    return results
