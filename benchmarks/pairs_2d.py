"""Benchmark: 2D restoration pairs per second per core (Genesis 2D, docs/genesis_2d.md).

Makes `(transformed, original)` batches with `RestorationDataset(dims=2)` from a memory-mapped
slice file (`bat_*_RxCx1_*.npy`, as `pretrain --dims 2` reads them) in this process only (one
core; `OMP_NUM_THREADS=1` and friends are set before numpy loads), and prints slices per second
for each slice size; the 3D cube size of the release is printed beside them for scale.

Run: `python benchmarks/pairs_2d.py [--seconds 5] [--sizes 64 256]`
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from models_genesis.pipeline.result_records import add_record_option, record_run


def pairs_per_second(files, seconds: float, dims: int, batch_size: int = 6) -> float:
    from models_genesis.data.pretraining.restoration_dataset import RestorationDataset

    ds = RestorationDataset(files, batch_size, dims=dims, seed=0)
    ds.pairs(0, 0)  # warm-up (opens the memory map, builds the Bezier tables)
    n, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        x, _ = ds.pairs(i % len(ds), i // len(ds))
        n += len(x)
        i += 1
    return n / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    add_record_option(parser, "benchmarks/results/pairs_2d.json")
    args = parser.parse_args(argv)
    from models_genesis.data.io.cube_files import cube_file_name, save_cubes

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = save_cubes(os.path.join(tmp, cube_file_name(32, (size, size, 1), "0")),
                              rng.random((120, size, size, 1), dtype=np.float32))
            rate = pairs_per_second([path], args.seconds, dims=2)
            print(f"2D {size}x{size} slices: {rate:8.1f} pairs/s on one core")
            rows.append([f"2D {size}x{size} slices", f"{rate:.1f}"])
        path = save_cubes(os.path.join(tmp, cube_file_name(32, (64, 64, 32), "0")),
                          rng.random((24, 64, 64, 32), dtype=np.float32))
        rate = pairs_per_second([path], args.seconds, 3)
        print(f"3D 64x64x32 cubes (for scale): {rate:8.1f} pairs/s on one core")
        rows.append(["3D 64x64x32 cubes (for scale)", f"{rate:.1f}"])
    record_run(args.record, "pairs_2d.py", table={"columns": ["input", "pairs/s"], "rows": rows})


if __name__ == "__main__":
    main()
