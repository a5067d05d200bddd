"""Run one planned block: its points are computed on Dask, the result becomes a block store.

A block job imports neither xarray nor dask.array (about 1.5 s of every job's start-up): the
points become a :class:`~sweeplab.sweep.blockstore.BlockData` of numpy arrays, written with zarr
in exactly the layout xarray would write.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .blockstore import BLOCK_SUFFIX, BlockData, write_block
from .configcheck import validate_section
from .experiments import Experiment, Points
from .experiments.base import canonical_json
from .planner import load_plan_file
from .store import provenance

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

__all__ = ["FAIL_ENV", "compute_block", "compute_points", "run_plan"]

logger = logging.getLogger(__name__)

#: test-only: JSON object of parameter values; matching points are recorded as failed
FAIL_ENV = "SWEEPLAB_TEST_FAIL"


def _injected_failures(points: Points) -> np.ndarray:
    spec = os.environ.get(FAIL_ENV)
    mask = np.zeros(len(points), dtype=bool)
    if not spec:
        return mask
    mask[:] = True
    for name, value in json.loads(spec).items():
        mask &= points.columns[name] == value
    return mask


def compute_block(exp: Experiment, points: Points, section: Mapping[str, Any], client: Client
                  ) -> BlockData:  # fmt: skip
    """Compute ``points`` of ``exp`` on ``client``; return the block's content (numpy only)."""
    block = exp.compute_block(points, section, client)
    fail = _injected_failures(points)
    if fail.any():  # test-only (FAIL_ENV): as if these points had raised
        rows = np.flatnonzero(fail)
        for name, var in exp.variables.items():
            block.arrays[name][rows] = var.fill
        block.arrays["status"][rows] = 1
        block.arrays["error"][rows] = f"RuntimeError: injected failure ({FAIL_ENV})"
    logger.info("%s: %d point(s) done", exp.name, len(points))
    return block


def compute_points(exp: Experiment, points: Points, section: Mapping[str, Any], client: Client
                   ) -> xr.Dataset:  # fmt: skip
    """Compute ``points`` of ``exp`` on ``client``; return the labelled block dataset."""
    from .datasets import to_dataset

    return to_dataset(compute_block(exp, points, section, client))


def run_plan(
    plan: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    dask: Mapping[str, Any] | None = None,
    threads: int = 1,
) -> BlockData:
    """Compute the block described by the plan file ``plan`` and write it atomically to ``out``.

    Parameters
    ----------
    plan : path
        Plan file written by the planner (``results/plans/<experiment>/<block>.json``).
    out : path
        Destination block store, ``<block>.zarr.zip``.
    dask : mapping, optional
        The config's dask section (address, scheduler_file, processes, timeout).
    threads : int
        Threads of the private local Dask cluster (ignored with an external scheduler).

    Raises
    ------
    ValueError
        For a damaged plan, settings the config schema or the experiment refuses, or an ``out``
        that is not the plan's block; nothing is computed or written.

    """
    exp, points, settings, section, salt = load_plan_file(plan)
    name = Path(plan).stem
    out = Path(out)
    if out.name != f"{name}{BLOCK_SUFFIX}":
        raise ValueError(f"--out {out} must be named {name}{BLOCK_SUFFIX} (the plan's block)")
    validate_section(exp.name, section)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise ValueError(f"--out {out}: directory {out.parent} is not writable")
    from .cluster import dask_client  # imports distributed: not needed to check the plan

    with dask_client(threads, dask) as client:
        block = compute_block(exp, points, section, client)
    entries = exp.entries(section)
    block.attrs.update(
        {
            "experiment": exp.name,
            "block": name,
            "version": exp.version,
            "settings": canonical_json(settings),
            "entries": canonical_json(entries),
            "salt": json.dumps(list(salt)),
            **provenance({exp.name: dict(section)}),
        }
    )
    n_failed = int(np.count_nonzero(block.arrays["status"]))
    if n_failed:
        logger.warning("block %s: %d failed point(s) recorded", name, n_failed)
    write_block(block, out)
    return block
