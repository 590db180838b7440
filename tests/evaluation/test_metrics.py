"""Tests of the numpy metrics and their Keras counterparts (hand-checkable values)."""

import keras
import numpy as np
import pytest

from models_genesis.evaluation import metrics as M


def test_dice_and_iou_exact_fractions():
    y = np.array([1, 1, 1, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.5])  # binarised (> 0.5): 1 1 0 1 0 0
    # |P & T| = 2, |P| = 3, |T| = 3 -> Dice 4/6, IoU 2/4.
    assert M.dice_coefficient(y, p) == pytest.approx(4 / 6)
    assert M.iou_score(y, p) == pytest.approx(2 / 4)
    # Soft Dice with smooth 1: sum(t p) = 1.9, sum(p) = 3.2 -> (2 * 1.9 + 1) / (3 + 3.2 + 1).
    assert M.dice_coefficient(y, p, threshold=None, smooth=1.0) == pytest.approx(4.8 / 7.2)
    assert M.iou_score(y, p, threshold=0.15) == pytest.approx(3 / 5)


def test_empty_masks_score_one():
    z = np.zeros((2, 3, 4))
    assert M.dice_coefficient(z, z) == 1.0
    assert M.iou_score(z, z + 0.2) == 1.0
    assert M.iou_score(z, z + 0.9) == 0.0


def test_mean_iou_hand_computed():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.7, 0.96])
    # t in {0.50, 0.55}: pred 0111 -> fg 2/3, bg 1/2 -> 7/12
    # t in {0.60, 0.65}: pred 0011 -> 1
    # t in {0.70, ..., 0.95} (6 values): pred 0001 -> fg 1/2, bg 2/3 -> 7/12
    assert M.mean_iou(y, p) == pytest.approx((8 * 7 / 12 + 2) / 10)
    # Background only: the absent foreground class is left out of the mean.
    assert M.mean_iou(np.zeros(5), np.full(5, 0.3)) == 1.0
    assert M.mean_iou(y, p, thresholds=[0.65]) == 1.0


def test_mean_iou_compares_in_float32_like_the_release():
    """The release compared float32 outputs with np.arange(0.5, 1.0, 0.05) in TensorFlow, i.e. in
    float32: float32(0.6) is not above the threshold 0.6 there, while in float64 it is."""
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.7, 0.96], dtype=np.float32)
    assert p.astype(np.float64)[1] > 0.6 and not p[1] > np.float32(0.6)  # the two answers differ
    release = (8 * 7 / 12 + 2) / 10  # as test_mean_iou_hand_computed: t = 0.6 gives 0011
    float64 = (9 * 7 / 12 + 1) / 10  # t = 0.6 would give 0111
    assert M.mean_iou(y, p) == pytest.approx(release) != pytest.approx(float64)
    release_thresholds = np.arange(0.5, 1.0, 0.05)  # 0.6000000000000001, ... as in the release
    assert M.mean_iou(y, p, thresholds=release_thresholds) == pytest.approx(release)
    metric = M.MeanIoUOverThresholds()
    metric.update_state(y.astype(np.float32), p)
    assert float(metric.result()) == pytest.approx(release)


def test_confusion_counts_match_direct_thresholding(rng):
    y = rng.random((3, 7, 5)) > 0.6
    p = rng.random((3, 7, 5))
    t = [0.9, 0.1, 0.5]  # unsorted on purpose
    tp, fp, fn, tn = M.confusion_counts(y, p, t)
    for k, th in enumerate(t):
        pred = p > th
        assert (tp[k], fp[k], fn[k], tn[k]) == ((pred & y).sum(), (pred & ~y).sum(),
                                                (~pred & y).sum(), (~pred & ~y).sum())


def test_auc_score():
    assert M.auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="both classes"):
        M.auc_score([1, 1, 1], [0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="same shape"):
        M.dice_coefficient(np.zeros(3), np.zeros(4))


def test_dice_loss_is_one_minus_smooth_dice_over_batch(rng):
    y = (rng.random((2, 4, 4, 2, 1)) > 0.5).astype("float32")
    p = rng.random((2, 4, 4, 2, 1)).astype("float32")
    expected = 1 - M.dice_coefficient(y, p, threshold=None, smooth=1.0)
    got = float(keras.ops.convert_to_numpy(M.dice_loss(y, p)))
    assert got == pytest.approx(expected, rel=1e-5)


def test_keras_metrics_accumulate_and_match_numpy(rng):
    # Avoid values within float32 rounding of a threshold.
    y = (rng.random((4, 6, 6, 4, 1)) > 0.6).astype("float32")
    p = np.clip(np.round(rng.random(y.shape) * 40) / 40 + 0.0123, 0, 1).astype("float32")
    metrics = {
        "mean_iou": (M.MeanIoUOverThresholds(), M.mean_iou),
        "dice": (M.DiceCoefficient(), M.dice_coefficient),
        "soft_dice": (M.DiceCoefficient(threshold=None, smooth=1.0),
                      lambda a, b: M.dice_coefficient(a, b, threshold=None, smooth=1.0)),
        "fg_iou": (M.ForegroundIoU(), M.iou_score),
    }
    for name, (metric, reference) in metrics.items():
        metric.update_state(y[:2], p[:2])  # two batches: state must accumulate
        metric.update_state(y[2:], p[2:])
        got = float(keras.ops.convert_to_numpy(metric.result()))
        assert got == pytest.approx(reference(y, p), rel=1e-5), name
        metric.reset_state()
        metric.update_state(y[:1], p[:1])
        got = float(keras.ops.convert_to_numpy(metric.result()))
        assert got == pytest.approx(reference(y[:1], p[:1]), rel=1e-5), name
    # The paper's IoU exceeds the foreground IoU (background IoU is high).
    assert M.mean_iou(y, p) > M.iou_score(y, p)


def test_metrics_work_in_compile_and_evaluate():
    inputs = keras.Input((4, 4, 4, 1))
    outputs = keras.layers.Conv3D(1, 1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=M.dice_loss,
                  metrics=[M.MeanIoUOverThresholds(), M.DiceCoefficient()])
    x = np.linspace(-1, 1, 2 * 64).reshape(2, 4, 4, 4, 1).astype("float32")
    y = (x > 0).astype("float32")
    res = model.evaluate(x, y, batch_size=1, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0)
    assert res["mean_iou"] == pytest.approx(M.mean_iou(y, p), abs=1e-5)
    assert res["dice"] == pytest.approx(M.dice_coefficient(y, p), abs=1e-5)
    cfg = M.MeanIoUOverThresholds(thresholds=[0.3, 0.6]).get_config()
    assert M.MeanIoUOverThresholds.from_config(cfg).thresholds == [0.3, 0.6]


def test_a_model_compiled_with_each_segmentation_loss_reloads_compiled(tmp_path):
    # `.keras` files of fine-tuned models (dice_loss; task custom: dice_ce_loss) load with
    # `keras.saving.load_model` alone, compiled, with no custom_objects.
    for loss, units, activation in ((M.dice_loss, 1, "sigmoid"), (M.dice_ce_loss, 3, "softmax")):
        inputs = keras.Input((4, 4, 4, 1))
        model = keras.Model(inputs, keras.layers.Conv3D(units, 1, activation=activation)(inputs))
        model.compile(optimizer="adam", loss=loss)
        path = tmp_path / f"{loss.__name__}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert loaded.loss is loss
