"""Run one block: its experiment computes the points on Dask, the result becomes a block store."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from distributed import Client

from .blockstore import write_block
from .cluster import dask_client
from .configcheck import validate_block
from .experiments import Block, get
from .store import provenance

__all__ = ["compute_block", "run_block"]

logger = logging.getLogger(__name__)


def compute_block(block: Block, config: Mapping[str, Any], client: Client) -> xr.Dataset:
    """Compute every point of ``block`` on ``client`` and return the labelled block dataset.

    ``config[block.experiment]`` holds the block's settings (the experiment's config section,
    or just the part the block depends on).
    """
    ds = get(block.experiment).compute(block, config[block.experiment], client)
    logger.info("block %s: %d point(s) done", block.name, int(ds["status"].size))
    return ds


def run_block(
    experiment: str,
    name: str,
    config: Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    threads: int = 1,
) -> xr.Dataset:
    """Run the block ``name`` of ``experiment`` and write it atomically to ``out``.

    Parameters
    ----------
    experiment : str
        A registered experiment (``sweeplab.sweep.experiments.EXPERIMENTS``).
    name : str
        Canonical block name (``key~value_...``).
    config : mapping
        ``{experiment: settings, "dask": {...}}``.
    out : path
        Destination block store (``*.zarr.zip``).
    threads : int
        Threads of the private local Dask cluster (ignored with an external scheduler).

    Raises
    ------
    ValueError
        For a malformed block name or settings the config schema or the experiment refuses
        (see :func:`~sweeplab.sweep.configcheck.validate_block`); nothing is computed or written.

    """
    block = validate_block(experiment, name, config[experiment])  # before anything starts
    with dask_client(threads, config.get("dask")) as client:
        ds = compute_block(block, config, client)
    ds.attrs = {"experiment": experiment, "block": name,
                **provenance({experiment: config[experiment]})}  # fmt: skip
    n_failed = int(np.asarray(ds["status"]).astype(bool).sum())
    if n_failed:
        logger.warning("block %s: %d failed point(s) recorded", name, n_failed)
    write_block(ds, out)
    return ds
