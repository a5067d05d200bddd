"""Run one block: fan its points out to Dask, label the results, write the block store."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr
from distributed import Client

from sweeplab import dmf, mcvd

from .canonical import point_seed
from .cluster import dask_client
from .datasets import channel_dataset, escape_dataset, sharpness_dataset
from .experiments import (
    Block,
    _seeds,
    channel_geometry,
    escape_points,
    parse_block,
    sharpness_point,
)
from .store import provenance, write_atomic

__all__ = ["compute_block", "run_block"]

logger = logging.getLogger(__name__)

RETRIES = 2  # a task whose worker dies is resubmitted this many times


def _guard(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn``; return its exception instead of raising (a failed point is recorded)."""
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def _sharpness_chunk(p: Mapping[str, Any], seeds: list[int], settings: Mapping[str, Any]) -> list:
    return [
        _guard(sharpness_point, p["depth"], p["width"], p["dio"], p["family"], s, settings)
        for s in seeds
    ]


def _escape_chunk(p: Mapping[str, Any], seeds: list[int], settings: Mapping[str, Any]) -> list:
    res = _guard(escape_points, p["depth"], p["width"], p["c"], p["radius"], seeds, settings)
    if isinstance(res, BaseException):  # record the error on every seed of the batch
        return [res] * len(seeds)
    return res


def compute_block(block: Block, config: Mapping[str, Any], client: Client) -> xr.Dataset:
    """Compute every point of ``block`` on ``client`` and return the labelled block dataset."""
    settings = config[block.experiment]
    p = block.params
    if block.experiment == "sharpness":
        seeds = _seeds(p["seeds"])
        # One chunk per worker thread; an adaptive cluster (dask-jobqueue) may have no worker
        # yet, and then one task per seed lets it scale out.
        n_chunks = min(sum(client.nthreads().values()) or len(seeds), len(seeds))
        chunks = [c.tolist() for c in np.array_split(seeds, n_chunks)]
        futures = [client.submit(_sharpness_chunk, p, c, settings, retries=RETRIES, pure=False)
                   for c in chunks]  # fmt: skip
        results = [r for f in futures for r in f.result()]
        logger.info("block %s: %d points done", block.name, len(results))
        return sharpness_dataset(block, results)
    if block.experiment == "escape":
        seeds = _seeds(p["seeds"])
        fut = client.submit(_escape_chunk, p, seeds, settings, retries=RETRIES, pure=False)
        results = fut.result()
        logger.info("block %s: %d points done", block.name, len(results))
        return escape_dataset(block, results, dmf.default_checkpoints(int(settings["max_steps"])))
    if block.experiment == "channel":
        return channel_dataset(block, _channel_result(block, settings, client), settings)
    raise ValueError(f"unknown experiment {block.experiment!r}")


def _channel_result(
    block: Block, settings: Mapping[str, Any], client: Client
) -> mcvd.SimulationResult | BaseException:
    p = block.params
    try:
        g = channel_geometry(settings["geometry"][p["geometry"]], p["D"], settings["wall"])
        seed = point_seed(
            p["seed"], "channel", geometry=p["geometry"], D=p["D"], dt=p["dt"],
            correction=p["correction"],
        )  # fmt: skip
        plan = mcvd.plan_batches(int(settings["n_molecules"]), int(settings["batch_size"]), seed)
        futures = [
            client.submit(
                mcvd.simulate_batch,
                g,
                settings["t_end"],
                p["dt"],
                n,
                s,
                p["correction"],
                retries=RETRIES,
                pure=False,
            )
            for n, s in plan
        ]
        results = []
        for i, f in enumerate(futures):
            results.append(f.result())
            logger.info("block %s: batch %d/%d done", block.name, i + 1, len(futures))
        return mcvd.combine(results)
    except Exception as exc:
        logger.warning("block %s failed: %s", block.name, exc)
        return exc


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
    experiment : {"sharpness", "escape", "channel"}
        Experiment.
    name : str
        Canonical block name (``key~value_...``).
    config : mapping
        The workflow config (validated).
    out : path
        Destination zarr store.
    threads : int
        Threads of the private local Dask cluster (ignored with an external scheduler).

    """
    block = parse_block(experiment, name)
    with dask_client(threads, config.get("dask")) as client:
        ds = compute_block(block, config, client)
    ds.attrs = {"experiment": experiment, "block": name,
                **provenance({experiment: config[experiment]})}  # fmt: skip
    n_failed = int(np.asarray(ds["status"]).sum())
    if n_failed:
        logger.warning("block %s: %d failed point(s) recorded", name, n_failed)
    write_atomic(ds, out)
    return ds
