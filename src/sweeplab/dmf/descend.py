"""Gradient descent from any start, with the escape experiment's outcome taxonomy and modes.

:func:`descend` runs plain gradient descent ``w_{t+1} = w_t − η ∇L(w_t)`` on
``L(w) = ||W_L⋯W_1 − M||_F^2`` from an arbitrary start ``w_0`` (not necessarily near a
minimizer) and classifies the run with the rules of :mod:`sweeplab.dmf.escape`:

* **converged**: ``L(w_t) <= loss_tol`` at some step (the run stops there);
* **diverged**: ``L(w_t)`` or ``||w_t||`` not finite, or ``||w_t|| > divergence_norm``;
* at ``max_steps``, from the last iterates (loss envelope and ring buffers of the escape
  module, rules 4–7): **unconverged** (still trending) or **edge_of_stability** with a
  ``period`` (``1..PERIOD_MAX`` steps, ``0`` if none was found).

The escape outcomes ``stayed``/``escaped`` both read ``converged`` here: there is no reference
minimizer and no escape ball.

Machinery reused from :mod:`sweeplab.dmf.escape`: the run itself is the escape engine
(:func:`sweeplab.dmf.kernels.escape_runs`, or the stacked numpy path for chains wider than
:data:`~sweeplab.dmf.escape.KERNEL_MAX_WIDTH`) called with the start as "minimizer",
radius ``0`` (so ``w_0`` is the start bit for bit), an infinite escape radius (never
escapes), no null direction, and as "top eigenvector" the unit gradient at the start (a
seeded random unit vector if that gradient vanishes). That vector only enters the period
detection (projections ``<w_t − w_0, v>`` in the ring buffer, next to the loss); from
``w* + r v_1`` the gradient points along ``v_1`` to relative ``O(r)``, so
:func:`descend` reproduces :func:`~sweeplab.dmf.escape` there (tested). The classification
(:meth:`sweeplab.dmf.escape._Tail.classify`) and the final sharpness rules are shared.

Iterates other than the last one (checkpoints, final orbit) are recomputed by running the same
engine segment by segment from ``w_0``: GD is memoryless and the engine's update depends only
on the current iterate, so these iterates are bit-identical to the main run's.

Modes
-----
With the compact SVD ``M = Σ_i σ_i u_i v_iᵀ`` (``σ_1 >= σ_2 >= ... > 0``), the amplitude of
mode ``i`` at step ``t`` is ``a_i(t) = u_iᵀ P(t) v_i``, ``P(t) = W_L⋯W_1`` at ``w_t``: the
end-to-end map projected on the target's singular vectors, so that a mode keeps its identity
when it swings through another (sorted singular values of ``P`` would swap). For repeated
singular values the pairs ``(u_i, v_i)`` are one basis of the shared subspace (numpy's SVD).
Mode ``i`` can settle at a minimizer only if ``η <= 1/(L σ_i^{2−2/L})``
(:func:`~sweeplab.dmf.mode_thresholds`).

The amplitudes are recorded over the *final orbit*: the last ``n`` iterates
``w_{T−n+1}..w_T`` (``T = steps_run``), with ``n`` the period of an ``edge_of_stability``
run of period ``>= 1``, ``n = min(ORBIT_STEPS, T + 1)`` for an aperiodic or ``unconverged``
run, ``n = 1`` for a converged run and ``n = 0`` for a diverged one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .derivatives import loss_and_gradient_unchecked
from .escape import (
    _CONVERGED,
    _DIVERGED,
    ENGINES,
    KERNEL_MAX_WIDTH,
    _exact_sharpness,
    _iterate_sharpness,
    _Options,
    _Outputs,
    _run_kernel,
    _run_numpy,
    _Stack,
    check_checkpoints,
)
from .products import flatten, unflatten
from .records import DESCEND_OUTCOMES
from .sharpness import flattest_sharpness
from .validation import (
    as_target,
    as_weights,
    chain_dims,
    chain_product,
    check_int,
    check_positive,
)

__all__ = [
    "DESCEND_OUTCOMES",
    "LOSS_TOL_REL_TARGET",
    "ORBIT_STEPS",
    "OSCILLATION_RTOL",
    "DescendResult",
    "descend",
]

logger = logging.getLogger(__name__)

Matrix = NDArray[np.float64]

ORBIT_STEPS = 64
"""Length (steps) of the recorded final orbit of an aperiodic or unconverged run."""
LOSS_TOL_REL_TARGET = 1e-20
"""Default convergence threshold relative to the target: ``loss_tol = 1e-20 ||M||_F^2``
(relative residual ``||P − M||_F / ||M||_F <= 1e-10``)."""
OSCILLATION_RTOL = 1e-3
"""Default threshold of :meth:`DescendResult.oscillating`: a mode oscillates when its amplitude
range over the final orbit exceeds ``1e-3 σ_i``."""


@dataclass(frozen=True, eq=False)
class DescendResult:
    """Result of one gradient-descent run from an arbitrary start (arrays are read-only).

    Attributes
    ----------
    outcome : str
        One of :data:`DESCEND_OUTCOMES` (module docstring).
    eta : float
        Step size ``η``.
    period : int
        Period (steps) of the final orbit of an ``edge_of_stability`` run, ``0`` if none was
        found (``<= PERIOD_MAX``) and for every other outcome.
    contraction_rate : float
        Per-step factor of the loss envelope over the last steps (``unconverged`` and
        ``edge_of_stability``), nan otherwise (as :class:`~sweeplab.dmf.EscapeResult`).
    steps_to_tol : float
        Extrapolated further steps to ``loss_tol`` of a geometrically converging
        ``unconverged`` run, nan otherwise.
    steps_run : int
        Step ``T`` at which the run stopped (GD updates made).
    final_loss : float
        ``L(w_T)`` (may be inf/nan when diverged).
    final_weights : tuple of ndarray
        The last iterate ``W_1..W_L``.
    final_sharpness : float
        ``λ_max(∇²L(w_T))``: exact (Kronecker formula) at a converged iterate, Lanczos over
        the full Hessian (dense eigensolver for scalar chains) otherwise, nan when diverged.
    final_sharpness_method : str
        ``"exact"``, ``"lanczos"``, ``"dense"`` or ``"none"``.
    loss_tol : float
        Convergence threshold used (units of ``M`` squared).
    checkpoints : ndarray of int64, shape (n_ck,)
        Steps at which the loss and sharpness are recorded.
    loss : ndarray, shape (n_ck,)
        ``L(w_t)`` at the checkpoints; after convergence the final value, after divergence nan.
    checkpoint_sharpness : ndarray, shape (n_ck,)
        ``λ_max(∇²L(w_t))`` at the checkpoints (same rules as ``final_sharpness``: exact where
        ``L(w_t) <= loss_tol``, Lanczos/dense elsewhere); all nan with
        ``track_sharpness=False``.
    checkpoint_sharpness_method : tuple of str, length n_ck
        Method of each ``checkpoint_sharpness`` entry (``"none"`` where nan by rule).
    checkpoint_weights : ndarray, shape (n_ck, N)
        The iterates ``vec(W_1), ..., vec(W_L)`` at the checkpoints (``N`` parameters), the
        ones the sharpness was computed at: nan rows where ``checkpoint_sharpness`` is nan by
        rule (all rows with ``track_sharpness=False``, steps at or after a divergence);
        after convergence the final iterate.
    singular_values : ndarray, shape (r,)
        Nonzero singular values ``σ_i`` of the target, descending.
    orbit_steps : ndarray of int64, shape (n,)
        Steps ``T − n + 1..T`` of the final orbit (module docstring; ``n = 0`` if diverged).
    orbit_loss : ndarray, shape (n,)
        ``L(w_t)`` over the final orbit.
    orbit_amplitudes : ndarray, shape (n, r)
        Mode amplitudes ``u_iᵀ P(t) v_i`` over the final orbit (units of ``M``).

    """

    outcome: str
    eta: float
    period: int
    contraction_rate: float
    steps_to_tol: float
    steps_run: int
    final_loss: float
    final_weights: tuple[Matrix, ...]
    final_sharpness: float
    final_sharpness_method: str
    loss_tol: float
    checkpoints: NDArray[np.int64]
    loss: NDArray[np.float64]
    checkpoint_sharpness: NDArray[np.float64]
    checkpoint_sharpness_method: tuple[str, ...]
    checkpoint_weights: NDArray[np.float64]
    singular_values: NDArray[np.float64]
    orbit_steps: NDArray[np.int64]
    orbit_loss: NDArray[np.float64]
    orbit_amplitudes: NDArray[np.float64]

    @property
    def converged(self) -> bool:
        """Whether the run reached ``loss_tol``."""
        return self.outcome == "converged"

    @property
    def amplitude_range(self) -> NDArray[np.float64]:
        """Peak-to-peak amplitude of each mode over the final orbit, shape ``(r,)``.

        Zeros for a converged run (a one-step orbit), nan for a diverged one.
        """
        if self.orbit_amplitudes.shape[0] == 0:
            return np.full(self.singular_values.size, np.nan)
        return np.ptp(self.orbit_amplitudes, axis=0)

    def oscillating(self, rtol: float = OSCILLATION_RTOL) -> NDArray[np.bool_]:
        """Return which modes oscillate: amplitude range over the final orbit ``> rtol σ_i``.

        Parameters
        ----------
        rtol : float
            Threshold relative to each singular value ``σ_i`` (``> 0``).

        Returns
        -------
        ndarray of bool, shape (r,)
            All ``False`` for converged and diverged runs.

        """
        rtol = check_positive(rtol, "rtol")
        rng = self.amplitude_range
        with np.errstate(invalid="ignore"):
            return np.asarray(rng > rtol * self.singular_values)


def _singular_pairs(m: Matrix) -> tuple[Matrix, NDArray[np.float64], Matrix]:
    """Return the compact SVD restricted to the nonzero singular values (numpy's rank tolerance)."""
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    tol = (s[0] if s.size else 0.0) * max(m.shape) * np.finfo(np.float64).eps
    r = int(np.count_nonzero(s > tol))
    return u[:, :r], s[:r], vt[:r].T


def _probe_direction(ws: list[Matrix], m: Matrix) -> NDArray[np.float64]:
    """Return the unit gradient at the start (a seeded random unit vector if it vanishes)."""
    with np.errstate(over="ignore", invalid="ignore"):
        g = flatten(loss_and_gradient_unchecked(ws, m)[1])
        norm = float(np.sqrt(np.dot(g, g)))
    if np.isfinite(norm) and norm > 0:
        return g / norm
    v = np.random.default_rng(np.random.SeedSequence(0)).standard_normal(g.size)
    return v / np.linalg.norm(v)


class _Engine:
    """The escape engine bound to one start, target and step size."""

    def __init__(
        self,
        shapes: list[tuple[int, int]],
        dims: tuple[int, ...],
        m: Matrix,
        eta: float,
        probe: NDArray[np.float64],
        engine: str,
    ) -> None:
        self.shapes = shapes
        self.dims = dims
        self.scalar = all(d == 1 for d in dims)
        if engine == "auto":
            use_kernel = self.scalar or max(dims) <= KERNEL_MAX_WIDTH
        else:
            use_kernel = engine == "kernel"
        self.kind = "kernel" if use_kernel else "numpy"
        self.run_fn = _run_kernel if use_kernel else _run_numpy
        self.m = m
        self.eta = np.array([eta])
        self.probe = probe

    def run(
        self,
        p0: NDArray[np.float64],
        max_steps: int,
        checkpoints: NDArray[np.int64],
        loss_tol: float,
        divergence_norm: float,
    ) -> _Outputs:
        """Run GD from ``p0`` for up to ``max_steps`` steps with the escape monitors."""
        n_par = p0.size
        stack = _Stack(
            p_star=p0[None, :].copy(),
            v1=self.probe[None, :],
            vn=np.full((1, n_par), np.nan),
            m=self.m[None, :, :],
            tol=np.array([loss_tol]),
        )
        opts = _Options(
            radius=0.0,  # w_0 = p_star + 0 · v1 = p0 exactly
            escape_radius=math.inf,
            max_steps=max_steps,
            checkpoints=checkpoints,
            loss_tol=loss_tol,
            divergence_norm=divergence_norm,
            track_sharpness=False,
            window=1,
        )
        return self.run_fn(stack, self.eta, opts, self.shapes, self.dims, self.scalar)

    def advance(self, p: NDArray[np.float64], steps: int) -> NDArray[np.float64]:
        """Return the iterate ``steps`` GD steps after ``p`` (no stopping rule)."""
        if steps == 0:
            return p.copy()
        out = self.run(p, steps, np.array([0], dtype=np.int64), -math.inf, math.inf)
        return out.final_p[0].copy()


def descend(
    weights0: Sequence[ArrayLike],
    target: ArrayLike,
    eta: float,
    *,
    max_steps: int = 10_000,
    checkpoints: ArrayLike | None = None,
    loss_tol: float | None = None,
    divergence_norm: float = 1e6,
    track_sharpness: bool = True,
    engine: str = "auto",
) -> DescendResult:
    """Run gradient descent from ``weights0`` and classify the run (module docstring).

    Parameters
    ----------
    weights0 : sequence of array_like
        Starting layers ``W_1..W_L`` (any point; shapes ``(d_i, d_{i-1})``, ``L >= 1``).
    target : array_like
        Target ``M`` of shape ``(d_L, d_0)``.
    eta : float
        Step size ``η > 0``.
    max_steps : int
        Maximum number of GD steps, ``>= 1``.
    checkpoints : array_like of int, optional
        Strictly increasing steps in ``[0, max_steps]`` at which the loss and the sharpness
        are recorded; default :func:`~sweeplab.dmf.default_checkpoints` ``(max_steps)``.
    loss_tol : float or None
        Convergence threshold on the loss (units of ``M`` squared, ``> 0``). ``None``
        (default): ``LOSS_TOL_REL_TARGET · ||M||_F^2 = 1e-20 ||M||_F^2``; required for
        ``M = 0``.
    divergence_norm : float
        Divergence threshold on ``||w_t||`` (``> 0``).
    track_sharpness : bool
        Compute the sharpness at every checkpoint (one eigenproblem each: exact Kronecker
        formula where ``L(w_t) <= loss_tol``, Lanczos — dense for scalar chains — elsewhere).
    engine : {"auto", "kernel", "numpy"}
        As in :func:`~sweeplab.dmf.escape_batch`: ``"auto"`` uses the compiled kernel for
        scalar chains and chains of width ``<= KERNEL_MAX_WIDTH``, the numpy path otherwise.

    Returns
    -------
    DescendResult
        Outcome (:data:`DESCEND_OUTCOMES`), period, final weights, checkpoint loss and
        sharpness, and the final orbit's mode amplitudes ``u_iᵀ P(t) v_i``.

    Raises
    ------
    ValueError
        On invalid weights, target, step size or option (one line naming the parameter), or
        with ``loss_tol=None`` and a zero target.

    Examples
    --------
    >>> import numpy as np
    >>> from sweeplab import dmf
    >>> m = np.diag([6.0, 5.5, 5.0])
    >>> start = [0.3 * np.eye(3)] * 3
    >>> dmf.mode_thresholds(m, 3).round(4).tolist()
    [0.0306, 0.0343, 0.039]
    >>> res = dmf.descend(start, m, 0.0365, max_steps=20_000, track_sharpness=False)
    >>> res.outcome, res.period, int(res.oscillating().sum())
    ('edge_of_stability', 2, 2)

    """
    ws = as_weights(weights0, "weights0")
    dims = chain_dims(ws)
    m = as_target(target, dims)
    eta = check_positive(eta, "eta")
    max_steps = check_int(max_steps, "max_steps", 1)
    ck = check_checkpoints(checkpoints, max_steps)
    divergence_norm = check_positive(divergence_norm, "divergence_norm")
    if not isinstance(track_sharpness, bool | np.bool_):
        raise ValueError(f"track_sharpness must be True or False, got {track_sharpness!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    norm2 = float(np.vdot(m, m))
    if loss_tol is None:
        if not norm2 > 0:
            raise ValueError("loss_tol must be given (a number > 0) when the target is zero")
        tol = LOSS_TOL_REL_TARGET * norm2
    else:
        tol = check_positive(loss_tol, "loss_tol")
    chain_product(ws)  # refuses a start whose product overflows float64
    shapes = [w.shape for w in ws]
    depth = len(ws)
    p0 = flatten(ws)
    eng = _Engine(shapes, dims, m, eta, _probe_direction(ws, m), engine)

    out = eng.run(p0, max_steps, ck, tol, divergence_norm)
    status = int(out.status[0])
    steps_run = int(out.steps[0])
    final_loss = float(out.final_loss[0])
    final_p = out.final_p[0].copy()
    final_ws = unflatten(final_p, shapes)
    period, rate, to_tol = 0, math.nan, math.nan
    if status == _DIVERGED:
        outcome, method, final_sharp = "diverged", "none", math.nan
    elif status == _CONVERGED:
        outcome, method, final_sharp = "converged", "exact", _exact_sharpness(final_ws)
    else:
        stable = 2.0 / eta >= flattest_sharpness(m, depth)
        outcome, period, rate, to_tol = out.tail.classify(0, final_loss, tol, stable)
        method, final_sharp = _iterate_sharpness(final_ws, m)

    # final orbit
    if outcome == "diverged":
        n_orbit = 0
    elif outcome == "converged":
        n_orbit = 1
    elif outcome == "edge_of_stability" and period > 0:
        n_orbit = min(period, steps_run + 1)
    else:
        n_orbit = min(ORBIT_STEPS, steps_run + 1)
    orbit_steps = np.arange(steps_run - n_orbit + 1, steps_run + 1, dtype=np.int64)

    # iterates needed: checkpoints (for the sharpness) and the orbit, walked from w_0
    ck_sharp = np.full(ck.size, np.nan)
    ck_weights = np.full((ck.size, p0.size), np.nan)
    ck_method = ["none"] * ck.size
    need: set[int] = set(orbit_steps.tolist())
    if track_sharpness:
        # a diverged run has no usable iterate at its last step
        last_ok = steps_run - 1 if status == _DIVERGED else steps_run
        need.update(int(c) for c in ck if c <= last_ok)
    iterates: dict[int, NDArray[np.float64]] = {}
    p, t = p0, 0
    for s in sorted(need):
        p = eng.advance(p, s - t)
        t = s
        iterates[s] = p
    if steps_run in iterates and not np.array_equal(iterates[steps_run], final_p):
        # cannot happen with a deterministic engine; keep the run's own final iterate
        logger.warning("descend: the replayed final iterate differs from the run's")
        iterates[steps_run] = final_p

    if track_sharpness:
        for k, c in enumerate(ck.tolist()):
            if c in iterates:
                ck_weights[k] = iterates[c]
                w_c = unflatten(iterates[c], shapes)
                if c == steps_run:
                    ck_method[k], ck_sharp[k] = method, final_sharp
                elif float(out.traj[0, 0, k]) <= tol:
                    ck_method[k], ck_sharp[k] = "exact", _exact_sharpness(w_c)
                else:
                    ck_method[k], ck_sharp[k] = _iterate_sharpness(w_c, m)
            elif status == _CONVERGED and c > steps_run:
                ck_method[k], ck_sharp[k] = method, final_sharp
                ck_weights[k] = final_p

    u, s_vals, v = _singular_pairs(m)
    amps = np.empty((n_orbit, s_vals.size))
    orbit_loss = np.empty(n_orbit)
    for k, step in enumerate(orbit_steps.tolist()):
        prod = chain_product(unflatten(iterates[step], shapes))
        amps[k] = np.einsum("ki,kl,li->i", u, prod, v)
        resid = prod - m
        orbit_loss[k] = float(np.vdot(resid, resid))

    loss_ck = np.array(out.traj[0, 0], dtype=np.float64)
    arrays = [ck.copy(), loss_ck, ck_sharp, s_vals, orbit_steps, orbit_loss, amps, ck_weights]
    final = tuple(np.array(w, dtype=np.float64) for w in final_ws)
    for arr in (*arrays, *final):
        arr.setflags(write=False)
    logger.debug(
        "descend (%s): eta %.6g, %s, period %d, %d steps", eng.kind, eta, outcome, period, steps_run
    )
    return DescendResult(
        outcome=outcome,
        eta=eta,
        period=int(period),
        contraction_rate=float(rate),
        steps_to_tol=float(to_tol),
        steps_run=steps_run,
        final_loss=final_loss,
        final_weights=final,
        final_sharpness=float(final_sharp),
        final_sharpness_method=method,
        loss_tol=tol,
        checkpoints=arrays[0],
        loss=arrays[1],
        checkpoint_sharpness=arrays[2],
        checkpoint_sharpness_method=tuple(ck_method),
        checkpoint_weights=arrays[7],
        singular_values=arrays[3],
        orbit_steps=arrays[4],
        orbit_loss=arrays[5],
        orbit_amplitudes=arrays[6],
    )
