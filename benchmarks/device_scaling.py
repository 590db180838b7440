"""How pre-training and fine-tuning steps scale with devices: samples/s on 1 device (the baseline)
and on N devices (default: all present) in the same run, and their ratio.

    KERAS_BACKEND=jax python benchmarks/device_scaling.py --mixed-precision bf16   # all GPUs
    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
        python benchmarks/device_scaling.py --cube-shape 16 16 8 --n-base-filters 2 \\
        --batch-size 2 --steps 2 --warmup 1                                       # CPU check

Each device takes `--batch-size` samples per step (the global batch grows with the devices, as in
data-parallel training at a fixed per-device batch): the ideal ratio N / 1 is N. The steps are
those of `pretrain` (the Genesis restoration model: SGD, MSE) and of `finetune` (the segmentation
head: Adam, 1 - Dice), built and compiled by the package, split over the devices with
`training.devices.data_parallel` (`keras.distribution.DataParallel`; JAX backend); each timed
step waits for its loss (`pretrain_throughput._fit_rate`), on one precomputed batch, so the data
pipeline is not measured (see `pretrain_throughput.py` for it).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pretrain_throughput import _fit_rate  # noqa: E402  (the benchmarks' own step timer)


def _rates(keras, args, n: int) -> dict:
    """Samples/s of a pre-training and a fine-tuning step with batches split over `n` devices."""
    from models_genesis.config import FinetuneConfig, PretrainConfig
    from models_genesis.training import devices
    from models_genesis.training.finetune import _compile as compile_finetune
    from models_genesis.training.finetune_model import build_finetune_model
    from models_genesis.training.pretrain import _compile as compile_pretrain
    from models_genesis.training.pretrain import build_restoration_model

    batch = args.batch_size * n
    rng = np.random.default_rng(0)
    x = rng.random((batch, *args.cube_shape, 1), dtype=np.float32)
    mask = (x > 0.6).astype(np.float32)
    timing = argparse.Namespace(warmup=args.warmup, steps=args.steps, batch_size=batch)

    class FixedBatch(keras.utils.PyDataset):
        def __init__(self, pair):
            super().__init__()
            self.pair = pair

        def __len__(self):
            return 10 ** 6

        def __getitem__(self, i):
            return self.pair

    out = {}
    with devices.data_parallel(n):
        pre = PretrainConfig(cube_shape=tuple(args.cube_shape), n_base_filters=args.n_base_filters,
                             batch_size=batch)
        _, model = build_restoration_model(pre)
        compile_pretrain(model, pre)
        out["pretrain"] = _fit_rate(keras, model, FixedBatch((x, x)), timing)
        fine = FinetuneConfig(task="ncs", init="he_uniform", n_base_filters=args.n_base_filters,
                              batch_size=batch, input_shape=tuple(args.cube_shape)).resolve()
        model = build_finetune_model(fine, "segmentation", tuple(args.cube_shape), None)
        compile_finetune(model, fine, "segmentation")
        out["finetune"] = _fit_rate(keras, model, FixedBatch((x, mask)), timing)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cube-shape", type=int, nargs=3, default=[64, 64, 32])
    p.add_argument("--n-base-filters", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16, help="samples per device and step")
    p.add_argument("--devices", type=int, help="devices of the scaled run (default: all)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (compilation)")
    p.add_argument("--mixed-precision", choices=["none", "bf16", "fp16"], default="none")
    args = p.parse_args(argv)

    import keras

    from models_genesis.config import MIXED_PRECISION
    from models_genesis.training import devices

    present = devices.available_devices()
    n = args.devices or len(present)
    devices.resolve_devices(n, args.batch_size * n)
    mixed = None if args.mixed_precision == "none" else args.mixed_precision
    devices.check_mixed_precision(mixed)
    if mixed:
        keras.mixed_precision.set_global_policy(MIXED_PRECISION[mixed])
    print(f"backend {keras.backend.backend()}, devices {', '.join(present)}, policy "
          f"{keras.mixed_precision.global_policy().name}, cubes {tuple(args.cube_shape)}, base "
          f"filters {args.n_base_filters}, {args.batch_size} samples per device and step")
    one = _rates(keras, args, 1)
    many = _rates(keras, args, n) if n > 1 else one
    for step in ("pretrain", "finetune"):
        print(f"{step:8s} 1 device (baseline): {one[step]:9.1f} samples/s; {n} devices: "
              f"{many[step]:9.1f} samples/s; scaling ratio {many[step] / one[step]:.2f} "
              f"(ideal {n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
