"""Is any pre-training method's pair (or label) maker the bottleneck of a training step?

For every method of `models_genesis.methods` (genesis first, as the reference transform), in one
run: samples per second made by the method's `make_dataset` in this process (one core: the makers
are single-threaded numpy and numba), and the seconds the maker needs for one batch divided by the
seconds of one training step of the demo model (`PretrainConfig.preset("demo")`: 32x32x16 cubes,
n_base_filters 8, batch 8, Adam) and of the method's own model at the same size. A ratio below 1
means one data worker keeps up with training; `workers >= ratio` otherwise.

    python benchmarks/methods.py                       # demo size, every method that imports
    python benchmarks/methods.py --cube-shape 64 64 32 --batch-size 6 --n-base-filters 32

Methods whose module does not import (or whose options do not fit the cubes) are skipped with a
printed line. Training steps are timed with `fit` on one precomputed batch (`--warmup` untimed
steps, then `--steps` timed ones, each waiting for its loss).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from models_genesis.pipeline.result_records import add_record_option, record_run


def _maker_rate(method, options, cubes, batch_size: int, batches: int):
    """(samples/s, one batch) of `method.make_dataset` over in-memory `cubes`, epoch 0."""
    data = method.make_dataset(cubes, batch_size, options=options, cube_shape=cubes.shape[1:],
                               seed=0, shuffle=True, validation=False)
    batch = data[0]  # warm-up: numba compilation, caches
    n = min(batches, len(data))
    start = time.perf_counter()
    for i in range(n):
        data[i]
    return n * batch_size / (time.perf_counter() - start), batch


def _step_seconds(keras, model, loss, batch, warmup: int, steps: int) -> float:
    """Seconds per training step of `model` on one precomputed `batch` (Adam, `loss`)."""
    x, y = batch

    class Timer(keras.callbacks.Callback):
        times = []

        def on_train_batch_end(self, i, logs=None):
            float(keras.ops.convert_to_numpy((logs or {}).get("loss", 0.0)))
            self.times.append(time.perf_counter())

    class Repeat(keras.utils.PyDataset):
        def __len__(self):
            return warmup + steps

        def __getitem__(self, i):
            return x, y

    timer = Timer()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    model.fit(Repeat(), epochs=1, callbacks=[timer], verbose=0)
    t = timer.times[warmup - 1:]
    return (t[-1] - t[0]) / (len(t) - 1)


def _parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cube-shape", type=int, nargs=3, default=[32, 32, 16])
    p.add_argument("--n-base-filters", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=20, help="batches made per method (timed)")
    p.add_argument("--n-cubes", type=int, default=320,
                   help="synthetic cubes in memory (deepcluster needs >= its 260 clusters)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (compilation)")
    p.add_argument("--no-own-steps", action="store_true",
                   help="skip timing each method's own model (only the demo model)")
    add_record_option(p, "benchmarks/results/methods.json")
    return p.parse_args(argv)


def _synthetic_cubes(n_cubes: int, shape) -> np.ndarray:
    """`n_cubes` cubes of smoothed noise (seed 0), each scaled to [0, 1], float32."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.standard_normal((n_cubes, *shape)), sigma=(0, 2, 2, 2))
    lo = smooth.min(axis=(1, 2, 3), keepdims=True)
    return ((smooth - lo) / np.ptp(smooth, axis=(1, 2, 3), keepdims=True)).astype(np.float32)


def _demo_step(keras, cubes, shape, args):
    """The demo preset at this size, and its U-Net's seconds per step on a genesis batch."""
    from models_genesis.config import PretrainConfig
    from models_genesis.methods import get_method, make_options
    from models_genesis.training.pretrain import build_restoration_model

    keras.utils.set_random_seed(0)
    demo = PretrainConfig.preset("demo", cube_shape=shape, n_base_filters=args.n_base_filters,
                                 batch_size=args.batch_size)
    _, demo_model = build_restoration_model(demo)
    genesis = get_method("genesis")
    _, demo_batch = _maker_rate(genesis, make_options("genesis"), cubes, args.batch_size, 1)
    return demo, _step_seconds(keras, demo_model, "mse", demo_batch, args.warmup, args.steps)


def _method_row(keras, name: str, cubes, shape, demo, demo_step: float, args):
    """Time method `name`'s maker (and its own model's step); print its line and return its
    record row, or None where the method is skipped."""
    from models_genesis.methods import get_method, make_options

    try:  # a method being written, or one that does not fit these cubes, is skipped
        method = get_method(name)
        options = make_options(name)
        method.check(options, shape, len(cubes))
        keras.utils.set_random_seed(0)
        _, model = method.build_model(shape, options, n_base_filters=args.n_base_filters,
                                      depth=demo.depth, kernel_initializer="glorot_uniform",
                                      bn_momentum=demo.bn_momentum)
    except Exception as exc:  # noqa: BLE001
        print(f"{name:<16} skipped: {type(exc).__name__}: {exc}")
        return None
    rate, batch = _maker_rate(method, options, cubes, args.batch_size, args.batches)
    per_batch = args.batch_size / rate
    own, own_cells = "", ["", ""]
    if not args.no_own_steps:
        step = _step_seconds(keras, model, method.loss(options), batch, args.warmup,
                             args.steps)
        own = f"{step * 1e3:>11.1f} {per_batch / step:>10.3f}"
        own_cells = [f"{step * 1e3:.1f}", f"{per_batch / step:.3f}"]
    print(f"{name:<16} {rate:>18.1f} {per_batch * 1e3:>9.1f} "
          f"{per_batch / demo_step:>11.3f} {own}", flush=True)
    return [name, f"{rate:.1f}", f"{per_batch * 1e3:.1f}", f"{per_batch / demo_step:.3f}",
            *own_cells]


def main(argv=None) -> int:
    args = _parse_args(argv)

    import keras

    from models_genesis.methods import METHODS

    shape = tuple(args.cube_shape)
    cubes = _synthetic_cubes(args.n_cubes, shape)
    demo, demo_step = _demo_step(keras, cubes, shape, args)
    print(f"cubes {shape}, batch {args.batch_size}, n_base_filters {args.n_base_filters}, "
          f"Keras {keras.__version__} ({keras.backend.backend()})")
    print(f"demo model (genesis U-Net): {demo_step * 1e3:.1f} ms per training step "
          f"({args.batch_size / demo_step:.1f} samples/s)\n")
    header = (f"{'method':<16} {'samples/s (1 core)':>18} {'ms/batch':>9} {'/ demo step':>11} "
              f"{'own step ms':>11} {'/ own step':>10}")
    print(header)
    print("-" * len(header))
    rows = [row for row in (_method_row(keras, name, cubes, shape, demo, demo_step, args)
                            for name in METHODS) if row is not None]
    record_run(args.record, f"cubes {'x'.join(map(str, shape))}; demo step "
               f"{demo_step * 1e3:.0f} ms", table={
                   "columns": ["method", "samples/s", "ms per batch", "/ demo step",
                               "own step ms", "/ own step"], "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
