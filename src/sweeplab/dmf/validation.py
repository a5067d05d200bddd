"""Input validation shared by the :mod:`sweeplab.dmf` functions.

Every public function validates its arguments here, before any heavy work, and raises a
:class:`ValueError` that names the offending value and the allowed range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "as_target",
    "as_weights",
    "chain_dims",
    "check_minimizer",
    "check_positive",
    "relative_residual",
]

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
        If there are no layers, a layer is not 2-D or has a zero dimension, an entry is not
        finite, or the chain ``W_{i+1}.shape[1] == W_i.shape[0]`` is broken.

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
        try:
            arr = np.asarray(w, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: W_{i} is not a real numeric array ({exc})") from None
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
        If ``target`` is not 2-D, has non-finite entries, or has the wrong shape.

    """
    try:
        arr = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"target is not a real numeric array ({exc})") from None
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


def relative_residual(weights: Sequence[NDArray[np.float64]], target: NDArray[np.float64]) -> float:
    """Return ``||W_L⋯W_1 − M||_F / ||M||_F`` (the absolute residual when ``M = 0``)."""
    prod = weights[0]
    for w in weights[1:]:
        prod = w @ prod
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


def check_positive(value: float, name: str) -> float:
    """Return ``float(value)`` after checking it is finite and ``> 0``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v
