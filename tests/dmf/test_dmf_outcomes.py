"""Outcome taxonomy of the escape runs and the sharpness wherever a run ends.

Each outcome is produced by a case built for it and checked against an independent computation:
the period-2 orbit of the balanced scalar map by polynomial root finding, the linear contraction
``(1 − ηλ*)^2`` of the loss and a longer run for the extrapolation, closed-form and dense-Hessian
sharpness.
"""

import importlib

import numpy as np
import pytest
from numpy.polynomial import polynomial as P

from sweeplab import dmf

esc = importlib.import_module("sweeplab.dmf.escape")  # the module (dmf.escape is the function)

# The last iterate of a converged run is within sqrt(loss_tol) ~ 1e-10 of a minimizer, so its
# sharpness can exceed that of the limit point by ~1e-9 relative (see test_dmf_escape.py).
SHARPNESS_RTOL = 1e-6
LANCZOS_RTOL = 1e-9  # Lanczos (tol 1e-12) vs dense Hessian / closed form at the same point


def test_outcome_codes_are_fixed():
    # the sweep layer stores OUTCOMES.index(outcome): this order is a storage contract
    assert dmf.OUTCOMES == ("stayed", "escaped", "edge_of_stability", "unconverged", "diverged")
    assert esc.SHARPNESS_METHODS == ("exact", "lanczos", "none", "dense")  # append only


# --- escaped: scalar chain at c = 1.01 ---------------------------------------------------------


def test_escaped_scalar_chain_lands_below_threshold_exact_sharpness(scalar15):
    ws, _, lam = scalar15
    r = dmf.escape(ws, 1.01 * 2 / lam, max_steps=20_000)
    assert r.outcome == "escaped" and r.escape_step >= 0
    assert (r.period, r.final_sharpness_method) == (0, "exact")
    assert np.isnan(r.contraction_rate) and np.isnan(r.steps_to_tol)
    # independent: closed form 2 Σ_i Π_{j≠i} w_j^2 of the scalar chain at the final iterate
    closed = dmf.sharpness_closed_form(list(r.final_weights))
    assert r.final_sharpness == pytest.approx(closed, rel=1e-10)
    assert r.final_sharpness <= (2 / r.eta) * (1 + SHARPNESS_RTOL)


# --- edge_of_stability: the period-2 orbit of the balanced scalar map ---------------------------


def _balanced_period2_orbit(depth: int, eta: float) -> tuple[float, float]:
    """Period-2 orbit near 1 of x -> x − 2η(x^L − 1) x^{L−1} (GD on the diagonal, m = 1)."""
    g = np.zeros(2 * depth)
    g[1] = 1.0
    g[depth - 1] += 2 * eta
    g[2 * depth - 1] -= 2 * eta
    gg = np.zeros(1)
    for k, coef in enumerate(g):
        gg = P.polyadd(gg, coef * P.polypow(g, k))
    roots = P.polyroots(P.polysub(gg, [0.0, 1.0]))
    real = roots[np.abs(roots.imag) < 1e-9].real
    # drop the fixed points and the orbit through negative values (x -> g(x) < 0)
    orbit = sorted(
        x for x in real if x > 0 and P.polyval(x, g) > 0 and abs(P.polyval(x, g) - x) > 1e-6
    )
    assert len(orbit) == 2
    x1, x2 = orbit
    assert P.polyval(x1, g) == pytest.approx(x2, rel=1e-12)
    return x1, x2


def test_period_two_orbit_of_scalar_map_is_edge_of_stability():
    depth, c = 3, 1.1
    ws = [np.ones((1, 1)) for _ in range(depth)]  # balanced minimizer of m = 1, λ* = 2L
    lam = dmf.sharpness(ws)
    assert lam == pytest.approx(2 * depth)
    eta = c * 2 / lam
    x1, x2 = _balanced_period2_orbit(depth, eta)
    # orbit stable along the diagonal (multiplier g'(x1) g'(x2)) and across it
    dg = [1 - 2 * eta * ((2 * depth - 1) * x ** (2 * depth - 2) - (depth - 1) * x ** (depth - 2))
          for x in (x1, x2)]  # fmt: skip
    assert abs(dg[0] * dg[1]) < 1

    single = dmf.escape(ws, eta, max_steps=3000)
    (batch,) = dmf.escape_batch(ws, [eta], max_steps=3000)
    for r in (single, batch):
        assert (r.outcome, r.period) == ("edge_of_stability", 2)
        assert r.escape_step >= 0
        assert r.contraction_rate == pytest.approx(1.0, abs=1e-12)
        assert np.isnan(r.steps_to_tol)
        w = np.array([x[0, 0] for x in r.final_weights])
        x = x1 if abs(w[0] - x1) < abs(w[0] - x2) else x2
        np.testing.assert_allclose(w, x, rtol=1e-9)
        assert r.final_loss == pytest.approx((x**depth - 1) ** 2, rel=1e-8)
        # Hessian of (Π w_i − 1)^2 at (x, x, x): 2 x^4 11^T + 2 r x (11^T − I), r = x^3 − 1;
        # eigenvalues 6 x^4 + 4 r x (along 1) and −2 r x (twice)
        rr = x**depth - 1
        exact = max(6 * x**4 + 4 * rr * x, -2 * rr * x)
        assert r.final_sharpness_method == "dense"  # a scalar chain: closed-form Hessian
        assert r.final_sharpness == pytest.approx(exact, rel=LANCZOS_RTOL)
        assert r.final_sharpness > 2 / eta  # the orbit sits beyond the stability threshold


def test_beyond_flattest_threshold_settles_on_edge_of_stability(scalar15):
    ws, m, _ = scalar15
    eta = 1.05 * 2 / dmf.flattest_sharpness(m, len(ws))  # no minimizer is stable at this eta
    # after 5000 steps the loss still dips towards its nonzero orbit level: not "unconverged"
    (r,) = dmf.escape_batch(ws, [eta], max_steps=5000)
    assert (r.outcome, r.period) == ("edge_of_stability", 2)
    assert r.final_loss > 1e-3
    assert r.final_sharpness_method == "dense"
    # independent: dense Hessian (N = 15 HVP columns) at the same non-minimizer
    final = list(r.final_weights)
    dense = float(np.linalg.eigvalsh(dmf.dense_hessian(final, m))[-1])
    assert r.final_sharpness == pytest.approx(dense, rel=LANCZOS_RTOL)


# --- unconverged: runs cut short ----------------------------------------------------------------


def test_cut_short_while_converging_extrapolates_linear_rate(scalar15):
    ws, _, lam = scalar15
    c, cut = 0.99, 100
    (r,) = dmf.escape_batch(ws, [c * 2 / lam], max_steps=cut)
    assert r.outcome == "unconverged" and r.escape_step == -1
    # linear theory: the loss ∝ p^2 contracts by (1 − ηλ*)^2 = (1 − 2c)^2 per step
    assert r.contraction_rate == pytest.approx((1 - 2 * c) ** 2, rel=1e-6)
    assert r.period == 0 and np.isfinite(r.steps_to_tol) and r.steps_to_tol > 0
    full = dmf.escape(ws, c * 2 / lam, max_steps=1000)
    assert full.outcome == "stayed"
    assert abs(cut + r.steps_to_tol - full.steps_run) <= 2


def test_cut_short_after_escape_extrapolates_to_the_actual_convergence_step(scalar15):
    ws, _, lam = scalar15
    eta = 1.01 * 2 / lam
    (full,) = dmf.escape_batch(ws, [eta], max_steps=20_000)
    assert full.outcome == "escaped"
    cut = full.steps_run - 1000
    (r,) = dmf.escape_batch(ws, [eta], max_steps=cut)
    assert r.outcome == "unconverged" and r.escape_step == full.escape_step
    assert 0 < 1 - r.contraction_rate < 0.01
    assert cut + r.steps_to_tol == pytest.approx(full.steps_run, abs=5)
    # still descending towards a minimizer that will be stable: sharpness below 2/eta
    assert r.final_sharpness_method == "dense"  # scalar chain
    assert r.final_sharpness <= (2 / eta) * (1 + SHARPNESS_RTOL)


def test_cut_short_before_escape_is_a_growing_transient(scalar15):
    ws, _, lam = scalar15
    c = 1.01
    r = dmf.escape(ws, c * 2 / lam, max_steps=300)  # predicted escape near step 698
    assert r.outcome == "unconverged" and r.escape_step == -1
    assert r.contraction_rate == pytest.approx((1 - 2 * c) ** 2, rel=1e-6)
    assert np.isnan(r.steps_to_tol) and r.period == 0


def test_lanczos_sharpness_matches_dense_hessian_mid_run(matrix4):
    ws, m, lam = matrix4
    (r,) = dmf.escape_batch(ws, [1.5 * 2 / lam], max_steps=200)
    assert r.outcome in ("unconverged", "edge_of_stability")
    assert r.final_sharpness_method == "lanczos"
    final = list(r.final_weights)
    assert dmf.loss(final, m) > 1e-12  # genuinely not a minimizer: R ≠ 0 terms matter
    dense = float(np.linalg.eigvalsh(dmf.dense_hessian(final, m))[-1])
    assert r.final_sharpness == pytest.approx(dense, rel=LANCZOS_RTOL)


# --- diverged -----------------------------------------------------------------------------------


def test_diverged_has_no_sharpness(matrix4):
    ws, _, lam = matrix4
    r = dmf.escape(ws, 30 * 2 / lam, max_steps=500)
    assert r.outcome == "diverged"
    assert (r.final_sharpness_method, r.period) == ("none", 0)
    assert np.isnan(r.final_sharpness)
    assert np.isnan(r.contraction_rate) and np.isnan(r.steps_to_tol)


# --- single and batched paths classify identically ----------------------------------------------


def _assert_same(b, s):
    key = ("outcome", "period", "final_sharpness_method", "escape_step", "steps_run")
    assert tuple(getattr(b, k) for k in key) == tuple(getattr(s, k) for k in key)
    # the two paths round differently; the extrapolation amplifies that (1e-4 of ~1e3 steps)
    for field, rtol in (
        ("contraction_rate", 1e-6),
        ("steps_to_tol", 1e-4),
        ("final_sharpness", 1e-8),
    ):
        np.testing.assert_allclose(getattr(b, field), getattr(s, field), rtol=rtol, err_msg=field)


def test_single_and_batched_classify_identically(scalar15, matrix4):
    seen = set()
    ws, m, lam = scalar15
    cases = [
        (ws, [0.99 * 2 / lam, 1.01 * 2 / lam, 1.05 * 2 / dmf.flattest_sharpness(m, 15)], 300),
        (ws, [0.99 * 2 / lam, 1.01 * 2 / lam], 10_000),
    ]
    wm, _, lm = matrix4
    cases.append((wm, [c * 2 / lm for c in (0.7, 1.05, 1.5, 30.0)], 3000))
    cases.append(([np.ones((1, 1))] * 3, [1.1 * 2 / 6], 2000))
    for weights, etas, steps in cases:
        batch = dmf.escape_batch(weights, etas, max_steps=steps)
        for eta, b in zip(etas, batch, strict=True):
            _assert_same(b, dmf.escape(weights, eta, max_steps=steps))
            seen.add(b.outcome)
    assert seen == set(dmf.OUTCOMES)


# --- every escaped run lands no sharper than 2/eta, on a small grid -----------------------------


@pytest.mark.parametrize("kind", ["scalar", "matrix"])
def test_escaped_runs_end_below_threshold_on_small_grid(kind):
    cs = [1.01, 1.1, 1.5, 2.0]
    n_escaped = 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        if kind == "scalar":
            ws, _ = dmf.scalar_minimizer(6, rng)
        else:
            ws, _ = dmf.gaussian_minimizer((3, 3, 3, 3), rng)
        lam = dmf.sharpness(ws)
        for r in dmf.escape_batch(ws, [c * 2 / lam for c in cs], max_steps=5000):
            assert r.final_sharpness_method == {"diverged": "none"}.get(
                r.outcome, "exact" if r.converged else ("dense" if kind == "scalar" else "lanczos")
            )
            if r.outcome == "escaped":
                n_escaped += 1
                assert r.final_sharpness <= (2 / r.eta) * (1 + SHARPNESS_RTOL), (seed, r.c)
    assert n_escaped >= 4


# --- sharpness along the run (opt-in) -----------------------------------------------------------


def test_track_sharpness_at_checkpoints(scalar15):
    ws, _, lam = scalar15
    ck = np.array([0, 10, 100, 300])
    off = dmf.escape(ws, 1.01 * 2 / lam, max_steps=300, checkpoints=ck)
    assert np.all(np.isnan(off.checkpoint_sharpness))
    on = dmf.escape(ws, 1.01 * 2 / lam, max_steps=300, checkpoints=ck, track_sharpness=True)
    (on_b,) = dmf.escape_batch(
        ws, [1.01 * 2 / lam], max_steps=300, checkpoints=ck, track_sharpness=True
    )
    np.testing.assert_allclose(on_b.checkpoint_sharpness, on.checkpoint_sharpness, rtol=1e-8)
    # at w* + 1e-9 v_1 the Hessian is within O(1e-9) of the exact one at w*
    assert on.checkpoint_sharpness[0] == pytest.approx(lam, rel=1e-6)
    assert on.checkpoint_sharpness[-1] == pytest.approx(on.final_sharpness, rel=1e-10)
    # converged runs repeat the value at the final iterate, close to its exact sharpness
    (stay,) = dmf.escape_batch(
        ws, [0.9 * 2 / lam], max_steps=300, checkpoints=ck, track_sharpness=True
    )
    assert stay.outcome == "stayed" and stay.steps_run < 100
    assert stay.checkpoint_sharpness[-1] == stay.checkpoint_sharpness[-2]
    assert stay.checkpoint_sharpness[-1] == pytest.approx(stay.final_sharpness, rel=1e-8)


def test_track_sharpness_must_be_bool(scalar15):
    ws, _, lam = scalar15
    with pytest.raises(ValueError, match="track_sharpness must be True or False, got 'yes'"):
        dmf.escape(ws, 2 / lam, max_steps=10, track_sharpness="yes")


# --- the period detector on synthetic series ----------------------------------------------------


@pytest.mark.parametrize("k", range(1, esc.PERIOD_MAX + 1))
def test_period_detector_finds_smallest_period(k):
    rng = np.random.default_rng(k)
    base = rng.uniform(1.0, 2.0, size=k)
    proj = np.resize(base, 24)
    loss = np.resize(base**2, 24)
    assert esc._detect_period(proj, loss) == k
    # a drift of 10 PERIOD_RTOL per period breaks the match
    drift = 1 + 10 * esc.PERIOD_RTOL * np.arange(24) / k
    assert esc._detect_period(proj * drift, loss * drift) == 0


def test_period_detector_needs_both_series():
    t = np.arange(24)
    proj = (-1.0) ** t  # period 2 along v_1 ...
    loss = np.ones(24)  # ... with a symmetric loss that has period 1
    assert esc._detect_period(proj, loss) == 2
    assert esc._detect_period(np.sin(t), np.ones(24)) == 0


@pytest.mark.parametrize("depth", [2, 3, 15])
def test_scalar_lanczos_matvec_matches_general_hvp(depth):
    """The O(L) scalar-chain HVP used by Lanczos agrees with the general HVP of spec §2."""
    numerical = importlib.import_module("sweeplab.dmf.numerical")
    rng = np.random.default_rng(depth)
    w = rng.uniform(-1.5, 1.5, depth)
    w[0] = 0.0  # a zero weight: no division by w_i anywhere
    v = rng.standard_normal(depth)
    m = 0.7
    ref = dmf.flatten(dmf.hvp([np.array([[x]]) for x in w], [[m]], [np.array([[x]]) for x in v]))
    got = numerical._scalar_hvp(list(w), m, v)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15 * np.max(np.abs(ref)))


def test_dense_final_sharpness_of_a_scalar_chain_matches_hvp_hessian_and_lanczos(scalar15):
    """A non-converged scalar run's "dense" sharpness: eigvalsh of the Hessian assembled from
    HVPs (to rounding) and the Lanczos value (to Lanczos' tolerance), at the same iterate."""
    ws, m, lam = scalar15
    runs = dmf.escape_batch(ws, [c * 2 / lam for c in (1.5, 2.5, 3.0)], max_steps=300)
    checked = 0
    for r in runs:
        if r.final_sharpness_method != "dense":
            continue
        final = list(r.final_weights)
        dense = float(np.linalg.eigvalsh(dmf.dense_hessian(final, m))[-1])
        assert r.final_sharpness == pytest.approx(dense, rel=1e-12)
        lanczos = dmf.sharpness_numerical(final, m, "lanczos", tol=1e-12, seed=0)
        assert r.final_sharpness == pytest.approx(lanczos, rel=LANCZOS_RTOL)
        checked += 1
    assert checked >= 2
