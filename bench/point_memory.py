"""Measured peak memory of single points vs the experiments' estimates (``point_memory``).

The estimates refuse points that cannot fit a block job (``Experiment.check_memory``). This runs
a few sharpness and escape points under ``tracemalloc`` and prints, per point, the peak, the
estimate and their ratio, plus the fitted coefficients the estimates are built from (peak per
``8 N`` bytes with the Lanczos solve only, per ``8 d_io^4`` for the Kronecker matrix K).

    .venv/bin/python bench/point_memory.py
"""

import tracemalloc

import numpy as np

from sweeplab.sweep.experiments import REGISTRY
from sweeplab.sweep.experiments.escape import escape_points
from sweeplab.sweep.experiments.sharpness import sharpness_point


def peak_of(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    sharp = REGISTRY["sharpness"]
    print("sharpness: depth width d_io dense  N        peak MB  estimate MB  ratio  peak/8N  "
          "peak/8d^4")  # fmt: skip
    cases = [(3, 100, 2, 0), (3, 300, 2, 0), (5, 200, 4, 0), (3, 30, 30, 0), (2, 60, 60, 0),
             (3, 40, 12, 4000)]  # fmt: skip
    for depth, width, dio, dense in cases:
        section = {"depth": [depth], "width": [width], "d_io": [dio], "family": ["balanced"],
                   "seeds": 1, "gauge_spread": 0.5, "lanczos_tol": 1e-10,
                   "dense_max_params": dense}  # fmt: skip
        settings = sharp.settings(section)
        columns = {a.name: a.column(a.coords(section)) for a in sharp.axes}  # the one point
        need = float(sharp.point_memory(columns, settings)[0][0])
        n = dio * width * 2 + (depth - 2) * width * width
        peak = peak_of(lambda: sharpness_point(depth, width, dio, "balanced", 0, settings))  # noqa: B023
        print(f"           {depth:5d} {width:5d} {dio:4d} {dense:5d} {n:7d} {peak / 1e6:9.1f} "
              f"{need / 1e6:12.1f} {need / peak:6.2f} {peak / (8 * n):8.1f} "
              f"{peak / (8 * dio**4):9.2f}")  # fmt: skip
    esc = REGISTRY["escape"]
    print("escape:    depth width  N        peak MB  estimate MB  ratio  peak/8w^4")
    for depth, width in [(3, 30), (3, 60), (4, 60)]:
        settings = {"escape_radius": 1e-3, "max_steps": 200, "loss_tol": 1e-20,
                    "track_sharpness": False}  # fmt: skip
        columns = {"depth": np.array([depth]), "width": np.array([width]), "c": np.array([1.2]),
                   "radius": np.array([1e-6]), "seed": np.array([0])}  # fmt: skip
        need = float(esc.point_memory(columns, settings)[0][0])
        peak = peak_of(lambda: escape_points(depth, width, 1e-6, [(0, 1.2)], settings))  # noqa: B023
        print(f"           {depth:5d} {width:5d} {depth * width**2:7d} {peak / 1e6:9.1f} "
              f"{need / 1e6:12.1f} {need / peak:6.2f} {peak / (8 * width**4):9.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
