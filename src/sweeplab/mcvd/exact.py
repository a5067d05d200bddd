"""Exact channel response near one or two reflecting planes (spec §10, docs/mcvd_exact.md).

Backward (first-passage) formulation: ``w(x; s) = E_x[exp(−s τ)]``, with ``τ`` the first time a
molecule started at ``x`` hits the receiver (RX), solves ``(D ∇² − s) w = 0`` in the fluid,
``w = 1`` on the RX sphere, ``∂w/∂n = 0`` on every reflecting plane and ``w → 0`` far away. So
``w(p; s)`` at the transmitter ``p`` is the Laplace transform of the hitting rate ``f(t)``, and
``F(t) = L⁻¹[w(p; s)/s](t)``.

Reflecting the problem in the plane(s) replaces each plane by images of the RX, all held at
``w = 1``: one image ``(−x_R)`` for a half-space, the periodic row ``±x_R + 2nW`` for a slab of
width ``W``. All centres lie on the line through the RX centre normal to the planes (the *axis*),
so the problem is axisymmetric about it whatever the TX position, and

    w(x; s) = Σ_j Σ_m A_m σ_j^m [k_m(κ r_j) / k_m(κ a)] P_m(cos θ_j),    κ = sqrt(s / D),

where ``(r_j, θ_j)`` are spherical coordinates about centre ``j`` (polar angle from the ``+x``
direction), ``σ_j = +1`` for the RX and its translates, ``−1`` for mirrored copies, ``k_m`` the
modified spherical Bessel functions of the second kind and ``P_m`` Legendre polynomials; one set of
coefficients ``A_m`` serves every centre by the reflection symmetry. Imposing ``w = 1`` on the RX
surface in the Galerkin sense (Legendre projection with Gauss–Legendre quadrature, which is the
re-expansion of the image multipoles about the RX centre) gives one dense ``L × L`` linear system
per ``s``. The ratios ``k_m(κ r)/k_m(κ a)`` are built from the stable upward recurrence of
``z k_m(z)/k_{m−1}(z)``, valid for complex ``κ`` and for ``κ = 0`` (Laplace limit).

Time domain: the Bromwich integral on a hyperbolic contour shared by a window of times
``[t_0, Λ t_0]`` (Weideman & Trefethen, Math. Comp. 76, 2007), trapezoid rule with parameters that
balance discretisation, truncation and round-off errors for a target absolute error.

Truncations are automatic: the multipole order ``L`` is raised until two orders agree to the target
on every time window; the slab's image row is cut where its remaining sum is below the target.
``L`` grows as ``(gap / radius)^(−1/2)``, so the model refuses gaps below
``MIN_GAP_RATIO × radius`` (:mod:`sweeplab.mcvd.limits`, where its cost is estimated).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.special import eval_legendre, roots_legendre

from .geometry import Geometry
from .limits import MAX_ORDER, MIN_GAP_RATIO, check_exact_gap, exact_order
from .reactive import free_space_reactive_fraction, free_space_reactive_rate
from .validation import check_integer, check_number, non_real_reason, real_array, short_repr

__all__ = [
    "DEFAULT_TOL",
    "MAX_ORDER",
    "MIN_GAP_RATIO",
    "ZERO_BOUND",
    "exact_absorbed_fraction",
    "exact_hitting_rate",
    "laplace_hitting",
    "negligible_times",
]

logger = logging.getLogger(__name__)

#: Target absolute error of the exact ``F(t)`` (dimensionless): 1e-10, i.e. a relative error
#: <= 1e-7 wherever ``F > 1e-3``.
DEFAULT_TOL = 1e-10
#: Ratio ``t_max / t_min`` of the times sharing one contour.
WINDOW_RATIO = 20.0
#: Largest number of periods of the slab's image row (reached near t ~ 1e8 s for W ~ 10 µm).
MAX_IMAGES = 200_000
_EPS = float(np.finfo(np.float64).eps)
_CHUNK = 1_000_000  # complex elements per temporary array


# --- geometry on the axis ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Axis:
    """The problem in axis coordinates: ``x`` along the normal, ``rho`` the distance to it."""

    a: float  # RX radius (µm)
    d_coef: float  # D (µm²/s)
    x_rx: float  # RX centre on the axis (µm)
    x_tx: float  # TX axial coordinate (µm)
    rho_tx: float  # TX distance from the axis (µm)
    width: float | None  # slab width W (µm), None for a half-space
    reactivity: float = math.inf  # Collins–Kimball k (µm/s); inf: absorbing (w = 1 on the RX)

    @classmethod
    def of(cls, g: Geometry) -> _Axis:
        return cls(
            a=g.radius,
            d_coef=g.D,
            x_rx=g.rx[0],
            x_tx=g.tx[0],
            rho_tx=math.hypot(g.tx[1] - g.rx[1], g.tx[2] - g.rx[2]),
            width=g.slab_width,
            reactivity=g.reactivity,
        )

    @property
    def min_gap(self) -> float:
        gap = self.x_rx - self.a
        if self.width is not None:
            gap = min(gap, self.width - self.x_rx - self.a)
        return gap

    def images(self, re_kappa_min: float, tol: float) -> tuple[NDArray[np.float64], NDArray]:
        """Image centres (axial coordinate, µm) and orientation signs, RX itself excluded.

        Half-space: the single mirror image ``−x_R``. Slab: ``x_R + 2nW`` (``n ≠ 0``, sign +1)
        and ``−x_R + 2nW`` (sign −1) for ``|n| <= n_max``, with ``n_max`` such that the images left
        out contribute less than ``tol`` to ``w`` (each contributes at most
        ``(a/d) exp(−Re κ (d − a))`` at distance ``d``).
        """
        if self.width is None:
            return np.array([-self.x_rx]), np.array([-1.0])
        w = self.width
        if re_kappa_min <= 0:
            raise ValueError("the slab's image row needs Re(s) > 0 on the whole contour")
        # images left out (|n| > n_max) lie at distance >= d_n = 2 W n_max - W - a from the RX
        # surface and from the TX; 4 of them per period (two rows, both sides)
        q = math.exp(-2.0 * re_kappa_min * w)
        n_max = 1
        while True:
            d_n = 2.0 * w * n_max - w - self.a
            if d_n > self.a:
                tail = 4.0 * self.a / d_n * math.exp(-re_kappa_min * (d_n - self.a)) / (1.0 - q)
                if tail < tol:
                    break
            n_max += 1
            if n_max > MAX_IMAGES:
                raise ValueError(
                    f"slab image row needs more than {MAX_IMAGES} periods: Re sqrt(s/D) = "
                    f"{re_kappa_min:.3g} /µm is too small for slab_width {w:.6g} µm (times too "
                    "long; F -> 1 there)"
                )
        n = np.arange(-n_max, n_max + 1, dtype=np.float64)
        same = self.x_rx + 2.0 * w * n[n != 0]
        mirrored = -self.x_rx + 2.0 * w * n
        centres = np.concatenate([same, mirrored])
        signs = np.concatenate([np.ones(same.size), -np.ones(mirrored.size)])
        return centres, signs


# --- special functions ------------------------------------------------------------------------
def _k_ratio(kappa: NDArray[np.complex128], r: NDArray[np.float64], a: float, order: int):
    """``k_m(κ r) / k_m(κ a)`` for ``m < order``: shape ``kappa.shape + r.shape + (order,)``.

    Uses ``k_0(z) ∝ e^{−z}/z`` and the upward recurrence of ``ρ̂_m(z) = z k_m(z)/k_{m−1}(z)``:
    ``ρ̂_1 = 1 + z``, ``ρ̂_{m+1} = 2m + 1 + z²/ρ̂_m`` (from ``k_{m+1} = k_{m−1} + (2m+1)/z k_m``),
    stable for ``Re z >= 0`` since ``k_m`` is the dominant solution; at ``κ = 0`` it gives
    ``(a/r)^{m+1}``.
    """
    kap = kappa.reshape(kappa.shape + (1,) * r.ndim)
    z = kap * r
    za = kap * a
    ar = a / r
    out = np.empty((*np.broadcast_shapes(z.shape, za.shape), order), dtype=np.complex128)
    cur = ar * np.exp(-kap * (r - a))
    out[..., 0] = cur
    rh = 1.0 + z
    rha = 1.0 + za
    for m in range(1, order):
        cur = cur * ar * (rh / rha)
        out[..., m] = cur
        rh = (2 * m + 1) + z * z / rh
        rha = (2 * m + 1) + za * za / rha
    return out


def _log_derivatives(
    za: NDArray[np.complex128], order: int
) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
    """``z k_n'(z)/k_n(z)`` and ``z i_n'(z)/i_n(z)`` at ``z = κa`` for ``n < order``: (S, order).

    ``k_n``: ``z k_n'/k_n = n − ρ̂_{n+1}(z)`` with the recurrence of :func:`_k_ratio`
    (``ρ̂_1 = 1 + z``). ``i_n`` (modified spherical Bessel function of the first kind, the
    minimal solution of the same recurrence): ``z i_n'/i_n = n + q_n``, ``q_n = z i_{n+1}/i_n``
    by the stable downward recurrence ``q_{n−1} = z² / (q_n + 2n + 1)`` started ``|z| + 50``
    orders above ``order`` from the uniform (Debye) estimate
    ``q_N ≈ z² / (N + 3/2 + sqrt((N + 3/2)² + z²))``. At ``z = 0``: ``−(n + 1)`` and ``n``.
    """
    zz = za * za
    hk = np.empty((za.size, order), dtype=np.complex128)
    rh = 1.0 + za
    for m in range(order):
        hk[:, m] = m - rh
        rh = (2 * m + 3) + zz / rh
    top = order + 50 + math.ceil(float(np.max(np.abs(za))) if za.size else 0.0)
    nu = top + 1.5
    q = zz / (nu + np.sqrt(nu * nu + zz))
    gi = np.empty((za.size, order), dtype=np.complex128)
    for m in range(top, 0, -1):  # q holds q_m; produce q_{m-1}
        if m < order:
            gi[:, m] = m + q
        q = zz / (q + (2 * m + 1))
    gi[:, 0] = q
    return hk, gi


def _robin(ax: _Axis, kappa: NDArray[np.complex128], order: int):
    """Row scaling ``β_n`` (S, order) and right-hand side ``γ`` (S,) of the Robin condition.

    With ``A_n`` the RX coefficients and ``(CA)_n`` the images' field projected on ``P_n`` at
    ``r = a`` (which is ``B_n i_n(κa)`` for the images' regular expansion ``Σ B_n i_n(κr) P_n``),
    ``D ∂w/∂r = k (w − 1)`` per mode gives ``A_n + β_n (CA)_n = γ δ_n0`` with
    ``β_n = (D g_n − k a)/(D h_n − k a)``, ``γ = k a/(k a + D(1 + κa))``, ``h_n = z k_n'/k_n``,
    ``g_n = z i_n'/i_n`` (``z = κa``). ``k → ∞``: ``β_n → 1``, ``γ → 1`` (Dirichlet).
    """
    ka = ax.reactivity * ax.a
    d = ax.d_coef
    hk, gi = _log_derivatives(kappa * ax.a, order)
    beta = (d * gi - ka) / (d * hk - ka)
    gamma = ka / (ka + d * (1.0 + kappa * ax.a))
    return beta, gamma


def _legendre(order: int, c: NDArray[np.float64]) -> NDArray[np.float64]:
    """``P_m(c)`` for ``m < order``: shape ``c.shape + (order,)``."""
    return eval_legendre(np.arange(order), c[..., None])


# --- Laplace domain ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Solution:
    """Multipole solution for a batch of ``s``: ``w = Σ_j Σ_m A_m σ_j^m K̂_m(r_j) P_m(cos θ_j)``."""

    ax: _Axis
    kappa: NDArray[np.complex128]  # (S,) sqrt(s/D), 1/µm
    coef: NDArray[np.complex128]  # (S, L) A_m
    centres: NDArray[np.float64]  # (J,) axial coordinates of the RX (first) and its images
    signs: NDArray[np.float64]  # (J,) orientation signs σ_j

    def field(self, x: ArrayLike, rho: ArrayLike) -> NDArray[np.complex128]:
        """``w`` at points of axial coordinate ``x`` and distance ``rho`` from the axis (µm).

        Returns shape ``(S,) + shape of the points``; valid outside the RX (and its images).
        """
        xa, ra = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(rho, float))
        order = self.coef.shape[1]
        m = np.arange(order)
        out = np.zeros((self.kappa.size, xa.size), dtype=np.complex128)
        step = max(1, _CHUNK // max(1, self.kappa.size * xa.size * order))
        for j0 in range(0, self.centres.size, step):
            cj, sj = self.centres[j0 : j0 + step], self.signs[j0 : j0 + step]
            dx = xa.ravel()[None, :] - cj[:, None]  # (j, P)
            dist = np.hypot(dx, ra.ravel()[None, :])
            basis = _legendre(order, dx / dist) * (sj[:, None, None] ** m)  # (j, P, L)
            k = _k_ratio(self.kappa, dist, self.ax.a, order)  # (S, j, P, L)
            out += np.einsum("sjpm,jpm,sm->sp", k, basis, self.coef)
        return out.reshape((self.kappa.size, *xa.shape))


@functools.lru_cache(maxsize=64)
def _gauss(n_q: int, n_modes: int) -> tuple[NDArray, NDArray, NDArray]:
    """Gauss–Legendre nodes ``u``, ``sqrt(1 − u²)`` and the projection onto ``P_0..P_{n−1}``."""
    u, wq = roots_legendre(n_q)
    n = np.arange(n_modes)
    proj = (2 * n[:, None] + 1) / 2.0 * _legendre(n_modes, u).T * wq[None, :]  # (n, Q)
    return u, np.sqrt(1.0 - u * u), proj


def _modes_needed(d: NDArray[np.float64], a: float, order: int, tol: float) -> NDArray[np.intp]:
    """Multipole modes an image at distance ``d`` from the RX centre needs (non-increasing in d).

    Its coupling of RX mode ``n`` to image mode ``m`` is at most ``C(n+m, n) (a/d)^(n+m+1)
    <= (2a/d)^(n+m)``, so beyond ``d = 4a`` only ``n + m <= log(tol)/log(2a/d)`` matter.
    """
    out = np.full(d.shape, order, dtype=np.intp)
    far = d > 4.0 * a
    k = 1 + np.ceil(np.log(0.01 * tol) / np.log(2.0 * a / d[far])).astype(np.intp)
    out[far] = np.minimum(order, k)
    return out


def _solve(ax: _Axis, s: NDArray[np.complex128], order: int, tol: float) -> _Solution:
    """Solve the Galerkin system for the multipole coefficients at each ``s`` (1-D array)."""
    a = ax.a
    kappa = np.sqrt(s / ax.d_coef)
    re_min = float(np.min(kappa.real)) if kappa.size else 1.0
    centres, signs = ax.images(re_min, 0.1 * tol)
    dist_c = np.abs(centres - ax.x_rx)
    by_distance = np.argsort(dist_c, kind="stable")
    centres, signs, dist_c = centres[by_distance], signs[by_distance], dist_c[by_distance]
    needed = _modes_needed(dist_c, a, order, tol)
    system = np.zeros((s.size, order, order), dtype=np.complex128)
    m_all = np.arange(order)
    i = 0
    while i < centres.size:
        # images i.. share the number of modes of the nearest of them; far ones need few modes,
        # and few Gauss points on the RX surface to project their smooth field
        n_m = int(needed[i])
        n_q = order + 16 if n_m == order else n_m + 8
        step = max(1, _CHUNK // (s.size * n_q * n_m))
        cj, sj = centres[i : i + step], signs[i : i + step]
        i += step
        u, rq, proj = _gauss(n_q, n_m)
        dx = (ax.x_rx + a * u)[None, :] - cj[:, None]  # (j, Q): Gauss points on the RX surface
        dist = np.hypot(dx, a * rq[None, :])
        basis = _legendre(n_m, dx / dist) * (sj[:, None, None] ** m_all[:n_m])  # (j, Q, n_m)
        k = _k_ratio(kappa, dist, a, n_m)  # (S, j, Q, n_m)
        system[:, :n_m, :n_m] += np.matmul(proj, np.einsum("sjqm,jqm->sqm", k, basis))
    rhs = np.zeros((s.size, order, 1), dtype=np.complex128)
    if math.isinf(ax.reactivity):
        rhs[:, 0, 0] = 1.0
    else:  # Collins–Kimball receiver: scale the image rows, reduce the source (_robin)
        beta, gamma = _robin(ax, kappa, order)
        system *= beta[:, :, None]
        rhs[:, 0, 0] = gamma
    system[:, m_all, m_all] += 1.0
    coef = np.linalg.solve(system, rhs)[..., 0]  # (S, L)
    return _Solution(
        ax, kappa, coef, np.concatenate([[ax.x_rx], centres]), np.concatenate([[1.0], signs])
    )


def _laplace(ax: _Axis, s: NDArray[np.complex128], order: int, tol: float) -> NDArray:
    """``w(p; s)`` at the TX for complex ``s`` (1-D array), multipole order ``order``."""
    return _solve(ax, s, order, tol).field(ax.x_tx, ax.rho_tx)


def _initial_order(ax: _Axis) -> int:
    # bispherical parameter of the nearest image: cosh(mu) = (gap + a) / a
    return exact_order(ax.min_gap / ax.a)


def laplace_hitting(
    geometry: Geometry, s: ArrayLike, *, order: int | None = None, tol: float = DEFAULT_TOL
) -> NDArray[np.complex128]:
    """Laplace transform of the exact hitting rate, ``w(p; s) = E[exp(−s τ)]``.

    Parameters
    ----------
    geometry : Geometry
        Half-space, slab or free space; gaps ``>= MIN_GAP_RATIO × radius`` (see
        :func:`exact_absorbed_fraction`).
    s : array_like of complex
        Laplace variable (1/s), any shape; not on the closed negative real axis, except ``s = 0``.
        ``s = 0`` gives ``F(∞)``: the harmonic measure for the half-space, 1 for a slab.
    order : int, optional
        Multipole order ``L >= 1`` (number of Legendre modes); default: raised automatically
        until ``L`` and ``L / 1.5`` agree to ``tol``.
    tol : float
        Target absolute error (truncation of the multipoles and of the slab's image row).

    Returns
    -------
    ndarray of complex
        Same shape as ``s``, dimensionless.

    """
    ax = _Axis.of(geometry)
    tol = _tol(tol)
    check_exact_gap(geometry)
    if order is not None:
        order = check_integer(order, "order", 1)
    reason = non_real_reason(s, allow_complex=True)
    if reason is not None:
        raise ValueError(f"s must be complex or real numbers (1/s), got {short_repr(s)} ({reason})")
    sa = np.asarray(s, dtype=np.complex128)
    flat = sa.ravel()
    if np.any((flat.imag == 0) & (flat.real < 0)) or not np.all(np.isfinite(flat)):
        raise ValueError("s must be finite and off the negative real axis (s = 0 allowed)")
    if not geometry.wall:
        r0, a = geometry.distance, geometry.radius
        kap = np.sqrt(flat / geometry.D)
        w = a / r0 * np.exp(-kap * (r0 - a))
        if geometry.is_reactive:  # Collins–Kimball: times k a / (k a + D (1 + κ a))
            ka = geometry.reactivity * a
            w = w * (ka / (ka + geometry.D * (1.0 + kap * a)))
        return w.reshape(sa.shape)
    out = np.empty(flat.shape, dtype=np.complex128)
    zero = flat == 0
    if np.any(zero):  # F(∞): 1 in a slab (see steady_state_fraction), harmonic measure otherwise
        s0 = np.zeros(1, dtype=np.complex128)
        out[zero] = 1.0 if ax.width is not None else _converged(ax, s0, order, tol)[0]
    if np.any(~zero):
        out[~zero] = _converged(ax, flat[~zero], order, tol)
    return out.reshape(sa.shape)


def _converged(
    ax: _Axis, s: NDArray[np.complex128], order: int | None, tol: float
) -> NDArray[np.complex128]:
    """``w(p; s)`` at a fixed order, or raising the order until ``order / 1.5`` agrees to tol."""
    if order is not None:
        return _laplace(ax, s, int(order), tol)
    n = _initial_order(ax)
    low = _laplace(ax, s, max(4, int(n / 1.5)), tol)
    cur = _laplace(ax, s, n, tol)
    while not float(np.max(np.abs(cur - low))) <= tol:  # nan: refused below, not looped on
        if not np.all(np.isfinite(cur)):
            raise ValueError(f"exact model: w(p; s) is not finite for s = {short_repr(s)}")
        if n >= MAX_ORDER:
            raise ValueError(
                f"exact model did not converge at multipole order {MAX_ORDER} "
                f"(gap {ax.min_gap:.3g} µm too small for radius {ax.a:.3g} µm)"
            )
        n = min(MAX_ORDER, math.ceil(1.5 * n))
        low, cur = cur, _laplace(ax, s, n, tol)
    return cur


# --- numerical inversion ----------------------------------------------------------------------
def _contour(n_nodes: int, ratio: float) -> tuple[float, float, float, float]:
    """Hyperbola ``s(u) = μ (1 + sin(iu − α))``, trapezoid ``u_k = k h``, ``|k| <= n_nodes``.

    For singularities on the negative real axis and ``t ∈ [t_0, Λ t_0]``, the discretisation
    error from the upper edge of the strip of analyticity, ``exp(−π(π − 2α) N / a)``, is balanced
    with the lower edge's ``exp(μ Λ t_0 − 2π α N / a)`` and the truncation's
    ``exp(μ t_0 (1 − sin α cosh(hN)))``, giving ``hN = a(α) =
    arccosh(((π − 2α)Λ + 4α − π) / ((4α − π) sin α))`` and ``μ t_0 = (4πα − π²) N / (a Λ)``;
    ``α`` minimises the larger of that error and the round-off ``ε exp(μ Λ t_0)``.

    Returns
    -------
    alpha, h, mu_t0, log_error
        Contour angle, step, ``μ t_0`` and the natural log of the predicted absolute error
        (relative to the size of the transform near its singularities).

    """

    def a_of(al: float) -> float:
        num = (math.pi - 2 * al) * ratio + 4 * al - math.pi
        return math.acosh(num / ((4 * al - math.pi) * math.sin(al)))

    def log_err(al: float) -> float:
        a = a_of(al)
        return max(
            -math.pi * (math.pi - 2 * al) * n_nodes / a,
            math.log(_EPS) + (4 * math.pi * al - math.pi**2) * n_nodes / a,
        )

    res = minimize_scalar(
        log_err, bounds=(math.pi / 4 + 1e-6, math.pi / 2 - 1e-6), method="bounded"
    )
    al = float(res.x)
    a = a_of(al)
    return al, a / n_nodes, (4 * math.pi * al - math.pi**2) * n_nodes / (a * ratio), float(res.fun)


@functools.lru_cache(maxsize=32)
def _nodes_for(tol: float, ratio: float) -> tuple[int, tuple[float, float, float, float]]:
    for n in range(8, 129, 2):
        par = _contour(n, ratio)
        if par[3] < math.log(0.1 * tol):
            return n, par
    return 128, _contour(128, ratio)


def _windows(t: NDArray[np.float64], ratio: float) -> list[NDArray[np.intp]]:
    """Group sorted positive times into windows ``[t_0, ratio · t_0]`` (indices into ``t``)."""
    out = []
    i = 0
    while i < t.size:
        j = int(np.searchsorted(t, t[i] * ratio, side="right"))
        out.append(np.arange(i, j))
        i = j
    return out


def _invert(
    ax: _Axis, t: NDArray[np.float64], tol: float, cumulative: bool
) -> tuple[NDArray[np.float64], int]:
    """Inverse Laplace transform of ``w/s`` (``cumulative``) or ``w`` at sorted times ``t > 0``."""
    n_nodes, (alpha, h, mu_t0, _) = _nodes_for(tol, WINDOW_RATIO)
    out = np.empty_like(t)
    order = _initial_order(ax)
    k = np.arange(n_nodes + 1)
    weights = np.where(k == 0, 0.5, 1.0)
    for idx in _windows(t, WINDOW_RATIO):
        tw = t[idx]
        mu = mu_t0 / tw[0]
        u = h * k
        s = mu * (1.0 + np.sin(1j * u - alpha))
        ds = mu * np.cos(1j * u - alpha) * weights * (h / math.pi)
        kernel = np.exp(np.outer(tw, s)) * ds  # (T, K)

        def value(n: int, s=s, kernel=kernel) -> NDArray[np.float64]:
            w = _laplace(ax, s, n, tol)
            return np.real(kernel @ (w / s if cumulative else w))

        # accept ``order`` once the answer at ``order`` and at ``order / 1.5`` agree to ``tol``
        low = value(max(4, int(order / 1.5)))
        cur = value(order)
        while True:
            diff = float(np.max(np.abs(cur - low)))
            if not math.isfinite(diff):  # never converges by raising the order: say so now
                raise ValueError(
                    f"exact model: the Laplace inversion overflowed at t = {tw[0]!r} s (contour "
                    f"scale {mu:.3g} /s); allowed: times at which it stays finite, t > ~1e-300 s"
                )
            scale = 1.0 if cumulative else max(1.0, float(np.max(np.abs(cur))))
            if diff <= tol * scale:
                break
            if order >= MAX_ORDER:
                raise ValueError(
                    f"exact model did not converge at multipole order {MAX_ORDER} "
                    f"(gap {ax.min_gap:.3g} µm too small for radius {ax.a:.3g} µm; "
                    f"change {diff:.2e} > tol {tol:.1e})"
                )
            order = min(MAX_ORDER, math.ceil(1.5 * order))
            low, cur = cur, value(order)
        logger.debug(
            "window t in [%.3g, %.3g] s: order %d, %d nodes", tw[0], tw[-1], order, n_nodes
        )
        out[idx] = cur
    return out, order


def check_times(t: ArrayLike) -> NDArray[np.float64]:
    """Return ``t`` as float64 times (s), refusing non-real, non-finite or negative values by name.

    Booleans, complex numbers, strings, ``None`` and object arrays are refused (``t=True`` is
    not a time of 1 s).
    """
    arr = real_array(t, "times", "finite and >= 0 s")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        bad = arr[~(np.isfinite(arr) & (arr >= 0))].ravel()[:3]
        raise ValueError(f"times must be finite and >= 0 s, got {bad.tolist()}")
    return arr


def _tol(tol: float) -> float:
    return check_number(
        tol,
        "tol",
        "a number in [1e-12, 1e-3] (round-off limits the inversion to ~1e-12)",
        minimum=1e-12,
        maximum=1e-3,
    )


#: ``F`` and ``f`` are returned as 0 without any Laplace solve where a bound on both is below this
ZERO_BOUND = 1e-300


def negligible_times(g: Geometry, t: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Return where ``t > 0`` (s) is so small that ``F(t)`` and ``f(t)`` are below 1e-300.

    Parameters
    ----------
    g : Geometry
        The channel (any: free space, half-space, slab).
    t : ndarray
        Times (s), >= 0.

    Returns
    -------
    ndarray of bool
        Same shape as ``t``.

    Notes
    -----
    With ``d = r_0 − r_r`` the distance from the TX to the RX surface, a molecule absorbed by
    ``t`` has moved ``d`` away from the TX (the fold at the planes does not lengthen paths), so
    one coordinate of a free Brownian motion moved ``d/√3``: ``F(t) <= 6 erfc(d/√(12Dt))
    <= 6 exp(−d²/(12Dt))`` (reflection principle). Long before the first arrivals ``f`` rises,
    so ``f(t) <= F(2t)/t``. Both are below :data:`ZERO_BOUND` where ``6 exp(−d²/(24Dt))/t`` is;
    this covers every subnormal time (< 2.2e-308 s) of any geometry with ``d > 1e-150`` µm, and
    there the contour of the inversion would overflow.

    """
    d = math.dist(g.tx, g.rx) - g.radius
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # t = 0: nan, masked
        log_bound = math.log(6.0) - d * d / (24.0 * g.D * t) - np.log(t)
    return (t > 0) & (log_bound < math.log(ZERO_BOUND))


def _exact(g: Geometry, t: ArrayLike, tol: float, cumulative: bool) -> NDArray[np.float64]:
    tt = check_times(t)
    tol = _tol(tol)
    check_exact_gap(g)
    if not g.wall and g.is_reactive:  # free space, Collins–Kimball receiver: closed form
        return (free_space_reactive_fraction if cumulative else free_space_reactive_rate)(g, tt)
    if not g.wall:  # free space, absorbing receiver: the closed form is exact (the multipole
        # solver always adds the plane's image: it computed the half-space here)
        from .analytic import absorbed_fraction, hitting_rate

        return (absorbed_fraction if cumulative else hitting_rate)(g, tt, model="free")
    out = np.zeros_like(tt)
    pos = (tt > 0) & ~negligible_times(g, tt)  # F, f < 1e-300: 0 without solving
    if not np.any(pos):
        return out
    uniq, inverse = np.unique(tt[pos], return_inverse=True)
    vals, _ = _invert(_Axis.of(g), uniq, tol, cumulative)
    # both are probabilities (densities): round-off of size <= tol can make them slightly negative
    out[pos] = np.maximum(vals[inverse], 0.0)
    return out


def exact_absorbed_fraction(
    geometry: Geometry, t: ArrayLike, *, tol: float = DEFAULT_TOL
) -> NDArray[np.float64]:
    """Exact cumulative absorbed fraction ``F(t)`` near one or two reflecting planes.

    Parameters
    ----------
    geometry : Geometry
        Half-space (``wall=True``), slab (``slab_width`` set) or free space (exact closed form
        used directly by :func:`sweeplab.mcvd.absorbed_fraction`). Any ``reactivity`` (µm/s):
        finite ``k`` is the Collins–Kimball receiver (in free space its closed form,
        :func:`sweeplab.mcvd.reactive.free_space_reactive_fraction`). Every gap between the RX and
        a reflecting plane must be ``>= MIN_GAP_RATIO × radius`` (1e-3 × radius, see
        :mod:`sweeplab.mcvd.limits`: the cost grows as ``gap^−1.5``).
    t : array_like
        Times (s), >= 0, any shape; ``F(0) = 0``, and 0 without any computation where ``F`` and
        ``f`` are below 1e-300 (subnormal times included, see :func:`negligible_times`).
    tol : float
        Target absolute error (dimensionless), in ``[1e-12, 1e-3]``; the default 1e-10 gives a
        relative error <= 1e-7 wherever ``F > 1e-3``.

    Returns
    -------
    ndarray
        Same shape as ``t``, dimensionless.

    Raises
    ------
    ValueError
        For a gap below the minimum (naming it and the allowed range), a time or ``tol`` out
        of range.

    """
    return _exact(geometry, t, tol, cumulative=True)


def exact_hitting_rate(
    geometry: Geometry, t: ArrayLike, *, tol: float = DEFAULT_TOL
) -> NDArray[np.float64]:
    """Exact hitting rate ``f(t) = dF/dt`` (1/s); see :func:`exact_absorbed_fraction`.

    ``tol`` is the target absolute error in units of ``max(1, max f)`` (1/s).
    """
    return _exact(geometry, t, tol, cumulative=False)
