# %% [markdown]
# **Fine-tuning helpers** shared by the five target-task notebooks: run `finetune` once per
# initialisation with the same seed (so the same labelled data, order and augmentation), keep
# each run's best model, and draw the predictions.

# %%
import keras
import pandas as pd

from models_genesis.config import FinetuneConfig, get_target_task
from models_genesis.training.finetune import finetune

if keras.backend.backend() == "tensorflow":  # TensorFlow sets its logger to INFO in notebooks
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # e.g. its notices about re-traced functions

# Table 3 of the paper (docs/release_reference.md, 'Headline numbers'): mean ± s.d. over 10 runs,
# in %; AUC for NCC and ECC, the paper's IoU (mean over thresholds 0.50:0.05:0.95) for NCS, LCS and
# BMS.
PAPER_TABLE3 = {
    "uniform": {"ncc": (94.74, 1.97), "ncs": (75.48, 0.43), "ecc": (80.36, 3.58),
                "lcs": (78.68, 4.23), "bms": (60.79, 1.60)},
    "glorot_uniform": {"ncc": (94.25, 5.07), "ncs": (74.05, 1.97), "ecc": (79.99, 8.06),
                       "lcs": (77.82, 3.87), "bms": (58.52, 2.61)},
    "he_uniform": {"ncc": (96.03, 1.82), "ncs": (76.44, 0.45), "ecc": (78.24, 3.60),
                   "lcs": (79.76, 5.43), "bms": (63.00, 1.73)},
    "genesis": {"ncc": (98.34, 0.44), "ncs": (77.62, 0.64), "ecc": (87.20, 2.87),
                "lcs": (85.10, 2.15), "bms": (67.96, 1.29)},
}



def demo_settings(pretraining, *, input_shape=(32, 32, 16), epochs=15, patience=6):
    """Fine-tuning settings on the phantoms: the demo model's width, small crops; SMALL (the
    tests) trains one step of one epoch."""
    return dict(n_base_filters=pretraining["result"]["config"]["n_base_filters"],
                input_shape=input_shape, batch_size=8, epochs=1 if SMALL else epochs,
                patience=1 if SMALL else patience, steps_per_epoch=1 if SMALL else None,
                validation_steps=1 if SMALL else None)

def finetune_inits(task, data, inits, weights, settings, *, seed=0):
    """Fine-tune one model per initialisation; return ({init: result}, {init: best model})."""
    results, models = {}, {}
    for init in inits:
        out = WORK / task / f"finetune_{init}"
        config = FinetuneConfig(task=task, init=init, seed=seed, out_dir=str(out),
                                weights=str(weights) if init == "genesis" else None, **settings)
        print(f"--- {task.upper()}: {init} ---")
        results[init] = finetune(config, data, verbose=2, overwrite=True)  # the notebook's own run
        models[init] = keras.models.load_model(out / "model.keras", compile=False)
    return results, models


def results_table(results, keys):
    """Our test scores (in %) next to the paper's Table 3 for the same initialisation."""
    task = next(iter(results.values()))["task"]
    rows = []
    for init, r in results.items():
        paper = PAPER_TABLE3.get(init, {}).get(task)
        rows.append({"initialisation": init, **{k: round(100 * r[k], 2) for k in keys},
                     "epochs": r["epochs"], "paper (Table 3)": f"{paper[0]} ± {paper[1]}" if paper else ""})
    return pd.DataFrame(rows).set_index("initialisation")


def plot_segmentations(x, y, predictions, name, *, n=4, title=""):
    """Middle slices of `n` test crops: image with the true outline, then each model's mask."""
    order = np.argsort(-y.reshape(len(y), -1).sum(1))[:n]  # crops with the most foreground
    cols = 2 + len(predictions)
    fig, axes = plt.subplots(n, cols, figsize=(2.1 * cols, 2.1 * n), squeeze=False)
    for row, i in enumerate(order):
        z = int(np.argmax(y[i, ..., 0].sum((0, 1))))  # the slice with the most foreground
        panels = [("image", x[i, :, :, z, 0], None), ("truth", x[i, :, :, z, 0], y[i, :, :, z, 0])]
        panels += [(k, x[i, :, :, z, 0], p[i, :, :, z, 0] > 0.5) for k, p in predictions.items()]
        for ax, (label, image, mask) in zip(axes[row], panels):
            ax.imshow(image.T, cmap="gray", vmin=0, vmax=1)
            if mask is not None:
                ax.contour(np.asarray(mask, float).T, levels=[0.5], colors="r", linewidths=1)
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    show(fig, name)


def plot_classification(y, probabilities, x, name, *, title=""):
    """ROC curves of each model on the test crops, and the crops the first model ranks highest."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = plt.figure(figsize=(12, 3.6))
    ax = fig.add_subplot(1, 3, 1)
    for k, p in probabilities.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{k} (AUC {100 * roc_auc_score(y, p):.1f}%)")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC, test crops")
    ax.legend(fontsize=8)
    first = next(iter(probabilities))
    order = np.argsort(-probabilities[first])
    picks = list(order[:4]) + list(order[-4:])
    for j, i in enumerate(picks):
        ax = fig.add_subplot(2, 12, 12 * (j // 4) + 5 + j % 4 + (j // 4) * 0)
        ax.imshow(x[i, :, :, x.shape[3] // 2, 0].T, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"p={probabilities[first][i]:.2f} y={int(y[i])}", fontsize=7)
        ax.axis("off")
    fig.suptitle(title + f" (right: highest and lowest {first} probabilities)", fontsize=10)
    show(fig, name)


def plot_candidates(data, positive, name, *, n=8):
    """Middle slices of `n` positive and `n` negative training candidates (NCC, ECC)."""
    fig, axes = plt.subplots(2, n, figsize=(13, 3.7))
    for row, label in enumerate((1, 0)):
        for ax, i in zip(axes[row], np.flatnonzero(data.y_train == label)[:n]):
            ax.imshow(data.x_train[i, :, :, data.x_train.shape[3] // 2, 0].T, cmap="gray",
                      vmin=0, vmax=1)
            ax.set_title(positive if label else "false positive", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    show(fig, name)


def save_task_summary(name, task, results, data, metrics, **extra):
    """`save_summary` of a target task: the test metrics of each run, the crop counts."""
    keys = tuple(metrics) + ("score", "epochs", "n_train", "n_test")
    save_summary(name, {"task": task,
                        "results": {k: {m: r[m] for m in keys} for k, r in results.items()},
                        "counts": data.info["counts"], **extra})
