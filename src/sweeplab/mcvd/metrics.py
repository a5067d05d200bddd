"""Channel metrics compared across MCvD models and simulations.

Each metric takes either a :class:`~sweeplab.mcvd.geometry.Geometry` with a ``model`` (any of
:data:`~sweeplab.mcvd.analytic.ALL_MODELS`; standard error 0) or a
:class:`~sweeplab.mcvd.simulator.SimulationResult` (with its standard error):

* :func:`peak`: peak time ``t_peak`` (s) and peak hitting rate ``f(t_peak)`` (1/s);
* :func:`received_fraction`: ``F(T_s)``, the fraction received within one symbol duration;
* :func:`isi_taps`: the channel taps ``h_k = F((k+1) T_s) − F(k T_s)``, ``k < n_taps``
  (``h_0`` is the signal, ``h_k`` for ``k >= 1`` the inter-symbol interference of a symbol sent
  ``k`` slots earlier).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar

from .analytic import absorbed_fraction, hitting_rate, validity_limit
from .geometry import Geometry
from .simulator import SimulationResult, binned_hitting_rate
from .validation import check_integer, check_number, whole_steps

__all__ = [
    "Estimate",
    "isi_taps",
    "peak",
    "rate_nrmse",
    "received_fraction",
    "relative_error",
    "whole_steps",
]

#: Bins used for the peak of a simulated hitting rate: the contiguous run around the largest bin
#: whose rate stays above this fraction of it (a cubic in log t is fitted to their log).
PEAK_FRACTION = 0.8
#: Parametric-bootstrap resamples behind the standard error of a simulated peak.
BOOTSTRAP = 200


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error (0 for a model).

    Attributes
    ----------
    value : float
        The estimate (units of the metric).
    stderr : float
        One standard error (same units); 0 for a closed form or the exact model.

    """

    value: float
    stderr: float = 0.0


def _symbol_time(ts: float) -> float:
    return check_number(ts, "symbol_time", "a finite number > 0 s", minimum=0.0, strict=True)


def _steps_of(result: SimulationResult, t: float, name: str) -> int:
    k = round(t / result.dt)
    if abs(k * result.dt - t) > 1e-9 * max(t, result.dt) or not 1 <= k <= result.counts.size:
        raise ValueError(
            f"{name} = {t!r} s must be a whole number of steps (dt = {result.dt!r} s) within "
            f"t_end = {result.t_end!r} s"
        )
    return k


def _cumulative_at(result: SimulationResult, steps: NDArray[np.int64]) -> NDArray[np.float64]:
    cum = np.concatenate([[0], np.cumsum(result.counts)])
    return cum[steps] / result.n_molecules


def received_fraction(
    source: Geometry | SimulationResult, symbol_time: float, *, model: str = "exact"
) -> Estimate:
    """Fraction of the released molecules received within one symbol duration, ``F(T_s)``.

    Parameters
    ----------
    source : Geometry or SimulationResult
        A channel (evaluated with ``model``) or a simulation.
    symbol_time : float
        Symbol duration ``T_s`` (s), > 0; for a simulation a whole number of steps <= ``t_end``.
    model : str
        Model for a geometry (see :data:`~sweeplab.mcvd.analytic.ALL_MODELS`).

    Returns
    -------
    Estimate
        Dimensionless; for a simulation the binomial standard error ``sqrt(F (1 − F) / N)``.

    """
    ts = _symbol_time(symbol_time)
    if isinstance(source, SimulationResult):
        f = float(_cumulative_at(source, np.array([_steps_of(source, ts, "symbol_time")]))[0])
        return Estimate(f, math.sqrt(f * (1.0 - f) / source.n_molecules))
    return Estimate(float(absorbed_fraction(source, ts, model=model)))


def isi_taps(
    source: Geometry | SimulationResult,
    symbol_time: float,
    n_taps: int = 5,
    *,
    model: str = "exact",
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Channel taps ``h_k = F((k+1) T_s) − F(k T_s)`` for ``k = 0 .. n_taps − 1``.

    Parameters
    ----------
    source : Geometry or SimulationResult
        A channel (evaluated with ``model``) or a simulation (``n_taps · T_s <= t_end``).
    symbol_time : float
        Symbol duration ``T_s`` (s), > 0.
    n_taps : int
        Number of taps, >= 1 (default 5).
    model : str
        Model for a geometry.

    Returns
    -------
    taps : ndarray, shape (n_taps,)
        ``h_k`` (dimensionless): fraction of a symbol's molecules received in slot ``k``.
    stderr : ndarray, shape (n_taps,)
        Zeros for a model; for a simulation the multinomial standard error
        ``sqrt(h_k (1 − h_k) / N)``.

    """
    ts = _symbol_time(symbol_time)
    n_taps = check_integer(n_taps, "n_taps", 1)
    edges = ts * np.arange(n_taps + 1, dtype=np.float64)
    if isinstance(source, SimulationResult):
        _steps_of(source, float(edges[-1]), "n_taps * symbol_time")
        steps = np.array([0] + [_steps_of(source, float(e), "symbol_time") for e in edges[1:]])
        h = np.diff(_cumulative_at(source, steps))
        return h, np.sqrt(h * (1.0 - h) / source.n_molecules)
    h = np.diff(absorbed_fraction(source, edges, model=model))
    return h, np.zeros_like(h)


def _model_peak(g: Geometry, model: str) -> tuple[float, float]:
    # free-space peak time (r_0 − r_r)² / (6 D) sets the scale; the walls only delay the peak
    scale = (g.distance - g.radius) ** 2 / (6.0 * g.D)
    grid = scale * np.geomspace(1e-2, 1e3, 241)
    limit = validity_limit(g, model)
    truncated = bool(grid[-1] > limit)
    grid = grid[grid <= limit]  # a closed form's rate is nan beyond
    rates = hitting_rate(g, grid, model=model)
    finite = np.isfinite(rates)
    truncated |= not finite.all()
    grid, rates = grid[finite], rates[finite]
    i = int(np.argmax(rates)) if grid.size else 0
    if truncated and grid.size and i == grid.size - 1:
        # still rising where the form stops being valid: its peak is outside its domain
        return math.nan, math.nan
    if i in (0, grid.size - 1):
        raise ValueError(f"no interior maximum of the hitting rate found for {g} ({model!r})")
    lo, hi = math.log(grid[i - 1]), math.log(grid[i + 1])
    res = minimize_scalar(
        lambda u: -float(hitting_rate(g, math.exp(u), model=model)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-9},
    )
    t = math.exp(float(res.x))
    return t, float(hitting_rate(g, t, model=model))


def _histogram_peak(
    rate: NDArray[np.float64], se: NDArray[np.float64], centres: NDArray[np.float64]
) -> tuple[float, float]:
    """Peak time (s) and rate (1/s) of a binned hitting rate; ``(nan, nan)`` if every bin is 0."""
    if not np.max(rate, initial=0.0) > 0:  # no molecule absorbed: no peak
        return math.nan, math.nan
    i = int(np.argmax(rate))
    lo = hi = i
    while lo > 0 and rate[lo - 1] >= PEAK_FRACTION * rate[i]:
        lo -= 1
    while hi < rate.size - 1 and rate[hi + 1] >= PEAK_FRACTION * rate[i]:
        hi += 1
    lo, hi = max(0, min(lo, i - 2)), min(rate.size - 1, max(hi, i + 2))
    if hi - lo < 3:
        raise ValueError("the simulated hitting rate has no interior peak (check the time range)")
    # log f against log t is a smooth, nearly symmetric hump near the mode (unlike f(t)); a cubic
    # absorbs the remaining skew, and its local maximum is the peak
    u = np.log(centres[lo : hi + 1] / centres[i])
    y = np.log(np.maximum(rate[lo : hi + 1], 1e-300))
    weights = rate[lo : hi + 1] / np.maximum(se[lo : hi + 1], 1e-300)  # 1 / se of log f
    poly = np.polynomial.Polynomial.fit(u, y, min(3, hi - lo), w=weights).convert()
    crit = poly.deriv().roots()
    crit = crit[np.isreal(crit)].real
    crit = crit[(crit >= u[0]) & (crit <= u[-1]) & (poly.deriv(2)(crit) < 0)]
    if crit.size == 0:
        return float(centres[i]), float(rate[i])
    best = crit[np.argmax(poly(crit))]
    return float(centres[i] * math.exp(best)), float(math.exp(poly(best)))


def peak(
    source: Geometry | SimulationResult,
    *,
    model: str = "exact",
    bin_width: float = 0.005,
    seed: int = 0,
) -> tuple[Estimate, Estimate]:
    """Peak time and peak value of the hitting rate.

    Parameters
    ----------
    source : Geometry or SimulationResult
        A channel (evaluated with ``model``; the maximum of ``f`` located to ~1e-9 relative,
        within the model's :func:`~sweeplab.mcvd.validity_limit`: a closed form still rising
        where it stops being valid has no peak, nan) or a simulation.
    model : str
        Model for a geometry.
    bin_width : float
        Simulation only: histogram bin (s), a whole number of steps dividing ``t_end``.
    seed : int
        Simulation only: seed of the parametric bootstrap (``numpy.random.default_rng``), an
        integer >= 0.

    Returns
    -------
    t_peak : Estimate
        Peak time (s). A simulation in which no molecule was absorbed has no peak: value and
        standard error are nan (so is the standard error when some bootstrap resample is empty).
    f_peak : Estimate
        Peak hitting rate (1/s); nan (value and standard error) when there is no peak.

    Notes
    -----
    For a simulation the peak is the local maximum of a weighted cubic in ``log t`` fitted to the
    logarithm of the histogram bins around the largest one (those above :data:`PEAK_FRACTION` of
    it; the log-log shape is a nearly symmetric hump, the cubic takes up its skew), and the
    standard errors come from :data:`BOOTSTRAP` multinomial resamples of the histogram
    (parametric bootstrap).

    """
    if not isinstance(source, SimulationResult):
        t, f = _model_peak(source, model)
        return Estimate(t), Estimate(f)
    seed = check_integer(seed, "seed", 0)
    edges, rate, se = binned_hitting_rate(source, bin_width)
    centres = 0.5 * (edges[1:] + edges[:-1])
    t0, f0 = _histogram_peak(rate, se, centres)
    if math.isnan(t0):
        return Estimate(math.nan, math.nan), Estimate(math.nan, math.nan)
    width = edges[1] - edges[0]
    n = source.n_molecules
    p = np.append(rate * width, max(0.0, 1.0 - rate.sum() * width))
    rng = np.random.default_rng(seed)
    boot = np.empty((BOOTSTRAP, 2))
    for b in range(BOOTSTRAP):
        counts = rng.multinomial(n, p / p.sum())[:-1]
        pb = counts / n
        boot[b] = _histogram_peak(pb / width, np.sqrt(pb * (1 - pb) / n) / width, centres)
    sd = boot.std(axis=0, ddof=1)
    return Estimate(t0, float(sd[0])), Estimate(f0, float(sd[1]))


def rate_nrmse(rate: NDArray[np.float64], reference: NDArray[np.float64]) -> float:
    """Normalised RMS difference of two binned hitting rates.

    Parameters
    ----------
    rate, reference : ndarray, shape (n_bins,)
        Bin-averaged hitting rates (1/s) on the same bins.

    Returns
    -------
    float
        ``sqrt(mean((rate − reference)²)) / max(reference)`` (dimensionless); nan if the
        reference is zero everywhere.

    """
    top = float(np.max(reference))
    diff = np.asarray(rate, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)) / top) if top > 0 else math.nan


def relative_error(
    value: NDArray[np.float64], reference: NDArray[np.float64], floor: float = 1e-3
) -> NDArray[np.float64]:
    """``value / reference − 1`` where ``reference > floor``, nan elsewhere.

    Parameters
    ----------
    value, reference : ndarray
        Same shape, e.g. cumulative fractions F(t) (dimensionless).
    floor : float
        Smallest reference value at which a relative error is meaningful (finite, >= 0).

    """
    floor = check_number(floor, "floor", "a finite number >= 0", minimum=0.0)
    ref = np.asarray(reference, dtype=np.float64)
    out = np.full(ref.shape, math.nan)
    ok = ref > floor
    out[ok] = np.asarray(value, dtype=np.float64)[ok] / ref[ok] - 1.0
    return out
