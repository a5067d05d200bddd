"""Input validation shared by the :mod:`sweeplab.dmf` functions.

Every public function validates its arguments here, before any heavy work, and raises a
:class:`ValueError` that names the offending value and the allowed range. Matrices must hold
real numbers: complex entries (whose imaginary part a float64 conversion would silently drop),
booleans, strings and object arrays are refused, and so are booleans given for a number
(``eta=True`` is a mistake, not a step size of 1).

Finite inputs can still overflow float64 in the products of many layers or in the Hessian
(e.g. layers of size ``1e200``): the functions check their results and raise
:class:`Float64OverflowError` (a :class:`ValueError`) instead of returning ``inf`` or ``nan``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._realnumbers import non_real_reason, to_float64

__all__ = [
    "Float64OverflowError",
    "as_real_array",
    "as_target",
    "as_weights",
    "chain_dims",
    "chain_product",
    "check_finite_result",
    "check_int",
    "check_minimizer",
    "check_nonnegative",
    "check_positive",
    "non_real_reason",
    "relative_residual",
]


class Float64OverflowError(ValueError, OverflowError):
    """Finite inputs whose products, loss or Hessian overflow float64.

    Both a :class:`ValueError` (the :mod:`sweeplab.dmf` contract for bad input) and an
    :class:`OverflowError`.
    """


def as_real_array(value: ArrayLike, what: str) -> NDArray[np.float64]:
    """Return ``value`` as a float64 array, refusing non-real entries by name.

    Raises
    ------
    ValueError
        ``"<what> must be real numbers, got <reason>"`` for complex, boolean, string or object
        entries (see :func:`non_real_reason`), or if the conversion fails.

    """
    array = to_float64(value)
    if isinstance(array, str):
        raise ValueError(f"{what} must be real numbers, got {array}")
    return array


DEFAULT_MINIMIZER_RTOL = 1e-8
"""Default tolerance on ``||W_L⋯W_1 − M||_F / ||M||_F`` for a point to count as a minimizer."""


def as_weights(weights: Sequence[ArrayLike], name: str = "weights") -> list[NDArray[np.float64]]:
    """Return ``weights`` as a list of float64 matrices after checking the shape chain.

    Parameters
    ----------
    weights : sequence of array_like
        Layer matrices ``W_1, ..., W_L``; ``W_i`` has shape ``(d_i, d_{i-1})``.
    name : str
        Name used in error messages.

    Returns
    -------
    list of ndarray
        Float64 copies (or views) of the layers, ``L >= 1`` entries.

    Raises
    ------
    ValueError
        If there are no layers, a layer is not a real array (complex, boolean, string or object
        entries), is not 2-D or has a zero dimension, an entry is not finite, or the chain
        ``W_{i+1}.shape[1] == W_i.shape[0]`` is broken.

    """
    if isinstance(weights, np.ndarray) and weights.ndim != 3:
        raise ValueError(
            f"{name} must be a sequence of 2-D layer matrices; got one array of shape "
            f"{weights.shape}"
        )
    try:
        n_layers = len(weights)
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of 2-D layer matrices, got {type(weights).__name__}"
        ) from None
    if n_layers == 0:
        raise ValueError(f"{name} must contain at least one layer (depth L >= 1), got none")
    out: list[NDArray[np.float64]] = []
    for i, w in enumerate(weights, start=1):
        arr = as_real_array(w, f"{name}: W_{i}")
        if arr.ndim != 2:
            raise ValueError(
                f"{name}: W_{i} must be 2-D (shape (d_{i}, d_{i - 1})), got shape {arr.shape}"
            )
        if min(arr.shape) < 1:
            raise ValueError(f"{name}: W_{i} has an empty dimension, shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{name}: W_{i} has {bad} non-finite entries (nan or inf)")
        if out and arr.shape[1] != out[-1].shape[0]:
            prev = out[-1]
            raise ValueError(
                f"{name}: shape chain broken between W_{i - 1} (shape {prev.shape}) and "
                f"W_{i} (shape {arr.shape}): W_{i} must have {prev.shape[0]} columns "
                f"(d_{i - 1}), it has {arr.shape[1]}"
            )
        out.append(arr)
    return out


def chain_dims(weights: Sequence[NDArray[np.float64]]) -> tuple[int, ...]:
    """Return the full dimension chain ``(d_0, d_1, ..., d_L)`` of validated weights."""
    return (weights[0].shape[1], *(w.shape[0] for w in weights))


def as_target(target: ArrayLike, dims: tuple[int, ...] | None = None) -> NDArray[np.float64]:
    """Return ``target`` as a finite float64 matrix, optionally of shape ``(d_L, d_0)``.

    Parameters
    ----------
    target : array_like
        Target matrix ``M``.
    dims : tuple of int, optional
        Dimension chain ``(d_0, ..., d_L)`` the target must match.

    Raises
    ------
    ValueError
        If ``target`` is not a real array, not 2-D, has non-finite entries, or has the wrong
        shape.

    """
    arr = as_real_array(target, "target")
    if arr.ndim != 2:
        raise ValueError(f"target must be a 2-D matrix of shape (d_L, d_0), got shape {arr.shape}")
    if min(arr.shape) < 1:
        raise ValueError(f"target has an empty dimension, shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("target has non-finite entries (nan or inf)")
    if dims is not None and arr.shape != (dims[-1], dims[0]):
        raise ValueError(
            f"target shape {arr.shape} does not match the weights: expected (d_L, d_0) = "
            f"({dims[-1]}, {dims[0]})"
        )
    return arr


def _largest(arrays: Sequence[NDArray[np.float64]]) -> tuple[float, int]:
    """Largest ``|entry|`` over ``arrays`` and the (1-based) index of the array holding it."""
    tops = [float(np.max(np.abs(a))) for a in arrays]
    i = int(np.argmax(tops))
    return tops[i], i + 1


def check_finite_result(
    value: ArrayLike | Sequence[ArrayLike],
    what: str,
    weights: Sequence[NDArray[np.float64]],
    target: NDArray[np.float64] | None = None,
) -> None:
    """Raise :class:`Float64OverflowError` unless ``value`` (array or list of arrays) is finite.

    ``weights`` (and ``target``) are the finite, validated inputs ``value`` was computed from;
    a non-finite result can then only come from float64 overflow. The message names ``what``
    overflowed and the largest input entry, e.g. ``"weights too large: the Hessian ... overflows
    float64 (max |w| = 1e+200, in W_1); rescale the weights"``.
    """
    parts = value if isinstance(value, list | tuple) else [value]
    if all(np.all(np.isfinite(p)) for p in parts):
        return
    w_max, layer = _largest(weights)
    sizes = f"max |w| = {w_max:.3g}, in W_{layer}"
    if target is not None:
        sizes += f"; max |M| = {float(np.max(np.abs(target))):.3g}"
    inputs = "weights" if target is None else "weights or target"
    raise Float64OverflowError(
        f"{inputs} too large: {what} overflows float64 ({sizes}); rescale the {inputs}"
    )


def chain_product(
    weights: Sequence[NDArray[np.float64]], name: str = "weights"
) -> NDArray[np.float64]:
    """Return ``W_L⋯W_1`` of validated layers, raising if it overflows float64.

    Raises
    ------
    Float64OverflowError
        If the product (or a partial product on the way) is not finite.

    """
    prod = weights[0]
    with np.errstate(over="ignore", invalid="ignore"):
        for w in weights[1:]:
            prod = w @ prod
    if not np.all(np.isfinite(prod)):
        w_max, layer = _largest(weights)
        raise Float64OverflowError(
            f"{name} too large: the product W_L⋯W_1 overflows float64 (max |w| = {w_max:.3g}, "
            f"in W_{layer}); rescale the {name}"
        )
    return prod


def relative_residual(weights: Sequence[NDArray[np.float64]], target: NDArray[np.float64]) -> float:
    """Return ``||W_L⋯W_1 − M||_F / ||M||_F`` (the absolute residual when ``M = 0``).

    Raises :class:`Float64OverflowError` if the product ``W_L⋯W_1`` overflows float64.
    """
    prod = chain_product(weights)
    res = float(np.linalg.norm(prod - target))
    scale = float(np.linalg.norm(target))
    return res / scale if scale > 0 else res


def check_minimizer(
    weights: Sequence[NDArray[np.float64]],
    target: NDArray[np.float64],
    rtol: float = DEFAULT_MINIMIZER_RTOL,
) -> None:
    """Raise ``ValueError`` unless ``weights`` multiply to ``target`` within ``rtol``.

    The test is ``||W_L⋯W_1 − M||_F <= rtol * ||M||_F`` (absolute when ``M = 0``).
    """
    check_positive(rtol, "rtol")
    rel = relative_residual(weights, target)
    if not rel <= rtol:
        raise ValueError(
            "weights are not a minimizer of target: relative residual "
            f"||W_L⋯W_1 − M||_F / ||M||_F = {rel:.3e} exceeds the tolerance rtol = {rtol:.1e}"
        )


def _number(value: object, name: str, allowed: str) -> float:
    """``float(value)`` for a real scalar (not a bool); else ``ValueError`` naming ``name``."""
    reason = non_real_reason(value)
    if reason is None and np.ndim(value) != 0:
        reason = f"an array of shape {np.shape(value)}, not a single number"
    if reason is not None:
        raise ValueError(f"{name} must be {allowed}, got {value!r} ({reason})")
    return float(value)  # type: ignore[arg-type]


def check_positive(value: float, name: str) -> float:
    """Return ``float(value)`` after checking it is a finite real number ``> 0`` (not a bool)."""
    v = _number(value, name, "a finite number > 0")
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_nonnegative(value: float, name: str) -> float:
    """Return ``float(value)`` after checking it is a finite real number ``>= 0`` (not a bool)."""
    v = _number(value, name, "a finite number >= 0")
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_int(value: object, name: str, minimum: int) -> int:
    """Return ``int(value)`` for a Python or numpy integer ``>= minimum`` (bools refused)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r} "
            f"({type(value).__name__}, not an integer)"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
