"""Partial products of a layer chain and flattening of parameter lists.

Conventions (spec §1). Layers ``W_1..W_L`` with ``W_i`` of shape ``(d_i, d_{i-1})``;
``A_i = W_L⋯W_{i+1}`` (shape ``(d_L, d_i)``) and ``B_i = W_{i-1}⋯W_1`` (shape
``(d_{i-1}, d_0)``), so that ``W_L⋯W_1 = A_i W_i B_i`` for every ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from .validation import as_real_array

__all__ = ["flatten", "left_products", "right_products", "unflatten"]

Matrix = NDArray[np.float64]


def right_products(weights: Sequence[Matrix]) -> list[Matrix]:
    """Return ``[B_1, ..., B_L, W_L⋯W_1]`` with ``B_i = W_{i-1}⋯W_1`` (``B_1 = I``).

    Parameters
    ----------
    weights : sequence of ndarray
        Validated layers ``W_1..W_L``.

    Returns
    -------
    list of ndarray
        ``L + 1`` matrices; entry ``k`` (0-based) is ``B_{k+1}`` of shape ``(d_k, d_0)``, the
        last entry is the full product of shape ``(d_L, d_0)``. Cost ``O(d_0 Σ d_i d_{i-1})``.

    """
    out = [np.eye(weights[0].shape[1])]
    for w in weights:
        out.append(w @ out[-1])
    return out


def left_products(weights: Sequence[Matrix]) -> list[Matrix]:
    """Return ``[W_L⋯W_1, A_1, ..., A_L]`` with ``A_i = W_L⋯W_{i+1}`` (``A_L = I``).

    Parameters
    ----------
    weights : sequence of ndarray
        Validated layers ``W_1..W_L``.

    Returns
    -------
    list of ndarray
        ``L + 1`` matrices; entry ``i`` is ``A_i`` of shape ``(d_L, d_i)`` (entry 0 is the full
        product). Cost ``O(d_L Σ d_i d_{i-1})``.

    """
    out = [np.eye(weights[-1].shape[0])]
    for w in reversed(weights):
        out.append(out[-1] @ w)
    out.reverse()
    return out


def flatten(arrays: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
    """Concatenate ``vec``-in-C-order of each array into one parameter vector of size N."""
    return np.concatenate([np.ravel(a) for a in arrays])


def unflatten(vector: NDArray[np.float64], shapes: Sequence[tuple[int, int]]) -> list[Matrix]:
    """Split a parameter vector into matrices of the given shapes (inverse of :func:`flatten`).

    Raises
    ------
    ValueError
        If ``vector`` is not real (complex, boolean, string or object entries) or not 1-D of
        length ``Σ prod(shape)``.

    """
    vec = as_real_array(vector, "vector")
    sizes = [int(np.prod(s)) for s in shapes]
    if vec.ndim != 1 or vec.size != sum(sizes):
        raise ValueError(
            f"vector must be 1-D of length {sum(sizes)} (the number of parameters), got "
            f"shape {vec.shape}"
        )
    out = []
    start = 0
    for size, shape in zip(sizes, shapes, strict=True):
        out.append(vec[start : start + size].reshape(shape))
        start += size
    return out
