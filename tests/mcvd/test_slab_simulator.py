"""Particle simulator in a slab (two reflecting planes) against exact references.

Positions: the fold used by the simulator against the cosine-series transition density of
reflected Brownian motion in an interval (an independent, spectral formula). First-passage times:
simulated histograms against the exact model of :mod:`sweeplab.mcvd.exact`. Fixed seeds;
tolerances in binomial standard errors (4 in the fast tier, 3 in the slow tier as the issue asks).
"""

import numpy as np
import pytest
from scipy.stats import chi2, chi2_contingency, kstest

from sweeplab.mcvd import (
    Geometry,
    absorbed_fraction,
    cumulative_fraction,
    simulate,
    simulate_batch,
    simulate_image_pair,
)
from sweeplab.mcvd.kernel import reflect

D = 79.4
RR = 5.0
Z = 4.0


def _interval_cdf(x, x0, width, sigma2, n_terms=200):
    """CDF at x of reflected BM in [0, W] started at x0 after variance sigma2 = 2 D t."""
    n = np.arange(1, n_terms + 1)
    k = n * np.pi / width
    x = np.atleast_1d(x)[:, None]
    terms = 2 / (n * np.pi) * np.sin(k * x) * np.cos(k * x0) * np.exp(-0.5 * sigma2 * k**2)
    return (x[:, 0] / width) + terms.sum(axis=1)


@pytest.mark.parametrize(("x0", "width", "sigma"), [(2.0, 12.0, 5.0), (11.5, 12.0, 30.0)])
def test_fold_is_reflected_brownian_motion_in_the_interval(x0, width, sigma):
    """One Gaussian move of any length, folded, has the exact interval transition law."""
    rng = np.random.default_rng(41)
    free = x0 + sigma * rng.standard_normal(20_000)
    folded = np.array([reflect(v, True, width) for v in free])
    assert np.all((folded >= 0) & (folded <= width))
    res = kstest(folded, lambda x: _interval_cdf(x, x0, width, sigma**2))
    assert res.pvalue > 1e-3


def test_fold_half_space_and_free():
    assert reflect(-3.5, True, 0.0) == 3.5
    assert reflect(2.0, True, 0.0) == 2.0
    assert reflect(-3.5, False, 0.0) == -3.5
    assert reflect(-3.5, True, 10.0) == 3.5
    assert reflect(23.0, True, 10.0) == 3.0  # 23 mod 20 = 3
    assert reflect(17.0, True, 10.0) == 3.0  # 2W − 17
    assert reflect(-17.0, True, 10.0) == 3.0  # −17 mod 20 = 3


def _first_passage_gof(result, geometry, per_bin):
    """Chi-square goodness of fit of the absorption-time histogram (+ survivors) to the model."""
    counts = result.counts.reshape(-1, per_bin).sum(axis=1)
    edges = result.dt * per_bin * np.arange(counts.size + 1)
    f = absorbed_fraction(geometry, edges, model="exact")
    p = np.append(np.diff(f), 1.0 - f[-1])
    observed = np.append(counts, result.n_molecules - counts.sum())
    expected = result.n_molecules * p
    stat = np.sum((observed - expected) ** 2 / expected)
    return chi2.sf(stat, df=observed.size - 1)


SLABS = [
    Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0),  # 1 µm gaps, TX on the plane
    Geometry((13, 0, 8), (6.5, 0, 0), RR, D, slab_width=13.0),  # TX on the far plane
]


@pytest.mark.parametrize("g", SLABS)
def test_slab_first_passage_times_match_exact(g):
    r = simulate(g, 1.0, 1e-3, 60_000, seed=51)
    f, se = cumulative_fraction(r)
    for t in (0.1, 0.3, 1.0):
        k = round(t / r.dt) - 1
        exact = float(absorbed_fraction(g, t, model="exact"))
        assert abs(f[k] - exact) <= Z * se[k], (t, f[k], exact, se[k])
    assert _first_passage_gof(r, g, per_bin=50) > 1e-3


def test_slab_absorbs_more_than_half_space():
    slab = SLABS[0]
    half = Geometry(slab.tx, slab.rx, RR, D)
    rs = simulate(slab, 1.0, 1e-3, 40_000, seed=52)
    rh = simulate(half, 1.0, 1e-3, 40_000, seed=53)
    fs, ss = cumulative_fraction(rs)
    fh, sh = cumulative_fraction(rh)
    assert fs[-1] - fh[-1] > Z * np.hypot(ss[-1], sh[-1])


def test_slab_jumps_do_not_change_the_distribution():
    g = Geometry((2, 0, 12), (7, 0, 0), RR, D, slab_width=14.0)
    jump = simulate_batch(g, 1.0, 1e-3, 30_000, 61, "bridge", jumps=True)
    step = simulate_batch(g, 1.0, 1e-3, 30_000, 62, "bridge", jumps=False)
    assert jump.moves < jump.molecule_steps and step.moves == step.molecule_steps
    ca = jump.counts.reshape(-1, 50).sum(axis=1)
    cb = step.counts.reshape(-1, 50).sum(axis=1)
    table = np.array([np.append(ca, 30_000 - ca.sum()), np.append(cb, 30_000 - cb.sum())])
    assert chi2_contingency(table[:, table.sum(axis=0) > 0]).pvalue > 1e-3


def test_very_wide_slab_is_the_half_space_simulation():
    """Same seed, planes far beyond reach: bit-identical to the half-space run."""
    half = Geometry((0, 0, 10), (7, 0, 0), RR, D)
    wide = Geometry((0, 0, 10), (7, 0, 0), RR, D, slab_width=1e6)
    a = simulate(half, 0.2, 1e-3, 2_000, seed=5)
    b = simulate(wide, 0.2, 1e-3, 2_000, seed=5)
    np.testing.assert_array_equal(a.counts, b.counts)


def test_image_pair_refuses_a_slab():
    with pytest.raises(ValueError, match="needs a half-space"):
        simulate_image_pair(SLABS[0], 0.1, 1e-3, 10, 1)


# --- slow tier: 1e6 molecules, 4 topologies, 3 standard errors -----------------------------------
SLOW_TOPOLOGIES = [
    Geometry((0, 0, 10), (10, 0, 0), RR, D),  # paper default, gap 5 µm
    Geometry((0, 0, 10), (6, 0, 0), RR, D),  # gap 1 µm, where the first-order form fails
    Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0),  # slab, 1 µm gaps
    Geometry((13, 3, 8), (6.5, 0, 0), RR, D, slab_width=13.0),  # slab, TX on the far plane
    Geometry((4, 0, 14), (12, 0, 0), RR, D, slab_width=30.0),  # wide slab, off-axis TX
]


@pytest.mark.slow
@pytest.mark.parametrize("g", SLOW_TOPOLOGIES)
def test_exact_model_against_1e6_molecules(g):
    r = simulate(g, 2.0, 1e-4, 1_000_000, seed=71)
    f, se = cumulative_fraction(r)
    for t in (0.1, 0.5, 1.0, 2.0):
        k = round(t / r.dt) - 1
        exact = float(absorbed_fraction(g, t, model="exact"))
        assert abs(f[k] - exact) <= 3 * se[k], (t, f[k], exact, (f[k] - exact) / se[k])
    assert _first_passage_gof(r, g, per_bin=500) > 1e-3
