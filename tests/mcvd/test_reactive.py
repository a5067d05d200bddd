"""Collins–Kimball (partially absorbing) receiver: geometry, closed form, exact model, guards.

References: the free-space closed form (checked here against an independent numerical inversion
of its Laplace form with mpmath), the exact model with a far plane, the absorbing receiver as
``k → ∞``, the Robin boundary condition itself on the RX surface, slab mirror symmetry and
monotonicity in ``k`` and ``t``.
"""

import itertools
import math

import numpy as np
import pytest

from sweeplab.mcvd import (
    Geometry,
    absorbed_fraction,
    erfc_terms,
    exact_absorbed_fraction,
    exact_hitting_rate,
    hitting_rate,
    laplace_hitting,
    simulate,
    steady_state_fraction,
)
from sweeplab.mcvd.exact import _Axis, _log_derivatives, _solve
from sweeplab.mcvd.kernel import walk
from sweeplab.mcvd.reactive import (
    absorption_probability,
    free_space_reactive_fraction,
    free_space_reactive_rate,
    free_space_reactive_steady_state,
)

D = 79.4
RR = 5.0
T = np.geomspace(1e-3, 100.0, 60)
KS = (1.0, 10.0, 100.0, 1e4)


def _half(gap: float, k: float, tx=(0.0, 0.0, 10.0)) -> Geometry:
    return Geometry(tx, (RR + gap, 0.0, 0.0), RR, D, reactivity=k)


# --- geometry ---------------------------------------------------------------------------------
def test_default_is_absorbing_and_backward_compatible():
    g = Geometry((0, 0, 10), (10, 0, 0), RR, D)
    assert g.reactivity == math.inf and not g.is_reactive
    assert g == Geometry((0, 0, 10), (10, 0, 0), RR, D, True, None, math.inf)
    assert Geometry((0, 0, 10), (10, 0, 0), RR, D, reactivity=10).reactivity == 10.0


@pytest.mark.parametrize("bad", [math.nan, 0, 0.0, -1.0, -math.inf, True, False, "10", None, [1.0]])
def test_reactivity_refused(bad):
    with pytest.raises(ValueError, match=r"^reactivity must be a real number > 0") as err:
        Geometry((0, 0, 10), (10, 0, 0), RR, D, reactivity=bad)
    assert "\n" not in str(err.value)


# --- free-space closed form -------------------------------------------------------------------
@pytest.mark.parametrize("k", KS)
def test_closed_form_against_mpmath_inversion(k):
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30
    g = Geometry((0, 0, 10), (10, 0, 0), RR, D, wall=False, reactivity=k)
    a, r0 = RR, g.distance

    def w(s):
        kap = mp.sqrt(s / D)
        return a / r0 * k * a * mp.exp(-kap * (r0 - a)) / (D * (1 + kap * a) + k * a)

    for t in (0.02, 0.3, 3.0):
        big_f = float(mp.invertlaplace(lambda s: w(s) / s, t, method="talbot"))
        small_f = float(mp.invertlaplace(w, t, method="talbot"))
        assert free_space_reactive_fraction(g, t) == pytest.approx(big_f, abs=1e-14)
        assert free_space_reactive_rate(g, t) == pytest.approx(small_f, abs=1e-12)


def test_closed_form_limits():
    g_inf = Geometry((0, 0, 10), (10, 0, 0), RR, D, wall=False)
    g_big = Geometry((0, 0, 10), (10, 0, 0), RR, D, wall=False, reactivity=1e13)
    np.testing.assert_allclose(
        free_space_reactive_fraction(g_big, T), absorbed_fraction(g_inf, T, "free"), atol=1e-10
    )
    np.testing.assert_allclose(
        free_space_reactive_rate(g_big, T), hitting_rate(g_inf, T, "free"), rtol=1e-9, atol=1e-12
    )
    g = Geometry((0, 0, 10), (10, 0, 0), RR, D, wall=False, reactivity=10.0)
    f_inf = free_space_reactive_steady_state(g)
    assert f_inf == pytest.approx(RR / g.distance * 10 * RR / (D + 10 * RR), rel=1e-15)
    assert free_space_reactive_fraction(g, 1e9)[()] == pytest.approx(f_inf, rel=1e-4)
    assert laplace_hitting(g, 0.0).real == pytest.approx(f_inf, rel=1e-14)
    # f = dF/dt
    t = np.geomspace(0.01, 10, 25)
    h = 1e-5 * t
    num = (free_space_reactive_fraction(g, t + h) - free_space_reactive_fraction(g, t - h)) / 2 / h
    np.testing.assert_allclose(num, free_space_reactive_rate(g, t), rtol=1e-6)


# --- exact model ------------------------------------------------------------------------------
def test_log_derivatives_against_scipy():
    from scipy.special import spherical_in, spherical_kn

    z = np.array([0.3, 2 + 5j, 10 - 30j, 40 + 1j, 150 + 120j, 3 + 200j])
    hk, gi = _log_derivatives(z, 30)
    n = np.arange(30)
    for i, zz in enumerate(z):
        ri = zz * spherical_in(n, zz, derivative=True) / spherical_in(n, zz)
        rk = zz * spherical_kn(n, zz, derivative=True) / spherical_kn(n, zz)
        np.testing.assert_allclose(gi[i], ri, rtol=1e-12)
        np.testing.assert_allclose(hk[i], rk, rtol=1e-12)
    hk0, gi0 = _log_derivatives(np.zeros(1, complex), 5)
    np.testing.assert_array_equal(hk0[0], -(np.arange(5) + 1.0))
    np.testing.assert_array_equal(gi0[0], np.arange(5.0))


@pytest.mark.parametrize("k", KS)
def test_far_plane_matches_closed_form(k):
    g = Geometry((1e4, 0, 10), (1e4 + 10, 0, 0), RR, D, reactivity=k)
    np.testing.assert_allclose(
        exact_absorbed_fraction(g, T), free_space_reactive_fraction(g, T), rtol=0, atol=1e-10
    )
    ref = free_space_reactive_fraction(g, T)
    sig = ref > 1e-3
    rel = np.abs(exact_absorbed_fraction(g, T)[sig] / ref[sig] - 1)
    assert rel.max() < 1e-8
    np.testing.assert_allclose(
        exact_hitting_rate(g, T), free_space_reactive_rate(g, T), rtol=0, atol=1e-10
    )


def test_free_space_routes_to_closed_form():
    g = Geometry((0, 0, 10), (10, 0, 0), RR, D, wall=False, reactivity=10.0)
    np.testing.assert_array_equal(
        absorbed_fraction(g, T, "exact"), free_space_reactive_fraction(g, T)
    )
    np.testing.assert_array_equal(hitting_rate(g, T, "exact"), free_space_reactive_rate(g, T))
    assert steady_state_fraction(g) == pytest.approx(free_space_reactive_steady_state(g), 1e-14)


@pytest.mark.parametrize(
    "g_of",
    [
        lambda k: _half(0.2, k),
        lambda k: _half(5.0, k),
        lambda k: Geometry((3, 0, 10), (6, 0, 0), RR, D, slab_width=13.0, reactivity=k),
    ],
)
def test_large_reactivity_is_absorbing(g_of):
    np.testing.assert_allclose(
        exact_absorbed_fraction(g_of(1e12), T), exact_absorbed_fraction(g_of(math.inf), T),
        rtol=0, atol=1e-9,
    )  # fmt: skip


@pytest.mark.parametrize(
    "g",
    [
        _half(0.2, 10.0),
        _half(1.0, 100.0, tx=(0.5, 3.0, 6.0)),
        Geometry((3, 0, 10), (6, 0, 0), RR, D, slab_width=13.0, reactivity=3.0),
    ],
)
def test_robin_condition_on_the_surface(g):
    """``D ∂w/∂r = k (w − 1)`` at 23 points of the RX surface off the Gauss nodes."""
    ax = _Axis.of(g)
    s = np.array([0.0 if g.slab_width is None else 0.5, 3.0, 40.0 + 25.0j, 500.0 - 900.0j])
    sol = _solve(ax, s.astype(complex), 60, 1e-12)
    u = np.cos(np.linspace(0.01, math.pi - 0.01, 23))
    r, h = RR, 1e-4
    vals = []
    for rr in (r, r + h, r + 2 * h):
        vals.append(sol.field(ax.x_rx + rr * u, rr * np.sqrt(1 - u * u)))
    w0, w1, w2 = vals
    dwdr = (-3 * w0 + 4 * w1 - w2) / (2 * h)
    resid = D * dwdr - g.reactivity * (w0 - 1.0)
    assert np.max(np.abs(resid)) < 1e-4 * max(D, g.reactivity)  # O(h²) finite difference
    assert np.max(np.abs(w0)) <= 1.0 + 1e-9


def test_slab_mirror_symmetry():
    w = 13.0
    g1 = Geometry((2.0, 1.0, 9.0), (6.2, 0, 0), RR, D, slab_width=w, reactivity=20.0)
    g2 = Geometry((w - 2.0, 1.0, 9.0), (w - 6.2, 0, 0), RR, D, slab_width=w, reactivity=20.0)
    np.testing.assert_allclose(
        exact_absorbed_fraction(g1, T), exact_absorbed_fraction(g2, T), rtol=0, atol=1e-10
    )


def test_monotone_in_k_and_t():
    t = np.geomspace(1e-2, 20, 80)
    curves = [exact_absorbed_fraction(_half(0.2, k), t) for k in (*KS, math.inf)]
    for c in curves:
        assert np.all(np.diff(c) >= -1e-10)
    for lo, hi in itertools.pairwise(curves):
        assert np.all(hi >= lo - 1e-10)
        assert np.all(hi[t > 0.1] > lo[t > 0.1])
    f_inf = [steady_state_fraction(_half(0.2, k)) for k in (*KS, math.inf)]
    assert all(b > a for a, b in itertools.pairwise(f_inf))
    assert f_inf[-1] == pytest.approx(0.59970123, abs=1.5e-8)  # spec §10


def test_self_convergence():
    t = np.geomspace(5e-3, 2, 40)
    for k in (1.0, 100.0):
        g = _half(0.2, k)
        np.testing.assert_allclose(
            exact_absorbed_fraction(g, t), exact_absorbed_fraction(g, t, tol=1e-12),
            rtol=0, atol=1e-10,
        )  # fmt: skip


def test_slab_steady_state_is_one():
    g = Geometry((3, 0, 10), (6, 0, 0), RR, D, slab_width=13.0, reactivity=10.0)
    assert laplace_hitting(g, 0.0).real == 1.0
    assert steady_state_fraction(g) == 1.0


# --- closed forms refuse finite k ---------------------------------------------------------------
@pytest.mark.parametrize("model", ["free", "first-order", "first-order-convolved", "image-chain"])
def test_closed_forms_refuse_finite_k(model):
    g = _half(1.0, 10.0)
    msg = r"not available for finite reactivity .*; use model='exact'$"
    with pytest.raises(ValueError, match=msg):
        absorbed_fraction(g, [0.5], model)
    with pytest.raises(ValueError, match=msg):
        hitting_rate(g, [0.5], model)
    with pytest.raises(ValueError, match=msg):
        erfc_terms(g, model)


def test_absorption_probability():
    assert absorption_probability(math.inf, 1e-4, D) == 1.0
    kap = 10 * math.sqrt(1e-4 / D)
    first = math.sqrt(math.pi) * kap
    assert absorption_probability(10.0, 1e-4, D, rule="first-order") == pytest.approx(first / 2)
    assert absorption_probability(10.0, 1e-4, D, bridge=False, rule="first-order") == first
    # planar rule: first order for small k sqrt(dt/D), below it by ~ k sqrt(dt/D) relative
    assert absorption_probability(1e-3, 1e-4, D) == pytest.approx(first / 2e4, rel=1e-5)
    p = absorption_probability(100.0, 1e-4, D)
    assert p == pytest.approx(10 * first / 2 / (1 + 1.003 * 10 * kap), rel=3e-3)
    assert absorption_probability(1e8, 1e-4, D) > 0.999
    # curvature: k / (1 + sqrt(π/8) σ/a)
    sig = math.sqrt(2 * D * 1e-4)
    k_flat = 10.0 / (1 + math.sqrt(math.pi / 8) * sig / RR)
    assert absorption_probability(10.0, 1e-4, D, radius=RR) == absorption_probability(
        k_flat, 1e-4, D
    )
    with pytest.raises(ValueError, match="first-order absorption probability"):
        absorption_probability(1e4, 1e-4, D, rule="first-order")
    with pytest.raises(ValueError, match="too large for end-of-step absorption"):
        absorption_probability(1e4, 1e-4, D, bridge=False)
    with pytest.raises(ValueError, match="rule must be one of"):
        absorption_probability(1.0, 1e-4, D, rule="x")


# --- simulator ------------------------------------------------------------------------------
def test_simulator_infinite_k_is_unchanged():
    g = _half(1.0, math.inf)
    a = simulate(g, 0.2, 1e-4, 3000, seed=11)
    b = simulate(Geometry((0, 0, 10), (6, 0, 0), RR, D), 0.2, 1e-4, 3000, seed=11)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert (a.molecule_steps, a.moves) == (b.molecule_steps, b.moves)
    counts = [np.zeros(2000, np.int64) for _ in range(2)]
    args = (3000, np.array([0.0, 0, 10]), np.array([[6.0, 0, 0]]), RR, D, 1e-4, 2000, True, 0.0)
    r1 = walk(np.random.default_rng(5), *args, True, True, counts[0])
    r2 = walk(np.random.default_rng(5), *args, True, True, counts[1], 1.0)
    assert r1 == r2
    np.testing.assert_array_equal(counts[0], counts[1])


@pytest.mark.parametrize("k", [10.0, 100.0])
def test_simulator_matches_exact_reactive_model(k):
    """χ² of 25 ms bins (+ not absorbed by 0.5 s) against the exact model, dt = 1e-4 s."""
    from scipy.stats import chi2

    g = _half(1.0, k)
    n = 60_000
    res = simulate(g, 0.5, 1e-4, n, seed=2024)
    observed = res.counts.reshape(20, -1).sum(axis=1)
    edges = np.linspace(0.0, 0.5, 21)
    big_f = exact_absorbed_fraction(g, edges)
    expected = n * np.diff(big_f)
    obs = np.append(observed, n - observed.sum())
    exp_ = np.append(expected, n * (1 - big_f[-1]))
    keep = exp_ > 5
    stat = float(np.sum((obs[keep] - exp_[keep]) ** 2 / exp_[keep]))
    assert chi2.sf(stat, keep.sum() - 1) > 1e-3
    # and F(0.5 s) within 3 standard errors
    f_end = observed.sum() / n
    assert abs(f_end - big_f[-1]) < 3 * math.sqrt(big_f[-1] * (1 - big_f[-1]) / n)


@pytest.mark.slow
@pytest.mark.parametrize("k", [10.0, 100.0])
def test_simulator_at_a_million_molecules(k):
    """10^6 molecules, Δt = 1e-4 s, gap 1 µm (docs/mcvd_exact.md §14, measured bias).

    k = 100: the χ² of 25 ms bins and F(0.5 s) within 4 standard errors (4.4e-4). k = 10: the
    partial-absorption rule keeps a bias of about +0.8 % (z ≈ 2.3 to 3.4 over three seeds, about
    √Δt times the +2.5 to +3.3 % at Δt = 1e-3); F(0.5 s) must stay within ±1.5 % of exact.
    """
    from scipy.stats import chi2

    g = _half(1.0, k)
    n = 1_000_000
    res = simulate(g, 0.5, 1e-4, n, seed=2025)
    observed = res.counts.reshape(20, -1).sum(axis=1)
    big_f = exact_absorbed_fraction(g, np.linspace(0.0, 0.5, 21))
    obs = np.append(observed, n - observed.sum())
    exp_ = np.append(n * np.diff(big_f), n * (1 - big_f[-1]))
    stat = float(np.sum((obs - exp_) ** 2 / exp_))
    f_end = observed.sum() / n
    if k == 100.0:
        assert chi2.sf(stat, len(obs) - 1) > 1e-3
        assert abs(f_end - big_f[-1]) < 4 * math.sqrt(big_f[-1] * (1 - big_f[-1]) / n)
    else:
        assert abs(f_end / big_f[-1] - 1) < 0.015, (f_end, big_f[-1])


def test_simulator_refuses_too_large_k_without_bridge():
    with pytest.raises(ValueError, match="reactivity"):
        simulate(_half(1.0, 1e5), 0.01, 1e-3, 10, seed=0, correction="none")


def test_exact_functions_in_free_space_are_the_free_space_closed_form():
    """exact_absorbed_fraction / exact_hitting_rate on a free-space geometry used to add the
    plane's image anyway (F(1 s) = 0.3148, the half-space value, instead of 0.1655)."""
    from sweeplab.mcvd import absorbed_fraction, hitting_rate
    from sweeplab.mcvd.exact import exact_absorbed_fraction, exact_hitting_rate

    g = Geometry((0, 0, 10), (10, 0, 0), 5, 79.4, wall=False)
    t = np.array([0.01, 0.1, 1.0, 10.0])
    np.testing.assert_allclose(
        exact_absorbed_fraction(g, t), absorbed_fraction(g, t, model="free"), rtol=1e-12
    )
    np.testing.assert_allclose(
        exact_hitting_rate(g, t), hitting_rate(g, t, model="free"), rtol=1e-12
    )
