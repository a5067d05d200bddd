"""Exact sharpness at minimizers via the Kronecker-reduced matrix ``K`` (spec §3–§5).

At a minimizer (``W_L⋯W_1 = M``) the Hessian is ``∇²L = 2 J^T J`` with
``J(V) = Σ_i A_i V_i B_i``, so its nonzero eigenvalues are ``2 eig(J J^T) = 2 eig(K)`` with

    K = Σ_i (B_i^T B_i) ⊗ (A_i A_i^T),   of size d_0 d_L × d_0 d_L (column-major vec).

Forming ``K`` costs ``O((d_0 + d_L) Σ_i d_i d_{i-1} + L d_0^2 d_L^2)`` flops and the
eigenproblem ``O(d_0^3 d_L^3)``, both independent of the number of parameters' quadratic size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .products import left_products, right_products
from .validation import (
    DEFAULT_MINIMIZER_RTOL,
    Float64OverflowError,
    as_target,
    as_weights,
    chain_dims,
    check_finite_result,
    check_int,
    check_minimizer,
)

__all__ = [
    "flattest_sharpness",
    "hessian_eigenvalues",
    "kronecker_matrix",
    "sharpness",
    "sharpness_bound",
    "sharpness_closed_form",
    "top_eigenvector",
]

Matrix = NDArray[np.float64]


def _validated(weights: Sequence[ArrayLike], target: ArrayLike | None, rtol: float) -> list[Matrix]:
    ws = as_weights(weights)
    if target is not None:
        check_minimizer(ws, as_target(target, chain_dims(ws)), rtol)
    return ws


def _products(ws: list[Matrix]) -> tuple[list[Matrix], list[Matrix]]:
    """``(left_products, right_products)`` of validated layers, refusing float64 overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        a = left_products(ws)
        b = right_products(ws)
    check_finite_result(a + b, "the products W_L⋯W_{i+1} and W_{i-1}⋯W_1 of the layers", ws)
    return a, b


def _kron(ws: list[Matrix]) -> tuple[Matrix, list[Matrix], list[Matrix]]:
    """``(K, A, B)`` for validated layers, refusing float64 overflow in ``K``."""
    a, b = _products(ws)
    with np.errstate(over="ignore", invalid="ignore"):
        k = _kron_from_products(a, b)
    check_finite_result(k, "the reduced Hessian K = Σ_i (B_i^T B_i) ⊗ (A_i A_i^T)", ws)
    return k, a, b


def _kron_from_products(a: list[Matrix], b: list[Matrix]) -> Matrix:
    n = len(a) - 1
    d0 = b[0].shape[0]
    dl = a[-1].shape[0]
    p = np.stack([b[k].T @ b[k] for k in range(n)])  # B_i^T B_i, (L, d0, d0)
    q = np.stack([a[k + 1] @ a[k + 1].T for k in range(n)])  # A_i A_i^T, (L, dL, dL)
    # Σ_k P_k[a, b] Q_k[c, d] as one GEMM over k, then laid out as kron(P, Q)[(a dL + c),
    # (b dL + d)] (column-major vec of X, X of shape dL x d0)
    s = (p.reshape(n, d0 * d0).T @ q.reshape(n, dl * dl)).reshape(d0, d0, dl, dl)
    k = s.transpose(0, 2, 1, 3).reshape(d0 * dl, d0 * dl)
    return 0.5 * (k + k.T)


def kronecker_matrix(
    weights: Sequence[ArrayLike],
    *,
    target: ArrayLike | None = None,
    rtol: float = DEFAULT_MINIMIZER_RTOL,
) -> Matrix:
    """Return ``K = Σ_i (B_i^T B_i) ⊗ (A_i A_i^T)``, the Hessian at a minimizer reduced.

    ``∇²L(w*) = 2 J^T J`` and ``K = J J^T`` share their nonzero spectrum; ``K`` has size
    ``d_0 d_L``, independent of the hidden widths.

    Parameters
    ----------
    weights : sequence of array_like
        Layers ``W_1..W_L`` of a minimizer (the target is taken to be their product).
    target : array_like, optional
        If given, first check ``||W_L⋯W_1 − M||_F <= rtol ||M||_F``.
    rtol : float
        Relative residual tolerance for that check.

    Returns
    -------
    ndarray, shape (d_0 d_L, d_0 d_L)
        Symmetric positive semidefinite; acts on ``vec(X)`` (column-major) for ``X`` of shape
        ``(d_L, d_0)`` as ``X ↦ Σ_i A_i A_i^T X B_i^T B_i``.

    """
    ws = _validated(weights, target, rtol)
    return _kron(ws)[0]


def hessian_eigenvalues(
    weights: Sequence[ArrayLike],
    *,
    target: ArrayLike | None = None,
    rtol: float = DEFAULT_MINIMIZER_RTOL,
) -> NDArray[np.float64]:
    """Return the ``d_0 d_L`` possibly-nonzero Hessian eigenvalues at a minimizer, ascending.

    All other ``N − d_0 d_L`` eigenvalues of ``∇²L(w*)`` are exactly zero. Raises
    :class:`~sweeplab.dmf.validation.Float64OverflowError` (a ``ValueError``) when the weights
    are so large that the Hessian overflows float64.
    """
    ws = _validated(weights, target, rtol)
    out = 2.0 * np.linalg.eigvalsh(_kron(ws)[0])
    check_finite_result(out, "the Hessian eigenvalues", ws)
    return out


def sharpness(
    weights: Sequence[ArrayLike],
    *,
    target: ArrayLike | None = None,
    rtol: float = DEFAULT_MINIMIZER_RTOL,
) -> float:
    """Return the exact sharpness ``λ_max(∇²L(w*)) = 2 λ_max(K)`` at a minimizer (spec §3).

    Parameters
    ----------
    weights : sequence of array_like
        Layers ``W_1..W_L`` of a minimizer; the target is taken to be ``W_L⋯W_1``.
    target : array_like, optional
        If given, raise ``ValueError`` unless the weights multiply to it within ``rtol``.
    rtol : float
        Relative residual tolerance for that check.

    Returns
    -------
    float
        Largest Hessian eigenvalue of ``||W_L⋯W_1 − M||_F^2`` at ``weights``.

    Raises
    ------
    ValueError
        On invalid weights or target (see :func:`~sweeplab.dmf.validation.as_weights`), if the
        weights are not a minimizer of ``target``, or, as
        :class:`~sweeplab.dmf.validation.Float64OverflowError`, if the weights are so large
        that the layer products or the Hessian overflow float64 (e.g. a layer entry ``1e200``):
        the sharpness is then not representable, and no ``inf`` is returned.

    """
    ws = _validated(weights, target, rtol)
    out = float(2.0 * np.linalg.eigvalsh(_kron(ws)[0])[-1])
    check_finite_result(out, "the sharpness", ws)
    return out


def top_eigenvector(
    weights: Sequence[ArrayLike],
    *,
    target: ArrayLike | None = None,
    rtol: float = DEFAULT_MINIMIZER_RTOL,
) -> list[Matrix]:
    """Return a unit top Hessian eigenvector at a minimizer, as layer-shaped blocks.

    With ``x`` the top unit eigenvector of ``K`` reshaped (column-major) to ``X`` of shape
    ``(d_L, d_0)``, ``V_i = A_i^T X B_i^T / sqrt(λ_max(K))`` (spec §3). The sign is fixed so
    that the largest-magnitude entry of ``x`` is positive; if ``λ_max`` is degenerate the
    eigenvector is one (deterministic) member of the top eigenspace.

    Returns
    -------
    list of ndarray
        Same shapes as ``weights``; ``Σ_i ||V_i||_F^2 = 1``.

    Raises
    ------
    ValueError
        If the Hessian is zero (``λ_max = 0``), where no top direction exists.

    """
    ws = _validated(weights, target, rtol)
    k, a, b = _kron(ws)
    evals, evecs = np.linalg.eigh(k)
    lam = float(evals[-1])
    if not lam > 0:
        raise ValueError(f"the Hessian at weights is zero (λ_max(K) = {lam:.3e}); no top direction")
    x = evecs[:, -1]
    x = x if x[np.argmax(np.abs(x))] > 0 else -x
    d0, dl = b[0].shape[0], a[-1].shape[0]
    xm = x.reshape(d0, dl).T
    scale = 1.0 / np.sqrt(lam)
    return [scale * (a[k + 1].T @ xm @ b[k].T) for k in range(len(ws))]


def sharpness_closed_form(
    weights: Sequence[ArrayLike],
    *,
    target: ArrayLike | None = None,
    rtol: float = DEFAULT_MINIMIZER_RTOL,
) -> float:
    """Return the sharpness at a minimizer from the special-case closed forms of spec §4.

    Cases, checked in this order:

    * all-scalar chain (every ``d_i = 1``) with weights ``w_i`` and ``m = Π w_i``:
      ``2 Σ_i Π_{j≠i} w_j^2`` (``= 2 m^2 Σ_i 1/w_i^2`` when no ``w_i`` is zero);
    * scalar target (``d_0 = d_L = 1``), any hidden widths:
      ``2 Σ_i ||A_i||_2^2 ||B_i||_2^2`` with vector 2-norms;
    * depth 2, any shapes: ``2 (||W_1||_2^2 + ||W_2||_2^2)`` (spectral norms).

    Raises
    ------
    ValueError
        If none of the cases applies (no closed form is known there; use :func:`sharpness`),
        or, as :class:`~sweeplab.dmf.validation.Float64OverflowError`, if the result overflows
        float64.

    """
    ws = _validated(weights, target, rtol)
    dims = chain_dims(ws)
    what = "the closed-form sharpness"
    if all(d == 1 for d in dims):
        w = np.array([x[0, 0] for x in ws])
        with np.errstate(over="ignore"):
            others = np.array([np.prod(np.delete(w, i)) for i in range(w.size)])
            out = float(2.0 * np.sum(others**2))
        check_finite_result(out, what, ws)
        return out
    if dims[0] == 1 and dims[-1] == 1:
        a, b = _products(ws)
        with np.errstate(over="ignore"):
            terms = [np.sum(a[k + 1] ** 2) * np.sum(b[k] ** 2) for k in range(len(ws))]
            out = float(2.0 * np.sum(terms))
        check_finite_result(out, what, ws)
        return out
    if len(ws) == 2:
        with np.errstate(over="ignore"):
            out = float(2.0 * (np.linalg.norm(ws[0], 2) ** 2 + np.linalg.norm(ws[1], 2) ** 2))
        check_finite_result(out, what, ws)
        return out
    raise ValueError(
        f"no closed form for depth L = {len(ws)} with d_0 = {dims[0]}, d_L = {dims[-1]}: "
        "closed forms exist for all-scalar chains, d_0 = d_L = 1, or depth L = 2 (spec §4); "
        "use sharpness() for the general case"
    )


def sharpness_bound(
    weights: Sequence[ArrayLike],
    *,
    target: ArrayLike | None = None,
    rtol: float = DEFAULT_MINIMIZER_RTOL,
) -> float:
    """Return the spectral-norm-sum upper bound (S) ``2 Σ_i ||A_i||_2^2 ||B_i||_2^2`` (spec §5).

    It is ``>=`` :func:`sharpness` at every minimizer, equal to it in the closed-form cases of
    spec §4 and at balanced aligned minimizers, and generally strict for ``L >= 3`` with matrix
    targets (e.g. ``diag(2,1), diag(1,10), diag(2,1)``: exact 402, bound 432). Raises
    :class:`~sweeplab.dmf.validation.Float64OverflowError` (a ``ValueError``) if it overflows
    float64.
    """
    ws = _validated(weights, target, rtol)
    a, b = _products(ws)
    with np.errstate(over="ignore"):
        terms = [
            np.linalg.norm(a[k + 1], 2) ** 2 * np.linalg.norm(b[k], 2) ** 2 for k in range(len(ws))
        ]
        out = float(2.0 * np.sum(terms))
    check_finite_result(out, "the sharpness bound", ws)
    return out


def flattest_sharpness(target: ArrayLike, depth: int) -> float:
    """Return the smallest sharpness over all depth-``L`` minimizers, ``2 L ||M||_2^{2 − 2/L}``.

    Attained at the balanced aligned minimizer (:func:`~sweeplab.dmf.balanced_minimizer`);
    hidden widths do not matter as long as they are ``>= rank M``. For gradient descent with
    step ``η > 2 / flattest_sharpness(M, L)`` no minimizer is linearly stable.

    Parameters
    ----------
    target : array_like
        Target ``M`` of shape ``(d_L, d_0)``.
    depth : int
        Number of layers ``L >= 1``.

    Raises
    ------
    ValueError
        On an invalid target or depth, or, as
        :class:`~sweeplab.dmf.validation.Float64OverflowError`, if the result overflows
        float64.

    """
    m = as_target(target)
    depth = check_int(depth, "depth", 1)
    norm = float(np.linalg.norm(m, 2))
    if depth == 1:
        return 2.0
    try:
        out = 2.0 * depth * norm ** (2.0 - 2.0 / depth)
    except OverflowError:  # float ** float raises instead of returning inf
        out = float("inf")
    if not np.isfinite(out):
        raise Float64OverflowError(
            f"target too large: the flattest sharpness 2 L ||M||_2^(2 − 2/L) overflows float64 "
            f"(||M||_2 = {norm:.3g}, L = {depth}); rescale the target"
        )
    return out
