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
    "RULES",
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


#: Rules of :func:`absorption_probability`.
RULES = ("planar", "first-order")
#: ``c(Q)`` of the planar rule, ``ℓ(Q) / σ = sqrt(π/2) / Q − c(Q)`` for ``0 < Q <= 2`` (power
#: series in ``Q``; fitted to the numerical solution of the stationary half-line problem, see
#: :func:`absorption_probability`; fit error < 1e-6, ``ℓ(1) = 0.58260 σ`` and ``ℓ(2) = 0``).
_C_COEF = (0.7089599047898164, -0.035683326571535987, -0.0024328696348564775,
           -0.0001173882610445307, -1.7076122741216646e-05)  # fmt: skip


def _planar_q(kappa: float) -> float:
    """Solve ``sqrt(π/2)/Q − c(Q) = 1/(sqrt(2) κ')`` for ``Q`` in ``(0, 2)`` (bisection)."""
    target = 1.0 / (math.sqrt(2.0) * kappa)
    lo, hi = 0.0, 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        c = sum(cf * mid**i for i, cf in enumerate(_C_COEF))
        if math.sqrt(math.pi / 2.0) / mid - c > target:  # ℓ decreases with Q
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return 0.5 * (lo + hi)


def absorption_probability(
    reactivity: float,
    dt: float,
    d_coef: float,
    *,
    bridge: bool = True,
    rule: str = "planar",
    radius: float | None = None,
) -> float:
    """Probability that an encounter with the receiver surface in one step of ``dt`` absorbs.

    Parameters
    ----------
    reactivity : float
        ``k`` (µm/s), > 0; ``inf`` gives exactly 1.
    dt : float
        Time step (s), > 0.
    d_coef : float
        Diffusion coefficient (µm²/s), > 0.
    bridge : bool
        Encounters include the crossings detected by the Brownian-bridge correction (default);
        ``False``: only moves that end inside the receiver.
    rule : {"planar", "first-order"}
        ``"planar"`` (default): exact for a flat surface (below); ``"first-order"``: its
        small-step limit ``P = k sqrt(π dt / D)`` (no bridge; Erban & Chapman 2007), halved
        with the bridge.
    radius : float, optional
        Receiver radius ``a`` (µm). With the bridge, corrects for the curvature of the sphere:
        ``k`` is replaced by ``k / (1 + sqrt(π/8) σ / a)``, ``σ = sqrt(2 D dt)`` (see Notes).
        ``None``: flat surface.

    Returns
    -------
    float
        ``P`` in ``(0, 1]`` (dimensionless).

    Raises
    ------
    ValueError
        If ``P`` would exceed 1 (without the bridge: ``k sqrt(dt/D) > 1.2137``, where even
        ``P = 1`` absorbs less than ``k``; with the bridge every ``k`` is reachable, and for
        ``"first-order"`` if ``P > 0.5``), or for an unknown rule.

    Notes
    -----
    Flat surface, steps ``σ = sqrt(2 D dt)``, depth ``x, y > 0`` in units of ``σ``. With the
    bridge, the surviving transition density of one step is
    ``φ(x − y) (1 − P e^{−2xy}) + φ(x + y) (1 − P) = φ(x − y) + (1 − 2P) φ(x + y)``
    (``φ`` the standard normal density; a failed trial reflects the molecule), without it
    ``φ(x − y) + (1 − P) φ(x + y)``: both are ``φ(x − y) + (1 − Q) φ(x + y)`` with ``Q = 2P``
    (bridge) or ``Q = P``. Its stationary solution grows as ``x + ℓ(Q)`` far from the surface;
    the Collins–Kimball profile ``x + D/(kσ)`` has the same far field iff
    ``k sqrt(dt/D) = 1 / (sqrt(2) ℓ(Q))``. We solved the half-line integral equation for ``ℓ``
    numerically (Simpson, ``h = σ/30``, domain ``40σ``; ``ℓ(1) = 0.58260``, the known
    ``−ζ(1/2)/sqrt(2π)`` shift of end-of-step absorption, and ``ℓ(2) = 0``, exact absorption)
    and fitted ``ℓ(Q) = sqrt(π/2)/Q − c(Q)``, ``c(Q) = 0.70896 − 0.0357 Q − 0.0024 Q² ...``.
    For small ``Q``: ``Q ≈ k sqrt(π dt/D) / (1 + 1.003 k sqrt(dt/D))``, whose leading term is
    Erban & Chapman's ``P = k sqrt(π dt / D)`` (reflect-on-failure, Phys. Biol. 4 (2007) 16;
    Andrews, Phys. Biol. 6 (2009) 046015 has the same leading term). The first-order rule
    overestimates ``k`` by the relative amount ``≈ k sqrt(dt/D)`` (+11 % at ``k = 100`` µm/s,
    ``dt = 1e-4`` s, ``D = 79.4`` µm²/s). Validity: the surface is flat on the scale ``σ``
    (sphere: corrections of order ``σ / a``, as for the bridge correction itself); measured
    against the exact model in tests/mcvd/test_reactive.py.

    Curvature (sphere of radius ``a``): for small ``P`` the absorbed flux is ``P`` times the
    encounters per step, ``∫_a^∞ (r/a)² q(r) dr`` per unit area with ``q(r)`` the encounter
    probability from radius ``r`` (end inside the ball, or the bridge probability
    ``exp(−(r − a)(ρ − a)/(D dt))`` to an end point at radius ``ρ``), whereas the
    Collins–Kimball flux ``k c`` has no curvature term (it is the local time at the surface).
    Integrating numerically (radial law of the 3-D Gaussian step) gives exactly
    ``(1 + sqrt(π/8) σ/a)`` times the flat value with the bridge (to 1e-12 for
    ``σ/a <= 0.16``), and ``1 − σ²/(3a²)`` without (neglected). So ``k`` is divided by that
    factor before applying the flat rule.

    """
    dt = check_number(dt, "dt", "a finite number > 0 s", minimum=0.0, strict=True)
    d_coef = check_number(d_coef, "D", "a finite number > 0 µm²/s", minimum=0.0, strict=True)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if math.isinf(reactivity):
        return 1.0
    kappa = reactivity * math.sqrt(dt / d_coef)
    if radius is not None and bridge:
        a = check_number(radius, "radius", "a finite number > 0 µm", minimum=0.0, strict=True)
        kappa /= 1.0 + math.sqrt(math.pi / 8.0) * math.sqrt(2.0 * d_coef * dt) / a
    if rule == "first-order":
        p = math.sqrt(math.pi) * kappa * (0.5 if bridge else 1.0)
        if p > 0.5:
            raise ValueError(
                f"reactivity {reactivity:.6g} µm/s with dt = {dt:.3g} s gives a first-order "
                f"absorption probability {p:.3g} per encounter; allowed: <= 0.5 (use "
                "rule='planar' or a smaller dt)"
            )
        return p
    q = _planar_q(kappa)
    if bridge:
        return q / 2.0
    if q > 1.0:
        raise ValueError(
            f"reactivity {reactivity:.6g} µm/s is too large for end-of-step absorption at "
            f"dt = {dt:.3g} s (k sqrt(dt/D) = {kappa:.4g}); allowed: k sqrt(dt/D) <= 1.2137, or "
            "use the bridge correction"
        )
    return q
