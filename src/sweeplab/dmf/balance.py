"""Balance of a layer chain, Hessian trace, mode thresholds and GFS sharpness (spec §8).

* :func:`balance`: layer norms, the products ``‖A_i‖₂‖B_i‖₂`` and the imbalances
  ``W_{i+1}ᵀW_{i+1} − W_iW_iᵀ`` (conserved by gradient flow);
* :func:`top_mode_products`: ``‖A_iᵀu_1‖ ‖B_i v_1‖`` on the top mode ``u_1 v_1ᵀ`` of the
  product, all equal to ``σ_1^{(L−1)/L}`` at every flattest minimizer;
* :func:`hessian_trace`: ``tr ∇²L = 2 Σ_i ‖A_i‖_F² ‖B_i‖_F²`` — exact at *every* point, not
  only at minimizers (derivation in its docstring);
* :func:`mode_thresholds`: the largest step size ``1/(L σ_i^{2−2/L})`` at which target mode
  ``i`` can settle at a minimizer;
* :func:`gradient_flow_limit` and :func:`gfs_sharpness`: for scalar chains, the minimizer
  gradient flow reaches from the current weights and its sharpness (the "GFS sharpness" of
  Kreisler et al. 2023).

Conventions as in :mod:`sweeplab.dmf`: ``A_i = W_L⋯W_{i+1}`` and ``B_i = W_{i−1}⋯W_1``
(identity where empty), loss ``L = ‖W_L⋯W_1 − M‖_F²`` with no ½.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .sharpness import _products  # (A, B): A[i] is A_i (1..L), B[k] is B_{k+1} (0..L-1)
from .validation import (
    Float64OverflowError,
    as_real_array,
    as_target,
    as_weights,
    chain_dims,
    check_finite_result,
    check_int,
)

__all__ = [
    "Balance",
    "balance",
    "gfs_sharpness",
    "gradient_flow_limit",
    "hessian_trace",
    "mode_thresholds",
    "top_mode_products",
]

Matrix = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Balance:
    """Norms describing how balanced a chain ``W_1..W_L`` is (arrays are read-only).

    Attributes
    ----------
    spectral_norms : ndarray, shape (L,)
        ``‖W_i‖₂``, ``i = 1..L``.
    frobenius_norms : ndarray, shape (L,)
        ``‖W_i‖_F``.
    product_norms : ndarray, shape (L,)
        ``‖A_i‖₂ ‖B_i‖₂`` with ``A_i = W_L⋯W_{i+1}``, ``B_i = W_{i−1}⋯W_1`` (``‖I‖₂ = 1``
        where empty). At a minimizer, equal entries ``‖M‖₂^{(L−1)/L}`` make it the flattest
        (spec §5).
    imbalance_spectral : ndarray, shape (L − 1,)
        ``‖W_{i+1}ᵀW_{i+1} − W_iW_iᵀ‖₂``, ``i = 1..L−1`` (matrices of shape ``(d_i, d_i)``).
    imbalance_frobenius : ndarray, shape (L − 1,)
        ``‖W_{i+1}ᵀW_{i+1} − W_iW_iᵀ‖_F``.

    """

    spectral_norms: NDArray[np.float64]
    frobenius_norms: NDArray[np.float64]
    product_norms: NDArray[np.float64]
    imbalance_spectral: NDArray[np.float64]
    imbalance_frobenius: NDArray[np.float64]


def _readonly(values: list[float]) -> NDArray[np.float64]:
    arr = np.array(values, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def balance(weights: Sequence[ArrayLike]) -> Balance:
    """Return the layer norms, partial-product norms and imbalances of a chain.

    Parameters
    ----------
    weights : sequence of array_like
        Layers ``W_1..W_L`` (shapes ``(d_i, d_{i−1})``), any point.

    Returns
    -------
    Balance
        Arrays of shape ``(L,)`` (per layer) and ``(L − 1,)`` (per adjacent pair).

    Raises
    ------
    ValueError
        On invalid weights, or (as
        :class:`~sweeplab.dmf.validation.Float64OverflowError`) if a product overflows float64.

    Examples
    --------
    >>> import numpy as np
    >>> from sweeplab import dmf
    >>> b = dmf.balance([np.diag([2.0, 1.0]), np.diag([1.0, 2.0])])
    >>> b.spectral_norms.tolist(), b.product_norms.tolist()
    ([2.0, 2.0], [2.0, 2.0])
    >>> b.imbalance_spectral.tolist()
    [3.0]

    """
    ws = as_weights(weights)
    a, b = _products(ws)
    depth = len(ws)
    spec = [float(np.linalg.norm(w, 2)) for w in ws]
    frob = [float(np.linalg.norm(w)) for w in ws]
    prod = [float(np.linalg.norm(a[i + 1], 2) * np.linalg.norm(b[i], 2)) for i in range(depth)]
    imb_s, imb_f = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(depth - 1):
            d = ws[i + 1].T @ ws[i + 1] - ws[i] @ ws[i].T
            imb_s.append(float(np.linalg.norm(d, 2)) if np.all(np.isfinite(d)) else math.inf)
            imb_f.append(float(np.linalg.norm(d)) if np.all(np.isfinite(d)) else math.inf)
    values = spec + frob + prod + imb_s + imb_f
    if not all(math.isfinite(x) for x in values):
        raise Float64OverflowError("weights too large: a norm of balance() overflows float64")
    return Balance(
        spectral_norms=_readonly(spec),
        frobenius_norms=_readonly(frob),
        product_norms=_readonly(prod),
        imbalance_spectral=_readonly(imb_s),
        imbalance_frobenius=_readonly(imb_f),
    )


def hessian_trace(weights: Sequence[ArrayLike], target: ArrayLike | None = None) -> float:
    """Return the exact trace of the Hessian ``∇²L(W)``, ``2 Σ_i ‖A_i‖_F² ‖B_i‖_F²``.

    Exact at every point, minimizer or not. With ``R = P − M``, ``P = W_L⋯W_1``:
    ``∇²L = 2 JᵀJ + 2 Σ_{ab} R_{ab} ∇²P_{ab}`` with ``J(V) = Σ_i A_i V_i B_i``. The
    Gauss–Newton part has trace ``2 ‖J‖_F² = 2 Σ_i ‖B_iᵀ ⊗ A_i‖_F² = 2 Σ_i ‖A_i‖_F² ‖B_i‖_F²``.
    The residual part has a zero diagonal: ``P`` is linear in each layer, so
    ``∂²P / ∂(W_i)_{jk}² = 0`` for every parameter, and its trace vanishes. Hence the target
    does not enter the trace.

    Parameters
    ----------
    weights : sequence of array_like
        Layers ``W_1..W_L`` (any point).
    target : array_like, optional
        Target ``M`` of shape ``(d_L, d_0)``; only checked (shape, finite) since the trace
        does not depend on it.

    Returns
    -------
    float
        ``tr ∇²L(W)`` (units of ``M`` squared over weights squared); identity factors count
        ``d_L`` and ``d_0``.

    Raises
    ------
    ValueError
        On invalid weights or target, or (as
        :class:`~sweeplab.dmf.validation.Float64OverflowError`) on float64 overflow.

    Examples
    --------
    >>> import numpy as np
    >>> from sweeplab import dmf
    >>> w1, w2 = np.ones((3, 2)), np.ones((1, 3))  # d_0 = 2, d_2 = 1
    >>> dmf.hessian_trace([w1, w2])  # 2 (d_0 ||W_2||_F^2 + d_2 ||W_1||_F^2) = 2 (6 + 6)
    24.0

    """
    ws = as_weights(weights)
    if target is not None:
        as_target(target, chain_dims(ws))
    a, b = _products(ws)
    with np.errstate(over="ignore", invalid="ignore"):
        out = 2.0 * sum(
            float(np.vdot(a[i + 1], a[i + 1])) * float(np.vdot(b[i], b[i])) for i in range(len(ws))
        )
    check_finite_result(out, "the Hessian trace", ws)
    return float(out)


def mode_thresholds(target: ArrayLike, depth: int) -> NDArray[np.float64]:
    """Return the step-size thresholds ``1/(L σ_i^{2−2/L})`` of the target's modes, ascending.

    The flattest minimizer's sharpness restricted to mode ``i`` is ``2 L σ_i^{2−2/L}``, so
    mode ``i`` can settle at a minimizer only if ``η <= 1/(L σ_i^{2−2/L})`` (spec §8).

    Parameters
    ----------
    target : array_like
        Target ``M`` (2-D, finite, not zero).
    depth : int
        Number of layers ``L >= 1``.

    Returns
    -------
    ndarray, shape (r,)
        One threshold per nonzero singular value ``σ_1 >= ... >= σ_r`` (numpy's rank
        tolerance ``σ > σ_1 max(shape) ε``), in that order, hence ascending (units of a step
        size: 1 / (``M`` units)^{2−2/L}).

    Raises
    ------
    ValueError
        On an invalid target (not a finite real 2-D matrix, or zero), or depth (not an
        integer ``>= 1``); as :class:`~sweeplab.dmf.validation.Float64OverflowError` if a
        threshold is not representable.

    Examples
    --------
    >>> import numpy as np
    >>> from sweeplab import dmf
    >>> dmf.mode_thresholds(np.diag([6.0, 5.5, 5.0]), 3).round(5).tolist()
    [0.03057, 0.03433, 0.03899]

    """
    m = as_target(target)
    depth = check_int(depth, "depth", 1)
    s = np.linalg.svd(m, compute_uv=False)
    tol = s[0] * max(m.shape) * np.finfo(np.float64).eps
    s = s[s > tol]
    if s.size == 0:
        raise ValueError("target must have a nonzero singular value, got the zero matrix")
    with np.errstate(over="ignore", divide="ignore"):
        out = 1.0 / (depth * s ** (2.0 - 2.0 / depth))
    if not (np.all(np.isfinite(out)) and np.all(out > 0)):
        raise Float64OverflowError(
            "target out of range: a threshold 1/(L σ^(2−2/L)) is not representable in float64"
        )
    return out


def _scalar_chain(weights: Sequence[ArrayLike], target: ArrayLike) -> tuple[NDArray, float]:
    ws = as_weights(weights)
    if any(w.shape != (1, 1) for w in ws):
        raise ValueError(
            "weights must be a scalar chain (every layer of shape (1, 1)), got shapes "
            f"{[w.shape for w in ws]}"
        )
    m = as_real_array(target, "target")
    if m.size != 1:
        raise ValueError(f"target must be a single number or a (1, 1) matrix, got shape {m.shape}")
    m_val = float(m.reshape(-1)[0])
    if not math.isfinite(m_val):
        raise ValueError(f"target must be finite, got {m_val}")
    return np.array([float(w[0, 0]) for w in ws]), m_val


def _flow_shift(w2: NDArray[np.float64], m: float) -> float:
    """Return ``u`` with ``Π_i sqrt(w_i² + u) = |m|``, ``u >= −min w_i²`` (brentq in log form)."""
    base = float(np.min(w2))
    c = w2 - base  # >= 0, zero at the smallest layer(s)
    if m == 0.0:
        return -base
    log_m = math.log(abs(m))

    def f(s: float) -> float:  # s = w_min² + u > 0; increasing in s
        return 0.5 * float(np.sum(np.log(c + s))) - log_m

    depth = w2.size
    hi = max(abs(m) ** (2.0 / depth), float(np.max(c)), 1e-300)
    while f(hi) < 0:
        hi *= 2.0
    lo = hi
    while f(lo) > 0:
        lo *= 0.5
        if lo == 0.0:  # pragma: no cover - needs |m| below the float64 range
            return -base
    from scipy.optimize import brentq  # lazy: scipy.optimize is slow to import

    s = brentq(f, lo, hi, xtol=1e-300, rtol=4 * np.finfo(np.float64).eps, maxiter=500)
    return s - base


def gradient_flow_limit(weights: Sequence[ArrayLike], target: ArrayLike) -> NDArray[np.float64]:
    """Return the minimizer that gradient flow reaches from a scalar chain, shape ``(L,)``.

    Gradient flow on ``(Π_i w_i − m)²`` conserves every ``w_i² − w_j²``, so it ends at
    ``|w_i^∞| = sqrt(w_i² + u)`` with ``u`` the root of ``Π_i sqrt(w_i² + u) = |m|``
    (monotone in ``u``; solved by ``brentq`` on its logarithm). Signs are kept, except when
    ``sign(Π w) ≠ sign(m)``: then the smallest ``|w_i|`` passes through zero and flips.

    Parameters
    ----------
    weights : sequence of array_like
        Layers of shape ``(1, 1)``: ``w_1..w_L``.
    target : float or array_like of size 1
        Target ``m``.

    Returns
    -------
    ndarray, shape (L,)
        The limit ``w^∞`` (``Π w^∞ = m``).

    Raises
    ------
    ValueError
        On invalid input, if a layer is not ``1 × 1``, or if gradient flow ends at a saddle
        instead of a minimizer: the sign must flip but the smallest ``|w_i|`` is shared by
        several layers (they reach zero together), or ``Π w = 0`` with two zero layers.

    Examples
    --------
    >>> import numpy as np
    >>> from sweeplab import dmf
    >>> dmf.gradient_flow_limit([[[1.0]], [[1.0]]], 4.0).tolist()  # balanced: w_i = 2
    [2.0, 2.0]

    """
    w, m = _scalar_chain(weights, target)
    w2 = w * w
    mag = np.abs(w)
    n_min = int(np.count_nonzero(mag == mag.min()))
    prod_sign = float(np.prod(np.sign(w)))
    flip = m != 0.0 and prod_sign != np.sign(m)
    if flip and n_min > 1:
        raise ValueError(
            "weights: gradient flow ends at a saddle, not a minimizer: sign(Π w) differs from "
            f"sign(target) and the smallest |w_i| = {mag.min():.6g} is shared by {n_min} layers"
        )
    u = _flow_shift(w2, m)
    out = np.sqrt(np.maximum(w2 + u, 0.0))
    signs = np.where(w < 0, -1.0, 1.0)
    if flip:
        k = int(np.argmin(mag))
        signs[k] = math.copysign(1.0, m) * float(np.prod(np.delete(signs, k)))
    return signs * out


def gfs_sharpness(weights: Sequence[ArrayLike], target: ArrayLike) -> float:
    """Return the sharpness of the gradient-flow solution from a scalar chain (GFS sharpness).

    The limit ``w^∞`` of :func:`gradient_flow_limit` is a minimizer; its sharpness is
    ``2 Σ_i Π_{j≠i} (w_j^∞)²`` (``= 2 m² Σ_i 1/(w_i^∞)²`` for ``m ≠ 0``, spec §4).

    Parameters
    ----------
    weights : sequence of array_like
        Layers of shape ``(1, 1)``: ``w_1..w_L``, any point.
    target : float or array_like of size 1
        Target ``m``.

    Returns
    -------
    float
        ``λ_max(∇²L(w^∞))`` (units of ``m`` squared over weights squared).

    Raises
    ------
    ValueError
        As :func:`gradient_flow_limit`.

    Examples
    --------
    >>> import numpy as np
    >>> from sweeplab import dmf
    >>> round(dmf.gfs_sharpness([[[1.0]], [[1.0]], [[1.0]]], 8.0), 9)  # w^∞ = (2, 2, 2)
    96.0

    """
    w = gradient_flow_limit(weights, target)
    w2 = w * w
    total = 0.0
    for i in range(w.size):
        total += float(np.prod(np.delete(w2, i)))
    out = 2.0 * total
    if not math.isfinite(out):
        raise Float64OverflowError("the GFS sharpness overflows float64; rescale the weights")
    return out


def top_mode_products(weights: Sequence[ArrayLike]) -> NDArray[np.float64]:
    """Return ``‖A_iᵀ u_1‖₂ ‖B_i v_1‖₂`` per layer, ``u_1 v_1ᵀ`` the top mode of ``W_L⋯W_1``.

    A necessary condition for flatness (found in ``bench/flatness_balance.py``, proved here):
    with ``P = W_L⋯W_1 = M`` and its top singular pair ``(u_1, v_1)``, ``σ_1 = u_1ᵀ P v_1 =
    (A_iᵀu_1)ᵀ(B_{i+1}v_1) <= a_i b_{i+1}`` (``a_i = ‖A_iᵀu_1‖``, ``b_i = ‖B_i v_1‖``,
    ``a_L = b_1 = 1``), so ``Π_i a_i b_i >= σ_1^{L−1}``; the rank-one direction ``u_1 v_1ᵀ``
    gives ``λ_max(∇²L) >= 2 Σ_i (a_i b_i)² >= 2 L σ_1^{2−2/L}`` (AM–GM). A minimizer is
    therefore the flattest only if every entry equals ``σ_1^{(L−1)/L}``. Not sufficient:
    another direction can be sharper (e.g. ``diag(1, 2)``, ``diag(1, 1/4)``).

    Parameters
    ----------
    weights : sequence of array_like
        Layers ``W_1..W_L`` (any point; the condition concerns minimizers).

    Returns
    -------
    ndarray, shape (L,)
        ``a_i b_i`` for ``i = 1..L`` (units of the product's entries to the power
        ``(L−1)/L`` at a balanced point); zeros if the product is zero. When ``σ_1`` is
        degenerate the pair is numpy's SVD choice; the necessary condition holds for every
        top pair.

    Raises
    ------
    ValueError
        On invalid weights, or (as
        :class:`~sweeplab.dmf.validation.Float64OverflowError`) on float64 overflow.

    Examples
    --------
    >>> import numpy as np
    >>> from sweeplab import dmf
    >>> dmf.top_mode_products([np.diag([1.0, 2.0]), np.diag([1.0, 0.25])]).tolist()
    [1.0, 1.0]

    """
    ws = as_weights(weights)
    a, b = _products(ws)
    p = a[0]  # A_0 = W_L⋯W_1
    if not np.any(p):
        return _readonly([0.0] * len(ws))
    u, _, vt = np.linalg.svd(p)
    u1, v1 = u[:, 0], vt[0]
    out = [
        float(np.linalg.norm(a[i + 1].T @ u1) * np.linalg.norm(b[i] @ v1)) for i in range(len(ws))
    ]
    check_finite_result(out, "the top-mode products", ws)
    return _readonly(out)
