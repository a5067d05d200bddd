"""Closed-form channel responses: free space (exact), first-order half-space, exact F(∞).

All functions take a :class:`~sweeplab.mcvd.geometry.Geometry` and times in s. Every closed form
here is a sum of terms ``c_k erfc(a_k / sqrt(4 D t))``, so the hitting rate follows by the generic
rule ``f(t) = Σ c_k a_k / sqrt(4π D t³) exp(−a_k² / (4 D t))`` and ``F(∞) = Σ c_k`` (spec §2).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erfc

from .geometry import Geometry

__all__ = [
    "MODELS",
    "absorbed_fraction",
    "erfc_terms",
    "hitting_rate",
    "image_charges",
    "steady_state_fraction",
]

MODELS = ("free", "first-order", "first-order-convolved")


def _times(t: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        bad = arr[~(np.isfinite(arr) & (arr >= 0))].ravel()[:3]
        raise ValueError(f"times must be finite and >= 0 s, got {bad.tolist()}")
    return arr


def erfc_terms(geometry: Geometry, model: str = "first-order") -> list[tuple[float, float]]:
    """Return the ``(c_k, a_k)`` with ``F(t) = Σ c_k erfc(a_k / sqrt(4 D t))`` for a model.

    Parameters
    ----------
    geometry : Geometry
        The channel. With ``wall=False`` every model is the exact free-space result.
    model : {"free", "first-order", "first-order-convolved"}
        ``"free"``: Yilmaz et al. (2014), the RX alone in free space (ignores the wall).
        ``"first-order"``: the paper's half-space form (spec §4); ``"first-order-convolved"``: its
        variant with the exchanged distances in the second erfc of each receiver (spec §4).

    Returns
    -------
    list of (float, float)
        Coefficients ``c_k`` (dimensionless) and distances ``a_k`` (µm, > 0).

    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    rr = geometry.radius
    r0 = geometry.distance
    free = [(rr / r0, r0 - rr)]
    if model == "free" or not geometry.wall:
        return free
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
    return [
        (rr / r0, r0 - rr),
        (-(rr**2) / (r0p * rho), a1),
        (rr / r0p, r0p - rr),
        (-(rr**2) / (r0 * rhop), a2),
    ]


def absorbed_fraction(
    geometry: Geometry, t: ArrayLike, model: str = "first-order"
) -> NDArray[np.float64]:
    """Cumulative fraction ``F(t)`` of released molecules absorbed by the RX up to time ``t``.

    Parameters
    ----------
    geometry : Geometry
        The channel.
    t : array_like
        Times (s), >= 0; any shape. ``F(0) = 0``.
    model : {"free", "first-order", "first-order-convolved"}
        See :func:`erfc_terms`. Exact for ``"free"`` and for ``wall=False``; the half-space forms
        are the paper's first-order approximation (they underestimate absorption near the wall).

    Returns
    -------
    ndarray
        Same shape as ``t``, dimensionless, in ``[0, 1]``.

    """
    tt = _times(t)
    out = np.zeros_like(tt)
    pos = tt > 0
    s = np.sqrt(4.0 * geometry.D * tt[pos])
    for ck, ak in erfc_terms(geometry, model):
        out[pos] += ck * erfc(ak / s)
    return out


def hitting_rate(
    geometry: Geometry, t: ArrayLike, model: str = "first-order"
) -> NDArray[np.float64]:
    """Hitting rate ``f(t) = dF/dt`` (1/s): the absorption probability density in time.

    Parameters
    ----------
    geometry : Geometry
        The channel.
    t : array_like
        Times (s), >= 0; any shape. ``f(0) = 0``.
    model : {"free", "first-order", "first-order-convolved"}
        See :func:`erfc_terms`.

    Returns
    -------
    ndarray
        Same shape as ``t``, in 1/s.

    """
    tt = _times(t)
    out = np.zeros_like(tt)
    pos = tt > 0
    tp = tt[pos]
    four_dt = 4.0 * geometry.D * tp
    pref = 1.0 / np.sqrt(math.pi * four_dt * tp**2)
    for ck, ak in erfc_terms(geometry, model):
        out[pos] += ck * ak * pref * np.exp(-(ak**2) / four_dt)
    return out


def image_charges(
    geometry: Geometry, *, tol: float = 1e-14, max_terms: int = 100_000
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Image-charge series of the two-sphere capacitance problem (spec §5).

    Starts from charge ``r_r`` at ``c`` and ``r_r`` at ``c'``; a charge ``Q`` at ``s`` reflected in
    the sphere of centre ``o`` gives ``−Q r_r/|s − o|`` at ``o + (r_r/|s − o|)² (s − o)``; each
    chain alternates between the two spheres until ``|Q| < tol``.

    Returns
    -------
    charges : ndarray, shape (n,)
        Charges (µm; ``u(x) = Σ Q_k / |x − s_k|`` is dimensionless).
    positions : ndarray, shape (n, 3)
        Their positions (µm).

    """
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


def steady_state_fraction(geometry: Geometry) -> float:
    """Exact long-time absorbed fraction ``F(∞)`` (dimensionless).

    Free space: ``r_r / r_0``. Half-space: the harmonic measure ``u(p)`` of the RX and its image
    (``u = 1`` on both spheres, ``u → 0`` at infinity) from the image-charge series of
    :func:`image_charges`. This is exact (to the series tolerance, 1e-14), unlike the first-order
    form's ``F(∞)``, which underestimates it (spec §5).
    """
    if not geometry.wall:
        return geometry.radius / geometry.distance
    q, s = image_charges(geometry)
    p = np.asarray(geometry.tx)
    return float(np.sum(q / np.linalg.norm(p - s, axis=1)))
