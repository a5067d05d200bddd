"""Fixtures of the sweep-layer tests (helpers in synth.py)."""

import pytest


@pytest.fixture
def blocks_dir(tmp_path):
    d = tmp_path / "blocks" / "sharpness"
    d.mkdir(parents=True)
    return d
