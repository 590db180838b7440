"""3D DeepCluster (paper App. A.5; Caron et al. 2018): classify cubes into the k-means clusters of
the network's own features, re-clustered every epoch.

At the start of every epoch (`Recluster`, the method's callback): the features of all training
cubes (the U-Net encoder's output `depth_{2*depth-1}_relu`, global-average-pooled) are computed in
inference mode, PCA-whitened to `pca_dims` (256) dimensions and L2-normalised as the original
does, and clustered by k-means into `n_clusters` (k = 260, the paper's tuned value) clusters
(`_clustering`: 20 Lloyd iterations, the original's empty-cluster guard). The assignments become
the training cubes' labels (validation cubes take their nearest centroid), and the classifier's
last layer is re-initialised (with its optimizer slots), since cluster numbers mean nothing from
one clustering to the next. Like the original, training samples clusters uniformly
(`balanced_sampling`: cube i is drawn with probability proportional to 1 / |its cluster|), so the
network cannot win by predicting the big clusters.

Training follows Caron et al.'s public code (docs/methods.md): the training cubes are augmented as
its `RandomResizedCrop` + `RandomHorizontalFlip`, in 3D (`sample_crop_params`: a box of 8-100 %
of the cube's volume, each side's share varied by an aspect factor in [3/4, 4/3], resized back to
the cube by nearest-neighbour sampling, then flipped along cols with probability 1/2), while the
features that are clustered come from the whole, unaugmented cubes (the original's centre crop);
the schedule is `fixed` (`config.METHOD_TRAINING`): a fixed number of epochs at a constant rate
(SGD 0.05, momentum 0.9, weight decay 1e-5) and the last model, since the loss of one epoch's
clusters cannot be compared with the next's.

Network: encoder -> GlobalAveragePooling3D ("gap") -> Dense(`fc_units`, relu, "fc") ->
Dense(k, softmax, "cluster_classifier"), k-way cross-entropy. The model is initialised randomly
(App. A.5: no 3D feature extractor to start from). The saved model is the encoder.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Tuple

import keras
import numpy as np
from sklearn.metrics import normalized_mutual_info_score
from tqdm.auto import tqdm

from models_genesis.data.pretraining.restoration_dataset import CubeBatchDataset
from models_genesis.methods import _clustering, _encoder
from models_genesis.methods._encoder import WRITES  # noqa: F401  (the contract's "encoder")
from models_genesis.models.unet3d import resolve_initializer

NAME = "deepcluster"
CLASSIFIER = "cluster_classifier"
FEATURES = "gap"


@dataclasses.dataclass(frozen=True)
class Options:
    """DeepCluster's parameters (App. A.5).

    Attributes:
        n_clusters: k of k-means and of the classifier. Defaults to 260 (the paper's choice).
        pca_dims: PCA dimensions before k-means (fewer if the features have fewer). 256, the
            original's, where it reduces 4096 features; the U-Net encoder has
            `n_base_filters * 2**depth` channels (256 at the release size), so there 256 only
            whitens them: a smaller value also drops the directions of least variance.
        kmeans_iterations: Lloyd iterations per clustering. 20.
        fc_units: width of the Dense layer between the pooled encoder and the classifier. 1024.
        balanced_sampling: draw training cubes uniformly over clusters. True.
        augment: crop-resize and flip the training cubes as the original (see the module
            docstring). True.
        crop_scale: `(min, max)` share of the cube's volume a crop keeps. (0.08, 1.0), the
            original's `RandomResizedCrop` area range.
    """

    n_clusters: int = 260
    pca_dims: int = 256
    kmeans_iterations: int = 20
    fc_units: int = 1024
    balanced_sampling: bool = True
    augment: bool = True
    crop_scale: Tuple[float, float] = (0.08, 1.0)

    def __post_init__(self):
        _encoder.check_positive_int("n_clusters", self.n_clusters, 2, 100_000)
        _encoder.check_positive_int("pca_dims", self.pca_dims)
        _encoder.check_positive_int("kmeans_iterations", self.kmeans_iterations, 1, 10_000)
        _encoder.check_positive_int("fc_units", self.fc_units)
        for name in ("balanced_sampling", "augment"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False. "
                                 f"Received: {name}={getattr(self, name)!r}.")
        lo, hi = (tuple(self.crop_scale) + (None, None))[:2] if len(self.crop_scale) == 2 else (0, -1)
        if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo <= hi <= 1):
            raise ValueError(f"`crop_scale` must be (min, max) with 0 < min <= max <= 1. "
                             f"Received: crop_scale={self.crop_scale!r}.")
        object.__setattr__(self, "crop_scale", (float(lo), float(hi)))


def check(options: Options, cube_shape, n_train_cubes: int, *, depth=None) -> None:
    """Refuse k > the number of training cubes, and cubes smaller than a depth-`depth` encoder's
    poolings (`depth` None: not checked here; `build_model` checks with its depth)."""
    shape = _encoder.check_cube_shape(cube_shape)
    if options.n_clusters > n_train_cubes:
        raise ValueError(
            f"Method 'deepcluster' needs at least as many training cubes as clusters: k-means "
            f"cannot make {options.n_clusters} non-empty clusters of {n_train_cubes} cubes. Lower "
            f"`n_clusters` or add cubes. Received: n_clusters={options.n_clusters}, "
            f"n_train_cubes={n_train_cubes}.")
    if depth is not None and min(shape) < _encoder.min_side(depth):
        raise ValueError(f"Method 'deepcluster' needs cubes of at least {_encoder.min_side(depth)} "
                         f"voxels a side for a depth-{depth} encoder. Received: cube_shape={shape}.")


ASPECT = (3 / 4, 4 / 3)  # the original's RandomResizedCrop ratio range, per side here
FLIP_AXIS = 1  # cols: the horizontal flip of an axial slice


def sample_crop_params(n: int, cube_shape, crop_scale=(0.08, 1.0), *,
                       rng: np.random.Generator):
    """Draw `n` random crops of a cube: corners and sizes `(n, 3)` and flips `(n,)` bool.

    The volume share is uniform in `crop_scale`; each side is its cube root times an aspect factor
    log-uniform in `ASPECT`, clipped to the cube (at least 1 voxel).
    """
    shape = np.asarray(cube_shape)
    volume = rng.uniform(crop_scale[0], crop_scale[1], size=(n, 1))
    aspect = np.exp(rng.uniform(np.log(ASPECT[0]), np.log(ASPECT[1]), size=(n, 3)))
    sizes = np.clip(np.round(volume ** (1 / 3) * aspect * shape), 1, shape).astype(np.int64)
    starts = np.floor(rng.random((n, 3)) * (shape - sizes + 1)).astype(np.int64)
    return starts, sizes, rng.random(n) < 0.5


def apply_crop(cubes: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
               flips: np.ndarray) -> np.ndarray:
    """Crop each cube `(n, r, c, d)` to its box, resize it back by nearest-neighbour sampling
    (one fancy-indexing gather) and flip it along cols where `flips`."""
    n, out = len(cubes), cubes.shape[1:]
    idx = [starts[:, a, None] + (np.arange(out[a]) * sizes[:, a, None]) // out[a] for a in range(3)]
    cols = np.where(flips[:, None], idx[1][:, ::-1], idx[1])
    b = np.arange(n)[:, None, None, None]
    return cubes[b, idx[0][:, :, None, None], cols[:, None, :, None], idx[2][:, None, None, :]]


class DeepClusterDataset(CubeBatchDataset):
    """Batches `(cubes (B, r, c, d, 1), cluster labels (B,) int32)`; the labels are set by
    `set_labels` (the `Recluster` callback) before each epoch. See `CubeBatchDataset`."""

    def __init__(self, cubes, batch_size: int = 6, *, options: Options, **kwargs):
        super().__init__(cubes, batch_size, **kwargs)
        self.options = options
        self.labels = np.zeros(len(self.source), dtype=np.int32)
        self.labels_version = 0  # 0: never clustered
        self._balanced_cache = (None, None)

    def set_labels(self, labels: np.ndarray) -> None:
        """Set the cluster of every cube `(N,)` (cube order of the files)."""
        labels = np.asarray(labels)
        if labels.shape != (len(self.source),):
            raise ValueError(f"`labels` must hold one cluster per cube ({len(self.source)}). "
                             f"Received: labels.shape={labels.shape}.")
        self.labels = labels.astype(np.int32)
        self.labels_version += 1

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Cubes of `epoch`; once clustered, with `balanced_sampling`, drawn uniformly over the
        clusters (with replacement, from `(seed, epoch)`)."""
        if not (self.shuffle and self.options.balanced_sampling and self.labels_version):
            return super().epoch_order(epoch)
        key = (epoch, self.labels_version)
        if self._balanced_cache[0] != key:
            counts = np.bincount(self.labels)
            p = 1.0 / counts[self.labels]
            rng = np.random.default_rng(np.random.SeedSequence((self.seed, epoch), spawn_key=(1,)))
            order = rng.choice(len(self.labels), size=self.samples_per_epoch, p=p / p.sum())
            self._balanced_cache = (key, order)
        return self._balanced_cache[1]

    def make_batch(self, cubes: np.ndarray, rng: np.random.Generator):
        if self.options.augment and not self.validation:
            cubes = apply_crop(cubes, *sample_crop_params(len(cubes), cubes.shape[1:],
                                                          self.options.crop_scale, rng=rng))
        return self.add_channel(cubes), None

    def pairs(self, index: int, epoch: int):
        x, _ = super().pairs(index, epoch)
        idx = self.epoch_order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        return x, self.labels[idx]

    def on_epoch_begin(self):
        if not self.labels_version:
            raise RuntimeError("DeepCluster's cubes have no cluster labels yet: train with the "
                               "method's callbacks (`deepcluster.callbacks(...)`, `Recluster`).")
        super().on_epoch_begin()


def make_dataset(files, batch_size, *, options: Options, cube_shape=None, seed=0, shuffle=True,
                 validation=False, samples_per_epoch=None, **kwargs) -> DeepClusterDataset:
    """A `DeepClusterDataset` over cube `files` (batch order from `(seed, epoch)`)."""
    return DeepClusterDataset(files, batch_size, options=options, seed=seed, shuffle=shuffle,
                              validation=validation, samples_per_epoch=samples_per_epoch, **kwargs)


def build_model(cube_shape, options: Options, *, n_base_filters=32, depth=4,
                kernel_initializer="glorot_uniform", bn_momentum=0.99):
    """`(encoder, classifier)`: the U-Net encoder (saved) and the k-way cluster classifier."""
    check(options, cube_shape, options.n_clusters, depth=depth)
    encoder = _encoder.unet_encoder(n_base_filters=n_base_filters, depth=depth,
                                    kernel_initializer=kernel_initializer, bn_momentum=bn_momentum)
    init = resolve_initializer(kernel_initializer)
    inputs = keras.Input((*tuple(cube_shape), 1), name="cube")
    x = keras.layers.GlobalAveragePooling3D(name=FEATURES)(encoder(inputs))
    x = keras.layers.Dense(options.fc_units, activation="relu", kernel_initializer=init, name="fc")(x)
    out = _encoder.float32_dense(options.n_clusters, "softmax", CLASSIFIER, init)(x)
    return encoder, keras.Model(inputs, out, name="deepcluster")


def encoder_features(feature_model, dataset: CubeBatchDataset, progress: bool = True) -> np.ndarray:
    """Features `(N, C)` of every cube of `dataset` (file order), in inference mode."""
    n, step = len(dataset.source), dataset.batch_size
    out = []
    for start in tqdm(range(0, n, step), desc="DeepCluster features", unit="batch",
                      disable=not progress, leave=False):
        cubes = dataset.source.take(np.arange(start, min(start + step, n)))
        out.append(keras.ops.convert_to_numpy(feature_model(cubes[..., None], training=False)))
    return np.concatenate(out).astype(np.float64)


class Recluster(keras.callbacks.Callback):
    """Before each epoch: cluster the training cubes' features, set both datasets' labels,
    re-initialise the classifier's last layer (see the module docstring).

    `history` holds per clustering: epoch, the cluster sizes' min and max, and the NMI with the
    previous assignment (how much they changed). `trainable` None: the model `fit` trains.
    """

    def __init__(self, options: Options, datasets, *, trainable: keras.Model = None,
                 verbose: bool = True):
        super().__init__()
        self.options, self.verbose = options, bool(verbose)
        self.train, self.val = (list(datasets) + [None])[:2]
        self.trainable = trainable  # None: the model `fit` trains (`self.model`)
        self.history, self.previous = [], None
        self._feature_model = None

    def feature_model(self) -> keras.Model:
        """The trained model up to its pooled encoder output ("gap")."""
        model = self.trainable if self.trainable is not None else self.model
        if self._feature_model is None or self._feature_model.input is not model.input:
            self._feature_model = keras.Model(model.input, model.get_layer(FEATURES).output)
        return self._feature_model

    def on_epoch_begin(self, epoch, logs=None):
        o = self.options
        rng = np.random.default_rng(np.random.SeedSequence((self.train.seed, epoch), spawn_key=(3,)))
        features = encoder_features(self.feature_model(), self.train, self.verbose)
        mean, projection = _clustering.pca_whiten(features, o.pca_dims)
        centroids, labels = _clustering.kmeans(_clustering.embed(features, mean, projection),
                                               o.n_clusters, rng=rng, n_iter=o.kmeans_iterations)
        self.train.set_labels(labels)
        if self.val is not None:
            val = _clustering.embed(encoder_features(self.feature_model(), self.val, self.verbose),
                                    mean, projection)
            self.val.set_labels(_clustering.assign(val, centroids))
        self._reinitialise_classifier(int(rng.integers(2 ** 31)))
        sizes = np.bincount(labels, minlength=o.n_clusters)
        nmi = (None if self.previous is None
               else float(normalized_mutual_info_score(self.previous, labels)))
        self.previous = labels
        self.history.append({"epoch": int(epoch), "min_size": int(sizes.min()),
                             "max_size": int(sizes.max()), "nmi_previous": nmi})
        if self.verbose:
            print(f"DeepCluster, before epoch {epoch + 1}: {o.n_clusters} clusters of "
                  f"{len(labels)} cubes (sizes {sizes.min()}-{sizes.max()}), NMI with the "
                  f"previous assignment: {'-' if nmi is None else f'{nmi:.3f}'}")

    def _reinitialise_classifier(self, seed: int) -> None:
        model = self.trainable if self.trainable is not None else self.model
        layer = model.get_layer(CLASSIFIER)
        init = type(layer.kernel_initializer).from_config(
            {**layer.kernel_initializer.get_config(), "seed": seed})
        layer.kernel.assign(init(layer.kernel.shape, dtype=layer.kernel.dtype))
        layer.bias.assign(keras.ops.zeros(layer.bias.shape, dtype=layer.bias.dtype))
        optimizer = getattr(self.model, "optimizer", None)  # None before `fit` sets the model
        if optimizer is None:
            return
        prefixes = tuple(v.path.replace("/", "_") + "_" for v in (layer.kernel, layer.bias))
        inner = getattr(optimizer, "inner_optimizer", None)
        for var in list(optimizer.variables) + (list(inner.variables) if inner is not None else []):
            if var.name.startswith(prefixes):  # momentum / velocity slots of the classifier
                var.assign(keras.ops.zeros(var.shape, dtype=var.dtype))


def loss(options: Options = None):
    """k-way cross-entropy on the cluster assignments."""
    return keras.losses.SparseCategoricalCrossentropy()


def metrics(options: Options = None) -> list:
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def callbacks(options: Options, saved, trainable, datasets) -> list:
    """`[Recluster]` over `datasets` = (train, val); it must run before each epoch's batches."""
    return [Recluster(options, datasets, trainable=trainable)]


def chance_level(options: Options) -> dict:
    """log(k) and 1/k: the cross-entropy and accuracy of guessing the cluster uniformly (the
    validation cubes' clusters are not balanced: `Recluster.history` holds their sizes)."""
    return {"loss": math.log(options.n_clusters), "accuracy": 1 / options.n_clusters}
