"""Benchmark: cube extraction's tissue filter vs a plain transcription of the release's loop.

Both run in the same process on the same LUNA16-sized scan (512 x 512 x Z, int16 HU): a chest
phantom drawn at half the in-plane size and repeated 2x in-plane. The baseline exists in this
benchmark only: it follows docs/release_reference.md, 'Cube extraction' voxel by voxel (crop, the
4-deep `d, i, j, k` loop, the weight sum) for a few candidate crops. Ours is
`extract_cubes_from_volume` with the release's parameters, timed end to end (drawing candidates,
filtering, normalising the kept cubes) and divided by the number of candidates it examined, i.e. the
candidates the release would have examined to collect the same cubes. Also printed: the rate of the
summed-area table on all `max_tries_factor * scale` candidates, and the decisions of both on the
looped crops.

Run: `python benchmarks/extraction.py [--loop-candidates 3] [--repeats 3] [--depth 128]`
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from models_genesis.pipeline.result_records import add_record_option, record_run


def _loop_filter(x01, start, config, threshold):
    """The release's per-candidate test, transcribed literally (baseline only)."""
    r, c, d = config.cube_shape
    L = config.lookahead
    x, y, z = start
    crop = x01[x:x + r, y:y + c, z:z + d + L].astype(np.float32)
    d_img = np.zeros((r, c, d), dtype=float)
    for dd in range(d):
        for i in range(r):
            for j in range(c):
                for k in range(L):
                    if crop[i, j, dd + k] >= threshold:
                        d_img[i, j, dd] = k
                        break
                    if k == L - 1:
                        d_img[i, j, dd] = k
    d_img = d_img.astype(np.float32) / (L - 1)
    d_img = 1.0 - d_img
    return bool(np.sum(d_img) <= config.tissue_fraction * r * c * d)


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop-candidates", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--depth", type=int, default=128, help="slices of the scan")
    add_record_option(parser, "benchmarks/results/extraction.json")
    return parser.parse_args(argv)


def _chest_scan(depth: int) -> np.ndarray:
    """A 512 x 512 x `depth` chest phantom in int16 HU (drawn at half the in-plane size)."""
    from models_genesis.data.phantoms.chest import make_chest_phantom

    t0 = time.perf_counter()
    half = make_chest_phantom(np.random.default_rng(0), shape=(256, 256, depth),
                              spacing=(1.4, 1.4, 2.0))["hu"]
    hu = np.ascontiguousarray(np.repeat(np.repeat(half, 2, axis=0), 2, axis=1))
    print(f"scan {hu.shape} int16 HU (phantom drawn in {time.perf_counter() - t0:.1f} s)")
    return hu


def _time_loop(hu, config, n_candidates: int):
    """Seconds per candidate of the release's loop (the scan normalised once), and its starts;
    prints whether its decisions equal ours."""
    from models_genesis.data.io.intensity import normalize_intensity
    from models_genesis.data.pretraining.cubes import sample_cube_starts, tissue_fractions

    x01 = normalize_intensity(hu, config.intensity_range)
    threshold = normalize_intensity(np.float32(config.hu_threshold), config.intensity_range)[()]
    starts = sample_cube_starts(hu.shape, rng=np.random.default_rng(1), config=config,
                                n=n_candidates)
    t0 = time.perf_counter()
    loop_ok = [_loop_filter(x01, s, config, threshold) for s in starts]
    loop_per = (time.perf_counter() - t0) / len(starts)
    ours_ok = list(tissue_fractions(hu, starts, config=config) <= config.tissue_fraction)
    print(f"decisions on the looped crops: loop {loop_ok}, ours {ours_ok}, "
          f"equal: {loop_ok == ours_ok}")
    return loop_per, starts


def _time_ours(hu, config, repeats: int):
    """Seconds per candidate examined by `extract_cubes_from_volume` (seeds 0..repeats-1), and
    the number of candidates examined."""
    from models_genesis.data.pretraining.cubes import extract_cubes_from_volume

    times, tries = [], []
    for seed in range(repeats):
        t0 = time.perf_counter()
        _, info = extract_cubes_from_volume(hu, rng=np.random.default_rng(seed), config=config,
                                            return_info=True)
        times.append(time.perf_counter() - t0)
        tries.append(info["n_tries"])
    return sum(times) / sum(tries), sum(tries)


def _time_table(hu, config):
    """Seconds per candidate of the tissue filter's table over all of one scan's candidates, and
    their number."""
    from models_genesis.data.pretraining.cubes import sample_cube_starts, tissue_fractions

    all_starts = sample_cube_starts(hu.shape, rng=np.random.default_rng(9), config=config)
    t0 = time.perf_counter()
    tissue_fractions(hu, all_starts, config=config, method="table")
    return (time.perf_counter() - t0) / len(all_starts), len(all_starts)


def main(argv=None) -> int:
    from models_genesis.data.pretraining.cubes import ExtractionConfig

    args = _parse_args(argv)
    config = ExtractionConfig()
    hu = _chest_scan(args.depth)
    # Baseline: the release normalises the scan once, then loops per candidate.
    loop_per, starts = _time_loop(hu, config, args.loop_candidates)
    # Ours, end to end, per candidate examined; and the table alone on every candidate.
    ours_per, n_tries = _time_ours(hu, config, args.repeats)
    table_per, n_all = _time_table(hu, config)

    print(f"loop transcription : {1 / loop_per:10.1f} candidates/s ({loop_per * 1e3:.1f} ms each,"
          f" {len(starts)} candidates)")
    print(f"ours, end to end   : {1 / ours_per:10.1f} candidates/s ({ours_per * 1e3:.3f} ms each;"
          f" {n_tries} candidates examined for {args.repeats} x {config.scale} cubes)")
    print(f"ours, table on all : {1 / table_per:10.1f} candidates/s ({n_all} candidates"
          f" of one scan)")
    print(f"ratio (end to end) : {loop_per / ours_per:.0f}x")
    print(f"ratio (table, all) : {loop_per / table_per:.0f}x")
    record_run(args.record, f"extraction.py, scan {hu.shape}",
               numbers={"baseline, candidates/s": round(1 / loop_per, 1),
                        "ours end to end, candidates/s": round(1 / ours_per, 1),
                        "ours, table on all candidates, candidates/s": round(1 / table_per, 1),
                        "ratio (end to end)": f"{loop_per / ours_per:.0f}x",
                        "ratio (table, all)": f"{loop_per / table_per:.0f}x"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
