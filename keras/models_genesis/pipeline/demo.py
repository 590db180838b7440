"""`make demo`: the main job, end to end on the embedded synthetic chest-CT phantoms.

1. Build the release's 3D U-Net (16,324,929 parameters), print its summary, predict once.
2. Pre-train a small Models Genesis on the phantoms (`PretrainConfig.preset("demo")`): phantoms
   in the LUNA16 layout -> cube extraction -> restoration of on-the-fly transformed cubes; report
   the validation MSE against doing nothing, overall and for each of the 12 combinations.
3. Fine-tune on an NCS-like task (nodule segmentation on phantom crops, few labels): the demo's
   Genesis weights against the best scratch baseline (he_uniform), 3 runs, mean +- s.d. table.

Each step reuses its finished outputs on a second call unless `overwrite`.
"""

from __future__ import annotations

import os


def show_release_model() -> None:
    """Build the release U-Net, print its summary, and run one prediction on a random cube."""
    import numpy as np

    from models_genesis.models.unet3d import unet_model_3d

    model = unet_model_3d((64, 64, 32, 1))
    model.summary(line_length=110)
    cube = np.random.default_rng(0).random((1, 64, 64, 32, 1), dtype=np.float32)
    out = model.predict(cube, verbose=0)
    print(f"release U-Net: {model.count_params():,} parameters; one prediction "
          f"{cube.shape} -> {out.shape}, values in [{out.min():.3f}, {out.max():.3f}]")


def restoration_table(pretraining: dict, n_cubes: int = 32):
    """Per-combination restoration MSE of the demo model on validation cubes (subset 5)."""
    import numpy as np

    from models_genesis.config import PretrainConfig
    from models_genesis.data.cube_files import find_cube_files, open_cubes
    from models_genesis.evaluation.restoration import restoration_by_combination
    from models_genesis.models.unet3d import unet_model_3d

    config = PretrainConfig.from_json(pretraining["paths"]["config"])
    model = unet_model_3d(tuple(config.cube_shape) + (1,), n_base_filters=config.n_base_filters,
                          depth=config.depth)
    model.load_weights(pretraining["paths"]["keras2_weights"])
    (path,) = find_cube_files(config.data_dir, [config.val_subsets[0]], config.cube_shape)
    cubes = np.asarray(open_cubes(path)[:n_cubes], dtype=np.float32)
    table = restoration_by_combination(model, cubes, seed=config.seed)
    out = os.path.join(config.out_dir, "restoration_by_combination.csv")
    table.to_csv(out + ".tmp")
    os.replace(out + ".tmp", out)
    return table, out


def _drop_stale_experiment(experiment_dir: str, weights: str) -> None:
    """Remove the demo's own fine-tuning results when they predate its Genesis weights."""
    import shutil

    results = os.path.join(experiment_dir, "results.csv")
    if os.path.isfile(results) and os.path.getmtime(results) < os.path.getmtime(weights):
        print(f"fine-tuning: {experiment_dir} holds runs with older demo weights; redoing them")
        shutil.rmtree(experiment_dir)


def run_demo(out_dir="runs/demo", *, overwrite: bool = False) -> dict:
    """Run the demo; return what each step produced."""
    from models_genesis.pipeline.experiment import run_demo_experiment
    from models_genesis.pipeline.pretrain_demo import run_demo_pretraining

    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    print("== 1/3 the release's 3D U-Net")
    show_release_model()
    print("\n== 2/3 pre-training Models Genesis on the chest-CT phantoms (demo preset)")
    pretraining = run_demo_pretraining(out_dir, overwrite=overwrite)
    table, table_path = restoration_table(pretraining)
    print("validation MSE per transformation combination (model vs doing nothing):")
    print(table.to_string(float_format=lambda v: f"{v:.5f}"))
    print("\n== 3/3 fine-tuning: Genesis (demo) against scratch (he_uniform), phantom NCS")
    _drop_stale_experiment(os.path.join(out_dir, "finetune_ncs"),
                           pretraining["paths"]["keras2_weights"])
    experiment = run_demo_experiment(out_dir, weights=pretraining["paths"]["keras2_weights"],
                                     phantom_dir=pretraining["paths"]["phantoms"])
    print(f"\nOutputs: pre-training run {pretraining['paths']['out_dir']} (weights "
          f"{pretraining['paths']['keras2_weights']}, figures), restoration table {table_path}, "
          f"fine-tuning results {experiment['results_csv']}")
    return {"pretraining": pretraining, "restoration": table, "experiment": experiment}
