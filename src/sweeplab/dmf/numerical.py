"""Numerical sharpness from Hessian-vector products (independent of the Kronecker reduction).

Used to check :func:`~sweeplab.dmf.sharpness` and, as in edge-of-stability studies, as the
generic way of measuring sharpness: Lanczos (``scipy.sparse.linalg.eigsh``) over an HVP
``LinearOperator``, or a dense Hessian assembled column by column from HVPs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.linalg import LinearOperator, eigsh

from .derivatives import hvp, hvp_unchecked
from .products import flatten, unflatten
from .validation import (
    as_target,
    as_weights,
    chain_dims,
    check_finite_result,
    check_int,
    check_nonnegative,
)

__all__ = ["dense_hessian", "scalar_hessian", "sharpness_numerical"]

MAX_DENSE_PARAMETERS = 4000
"""Largest parameter count for which :func:`dense_hessian` is allowed (N^2 floats in memory)."""


def dense_hessian(weights: Sequence[ArrayLike], target: ArrayLike) -> NDArray[np.float64]:
    """Return the full ``N × N`` Hessian of ``||W_L⋯W_1 − M||_F^2`` built from ``N`` HVPs.

    Rows and columns follow :func:`~sweeplab.dmf.products.flatten` (layers in order, each
    row-major). Symmetrized as ``(H + H^T) / 2``. Allowed for ``N <= 4000``.
    """
    ws = as_weights(weights)
    m = as_target(target, chain_dims(ws))
    shapes = [w.shape for w in ws]
    n = sum(w.size for w in ws)
    if n > MAX_DENSE_PARAMETERS:
        raise ValueError(
            f"dense Hessian needs N <= {MAX_DENSE_PARAMETERS} parameters, got N = {n}; "
            "use method='lanczos'"
        )
    h = np.empty((n, n))
    e = np.zeros(n)
    for j in range(n):
        e[j] = 1.0
        h[:, j] = flatten(hvp(ws, m, unflatten(e, shapes)))
        e[j] = 0.0
    return 0.5 * (h + h.T)


def scalar_hessian(weights: Sequence[ArrayLike], target: ArrayLike) -> NDArray[np.float64]:
    """Return the ``L × L`` Hessian of ``(w_L⋯w_1 − m)^2`` for a chain of ``1 × 1`` layers.

    With ``r = Π w − m``, ``g_i = Π_{k≠i} w_k`` and ``q_ij = Π_{k≠i,j} w_k``,
    ``∇²L = 2 g gᵀ + 2 r Q`` where ``Q_ij = q_ij`` off the diagonal and ``Q_ii = 0``. The
    products are built from prefix and suffix products (no division by ``w_i``), in ``O(L²)``.

    Parameters
    ----------
    weights : sequence of array_like, each of shape (1, 1)
        The scalar layers ``w_1..w_L``.
    target : array_like, shape (1, 1)
        The scalar target ``m``.

    Returns
    -------
    ndarray, shape (L, L)
        The Hessian, symmetric (dimensionless).

    Raises
    ------
    ValueError
        If a layer or the target is not ``1 × 1``, or an entry is not finite.

    Examples
    --------
    >>> h = scalar_hessian([[[2.0]], [[3.0]]], [[5.0]])  # r = 1, g = (3, 2)
    >>> h.tolist()
    [[18.0, 14.0], [14.0, 8.0]]

    """
    ws = as_weights(weights)
    dims = chain_dims(ws)
    if any(d != 1 for d in dims):
        raise ValueError(f"scalar_hessian needs 1 x 1 layers, got the chain dims {dims}")
    m = float(as_target(target, dims)[0, 0])
    return scalar_hessian_unchecked([float(x[0, 0]) for x in ws], m)


def scalar_hessian_unchecked(w: Sequence[float], m: float) -> NDArray[np.float64]:
    """:func:`scalar_hessian` of the scalars ``w`` (length ``L``) and ``m``, without checks."""
    n = len(w)
    left, right = [1.0] * (n + 1), [1.0] * (n + 1)  # Π_{k<i} w_k and Π_{k>=i} w_k
    for i in range(n):
        left[i + 1] = left[i] * w[i]
    for i in range(n - 1, -1, -1):
        right[i] = right[i + 1] * w[i]
    g = np.array([left[i] * right[i + 1] for i in range(n)])
    q = np.zeros((n, n))
    for i in range(n):
        run = left[i]  # Π_{k<i} w_k · Π_{i<k<j} w_k
        for j in range(i + 1, n):
            q[i, j] = q[j, i] = run * right[j + 1]
            run *= w[j]
    return 2.0 * np.outer(g, g) + 2.0 * (left[n] - m) * q


def sharpness_numerical(
    weights: Sequence[ArrayLike],
    target: ArrayLike,
    method: Literal["lanczos", "dense"] = "lanczos",
    *,
    tol: float = 1e-14,
    seed: int = 0,
) -> float:
    """Return ``λ_max(∇²L(W))`` numerically, at any point (not only minimizers).

    Parameters
    ----------
    weights : sequence of array_like
        Layers ``W_1..W_L``.
    target : array_like
        Target ``M`` of shape ``(d_L, d_0)``.
    method : {"lanczos", "dense"}
        ``"lanczos"``: ``eigsh(k=1, which="LA")`` over the HVP as a ``LinearOperator`` with
        relative tolerance ``tol`` and a start vector from ``numpy.random.default_rng(seed)``.
        ``"dense"``: :func:`dense_hessian` and ``numpy.linalg.eigvalsh`` (``N <= 4000``).
    tol : float
        Lanczos convergence tolerance (relative), finite and ``>= 0``; ignored for ``"dense"``.
    seed : int
        Seed of the Lanczos start vector, an integer ``>= 0``; ignored for ``"dense"``.

    Returns
    -------
    float
        The largest (algebraic) Hessian eigenvalue.

    Raises
    ------
    ValueError
        On invalid input, or, as :class:`~sweeplab.dmf.validation.Float64OverflowError`, if a
        Hessian-vector product or the result overflows float64 (weights or target too large).

    """
    if method not in ("lanczos", "dense"):
        raise ValueError(f"method must be 'lanczos' or 'dense', got {method!r}")
    ws = as_weights(weights)
    m = as_target(target, chain_dims(ws))
    if method == "dense":
        out = float(np.linalg.eigvalsh(dense_hessian(ws, m))[-1])
        check_finite_result(out, "the sharpness", ws, m)
        return out
    tol = check_nonnegative(tol, "tol")
    seed = check_int(seed, "seed", 0)
    shapes = [w.shape for w in ws]
    n = sum(w.size for w in ws)
    if n == 1:
        return float(flatten(hvp(ws, m, [np.ones((1, 1))]))[0])

    if all(d == 1 for d in chain_dims(ws)):
        w = [float(x[0, 0]) for x in ws]
        m0 = float(m[0, 0])

        def product(x: NDArray[np.float64]) -> NDArray[np.float64]:
            return _scalar_hvp(w, m0, np.ravel(x))

    else:

        def product(x: NDArray[np.float64]) -> NDArray[np.float64]:
            vs = unflatten(np.ravel(x).astype(np.float64, copy=False), shapes)
            with np.errstate(over="ignore", invalid="ignore"):
                return flatten(hvp_unchecked(ws, m, vs))

    def matvec(x: NDArray[np.float64]) -> NDArray[np.float64]:
        y = product(x)
        check_finite_result(y, "the Hessian-vector product", ws, m)
        return y

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    if n <= 2:
        out = float(np.linalg.eigvalsh(op @ np.eye(n))[-1])
    else:
        v0 = np.random.default_rng(np.random.SeedSequence(seed)).standard_normal(n)
        ncv = min(n - 1, 40)
        vals = eigsh(op, k=1, which="LA", tol=tol, v0=v0, ncv=ncv, return_eigenvectors=False)
        out = float(vals[-1])
    check_finite_result(out, "the sharpness", ws, m)
    return out


def _scalar_hvp(w: list[float], m: float, v: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return ``∇²L v`` for an all-scalar chain ``L = (Π w_i − m)^2`` in ``O(L)`` float ops.

    ``∇L_i = 2 r g_i`` with ``r = Π w − m`` and ``g_i = Π_{k≠i} w_k``, so
    ``(∇²L v)_i = 2 g_i (g · v) + 2 r (dg · v)_i`` where ``dg`` is the directional derivative of
    ``g`` along ``v``; prefix/suffix products and their derivatives avoid dividing by ``w_i``.
    """
    n = len(w)
    vv = [float(x) for x in v]
    left, dleft = [1.0] * (n + 1), [0.0] * (n + 1)  # Π_{k<i} w_k and its derivative
    for i in range(n):
        left[i + 1] = left[i] * w[i]
        dleft[i + 1] = dleft[i] * w[i] + left[i] * vv[i]
    right, dright = [1.0] * (n + 1), [0.0] * (n + 1)  # Π_{k>=i} w_k and its derivative
    for i in range(n - 1, -1, -1):
        right[i] = right[i + 1] * w[i]
        dright[i] = dright[i + 1] * w[i] + right[i + 1] * vv[i]
    r = left[n] - m
    g = [left[i] * right[i + 1] for i in range(n)]
    dg = [dleft[i] * right[i + 1] + left[i] * dright[i + 1] for i in range(n)]
    gv = sum(gi * vi for gi, vi in zip(g, vv, strict=True))
    return np.array([2.0 * (g[i] * gv + r * dg[i]) for i in range(n)])
