"""Particle-simulator throughput and accuracy, measured side by side in one run.

Throughput (molecule-steps per second, one core) on the paper's default scenario (spec mcvd §1:
D = 79.4 µm²/s, r_r = 5 µm, RX centre (10, 0, 0), TX (0, 0, 10) on the reflecting plane,
Δt = 1e-4 s, T = 2 s) for
  1. the plain numpy walker below (per step: draw normals for the live molecules, move, mirror at
     the plane, test the distance; no crossing correction) -- the baseline;
  2. ``simulate_batch(..., jumps=False)``: the compiled kernel, one move per step, bridge on;
  3. ``simulate``: compiled kernel with exact far-field multi-step jumps, bridge on (the default).
A molecule-step is one molecule advanced by one Δt (absorbed molecules stop), so all three count
the same simulated work.

Accuracy: the same topology in free space (exact F(T) known), F(2 s) at Δt in {1e-4, 1e-3, 2e-3}
with and without the bridge correction, as relative error against the exact value with its
binomial standard error.

Usage: .venv/bin/python bench/mcvd_simulate.py [--baseline-molecules N] [--molecules N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sweeplab.mcvd import Geometry, absorbed_fraction, cumulative_fraction, simulate
from sweeplab.mcvd.simulator import simulate_batch

D, RR, T, DT = 79.4, 5.0, 2.0, 1e-4
TX, RX = (0.0, 0.0, 10.0), (10.0, 0.0, 0.0)


def numpy_walker(n: int, seed: int) -> tuple[np.ndarray, int]:
    """Plain vectorised walker: returns per-step absorbed counts and molecule-steps."""
    rng = np.random.default_rng(seed)
    n_steps = round(T / DT)
    sigma = np.sqrt(2 * D * DT)
    pos = np.tile(np.asarray(TX), (n, 1))
    centre = np.asarray(RX)
    counts = np.zeros(n_steps, dtype=np.int64)
    molecule_steps = 0
    for k in range(n_steps):
        molecule_steps += pos.shape[0]
        pos += sigma * rng.standard_normal(pos.shape)
        np.abs(pos[:, 0], out=pos[:, 0])
        d2 = np.sum((pos - centre) ** 2, axis=1)
        hit = d2 <= RR * RR
        counts[k] = np.count_nonzero(hit)
        pos = pos[~hit]
    return counts, molecule_steps


def _rate(fn) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    steps = fn()
    el = time.perf_counter() - t0
    return steps / el, el, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-molecules", type=int, default=5_000)
    ap.add_argument("--molecules", type=int, default=200_000)
    ap.add_argument("--accuracy-molecules", type=int, default=1_000_000)
    args = ap.parse_args()

    g = Geometry(TX, RX, RR, D)
    simulate(g, 0.01, DT, 10, seed=0)  # JIT warm-up (cached on disk after the first run)
    simulate_batch(g, 0.01, DT, 10, 0, "bridge", jumps=False)

    numpy_walker(200, 0)  # warm-up
    rows = [
        ("numpy walker (baseline)", args.baseline_molecules,
         _rate(lambda: numpy_walker(args.baseline_molecules, 1)[1])),
        ("compiled, one move per step", args.baseline_molecules,
         _rate(lambda: simulate_batch(g, T, DT, args.baseline_molecules, 1, "bridge",
                                      jumps=False).molecule_steps)),
        ("simulate (compiled + jumps)", args.molecules,
         _rate(lambda: simulate(g, T, DT, args.molecules, seed=1).molecule_steps)),
    ]  # fmt: skip
    base = rows[0][2][0]
    print(f"Throughput, half-space default scenario (dt = {DT} s, T = {T} s), one core")
    print(f"  {'variant':32s} {'molecules':>10s} {'Msteps/s':>10s} {'seconds':>9s} {'ratio':>7s}")
    for name, n, (rate, el, _) in rows:
        print(f"  {name:32s} {n:10d} {rate / 1e6:10.1f} {el:9.2f} {rate / base:7.1f}x")

    free = Geometry(TX, RX, RR, D, wall=False)
    exact = float(absorbed_fraction(free, T))
    n = args.accuracy_molecules
    print(f"\nAccuracy, same topology in free space: exact F({T} s) = {exact:.5f}, N = {n}")
    print(f"  {'dt (s)':>8s} {'correction':>10s} {'steps':>6s} {'F_sim':>8s} {'rel.err':>8s} "
          f"{'+-se':>7s} {'seconds':>8s}")  # fmt: skip
    for dt in (1e-4, 1e-3, 2e-3):
        for corr in ("none", "bridge"):
            t0 = time.perf_counter()
            r = simulate(free, T, dt, n, seed=2, correction=corr)
            el = time.perf_counter() - t0
            f, se = cumulative_fraction(r)
            print(f"  {dt:8.0e} {corr:>10s} {r.counts.size:6d} {f[-1]:8.5f} "
                  f"{f[-1] / exact - 1:+8.2%} {se[-1] / exact:7.2%} {el:8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
