"""Sharpness experiment: exact λ_max at minimizers vs closed forms, bounds and eigensolvers.

Each minimizer also gets its Hessian trace and scalar balance measures (issue 20, item 3), to
test which balance makes a minimum flat (``bench/flatness_balance.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sweeplab import dmf

from ..canonical import point_seed

if TYPE_CHECKING:
    from distributed import Client

from .base import Axis, Experiment, FigureSpec, Points, Var, status_vars

__all__ = [
    "EXPERIMENT",
    "FAMILIES",
    "SHARPNESS",
    "balance_measures",
    "sharpness_minimizer",
    "sharpness_point",
]

RETRIES = 2  # a task whose worker dies is resubmitted this many times

DIMS = ("depth", "width", "dio", "family", "seed")
FAMILIES = ("balanced", "gauge", "gaussian", "equal-norm", "top-balanced")


def _var(units: str, long_name: str) -> Var:
    return Var(DIMS, units, long_name)


def sharpness_minimizer(
    depth: int, width: int, dio: int, family: str, seed: int, spread: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Return the minimizer (weights, target) of one sharpness point (deterministic in its seed).

    ``equal-norm``: :func:`sweeplab.dmf.equal_norm_minimizer` with ``r = min(width, dio)``
    shared singular values ``exp(Uniform(−1, 1))`` (needs ``depth, r >= 2``);
    ``top-balanced``: :func:`sweeplab.dmf.top_balanced_minimizer` with ``spread``.
    """
    rng = np.random.default_rng(
        point_seed(seed, "sharpness", depth=depth, width=width, dio=dio, family=family)
    )
    widths = [width] * (depth - 1)
    if family == "gaussian":
        return dmf.gaussian_minimizer((dio, *widths, dio), rng)
    if family == "equal-norm":
        values = np.exp(rng.uniform(-1.0, 1.0, min(width, dio)))
        return dmf.equal_norm_minimizer((dio, *widths, dio), values, rng)
    target = rng.standard_normal((dio, dio))
    if family == "balanced":
        return dmf.balanced_minimizer(target, widths, rng=rng), target
    if family == "gauge":
        return dmf.gauge_minimizer(target, widths, rng, spread), target
    if family == "top-balanced":
        return dmf.top_balanced_minimizer(target, widths, rng, spread), target
    raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")


def balance_measures(weights: list[np.ndarray], target: np.ndarray) -> dict[str, float]:
    """Hessian trace and relative balance measures of a minimizer (each 0 when balanced).

    With ``p_i = ‖A_i‖₂‖B_i‖₂``, ``s = ‖M‖₂`` and ``L`` layers: ``imbalance_frobenius =
    max_i ‖W_{i+1}ᵀW_{i+1} − W_iW_iᵀ‖_F / s^{2/L}`` (0 for ``L = 1``), ``spectral_spread`` and
    ``product_spread`` = ``(max − min) / max`` of ``‖W_i‖₂`` and of ``p_i``, ``product_excess =
    max_i p_i / s^{(L−1)/L} − 1`` (0 is sufficient for flatness) and ``top_mode_excess`` the
    same for :func:`sweeplab.dmf.top_mode_products` (0 is necessary). All dimensionless.
    """
    from sweeplab.dmf.balance import balance, hessian_trace, top_mode_products

    depth = len(weights)
    b = balance(weights)
    top = top_mode_products(weights)
    s1 = float(np.linalg.norm(target, 2))
    imb = float(b.imbalance_frobenius.max()) / s1 ** (2 / depth) if depth > 1 else 0.0

    def spread(x: np.ndarray) -> float:
        return float((x.max() - x.min()) / x.max())

    return {
        "trace": hessian_trace(weights),
        "imbalance_frobenius": imb,
        "spectral_spread": spread(b.spectral_norms),
        "product_spread": spread(b.product_norms),
        "product_excess": float(b.product_norms.max()) / s1 ** ((depth - 1) / depth) - 1.0,
        "top_mode_excess": float(top.max()) / s1 ** ((depth - 1) / depth) - 1.0,
    }


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
        **balance_measures(ws, target),
    }


def _chunk(rows: list[dict[str, Any]], settings: Mapping[str, Any]) -> list[Any]:
    """Points of one Dask task: (values, wall s) each, or the exception a point raised."""
    out: list[Any] = []
    for p in rows:
        t0 = time.perf_counter()
        try:
            res = sharpness_point(p["depth"], p["width"], p["dio"], p["family"], p["seed"],
                                  settings)  # fmt: skip
        except Exception as exc:
            res = exc
        out.append((res, time.perf_counter() - t0))
    return out


def n_params(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Parameter count N of each point: d_io w + (L - 2) w^2 + w d_io."""
    depth = np.asarray(columns["depth"], dtype=float)
    width = np.asarray(columns["width"], dtype=float)
    dio = np.asarray(columns["dio"], dtype=float)
    return 2 * dio * width + (depth - 2) * width**2


class Sharpness(Experiment):
    """Exact sharpness at minimizers of five families, with every independent check."""

    name = "sharpness"
    version = 2  # 2: trace, balance measures, the equal-norm and top-balanced families
    order = 10
    axes = (
        Axis("depth", "depth", int, "1", "number of layers L"),
        Axis("width", "width", int, "1", "hidden width"),
        Axis("dio", "d_io", int, "1", "input and output dimension d_0 = d_L"),
        Axis("family", "family", str, "1", "minimizer family"),
        Axis.seed_count("seed value (the point's generator derives from all its parameters)"),
    )
    batch_axes = ("depth", "width", "dio", "family")
    variables: ClassVar[dict[str, Var]] = {
        "exact": _var("1", "exact sharpness lambda_max of the Hessian (Kronecker K)"),
        "closed_form": _var("1", "special-case closed form of the sharpness (nan where none)"),
        "bound": _var("1", "spectral-norm-sum upper bound (S) on the sharpness"),
        "flattest": _var("1", "smallest sharpness over all minimizers, 2 L ||M||_2^(2-2/L)"),
        "lanczos": _var("1", "sharpness by Lanczos (scipy eigsh) over Hessian-vector products"),
        "dense": _var("1", "sharpness of the dense Hessian (nan above dense_max_params)"),
        "rel_err_lanczos": _var("1", "relative difference |lanczos - exact| / exact"),
        "rel_err_dense": _var("1", "relative difference |dense - exact| / exact"),
        "time_exact": Var(DIMS, "s", "wall time of the exact sharpness", timing=True),
        "time_lanczos": Var(DIMS, "s", "wall time of the Lanczos sharpness", timing=True),
        "time_dense": Var(DIMS, "s", "wall time of the dense-Hessian sharpness", timing=True),
        "n_params": _var("1", "number of parameters N"),
        "trace": _var("1", "Hessian trace 2 sum_i ||A_i||_F^2 ||B_i||_F^2"),
        "imbalance_frobenius": _var(
            "1", "max_i ||W_(i+1)^T W_(i+1) - W_i W_i^T||_F / ||M||_2^(2/L) (0: Frobenius balance)"
        ),
        "spectral_spread": _var("1", "(max - min) / max of the layer spectral norms ||W_i||_2"),
        "product_spread": _var("1", "(max - min) / max of the products ||A_i||_2 ||B_i||_2"),
        "product_excess": _var(
            "1", "max_i ||A_i||_2 ||B_i||_2 / ||M||_2^((L-1)/L) - 1 (0 is sufficient for flatness)"
        ),
        "top_mode_excess": _var(
            "1", "max_i ||A_i^T u_1|| ||B_i v_1|| / ||M||_2^((L-1)/L) - 1 (0 is necessary)"
        ),
        **status_vars(DIMS),
    }
    figures = (
        FigureSpec(
            "sharpness_overview",
            "Left: the spectral-norm-sum bound (S) over the exact sharpness (variables `bound`, "
            "`exact`, dimensionless) against depth; right: the exact sharpness over the flattest "
            "value 2L||M||^(2-2/L) (`exact`, `flattest`), averaged over seeds and d_io.",
        ),
        FigureSpec(
            "sharpness_balance",
            "Exact sharpness over the flattest value, minus 1 (`exact`, `flattest`; 0 for a "
            "flattest minimizer, drawn at the floor 1e-16), against five balance measures, one "
            "dot per minimizer, coloured by family: the Frobenius imbalance "
            "(`imbalance_frobenius`), the spreads of the layer spectral norms "
            "(`spectral_spread`) and of the products ||A_i||_2 ||B_i||_2 (`product_spread`), "
            "and how far the largest product and the largest top-mode product exceed "
            "||M||_2^((L-1)/L) (`product_excess`, `top_mode_excess`); all dimensionless. "
            "equal-norm minimizers have equal spectral norms (and, at depth 2, constant "
            "products) yet are not the flattest; top-balanced minimizers (balanced top mode, "
            "other modes spread by gauge_spread) are often the flattest with unbalanced layers, "
            "and sometimes sharp with a balanced top mode.",
        ),
    )
    threads, mem_mb, runtime = 2, 4000, 30

    def validate(self, section: Mapping[str, Any]) -> None:
        """Widths must reach the target's rank for the aligned families; equal-norm needs two."""
        super().validate(section)
        aligned = ("balanced", "gauge", "top-balanced")
        for w in section["width"]:
            for dio in section["d_io"]:
                if w < dio and any(f in aligned for f in section["family"]):
                    raise ValueError(
                        f"sharpness.width = {w} is below sharpness.d_io = {dio}: balanced, "
                        "gauge and top-balanced minimizers need every hidden width >= rank of "
                        "the target"
                    )
        if "equal-norm" in section["family"]:
            low = min(min(section["width"]), min(section["d_io"]))
            if low < 2 or min(section["depth"]) < 2:
                raise ValueError(
                    f"sharpness.family equal-norm needs depth >= 2 and width, d_io >= 2 "
                    f"(two modes to permute), got min depth {min(section['depth'])}, min "
                    f"width/d_io {low}: with a dimension 1 equal spectral norms force flatness"
                )

    def point_memory(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                     ) -> tuple[np.ndarray, str]:  # fmt: skip
        """Peak bytes of each point: Lanczos ~100 N floats, K 4 d_io^4, dense Hessian 3 N^2.

        Fitted with tracemalloc (``bench/point_memory.py``: 86 N, 3.0 d_io^4, 2.0 N^2 floats).
        """
        n = n_params(columns)
        dio = np.asarray(columns["dio"], dtype=float)
        dense = np.where(n <= settings["dense_max_params"], 3.0 * n * n, 0.0)
        return 8.0 * (100.0 * n + 4.0 * dio**4 + dense), "100 N + 4 d_io^4 (+ 3 N^2 dense) floats"

    def point_cost(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                   ) -> np.ndarray:  # fmt: skip
        """Seconds per point: ~5 ms, Lanczos ~1 us per parameter and layer, dense ~1e-10 N^3.

        A rough shape, scaled by the planner to the wall times recorded in the blocks.
        """
        n = n_params(columns)
        depth = np.asarray(columns["depth"], dtype=float)
        dense = np.where(n <= settings["dense_max_params"], 1e-10 * n**3, 0.0)
        return 5e-3 + 1e-6 * n * depth + dense

    def compute_points(
        self, points: Points, settings: Mapping[str, Any], client: Client
    ) -> dict[str, np.ndarray]:
        """One Dask task per worker thread, each a contiguous slice of the block's points."""
        n = len(points)
        # An adaptive cluster (dask-jobqueue) may have no worker yet: then one task per point.
        n_tasks = min(sum(client.nthreads().values()) or n, n)
        rows = [points.params(i) for i in range(n)]
        parts = [c.tolist() for c in np.array_split(np.arange(n), n_tasks)]
        futures = [
            client.submit(
                _chunk, [rows[i] for i in part], dict(settings), retries=RETRIES, pure=False
            )
            for part in parts
        ]
        results = [r for f in futures for r in f.result()]
        data = self.empty_points(n, settings)
        data["point_wall_time"] = np.array([w for _, w in results])
        for i, (res, _) in enumerate(results):
            if isinstance(res, BaseException):
                self.record_failure(data, i, res)
                continue
            for key, value in res.items():
                data[key][i] = value
        return data


EXPERIMENT = SHARPNESS = Sharpness()
