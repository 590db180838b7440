"""`make demo`'s comparison: the demo's Genesis encoder against scratch on phantom NCC.

`run_demo_experiment` makes target phantoms the pre-training never saw, then compares the
demo's Genesis weights with `he_uniform` (the paper's best scratch initialiser) by two read-outs,
run r labelling the same crops for both: the linear probe on the frozen encoder
(`readouts.run_probe`, transfer scenario 1) and full fine-tuning (`experiment.run_experiment`,
transfer scenario 2), with one plain-words verdict per read-out and label fraction.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from models_genesis.data.phantoms.chest import make_chest_phantoms
from models_genesis.data.target_tasks import load_target_data
from models_genesis.models.weights import read_keras2_weights
from models_genesis.pipeline import readouts
from models_genesis.pipeline.experiment import run_experiment
from models_genesis.pipeline.pretrain_demo import run_demo_pretraining

# The demo's target phantoms (`run_demo_experiment`): 4 scans per subset, half of them in the test
# split so that the test AUC rests on a few hundred candidates.
DEMO_TARGET_SUBSETS = {"train": (0, 1, 2, 3), "valid": (4,), "test": (5, 6, 7, 8, 9)}
# The demo's fine-tuning runs last a few dozen steps: with the release's BatchNorm momentum (0.99)
# the moving statistics, which validation and test use, stay near their start (the pre-training
# cubes' for Genesis, 0 / 1 for scratch). Measured on the same weights and data, 10 runs per arm:
# docs/results.md, 'Log: the demo's comparison', rows 10 and 11.
DEMO_BN_MOMENTUM = 0.9
# The two arms: the demo's Genesis weights and the paper's best scratch initialiser.
_METHOD, _BASELINE = "genesis", "he_uniform"


def run_demo_experiment(out_dir, *, weights: Optional[str] = None, phantom_dir=None,
                        runs: int = 5, label_fractions: Sequence[float] = (0.25,),
                        probe_fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
                        input_shape: Sequence[int] = (32, 32, 16), epochs: int = 20,
                        patience: int = 5, batch_size: int = 8,
                        steps_per_epoch: Optional[int] = None,
                        seed: int = 0, n_phantoms: int = 40,
                        bn_momentum: Optional[float] = DEMO_BN_MOMENTUM,
                        run_eagerly: bool = False,
                        progress: bool = True) -> dict:
    """`make demo`'s comparison: the demo's Genesis encoder against scratch, two read-outs.

    The task is NCC on chest phantoms made for it (`phantom_dir`, default `out_dir/targets`:
    `n_phantoms` scans drawn with seed `seed + 1`, none of them a pre-training scan), split by
    `DEMO_TARGET_SUBSETS` (16 / 4 / 20 scans at the default 40: a few hundred test candidates).
    Both read-outs compare `genesis` (the demo pre-training's weights) with `he_uniform` (the
    paper's best scratch baseline) over `runs` runs, run r labelling the same crops for both:

    * the linear probe (`readouts.run_probe`, transfer scenario 1): logistic regression on the
      frozen encoder's pooled features, both encoders' BatchNorm statistics recomputed on the
      training crops, at each of `probe_fractions`;
    * full fine-tuning (`run_experiment`, transfer scenario 2) at each of `label_fractions`.

    Each read-out gets one verdict line per label fraction (`readouts.verdicts`), printed;
    `comparison.png` shows both. A second call reuses the finished fine-tuning runs.

    Args:
        out_dir: demo folder (the experiment goes to `comparison/`).
        weights: the demo's Genesis weight file; None runs (or reuses) `run_demo_pretraining`.
        phantom_dir: the target phantoms; made when they are absent.
        runs, label_fractions, probe_fractions: the comparison's size.
        input_shape, epochs, patience, batch_size, steps_per_epoch, bn_momentum: each
            fine-tuning run's (`FinetuneConfig`), the same for both arms; `bn_momentum`
            `DEMO_BN_MOMENTUM` (None: the release's 0.99).
        seed: seed of the split, the runs and (plus 1) the target phantoms.
        n_phantoms: scans to make when `phantom_dir` holds none (at least 10).
        run_eagerly: train without graph tracing (see `finetune`).
        progress: show progress bars.

    Returns:
        dict: `probe` (DataFrame of the probe runs), `finetune` (`run_experiment`'s dict),
        `verdicts` (lines), `figure`, `weights`, `data_counts`, `results_csv` (fine-tuning).
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    phantom_dir = os.fspath(phantom_dir) if phantom_dir else os.path.join(out_dir, "targets")
    # The inputs: the demo's Genesis weights and NCC phantoms the pre-training never saw.
    if weights is None:
        weights = run_demo_pretraining(out_dir, seed=seed)["paths"]["keras2_weights"]
    if not os.path.isfile(os.path.join(phantom_dir, "phantoms.json")):
        make_chest_phantoms(phantom_dir, n=n_phantoms, seed=seed + 1, n_subsets=10,
                            progress=progress)
    weights = os.path.abspath(os.fspath(weights))
    width = _weights_width(weights)
    data = load_target_data("ncc", phantom_dir, seed=seed, input_shape=tuple(input_shape),
                            subsets=DEMO_TARGET_SUBSETS, progress=progress)
    counts = data.info.get("counts", {})
    exp_dir = os.path.join(out_dir, "comparison")
    os.makedirs(exp_dir, exist_ok=True)
    print(_data_summary(data, counts, input_shape, runs))

    # Transfer scenario 1: a linear probe on each frozen encoder.
    probe = readouts.run_probe(data, {_METHOD: weights, _BASELINE: None}, runs=runs,
                               label_fractions=probe_fractions, seed=seed, n_base_filters=width,
                               out_csv=os.path.join(exp_dir, "probe_results.csv"),
                               progress=progress)
    # Transfer scenario 2: full fine-tuning, both arms with the same settings.
    overrides = {"n_base_filters": width, "input_shape": tuple(input_shape), "epochs": epochs,
                 "patience": patience, "batch_size": batch_size,
                 "steps_per_epoch": steps_per_epoch, "bn_momentum": bn_momentum}
    finetuned = run_experiment("ncc", [_METHOD, _BASELINE], runs, list(label_fractions),
                               out_dir=os.path.join(exp_dir, "finetune_ncc"), weights=weights,
                               seed=seed, data=data, overrides=overrides,
                               run_eagerly=run_eagerly, progress=progress)
    print(finetuned["table"])

    # One verdict per read-out and label fraction; both read-outs in one figure.
    lines = _verdict_lines(probe, finetuned["results"])
    figure = readouts.plot_readouts(
        {"linear probe (frozen encoder)": probe, "full fine-tuning": finetuned["results"]},
        os.path.join(exp_dir, "comparison.png"), method=_METHOD, baseline=_BASELINE)
    print("\n".join(lines))
    return {"probe": probe, "finetune": finetuned, "verdicts": lines, "figure": figure,
            "weights": weights, "data_counts": counts, "results_csv": finetuned["results_csv"]}


def _data_summary(data, counts: dict, input_shape: Sequence[int], runs: int) -> str:
    """One line on the comparison's data: crops and nodules per split, runs per method."""
    positives = {s: int(np.sum(getattr(data, f"y_{s}"))) for s in ("train", "valid", "test")}
    return (f"NCC on chest phantoms: {counts} candidate crops of {tuple(input_shape)} (nodules "
            f"{positives}), {runs} runs per method")


def _verdict_lines(probe, finetuned) -> list:
    """`readouts.verdicts` of both read-outs (probe runs, fine-tuning runs), probe first."""
    return (readouts.verdicts(probe, method=_METHOD, baseline=_BASELINE,
                              what="linear probe (frozen encoder), NCC AUC")
            + readouts.verdicts(finetuned, method=_METHOD, baseline=_BASELINE,
                                what="full fine-tuning, NCC AUC"))


def _weights_width(path) -> int:
    """`n_base_filters` of a Genesis weight file: the filters of its first conv."""
    layers = read_keras2_weights(path)
    if "depth_0_conv" not in layers:
        raise ValueError(f"{path!r} has no `depth_0_conv` layer; is it a Genesis U-Net weight "
                         "file?")
    return int(layers["depth_0_conv"][0].shape[-1])
