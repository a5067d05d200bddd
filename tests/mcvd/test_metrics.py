"""Channel metrics (peak, received fraction, ISI taps) for models and simulations."""

import math

import numpy as np
import pytest
from scipy.special import erfc

from sweeplab.mcvd import (
    Geometry,
    absorbed_fraction,
    hitting_rate,
    isi_taps,
    peak,
    received_fraction,
    simulate,
)
from sweeplab.mcvd.metrics import _histogram_peak

D = 79.4
RR = 5.0
Z = 4.0
HALF = Geometry((0, 0, 10), (10, 0, 0), RR, D)
SLAB = Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0)


def test_free_space_peak_is_the_closed_form():
    g = Geometry((0, 0, 20), (0, 0, 0), RR, D, wall=False)
    t_peak, f_peak = peak(g, model="free")
    ref_t = (20 - RR) ** 2 / (6 * D)
    ref_f = RR / 20 * (20 - RR) / math.sqrt(4 * math.pi * D * ref_t**3) * math.exp(-1.5)
    assert t_peak.value == pytest.approx(ref_t, rel=1e-7) and t_peak.stderr == 0.0
    assert f_peak.value == pytest.approx(ref_f, rel=1e-12) and f_peak.stderr == 0.0


@pytest.mark.parametrize("model", ["first-order", "exact"])
@pytest.mark.parametrize("g", [HALF, SLAB])
def test_model_peak_is_a_maximum(g, model):
    if g.is_slab and model != "exact":
        model = "first-order"  # the two-mirror form
    t_peak, f_peak = peak(g, model=model)
    around = t_peak.value * np.array([0.97, 0.99, 1.01, 1.03])
    assert np.all(hitting_rate(g, around, model=model) < f_peak.value)
    assert f_peak.value == pytest.approx(float(hitting_rate(g, t_peak.value, model=model)))


def test_model_taps_and_received_fraction():
    g = Geometry((0, 0, 15), (0, 0, 0), RR, D, wall=False)
    ts = 0.2
    h, se = isi_taps(g, ts, model="free")
    edges = ts * np.arange(6)
    ref = np.diff(np.where(edges > 0, RR / 15 * erfc(10 / np.sqrt(4 * D * edges + 1e-300)), 0))
    np.testing.assert_allclose(h, ref, rtol=1e-12)
    assert h.shape == (5,) and np.all(se == 0)
    assert received_fraction(g, ts, model="free").value == pytest.approx(ref[0], rel=1e-12)
    hx, _ = isi_taps(SLAB, 0.1, n_taps=3, model="exact")
    np.testing.assert_allclose(hx.sum(), absorbed_fraction(SLAB, 0.3, model="exact"), rtol=1e-9)


def test_histogram_peak_estimator_is_nearly_unbiased():
    """On exact bin averages (no noise), the estimator recovers the exact peak to 0.2 %."""
    for g in (HALF, SLAB):
        t_peak, f_peak = peak(g)
        edges = np.arange(0, 2.0001, 0.005)
        rate = np.diff(absorbed_fraction(g, edges, model="exact")) / 0.005
        t, f = _histogram_peak(rate, np.sqrt(rate * 0.005 / 1e6) / 0.005, edges[:-1] + 0.0025)
        assert t == pytest.approx(t_peak.value, rel=2e-3)
        assert f == pytest.approx(f_peak.value, rel=1e-3)


@pytest.mark.parametrize("g", [HALF, SLAB])
def test_simulated_metrics_match_exact(g):
    r = simulate(g, 1.0, 1e-3, 100_000, seed=81)
    ts = 0.1
    h, se = isi_taps(r, ts)
    hx, _ = isi_taps(g, ts)
    assert np.all(np.abs(h - hx) <= Z * se), (h, hx, se)
    fr = received_fraction(r, ts)
    assert fr.value == h[0] and fr.stderr == se[0]
    t_peak, f_peak = peak(r, bin_width=0.005, seed=3)
    tx, fx = peak(g)
    assert 0 < t_peak.stderr < 0.2 * t_peak.value and 0 < f_peak.stderr < 0.2 * f_peak.value
    assert abs(t_peak.value - tx.value) <= Z * t_peak.stderr
    assert abs(f_peak.value - fx.value) <= Z * f_peak.stderr


def test_metric_input_validation():
    r = simulate(HALF, 0.5, 1e-3, 100, seed=1)
    with pytest.raises(ValueError, match="symbol_time must be a finite number > 0"):
        received_fraction(HALF, 0.0)
    with pytest.raises(ValueError, match="symbol_time must be a finite number > 0"):
        isi_taps(HALF, True)
    with pytest.raises(ValueError, match="n_taps must be an integer >= 1"):
        isi_taps(HALF, 0.1, n_taps=0)
    with pytest.raises(ValueError, match="whole number of steps"):
        received_fraction(r, 0.00015)
    with pytest.raises(ValueError, match=r"n_taps \* symbol_time = 0.6 s"):
        isi_taps(r, 0.12)


def test_comparison_helpers_against_hand_values():
    from sweeplab import mcvd

    ref = np.array([0.0, 2.0, 4.0])
    rate = np.array([1.0, 2.0, 1.0])
    # sqrt(mean([1, 0, 9])) / 4
    assert mcvd.rate_nrmse(rate, ref) == pytest.approx(np.sqrt(10 / 3) / 4, rel=1e-15)
    assert np.isnan(mcvd.rate_nrmse(rate, np.zeros(3)))
    rel = mcvd.relative_error(np.array([0.0005, 0.5, 3.0]), np.array([0.0004, 0.4, 2.0]))
    assert np.isnan(rel[0]) and rel[1] == pytest.approx(0.25) and rel[2] == pytest.approx(0.5)
    assert mcvd.whole_steps(2.0, 1e-4) and mcvd.whole_steps(0.3, 0.1)
    assert not mcvd.whole_steps(0.25, 0.1) and not mcvd.whole_steps(1e-3, 3e-4)


def test_simulated_peak_without_absorbed_molecules_is_nan():
    """W6: no molecule absorbed, no peak: nan time and rate (was a 'peak' at 2.5 ms, rate 0)."""
    r = simulate(HALF, 0.05, 1e-3, 50, seed=2)  # 50 ms: spread ~4 um, the RX is 6.2 um away
    assert r.n_absorbed == 0
    t_peak, f_peak = peak(r, bin_width=0.005, seed=1)
    for est in (t_peak, f_peak):
        assert math.isnan(est.value) and math.isnan(est.stderr)
