"""Peak memory of NCC at scale: preparing and one training epoch, 1x against 10x the candidates.

Goal: memory flat in the candidate count, peak RSS(10x) / peak RSS(1x) <= 1.2, for
`models-genesis prepare` (crops streamed to per-scan float16 `.npy` files) and for one training
epoch on the prepared folder (crops read batch by batch, `negative_ratio` negatives per positive
drawn each epoch).

A synthetic LUNA16-layout set is written with the chest-phantom maker (10 scans in subset0..9,
real 64x64x32 crops); its candidate table is then extended with random false candidates inside
each scan: `--base` per scan (1x) and ten times as many (10x), the same scans and the same true
nodules. Each measurement runs in a fresh process and reads its own peak RSS (`VmHWM`).

    python benchmarks/target_memory.py [--out /tmp/target_memory] [--base 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from models_genesis.pipeline.result_records import add_record_option, record_run


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


def make_sets(out: str, base: int, shape) -> dict:
    """Phantom scans once; two candidate tables (1x, 10x) over the same scans."""
    import pandas as pd

    from models_genesis.data.phantoms.chest import make_chest_phantoms
    from models_genesis.data.io.volumes import index_volumes, read_volume

    scans = os.path.join(out, "scans")
    if not os.path.isfile(os.path.join(scans, "phantoms.json")):
        make_chest_phantoms(scans, n=10, seed=0, shape=shape, progress=False)
    table = pd.read_csv(os.path.join(scans, "candidates.csv"), dtype={"seriesuid": str})
    positives = table[table["class"] == 1]
    sets = {}
    for factor in (1, 10):
        folder = os.path.join(out, f"raw_{factor}x")
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(scans):  # the same scans: links, not copies
            target = os.path.join(folder, name)
            if name.startswith("subset") and not os.path.exists(target):
                os.symlink(os.path.join(scans, name), target)
        rows = [positives]
        for uid, path in sorted(index_volumes(folder, "subset*/*.mhd").items()):
            volume = read_volume(path)
            rng = np.random.default_rng([factor, len(rows)])
            ijk = rng.random((base * factor, 3)) * (np.asarray(volume.shape) - 1)
            world = volume.voxel_to_world(ijk)
            rows.append(pd.DataFrame({"seriesuid": uid, "coordX": world[:, 0],
                                      "coordY": world[:, 1], "coordZ": world[:, 2], "class": 0}))
        candidates = pd.concat(rows, ignore_index=True)
        candidates.to_csv(os.path.join(folder, "candidates.csv"), index=False)
        sets[factor] = {"raw": folder, "n_candidates": int(len(candidates)),
                        "n_positives": int(len(positives))}
    return sets


def child_prepare(raw: str, prepared: str) -> dict:
    from models_genesis.pipeline.prepare import prepare_dataset

    start = time.perf_counter()
    manifest = prepare_dataset("ncc", raw, prepared, workers=1, progress=False)
    n_crops = sum(c["n_crops"] for c in manifest["cases"].values())
    return {"seconds": time.perf_counter() - start, "n_crops": n_crops}


def child_epoch(prepared: str, batch_size: int) -> dict:
    import keras

    from models_genesis.data.target_tasks import load_target_data
    from models_genesis.models.heads import target_model

    data = load_target_data("ncc", prepared, seed=0, negative_ratio=10)
    model = target_model("classification", tuple(data.input_shape) + (1,), n_base_filters=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    train = data.dataset("train", batch_size=batch_size, seed=0)
    start = time.perf_counter()
    model.fit(train, epochs=1, verbose=0)
    return {"seconds": time.perf_counter() - start, "samples": int(len(train.rows())),
            "train_candidates": int(len(data.rows["train"]))}


def run_child(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/target_memory", help="scratch folder")
    parser.add_argument("--base", type=int, default=100, help="false candidates per scan at 1x")
    parser.add_argument("--shape", type=int, nargs=3, default=(192, 192, 96))
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    add_record_option(parser, "benchmarks/results/target_memory.json")
    args = parser.parse_args(argv)
    if args.child:
        what, *rest = args.child
        result = child_prepare(*rest) if what == "prepare" else child_epoch(rest[0], int(rest[1]))
        print(json.dumps({**result, "peak_rss_mib": peak_rss_mib()}))
        return 0
    os.makedirs(args.out, exist_ok=True)
    sets = make_sets(args.out, args.base, tuple(args.shape))
    rows = {}
    for factor, s in sets.items():
        prepared = os.path.join(args.out, f"prepared_{factor}x")
        shutil.rmtree(prepared, ignore_errors=True)
        prep = run_child("prepare", s["raw"], prepared)
        epoch = run_child("epoch", prepared, str(args.batch_size))
        rows[factor] = {**s, "prepare": prep, "epoch": epoch}
        print(f"{factor:>2}x: {s['n_candidates']:>6} candidates ({s['n_positives']} true) | "
              f"prepare: peak RSS {prep['peak_rss_mib']:.0f} MiB, {prep['seconds']:.1f} s | "
              f"one epoch ({epoch['samples']} of {epoch['train_candidates']} training "
              f"candidates): peak RSS {epoch['peak_rss_mib']:.0f} MiB, {epoch['seconds']:.1f} s")
    table = [[f"{factor}x ({r['n_candidates']:,})", f"{r['prepare']['peak_rss_mib']:,.0f} MiB",
              f"{r['prepare']['seconds']:.1f} s", f"{r['epoch']['peak_rss_mib']:,.0f} MiB",
              f"{r['epoch']['samples']} of {r['epoch']['train_candidates']:,} training candidates"]
             for factor, r in rows.items()]
    ratios = {}
    for stage in ("prepare", "epoch"):
        ratios[stage] = rows[10][stage]["peak_rss_mib"] / rows[1][stage]["peak_rss_mib"]
        print(f"{stage}: peak RSS 10x / 1x = {ratios[stage]:.3f} (goal <= 1.2)")
    table.append(["10x / 1x", f"{ratios['prepare']:.3f}", "", f"{ratios['epoch']:.3f}", ""])
    record_run(args.record, "target_memory.py", table={
        "columns": ["candidates", "prepare: peak RSS", "prepare time", "one epoch: peak RSS",
                    "samples in the epoch"], "rows": table})
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
