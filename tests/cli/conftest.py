"""Fixtures of the command-line tests."""

import pytest

from tests.cli.refusals import build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs shared by the cases of a table of bad inputs (`refusals.build_world`)."""
    return build_world(tmp_path_factory.mktemp("world"))
