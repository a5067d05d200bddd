"""Zarr stores: atomic block writes, aggregation and provenance."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import xarray as xr

import sweeplab

__all__ = ["aggregate", "open_dataset", "provenance", "write_atomic"]


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(config: Mapping[str, Any]) -> dict[str, str]:
    """Return global attributes: version, git revision, config JSON, command, host, Slurm job."""
    attrs = {
        "sweeplab_version": sweeplab.__version__,
        "git_revision": _git_revision(),
        "config": json.dumps(config, sort_keys=True, default=str),
        "command": " ".join(sys.argv),
        "host": socket.gethostname(),
    }
    if os.environ.get("SLURM_JOB_ID"):
        attrs["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return attrs


def write_atomic(ds: xr.Dataset, path: str | os.PathLike[str]) -> None:
    """Write ``ds`` as a consolidated zarr v3 store at ``path``, all or nothing.

    The store is written next to ``path`` under a temporary name and renamed into place, so a
    reader (or a re-run after a crash) never sees a half-written store.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a killed earlier run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def open_dataset(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a sweeplab zarr store (lazily) with xarray."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        return xr.open_zarr(path, consolidated=True)


def aggregate(
    block_paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: Mapping[str, Any],
    experiment: str,
) -> xr.Dataset:
    """Combine block stores into one dataset (``combine_by_coords``) and write it atomically."""
    if not block_paths:
        raise ValueError(f"no blocks to aggregate for {experiment!r}")
    parts = [open_dataset(p).load() for p in block_paths]
    ds = xr.combine_by_coords(
        parts, compat="no_conflicts", data_vars="all", coords="different", join="outer",
        combine_attrs="drop_conflicts",
    )  # fmt: skip
    assert isinstance(ds, xr.Dataset)
    ds.attrs = {
        "experiment": experiment,
        "title": f"sweeplab {experiment} sweep",
        **provenance({experiment: config.get(experiment), "dask": config.get("dask")}),
        "n_blocks": len(block_paths),
    }
    write_atomic(ds, out)
    return ds
