"""Where the exact model is accepted, and what one of its evaluations costs (numpy-free planning).

The exact model (:mod:`sweeplab.mcvd.exact`) expands the field in ``L`` Legendre modes; near a
plane ``L`` grows like ``6 / μ`` with ``cosh μ = 1 + gap / radius`` (the bispherical parameter of
the RX and its nearest image), i.e. like ``(gap / radius)^(−1/2)``. One time window costs one
dense ``L × L`` solve per contour node, so time grows as ``L³ ~ gap^(−3/2)`` and memory as
``L² ~ 1/gap``: measured (one BLAS thread, default tolerance, 31 nodes) 0.23 s and 46 MiB per
window at ``gap / radius = 1e-3`` (``L = 151``), 4.5 s and 380 MiB at 1e-4 (``L = 441``), 45 s and
1.5 GB at 2e-5 (``L = 965``), and the order cap 1600 beyond.

:data:`MIN_GAP_RATIO` bounds that: the exact model refuses a receiver closer than
``MIN_GAP_RATIO × radius`` to a reflecting plane (5 nm for a 5 µm receiver, the size of the
molecules themselves: the continuum diffusion model does not hold below it anyway). At that gap
the accuracy contract still holds (absolute error of ``F`` about 1e-11 against a run at
``tol = 1e-12``, half-space and a slab with both gaps at the minimum).

This module imports nothing but :mod:`math`, so the sweep can check a channel section and
estimate its points' cost without loading scipy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .geometry import Geometry

__all__ = [
    "MAX_ORDER",
    "MIN_GAP_RATIO",
    "check_exact_gap",
    "exact_order",
    "exact_window_cost",
]

#: Smallest gap between the receiver surface and a reflecting plane, as a fraction of the
#: receiver radius, that the exact model accepts (both planes of a slab).
MIN_GAP_RATIO = 1e-3
#: Largest multipole order the exact model tries before giving up (cost ~ order³ per node).
MAX_ORDER = 1600
#: Contour nodes of one time window at the default tolerance 1e-10 (``exact._nodes_for``).
NODES = 31
#: Fitted cost of one window: seconds per ``node × mode³`` (both orders of the convergence
#: check) plus a fixed part, and bytes per ``node × mode²`` (every temporary of the solve) plus
#: the chunked temporaries (``exact._CHUNK`` complex values, a few at once).
SECONDS_PER_UNIT, SECONDS_FIXED = 2.5e-9, 0.02
BYTES_PER_UNIT, BYTES_FIXED = 96.0, 64.0 * 2**20


def exact_order(gap_ratio: float) -> int:
    """Return the exact model's initial multipole order for ``gap / radius`` (nearest plane).

    Parameters
    ----------
    gap_ratio : float
        Smallest gap between the RX surface and a reflecting plane over the RX radius, > 0.

    Returns
    -------
    int
        ``min(MAX_ORDER, 16 + ceil(6 / μ))`` with ``cosh μ = 1 + gap_ratio``.

    """
    mu = math.acosh(1.0 + gap_ratio)
    return int(min(MAX_ORDER, 16 + math.ceil(6.0 / mu)))


def check_exact_gap(geometry: Geometry) -> None:
    """Refuse a receiver too close to a reflecting plane for the exact model (one line).

    Parameters
    ----------
    geometry : Geometry
        The channel; free space (``wall=False``) is always accepted.

    Raises
    ------
    ValueError
        Naming the gap (µm), the plane and the allowed range ``gap >= MIN_GAP_RATIO × radius``.

    """
    if not geometry.wall:
        return
    least = MIN_GAP_RATIO * geometry.radius
    for gap, plane in ((geometry.gap, "x = 0"), (geometry.far_gap, "x = slab_width")):
        if gap < least * (1.0 - 1e-9):  # to rounding: rx = radius * (1 + ratio) is accepted
            raise ValueError(
                f"gap {gap:.6g} µm between the receiver and the plane {plane} is too small for "
                f"the exact model; allowed: gap >= {least:.6g} µm ({MIN_GAP_RATIO:g} x radius "
                f"{geometry.radius:.6g} µm: its cost grows as gap^-1.5)"
            )


def exact_window_cost(geometry: Geometry) -> tuple[float, float]:
    """Estimated cost of one time window of the exact model (default tolerance).

    Parameters
    ----------
    geometry : Geometry
        The channel; free space costs nothing (closed form).

    Returns
    -------
    seconds : float
        Compute time of the window on one core (s): ``L³`` and ``(L/1.5)³`` per contour node.
    nbytes : float
        Its peak memory (bytes): about five ``nodes × L × L`` complex arrays.

    """
    if not geometry.wall:
        return 0.0, 0.0
    order = exact_order(max(geometry.min_gap, 0.0) / geometry.radius)
    seconds = SECONDS_FIXED + SECONDS_PER_UNIT * NODES * (order**3 + (order / 1.5) ** 3)
    return seconds, BYTES_FIXED + BYTES_PER_UNIT * NODES * order**2
