"""Channel responses: free space (exact), first-order closed forms, the exact model, exact F(∞).

All functions take a :class:`~sweeplab.mcvd.geometry.Geometry` and times in s. Every closed form
here is a sum of terms ``c_k erfc(a_k / sqrt(4 D t))``, so the hitting rate follows by the generic
rule ``f(t) = Σ c_k a_k / sqrt(4π D t³) exp(−a_k² / (4 D t))`` and ``F(∞) = Σ c_k`` (spec §2).
``model="exact"`` is the numerically exact solution of :mod:`sweeplab.mcvd.exact` (spec §10).

Validity domain of the approximate closed forms (:func:`validity_limit`): a cumulative fraction
must stay in ``[0, 1]`` and never decrease. The paper's first-order forms are not physical at long
times in two cases: in a slab (two-mirror form, spec §8) their lattice sums diverge, so ``F``
reaches a maximum and then falls without bound (−1.53 at 100 s for ``W = 12`` µm); in a
half-space with the TX closer than ``2 r_r`` to the RX centre, ``F`` overshoots and falls to
``Σ c_k``. Each form is therefore used only up to ``validity_limit``, the first time its ``F``
stops increasing or reaches 1 (and, in a slab, at most ``TAU_MAX · W² / (4D)``); beyond it
:func:`absorbed_fraction` and :func:`hitting_rate` return nan and warn
(:class:`ValidityWarning`), and :func:`erfc_terms` refuses a ``t_max`` beyond it. Inside the
domain the values are unchanged.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq
from scipy.special import erfc, erfcinv

from .exact import (
    DEFAULT_TOL,
    check_times,
    exact_absorbed_fraction,
    exact_hitting_rate,
    laplace_hitting,
)
from .geometry import Geometry
from .validation import check_integer, check_number

__all__ = [
    "ALL_MODELS",
    "MODELS",
    "TAU_MAX",
    "ValidityWarning",
    "absorbed_fraction",
    "erfc_terms",
    "hitting_rate",
    "image_charges",
    "steady_state_fraction",
    "validity_limit",
]

#: Closed forms (sums of erfc terms, see :func:`erfc_terms`).
MODELS = ("free", "first-order", "first-order-convolved", "image-chain")
#: Every model accepted by :func:`absorbed_fraction`, :func:`hitting_rate` and
#: :func:`steady_state_fraction`: the closed forms and the exact solution.
ALL_MODELS = (*MODELS, "exact")


#: Longest time of the slab's two-mirror forms, in units of ``W² / (4D)`` (see
#: :func:`validity_limit`): it bounds their image lattice to about 3600 terms whatever the time.
TAU_MAX = 64.0


class ValidityWarning(UserWarning):
    """A closed form was asked for times beyond its validity domain: those values are nan."""


def _model(model: str) -> str:
    if model not in ALL_MODELS:
        raise ValueError(f"model must be one of {ALL_MODELS}, got {model!r}")
    return model


def erfc_terms(
    geometry: Geometry,
    model: str = "first-order",
    *,
    t_max: float | None = None,
    order: int | None = None,
) -> list[tuple[float, float]]:
    """Return the ``(c_k, a_k)`` with ``F(t) = Σ c_k erfc(a_k / sqrt(4 D t))`` for a model.

    Parameters
    ----------
    geometry : Geometry
        The channel. With ``wall=False`` every model is the exact free-space result.
    model : {"free", "first-order", "first-order-convolved", "image-chain"}
        ``"free"``: Yilmaz et al. (2014), the RX alone in free space (ignores the wall).
        ``"first-order"``: the paper's half-space form (spec §4); ``"first-order-convolved"``: its
        variant with the exchanged distances in the second erfc of each receiver (spec §4).
        In a slab both are the two-mirror form of spec §8 (see :func:`_lattice_terms`).
        ``"image-chain"``: the order-``n`` Kelvin image chain (half-space; see
        :func:`_chain_terms`).
    t_max : float, optional
        Largest time (s, finite, >= 0) the terms will be used at; required for a slab, whose
        image lattice is truncated to the terms that matter up to ``t_max`` (see
        :data:`LATTICE_TOL`). At most :func:`validity_limit` (ValueError beyond: the form is not
        physical there). Without it, the terms of a half-space form are still only physical up
        to that limit.
    order : int, optional
        ``"image-chain"`` only: chain length ``n >= 1`` (``2n`` erfc terms); default: until the
        image charges fall below 1e-14, where its ``F(∞)`` is the exact image-charge series.

    Returns
    -------
    list of (float, float)
        Coefficients ``c_k`` (dimensionless) and distances ``a_k`` (µm, > 0).

    """
    if t_max is not None and model in MODELS:
        t_max = check_number(
            t_max, "t_max", "a finite time >= 0 s for a slab's image lattice", minimum=0.0
        )
        limit = validity_limit(geometry, model, order=order)
        if t_max > limit:
            raise ValueError(
                f"t_max = {t_max:.6g} s is beyond the validity limit of model {model!r} for this "
                f"geometry (its F stops increasing there); allowed: t_max <= {limit:.6g} s"
            )
    c, a = _terms(geometry, model, t_max, order)
    return list(zip(c.tolist(), a.tolist(), strict=True))


#: Truncation of the slab's first-order image lattice: every left-out term is at most
#: ``|c_k| · LATTICE_TOL`` at ``t <= t_max`` (its erfc argument exceeds ``erfcinv(LATTICE_TOL)``).
LATTICE_TOL = 1e-12


def _terms(
    geometry: Geometry, model: str, t_max: float | None, order: int | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if model == "exact" or _model(model) not in MODELS:
        raise ValueError(f"model must be one of {MODELS} (closed forms), got {model!r}")
    if geometry.is_reactive:
        raise ValueError(
            f"model {model!r} is not available for finite reactivity "
            f"({geometry.reactivity:.6g} µm/s); use model='exact'"
        )
    if order is not None:
        if model != "image-chain":
            raise ValueError(f"order applies to model 'image-chain' only, got model {model!r}")
        check_integer(order, "order", 1)
    if t_max is not None:
        t_max = check_number(
            t_max, "t_max", "a finite time >= 0 s for a slab's image lattice", minimum=0.0
        )
    rr = geometry.radius
    r0 = geometry.distance
    if model == "free" or not geometry.wall:
        return np.array([rr / r0]), np.array([r0 - rr])
    if model == "image-chain":
        if geometry.is_slab:
            raise ValueError("model 'image-chain' is for a half-space; use 'exact' in a slab")
        return _chain_terms(geometry, order)
    if geometry.is_slab:
        if t_max is None:
            raise ValueError(
                f"t_max must be a finite time >= 0 s for a slab's image lattice, got {t_max!r}"
            )
        return _lattice_terms(geometry, model, t_max)
    p = np.asarray(geometry.tx)
    c = np.asarray(geometry.rx)
    cp = np.asarray(geometry.image_rx)
    r0p = geometry.image_distance
    q = c + (rr / r0) ** 2 * (p - c)  # Kelvin inverse of the TX in the RX
    qp = cp + (rr / r0p) ** 2 * (p - cp)  # ... and in the image RX
    rho = float(np.linalg.norm(c - qp))
    rhop = float(np.linalg.norm(cp - q))
    if model == "first-order":
        a1, a2 = r0 + rho - 2 * rr, r0p + rhop - 2 * rr
    else:
        a1, a2 = r0p + rho - 2 * rr, r0 + rhop - 2 * rr
    return (
        np.array([rr / r0, -(rr**2) / (r0p * rho), rr / r0p, -(rr**2) / (r0 * rhop)]),
        np.array([r0 - rr, a1, r0p - rr, a2]),
    )


def _chain_terms(
    geometry: Geometry, order: int | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Order-``n`` Kelvin image chain: the paper's construction continued (half-space).

    The half-space channel is free space with two absorbing spheres, the RX ``A`` (centre ``c``)
    and its image ``B`` (``c'``) (spec §3). A chain is a sequence of alternating spheres
    ``S_1, S_2, …, S_k`` (two chains per length, starting with ``A`` or ``B``). Its Kelvin images
    of the TX: ``z_0 = p``, ``z_i`` = inverse of ``z_{i−1}`` in ``S_i`` with charge
    ``Q_i = −Q_{i−1} r_r / |z_{i−1} − o_i|`` (``Q_0 = 1``, ``o_i`` the centre of ``S_i``);
    ``−Q_k`` is the chain's share of ``F(∞)`` (the induced charge of the grounded spheres), so
    summing every chain up to length ``n`` and letting ``n → ∞`` gives the exact image-charge
    series of spec §5 (by reciprocity). Its time dependence is ``erfc(L / √(4Dt))`` with ``L``
    the length of the path from ``p`` that touches ``S_1, …, S_k`` in turn, each at the point
    nearest to the previous one (``h_0 = p``, ``h_i = o_i + r_r (h_{i−1} − o_i)/|h_{i−1} − o_i|``,
    ``L = Σ (|h_{i−1} − o_i| − r_r)``). Order 1 is two free-space receivers; order 2 has the
    paper's coefficients (spec §4) with these path lengths instead of its distances.
    """
    rr = geometry.radius
    p = np.asarray(geometry.tx, dtype=np.float64)
    centres = (np.asarray(geometry.rx, dtype=np.float64), np.asarray(geometry.image_rx, float))
    coef: list[float] = []
    dist: list[float] = []
    limit = 100_000 if order is None else int(order)
    for start in (0, 1):
        z, h, q, length, sphere = p, p, 1.0, 0.0, start
        for k in range(1, limit + 1):
            o = centres[sphere]
            dz = float(np.linalg.norm(z - o))
            dh = float(np.linalg.norm(h - o))
            q = -q * rr / dz
            z = o + (rr / dz) ** 2 * (z - o)
            length += dh - rr
            h = o + rr * (h - o) / dh
            coef.append(-q)
            dist.append(length)
            sphere = 1 - sphere
            if order is None and abs(q) < 1e-14:
                break
            if k == limit:
                if order is None:
                    raise ValueError(
                        f"image chain did not reach |Q| < 1e-14 within {limit} images "
                        f"(gap {geometry.gap:.3g} µm too small)"
                    )
    return np.asarray(coef), np.asarray(dist)


def _lattice_terms(
    geometry: Geometry, model: str, t_max: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """First-order two-mirror form (spec §8): the RX lattice with pairwise corrections.

    The planes ``x = 0`` and ``x = W`` fold the RX into the lattice ``c_j = (2nW ± x_R, y_R,
    z_R)``. With ``r_j = |p − c_j|``, the Kelvin inverse ``q_k = c_k + (r_r/r_k)² (p − c_k)`` of
    the TX in receiver ``k`` and ``ρ_jk = |c_j − q_k|``, the paper's first-order multi-receiver
    form reads ``F = Σ_j [(r_r/r_j) erfc((r_j − r_r)/√(4Dt)) − Σ_{k≠j} r_r²/(r_k ρ_jk)
    erfc((r_j + ρ_jk − 2r_r)/√(4Dt))]`` (``r_k + ρ_jk`` in the convolved variant); for one
    image it is spec §4. Terms whose erfc argument at ``t_max`` exceeds ``erfcinv(LATTICE_TOL)``
    are left out. Its ``F(∞)`` diverges (the lattice sums ``Σ 1/r_j`` do), so the form is only
    meaningful while ``sqrt(4 D t)`` is not much larger than ``W``.
    """
    rr = geometry.radius
    w = float(geometry.slab_width)  # type: ignore[arg-type]
    p = np.asarray(geometry.tx)
    cutoff = float(erfcinv(LATTICE_TOL)) * math.sqrt(4.0 * geometry.D * t_max) + rr
    # every kept term has r_j <= cutoff + r_r and ρ_jk <= cutoff + r_r, so |p − c_k| <= 2 cutoff
    reach = 2.0 * cutoff + 2.0 * rr
    n_max = math.ceil((reach + w) / (2.0 * w))
    n = np.arange(-n_max, n_max + 1)
    xs = np.concatenate([2 * w * n + geometry.rx[0], 2 * w * n - geometry.rx[0]])
    centres = np.column_stack(
        [xs, np.full(xs.size, geometry.rx[1]), np.full(xs.size, geometry.rx[2])]
    )
    r = np.linalg.norm(centres - p, axis=1)
    keep = r <= reach
    centres, r = centres[keep], r[keep]
    q = centres + ((rr / r) ** 2)[:, None] * (p - centres)
    rho = np.linalg.norm(centres[:, None, :] - q[None, :, :], axis=2)  # rho[j, k] = |c_j − q_k|
    off = ~np.eye(r.size, dtype=bool)
    coef = -(rr**2) / (r[None, :] * np.where(off, rho, 1.0))
    dist = (r[:, None] if model == "first-order" else r[None, :]) + rho - 2 * rr
    pair = off & (dist <= cutoff)
    direct = r - rr <= cutoff
    return (
        np.concatenate([rr / r[direct], coef[pair]]),
        np.concatenate([r[direct] - rr, dist[pair]]),
    )


def validity_limit(
    geometry: Geometry, model: str = "first-order", *, order: int | None = None
) -> float:
    """Latest time (s) up to which a closed form is physical: ``F`` in ``[0, 1]``, increasing.

    Parameters
    ----------
    geometry : Geometry
        The channel.
    model : str
        Any of :data:`ALL_MODELS`.
    order : int, optional
        Chain length of ``"image-chain"`` (see :func:`erfc_terms`).

    Returns
    -------
    float
        ``inf`` for the exact model, free space, ``wall=False`` and every form whose ``F``
        increases to ``F(∞) <= 1``. Otherwise the first time at which the form's hitting rate
        ``f`` turns negative (``F`` at its maximum; located on a grid of 400 log-spaced times,
        then to 1e-12 relative by root finding) or ``F`` reaches 1, and in a slab at most
        ``TAU_MAX · W² / (4D)`` (the lattice is built up to that time only: about 3600 terms).

    Notes
    -----
    Measured (``r_r = 5``, ``D = 79.4``, TX on the plane 10 µm up), the two-mirror first-order
    form peaks at ``4Dt/W² ≈ 3.3`` for ``W = 12`` (gap 1), 6.3 for ``W = 20``, 24 for ``W = 40``
    (gap 5) and 25 for ``W = 1e4``; the convolved variant earlier (2.0–10). Its error against the
    exact model inside the domain grows with ``4Dt/W²``: within 2.5 % up to 0.5, −1 % to −10 %
    at 2, and at the limit −3 % (``W = 40``, gap 5) to −24 % (``W = 12``, gap 1).

    """
    if _model(model) in ("exact", "free") or not geometry.wall:
        return math.inf
    if order is not None:
        order = check_integer(order, "order", 1)
    return _validity(geometry, model, order)


@functools.lru_cache(maxsize=1024)
def _validity(geometry: Geometry, model: str, order: int | None) -> float:
    d4 = 4.0 * geometry.D
    if geometry.is_slab:
        cap = TAU_MAX * float(geometry.slab_width) ** 2 / d4  # type: ignore[arg-type]
        c, a = _terms(geometry, model, cap, order)
        t_hi = cap
    else:
        c, a = _terms(geometry, model, None, order)
        cap = math.inf
        t_hi = 1e6 * float(np.max(a)) ** 2 / d4  # every exp(−a²/4Dt) within 1e-6 of 1
    t_lo = float(np.min(a)) ** 2 / (70.0 * d4) if a.size else t_hi  # F < 1e-31 before
    if t_lo >= t_hi:
        return cap

    def rate_shape(t: float | NDArray[np.float64]) -> NDArray[np.float64]:
        """``f(t) · sqrt(4πD t³)``: the sign of the hitting rate."""
        tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
        out = np.zeros(tt.size)
        for i in range(0, c.size, 256):
            ci, ai = c[i : i + 256], a[i : i + 256]
            out += (ci * ai) @ np.exp(-(ai[:, None] ** 2) / (d4 * tt[None, :]))
        return out

    def fraction(t: float) -> float:
        return float(c @ erfc(a / math.sqrt(d4 * t)))

    grid = np.geomspace(t_lo, t_hi, 400)
    bad = np.flatnonzero(rate_shape(grid) < 0)
    limit = cap
    if bad.size:
        i = int(bad[0])
        limit = float(grid[0]) if i == 0 else _root(rate_shape, grid[i - 1], grid[i])
    end = min(limit, t_hi)
    if fraction(end) > 1.0:  # F increases up to ``end``: it reached 1 before
        limit = _root(lambda t: fraction(t) - 1.0, t_lo, end)
    return limit


def _root(func, lo: float, hi: float) -> float:
    """Root of ``func`` in ``[lo, hi]`` (a sign change), located in ``log t``."""
    return math.exp(
        brentq(lambda u: float(np.squeeze(func(math.exp(u)))), math.log(lo), math.log(hi),
               xtol=1e-12, rtol=1e-12)
    )  # fmt: skip


def _outside(
    geometry: Geometry, model: str, order: int | None, tt: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Return where ``tt`` is beyond the model's validity limit (with a warning if anywhere)."""
    limit = validity_limit(geometry, model, order=order)
    late = tt > limit
    if np.any(late):
        warnings.warn(
            f"model {model!r} is not physical for this geometry after its F stops increasing: "
            f"nan beyond t = {limit:.6g} s ({int(late.sum())} of {late.size} times; see "
            "sweeplab.mcvd.validity_limit)",
            ValidityWarning,
            stacklevel=3,
        )
    return late


def absorbed_fraction(
    geometry: Geometry, t: ArrayLike, model: str = "first-order", *, order: int | None = None
) -> NDArray[np.float64]:
    """Cumulative fraction ``F(t)`` of released molecules absorbed by the RX up to time ``t``.

    Parameters
    ----------
    geometry : Geometry
        The channel.
    t : array_like
        Times (s), >= 0; any shape. ``F(0) = 0``.
    model : {"free", "first-order", "first-order-convolved", "image-chain", "exact"}
        See :func:`erfc_terms`. Exact for ``"free"`` and for ``wall=False``; the half-space forms
        are the paper's first-order approximation (they underestimate absorption near the wall).
        ``"exact"``: the exact solution for a half-space or slab (spec §10), absolute error
        <= 1e-10 (:func:`sweeplab.mcvd.exact.exact_absorbed_fraction`).
    order : int, optional
        Chain length of ``"image-chain"`` (see :func:`erfc_terms`).

    Returns
    -------
    ndarray
        Same shape as ``t``, dimensionless, in ``[0, 1]`` and non-decreasing in ``t``; nan at
        times beyond the model's :func:`validity_limit` (with a :class:`ValidityWarning`).

    """
    if _model(model) == "exact" and (geometry.wall or geometry.is_reactive):
        return exact_absorbed_fraction(geometry, t, tol=DEFAULT_TOL)
    tt = check_times(t)
    late = _outside(geometry, model, order, tt)
    out = np.where(late, math.nan, 0.0)
    pos = (tt > 0) & ~late
    if not np.any(pos):
        return out
    tp = tt[pos]
    ck, ak = _terms(geometry, "free" if model == "exact" else model, float(tp.max()), order)
    s = np.sqrt(4.0 * geometry.D * tp)
    for i in range(0, ck.size, 256):  # blocks of terms bound the temporary to 256 x len(t)
        out[pos] += ck[i : i + 256] @ erfc(ak[i : i + 256, None] / s[None, :])
    return out


def hitting_rate(
    geometry: Geometry, t: ArrayLike, model: str = "first-order", *, order: int | None = None
) -> NDArray[np.float64]:
    """Hitting rate ``f(t) = dF/dt`` (1/s): the absorption probability density in time.

    Parameters
    ----------
    geometry : Geometry
        The channel.
    t : array_like
        Times (s), >= 0; any shape. ``f(0) = 0``.
    model : {"free", "first-order", "first-order-convolved", "image-chain", "exact"}
        See :func:`absorbed_fraction`.
    order : int, optional
        Chain length of ``"image-chain"`` (see :func:`erfc_terms`).

    Returns
    -------
    ndarray
        Same shape as ``t``, in 1/s, >= 0; nan beyond the model's :func:`validity_limit` (with
        a :class:`ValidityWarning`).

    """
    if _model(model) == "exact" and (geometry.wall or geometry.is_reactive):
        return exact_hitting_rate(geometry, t, tol=DEFAULT_TOL)
    tt = check_times(t)
    late = _outside(geometry, model, order, tt)
    out = np.where(late, math.nan, 0.0)
    pos = (tt > 0) & ~late
    if not np.any(pos):
        return out
    tp = tt[pos]
    ck, ak = _terms(geometry, "free" if model == "exact" else model, float(tp.max()), order)
    four_dt = 4.0 * geometry.D * tp
    # the prefactor 1/sqrt(4πD t³) goes into the exponent: t³ underflows (and the prefactor
    # overflows) at tiny t, where the rate is an exact 0 (exp(−a²/(4Dt)) underflows first)
    log_pref = -0.5 * np.log(math.pi * four_dt) - np.log(tp)
    with np.errstate(over="ignore"):
        for i in range(0, ck.size, 256):
            c, a = ck[i : i + 256], ak[i : i + 256]
            out[pos] += (c * a) @ np.exp(log_pref[None, :] - (a[:, None] ** 2) / four_dt[None, :])
    return out


def image_charges(
    geometry: Geometry, *, tol: float = 1e-14, max_terms: int = 100_000
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Image-charge series of the two-sphere capacitance problem (spec §5).

    Starts from charge ``r_r`` at ``c`` and ``r_r`` at ``c'``; a charge ``Q`` at ``s`` reflected in
    the sphere of centre ``o`` gives ``−Q r_r/|s − o|`` at ``o + (r_r/|s − o|)² (s − o)``; each
    chain alternates between the two spheres until ``|Q| < tol``.

    Parameters
    ----------
    geometry : Geometry
        A half-space channel (``wall=True``, ``slab_width=None``).
    tol : float
        Finite, > 0: a chain stops at its first charge with ``|Q| < tol``.
    max_terms : int
        Integer >= 1: largest number of charges before giving up (ValueError).

    Returns
    -------
    charges : ndarray, shape (n,)
        Charges (µm; ``u(x) = Σ Q_k / |x − s_k|`` is dimensionless).
    positions : ndarray, shape (n, 3)
        Their positions (µm).

    """
    if not geometry.wall or geometry.is_slab:
        raise ValueError("image_charges needs a half-space geometry (wall=True, slab_width=None)")
    tol = check_number(tol, "tol", "a finite number > 0", minimum=0.0, strict=True)
    max_terms = check_integer(max_terms, "max_terms", 1)
    rr = geometry.radius
    centres = (np.asarray(geometry.rx), np.asarray(geometry.image_rx))
    charges: list[float] = []
    positions: list[NDArray[np.float64]] = []
    for start in (0, 1):
        q, s = rr, centres[start]
        charges.append(q)
        positions.append(s)
        into = 1 - start
        while True:
            o = centres[into]
            dist = float(np.linalg.norm(s - o))
            q = -q * rr / dist
            s = o + (rr / dist) ** 2 * (s - o)
            if abs(q) < tol:
                break
            charges.append(q)
            positions.append(s)
            if len(charges) > max_terms:
                raise ValueError(
                    f"image series did not reach |Q| < {tol:g} within {max_terms} terms "
                    f"(gap {geometry.gap:.3g} µm too small)"
                )
            into = 1 - into
    return np.asarray(charges), np.asarray(positions)


def steady_state_fraction(
    geometry: Geometry, model: str = "exact", *, order: int | None = None
) -> float:
    """Long-time absorbed fraction ``F(∞)`` (dimensionless).

    Parameters
    ----------
    geometry : Geometry
        The channel.
    model : {"exact", "free", "first-order", "first-order-convolved", "image-chain"}
        ``"exact"`` (default). Free space: ``r_r / r_0``. Half-space: the harmonic measure
        ``u(p)`` of the RX and its image (``u = 1`` on both spheres, ``u → 0`` at infinity) from
        the image-charge series of :func:`image_charges`, exact to the series tolerance (1e-14),
        unlike the first-order form's ``F(∞)``, which underestimates it (spec §5). Slab: exactly
        1, because the molecule's motion parallel to the planes is a 2-D Brownian motion, which is
        recurrent: it returns arbitrarily close to the RX's axis infinitely often, and each return
        gives it a chance bounded below (the normal coordinate is an ergodic reflected motion on
        ``[0, W]``) to hit the RX, so it is absorbed with probability one (the hitting time has
        infinite mean, ``1 − F(t) ~ const / log t``).
        Closed forms: ``Σ c_k`` of :func:`erfc_terms` (diverges for the first-order forms in a
        slab: ValueError), the form's limit as ``t → ∞`` even where its ``F(t)`` is nan beyond
        a finite :func:`validity_limit` (then it is below that maximum, or above 1).
    order : int, optional
        Chain length of ``"image-chain"`` (see :func:`erfc_terms`).

    """
    if _model(model) != "exact":
        if geometry.is_slab and model != "free":
            raise ValueError(
                f"model {model!r} has no finite F(∞) in a slab (its image-lattice sums diverge); "
                "use model='exact' (F(∞) = 1)"
            )
        return float(sum(c for c, _ in erfc_terms(geometry, model, order=order)))
    if geometry.is_slab:
        return 1.0
    if geometry.is_reactive:  # Collins–Kimball receiver: the exact model at s = 0
        return float(laplace_hitting(geometry, 0.0).real)
    if not geometry.wall:
        return geometry.radius / geometry.distance
    q, s = image_charges(geometry)
    p = np.asarray(geometry.tx)
    return float(np.sum(q / np.linalg.norm(p - s, axis=1)))
