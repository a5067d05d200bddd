"""Slow tier: benchmark-sized agreement and the escape protocol over seeds and the full c grid."""

import numpy as np
import pytest

from sweeplab import dmf

pytestmark = pytest.mark.slow

C_GRID = [0.5, 0.9, 0.99, 1.01, 1.05, 1.1, 1.2, 1.5, 2.0, 3.0]
SHARPNESS_RTOL = 1e-6  # see test_dmf_escape.py


@pytest.mark.parametrize(("depth", "width"), [(8, 128), (16, 64)])
def test_exact_matches_lanczos_at_benchmark_size(depth, width):
    dims = (8, *([width] * (depth - 1)), 8)
    ws, target = dmf.gaussian_minimizer(
        dims, np.random.default_rng(np.random.SeedSequence([depth, width]))
    )
    exact = dmf.sharpness(ws)
    assert abs(exact - dmf.sharpness_numerical(ws, target)) <= 1e-9 * exact


def _check_protocol(ws, target, max_steps):
    lam = dmf.sharpness(ws)
    flat = dmf.flattest_sharpness(target, len(ws))
    runs = dmf.escape_batch(ws, [c * 2 / lam for c in C_GRID], max_steps=max_steps)
    for c, r in zip(C_GRID, runs, strict=True):
        if c <= 0.99:
            assert r.outcome == "stayed", (c, r.outcome)
            continue
        assert r.escape_step >= 0, c
        assert abs(r.escape_step - r.predicted_escape_step) <= max(
            0.02 * r.predicted_escape_step, 1.0
        ), (c, r.escape_step, r.predicted_escape_step)
        if r.converged:
            assert r.outcome == "escaped"
            assert r.final_sharpness <= (2 / r.eta) * (1 + SHARPNESS_RTOL)
            assert r.final_sharpness >= flat * (1 - SHARPNESS_RTOL)
        if 2 / r.eta < flat:
            assert not r.converged, c


@pytest.mark.parametrize("seed", range(5))
def test_scalar_escape_protocol_over_seeds(seed):
    ws, target = dmf.scalar_minimizer(15, np.random.default_rng(seed))
    _check_protocol(ws, target, 30_000)


@pytest.mark.parametrize("seed", range(5))
def test_matrix_escape_protocol_over_seeds(seed):
    ws, target = dmf.gaussian_minimizer((4, 4, 4, 4, 4), np.random.default_rng(seed))
    _check_protocol(ws, target, 30_000)
