"""Compiled gradient-descent kernels of the escape experiment (numba).

Kept apart from :mod:`sweeplab.dmf.escape` so that the numerical core is small and its contract
explicit. :func:`escape_runs` advances each run of a batch on its own, one GD step at a time,
from ``w_0`` until it diverges, converges or reaches ``max_steps``, with the outcome monitors of
the :mod:`~sweeplab.dmf.escape` module docstring evaluated inside the loop (escape step,
divergence, convergence, checkpoints, loss envelope, ring buffers and the dense window around
the escape step). The classification of the monitored tail stays in Python
(:meth:`sweeplab.dmf.escape._Tail.classify`), shared with the reference paths.

Arithmetic. Parameters are flat float64 vectors in the order of
:func:`~sweeplab.dmf.flatten` (layer ``W_1`` first, each row-major).

* All-scalar chains: the same operations in the same order as the stacked numpy reference
  (prefix and suffix products by sequential multiplication, ``r = (Π_{j<L} w_j) w_L − m``,
  ``g_i = (prefix_i suffix_i)(2r)``, ``w ← w − (η g)``), so the iterates are bit-identical to
  :func:`~sweeplab.dmf.escape_batch`'s numpy path. O(L) per step.
* Matrix chains: forward products ``B_{k+1} = W_k B_k``, residual ``R = B_L − M``, backward
  ``C ← W_k^T C`` with ``G_k = 2 C B_k^T``, written as plain loops into preallocated buffers
  (no temporaries per step). Sums run in index order, so they round differently from the BLAS
  ``matmul`` of the numpy path (agreement to rounding, not bitwise).

Squared norms and projections are sequential sums in the kernel and numpy reductions in the
reference: they agree to rounding.

:func:`square_hvp` is the Hessian-vector product of ``d × d`` chains behind the final Lanczos
sharpness of :mod:`~sweeplab.dmf.escape` (compiled: the numpy HVP's per-call overhead
dominated that Lanczos once GD itself was compiled).

Compilation: every function is cached on disk (``cache=True``); numba compiles one version of
:func:`escape_runs` per chain kind (scalar, general, and each ``d × d`` width), about 6 s each
on first use. An array's numba type includes its layout and read-only flag, so callers pass
writable C-contiguous arrays only (``escape._kernel_array``); otherwise one chain kind compiled
up to four versions.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["CONVERGED", "DIVERGED", "RUNNING", "escape_runs", "square_hvp"]

DIVERGED, CONVERGED, RUNNING = 1, 2, 3
"""Status codes of a finished run (same values as :mod:`sweeplab.dmf.escape`)."""


@numba.njit(cache=True, nogil=True)
def _scalar_loss_grad(
    p: np.ndarray, m: float, left: np.ndarray, right: np.ndarray, grad: np.ndarray
) -> float:
    """Loss ``r^2`` and gradient of an all-scalar chain ``p`` (shape ``(L,)``) into ``grad``."""
    depth = p.shape[0]
    left[0] = 1.0
    for i in range(1, depth):
        left[i] = left[i - 1] * p[i - 1]
    right[depth - 1] = 1.0
    for i in range(depth - 2, -1, -1):
        right[i] = right[i + 1] * p[i + 1]
    r = left[depth - 1] * p[depth - 1] - m
    two_r = 2.0 * r
    for i in range(depth):
        grad[i] = (left[i] * right[i]) * two_r
    return r * r


@numba.njit(cache=True, nogil=True)
def _matrix_loss_grad(
    p: np.ndarray,
    m: np.ndarray,
    dims: np.ndarray,
    offs: np.ndarray,
    fwd: np.ndarray,
    foffs: np.ndarray,
    cbuf: np.ndarray,
    grad: np.ndarray,
) -> float:
    """Loss ``||B_L − M||_F^2`` and gradient of a matrix chain into ``grad``.

    ``p``: flat layers, ``W_k`` (shape ``(d_{k+1}, d_k)``) at ``offs[k]``; ``m`` flat target
    ``(d_L, d_0)``; ``fwd`` holds ``B_{k+1} = W_k⋯W_0`` (shape ``(d_{k+1}, d_0)``) at
    ``foffs[k]``; ``cbuf`` (shape ``(2, max_k d_k · d_0)``) holds ``C`` and its successor.
    Every sum runs in index order from ``0.0``.
    """
    n_layers = dims.shape[0] - 1
    d0 = dims[0]
    # B_1 = W_0
    for a in range(dims[1] * d0):
        fwd[a] = p[a]
    for k in range(1, n_layers):
        rows, inner = dims[k + 1], dims[k]
        wo, bo, no = offs[k], foffs[k - 1], foffs[k]
        for a in range(rows):
            for c in range(d0):
                s = 0.0
                for b in range(inner):
                    s += p[wo + a * inner + b] * fwd[bo + b * d0 + c]
                fwd[no + a * d0 + c] = s
    # R = B_L − M, loss = Σ R^2
    lo = foffs[n_layers - 1]
    loss = 0.0
    for a in range(dims[n_layers] * d0):
        r = fwd[lo + a] - m[a]
        cbuf[0, a] = r
        loss += r * r
    cur = 0
    for k in range(n_layers - 1, 0, -1):
        rows, cols = dims[k + 1], dims[k]
        go, bo, wo = offs[k], foffs[k - 1], offs[k]
        nxt = 1 - cur
        # G_k = 2 C B_k^T, C of shape (d_{k+1}, d0), B_k of shape (d_k, d0)
        for a in range(rows):
            for b in range(cols):
                s = 0.0
                for c in range(d0):
                    s += cbuf[cur, a * d0 + c] * fwd[bo + b * d0 + c]
                grad[go + a * cols + b] = 2.0 * s
        # C <- W_k^T C, shape (d_k, d0)
        for b in range(cols):
            for c in range(d0):
                s = 0.0
                for a in range(rows):
                    s += p[wo + a * cols + b] * cbuf[cur, a * d0 + c]
                cbuf[nxt, b * d0 + c] = s
        cur = nxt
    for a in range(dims[1] * d0):
        grad[a] = 2.0 * cbuf[cur, a]
    return loss


@numba.njit(cache=True, nogil=True)
def _square_loss_grad(
    p: np.ndarray,
    m: np.ndarray,
    width: tuple[int, ...],
    n_layers: int,
    fwd: np.ndarray,
    cbuf: np.ndarray,
    grad: np.ndarray,
) -> float:
    """:func:`_matrix_loss_grad` for a chain of ``d × d`` layers, ``d = len(width)``.

    The width is the length of a tuple, a compile-time constant: numba compiles one version
    per ``d`` with fully unrolled inner loops. Same operations in the same order as
    :func:`_matrix_loss_grad` (bit-identical results).
    """
    d = len(width)
    dd = d * d
    for a in range(dd):
        fwd[a] = p[a]
    for k in range(1, n_layers):
        wo, bo, no = k * dd, (k - 1) * dd, k * dd
        for a in range(d):
            for c in range(d):
                s = 0.0
                for b in range(d):
                    s += p[wo + a * d + b] * fwd[bo + b * d + c]
                fwd[no + a * d + c] = s
    lo = (n_layers - 1) * dd
    loss = 0.0
    for a in range(dd):
        r = fwd[lo + a] - m[a]
        cbuf[0, a] = r
        loss += r * r
    cur = 0
    for k in range(n_layers - 1, 0, -1):
        wo, bo = k * dd, (k - 1) * dd
        nxt = 1 - cur
        for a in range(d):
            for b in range(d):
                s = 0.0
                for c in range(d):
                    s += cbuf[cur, a * d + c] * fwd[bo + b * d + c]
                grad[wo + a * d + b] = 2.0 * s
        for b in range(d):
            for c in range(d):
                s = 0.0
                for a in range(d):
                    s += p[wo + a * d + b] * cbuf[cur, a * d + c]
                cbuf[nxt, b * d + c] = s
        cur = nxt
    for a in range(dd):
        grad[a] = 2.0 * cbuf[cur, a]
    return loss


@numba.njit(cache=True, nogil=True)
def _dot_diff(p: np.ndarray, ps: np.ndarray, v: np.ndarray) -> float:
    s = 0.0
    for i in range(p.shape[0]):
        s += (p[i] - ps[i]) * v[i]
    return s


@numba.njit(cache=True, nogil=True)
def escape_runs(
    scalar: bool,
    square: tuple[int, ...],
    p0: np.ndarray,
    p_star: np.ndarray,
    v1: np.ndarray,
    vn: np.ndarray,
    target: np.ndarray,
    dims: np.ndarray,
    etas: np.ndarray,
    loss_tol: np.ndarray,
    escape_radius: float,
    divergence_norm: float,
    max_steps: int,
    checkpoints: np.ndarray,
    t_blocks: int,
    block: int,
    t_ring: int,
    lead: int,
    status: np.ndarray,
    steps: np.ndarray,
    esc: np.ndarray,
    final_loss: np.ndarray,
    final_dist: np.ndarray,
    final_p: np.ndarray,
    traj: np.ndarray,
    bmax: np.ndarray,
    loss_ring: np.ndarray,
    proj_ring: np.ndarray,
    win_start: np.ndarray,
    win: np.ndarray,
) -> int:
    """Run ``n`` gradient-descent escape runs to their end, with the outcome monitors.

    Runs are independent; run ``j`` uses row ``j`` of every per-run input, or row 0 of a
    shared input (``p_star``, ``v1``, ``vn``, ``target``, ``loss_tol`` with one row).

    Parameters
    ----------
    scalar : bool
        All-scalar chain (prefix/suffix products) or matrix chain.
    square : tuple of int
        ``()`` for the general matrix code; for a chain of ``d × d`` layers any tuple of
        length ``d`` selects the version compiled for that width (:func:`_square_loss_grad`).
    p0 : ndarray, shape (n, N)
        Starting points ``w_0 = w* + r v_1``, flat.
    p_star, v1, vn : ndarray, shape (n or 1, N)
        Minimizer ``w*``, unit top eigenvector and unit null direction (nan if none).
    target : ndarray, shape (n or 1, d_L · d_0)
        Flat targets ``M``.
    dims : ndarray of int64, shape (L + 1,)
        Chain ``(d_0, ..., d_L)``.
    etas : ndarray, shape (n,)
        Step sizes.
    loss_tol : ndarray, shape (n or 1,)
        Convergence thresholds on the loss (units of ``M`` squared).
    escape_radius, divergence_norm : float
        Escape-ball radius and divergence threshold on ``||w_t||``.
    max_steps : int
        Last step evaluated.
    checkpoints : ndarray of int64, shape (n_ck,)
        Strictly increasing recording steps.
    t_blocks, block : int
        First step of the loss envelope and its block length; ``bmax.shape[1]`` blocks.
    t_ring : int
        First step of the ring buffers (``loss_ring.shape[1]`` steps).
    lead : int
        Steps of the dense window recorded before the escape step (``win.shape[2]`` steps
        in all, from ``max(0, escape_step − lead)``).
    status, steps, esc, final_loss, final_dist : ndarray, shape (n,)
        Outputs: status code, last step, escape step (``-1`` if none), loss and
        ``||w_T − w*||`` at the last step.
    final_p : ndarray, shape (n, N)
        Output: last iterate.
    traj : ndarray, shape (n, 5, n_ck)
        Output, initialised to nan: loss, distance, proj_top, proj_null at the checkpoints
        (row 4, the sharpness, is left untouched).
    bmax : ndarray, shape (n, n_blocks)
        Output, initialised to ``-inf``: loss-envelope block maxima.
    loss_ring, proj_ring : ndarray, shape (n, ring)
        Output, initialised to nan: loss and ``<w_t − w*, v_1>`` over the last steps.
    win_start : ndarray of int64, shape (n,)
        Output: first step of the dense window, ``-1`` if the run never escaped.
    win : ndarray, shape (n, 4, W)
        Output, initialised to nan: loss, distance, proj_top, proj_null at steps
        ``win_start + k``.

    Returns
    -------
    int
        GD steps made, summed over runs.

    """
    n, n_par = p0.shape
    n_ck = checkpoints.shape[0]
    n_blocks = bmax.shape[1]
    ring = loss_ring.shape[1]
    width = win.shape[2]
    n_layers = dims.shape[0] - 1
    # work buffers, reused by every run
    p = np.empty(n_par)
    grad = np.empty(n_par)
    left = np.empty(n_par)
    right = np.empty(n_par)
    offs = np.zeros(n_layers + 1, dtype=np.int64)
    foffs = np.zeros(n_layers + 1, dtype=np.int64)
    cmax = 1
    for k in range(n_layers):
        offs[k + 1] = offs[k] + dims[k + 1] * dims[k]
        foffs[k + 1] = foffs[k] + dims[k + 1] * dims[0]
        cmax = max(cmax, dims[k + 1] * dims[0])
    fwd = np.empty(max(foffs[n_layers], 1))
    cbuf = np.empty((2, cmax))
    lead_n = max(lead, 1)
    pre_p = np.empty((lead_n, n_par))
    pre_loss = np.empty(lead_n)
    pre_dist = np.empty(lead_n)
    total = 0
    for j in range(n):
        js = j if p_star.shape[0] > 1 else 0
        ps = p_star[js]
        u1 = v1[js]
        un = vn[js]
        mj = target[js]
        tol = loss_tol[j if loss_tol.shape[0] > 1 else 0]
        eta = etas[j]
        for i in range(n_par):
            p[i] = p0[j, i]
        ck_pos = 0
        e_step = -1
        w0 = -1
        st = RUNNING
        loss = math.nan
        dist = math.nan
        t = 0
        while True:
            if scalar:
                loss = _scalar_loss_grad(p, mj[0], left, right, grad)
            elif len(square) > 0:
                loss = _square_loss_grad(p, mj, square, n_layers, fwd, cbuf, grad)
            else:
                loss = _matrix_loss_grad(p, mj, dims, offs, fwd, foffs, cbuf, grad)
            sd = 0.0
            sw = 0.0
            for i in range(n_par):
                d = p[i] - ps[i]
                sd += d * d
                sw += p[i] * p[i]
            dist = math.sqrt(sd)
            wnorm = math.sqrt(sw)
            if not (math.isfinite(loss) and math.isfinite(wnorm)) or wnorm > divergence_norm:
                st = DIVERGED
                break
            if e_step < 0 and dist > escape_radius:
                e_step = t
                w0 = max(0, t - lead)
                # the steps before the escape, from the pre-escape ring
                for s in range(w0, t):
                    q = s % lead_n
                    k = s - w0
                    win[j, 0, k] = pre_loss[q]
                    win[j, 1, k] = pre_dist[q]
                    win[j, 2, k] = _dot_diff(pre_p[q], ps, u1)
                    win[j, 3, k] = _dot_diff(pre_p[q], ps, un)
            converged = loss <= tol
            at_ck = ck_pos < n_ck and checkpoints[ck_pos] == t
            in_win = w0 >= 0 and t - w0 < width
            if converged or at_ck or in_win:
                top = _dot_diff(p, ps, u1)
                null = _dot_diff(p, ps, un)
                if at_ck:
                    traj[j, 0, ck_pos] = loss
                    traj[j, 1, ck_pos] = dist
                    traj[j, 2, ck_pos] = top
                    traj[j, 3, ck_pos] = null
                    ck_pos += 1
                if in_win:
                    k = t - w0
                    win[j, 0, k] = loss
                    win[j, 1, k] = dist
                    win[j, 2, k] = top
                    win[j, 3, k] = null
                if converged:
                    for q in range(ck_pos, n_ck):
                        traj[j, 0, q] = loss
                        traj[j, 1, q] = dist
                        traj[j, 2, q] = top
                        traj[j, 3, q] = null
                    if w0 >= 0:
                        for k in range(t - w0 + 1, width):
                            win[j, 0, k] = loss
                            win[j, 1, k] = dist
                            win[j, 2, k] = top
                            win[j, 3, k] = null
                    st = CONVERGED
                    break
            if e_step < 0 and lead > 0:
                q = t % lead_n
                pre_loss[q] = loss
                pre_dist[q] = dist
                for i in range(n_par):
                    pre_p[q, i] = p[i]
            if t >= t_blocks:
                b = (t - t_blocks) // block
                if b < n_blocks and not loss <= bmax[j, b]:
                    bmax[j, b] = loss
            if t >= t_ring:
                k = t - t_ring
                if k < ring:
                    loss_ring[j, k] = loss
                    proj_ring[j, k] = _dot_diff(p, ps, u1)
            if t == max_steps:
                break
            for i in range(n_par):
                p[i] = p[i] - eta * grad[i]
            t += 1
        status[j] = st
        steps[j] = t
        esc[j] = e_step
        win_start[j] = w0
        final_loss[j] = loss
        final_dist[j] = dist
        for i in range(n_par):
            final_p[j, i] = p[i]
        total += t
    return total


@numba.njit(cache=True, nogil=True)
def _mm(a: np.ndarray, b: np.ndarray, out: np.ndarray, d: int, ta: bool, tb: bool) -> None:
    """``out = op(a) op(b)`` for flat ``d × d`` matrices (``op``: transpose if ``ta``/``tb``)."""
    for i in range(d):
        for j in range(d):
            s = 0.0
            for k in range(d):
                x = a[k * d + i] if ta else a[i * d + k]
                y = b[j * d + k] if tb else b[k * d + j]
                s += x * y
            out[i * d + j] = s


@numba.njit(cache=True, nogil=True)
def square_hvp(
    p: np.ndarray, m: np.ndarray, square: tuple[int, ...], v: np.ndarray, out: np.ndarray
) -> None:
    """Hessian-vector product ``∇²L(W) V`` of a chain of ``d × d`` layers, ``d = len(square)``.

    ``p``, ``v``, ``out``: flat layers (shape ``(L d²,)``, :func:`~sweeplab.dmf.flatten`
    order); ``m``: flat target ``(d²,)``. With ``B_i = W_{i−1}⋯W_0``, ``A_i = W_{L−1}⋯W_{i+1}``,
    ``R = W_{L−1}⋯W_0 − M`` and their derivatives along ``V``
    (``dB_{i+1} = V_i B_i + W_i dB_i``, ``dA_{i−1} = dA_i W_i + A_i V_i``,
    ``dR = dB_L``): ``(HV)_i = 2 (dA_i^T R B_i^T + A_i^T dR B_i^T + A_i^T R dB_i^T)``
    (spec §2, as :func:`~sweeplab.dmf.hvp`). Any point, not only minimizers.
    """
    d = len(square)
    dd = d * d
    n_layers = p.shape[0] // dd
    b = np.zeros((n_layers + 1, dd))
    db = np.zeros((n_layers + 1, dd))
    a = np.zeros((n_layers, dd))
    da = np.zeros((n_layers, dd))
    t1 = np.empty(dd)
    t2 = np.empty(dd)
    r = np.empty(dd)
    for i in range(d):
        b[0, i * d + i] = 1.0
        a[n_layers - 1, i * d + i] = 1.0
    for i in range(n_layers):
        w = p[i * dd : (i + 1) * dd]
        vi = v[i * dd : (i + 1) * dd]
        _mm(w, b[i], b[i + 1], d, False, False)
        _mm(vi, b[i], t1, d, False, False)
        _mm(w, db[i], t2, d, False, False)
        for k in range(dd):
            db[i + 1, k] = t1[k] + t2[k]
    for i in range(n_layers - 1, 0, -1):
        w = p[i * dd : (i + 1) * dd]
        vi = v[i * dd : (i + 1) * dd]
        _mm(a[i], w, a[i - 1], d, False, False)
        _mm(da[i], w, t1, d, False, False)
        _mm(a[i], vi, t2, d, False, False)
        for k in range(dd):
            da[i - 1, k] = t1[k] + t2[k]
    for k in range(dd):
        r[k] = b[n_layers, k] - m[k]
    dr = db[n_layers]
    t3 = np.empty(dd)
    for i in range(n_layers):
        o = out[i * dd : (i + 1) * dd]
        # dA_i^T R B_i^T
        _mm(da[i], r, t1, d, True, False)
        _mm(t1, b[i], o, d, False, True)
        # A_i^T dR B_i^T
        _mm(a[i], dr, t1, d, True, False)
        _mm(t1, b[i], t3, d, False, True)
        # A_i^T R dB_i^T
        _mm(a[i], r, t1, d, True, False)
        _mm(t1, db[i], t2, d, False, True)
        for k in range(dd):
            o[k] = 2.0 * (o[k] + t3[k] + t2[k])
