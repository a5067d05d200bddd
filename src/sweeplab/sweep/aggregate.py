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
- The **manifest** (``sweeplab-manifest.json``: layout fingerprint, and per block its file size,
  mtime and content digest) is written last; a store without one is rebuilt.
- Either way the new store replaces the old one by two renames (``store.swap_into_place``): a
  reader sees the complete old aggregate or the complete new one, never a mixture.

Memory is bounded by one cell of every variable plus one block, whatever the number of blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync as zarr_sync

from .blockstore import BLOCK_SUFFIX, CorruptBlockError, read_block
from .canonical import format_value
from .datasets import coord_attrs
from .experiments import Block, Experiment, get
from .store import recover_aside, remove_stale_temporaries, swap_into_place, temporary_name

__all__ = ["CELL_ELEMENTS", "MANIFEST", "AggregateReport", "aggregate"]

logger = logging.getLogger(__name__)

MANIFEST = "sweeplab-manifest.json"
CELL_ELEMENTS = 1 << 17  # at most this many values in one chunk of any variable (1 MiB float64)
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class AggregateReport:
    """What one :func:`aggregate` call did."""

    mode: str  # "rebuild" or "update" (or "unchanged")
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

    def __init__(self, experiment: Experiment, section: Mapping[str, Any]) -> None:
        self.experiment = experiment
        self.coords = experiment.grid(section)
        self.keys = {d: _keys(c) for d, c in self.coords.items()}
        self.index = {d: {k: i for i, k in enumerate(keys)} for d, keys in self.keys.items()}
        self.vars = experiment.variables
        self.chunked = [a.dimension for a in experiment.axes if a.kind != "chunks"]
        self.chunks = self._chunking()

    def _chunking(self) -> dict[str, int]:
        chunks = {d: len(c) for d, c in self.coords.items()}

        def biggest() -> int:
            return max(int(np.prod([chunks[d] for d in v.dims])) for v in self.vars.values())

        for dim in self.chunked:  # outermost first: shrink until every chunk fits
            if biggest() <= CELL_ELEMENTS:
                break
            chunks[dim] = 1
        for dim in reversed(self.chunked):  # then grow back from the innermost block dim
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

    def cell_of(self, block: Block) -> tuple[int, ...]:
        """Return the cell (chunk index along each chunked dim) holding ``block``."""
        coords = self.experiment.block_coords(block)
        cell = []
        for dim in self.chunked:
            (value,) = coords[dim]
            cell.append(self.index[dim][_key(value)] // self.chunks[dim])
        return tuple(cell)

    def cell_slices(self, cell: Sequence[int]) -> dict[str, slice]:
        """Slice of every dimension covered by ``cell``."""
        out = {d: slice(0, len(c)) for d, c in self.coords.items()}
        for dim, ci in zip(self.chunked, cell, strict=True):
            lo = ci * self.chunks[dim]
            out[dim] = slice(lo, min(lo + self.chunks[dim], len(self.coords[dim])))
        return out

    def cells(self) -> Iterator[tuple[int, ...]]:
        """Every cell of the grid."""
        counts = [-(-len(self.coords[d]) // self.chunks[d]) for d in self.chunked]
        return product(*(range(n) for n in counts))


def _position(layout: Layout, dim: str, values: np.ndarray, path: str) -> slice:
    """Contiguous slice of the grid covered by a block's coordinate values along ``dim``."""
    index = layout.index[dim]
    try:
        idx = [index[_key(v)] for v in values]
    except KeyError as exc:
        raise ValueError(
            f"block {path}: {dim} value {exc.args[0]} is not in the aggregate's grid (its "
            "settings differ from the config's; recompute it)"
        ) from None
    lo = idx[0]
    if idx != list(range(lo, lo + len(idx))):
        raise ValueError(f"block {path}: {dim} values {list(values)} are not contiguous")
    return slice(lo, lo + len(idx))


# Chunk keys "c.i.j" rather than "c/i/j": one directory per array instead of one per chunk
# index level; creating and removing directories is what a copy-on-write update pays for.
KEY_ENCODING = {"name": "default", "separator": "."}


def _create_store(path: Path, layout: Layout, attrs: Mapping[str, Any]) -> zarr.Group:
    """Create the aggregate's arrays (all at once on zarr's loop) and write its coordinates."""
    cattrs = coord_attrs(layout.experiment)

    async def create() -> zarr.AsyncGroup:
        group = await zarr.api.asynchronous.open_group(
            store=path, mode="w", zarr_format=3, attributes=dict(attrs)
        )
        coords = list(layout.coords.items())
        made = await asyncio.gather(
            *(
                group.create_array(
                    dim,
                    shape=values.shape,
                    dtype=str if values.dtype == object else values.dtype,
                    dimension_names=(dim,),
                    attributes=cattrs.get(dim, {}),
                    fill_value="" if values.dtype == object else None,
                    chunk_key_encoding=KEY_ENCODING,
                )
                for dim, values in coords
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
                    chunk_key_encoding=KEY_ENCODING,
                )
                for name, var in layout.vars.items()
            ),
        )
        await asyncio.gather(
            *(arr.setitem(slice(None), v) for arr, (_, v) in zip(made, coords, strict=False))
        )
        return group

    return zarr.Group(zarr_sync(create()))


def _block_paths(blocks_dir: Path, blocks: Sequence[Block]) -> dict[str, str]:
    prefix = os.path.join(blocks_dir, "")
    return {b.name: f"{prefix}{b.name}{BLOCK_SUFFIX}" for b in blocks}


class MissingBlocksError(ValueError):
    """Blocks the config asks for are not on disk (not computed yet, or deleted)."""


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _stats(experiment: str, blocks_dir: Path, paths: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Size and mtime of every block file; all missing ones named in one error."""
    stats = {name: _stat(p) for name, p in paths.items()}
    missing = [paths[n] for n, st in stats.items() if st is None]
    if missing:
        raise MissingBlocksError(
            f"{experiment}: {len(missing)} of {len(paths)} block(s) missing in {blocks_dir} "
            f"(first: {os.path.basename(missing[0])}); compute them with `snakemake` (with your "
            "usual --configfile) before aggregating"
        )
    return stats  # type: ignore[return-value]


def _concurrently(coroutines: Sequence[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run zarr coroutines together on zarr's event loop (one round trip, not one per array).

    The coroutines must be created before (outside the loop): creating them may call zarr's
    synchronous API.
    """

    async def gather() -> list[Any]:
        return await asyncio.gather(*coroutines)

    return zarr_sync(gather())


def _arrays(group: zarr.Group) -> dict[str, zarr.Array]:
    """Every array of ``group``, opened once (with consolidated metadata: no store reads)."""
    return dict(group.arrays())


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

    def put(self, block: Block, path: str, experiment: str) -> tuple[str, int]:
        """Read, verify and place one block; return its digest and number of failed points."""
        data = read_block(path, experiment, block.name)
        want = self.layout.experiment.block_coords(block)
        for dim, values in want.items():
            got = data.arrays.get(dim)
            if got is None or [_key(v) for v in got] != [_key(v) for v in values]:
                raise CorruptBlockError(path, f"its {dim} coordinates do not match its name")
        positions = {d: _position(self.layout, d, data.arrays[d], path) for d in self.slices}
        for name, var in self.layout.vars.items():
            if name not in data.arrays or data.dims[name] != var.dims:
                reason = f"variable {name!r} is missing or has other dims (recompute it)"
                raise CorruptBlockError(path, reason)
            sel = tuple(
                slice(positions[d].start - self.slices[d].start,
                      positions[d].stop - self.slices[d].start)
                for d in var.dims
            )  # fmt: skip
            self.buffers[name][sel] = data.arrays[name]
        return data.attrs["sweeplab_digest"], int(np.count_nonzero(data.arrays["status"]))

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
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("format") == MANIFEST_FORMAT else None


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(content, sort_keys=True))
    os.replace(tmp, path)


def aggregate(
    experiment: str,
    section: Mapping[str, Any],
    blocks_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    attrs: Mapping[str, Any] | None = None,
    full: bool = False,
) -> AggregateReport:
    """Bring the aggregate ``out`` up to date with the blocks the config asks for.

    Parameters
    ----------
    experiment : str
        A registered experiment.
    section : mapping
        The experiment's config section (defines the grid and so the blocks).
    blocks_dir : path
        Directory holding the block stores ``<name>.zarr.zip``.
    out : path
        The aggregate zarr v3 store (a directory).
    attrs : mapping, optional
        Global attributes of a new store (provenance).
    full : bool
        Rebuild from the block files alone, ignoring the existing aggregate.

    Raises
    ------
    MissingBlocksError
        Counting the blocks the config asks for that are not in ``blocks_dir``.
    CorruptBlockError
        Naming the first block that is damaged or not this experiment's.

    """
    exp = get(experiment)
    out = Path(out)
    blocks = exp.blocks(section)
    if not blocks:
        raise ValueError(f"{experiment}: the config asks for no blocks")
    paths = _block_paths(Path(blocks_dir), blocks)
    stats = _stats(experiment, Path(blocks_dir), paths)
    layout = Layout(exp, section)
    recover_aside(out)
    remove_stale_temporaries(out)
    manifest = None if full else _read_manifest(out)
    old_blocks: dict[str, Any] = dict(manifest["blocks"]) if manifest else {}
    clean = {
        n for n in paths
        if n in old_blocks and tuple(old_blocks[n]["stat"]) == stats[n]
    }  # fmt: skip
    dirty = [b for b in blocks if b.name not in clean]
    entries = {n: old_blocks[n] for n in clean}
    t0 = time.perf_counter()
    if manifest and manifest["layout"] == layout.fingerprint:
        report = _update(exp, layout, out, blocks, dirty, paths, stats, entries)
    else:
        report = _rebuild(exp, layout, out, blocks, dirty, paths, stats, entries,
                          attrs or {}, old_ok=manifest is not None)  # fmt: skip
    logger.info(
        "%s: %s, %d block(s) read, %d reused, %d cell(s) written in %.2f s",
        experiment, report.mode, report.blocks_read, report.blocks_reused,
        report.cells_written, time.perf_counter() - t0,
    )  # fmt: skip
    return report


def _manifest(layout: Layout, entries: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "experiment": layout.experiment.name,
        "layout": layout.fingerprint,
        "blocks": dict(entries),
        "n_failed": sum(int(e["n_failed"]) for e in entries.values()),
    }


def _group_by_cell(layout: Layout, blocks: Sequence[Block]) -> dict[tuple[int, ...], list[Block]]:
    counts = [-(-len(layout.coords[d]) // layout.chunks[d]) for d in layout.chunked]
    if all(n == 1 for n in counts):  # one cell: no lookups needed
        return {tuple(0 for _ in counts): list(blocks)} if blocks else {}
    cells: dict[tuple[int, ...], list[Block]] = {}
    for b in blocks:
        cells.setdefault(layout.cell_of(b), []).append(b)
    return cells


def _link_tree(src: Path, dst: Path) -> None:
    """Copy the store ``src`` to ``dst`` as hard links (no data copied).

    Falls back to plain copies where the file system has no hard links.
    """
    for path in sorted(src.rglob("*")):
        rel = dst / path.relative_to(src)
        if path.is_dir():
            rel.mkdir(parents=True, exist_ok=True)
            continue
        rel.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, rel)
        except OSError:
            shutil.copy2(path, rel)


def _chunk_files(store: Path, layout: Layout, cell: Sequence[int]) -> list[Path]:
    """Return the one chunk file of every variable that ``cell`` covers."""
    where = dict(zip(layout.chunked, cell, strict=True))
    return [
        store / name / ".".join(["c", *(str(where.get(d, 0)) for d in var.dims)])
        for name, var in layout.vars.items()
    ]


def _update(
    exp: Experiment, layout: Layout, out: Path, blocks: Sequence[Block], dirty: Sequence[Block],
    paths: Mapping[str, str], stats: Mapping[str, tuple[int, int]], entries: dict[str, Any],
) -> AggregateReport:  # fmt: skip
    n = len(blocks)
    if not dirty and set(entries) == set(paths):
        return AggregateReport("unchanged", 0, n, 0, n, _manifest(layout, entries)["n_failed"])
    # Copy-on-write: a hard-linked copy of the store, whose touched chunk files are replaced
    # (unlinked, then written anew), swapped in at the end; the old store is never modified.
    tmp = temporary_name(out)
    try:
        _link_tree(out, tmp)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            group = zarr.open_group(tmp, mode="r+", zarr_format=3, use_consolidated=True)
        cells = _group_by_cell(layout, dirty)
        for cell, members in cells.items():
            buf = _Cell(layout, cell)
            buf.load(group)
            for b in members:
                digest, failed = buf.put(b, paths[b.name], exp.name)
                entries[b.name] = {"stat": list(stats[b.name]), "digest": digest,
                                   "n_failed": failed}  # fmt: skip
            for chunk in _chunk_files(tmp, layout, cell):
                chunk.unlink(missing_ok=True)
            buf.write(group)
        entries = {name: entries[name] for name in paths}  # drop blocks no longer in the config
        manifest = _manifest(layout, entries)
        (tmp / MANIFEST).unlink()
        _write_json(tmp / MANIFEST, manifest)
        swap_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return AggregateReport("update", len(dirty), n - len(dirty), len(cells), n,
                           manifest["n_failed"])  # fmt: skip


def _rebuild(
    exp: Experiment, layout: Layout, out: Path, blocks: Sequence[Block],
    dirty: Sequence[Block], paths: Mapping[str, str], stats: Mapping[str, tuple[int, int]],
    entries: dict[str, Any], attrs: Mapping[str, Any], *, old_ok: bool,
) -> AggregateReport:  # fmt: skip
    tmp = temporary_name(out)
    old = None
    old_index: dict[str, dict[str, int]] = {}
    if old_ok and entries:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            old = zarr.open_group(out, mode="r", zarr_format=3, use_consolidated=True)
        old_index = {
            d: {k: i for i, k in enumerate(_keys(np.asarray(old[d][...])))}
            for d in layout.coords if d in old
        }  # fmt: skip
    else:
        entries = {}
    dirty_names = {b.name for b in dirty}
    by_cell = _group_by_cell(layout, blocks)
    try:
        group = _create_store(tmp, layout, {**attrs, "experiment": exp.name})
        cells = 0
        for cell in layout.cells():
            members = by_cell.get(cell, [])
            buf = _Cell(layout, cell)
            if old is not None and any(b.name not in dirty_names for b in members):
                buf.copy_from(old, old_index)
            for b in members:
                if b.name in dirty_names or b.name not in entries:
                    digest, failed = buf.put(b, paths[b.name], exp.name)
                    entries[b.name] = {"stat": list(stats[b.name]), "digest": digest,
                                       "n_failed": failed}  # fmt: skip
            buf.write(group)
            cells += 1
        entries = {name: entries[name] for name in paths}
        manifest = _manifest(layout, entries)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(tmp, zarr_format=3)
        _write_json(tmp / MANIFEST, manifest)
        swap_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    n_read = sum(1 for b in blocks if b.name in dirty_names or old is None)
    return AggregateReport("rebuild", n_read, len(blocks) - n_read, cells, len(blocks),
                           manifest["n_failed"])  # fmt: skip
