"""Sharpness experiment: exact λ_max at minimizers vs closed forms, bounds and eigensolvers."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from distributed import Client

from sweeplab import dmf

from ..canonical import point_seed
from .base import Axis, Block, Experiment, FigureSpec, Var, chunk_bounds, status_vars

__all__ = ["EXPERIMENT", "SHARPNESS", "sharpness_minimizer", "sharpness_point"]

RETRIES = 2  # a task whose worker dies is resubmitted this many times

DIMS = ("depth", "width", "dio", "family", "seed")


def _var(units: str, long_name: str) -> Var:
    return Var(DIMS, units, long_name)


def sharpness_minimizer(
    depth: int, width: int, dio: int, family: str, seed: int, spread: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Return the minimizer (weights, target) of one sharpness point (deterministic in its seed)."""
    rng = np.random.default_rng(
        point_seed(seed, "sharpness", depth=depth, width=width, dio=dio, family=family)
    )
    widths = [width] * (depth - 1)
    if family == "gaussian":
        return dmf.gaussian_minimizer((dio, *widths, dio), rng)
    target = rng.standard_normal((dio, dio))
    if family == "balanced":
        return dmf.balanced_minimizer(target, widths, rng=rng), target
    if family == "gauge":
        return dmf.gauge_minimizer(target, widths, rng, spread), target
    raise ValueError(f"family must be one of balanced, gauge, gaussian; got {family!r}")


def sharpness_point(
    depth: int, width: int, dio: int, family: str, seed: int, settings: Mapping[str, Any]
) -> dict[str, float]:
    """Compute every sharpness variable of one point (values dimensionless, times in s)."""
    ws, target = sharpness_minimizer(depth, width, dio, family, seed, settings["gauge_spread"])
    n_params = sum(w.size for w in ws)
    t0 = time.perf_counter()
    exact = dmf.sharpness(ws)
    t1 = time.perf_counter()
    lanczos = dmf.sharpness_numerical(ws, target, "lanczos", tol=settings["lanczos_tol"])
    t2 = time.perf_counter()
    dense = math.nan
    t_dense = math.nan
    if n_params <= settings["dense_max_params"]:
        dense = dmf.sharpness_numerical(ws, target, "dense")
        t_dense = time.perf_counter() - t2
    try:
        closed = dmf.sharpness_closed_form(ws)
    except ValueError:
        closed = math.nan
    return {
        "exact": exact,
        "closed_form": closed,
        "bound": dmf.sharpness_bound(ws),
        "flattest": dmf.flattest_sharpness(target, depth),
        "lanczos": lanczos,
        "dense": dense,
        "rel_err_lanczos": abs(lanczos - exact) / exact,
        "rel_err_dense": abs(dense - exact) / exact,
        "time_exact": t1 - t0,
        "time_lanczos": t2 - t1,
        "time_dense": t_dense,
        "n_params": float(n_params),
    }


def _chunk(p: Mapping[str, Any], seeds: list[int], settings: Mapping[str, Any]) -> list[Any]:
    """Points of one Dask task; a point that raises is returned as its exception."""
    out: list[Any] = []
    for s in seeds:
        try:
            out.append(sharpness_point(p["depth"], p["width"], p["dio"], p["family"], s, settings))
        except Exception as exc:
            out.append(exc)
    return out


class Sharpness(Experiment):
    """Exact sharpness at minimizers of three families, with every independent check."""

    name = "sharpness"
    order = 10
    axes = (
        Axis("depth", "depth", int, "1", "number of layers L"),
        Axis("width", "width", int, "1", "hidden width"),
        Axis("dio", "d_io", int, "1", "input and output dimension d_0 = d_L"),
        Axis("family", "family", str, "1", "minimizer family"),
        Axis.seed_chunks("seed value (the point's generator derives from all its parameters)"),
    )
    variables: ClassVar[dict[str, Var]] = {
        "exact": _var("1", "exact sharpness lambda_max of the Hessian (Kronecker K)"),
        "closed_form": _var("1", "special-case closed form of the sharpness (nan where none)"),
        "bound": _var("1", "spectral-norm-sum upper bound (S) on the sharpness"),
        "flattest": _var("1", "smallest sharpness over all minimizers, 2 L ||M||_2^(2-2/L)"),
        "lanczos": _var("1", "sharpness by Lanczos (scipy eigsh) over Hessian-vector products"),
        "dense": _var("1", "sharpness of the dense Hessian (nan above dense_max_params)"),
        "rel_err_lanczos": _var("1", "relative difference |lanczos - exact| / exact"),
        "rel_err_dense": _var("1", "relative difference |dense - exact| / exact"),
        "time_exact": _var("s", "wall time of the exact sharpness"),
        "time_lanczos": _var("s", "wall time of the Lanczos sharpness"),
        "time_dense": _var("s", "wall time of the dense-Hessian sharpness"),
        "n_params": _var("1", "number of parameters N"),
        **status_vars(DIMS),
    }
    figures = (
        FigureSpec(
            "sharpness_overview",
            "Left: the spectral-norm-sum bound (S) over the exact sharpness (variables `bound`, "
            "`exact`, dimensionless) against depth; right: the exact sharpness over the flattest "
            "value 2L||M||^(2-2/L) (`exact`, `flattest`), averaged over seeds and d_io.",
        ),
    )
    threads, mem_mb, runtime = 2, 4000, 10

    def validate(self, section: Mapping[str, Any]) -> None:
        """Widths must reach the target's rank for the balanced and gauge families."""
        super().validate(section)
        for w in section["width"]:
            for dio in section["d_io"]:
                if w < dio and any(f != "gaussian" for f in section["family"]):
                    raise ValueError(
                        f"sharpness.width = {w} is below sharpness.d_io = {dio}: balanced and "
                        "gauge minimizers need every hidden width >= rank of the target"
                    )

    def point_memory(self, block: Block, settings: Mapping[str, Any]) -> tuple[float, str]:
        """Peak bytes of a point: Lanczos ~100 N floats, K 4 d_io^4, dense Hessian 3 N^2.

        Fitted with tracemalloc (``bench/point_memory.py``: 86 N, 3.0 d_io^4, 2.0 N^2 floats).
        """
        p = block.params
        dims = [p["dio"], *[p["width"]] * (p["depth"] - 1), p["dio"]]
        n = sum(a * b for a, b in itertools.pairwise(dims))
        dense = 3.0 * n * n if n <= settings["dense_max_params"] else 0.0
        need = 8.0 * (100.0 * n + 4.0 * p["dio"] ** 4 + dense)
        return need, f"N = {n} parameters, d_io = {p['dio']}" + (", dense Hessian" if dense else "")

    def compute_points(
        self, block: Block, settings: Mapping[str, Any], client: Client
    ) -> dict[str, np.ndarray]:
        """One Dask task per worker thread, each a slice of the block's seeds."""
        lo, hi = chunk_bounds(block.params["seeds"])
        seeds = list(range(lo, hi + 1))
        # An adaptive cluster (dask-jobqueue) may have no worker yet: one task per seed lets it
        # scale out.
        n_tasks = min(sum(client.nthreads().values()) or len(seeds), len(seeds))
        parts = [c.tolist() for c in np.array_split(seeds, n_tasks)]
        futures = [
            client.submit(_chunk, block.params, part, dict(settings), retries=RETRIES, pure=False)
            for part in parts
        ]
        results = [r for f in futures for r in f.result()]
        data = self.empty_points(len(seeds), settings)
        for i, res in enumerate(results):
            if isinstance(res, BaseException):
                self.record_failure(data, i, res)
                continue
            for key, value in res.items():
                data[key][i] = value
        return data


EXPERIMENT = SHARPNESS = Sharpness()
