"""MCvD as a communication link: on-off keying, threshold detection, bit error rate (issue 21).

Link model
----------
Time is cut into symbol slots of duration ``T_s`` (s). Each slot carries one bit: a 1 releases
``N`` molecules (``n_molecules``) at the start of the slot, a 0 releases none. The receiver
counts the molecules it absorbs during the slot and decides 1 when the count is
``>= threshold``. Bits are independent, 1 with probability ``prior`` (default 1/2).

The channel enters through its **taps** ``h = (h_0, h_1, ..., h_K)``, ``h_k = F((k+1) T_s) −
F(k T_s)`` (see :func:`~sweeplab.mcvd.isi_taps`): the fraction of one symbol's molecules absorbed
``k`` slots after it was sent. ``taps[..., 0]`` is the current symbol's own tap, ``taps[..., k]``
for ``k = 1 .. K`` the inter-symbol interference (ISI) of the symbol sent ``k`` slots earlier;
the ISI memory ``K`` is ``taps.shape[-1] − 1``. Taps come from any model (zero standard error)
or from a simulation (multinomial standard error, see :func:`ber_stderr`); :func:`link_taps`
evaluates them on a grid of symbol times.

Given the current bit ``b_0`` and the ``K`` previous bits ``b_1 .. b_K``, the count is
``Y = sum_k b_k X_k`` with independent ``X_k ~ Bin(N, h_k)`` (different symbols' molecules are
independent), and the bit error rate is::

    BER(τ) = (1 − π) P(Y >= τ | b_0 = 0) + π P(Y < τ | b_0 = 1),

each conditional probability averaged over the ``2^K`` ISI patterns with weights
``π^(number of 1s) (1 − π)^(number of 0s)`` (``π = prior``).

Methods
-------
``"exact"``
    The distribution of ``Y`` computed exactly, not sampled (see :func:`ber`, Notes).
``"poisson"``
    Approximation: ``X_k ~ Poisson(N h_k)``, i.e. ``Y`` given the pattern is Poisson with mean
    ``N sum_k b_k h_k``.
``"gaussian"``
    Approximation: ``Y`` given the pattern is normal with the binomial sum's mean
    ``N sum_k b_k h_k`` and variance ``N sum_k b_k h_k (1 − h_k)``, with a continuity
    correction (``P(Y >= τ) = P(normal >= τ − 1/2)``).

The approximations are labelled as such; the exact method is the reference.

"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import fft as sfft
from scipy.special import ndtr
from scipy.stats import binom, poisson

from .geometry import Geometry
from .simulator import SimulationResult
from .validation import check_integer, check_number, real_array, short_repr

__all__ = [
    "DIRECT_MAX",
    "LINK_METHODS",
    "TRUNCATION",
    "achievable_rate",
    "ber",
    "ber_stderr",
    "clip_model_taps",
    "link_taps",
    "max_rate",
    "optimal_threshold",
]

log = logging.getLogger(__name__)

#: Detection methods: the exact count distribution and its two labelled approximations.
LINK_METHODS = ("exact", "poisson", "gaussian")
#: Bound on the absolute error of an exact or Poisson BER due to truncating the tails of the
#: per-tap count distributions (the rounding error comes on top, see :func:`ber`).
TRUNCATION = 1e-16
#: Largest product of the two lengths for which a convolution is done directly (exact up to
#: rounding, small values keep their relative precision); longer ones use the FFT.
DIRECT_MAX = 1 << 24
#: ISI memories above this are refused by the Gaussian method (it enumerates the 2^K patterns).
GAUSSIAN_MAX_MEMORY = 16
#: Taps below this are treated as 0 (scipy's binomial pmf overflows near 1e-305; dropping such
#: a tap moves the BER by at most N times it, far below :data:`TRUNCATION`).
TINY_TAP = 1e-200
#: Slack on the sum of the taps (differences of a cumulative fraction may round above 1).
SUM_SLACK = 1e-9
#: Model taps above ``-TAP_NOISE`` are clipped to 0 by :func:`clip_model_taps` (the exact model's
#: F(t) is accurate to 1e-10 absolute, so a difference of two values may come out at ~-1e-12).
TAP_NOISE = 1e-9
#: Symbol-time range (s) searched by :func:`achievable_rate` for a channel model.
RATE_TS_RANGE = (1e-4, 10.0)
#: Coarse log-spaced grid points over the range, then points refining the first bracket.
RATE_COARSE, RATE_FINE = 64, 32

_TAPS_RANGE = "probabilities in [0, 1] along the last axis (h_0 .. h_K), summing to <= 1"


# --------------------------------------------------------------------------- argument checks


def _check_taps(taps: ArrayLike) -> NDArray[np.float64]:
    arr = real_array(taps, "taps", _TAPS_RANGE)
    if arr.ndim == 0 or arr.shape[-1] < 1:
        raise ValueError(
            f"taps must have shape (..., K + 1) with ISI memory K >= 0, got shape {arr.shape}"
        )
    bad = ~(np.isfinite(arr) & (arr >= 0.0) & (arr <= 1.0))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"taps must be {_TAPS_RANGE}, got {arr[idx]!r} at index {idx}")
    total = arr.sum(axis=-1)
    if (total > 1.0 + SUM_SLACK).any():
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(total)), total.shape))
        raise ValueError(
            f"taps must be {_TAPS_RANGE}, got a sum of {float(total[idx])!r} at index {idx}"
        )
    return arr


def _check_prior(prior: object) -> float:
    allowed = "a number in (0, 1) (probability of a 1 bit)"
    value = check_number(prior, "prior", allowed, minimum=0.0, maximum=1.0, strict=True)
    if value >= 1.0:
        raise ValueError(f"prior must be {allowed}, got {prior!r}")
    return value


def _check_method(method: object) -> str:
    if not isinstance(method, str) or method not in LINK_METHODS:
        raise ValueError(f"method must be one of {LINK_METHODS}, got {short_repr(method)}")
    return method


def _check_threshold(threshold: ArrayLike) -> NDArray[np.float64]:
    allowed = "a finite count >= 0 (molecules; non-integers act as their ceiling)"
    arr = real_array(threshold, "threshold", allowed)
    bad = ~(np.isfinite(arr) & (arr >= 0.0))
    if bad.any():
        raise ValueError(f"threshold must be {allowed}, got {arr[bad].ravel()[0]!r}")
    return np.ceil(arr)


def _check_memory(method: str, k: int) -> None:
    if method == "gaussian" and k > GAUSSIAN_MAX_MEMORY:
        raise ValueError(
            f"ISI memory K = taps.shape[-1] − 1 must be <= {GAUSSIAN_MAX_MEMORY} for "
            f"method='gaussian' (it enumerates 2^K patterns), got {k}"
        )


# ------------------------------------------------------------------ count distributions


def _bernstein_upper(mean: NDArray[np.float64], var: NDArray[np.float64], delta: float):
    """Smallest ``m`` with the Bernstein bound ``P(X > m) <= delta`` (variance ``var``, jumps 1)."""
    ell = -math.log(delta)
    return np.ceil(mean + ell / 3.0 + np.sqrt(ell**2 / 9.0 + 2.0 * ell * var))


def _tap_pieces(
    p: NDArray[np.float64], n: int, delta: float, family: str
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Return the truncated pmfs of ``X ~ Bin(n, p)`` (or ``Poisson(n p)``), one row per ``p``.

    Returns ``lo``, ``width`` (shape (B,)) and ``values`` (shape (B, max width)): row ``b`` holds
    ``P(X = lo_b + j)`` for ``j < width_b`` (zero beyond), with ``P(X < lo) < delta`` and
    ``P(X > lo + width − 1) <= delta``.
    """
    p = np.where(p < TINY_TAP, 0.0, p)
    if family == "exact":
        lo = binom.ppf(delta, n, p)  # smallest k with P(X <= k) >= delta
        # upper quantile by reflection (X ↦ n − X); 1 − p loses p's digits when p is tiny, where
        # the Bernstein bound takes over (it costs at most a few dozen extra support points)
        hi = np.where(
            p >= 1e-6,
            n - binom.ppf(delta, n, 1.0 - p),
            np.where(p > 0, np.minimum(_bernstein_upper(n * p, n * p, delta), n), 0.0),
        )
    else:
        lam = n * p
        lo = poisson.ppf(delta, lam)
        hi = np.where(lam > 0, _bernstein_upper(lam, lam, delta), 0.0)
    lo_i = lo.astype(np.int64)
    hi_i = np.maximum(hi.astype(np.int64), lo_i)
    width = hi_i - lo_i + 1
    grid = lo_i[:, None] + np.arange(int(width.max(initial=1)))
    inside = grid <= hi_i[:, None]
    k = np.minimum(grid, hi_i[:, None])
    if family == "exact":
        values = binom.pmf(k, n, p[:, None])
    else:
        values = poisson.pmf(k, (n * p)[:, None])
    values = np.where(inside, values, 0.0)
    return lo_i, width, values


def _convolve(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    if a.size * b.size <= DIRECT_MAX or min(a.size, b.size) < 64:
        return np.convolve(a, b)
    size = a.size + b.size - 1
    length = sfft.next_fast_len(size, real=True)
    return sfft.irfft(sfft.rfft(a, length) * sfft.rfft(b, length), length)[:size]


def _count_curves(
    taps2d: NDArray[np.float64], n: int, prior: float, family: str
) -> Callable[[int], NDArray[np.float64]]:
    """``curve(row)``: BER at every integer threshold ``0 .. M`` (constant beyond ``M``)."""
    k1 = taps2d.shape[1]
    delta = TRUNCATION / (2 * k1)
    pieces = [_tap_pieces(taps2d[:, k], n, delta, family) for k in range(k1)]

    def curve(row: int) -> NDArray[np.float64]:
        isi = np.ones(1)  # pmf of the ISI count, a mixture over the previous bits
        for lo, width, values in pieces[1:]:
            start, piece = int(lo[row]), values[row, : width[row]]
            conv = _convolve(isi, piece)
            mixed = np.zeros(max(isi.size, start + conv.size))
            mixed[: isi.size] = (1.0 - prior) * isi
            mixed[start : start + conv.size] += prior * conv
            isi = mixed
        lo, width, values = pieces[0]
        start = int(lo[row])
        own = _convolve(isi, values[row, : width[row]])  # pmf of Y − lo_0 given b_0 = 1
        size = max(isi.size, start + own.size)
        tail0 = np.zeros(size + 1)  # P(Y >= τ | b_0 = 0), summed from the top
        tail0[: isi.size] = np.cumsum(isi[::-1])[::-1]
        head1 = np.zeros(size + 1)  # P(Y < τ | b_0 = 1), summed from the bottom
        head1[start + 1 : start + 1 + own.size] = np.cumsum(own)
        head1[start + 1 + own.size :] = head1[start + own.size]
        return np.clip((1.0 - prior) * tail0 + prior * head1, 0.0, 1.0)

    return curve


def _patterns(k: int, prior: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    bits = ((np.arange(2**k)[:, None] >> np.arange(k)) & 1).astype(np.float64)
    ones = bits.sum(axis=1)
    return bits, prior**ones * (1.0 - prior) ** (k - ones)


def _normal_at_least(
    mean: NDArray[np.float64], sd: NDArray[np.float64], x: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``P(normal(mean, sd) >= x)``; a point mass where ``sd == 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ndtr((mean - x) / sd)
    return np.where(sd > 0, out, (mean >= x).astype(np.float64))


def _gaussian_moments(taps2d: NDArray[np.float64], n: int, prior: float):
    """Per row and ISI pattern: means and sds given b_0 = 0 and b_0 = 1, and pattern weights."""
    bits, weights = _patterns(taps2d.shape[1] - 1, prior)
    h = taps2d
    mean0 = n * h[:, 1:] @ bits.T
    var0 = n * (h[:, 1:] * (1.0 - h[:, 1:])) @ bits.T
    mean1 = mean0 + n * h[:, :1]
    var1 = var0 + n * h[:, :1] * (1.0 - h[:, :1])
    return mean0, np.sqrt(var0), mean1, np.sqrt(var1), weights


def _gaussian_ber(moments, rows: NDArray[np.int64], tau: NDArray[np.float64], prior: float):
    """Gaussian BER for rows ``rows`` at integer thresholds ``tau`` (same shape, 1-D)."""
    mean0, sd0, mean1, sd1, weights = moments
    x = (tau - 0.5)[:, None]
    p0 = _normal_at_least(mean0[rows], sd0[rows], x) @ weights
    p1 = (1.0 - _normal_at_least(mean1[rows], sd1[rows], x)) @ weights
    out = (1.0 - prior) * p0 + prior * p1
    return np.where(tau <= 0, 1.0 - prior, np.clip(out, 0.0, 1.0))


def _gaussian_optimum(moments, row: int, prior: float) -> tuple[int, float]:
    """Smallest integer threshold minimising the Gaussian BER of one row, and that BER.

    The BER is a weighted sum of normal tails, smooth on the scale of the smallest pattern
    standard deviation ``s`` (over patterns with ``s >= 2``): it is sampled every ``s // 2``
    counts, plus every count within 10 of the mean of a narrower pattern, and each local
    minimum of the samples is refined over every count within one sampling step.
    """
    mean0, sd0, mean1, sd1, _ = moments
    means = np.concatenate([mean0[row], mean1[row]])
    sds = np.concatenate([sd0[row], sd1[row]])
    top = math.ceil(float(np.max(means + 12.0 * sds))) + 2
    wide = sds >= 2.0
    step = max(1, int(sds[wide].min() // 2)) if wide.any() else 1
    narrow = np.round(means[~wide])[:, None] + np.arange(-10, 11)
    grid = np.unique(np.concatenate([np.arange(0, top + 1, step), narrow.ravel(), [top]]))
    grid = grid[(grid >= 0) & (grid <= top)]

    def at(tau: NDArray[np.float64]) -> NDArray[np.float64]:
        return _gaussian_ber(moments, np.full(tau.size, row), tau, prior)

    values = at(grid)
    if step > 1:
        left = np.concatenate([[np.inf], values[:-1]])
        right = np.concatenate([values[1:], [np.inf]])
        minima = grid[(values < left) & (values <= right)]
        fine = np.unique((minima[:, None] + np.arange(-step, step + 1)).ravel())
        fine = fine[(fine >= 0) & (fine <= top)]
        grid = np.concatenate([grid, fine])
        values = np.concatenate([values, at(fine)])
        order = np.argsort(grid, kind="stable")
        grid, values = grid[order], values[order]
    i = int(np.argmin(values))
    return int(grid[i]), float(values[i])


def _rows_ber(
    taps2d: NDArray[np.float64],
    n: int,
    rows: NDArray[np.int64],
    tau: NDArray[np.float64],
    prior: float,
    method: str,
) -> NDArray[np.float64]:
    """BER of taps row ``rows[i]`` at integer threshold ``tau[i]`` (1-D, same length)."""
    if method == "gaussian":
        return _gaussian_ber(_gaussian_moments(taps2d, n, prior), rows, tau, prior)
    curve = _count_curves(taps2d, n, prior, method)
    out = np.empty(rows.size)
    order = np.argsort(rows, kind="stable")
    bounds = np.flatnonzero(np.diff(rows[order])) + 1
    for group in np.split(order, bounds):
        if group.size:
            c = curve(int(rows[group[0]]))
            out[group] = c[np.minimum(tau[group], c.size - 1).astype(np.int64)]
    return out


# ------------------------------------------------------------------------------- public API


def ber(
    taps: ArrayLike,
    n_molecules: int,
    threshold: ArrayLike,
    *,
    prior: float = 0.5,
    method: str = "exact",
) -> NDArray[np.float64]:
    """Bit error rate of on-off keying with threshold detection.

    Parameters
    ----------
    taps : array_like, shape (..., K + 1)
        Channel taps (dimensionless, see the module docstring): ``taps[..., 0]`` the current
        symbol's own tap ``h_0``, ``taps[..., k]`` the ISI tap ``h_k`` of the symbol sent ``k``
        slots earlier. Each in ``[0, 1]``, summing to ``<= 1``; ``K >= 0``. Leading axes are a
        batch (e.g. symbol times).
    n_molecules : int
        Molecules ``N`` released per 1 bit, >= 1.
    threshold : array_like
        Detection threshold (molecules): decide 1 when the count is ``>= threshold``. Finite,
        >= 0; a non-integer acts as its ceiling. Broadcast against ``taps.shape[:-1]``.
    prior : float
        Probability of a 1 bit, in (0, 1).
    method : {"exact", "poisson", "gaussian"}
        Exact count distribution, or one of its approximations (module docstring).

    Returns
    -------
    ndarray, shape broadcast(taps.shape[:-1], threshold.shape)
        BER (dimensionless, in [0, 1]); a numpy scalar for one set of taps and one threshold.

    Raises
    ------
    ValueError
        One line naming the bad parameter and its allowed range.

    Notes
    -----
    **Exact method.** The previous bits are independent of each other and of the molecules, so
    the terms ``b_k X_k`` are independent with pmf ``(1 − π) δ_0 + π Bin(N, h_k)``; the ISI
    count's pmf averaged over the ``2^K`` patterns is the convolution of these ``K`` mixtures
    (``K`` convolutions instead of ``2^K``), and ``Y`` given ``b_0 = 1`` adds ``Bin(N, h_0)``.
    Each binomial pmf (``scipy.stats.binom.pmf``) is cut to ``[lo, hi]`` with
    ``P(X < lo) < δ`` and ``P(X > hi) <= δ``, ``δ = TRUNCATION / (2 (K + 1))``; the total
    variation between a convolution of truncated and of full pmfs is at most the sum of the
    dropped masses, so the truncation moves the BER by at most :data:`TRUNCATION` = 1e-16
    (downward: dropped mass only lowers probabilities). Convolutions are direct (exact up to
    rounding) up to :data:`DIRECT_MAX` multiply-adds, by FFT beyond (absolute rounding error
    ~1e-16 per count then). The BER curve sums ``P(Y >= τ | 0)`` from the top and
    ``P(Y < τ | 1)`` from the bottom, so that small BERs keep their relative precision.
    With ``K = 5``, ``N = 10^4`` and 200 symbol times it takes well under a second on one core
    (``bench/link_ber.py``).

    **Poisson method.** The same computation with Poisson pmfs (``scipy.stats.poisson.pmf``,
    relative accuracy ~1e-11 at means ~1e4; upper truncation point from Bernstein's
    inequality); it equals the average over the patterns of Poisson counts.

    **Gaussian method.** Direct average over the ``2^K`` patterns (``K <= 16``).

    Examples
    --------
    >>> round(float(ber([0.5], 1, 1)), 12)  # one molecule, no ISI: half the 1s are missed
    0.25
    >>> ber([[0.3, 0.1], [0.3, 0.0]], 100, 20).round(6).tolist()  # with and without ISI
    [0.002724, 0.004444]

    """
    h = _check_taps(taps)
    n = check_integer(n_molecules, "n_molecules", 1)
    tau = _check_threshold(threshold)
    pri = _check_prior(prior)
    meth = _check_method(method)
    _check_memory(meth, h.shape[-1] - 1)
    batch = h.shape[:-1]
    try:
        shape = np.broadcast_shapes(batch, tau.shape)
    except ValueError:
        raise ValueError(
            f"threshold must broadcast against the taps' batch shape {batch}, got shape {tau.shape}"
        ) from None
    rows = np.broadcast_to(np.arange(math.prod(batch)).reshape(batch), shape).ravel()
    taus = np.broadcast_to(tau, shape).ravel()
    out = _rows_ber(h.reshape(-1, h.shape[-1]), n, rows, taus, pri, meth)
    return out.reshape(shape)[()]


def optimal_threshold(
    taps: ArrayLike,
    n_molecules: int,
    *,
    prior: float = 0.5,
    method: str = "exact",
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Integer threshold minimising the BER, and that BER.

    Parameters
    ----------
    taps : array_like, shape (..., K + 1)
        Channel taps, as for :func:`ber` (``taps[..., 0]`` the own tap, then the ISI taps).
    n_molecules : int
        Molecules ``N`` per 1 bit, >= 1.
    prior : float
        Probability of a 1 bit, in (0, 1).
    method : {"exact", "poisson", "gaussian"}
        As for :func:`ber`.

    Returns
    -------
    threshold : ndarray of int64, shape taps.shape[:-1]
        Integer threshold (molecules) minimising the BER; numpy scalars for one set of taps.
        Exact and Poisson: the smallest minimiser, every integer from 0 to past the support of
        the count being tried (cost ~ N per symbol time). Gaussian: the BER, a sum of normal
        tails, is sampled every half of the smallest pattern standard deviation (>= 2) and
        at every count near the mean of a narrower pattern, and each local minimum of the
        samples is refined count by count; on a flat stretch any minimiser may be returned.
    ber : ndarray, shape taps.shape[:-1]
        The minimal BER (dimensionless), ``<= min(prior, 1 − prior)``.

    Raises
    ------
    ValueError
        One line naming the bad parameter and its allowed range.

    Examples
    --------
    >>> tau, err = optimal_threshold([0.3, 0.1], 100)
    >>> int(tau), round(float(err), 6)
    (19, 0.002279)
    >>> optimal_threshold([[0.3, 0.1], [0.3, 0.0]], 100)[0].tolist()  # no ISI: one molecule
    [19, 1]

    """
    h = _check_taps(taps)
    n = check_integer(n_molecules, "n_molecules", 1)
    pri = _check_prior(prior)
    meth = _check_method(method)
    _check_memory(meth, h.shape[-1] - 1)
    batch = h.shape[:-1]
    h2 = h.reshape(-1, h.shape[-1])
    taus = np.empty(h2.shape[0], dtype=np.int64)
    best = np.empty(h2.shape[0])
    if meth == "gaussian":
        moments = _gaussian_moments(h2, n, pri)
        for row in range(h2.shape[0]):
            taus[row], best[row] = _gaussian_optimum(moments, row, pri)
    else:
        curve = _count_curves(h2, n, pri, meth)
        for row in range(h2.shape[0]):
            c = curve(row)
            taus[row] = int(np.argmin(c))
            best[row] = c[taus[row]]
    return taus.reshape(batch)[()], best.reshape(batch)[()]


def max_rate(
    symbol_times: ArrayLike,
    taps: ArrayLike,
    n_molecules: int,
    ber_target: float,
    *,
    prior: float = 0.5,
    method: str = "exact",
) -> float:
    """Highest bit rate on a grid of symbol times whose BER at the optimal threshold meets a target.

    Parameters
    ----------
    symbol_times : array_like, shape (n_ts,)
        Symbol durations ``T_s`` (s), finite and > 0, in any order.
    taps : array_like, shape (n_ts, K + 1)
        The channel taps at each symbol time (e.g. from :func:`link_taps`), as for :func:`ber`.
    n_molecules : int
        Molecules ``N`` per 1 bit, >= 1.
    ber_target : float
        Largest acceptable BER, in (0, 0.5).
    prior : float
        Probability of a 1 bit, in (0, 1).
    method : {"exact", "poisson", "gaussian"}
        As for :func:`ber`.

    Returns
    -------
    float
        ``1 / T_min`` (bits/s; on-off keying sends one bit per symbol), ``T_min`` the smallest
        grid symbol time whose optimal BER is ``<= ber_target`` (no interpolation between grid
        points, and the BER need not stay below the target at longer symbol times); ``nan`` if
        no grid point meets the target.

    Raises
    ------
    ValueError
        One line naming the bad parameter and its allowed range.

    Examples
    --------
    >>> taps = [[0.05, 0.04], [0.2, 0.05], [0.3, 0.02]]
    >>> max_rate([0.1, 0.2, 0.4], taps, 100, 1e-3)
    2.5

    """
    allowed = "finite symbol durations > 0 s, shape (n_ts,)"
    ts = real_array(symbol_times, "symbol_times", allowed)
    if ts.ndim != 1 or not np.all(np.isfinite(ts) & (ts > 0)):
        raise ValueError(f"symbol_times must be {allowed}, got {short_repr(symbol_times)}")
    h = _check_taps(taps)
    if h.shape[:-1] != ts.shape:
        raise ValueError(
            f"taps must have shape (n_ts, K + 1) = ({ts.size}, K + 1) to match symbol_times, "
            f"got shape {h.shape}"
        )
    target_range = "a number in (0, 0.5)"
    target = check_number(ber_target, "ber_target", target_range, minimum=0.0, strict=True)
    if target >= 0.5:
        raise ValueError(f"ber_target must be {target_range}, got {ber_target!r}")
    _, best = optimal_threshold(h, n_molecules, prior=prior, method=method)
    ok = np.atleast_1d(best) <= target
    if not ok.any():
        log.debug("max_rate: no symbol time on the grid reaches BER <= %g", target)
        return math.nan
    return float(1.0 / ts[ok].min())


def ber_stderr(
    taps: ArrayLike,
    n_molecules: int,
    threshold: ArrayLike,
    n_sim_molecules: int,
    *,
    prior: float = 0.5,
    method: str = "exact",
) -> NDArray[np.float64]:
    """Return the standard error of a BER computed from simulated taps (delta method).

    A simulation of ``n_sim_molecules`` molecules estimates the taps as the fractions absorbed in
    each slot, a multinomial: ``cov(h) = (diag(h) − h hᵀ) / n_sim_molecules``. The BER at a fixed
    threshold is a smooth function of the taps; its standard error is ``sqrt(g cov gᵀ)`` with
    ``g`` its gradient, by central differences of ±0.1 standard error of each tap.

    Parameters
    ----------
    taps : array_like, shape (..., K + 1)
        Simulated taps (e.g. :func:`link_taps` of a simulation), as for :func:`ber`.
    n_molecules : int
        Molecules ``N`` per 1 bit of the link, >= 1.
    threshold : array_like
        Detection threshold (molecules), finite and >= 0; broadcast against
        ``taps.shape[:-1]``. At the optimal threshold the BER is stationary in the threshold,
        so this is also the standard error of the minimal BER.
    n_sim_molecules : int
        Molecules released in the simulation that gave the taps, >= 1.
    prior : float
        Probability of a 1 bit, in (0, 1).
    method : {"exact", "poisson", "gaussian"}
        As for :func:`ber`.

    Returns
    -------
    ndarray, shape broadcast(taps.shape[:-1], threshold.shape)
        One standard error of the BER (dimensionless); a numpy scalar for one set of taps.

    Raises
    ------
    ValueError
        One line naming the bad parameter and its allowed range.

    Examples
    --------
    >>> round(float(ber_stderr([0.5], 1, 1, 10_000)), 12)  # BER = (1 − h_0) / 2
    0.0025

    """
    h = _check_taps(taps)
    n = check_integer(n_molecules, "n_molecules", 1)
    tau = _check_threshold(threshold)
    n_sim = check_integer(n_sim_molecules, "n_sim_molecules", 1)
    pri = _check_prior(prior)
    meth = _check_method(method)
    k1 = h.shape[-1]
    _check_memory(meth, k1 - 1)
    batch = h.shape[:-1]
    try:
        shape = np.broadcast_shapes(batch, tau.shape)
    except ValueError:
        raise ValueError(
            f"threshold must broadcast against the taps' batch shape {batch}, got shape {tau.shape}"
        ) from None
    hb = np.broadcast_to(h, (*shape, k1)).reshape(-1, k1)
    taus = np.broadcast_to(tau, shape).ravel()
    step = np.minimum(0.1 * np.sqrt(hb * (1.0 - hb) / n_sim), 0.5 * np.minimum(hb, 1.0 - hb))
    shifted = np.repeat(hb[:, None, :], 2 * k1, axis=1)  # (B, 2 (K+1), K+1)
    eye = np.eye(k1)
    shifted += np.concatenate([eye, -eye])[None] * np.tile(step, 2)[:, :, None]
    rows = np.arange(shifted.shape[0] * 2 * k1)
    values = _rows_ber(shifted.reshape(-1, k1), n, rows, np.repeat(taus, 2 * k1), pri, meth)
    values = values.reshape(-1, 2, k1)
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = np.where(step > 0, (values[:, 0] - values[:, 1]) / (2 * step), 0.0)
    var = ((grad**2 * hb).sum(axis=1) - (grad * hb).sum(axis=1) ** 2) / n_sim
    return np.sqrt(np.maximum(var, 0.0)).reshape(shape)[()]


def link_taps(
    source: Geometry | SimulationResult,
    symbol_times: Sequence[float] | NDArray[np.float64],
    isi_memory: int = 5,
    *,
    model: str = "exact",
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Taps ``h_0 .. h_K`` of a channel model or a simulation on a grid of symbol times.

    Parameters
    ----------
    source : Geometry or SimulationResult
        A channel (evaluated with ``model``) or a simulation (each ``(K + 1) T_s <= t_end`` and
        a whole number of steps).
    symbol_times : sequence of float, shape (n_ts,)
        Symbol durations ``T_s`` (s), finite and > 0.
    isi_memory : int
        ISI memory ``K``, >= 0 (default 5): ``K + 1`` taps per symbol time.
    model : str
        Model for a geometry (see :data:`~sweeplab.mcvd.analytic.ALL_MODELS`).

    Returns
    -------
    taps : ndarray, shape (n_ts, K + 1)
        ``taps[i, k] = F((k+1) T_i) − F(k T_i)`` (dimensionless); column 0 is the own tap.
    stderr : ndarray, shape (n_ts, K + 1)
        Zeros for a model; for a simulation the multinomial standard errors (see
        :func:`~sweeplab.mcvd.isi_taps`; :func:`ber_stderr` uses the full covariance).

    Raises
    ------
    ValueError
        One line naming the bad parameter and its allowed range.

    Examples
    --------
    >>> from sweeplab.mcvd import Geometry
    >>> g = Geometry((0, 0, 10), (10, 0, 0), 5.0, 79.4)
    >>> taps, _ = link_taps(g, [0.1, 0.2], isi_memory=2)
    >>> taps.shape
    (2, 3)

    """
    from .analytic import absorbed_fraction
    from .metrics import isi_taps

    allowed = "finite symbol durations > 0 s, shape (n_ts,)"
    ts = real_array(symbol_times, "symbol_times", allowed)
    if ts.ndim != 1 or not np.all(np.isfinite(ts) & (ts > 0)):
        raise ValueError(f"symbol_times must be {allowed}, got {short_repr(symbol_times)}")
    k = check_integer(isi_memory, "isi_memory", 0)
    if isinstance(source, SimulationResult):
        pairs = [isi_taps(source, float(t), k + 1) for t in ts]
        taps = np.array([p[0] for p in pairs]).reshape(ts.size, k + 1)
        return taps, np.array([p[1] for p in pairs]).reshape(ts.size, k + 1)
    edges = ts[:, None] * np.arange(k + 2, dtype=np.float64)
    cum = np.asarray(absorbed_fraction(source, edges.ravel(), model=model), dtype=np.float64)
    taps = np.diff(cum.reshape(edges.shape), axis=1)
    return taps, np.zeros_like(taps)


def clip_model_taps(taps: ArrayLike) -> NDArray[np.float64]:
    """Return model taps with rounding noise (values in ``[-TAP_NOISE, 0)``) set to 0.

    Differences of a model's ``F`` that is accurate to ~1e-10 absolute (the exact model) can
    be a few 1e-12 below zero where the true tap is ~0; anything more negative is left as it
    is (and refused by :func:`ber`). nan stays nan.
    """
    h = np.array(taps, dtype=np.float64)
    h[(h < 0.0) & (h >= -TAP_NOISE)] = 0.0
    return h


def _first_meeting(best: NDArray[np.float64], target: float) -> int:
    """Index of the first entry ``<= target`` (nan never meets), or -1."""
    ok = np.flatnonzero(np.nan_to_num(best, nan=np.inf) <= target)
    return int(ok[0]) if ok.size else -1


def _optimal_rows(taps: NDArray[np.float64], n: int, prior: float) -> NDArray[np.float64]:
    """Minimal exact BER per row; nan for a row with a nan tap."""
    out = np.full(taps.shape[0], math.nan)
    ok = np.isfinite(taps).all(axis=1)
    if ok.any():
        out[ok] = np.atleast_1d(optimal_threshold(taps[ok], n, prior=prior)[1])
    return out


def achievable_rate(
    source: Geometry | SimulationResult,
    n_molecules: int,
    ber_target: float,
    isi_memory: int = 4,
    *,
    model: str = "exact",
    prior: float = 0.5,
    ts_range: tuple[float, float] = RATE_TS_RANGE,
) -> tuple[float, float]:
    """Highest bit rate whose exact BER at the optimal threshold meets a target, by grid search.

    The symbol time ``T_s`` is searched on a grid: :data:`RATE_COARSE` log-spaced points over
    the range, then :data:`RATE_FINE` log-spaced points between the first coarse point that
    meets the target and the one before it (relative resolution about
    ``(ts_max / ts_min)^(1 / ((RATE_COARSE − 1) RATE_FINE))``, 0.6 % for the default range).
    The BER need not be monotone in ``T_s``: the result is the smallest *grid* symbol time that
    meets the target (a shorter one between earlier coarse points is not looked for).

    Parameters
    ----------
    source : Geometry or SimulationResult
        A channel, evaluated with ``model`` over ``ts_range``; or a simulation, whose symbol
        times are whole numbers ``m`` of its steps with ``(K + 1) m dt <= t_end`` (every ``m``
        in the refined bracket is tried: resolution one step).
    n_molecules : int
        Molecules ``N`` per 1 bit, >= 1.
    ber_target : float
        Largest acceptable BER, in (0, 0.5).
    isi_memory : int
        ISI memory ``K`` >= 0: ``K + 1`` taps per symbol time.
    model : str
        Model for a geometry (:data:`~sweeplab.mcvd.analytic.ALL_MODELS`); an approximate form's
        taps beyond its validity domain are nan and never meet the target.
    prior : float
        Probability of a 1 bit, in (0, 1).
    ts_range : (float, float)
        Smallest and largest symbol time searched for a geometry (s), ``0 < min < max``.

    Returns
    -------
    rate : float
        ``1 / T_min`` (bits/s); nan if no searched symbol time meets the target.
    ts_min : float
        ``T_min`` (s); nan likewise.

    Raises
    ------
    ValueError
        One line naming the bad parameter and its allowed range (also a model that refuses
        the geometry, e.g. a closed form for a finite reactivity).

    """
    import warnings

    from .analytic import ValidityWarning

    n = check_integer(n_molecules, "n_molecules", 1)
    k = check_integer(isi_memory, "isi_memory", 0)
    pri = _check_prior(prior)
    target_range = "a number in (0, 0.5)"
    target = check_number(ber_target, "ber_target", target_range, minimum=0.0, strict=True)
    if target >= 0.5:
        raise ValueError(f"ber_target must be {target_range}, got {ber_target!r}")
    if isinstance(source, SimulationResult):
        cum = np.concatenate([[0.0], np.cumsum(source.counts) / source.n_molecules])
        m_max = (cum.size - 1) // (k + 1)
        if m_max < 1:
            return math.nan, math.nan
        j = np.arange(k + 2)

        def at(m: NDArray[np.int64]) -> NDArray[np.float64]:
            return _optimal_rows(np.diff(cum[m[:, None] * j], axis=1), n, pri)

        coarse = np.unique(np.round(np.geomspace(1, m_max, RATE_COARSE)).astype(np.int64))
        i = _first_meeting(at(coarse), target)
        if i < 0:
            return math.nan, math.nan
        if i > 0:
            fine = np.arange(coarse[i - 1] + 1, coarse[i] + 1, dtype=np.int64)
            coarse = fine[_first_meeting(at(fine), target) :]
            i = 0
        ts = float(coarse[i]) * source.dt
        return 1.0 / ts, ts
    lo, hi = (check_number(v, "ts_range", "two symbol times 0 < min < max (s)", minimum=0.0,
                           strict=True) for v in ts_range)  # fmt: skip
    if not lo < hi:
        raise ValueError(f"ts_range must be two symbol times 0 < min < max (s), got {ts_range!r}")

    def taps_at(ts: NDArray[np.float64]) -> NDArray[np.float64]:
        with warnings.catch_warnings():  # beyond a validity limit: nan, never meets the target
            warnings.simplefilter("ignore", ValidityWarning)
            return _optimal_rows(clip_model_taps(link_taps(source, ts, k, model=model)[0]), n, pri)

    grid = np.geomspace(lo, hi, RATE_COARSE)
    i = _first_meeting(taps_at(grid), target)
    if i < 0:
        return math.nan, math.nan
    if i > 0:
        fine = np.geomspace(grid[i - 1], grid[i], RATE_FINE + 1)[1:]
        fine[-1] = grid[i]
        grid, i = fine, _first_meeting(taps_at(fine), target)
    return 1.0 / float(grid[i]), float(grid[i])
