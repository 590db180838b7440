"""Where things live: resolved lazily, when a function asks (nothing happens at import).

* `weights_dir()`: `$MODELS_GENESIS_WEIGHTS` or `./pretrained_weights`.
* `datasets_dir()`: `$MODELS_GENESIS_DATA` or `./datasets`.
"""

from __future__ import annotations

import os
from pathlib import Path


def weights_dir() -> Path:
    """Folder searched for pretrained weight files (`$MODELS_GENESIS_WEIGHTS`, else ./pretrained_weights)."""
    return Path(os.environ.get("MODELS_GENESIS_WEIGHTS", "pretrained_weights"))


def datasets_dir() -> Path:
    """Root folder of the data sets (`$MODELS_GENESIS_DATA`, else ./datasets)."""
    return Path(os.environ.get("MODELS_GENESIS_DATA", "datasets"))
