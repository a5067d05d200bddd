"""First-order two-mirror closed form (spec mcvd §8) against independent computations."""

import math
import warnings

import numpy as np
import pytest
from scipy.special import erfc

from sweeplab.mcvd import Geometry, absorbed_fraction, erfc_terms, hitting_rate
from sweeplab.mcvd import steady_state_fraction as ssf

D = 79.4
RR = 5.0


def _brute_force(g, t, n_rows, convolved=False):
    """Direct transcription of spec §8: all receivers with |n| <= n_rows, all pairs, loops."""
    p = np.asarray(g.tx, dtype=float)
    w = g.slab_width
    centres = []
    for n in range(-n_rows, n_rows + 1):
        centres.append(np.array([2 * n * w + g.rx[0], g.rx[1], g.rx[2]]))
        centres.append(np.array([2 * n * w - g.rx[0], g.rx[1], g.rx[2]]))
    s = math.sqrt(4 * D * t)
    total = 0.0
    for j, cj in enumerate(centres):
        rj = float(np.linalg.norm(p - cj))
        total += RR / rj * erfc((rj - RR) / s)
        for k, ck in enumerate(centres):
            if k == j:
                continue
            rk = float(np.linalg.norm(p - ck))
            qk = ck + (RR / rk) ** 2 * (p - ck)
            rho = float(np.linalg.norm(cj - qk))
            first = rk if convolved else rj
            total -= RR**2 / (rk * rho) * erfc((first + rho - 2 * RR) / s)
    return total


@pytest.mark.parametrize("convolved", [False, True])
@pytest.mark.parametrize(
    ("tx", "rx", "width", "t"),
    [((0, 0, 10), (6, 0, 0), 12.0, 0.05), ((13, 2, 8), (6.5, 0, 1), 13.0, 0.2)],
)
def test_matches_direct_transcription(tx, rx, width, t, convolved):
    g = Geometry(tx, rx, RR, D, slab_width=width)
    model = "first-order-convolved" if convolved else "first-order"
    ref = _brute_force(g, t, n_rows=12, convolved=convolved)  # far more rows than needed
    assert float(absorbed_fraction(g, t, model)) == pytest.approx(ref, abs=1e-10)


def test_truncation_tolerance():
    """Terms left out at t_max contribute < 1e-10: same F when a later time is asked for too
    (300 s, beyond the validity limit ~1.5 s: nan, and it changes nothing else)."""
    g = Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0)
    t = np.array([0.01, 0.1, 0.5, 1.0])
    for model in ("first-order", "first-order-convolved"):
        alone = np.array([float(absorbed_fraction(g, ti, model)) for ti in t])
        with pytest.warns(UserWarning, match="nan beyond"):
            together = absorbed_fraction(g, np.append(t, 300.0), model)
        np.testing.assert_allclose(alone, together[:-1], rtol=0, atol=1e-10)
        assert np.isnan(together[-1])
        assert len(erfc_terms(g, model, t_max=0.01)) < len(erfc_terms(g, model, t_max=1.0))


def test_wide_slab_is_the_half_space_form():
    half = Geometry((3, 1, 10), (6, 0, 0), RR, D)
    wide = Geometry((3, 1, 10), (6, 0, 0), RR, D, slab_width=1e5)
    t = np.array([0.05, 0.5, 2.0, 20.0])
    for model in ("first-order", "first-order-convolved"):
        np.testing.assert_allclose(
            absorbed_fraction(wide, t, model), absorbed_fraction(half, t, model), atol=1e-13
        )


def test_mirror_symmetry_and_derivative():
    g = Geometry((2, 0, 9), (8, 0, 0), RR, D, slab_width=20.0)
    m = Geometry((18, 0, 9), (12, 0, 0), RR, D, slab_width=20.0)
    t = np.array([0.03, 0.3, 1.0, 4.0])
    np.testing.assert_allclose(absorbed_fraction(g, t), absorbed_fraction(m, t), atol=1e-12)
    h = 1e-6 * t
    numeric = (absorbed_fraction(g, t + h) - absorbed_fraction(g, t - h)) / (2 * h)
    np.testing.assert_allclose(hitting_rate(g, t), numeric, rtol=1e-6)


def test_two_mirror_form_fails_at_long_times_in_a_narrow_slab():
    """Accurate early (~1 %); the divergent lattice sums ruin it once sqrt(4Dt) >> W: already
    15 % low just before its F peaks (the end of its validity domain), nan after."""
    from sweeplab.mcvd import validity_limit

    g = Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0)
    t = np.array([0.1, 0.95 * validity_limit(g, "first-order")])
    rel = absorbed_fraction(g, t) / absorbed_fraction(g, t, model="exact") - 1
    assert abs(rel[0]) < 0.02
    assert rel[1] < -0.15
    with pytest.warns(UserWarning, match="nan beyond"):
        assert np.isnan(absorbed_fraction(g, 2.0))


def test_slab_needs_t_max_and_has_no_finite_steady_state():
    g = Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0)
    with pytest.raises(ValueError, match="t_max must be a finite time"):
        erfc_terms(g, "first-order")
    with pytest.raises(ValueError, match="no finite F"):
        ssf(g, "first-order")
    assert ssf(g, "free") == RR / g.distance
    assert ssf(g) == 1.0


NARROW = Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0)
TWO_MIRROR = ("first-order", "first-order-convolved")


@pytest.mark.parametrize("model", TWO_MIRROR)
def test_two_mirror_form_is_nan_outside_its_validity_domain(model):
    """W5: F was -1.53 at 100 s (W = 12 um), decreasing from ~1.5 s on; now nan, with a warning."""
    from sweeplab.mcvd import ValidityWarning, validity_limit

    limit = validity_limit(NARROW, model)
    assert 1.0 < limit < 2.0  # where the form's F reaches its maximum (f = 0)
    t = np.array([0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0])
    with pytest.warns(ValidityWarning, match=r"nan beyond t = 1\.\d+ s"):
        f = absorbed_fraction(NARROW, t, model)
    inside = t <= limit
    assert np.all(np.isnan(f[~inside])) and np.all(np.isfinite(f[inside]))
    assert np.all((f[inside] >= 0) & (f[inside] <= 1)) and np.all(np.diff(f[inside]) > 0)
    with pytest.warns(ValidityWarning):
        rate = hitting_rate(NARROW, t, model)
    assert np.all(np.isnan(rate[~inside])) and np.all(rate[inside] > 0)
    assert hitting_rate(NARROW, limit, model) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"t_max = 100 s .*allowed: t_max <= 1\.\d+ s"):
        erfc_terms(NARROW, model, t_max=100.0)


def test_closed_forms_are_physical_wherever_they_are_finite():
    """F in [0, 1] and non-decreasing wherever a closed form gives a number (random channels,
    slabs and half-spaces, TX near and far), nan elsewhere."""
    rng = np.random.default_rng(20260522)
    t = np.geomspace(1e-3, 1e5, 300)
    for _ in range(12):
        gap, far = rng.uniform(0.01, 10.0, size=2)
        width = 2 * RR + gap + far if rng.random() < 0.7 else None
        tx = (rng.uniform(0, width or 30.0), 0.0, rng.uniform(6.0, 40.0))
        g = Geometry(tx, (RR + gap, 0, 0), RR, D, slab_width=width)
        for model in (*TWO_MIRROR, "image-chain"):
            if model == "image-chain" and width is not None:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                f = absorbed_fraction(g, t, model)
            ok = np.isfinite(f)
            assert ok[0] and np.all(ok[: ok.sum()]), (g, model)  # finite, then nan
            assert np.all((f[ok] >= 0) & (f[ok] <= 1)), (g, model)
            assert np.all(np.diff(f[ok]) >= -1e-12), (g, model)


def test_half_space_first_order_form_decreasing_is_also_refused():
    """TX closer than 2 r_r to the RX centre: the paper's half-space form falls after its max."""
    from sweeplab.mcvd import validity_limit

    g = Geometry((3, 0, 0), (9, 0, 0), RR, D)
    limit = validity_limit(g, "first-order")
    assert 0.1 < limit < 10
    with pytest.warns(UserWarning, match="nan beyond"):
        f = absorbed_fraction(g, [0.5 * limit, limit, 2 * limit], "first-order")
    assert f[0] < f[1] and np.isnan(f[2])
    assert ssf(g, "first-order") < f[1]  # the form's limit, below its maximum
    g = Geometry((0.1, 0, 1), (5.3, 0, 0), RR, D)  # TX in a 0.3 um gap: the form exceeds 1
    with pytest.warns(UserWarning, match="nan beyond"):
        f = absorbed_fraction(g, [1e-3, validity_limit(g, "first-order"), 0.01], "first-order")
    assert f[0] < f[1] == pytest.approx(1.0) and np.isnan(f[2])
    assert validity_limit(Geometry((0, 0, 10), (10, 0, 0), RR, D), "first-order") == math.inf


def test_two_mirror_values_unchanged_inside_the_domain():
    """H4: inside the validity domain F is the old sum, to the truncation tolerance 1e-10."""
    from sweeplab.mcvd import analytic, validity_limit

    for model in TWO_MIRROR:
        limit = validity_limit(NARROW, model)
        t = limit * np.array([0.01, 0.1, 0.5, 0.9, 1.0])
        c, a = analytic._lattice_terms(NARROW, model, 10 * limit)  # more terms than needed
        ref = c @ erfc(a[:, None] / np.sqrt(4 * D * t))
        np.testing.assert_allclose(absorbed_fraction(NARROW, t, model), ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("width", "rx"), [(12.0, 6.0), (100.0, 10.0)])
def test_long_times_use_a_bounded_number_of_terms(width, rx, monkeypatch):
    """H4: the image lattice grew with t (0.74 s at 1e4 s, > 40 s and ~20 GB at 1e6 s); the terms
    now stop at the validity limit, whatever the time asked for."""
    from sweeplab.mcvd import analytic

    sizes = []
    original = analytic._terms

    def counting(*args, **kwargs):
        c, a = original(*args, **kwargs)
        sizes.append(c.size)
        assert c.size <= 4000, c.size  # fail fast instead of building millions of terms
        return c, a

    monkeypatch.setattr(analytic, "_terms", counting)
    g = Geometry((width / 2, 0, 30), (rx, 0, 0), RR, D, slab_width=width)
    for model in TWO_MIRROR:
        for t in (1e4, 1e6, 1e9):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                absorbed_fraction(g, [1.0, t], model)
                hitting_rate(g, [1.0, t], model)
    assert sizes and max(sizes) <= 4000
