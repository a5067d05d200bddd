"""Batched escape runs vs one-at-a-time runs for 32 step sizes of one minimizer.

Run: .venv/bin/python bench/dmf_escape.py

For each case (scalar L = 15; matrix L = 4 with d_i = 4) and 32 step sizes
eta = c * 2 / lambda*, c in linspace(0.5, 3, 32), it times
  * loop_escape: 32 calls of `dmf.escape` (the per-run reference loop),
  * loop_batch1: 32 calls of `dmf.escape_batch` with one step size each,
  * batched:     one call of `dmf.escape_batch` with all 32 step sizes,
checks that all three give the same outcomes and escape steps, and prints the ratios.
Target (issue 2): batched >= 5x faster than one-at-a-time.
"""

import time

import numpy as np

from sweeplab import dmf


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    n_eta = 32
    max_steps = 5000
    cases = {
        "scalar L=15": dmf.scalar_minimizer(15, np.random.default_rng(1)),
        "matrix L=4, d=4": dmf.gaussian_minimizer((4, 4, 4, 4, 4), np.random.default_rng(1)),
    }
    print(f"{n_eta} step sizes, max_steps = {max_steps}; wall seconds")
    print(
        f"{'case':<16} {'loop_escape':>11} {'loop_batch1':>11} {'batched':>8} "
        f"{'ratio_vs_escape':>15} {'ratio_vs_batch1':>15}"
    )
    for name, (ws, _) in cases.items():
        lam = dmf.sharpness(ws)
        etas = np.linspace(0.5, 3.0, n_eta) * 2 / lam
        kw = {"max_steps": max_steps}
        t_loop, singles = timed(
            lambda ws=ws, etas=etas, kw=kw: [dmf.escape(ws, e, **kw) for e in etas]
        )
        t_loop1, singles1 = timed(
            lambda ws=ws, etas=etas, kw=kw: [dmf.escape_batch(ws, [e], **kw)[0] for e in etas]
        )
        t_batch, batch = timed(lambda ws=ws, etas=etas, kw=kw: dmf.escape_batch(ws, etas, **kw))
        for a, b, c in zip(singles, singles1, batch, strict=True):
            assert (
                (a.outcome, a.escape_step)
                == (b.outcome, b.escape_step)
                == (c.outcome, c.escape_step)
            )
        outcomes = {o: sum(r.outcome == o for r in batch) for o in dmf.OUTCOMES}
        print(
            f"{name:<16} {t_loop:>11.3f} {t_loop1:>11.3f} {t_batch:>8.3f} "
            f"{t_loop / t_batch:>15.1f} {t_loop1 / t_batch:>15.1f}   {outcomes}"
        )


if __name__ == "__main__":
    main()
