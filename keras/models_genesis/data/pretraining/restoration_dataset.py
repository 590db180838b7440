"""Restoration pairs made on the fly: a Keras 3 `PyDataset` of (transformed, original) batches.

Models Genesis learns by restoring original cubes from transformed ones (paper Sec. 2). This
dataset reads cubes from memory, a memory-mapped `.npy`, or a list of cube files (opened lazily,
never concatenated in memory), and applies the unified scheme to each cube of a batch.

Determinism (STYLE rule 5): batch `i` of epoch `e` uses `np.random.default_rng((seed, e, i))`
and the epoch's cube order comes from `(seed, e)` alone, so batches are the same with 0, 2 or 8
workers, threads or processes. Keras 3 (checked on 3.15) builds a new worker pool at the start of every
epoch (the enqueuer is stopped in `on_epoch_end` and started in `on_epoch_begin`), so forked
workers see the epoch counter as advanced by `on_epoch_end`;
`tests/data/test_restoration_dataset.py` checks this through `fit` with `workers=2,
use_multiprocessing=True` against `workers=0` and against `pairs(i, e)`.
"""

from __future__ import annotations

import math
import os
from typing import List, Optional, Sequence

import keras
import numpy as np
from matplotlib import image as mpimg

from models_genesis.data.io.cube_files import find_cube_files, open_cubes
from models_genesis.transformations.unified import TransformConfig, genesis_transform


class _CubeSource:
    """Cubes `(N, rows, cols, deps)` from an array or from `.npy` files opened memory-mapped."""

    def __init__(self, cubes):
        self.paths: Optional[List[str]] = None
        self._arrays: Optional[List[np.ndarray]] = None
        if isinstance(cubes, (str, os.PathLike)):
            cubes = [cubes]
        if isinstance(cubes, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in cubes):
            if not cubes:
                raise ValueError("`cubes` must name at least one cube file. Received: cubes=[].")
            self.paths = [os.fspath(p) for p in cubes]
            arrays = self._open()
            shapes = {tuple(a.shape[1:]) for a in arrays}
            if len(shapes) > 1:
                raise ValueError(f"Cube files hold cubes of different shapes {sorted(shapes)}: {self.paths}.")
            self.names = self.paths
        elif isinstance(cubes, np.ndarray):
            arr = cubes[..., 0] if cubes.ndim == 5 and cubes.shape[-1] == 1 else cubes
            if arr.ndim != 4 or arr.dtype.kind not in "fiu":
                raise ValueError(
                    "`cubes` must be an array (N, rows, cols, deps) of floats in [0, 1]. "
                    f"Received: cubes.shape={cubes.shape}, dtype={cubes.dtype}."
                )
            self._arrays = [arr]
            self.names = ["cubes"]
        else:
            raise TypeError(
                "`cubes` must be an array (N, rows, cols, deps), a .npy path or a list of .npy paths. "
                f"Received: {type(cubes).__name__}."
            )
        arrays = self._get()
        self.lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.cube_shape = tuple(int(v) for v in arrays[0].shape[1:])
        if self.offsets[-1] == 0:
            raise ValueError(f"`cubes` holds no cubes: {self.names}.")
        for a, name in zip(arrays, self.names):  # cheap spot check: the first cube of each file
            if len(a):
                self.check(np.asarray(a[0], dtype=np.float32), name, [0])

    def _open(self):
        return [open_cubes(p) for p in self.paths]

    def _get(self):
        if self._arrays is None:
            self._arrays = self._open()
        return self._arrays

    def __len__(self):
        return int(self.offsets[-1])

    def __getstate__(self):  # workers re-open files instead of receiving copies of them
        state = dict(self.__dict__)
        if self.paths is not None:
            state["_arrays"] = None
        return state

    @staticmethod
    def check(batch: np.ndarray, name: str, indices) -> None:
        lo, hi = np.min(batch), np.max(batch)
        if not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(
                f"Cubes {list(indices)} of {name!r} must hold finite values in [0, 1]. "
                f"Received: min={lo}, max={hi}."
            )

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Gather cubes by global index as float32, checking their values (per file)."""
        arrays = self._get()
        out = np.empty((len(indices),) + self.cube_shape, dtype=np.float32)
        which = np.searchsorted(self.offsets, indices, side="right") - 1
        for f in np.unique(which):
            sel = np.flatnonzero(which == f)
            local = indices[sel] - self.offsets[f]
            order = np.argsort(local)  # sorted reads are kinder to memory maps
            out[sel[order]] = arrays[f][local[order]]
            self.check(out[sel], self.names[f], local)
        return out


class CubeBatchDataset(keras.utils.PyDataset):
    """Batches made on the fly from cubes: the indexing and epoch machinery of every proxy task.

    Batch `i` of epoch `e` is `make_batch(cubes, rng)` with the cubes that `epoch_order(e)` puts
    in batch `i` and `rng = np.random.default_rng((seed, e, i))`. Subclasses implement
    `make_batch` (`RestorationDataset` here; the pre-training methods in
    `models_genesis.methods`).

    Args:
        cubes: array `(N, rows, cols, deps)` in [0, 1] (or with a trailing channel of 1), a `.npy`
            path (memory-mapped), or a list of `.npy` paths (read lazily, never concatenated).
        batch_size: cubes per batch. The last batch of an epoch may be smaller.
        seed: non-negative int; batch `i` of epoch `e` depends only on `(seed, e, i)`.
        shuffle: visit the cubes in a new random order each epoch.
        validation: keep the epoch at 0 forever, so validation batches repeat exactly.
        data_format: `"channels_last"` or `"channels_first"` (see `add_channel`).
        samples_per_epoch: cubes per epoch (default: all cubes once).
        dims: 3 (cubes) or 2: 2D slices or radiographs (Genesis 2D), stored one voxel deep
            (`(N, rows, cols, 1)` files of `data.pretraining.slices`; arrays `(N, rows, cols)` too) and handed
            to `make_batch` as `(B, rows, cols)`.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` for `PyDataset`.
    """

    sample_dir = None  # subclasses that draw their batches set a folder (`save_samples`)

    def __init__(self, cubes, batch_size: int = 6, *, seed: int = 0, shuffle: bool = True,
                 validation: bool = False, data_format: str = "channels_last",
                 samples_per_epoch: Optional[int] = None, dims: int = 3, **kwargs):
        super().__init__(**kwargs)
        if dims not in (2, 3):
            raise ValueError(f"`dims` must be 2 or 3. Received: dims={dims!r}.")
        if dims == 2 and isinstance(cubes, np.ndarray) and cubes.ndim == 3:
            cubes = cubes[..., None]  # (N, rows, cols) -> one voxel deep
        for name, value in (("batch_size", batch_size), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (name == "batch_size"):
                raise ValueError(f"`{name}` must be a {'positive' if name == 'batch_size' else 'non-negative'} "
                                 f"integer. Received: {name}={value!r}.")
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError("`data_format` must be 'channels_last' or 'channels_first'. "
                             f"Received: data_format={data_format!r}.")
        self.source, self.dims = _CubeSource(cubes), dims
        if dims == 2 and self.source.cube_shape[-1] != 1:
            raise ValueError(f"dims=2 needs 2D slices stored one voxel deep (N, rows, cols, 1); "
                             f"{self.source.names} hold cubes {self.source.cube_shape}.")
        if samples_per_epoch is None:
            samples_per_epoch = len(self.source)
        if isinstance(samples_per_epoch, bool) or not isinstance(samples_per_epoch, (int, np.integer)) \
                or samples_per_epoch < 1:
            raise ValueError(f"`samples_per_epoch` must be a positive integer. "
                             f"Received: samples_per_epoch={samples_per_epoch!r}.")
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.shuffle, self.validation, self.data_format = bool(shuffle), bool(validation), data_format
        self.samples_per_epoch = int(samples_per_epoch)
        self.epoch = 0
        self._in_epoch = False
        self._order_cache = (None, None)

    @classmethod
    def from_cube_folder(cls, folder, subsets: Sequence, cube_shape=None, **kwargs):
        """Read the cube files of `subsets` in `folder` (`bat_*_{subset}.npy`, see `cube_files`)."""
        return cls(find_cube_files(folder, subsets, cube_shape=cube_shape), **kwargs)

    def __len__(self):
        return math.ceil(self.samples_per_epoch / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose batches `__getitem__` returns (ignored in validation mode)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"`epoch` must be a non-negative integer. Received: epoch={epoch!r}.")
        self.epoch = int(epoch)

    def _current_epoch(self) -> int:
        return 0 if self.validation else self.epoch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Cube indices visited in `epoch` (`samples_per_epoch` of them), from `(seed, epoch)`."""
        cached_epoch, cached_order = self._order_cache  # one read: another thread may replace it
        if cached_epoch == epoch:
            return cached_order
        n, reps = len(self.source), math.ceil(self.samples_per_epoch / len(self.source))
        if self.shuffle:  # spawn_key keeps this stream apart from the batches' (seed, epoch, i)
            rng = np.random.default_rng(np.random.SeedSequence((self.seed, epoch), spawn_key=(1,)))
            order = np.concatenate([rng.permutation(n) for _ in range(reps)])
        else:
            order = np.tile(np.arange(n), reps)
        order = order[: self.samples_per_epoch]
        self._order_cache = (epoch, order)
        return order

    def add_channel(self, a: np.ndarray) -> np.ndarray:
        """`(B, r, c, d)` -> `(B, r, c, d, 1)` (channels_last) or `(B, 1, r, c, d)`."""
        return np.expand_dims(a, -1 if self.data_format == "channels_last" else 1)

    def make_batch(self, cubes: np.ndarray, rng: np.random.Generator):
        """One batch `(x, y)` from float32 cubes `(B, rows, cols, deps)`; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement `make_batch`.")

    def pairs(self, index: int, epoch: int):
        """Batch `index` of `epoch` (see `make_batch`)."""
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range for {len(self)} batches.")
        idx = self.epoch_order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        cubes = self.source.take(idx)
        if self.dims == 2:
            cubes = cubes[..., 0]
        return self.make_batch(cubes, np.random.default_rng((self.seed, epoch, index)))

    def __getitem__(self, index):
        return self.pairs(int(index), self._current_epoch())

    def on_epoch_begin(self):
        self._in_epoch = True

    def on_epoch_end(self):
        """Advance the epoch, once per `on_epoch_begin`.

        `fit` also calls `on_epoch_end` once before its first epoch (its iterator `reset()`);
        that call is ignored, so the first epoch of `fit` is epoch 0. In a manual loop, call
        `set_epoch(e)` (or `on_epoch_begin()` and `on_epoch_end()` in pairs).
        """
        if not self._in_epoch:
            return
        self._in_epoch = False
        if self.sample_dir is not None:
            self.save_samples()
        if not self.validation:
            self.epoch += 1


class RestorationDataset(CubeBatchDataset):
    """Batches `(transformed, original)` for pre-training by restoration (paper Sec. 2).

    Args:
        cubes: array `(N, rows, cols, deps)` in [0, 1] (or with a trailing channel of 1), a `.npy`
            path (memory-mapped), or a list of `.npy` paths (read lazily, never concatenated).
        batch_size: cubes per batch (release 6). The last batch of an epoch may be smaller.
        scheme: a name of `SCHEMES` (used when `config` is None).
        config: a `TransformConfig`; overrides `scheme`.
        seed: non-negative int; batch `i` of epoch `e` depends only on `(seed, e, i)`.
        shuffle: visit the cubes in a new random order each epoch.
        validation: keep the epoch at 0 forever, so validation pairs repeat exactly.
        data_format: `"channels_last"` -> `(B, r, c, d, 1)`; `"channels_first"` -> `(B, 1, r, c, d)`.
        samples_per_epoch: cubes per epoch (default: all cubes once).
        sample_dir: if set, a PNG of a few pairs (middle slice) is written there once per epoch.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` for `PyDataset`.

    Raises:
        TypeError, ValueError, FileNotFoundError: bad arguments or cube files (named).

    Example:
        >>> ds = RestorationDataset(cubes, batch_size=6, seed=1, workers=2, use_multiprocessing=True)
        >>> model.fit(ds, validation_data=RestorationDataset(val_cubes, validation=True), epochs=10)
    """

    def __init__(self, cubes, batch_size: int = 6, *, scheme: str = "genesis",
                 config: Optional[TransformConfig] = None, sample_dir=None, **kwargs):
        self.config = config if config is not None else TransformConfig.for_scheme(scheme)
        if not isinstance(self.config, TransformConfig):
            raise TypeError(f"`config` must be a TransformConfig. Received: config={config!r}.")
        super().__init__(cubes, batch_size, **kwargs)
        self.sample_dir = None if sample_dir is None else os.fspath(sample_dir)

    def make_batch(self, cubes: np.ndarray, rng: np.random.Generator):
        """`(transformed, original)`: `genesis_transform` of each cube, in order, from `rng`."""
        x, y = np.empty_like(cubes), np.empty_like(cubes)
        for k in range(len(cubes)):
            x[k], y[k] = genesis_transform(cubes[k], rng=rng, config=self.config, check=False)
        return self.add_channel(x), self.add_channel(y)

    def save_samples(self, n: int = 4) -> str:
        """Write a PNG of `n` pairs (middle slice; rows: samples, columns: input | original)."""
        epoch = self._current_epoch()
        x, y = self.pairs(0, epoch)
        if self.data_format == "channels_first":
            x, y = np.moveaxis(x, 1, -1), np.moveaxis(y, 1, -1)
        return save_pair_image(x[:n, ..., 0], y[:n, ..., 0],
                               os.path.join(self.sample_dir, f"pairs_epoch_{epoch:04d}.png"))


def save_pair_image(x: np.ndarray, y: np.ndarray, path) -> str:
    """Save input/original pairs `(n, rows, cols[, deps])` side by side as one PNG, atomically."""
    def middle(a):
        return a[..., a.shape[-1] // 2] if a.ndim == 4 else a

    rows = [np.concatenate([middle(x)[k], np.ones((middle(x).shape[1], 2)), middle(y)[k]], axis=1)
            for k in range(len(x))]
    grid = np.concatenate(rows, axis=0)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    mpimg.imsave(tmp, np.clip(grid, 0, 1), cmap="gray", vmin=0.0, vmax=1.0)
    os.replace(tmp, path)
    return path
