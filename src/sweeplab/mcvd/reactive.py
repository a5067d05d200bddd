"""Partially absorbing (Collins–Kimball) receiver: free-space closed forms and the step rule.

The receiver surface ``r = a`` absorbs at rate ``k`` (µm/s): ``D ∂c/∂r = k c`` there (forward),
``D ∂w/∂r = k (w − 1)`` for the backward ``w(x; s) = E_x[e^{−sτ}]`` (spec mcvd §11). In free space,
with ``z = r_0 − a`` (TX to RX surface), ``κ = sqrt(s/D)`` and ``α = (1 + k a / D) / a``,

    w(p; s) = (a / r_0) (k / D) e^{−κ z} / (κ + α),

whose inverses (Carslaw & Jaeger's pair ``L⁻¹[e^{−x√s}/(√s + h)]``) are

    F(t) = (a/r_0) · k a/(D + k a) · [erfc(u) − e^{−u²} erfcx(u + α√(Dt))],
    f(t) = (a/r_0) · k · e^{−u²} · [1/√(π D t) − α erfcx(u + α√(Dt))],     u = z/√(4Dt),

using ``exp(α z + α² D t) erfc(u + α√(Dt)) = e^{−u²} erfcx(u + α√(Dt))`` (no overflow).
``F(∞) = (a/r_0) k a/(D + k a)``; ``k → ∞`` gives the absorbing receiver of spec §2. Near one or
two reflecting planes the exact model (:mod:`sweeplab.mcvd.exact`) handles finite ``k``.

Simulator rule (:func:`absorption_probability`): a molecule that reaches the surface during a
step of ``Δt`` is absorbed with probability ``P`` and otherwise reflected back (Erban & Chapman,
Phys. Biol. 4 (2007) 16; Andrews, Phys. Biol. 6 (2009) 046015).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erfc, erfcx

from .geometry import Geometry
from .validation import check_number, real_array

__all__ = [
    "absorption_probability",
    "free_space_reactive_fraction",
    "free_space_reactive_rate",
    "free_space_reactive_steady_state",
]


def _parts(t: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Return times (s) as float64, refusing non-finite or negative ones (as ``check_times``)."""
    tt = real_array(t, "times", "finite and >= 0 s")
    if not np.all(np.isfinite(tt)) or np.any(tt < 0):
        bad = tt[~(np.isfinite(tt) & (tt >= 0))].ravel()[:3]
        raise ValueError(f"times must be finite and >= 0 s, got {bad.tolist()}")
    return tt, tt > 0


def _phi(y: NDArray[np.float64]) -> NDArray[np.float64]:
    """``1/sqrt(π) − y erfcx(y)`` for ``y >= 0`` (relative error ~1e-13).

    Direct below ``y = 30`` (loses at most ``log10(2 y²)`` digits), else the asymptotic series
    ``(1/sqrt(π)) Σ_{n>=1} (−1)^{n+1} (2n − 1)!! / (2 y²)^n`` (8 terms: truncation < 1e-20).
    """
    out = 1.0 / math.sqrt(math.pi) - y * erfcx(y)
    big = y > 30.0
    if np.any(big):
        x = 1.0 / (2.0 * y[big] ** 2)
        term = x.copy()
        acc = x.copy()
        for n in range(2, 9):
            term = -term * (2 * n - 1) * x
            acc += term
        out[big] = acc / math.sqrt(math.pi)
    return out


def free_space_reactive_steady_state(geometry: Geometry) -> float:
    """``F(∞) = (a / r_0) · k a / (D + k a)`` of the receiver alone in free space (dimensionless).

    Parameters
    ----------
    geometry : Geometry
        Uses ``radius`` ``a`` (µm), ``distance`` ``r_0`` (µm), ``D`` (µm²/s) and ``reactivity``
        ``k`` (µm/s, ``inf`` allowed); reflecting planes are ignored.

    """
    a, r0, k = geometry.radius, geometry.distance, geometry.reactivity
    if math.isinf(k):
        return a / r0
    return a / r0 * (k * a / (geometry.D + k * a))


def free_space_reactive_fraction(geometry: Geometry, t: ArrayLike) -> NDArray[np.float64]:
    """Cumulative absorbed fraction ``F(t)`` of a Collins–Kimball receiver in free space.

    Parameters
    ----------
    geometry : Geometry
        Uses ``radius`` ``a`` (µm), ``distance`` ``r_0`` (µm), ``D`` (µm²/s) and ``reactivity``
        ``k`` (µm/s; ``inf`` gives ``(a/r_0) erfc(z/√(4Dt))``); reflecting planes are ignored.
    t : array_like
        Times (s), >= 0, any shape.

    Returns
    -------
    ndarray
        Same shape as ``t``, dimensionless, non-decreasing from 0 to
        :func:`free_space_reactive_steady_state`.

    """
    tt, pos = _parts(t)
    out = np.zeros_like(tt)
    a, r0, d, k = geometry.radius, geometry.distance, geometry.D, geometry.reactivity
    tp = tt[pos]
    u = (r0 - a) / np.sqrt(4.0 * d * tp)
    if math.isinf(k):
        out[pos] = a / r0 * erfc(u)
        return out
    alpha = (1.0 + k * a / d) / a
    out[pos] = (
        a
        / r0
        * (k * a / (d + k * a))
        * (erfc(u) - np.exp(-u * u) * erfcx(u + alpha * np.sqrt(d * tp)))
    )
    return np.maximum(out, 0.0)


def free_space_reactive_rate(geometry: Geometry, t: ArrayLike) -> NDArray[np.float64]:
    """Hitting rate ``f(t) = dF/dt`` (1/s) of a Collins–Kimball receiver in free space.

    Parameters
    ----------
    geometry : Geometry
        As for :func:`free_space_reactive_fraction`.
    t : array_like
        Times (s), >= 0, any shape.

    Returns
    -------
    ndarray
        Same shape as ``t``, 1/s, >= 0.

    """
    tt, pos = _parts(t)
    out = np.zeros_like(tt)
    a, r0, d, k = geometry.radius, geometry.distance, geometry.D, geometry.reactivity
    tp = tt[pos]
    z = r0 - a
    u = z / np.sqrt(4.0 * d * tp)
    with np.errstate(over="ignore", under="ignore"):
        if math.isinf(k):
            out[pos] = a / r0 * z / np.sqrt(4.0 * math.pi * d * tp**3) * np.exp(-u * u)
            return out
        alpha = (1.0 + k * a / d) / a
        sdt = np.sqrt(d * tp)
        y = u + alpha * sdt
        # bracket 1/sqrt(π) − (y − u) erfcx(y), with φ(y) = 1/sqrt(π) − y erfcx(y) > 0 free of
        # cancellation (asymptotic series beyond y = 30)
        out[pos] = a / r0 * k * np.exp(-u * u) / sdt * (_phi(y) + u * erfcx(y))
    return np.maximum(out, 0.0)


def absorption_probability(reactivity: float, dt: float, d_coef: float) -> float:
    """Probability that a molecule reaching the surface in one step of ``dt`` is absorbed.

    Parameters
    ----------
    reactivity : float
        ``k`` (µm/s), > 0; ``inf`` gives 1.
    dt : float
        Time step (s), > 0.
    d_coef : float
        Diffusion coefficient (µm²/s), > 0.

    Returns
    -------
    float
        ``P = k sqrt(π dt / D)`` (dimensionless), capped at 1.

    Raises
    ------
    ValueError
        If ``P > 0.5`` (``k > 0.5 sqrt(D / (π dt))``): the rule is first order in ``P`` and is
        not the Collins–Kimball boundary there; use a smaller ``dt``.

    Notes
    -----
    Erban & Chapman (2007), reflect-on-failure scheme with the molecule placed back by mirror
    reflection: a surface that absorbs with probability ``P`` per encounter behaves, for steps
    ``sqrt(2 D dt)`` small against the geometry, as a Robin boundary with
    ``k = P sqrt(D / (π dt))`` to first order in ``P`` (their eq. for the reflecting-then-
    absorbing boundary; Andrews 2009 gives the same leading term and higher-order corrections,
    ``O(P²)``, which are below 1 % of ``k`` for ``P <= 0.02``). The simulator counts an encounter
    both at the end of a step (inside the sphere) and, with the bridge correction, for a path that
    crossed the surface during the step; each encounter gets one Bernoulli(``P``) trial.

    """
    dt = check_number(dt, "dt", "a finite number > 0 s", minimum=0.0, strict=True)
    d_coef = check_number(d_coef, "D", "a finite number > 0 µm²/s", minimum=0.0, strict=True)
    if math.isinf(reactivity):
        return 1.0
    p = reactivity * math.sqrt(math.pi * dt / d_coef)
    if p > 0.5:
        raise ValueError(
            f"reactivity {reactivity:.6g} µm/s with dt = {dt:.3g} s gives an absorption "
            f"probability {p:.3g} per encounter; allowed: <= 0.5 (k <= "
            f"{0.5 * math.sqrt(d_coef / (math.pi * dt)):.4g} µm/s, or a smaller dt)"
        )
    return p
