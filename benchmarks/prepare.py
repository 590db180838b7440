"""Seconds per case and peak memory of `prepare` on LiTS-sized volumes, beside nnU-Net v2's own
preprocessing of the same folder.

A synthetic LiTS set (`make-phantoms --kind abdomen`: `volume-N.nii` int16 HU +
`segmentation-N.nii` labels 0/1/2, anisotropic voxels) is written once. Then, each in a fresh
process that reports its own peak RSS (`VmHWM`, and its children's for nnU-Net's worker pool):

- ours: `prepare --task lcs --spacing X Y Z` with one worker (read, check the grid and labels,
  resample with SimpleITK: the image linearly, the mask per label linearly with a > 0.5
  threshold, write `.nii.gz`);
- nnU-Net v2 (when `nnunetv2` is installed: `pip install -e .[benchmark]`): the same files
  linked into its raw layout (`DatasetNNN_LiTSBench/imagesTr/case_0000.nii`, `labelsTr/`,
  `dataset.json`), its fingerprint and plans (timed apart, reported, not in the ratio), the
  `3d_fullres` target spacing overwritten with the same spacing, then `DefaultPreprocessor.run`
  with one process (crop to non-zero, CT normalisation, resample: the image by cubic spline
  in-plane and nearest along z when the voxels are more than 3x anisotropic, else cubic
  throughout; the mask per label linearly, nearest along z in the same case; write `.b2nd`).

Prints seconds per case, peak RSS, and the ratio nnU-Net / ours (above 1: ours faster or
smaller), and writes them to `--out/results.json`. Without `nnunetv2` it says so and prints ours.

    python benchmarks/prepare.py [--out /tmp/prepare_bench] [--n 3] [--shape 256 256 100]
        [--spacing 0.8 0.8 2.5] [--target-spacing 1 1 1]

LiTS's own volumes are about 512 x 512 x 400 (`--shape 512 512 400`); the default is smaller so
that a run takes a few minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

DATASET_ID = 987
DATASET_NAME = f"Dataset{DATASET_ID}_LiTSBench"


def peak_rss_mib() -> float:
    """This process's peak RSS, or its largest finished child's when larger (MiB)."""
    own = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                own = int(line.split()[1]) / 1024.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return max(own, children)


def make_data(out: str, n: int, shape, spacing) -> str:
    from models_genesis.data.phantoms.abdomen import make_abdomen_phantoms

    raw = os.path.join(out, "lits")
    summary_path = os.path.join(raw, "benchmark_data.json")
    wanted = {"n": n, "shape": list(shape), "spacing": list(spacing)}
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            if json.load(f) == wanted:
                return raw
    make_abdomen_phantoms(raw, n=n, seed=0, shape=shape, spacing=spacing, overwrite=True)
    with open(summary_path, "w") as f:
        json.dump(wanted, f)
    return raw


def nnunet_raw_layout(out: str, raw: str) -> str:
    """Link the LiTS files into nnU-Net v2's raw layout (no copies)."""
    base = os.path.join(out, "nnUNet_raw", DATASET_NAME)
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    cases = sorted(int(name[len("volume-"):-len(".nii")]) for name in os.listdir(raw)
                   if name.startswith("volume-") and name.endswith(".nii"))
    for k in cases:
        for src, dst in ((f"volume-{k}.nii", f"imagesTr/case{k:03d}_0000.nii"),
                         (f"segmentation-{k}.nii", f"labelsTr/case{k:03d}.nii")):
            target = os.path.join(base, dst)
            if not os.path.lexists(target):
                os.symlink(os.path.abspath(os.path.join(raw, src)), target)
    with open(os.path.join(base, "dataset.json"), "w") as f:
        json.dump({"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1,
                                                            "tumor": 2},
                   "numTraining": len(cases), "file_ending": ".nii"}, f, indent=2)
    return base


def stage_ours(raw: str, out: str, target_spacing) -> dict:
    import shutil

    from models_genesis.pipeline.prepare import prepare_dataset

    prepared = os.path.join(out, "prepared_ours")
    shutil.rmtree(prepared, ignore_errors=True)
    start = time.perf_counter()
    manifest = prepare_dataset("lcs", raw, prepared, spacing=tuple(target_spacing), workers=1,
                               progress=False)
    seconds = time.perf_counter() - start
    shapes = [c["shape"] for c in manifest["cases"].values()]
    return {"seconds": seconds, "n_cases": manifest["n_done"], "peak_rss_mib": peak_rss_mib(),
            "output_shapes": shapes}


def stage_nnunet(out: str, target_spacing) -> dict:
    import shutil

    for name in ("nnUNet_preprocessed", "nnUNet_results"):
        shutil.rmtree(os.path.join(out, name, DATASET_NAME), ignore_errors=True)
        os.makedirs(os.path.join(out, name), exist_ok=True)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset, plan_experiment_dataset)
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import (
        ExperimentPlanner)
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    start = time.perf_counter()
    extract_fingerprint_dataset(DATASET_ID, num_processes=1, verbose=False,
                                show_progress_bar=False)
    # nnU-Net's spacing order is the array's (z, y, x); ours is (x, y, z).
    plan_experiment_dataset(DATASET_ID, ExperimentPlanner,
                            overwrite_target_spacing=tuple(reversed(target_spacing)))
    planning = time.perf_counter() - start
    plans_path = os.path.join(out, "nnUNet_preprocessed", DATASET_NAME, "nnUNetPlans.json")
    with open(plans_path) as f:
        plans = json.load(f)
    config = plans["configurations"]["3d_fullres"]
    start = time.perf_counter()
    preprocessor = DefaultPreprocessor(verbose=False)
    if hasattr(preprocessor, "show_progress_bar"):
        preprocessor.show_progress_bar = False
    preprocessor.run(DATASET_ID, "3d_fullres", "nnUNetPlans", num_processes=1)
    seconds = time.perf_counter() - start
    n = len(os.listdir(os.path.join(out, "nnUNet_raw", DATASET_NAME, "labelsTr")))
    return {"seconds": seconds, "n_cases": n, "peak_rss_mib": peak_rss_mib(),
            "fingerprint_and_plan_seconds": planning,
            "spacing_zyx": config["spacing"], "resampling_fn_data": config["resampling_fn_data"],
            "resampling_fn_data_kwargs": config["resampling_fn_data_kwargs"],
            "resampling_fn_seg_kwargs": config["resampling_fn_seg_kwargs"],
            "nnunetv2_version": _nnunet_version()}


def _nnunet_version():
    from importlib.metadata import version

    return version("nnunetv2")


def run_stage(stage: str, args, env=None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--stage", stage, "--out", args.out,
           "--target-spacing", *map(str, args.target_spacing)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/prepare_bench")
    parser.add_argument("--n", type=int, default=3, help="cases (default 3)")
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 100),
                        help="voxels per volume (LiTS: about 512 512 400)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.8, 0.8, 2.5),
                        help="voxel size of the synthetic volumes, mm (x, y, z)")
    parser.add_argument("--target-spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0),
                        help="the spacing both preprocessings resample to, mm (x, y, z)")
    parser.add_argument("--stage", choices=("ours", "nnunet"), default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out = os.path.abspath(args.out)
    return args


def _measure_ours(args) -> dict:
    ours = run_stage("ours", args)
    ours["interpolation"] = ("SimpleITK: image linear; mask per label linear, > 0.5")
    print(f"ours     : {ours['seconds'] / ours['n_cases']:.2f} s per case, peak RSS "
          f"{ours['peak_rss_mib']:.0f} MiB ({ours['interpolation']})")
    return ours


def _measure_nnunet(args, raw: str, results: dict):
    """nnU-Net v2's stage, or None when it is not installed or fails (the reason in `results`)."""
    try:
        import nnunetv2  # noqa: F401  (only whether it is installed)
    except ImportError as exc:
        results["nnunet"] = None
        results["nnunet_missing"] = f"nnunetv2 is not installed ({exc}); pip install -e .[benchmark]"
        print(f"nnU-Net v2: not installed ({exc}); only ours is measured. "
              "Install it with `pip install -e .[benchmark]`.")
        return None
    nnunet_raw_layout(args.out, raw)
    env = dict(os.environ, nnUNet_raw=os.path.join(args.out, "nnUNet_raw"),
               nnUNet_preprocessed=os.path.join(args.out, "nnUNet_preprocessed"),
               nnUNet_results=os.path.join(args.out, "nnUNet_results"))
    try:
        return run_stage("nnunet", args, env=env)
    except RuntimeError as exc:  # e.g. out of memory on LiTS-sized volumes
        results["nnunet"] = None
        results["nnunet_failed"] = str(exc)[-2000:]
        print(f"nnU-Net v2 failed; only ours is measured:\n{exc}")
        return None


def _compare(results: dict, ours: dict, theirs: dict) -> None:
    """Store and print nnU-Net's numbers and the ratios nnU-Net / ours."""
    kw = theirs["resampling_fn_data_kwargs"]
    theirs["interpolation"] = (
        f"{theirs['resampling_fn_data']}: image order {kw.get('order')} (order_z "
        f"{kw.get('order_z')} along z when anisotropic > 3x); mask per label order "
        f"{theirs['resampling_fn_seg_kwargs'].get('order')}")
    results["nnunet"] = theirs
    results["ratio_seconds_per_case"] = (theirs["seconds"] / theirs["n_cases"]) / \
        (ours["seconds"] / ours["n_cases"])
    results["ratio_peak_rss"] = theirs["peak_rss_mib"] / ours["peak_rss_mib"]
    print(f"nnU-Net v2 {theirs['nnunetv2_version']}: "
          f"{theirs['seconds'] / theirs['n_cases']:.2f} s per case, peak RSS "
          f"{theirs['peak_rss_mib']:.0f} MiB ({theirs['interpolation']}; target spacing "
          f"z, y, x {theirs['spacing_zyx']}); fingerprint + plans before it "
          f"{theirs['fingerprint_and_plan_seconds']:.1f} s, not counted")
    print(f"ratio nnU-Net / ours: {results['ratio_seconds_per_case']:.2f}x seconds per case, "
          f"{results['ratio_peak_rss']:.2f}x peak RSS (above 1: ours faster / smaller)")


def main(argv=None) -> int:
    args = _parse_args(argv)
    # The two stages, each run in a fresh process by `run_stage`.
    if args.stage == "ours":
        print(json.dumps(stage_ours(os.path.join(args.out, "lits"), args.out,
                                    args.target_spacing)))
        return 0
    if args.stage == "nnunet":
        print(json.dumps(stage_nnunet(args.out, args.target_spacing)))
        return 0

    os.makedirs(args.out, exist_ok=True)
    raw = make_data(args.out, args.n, tuple(args.shape), tuple(args.spacing))
    print(f"{args.n} synthetic LiTS cases of {tuple(args.shape)} voxels at {tuple(args.spacing)} "
          f"mm -> {tuple(args.target_spacing)} mm, one process each, in {raw}")
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "n_cases": args.n,
               "shape": list(args.shape), "spacing": list(args.spacing),
               "target_spacing": list(args.target_spacing), "cpu_count": os.cpu_count(),
               "load_average": list(os.getloadavg())}
    ours = results["ours"] = _measure_ours(args)
    theirs = _measure_nnunet(args, raw, results)
    if theirs is not None:
        _compare(results, ours, theirs)
    path = os.path.join(args.out, "results.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, path)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
