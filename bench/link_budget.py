"""Link budget of the paper's topology near a wall: rate from exact, first-order, simulation.

The "paper" geometry of config/config.yaml (TX (0, 0, 10), RX radius 5, D = 79.4 µm²/s) with
the RX moved to a gap of 0.2 µm from the reflecting plane x = 0 (centre (5.2, 0, 0)), as a
half-space and as a slab of width W = 12 µm; absorbing receiver. On-off keying with N molecules
per 1-bit, ISI memory K, exact BER at the optimal threshold (sweeplab.mcvd.link). For each
geometry and N, the achievable rate at BER <= 1e-3 (``sweeplab.mcvd.achievable_rate``: the
smallest symbol time meeting the target on a 64-point log grid over 1e-4..10 s refined 32-fold,
0.6 % resolution) from

* the exact model, the first-order closed form (two-mirror in the slab) and, in the half-space,
  the image chain;
* a simulation of ``--molecules`` molecules (dt = 1e-4 s, Brownian-bridge correction, t_end =
  ``--t-end``; symbol times are whole steps with (K + 1) Ts <= t_end, searched step by step in
  the refined bracket), split into ``--parts`` independent batches: the rate of the whole run,
  and in brackets the standard deviation of the parts' rates divided by sqrt(parts) (each part
  has 1/parts of the molecules, so this overstates the whole run's spread by about sqrt(parts)
  for a rate that scales with the tap noise; it is a rough error bar, not a standard error).

n/a: the target is not reached on the searched symbol times (a closed form is nan beyond its
validity domain, the simulation beyond t_end / (K + 1); the image chain is half-space only).
Also printed: the time of the exact model's rate search (one core), the simulation's wall time.

Usage: .venv/bin/python bench/link_budget.py [--molecules M] [--parts P] [--t-end T] [--isi K]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from sweeplab.mcvd import (  # noqa: E402
    Geometry,
    achievable_rate,
    combine,
    plan_batches,
    simulate_batch,
)

D, RADIUS, GAP = 79.4, 5.0, 0.2
NS = (100, 1000, 10_000)
TARGET = 1e-3
DT = 1e-4


def geometries() -> dict[str, Geometry]:
    """The paper's TX-RX pair at gap 0.2 µm: half-space and slab W = 12 µm."""
    tx, rx = (0.0, 0.0, 10.0), (RADIUS + GAP, 0.0, 0.0)
    return {
        "half-space": Geometry(tx, rx, RADIUS, D),
        "slab W=12": Geometry(tx, rx, RADIUS, D, slab_width=12.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--molecules", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=5)
    parser.add_argument("--t-end", type=float, default=4.0)
    parser.add_argument("--isi", type=int, default=4, help="ISI memory K")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    k = args.isi
    print(f"paper topology, gap {GAP} µm, D = {D} µm²/s, BER target {TARGET:g}, ISI memory K = {k}")
    print(f"simulation: {args.molecules} molecules in {args.parts} parts, dt = {DT:g} s, bridge, "
          f"t_end = {args.t_end:g} s")  # fmt: skip
    achievable_rate(geometries()["half-space"], 100, TARGET, k)  # imports, compilation
    head = (f"{'geometry':>11s} {'N':>6s} {'exact b/s':>10s} {'first-order':>18s} "
            f"{'image chain':>18s} {'simulation':>20s} {'exact s':>8s}")  # fmt: skip
    rows = []
    for name, g in geometries().items():
        seed = np.random.SeedSequence([args.seed, 0 if name == "half-space" else 1])
        batch = math.ceil(args.molecules / args.parts)
        t0 = time.perf_counter()
        parts = [simulate_batch(g, args.t_end, DT, n, s, "bridge")
                 for n, s in plan_batches(args.molecules, batch, seed)]  # fmt: skip
        sim_wall = time.perf_counter() - t0
        whole = combine(parts)
        print(f"{name}: simulation {sim_wall:.1f} s, F(t_end) = "
              f"{whole.counts.sum() / whole.n_molecules:.4f}")  # fmt: skip
        for n in NS:
            t0 = time.perf_counter()
            exact, _ = achievable_rate(g, n, TARGET, k)
            t_exact = time.perf_counter() - t0
            first, _ = achievable_rate(g, n, TARGET, k, model="first-order")
            chain = math.nan
            if not g.is_slab:
                chain, _ = achievable_rate(g, n, TARGET, k, model="image-chain")
            sim, _ = achievable_rate(whole, n, TARGET, k)
            spread = np.array([achievable_rate(p, n, TARGET, k)[0] for p in parts])
            err = float(np.std(spread, ddof=1) / math.sqrt(len(parts)))
            rows.append((name, n, exact, first, chain, sim, err, t_exact))
    print(head)
    for name, n, exact, first, chain, sim, err, t_exact in rows:

        def rel(x: float, exact: float = exact) -> str:
            if not np.isfinite(x):
                return f"{'n/a':>18s}"
            return f"{x:8.3f} ({100 * (x / exact - 1):+6.1f}%)"

        sim_text = f"{sim:8.3f} (±{err:.3f})" if np.isfinite(sim) else "n/a"
        print(f"{name:>11s} {n:6d} {exact:10.3f} {rel(first):>18s} {rel(chain):>18s} "
              f"{sim_text:>20s} {t_exact:8.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
