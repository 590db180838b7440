"""`make demo`: the main job, end to end on the embedded synthetic chest-CT phantoms.

1. Build the release's 3D U-Net (16,324,929 parameters), print its summary, predict once.
2. Pre-train a small Models Genesis on the phantoms (`PretrainConfig.preset("demo")`): phantoms
   in the LUNA16 layout -> cube extraction -> restoration of on-the-fly transformed cubes; report
   the validation MSE against doing nothing, overall and for each of the 12 combinations.
3. Compare the demo's Genesis encoder with scratch (he_uniform) on phantom NCC, 5 runs each, by
   two read-outs (`demo_comparison.run_demo_experiment`): the linear probe on the frozen encoder
   and full fine-tuning; mean +- s.d., p-values, one plain-words verdict per read-out and label
   fraction, and `comparison/comparison.png`.

`long=True` (`models-genesis demo --long`, 25-45 minutes on 2 CPU cores) pre-trains
`LONG_PRETRAIN_FACTOR` times longer and compares with `LONG_COMPARISON` (more runs, more label
fractions, longer fine-tuning); each stage prints its progress bar with a time estimate.
Each step reuses its finished outputs on a second call unless `overwrite`. The demo's numbers
(times, restoration errors, both read-outs) go to `results.json` in its folder, a results file
(`pipeline.result_records`) that `benchmarks/results_page.py --add` publishes in docs/results.md.
"""

from __future__ import annotations

import os
import time

import numpy as np

from models_genesis.config import PRETRAIN_PRESETS, PretrainConfig
from models_genesis.atomic import write_json
from models_genesis.data.io.cube_files import find_cube_files, open_cubes
from models_genesis.evaluation import statistics as st
from models_genesis.evaluation.restoration import restoration_by_combination
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.pipeline.demo_comparison import run_demo_experiment
from models_genesis.pipeline.experiment import drop_stale_experiment
from models_genesis.pipeline.pretrain_demo import run_demo_pretraining
from models_genesis.pipeline.result_records import command_line, new_record
from models_genesis.plotting import new_figure, save_figure
from models_genesis.training.run_folder import run_paths

# `demo --long`: what changes against the two-command demo (measured times in docs/results.md).
LONG_PRETRAIN_FACTOR = 2
LONG_COMPARISON = {"runs": 10, "label_fractions": (0.1, 0.25), "epochs": 30, "patience": 10}


def show_release_model() -> None:
    """Build the release U-Net, print its summary, and run one prediction on a random cube."""
    model = unet_model_3d((64, 64, 32, 1))
    model.summary(line_length=110)
    cube = np.random.default_rng(0).random((1, 64, 64, 32, 1), dtype=np.float32)
    out = model.predict(cube, verbose=0)
    print(f"release U-Net: {model.count_params():,} parameters; one prediction "
          f"{cube.shape} -> {out.shape}, values in [{out.min():.3f}, {out.max():.3f}]")


def load_run_model(run_dir, n_cubes: int = 32):
    """`(config, model, cubes)` of a finished restoration pre-training in `run_dir`: its
    `PretrainConfig`, its 3D U-Net with the run's weights, and the first `n_cubes` cubes of its
    first validation subset (the cubes `make demo`'s restoration table is measured on)."""
    run_dir = os.fspath(run_dir)
    config = PretrainConfig.from_json(os.path.join(run_dir, "config.json"))
    model = unet_model_3d(tuple(config.cube_shape) + (1,), n_base_filters=config.n_base_filters,
                          depth=config.depth)
    model.load_weights(run_paths(run_dir, config)["keras2_weights"])
    (path,) = find_cube_files(config.data_dir, [config.val_subsets[0]], config.cube_shape)
    cubes = np.asarray(open_cubes(path)[:n_cubes], dtype=np.float32)
    return config, model, cubes


def restoration_table(pretraining: dict, n_cubes: int = 32):
    """Per-combination restoration MSE of the demo model on validation cubes (subset 5)."""
    config, model, cubes = load_run_model(pretraining["paths"]["out_dir"], n_cubes)
    table = restoration_by_combination(model, cubes, seed=config.seed)
    out = os.path.join(config.out_dir, "restoration_by_combination.csv")
    table.to_csv(out + ".tmp")
    os.replace(out + ".tmp", out)
    return table, out


def plot_restoration(table, path) -> str:
    """Bars of the restoration MSE of the model and of doing nothing, per combination (log)."""
    fig, ax = new_figure(figsize=(9, 3.8))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["identity_mse"], width=0.4, color="tab:grey", label="doing nothing")
    ax.bar(x + 0.2, table["model_mse"], width=0.4, color="tab:red", label="demo model")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xticks(x)
    ax.set_xticklabels(list(table.index), rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("validation MSE")
    ax.set_title("restoration per transformation combination (lower is better)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def readout_rows(results, readout: str, *, method: str = "genesis",
                 baseline: str = "he_uniform") -> list:
    """Rows `[read-out, labels, method, baseline, p]` of one read-out's runs, per label fraction.

    `results` has one row per run (`method`, `label_fraction`, `score` in [0, 1]); the scores
    are given as mean +- s.d. in %, p by the independent two-sample t-test.
    """
    rows = []
    for fraction, runs in results.groupby("label_fraction", sort=True):
        cells = []
        for name in (method, baseline):
            scores = 100 * runs.loc[runs["method"] == name, "score"].to_numpy(float)
            sd = float(np.std(scores, ddof=1)) if scores.size > 1 else float("nan")
            cells.append(f"{scores.mean():.1f} ± {sd:.1f}")
        p = st.ttest_pair(runs, "score", method, baseline)
        rows.append([f"{readout}, {runs['run'].nunique()} runs", f"{fraction:.0%}", *cells,
                     f"{p:.2g}"])
    return rows


def demo_record(pretraining: dict, restoration, experiment: dict, *, seconds: float,
                long: bool) -> dict:
    """The demo's measured numbers as one result record (`pipeline.result_records`)."""
    transformed = restoration.drop(index="identity", errors="ignore")
    ratios = transformed["model_mse"] / transformed["identity_mse"]
    numbers = {"wall time of the demo (s)": round(seconds, 1),
               "pre-training: validation MSE, model": round(pretraining["model_mse"], 5),
               "pre-training: validation MSE, doing nothing": round(pretraining["identity_mse"], 5),
               "pre-training: validation MSE, best constant": round(pretraining["constant_mse"], 5),
               "model / best constant": round(pretraining["model_mse"]
                                              / pretraining["constant_mse"], 2),
               "transformed combinations below doing nothing":
                   f"{int((ratios < 1).sum())} of {len(ratios)}",
               "closest to doing nothing": f"{ratios.idxmax()}, {ratios.max():.2f}x"}
    if "identity" in restoration.index:
        numbers["MSE on untransformed cubes"] = float(f"{restoration.loc['identity', 'model_mse']:.3g}")
    rows = (readout_rows(experiment["probe"], "linear probe (BN recomputed)")
            + readout_rows(experiment["finetune"]["results"], "full fine-tuning"))
    return new_record(
        "models-genesis demo --long" if long else "models-genesis demo", command_line(),
        numbers=numbers,
        table={"columns": ["read-out (test AUC, %)", "labels", "Genesis (demo)", "he_uniform", "p"],
               "rows": rows},
        notes="\n".join(experiment["verdicts"]))


def run_demo(out_dir="runs/demo", *, overwrite: bool = False, long: bool = False) -> dict:
    """Run the demo (`long`: the 25-45 minute version); return what each step produced."""
    started = time.perf_counter()
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    pretrain_overrides = ({"epochs": LONG_PRETRAIN_FACTOR * PRETRAIN_PRESETS["demo"]["epochs"]}
                          if long else {})
    comparison = LONG_COMPARISON if long else {}
    if long:
        print(f"demo --long: pre-training {LONG_PRETRAIN_FACTOR}x the demo's steps, then "
              f"{comparison}; about 25-45 minutes on 2 CPU cores (each stage's bar shows its "
              "estimate)")
    print("== 1/3 the release's 3D U-Net")
    show_release_model()
    print("\n== 2/3 pre-training Models Genesis on the chest-CT phantoms (demo preset)")
    pretraining = run_demo_pretraining(out_dir, overwrite=overwrite, **pretrain_overrides)
    table, table_path = restoration_table(pretraining)
    figure = plot_restoration(table, os.path.splitext(table_path)[0] + ".png")
    print("validation MSE per transformation combination (model vs doing nothing):")
    print(table.to_string(float_format=lambda v: f"{v:.5f}"))
    print("\n== 3/3 Genesis (demo) against scratch (he_uniform) on phantom NCC: linear probe "
          "and full fine-tuning")
    weights = pretraining["paths"]["keras2_weights"]
    drop_stale_experiment(os.path.join(out_dir, "comparison", "finetune_ncc"), weights)
    experiment = run_demo_experiment(out_dir, weights=weights, **comparison)
    print(f"\nOutputs: pre-training run {pretraining['paths']['out_dir']} (weights {weights}, "
          f"figures), restoration table {table_path} and figure {figure}, comparison "
          f"{os.path.dirname(experiment['figure'])} (figure {experiment['figure']})")
    record = demo_record(pretraining, table, experiment, seconds=time.perf_counter() - started,
                         long=long)
    results = write_json(os.path.join(out_dir, "results.json"),
                         {"title": "The demo (`make demo`, `models-genesis demo --long`)",
                          "about": "", "records": [record]}, ensure_ascii=False)
    print(f"Numbers: {results} (publish: python benchmarks/results_page.py --add {results} "
          "--to benchmarks/results/demo.json)")
    print("\nVerdicts:\n" + "\n".join(experiment["verdicts"]))
    return {"pretraining": pretraining, "restoration": table, "restoration_figure": figure,
            "experiment": experiment, "results": results}
