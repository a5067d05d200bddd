"""Gradient-descent escape from sharp minimizers (spec §6).

Protocol. Given a minimizer ``w*`` (target ``M = W_L⋯W_1``) with exact sharpness ``λ*`` and unit
top Hessian eigenvector ``v_1``, start at ``w_0 = w* + r v_1`` and run plain gradient descent
``w_{t+1} = w_t − η ∇L(w_t)`` on ``L(w) = ||W_L⋯W_1 − M||_F^2``. Linear theory: the deviation
along ``v_1`` is multiplied by ``(1 − ηλ*)`` per step, so GD leaves ``w*`` iff ``ηλ* > 2``, after
about ``ln(r_esc / r) / ln|1 − ηλ*|`` steps.

Outcome rules, evaluated at every step ``t = 0, 1, ..., max_steps`` on the current iterate
``w_t`` in this order:

1. **diverged** if ``L(w_t)`` or ``||w_t||`` is not finite or ``||w_t|| > divergence_norm``
   (run stops; the escape step is not updated at this step);
2. the **escape step** is the first ``t`` with ``||w_t − w*|| > escape_radius``;
3. **converged** if ``L(w_t) <= loss_tol``: outcome **escaped** if the escape step was set
   (GD left the ball and converged to another minimizer), **stayed** otherwise;
4. **oscillating** if ``t = max_steps`` and neither happened (no convergence within
   ``max_steps`` steps, whether or not it left the ball; see ``escape_step``).

``steps_run`` is the ``t`` at which the run stopped (number of GD updates made). Trajectories are
recorded at the checkpoint steps; after convergence the remaining checkpoint entries repeat the
final value, after divergence they are nan (including the diverging step itself).

:func:`escape` is a straightforward per-run loop over layer lists; :func:`escape_batch` runs many
step sizes (and optionally many same-shape minimizers) at once on stacked arrays and gives the
same results (up to rounding) — the two are tested against each other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .derivatives import loss_and_gradient_unchecked
from .products import flatten, unflatten
from .sharpness import sharpness, top_eigenvector
from .validation import (
    DEFAULT_MINIMIZER_RTOL,
    as_target,
    as_weights,
    chain_dims,
    check_minimizer,
    check_positive,
)

__all__ = [
    "OUTCOMES",
    "EscapeResult",
    "default_checkpoints",
    "escape",
    "escape_batch",
    "null_direction",
    "predicted_escape_step",
]

logger = logging.getLogger(__name__)

Matrix = NDArray[np.float64]
OUTCOMES = ("stayed", "escaped", "oscillating", "diverged")
"""Possible values of :attr:`EscapeResult.outcome`."""

_DIVERGED, _CONVERGED, _OSCILLATING = 1, 2, 3


@dataclass(frozen=True, eq=False)
class EscapeResult:
    """Result of one gradient-descent escape run (arrays are read-only).

    Attributes
    ----------
    outcome : str
        One of ``"stayed"``, ``"escaped"``, ``"oscillating"``, ``"diverged"`` (module docstring).
    eta : float
        Step size ``η``.
    sharpness_star : float
        Exact sharpness ``λ*`` of the starting minimizer.
    escape_step : int
        First step with ``||w_t − w*|| > escape_radius``; ``-1`` if never.
    predicted_escape_step : float
        ``ln(escape_radius / radius) / ln|1 − ηλ*|``; ``inf`` when ``|1 − ηλ*| <= 1``.
    final_loss : float
        Loss at the last iterate (may be inf/nan when diverged).
    final_sharpness : float
        Exact sharpness of the last iterate when converged (``stayed``/``escaped``), else nan.
    final_distance : float
        ``||w_T − w*||`` at the last iterate.
    steps_run : int
        Step ``t`` at which the run stopped.
    radius, escape_radius : float
        Initial displacement ``r`` along ``v_1`` and the escape-ball radius.
    checkpoints : ndarray of int64, shape (n_ckpt,)
        Steps at which trajectories are sampled.
    loss : ndarray, shape (n_ckpt,)
        ``L(w_t)`` at the checkpoints.
    distance : ndarray, shape (n_ckpt,)
        ``||w_t − w*||`` (parameter-space Euclidean norm).
    proj_top : ndarray, shape (n_ckpt,)
        ``<w_t − w*, v_1>``, ``v_1`` the unit top Hessian eigenvector at ``w*``.
    proj_null : ndarray, shape (n_ckpt,)
        ``<w_t − w*, v_N>``, ``v_N`` the unit null direction of :func:`null_direction`
        (nan if that direction is zero).
    final_weights : tuple of ndarray
        The last iterate ``W_1..W_L`` (non-finite entries possible when diverged).

    """

    outcome: str
    eta: float
    sharpness_star: float
    escape_step: int
    predicted_escape_step: float
    final_loss: float
    final_sharpness: float
    final_distance: float
    steps_run: int
    radius: float
    escape_radius: float
    checkpoints: NDArray[np.int64]
    loss: NDArray[np.float64]
    distance: NDArray[np.float64]
    proj_top: NDArray[np.float64]
    proj_null: NDArray[np.float64]
    final_weights: tuple[NDArray[np.float64], ...]

    @property
    def c(self) -> float:
        """Step size relative to the stability threshold, ``c = ηλ*/2``."""
        return self.eta * self.sharpness_star / 2.0

    @property
    def converged(self) -> bool:
        """Whether the run converged to a minimizer (``stayed`` or ``escaped``)."""
        return self.outcome in ("stayed", "escaped")


def default_checkpoints(max_steps: int, num: int = 64) -> NDArray[np.int64]:
    """Return ``0`` plus about ``num`` log-spaced steps in ``[1, max_steps]`` (both included)."""
    steps = _check_int(max_steps, "max_steps", 1)
    pts = np.round(np.geomspace(1, steps, num)).astype(np.int64)
    return np.unique(np.concatenate([np.zeros(1, dtype=np.int64), pts]))


def predicted_escape_step(
    sharpness_star: float, eta: float, radius: float, escape_radius: float
) -> float:
    """Return the linear-theory escape step ``ln(r_esc / r) / ln|1 − ηλ*|`` (inf if no growth)."""
    growth = abs(1.0 - eta * sharpness_star)
    if growth <= 1.0:
        return float("inf")
    return float(np.log(escape_radius / radius) / np.log(growth))


def null_direction(weights: Sequence[ArrayLike]) -> list[Matrix] | None:
    """Return a unit Hessian null direction at a minimizer: the rescaling ``V_i ∝ c_i W_i``.

    With ``c_i = i − (L + 1)/2`` (so ``Σ c_i = 0``), ``J(V) = Σ_i c_i A_i W_i B_i = (Σ c_i) M = 0``:
    the direction rescales the layers against each other (tangent to the minimizer manifold,
    orthogonal to every Hessian eigenvector with nonzero eigenvalue). Returns ``None`` when it
    vanishes (all layers with ``c_i ≠ 0`` are zero).
    """
    ws = as_weights(weights)
    depth = len(ws)
    coef = np.arange(1, depth + 1) - (depth + 1) / 2.0
    vs = [c * w for c, w in zip(coef, ws, strict=True)]
    norm = float(np.sqrt(sum(np.vdot(v, v) for v in vs)))
    if not norm > 0:
        return None
    return [v / norm for v in vs]


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class _Options:
    radius: float
    escape_radius: float
    max_steps: int
    checkpoints: NDArray[np.int64]
    loss_tol: float
    divergence_norm: float


def _options(
    radius: float,
    escape_radius: float,
    max_steps: int,
    checkpoints: ArrayLike | None,
    loss_tol: float,
    divergence_norm: float,
) -> _Options:
    radius = check_positive(radius, "radius")
    escape_radius = check_positive(escape_radius, "escape_radius")
    if not escape_radius > radius:
        raise ValueError(
            f"escape_radius must exceed radius, got escape_radius = {escape_radius}, "
            f"radius = {radius}"
        )
    max_steps = _check_int(max_steps, "max_steps", 1)
    if checkpoints is None:
        ck = default_checkpoints(max_steps)
    else:
        raw = np.asarray(checkpoints)
        if raw.ndim != 1 or raw.size == 0:
            raise ValueError(f"checkpoints must be a non-empty 1-D array, got shape {raw.shape}")
        if not (np.issubdtype(raw.dtype, np.integer) or np.all(np.mod(raw, 1) == 0)):
            raise ValueError("checkpoints must be integer step indices")
        ck = raw.astype(np.int64)
        if np.any(np.diff(ck) <= 0):
            raise ValueError("checkpoints must be strictly increasing")
        if ck[0] < 0 or ck[-1] > max_steps:
            raise ValueError(
                f"checkpoints must lie in [0, max_steps = {max_steps}], got range "
                f"[{ck[0]}, {ck[-1]}]"
            )
    loss_tol = check_positive(loss_tol, "loss_tol")
    divergence_norm = check_positive(divergence_norm, "divergence_norm")
    ck = ck.copy()
    ck.setflags(write=False)
    return _Options(radius, escape_radius, max_steps, ck, loss_tol, divergence_norm)


@dataclass(frozen=True)
class _Start:
    """A validated minimizer with its escape geometry."""

    weights: list[Matrix]
    target: Matrix
    lam: float
    v1: list[Matrix]
    vn: list[Matrix] | None


def _start(weights: Sequence[ArrayLike], target: ArrayLike | None, rtol: float) -> _Start:
    ws = as_weights(weights)
    if len(ws) < 2:
        raise ValueError("escape needs depth L >= 2 (the depth-1 loss is convex), got L = 1")
    prod = ws[0]
    for w in ws[1:]:
        prod = w @ prod
    if target is not None:
        m = as_target(target, chain_dims(ws))
        check_minimizer(ws, m, rtol)
    else:
        m = prod
    lam = sharpness(ws)
    if not lam > 0:
        raise ValueError(f"escape needs a minimizer with positive sharpness, got λ* = {lam}")
    return _Start(ws, m, lam, top_eigenvector(ws), null_direction(ws))


def _check_eta(eta: float, name: str = "eta") -> float:
    return check_positive(eta, name)


def _fill_result(
    *,
    status: int,
    eta: float,
    start: _Start,
    opts: _Options,
    escape_step: int,
    final_loss: float,
    final_weights: list[Matrix],
    final_distance: float,
    steps_run: int,
    traj: NDArray[np.float64],
) -> EscapeResult:
    if status == _DIVERGED:
        outcome = "diverged"
    elif status == _CONVERGED:
        outcome = "escaped" if escape_step >= 0 else "stayed"
    else:
        outcome = "oscillating"
    final_sharp = sharpness(final_weights) if status == _CONVERGED else np.nan
    arrays = [np.array(row, dtype=np.float64) for row in traj]
    final = tuple(np.array(w, dtype=np.float64) for w in final_weights)
    for arr in (*arrays, *final):
        arr.setflags(write=False)
    return EscapeResult(
        outcome=outcome,
        eta=float(eta),
        sharpness_star=start.lam,
        escape_step=int(escape_step),
        predicted_escape_step=predicted_escape_step(
            start.lam, eta, opts.radius, opts.escape_radius
        ),
        final_loss=float(final_loss),
        final_sharpness=float(final_sharp),
        final_distance=float(final_distance),
        steps_run=int(steps_run),
        radius=opts.radius,
        escape_radius=opts.escape_radius,
        checkpoints=opts.checkpoints,
        loss=arrays[0],
        distance=arrays[1],
        proj_top=arrays[2],
        proj_null=arrays[3],
        final_weights=final,
    )


def escape(
    weights: Sequence[ArrayLike],
    eta: float,
    *,
    radius: float = 1e-9,
    escape_radius: float = 1e-3,
    max_steps: int = 10_000,
    checkpoints: ArrayLike | None = None,
    loss_tol: float = 1e-20,
    divergence_norm: float = 1e6,
    target: ArrayLike | None = None,
    rtol: float = DEFAULT_MINIMIZER_RTOL,
) -> EscapeResult:
    """Run gradient descent from ``w* + radius · v_1`` and classify what happens (spec §6).

    Parameters
    ----------
    weights : sequence of array_like
        Layers of the minimizer ``w*`` (depth ``L >= 2``); the target is their product.
    eta : float
        Step size ``η > 0``; the stability threshold is ``η = 2/λ*``.
    radius : float
        Initial displacement ``r`` along the top eigenvector ``v_1`` (float64 needs ``r`` well
        above ``1e-16 ||w*||``).
    escape_radius : float
        Radius of the ball around ``w*`` whose first exit defines the escape step.
    max_steps : int
        Maximum number of GD steps.
    checkpoints : array_like of int, optional
        Strictly increasing steps in ``[0, max_steps]`` at which trajectories are recorded;
        default :func:`default_checkpoints` ``(max_steps)``. Runs with equal checkpoints stack
        on a common step axis.
    loss_tol : float
        Convergence threshold on the (absolute) loss, in units of ``M`` squared. It must lie
        above the float64 rounding floor of the loss at a minimizer, roughly
        ``(L ε ||M||_F)^2`` with ``ε = 2.2e-16``; the default ``1e-20`` suits ``||M||_F ≲ 1e2``.
    divergence_norm : float
        Divergence threshold on ``||w_t||``.
    target : array_like, optional
        If given, check first that ``weights`` is a minimizer of it (within ``rtol``) and run GD
        on this target instead of the product of ``weights``.
    rtol : float
        Relative residual tolerance for that check.

    Returns
    -------
    EscapeResult
        Outcome, escape step (observed and predicted), final loss/sharpness and trajectories.
        The outcome rules are in the module docstring.

    """
    eta = _check_eta(eta)
    opts = _options(radius, escape_radius, max_steps, checkpoints, loss_tol, divergence_norm)
    start = _start(weights, target, rtol)
    ws = [w + opts.radius * v for w, v in zip(start.weights, start.v1, strict=True)]
    star, v1 = start.weights, start.v1
    n_ck = opts.checkpoints.size
    traj = np.full((4, n_ck), np.nan)
    ck_pos = 0
    escape_step = -1
    status = _OSCILLATING
    loss_t, dist = np.nan, np.nan
    t = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(opts.max_steps + 1):
            loss_t, grads = loss_and_gradient_unchecked(ws, start.target)
            diff = [w - s for w, s in zip(ws, star, strict=True)]
            dist = float(np.sqrt(sum(np.vdot(d, d) for d in diff)))
            wnorm = float(np.sqrt(sum(np.vdot(w, w) for w in ws)))
            if not (np.isfinite(loss_t) and np.isfinite(wnorm)) or wnorm > opts.divergence_norm:
                status = _DIVERGED
                break
            if escape_step < 0 and dist > opts.escape_radius:
                escape_step = t
            converged = loss_t <= opts.loss_tol
            row = None
            if converged or (ck_pos < n_ck and opts.checkpoints[ck_pos] == t):
                row = _projections(loss_t, dist, diff, v1, start.vn)
            if ck_pos < n_ck and opts.checkpoints[ck_pos] == t:
                traj[:, ck_pos] = row
                ck_pos += 1
            if converged:
                traj[:, ck_pos:] = np.asarray(row)[:, None]
                status = _CONVERGED
                break
            if t == opts.max_steps:
                break
            ws = [w - eta * g for w, g in zip(ws, grads, strict=True)]
    return _fill_result(
        status=status,
        eta=eta,
        start=start,
        opts=opts,
        escape_step=escape_step,
        final_loss=loss_t,
        final_weights=ws,
        final_distance=dist,
        steps_run=t,
        traj=traj,
    )


def _projections(
    loss_t: float,
    dist: float,
    diff: list[Matrix],
    v1: list[Matrix],
    vn: list[Matrix] | None,
) -> tuple[float, float, float, float]:
    top = float(sum(np.vdot(d, v) for d, v in zip(diff, v1, strict=True)))
    null = (
        np.nan if vn is None else float(sum(np.vdot(d, v) for d, v in zip(diff, vn, strict=True)))
    )
    return (loss_t, dist, top, null)


# ---------------------------------------------------------------------------------------------
# batched engine


def _rows(arr: NDArray[np.float64], sel: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Select rows of a per-run array; arrays with a leading 1 are shared and kept as is."""
    return arr if arr.shape[0] == 1 else arr[sel]


class _ScalarChain:
    """Loss and gradient for an all-scalar chain; parameters are stacked as ``(n, L)``."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def __call__(
        self, p: NDArray[np.float64], m: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        n, depth = p.shape
        left = np.ones((n, depth))  # Π_{j<i} w_j
        right = np.ones((n, depth))  # Π_{j>i} w_j
        if depth > 1:
            np.cumprod(p[:, :-1], axis=1, out=left[:, 1:])
            np.cumprod(p[:, :0:-1], axis=1, out=right[:, -2::-1])
        r = left[:, -1] * p[:, -1] - m[:, 0, 0]
        grad = left * right
        grad *= (2.0 * r)[:, None]
        return r * r, grad


class _MatrixChain:
    """Loss and gradient for stacked general chains; parameters are stacked as ``(n, N)``."""

    def __init__(self, shapes: list[tuple[int, int]]) -> None:
        self.shapes = shapes
        sizes = [a * b for a, b in shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    def views(self, flat: NDArray[np.float64]) -> list[NDArray[np.float64]]:
        n = flat.shape[0]
        return [
            flat[:, self.offsets[k] : self.offsets[k + 1]].reshape(n, *shape)
            for k, shape in enumerate(self.shapes)
        ]

    def __call__(
        self, p: NDArray[np.float64], m: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        ws = self.views(p)
        g = np.empty_like(p)
        gs = self.views(g)
        bs = [ws[0]]  # bs[k] = B_{k+2} = W_{k+1}⋯W_1 (B_1 = I is implicit)
        for w in ws[1:]:
            bs.append(np.matmul(w, bs[-1]))
        r = bs[-1] - m
        c = r  # C_i = A_i^T R
        for k in range(len(ws) - 1, 0, -1):
            np.matmul(c, bs[k - 1].transpose(0, 2, 1), out=gs[k])
            c = np.matmul(ws[k].transpose(0, 2, 1), c)
        gs[0][...] = c
        g *= 2.0
        return np.einsum("nij,nij->n", r, r), g


def escape_batch(
    weights: Sequence[ArrayLike] | Sequence[Sequence[ArrayLike]],
    etas: ArrayLike,
    *,
    radius: float = 1e-9,
    escape_radius: float = 1e-3,
    max_steps: int = 10_000,
    checkpoints: ArrayLike | None = None,
    loss_tol: float = 1e-20,
    divergence_norm: float = 1e6,
    target: ArrayLike | None = None,
    rtol: float = DEFAULT_MINIMIZER_RTOL,
) -> list[EscapeResult]:
    """Run :func:`escape` for many step sizes at once on stacked arrays.

    Parameters
    ----------
    weights : sequence of ndarray, or sequence of sequences of ndarray
        Either one minimizer (a sequence of 2-D ``numpy.ndarray`` layers), shared by all step
        sizes, or one minimizer per step size (a list/tuple of such sequences, all with the
        same layer shapes, ``len(weights) == len(etas)``).
    etas : array_like, shape (n,)
        Step sizes, each ``> 0``.
    radius, escape_radius, max_steps, checkpoints, loss_tol, divergence_norm, rtol
        As in :func:`escape`, shared by all runs.
    target : array_like, optional
        Only with a single minimizer: as in :func:`escape`.

    Returns
    -------
    list of EscapeResult
        One result per step size, in order, with the same meaning as :func:`escape` (the GD
        arithmetic is vectorised over runs: all-scalar chains use prefix/suffix products,
        other chains batched ``matmul``; finished runs are dropped from the stack).

    """
    eta_arr = np.asarray(etas, dtype=np.float64)
    if eta_arr.ndim != 1 or eta_arr.size == 0:
        raise ValueError(f"etas must be a non-empty 1-D array, got shape {eta_arr.shape}")
    for i, e in enumerate(eta_arr):
        _check_eta(e, f"etas[{i}]")
    opts = _options(radius, escape_radius, max_steps, checkpoints, loss_tol, divergence_norm)
    n = eta_arr.size
    many = (
        isinstance(weights, list | tuple)
        and len(weights) > 0
        and isinstance(weights[0], list | tuple)
    )
    if many:
        if target is not None:
            raise ValueError("target may only be given with a single minimizer")
        if len(weights) != n:
            raise ValueError(
                f"with one minimizer per step size, len(weights) = {len(weights)} must equal "
                f"len(etas) = {n}"
            )
        starts = [_start(w, None, rtol) for w in weights]
        shapes0 = [w.shape for w in starts[0].weights]
        for j, s in enumerate(starts):
            if [w.shape for w in s.weights] != shapes0:
                raise ValueError(
                    f"all minimizers must have the same layer shapes: weights[0] has "
                    f"{shapes0}, weights[{j}] has {[w.shape for w in s.weights]}"
                )
    else:
        starts = [_start(weights, target, rtol)]
    shapes = [w.shape for w in starts[0].weights]
    dims = chain_dims(starts[0].weights)

    p_star = np.stack([flatten(s.weights) for s in starts])  # (1 or n, N)
    v1 = np.stack([flatten(s.v1) for s in starts])
    vn = np.stack(
        [flatten(s.vn) if s.vn is not None else np.full(p_star.shape[1], np.nan) for s in starts]
    )
    m = np.stack([s.target for s in starts])  # (1 or n, dL, d0)
    p = np.broadcast_to(p_star + opts.radius * v1, (n, p_star.shape[1])).copy()
    chain: _ScalarChain | _MatrixChain = (
        _ScalarChain(len(shapes)) if all(d == 1 for d in dims) else _MatrixChain(shapes)
    )

    ck = opts.checkpoints
    n_ck = ck.size
    traj = np.full((n, 4, n_ck), np.nan)
    esc = np.full(n, -1, dtype=np.int64)
    status = np.full(n, _OSCILLATING)
    steps = np.zeros(n, dtype=np.int64)
    final_loss = np.full(n, np.nan)
    final_dist = np.full(n, np.nan)
    final_p = np.full_like(p, np.nan)
    idx = np.arange(n)
    eta_col = eta_arr[:, None].copy()
    ck_pos = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(opts.max_steps + 1):
            loss_t, grad = chain(p, m)
            diff = p - p_star
            dist = np.sqrt(np.einsum("ni,ni->n", diff, diff))
            wnorm = np.sqrt(np.einsum("ni,ni->n", p, p))
            div = ~(np.isfinite(loss_t) & np.isfinite(wnorm)) | (wnorm > opts.divergence_norm)
            ok = ~div
            newly = ok & (esc[idx] < 0) & (dist > opts.escape_radius)
            esc[idx[newly]] = t
            conv = ok & (loss_t <= opts.loss_tol)
            at_ck = ck_pos < n_ck and ck[ck_pos] == t
            rec = (ok if at_ck else conv).copy()
            if rec.any():
                d_rec = diff[rec]
                block = np.stack(
                    [
                        loss_t[rec],
                        dist[rec],
                        np.einsum("ni,ni->n", d_rec, _rows(v1, rec)),
                        np.einsum("ni,ni->n", d_rec, _rows(vn, rec)),
                    ],
                    axis=1,
                )
                rows = idx[rec]
                if at_ck:
                    traj[rows, :, ck_pos] = block
                # converged runs repeat their final value at all later checkpoints
                later = ck_pos + 1 if at_ck else ck_pos
                crow = conv[rec]
                if later < n_ck and crow.any():
                    traj[rows[crow], :, later:] = block[crow][:, :, None]
            if at_ck:
                ck_pos += 1
            done = div | conv | (t == opts.max_steps)
            if done.any():
                rows = idx[done]
                status[rows] = np.where(
                    div[done], _DIVERGED, np.where(conv[done], _CONVERGED, _OSCILLATING)
                )
                steps[rows] = t
                final_loss[rows] = loss_t[done]
                final_dist[rows] = dist[done]
                final_p[rows] = p[done]
                keep = ~done
                if not keep.any():
                    break
                idx = idx[keep]
                p, grad, eta_col = p[keep], grad[keep], eta_col[keep]
                p_star, v1, vn, m = (_rows(a, keep) for a in (p_star, v1, vn, m))
            p -= eta_col * grad

    results = []
    for j in range(n):
        start = starts[j] if many else starts[0]
        fw = unflatten(final_p[j], shapes)
        results.append(
            _fill_result(
                status=int(status[j]),
                eta=float(eta_arr[j]),
                start=start,
                opts=opts,
                escape_step=int(esc[j]),
                final_loss=float(final_loss[j]),
                final_weights=fw,
                final_distance=float(final_dist[j]),
                steps_run=int(steps[j]),
                traj=traj[j],
            )
        )
    logger.debug("escape_batch: %d runs, outcomes %s", n, [r.outcome for r in results])
    return results
