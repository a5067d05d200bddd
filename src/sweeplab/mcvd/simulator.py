"""Particle-based Monte Carlo simulator of the channel (spec §6), batched for Dask.

Each molecule performs the reference algorithm of spec §6 per step ``Δt``: Gaussian move of
standard deviation ``sqrt(2 D Δt)`` per coordinate, mirror reflection at the plane (``x ← |x|``;
in a slab of width ``W`` the fold ``x mod 2W``, then ``2W − x`` above ``W``),
end-of-step absorption (``|X − c| <= r_r``) and, with ``correction="bridge"``, absorption with the
Brownian-bridge crossing probability ``exp(−d_1 d_2 / (D Δt))``. While a molecule is far from the
receiver it moves ``m`` steps at once with one Gaussian of variance ``2 D m Δt`` (exact in
distribution for free and reflected Brownian motion, in a half-space or a slab, because folding the
free motion is exact for any move length); ``m`` is chosen so that the skipped path
touches the receiver with probability below 1.5e-11 per jump (see
:data:`sweeplab.mcvd.kernel.JUMP_Z`), far below any statistical error of a run.

Batches are the unit of parallelism: :func:`plan_batches` splits a run into batches with
independent seeds (``SeedSequence.spawn``), :func:`simulate_batch` runs one, and :func:`combine`
adds them up. :func:`simulate` is exactly ``combine`` over the planned batches, so a run whose
batches execute on different Dask workers gives bit-identical counts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .geometry import Geometry
from .kernel import walk
from .reactive import absorption_probability
from .validation import check_boolean, check_integer, check_number

__all__ = [
    "CORRECTIONS",
    "SimulationResult",
    "binned_hitting_rate",
    "combine",
    "cumulative_fraction",
    "plan_batches",
    "simulate",
    "simulate_batch",
]

logger = logging.getLogger(__name__)

CORRECTIONS = ("bridge", "none")
DEFAULT_BATCH_SIZE = 100_000


@dataclass(frozen=True)
class SimulationResult:
    """Outcome of a particle simulation (one batch, or several combined).

    Attributes
    ----------
    counts : ndarray of int64, shape (n_steps,)
        Molecules absorbed during step ``k`` (``counts[k-1]``), i.e. in ``((k−1)Δt, kΔt]``.
    times : ndarray of float64, shape (n_steps,)
        End time ``kΔt`` of each step (s).
    n_molecules : int
        Molecules released.
    molecule_steps : int
        Steps of ``Δt`` simulated, summed over molecules (absorbed molecules stop).
    moves : int
        Gaussian moves actually drawn (``<= molecule_steps`` thanks to far-field jumps).
    dt : float
        Time step (s).
    t_end : float
        Simulated duration ``n_steps Δt`` (s).
    correction : str
        ``"bridge"`` or ``"none"``.
    wall_time : float
        Seconds spent in the kernel (summed over batches).
    reactivity : float
        Receiver reactivity ``k`` (µm/s) simulated; ``inf``: perfectly absorbing.

    """

    counts: NDArray[np.int64]
    times: NDArray[np.float64]
    n_molecules: int
    molecule_steps: int
    moves: int
    dt: float
    t_end: float
    correction: str
    wall_time: float = 0.0
    reactivity: float = math.inf

    @property
    def n_absorbed(self) -> int:
        """Total molecules absorbed by ``t_end``."""
        return int(self.counts.sum())


def _steps(duration: float, dt: float, name: str = "t_end") -> int:
    """Return the number of steps ``dt`` in ``duration`` (s), a whole number >= 1.

    ``name`` is the parameter ``duration`` came from (``t_end``, ``bin_width``), used in errors.
    """
    d = check_number(duration, name, "a finite number > 0 s", minimum=0.0, strict=True)
    step = check_number(dt, "dt", "a finite number > 0 s", minimum=0.0, strict=True)
    n = d / step
    n_steps = round(n)
    if n_steps < 1 or abs(n - n_steps) > 1e-9 * max(1.0, n):
        raise ValueError(
            f"{name} / dt must be a positive integer number of steps, got "
            f"{name} = {duration!r} s, dt = {dt!r} s (ratio {n:.12g})"
        )
    return int(n_steps)


def _count(name: str, v: int, minimum: int) -> int:
    return check_integer(v, name, minimum)


def _correction(correction: str) -> bool:
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    return correction == "bridge"


def _seed_sequence(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or a SeedSequence, got {seed!r}")
    return np.random.SeedSequence(int(seed))


def plan_batches(
    n_molecules: int, batch_size: int, seed: int | np.random.SeedSequence
) -> list[tuple[int, np.random.SeedSequence]]:
    """Split ``n_molecules`` into batches of at most ``batch_size`` with independent seeds.

    Returns
    -------
    list of (int, SeedSequence)
        Batch sizes (summing to ``n_molecules``) and children of ``SeedSequence(seed)``.

    """
    n = _count("n_molecules", n_molecules, 1)
    b = _count("batch_size", batch_size, 1)
    sizes = [b] * (n // b) + ([n % b] if n % b else [])
    children = _seed_sequence(seed).spawn(len(sizes))
    return list(zip(sizes, children, strict=True))


def _run(
    start: tuple[float, float, float],
    centres: NDArray[np.float64],
    radius: float,
    d_coef: float,
    wall: bool,
    width: float | None,
    t_end: float,
    dt: float,
    n_molecules: int,
    seed: np.random.SeedSequence,
    correction: str,
    jumps: bool,
    reactivity: float = math.inf,
) -> SimulationResult:
    n_steps = _steps(t_end, dt)
    n = _count("n_molecules", n_molecules, 1)
    bridge = _correction(correction)
    p_absorb = absorption_probability(reactivity, dt, d_coef, bridge=bridge, radius=radius)
    jumps = check_boolean(jumps, "jumps", "exact far-field multi-step jumps")
    counts = np.zeros(n_steps, dtype=np.int64)
    rng = np.random.default_rng(_seed_sequence(seed))
    t0 = time.perf_counter()
    molecule_steps, moves = walk(
        rng,
        n,
        np.asarray(start, dtype=np.float64),
        np.ascontiguousarray(centres, dtype=np.float64),
        float(radius),
        float(d_coef),
        float(dt),
        n_steps,
        bool(wall),
        0.0 if width is None else float(width),
        bridge,
        jumps,
        counts,
        p_absorb,
    )
    elapsed = time.perf_counter() - t0
    return SimulationResult(
        counts=counts,
        times=dt * np.arange(1, n_steps + 1, dtype=np.float64),
        n_molecules=n,
        molecule_steps=int(molecule_steps),
        moves=int(moves),
        dt=float(dt),
        t_end=float(n_steps * dt),
        correction=correction,
        wall_time=elapsed,
        reactivity=float(reactivity),
    )


def simulate_batch(
    geometry: Geometry,
    t_end: float,
    dt: float,
    n_molecules: int,
    seed: int | np.random.SeedSequence,
    correction: str = "bridge",
    *,
    jumps: bool = True,
) -> SimulationResult:
    """Simulate one batch of molecules (the unit handed to a Dask worker).

    Parameters
    ----------
    geometry : Geometry
        The channel: free space, half-space (``geometry.wall``) or slab
        (``geometry.slab_width``). A finite ``geometry.reactivity`` ``k`` makes the receiver
        partially absorbing: each encounter absorbs with probability
        :func:`~sweeplab.mcvd.reactive.absorption_probability` ``(k, dt, D)`` and otherwise
        reflects the molecule (ValueError if that probability exceeds 0.5).
    t_end : float
        Duration (s); ``t_end / dt`` must be an integer.
    dt : float
        Time step (s).
    n_molecules : int
        Molecules in this batch, >= 1.
    seed : int or numpy.random.SeedSequence
        Seed of this batch's generator.
    correction : {"bridge", "none"}
        Brownian-bridge crossing correction on or off.
    jumps : bool
        Use exact far-field multi-step jumps (default); ``False`` forces one move per step
        (the plain reference algorithm; same distribution, slower).

    Returns
    -------
    SimulationResult

    """
    centres = np.asarray([geometry.rx], dtype=np.float64)
    return _run(
        geometry.tx, centres, geometry.radius, geometry.D, geometry.wall, geometry.slab_width,
        t_end, dt, n_molecules, _seed_sequence(seed), correction, jumps, geometry.reactivity,
    )  # fmt: skip


def simulate_image_pair(
    geometry: Geometry,
    t_end: float,
    dt: float,
    n_molecules: int,
    seed: int | np.random.SeedSequence,
    correction: str = "bridge",
) -> SimulationResult:
    """Simulate free space with two absorbing spheres, the RX and its mirror image (spec §3).

    By the method of images this has the same absorption-time distribution as the half-space
    channel of ``geometry`` (absorptions at either sphere counted); a verification tool.
    """
    if not geometry.wall or geometry.is_slab:
        raise ValueError(
            "simulate_image_pair needs a half-space geometry (wall=True, slab_width=None)"
        )
    centres = np.asarray([geometry.rx, geometry.image_rx], dtype=np.float64)
    return _run(
        geometry.tx, centres, geometry.radius, geometry.D, False, None,
        t_end, dt, n_molecules, _seed_sequence(seed), correction, True, geometry.reactivity,
    )  # fmt: skip


def combine(results: Iterable[SimulationResult]) -> SimulationResult:
    """Add up batch results of the same time grid and correction (order-independent counts).

    Raises
    ------
    ValueError
        If ``results`` is empty or the batches differ in ``dt``, number of steps or correction.

    """
    rs = list(results)
    if not rs:
        raise ValueError("combine needs at least one SimulationResult")
    first = rs[0]
    for r in rs[1:]:
        key = (r.dt, r.counts.shape, r.correction, r.reactivity)
        if key != (first.dt, first.counts.shape, first.correction, first.reactivity):
            raise ValueError(
                "cannot combine batches with different dt / number of steps / correction / "
                f"reactivity: {(first.dt, first.counts.size, first.correction, first.reactivity)}"
                f" vs {(r.dt, r.counts.size, r.correction, r.reactivity)}"
            )
    return SimulationResult(
        counts=np.sum([r.counts for r in rs], axis=0, dtype=np.int64),
        times=first.times,
        n_molecules=sum(r.n_molecules for r in rs),
        molecule_steps=sum(r.molecule_steps for r in rs),
        moves=sum(r.moves for r in rs),
        dt=first.dt,
        t_end=first.t_end,
        correction=first.correction,
        wall_time=sum(r.wall_time for r in rs),
        reactivity=first.reactivity,
    )


def simulate(
    geometry: Geometry,
    t_end: float,
    dt: float,
    n_molecules: int,
    *,
    seed: int | np.random.SeedSequence,
    correction: str = "bridge",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> SimulationResult:
    """Release ``n_molecules`` at the TX at ``t = 0`` and count absorptions per step.

    Runs :func:`simulate_batch` on each batch of :func:`plan_batches` in turn and
    :func:`combine` s them, so memory stays ``O(n_steps)`` for any ``n_molecules`` and the result
    is bit-identical to running the same batches elsewhere (e.g. on Dask workers) and combining.

    Parameters
    ----------
    geometry : Geometry
        The channel.
    t_end : float
        Duration (s); ``t_end / dt`` must be an integer.
    dt : float
        Time step (s).
    n_molecules : int
        Molecules released, >= 1.
    seed : int or numpy.random.SeedSequence
        Root seed; batch ``i`` uses its ``i``-th spawned child.
    correction : {"bridge", "none"}
        Brownian-bridge crossing correction (default) or plain end-of-step absorption.
    batch_size : int
        Molecules per batch.

    Returns
    -------
    SimulationResult

    """
    _steps(t_end, dt)
    _correction(correction)
    batches = plan_batches(n_molecules, batch_size, seed)
    results = []
    for i, (n, child) in enumerate(batches):
        results.append(simulate_batch(geometry, t_end, dt, n, child, correction))
        logger.debug("batch %d/%d done (%d molecules)", i + 1, len(batches), n)
    return combine(results)


def cumulative_fraction(
    result: SimulationResult,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the simulated cumulative absorbed fraction at ``result.times`` and its error.

    Returns
    -------
    fraction : ndarray, shape (n_steps,)
        ``F̂(kΔt)`` = absorbed by ``kΔt`` / ``n_molecules`` (dimensionless).
    stderr : ndarray, shape (n_steps,)
        Binomial standard error ``sqrt(F̂ (1 − F̂) / N)``.

    """
    f = np.cumsum(result.counts) / result.n_molecules
    return f, np.sqrt(f * (1.0 - f) / result.n_molecules)


def binned_hitting_rate(
    result: SimulationResult, bin_width: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Return the simulated hitting rate in bins of ``bin_width`` s, with its standard error.

    Parameters
    ----------
    result : SimulationResult
        A simulation.
    bin_width : float
        Bin width (s), finite and > 0; must be a whole number of steps ``dt`` and divide
        ``t_end``.

    Returns
    -------
    edges : ndarray, shape (n_bins + 1,)
        Bin edges (s), from 0 to ``t_end``.
    rate : ndarray, shape (n_bins,)
        Absorbed fraction per bin divided by ``bin_width`` (1/s); compare with the bin average of
        the analytic hitting rate, ``(F(t_{b+1}) − F(t_b)) / bin_width``.
    stderr : ndarray, shape (n_bins,)
        Binomial standard error of ``rate``: ``sqrt(p (1 − p) / N) / bin_width`` with ``p`` the
        fraction absorbed in the bin.

    """
    per_bin = _steps(bin_width, result.dt, "bin_width")
    n_steps = result.counts.size
    if n_steps % per_bin:
        raise ValueError(
            f"bin_width = {bin_width!r} s ({per_bin} steps) must divide the {n_steps} steps of "
            f"t_end = {result.t_end!r} s"
        )
    p = result.counts.reshape(-1, per_bin).sum(axis=1) / result.n_molecules
    width = per_bin * result.dt
    edges = width * np.arange(p.size + 1, dtype=np.float64)
    return edges, p / width, np.sqrt(p * (1.0 - p) / result.n_molecules) / width
