"""Minimizers shared by the escape tests (built once per session)."""

import numpy as np
import pytest

from sweeplab import dmf


@pytest.fixture(scope="session")
def scalar15():
    ws, m = dmf.scalar_minimizer(15, np.random.default_rng(1))
    return ws, m, dmf.sharpness(ws)


@pytest.fixture(scope="session")
def matrix4():
    # seed 1: every c in {1.01, 1.05, 1.2, 1.5} converges within ~2500 steps
    ws, m = dmf.gaussian_minimizer((4, 4, 4, 4, 4), np.random.default_rng(1))
    return ws, m, dmf.sharpness(ws)
