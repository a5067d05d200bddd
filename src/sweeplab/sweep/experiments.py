"""The three experiments: which blocks a config asks for, and how one point is computed.

Each experiment declares its *block axes* (they appear in the block's path) and an inner list of
points per block. Point functions are pure: they take plain parameters and return a mapping of
NumPy values, and they know nothing of Dask, zarr or Snakemake.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from sweeplab import dmf, mcvd

from .canonical import block_name, format_value, parse_block_name, point_seed

__all__ = [
    "EXPERIMENTS",
    "Block",
    "blocks_for",
    "channel_geometry",
    "escape_minimizer",
    "escape_points",
    "parse_block",
    "sharpness_minimizer",
    "sharpness_point",
]

EXPERIMENTS = ("sharpness", "escape", "channel")


@dataclass(frozen=True)
class Block:
    """One Snakemake job: an experiment and the values of its block axes."""

    experiment: str
    params: dict[str, Any]

    @property
    def name(self) -> str:
        """Canonical ``key~value_...`` name (the block's path stem)."""
        return block_name(self.params)


def _seed_chunks(n_seeds: int, per_block: int) -> list[str]:
    return [f"{lo}-{min(lo + per_block, n_seeds) - 1}" for lo in range(0, n_seeds, per_block)]


def _seeds(chunk: str) -> list[int]:
    lo, _, hi = chunk.partition("-")
    return list(range(int(lo), int(hi) + 1))


def blocks_for(experiment: str, config: Mapping[str, Any]) -> list[Block]:
    """Return every block of ``experiment`` that ``config`` asks for, in a stable order."""
    c = config[experiment]
    if experiment == "sharpness":
        axes = product(c["depth"], c["width"], c["d_io"], c["family"],
                       _seed_chunks(c["seeds"], c["seeds_per_block"]))  # fmt: skip
        keys = ("depth", "width", "dio", "family", "seeds")
    elif experiment == "escape":
        axes = product(c["depth"], c["width"], c["c"], c["radius"],
                       _seed_chunks(c["seeds"], c["seeds_per_block"]))  # fmt: skip
        keys = ("depth", "width", "c", "radius", "seeds")
    elif experiment == "channel":
        axes = product(sorted(c["geometry"]), c["D"], c["dt"], c["correction"], c["seed"])
        keys = ("geometry", "D", "dt", "correction", "seed")
    else:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {EXPERIMENTS}")
    return [Block(experiment, dict(zip(keys, values, strict=True))) for values in axes]


_TYPES = {
    "sharpness": {"depth": int, "width": int, "dio": int, "family": str, "seeds": str},
    "escape": {"depth": int, "width": int, "c": float, "radius": float, "seeds": str},
    "channel": {"geometry": str, "D": float, "dt": float, "correction": str, "seed": int},
}


def parse_block(experiment: str, name: str) -> Block:
    """Parse a block name back into typed parameters (checks it is canonical)."""
    if experiment not in _TYPES:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {EXPERIMENTS}")
    raw = parse_block_name(name)
    types = _TYPES[experiment]
    if list(raw) != list(types):
        raise ValueError(
            f"{experiment} block {name!r} must have keys {list(types)}, got {list(raw)}"
        )
    params = {k: types[k](v) for k, v in raw.items()}
    block = Block(experiment, params)
    if block.name != name:
        raise ValueError(f"block name {name!r} is not canonical; expected {block.name!r}")
    return block


# --- sharpness ------------------------------------------------------------------------------
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


# --- escape ---------------------------------------------------------------------------------
def escape_minimizer(depth: int, width: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Return the minimizer of an escape point; independent of ``c`` and the radius."""
    rng = np.random.default_rng(point_seed(seed, "escape", depth=depth, width=width))
    if width == 1:
        return dmf.scalar_minimizer(depth, rng)
    return dmf.gaussian_minimizer((width,) * (depth + 1), rng)


def escape_points(
    depth: int, width: int, c: float, radius: float, seeds: Sequence[int],
    settings: Mapping[str, Any],
) -> list[dict[str, Any]]:  # fmt: skip
    """Run gradient descent for every seed of a block at once (``dmf.escape_batch``)."""
    minimizers = [escape_minimizer(depth, width, s)[0] for s in seeds]
    etas = [c * 2.0 / dmf.sharpness(ws) for ws in minimizers]
    max_steps = int(settings["max_steps"])
    results = dmf.escape_batch(
        minimizers, etas, radius=radius, escape_radius=settings["escape_radius"],
        max_steps=max_steps, checkpoints=dmf.default_checkpoints(max_steps),
        loss_tol=settings["loss_tol"],
    )  # fmt: skip
    out = []
    for r in results:
        out.append(
            {
                "outcome": r.outcome,
                "sharpness_star": r.sharpness_star,
                "two_over_eta": 2.0 / r.eta,
                "eta": r.eta,
                "escape_step": float(r.escape_step) if r.escape_step >= 0 else math.nan,
                "predicted_escape_step": r.predicted_escape_step,
                "final_loss": r.final_loss,
                "final_sharpness": r.final_sharpness,
                "steps_run": float(r.steps_run),
                "step": np.asarray(r.checkpoints),
                "loss": np.asarray(r.loss),
                "distance": np.asarray(r.distance),
                "proj_top": np.asarray(r.proj_top),
                "proj_null": np.asarray(r.proj_null),
            }
        )
    return out


# --- channel --------------------------------------------------------------------------------
def channel_geometry(spec: Mapping[str, Any], D: float, wall: bool) -> mcvd.Geometry:
    """Build the :class:`~sweeplab.mcvd.Geometry` of a named geometry entry of the config."""
    return mcvd.Geometry(tuple(spec["tx"]), tuple(spec["rx"]), spec["radius"], D, wall=wall)


def validate_config(config: Mapping[str, Any]) -> None:
    """Check what the JSON schema cannot: geometries, widths vs ranks, time grids.

    Raises
    ------
    ValueError
        Naming the key and the bad value.

    """
    ch = config.get("channel")
    if ch is not None and "channel" in config.get("experiments", EXPERIMENTS):
        for name, spec in ch["geometry"].items():
            format_value(name)
            for d in ch["D"]:
                try:
                    channel_geometry(spec, d, ch["wall"])
                except ValueError as exc:
                    raise ValueError(f"channel.geometry.{name}: {exc}") from None
        for dt in ch["dt"]:
            for key in ("t_end", "bin_width"):
                n = ch[key] / dt
                if abs(n - round(n)) > 1e-9 * n:
                    raise ValueError(
                        f"channel.{key} = {ch[key]} s must be a whole number of steps of "
                        f"channel.dt = {dt} s"
                    )
        n = ch["t_end"] / ch["bin_width"]
        if abs(n - round(n)) > 1e-9 * n:
            raise ValueError(
                f"channel.bin_width = {ch['bin_width']} s must divide channel.t_end = "
                f"{ch['t_end']} s"
            )
    sh = config.get("sharpness")
    if sh is not None and "sharpness" in config.get("experiments", EXPERIMENTS):
        for w in sh["width"]:
            for dio in sh["d_io"]:
                if w < dio and any(f != "gaussian" for f in sh["family"]):
                    raise ValueError(
                        f"sharpness.width = {w} is below sharpness.d_io = {dio}: balanced and "
                        "gauge minimizers need every hidden width >= rank of the target"
                    )


#: config keys of each experiment that are grid axes (their values are in the block names)
GRID_KEYS = {
    "sharpness": ("depth", "width", "d_io", "family", "seeds", "seeds_per_block"),
    "escape": ("depth", "width", "c", "radius", "seeds", "seeds_per_block"),
    "channel": ("D", "dt", "correction", "seed"),
}


def block_settings(experiment: str, config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Return the settings one block depends on: its section minus the grid axes.

    For the channel experiment only the block's own geometry is kept, so editing another
    geometry (or extending any axis) leaves the block's settings, and so the block, unchanged.
    """
    settings = {k: v for k, v in config[experiment].items() if k not in GRID_KEYS[experiment]}
    if experiment == "channel":
        geometry = parse_block_name(name)["geometry"]
        settings["geometry"] = {geometry: settings["geometry"][geometry]}
    return settings
