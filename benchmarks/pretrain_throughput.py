"""Does the data pipeline hold pre-training back? Samples/s of training steps alone vs fed by the
on-the-fly pair generator, measured in one run (issue: at least 400 samples/s end to end on one
H100 with mixed precision at 64x64x32, data never the bottleneck).

    python benchmarks/pretrain_throughput.py                       # release size, batch 32
    KERAS_BACKEND=jax python benchmarks/pretrain_throughput.py --mixed-precision bf16 --workers 16
    python benchmarks/pretrain_throughput.py --cube-shape 32 32 16 --n-base-filters 8 --batch-size 8

Both measurements run `model.fit` for `--warmup + --steps` steps and time the last `--steps`
(each step waits for its loss, so asynchronous backends are timed fairly):
- *steps alone*: a PyDataset that returns one precomputed batch (no transformation cost);
- *fed by the generator*: `RestorationDataset` over synthetic cubes with `--workers` workers.
It also prints the generator's single-worker rate (pairs/s made in this process). Runs on any
Keras backend; no TensorFlow import on this path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from models_genesis.pipeline.result_records import add_record_option, record_run


def _timer_callback(keras, warmup: int):
    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            float(keras.ops.convert_to_numpy((logs or {}).get("loss", 0.0)))  # wait for the step
            self.times.append(time.perf_counter())

        def rate(self, batch_size: int) -> float:
            t = self.times[warmup - 1:]
            return (len(t) - 1) * batch_size / (t[-1] - t[0])

    return StepTimer()


def _fit_rate(keras, model, data, args) -> float:
    timer = _timer_callback(keras, args.warmup)
    model.fit(data, epochs=1, steps_per_epoch=args.warmup + args.steps, callbacks=[timer],
              verbose=0)
    return timer.rate(args.batch_size)


def _parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cube-shape", type=int, nargs=3, default=[64, 64, 32])
    p.add_argument("--n-base-filters", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (compilation)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="generator workers (default: all cores)")
    p.add_argument("--multiprocessing", action="store_true",
                   help="worker processes instead of threads")
    p.add_argument("--mixed-precision", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--n-cubes", type=int, default=256, help="synthetic cubes in memory")
    p.add_argument("--scheme", default="genesis")
    add_record_option(p, "benchmarks/results/pretrain_throughput.json")
    return p.parse_args(argv)


def _compiled_model(keras, args):
    """The release's restoration U-Net at this size, compiled as `pretrain` compiles it."""
    from models_genesis.config import MIXED_PRECISION, PretrainConfig
    from models_genesis.training.pretrain import _compile, build_restoration_model

    if args.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(MIXED_PRECISION[args.mixed_precision])
    config = PretrainConfig(cube_shape=tuple(args.cube_shape), n_base_filters=args.n_base_filters,
                            batch_size=args.batch_size, scheme=args.scheme)
    _, model = build_restoration_model(config)
    _compile(model, config)
    return model


def _datasets(keras, cubes, args):
    """(pairs/s of one worker in this process, one batch repeated, the generator with workers)."""
    from models_genesis.data.pretraining.restoration_dataset import RestorationDataset

    probe = RestorationDataset(cubes, args.batch_size, scheme=args.scheme)
    t0 = time.perf_counter()
    fixed = probe[0]
    one_worker = args.batch_size / (time.perf_counter() - t0)

    class FixedBatch(keras.utils.PyDataset):
        def __len__(self):
            return 10 ** 6

        def __getitem__(self, i):
            return fixed

    n = max(args.n_cubes, args.batch_size * (args.warmup + args.steps))
    fed = RestorationDataset(cubes, args.batch_size, scheme=args.scheme, samples_per_epoch=n,
                             workers=args.workers, use_multiprocessing=args.multiprocessing,
                             max_queue_size=max(10, 2 * args.workers))
    return one_worker, FixedBatch(), fed


def main(argv=None) -> int:
    args = _parse_args(argv)

    import keras

    model = _compiled_model(keras, args)
    cubes = np.random.default_rng(0).random((args.n_cubes, *args.cube_shape), dtype=np.float32)
    one_worker, fixed_batch, fed = _datasets(keras, cubes, args)
    steps_alone = _fit_rate(keras, model, fixed_batch, args)
    with_data = _fit_rate(keras, model, fed, args)

    print(f"backend {keras.backend.backend()}, policy {keras.mixed_precision.global_policy().name}, "
          f"cubes {tuple(args.cube_shape)}, base filters {args.n_base_filters}, "
          f"batch {args.batch_size}, {args.workers} "
          f"{'processes' if args.multiprocessing else 'threads'}")
    print(f"generator, one worker in this process: {one_worker:9.1f} pairs/s")
    print(f"training steps alone (baseline):       {steps_alone:9.1f} samples/s")
    print(f"training fed by the generator (ours):  {with_data:9.1f} samples/s")
    print(f"ratio fed / alone: {with_data / steps_alone:.3f} "
          f"(1.0: the data pipeline never holds training back)")
    print(f"tensorflow imported: {'tensorflow' in sys.modules}")
    record_run(args.record, f"batch {args.batch_size}, {args.mixed_precision}, "
               f"{args.workers} {'processes' if args.multiprocessing else 'threads'}",
               numbers={"backend": keras.backend.backend(),
                        "generator, one worker, pairs/s": round(one_worker, 1),
                        "training steps alone, samples/s": round(steps_alone, 1),
                        "training fed by the generator, samples/s": round(with_data, 1),
                        "ratio fed / alone": round(with_data / steps_alone, 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
