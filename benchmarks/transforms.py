"""Benchmark: the composed transformation vs a plain loop transcription of
docs/release_reference.md, 'Transformations'.

Prints samples per second of both on 64x64x32 float32 cubes, measured in the same run on one
core, and their ratio (the goal is >= 20x). The baseline below exists for this benchmark
only: it follows docs/release_reference.md, 'Transformations' step by step with Python loops (one
numpy call per shuffling window, a 100,000-point Bezier table per call), drawing from a numpy
Generator.

Run: `python benchmarks/transforms.py [--seconds 10] [--shape 64 64 32]`
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from models_genesis.pipeline.result_records import add_record_option, record_run


def _baseline_local_shuffle(x, rng, n_windows=10000):
    out = x.copy()
    rows, cols, deps = x.shape
    for _ in range(n_windows):
        bx = int(rng.integers(1, rows // 10 + 1))
        by = int(rng.integers(1, cols // 10 + 1))
        bz = int(rng.integers(1, deps // 10 + 1))
        px = int(rng.integers(0, rows - bx + 1))
        py = int(rng.integers(0, cols - by + 1))
        pz = int(rng.integers(0, deps - bz + 1))
        window = x[px:px + bx, py:py + by, pz:pz + bz].flatten()
        rng.shuffle(window)
        out[px:px + bx, py:py + by, pz:pz + bz] = window.reshape(bx, by, bz)
    return out


def _baseline_nonlinear(x, rng, n_times=100000):
    points = [[0.0, 0.0], [rng.random(), rng.random()], [rng.random(), rng.random()], [1.0, 1.0]]
    xp = np.array([p[0] for p in points])
    yp = np.array([p[1] for p in points])
    t = np.linspace(0.0, 1.0, n_times)
    bern = np.array([[1, 3, 3, 1][i] * t ** (3 - i) * (1 - t) ** i for i in range(4)])
    xvals, yvals = xp @ bern, yp @ bern
    if rng.random() < 0.5:
        xvals = np.sort(xvals)
    else:
        xvals, yvals = np.sort(xvals), np.sort(yvals)
    return np.interp(x, xvals, yvals)


def _baseline_inner(x, rng):
    x = x.copy()
    r, c, d = x.shape
    cnt = 5
    while cnt > 0 and rng.random() < 0.95:
        bx, by, bz = (int(rng.integers(n // 6, n // 3 + 1)) for n in (r, c, d))
        px, py, pz = (int(rng.integers(3, n - b - 3 + 1)) for n, b in zip((r, c, d), (bx, by, bz)))
        x[px:px + bx, py:py + by, pz:pz + bz] = rng.random((bx, by, bz))
        cnt -= 1
    return x


def _baseline_outer(x, rng):
    r, c, d = x.shape
    out = rng.random(x.shape)
    cnt = 5
    first = True
    while cnt > 0 and (first or rng.random() < 0.95):
        first = False
        bx, by, bz = (n - int(rng.integers(3 * n // 7, 4 * n // 7 + 1)) for n in (r, c, d))
        px, py, pz = (int(rng.integers(3, n - b - 3 + 1)) for n, b in zip((r, c, d), (bx, by, bz)))
        out[px:px + bx, py:py + by, pz:pz + bz] = x[px:px + bx, py:py + by, pz:pz + bz]
        cnt -= 1
    return out


def baseline_pair(cube, rng):
    """The release's transformations as plain loops, at its probabilities.

    See docs/release_reference.md, 'Transformations'. Returns (x, y).
    """
    x = cube.astype(np.float64)
    y = x.copy()
    cnt = 3
    while rng.random() < 0.4 and cnt > 0:
        axis = int(rng.integers(0, 3))
        x, y = np.flip(x, axis=axis), np.flip(y, axis=axis)
        cnt -= 1
    if rng.random() < 0.5:
        x = _baseline_local_shuffle(x, rng)
    if rng.random() < 0.9:
        x = _baseline_nonlinear(x, rng)
    if rng.random() < 0.9:
        x = _baseline_inner(x, rng) if rng.random() < 0.2 else _baseline_outer(x, rng)
    return x, y


def _rate(fn, cubes, seconds):
    """Samples per second of `fn(cube, rng)` over at least `seconds` (and >= 5 samples)."""
    rng = np.random.default_rng(0)
    n, start = 0, time.process_time()  # CPU time of this process: per-core throughput
    while n < 5 or time.process_time() - start < seconds:
        fn(cubes[n % len(cubes)], rng)
        n += 1
    return n / (time.process_time() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU seconds per method")
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 64, 32))
    add_record_option(parser, "benchmarks/results/transforms.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models_genesis.transformations.unified import genesis_transform

    cubes = np.random.default_rng(1).random((8,) + tuple(args.shape), dtype=np.float32)
    genesis_transform(cubes[0], rng=np.random.default_rng(0), scheme="local_shuffling")  # compile
    ours = _rate(lambda c, rng: genesis_transform(c, rng=rng), cubes, args.seconds)
    base = _rate(baseline_pair, cubes, args.seconds)
    print(f"cube shape {tuple(args.shape)}, release probabilities, per core (CPU time)")
    print(f"baseline (plain loop transcription): {base:9.1f} samples/s  ({1e3 / base:7.2f} ms/sample)")
    print(f"ours (genesis_transform):            {ours:9.1f} samples/s  ({1e3 / ours:7.2f} ms/sample)")
    print(f"ratio: {ours / base:.1f}x")
    record_run(args.record, f"transforms.py, {'x'.join(map(str, args.shape))} cubes",
               numbers={"baseline, samples/s": round(base, 1), "ours, samples/s": round(ours, 1),
                        "ratio": f"{ours / base:.1f}x"})
    return ours / base


if __name__ == "__main__":
    main()
