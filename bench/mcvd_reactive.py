"""Reactive (Collins–Kimball) receiver in the exact model: cost and accuracy.

Measured on one core (BLAS and numba threads pinned to 1 below), paper geometry of
config/config.yaml's channel section (TX (0, 0, 10), RX radius 5, D = 79.4 µm²/s) with the RX
centred at (5 + gap, 0, 0), gap 0.2 µm, half-space, reactivity k in {1, 10, 100, 1e4, inf} µm/s:
  1. wall time of a 400-point F(t) curve (0.005..2 s, linear, the paper's window; and
     1e-3..100 s, log-spaced), median of repeats;
  2. its accuracy by self-convergence: max |F(tol = 1e-10) − F(tol = 1e-12)| over the curve;
  3. the far-plane limit (RX at x = 1e4 + 10 µm, TX 10 µm from it as in the paper geometry)
     against the free-space closed form (sweeplab.mcvd.reactive), max absolute and max relative
     error where F > 1e-3, on 1e-3..100 s;
  4. optionally (--simulate N) the simulator with partial absorption against the exact model.

Usage: .venv/bin/python bench/mcvd_reactive.py [--repeats R] [--simulate N]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from sweeplab.mcvd import Geometry, exact_absorbed_fraction, steady_state_fraction  # noqa: E402
from sweeplab.mcvd.reactive import free_space_reactive_fraction  # noqa: E402

logger = logging.getLogger("bench.mcvd_reactive")

D, RR, GAP = 79.4, 5.0, 0.2
KS = (1.0, 10.0, 100.0, 1e4, math.inf)
GRIDS = {
    "0.005..2 s": np.linspace(0.005, 2.0, 400),
    "1e-3..100 s": np.geomspace(1e-3, 100.0, 400),
}


def half(k: float, gap: float = GAP) -> Geometry:
    """Paper geometry with the RX at gap ``gap`` (µm) from the plane, reactivity ``k`` (µm/s)."""
    return Geometry((0.0, 0.0, 10.0), (RR + gap, 0.0, 0.0), RR, D, reactivity=k)


def far(k: float) -> Geometry:
    """The same TX–RX pair with the plane 1e4 µm away (free-space limit)."""
    return Geometry((1e4, 0.0, 10.0), (1e4 + 10.0, 0.0, 0.0), RR, D, reactivity=k)


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time (s) of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


def exact_table(repeats: int) -> None:
    """Cost and accuracy of the exact model per reactivity (items 1–3)."""
    exact_absorbed_fraction(half(10.0), [0.5])  # imports, caches
    logger.info("Exact model, half-space, gap %.1f µm: 400-point F(t) curves", GAP)
    logger.info(
        "  %8s %11s %11s %12s %12s %9s %12s %12s",
        "k µm/s", "s 0.005..2", "s 1e-3..100", "|Δ| 1e-10/12", "|Δ| wide", "F(∞)",
        "far abs", "far rel",
    )  # fmt: skip
    t_far = GRIDS["1e-3..100 s"]
    for k in KS:
        g = half(k)
        secs = [
            timed(lambda g=g, t=t: exact_absorbed_fraction(g, t), repeats) for t in GRIDS.values()
        ]
        conv = []
        for t in GRIDS.values():
            fine = exact_absorbed_fraction(g, t, tol=1e-12)
            conv.append(float(np.max(np.abs(exact_absorbed_fraction(g, t) - fine))))
        gf = far(k)
        got = exact_absorbed_fraction(gf, t_far)
        ref = free_space_reactive_fraction(gf, t_far)
        sig = ref > 1e-3
        far_abs = float(np.max(np.abs(got - ref)))
        far_rel = float(np.max(np.abs(got[sig] / ref[sig] - 1.0)))
        logger.info(
            "  %8.4g %11.4f %11.4f %12.2e %12.2e %9.6f %12.2e %12.2e",
            k, secs[0], secs[1], conv[0], conv[1], steady_state_fraction(g), far_abs, far_rel,
        )  # fmt: skip


def simulator_table(n_molecules: int) -> None:
    """Simulator with partial absorption vs the exact model (item 4)."""
    from sweeplab.mcvd import cumulative_fraction, simulate

    logger.info("Simulator (bridge, jumps), half-space gap 1 µm, %d molecules", n_molecules)
    logger.info(
        "  %8s %8s %9s  %s", "k µm/s", "dt s", "wall s", "F sim/exact - 1 (z) at 0.1 0.5 1 2 s"
    )
    for k in (10.0, 100.0):
        for dt in (1e-4, 1e-3):
            g = half(k, 1.0)
            t0 = time.perf_counter()
            res = simulate(g, 2.0, dt, n_molecules, seed=7)
            wall = time.perf_counter() - t0
            f, se = cumulative_fraction(res)
            cols = []
            for t in (0.1, 0.5, 1.0, 2.0):
                i = round(t / dt) - 1
                ex = float(exact_absorbed_fraction(g, res.times[i]))
                cols.append(f"{f[i] / ex - 1:+.4f} ({(f[i] - ex) / se[i]:+.1f})")
            logger.info("  %8.4g %8.0e %9.1f  %s", k, dt, wall, "  ".join(cols))


def main() -> None:
    """Run the measurements and log the tables."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--simulate", type=int, default=0, help="molecules per simulator run (0: skip)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    exact_table(args.repeats)
    if args.simulate:
        simulator_table(args.simulate)


if __name__ == "__main__":
    main()
