"""Escape experiment: gradient descent started next to a minimizer, for step sizes c·2/λ*.

Settings (besides the grid): ``escape_radius``, ``max_steps``, ``loss_tol`` and
``track_sharpness`` (default false: the Lanczos sharpness at every checkpoint,
``checkpoint_sharpness``, nan when off). Besides the trajectories at the log-spaced checkpoint
steps (dimension ``step``), every run stores its dense window of ``WINDOW`` = 128 consecutive
steps (``sweeplab.dmf.WINDOW``) around the escape step (dimension ``window_step``, the
offset from ``window_start``; ``window_start`` is -1 and the window all nan for a run that
never escaped), so that Figure 1 draws the departure along ``v_1`` step by step. Every computed
block is checked for linear stability of the minimizer reached: an ``escaped`` run must end
with ``final_sharpness <= (2/η)(1 + STABILITY_RTOL)`` (:func:`stability_violations`; a
violation is logged as a warning, the values are stored as computed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sweeplab import dmf
from sweeplab.dmf.records import WINDOW

from ..canonical import point_seed

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

    from ..blockstore import BlockData

from .base import Axis, Experiment, FigureSpec, Points, Var, status_vars

__all__ = [
    "ESCAPE",
    "EXPERIMENT",
    "STABILITY_RTOL",
    "escape_minimizer",
    "escape_points",
    "stability_violations",
    "unstable",
]

logger = logging.getLogger(__name__)

RETRIES = 2
DIMS = ("depth", "width", "c", "radius", "seed")
TRAJ = (*DIMS, "step")
WTRAJ = (*DIMS, "window_step")
MINIMIZER = ("depth", "width", "seed", "param")
OUTCOME_FLAGS = {-1: "none", **dict(enumerate(dmf.OUTCOMES))}
METHOD_FLAGS = dict(enumerate(dmf.SHARPNESS_METHODS))

SCALARS = (
    "sharpness_star",
    "two_over_eta",
    "eta",
    "escape_step",
    "predicted_escape_step",
    "final_loss",
    "final_sharpness",
    "steps_run",
    "window_start",
)
ARRAYS = ("loss", "distance", "proj_top", "proj_null", "checkpoint_sharpness")
WINDOW_ARRAYS = ("window_loss", "window_distance", "window_proj_top", "window_proj_null")
STABILITY_RTOL = 1e-6
"""Relative tolerance of the check ``final_sharpness <= (2/η)(1 + STABILITY_RTOL)`` on escaped
runs. A converged run ends within ``sqrt(loss_tol)`` of a minimizer, where the exact sharpness
is that minimizer's up to about ``1e-9`` relative; GD cannot converge to a minimizer sharper
than ``2/η`` (its top mode grows by ``|1 − ηλ| > 1`` per step)."""


def escape_minimizer(depth: int, width: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Return the minimizer of an escape point; independent of ``c`` and the radius.

    Every layer is ``width x width`` (``width = 1``: the all-scalar chain of spec §6).
    """
    rng = np.random.default_rng(point_seed(seed, "escape", depth=depth, width=width))
    if width == 1:
        return dmf.scalar_minimizer(depth, rng)
    return dmf.gaussian_minimizer((width,) * (depth + 1), rng)


def escape_points(
    depth: int, width: int, radius: float, runs: Sequence[tuple[int, float]],
    settings: Mapping[str, Any],
) -> list[dict[str, Any]]:  # fmt: skip
    """Run gradient descent for every ``(seed, c)`` of one chain shape at once.

    One ``dmf.escape_batch`` call: the minimizer of each seed (computed once) with every step
    size ``c 2/lambda*`` asked for it.
    """
    minimizers: dict[int, list[np.ndarray]] = {}
    lams: dict[int, float] = {}
    for seed, _ in runs:
        if seed not in minimizers:
            minimizers[seed] = escape_minimizer(depth, width, seed)[0]
            lams[seed] = dmf.sharpness(minimizers[seed])
    ws_list = [minimizers[seed] for seed, _ in runs]
    etas = [c * 2.0 / lams[seed] for seed, c in runs]
    max_steps = int(settings["max_steps"])
    results = dmf.escape_batch(
        ws_list,
        etas,
        radius=radius,
        escape_radius=settings["escape_radius"],
        max_steps=max_steps,
        checkpoints=dmf.default_checkpoints(max_steps),
        loss_tol=settings["loss_tol"],
        track_sharpness=bool(settings.get("track_sharpness", False)),
        window=WINDOW,
    )
    out = []
    for ws, r in zip(ws_list, results, strict=True):
        out.append(
            {
                "outcome": dmf.OUTCOMES.index(r.outcome),
                "sharpness_star": r.sharpness_star,
                "two_over_eta": 2.0 / r.eta,
                "eta": r.eta,
                "escape_step": float(r.escape_step) if r.escape_step >= 0 else math.nan,
                "predicted_escape_step": r.predicted_escape_step,
                "final_loss": r.final_loss,
                "final_sharpness": r.final_sharpness,
                "final_sharpness_method": dmf.SHARPNESS_METHODS.index(r.final_sharpness_method),
                "period": float(r.period),
                "contraction_rate": r.contraction_rate,
                "steps_to_tol": r.steps_to_tol,
                "steps_run": float(r.steps_run),
                "loss": np.asarray(r.loss),
                "distance": np.asarray(r.distance),
                "proj_top": np.asarray(r.proj_top),
                "proj_null": np.asarray(r.proj_null),
                "checkpoint_sharpness": np.asarray(r.checkpoint_sharpness),
                "window_start": float(r.window_start),  # -1: never escaped
                "window_loss": np.asarray(r.window_loss),
                "window_distance": np.asarray(r.window_distance),
                "window_proj_top": np.asarray(r.window_proj_top),
                "window_proj_null": np.asarray(r.window_proj_null),
                "w_star": np.concatenate([w.ravel() for w in ws]),
            }
        )
    return out


def unstable(outcome: Any, final_sharpness: Any, two_over_eta: Any, rtol: float = STABILITY_RTOL
             ) -> Any:  # fmt: skip
    """Mask of escaped runs ending sharper than ``(2/η)(1 + rtol)`` (or with nan sharpness).

    Works on numpy arrays and on xarray DataArrays alike (same shapes, or broadcastable).
    """
    escaped = outcome == dmf.OUTCOMES.index("escaped")
    return escaped & ~(final_sharpness <= two_over_eta * (1.0 + rtol))


def stability_violations(ds: xr.Dataset, rtol: float = STABILITY_RTOL) -> list[str]:
    """Escaped runs of ``ds`` that end sharper than ``(2/η)(1 + rtol)``, described one by one.

    Parameters
    ----------
    ds : xarray.Dataset
        An escape block (dimension ``point``) or aggregate (``outcome``, ``final_sharpness``,
        ``two_over_eta``).
    rtol : float
        Relative tolerance on ``2/η``.

    Returns
    -------
    list of str
        ``"depth=.. width=.. c=.. radius=.. seed=..: final_sharpness = .. > 2/eta = .."`` for
        every violation (empty if none). A nan final sharpness of an escaped run counts as a
        violation (the check cannot be made).

    """
    bad = unstable(ds.outcome, ds.final_sharpness, ds.two_over_eta, rtol)
    out = []
    dims = ("point",) if "point" in ds.dims else DIMS  # a block or an aggregate
    for idx in zip(*np.nonzero(bad.transpose(*dims).values), strict=True):
        point = ds.isel(dict(zip(dims, idx, strict=True)))
        where = " ".join(f"{d}={point[d].item():g}" for d in DIMS)
        out.append(
            f"{where}: final_sharpness = {float(point.final_sharpness):.12g} > 2/eta = "
            f"{float(point.two_over_eta):.12g} (rtol {rtol:g})"
        )
    return out


def _task(shape: Mapping[str, Any], runs: list[tuple[int, float]], settings: Mapping[str, Any]
          ) -> tuple[Any, float]:  # fmt: skip
    """One batched call; its exception is returned (recorded on every run of the batch)."""
    t0 = time.perf_counter()
    try:
        res: Any = escape_points(shape["depth"], shape["width"], shape["radius"], runs, settings)
    except Exception as exc:
        res = exc
    return res, time.perf_counter() - t0


def n_params(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Parameter count N = L width^2 of each point."""
    return np.asarray(columns["depth"], dtype=float) * np.asarray(columns["width"], float) ** 2


class Escape(Experiment):
    """Escape of gradient descent from minimizers sharper than 2/η (spec dmf §6)."""

    name = "escape"
    #: 2: the dense window around the escape step (``window_start``, ``window_*`` over
    #: ``window_step``) is stored; blocks of version 1 lack these variables
    version = 2
    order = 20
    axes = (
        Axis("depth", "depth", int, "1", "number of layers L"),
        Axis("width", "width", int, "1", "layer width (1 = all-scalar chain)"),
        Axis("c", "c", float, "1", "step-size factor c = eta lambda* / 2"),
        Axis("radius", "radius", float, "1", "initial distance r from the minimizer along v_1"),
        Axis.seed_count(
            "seed value (the minimizer's generator derives from seed, depth and width)"
        ),
    )
    batch_axes = ("depth", "width", "radius", "seed")
    point_dims: ClassVar[dict[str, tuple[str, str]]] = {
        "step": ("step", "gradient-descent checkpoint step"),
        "window_step": ("step", "offset k of the dense-window step t = window_start + k"),
        "param": ("1", "index into the flattened weights vec(W_1), ..., vec(W_L)"),
    }
    variables: ClassVar[dict[str, Var]] = {
        "outcome": Var(
            DIMS, "1", "gradient-descent outcome (flag_meanings)", "int8", OUTCOME_FLAGS
        ),
        "sharpness_star": Var(DIMS, "1", "exact sharpness lambda* of the starting minimizer"),
        "two_over_eta": Var(DIMS, "1", "linear-stability limit 2/eta"),
        "eta": Var(DIMS, "1", "step size eta = c 2 / lambda*"),
        "escape_step": Var(
            DIMS, "step", "first step with ||w_t - w*|| > escape radius (nan: never)"
        ),
        "predicted_escape_step": Var(
            DIMS, "step", "linear theory ln(r_esc/r) / ln|1 - eta lambda*|"
        ),
        "final_loss": Var(DIMS, "1", "loss at the last step"),
        "final_sharpness": Var(
            DIMS, "1", "lambda_max of the Hessian at the last iterate (see final_sharpness_method)"
        ),
        "final_sharpness_method": Var(
            DIMS, "1", "how final_sharpness was computed (flag_meanings)", "int8", METHOD_FLAGS
        ),
        "period": Var(
            DIMS, "step", "period of the orbit along v_1 for edge_of_stability (0: none found)"
        ),
        "contraction_rate": Var(
            DIMS,
            "1",
            "per-step contraction rate of the loss envelope at the "
            "end (unconverged, edge_of_stability)",
        ),
        "steps_to_tol": Var(
            DIMS,
            "step",
            "extrapolated further steps to loss_tol (unconverged and still converging; else nan)",
        ),
        "steps_run": Var(DIMS, "step", "gradient steps taken"),
        "loss": Var(TRAJ, "1", "loss at checkpoint steps"),
        "distance": Var(TRAJ, "1", "||w_t - w*|| at checkpoint steps"),
        "proj_top": Var(TRAJ, "1", "<w_t - w*, v_1>, projection on the top Hessian eigenvector"),
        "proj_null": Var(TRAJ, "1", "<w_t - w*, v_N>, projection on a Hessian null direction"),
        "checkpoint_sharpness": Var(
            TRAJ,
            "1",
            "Lanczos lambda_max of the full Hessian at checkpoint steps (nan unless "
            "track_sharpness)",
        ),
        "window_start": Var(
            DIMS,
            "step",
            "first step of the dense window, max(0, escape_step - WINDOW // 8) (-1: never "
            "escaped, window all nan)",
        ),
        "window_loss": Var(WTRAJ, "1", "loss at every step of the dense window"),
        "window_distance": Var(WTRAJ, "1", "||w_t - w*|| at every step of the dense window"),
        "window_proj_top": Var(
            WTRAJ, "1", "<w_t - w*, v_1> at every step of the dense window (see proj_top)"
        ),
        "window_proj_null": Var(
            WTRAJ, "1", "<w_t - w*, v_N> at every step of the dense window (see proj_null)"
        ),
        "w_star": Var(
            MINIMIZER,
            "1",
            "starting minimizer w*, vec(W_1), ..., vec(W_L) (layers width x width; nan-padded)",
        ),
        **status_vars(DIMS),
    }
    figures = (
        FigureSpec(
            "escape_contour",
            "Figure 1. Loss L(w* + a v_1 + b v_N) (log10, dimensionless) on the plane through the "
            "starting minimizer w* (`w_star`) spanned by the top Hessian eigenvector v_1 and the "
            "rescaling null direction v_N, near w* (± 3 escape radii) and far (the whole paths), "
            "with the GD paths (`proj_top`, `proj_null` at the log-spaced checkpoint steps, "
            "merged with `window_proj_top`, `window_proj_null` at every step of the dense window "
            "around the escape step) for every c, coloured "
            "by the step size eta (blues below 2/lambda*, reds above), started r = 1e-9 (the "
            "radius closest to it) from w* along v_1; deepest all-scalar chain, first seed with "
            "a stored minimizer; lambda* = exact sharpness of w* (dmf.sharpness), in the title.",
        ),
        FigureSpec(
            "escape_sharpness",
            "Sharpness where GD ends (`final_sharpness`, exact at a minimizer, Lanczos elsewhere) "
            "divided by 2/eta, against c = eta lambda*/2, coloured by outcome, one marker per "
            "depth, one panel per width: median and min-max over seeds. Escaped runs land at or "
            "below the line 1 (edge of stability); the dotted line is the start, lambda*/(2/eta) "
            "= c.",
        ),
        FigureSpec(
            "escape_steps",
            "Observed escape step (`escape_step`, steps) against the linear-theory prediction "
            "ln(r_esc/r)/ln|1-eta lambda*| (`predicted_escape_step`), and their ratio against c: "
            "median and min-max over seeds, coloured by c, one marker per chain.",
        ),
        FigureSpec(
            "escape_phase",
            "Fraction of seeds ending in each outcome (`outcome`, flag_meanings) against c, one "
            "panel per depth and width, first radius.",
        ),
    )
    threads, mem_mb, runtime = 2, 2000, 30

    def inner_coords(
        self, settings: Mapping[str, Any], points: Points | None = None
    ) -> dict[str, np.ndarray]:
        """Checkpoint steps, window offsets, and the parameter index of ``w_star``.

        ``param`` spans the largest chain; ``window_step`` is ``0..WINDOW-1``, the offset of a
        dense-window step from its run's ``window_start``.
        """
        if points is None:
            n = max(d * w * w for d in settings["depth"] for w in settings["width"])
        else:
            n = int(n_params(points.columns).max())
        return {
            "step": dmf.default_checkpoints(int(settings["max_steps"])),
            "window_step": np.arange(WINDOW, dtype=np.int64),
            "param": np.arange(n, dtype=np.int64),
        }

    def point_memory(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                     ) -> tuple[np.ndarray, str]:  # fmt: skip
        """Peak bytes of a run: K of the minimizer 4 width^4, Lanczos ~100 N, its results.

        Fitted with tracemalloc (``bench/point_memory.py``: 3.0 width^4 floats) before the
        dense window existed; added: the last ``WINDOW // 8`` iterates kept until the escape
        step to fill the window (the numpy engine keeps them for every run of a batch), the
        stored trajectories (5 per checkpoint, 4 per step of the dense window) and ``w_star``.
        """
        n = n_params(columns)
        width = np.asarray(columns["width"], dtype=float)
        n_ck = len(dmf.default_checkpoints(int(settings["max_steps"])))
        stored = 5.0 * n_ck + 4.0 * WINDOW + n
        work = (100.0 + WINDOW // 8) * n + 4.0 * width**4
        return 8.0 * (work + stored), f"{100 + WINDOW // 8} N + 4 width^4 floats + results"

    def block_memory(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                     ) -> float:  # fmt: skip
        """Return the sum of its runs' memory: a batch holds every run at once."""
        need, _ = self.point_memory(columns, settings)
        return float(need.sum())

    def point_cost(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                   ) -> np.ndarray:  # fmt: skip
        """Seconds per run: ``max_steps`` GD steps of ~10 ns per parameter (+ 100 ns), + 0.2 ms.

        Measured on the paper grid with the compiled kernels (``config/paper.yaml``, 1920 runs,
        widths 1 and 4, depths 4-15): wall time per run 0.8-1.3x this estimate (it was 8-13x
        below the numpy path's estimate, 10x larger, which made blocks 8x smaller than
        ``block_seconds`` on a first run). Runs that converge or diverge stop early; the planner
        scales the estimate to the wall times recorded in the blocks.
        """
        n = n_params(columns)
        return 2e-4 + 1e-7 * float(settings["max_steps"]) * (1.0 + 0.1 * n)

    def compute_points(
        self, points: Points, settings: Mapping[str, Any], client: Client
    ) -> dict[str, np.ndarray]:
        """Batch runs of one chain shape and radius (``dmf.escape_batch``), a task per thread.

        The planner orders a block's points by minimizer, so a task holds a few minimizers with
        many step sizes each.
        """
        n = len(points)
        data = self.empty_points(n, settings, points)
        data["point_wall_time"] = np.full(n, np.nan)
        threads = max(1, sum(client.nthreads().values()))
        tasks = []
        for shape, idx in points.groups(("depth", "width", "radius")):
            for part in np.array_split(idx, min(threads, len(idx))):
                runs = [(int(points.columns["seed"][i]), float(points.columns["c"][i]))
                        for i in part]  # fmt: skip
                fut = client.submit(_task, shape, runs, dict(settings), retries=RETRIES,
                                    pure=False)  # fmt: skip
                tasks.append((part, fut))
        for part, fut in tasks:
            res, wall = fut.result()
            data["point_wall_time"][part] = wall / len(part)
            for j, i in enumerate(part):
                if isinstance(res, BaseException):
                    self.record_failure(data, i, res)
                    continue
                for key, value in res[j].items():
                    target = data[key][i]
                    if key == "w_star" and np.ndim(value) and len(value) < target.shape[-1]:
                        target[: len(value)] = value  # smaller chains are nan-padded
                    else:
                        data[key][i] = value
        return data

    def compute_block(
        self, points: Points, settings: Mapping[str, Any], client: Client
    ) -> BlockData:
        """Compute ``points`` and check escaped runs against ``2/η`` (warnings, values kept)."""
        block = super().compute_block(points, settings, client)
        a = block.arrays
        if np.any(unstable(a["outcome"], a["final_sharpness"], a["two_over_eta"])):
            from ..datasets import to_dataset  # xarray only to describe a violation

            for text in stability_violations(to_dataset(block)):
                logger.warning("escape: escaped run sharper than 2/eta: %s", text)
        return block


EXPERIMENT = ESCAPE = Escape()
