"""Exact MCvD model: cost, accuracy of the closed forms against it, simulator in a slab.

Measured side by side in one run, on one core (BLAS and numba threads pinned to 1 below):
  1. exact-model wall time for a 400-point curve F(t), at gaps 5, 1, 0.2, 0.05 µm (TX (0, 0, 10),
     RX radius 5 centred at (5 + gap, 0, 0), D = 79.4 µm²/s), on two time grids: the paper's
     0.005..2 s and the issue's 1e-3..100 s (log-spaced); median of repeats;
  2. against the simulator reaching 0.1 % relative standard error on F(2 s) of the same curve
     (molecules needed N = (1 − F)/(F · 1e-6), time from the measured per-molecule cost at
     dt = 1e-4 s, bridge correction, far-field jumps);
  3. error tables (relative error, %) of the paper's first-order form and of the image chain
     (model "image-chain", full chain and order 4) against the exact model, gap x t; and of the
     first-order two-mirror form in slabs;
  4. the simulator in a slab against the half-space: molecule-steps per second, and its accuracy
     at dt = 1e-3 s (bridge) against the exact model, in standard errors.

Usage: .venv/bin/python bench/mcvd_exact.py [--repeats R] [--molecules N] [--rate-molecules M]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from sweeplab.mcvd import (  # noqa: E402
    Geometry,
    absorbed_fraction,
    cumulative_fraction,
    simulate,
    steady_state_fraction,
)

D, RR = 79.4, 5.0
GAPS = (5.0, 1.0, 0.2, 0.05)
GRIDS = {
    "0.005..2 s": np.linspace(0.005, 2.0, 400),
    "1e-3..100 s": np.geomspace(1e-3, 100.0, 400),
}


def half(gap: float) -> Geometry:
    return Geometry((0.0, 0.0, 10.0), (RR + gap, 0.0, 0.0), RR, D)


def timed(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


def cost(repeats: int, rate_molecules: int) -> None:
    print("1-2. Exact model: seconds for a 400-point F(t) curve (median), vs the simulator")
    absorbed_fraction(half(1.0), [0.5], model="exact")  # imports, caches
    simulate(half(1.0), 0.01, 1e-4, 10, seed=0)  # JIT warm-up
    head = f"  {'gap µm':>6s}" + "".join(f" {name:>12s}" for name in GRIDS)
    print(head + f" {'F(2 s)':>8s} {'N(0.1%)':>10s} {'sim s':>9s} {'sim/exact':>10s}")
    for gap in GAPS:
        g = half(gap)
        secs = [timed(lambda g=g, t=t: absorbed_fraction(g, t, model="exact"), repeats)
                for t in GRIDS.values()]  # fmt: skip
        f2 = float(absorbed_fraction(g, 2.0, model="exact"))
        n_needed = (1 - f2) / (f2 * 1e-6)
        t0 = time.perf_counter()
        simulate(g, 2.0, 1e-4, rate_molecules, seed=1)
        per_molecule = (time.perf_counter() - t0) / rate_molecules
        sim = n_needed * per_molecule
        print(f"  {gap:6.2f}" + "".join(f" {s:12.3f}" for s in secs)
              + f" {f2:8.5f} {n_needed:10.3g} {sim:9.0f} {sim / secs[0]:10.3g}")  # fmt: skip


def error_tables() -> None:
    t = np.array([0.1, 0.2, 0.5, 1.0, 2.0, 5.0])
    head = f"  {'gap µm':>6s} {'model':>16s}" + "".join(f" {x:>7g}" for x in t) + f" {'F(inf)':>7s}"
    print("\n3. Relative error (%) against the exact model; columns: t (s), then F(inf)")
    print("   half-space, TX (0, 0, 10), RX (5 + gap, 0, 0)")
    print(head)
    for gap in (5.0, 2.0, 1.0, 0.5, 0.2, 0.05):
        g = half(gap)
        exact = absorbed_fraction(g, t, model="exact")
        inf = steady_state_fraction(g)
        for name, kw in (("first-order", {"model": "first-order"}),
                         ("image-chain n=4", {"model": "image-chain", "order": 4}),
                         ("image-chain", {"model": "image-chain"})):  # fmt: skip
            rel = 100 * (absorbed_fraction(g, t, **kw) / exact - 1)
            rinf = 100 * (steady_state_fraction(g, **kw) / inf - 1)
            print(f"  {gap:6.2f} {name:>16s}" + "".join(f" {x:+7.2f}" for x in rel)
                  + f" {rinf:+7.2f}")  # fmt: skip
    gap1 = half(1.0)
    tt = np.linspace(0.1, 2.0, 96)
    ex = absorbed_fraction(gap1, tt, model="exact")
    for name, kw in (("first-order", {"model": "first-order"}),
                     ("image-chain", {"model": "image-chain"})):  # fmt: skip
        rel = 100 * (absorbed_fraction(gap1, tt, **kw) / ex - 1)
        print(f"   gap 1 µm, 0.1 <= t <= 2 s, {name}: {rel.min():+.2f} % .. {rel.max():+.2f} %")
    print("   slab, TX (0, 0, 10), RX (5 + gap, 0, 0), first-order two-mirror form (spec §8)")
    print(f"  {'W µm':>6s} {'gap µm':>6s}" + "".join(f" {x:>7g}" for x in t))
    for width, gap in ((12.0, 1.0), (20.0, 1.0), (20.0, 5.0), (40.0, 1.0)):
        g = Geometry((0.0, 0.0, 10.0), (RR + gap, 0.0, 0.0), RR, D, slab_width=width)
        rel = 100 * (absorbed_fraction(g, t) / absorbed_fraction(g, t, model="exact") - 1)
        print(f"  {width:6.1f} {gap:6.2f}" + "".join(f" {x:+7.2f}" for x in rel))


def slab_simulator(n: int, rate_molecules: int) -> None:
    print(f"\n4. Simulator, slab vs half-space (bridge, jumps), one core; accuracy at dt = 1e-3 s, "
          f"N = {n}")  # fmt: skip
    cases = [
        ("half-space gap 1", half(1.0)),
        ("slab W=12 gaps 1/1", Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=12.0)),
        ("slab W=30 gaps 1/19", Geometry((0, 0, 10), (6, 0, 0), RR, D, slab_width=30.0)),
    ]
    times = np.array([0.1, 0.5, 1.0, 2.0])
    print(f"  {'case':22s} {'Msteps/s dt=1e-4':>17s} {'Msteps/s dt=1e-3':>17s}   "
          + "  ".join(f"F({x:g}) z" for x in times))  # fmt: skip
    for name, g in cases:
        rates = []
        for dt in (1e-4, 1e-3):
            t0 = time.perf_counter()
            r = simulate(g, 2.0, dt, rate_molecules, seed=2)
            rates.append(r.molecule_steps / (time.perf_counter() - t0) / 1e6)
        r = simulate(g, 2.0, 1e-3, n, seed=3)
        f, se = cumulative_fraction(r)
        k = np.round(times / 1e-3).astype(int) - 1
        exact = absorbed_fraction(g, times, model="exact")
        z = (f[k] - exact) / se[k]
        rel = 100 * (f[k] / exact - 1)
        print(f"  {name:22s} {rates[0]:17.1f} {rates[1]:17.1f}   "
              + "  ".join(f"{a:+.2f}%/{b:+.1f}" for a, b in zip(rel, z, strict=True)))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rate-molecules", type=int, default=20_000)
    ap.add_argument("--molecules", type=int, default=1_000_000)
    args = ap.parse_args()
    cost(args.repeats, args.rate_molecules)
    error_tables()
    slab_simulator(args.molecules, args.rate_molecules)


if __name__ == "__main__":
    main()
