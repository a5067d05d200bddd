"""Point identity: content keys of points, the grid's points in order, block names.

A point's key is the first 128 bits of a SHA-256 over::

    experiment | version | canonical JSON of the settings | name~value; ... (axis order)

where a mapping axis's value also carries its entry's canonical JSON (a geometry's content,
not just its name). Numbers are canonical (:func:`~sweeplab.sweep.canonical.format_value`), so
``1`` and ``1.0`` are the same point. The key does not depend on the grid, on the order of the
config's lists, on the packing or on the git revision: the same point asked for by any config
has the same key, and a point is computed once (``docs/architecture.md``).

Keys are handled as raw 16-byte strings (numpy ``S16``) in bulk and as 32 hex characters in
block files and messages.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .experiments.base import Experiment, Points, canonical_json

__all__ = [
    "KEY_BYTES",
    "GridPoints",
    "block_name",
    "find_keys",
    "grid_points",
    "hex_keys",
    "key_words",
    "point_keys",
    "raw_keys",
    "settings_text",
    "sort_keys",
]

KEY_BYTES = 16


def settings_text(exp: Experiment, settings: Mapping[str, Any]) -> str:
    """Return the part of every key of ``exp`` shared by its points: name, version, settings."""
    return f"{exp.name}|v{exp.version}|{canonical_json(dict(settings))}|"


def _prefix(exp: Experiment, settings: Mapping[str, Any]) -> Any:
    h = hashlib.sha256()
    h.update(settings_text(exp, settings).encode())
    return h


def key_words(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the two big-endian 64-bit words of each key: (hi, lo) orders as the bytes do.

    Sorting and searching ``uint64`` words is several times faster than ``S16`` strings.
    """
    w = np.ascontiguousarray(keys, dtype=f"S{KEY_BYTES}").view(">u8").reshape(-1, 2)
    return w[:, 0].astype(np.uint64), w[:, 1].astype(np.uint64)


def sort_keys(keys: np.ndarray, *tiebreak: np.ndarray) -> np.ndarray:
    """Return indices sorting raw keys (then ``tiebreak`` arrays, the first most significant)."""
    hi, lo = key_words(keys)
    return np.lexsort((*reversed(tiebreak), lo, hi))


def find_keys(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Position of each needle in ``haystack`` (sorted, unique raw keys), -1 where absent."""
    if not len(haystack):
        return np.full(len(needles), -1, dtype=np.int64)
    hh, hl = key_words(haystack)
    nh, nl = key_words(needles)
    order = np.argsort(nh)  # sorted needles: each search walks the haystack once
    left = np.empty(len(needles), dtype=np.int64)
    right = np.empty(len(needles), dtype=np.int64)
    left[order] = np.searchsorted(hh, nh[order], side="left")
    right[order] = np.searchsorted(hh, nh[order], side="right")
    span = right - left
    pos = np.where(span == 1, left, -1)
    pos[span == 1] = np.where(hl[left[span == 1]] == nl[span == 1], left[span == 1], -1)
    for i in np.flatnonzero(span > 1):  # keys sharing their first 64 bits: vanishingly rare
        j = left[i] + np.searchsorted(hl[left[i] : right[i]], nl[i])
        pos[i] = j if j < right[i] and hl[j] == nl[i] else -1
    return pos


def hex_keys(raw: np.ndarray) -> np.ndarray:
    """Hex text (32 characters) of raw ``S16`` keys, as an object array."""
    text = np.ascontiguousarray(raw, dtype=f"S{KEY_BYTES}").tobytes().hex()
    w = 2 * KEY_BYTES
    return np.array([text[i : i + w] for i in range(0, len(text), w)], dtype=object)


def raw_keys(hexes: Sequence[str] | np.ndarray) -> np.ndarray:
    """Raw ``S16`` keys of hex keys (``ValueError`` for malformed text)."""
    joined = "".join(str(h) for h in hexes)
    if len(joined) != 2 * KEY_BYTES * len(hexes):
        raise ValueError("point keys must be 32 hexadecimal characters each")
    return np.frombuffer(bytes.fromhex(joined), dtype=f"S{KEY_BYTES}").copy()


def point_keys(exp: Experiment, settings: Mapping[str, Any], section: Mapping[str, Any],
               columns: Mapping[str, np.ndarray]) -> np.ndarray:  # fmt: skip
    """Raw keys (``S16``) of arbitrary points given as columns (one array per axis).

    ``section`` supplies the entries of mapping axes (e.g. ``{"geometry": {...}}``).
    """
    base = _prefix(exp, settings)
    texts = [a.texts(a.column(columns[a.name]), section) for a in exp.axes]
    out = bytearray()
    for parts in zip(*texts, strict=True):
        h = base.copy()
        h.update("".join(parts).encode())
        out += h.digest()[:KEY_BYTES]
    return np.frombuffer(bytes(out), dtype=f"S{KEY_BYTES}").copy()


@dataclass(frozen=True, eq=False)
class GridPoints:
    """Every point of a config section's grid, in C order over the axes' sorted coordinates.

    Attributes
    ----------
    coords : dict of str to ndarray
        Axis name -> sorted coordinate values.
    keys : ndarray of S16
        Raw keys, shape ``(n,)``; point ``i`` is at ``np.unravel_index(i, shape)``.

    """

    experiment: Experiment
    coords: dict[str, np.ndarray]
    keys: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the grid (one length per axis)."""
        return tuple(len(c) for c in self.coords.values())

    def columns(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Parameters of the grid points at flat indices ``flat``, one array per axis."""
        idx = np.unravel_index(np.asarray(flat, dtype=np.int64), self.shape)
        return {name: c[i] for (name, c), i in zip(self.coords.items(), idx, strict=True)}

    def points(self, flat: np.ndarray) -> Points:
        """Return the grid points at flat indices ``flat`` as a :class:`Points` batch."""
        return Points(self.experiment.name, self.columns(flat), hex_keys(self.keys[flat]))


GRID_CACHE = ".grid.npz"


def grid_points(exp: Experiment, section: Mapping[str, Any],
                cache_dir: str | os.PathLike[str] | None = None, *,
                write_cache: bool = True) -> GridPoints:  # fmt: skip
    """Enumerate the keys of every point of ``section``'s grid (about 1 us per point).

    The hash of the shared prefix and of every leading combination of axis values is computed
    once and copied, so a point costs one ``copy``/``update``/``digest``. With ``cache_dir``,
    the keys of the last grid enumerated there are kept in ``<cache_dir>/.grid.npz`` (16 bytes
    a point) and reused while the grid's definition (version, settings, axis values) is the
    same; ``write_cache=False`` reads that cache but never writes it.
    """
    coords = {a.name: a.coords(section) for a in exp.axes}
    texts = [[t.encode() for t in a.texts(coords[a.name], section)] for a in exp.axes]
    h = _prefix(exp, exp.settings(section))
    for t in texts:
        h.update(b"|" + str(len(t)).encode() + b":" + b"".join(t))
    definition = h.hexdigest()
    cache = Path(cache_dir) / GRID_CACHE if cache_dir is not None else None
    if cache is not None:
        keys = _read_grid_cache(cache, definition)
        if keys is not None and len(keys) == math.prod(len(c) for c in coords.values()):
            return GridPoints(exp, coords, keys)
    keys = _enumerate(exp, section, texts)
    if cache is not None and write_cache:
        _write_grid_cache(cache, definition, keys)
    return GridPoints(exp, coords, keys)


def _read_grid_cache(path: Path, definition: str) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["definition"]) != definition:
                return None
            return z["keys"].astype(f"S{KEY_BYTES}")
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _write_grid_cache(path: Path, definition: str, keys: np.ndarray) -> None:
    if not path.parent.is_dir():  # no blocks yet: nothing to make for a cache
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, definition=definition, keys=keys)
        os.replace(tmp, path)
    except OSError:  # read-only results: enumerate again next time
        tmp.unlink(missing_ok=True)


def _enumerate(exp: Experiment, section: Mapping[str, Any], texts: list[list[bytes]]
               ) -> np.ndarray:  # fmt: skip
    out = bytearray()
    last = texts[-1]

    def walk(h: Any, depth: int) -> None:
        if depth == len(texts) - 1:
            for t in last:
                g = h.copy()
                g.update(t)
                out.extend(g.digest()[:KEY_BYTES])
            return
        for t in texts[depth]:
            g = h.copy()
            g.update(t)
            walk(g, depth + 1)

    walk(_prefix(exp, exp.settings(section)), 0)
    return np.frombuffer(bytes(out), dtype=f"S{KEY_BYTES}")


def block_name(keys: np.ndarray, salt: Sequence[str] = ()) -> str:
    """Content name of a block: a hash of its points' raw keys (and of ``salt``).

    ``salt`` names the blocks that already hold failed records of these points, so a retry of
    the same points gets a new name.
    """
    h = hashlib.sha256(np.ascontiguousarray(keys, dtype=f"S{KEY_BYTES}").tobytes())
    for s in sorted(salt):
        h.update(b"|" + s.encode())
    return "b" + h.hexdigest()[:24]
