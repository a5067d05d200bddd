"""Loss, gradient and Hessian-vector product of deep matrix factorization (spec §2).

``L(W) = ||W_L⋯W_1 − M||_F^2`` (no 1/2). All three are valid at any point, not only at
minimizers, and cost ``O((d_0 + d_L) Σ_i d_i d_{i-1})`` flops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .products import left_products, right_products
from .validation import as_target, as_weights, chain_dims, check_finite_result

__all__ = ["gradient", "hvp", "loss"]

Matrix = NDArray[np.float64]


def loss(weights: Sequence[ArrayLike], target: ArrayLike) -> float:
    """Return ``||W_L⋯W_1 − M||_F^2``.

    Parameters
    ----------
    weights : sequence of array_like
        Layers ``W_1..W_L``, ``W_i`` of shape ``(d_i, d_{i-1})``.
    target : array_like
        Target ``M`` of shape ``(d_L, d_0)``.

    Returns
    -------
    float
        The loss (squared Frobenius norm of the residual, units of ``M`` squared).

    Raises
    ------
    ValueError
        On invalid input, or, as :class:`~sweeplab.dmf.validation.Float64OverflowError`, if
        the loss overflows float64 (weights or target too large).

    """
    ws = as_weights(weights)
    m = as_target(target, chain_dims(ws))
    with np.errstate(over="ignore", invalid="ignore"):
        r = right_products(ws)[-1] - m
        out = float(np.vdot(r, r))
    check_finite_result(out, "the loss", ws, m)
    return out


def gradient(weights: Sequence[ArrayLike], target: ArrayLike) -> list[Matrix]:
    """Return ``∇_{W_i} L = 2 A_i^T R B_i^T`` for ``i = 1..L``, with ``R = W_L⋯W_1 − M``.

    Parameters
    ----------
    weights : sequence of array_like
        Layers ``W_1..W_L``.
    target : array_like
        Target ``M`` of shape ``(d_L, d_0)``.

    Returns
    -------
    list of ndarray
        One gradient block per layer, same shapes as ``weights``.

    Raises
    ------
    ValueError
        On invalid input, or, as :class:`~sweeplab.dmf.validation.Float64OverflowError`, if
        the gradient overflows float64 (weights or target too large).

    """
    ws = as_weights(weights)
    m = as_target(target, chain_dims(ws))
    with np.errstate(over="ignore", invalid="ignore"):
        grads = loss_and_gradient_unchecked(ws, m)[1]
    check_finite_result(grads, "the gradient", ws, m)
    return grads


def loss_and_gradient_unchecked(ws: Sequence[Matrix], m: Matrix) -> tuple[float, list[Matrix]]:
    """Return ``(loss, gradient)`` without validating (for inner loops; inputs trusted).

    Non-finite weights propagate to non-finite outputs instead of raising.
    """
    b = right_products(ws)
    r = b[-1] - m
    c = r  # C_L = A_L^T R = R;  C_{i-1} = A_{i-1}^T R = W_i^T C_i
    grads: list[Matrix] = [np.empty(0)] * len(ws)
    for k in range(len(ws) - 1, -1, -1):
        grads[k] = 2.0 * (c @ b[k].T)
        c = ws[k].T @ c
    return float(np.vdot(r, r)), grads


def hvp(
    weights: Sequence[ArrayLike], target: ArrayLike, vectors: Sequence[ArrayLike]
) -> list[Matrix]:
    """Return the Hessian-vector product ``∇²L(W) V`` at any point (spec §2).

    Parameters
    ----------
    weights : sequence of array_like
        Layers ``W_1..W_L``.
    target : array_like
        Target ``M`` of shape ``(d_L, d_0)``.
    vectors : sequence of array_like
        Direction ``V = (V_1..V_L)``, same shapes as ``weights``.

    Returns
    -------
    list of ndarray
        ``(HV)_i = 2 [dA_i^T R B_i^T + A_i^T (JV) B_i^T + A_i^T R dB_i^T]``, same shapes as
        ``weights``; ``JV = Σ_j A_j V_j B_j`` and ``dA_i``, ``dB_i`` are the directional
        derivatives of the partial products.

    Raises
    ------
    ValueError
        On invalid input, or, as :class:`~sweeplab.dmf.validation.Float64OverflowError`, if
        the product overflows float64 (weights, target or vectors too large).

    """
    ws = as_weights(weights)
    dims = chain_dims(ws)
    m = as_target(target, dims)
    vs = as_weights(vectors, name="vectors")
    if [v.shape for v in vs] != [w.shape for w in ws]:
        raise ValueError(
            f"vectors must have the shapes of weights {[w.shape for w in ws]}, got "
            f"{[v.shape for v in vs]}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        out = hvp_unchecked(ws, m, vs)
    check_finite_result(out, "the Hessian-vector product", ws, m)
    return out


def hvp_unchecked(ws: Sequence[Matrix], m: Matrix, vs: Sequence[Matrix]) -> list[Matrix]:
    """Return :func:`hvp` without validating (for Lanczos matvecs; inputs trusted).

    ``ws`` and ``vs`` are float64 layer lists of equal shapes and ``m`` the float64 target.
    """
    dims = [ws[0].shape[1], *(w.shape[0] for w in ws)]
    n = len(ws)
    a = left_products(ws)  # a[i] = A_i, i = 0..L
    b = right_products(ws)  # b[k] = B_{k+1}, b[L] = product
    r = b[-1] - m
    jv = sum(a[k + 1] @ vs[k] @ b[k] for k in range(n))
    # dA[i] = d A_i, i = 0..L: dA_L = 0, dA_i = dA_{i+1} W_{i+1} + A_{i+1} V_{i+1}
    da: list[Matrix] = [np.empty(0)] * (n + 1)
    da[n] = np.zeros((dims[-1], dims[-1]))
    for i in range(n - 1, -1, -1):
        da[i] = da[i + 1] @ ws[i] + a[i + 1] @ vs[i]
    # db[k] = d B_{k+1}: dB_1 = 0, dB_{i} = V_{i-1} B_{i-1} + W_{i-1} dB_{i-1}
    db: list[Matrix] = [np.zeros((dims[0], dims[0]))]
    for k in range(1, n):
        db.append(vs[k - 1] @ b[k - 1] + ws[k - 1] @ db[k - 1])
    out = []
    for k in range(n):
        left = da[k + 1].T @ r + a[k + 1].T @ jv
        out.append(2.0 * (left @ b[k].T + (a[k + 1].T @ r) @ db[k].T))
    return out
