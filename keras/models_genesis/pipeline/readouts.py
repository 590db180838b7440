"""Two read-outs of what pre-training gave, each with a verdict in plain words.

* The linear probe (transfer scenario 1, Sec. 3.2): the encoder is frozen (BatchNorm in inference
  mode) and only a linear classifier on its pooled features is trained, on a classification task
  (NCC): does pre-training give better features than a random encoder?
* Full fine-tuning (transfer scenario 2): every layer is trained, on the task of interest (NCS).

Both run through `run_experiment` (resumable, Table 3's statistics), with the same seeds for the
pre-trained method and the scratch baseline, and `verdict` states the result: better, worse, or
no significant difference at `alpha` (independent two-sample t-test), with the numbers.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import pandas as pd

from models_genesis.evaluation import statistics as st

PROBE = {"head": "linear", "freeze_encoder": True}


def verdict(results: pd.DataFrame, *, method: str, baseline: str, what: str = "",
            alpha: float = 0.05) -> str:
    """One sentence: is `method` better than `baseline` on these runs?

    Args:
        results: one row per run (`method`, `score`), e.g. one task and label fraction.
        method, baseline: the two compared method names.
        what: the read-out's name, first in the sentence (e.g. "linear probe, NCC AUC").
        alpha: significance level of the independent two-sample t-test.

    Returns:
        e.g. "linear probe, NCC AUC: genesis is better than he_uniform (71.2 ± 3.0% vs
        62.5 ± 4.1%, 5 runs each, p = 0.004)." or "... no significant difference ...".

    Raises:
        ValueError: a method without runs.
    """
    scores = {}
    for name in (method, baseline):
        values = pd.to_numeric(results.loc[results["method"] == name, "score"]).to_numpy(float)
        if values.size == 0:
            raise ValueError(f"No runs of {name!r} to compare. Received methods: "
                             f"{sorted(results['method'].astype(str).unique())}.")
        scores[name] = values
    p = st.ttest_pair(results, "score", method, baseline)
    a, b = scores[method], scores[baseline]
    sd = lambda v: float(np.std(v, ddof=1)) if v.size > 1 else float("nan")  # noqa: E731
    numbers = (f"{100 * a.mean():.1f} ± {100 * sd(a):.1f}% vs {100 * b.mean():.1f} ± "
               f"{100 * sd(b):.1f}%, {a.size} and {b.size} runs, p = {p:.2g}")
    prefix = f"{what}: " if what else ""
    if not np.isfinite(p):
        return (f"{prefix}{method} {a.mean() - b.mean():+.1%} against {baseline} ({numbers}); "
                "too few runs for a t-test, no conclusion.")
    if p >= alpha:
        return (f"{prefix}no significant difference between {method} and {baseline} "
                f"({numbers}): this comparison cannot tell them apart.")
    better = "better" if a.mean() > b.mean() else "worse"
    return f"{prefix}{method} is {better} than {baseline} ({numbers})."


def run_readouts(out_dir, *, probe_data, finetune_data, weights: str, probe_task: str = "ncc",
                 finetune_task: str = "ncs", baseline: str = "he_uniform", runs: int = 5,
                 label_fraction: float = 1.0, seed: int = 0,
                 overrides: Optional[dict] = None, alpha: float = 0.05,
                 progress: bool = True) -> dict:
    """The linear probe and full fine-tuning of `weights` (genesis) against `baseline`.

    Args:
        out_dir: folder; the experiments go to `probe_{task}/` and `finetune_{task}/`.
        probe_data, finetune_data: each a data folder or a `TargetData` for its task.
        weights: the pre-trained (genesis) weight file.
        probe_task: a classification task for the probe (NCC on the chest phantoms).
        finetune_task: the task fine-tuned in full.
        baseline: the scratch initialiser compared (the paper's best: `he_uniform`).
        runs, label_fraction, seed: as `run_experiment`; the probe always uses all labels of
            its task, the full fine-tuning `label_fraction`.
        overrides: `FinetuneConfig` fields for every run (`n_base_filters`, `input_shape`, ...).
        alpha: significance level of the verdicts.
        progress: show progress bars.

    Returns:
        dict with `probe` and `finetune` (`run_experiment`'s dicts) and `verdicts` (two lines,
        also printed).
    """
    from models_genesis.pipeline.experiment import run_experiment

    overrides = dict(overrides or {})
    inits = [f"genesis={os.fspath(weights)}", baseline]
    out, lines = {}, []
    for name, task, data, extra, fractions in (
            ("probe", probe_task, probe_data, PROBE, [1.0]),
            ("finetune", finetune_task, finetune_data, {}, [label_fraction])):
        source = ({"data": data} if not isinstance(data, (str, os.PathLike))
                  else {"data_dir": data})
        out[name] = run_experiment(task, inits, runs, fractions,
                                   out_dir=os.path.join(os.fspath(out_dir), f"{name}_{task}"),
                                   seed=seed, overrides={**overrides, **extra},
                                   progress=progress, **source)
        label = ("linear probe (frozen encoder + linear classifier)" if name == "probe"
                 else f"full fine-tuning, {100 * label_fraction:g}% of the labels")
        lines.append(verdict(out[name]["results"], method="genesis", baseline=baseline,
                             what=f"{label}, {task.upper()}", alpha=alpha))
    for line in lines:
        print(line)
    return {**out, "verdicts": lines}
