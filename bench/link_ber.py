"""Link metrics (issue 21): cost of the BER and of the optimal threshold over 200 symbol times.

The "paper" geometry of config/config.yaml (TX (0, 0, 10), RX radius 5 centred at (10, 0, 0),
D = 79.4 µm²/s, reflecting plane x = 0), exact model; 200 log-spaced symbol times 0.01..2 s,
ISI memory K = 5 (6 taps each, computed once by link_taps). For N in {10, 100, 1000, 10000}
molecules per 1 bit and each method, on one core (BLAS threads pinned to 1 below):

* ``ber s``: ``ber`` at the threshold round(N h_0 / 2) of every symbol time (200 values);
* ``opt s``: ``optimal_threshold`` (every integer threshold tried) at every symbol time;
* the maximum rate (bits/s, on this grid) for BER targets 1e-3 and 1e-6.

Times are the median of ``--repeats`` runs. Requirement (issue 21): exact BER, K = 5, N up to
10^4, 200 symbol times, <= 1 s on one core.

Usage: .venv/bin/python bench/link_ber.py [--repeats R]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from sweeplab.mcvd import (  # noqa: E402
    LINK_METHODS,
    Geometry,
    ber,
    link_taps,
    max_rate,
    optimal_threshold,
)

PAPER = Geometry((0.0, 0.0, 10.0), (10.0, 0.0, 0.0), 5.0, 79.4)
SYMBOL_TIMES = np.geomspace(0.01, 2.0, 200)
K = 5
NS = (10, 100, 1000, 10_000)


def timed(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    taps, _ = link_taps(PAPER, SYMBOL_TIMES, isi_memory=K)
    print(f"link_taps: {taps.shape} taps (exact model) in {time.perf_counter() - t0:.3f} s")
    ber(taps[:2], 10, 1)  # imports
    head = f"{'N':>6s} {'method':>9s} {'ber s':>8s} {'opt s':>8s}"
    print(head + f" {'rate@1e-3':>10s} {'rate@1e-6':>10s}")
    for n in NS:
        tau = np.round(n * taps[:, 0] / 2)
        for method in LINK_METHODS:
            t_ber = timed(lambda n=n, m=method, t=tau: ber(taps, n, t, method=m), args.repeats)
            t_opt = timed(lambda n=n, m=method: optimal_threshold(taps, n, method=m), args.repeats)
            rates = [max_rate(SYMBOL_TIMES, taps, n, b, method=method) for b in (1e-3, 1e-6)]
            print(
                f"{n:6d} {method:>9s} {t_ber:8.3f} {t_opt:8.3f} {rates[0]:10.3f} {rates[1]:10.3f}"
            )


if __name__ == "__main__":
    main()
