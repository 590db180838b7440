# %% [markdown]
# **Setup.** One parameter, `SMALL`, shrinks data, epochs and models so that the test suite can
# run every notebook in seconds (`MODELS_GENESIS_NOTEBOOK_SMALL=1`); the outputs you see come
# from the normal run, still phantom-sized. Everything the notebook writes goes to `WORK`
# (default `runs/notebooks/`, git-ignored); figures are saved there *and* shown below.

# %%
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TensorFlow's C++ logs
import json
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

SMALL = os.environ.get("MODELS_GENESIS_NOTEBOOK_SMALL", "0") == "1"
WORK = Path(os.environ.get("MODELS_GENESIS_NOTEBOOK_WORK",
                           "runs/notebooks_small" if SMALL else "runs/notebooks"))
FIGURES = WORK / "figures"
FIGURES.mkdir(parents=True, exist_ok=True)


def show(fig, name):
    """Save `fig` as FIGURES/name (PNG, 80 dpi), close it and show the file inline."""
    path = FIGURES / name
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    display(Image(filename=str(path)))


def save_summary(name, values):
    """Write this notebook's key numbers to WORK/summaries/name.json (the tests read them)."""
    path = WORK / "summaries" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(values, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
    print(f"summary written to {path}")


print(f"SMALL = {SMALL}; work folder: {WORK}")
