"""Particle simulator against exact references, with tolerances in binomial standard errors.

All seeds are fixed, so every statistical assertion is deterministic; the tolerances (4 standard
errors, or a two-sample chi-square p-value above 1e-3) are what a correct simulator passes with
overwhelming probability for *any* seed.
"""

import numpy as np
import pytest
from scipy.special import erfc
from scipy.stats import chi2_contingency

from sweeplab.mcvd import (
    Geometry,
    absorbed_fraction,
    binned_hitting_rate,
    combine,
    cumulative_fraction,
    plan_batches,
    simulate,
    simulate_batch,
    simulate_image_pair,
)

D = 79.4
RR = 5.0
FREE = Geometry((15, 0, 0), (0, 0, 0), RR, D, wall=False)  # spec §6: r_0 = 15, F(1 s) = 0.1425
DEFAULT = Geometry((0, 0, 10), (10, 0, 0), RR, D)  # paper's topology, gap 5 µm
Z = 4.0


def _f_end(result):
    f, se = cumulative_fraction(result)
    return f[-1], se[-1]


def _same_distribution(a, b, per_bin):
    """Two-sample chi-square test of absorption-time histograms (+ never-absorbed cell)."""
    ca = a.counts.reshape(-1, per_bin).sum(axis=1)
    cb = b.counts.reshape(-1, per_bin).sum(axis=1)
    table = np.array(
        [np.append(ca, a.n_molecules - ca.sum()), np.append(cb, b.n_molecules - cb.sum())]
    )
    table = table[:, table.sum(axis=0) > 0]
    return chi2_contingency(table).pvalue


@pytest.mark.parametrize("dt", [1e-4, 1e-3])
def test_bridge_corrected_free_space_is_unbiased(dt):
    r = simulate(FREE, 1.0, dt, 200_000, seed=11, correction="bridge")
    f, se = _f_end(r)
    exact = float(absorbed_fraction(FREE, 1.0))
    assert abs(f - exact) <= Z * se, (f, exact, se)


@pytest.mark.parametrize("dt", [1e-4, 1e-3])
def test_uncorrected_bias_matches_effective_radius(dt):
    """Without the correction the sphere acts like radius r_r − 0.5826·sqrt(2DΔt) (spec §6)."""
    r = simulate(FREE, 1.0, dt, 200_000, seed=12, correction="none")
    f, se = _f_end(r)
    r_eff = RR - 0.5826 * np.sqrt(2 * D * dt)
    predicted = r_eff / 15 * erfc((15 - r_eff) / np.sqrt(4 * D * 1.0))
    exact = float(absorbed_fraction(FREE, 1.0))
    assert abs(f - predicted) <= Z * se, (f, predicted, se)
    if dt == 1e-3:  # 9 % low: resolved at this N (the 2 % at 1e-4 needs the slow tier's 1e6)
        assert exact - f > Z * se


@pytest.mark.slow
def test_uncorrected_bias_resolved_at_small_dt():
    r = simulate(FREE, 1.0, 1e-4, 1_000_000, seed=33, correction="none")
    f, se = _f_end(r)
    r_eff = RR - 0.5826 * np.sqrt(2 * D * 1e-4)
    predicted = r_eff / 15 * erfc((15 - r_eff) / np.sqrt(4 * D * 1.0))
    assert abs(f - predicted) <= Z * se
    assert float(absorbed_fraction(FREE, 1.0)) - f > Z * se


def test_half_space_matches_first_order_at_gap_5um():
    """spec §7: at gap 5 µm the first-order form is accurate to ~0.2 % at 1 s (t <= 2 s)."""
    r = simulate(DEFAULT, 2.0, 1e-4, 100_000, seed=13)
    f, se = cumulative_fraction(r)
    for t in (0.1, 0.5, 1.0, 2.0):
        k = round(t / r.dt) - 1
        model = float(absorbed_fraction(DEFAULT, t))
        assert abs(f[k] - model) <= 0.01 * model + Z * se[k], (t, f[k], model, se[k])


def test_first_order_deficit_at_gap_1um():
    """spec §7: gap 1 µm, the first-order form reads about 3 % low at 1 s and 7 % low at 2 s."""
    g = Geometry((0, 0, 10), (6, 0, 0), RR, D)
    r = simulate(g, 2.0, 1e-4, 100_000, seed=14)
    f, se = cumulative_fraction(r)
    k2 = r.counts.size - 1
    model = float(absorbed_fraction(g, 2.0))
    deficit = 1.0 - model / f[k2]
    assert f[k2] - model > Z * se[k2]
    assert 0.04 < deficit < 0.11, deficit


def test_half_space_equals_two_sphere_free_space():
    """spec §3: the reflected channel is the free channel with the RX and its image absorbing."""
    g = Geometry((3, 0, 9), (7, 0, 0), RR, D)
    half = simulate(g, 1.0, 1e-3, 60_000, seed=15)
    pair = simulate_image_pair(g, 1.0, 1e-3, 60_000, seed=16)
    assert _same_distribution(half, pair, per_bin=50) > 1e-3
    fh, sh = _f_end(half)
    fp, sp = _f_end(pair)
    assert abs(fh - fp) <= Z * np.hypot(sh, sp)


def test_far_field_jumps_do_not_change_the_distribution():
    g = Geometry((2, 0, 8), (6, 0, 0), RR, D)
    jump = simulate_batch(g, 1.0, 1e-3, 40_000, 21, "bridge", jumps=True)
    step = simulate_batch(g, 1.0, 1e-3, 40_000, 22, "bridge", jumps=False)
    assert jump.molecule_steps > 0 and jump.moves < jump.molecule_steps
    assert step.moves == step.molecule_steps
    assert _same_distribution(jump, step, per_bin=50) > 1e-3


def test_batches_combine_exactly_and_match_one_run():
    plan = plan_batches(25_000, 7_000, seed=5)
    assert [n for n, _ in plan] == [7_000, 7_000, 7_000, 4_000]
    parts = [simulate_batch(DEFAULT, 0.5, 1e-3, n, s, "bridge") for n, s in reversed(plan)]
    whole = simulate(DEFAULT, 0.5, 1e-3, 25_000, seed=5, batch_size=7_000)
    combined = combine(parts)  # order of completion does not matter
    np.testing.assert_array_equal(combined.counts, whole.counts)
    assert combined.molecule_steps == whole.molecule_steps
    assert combined.n_molecules == whole.n_molecules == 25_000
    one = simulate(DEFAULT, 0.5, 1e-3, 25_000, seed=6, batch_size=25_000)
    assert _same_distribution(whole, one, per_bin=25) > 1e-3


def test_seed_determinism_and_bookkeeping():
    a = simulate(DEFAULT, 0.2, 1e-3, 3_000, seed=np.random.SeedSequence(9))
    b = simulate(DEFAULT, 0.2, 1e-3, 3_000, seed=9)
    c = simulate(DEFAULT, 0.2, 1e-3, 3_000, seed=10)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert not np.array_equal(a.counts, c.counts)
    assert a.counts.dtype == np.int64 and a.counts.shape == (200,)
    np.testing.assert_allclose(a.times, 1e-3 * np.arange(1, 201))
    # molecule-steps: absorbed molecules stop; survivors run all 200 steps
    absorbed_at = np.repeat(np.arange(1, 201), a.counts)
    assert a.molecule_steps == absorbed_at.sum() + (3_000 - a.n_absorbed) * 200


def test_binned_hitting_rate_matches_model_and_se():
    r = simulate(DEFAULT, 1.0, 1e-4, 50_000, seed=17)
    edges, rate, se = binned_hitting_rate(r, 0.05)
    assert edges.shape == (21,) and rate.shape == se.shape == (20,)
    model = np.diff(absorbed_fraction(DEFAULT, edges)) / 0.05
    # chi-square-like check: standardized residuals of 20 bins, none beyond 4.5 sigma
    ok = se > 0
    assert np.all(np.abs(rate[ok] - model[ok]) <= 0.01 * model[ok] + 4.5 * se[ok])
    np.testing.assert_allclose(rate.sum() * 0.05, r.n_absorbed / r.n_molecules)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dt": 0.0}, "dt must be a finite number > 0"),
        ({"t_end": -1.0}, "t_end must be a finite number > 0"),
        ({"dt": 0.3}, "integer number of steps"),
        ({"n_molecules": 0}, "n_molecules must be an integer >= 1"),
        ({"n_molecules": 2.5}, "n_molecules must be an integer >= 1"),
        ({"correction": "rollback"}, "correction must be one of"),
        ({"seed": -3}, "seed must be a non-negative integer"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ],
)
def test_bad_simulation_inputs(kwargs, match):
    base = {"t_end": 1.0, "dt": 1e-3, "n_molecules": 10, "seed": 1}
    args = {**base, **kwargs}
    with pytest.raises(ValueError, match=match):
        simulate(DEFAULT, args.pop("t_end"), args.pop("dt"), args.pop("n_molecules"), **args)


def test_bad_bins_and_combine():
    r = simulate(DEFAULT, 0.1, 1e-3, 10, seed=1)
    with pytest.raises(ValueError, match="must divide"):
        binned_hitting_rate(r, 0.03)
    other = simulate(DEFAULT, 0.1, 1e-4, 10, seed=1)
    with pytest.raises(ValueError, match="cannot combine"):
        combine([r, other])
    with pytest.raises(ValueError, match="at least one"):
        combine([])
    with pytest.raises(ValueError, match="needs a half-space"):
        simulate_image_pair(FREE, 0.1, 1e-3, 10, 1)


@pytest.mark.slow
@pytest.mark.parametrize("dt", [1e-4, 1e-3])
def test_bridge_free_space_large(dt):
    """1e6 molecules: se ≈ 3.5e-4, so a 0.5 % bias would show."""
    r = simulate(FREE, 1.0, dt, 1_000_000, seed=31)
    f, se = _f_end(r)
    assert abs(f - float(absorbed_fraction(FREE, 1.0))) <= Z * se


@pytest.mark.slow
def test_gap_curve_large():
    """Model error vs gap at 1 s (spec §7): small at 5 µm, growing sharply towards the wall.

    TX fixed at (0, 0, 10), RX centre at (r_r + gap, 0, 0). Measured here (400k molecules,
    Δt = 1e-4, bridge): 1 − F_model/F_sim = −0.8 % (gap 5), +5.1 % (gap 1), +11.6 % (gap 0.2),
    each ± 0.2 % (one standard error).
    """
    deficits = []
    for gap in (5.0, 1.0, 0.2):
        g = Geometry((0, 0, 10), (RR + gap, 0, 0), RR, D)
        r = simulate(g, 1.0, 1e-4, 400_000, seed=32)
        f, se = _f_end(r)
        model = float(absorbed_fraction(g, 1.0))
        deficits.append((1 - model / f, se / f))
    (d5, s5), (d1, s1), (d02, s02) = deficits
    assert abs(d5) <= 0.01 + Z * s5  # accurate at gap 5 µm (issue: ~1 % plus statistics)
    assert d1 > d5 + Z * s1 and d02 > d1 + Z * s02  # grows as the RX nears the wall
    assert 0.03 < d1 < 0.08 and 0.08 < d02 < 0.16
