"""Gradient-descent escape from sharp minimizers (spec §6) and what GD does afterwards.

Protocol. Given a minimizer ``w*`` (target ``M = W_L⋯W_1``) with exact sharpness ``λ*`` and unit
top Hessian eigenvector ``v_1``, start at ``w_0 = w* + r v_1`` and run plain gradient descent
``w_{t+1} = w_t − η ∇L(w_t)`` on ``L(w) = ||W_L⋯W_1 − M||_F^2``. Linear theory: the deviation
along ``v_1`` is multiplied by ``(1 − ηλ*)`` per step, so GD leaves ``w*`` iff ``ηλ* > 2``, after
about ``ln(r_esc / r) / ln|1 − ηλ*|`` steps.

Outcome rules
-------------
Evaluated at every step ``t = 0, 1, ..., max_steps`` on the current iterate ``w_t``, in order:

1. **diverged** if ``L(w_t)`` or ``||w_t||`` is not finite or ``||w_t|| > divergence_norm``
   (run stops; the escape step is not updated at this step);
2. the **escape step** is the first ``t`` with ``||w_t − w*|| > escape_radius``;
3. converged if ``L(w_t) <= loss_tol``: **escaped** if the escape step was set (GD left the
   ball and converged to another minimizer), **stayed** otherwise.

The tolerance is tied to the start: ``loss_tol=None`` (the default) means
``LOSS_TOL_REL · L(w_0) = 1e-4 · L(w_0)`` with ``L(w_0) ≈ λ* r^2 / 2`` the loss at the start
(converged: about 100 times closer to the minimizer manifold than the start, for every
``λ*``). An absolute ``loss_tol`` is refused (``ValueError`` naming ``L(w_0)`` and
``loss_tol``) for a start with ``L(w_0) <= loss_tol``, which would count as converged at
step 0 (``stayed`` without any dynamics). The value used is ``EscapeResult.loss_tol``.

A run that reaches ``t = max_steps`` without either is classified from its own last
iterates, with two cheap monitors (no trajectory is stored):

* the *loss envelope*: the maxima ``m_1..m_4`` of ``L(w_t)`` over the last
  ``4 B`` steps cut into 4 consecutive blocks of ``B = min(RATE_BLOCK, (max_steps + 1) // 4)``
  steps (``RATE_BLOCK = 256``). A block of ``B >= 8`` steps contains every phase of an orbit of
  period ``<= 8``, so the block maxima of such an orbit are equal and the envelope sees only the
  trend. The **contraction rate** per GD step is ``ρ = (m_4 / m_1)^{1 / (3B)}`` (of the loss,
  not of the distance, which contracts at about ``sqrt(ρ)``);
* a *ring buffer* of the last ``PERIOD_MAX + 16 = 24`` values of the loss and of the projection
  ``p_t = <w_t − w*, v_1>``. Lag ``k`` matches if, over the last 16 steps, both
  ``max |p_t − p_{t−k}| <= PERIOD_RTOL · max |p|`` and
  ``max |L_t − L_{t−k}| <= PERIOD_RTOL · max L`` (maxima over the ring buffer). The
  **period** is the smallest matching ``k`` in ``1..PERIOD_MAX`` (``PERIOD_MAX = 8``), else 0.

Then, in this order:

4. **unconverged** (still converging) if the envelope decreases geometrically and fast enough,
   and convergence is possible at all:

   * ``m_1 > m_2 > m_3 > m_4`` and the three log-decrements ``ln(m_{i+1}/m_i)`` agree within a
     factor ``RATE_SPREAD = 1.2``: geometric decay is what the extrapolation assumes;
   * ``ρ <= 1 − RATE_TOL`` with ``RATE_TOL = 5e-6`` per step: a slower decrease needs more than
     ``ln(10) / RATE_TOL ≈ 4.6e5`` steps per decade of loss and counts as stalled;
   * some minimizer is linearly stable, ``2/η >= 2 L ||M||_2^{2 − 2/L}`` (the flattest
     sharpness, spec §5); otherwise GD cannot converge and a falling loss heads to a nonzero
     level.

   Measured on the default escape sweep (``L`` in {4, 15}, widths 1 and 4, ``c`` in
   {1.01, 1.1, 1.5, 3}, 20000 steps, 4 seeds): converging runs have log-decrements agreeing
   within 1.05 and ``1 − ρ`` between ``1.5e-5`` and ``1.5e-3``; stalled runs have
   ``1 − ρ <= 1.5e-6``; runs whose loss dips towards a nonzero edge-of-stability level have
   log-decrements differing by 1.3–1.9.
   ``steps_to_tol = ln(loss_tol / L(w_T)) / ln ρ`` extrapolates the further steps needed.
   Near a minimizer the loss is a sum of geometrically decaying modes and the slowest one
   eventually dominates, so the extrapolation is optimistic (a lower estimate) when a slower
   mode is still hidden under a faster one at ``max_steps``;
5. **edge_of_stability** with ``period = k`` if a period ``k >= 1`` is detected: a bounded orbit
   that repeats every ``k`` steps (``k = 1``: GD has stopped moving without reaching the loss
   tolerance — a non-minimizing critical point or a plateau, seen at ``L = 15``, ``c = 3``).
   ``PERIOD_RTOL = 1e-3`` allows a slow drift of the orbit: drifting period-2 orbits of that
   sweep mismatch at lag 2 by ``≲ 2e-4`` while aperiodic orbits mismatch by
   ``>= 0.1`` at every lag ``<= 8``;
6. **unconverged** (still in a transient) if the envelope is strictly monotone from block to
   block and ``|ln ρ| >= RATE_TOL``: growing (typically a run cut short before its escape
   completes) or falling but not geometrically (several modes still decaying). No
   extrapolation is justified there: ``steps_to_tol`` is nan;
7. **edge_of_stability** with ``period = 0`` otherwise: bounded, not converging, no trend and no
   period ``<= 8`` (aperiodic or longer-period orbit).

``contraction_rate`` is ``ρ`` for ``unconverged`` and ``edge_of_stability`` runs and nan for the
others; ``steps_to_tol`` is set only by rule 4. With
``max_steps + 1 < 32`` the blocks are shorter than 8 steps and the rules above lose their
guarantees (the rate then also sees the oscillation within the orbit).

Sharpness at the end
--------------------
``final_sharpness`` is measured wherever the run ends, with ``final_sharpness_method``:

* ``"exact"`` at a converged iterate (``stayed``/``escaped``): the Kronecker formula
  :func:`~sweeplab.dmf.sharpness` of the final iterate, which is within ``sqrt(loss_tol)`` of a
  minimizer;
* ``"lanczos"`` at any other final iterate (``edge_of_stability``/``unconverged``): the
  largest algebraic eigenvalue of the full Hessian ``∇²L(w_T)`` (not only its Gauss-Newton
  part) by :func:`~sweeplab.dmf.sharpness_numerical` (``eigsh`` over the HVP, relative tolerance
  ``LANCZOS_TOL``, seed 0); nan if Lanczos does not converge (logged);
* ``"dense"`` at such an iterate of a scalar chain (all ``d_i = 1``): the same eigenvalue from
  the closed-form ``L × L`` Hessian (:func:`~sweeplab.dmf.numerical.scalar_hessian`) by a dense
  symmetric eigensolver, exact to rounding and about a thousand times cheaper than Lanczos
  over so small an operator;
* ``"none"`` (value nan) for ``diverged`` runs.

Either value is nan (logged) if it overflows float64 at the final iterate (only possible with a
very large ``divergence_norm``). A *starting* minimizer whose sharpness overflows is refused:
:func:`escape` and :func:`escape_batch` raise
:class:`~sweeplab.dmf.validation.Float64OverflowError` (a ``ValueError``), as
:func:`~sweeplab.dmf.sharpness` does.

With ``track_sharpness=True`` the same value (Lanczos, or dense for a scalar chain) is also
recorded at every checkpoint (``checkpoint_sharpness``; off by default because it costs one
Lanczos run per checkpoint).

Trajectories are recorded at the checkpoint steps; after convergence the remaining checkpoint
entries repeat the final value, after divergence they are nan (including the diverging step).
``steps_run`` is the ``t`` at which the run stopped (number of GD updates made).
A *dense window* of ``window`` consecutive steps (default :data:`WINDOW` = 128) is also recorded
from ``window_start = max(0, escape_step − window // 8)`` on (the ``window_*`` fields; same
fill rules; all nan and ``window_start = -1`` for runs that never escape), so that the departure
along ``v_1`` is drawn step by step rather than between log-spaced checkpoints.

Engines
-------
:func:`escape` is a straightforward per-run loop over layer lists (the reference).
:func:`escape_batch` runs many step sizes (and optionally many same-shape minimizers) at once,
either in the compiled kernel :func:`sweeplab.dmf.kernels.escape_runs` (numba; the monitors
above run inside the loop) or on stacked numpy arrays (the batched reference), chosen by its
``engine`` argument. All engines share the classification code and are tested against each
other. On all-scalar chains the kernel repeats the numpy path's operations in the same order
and its iterates (hence losses, outcomes and steps) are bit-identical; the distances and
projections derived from them are sums taken in another order, equal to rounding (relative
1e-9 seen on ``proj_null``, which is near zero). Matrix chains round differently (index-order
sums vs BLAS), and on sensitive (chaotic) orbits the different rounding makes the
trajectories drift apart over thousands of steps, and with them the detected period or the
step at which a wandering run finally converges.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from . import kernels
from .derivatives import loss_and_gradient_unchecked
from .numerical import scalar_hessian_unchecked, sharpness_numerical
from .products import flatten, unflatten
from .records import OUTCOMES, SHARPNESS_METHODS, WINDOW, default_checkpoints
from .sharpness import flattest_sharpness, sharpness, top_eigenvector
from .validation import (
    DEFAULT_MINIMIZER_RTOL,
    Float64OverflowError,
    as_real_array,
    as_target,
    as_weights,
    chain_dims,
    chain_product,
    check_int,
    check_minimizer,
    check_nonnegative,
    check_positive,
    non_real_reason,
)

__all__ = [
    "ENGINES",
    "KERNEL_MAX_WIDTH",
    "LANCZOS_TOL",
    "LOSS_TOL_REL",
    "OUTCOMES",
    "PERIOD_MAX",
    "PERIOD_RTOL",
    "RATE_BLOCK",
    "RATE_SPREAD",
    "RATE_TOL",
    "SHARPNESS_METHODS",
    "WINDOW",
    "EscapeResult",
    "default_checkpoints",
    "escape",
    "escape_batch",
    "null_direction",
    "predicted_escape_step",
]

logger = logging.getLogger(__name__)

Matrix = NDArray[np.float64]
PERIOD_MAX = 8
"""Longest orbit period looked for (steps)."""
PERIOD_RTOL = 1e-3
"""Relative lag-``k`` mismatch below which an orbit counts as period ``k`` (module docstring)."""
RATE_TOL = 5e-6
"""Per-step change of the loss envelope below which a run counts as stalled, not trending."""
RATE_SPREAD = 1.2
"""Largest ratio between the per-block log-decrements of a decrease that counts as geometric."""
RATE_BLOCK = 256
"""Block length (steps) of the loss envelope; 4 blocks at the end of the run are used."""
LANCZOS_TOL = 1e-12
"""Relative tolerance of the Lanczos sharpness at non-converged final iterates."""
LOSS_TOL_REL = 1e-4
"""Default convergence threshold relative to the starting loss: with ``loss_tol=None`` a run
converges once ``L(w_t) <= LOSS_TOL_REL · L(w_0)`` (module docstring)."""
KERNEL_MAX_WIDTH = 16
"""Widest layer (``max d_i``) run by the compiled kernel under ``engine="auto"``; wider chains
use the stacked numpy path (see :func:`escape_batch`)."""
SQUARE_MAX_WIDTH = 16
"""Chains of ``d × d`` layers with ``d`` up to this use a kernel compiled for their width."""
ENGINES: tuple[str, ...] = ("auto", "kernel", "numpy")
"""Values of the ``engine`` argument of :func:`escape_batch`."""

_N_BLOCKS = 4
_PERIOD_SPAN = 16  # lag comparisons per candidate period
_RING = PERIOD_MAX + _PERIOD_SPAN

_DIVERGED, _CONVERGED, _RUNNING = 1, 2, 3


@dataclass(frozen=True, eq=False)
class EscapeResult:
    """Result of one gradient-descent escape run (arrays are read-only).

    The outcome rules and their thresholds are in the :mod:`~sweeplab.dmf.escape` module
    docstring; in short: ``stayed``/``escaped`` converged (loss ``<= loss_tol``) without/after
    leaving the escape ball; ``unconverged`` is still trending at ``max_steps`` (loss envelope
    monotone, changing by at least ``RATE_TOL`` per step: geometric decrease with an
    extrapolated ``steps_to_tol``, or another transient); ``edge_of_stability`` is bounded
    without such a trend, or periodic (``period`` ``k <= 8`` of the orbit, 0 if none found);
    ``diverged`` blew up.

    Attributes
    ----------
    outcome : str
        One of :data:`OUTCOMES`: ``"stayed"``, ``"escaped"``, ``"edge_of_stability"``,
        ``"unconverged"``, ``"diverged"``.
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
        ``λ_max(∇²L)`` at the last iterate, computed as ``final_sharpness_method`` says; nan
        when diverged (or if Lanczos failed to converge, or the value overflows float64).
    final_sharpness_method : str
        One of :data:`SHARPNESS_METHODS`: ``"exact"`` (Kronecker formula, converged runs),
        ``"lanczos"`` (``eigsh`` over the HVP of the full Hessian, ``edge_of_stability`` and
        ``unconverged`` runs), ``"dense"`` (the same runs of a scalar chain: closed-form Hessian,
        dense eigensolver), ``"none"`` (diverged runs).
    period : int
        Period (steps, ``1..PERIOD_MAX``) of the final orbit of an ``edge_of_stability`` run;
        ``0`` if none was found and for every other outcome.
    contraction_rate : float
        Per-step factor ``ρ`` of the loss envelope over the last ``4 B`` steps
        (``ρ < 1``: falling, ``ρ > 1``: growing) for ``unconverged`` and
        ``edge_of_stability`` runs; nan for the others.
    steps_to_tol : float
        Extrapolated further GD steps after ``steps_run`` until ``loss <= loss_tol``,
        ``ln(loss_tol / final_loss) / ln ρ``, for ``unconverged`` runs whose loss falls
        geometrically; nan otherwise.
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
    checkpoint_sharpness : ndarray, shape (n_ckpt,)
        With ``track_sharpness=True``: ``λ_max(∇²L(w_t))`` (Lanczos; dense for scalar chains)
        at the checkpoints (same fill rules as ``loss``); all nan otherwise.
    final_weights : tuple of ndarray
        The last iterate ``W_1..W_L`` (non-finite entries possible when diverged).
    loss_tol : float
        Convergence threshold on the loss actually used (units of ``M`` squared):
        the ``loss_tol`` argument, or ``LOSS_TOL_REL · L(w_0)`` when it was ``None``.
    start_loss : float
        ``L(w_0)`` at the start ``w_0 = w* + r v_1`` (about ``λ* r^2 / 2``).
    window_start : int
        First step of the dense window around the escape step,
        ``max(0, escape_step − window // 8)``; ``-1`` if the run never escaped.
    window_loss, window_distance, window_proj_top, window_proj_null : ndarray, shape (window,)
        ``L(w_t)``, ``||w_t − w*||``, ``<w_t − w*, v_1>`` and ``<w_t − w*, v_N>`` at every step
        ``t = window_start + k``, ``k = 0..window − 1`` (:attr:`window_steps`); same fill rules
        as the checkpoint trajectories (after convergence the final value, after divergence and
        past ``max_steps`` nan; all nan if the run never escaped).

    """

    outcome: str
    eta: float
    sharpness_star: float
    escape_step: int
    predicted_escape_step: float
    final_loss: float
    final_sharpness: float
    final_sharpness_method: str
    period: int
    contraction_rate: float
    steps_to_tol: float
    final_distance: float
    steps_run: int
    radius: float
    escape_radius: float
    checkpoints: NDArray[np.int64]
    loss: NDArray[np.float64]
    distance: NDArray[np.float64]
    proj_top: NDArray[np.float64]
    proj_null: NDArray[np.float64]
    checkpoint_sharpness: NDArray[np.float64]
    final_weights: tuple[NDArray[np.float64], ...]
    loss_tol: float
    start_loss: float
    window_start: int
    window_loss: NDArray[np.float64]
    window_distance: NDArray[np.float64]
    window_proj_top: NDArray[np.float64]
    window_proj_null: NDArray[np.float64]

    @property
    def window_steps(self) -> NDArray[np.int64]:
        """Steps of the dense window, ``window_start + k`` (all ``-1`` if the run never escaped)."""
        k = np.arange(self.window_loss.size, dtype=np.int64)
        return np.full_like(k, -1) if self.window_start < 0 else self.window_start + k

    @property
    def c(self) -> float:
        """Step size relative to the stability threshold, ``c = ηλ*/2``."""
        return self.eta * self.sharpness_star / 2.0

    @property
    def converged(self) -> bool:
        """Whether the run converged to a minimizer (``stayed`` or ``escaped``)."""
        return self.outcome in ("stayed", "escaped")


def predicted_escape_step(
    sharpness_star: float, eta: float, radius: float, escape_radius: float
) -> float:
    """Return the linear-theory escape step ``ln(r_esc / r) / ln|1 − ηλ*|`` (inf if no growth).

    ``sharpness_star`` is a finite number ``>= 0``; ``eta``, ``radius`` and ``escape_radius``
    are finite numbers ``> 0`` (bools refused).
    """
    sharpness_star = check_nonnegative(sharpness_star, "sharpness_star")
    eta = check_positive(eta, "eta")
    radius = check_positive(radius, "radius")
    escape_radius = check_positive(escape_radius, "escape_radius")
    growth = abs(1.0 - eta * sharpness_star)
    if not np.isfinite(growth):
        raise Float64OverflowError(
            f"eta * sharpness_star overflows float64 (eta = {eta:.3g}, sharpness_star = "
            f"{sharpness_star:.3g})"
        )
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


@dataclass(frozen=True)
class _Options:
    radius: float
    escape_radius: float
    max_steps: int
    checkpoints: NDArray[np.int64]
    loss_tol: float | None
    divergence_norm: float
    track_sharpness: bool
    window: int

    @property
    def lead(self) -> int:
        """Steps of the dense window before the escape step."""
        return self.window // 8


def check_checkpoints(checkpoints: ArrayLike | None, max_steps: int) -> NDArray[np.int64]:
    """Return validated checkpoint steps: strictly increasing integers in ``[0, max_steps]``.

    ``None`` gives :func:`~sweeplab.dmf.records.default_checkpoints`. Shared by
    :func:`escape`, :func:`escape_batch` and :func:`~sweeplab.dmf.descend.descend`.
    """
    if checkpoints is None:
        return default_checkpoints(max_steps)
    reason = non_real_reason(checkpoints)
    if reason is not None:
        raise ValueError(f"checkpoints must be integer step indices, got {reason}")
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
            f"checkpoints must lie in [0, max_steps = {max_steps}], got range [{ck[0]}, {ck[-1]}]"
        )
    return ck


def _options(
    radius: float,
    escape_radius: float,
    max_steps: int,
    checkpoints: ArrayLike | None,
    loss_tol: float | None,
    divergence_norm: float,
    track_sharpness: bool,
    window: int = WINDOW,
) -> _Options:
    radius = check_positive(radius, "radius")
    escape_radius = check_positive(escape_radius, "escape_radius")
    if not escape_radius > radius:
        raise ValueError(
            f"escape_radius must exceed radius, got escape_radius = {escape_radius}, "
            f"radius = {radius}"
        )
    max_steps = check_int(max_steps, "max_steps", 1)
    ck = check_checkpoints(checkpoints, max_steps)
    if loss_tol is not None:
        loss_tol = check_positive(loss_tol, "loss_tol")
    window = check_int(window, "window", 1)
    divergence_norm = check_positive(divergence_norm, "divergence_norm")
    if not isinstance(track_sharpness, bool | np.bool_):
        raise ValueError(f"track_sharpness must be True or False, got {track_sharpness!r}")
    ck = ck.copy()
    ck.setflags(write=False)
    return _Options(
        radius,
        escape_radius,
        max_steps,
        ck,
        loss_tol,
        divergence_norm,
        bool(track_sharpness),
        window,
    )


@dataclass(frozen=True)
class _Start:
    """A validated minimizer with its escape geometry."""

    weights: list[Matrix]
    target: Matrix
    lam: float
    v1: list[Matrix]
    vn: list[Matrix] | None
    flat: float  # flattest sharpness over all minimizers of the target (spec §5)

    def tolerance(self, opts: _Options) -> tuple[float, float]:
        """Return ``(loss_tol, L(w_0))`` of a run from this start; refuse a start already below.

        ``loss_tol`` is ``opts.loss_tol``, or ``LOSS_TOL_REL · L(w_0)`` if that is ``None``.
        """
        w0 = [w + opts.radius * v for w, v in zip(self.weights, self.v1, strict=True)]
        with np.errstate(over="ignore", invalid="ignore"):
            start_loss = loss_and_gradient_unchecked(w0, self.target)[0]
        tol = LOSS_TOL_REL * start_loss if opts.loss_tol is None else opts.loss_tol
        if not start_loss > tol:
            raise ValueError(
                f"the starting loss L(w* + r v_1) = {start_loss:.6g} (radius r = {opts.radius:g},"
                f" λ* = {self.lam:.6g}, λ* r^2/2 = {self.lam * opts.radius**2 / 2:.6g}) is not "
                f"above loss_tol = {tol:.6g}: the run would count as converged at step 0. Use "
                f"loss_tol=None (LOSS_TOL_REL = {LOSS_TOL_REL:g} of the starting loss), a "
                "smaller loss_tol or a larger radius"
            )
        return tol, start_loss


def _start(weights: Sequence[ArrayLike], target: ArrayLike | None, rtol: float) -> _Start:
    ws = as_weights(weights)
    if len(ws) < 2:
        raise ValueError("escape needs depth L >= 2 (the depth-1 loss is convex), got L = 1")
    prod = chain_product(ws)
    if target is not None:
        m = as_target(target, chain_dims(ws))
        check_minimizer(ws, m, rtol)
    else:
        m = prod
    lam = sharpness(ws)
    if not lam > 0:
        raise ValueError(f"escape needs a minimizer with positive sharpness, got λ* = {lam}")
    flat = flattest_sharpness(m, len(ws))
    return _Start(ws, m, lam, top_eigenvector(ws), null_direction(ws), flat)


def _check_eta(eta: float, name: str = "eta") -> float:
    return check_positive(eta, name)


class _Tail:
    """Monitors of the last iterates of up to ``n`` runs that share ``max_steps``.

    Holds the loss-envelope block maxima (shape ``(n, n_blocks)``) over the last
    ``n_blocks · block`` steps and ring buffers (shape ``(n, ring)``) of the loss and of the
    projection on ``v_1`` over the last ``ring`` steps; runs are addressed by their index.
    Memory ``O(n)``, work ``O(1)`` per run and step, only near the end of the run.
    """

    def __init__(self, n: int, max_steps: int) -> None:
        total = max_steps + 1  # steps 0..max_steps are evaluated
        self.n_blocks = min(_N_BLOCKS, total)
        self.block = max(1, min(RATE_BLOCK, total // self.n_blocks))
        self.t_blocks = total - self.n_blocks * self.block
        self.ring = min(_RING, total)
        self.t_ring = total - self.ring
        self.t_start = min(self.t_blocks, self.t_ring)  # first step that needs an update
        self.bmax = np.full((n, self.n_blocks), -np.inf)
        self.loss_ring = np.full((n, self.ring), np.nan)
        self.proj_ring = np.full((n, self.ring), np.nan)

    def wants_projection(self, t: int) -> bool:
        """Whether step ``t`` is in the ring-buffer window (projections are needed)."""
        return t >= self.t_ring

    def update(
        self,
        t: int,
        rows: NDArray[np.intp],
        loss_t: NDArray[np.float64],
        proj_t: NDArray[np.float64] | None,
    ) -> None:
        """Record step ``t`` of runs ``rows`` (loss and, in the ring window, projection)."""
        if t >= self.t_blocks:
            j = (t - self.t_blocks) // self.block
            self.bmax[rows, j] = np.maximum(self.bmax[rows, j], loss_t)
        if t >= self.t_ring and proj_t is not None:
            k = t - self.t_ring
            self.loss_ring[rows, k] = loss_t
            self.proj_ring[rows, k] = proj_t

    def rate(self, j: int) -> tuple[float, int, bool]:
        """Return ``(ρ, trend, geometric)`` of run ``j``'s loss envelope.

        ``ρ`` is the rate per step between the first and last block, ``trend`` is ``+1``/``-1``
        if the block maxima strictly increase/decrease (else 0), and ``geometric`` says whether
        a decrease is geometric: the per-block log-decrements agree within ``RATE_SPREAD``.
        """
        m = self.bmax[j]
        if self.n_blocks < 2 or not np.all(np.isfinite(m)) or not np.all(m > 0):
            return float("nan"), 0, False
        rho = float((m[-1] / m[0]) ** (1.0 / ((self.n_blocks - 1) * self.block)))
        lr = np.diff(np.log(m))
        trend = 1 if np.all(lr > 0) else (-1 if np.all(lr < 0) else 0)
        geometric = trend < 0 and bool(np.max(lr) / np.min(lr) >= 1.0 / RATE_SPREAD)
        return rho, trend, geometric

    def period(self, j: int) -> int:
        """Return the smallest ``k <= PERIOD_MAX`` at which run ``j``'s last iterates repeat."""
        return _detect_period(self.proj_ring[j], self.loss_ring[j])

    def classify(
        self, j: int, final_loss: float, loss_tol: float, stable_minimizer: bool
    ) -> tuple[str, int, float, float]:
        """Return ``(outcome, period, contraction_rate, steps_to_tol)`` of a run at ``max_steps``.

        Rules 4–7 of the module docstring; ``stable_minimizer`` says whether some minimizer is
        linearly stable at this step size (``2/η >= flattest sharpness``).
        """
        rho, trend, geometric = self.rate(j)
        if stable_minimizer and geometric and rho <= 1.0 - RATE_TOL:
            return "unconverged", 0, rho, float(np.log(loss_tol / final_loss) / np.log(rho))
        k = self.period(j)
        if k > 0:
            return "edge_of_stability", k, rho, float("nan")
        if trend != 0 and abs(np.log(rho)) >= RATE_TOL:
            return "unconverged", 0, rho, float("nan")
        return "edge_of_stability", 0, rho, float("nan")


def _detect_period(proj: NDArray[np.float64], loss: NDArray[np.float64]) -> int:
    """Return the smallest lag ``k`` in ``1..PERIOD_MAX`` at which both series repeat, else 0.

    Lag ``k`` matches if over the last ``min(16, n − k)`` entries (at least ``k``) both
    ``max |x_t − x_{t−k}| <= PERIOD_RTOL · max |x|`` (``x`` = ``proj``, then ``loss``; maxima
    over the whole buffer). Series of shape ``(n,)``, oldest first; nan entries never match.
    """
    n = proj.size
    scales = [PERIOD_RTOL * np.max(np.abs(x)) for x in (proj, loss)]
    for k in range(1, min(PERIOD_MAX, n - 1) + 1):
        span = min(_PERIOD_SPAN, n - k)
        if span < k:
            break
        ok = True
        for x, tol in zip((proj, loss), scales, strict=True):
            mismatch = np.max(np.abs(x[n - span :] - x[n - span - k : n - k]))
            if not mismatch <= tol:
                ok = False
                break
        if ok:
            return k
    return 0


def _lanczos_sharpness(weights: list[Matrix], target: Matrix) -> float:
    """Return Lanczos ``λ_max(∇²L)`` at any finite point.

    Chains of ``d × d`` layers (``2 <= d <= SQUARE_MAX_WIDTH``) run the same ``eigsh`` call
    as :func:`~sweeplab.dmf.sharpness_numerical` (``k = 1``, ``"LA"``, ``tol = LANCZOS_TOL``,
    start vector of seed 0, ``ncv = min(N − 1, 40)``) over the compiled HVP
    :func:`sweeplab.dmf.kernels.square_hvp`; other chains call
    :func:`~sweeplab.dmf.sharpness_numerical`. nan (logged) if Lanczos does not converge or
    the Hessian overflows float64 there.
    """
    try:
        dims = chain_dims(weights)
        if len(set(dims)) == 1 and 2 <= dims[0] <= SQUARE_MAX_WIDTH:
            return _lanczos_square(weights, target)
        return sharpness_numerical(weights, target, "lanczos", tol=LANCZOS_TOL, seed=0)
    except ArpackNoConvergence:
        logger.warning("Lanczos sharpness did not converge at a final iterate; recording nan")
        return float("nan")
    except Float64OverflowError as exc:
        logger.warning("Lanczos sharpness not representable at an iterate (%s); recording nan", exc)
        return float("nan")


def _iterate_sharpness(weights: list[Matrix], target: Matrix) -> tuple[str, float]:
    """Return ``(method, λ_max(∇²L))`` at a non-converged iterate (module docstring).

    ``"dense"`` (eigenvalues of :func:`~sweeplab.dmf.numerical.scalar_hessian`) for a scalar
    chain, ``"lanczos"`` (:func:`_lanczos_sharpness`) otherwise; nan (logged) if the value
    overflows float64.
    """
    if all(w.shape == (1, 1) for w in weights):
        w = [float(x[0, 0]) for x in weights]
        with np.errstate(over="ignore", invalid="ignore"):
            h = scalar_hessian_unchecked(w, float(np.ravel(target)[0]))
            out = float(np.linalg.eigvalsh(h)[-1]) if np.isfinite(h).all() else math.nan
        if not np.isfinite(out):
            logger.warning("dense sharpness not representable at an iterate; recording nan")
        return "dense", out
    return "lanczos", _lanczos_sharpness(weights, target)


def _lanczos_square(weights: list[Matrix], target: Matrix) -> float:
    """Lanczos ``λ_max(∇²L)`` of a chain of ``d × d`` layers over the compiled HVP."""
    p = _kernel_array(flatten(weights))
    m = _kernel_array(np.ravel(target))
    square = (0,) * weights[0].shape[0]
    n = p.size

    def matvec(x: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.empty(n)
        kernels.square_hvp(p, m, square, _kernel_array(np.ravel(x)), out)
        if not np.all(np.isfinite(out)):
            raise Float64OverflowError("the Hessian-vector product overflows float64")
        return out

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(np.random.SeedSequence(0)).standard_normal(n)
    vals = eigsh(
        op, k=1, which="LA", tol=LANCZOS_TOL, v0=v0, ncv=min(n - 1, 40), return_eigenvectors=False
    )
    out = float(vals[-1])
    if not np.isfinite(out):
        raise Float64OverflowError(f"the sharpness {out} is not finite")
    return out


def _exact_sharpness(weights: list[Matrix]) -> float:
    """Return the Kronecker sharpness at a converged iterate, nan (logged) if it overflows."""
    try:
        return sharpness(weights)
    except Float64OverflowError as exc:
        logger.warning("sharpness not representable at the final iterate (%s); recording nan", exc)
        return float("nan")


def _fill_result(
    *,
    status: int,
    eta: float,
    start: _Start,
    opts: _Options,
    tail: _Tail,
    run: int,
    escape_step: int,
    final_loss: float,
    final_weights: list[Matrix],
    final_distance: float,
    steps_run: int,
    traj: NDArray[np.float64],
    loss_tol: float,
    start_loss: float,
    window_start: int,
    window: NDArray[np.float64],
) -> EscapeResult:
    """Classify one finished run (module docstring rules) and assemble its result.

    ``traj`` has shape ``(5, n_ckpt)``: loss, distance, proj_top, proj_null and sharpness;
    ``window`` has shape ``(4, W)``: loss, distance, proj_top and proj_null from
    ``window_start`` on.
    """
    period, rate, to_tol = 0, float("nan"), float("nan")
    if status == _DIVERGED:
        outcome, method, final_sharp = "diverged", "none", float("nan")
    elif status == _CONVERGED:
        outcome = "escaped" if escape_step >= 0 else "stayed"
        method, final_sharp = "exact", _exact_sharpness(final_weights)
    else:
        stable = 2.0 / eta >= start.flat
        outcome, period, rate, to_tol = tail.classify(run, final_loss, loss_tol, stable)
        method, final_sharp = _iterate_sharpness(final_weights, start.target)
    arrays = [np.array(row, dtype=np.float64) for row in traj]
    wins = [np.array(row, dtype=np.float64) for row in window]
    final = tuple(np.array(w, dtype=np.float64) for w in final_weights)
    for arr in (*arrays, *wins, *final):
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
        final_sharpness_method=method,
        period=int(period),
        contraction_rate=float(rate),
        steps_to_tol=float(to_tol),
        final_distance=float(final_distance),
        steps_run=int(steps_run),
        radius=opts.radius,
        escape_radius=opts.escape_radius,
        checkpoints=opts.checkpoints,
        loss=arrays[0],
        distance=arrays[1],
        proj_top=arrays[2],
        proj_null=arrays[3],
        checkpoint_sharpness=arrays[4],
        final_weights=final,
        loss_tol=float(loss_tol),
        start_loss=float(start_loss),
        window_start=int(window_start),
        window_loss=wins[0],
        window_distance=wins[1],
        window_proj_top=wins[2],
        window_proj_null=wins[3],
    )


def escape(
    weights: Sequence[ArrayLike],
    eta: float,
    *,
    radius: float = 1e-9,
    escape_radius: float = 1e-3,
    max_steps: int = 10_000,
    checkpoints: ArrayLike | None = None,
    loss_tol: float | None = None,
    divergence_norm: float = 1e6,
    target: ArrayLike | None = None,
    rtol: float = DEFAULT_MINIMIZER_RTOL,
    track_sharpness: bool = False,
    window: int = WINDOW,
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
        Maximum number of GD steps, ``>= 1``. Runs that do not converge are classified from
        their last ``min(4 · RATE_BLOCK, max_steps + 1)`` steps (module docstring).
    checkpoints : array_like of int, optional
        Strictly increasing steps in ``[0, max_steps]`` at which trajectories are recorded;
        default :func:`default_checkpoints` ``(max_steps)``. Runs with equal checkpoints stack
        on a common step axis.
    loss_tol : float or None
        Convergence threshold on the loss, in units of ``M`` squared. ``None`` (default):
        ``LOSS_TOL_REL · L(w_0) = 1e-4 · L(w_0)``, tied to the starting loss
        ``L(w_0) ≈ λ* r^2 / 2`` (a converged run is then about 100 times closer to a minimizer
        than it started, whatever ``λ*``). A number is an absolute threshold; it must lie
        above the float64 rounding floor of the loss at a minimizer, roughly
        ``(L ε ||M||_F)^2`` with ``ε = 2.2e-16`` (``1e-20`` suits ``||M||_F ≲ 1e2``), and below
        the starting loss: a start with ``L(w_0) <= loss_tol`` is refused (``ValueError``
        naming both numbers).
    divergence_norm : float
        Divergence threshold on ``||w_t||``.
    target : array_like, optional
        If given, check first that ``weights`` is a minimizer of it (within ``rtol``) and run GD
        on this target instead of the product of ``weights``.
    rtol : float
        Relative residual tolerance for that check.
    track_sharpness : bool
        Also record the Lanczos sharpness ``λ_max(∇²L(w_t))`` at every checkpoint
        (``checkpoint_sharpness``); costs one Lanczos run per checkpoint. Default off.
    window : int
        Length (steps, ``>= 1``) of the dense window recorded around the escape step, from
        ``window // 8`` steps before it (``window_*`` fields of :class:`EscapeResult`).

    Returns
    -------
    EscapeResult
        Outcome, escape step (observed and predicted), final loss/sharpness, diagnostics of
        non-converged runs and trajectories. The outcome rules are in the module docstring.

    Raises
    ------
    ValueError
        On an invalid argument (booleans, complex and other non-real values are refused), if
        ``weights`` is not a minimizer of ``target``, if the starting loss is not above
        ``loss_tol``, or, as :class:`~sweeplab.dmf.validation.Float64OverflowError`, if the
        product or the sharpness of the minimizer overflows float64.

    Notes
    -----
    This is the per-run reference loop over layer lists (numpy); :func:`escape_batch` runs the
    same protocol through compiled kernels.

    """
    eta = _check_eta(eta)
    opts = _options(
        radius,
        escape_radius,
        max_steps,
        checkpoints,
        loss_tol,
        divergence_norm,
        track_sharpness,
        window,
    )
    start = _start(weights, target, rtol)
    tol, start_loss = start.tolerance(opts)
    ws = [w + opts.radius * v for w, v in zip(start.weights, start.v1, strict=True)]
    star, v1 = start.weights, start.v1
    n_ck = opts.checkpoints.size
    traj = np.full((5, n_ck), np.nan)
    lead = opts.lead
    pre: list[tuple[float, float, list[Matrix]]] = [(np.nan, np.nan, [])] * max(lead, 1)
    win = np.full((4, opts.window), np.nan)
    w0 = -1
    tail = _Tail(1, opts.max_steps)
    run = np.zeros(1, dtype=np.intp)
    ck_pos = 0
    escape_step = -1
    status = _RUNNING
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
                w0 = max(0, t - lead)
                for s in range(w0, t):
                    p_loss, p_dist, p_diff = pre[s % len(pre)]
                    win[:, s - w0] = _projections(p_loss, p_dist, p_diff, v1, start.vn)
            converged = loss_t <= tol
            at_ck = ck_pos < n_ck and opts.checkpoints[ck_pos] == t
            in_win = w0 >= 0 and t - w0 < opts.window
            row = None
            if converged or at_ck or in_win:
                row = (
                    *_projections(loss_t, dist, diff, v1, start.vn),
                    _iterate_sharpness(ws, start.target)[1]
                    if opts.track_sharpness and (converged or at_ck)
                    else np.nan,
                )
            if in_win:
                win[:, t - w0] = row[:4]
            if at_ck:
                traj[:, ck_pos] = row
                ck_pos += 1
            if converged:
                traj[:, ck_pos:] = np.asarray(row)[:, None]
                if w0 >= 0:
                    win[:, t - w0 + 1 :] = np.asarray(row[:4])[:, None]
                status = _CONVERGED
                break
            if escape_step < 0 and lead > 0:
                pre[t % len(pre)] = (loss_t, dist, diff)
            if t >= tail.t_start:
                proj = None
                if tail.wants_projection(t):
                    proj = np.array([sum(np.vdot(d, v) for d, v in zip(diff, v1, strict=True))])
                tail.update(t, run, np.array([loss_t]), proj)
            if t == opts.max_steps:
                break
            ws = [w - eta * g for w, g in zip(ws, grads, strict=True)]
    return _fill_result(
        status=status,
        eta=eta,
        start=start,
        opts=opts,
        tail=tail,
        run=0,
        escape_step=escape_step,
        final_loss=loss_t,
        final_weights=ws,
        final_distance=dist,
        steps_run=t,
        traj=traj,
        loss_tol=tol,
        start_loss=start_loss,
        window_start=w0,
        window=win,
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
    loss_tol: float | None = None,
    divergence_norm: float = 1e6,
    target: ArrayLike | None = None,
    rtol: float = DEFAULT_MINIMIZER_RTOL,
    track_sharpness: bool = False,
    window: int = WINDOW,
    engine: str = "auto",
) -> list[EscapeResult]:
    """Run :func:`escape` for many step sizes at once (compiled kernel or stacked numpy).

    Parameters
    ----------
    weights : sequence of ndarray, or sequence of sequences of ndarray
        Either one minimizer (a sequence of 2-D ``numpy.ndarray`` layers), shared by all step
        sizes, or one minimizer per step size (a list/tuple of such sequences, all with the
        same layer shapes, ``len(weights) == len(etas)``).
    etas : array_like, shape (n,)
        Step sizes, each ``> 0``.
    radius, escape_radius, max_steps, checkpoints, loss_tol, divergence_norm, rtol
        As in :func:`escape`, shared by all runs (``loss_tol=None``: relative to each run's
        starting loss).
    track_sharpness, window
        As in :func:`escape`.
    target : array_like, optional
        Only with a single minimizer: as in :func:`escape`.
    engine : {"auto", "kernel", "numpy"}
        ``"kernel"``: the compiled kernel :func:`sweeplab.dmf.kernels.escape_runs` (one run
        after the other, the monitors inside the loop); ``"numpy"``: the stacked numpy
        reference (all runs advance together; all-scalar chains use prefix/suffix products,
        other chains batched ``matmul``; finished runs are dropped from the stack).
        ``"auto"`` (default) takes the kernel for all-scalar chains and for matrix chains whose
        widest layer is at most :data:`KERNEL_MAX_WIDTH`, the numpy path otherwise and whenever
        ``track_sharpness`` is on (Lanczos at the checkpoints runs in Python).

    Returns
    -------
    list of EscapeResult
        One result per step size, in order, with the same meaning as :func:`escape`. The
        classification of non-converged runs and the final sharpness use the same code in
        every engine. On all-scalar chains the kernel's iterates are bit-identical to the
        numpy path's (distances and projections equal to rounding); on matrix chains they
        agree to rounding, so the engines can part on sensitive (chaotic) orbits.

    Raises
    ------
    ValueError
        As :func:`escape`; also for an unknown ``engine`` or ``engine="kernel"`` with
        ``track_sharpness``.

    """
    eta_arr = as_real_array(etas, "etas")
    if eta_arr.ndim != 1 or eta_arr.size == 0:
        raise ValueError(f"etas must be a non-empty 1-D array, got shape {eta_arr.shape}")
    for i, e in enumerate(eta_arr):
        _check_eta(e, f"etas[{i}]")
    opts = _options(
        radius,
        escape_radius,
        max_steps,
        checkpoints,
        loss_tol,
        divergence_norm,
        track_sharpness,
        window,
    )
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "kernel" and opts.track_sharpness:
        raise ValueError("engine='kernel' cannot track the sharpness; use 'auto' or 'numpy'")
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
    tols = np.array([s.tolerance(opts) for s in starts])  # (1 or n, 2): loss_tol, L(w_0)
    shapes = [w.shape for w in starts[0].weights]
    dims = chain_dims(starts[0].weights)
    scalar = all(d == 1 for d in dims)
    if engine == "auto":
        use_kernel = not opts.track_sharpness and (scalar or max(dims) <= KERNEL_MAX_WIDTH)
    else:
        use_kernel = engine == "kernel"

    stack = _Stack(
        p_star=np.stack([flatten(s.weights) for s in starts]),
        v1=np.stack([flatten(s.v1) for s in starts]),
        vn=np.stack(
            [
                flatten(s.vn)
                if s.vn is not None
                else np.full(sum(a * b for a, b in shapes), np.nan)
                for s in starts
            ]
        ),
        m=np.stack([s.target for s in starts]),
        tol=np.ascontiguousarray(tols[:, 0]),
    )
    run = _run_kernel if use_kernel else _run_numpy
    out = run(stack, eta_arr, opts, shapes, dims, scalar)

    results = []
    for j in range(n):
        js = j if many else 0
        results.append(
            _fill_result(
                status=int(out.status[j]),
                eta=float(eta_arr[j]),
                start=starts[js],
                opts=opts,
                tail=out.tail,
                run=j,
                escape_step=int(out.esc[j]),
                final_loss=float(out.final_loss[j]),
                final_weights=unflatten(out.final_p[j], shapes),
                final_distance=float(out.final_dist[j]),
                steps_run=int(out.steps[j]),
                traj=out.traj[j],
                loss_tol=float(tols[js, 0]),
                start_loss=float(tols[js, 1]),
                window_start=int(out.win_start[j]),
                window=out.win[j],
            )
        )
    logger.debug(
        "escape_batch (%s): %d runs, outcomes %s",
        "kernel" if use_kernel else "numpy",
        n,
        [r.outcome for r in results],
    )
    return results


@dataclass(frozen=True)
class _Stack:
    """Per-start inputs of a batch, one row per start (1 shared, or ``n``).

    Flat ``w*``, ``v_1``, ``v_N`` (nan if none), targets ``(·, d_L, d_0)`` and loss thresholds.
    """

    p_star: NDArray[np.float64]
    v1: NDArray[np.float64]
    vn: NDArray[np.float64]
    m: NDArray[np.float64]
    tol: NDArray[np.float64]


@dataclass
class _Outputs:
    """Per-run results of an engine (``n`` runs, ``N`` parameters)."""

    status: NDArray[np.int64]
    steps: NDArray[np.int64]
    esc: NDArray[np.int64]
    final_loss: NDArray[np.float64]
    final_dist: NDArray[np.float64]
    final_p: NDArray[np.float64]  # (n, N)
    traj: NDArray[np.float64]  # (n, 5, n_ck)
    tail: _Tail
    win_start: NDArray[np.int64]
    win: NDArray[np.float64]  # (n, 4, window)


def _empty_outputs(n: int, n_par: int, opts: _Options) -> _Outputs:
    return _Outputs(
        status=np.full(n, _RUNNING, dtype=np.int64),
        steps=np.zeros(n, dtype=np.int64),
        esc=np.full(n, -1, dtype=np.int64),
        final_loss=np.full(n, np.nan),
        final_dist=np.full(n, np.nan),
        final_p=np.full((n, n_par), np.nan),
        traj=np.full((n, 5, opts.checkpoints.size), np.nan),
        tail=_Tail(n, opts.max_steps),
        win_start=np.full(n, -1, dtype=np.int64),
        win=np.full((n, 4, opts.window), np.nan),
    )


def _kernel_array(values: ArrayLike, dtype: type = np.float64) -> NDArray[Any]:
    """``values`` as a writable C-contiguous array of ``dtype`` (copied only if needed).

    Numba compiles one version of a kernel per argument type, and an array's type includes
    its layout and whether it is read-only: a broadcast view (read-only) here and a copy there
    compiled :func:`kernels.escape_runs` up to four times per chain kind, about 6 s each.
    """
    return np.require(np.asarray(values, dtype=dtype), requirements=("C", "W"))


def _run_kernel(
    stack: _Stack,
    etas: NDArray[np.float64],
    opts: _Options,
    shapes: list[tuple[int, int]],
    dims: tuple[int, ...],
    scalar: bool,
) -> _Outputs:
    """Run every step size through the compiled kernel (:func:`kernels.escape_runs`)."""
    n = etas.size
    out = _empty_outputs(n, stack.p_star.shape[1], opts)
    tail = out.tail
    p0 = np.broadcast_to(stack.p_star + opts.radius * stack.v1, (n, stack.p_star.shape[1]))
    square = not scalar and len(set(dims)) == 1 and dims[0] <= SQUARE_MAX_WIDTH
    steps_total = kernels.escape_runs(
        scalar,
        (0,) * dims[0] if square else (),
        _kernel_array(p0),
        _kernel_array(stack.p_star),
        _kernel_array(stack.v1),
        _kernel_array(stack.vn),
        _kernel_array(stack.m.reshape(stack.m.shape[0], -1)),
        _kernel_array(dims, np.int64),
        _kernel_array(etas),
        _kernel_array(stack.tol),
        float(opts.escape_radius),
        float(opts.divergence_norm),
        int(opts.max_steps),
        _kernel_array(opts.checkpoints, np.int64),
        tail.t_blocks,
        tail.block,
        tail.t_ring,
        opts.lead,
        out.status,
        out.steps,
        out.esc,
        out.final_loss,
        out.final_dist,
        out.final_p,
        out.traj,
        tail.bmax,
        tail.loss_ring,
        tail.proj_ring,
        out.win_start,
        out.win,
    )
    logger.debug("escape kernel: %d runs, %d GD steps", n, steps_total)
    return out


def _run_numpy(
    stack: _Stack,
    etas: NDArray[np.float64],
    opts: _Options,
    shapes: list[tuple[int, int]],
    dims: tuple[int, ...],
    scalar: bool,
) -> _Outputs:
    """Run every step size on stacked numpy arrays (the batched reference path)."""
    n = etas.size
    p_star, v1, vn, m, tol = stack.p_star, stack.v1, stack.vn, stack.m, stack.tol[:, None]
    p = np.broadcast_to(p_star + opts.radius * v1, (n, p_star.shape[1])).copy()
    chain: _ScalarChain | _MatrixChain = (
        _ScalarChain(len(shapes)) if scalar else _MatrixChain(shapes)
    )
    out = _empty_outputs(n, p.shape[1], opts)
    tail, traj, win, esc = out.tail, out.traj, out.win, out.esc
    ck = opts.checkpoints
    n_ck = ck.size
    lead, width = opts.lead, opts.window
    n_pre = max(lead, 1)
    # the last n_pre steps of every run on the stack (rows follow the stack), for the window
    pre_loss = np.full((n, n_pre), np.nan)
    pre_dist = np.full((n, n_pre), np.nan)
    pre_diff = np.full((n, n_pre, p.shape[1]), np.nan)
    win_end = 0  # windows of the runs escaped so far end before this step
    idx = np.arange(n)
    eta_col = etas[:, None].copy()
    ck_pos = 0

    def lanczos_rows(sel: NDArray[np.bool_]) -> NDArray[np.float64]:
        """Lanczos sharpness of the current iterates of the selected stacked rows."""
        if not opts.track_sharpness:
            return np.full(int(sel.sum()), np.nan)
        ms = _rows(m, sel)
        return np.array(
            [
                _iterate_sharpness(unflatten(row, shapes), ms[0 if ms.shape[0] == 1 else i])[1]
                for i, row in enumerate(p[sel])
            ]
        )

    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(opts.max_steps + 1):
            loss_t, grad = chain(p, m)
            diff = p - p_star
            dist = np.sqrt(np.einsum("ni,ni->n", diff, diff))
            wnorm = np.sqrt(np.einsum("ni,ni->n", p, p))
            div = ~(np.isfinite(loss_t) & np.isfinite(wnorm)) | (wnorm > opts.divergence_norm)
            ok = ~div
            newly = ok & (esc[idx] < 0) & (dist > opts.escape_radius)
            if newly.any():
                rows = idx[newly]
                esc[rows] = t
                w0 = max(0, t - lead)
                out.win_start[rows] = w0
                win_end = w0 + width
                for s in range(w0, t):
                    d_s = pre_diff[newly, s % n_pre]
                    win[rows, 0, s - w0] = pre_loss[newly, s % n_pre]
                    win[rows, 1, s - w0] = pre_dist[newly, s % n_pre]
                    win[rows, 2, s - w0] = np.einsum("ni,ni->n", d_s, _rows(v1, newly))
                    win[rows, 3, s - w0] = np.einsum("ni,ni->n", d_s, _rows(vn, newly))
            conv = ok & (loss_t <= tol[:, 0])
            at_ck = ck_pos < n_ck and ck[ck_pos] == t
            rec = ok if at_ck else conv
            if t < win_end:
                w_off = t - out.win_start[idx]
                in_win = ok & (out.win_start[idx] >= 0) & (w_off < width)
                rec = rec | in_win
            else:
                in_win = np.zeros_like(ok)
            if rec.any():
                d_rec = diff[rec]
                sel = rec & (ok if at_ck else conv)
                block = np.stack(
                    [
                        loss_t[rec],
                        dist[rec],
                        np.einsum("ni,ni->n", d_rec, _rows(v1, rec)),
                        np.einsum("ni,ni->n", d_rec, _rows(vn, rec)),
                        np.full(int(rec.sum()), np.nan),
                    ],
                    axis=1,
                )
                if opts.track_sharpness and sel.any():
                    block[sel[rec], 4] = lanczos_rows(sel)
                rows = idx[rec]
                if at_ck:
                    traj[rows, :, ck_pos] = block
                # converged runs repeat their final value at all later checkpoints
                later = ck_pos + 1 if at_ck else ck_pos
                crow = conv[rec]
                if later < n_ck and crow.any():
                    traj[rows[crow], :, later:] = block[crow][:, :, None]
                wrow = in_win[rec]
                if wrow.any():
                    win[rows[wrow], :, w_off[rec][wrow]] = block[wrow, :4]
                    cw = wrow & crow
                    for r_j, off, vals in zip(rows[cw], w_off[rec][cw], block[cw, :4], strict=True):
                        win[r_j, :, off + 1 :] = vals[:, None]
            if at_ck:
                ck_pos += 1
            live = ok & ~conv
            if lead > 0:
                q = t % n_pre
                pre_loss[:, q] = loss_t
                pre_dist[:, q] = dist
                pre_diff[:, q] = diff
            if t >= tail.t_start and live.any():
                proj = None
                if tail.wants_projection(t):
                    proj = np.einsum("ni,ni->n", diff[live], _rows(v1, live))
                tail.update(t, idx[live], loss_t[live], proj)
            done = div | conv | (t == opts.max_steps)
            if done.any():
                rows = idx[done]
                out.status[rows] = np.where(
                    div[done], _DIVERGED, np.where(conv[done], _CONVERGED, _RUNNING)
                )
                out.steps[rows] = t
                out.final_loss[rows] = loss_t[done]
                out.final_dist[rows] = dist[done]
                out.final_p[rows] = p[done]
                keep = ~done
                if not keep.any():
                    break
                idx = idx[keep]
                p, grad, eta_col = p[keep], grad[keep], eta_col[keep]
                p_star, v1, vn, m, tol = (_rows(a, keep) for a in (p_star, v1, vn, m, tol))
                pre_loss, pre_dist, pre_diff = pre_loss[keep], pre_dist[keep], pre_diff[keep]
            p -= eta_col * grad
    return out
