"""The points ledger: which block file holds which points, derived from the block files.

The block files under ``results/blocks/<experiment>/`` are the source of truth. The ledger is
an index over their point tables (key, status, wall time, cost estimate), cached in
``.ledger.npz`` next to them and keyed by each file's name, size and mtime: a refresh reads only
files that are new or changed since the cache was written, and forgets files that are gone.
The cache is replaced atomically; a damaged or stale cache is rebuilt.

For each key the ledger names one *holder*: a successful record if any exists (the first by
block name, when several blocks hold it), otherwise the newest failed record. A failed point is
therefore superseded by a successful one of the same key.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .blockstore import BLOCK_SUFFIX, CorruptBlockError, read_point_table
from .identity import KEY_BYTES, find_keys, raw_keys, sort_keys

__all__ = ["CACHE", "Ledger", "block_files"]

logger = logging.getLogger(__name__)

CACHE = ".ledger.npz"
_CACHE_FORMAT = 3
KEY = f"S{KEY_BYTES}"


def block_files(blocks_dir: Path) -> dict[str, tuple[int, int]]:
    """Name -> (size, mtime_ns) of every block file in ``blocks_dir`` (none if it is absent)."""
    out: dict[str, tuple[int, int]] = {}
    try:
        entries = os.scandir(blocks_dir)
    except FileNotFoundError:
        return out
    with entries:
        for e in entries:
            if e.name.endswith(BLOCK_SUFFIX) and not e.name.startswith("."):
                st = e.stat()
                out[e.name.removesuffix(BLOCK_SUFFIX)] = (st.st_size, st.st_mtime_ns)
    return out


@dataclass(eq=False)
class Ledger:
    """Index of the points held by one experiment's block files.

    Attributes
    ----------
    names : list of str
        Block names (file stems), sorted.
    stats : ndarray of int64, shape (n_blocks, 2)
        File size (bytes) and mtime (ns) of each block when it was indexed.
    keys, block, status, wall, cost : ndarray, shape (n_records,)
        One record per point stored in a block: raw key (``S16``), block index into ``names``,
        status (0 ok, 1 failed), wall time (s) and the cost estimate the planner gave it (s).

    """

    blocks_dir: Path
    experiment: str
    names: list[str]
    stats: np.ndarray
    keys: np.ndarray
    block: np.ndarray
    status: np.ndarray
    wall: np.ndarray
    cost: np.ndarray
    _holders: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # --- building ---------------------------------------------------------------------------
    @classmethod
    def load(cls, blocks_dir: str | os.PathLike[str], experiment: str, *, save: bool = True
             ) -> Ledger:  # fmt: skip
        """Return the ledger of ``blocks_dir``, reading only block files the cache lacks.

        Raises
        ------
        CorruptBlockError
            Naming a block file whose point table cannot be read.

        """
        d = Path(blocks_dir)
        files = block_files(d)
        cached = cls._read_cache(d, experiment)
        keep: dict[str, int] = {}
        if cached is not None:
            for i, (name, stat) in enumerate(zip(cached.names, cached.stats.tolist(),
                                                 strict=True)):  # fmt: skip
                if files.get(name) == tuple(stat):
                    keep[name] = i
        parts = []
        if cached is not None and keep:
            old_idx = np.fromiter(keep.values(), dtype=np.int64)
            remap = np.full(len(cached.names), -1, dtype=np.int64)
            remap[old_idx] = np.arange(len(old_idx))
            sel = remap[cached.block] >= 0
            parts.append((
                [cached.names[i] for i in old_idx],
                cached.keys[sel], remap[cached.block[sel]], cached.status[sel], cached.wall[sel],
                cached.cost[sel],
            ))  # fmt: skip
        new = sorted(set(files) - set(keep))
        for name in new:
            table = read_point_table(d / f"{name}{BLOCK_SUFFIX}", experiment)
            a = table.arrays
            try:
                keys = raw_keys(a["key"])
            except ValueError as exc:
                raise CorruptBlockError(d / f"{name}{BLOCK_SUFFIX}", str(exc)) from None
            n = len(keys)
            parts.append(([name], keys, np.zeros(n, np.int64), np.asarray(a["status"], np.int8),
                          np.asarray(a["point_wall_time"], np.float64),
                          np.asarray(a["point_cost"], np.float64)))  # fmt: skip
        if cached is not None and not new and len(keep) == len(cached.names):
            return cached  # nothing changed: the cached index, holders included
        ledger = cls._combine(d, experiment, parts, files)
        if save and files:
            ledger._write_cache()
        return ledger

    @classmethod
    def _combine(cls, d: Path, experiment: str, parts: list, files: dict) -> Ledger:
        names: list[str] = []
        keys, block, status, wall, cost = [], [], [], [], []
        for part_names, k, b, s, w, c in parts:
            b = np.asarray(b, dtype=np.int64) + len(names)  # indices into part_names
            names.extend(part_names)
            keys.append(k), block.append(b), status.append(s), wall.append(w), cost.append(c)
        order = np.argsort(np.asarray(names, dtype=object)) if names else np.zeros(0, int)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        sorted_names = [names[i] for i in order]
        stats = np.array([files[n] for n in sorted_names], dtype=np.int64).reshape(-1, 2)
        cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
        blk = cat(block, np.int32)
        return cls(d, experiment, sorted_names, stats, cat(keys, KEY),
                   rank[blk].astype(np.int32) if len(blk) else blk, cat(status, np.int8),
                   cat(wall, np.float64), cat(cost, np.float64))  # fmt: skip

    @classmethod
    def _read_cache(cls, d: Path, experiment: str) -> Ledger | None:
        try:
            with np.load(d / CACHE, allow_pickle=False) as z:
                if int(z["format"]) != _CACHE_FORMAT or str(z["experiment"]) != experiment:
                    return None
                held = (z["h_keys"].astype(KEY), z["h_record"], z["h_ok"])
                return cls(d, experiment, [str(n) for n in z["names"]], z["stats"],
                           z["keys"].astype(KEY), z["block"], z["status"], z["wall"],
                           z["cost"], held)  # fmt: skip
        except (OSError, ValueError, KeyError, EOFError) as exc:
            if (d / CACHE).exists():
                logger.warning("ledger cache %s unreadable (%s): rebuilding", d / CACHE, exc)
            return None

    def _write_cache(self) -> None:
        held = self.holders()
        tmp = self.blocks_dir / f".{CACHE}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, format=_CACHE_FORMAT, experiment=self.experiment,
                         names=np.asarray(self.names, dtype=str), stats=self.stats,
                         keys=self.keys, block=self.block, status=self.status, wall=self.wall,
                         cost=self.cost, h_keys=held[0], h_record=held[1],
                         h_ok=held[2])  # fmt: skip
            os.replace(tmp, self.blocks_dir / CACHE)
        except OSError as exc:  # a read-only results directory: the ledger still works
            logger.warning("ledger cache %s not written: %s", self.blocks_dir / CACHE, exc)
            tmp.unlink(missing_ok=True)

    # --- queries ----------------------------------------------------------------------------
    def path(self, block: int) -> Path:
        """Path of block ``block`` (an index into :attr:`names`)."""
        return self.blocks_dir / f"{self.names[block]}{BLOCK_SUFFIX}"

    def holders(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return unique keys (sorted), the record holding each, and its number of ok records."""
        if self._holders is None:
            self._holders = self._compute_holders()
        return self._holders

    def _compute_holders(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not len(self.keys):
            return np.zeros(0, KEY), np.zeros(0, np.int64), np.zeros(0, np.int64)
        mtime = self.stats[self.block, 1] if len(self.stats) else np.zeros(len(self.keys))
        # ok first (by block name), then failed newest first
        secondary = np.where(self.status == 0, self.block.astype(np.int64), -mtime)
        order = sort_keys(self.keys, self.status != 0, secondary)
        k = self.keys[order]
        first = np.ones(len(k), dtype=bool)
        first[1:] = k[1:] != k[:-1]
        starts = np.flatnonzero(first)
        ok = (self.status[order] == 0).astype(np.int64)
        n_ok = np.add.reduceat(ok, starts)
        return k[starts], order[starts], n_ok

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each raw key: holding record (-1 if none), its status (-1 if none), ok count."""
        uk, rec, n_ok = self.holders()
        if not len(uk):
            n = len(keys)
            return np.full(n, -1), np.full(n, -1, np.int8), np.zeros(n, np.int64)
        pos = find_keys(uk, keys)
        found = pos >= 0
        pos = np.maximum(pos, 0)
        record = np.where(found, rec[pos], -1)
        status = np.where(found, self.status[np.maximum(record, 0)], -1).astype(np.int8)
        return record, status, np.where(found, n_ok[pos], 0)
