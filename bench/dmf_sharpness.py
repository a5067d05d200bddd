"""Exact Kronecker sharpness vs Lanczos over Hessian-vector products, side by side.

Run: .venv/bin/python bench/dmf_sharpness.py [--quick]

For each depth L and hidden width (d_in = d_out = 8, Gaussian minimizer, fixed seed) it times
`dmf.sharpness` (best of several repeats) and `dmf.sharpness_numerical(method="lanczos")`
(best of fewer repeats), and prints both times, their ratio and the relative difference.
Target (issue 2): ratio >= 100 at L = 8, width 128, with relative difference <= 1e-9.
"""

import argparse
import time

import numpy as np

from sweeplab import dmf


def best_time(fn, repeats):
    best = np.inf
    value = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only L = 8, width 128")
    args = parser.parse_args()
    depths = [8] if args.quick else [4, 8, 16]
    widths = [128] if args.quick else [32, 128, 256]
    d_io = 8
    print(f"d_in = d_out = {d_io}; times are best-of-repeats wall seconds")
    header = (
        f"{'L':>3} {'width':>5} {'N':>8} {'exact_s':>10} {'lanczos_s':>10} {'ratio':>8} "
        f"{'rel_diff':>9}"
    )
    print(header)
    for depth in depths:
        for width in widths:
            dims = (d_io, *([width] * (depth - 1)), d_io)
            seed = np.random.SeedSequence([2026, depth, width])
            ws, target = dmf.gaussian_minimizer(dims, np.random.default_rng(seed))
            n_params = sum(w.size for w in ws)
            t_exact, lam = best_time(lambda ws=ws: dmf.sharpness(ws), 20)
            t_lanczos, lam_l = best_time(
                lambda ws=ws, target=target: dmf.sharpness_numerical(ws, target, "lanczos"), 3
            )
            rel = abs(lam - lam_l) / lam
            print(
                f"{depth:>3} {width:>5} {n_params:>8} {t_exact:>10.2e} {t_lanczos:>10.2e} "
                f"{t_lanczos / t_exact:>8.0f} {rel:>9.1e}"
            )


if __name__ == "__main__":
    main()
