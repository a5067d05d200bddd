"""Synthetic blocks (random values, real labels, keys and block format) for the sweep tests.

A synthetic block holds real grid points (their content keys, parameters and settings, as a
planned block does) with values derived from each point's key, so two blocks holding one point
agree unless told otherwise (``offset``). :func:`write_blocks` packs a section's points the way
the old one-block-per-parameter-combination layout did (every axis but ``seed`` fixed, seeds in
chunks of ``per_block``), which gives the tests a known number of blocks; the block names are
the real content names (:func:`~sweeplab.sweep.identity.block_name`).

:func:`run_section` instead computes a section for real: the planner's blocks, their plan
files, and ``run_plan`` against a given Dask scheduler.
"""

import json
import zlib

import numpy as np

from sweeplab.sweep import Points, plan, run_plan
from sweeplab.sweep.blockstore import write_block
from sweeplab.sweep.datasets import label
from sweeplab.sweep.experiments import REGISTRY
from sweeplab.sweep.experiments.base import canonical_json
from sweeplab.sweep.identity import block_name, grid_points, raw_keys

SETTINGS = {"gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 0}


def sharp_section(depth=(2, 3, 4), family=("balanced", "gaussian"), seeds=4):
    return {
        "depth": list(depth), "width": [4], "d_io": [1, 2], "family": list(family),
        "seeds": seeds, **SETTINGS,
    }  # fmt: skip


def _rng(key, name):
    """A generator of point ``key`` and variable ``name`` (stable across processes)."""
    return np.random.default_rng([int(key[:15], 16), zlib.crc32(name.encode())])


def synthetic_block(experiment, section, points, offset=0.0, failed=(), name=None):
    """The labelled block dataset of ``points`` (a :class:`Points` batch of ``section``).

    Float values come from each point's key (plus ``offset``); escape's ``w_star`` (shared by
    the points of one minimizer) is a function of depth, width and seed, nan-padded to the
    batch's largest chain as ``compute_points`` pads it. Points ``failed`` (indices) are
    recorded failed. ``name`` defaults to the content name of the points.
    """
    exp = REGISTRY[experiment]
    settings = exp.settings(section)
    inner = {**settings, **{a.key: section[a.key] for a in exp.axes if a.kind == "mapping"}}
    n = len(points)
    data = exp.empty_points(n, inner, points)
    for var_name, var in exp.variables.items():
        if var.dtype != "float64":
            continue
        if var_name == "w_star":
            for i in range(n):
                p = points.params(i)
                size = p["depth"] * p["width"] ** 2
                data[var_name][i, :size] = (
                    p["seed"] * 100 + p["depth"] + p["width"] + np.arange(size)
                )
            continue
        for i, key in enumerate(points.keys):
            shape = data[var_name].shape[1:]
            data[var_name][i] = _rng(key, var_name).random(shape) + offset
    for i in failed:
        exp.record_failure(data, i, RuntimeError(f"point {i} failed"))
    cost = exp.point_cost(points.columns, settings)
    ds = label(exp, points, data, inner, wall=cost, cost=cost)
    entries = {a.key: section[a.key] for a in exp.axes if a.kind == "mapping"}
    ds.attrs = {
        "experiment": experiment,
        "block": name or block_name(raw_keys(points.keys)),
        "version": exp.version,
        "settings": canonical_json(settings),
        "entries": canonical_json(entries),
        "salt": json.dumps([]),
    }
    return ds


def block_rows(experiment, section, per_block=2):
    """Flat grid indices of each block: every axis but ``seed`` fixed, seeds in chunks."""
    exp = REGISTRY[experiment]
    grid = grid_points(exp, section)
    names = list(grid.coords)
    flat = np.arange(len(grid.keys))
    idx = np.unravel_index(flat, grid.shape)
    s = names.index("seed")
    group = np.ravel_multi_index(
        [ix if k != s else ix // per_block for k, ix in enumerate(idx)], grid.shape
    )
    return grid, [flat[group == g] for g in np.unique(group)]


def write_blocks(blocks_dir, section, experiment="sharpness", per_block=2, **kw):
    """Write every block of ``section`` that is not there yet; return {name: dataset}."""
    blocks_dir.mkdir(parents=True, exist_ok=True)
    grid, groups = block_rows(experiment, section, per_block)
    out = {}
    for rows in groups:
        points = grid.points(rows)
        ds = synthetic_block(experiment, section, points, **kw)
        name = ds.attrs["block"]
        path = blocks_dir / f"{name}.zarr.zip"
        if not path.exists():
            write_block(ds, path)
        out[name] = ds
    return out


def points_of(ds):
    """The :class:`Points` batch a block dataset holds."""
    exp = REGISTRY[ds.attrs["experiment"]]
    columns = {a.name: a.column(ds[a.dimension].values) for a in exp.axes}
    return Points(exp.name, columns, np.asarray(ds["key"].values, dtype=object))


def named(blocks, **where):
    """Name of the one block of ``blocks`` ({name: dataset}) holding a point with ``where``."""
    found = [
        name for name, ds in blocks.items()
        if np.logical_and.reduce([ds[d].values == v for d, v in where.items()]).any()
    ]  # fmt: skip
    assert len(found) == 1, (where, found)
    return found[0]


def run_section(experiment, section, results, address, **plan_kw):
    """Plan ``section`` against ``results/blocks/<experiment>`` and run every planned block.

    Each block is computed by ``run_plan`` on the Dask scheduler at ``address``; returns the
    plan.
    """
    blocks = results / "blocks" / experiment
    p = plan(experiment, section, blocks, **plan_kw)
    for f in p.write_plan_files(results / "plans" / experiment):
        run_plan(f, blocks / f"{f.stem}.zarr.zip", dask={"address": address})
    return p


def select(experiment, section, **where):
    """The grid points of ``section`` whose parameters equal ``where`` (a Points batch)."""
    grid = grid_points(REGISTRY[experiment], section)
    cols = grid.columns(np.arange(len(grid.keys)))
    mask = np.ones(len(grid.keys), dtype=bool)
    for k, v in where.items():
        mask &= np.isin(cols[k], np.atleast_1d(v))
    return grid.points(np.flatnonzero(mask))


def at(ds, **where):
    """The one point of a block dataset whose parameters equal ``where``."""
    mask = np.logical_and.reduce([ds[d].values == v for d, v in where.items()])
    (i,) = np.flatnonzero(mask)
    return ds.isel(point=int(i))
