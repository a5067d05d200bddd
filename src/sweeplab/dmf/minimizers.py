"""Families of exact minimizers of ``||W_L⋯W_1 − M||_F^2``.

Conventions used throughout :mod:`sweeplab.dmf`:

* ``widths`` = hidden widths ``(d_1, ..., d_{L-1})``; depth ``L = len(widths) + 1``; ``d_0`` and
  ``d_L`` come from the target, which has shape ``(d_L, d_0)``.
* ``dims`` = the full chain ``(d_0, d_1, ..., d_L)``.
* Layer ``W_i`` has shape ``(d_i, d_{i-1})``; random numbers come only from the
  ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .validation import as_target, check_int, check_nonnegative, check_positive

__all__ = [
    "balanced_minimizer",
    "equal_norm_minimizer",
    "gauge_minimizer",
    "gaussian_minimizer",
    "haar_orthogonal",
    "scalar_minimizer",
    "top_balanced_minimizer",
]

Matrix = NDArray[np.float64]


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed)), got "
            f"{type(rng).__name__}"
        )
    return rng


def _check_dims(values: Sequence[int], name: str, min_len: int) -> tuple[int, ...]:
    try:
        out = tuple(values)
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of positive integers, got {values!r}"
        ) from None
    if len(out) < min_len:
        raise ValueError(f"{name} must have at least {min_len} entries, got {len(out)}")
    for i, d in enumerate(out):
        if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1:
            raise ValueError(f"{name}[{i}] must be an integer >= 1, got {d!r}")
    return tuple(int(d) for d in out)


def haar_orthogonal(n: int, rng: np.random.Generator, cols: int | None = None) -> Matrix:
    """Return an ``n × cols`` matrix with orthonormal columns, Haar-distributed.

    QR of a standard Gaussian matrix with the signs of ``diag(R)`` absorbed (Mezzadri 2007).
    ``n >= 1`` and ``cols >= 0`` are integers (``cols`` defaults to ``n``).
    """
    n = check_int(n, "n", 1)
    cols = n if cols is None else check_int(cols, "cols", 0)
    _check_rng(rng)
    z = rng.standard_normal((n, cols))
    q, r = np.linalg.qr(z)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def balanced_minimizer(
    target: ArrayLike,
    widths: Sequence[int],
    *,
    rng: np.random.Generator | None = None,
    rank_rtol: float = 1e-12,
) -> list[Matrix]:
    """Return the balanced aligned minimizer, which attains the flattest sharpness (spec §5).

    With the compact SVD ``M = U Σ V^T`` of rank ``r`` and ``Q_i`` (``d_i × r``) with
    orthonormal columns: ``W_1 = Q_1 Σ^{1/L} V^T``, ``W_i = Q_i Σ^{1/L} Q_{i-1}^T``,
    ``W_L = U Σ^{1/L} Q_{L-1}^T``.

    Parameters
    ----------
    target : array_like
        Target ``M`` of shape ``(d_L, d_0)``.
    widths : sequence of int
        Hidden widths ``(d_1, ..., d_{L-1})``, each ``>= rank M``; empty for depth 1.
    rng : numpy.random.Generator, optional
        If given, the ``Q_i`` are Haar-random; otherwise ``Q_i`` = first ``r`` columns of the
        identity.
    rank_rtol : float
        Singular values ``<= rank_rtol * σ_max`` count as zero.

    Returns
    -------
    list of ndarray
        ``L = len(widths) + 1`` layers with ``W_L⋯W_1 = M`` (to rounding).

    """
    m = as_target(target)
    hidden = _check_dims(widths, "widths", 0)
    if rng is not None:
        _check_rng(rng)
    check_positive(rank_rtol, "rank_rtol")
    depth = len(hidden) + 1
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    r = int(np.count_nonzero(s > rank_rtol * s[0])) if s[0] > 0 else 0
    if hidden and r > min(hidden):
        i = int(np.argmin(hidden)) + 1
        raise ValueError(
            f"rank of target is {r} but hidden width d_{i} = {hidden[i - 1]} is smaller; every "
            "hidden width must be >= rank M for a minimizer to exist"
        )
    u, s, vt = u[:, :r], s[:r], vt[:r]
    root = s ** (1.0 / depth)
    qs: list[Matrix] = [vt.T]  # "Q_0" = V (d_0 x r)
    for d in hidden:
        qs.append(haar_orthogonal(d, rng, r) if rng is not None else np.eye(d, r))
    qs.append(u)  # "Q_L" = U
    return [(qs[i + 1] * root) @ qs[i].T for i in range(depth)]


def gauge_minimizer(
    target: ArrayLike,
    widths: Sequence[int],
    rng: np.random.Generator,
    spread: float,
) -> list[Matrix]:
    """Return a random gauge transform of a balanced minimizer (same product, other sharpness).

    ``W_i → G_i W_i G_{i-1}^{-1}`` with ``G_0 = G_L = I`` and, for each hidden layer,
    ``G_i = U_i diag(exp(s_i)) V_i^T`` with ``U_i, V_i`` Haar-orthogonal and
    ``s_i ~ Uniform(−spread, spread)`` i.i.d.; so ``cond(G_i) <= exp(2 spread)``.
    ``spread = 0`` gives orthogonal gauges, which keep the flattest sharpness.

    Parameters
    ----------
    target : array_like
        Target ``M`` of shape ``(d_L, d_0)``.
    widths : sequence of int
        Hidden widths ``(d_1, ..., d_{L-1})``, each ``>= rank M``.
    rng : numpy.random.Generator
        Source of the ``Q_i`` of the balanced minimizer and of the gauges.
    spread : float
        Half-width ``>= 0`` of the log-singular values of each ``G_i`` (dimensionless).

    """
    _check_rng(rng)
    spread = check_nonnegative(spread, "spread")
    ws = balanced_minimizer(target, widths, rng=rng)
    g_inv_prev: Matrix | None = None
    out = []
    for i, w in enumerate(ws):
        if i < len(ws) - 1:
            d = w.shape[0]
            u, v = haar_orthogonal(d, rng), haar_orthogonal(d, rng)
            s = rng.uniform(-spread, spread, size=d)
            g = (u * np.exp(s)) @ v.T
            g_inv = (v * np.exp(-s)) @ u.T
        else:
            g, g_inv = None, None
        w_new = w if g is None else g @ w
        if g_inv_prev is not None:
            w_new = w_new @ g_inv_prev
        out.append(w_new)
        g_inv_prev = g_inv
    return out


def top_balanced_minimizer(
    target: ArrayLike, widths: Sequence[int], rng: np.random.Generator, spread: float
) -> list[Matrix]:
    """Return an aligned minimizer whose top mode is balanced and whose other modes are not.

    With the compact SVD ``M = U Σ V^T`` of rank ``r`` and Haar ``Q_i`` (``d_i × r``) as in
    :func:`balanced_minimizer`: ``W_i = Q_i diag(w_i) Q_{i−1}^T`` with ``w_{i1} = σ_1^{1/L}``
    and, for the modes ``j >= 2``, ``w_{ij} = σ_j^{1/L} exp(s_{ij})``, ``s_{ij} = spread
    (z_{ij} − mean_i z_{ij})``, ``z ~ Uniform(−1, 1)`` i.i.d. (so ``Π_i w_{ij} = σ_j``).

    The top mode meets the necessary condition of flatness
    (:func:`~sweeplab.dmf.top_mode_products` all ``σ_1^{(L−1)/L}``), but the layers are
    neither Frobenius- nor (for large ``spread``) spectrally balanced. The Hessian eigenvalues
    are ``2 Σ_i Π_{l>i} w_{lj}² Π_{l<i} w_{lk}²`` over the mode pairs ``(j, k)`` (aligned
    layers: ``K`` is diagonal in the modes), so the minimizer is the flattest exactly when no
    pair exceeds ``L σ_1^{2−2/L}``: small spreads give flat, unbalanced minimizers, large ones
    sharp minimizers whose top mode is still balanced. ``spread = 0`` (or rank 1) gives the
    balanced minimizer.

    Parameters
    ----------
    target : array_like
        Target ``M`` of shape ``(d_L, d_0)``.
    widths : sequence of int
        Hidden widths ``(d_1, ..., d_{L-1})``, each ``>= rank M``.
    rng : numpy.random.Generator
        Source of the ``Q_i`` and of ``z``.
    spread : float
        Scale ``>= 0`` of the log-values of the modes ``j >= 2`` (dimensionless).

    Returns
    -------
    list of ndarray
        ``L = len(widths) + 1`` layers with ``W_L⋯W_1 = M`` (to rounding).

    """
    _check_rng(rng)
    spread = check_nonnegative(spread, "spread")
    ws = balanced_minimizer(target, widths, rng=rng)
    depth = len(ws)
    m = as_target(target)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    r = int(np.count_nonzero(s > 1e-12 * s[0])) if s[0] > 0 else 0
    if r < 2 or spread == 0.0 or depth < 2:
        return ws
    z = rng.uniform(-1.0, 1.0, size=(depth, r))
    logs = spread * (z - z.mean(axis=0))
    logs[:, 0] = 0.0
    vals = s[:r] ** (1.0 / depth) * np.exp(logs)  # (L, r); product over layers = σ
    # the bases of the balanced minimizer: Q_0 = V, Q_i (hidden), Q_L = U
    qs: list[Matrix] = [vt[:r].T]
    for w in ws[:-1]:
        qs.append(w @ qs[-1] / s[:r] ** (1.0 / depth))
    qs.append(u[:, :r])
    return [(qs[i + 1] * vals[i]) @ qs[i].T for i in range(depth)]


def gaussian_minimizer(
    dims: Sequence[int], rng: np.random.Generator
) -> tuple[list[Matrix], Matrix]:
    """Return Gaussian factors and their product as the target.

    Parameters
    ----------
    dims : sequence of int
        Full chain ``(d_0, d_1, ..., d_L)``, ``L >= 1``.
    rng : numpy.random.Generator
        Source of the entries; ``W_i`` has i.i.d. ``N(0, 1/d_{i-1})`` entries.

    Returns
    -------
    weights : list of ndarray
        ``W_1..W_L``, ``W_i`` of shape ``(d_i, d_{i-1})``.
    target : ndarray, shape (d_L, d_0)
        ``M = W_L⋯W_1``, so ``weights`` is a minimizer by construction.

    """
    chain = _check_dims(dims, "dims", 2)
    _check_rng(rng)
    ws = [
        rng.standard_normal((chain[i + 1], chain[i])) / np.sqrt(chain[i])
        for i in range(len(chain) - 1)
    ]
    prod = ws[0]
    for w in ws[1:]:
        prod = w @ prod
    return ws, prod


def equal_norm_minimizer(
    dims: Sequence[int], values: ArrayLike, rng: np.random.Generator | None = None
) -> tuple[list[Matrix], Matrix]:
    """Return a minimizer whose layers all share one spectrum, yet which is not the flattest.

    Generalizes ``W_1 = diag(2, 1)``, ``W_2 = diag(1, 2)`` (spec §8: equal spectral norms,
    sharpness 16 against a flattest 8). With ``r = len(values)`` and ``Q_i`` (``d_i × r``,
    orthonormal columns), layer ``i = 1..L`` is ``W_i = Q_i D_i Q_{i-1}^T`` with
    ``D_i = diag(values[(j + i − 1) mod r])_{j=0..r−1}``: every layer has the singular values
    ``values`` (so equal spectral, Frobenius and Schatten norms), the layers are aligned, and
    mode ``j`` of the product is ``σ_j = Π_i values[(j + i − 1) mod r]``. The target is the
    product ``M = Q_L diag(σ) Q_0^T``.

    Never the flattest: a top mode ``j`` sees at least two different values along the chain
    (``L >= 2``, ``r >= 2``, distinct values), so its partial products ``σ_j / D_i[j]`` are not
    all equal, and the rank-one direction ``u_j v_jᵀ`` already gives ``λ_max(K) >
    L σ_1^{2−2/L}`` by the strict AM–GM inequality: ``sharpness > flattest_sharpness``.
    (With a dimension 1, or for depth 2 with ``‖W_i‖₂ = ‖M‖₂^{1/2}``, equal spectral norms do
    force flatness; hence ``r >= 2``.)

    Parameters
    ----------
    dims : sequence of int
        Full chain ``(d_0, d_1, ..., d_L)``, ``L >= 2``, every ``d_i >= r``.
    values : array_like, shape (r,)
        The shared singular values: ``r >= 2`` pairwise distinct positive finite numbers.
    rng : numpy.random.Generator, optional
        If given, the ``Q_i`` are Haar-random; otherwise the first ``r`` columns of the
        identity (then ``dims = (2, 2, 2)``, ``values = (2, 1)`` is the spec's example).

    Returns
    -------
    weights : list of ndarray
        ``W_1..W_L``, ``W_i`` of shape ``(d_i, d_{i-1})``.
    target : ndarray, shape (d_L, d_0)
        Their product.

    Examples
    --------
    >>> import numpy as np
    >>> from sweeplab import dmf
    >>> ws, m = dmf.equal_norm_minimizer((2, 2, 2), [2.0, 1.0])
    >>> [np.diag(w).tolist() for w in ws], np.diag(m).tolist()
    ([[2.0, 1.0], [1.0, 2.0]], [2.0, 2.0])
    >>> dmf.sharpness(ws), dmf.flattest_sharpness(m, 2)
    (16.0, 8.0)

    """
    chain = _check_dims(dims, "dims", 3)
    if rng is not None:
        _check_rng(rng)
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    r = vals.size
    if r < 2:
        raise ValueError(f"values must hold r >= 2 singular values, got {r}")
    if not (np.all(np.isfinite(vals)) and np.all(vals > 0)):
        raise ValueError(f"values must be positive and finite, got {vals.tolist()}")
    if np.unique(vals).size != r:
        raise ValueError(f"values must be pairwise distinct, got {vals.tolist()}")
    if min(chain) < r:
        raise ValueError(
            f"every dimension of dims must be >= len(values) = {r}, got dims = {list(chain)}"
        )
    qs = [haar_orthogonal(d, rng, r) if rng is not None else np.eye(d, r) for d in chain]
    idx = np.arange(r)
    ws = [(qs[i + 1] * vals[(idx + i) % r]) @ qs[i].T for i in range(len(chain) - 1)]
    prod = ws[0]
    for w in ws[1:]:
        prod = w @ prod
    return ws, prod


def scalar_minimizer(
    depth: int, rng: np.random.Generator, low: float = 0.5, high: float = 1.5
) -> tuple[list[Matrix], Matrix]:
    """Return the all-scalar minimizer of spec §6: ``w_i = ±Uniform(low, high)``, ``m = Π w_i``.

    Parameters
    ----------
    depth : int
        Number of layers ``L >= 1``.
    rng : numpy.random.Generator
        Source of magnitudes and (fair) signs.
    low, high : float
        ``0 < low < high``; magnitude range of each scalar weight.

    Returns
    -------
    weights : list of ndarray
        ``L`` arrays of shape ``(1, 1)``.
    target : ndarray, shape (1, 1)
        Their product.

    """
    depth = check_int(depth, "depth", 1)
    _check_rng(rng)
    low = check_positive(low, "low")
    high = check_positive(high, "high")
    if not low < high:
        raise ValueError(f"need low < high, got low = {low}, high = {high}")
    mags = rng.uniform(low, high, size=int(depth))
    signs = rng.choice(np.array([-1.0, 1.0]), size=int(depth))
    w = mags * signs
    return [np.array([[x]]) for x in w], np.array([[np.prod(w)]])
