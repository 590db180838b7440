"""Two read-outs of what pre-training gave, each with a verdict in plain words.

* The linear probe (transfer scenario 1, Sec. 3.2): the encoder is frozen (BatchNorm in inference
  mode) and only a linear classifier on its pooled features is trained, on a classification task
  (NCC): does pre-training give better features than a random encoder?
* Full fine-tuning (transfer scenario 2): every layer is trained, on the task of interest (NCS).

`run_readouts` runs both through `run_experiment` (resumable, Table 3's statistics), with the same
seeds for the pre-trained method and the scratch baseline, and `verdict` states the result:
better, worse, or no significant difference at `alpha` (independent two-sample t-test), with the
numbers. `run_probe` is the demo's quicker probe: the frozen encoder's pooled
features are computed once per run and scikit-learn's L2 logistic regression (C = 1, fixed, not
tuned) is fitted on them. Both arms' BatchNorm statistics are first recomputed on the training
crops (`recompute_batchnorm`): a freshly built encoder keeps mean 0 / variance 1 when frozen (no
normalisation at all) while a pre-trained one keeps the pre-training data's, so without it the
probe would compare normalisations, not features (`run_readouts`' probe, through `finetune`,
keeps them as they are: on the demo's phantoms that made Genesis significantly worse than a
random encoder, against no difference with them recomputed: docs/results.md, 'Log: the demo's
comparison', rows 7 and 3).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import keras
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from models_genesis.atomic import write_csv
from models_genesis.data.target_tasks.common import subsample_fraction
from models_genesis.evaluation import statistics as st
from models_genesis.evaluation.metrics import auc_score
from models_genesis.models.heads import target_model
from models_genesis.pipeline.experiment import run_experiment
from models_genesis.plotting import new_figure, save_figure

PROBE = {"head": "linear", "freeze_encoder": True}
# The labelled subset of run `seed` is drawn as `finetune` draws it, so probe and fine-tuning runs
# with the same seed see the same labels.
_LABEL_RNG = 0x1ABE1


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
               f"{100 * sd(b):.1f}%, {a.size} and {b.size} runs")
    prefix = f"{what}: " if what else ""
    why = st.why_untestable(a, b)
    if why == st.ONE_RUN:
        return (f"{prefix}{method} {a.mean() - b.mean():+.1%} against {baseline} ({numbers}): "
                "with one run no test is possible, so this says nothing about which is better.")
    if why == st.IDENTICAL:
        same = [n for n, v in ((method, a), (baseline, b)) if np.ptp(v) == 0]
        return (f"{prefix}{method} {a.mean() - b.mean():+.1%} against {baseline} ({numbers}): "
                f"identical runs of {' and '.join(same)} (zero variance), so no t-test; the "
                "runs repeat one result and say nothing about its spread.")
    numbers += f", p = {p:.2g}"
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


def recompute_batchnorm(model, x, *, max_crops: int = 512, seed: int = 0) -> int:
    """Set each BatchNormalization layer's moving statistics to those of its inputs over `x`.

    One forward pass in training mode over `x` as a single batch, with every BatchNorm's
    momentum at 0: each layer normalises with the batch's statistics (so each sees inputs already
    normalised by the ones before it) and stores them as its moving statistics. Afterwards
    inference-mode BatchNorm normalises `x` exactly (per channel, biased variance); the learnt
    scale and offset are kept. Only BatchNorm keeps state from the pass (no dropout in the U-Net).

    Args:
        model: a Keras model whose BatchNorm layers are trainable (not frozen yet).
        x: `(N, rows, cols, deps, 1)` inputs, e.g. every training crop (labelled or not).
        max_crops: at most this many crops, drawn at random with `seed` (memory).
        seed: seeds that draw.

    Returns:
        The number of BatchNormalization layers updated.
    """
    layers = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    x = np.asarray(x, np.float32)
    if len(x) > max_crops:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_crops, replace=False))]
    momenta = [l.momentum for l in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        model(x, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


def encoder_features(data, *, init: str = "he_uniform", weights: Optional[str] = None,
                     seed: int = 0, n_base_filters: int = 32, depth: int = 4,
                     batch_size: int = 32, recompute_bn: bool = True) -> tuple:
    """Pooled features `(f_train, f_test)` of the frozen encoder (GlobalAveragePooling3D of
    `depth_7_relu`) on every training and test crop.

    Args:
        data: a classification `TargetData`.
        init: the scratch initialiser when `weights` is None (seeded with `seed`).
        weights: a Genesis weight file whose encoder is probed.
        seed: seeds the random encoder.
        n_base_filters, depth: the encoder's size (that of `weights`).
        batch_size: crops per forward pass.
        recompute_bn: recompute the BatchNorm statistics on the training crops first
            (`recompute_batchnorm`; labels are not used).
    """
    keras.utils.set_random_seed(int(seed))
    model = target_model("classification", tuple(np.shape(data.x_train)[1:]), depth=depth,
                         n_base_filters=n_base_filters, weights=weights, head="linear",
                         kernel_initializer="glorot_uniform" if weights else init)
    if recompute_bn:
        recompute_batchnorm(model, data.x_train, seed=seed)
    features = keras.Model(model.inputs, model.get_layer("gap").output)
    return tuple(np.asarray(features.predict(np.asarray(x, np.float32), batch_size=batch_size,
                                             verbose=0)) for x in (data.x_train, data.x_test))


def fit_probe(f_train, y_train, f_test, y_test, *, C: float = 1.0) -> float:
    """Test AUC of an L2 logistic regression (standardised features, strength `C`, not tuned)."""
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
    classifier.fit(f_train, np.ravel(y_train))
    return auc_score(np.ravel(y_test), classifier.predict_proba(f_test)[:, 1])


def labelled_rows(data, fraction: float, seed: int, *, bootstrap: bool = False) -> np.ndarray:
    """Indices of the training crops labelled in run `seed`: `finetune`'s stratified draw.

    At `fraction` 1 every crop, or with `bootstrap` a resample of them with replacement drawn
    from `seed` (so runs of a pre-trained encoder, whose features are fixed, still differ by
    something that varies, and their spread estimates the sampling error of the training set).
    """
    index = dataclasses.replace(data, x_train=np.arange(len(data.y_train)))
    if fraction >= 1.0:
        if bootstrap:
            rng = np.random.default_rng([int(seed), _LABEL_RNG, 1])
            return np.sort(rng.integers(0, len(index.x_train), size=len(index.x_train)))
        return index.x_train
    return subsample_fraction(index, fraction,
                              rng=np.random.default_rng([int(seed), _LABEL_RNG])).x_train


def run_probe(data, methods: dict, *, runs: int = 5, label_fractions=(1.0,), seed: int = 0,
              C: float = 1.0, out_csv: Optional[str] = None, progress: bool = True,
              **feature_options) -> pd.DataFrame:
    """The linear probe of each method over `runs` seeds and `label_fractions`.

    A pre-trained encoder's features are computed once (they do not depend on the seed); a
    random encoder is drawn anew for each run (seed `seed + r`). Run r labels the same crops for
    every method (`labelled_rows`): a subset drawn per run, and at 100% of the labels a bootstrap
    resample per run, so the runs of a fixed encoder are not five copies of one result.

    Args:
        data: a classification `TargetData`.
        methods: `{name: weight file or None}`; None probes a random encoder (`init`, default
            he_uniform, in `feature_options`).
        runs: runs per method and label fraction.
        label_fractions: labelled shares of the training split.
        seed: first seed.
        C: the logistic regression's inverse L2 strength.
        out_csv: where the runs are written (atomically); None writes nothing.
        progress: show a bar over the runs.
        **feature_options: `encoder_features`' other options (`n_base_filters`,
            `recompute_bn`, ...).

    Returns:
        DataFrame: one row per run (`method`, `label_fraction`, `run`, `seed`, `score` (test
        AUC), `n_train` (labelled crops), `n_test`).
    """
    todo = [(name, r) for name in methods for r in range(runs)]
    cache, rows = {}, []
    for name, run in tqdm(todo, desc="linear probe", unit="encoder", disable=not progress):
        weights = methods[name]
        key = weights if weights is not None else (name, run)
        if key not in cache:
            cache[key] = encoder_features(data, weights=weights, seed=int(seed) + run,
                                          **feature_options)
        f_train, f_test = cache[key]
        for fraction in label_fractions:
            rows_ = labelled_rows(data, float(fraction), int(seed) + run, bootstrap=True)
            auc = fit_probe(f_train[rows_], np.asarray(data.y_train)[rows_], f_test,
                            data.y_test, C=C)
            rows.append({"method": name, "label_fraction": float(fraction), "run": run,
                         "seed": int(seed) + run, "score": auc, "n_train": len(rows_),
                         "n_test": len(f_test)})
    results = pd.DataFrame(rows)
    if out_csv is not None:
        write_csv(out_csv, results)
    return results


def verdicts(results: pd.DataFrame, *, method: str, baseline: str, what: str,
             alpha: float = 0.05) -> list:
    """`verdict` at each label fraction of `results` (one line each)."""
    return [verdict(results[results["label_fraction"] == f], method=method, baseline=baseline,
                    what=f"{what}, {100 * f:g}% of the labels", alpha=alpha)
            for f in sorted(pd.unique(results["label_fraction"]))]


def plot_readouts(readouts: dict, path, *, method: str, baseline: str) -> str:
    """Bars (mean ± s.d.) and dots (runs) of `method` and `baseline` per label fraction, one
    panel per read-out (`{title: results}`), the t-test's p above each pair."""
    fig, axes = new_figure(1, len(readouts), figsize=(4.2 * len(readouts), 3.6), squeeze=False)
    for ax, (title, results) in zip(axes[0], readouts.items()):
        fractions = sorted(pd.unique(results["label_fraction"]))
        for k, (name, colour) in enumerate(((method, "tab:red"), (baseline, "tab:grey"))):
            for i, f in enumerate(fractions):
                v = 100 * pd.to_numeric(results.loc[(results["method"] == name)
                                                    & (results["label_fraction"] == f),
                                                    "score"]).to_numpy(float)
                x = i + (k - 0.5) * 0.38
                ax.bar(x, v.mean(), width=0.36, yerr=v.std(ddof=1) if v.size > 1 else 0,
                       capsize=3, color=colour, alpha=0.75, label=name if i == 0 else None)
                ax.plot(np.full(v.size, x), v, "k.", markersize=3)
        for i, f in enumerate(fractions):
            p = st.ttest_pair(results[results["label_fraction"] == f], "score", method, baseline)
            ax.text(i, ax.get_ylim()[1], f"p={p:.2g}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(fractions)))
        ax.set_xticklabels([f"{100 * f:g}%" for f in fractions])
        ax.set_xlabel("labelled training crops")
        ax.set_ylabel("test AUC (%)")
        ax.set_title(title, fontsize=9, pad=14)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
