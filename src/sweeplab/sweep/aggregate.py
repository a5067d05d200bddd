"""Incremental, bounded-memory aggregation of block stores into one consolidated zarr v3 store.

The aggregate's grid (every dimension's coordinates) comes from the config alone, through the
experiment's axes. Its arrays are chunked in *cells*: hyper-rectangles of the block dimensions
(the point dimensions -- seeds, steps, times -- are never split), sized so that no chunk of any
variable exceeds ``CELL_ELEMENTS`` values. Each block lies in exactly one cell.

Rules (see docs/architecture.md):

- **Same grid, existing aggregate** (update): only blocks whose file changed (size or mtime)
  since the manifest, or that it does not list, are read; only the cells holding them are
  rewritten (one chunk file per variable), in a hard-linked copy of the store that is swapped
  in at the end: the old store is never modified, so a killed update leaves it intact.
- **New grid** (an axis value added or removed, first run, ``full=True``): a new store is built
  cell by cell under a temporary name -- values of unchanged blocks are copied from the old
  aggregate, the rest are read from their block files -- then swapped in by two renames.
- The **manifest** (``sweeplab-manifest.json``: layout fingerprint, per block its file size
  and mtime, and the *file table*: every file of the store with its size, mtime and BLAKE2b
  digest) is written last; a store without one is rebuilt.
- Before anything is decided, the store is checked against its file table (every recorded
  file present with its size, no other file; a digest where the mtime changed): a damaged
  aggregate, or one whose manifest has no file table, is rebuilt from the blocks, with a
  warning naming what was wrong. ``sweeplab info --verify`` and ``export`` check every digest.
- Either way the new store replaces the old one by two renames (``store.swap_into_place``): a
  reader sees the complete old aggregate or the complete new one, never a mixture.
- Every write is a new **version** (see :mod:`.versions`): its chunks have the next chunk key
  encoding of a cycle of three, and the two versions before it stay (hard links), so a
  dataset opened earlier keeps reading its own version's chunks through two more writes.

Memory is bounded by one cell of every variable plus one block, whatever the number of blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync as zarr_sync

from .blockstore import BlockData, CorruptBlockError, read_block
from .canonical import format_value
from .datasets import coord_attrs
from .experiments import Experiment, get
from .identity import (
    GridPoints,
    find_keys,
    grid_points,
    hex_keys,
    point_keys,
    raw_keys,
    settings_text,
    sort_keys,
)
from .ledger import Ledger
from .store import (
    MANIFEST,
    check_files,
    file_table,
    recover_aside,
    remove_stale_temporaries,
    settle_zarr_writes,
    swap_into_place,
    temporary_name,
    write_json,
)
from .versions import (
    KEY_ENCODINGS,
    chunk_key,
    keep_versions,
    key_version,
    link_versions,
    next_version,
    retag,
)

__all__ = [
    "CELL_ELEMENTS",
    "MANIFEST",
    "AggregateReport",
    "ConflictError",
    "MissingPointsError",
    "aggregate",
    "compare_records",
    "verify_keys",
]

logger = logging.getLogger(__name__)

CELL_ELEMENTS = 1 << 17  # at most this many values in one chunk of any variable (1 MiB float64)
#: 3: the manifest records every file of the store (``files``: path -> [size, mtime_ns, digest])
MANIFEST_FORMAT = 3


@dataclass(frozen=True)
class AggregateReport:
    """What one :func:`aggregate` call did."""

    mode: str  # "rebuild", "update", "extend" or "unchanged"
    blocks_read: int
    blocks_reused: int
    cells_written: int
    n_blocks: int
    n_failed: int


def _key(value: Any) -> str:
    return format_value(value.item() if isinstance(value, np.generic) else value)


def _keys(values: np.ndarray) -> list[str]:
    """``_key`` of every value (integers, the common large axis, without per-value dispatch)."""
    if values.dtype.kind in "iu":
        return [str(v) for v in values.tolist()]
    return [_key(v) for v in values]


class Layout:
    """The aggregate's grid, chunking and variables, from the experiment and its config."""

    def __init__(self, experiment: Experiment, section: Mapping[str, Any],
                 chunks: Mapping[str, int] | None = None) -> None:  # fmt: skip
        self.experiment = experiment
        self.section = section
        self.coords = experiment.grid(section)
        self.keys = {d: _keys(c) for d, c in self.coords.items()}
        self.vars = experiment.variables
        #: grid dims in axis order; those split into cells (counts, e.g. seeds, never are)
        self.grid_dims = [a.dimension for a in experiment.axes]
        self.chunked = [a.dimension for a in experiment.axes if a.kind != "count"]
        self.chunks = self._chunking() if chunks is None else dict(chunks)

    def appended(self, manifest: Mapping[str, Any]) -> Layout | None:
        """Return this grid laid out in the chunks of an older aggregate it extends at the end.

        When every dimension of the old aggregate (``manifest["coords"]``) is a prefix of this
        grid's, with only chunked (non-count) grid dimensions grown, the old chunk files stay
        valid under the old chunking: the store is resized instead of rewritten, and only
        the cells holding new points are written. The old chunking is kept while it makes at
        most twice the cells of this grid's own chunking (so a grid grown value by value is
        re-laid out at geometric intervals). ``None`` when it does not apply.
        """
        old_keys, old_chunks = manifest.get("coords"), manifest.get("chunks")
        if not isinstance(old_keys, dict) or not isinstance(old_chunks, dict):
            return None
        if set(old_keys) != set(self.keys) or set(old_chunks) != set(self.chunks):
            return None
        grown = False
        for d, keys in self.keys.items():
            old = old_keys[d]
            if keys[: len(old)] != old:
                return None
            if len(keys) != len(old):
                if d not in self.chunked:  # count and inner dims are never split into cells
                    return None
                grown = True
        if not grown:
            return None
        kept = Layout(self.experiment, self.section, {d: int(c) for d, c in old_chunks.items()})
        if np.prod(kept.cell_counts) > 2 * np.prod(self.cell_counts):
            return None
        return kept

    def kept(self, manifest: Mapping[str, Any]) -> Layout | None:
        """Return this grid in the chunks of an aggregate of the same grid, if they are kept.

        After an extend (:meth:`appended`) the store keeps the old chunking; a later run of the
        same grid keeps it too (under the same at-most-twice-the-cells rule) instead of
        re-laying the store out. ``None`` when ``manifest`` is of another grid or chunking
        that would not be kept.
        """
        chunks = manifest.get("chunks")
        if not isinstance(chunks, dict) or set(chunks) != set(self.chunks):
            return None
        kept = Layout(self.experiment, self.section, {d: int(c) for d, c in chunks.items()})
        if kept.fingerprint != manifest.get("layout"):
            return None
        if np.prod(kept.cell_counts) > 2 * np.prod(self.cell_counts):
            return None
        return kept

    @property
    def lengths(self) -> dict[str, int]:
        """Length of every dimension."""
        return {d: len(k) for d, k in self.keys.items()}

    def _chunking(self) -> dict[str, int]:
        chunks = {d: len(c) for d, c in self.coords.items()}

        def biggest() -> int:
            return max(int(np.prod([chunks[d] for d in v.dims])) for v in self.vars.values())

        for dim in self.chunked:  # outermost first: shrink until every chunk fits
            if biggest() <= CELL_ELEMENTS:
                break
            chunks[dim] = 1
        for dim in reversed(self.chunked):  # then grow back from the innermost grid dim
            if chunks[dim] != 1 or len(self.coords[dim]) == 1:
                continue
            rest = biggest()
            chunks[dim] = max(1, min(len(self.coords[dim]), CELL_ELEMENTS // rest))
            if chunks[dim] < len(self.coords[dim]):
                break
        return chunks

    @cached_property
    def fingerprint(self) -> str:
        """Hash of coordinates, chunks and variable specs: equal means the same store layout."""
        spec = {
            "coords": self.keys,
            "chunks": self.chunks,
            "vars": {n: [list(v.dims), v.dtype] for n, v in self.vars.items()},
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def cell_slices(self, cell: Sequence[int]) -> dict[str, slice]:
        """Slice of every dimension covered by ``cell``."""
        out = {d: slice(0, len(c)) for d, c in self.coords.items()}
        for dim, ci in zip(self.chunked, cell, strict=True):
            lo = ci * self.chunks[dim]
            out[dim] = slice(lo, min(lo + self.chunks[dim], len(self.coords[dim])))
        return out

    @cached_property
    def cell_counts(self) -> tuple[int, ...]:
        """Number of cells along each chunked dimension."""
        return tuple(-(-len(self.coords[d]) // self.chunks[d]) for d in self.chunked)

    def cells(self) -> Iterator[tuple[int, ...]]:
        """Every cell of the grid."""
        return product(*(range(n) for n in self.cell_counts))


async def _create_coord(group: zarr.AsyncGroup, dim: str, values: np.ndarray,
                        attrs: Mapping[str, Any], version: int) -> None:  # fmt: skip
    """Create the coordinate array ``dim`` of ``group`` (keys of ``version``), write its values."""
    arr = await group.create_array(
        dim,
        shape=values.shape,
        dtype=str if values.dtype == object else values.dtype,
        dimension_names=(dim,),
        attributes=dict(attrs),
        fill_value="" if values.dtype == object else None,
        chunk_key_encoding=KEY_ENCODINGS[version],
    )
    await arr.setitem(slice(None), values)


def _create_store(path: Path, layout: Layout, attrs: Mapping[str, Any],
                  version: int) -> zarr.Group:  # fmt: skip
    """Create the aggregate's arrays (all at once on zarr's loop) and write its coordinates.

    Their chunk keys are those of ``version`` (see :mod:`.versions`).
    """
    cattrs = coord_attrs(layout.experiment)

    async def create() -> zarr.AsyncGroup:
        group = await zarr.api.asynchronous.open_group(
            store=path, mode="w", zarr_format=3, attributes=dict(attrs)
        )
        await asyncio.gather(
            *(
                _create_coord(group, dim, values, cattrs.get(dim, {}), version)
                for dim, values in layout.coords.items()
            ),
            *(
                group.create_array(
                    name,
                    shape=tuple(len(layout.coords[d]) for d in var.dims),
                    chunks=tuple(layout.chunks[d] for d in var.dims),
                    dtype=str if var.dtype == "str" else var.dtype,
                    fill_value=var.fill,
                    dimension_names=var.dims,
                    attributes=var.attrs(),
                    chunk_key_encoding=KEY_ENCODINGS[version],
                )
                for name, var in layout.vars.items()
            ),
        )
        return group

    return zarr.Group(zarr_sync(create()))


class MissingPointsError(ValueError):
    """Points the config asks for are in no block (not computed yet, or their block deleted)."""


class ConflictError(ValueError):
    """Two blocks hold the same point with different values."""


def _concurrently(coroutines: Sequence[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run zarr coroutines together on zarr's event loop (one round trip, not one per array).

    The coroutines must be created before (outside the loop): creating them may call zarr's
    synchronous API.
    """

    async def gather() -> list[Any]:
        return await asyncio.gather(*coroutines)

    return zarr_sync(gather())


_OPENED: dict[int, tuple[zarr.Group, dict[str, zarr.Array]]] = {}


def _arrays(group: zarr.Group) -> dict[str, zarr.Array]:
    """Every array of ``group``, opened once per group object (listing members is slow)."""
    hit = _OPENED.get(id(group))
    if hit is None or hit[0] is not group:
        _OPENED.clear()  # one aggregate at a time: keep only the current group's arrays
        hit = _OPENED[id(group)] = (group, dict(group.arrays()))
    return hit[1]


class _Cell:
    """Buffers of one cell, filled from the old aggregate and from block files."""

    def __init__(self, layout: Layout, cell: Sequence[int]) -> None:
        self.layout = layout
        self.slices = layout.cell_slices(cell)
        self.buffers = {
            name: var.empty(tuple(self.slices[d].stop - self.slices[d].start for d in var.dims))
            for name, var in layout.vars.items()
        }

    def _sel(self, dims: Sequence[str]) -> tuple[slice, ...]:
        return tuple(self.slices[d] for d in dims)

    def load(self, group: zarr.Group) -> None:
        """Read the cell's current values from ``group`` (a store of the same layout)."""
        arrays = _arrays(group)
        names = list(self.layout.vars)
        values = _concurrently(
            [arrays[n].async_array.getitem(self._sel(self.layout.vars[n].dims)) for n in names]
        )
        for name, value in zip(names, values, strict=True):
            self.buffers[name][...] = np.asarray(value)

    def copy_from(self, old: zarr.Group, old_index: Mapping[str, Mapping[str, int]]) -> None:
        """Copy whatever of the cell exists in an old aggregate of another grid."""
        # per dim: positions in the old grid (src) of the cell's coordinates found there (dst)
        maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for d, sl in self.slices.items():
            index = old_index.get(d, {})
            where = np.array([index.get(k, -1) for k in self.layout.keys[d][sl]])
            keep = np.flatnonzero(where >= 0)
            maps[d] = (where[keep], keep)
        arrays = _arrays(old)
        names = [
            n for n, var in self.layout.vars.items()
            if n in arrays and all(maps[d][1].size for d in var.dims)
        ]  # fmt: skip
        dims = {n: self.layout.vars[n].dims for n in names}
        values = _concurrently(
            [
                arrays[n].async_array.get_orthogonal_selection(tuple(maps[d][0] for d in dims[n]))
                for n in names
            ]
        )
        for name, value in zip(names, values, strict=True):
            self.buffers[name][np.ix_(*(maps[d][1] for d in dims[name]))] = np.asarray(value)

    def put(self, rows: np.ndarray, idx: Mapping[str, np.ndarray], data: BlockData) -> None:
        """Place the block's points ``rows`` at grid indices ``idx`` (dim -> index array)."""
        grid = set(self.layout.grid_dims)
        for name, var in self.layout.vars.items():
            gdims = [d for d in var.dims if d in grid]
            sel: list[Any] = [idx[d][:] - self.slices[d].start for d in gdims]
            values = data.arrays[name][rows]
            for k, d in enumerate(var.dims[len(gdims) :]):
                n_block = values.shape[1 + k]
                if n_block > self.slices[d].stop:
                    raise ValueError(f"{d}: {n_block} values, the grid has {self.slices[d].stop}")
                sel.append(slice(0, n_block))
            self.buffers[name][tuple(sel)] = values

    def write(self, group: zarr.Group) -> None:
        """Write the cell's buffers (chunk-aligned: no read-modify-write across cells)."""
        arrays = _arrays(group)
        _concurrently(
            [
                arrays[name].async_array.setitem(self._sel(var.dims), self.buffers[name])
                for name, var in self.layout.vars.items()
            ]
        )


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """Return the manifest of the aggregate ``path`` if the store matches it, else None.

    None when there is no store or manifest (silently), or (with a warning naming why, and so a
    rebuild) when the manifest is unreadable or of an older format, or a file of the store is
    missing, of another size, changed (a new mtime and another digest) or not recorded.
    """
    if not (path / MANIFEST).exists():
        return None
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        problem = f"its {MANIFEST} is unreadable ({type(exc).__name__})"
    else:
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            problem = f"its {MANIFEST} is of an older format, without a file table"
        elif not isinstance(manifest.get("files"), dict):
            problem = f"its {MANIFEST} has no file table"
        else:
            problem = check_files(path, manifest["files"], digests=False)
            if problem is None:
                return manifest
    logger.warning("%s: %s; rebuilding it from the blocks", path, problem)
    return None


@dataclass(eq=False)
class _State:
    """The grid, who holds each of its points, and what the old aggregate already has."""

    exp: Experiment
    layout: Layout
    grid: GridPoints
    ledger: Ledger
    holder: np.ndarray  # block index of each grid point
    status: np.ndarray  # status of each grid point's record
    version: int  # the version written (see .versions): its chunk keys

    @cached_property
    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid keys sorted, and the flat grid index of each."""
        order = sort_keys(self.grid.keys)
        return self.grid.keys[order], order

    def flat_of(self, keys: np.ndarray) -> np.ndarray:
        """Flat grid index of each raw key (-1 outside the grid)."""
        sk, order = self.positions
        pos = find_keys(sk, keys)
        return np.where(pos >= 0, order[np.maximum(pos, 0)], -1)


def aggregate(
    experiment: str,
    section: Mapping[str, Any],
    blocks_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    attrs: Mapping[str, Any] | None = None,
    full: bool = False,
) -> AggregateReport:
    """Bring the aggregate ``out`` up to date with the points the config asks for.

    Every grid point is read by its key from the block that holds it (the ledger's holder: a
    successful record before a failed one); points of the blocks outside the grid are ignored.

    Parameters
    ----------
    experiment : str
        A registered experiment.
    section : mapping
        The experiment's config section (defines the grid and the points' keys).
    blocks_dir : path
        Directory holding the experiment's block stores ``<name>.zarr.zip``.
    out : path
        The aggregate zarr v3 store (a directory).
    attrs : mapping, optional
        Global attributes of the store (provenance; rewritten on every change).
    full : bool
        Rebuild from the block files alone, ignoring the existing aggregate.

    Raises
    ------
    MissingPointsError
        Counting the grid points that no block holds.
    ConflictError
        Naming two blocks that hold one point with different values.
    CorruptBlockError
        Naming the first block that is damaged or not this experiment's.

    """
    exp = get(experiment)
    out = Path(out)
    t0 = time.perf_counter()
    ledger = Ledger.load(blocks_dir, experiment)
    # the keys the plan enumerated (its cache in the blocks directory) when the grid is the
    # same; no cache is written here: a refused aggregate writes nothing
    grid = grid_points(exp, section, cache_dir=blocks_dir, write_cache=False)
    if not len(grid.keys):
        raise ValueError(f"{experiment}: the config asks for no points")
    record, status, n_ok = ledger.lookup(grid.keys)
    missing = np.flatnonzero(record < 0)
    if len(missing):
        first = grid.points(missing[:1]).params(0)
        raise MissingPointsError(
            f"{experiment}: {len(missing)} of {len(record)} point(s) are in no block of "
            f"{blocks_dir} (first: {first}); compute them with `snakemake` (with your usual "
            "--configfile) before aggregating"
        )
    layout = Layout(exp, section)
    recover_aside(out)
    remove_stale_temporaries(out)
    previous = _read_manifest(out)  # also with ``full``: its file table serves the kept versions
    manifest = None if full else previous
    points_digest = hashlib.sha256(settings_text(exp, exp.settings(section)).encode()).hexdigest()[
        :20
    ]
    same_points = manifest is not None and manifest.get("points") == points_digest
    old_lengths = None
    if same_points and manifest["layout"] != layout.fingerprint:
        kept = layout.appended(manifest)
        if kept is not None:  # a grid extended at the end: resize, write the new cells only
            layout, old_lengths = kept, {d: len(k) for d, k in manifest["coords"].items()}
        else:  # the same grid, still in the chunks an extend kept: no re-layout
            layout = layout.kept(manifest) or layout
    state = _State(exp, layout, grid, ledger, ledger.block[record], status, next_version(out))
    clean = np.zeros(len(ledger.names), dtype=bool)
    stats = ledger.stats.tolist()
    if same_points:
        known = manifest["blocks"]
        for i, name in enumerate(ledger.names):
            clean[i] = known.get(name) == stats[i]
    _check_conflicts(state, n_ok, clean)
    holders = np.unique(state.holder)
    entries = {ledger.names[i]: stats[i] for i in holders.tolist()}
    n_failed = int(np.count_nonzero(status == 1))
    new_manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT, "experiment": exp.name, "layout": layout.fingerprint,
        "points": points_digest, "blocks": entries, "n_failed": n_failed,
        "n_points": len(record), "coords": layout.keys, "chunks": layout.chunks,
    }  # fmt: skip
    if old_lengths is not None:
        old_grid = np.ones(grid.shape, dtype=bool)  # points inside the old aggregate's grid
        for k, d in enumerate(layout.grid_dims):
            shape = [1] * len(grid.shape)
            shape[k] = grid.shape[k]
            old_grid &= (np.arange(grid.shape[k]) < old_lengths[d]).reshape(shape)
        dirty = np.unique(state.holder[~(old_grid.ravel() & clean[state.holder])])
        report = _extend(state, out, dirty, new_manifest, attrs, manifest["files"])
    elif same_points and manifest["layout"] == layout.fingerprint:
        covered = clean[state.holder]
        dirty = np.unique(state.holder[~covered])
        same = {k: v for k, v in manifest.items() if k != "files"} == new_manifest
        if not len(dirty) and same:
            report = AggregateReport("unchanged", 0, len(holders), 0, len(holders), n_failed)
        else:
            report = _update(state, out, dirty, new_manifest, attrs, manifest["files"])
    else:
        report = _rebuild(state, out, clean, new_manifest, attrs or {}, old_ok=same_points,
                          old_files=None if previous is None else previous["files"])  # fmt: skip
    logger.info(
        "%s: %s, %d block(s) read, %d reused, %d cell(s) written in %.2f s",
        experiment, report.mode, report.blocks_read, report.blocks_reused,
        report.cells_written, time.perf_counter() - t0,
    )  # fmt: skip
    return report


def compare_records(exp: Experiment, a: BlockData, ra: int, b: BlockData, rb: int) -> str | None:
    """Name of the first variable whose values differ between two records (None if equal)."""
    for name, var in exp.variables.items():
        if var.timing:
            continue
        x, y = np.asarray(a.arrays[name][ra]), np.asarray(b.arrays[name][rb])
        n = min(x.size, y.size)  # nan-padded (w_star) to each block's largest chain
        x, y = x.ravel()[:n], y.ravel()[:n]
        if x.dtype.kind == "f":
            same = np.array_equal(x, y, equal_nan=True)
        else:
            same = np.array_equal(x.astype(str), y.astype(str))
        if not same:
            return name
    return None


def _check_conflicts(state: _State, n_ok: np.ndarray, clean: np.ndarray) -> None:
    """Refuse grid points held by several blocks with different values (new pairs only)."""
    dup = state.grid.keys[n_ok > 1]
    if not len(dup):
        return
    led = state.ledger
    recs = np.flatnonzero(np.isin(led.keys, dup) & (led.status == 0))
    by_key: dict[bytes, list[int]] = {}
    for r in recs:
        by_key.setdefault(led.keys[r].tobytes(), []).append(int(r))
    cache: dict[int, BlockData] = {}

    def row_of(r: int) -> tuple[BlockData, int]:
        b = int(led.block[r])
        if b not in cache:
            cache[b] = read_block(led.path(b), state.exp.name)
        data = cache[b]
        rows = np.flatnonzero(raw_keys(data.arrays["key"]) == led.keys[r])
        return data, int(rows[0])

    for records in by_key.values():
        if all(clean[led.block[r]] for r in records):
            continue  # compared when the later of them arrived
        first = records[0]
        a, ra = row_of(first)
        for other in records[1:]:
            b, rb = row_of(other)
            name = compare_records(state.exp, a, ra, b, rb)
            if name is not None:
                key = hex_keys(led.keys[first : first + 1])[0]
                raise ConflictError(
                    f"{state.exp.name}: blocks {led.path(int(led.block[first]))} and "
                    f"{led.path(int(led.block[other]))} hold point {key} with different "
                    f"values of {name!r}; delete the wrong one (`sweeplab status --failed` "
                    "lists points; `sweeplab info BLOCK` shows a block)"
                )


def _block_points(state: _State, b: int) -> tuple[BlockData, np.ndarray, np.ndarray]:
    """Read block ``b``; return it, its rows that hold grid points, and their flat indices."""
    led = state.ledger
    path = led.path(b)
    data = read_block(path, state.exp.name)
    verify_keys(state.exp, data, path)
    flat = state.flat_of(raw_keys(data.arrays["key"]))
    rows = np.flatnonzero(flat >= 0)
    rows = rows[state.holder[flat[rows]] == b]  # superseded records stay out
    return data, rows, flat[rows]


def verify_keys(exp: Experiment, data: BlockData, path: Path) -> None:
    """Check that the stored keys are those of the stored parameters and settings."""
    try:
        settings = json.loads(data.attrs["settings"])
        entries = json.loads(data.attrs.get("entries", "{}"))
        cols = {a.name: data.arrays[a.dimension] for a in exp.axes}
        want = point_keys(exp, settings, {**settings, **entries}, cols)
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptBlockError(path, f"its point table is unusable ({exc})") from None
    if not np.array_equal(want, raw_keys(data.arrays["key"])):
        raise CorruptBlockError(path, "its keys do not match its parameters and settings")


def _by_cell(layout: Layout, flat: np.ndarray, shape: tuple[int, ...]
             ) -> dict[tuple[int, ...], tuple[np.ndarray, dict[str, np.ndarray]]]:  # fmt: skip
    """Group flat grid indices by cell: cell -> (positions in ``flat``, dim -> grid index)."""
    idx = dict(zip(layout.grid_dims, np.unravel_index(flat, shape), strict=True))
    if not layout.chunked:
        return {(): (np.arange(len(flat)), idx)}
    cell_ids = np.stack([idx[d] // layout.chunks[d] for d in layout.chunked], axis=1)
    uniq, inverse = np.unique(cell_ids, axis=0, return_inverse=True)
    out = {}
    for k, cell in enumerate(uniq):
        sel = np.flatnonzero(inverse.ravel() == k)
        out[tuple(int(c) for c in cell)] = (sel, {d: v[sel] for d, v in idx.items()})
    return out


def _cells_of(state: _State, flat: np.ndarray) -> np.ndarray:
    """Cell number (row-major over the chunked dims) of each flat grid index."""
    layout = state.layout
    if not layout.chunked:
        return np.zeros(len(flat), dtype=np.int64)
    idx = dict(zip(layout.grid_dims, np.unravel_index(flat, state.grid.shape), strict=True))
    ids = [idx[d] // layout.chunks[d] for d in layout.chunked]
    return np.ravel_multi_index(ids, layout.cell_counts).astype(np.int64)


def _touched_cells(state: _State, blocks: np.ndarray) -> set[tuple[int, ...]]:
    """Return the cells that hold grid points of ``blocks`` (from the ledger; no block is read)."""
    flat = np.flatnonzero(np.isin(state.holder, np.asarray(blocks, dtype=np.int64)))
    return {_cell_tuple(state, c) for c in np.unique(_cells_of(state, flat)).tolist()}


def _patch(state: _State, group: zarr.Group, blocks: np.ndarray, store: Path | None,
           init: Callable[[_Cell], None] | None = None) -> int:  # fmt: skip
    """Write the grid points of ``blocks`` into ``group``; return the cells written.

    Each block is read once and each touched cell is initialised (by ``init``; default: its
    current values in ``group``; a no-op for a new, empty store), filled from every block that
    holds points in it, and written once. Which cells a block touches is
    known from the ledger before any block is read, so a cell is written as soon as its last
    block is in; blocks are taken in the order of their first cell, which keeps few cells
    in memory at a time (each at most ``CELL_ELEMENTS`` values per variable).

    With ``store``, each touched chunk file is unlinked before it is written (copy-on-write of
    a hard-linked store).
    """
    blocks = np.asarray(blocks, dtype=np.int64)
    flat_all = np.flatnonzero(np.isin(state.holder, blocks))
    cell_all = _cells_of(state, flat_all)
    owner = state.holder[flat_all]
    # the cells of each block (grouped by one sort: blocks x points would not scale), and the
    # blocks still to come per cell
    by_owner = np.argsort(owner, kind="stable")
    owners, starts = np.unique(owner[by_owner], return_index=True)
    ends = [*starts[1:].tolist(), len(by_owner)][: len(starts)]  # none when nothing is held
    cells_of_block = {b: np.empty(0, dtype=np.int64) for b in blocks.tolist()}
    for b, lo, hi in zip(owners.tolist(), starts.tolist(), ends, strict=True):
        cells_of_block[b] = np.unique(cell_all[by_owner[lo:hi]])
    pending: dict[int, int] = {}
    for cells_b in cells_of_block.values():
        for c in cells_b.tolist():
            pending[c] = pending.get(c, 0) + 1
    order = sorted(blocks.tolist(), key=lambda b: (cells_of_block[b][:1].tolist(), b))
    open_cells: dict[tuple[int, ...], _Cell] = {}
    cells = 0
    for b in order:
        data, rows, flat = _block_points(state, b)
        for cell, (sel, idx) in _by_cell(state.layout, flat, state.grid.shape).items():
            buf = open_cells.get(cell)
            if buf is None:
                buf = open_cells[cell] = _Cell(state.layout, cell)
                if init is None:
                    buf.load(group)
                else:
                    init(buf)
            try:
                buf.put(rows[sel], idx, data)
            except (KeyError, IndexError, ValueError) as exc:
                raise CorruptBlockError(
                    state.ledger.path(b), f"its arrays do not fit the grid ({exc})"
                ) from None
        for c in cells_of_block[b].tolist():
            pending[c] -= 1
            if pending[c]:
                continue
            cell = _cell_tuple(state, c)
            buf = open_cells.pop(cell, None)
            if buf is None:  # the ledger said the block holds points there, the block not
                continue
            if store is not None:
                for chunk in _chunk_files(store, state.layout, cell, state.version):
                    chunk.unlink(missing_ok=True)
            buf.write(group)
            cells += 1
    if open_cells:  # a block held points the ledger did not place: refuse rather than drop them
        raise RuntimeError(f"cells {sorted(open_cells)} were filled but never written")
    return cells


def _cell_tuple(state: _State, c: int) -> tuple[int, ...]:
    """Return the cell (index per chunked dim) of cell number ``c`` (see :func:`_cells_of`)."""
    counts = state.layout.cell_counts
    return tuple(int(x) for x in np.unravel_index(c, counts)) if counts else ()


def _chunk_files(store: Path, layout: Layout, cell: Sequence[int], version: int) -> list[Path]:
    """Return the one chunk file of every variable that ``cell`` covers, in ``version``."""
    where = dict(zip(layout.chunked, cell, strict=True))
    return [
        store / name / chunk_key([where.get(d, 0) for d in var.dims], version)
        for name, var in layout.vars.items()
    ]


@contextlib.contextmanager
def _copy_on_write(
    out: Path, version: int, attrs: Mapping[str, Any] | None = None
) -> Iterator[tuple[Path, zarr.Group, dict[str, str]]]:
    """Yield a hard-linked copy of the store ``out`` as its new ``version``, swapped in at the end.

    ``attrs`` replace root attributes of the copy (provenance), in the metadata's one rewrite.

    Yields the copy's path, its opened group and the chunk links made for ``version`` (see
    :func:`.versions.link_versions`: the old versions' chunks stay for earlier readers). No
    data is copied; a file to change must be replaced (unlinked, then written anew), so the
    old store's files are never modified. The copy replaces ``out`` when the block ends without
    error; otherwise it is removed, once zarr's pending writes into it have ended.
    """
    tmp = temporary_name(out)
    try:
        aliases = link_versions(out, tmp, version)
        retag(tmp, version, attrs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            group = zarr.open_group(tmp, mode="r+", zarr_format=3, use_consolidated=True)
        yield tmp, group, aliases
        swap_into_place(tmp, out)
    finally:
        if tmp.exists():  # a failed write: zarr may still be writing chunks into it
            settle_zarr_writes()
            shutil.rmtree(tmp, ignore_errors=True)


def _write_manifest(store: Path, manifest: Mapping[str, Any],
                    previous: Mapping[str, Any] | None = None,
                    linked_from: Path | None = None,
                    aliases: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """Write ``manifest`` with the file table of ``store``.

    ``store`` may be a hard-linked copy of ``linked_from`` whose table is ``previous``: the
    entries of files still linked (at their own path, or as ``aliases`` of another) are kept,
    the others digested (see :func:`file_table`).
    """
    table = file_table(store, previous, linked_from, aliases)
    write_json(store / MANIFEST, {**manifest, "files": table})


def _update(state: _State, out: Path, dirty: np.ndarray, manifest: Mapping[str, Any],
            attrs: Mapping[str, Any] | None,
            files: Mapping[str, Any]) -> AggregateReport:  # fmt: skip
    # Copy-on-write: touched chunk files are replaced; the old store is never modified.
    n = len(manifest["blocks"])
    root_attrs = {**attrs, "experiment": state.exp.name} if attrs else None
    with _copy_on_write(out, state.version, root_attrs) as (tmp, group, aliases):
        cells = _patch(state, group, dirty, tmp)
        (tmp / MANIFEST).unlink()
        _write_manifest(tmp, manifest, files, out, aliases)
    return AggregateReport("update", len(dirty), n - len(dirty), cells, n, manifest["n_failed"])


def _extend(state: _State, out: Path, dirty: np.ndarray, manifest: Mapping[str, Any],
            attrs: Mapping[str, Any] | None,
            files: Mapping[str, Any]) -> AggregateReport:  # fmt: skip
    """Grow the store to a grid that extends it at the end (see :meth:`Layout.appended`).

    Copy-on-write like :func:`_update`: in a hard-linked copy, every variable's metadata is
    replaced by its resized one (old chunk files stay valid: same chunking, same positions),
    the grown coordinates are written anew, and the cells holding new or changed points are
    filled; the old store is never modified.
    """
    layout = state.layout
    n = len(manifest["blocks"])
    with _copy_on_write(out, state.version) as (tmp, group, aliases):
        arrays = _arrays(group)
        grown = [d for d, c in layout.coords.items() if arrays[d].shape != c.shape]
        for dim in grown:  # written anew below: the links of this version go, not their files
            (tmp / dim / "zarr.json").unlink()
            for path in [p for p in (tmp / dim).rglob("*") if p.is_file()]:
                if key_version(path.relative_to(tmp / dim).as_posix()) == state.version:
                    path.unlink()
        shapes = {n: tuple(len(layout.coords[d]) for d in v.dims) for n, v in layout.vars.items()}
        cattrs = coord_attrs(layout.experiment)
        _concurrently(
            [
                *(arrays[n].async_array.resize(shape) for n, shape in shapes.items()),
                *(
                    _create_coord(
                        group._async_group, d, layout.coords[d], cattrs.get(d, {}), state.version
                    )
                    for d in grown
                ),
            ]
        )  # resize updates each array's metadata in place: ``arrays`` stay valid
        cells = _patch(state, group, dirty, tmp)
        # the root's consolidated metadata: the changed arrays' own documents, just written
        # (what zarr.consolidate_metadata would gather, without listing the whole store)
        root = json.loads((tmp / "zarr.json").read_text())
        members = root["consolidated_metadata"]["metadata"]
        for name in [*layout.vars, *grown]:
            members[name] = json.loads((tmp / name / "zarr.json").read_text())
        if attrs:
            root["attributes"] = {**root.get("attributes", {}), **attrs,
                                  "experiment": state.exp.name}  # fmt: skip
        write_json(tmp / "zarr.json", root)  # a new file: the old store keeps its own
        (tmp / MANIFEST).unlink()
        _write_manifest(tmp, manifest, files, out, aliases)
    return AggregateReport("extend", len(dirty), n - len(dirty), cells, n, manifest["n_failed"])


def _rebuild(state: _State, out: Path, clean: np.ndarray, manifest: Mapping[str, Any],
             attrs: Mapping[str, Any], *, old_ok: bool,
             old_files: Mapping[str, Any] | None) -> AggregateReport:  # fmt: skip
    """Build the store anew (as ``state.version``) and swap it in.

    With ``old_ok``, values of clean blocks are copied from the old store. With ``old_files``
    (the old store's intact file table), the old store's chunks of the versions kept for
    earlier readers are linked into the new store.
    """
    layout = state.layout
    tmp = temporary_name(out)
    old = None
    covered = np.zeros(len(state.holder), dtype=bool)
    if old_ok and out.exists():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            old = zarr.open_group(out, mode="r", zarr_format=3, use_consolidated=True)
        old_index = {
            d: {k: i for i, k in enumerate(_keys(np.asarray(old[d][...])))}
            for d in layout.coords if d in old
        }  # fmt: skip
        inside = [np.isin(layout.keys[d], list(old_index.get(d, {}))) for d in layout.grid_dims]
        covered = np.ones(state.grid.shape, dtype=bool)
        for k, m in enumerate(inside):  # a point is in the old grid if each coordinate is
            shape = [1] * len(inside)
            shape[k] = len(m)
            covered &= m.reshape(shape)
        covered = covered.ravel() & clean[state.holder]
    dirty = np.unique(state.holder[~covered])
    n = len(manifest["blocks"])
    try:
        group = _create_store(tmp, layout, {**attrs, "experiment": state.exp.name}, state.version)
        cells = 0
        if old is not None and covered.any():
            # cells the new blocks touch are copied and filled in _patch, written once
            touched = _touched_cells(state, dirty)
            for cell in layout.cells():
                if cell in touched:
                    continue
                buf = _Cell(layout, cell)
                buf.copy_from(old, old_index)
                buf.write(group)
                cells += 1

            def init(buf: _Cell) -> None:
                buf.copy_from(old, old_index)
        else:

            def init(buf: _Cell) -> None:  # a new, empty store: nothing to read
                pass

        cells += _patch(state, group, dirty, None, init)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(tmp, zarr_format=3)
        if old_files is not None:
            keep_versions(out, tmp, state.version)
        _write_manifest(tmp, manifest, old_files, out if old_files is not None else None)
        swap_into_place(tmp, out)
    finally:
        if tmp.exists():  # a failed write: zarr may still be writing chunks into it
            settle_zarr_writes()
            shutil.rmtree(tmp, ignore_errors=True)
    return AggregateReport("rebuild", len(dirty), n - len(dirty), cells, n, manifest["n_failed"])
