"""Shared test fixtures: a seeded `rng`, quiet TensorFlow, the `large` marker (pytest.ini).

Under `make test`'s workers (pytest-xdist, one per core) each worker's TensorFlow computes on
one thread, so the workers do not fight over the cores; a plain `pytest` keeps TF's default.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A fresh, seeded numpy Generator for each test."""
    return np.random.default_rng(0)
