"""First-order two-mirror closed form (spec mcvd §8) against independent computations."""

import math

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
    """Terms left out at t_max contribute < 1e-10: same F with a 100x larger t_max."""
    g = Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0)
    t = np.array([0.01, 0.1, 1.0, 3.0])
    for model in ("first-order", "first-order-convolved"):
        alone = np.array([float(absorbed_fraction(g, ti, model)) for ti in t])
        together = absorbed_fraction(g, np.append(t, 300.0), model)[:-1]
        np.testing.assert_allclose(alone, together, rtol=0, atol=1e-10)
        assert len(erfc_terms(g, model, t_max=0.01)) < len(erfc_terms(g, model, t_max=3.0))


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
    """Accurate early (~1 %), but the divergent lattice sums ruin it once sqrt(4Dt) >> W."""
    g = Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0)
    t = np.array([0.1, 2.0])
    rel = absorbed_fraction(g, t) / absorbed_fraction(g, t, model="exact") - 1
    assert abs(rel[0]) < 0.02
    assert rel[1] < -0.15


def test_slab_needs_t_max_and_has_no_finite_steady_state():
    g = Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0)
    with pytest.raises(ValueError, match="t_max must be a finite time"):
        erfc_terms(g, "first-order")
    with pytest.raises(ValueError, match="no finite F"):
        ssf(g, "first-order")
    assert ssf(g, "free") == RR / g.distance
    assert ssf(g) == 1.0
