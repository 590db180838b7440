"""k-means of DeepCluster (App. A.5; Caron et al. 2018): PCA-whitened, L2-normalised features,
Lloyd iterations, and the original's guard against empty clusters.

Vectorised numpy rather than scikit-learn's `KMeans`: DeepCluster's guard (below) is part of the
method and is tested here, whereas scikit-learn relocates empty clusters its own way (to the points
farthest from their centroids) inside its compiled loop; numpy also keeps every draw on the
caller's `numpy.random.Generator` (one seed per epoch) and the code backend-free. Each iteration
costs one `(N, k)` distance matrix, e.g. 30,000 cubes x 260 clusters x 256 dims: well under a second.

Empty clusters (DeepCluster clusters with faiss, which does this): after each assignment, every
empty cluster takes the centroid of a non-empty cluster chosen with probability proportional to
its size minus one, with a small perturbation (x(1 + eps) on even dimensions and x(1 - eps) on odd
ones, the donor the opposite; eps = 1/1024); the donor's points are then split between the two:
those nearer the new centroid move (at least one, never all), so no cluster is ever empty, the
returned assignment included.
"""

from __future__ import annotations

import numpy as np

EPS = 1.0 / 1024  # faiss's perturbation of a split centroid


def pca_whiten(features: np.ndarray, dims: int):
    """PCA to at most `dims` components, each scaled to unit variance (DeepCluster: 256).

    Components with no variance (dead channels) are dropped rather than blown up.

    Returns:
        `(mean (d,), projection (d, m))` with m <= dims: whitened = `(x - mean) @ projection`.
    """
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    var, vectors = np.linalg.eigh(centred.T @ centred / max(len(x) - 1, 1))  # (d, d): cheap
    var, vectors = var[::-1], vectors[:, ::-1]  # largest variance first
    keep = var > 1e-10 * max(float(var.max(initial=0.0)), 1e-300)
    keep[int(dims):] = False
    if not keep.any():  # identical features: nothing to whiten (the clustering is arbitrary)
        return mean, np.zeros((x.shape[1], 1))
    return mean, vectors[:, keep] / np.sqrt(var[keep])


def embed(features: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Whitened, L2-normalised features `(N, m)` (DeepCluster's input to k-means)."""
    z = (np.asarray(features, dtype=np.float64) - mean) @ projection
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean) of each row of `x`."""
    d = (centroids ** 2).sum(axis=1)[None, :] - 2.0 * x @ centroids.T
    return np.argmin(d, axis=1)


def split_empty_clusters(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, *,
                         rng: np.random.Generator) -> int:
    """Fill every empty cluster from a non-empty one (see the module docstring), in place.

    Returns:
        The number of clusters that were empty.
    """
    k = len(centroids)
    counts = np.bincount(labels, minlength=k)
    empty = np.flatnonzero(counts == 0)
    sign = np.where(np.arange(x.shape[1]) % 2 == 0, 1.0, -1.0)
    for e in empty:
        donors = np.maximum(counts - 1, 0).astype(np.float64)
        j = int(rng.choice(k, p=donors / donors.sum()))
        c = centroids[j].copy()
        centroids[e], centroids[j] = c * (1 + EPS * sign), c * (1 - EPS * sign)
        members = np.flatnonzero(labels == j)
        gain = ((x[members] - centroids[j]) ** 2).sum(1) - ((x[members] - centroids[e]) ** 2).sum(1)
        n_move = int(np.clip(np.count_nonzero(gain > 0), 1, len(members) - 1))
        labels[members[np.argsort(-gain, kind="stable")[:n_move]]] = e
        counts[e], counts[j] = n_move, counts[j] - n_move
    return len(empty)


def kmeans(x: np.ndarray, k: int, *, rng: np.random.Generator, n_iter: int = 20):
    """Lloyd's k-means from `k` distinct random points, with DeepCluster's empty-cluster guard.

    Args:
        x: `(N, m)` points (DeepCluster: `embed` of the features), N >= k.
        k: clusters.
        rng: the draws of the initial centroids and of the guard.
        n_iter: iterations (DeepCluster: 20).

    Returns:
        `(centroids (k, m), labels (N,))`: every cluster non-empty; centroids are their means.

    Raises:
        ValueError: k > N (k-means cannot make more non-empty clusters than points).
    """
    x = np.asarray(x, dtype=np.float64)
    if not 1 <= k <= len(x):
        raise ValueError(f"k-means needs 1 <= k <= the number of points ({len(x)}). Received: k={k}.")
    centroids = x[rng.choice(len(x), size=k, replace=False)].copy()
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(max(int(n_iter), 1)):
        labels = assign(x, centroids)
        split_empty_clusters(x, labels, centroids, rng=rng)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        centroids = sums / np.bincount(labels, minlength=k)[:, None]
    return centroids, labels
