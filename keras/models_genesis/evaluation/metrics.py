"""Target-task metrics: Dice, IoU, the paper's mean IoU over thresholds, and AUC.

Two faces of the same quantities (paper Sec. 3.2, docs/release_reference.md, 'Target tasks'):

* numpy functions for evaluation on whole test sets: `dice_coefficient`, `iou_score`,
  `mean_iou`, `auc_score`;
* Keras 3 losses and metrics (backend-agnostic, `keras.ops`) for training: `dice_coef`,
  `dice_loss`, `DiceCoefficient`, `ForegroundIoU`, `MeanIoUOverThresholds`.

Two IoUs exist and reports must say which they show:

* **foreground IoU** (`iou_score`, `ForegroundIoU`): |P & T| / |P | T| of the binarised
  prediction P and target T;
* **the paper's IoU** (`mean_iou`, `MeanIoUOverThresholds`), the release's `mean_iou`: for each
  threshold t in 0.50, 0.55, ..., 0.95 binarise with `p > t`, compute the IoU of the background
  and of the foreground class, average the two classes (a class absent from both prediction and
  target is left out of that average, as in TF1's `tf.metrics.mean_iou`), then average over the
  thresholds. The release's NCS notebook reports 77.14% with it against 59.22% foreground IoU.

Binarisation is strict everywhere: a voxel is foreground when its value is `> threshold`; targets
are binarised with `> 0.5`. Predictions and thresholds are compared in float32, as TensorFlow
compared the release's float32 outputs with `np.arange(0.5, 1.0, 0.05)` (a probability of exactly
float32(0.6) is not above the threshold 0.6 there, while it is above float64 0.6). All
statistics pool every voxel of the arrays given (the whole batch or the whole test set), as the
release does.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops
from sklearn.metrics import roc_auc_score

PAPER_IOU_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)


# --------------------------------------------------------------------------------------- numpy
def _as_pair(y_true, y_pred, name_pred="y_pred"):
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"`y_true` and `{name_pred}` must have the same shape. "
                         f"Received: y_true.shape={y_true.shape}, "
                         f"{name_pred}.shape={y_pred.shape}.")
    if y_true.size == 0:
        raise ValueError(f"`y_true` must not be empty. Received: y_true.shape={y_true.shape}.")
    return y_true.ravel(), y_pred.ravel()


def _check_thresholds(thresholds) -> np.ndarray:
    t = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"`thresholds` must be a non-empty 1-D list of finite numbers. "
                         f"Received: thresholds={thresholds!r}.")
    return t


def confusion_counts(y_true, y_pred, thresholds):
    """Counts of the binarised prediction at each threshold, without a per-threshold copy.

    Args:
        y_true: target of any shape; values `> 0.5` are foreground.
        y_pred: probabilities, same shape.
        thresholds: T thresholds; a voxel is predicted foreground when `y_pred > t`, compared
            in float32 (both cast), as TensorFlow did in the release.

    Returns:
        (tp, fp, fn, tn): four int64 arrays of shape (T,).
    """
    y_true, y_pred = _as_pair(y_true, y_pred)
    t = _check_thresholds(thresholds)
    order = np.argsort(t)
    fg = y_true > 0.5
    # bin b = number of (sorted) thresholds strictly below the value; predicted fg at t_k iff b > k.
    t32 = t.astype(np.float32)
    bins = np.searchsorted(t32[order], y_pred.astype(np.float32), side="left")
    fg_hist = np.bincount(bins[fg], minlength=t.size + 1)
    bg_hist = np.bincount(bins[~fg], minlength=t.size + 1)
    # above[k] = count with bin > k (sorted order); then undo the sort.
    tp_sorted = np.cumsum(fg_hist[::-1])[::-1][1:]
    fp_sorted = np.cumsum(bg_hist[::-1])[::-1][1:]
    tp = np.empty(t.size, np.int64)
    fp = np.empty(t.size, np.int64)
    tp[order] = tp_sorted
    fp[order] = fp_sorted
    fn = int(fg.sum()) - tp
    tn = int((~fg).sum()) - fp
    return tp, fp, fn, tn


def _two_class_iou(tp, fp, fn, tn, xp=np):
    """Mean of background and foreground IoU; a class with empty union is left out."""
    union_fg = tp + fp + fn
    union_bg = tn + fp + fn
    valid = xp.where(union_fg > 0, 1.0, 0.0) + xp.where(union_bg > 0, 1.0, 0.0)
    iou_fg = xp.where(union_fg > 0, tp / xp.maximum(union_fg, 1), 0.0)
    iou_bg = xp.where(union_bg > 0, tn / xp.maximum(union_bg, 1), 0.0)
    return (iou_fg + iou_bg) / xp.maximum(valid, 1.0)


def dice_coefficient(y_true, y_pred, threshold=0.5, smooth=0.0, empty_score=1.0) -> float:
    """Dice = (2 |P & T| + smooth) / (|P| + |T| + smooth), pooled over all voxels.

    Args:
        y_true: binary target (any shape), values in {0, 1}.
        y_pred: probabilities in [0, 1], same shape.
        threshold: binarise `y_pred > threshold`; None keeps soft values (the training Dice).
        smooth: added to numerator and denominator (the release's loss uses 1).
        empty_score: returned when both are empty and `smooth == 0`.

    Returns:
        float in [0, 1].
    """
    y_true, y_pred = _as_pair(y_true, y_pred)
    t = (y_true > 0.5).astype(np.float64)
    p = y_pred.astype(np.float64) if threshold is None else (y_pred > threshold).astype(np.float64)
    denom = t.sum() + p.sum() + smooth
    if denom == 0:
        return float(empty_score)
    return float((2.0 * np.dot(t, p) + smooth) / denom)


def iou_score(y_true, y_pred, threshold=0.5, empty_score=1.0) -> float:
    """Foreground IoU |P & T| / |P | T| of the binarised prediction (`y_pred > threshold`).

    Returns `empty_score` when both prediction and target are empty.
    """
    tp, fp, fn, _ = confusion_counts(y_true, y_pred, [threshold])
    union = tp[0] + fp[0] + fn[0]
    return float(empty_score) if union == 0 else float(tp[0] / union)


def mean_iou(y_true, y_pred, thresholds=PAPER_IOU_THRESHOLDS) -> float:
    """The paper's IoU: two-class mean IoU averaged over thresholds (the release's `mean_iou`).

    Args:
        y_true: binary target, any shape (e.g. (N, 64, 64, 32, 1)).
        y_pred: probabilities in [0, 1], same shape.
        thresholds: thresholds; defaults to 0.50:0.05:0.95 (10 values).

    Returns:
        float in [0, 1].
    """
    tp, fp, fn, tn = confusion_counts(y_true, y_pred, thresholds)
    return float(np.mean(_two_class_iou(tp, fp, fn, tn)))


def label_dice(true_classes, pred_classes, n_classes: int) -> dict:
    """Dice of each foreground class (1..n_classes-1) of two class-index maps, and their mean.

    A class absent from both target and prediction scores NaN and is left out of the mean (as
    nnU-Net's evaluation does).

    Returns:
        `{"mean_dice": float, "label_dice": [dice of class 1, 2, ...]}`.
    """
    t = np.asarray(true_classes).reshape(-1)
    p = np.asarray(pred_classes).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"`true_classes` and `pred_classes` must have the same size. Received: "
                         f"{np.shape(true_classes)} and {np.shape(pred_classes)}.")
    scores = [dice_coefficient(t == k, p == k, empty_score=float("nan"))
              for k in range(1, int(n_classes))]
    finite = [s for s in scores if np.isfinite(s)]
    return {"mean_dice": float(np.mean(finite)) if finite else float("nan"),
            "label_dice": scores}


def auc_score(y_true, y_score) -> float:
    """Area under the ROC curve (scikit-learn), e.g. candidate-level AUC for NCC and ECC.

    Raises:
        ValueError: `y_true` holds only one class (the AUC is undefined).
    """
    y_true, y_score = _as_pair(y_true, y_score, "y_score")
    classes = np.unique(y_true)
    if classes.size != 2:
        raise ValueError("AUC needs both classes in `y_true` (0 and 1). "
                         f"Received: y_true with classes {classes.tolist()}.")
    return float(roc_auc_score(y_true, y_score))


# --------------------------------------------------------------------------------------- Keras
# Every loss and metric below is registered under the package name, so a `.keras` file of a model
# compiled with them loads with `keras.saving.load_model` alone (see `models_genesis.saving`).
@keras.saving.register_keras_serializable(package="models_genesis")
def dice_coef(y_true, y_pred, smooth=1.0):
    """Soft Dice over the whole batch: (2 sum(y p) + smooth) / (sum(y) + sum(p) + smooth)."""
    y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
    inter = ops.sum(y_true * y_pred)
    return (2.0 * inter + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)


@keras.saving.register_keras_serializable(package="models_genesis")
def dice_loss(y_true, y_pred):
    """Segmentation loss of the paper and the release: 1 - soft Dice (smooth 1) over the batch."""
    return 1.0 - dice_coef(y_true, y_pred, smooth=1.0)


@keras.saving.register_keras_serializable(package="models_genesis")
def dice_ce_loss(y_true, y_pred):
    """Loss of a softmax over K classes (task `custom`): cross-entropy + 1 - mean soft Dice.

    `y_true` holds class indices `(..., 1)`, `y_pred` the softmax `(..., K)`; the Dice of each
    foreground class (1..K-1) is pooled over the batch (smooth 1, as `dice_loss`), then averaged.
    """
    k = int(y_pred.shape[-1])
    onehot = ops.one_hot(ops.cast(ops.squeeze(y_true, -1), "int32"), k)
    p = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0)
    cross_entropy = -ops.mean(ops.sum(onehot * ops.log(p), axis=-1))
    axes = tuple(range(len(y_pred.shape) - 1))
    inter = ops.sum(onehot * p, axis=axes)
    dice = (2.0 * inter + 1.0) / (ops.sum(onehot, axis=axes) + ops.sum(p, axis=axes) + 1.0)
    return cross_entropy + 1.0 - ops.mean(dice[1:])


class _OverlapSums(keras.metrics.Metric):
    """Accumulates sum(t p), sum(t), sum(p) over batches (soft or binarised p)."""

    def __init__(self, threshold=0.5, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = None if threshold is None else float(threshold)
        self.intersection = self.add_variable((), initializer="zeros", name="intersection")
        self.sum_true = self.add_variable((), initializer="zeros", name="sum_true")
        self.sum_pred = self.add_variable((), initializer="zeros", name="sum_pred")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} does not support `sample_weight`. "
                             f"Received: sample_weight={sample_weight!r}.")
        t = ops.cast(ops.reshape(y_true, (-1,)) > 0.5, "float32")
        p = ops.cast(ops.reshape(y_pred, (-1,)), "float32")
        if self.threshold is not None:
            p = ops.cast(p > self.threshold, "float32")
        self.intersection.assign_add(ops.sum(t * p))
        self.sum_true.assign_add(ops.sum(t))
        self.sum_pred.assign_add(ops.sum(p))

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="models_genesis")
class DiceCoefficient(_OverlapSums):
    """Dice pooled over all batches seen; equals `dice_coefficient` on the concatenated arrays.

    Args:
        threshold: binarise `y_pred > threshold`; None for the soft Dice of the loss.
        smooth: added to numerator and denominator. With 0, two empty masks score 1.
    """

    def __init__(self, threshold=0.5, smooth=0.0, name="dice", dtype=None):
        super().__init__(threshold=threshold, name=name, dtype=dtype)
        self.smooth = float(smooth)

    def result(self):
        denom = self.sum_true + self.sum_pred + self.smooth
        return ops.where(denom > 0, (2.0 * self.intersection + self.smooth)
                         / ops.maximum(denom, 1e-12), 1.0)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="models_genesis")
class ForegroundIoU(_OverlapSums):
    """Foreground IoU of the binarised prediction, pooled over batches (`iou_score`)."""

    def __init__(self, threshold=0.5, name="foreground_iou", dtype=None):
        if threshold is None:
            raise ValueError("`threshold` must be a number for ForegroundIoU. Received: None.")
        super().__init__(threshold=threshold, name=name, dtype=dtype)

    def result(self):
        union = self.sum_true + self.sum_pred - self.intersection
        return ops.where(union > 0, self.intersection / ops.maximum(union, 1e-12), 1.0)


@keras.saving.register_keras_serializable(package="models_genesis")
class MeanIoUOverThresholds(keras.metrics.Metric):
    """The paper's IoU as a stateful Keras metric (equals `mean_iou` on the concatenated arrays).

    Keeps the confusion counts (tp, fp, fn, tn) of every threshold across batches; `result()`
    averages the two-class IoU over thresholds. Counts are float32 variables, exact up to 2**24
    voxels per count and within 1e-7 relative beyond.

    Args:
        thresholds: defaults to 0.50:0.05:0.95.
    """

    def __init__(self, thresholds=PAPER_IOU_THRESHOLDS, name="mean_iou", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.thresholds = [float(v) for v in _check_thresholds(thresholds)]
        n = len(self.thresholds)
        self.counts = self.add_variable((4, n), initializer="zeros", name="confusion_counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("MeanIoUOverThresholds does not support `sample_weight`. "
                             f"Received: sample_weight={sample_weight!r}.")
        t = ops.cast(ops.reshape(y_true, (1, -1)) > 0.5, "float32")
        p = ops.reshape(ops.cast(y_pred, "float32"), (1, -1))
        thr = ops.reshape(ops.convert_to_tensor(self.thresholds, "float32"), (-1, 1))
        pred = ops.cast(p > thr, "float32")  # (T, N)
        tp = ops.sum(pred * t, axis=1)
        pred_pos = ops.sum(pred, axis=1)
        n_true = ops.sum(t)
        n_all = ops.cast(ops.shape(t)[1], "float32")
        fp = pred_pos - tp
        fn = n_true - tp
        tn = n_all - n_true - fp
        self.counts.assign_add(ops.stack([tp, fp, fn, tn]))

    def result(self):
        tp, fp, fn, tn = (self.counts[i] for i in range(4))
        return ops.mean(_two_class_iou(tp, fp, fn, tn, xp=ops))

    def get_config(self):
        return {**super().get_config(), "thresholds": self.thresholds}
