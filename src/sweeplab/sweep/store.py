"""Zarr stores: provenance attributes, atomic directory writes, opening datasets."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import uuid
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sweeplab

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "MANIFEST",
    "open_dataset",
    "provenance",
    "recover_aside",
    "remove_stale_temporaries",
    "swap_into_place",
    "temporary_name",
    "write_atomic",
]

logger = logging.getLogger(__name__)

#: the manifest file inside an aggregate store (written by :mod:`.aggregate`; defined here so
#: that the workflow can look for it without importing zarr and xarray)
MANIFEST = "sweeplab-manifest.json"


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(target: Path) -> None:
    """Delete ``.<target>.tmp-<pid>-*`` files and directories left by dead processes only.

    A temporary of a writer that is still running (a duplicate Slurm attempt, a ``--nolock``
    run) is left alone; so is any name without a pid on this host.
    """
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        pid_text = stale.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def temporary_name(target: Path) -> Path:
    """Return a unique temporary sibling of ``target`` carrying this process's pid."""
    return target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_tree(path: Path) -> None:
    """Delete a directory tree; its directories are removed in parallel, deepest first.

    Removing a directory costs a few milliseconds of waiting on some file systems (3.5 ms here),
    independent of other removals: for a store of a few dozen arrays that wait dominates an
    incremental aggregate update unless the removals overlap.
    """
    if not path.exists():
        return
    dirs: dict[int, list[str]] = {}
    for root, _subdirs, files in os.walk(path):
        for name in files:
            os.unlink(os.path.join(root, name))
        dirs.setdefault(root.count(os.sep), []).append(root)
    with ThreadPoolExecutor(16) as pool:
        for depth in sorted(dirs, reverse=True):
            list(pool.map(os.rmdir, dirs[depth]))


def swap_into_place(tmp: Path, target: Path) -> None:
    """Move the complete store ``tmp`` to ``target``, replacing a previous one.

    The previous store is renamed aside first and deleted last, so at every moment ``target``
    is either the complete old store or the complete new one (or, between the two renames,
    absent with the old one at ``.<target>.old``, which :func:`recover_aside` puts back).
    """
    aside = target.with_name(f".{target.name}.old")
    if target.exists():
        remove_tree(aside)
        os.replace(target, aside)
    os.replace(tmp, target)
    remove_tree(aside)


def recover_aside(target: Path) -> None:
    """Undo a :func:`swap_into_place` killed between its two renames."""
    aside = target.with_name(f".{target.name}.old")
    if not target.exists() and aside.exists():
        os.replace(aside, target)
        logger.warning("restored %s from %s (an earlier replacement was interrupted)", target,
                       aside)  # fmt: skip
    elif aside.exists():
        shutil.rmtree(aside, ignore_errors=True)


def write_atomic(ds: xr.Dataset, path: str | os.PathLike[str]) -> None:
    """Write ``ds`` as a consolidated zarr v3 directory store at ``path``, all or nothing.

    The store is written next to ``path`` under a temporary name and moved into place by
    :func:`swap_into_place`, so a reader never sees a half-written store.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_aside(target)
    remove_stale_temporaries(target)
    tmp = temporary_name(target)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=True)
        swap_into_place(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def open_dataset(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a sweeplab zarr store (lazily) with xarray."""
    import xarray as xr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        return xr.open_zarr(path, consolidated=True)
