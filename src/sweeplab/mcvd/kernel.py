"""Compiled random-walk kernel of the particle simulator (numba).

Kept apart from :mod:`sweeplab.mcvd.simulator` so that the numerical core is small and its
contract explicit: it advances molecules one at a time, with exact multi-step jumps while a
molecule is far from every receiver, and records per-step absorption counts.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["JUMP_Z", "reflect", "walk"]

#: Safety factor of the far-field jumps: a molecule at distance ``d`` from the nearest receiver
#: surface may jump ``m`` steps at once when ``d >= sqrt(3) * JUMP_Z * sqrt(2 D m dt)``. The
#: probability that the skipped path touched the receiver is then below
#: ``12 * Phi_c(JUMP_Z) ≈ 1.5e-11`` per jump (reflection principle per coordinate, union bound).
JUMP_Z = 7.0


@numba.njit(cache=True, nogil=True)
def reflect(x: float, wall: bool, width: float) -> float:
    """Fold a free coordinate ``x`` (µm) into the fluid: the reflecting plane(s) in closed form.

    ``width > 0``: planes ``x = 0`` and ``x = width``; reflected Brownian motion in the interval
    is the free motion folded by ``x mod 2W`` then ``x ← 2W − x`` above ``W`` (exact in
    distribution, for a move of any length). ``width <= 0`` and ``wall``: the half-space,
    ``x ← |x|``. Neither: free space, ``x`` unchanged.
    """
    if width > 0.0:
        period = 2.0 * width
        x = x - period * math.floor(x / period)
        if x > width:
            x = period - x
        return x
    if wall and x < 0.0:
        return -x
    return x


@numba.njit(cache=True, nogil=True)
def walk(
    rng: np.random.Generator,
    n_molecules: int,
    start: np.ndarray,
    centres: np.ndarray,
    radius: float,
    d_coef: float,
    dt: float,
    n_steps: int,
    wall: bool,
    width: float,
    bridge: bool,
    jumps: bool,
    counts: np.ndarray,
    p_absorb: float = 1.0,
) -> tuple[int, int]:
    """Advance ``n_molecules`` molecules from ``start`` for ``n_steps`` steps of ``dt``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness (consumed sequentially, molecule by molecule).
    n_molecules : int
        Molecules released at ``t = 0``.
    start : ndarray, shape (3,)
        Release point (µm).
    centres : ndarray, shape (m, 3)
        Centres of the absorbing spheres (µm); all of radius ``radius``.
    radius : float
        Sphere radius (µm).
    d_coef : float
        Diffusion coefficient (µm²/s).
    dt : float
        Time step (s).
    n_steps : int
        Number of steps.
    wall : bool
        Mirror-reflect at the plane ``x = 0`` after every move (``x ← |x|``).
    width : float
        If > 0 (needs ``wall``), a second reflecting plane at ``x = width``: every move (one step
        or a far-field jump) is folded into ``[0, width]`` by :func:`reflect`.
    bridge : bool
        Apply the Brownian-bridge crossing correction (absorb with probability
        ``exp(−d_1 d_2 / (D τ))`` for a move of duration ``τ`` between surface distances
        ``d_1, d_2 > 0``).
    jumps : bool
        Allow exact multi-step jumps far from every receiver (see :data:`JUMP_Z`).
    counts : ndarray of int64, shape (n_steps,)
        Incremented in place: ``counts[k-1]`` += molecules absorbed during step ``k``.
    p_absorb : float
        Probability in ``(0, 1]`` that an encounter with a receiver absorbs the molecule
        (partially absorbing receiver; see :func:`sweeplab.mcvd.reactive.absorption_probability`).
        An encounter is a move ending inside a sphere or, with ``bridge``, a crossing detected by
        the bridge probability (one Bernoulli trial ``P exp(−d_1 d_2 / (D τ))``). On failure a
        molecule that ended inside is mirrored radially in that sphere (distance ``r → 2a − r``
        from its centre, then folded into the fluid again); one that crossed and came back stays.
        ``1`` (default): every encounter absorbs, the random stream is exactly that of the
        perfectly absorbing kernel.

    Returns
    -------
    molecule_steps : int
        Steps of ``dt`` simulated, summed over molecules (absorbed ones stop).
    moves : int
        Gaussian moves drawn (fewer than ``molecule_steps`` when jumps are used).

    """
    sigma2 = 2.0 * d_coef * dt
    jump_den = 3.0 * JUMP_Z * JUMP_Z * sigma2
    n_centres = centres.shape[0]
    partial = p_absorb < 1.0
    molecule_steps = 0
    moves = 0
    for _ in range(n_molecules):
        x = start[0]
        y = start[1]
        z = start[2]
        # distance to the nearest sphere surface
        d_old = 1e300
        for j in range(n_centres):
            dj = math.sqrt(
                (x - centres[j, 0]) ** 2 + (y - centres[j, 1]) ** 2 + (z - centres[j, 2]) ** 2
            )
            d_old = min(d_old, dj - radius)
        k = 0
        while k < n_steps:
            m = 1
            if jumps and d_old > 0.0:
                mf = d_old * d_old / jump_den
                if mf >= 2.0:
                    m = int(mf) if mf < n_steps - k else n_steps - k
            s = math.sqrt(m * sigma2)
            x_old = x
            y_old = y
            z_old = z
            x += s * rng.standard_normal()
            y += s * rng.standard_normal()
            z += s * rng.standard_normal()
            x = reflect(x, wall, width)
            k += m
            moves += 1
            absorbed = False
            d_new = 1e300
            for j in range(n_centres):
                cxj = centres[j, 0]
                cyj = centres[j, 1]
                czj = centres[j, 2]
                dj = math.sqrt((x - cxj) ** 2 + (y - cyj) ** 2 + (z - czj) ** 2) - radius
                if dj <= 0.0:
                    if not partial or rng.random() < p_absorb:
                        absorbed = True
                    elif not absorbed:  # reflected: mirror radially in sphere j, refold
                        r_in = dj + radius
                        if r_in > 0.0:
                            scale = (radius - dj) / r_in
                            x = reflect(cxj + (x - cxj) * scale, wall, width)
                            y = cyj + (y - cyj) * scale
                            z = czj + (z - czj) * scale
                        dj = math.sqrt((x - cxj) ** 2 + (y - cyj) ** 2 + (z - czj) ** 2) - radius
                elif bridge and not absorbed:
                    d1 = math.sqrt((x_old - cxj) ** 2 + (y_old - cyj) ** 2 + (z_old - czj) ** 2)
                    d1 -= radius
                    expo = d1 * dj / (d_coef * m * dt)
                    if expo < 40.0 and rng.random() < p_absorb * math.exp(-expo):
                        absorbed = True
                d_new = min(d_new, dj)
            if absorbed:
                counts[k - 1] += 1
                break
            d_old = d_new
        molecule_steps += k
    return molecule_steps, moves
