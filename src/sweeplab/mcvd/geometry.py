"""Channel geometry: point transmitter, absorbing spherical receiver, reflecting plane(s).

Free space, the half-space ``x >= 0`` (reflecting plane ``x = 0``) or the slab ``0 <= x <= W``
(reflecting planes ``x = 0`` and ``x = W``).

Units throughout :mod:`sweeplab.mcvd`: lengths in µm, times in s, diffusion coefficients in µm²/s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .validation import check_boolean, check_number, non_real_reason, real_array

__all__ = ["Geometry"]

Vector = NDArray[np.float64]


def _point(name: str, value: Sequence[float]) -> tuple[float, float, float]:
    arr = real_array(value, name, "three real coordinates (x, y, z) in µm")
    if arr.shape != (3,):
        raise ValueError(f"{name} must be three coordinates (x, y, z) in µm, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {tuple(arr.tolist())}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _positive(name: str, value: float, unit: str) -> float:
    return check_number(value, name, f"finite and > 0 {unit}", minimum=0.0, strict=True)


def _reactivity(value: object) -> float:
    """Collins–Kimball reactivity ``k`` (µm/s): a real number > 0, ``inf`` allowed."""
    allowed = "a real number > 0 µm/s (math.inf: perfectly absorbing receiver)"
    reason = non_real_reason(value)
    if reason is not None or np.ndim(value) != 0:
        extra = f" ({reason})" if reason is not None else ""
        raise ValueError(f"reactivity must be {allowed}, got {value!r}{extra}")
    k = float(value)  # type: ignore[arg-type]
    if not k > 0.0:  # nan, 0, negative, -inf
        raise ValueError(f"reactivity must be {allowed}, got {value!r}")
    return k


def _slab_width(value: object, radius: float) -> float | None:
    if value is None:
        return None
    if non_real_reason(value) is not None or np.ndim(value) != 0:
        raise ValueError(
            f"slab_width must be None (half-space) or a finite number > 2 * radius = "
            f"{2 * radius:.6g} µm, got {value!r}"
        )
    return check_number(
        value,
        "slab_width",
        f"finite and > 2 * radius = {2 * radius:.6g} µm (the receiver must fit between the planes)",
        minimum=2 * radius,
        strict=True,
    )


@dataclass(frozen=True)
class Geometry:
    """A molecular channel: point TX, absorbing sphere RX, optional reflecting plane(s).

    Parameters
    ----------
    tx : sequence of 3 float
        Transmitter position ``p`` (µm). With ``wall=True`` it must satisfy ``x_T >= 0``.
    rx : sequence of 3 float
        Receiver centre ``c`` (µm). With ``wall=True`` it must satisfy ``x_R > radius``
        (the sphere lies strictly inside the fluid half-space ``x >= 0``).
    radius : float
        Receiver radius ``r_r`` (µm), > 0. The TX must lie strictly outside the RX.
    D : float
        Diffusion coefficient (µm²/s), > 0.
    wall : bool
        ``True``: reflecting plane at ``x = 0`` with fluid in ``x >= 0`` (half-space);
        ``False``: unbounded free space.
    slab_width : float or None
        ``None`` (default): one plane (half-space) if ``wall``. A number ``W`` (µm): a second
        reflecting plane at ``x = W``, fluid in ``0 <= x <= W`` (slab; needs ``wall=True``). Must be
        finite and ``> 2 * radius``; then ``0 <= x_T <= W`` and ``radius < x_R < W − radius``.
    reactivity : float
        Collins–Kimball reactivity ``k`` of the receiver surface (µm/s), ``> 0``:
        ``D ∂c/∂r = k c`` at ``r = radius``. ``math.inf`` (default) is the perfectly absorbing
        receiver (``c = 0`` on it); finite ``k`` is supported by the exact model and the
        simulator (:mod:`sweeplab.mcvd.reactive`), not by the first-order closed forms.

    Raises
    ------
    ValueError
        Naming the offending value and the allowed range, on any invalid input (booleans,
        strings, complex numbers and other non-real types included: ``D=True`` is refused).

    Notes
    -----
    Any gap ``> 0`` is a valid geometry (for the closed forms and the simulator); the exact model
    further needs every gap ``>= MIN_GAP_RATIO × radius`` (1e-3, :mod:`sweeplab.mcvd.limits`),
    checked by :func:`~sweeplab.mcvd.limits.check_exact_gap`.

    """

    tx: tuple[float, float, float]
    rx: tuple[float, float, float]
    radius: float
    D: float
    wall: bool = True
    slab_width: float | None = None
    reactivity: float = math.inf

    def __post_init__(self) -> None:
        tx = _point("tx", self.tx)
        rx = _point("rx", self.rx)
        radius = _positive("radius", self.radius, "µm")
        d = _positive("D", self.D, "µm²/s")
        wall = check_boolean(self.wall, "wall", "reflecting plane x = 0")
        object.__setattr__(self, "tx", tx)
        object.__setattr__(self, "rx", rx)
        object.__setattr__(self, "radius", radius)
        object.__setattr__(self, "D", d)
        object.__setattr__(self, "wall", wall)
        width = _slab_width(self.slab_width, radius)
        if width is not None and not self.wall:
            raise ValueError(
                f"slab_width = {width:.6g} µm needs wall=True (a slab has two reflecting planes); "
                "use slab_width=None for free space"
            )
        object.__setattr__(self, "slab_width", width)
        object.__setattr__(self, "reactivity", _reactivity(self.reactivity))
        r0 = math.dist(tx, rx)
        if r0 <= radius:
            raise ValueError(
                f"tx {tx} must lie strictly outside the receiver: its distance to the RX centre is "
                f"{r0:.6g} µm, must be > radius = {radius:.6g} µm"
            )
        if self.wall:
            if tx[0] < 0:
                raise ValueError(
                    f"tx x-coordinate {tx[0]:.6g} µm is behind the reflecting plane; must be >= 0"
                )
            if rx[0] <= radius:
                raise ValueError(
                    f"receiver crosses or touches the reflecting plane: rx x-coordinate "
                    f"{rx[0]:.6g} µm must be > radius = {radius:.6g} µm "
                    f"(gap {rx[0] - radius:.6g} µm must be > 0)"
                )
        if width is not None:
            if tx[0] > width:
                raise ValueError(
                    f"tx x-coordinate {tx[0]:.6g} µm is beyond the second reflecting plane; "
                    f"must be in [0, slab_width = {width:.6g}] µm"
                )
            if rx[0] >= width - radius:
                raise ValueError(
                    f"receiver crosses or touches the second reflecting plane: rx x-coordinate "
                    f"{rx[0]:.6g} µm must be < slab_width − radius = {width - radius:.6g} µm "
                    f"(gap {width - radius - rx[0]:.6g} µm must be > 0)"
                )

    # --- derived quantities -------------------------------------------------------------
    @property
    def distance(self) -> float:
        """``r_0 = |p − c|``, TX to RX centre (µm)."""
        return math.dist(self.tx, self.rx)

    @property
    def image_rx(self) -> tuple[float, float, float]:
        """Centre of the image receiver ``c' = (−x_R, y_R, z_R)`` (µm)."""
        return (-self.rx[0], self.rx[1], self.rx[2])

    @property
    def image_distance(self) -> float:
        """``r_0' = |p − c'|``, TX to image-RX centre (µm)."""
        return math.dist(self.tx, self.image_rx)

    @property
    def gap(self) -> float:
        """Gap between the RX surface and the plane, ``x_R − r_r`` (µm); inf in free space."""
        return self.rx[0] - self.radius if self.wall else math.inf

    @property
    def far_gap(self) -> float:
        """Gap between the RX surface and the plane ``x = W``, ``W − x_R − r_r`` (µm).

        ``inf`` for a half-space or free space.
        """
        return math.inf if self.slab_width is None else self.slab_width - self.rx[0] - self.radius

    @property
    def min_gap(self) -> float:
        """Smallest gap between the RX surface and a reflecting plane (µm); inf in free space."""
        return min(self.gap, self.far_gap)

    @property
    def is_reactive(self) -> bool:
        """``True`` for a partially absorbing receiver (finite ``reactivity``)."""
        return math.isfinite(self.reactivity)

    @property
    def is_slab(self) -> bool:
        """``True`` for two reflecting planes (``x = 0`` and ``x = slab_width``)."""
        return self.slab_width is not None
