"""Ten-second demo of :mod:`sweeplab.dmf` (``python -m sweeplab.demo``, or ``make run``).

1. Sharpness of one Gaussian minimizer (depth 8, hidden width 128, d_in = d_out = 8): the exact
   Kronecker value against Lanczos over Hessian-vector products, with both wall times.
2. The escape experiment of spec §6 on an all-scalar depth-15 minimizer: gradient descent
   started ``1e-9`` away from ``w*`` along the top Hessian eigenvector, for step sizes
   ``η = c · 2/λ*``; reported are the outcome (with the orbit period at the edge of
   stability), the observed and predicted escape steps and the sharpness where the run ended
   (exact at a minimizer reached, Lanczos otherwise) relative to the stability limit ``2/η``.

The output is a small table logged at INFO level on stderr.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from sweeplab import dmf

logger = logging.getLogger(__name__)

SEED = 2026
ESCAPE_SEED = 1  # same minimizer as the tests: lambda* = 21.72, flattest = 18.27
ESCAPE_CS = (0.5, 0.9, 0.99, 1.01, 1.05, 1.1, 1.5)


def sharpness_demo(depth: int = 8, width: int = 128, d_io: int = 8) -> None:
    """Log exact vs Lanczos sharpness of one Gaussian minimizer."""
    dims = (d_io, *([width] * (depth - 1)), d_io)
    ws, target = dmf.gaussian_minimizer(dims, np.random.default_rng(np.random.SeedSequence(SEED)))
    t0 = time.perf_counter()
    exact = dmf.sharpness(ws)
    t1 = time.perf_counter()
    lanczos = dmf.sharpness_numerical(ws, target, "lanczos")
    t2 = time.perf_counter()
    logger.info(
        "Sharpness, Gaussian minimizer, dims %s (N = %d parameters)",
        dims if depth <= 4 else f"({d_io}, {width} x {depth - 1}, {d_io})",
        sum(w.size for w in ws),
    )
    logger.info("  %-22s %22s %12s", "method", "lambda_max", "seconds")
    logger.info("  %-22s %22.15g %12.2e", "exact (Kronecker K)", exact, t1 - t0)
    logger.info("  %-22s %22.15g %12.2e", "Lanczos over HVP", lanczos, t2 - t1)
    logger.info(
        "  relative difference %.1e; bound (S) %.6g; flattest possible %.6g",
        abs(exact - lanczos) / exact,
        dmf.sharpness_bound(ws),
        dmf.flattest_sharpness(target, depth),
    )


def escape_demo(depth: int = 15, max_steps: int = 50_000) -> None:
    """Log the scalar escape experiment for a few step sizes."""
    rng = np.random.default_rng(np.random.SeedSequence(ESCAPE_SEED))
    ws, target = dmf.scalar_minimizer(depth, rng)
    lam = dmf.sharpness(ws)
    flat = dmf.flattest_sharpness(target, depth)
    etas = [c * 2.0 / lam for c in ESCAPE_CS]
    results = dmf.escape_batch(ws, etas, max_steps=max_steps)
    logger.info("")
    logger.info(
        "Escape, all-scalar depth %d: lambda* = %.6g, flattest = %.6g, r = 1e-9, r_esc = 1e-3",
        depth,
        lam,
        flat,
    )
    logger.info(
        "  %5s %17s %6s %8s %10s %8s %13s %8s",
        "c",
        "outcome",
        "period",
        "escape",
        "predicted",
        "steps",
        "eta*lam_end/2",
        "lam_end",
    )
    for r in results:
        landed = r.eta * r.final_sharpness / 2.0
        logger.info(
            "  %5.2f %17s %6d %8d %10.1f %8d %13.6f %8s",
            r.c,
            r.outcome,
            r.period,
            r.escape_step,
            r.predicted_escape_step,
            r.steps_run,
            landed,
            r.final_sharpness_method,
        )
    logger.info("  (escape = -1: never left the 1e-3 ball; eta*lam_end/2 < 1: landed stably;")
    logger.info("   lam_end exact at a minimizer reached, Lanczos at any other last iterate;")
    logger.info(
        "   for c > lambda*/flattest = %.3f no minimizer is stable, GD cannot converge)", lam / flat
    )


def main() -> None:
    """Run both demos, logging to stderr."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sharpness_demo()
    escape_demo()


if __name__ == "__main__":
    main()
