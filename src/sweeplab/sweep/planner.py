"""Plans: which grid points are done, failed or pending, and pending points packed into blocks.

:func:`plan` enumerates the keys of a config section's grid (:func:`~.identity.grid_points`),
looks each up in the ledger (:class:`~.ledger.Ledger`), and packs the pending points into blocks
of about ``block_seconds`` of estimated compute each (the experiment's ``point_cost``, calibrated
against the wall times recorded in the blocks on disk), within ``block_mem_mb`` of estimated
memory. Points are ordered by the experiment's ``batch_axes`` first, so each block hands its
batched kernel what it likes (escape: many step sizes of one minimizer in one call). A point
costlier than the target gets a block of its own.

A planned block is named by a hash of its points' keys (:func:`~.identity.block_name`) and
described by a plan file ``<plans_dir>/<name>.json`` that ``sweeplab run-block`` reads; the
plan is deterministic for a given config and ledger.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .experiments import Experiment, Points, get
from .identity import GridPoints, block_name, grid_points, hex_keys, point_keys, settings_text
from .ledger import Ledger

__all__ = [
    "DEFAULT_BLOCK_SECONDS",
    "MAX_BLOCK_POINTS",
    "PLAN_FORMAT",
    "Plan",
    "PlannedBlock",
    "load_plan_file",
    "pack",
    "plan",
]

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_SECONDS = 60.0
#: most points in one block (bounds a block file and its in-memory dataset)
MAX_BLOCK_POINTS = 50_000
PLAN_FORMAT = "sweeplab-plan-1"
DONE, FAILED, PENDING = 0, 1, 2
STATES = ("done", "failed", "pending")


@dataclass(frozen=True, eq=False)
class PlannedBlock:
    """A block to compute: its name, grid points (flat indices), estimates."""

    name: str
    rows: np.ndarray
    salt: tuple[str, ...]
    seconds: float
    memory: float


@dataclass(eq=False)
class Plan:
    """The state of one experiment's grid and the blocks that complete it.

    Attributes
    ----------
    grid : GridPoints
        Every point of the grid with its key.
    record : ndarray of int64, shape (n_points,)
        Ledger record holding each grid point (-1: none).
    state : ndarray of int8, shape (n_points,)
        0 done, 1 failed (kept as is), 2 pending (to compute: no record, or failed and retried).
    blocks : list of PlannedBlock
        The pending points packed into blocks.
    calibration : float
        Measured wall time over estimated cost of the points on disk (1 without any).

    """

    experiment: Experiment
    section: Mapping[str, Any]
    grid: GridPoints
    ledger: Ledger
    record: np.ndarray
    state: np.ndarray
    n_ok: np.ndarray
    blocks: list[PlannedBlock] = field(default_factory=list)
    calibration: float = 1.0

    @cached_property
    def settings(self) -> dict[str, Any]:
        """The settings every point of the grid depends on."""
        return self.experiment.settings(self.section)

    @cached_property
    def estimate_settings(self) -> dict[str, Any]:
        """The settings with the mapping axes' entries (e.g. channel geometries).

        What ``point_cost`` and ``point_memory`` see, as in a block job.
        """
        return {**self.settings, **self.experiment.entries(self.section)}

    @cached_property
    def holder_blocks(self) -> list[str]:
        """Names of the block files holding the grid's done and failed points."""
        rec = self.record[self.record >= 0]
        return [self.ledger.names[i] for i in np.unique(self.ledger.block[rec])]

    def counts(self) -> dict[str, int]:
        """Points of the grid done, failed and pending (failed points retried count pending)."""
        c = np.bincount(self.state, minlength=3)
        return {s: int(c[i]) for i, s in enumerate(STATES)}

    @cached_property
    def fingerprint(self) -> str:
        """Hash of what the aggregate depends on: settings, grid, holding and planned blocks."""
        h = hashlib.sha256(settings_text(self.experiment, self.settings).encode())
        for name, c in self.grid.coords.items():
            h.update(f"|{name}:{len(c)}:".encode())
            h.update(json.dumps([str(v) for v in c.tolist()]).encode())
        for name in sorted({*self.holder_blocks, *(b.name for b in self.blocks)}):
            h.update(b"|" + name.encode())
        return h.hexdigest()[:20]

    def write_plan_files(self, plans_dir: str | os.PathLike[str]) -> list[Path]:
        """Write the plan file of every planned block that has none (atomic, content-named)."""
        d = Path(plans_dir)
        out = []
        for block in self.blocks:
            path = d / f"{block.name}.json"
            out.append(path)
            if path.exists():
                continue
            d.mkdir(parents=True, exist_ok=True)
            content = _plan_content(self, block)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(content, separators=(",", ":")))
            os.replace(tmp, path)
        return out


def _plan_content(p: Plan, block: PlannedBlock) -> dict[str, Any]:
    exp = p.experiment
    cols = p.grid.columns(block.rows)
    columns = {}
    for axis in exp.axes:
        values, index = np.unique(cols[axis.name], return_inverse=True)
        columns[axis.name] = {"values": values.tolist(), "index": index.tolist()}
    entries = {
        a.key: {v: p.section[a.key][v] for v in np.unique(cols[a.name]).tolist()}
        for a in exp.axes if a.kind == "mapping"
    }  # fmt: skip
    return {
        "format": PLAN_FORMAT,
        "experiment": exp.name,
        "version": exp.version,
        "block": block.name,
        "salt": list(block.salt),
        "settings": p.settings,
        "entries": entries,
        "columns": columns,
        "estimate_seconds": block.seconds,
        "estimate_bytes": block.memory,
    }


def load_plan_file(path: str | os.PathLike[str]) -> tuple[Experiment, Points, dict, dict, tuple]:
    """Read a plan file and check it: returns experiment, points, settings, section, salt.

    The points' keys are recomputed from their parameters and settings, and the block name must
    be their hash: a plan edited or written for another version is refused.

    Raises
    ------
    ValueError
        One line naming the file and what is wrong.

    """
    p = Path(path)
    try:
        content = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"plan file {p}: cannot be read ({exc})") from None
    try:
        if content.get("format") != PLAN_FORMAT:
            raise ValueError(f"format {content.get('format')!r} is not {PLAN_FORMAT!r}")
        exp = get(content["experiment"])
        if content["version"] != exp.version:
            raise ValueError(
                f"it was planned for {exp.name} version {content['version']}, this sweeplab "
                f"has version {exp.version}; re-run snakemake"
            )
        settings = dict(content["settings"])
        cols = {}
        for axis in exp.axes:
            c = content["columns"][axis.name]
            values = axis.column(c["values"])
            cols[axis.name] = values[np.asarray(c["index"], dtype=np.int64)]
        section = dict(settings)
        for axis in exp.axes:
            vals = np.unique(cols[axis.name]).tolist()
            if axis.kind == "count":
                section[axis.key] = int(max(vals)) + 1
            elif axis.kind == "mapping":
                section[axis.key] = {v: content["entries"][axis.key][v] for v in vals}
            else:
                section[axis.key] = vals
        salt = tuple(content.get("salt", ()))
        lengths = {len(v) for v in cols.values()}
        if len(lengths) != 1:
            raise ValueError(f"malformed (columns of different lengths {sorted(lengths)})")
        raw = point_keys(exp, settings, section, cols)
    except ValueError as exc:
        raise ValueError(f"plan file {p}: {exc}") from None
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"plan file {p}: malformed ({type(exc).__name__}: {exc})") from None
    if block_name(raw, salt) != content.get("block") or p.stem != content.get("block"):
        raise ValueError(f"plan file {p}: its points do not hash to its block name "
                         f"{content.get('block')!r} (edited or damaged)")  # fmt: skip
    return exp, Points(exp.name, cols, hex_keys(raw)), settings, section, salt


def calibration(ledger: Ledger) -> float:
    """Wall time over estimated cost of the successful points on disk (1 without any)."""
    ok = (ledger.status == 0) & (ledger.cost > 0) & np.isfinite(ledger.wall)
    if not ok.any():
        return 1.0
    ratio = float(ledger.wall[ok].sum() / ledger.cost[ok].sum())
    return min(max(ratio, 1e-3), 1e3) if math.isfinite(ratio) and ratio > 0 else 1.0


def plan(
    experiment: str,
    section: Mapping[str, Any],
    blocks_dir: str | os.PathLike[str],
    *,
    block_seconds: float = DEFAULT_BLOCK_SECONDS,
    block_mem_mb: float | None = None,
    retry_failed: bool = False,
    ledger: Ledger | None = None,
) -> Plan:
    """Plan ``experiment``'s grid of ``section`` against the blocks in ``blocks_dir``.

    Parameters
    ----------
    experiment : str
        A registered experiment.
    section : mapping
        Its validated config section.
    blocks_dir : path
        The experiment's block directory (``results/blocks/<experiment>``).
    block_seconds : float
        Target estimated compute time of a block (s, calibrated).
    block_mem_mb : float, optional
        Memory bound of a block's estimate (MiB); default the experiment's ``mem_mb``.
    retry_failed : bool
        Plan points whose only records failed again.
    ledger : Ledger, optional
        An already loaded ledger of ``blocks_dir``.

    """
    exp = get(experiment)
    led = ledger if ledger is not None else Ledger.load(blocks_dir, experiment)
    grid = grid_points(exp, section, cache_dir=blocks_dir)
    record, status, n_ok = led.lookup(grid.keys)
    state = np.where(status == 0, DONE, np.where(status == 1, FAILED, PENDING)).astype(np.int8)
    if retry_failed:
        state[state == FAILED] = PENDING
    p = Plan(exp, section, grid, led, record, state, n_ok, calibration=calibration(led))
    pending = np.flatnonzero(state == PENDING)
    if len(pending):
        mem = (block_mem_mb if block_mem_mb is not None else exp.mem_mb) * 2.0**20
        p.blocks = pack(p, pending, float(block_seconds), mem)
    return p


def pack(p: Plan, pending: np.ndarray, target: float, mem_bound: float) -> list[PlannedBlock]:
    """Pack the grid points ``pending`` (flat indices) of ``p`` into blocks.

    ``target``: estimated seconds per block (calibrated costs); ``mem_bound``: bytes per block.
    """
    exp, grid = p.experiment, p.grid
    idx = np.unravel_index(pending, grid.shape)
    names = list(grid.coords)
    order_axes = [*exp.batch_axes, *(n for n in names if n not in exp.batch_axes)]
    # lexsort: the last key is the primary one
    order = np.lexsort([idx[names.index(n)] for n in reversed(order_axes)])
    rows = pending[order]
    cols = grid.columns(rows)
    cost = exp.point_cost(cols, p.estimate_settings) * p.calibration
    big = cost >= target  # a point costlier than the target gets a block of its own
    bins = np.empty(len(rows), dtype=np.int64)
    cheap = np.flatnonzero(~big)
    start = np.cumsum(cost[cheap]) - cost[cheap]
    bins[cheap] = (start // target).astype(np.int64)
    n_cheap_bins = int(bins[cheap].max()) + 1 if len(cheap) else 0
    bins[big] = n_cheap_bins + np.arange(int(big.sum()))
    groups: list[np.ndarray] = []
    border = np.argsort(bins, kind="stable")  # keeps the batch order inside a block
    cuts = np.flatnonzero(np.diff(bins[border])) + 1
    for part in np.split(border, cuts):
        for lo in range(0, len(part), MAX_BLOCK_POINTS):
            groups.append(part[lo : lo + MAX_BLOCK_POINTS])
    blocks = []
    for g in groups:
        for piece in _split_memory(exp, cols, g, p.estimate_settings, mem_bound):
            r = rows[piece]
            salt = tuple(sorted({p.ledger.names[p.ledger.block[x]]
                                 for x in p.record[r] if x >= 0}))  # fmt: skip
            sub = {k: v[piece] for k, v in cols.items()}
            blocks.append(PlannedBlock(
                block_name(grid.keys[r], salt), r, salt, float(cost[piece].sum()),
                exp.block_memory(sub, p.estimate_settings),
            ))  # fmt: skip
    return blocks


def _split_memory(exp: Experiment, cols: Mapping[str, np.ndarray], g: np.ndarray,
                  settings: Mapping[str, Any], bound: float) -> list[np.ndarray]:  # fmt: skip
    sub = {k: v[g] for k, v in cols.items()}
    need = exp.block_memory(sub, settings)
    if need <= bound or len(g) == 1:
        if need > bound:
            where = " ".join(f"{k}={v[0]}" for k, v in sub.items())
            raise ValueError(
                f"{exp.name} point {where}: a block holding it alone needs about "
                f"{need / 2**30:.3g} GiB; allowed: {bound / 2**30:.3g} GiB (block_mem_mb)"
            )
        return [g]
    half = len(g) // 2
    return (_split_memory(exp, cols, g[:half], settings, bound)
            + _split_memory(exp, cols, g[half:], settings, bound))  # fmt: skip
