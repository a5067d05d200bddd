"""Batched escape runs vs one-at-a-time runs for 32 step sizes of one minimizer.

Run: .venv/bin/python bench/dmf_escape.py

For each case (scalar L = 15; matrix L = 4 with d_i = 4) and 32 step sizes
eta = c * 2 / lambda*, c in linspace(0.5, 3, 32), it times
  * loop_escape: 32 calls of `dmf.escape` (the per-run reference loop),
  * loop_batch1: 32 calls of `dmf.escape_batch` with one step size each,
  * batched:     one call of `dmf.escape_batch` with all 32 step sizes,
checks that all three give the same outcomes and escape steps, and prints the ratios.
Target (issue 2): batched >= 5x faster than one-at-a-time.

It then times the diagnostics of the outcome taxonomy inside the batched run, by replaying them
with the library's own helpers on the same shapes:
  * monitor: the loss-envelope and ring-buffer updates (`_Tail.update`, with the projection on
    v_1 in the ring window) for all 32 runs over the whole monitored tail of the run (an upper
    bound: runs that finish earlier leave the stack), plus the classification and period
    detection of every run;
  * lanczos: the final Lanczos sharpness of every run that ends neither converged nor diverged;
and prints their sum as a fraction of the batched wall time. Target: <= 10 %.
"""

import importlib
import time

import numpy as np

from sweeplab import dmf

esc = importlib.import_module("sweeplab.dmf.escape")  # the module (dmf.escape is the function)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def diagnostics_cost(ws, target, batch, max_steps):
    """Return (monitor seconds, Lanczos seconds) of the diagnostics of one batched call."""
    n = len(batch)
    p = np.stack([dmf.flatten(r.final_weights) for r in batch])
    p = np.where(np.isfinite(p), p, 1.0)
    v1 = dmf.flatten(dmf.top_eigenvector(ws))[None, :]
    p_star = dmf.flatten(ws)[None, :]
    loss = np.array([r.final_loss for r in batch])
    loss = np.where(np.isfinite(loss) & (loss > 0), loss, 1.0)
    rows = np.arange(n)
    t0 = time.perf_counter()
    tail = esc._Tail(n, max_steps)
    for t in range(tail.t_start, max_steps + 1):
        proj = None
        if tail.wants_projection(t):
            proj = np.einsum("ni,ni->n", p - p_star, v1)
        tail.update(t, rows, loss, proj)
    for j in range(n):
        tail.classify(j, float(loss[j]), 1e-20, True)
    t1 = time.perf_counter()
    for r in batch:
        if r.final_sharpness_method == "lanczos":
            esc._lanczos_sharpness(list(r.final_weights), target)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


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
    rows = []
    for name, (ws, target) in cases.items():
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
            assert (a.outcome, a.escape_step) == (b.outcome, b.escape_step)
            assert (a.outcome, a.escape_step) == (c.outcome, c.escape_step)
        # rounding differs between the paths; on sensitive (chaotic) orbits the trajectories
        # drift apart over thousands of steps, and so may the detected period
        same_period = sum(a.period == c.period for a, c in zip(singles, batch, strict=True))
        outcomes = {o: sum(r.outcome == o for r in batch) for o in dmf.OUTCOMES}
        print(
            f"{name:<16} {t_loop:>11.3f} {t_loop1:>11.3f} {t_batch:>8.3f} "
            f"{t_loop / t_batch:>15.1f} {t_loop1 / t_batch:>15.1f}   {outcomes}, "
            f"same period {same_period}/{n_eta}"
        )
        rows.append((name, t_batch, *diagnostics_cost(ws, target, batch, max_steps)))
    print("\ndiagnostics inside the batched call (seconds; fraction of the batched wall time)")
    print(f"{'case':<16} {'batched':>8} {'monitor':>8} {'lanczos':>8} {'fraction':>9}")
    for name, t_batch, t_mon, t_lz in rows:
        print(
            f"{name:<16} {t_batch:>8.3f} {t_mon:>8.4f} {t_lz:>8.4f} "
            f"{(t_mon + t_lz) / t_batch:>8.1%}"
        )


if __name__ == "__main__":
    main()
