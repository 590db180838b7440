"""Shared test fixtures: a seeded `rng`, quiet TensorFlow, the `large` marker (pytest.ini)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A fresh, seeded numpy Generator for each test."""
    return np.random.default_rng(0)
