"""MCvD as a communication link (issue 21): exact BER, approximations, threshold, rate, stderr."""

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binom, norm, poisson

from sweeplab.mcvd import (
    Geometry,
    SimulationResult,
    absorbed_fraction,
    achievable_rate,
    ber,
    ber_stderr,
    clip_model_taps,
    isi_taps,
    link_taps,
    max_rate,
    optimal_threshold,
)
from sweeplab.mcvd import link as link_module

HALF = Geometry((0, 0, 10), (10, 0, 0), 5.0, 79.4)  # config "paper" geometry


def enumerated_ber(taps, n, tau, prior, pmf):
    """BER by brute force: every bit pattern (b_0 .. b_K) and every count vector (x_0 .. x_K)."""
    k1 = len(taps)
    total = 0.0
    for bits in itertools.product((0, 1), repeat=k1):
        weight = math.prod(prior if b else 1 - prior for b in bits)
        active = [k for k in range(k1) if bits[k]]
        wrong = 0.0
        for xs in itertools.product(range(n + 1), repeat=len(active)):
            pr = math.prod(pmf(x, n, taps[k]) for x, k in zip(xs, active, strict=True))
            decided_one = sum(xs) >= tau
            wrong += pr if decided_one != bool(bits[0]) else 0.0
        total += weight * wrong
    return total


def binomial_pmf(x, n, p):
    return math.comb(n, x) * p**x * (1 - p) ** (n - x)


@pytest.mark.parametrize("prior", [0.5, 0.3])
def test_exact_matches_direct_enumeration(prior):
    taps = [0.4, 0.25, 0.1]  # N = 3, K = 2: counts 0 .. 9
    taus = np.arange(11)
    got = ber(taps, 3, taus, prior=prior)
    ref = [enumerated_ber(taps, 3, t, prior, binomial_pmf) for t in taus]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-15)
    assert got[0] == pytest.approx(1 - prior) and got[-1] == pytest.approx(prior)


def test_poisson_and_gaussian_are_their_pattern_averages():
    taps, n, prior = np.array([0.3, 0.2, 0.05, 0.01]), 40, 0.4
    taus = np.arange(1, 60)
    p_ref = np.zeros(taus.size)
    g_ref = np.zeros(taus.size)
    for bits in itertools.product((0, 1), repeat=3):
        w = math.prod(prior if b else 1 - prior for b in bits)
        b = np.array(bits)
        mean0 = n * (b * taps[1:]).sum()
        var0 = n * (b * taps[1:] * (1 - taps[1:])).sum()
        mean1, var1 = mean0 + n * taps[0], var0 + n * taps[0] * (1 - taps[0])
        p_ref += w * (
            (1 - prior) * poisson.sf(taus - 1, mean0) + prior * poisson.cdf(taus - 1, mean1)
        )
        up0 = norm.sf(taus - 0.5, mean0, math.sqrt(var0)) if var0 > 0 else (mean0 >= taus - 0.5)
        g_ref += w * ((1 - prior) * up0 + prior * norm.cdf(taus - 0.5, mean1, math.sqrt(var1)))
    np.testing.assert_allclose(ber(taps, n, taus, prior=prior, method="poisson"), p_ref, atol=1e-14)
    np.testing.assert_allclose(
        ber(taps, n, taus, prior=prior, method="gaussian"), g_ref, atol=1e-14
    )


def monte_carlo_stream(taps, n, prior, taus, n_symbols, seed):
    """BER of a simulated bit stream: each 1 spreads its N molecules over the next K+1 slots."""
    rng = np.random.default_rng(seed)
    k1 = len(taps)
    bits = rng.random(n_symbols) < prior
    spread = rng.multinomial(n, [*taps, 1 - sum(taps)], size=n_symbols)[:, :k1] * bits[:, None]
    counts = np.zeros(n_symbols, dtype=np.int64)
    for k in range(k1):
        counts[k:] += spread[: n_symbols - k, k]
    counts, bits = counts[k1:], bits[k1:]  # drop the start-up slots (fewer than K predecessors)
    errors = (counts[:, None] >= np.asarray(taus)) != bits[:, None]
    batches = errors.reshape(100, -1, len(taus)).mean(axis=1)  # batch means: errors are
    return errors.mean(axis=0), batches.std(axis=0, ddof=1) / 10.0  # correlated across slots


@pytest.mark.parametrize(("taps", "n", "prior"), [([0.3, 0.12, 0.06], 20, 0.5),
                                                    ([0.2, 0.15, 0.1, 0.05], 30, 0.3)])  # fmt: skip
def test_exact_matches_monte_carlo_bit_stream(taps, n, prior):
    tau_opt, _ = optimal_threshold(taps, n, prior=prior)
    taus = [int(tau_opt) - 2, int(tau_opt), int(tau_opt) + 2]
    n_symbols = 200_000 + len(taps)
    mc, se = monte_carlo_stream(taps, n, prior, taus, n_symbols, seed=7)
    exact = ber(taps, n, taus, prior=prior)
    # tolerance: 5 standard errors of the Monte Carlo estimate (batch means of 2000 slots)
    assert np.all(np.abs(mc - exact) < 5 * se), (mc, exact, se)
    assert np.all(se < 0.05 * exact)  # and the test has power: relative se < 5 %


@pytest.mark.parametrize("method", ["exact", "poisson", "gaussian"])
@pytest.mark.parametrize(("n", "prior"), [(5, 0.5), (60, 0.5), (60, 0.2), (10_000, 0.5)])
def test_optimal_threshold_is_the_brute_force_minimum(method, n, prior):
    rng = np.random.default_rng(3)
    taps = rng.dirichlet(np.ones(5), size=4)[:, :4] * rng.uniform(0.02, 0.9, (4, 1))  # K = 3
    tau, best = optimal_threshold(taps, n, prior=prior, method=method)
    grid = np.arange(n * 4 + 3)
    curves = ber(taps[:, None, :], n, grid[None, :], prior=prior, method=method)
    if method == "gaussian":  # sampled then refined: the minimum, to rounding
        np.testing.assert_allclose(best, curves.min(axis=1), rtol=1e-13)
        np.testing.assert_allclose(curves[np.arange(4), tau], best, rtol=1e-13)
    else:  # every threshold tried: the first minimum, bit for bit
        np.testing.assert_array_equal(tau, np.argmin(curves, axis=1))
        np.testing.assert_array_equal(best, curves.min(axis=1))
    assert np.all(best <= min(prior, 1 - prior) * (1 + 1e-12))


def test_approximations_agree_at_large_n_and_not_at_small_n():
    # N = 10^4, taps ~1 %: counts ~100 ± 10, binomial ≈ Poisson ≈ normal; optimal BER ~3e-3
    big = [0.01, 0.004, 0.002]
    _, exact = optimal_threshold(big, 10_000)
    for method in ("poisson", "gaussian"):
        _, approx = optimal_threshold(big, 10_000, method=method)
        assert abs(approx / exact - 1) < 0.05, method  # measured: Poisson +2 %, Gaussian +0.7 %
    # N = 5 with a strong own tap: Bin(5, 0.8) is neither Poisson nor normal
    small = [0.8, 0.1, 0.05]
    _, exact = optimal_threshold(small, 5)
    for method in ("poisson", "gaussian"):
        _, approx = optimal_threshold(small, 5, method=method)
        assert abs(approx / exact - 1) > 0.15, method  # measured: Poisson +167 %, Gaussian −16 %


def test_fft_convolution_matches_direct(monkeypatch):
    taps = np.array([[0.3, 0.2, 0.1, 0.05], [0.15, 0.1, 0.08, 0.06]])
    taus = np.arange(0, 4000, 7)
    direct = ber(taps[:, None], 5000, taus)
    monkeypatch.setattr(link_module, "DIRECT_MAX", 0)
    fft = ber(taps[:, None], 5000, taus)
    np.testing.assert_allclose(fft, direct, rtol=0, atol=1e-14)


@pytest.mark.parametrize(("n", "p"), [(10, 0.3), (10_000, 0.3), (10_000, 1e-9), (10_000, 0.999),
                                      (10, 0.0), (10, 1.0), (100_000, 0.5)])  # fmt: skip
def test_truncation_drops_less_than_delta_per_tail(n, p):
    delta = 1e-17
    for family, dist in (("exact", binom(n, p)), ("poisson", poisson(n * p))):
        lo, width, values = link_module._tap_pieces(np.array([p]), n, delta, family)
        hi = lo[0] + width[0] - 1
        assert dist.cdf(lo[0] - 1) < delta and dist.sf(hi) <= delta, family
        # binom.pmf is accurate to ~1e-15 relative; poisson.pmf only to ~1e-11 at means ~1e4
        assert abs(values.sum() - 1) <= (1e-13 if family == "exact" else 1e-10), family


def test_shapes_and_broadcasting():
    taps, _ = link_taps(HALF, np.geomspace(0.05, 1.0, 6), isi_memory=3)
    batch = taps.reshape(2, 3, 4)
    out = ber(batch, 50, 7)
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out.ravel(), [ber(t, 50, 7) for t in taps])
    assert ber(batch, 50, np.array([[5], [9]])).shape == (2, 3)
    assert np.ndim(ber(taps[0], 50, 3)) == 0 and np.ndim(optimal_threshold(taps[0], 50)[0]) == 0
    tau, best = optimal_threshold(batch, 50)
    assert tau.shape == best.shape == (2, 3) and tau.dtype == np.int64
    assert ber(taps, 50, 2.2).tolist() == ber(taps, 50, 3).tolist()  # thresholds act as ceilings
    assert ber(np.empty((0, 4)), 50, 1).shape == (0,)


def test_link_taps_are_isi_taps():
    ts = [0.05, 0.2]
    taps, se = link_taps(HALF, ts, isi_memory=4, model="first-order")
    for row, t in zip(taps, ts, strict=True):
        np.testing.assert_allclose(row, isi_taps(HALF, t, 5, model="first-order")[0], rtol=1e-12)
    assert taps.shape == (2, 5) and np.all(se == 0)
    sim = fake_simulation(np.array([0.1, 0.2, 0.1, 0.05, 0.05]), 10_000, seed=1)
    taps, se = link_taps(sim, [0.1, 0.2], isi_memory=1)
    assert taps.shape == se.shape == (2, 2)
    np.testing.assert_allclose(taps[1], isi_taps(sim, 0.2, 2)[0])


def fake_simulation(slot_fractions, n_sim, seed, dt=0.1):
    """A SimulationResult whose counts are one multinomial draw over slots of width dt."""
    counts = np.random.default_rng(seed).multinomial(
        n_sim, [*slot_fractions, 1 - sum(slot_fractions)]
    )
    steps = len(slot_fractions)
    return SimulationResult(counts=counts[:-1].astype(np.int64),
                            times=dt * np.arange(1, steps + 1), n_molecules=n_sim,
                            molecule_steps=0, moves=0, dt=dt, t_end=dt * steps,
                            correction="none")  # fmt: skip


def test_max_rate_is_monotone():
    ts = np.geomspace(0.02, 2.0, 60)
    taps, _ = link_taps(HALF, ts, isi_memory=5)
    rates = [max_rate(ts, taps, n, 1e-3) for n in (100, 300, 1000, 10_000)]
    assert np.all(np.isfinite(rates)) and np.all(np.diff(rates) >= 0) and rates[-1] > rates[0]
    by_target = [max_rate(ts, taps, 1000, target) for target in (1e-6, 1e-4, 1e-2, 0.2)]
    assert np.all(np.diff(by_target) >= 0) and by_target[-1] > by_target[0]
    # the rate is 1 / (smallest grid Ts meeting the target), whatever the grid's order
    _, best = optimal_threshold(taps, 1000)
    assert by_target[1] == pytest.approx(1 / ts[best <= 1e-4].min())
    assert max_rate(ts[::-1], taps[::-1], 1000, 1e-4) == by_target[1]
    assert math.isnan(max_rate(ts, taps, 30, 1e-3))  # F(2 s) ~ 0.5: 30 molecules are too few


def test_delta_method_stderr_matches_multinomial_bootstrap():
    taps = isi_taps(HALF, 0.2, 4)[0]
    n_sim, n = 20_000, 200
    tau, _ = optimal_threshold(taps, n)
    se = float(ber_stderr(taps, n, tau, n_sim))
    rng = np.random.default_rng(11)
    draws = rng.multinomial(n_sim, [*taps, 1 - taps.sum()], size=400)[:, :-1] / n_sim
    boot = ber(draws, n, tau).std(ddof=1)
    assert se == pytest.approx(boot, rel=0.2)  # bootstrap sd itself uncertain by ~3.5 %
    # a model's taps have no uncertainty; stderr shrinks like 1 / sqrt(n_sim)
    assert float(ber_stderr(taps, n, tau, 4 * n_sim)) == pytest.approx(se / 2, rel=1e-3)
    assert ber_stderr(np.stack([taps, taps]), n, [tau, tau + 3], n_sim).shape == (2,)


GOOD = {"taps": [0.3, 0.1], "n_molecules": 10, "threshold": 3}


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: ber(**{**GOOD, "n_molecules": 0}), "n_molecules"),
        (lambda: ber(**{**GOOD, "n_molecules": True}), "n_molecules"),
        (lambda: ber(**{**GOOD, "n_molecules": 2.0}), "n_molecules"),
        (lambda: ber(**{**GOOD, "taps": []}), "taps"),
        (lambda: ber(**{**GOOD, "taps": [0.3, -0.1]}), "taps"),
        (lambda: ber(**{**GOOD, "taps": [1.2]}), "taps"),
        (lambda: ber(**{**GOOD, "taps": [0.3, math.nan]}), "taps"),
        (lambda: ber(**{**GOOD, "taps": [0.7, 0.5]}), "taps"),
        (lambda: ber(**{**GOOD, "taps": ["a", 0.1]}), "taps"),
        (lambda: ber(**{**GOOD, "threshold": -1}), "threshold"),
        (lambda: ber(**{**GOOD, "threshold": math.nan}), "threshold"),
        (lambda: ber([[0.3], [0.2]], 10, [1, 2, 3]), "threshold"),
        (lambda: ber(**GOOD, prior=0.0), "prior"),
        (lambda: ber(**GOOD, prior=1.0), "prior"),
        (lambda: ber(**GOOD, method="normal"), "method"),
        (lambda: ber(np.full(18, 0.01), 10, 1, method="gaussian"), "ISI memory"),
        (lambda: optimal_threshold([0.3, math.inf], 10), "taps"),
        (lambda: max_rate([0.1], [[0.3, 0.1]], 10, 0.0), "ber_target"),
        (lambda: max_rate([0.1], [[0.3, 0.1]], 10, 0.5), "ber_target"),
        (lambda: max_rate([0.1], [[0.3, 0.1]], 10, math.nan), "ber_target"),
        (lambda: max_rate([0.1, 0.2], [[0.3, 0.1]], 10, 1e-3), "taps"),
        (lambda: max_rate([-0.1], [[0.3, 0.1]], 10, 1e-3), "symbol_times"),
        (lambda: ber_stderr(**GOOD, n_sim_molecules=0), "n_sim_molecules"),
        (lambda: link_taps(HALF, [0.1], isi_memory=-1), "isi_memory"),
        (lambda: link_taps(HALF, [0.0], isi_memory=2), "symbol_times"),
    ],
)
def test_bad_input_is_a_one_line_value_error(call, name):
    with pytest.raises(ValueError, match=name) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and ("must" in message or "broadcast" in message)


def test_achievable_rate_of_a_simulation_is_the_brute_force_smallest_symbol_time():
    """Every whole number of steps tried directly: the grid search finds the same one."""
    dt, n_steps, k, n_tx = 1e-3, 4000, 4, 1000
    f = absorbed_fraction(HALF, dt * np.arange(n_steps + 1), model="exact")
    sim = fake_simulation(np.diff(f), 100_000, seed=4, dt=dt)
    cum = np.concatenate([[0.0], np.cumsum(sim.counts) / sim.n_molecules])
    m = np.arange(1, n_steps // (k + 1) + 1)
    taps = np.diff(cum[m[:, None] * np.arange(k + 2)], axis=1)
    best = optimal_threshold(taps, n_tx)[1]
    for target in (1e-2, 1e-3):
        first = m[np.flatnonzero(best <= target)[0]]
        rate, ts = achievable_rate(sim, n_tx, target, k)
        assert ts == pytest.approx(first * dt, rel=1e-12) and rate == pytest.approx(1 / ts)
    assert np.isnan(achievable_rate(sim, 10, 1e-3, k)[0])  # 10 molecules: never reached


@pytest.mark.parametrize(("model", "n_tx"), [("exact", 1000), ("first-order", 300)])
def test_achievable_rate_of_a_model_meets_the_target_and_the_point_before_does_not(model, n_tx):
    k, target = 4, 1e-3
    rate, ts = achievable_rate(HALF, n_tx, target, k, model=model)
    lo, hi = link_module.RATE_TS_RANGE
    step = (hi / lo) ** (1 / ((link_module.RATE_COARSE - 1) * link_module.RATE_FINE))
    taps = clip_model_taps(link_taps(HALF, [ts, ts / step], k, model=model)[0])
    best = [min(ber(row, n_tx, np.arange(n_tx + 1))) for row in taps]  # every threshold
    assert best[0] <= target < best[1]
    assert rate == 1 / ts
    # the same answer as max_rate on the two grid points
    assert max_rate([ts / step, ts], taps[::-1], n_tx, target) == rate


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_molecules": 0}, r"n_molecules must be"), ({"ber_target": 0.5}, r"ber_target must be"),
     ({"isi_memory": -1}, r"isi_memory must be"), ({"ts_range": (1.0, 0.1)}, r"ts_range must")],
)  # fmt: skip
def test_achievable_rate_bad_input(kwargs, message):
    args = {"n_molecules": 100, "ber_target": 1e-3, "isi_memory": 2, **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        achievable_rate(HALF, **args)
    assert "\n" not in str(info.value)


def test_tiny_taps_do_not_overflow_and_noise_is_clipped():
    """A tap of 1e-308 (scipy's binomial pmf overflows there) acts as 0."""
    assert ber([0.3, 1e-308], 1000, 150) == ber([0.3, 0.0], 1000, 150)
    np.testing.assert_array_equal(clip_model_taps([-1e-12, 0.2, np.nan]), [0.0, 0.2, np.nan])
    with pytest.raises(ValueError, match="taps must be"):
        ber(clip_model_taps([0.3, -1e-6]), 100, 10)  # a real negative tap is not hidden


@pytest.mark.slow
def test_simulated_link_matches_the_exact_model_within_its_standard_error():
    """End to end: a 2e5-molecule simulation near the wall (gap 0.2 µm, dt = 1e-4 s, bridge)
    gives, at the exact model's optimal threshold, a BER within 4 delta-method standard errors of
    the exact BER (4 symbol times), and an achievable rate within 5 % of the exact one (the
    rate of a 2e5-molecule run scatters by about 0.9 %: bench/link_budget.py, its parts)."""
    from sweeplab.mcvd import simulate

    g = Geometry((0, 0, 10), (5.2, 0, 0), 5.0, 79.4)
    sim = simulate(g, 2.0, 1e-4, 200_000, seed=11)
    for ts in (0.1, 0.2, 0.3, 0.4):
        exact = clip_model_taps(link_taps(g, [ts], 4)[0][0])
        tau, ber_exact = optimal_threshold(exact, 1000)
        taps = link_taps(sim, [ts], 4)[0][0]
        z = (ber(taps, 1000, tau) - ber_exact) / ber_stderr(taps, 1000, tau, sim.n_molecules)
        assert abs(z) < 4, (ts, z)
    rate, _ = achievable_rate(sim, 1000, 1e-3, 4)
    assert rate == pytest.approx(achievable_rate(g, 1000, 1e-3, 4)[0], rel=0.05)
