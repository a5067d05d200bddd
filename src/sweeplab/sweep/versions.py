"""Versions of an aggregate store: chunk keys that a reader opened earlier keeps reading.

A dataset opened with ``xr.open_zarr`` holds its arrays' metadata in memory and reads each
chunk by its path when a value is used. An aggregate replaced after the open would be read
with the old metadata at the new files: another grid's values, or NaN. So each new version of
an aggregate writes its chunks under another *chunk key encoding* than the version before, and
keeps the chunk files of the two versions before it (as hard links: no data is copied). A
reader holds the encoding it opened with, and its keys keep naming its own version's files
through the next two aggregations; the third reuses them (the documented limit).

The encodings cycle through the three that zarr v3 offers with distinct keys for every array
of one or more dimensions (an aggregate has no 0-d array): ``c.i.j``, ``c/i/j`` and ``i.j``.
Stores written before versions existed have ``c.i.j`` keys: they are version 0.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .store import write_json

__all__ = [
    "KEY_ENCODINGS",
    "chunk_key",
    "keep_versions",
    "key_version",
    "link_versions",
    "next_version",
    "retag",
    "store_version",
]

logger = logging.getLogger(__name__)

#: The chunk key encodings the versions cycle through (version ``v`` uses ``KEY_ENCODINGS[v]``).
KEY_ENCODINGS: tuple[dict[str, str], ...] = (
    {"name": "default", "separator": "."},  # c.0.1: what stores had before versions
    {"name": "default", "separator": "/"},  # c/0/1
    {"name": "v2", "separator": "."},  # 0.1
)
N_VERSIONS = len(KEY_ENCODINGS)


def _metadata_form(version: int) -> dict[str, Any]:
    """Return the encoding of ``version`` in the form an array's ``zarr.json`` holds it."""
    enc = KEY_ENCODINGS[version]
    return {"name": enc["name"], "configuration": {"separator": enc["separator"]}}


def chunk_key(index: Sequence[int], version: int) -> str:
    """Return the key (relative to its array) of the chunk at grid ``index`` in ``version``.

    Examples
    --------
    >>> [chunk_key((0, 3), v) for v in range(3)]
    ['c.0.3', 'c/0/3', '0.3']

    """
    enc = KEY_ENCODINGS[version]
    if enc["name"] == "default":
        return enc["separator"].join(["c", *map(str, index)])
    return ".".join(map(str, index)) if len(index) else "0"


def key_version(key: str) -> int | None:
    """Return the version whose encoding ``key`` (relative to its array) is in; None if none.

    Examples
    --------
    >>> [key_version(k) for k in ("c.0.3", "c/0/3", "0.3", "zarr.json")]
    [0, 1, 2, None]

    """
    if key.startswith("c/"):
        return 1
    if key == "c" or key.startswith("c."):
        return 0
    if key[:1].isdigit():
        return 2
    return None


def _index_of(key: str, version: int) -> tuple[int, ...]:
    parts = {0: key.split(".")[1:], 1: key.split("/")[1:], 2: key.split(".")}[version]
    return tuple(int(p) for p in parts)


def store_version(store: str | os.PathLike[str]) -> int | None:
    """Return the version of the aggregate ``store`` (its arrays' encoding); None if unknown.

    None when there is no readable root ``zarr.json`` with consolidated metadata, or its arrays
    use an encoding that is none of :data:`KEY_ENCODINGS`.
    """
    try:
        root = json.loads((Path(store) / "zarr.json").read_text())
        members = root["consolidated_metadata"]["metadata"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    forms = [_metadata_form(v) for v in range(N_VERSIONS)]
    for doc in members.values():
        if isinstance(doc, dict) and doc.get("node_type") == "array":
            enc = doc.get("chunk_key_encoding")
            return forms.index(enc) if enc in forms else None
    return None


def next_version(store: str | os.PathLike[str]) -> int:
    """Return the version a new aggregate at ``store`` gets: the one after the store's, or 0."""
    current = store_version(store)
    return 0 if current is None else (current + 1) % N_VERSIONS


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links: copy
        shutil.copy2(src, dst)


def _files(store: Path) -> list[tuple[Path, str, str, int | None]]:
    """Every file of ``store``, in one walk: (path, relative path, array name, version).

    The version is that of the file's chunk key (see :func:`key_version`); None for a file
    that is not an array's chunk (metadata, the manifest, dot files).
    """
    found = []
    for here, _dirs, names in os.walk(store):
        for name in names:
            path = Path(here, name)
            rel = path.relative_to(store).as_posix()
            array, _, key = rel.partition("/")
            version = key_version(key) if key and not array.startswith(".") else None
            found.append((path, rel, array, version))
    return sorted(found, key=lambda f: f[1])


def link_versions(src: Path, dst: Path, version: int) -> dict[str, str]:
    """Copy the store ``src`` to ``dst`` as hard links, for a new ``version`` of it.

    Every file is linked at its own path, but the files of the version whose keys ``version``
    reuses (the oldest kept); the chunks of ``src``'s current version (the one before
    ``version``) are linked a second time, at their keys in ``version``. Return those second
    links: relative path in ``dst`` -> relative path of the file they link to.
    """
    current = (version - 1) % N_VERSIONS
    aliases: dict[str, str] = {}
    for path, rel, array, v in _files(src):
        if v == version:
            continue
        _link(path, dst / rel)
        if v == current:
            key = rel.partition("/")[2]
            new = f"{array}/{chunk_key(_index_of(key, v), version)}"
            _link(path, dst / new)
            aliases[new] = rel
    return aliases


def keep_versions(src: Path, dst: Path, version: int) -> int:
    """Link into the new store ``dst`` (of ``version``) the chunks of ``src`` it keeps.

    Those are the chunks of the two versions before ``version``, of arrays ``dst`` has (a
    reader of a variable that a new experiment version dropped reads fill values). Return the
    number of files linked.
    """
    n = 0
    for path, rel, array, v in _files(src):
        if v is not None and v != version and (dst / array / "zarr.json").exists():
            _link(path, dst / rel)
            n += 1
    return n


def retag(store: Path, version: int, attrs: Mapping[str, Any] | None = None) -> None:
    """Give every array of ``store`` the chunk key encoding of ``version``, in new files.

    Each array's ``zarr.json`` and the root's consolidated metadata are rewritten (replaced,
    never modified in place: ``store`` may be a hard-linked copy of the live store); ``attrs``
    are merged into the root's attributes in the same write.
    """
    root = json.loads((store / "zarr.json").read_text())
    members = root["consolidated_metadata"]["metadata"]
    form = _metadata_form(version)
    for name, member in members.items():
        if not (isinstance(member, dict) and member.get("node_type") == "array"):
            continue
        doc = json.loads((store / name / "zarr.json").read_text())
        doc["chunk_key_encoding"] = form
        write_json(store / name / "zarr.json", doc)
        members[name] = doc
    if attrs:
        root["attributes"] = {**root.get("attributes", {}), **attrs}
    write_json(store / "zarr.json", root)
