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
        _check_diagnostics(r, flat)


def _check_diagnostics(r, flat):
    """Field consistency of the outcome taxonomy (rules in the sweeplab.dmf.escape docstring)."""
    scalar = all(w.shape == (1, 1) for w in r.final_weights)
    method = {"stayed": "exact", "escaped": "exact", "diverged": "none"}.get(
        r.outcome, "dense" if scalar else "lanczos"
    )
    assert r.final_sharpness_method == method, r.outcome
    assert 0 <= r.period <= 8
    if r.outcome != "edge_of_stability":
        assert r.period == 0
    if r.outcome in ("unconverged", "edge_of_stability"):
        assert np.isfinite(r.contraction_rate) and np.isfinite(r.final_sharpness)
        assert r.steps_run == r.checkpoints[-1]
    else:
        assert np.isnan(r.contraction_rate)
    if np.isfinite(r.steps_to_tol):
        assert r.outcome == "unconverged" and r.contraction_rate < 1 and r.steps_to_tol > 0
        assert 2 / r.eta >= flat  # extrapolated convergence only where a minimizer is stable
    if r.outcome == "edge_of_stability":
        assert np.isnan(r.steps_to_tol)


@pytest.mark.parametrize("seed", range(5))
def test_scalar_escape_protocol_over_seeds(seed):
    ws, target = dmf.scalar_minimizer(15, np.random.default_rng(seed))
    _check_protocol(ws, target, 30_000)


@pytest.mark.parametrize("seed", range(5))
def test_matrix_escape_protocol_over_seeds(seed):
    ws, target = dmf.gaussian_minimizer((4, 4, 4, 4, 4), np.random.default_rng(seed))
    _check_protocol(ws, target, 30_000)


@pytest.mark.parametrize("seed", range(5))
def test_steps_to_tol_extrapolation_against_longer_runs(seed):
    """Cut at 4000 steps, then rerun longer: convergence comes at the extrapolated step or later.

    Near a minimizer the loss is a sum of decaying modes and the slowest one eventually dominates,
    so extrapolating the current geometric rate is optimistic when a slower mode is still hidden.
    """
    ws, _ = dmf.gaussian_minimizer((4, 4, 4, 4, 4), np.random.default_rng(seed))
    lam = dmf.sharpness(ws)
    cut = 4000
    etas = [c * 2 / lam for c in (1.01, 1.1, 1.5)]
    for eta, r in zip(etas, dmf.escape_batch(ws, etas, max_steps=cut), strict=True):
        if not (r.outcome == "unconverged" and r.steps_to_tol <= 25_000):
            continue
        predicted = cut + r.steps_to_tol
        (f,) = dmf.escape_batch(ws, [eta], max_steps=int(1.5 * predicted))
        if f.converged:
            assert f.steps_run >= 0.99 * predicted, (seed, r.c, f.steps_run, predicted)
            if seed in (2, 4):  # single-mode decay at the cut: the extrapolation is on the spot
                assert f.steps_run == pytest.approx(predicted, rel=0.01)
        else:
            assert f.outcome == "unconverged", (seed, r.c)
