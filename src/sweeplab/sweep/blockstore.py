"""One-file block stores: a zarr v3 store in a zip (``*.zarr.zip``) with a content digest.

A block is written to memory, zipped under a temporary name next to its target and renamed, so
it appears whole or not at all. Its root attributes hold ``sweeplab_digest``: a SHA-256 of every
array's name, dims, dtype, shape and values. Reading a block checks the zip (CRC of every member),
the presence of every chunk, the experiment and block name, and recomputes the digest, so a
truncated, edited or partly deleted block is named instead of being read as fill values.
Before anything is read, the zip directory must declare uncompressed members of bounded size,
and before a chunk is decompressed its zstd frame header must declare the size its array's
shape and type imply: a crafted block (a zip bomb, a frame declaring 2**40 bytes) is refused
with :class:`CorruptBlockError` instead of exhausting memory.

Any zarr reader opens a block: ``xr.open_zarr(zarr.storage.ZipStore(path, mode="r"))``.
:func:`read_block` decodes the few codecs sweeplab writes with numcodecs directly (about 10x
faster than zarr's generic path on such tiny stores, which matters when aggregating thousands)
and falls back to zarr for anything else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numcodecs
import numpy as np

from .store import remove_stale_temporaries, temporary_name

if TYPE_CHECKING:  # xarray and zarr are imported where blocks are written or opened
    import xarray as xr

__all__ = [
    "BLOCK_SUFFIX",
    "BlockData",
    "CorruptBlockError",
    "digest",
    "read_block",
    "read_point_table",
    "write_block",
]

logger = logging.getLogger(__name__)

BLOCK_SUFFIX = ".zarr.zip"
FORMAT = "sweeplab-block-2"
#: arrays of every block besides the variables: the point table
POINT_TABLE = ("key", "status", "point_wall_time", "point_cost")


class CorruptBlockError(ValueError):
    """A block store that cannot be trusted (truncated, edited, partly deleted, misplaced)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        super().__init__(
            f"block {self.path} is corrupt ({reason}); delete it and re-run `snakemake` (with "
            "your usual --configfile): its points are then planned and computed again"
        )


@dataclass(frozen=True)
class BlockData:
    """Content of a block: root attributes and every array (coordinates included).

    ``array_attrs`` (each array's attributes: units, long name, flags) and ``coords`` (which
    arrays are coordinates) are what a writer needs besides the values; a block read for
    aggregation leaves them empty.
    """

    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray]
    dims: dict[str, tuple[str, ...]]
    array_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    coords: tuple[str, ...] = ()

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> BlockData:
        """Return the content of an in-memory block :class:`xarray.Dataset`."""
        names = [str(k) for k in ds.variables]
        return cls(
            attrs=dict(ds.attrs),
            arrays={n: np.asarray(ds.variables[n].values) for n in names},
            dims={n: tuple(map(str, ds.variables[n].dims)) for n in names},
            array_attrs={n: dict(ds.variables[n].attrs) for n in names},
            coords=tuple(str(k) for k in ds.coords),
        )


def _canonical(values: np.ndarray) -> tuple[str, bytes]:
    arr = np.asarray(values)
    if arr.dtype.kind in "OUT":
        text = json.dumps([str(x) for x in arr.ravel()], ensure_ascii=False)
        return "str", text.encode()
    if arr.dtype.kind in "iub":
        return "int", np.ascontiguousarray(arr, dtype="<i8").tobytes()
    return "float", np.ascontiguousarray(arr, dtype="<f8").tobytes()


def digest(arrays: Mapping[str, np.ndarray], dims: Mapping[str, tuple[str, ...]]) -> str:
    """SHA-256 of arrays (names, dims, kinds, shapes, values), independent of their encoding."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        kind, data = _canonical(arrays[name])
        head = json.dumps([name, list(dims[name]), kind, list(np.shape(arrays[name]))])
        h.update(head.encode())
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return "sha256:" + h.hexdigest()


def _fill_value(values: np.ndarray) -> tuple[Any, str | None]:
    """Zarr ``fill_value`` of an array and its ``_FillValue`` attribute, as xarray writes them.

    Floats: nan, with ``_FillValue`` the base64 of nan's bytes (xarray's FillValueCoder);
    integers and booleans: zarr's default, no attribute; strings: ``""``.
    """
    kind = values.dtype.kind
    if kind == "f":
        raw = np.array(np.nan, dtype=values.dtype.newbyteorder("<")).tobytes()
        return float("nan"), base64.standard_b64encode(raw).decode()
    if kind in "OUT":
        return "", None
    return None, None


def _encoded_attrs(block: BlockData, name: str) -> dict[str, Any]:
    """Attributes of array ``name`` as xarray's encoder writes them (CF ``coordinates``)."""
    attrs = dict(block.array_attrs.get(name, {}))
    if name not in block.coords:
        own = set(block.dims[name])
        names = sorted(
            c for c in block.coords if block.dims[c] != (c,) and set(block.dims[c]) <= own
        )
        if names:
            attrs["coordinates"] = " ".join(names)
    return attrs


def _zarr_members(block: BlockData) -> dict[str, bytes]:
    """Encode ``block`` as the members of a consolidated zarr v3 store (key -> bytes).

    Every array is one chunk, encoded ``bytes`` (little endian) or ``vlen-utf8`` (strings),
    then zstd level 0, with xarray's attributes (``_FillValue``, ``coordinates``), so that
    ``xarray.open_zarr`` reads the block exactly as if xarray had written it (tested).
    """
    import zarr
    from zarr.codecs import ZstdCodec
    from zarr.storage import MemoryStore

    memory = MemoryStore()
    root = zarr.create_group(memory, zarr_format=3, attributes=block.attrs)
    for name, values in block.arrays.items():
        values = np.asarray(values)
        if values.dtype.kind in "OUT":
            values = values.astype(object)
            dtype: Any = str
        else:
            dtype = values.dtype.newbyteorder("<") if values.dtype.itemsize > 1 else values.dtype
        fill, fill_attr = _fill_value(values)
        attrs = _encoded_attrs(block, name)
        if fill_attr is not None:
            attrs["_FillValue"] = fill_attr
        array = root.create_array(
            name,
            shape=values.shape,
            chunks=values.shape if values.shape and 0 not in values.shape else None,
            dtype=dtype,
            fill_value=fill,
            compressors=ZstdCodec(level=0, checksum=False),
            attributes=attrs,
            dimension_names=block.dims[name],
            config={"write_empty_chunks": True},
        )
        array[...] = values
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(memory, zarr_format=3)
    return {key: buf.to_bytes() for key, buf in memory._store_dict.items()}


def write_block(block: BlockData | xr.Dataset, path: str | os.PathLike[str]) -> str:
    """Write ``block`` as a one-file block store at ``path`` (all or nothing); return its digest.

    Parameters
    ----------
    block : BlockData or xarray.Dataset
        The block's content (a block job passes :class:`BlockData`, which needs no xarray).
    path : path
        Destination, ``<block>.zarr.zip``.

    Every array is one chunk and every chunk is written (no implicit fill-value chunks), so a
    missing member always means damage.

    """
    target = Path(path)
    if not target.name.endswith(BLOCK_SUFFIX):
        raise ValueError(f"block path {target} must end in {BLOCK_SUFFIX}")
    if not isinstance(block, BlockData):
        block = BlockData.from_dataset(block)
    attrs = dict(block.attrs)
    attrs["sweeplab_format"] = FORMAT
    attrs["sweeplab_digest"] = digest(block.arrays, block.dims)
    members = _zarr_members(replace(block, attrs=attrs))
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = temporary_name(target)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for key in sorted(members):
                zf.writestr(key, members[key])
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return attrs["sweeplab_digest"]


def _chunk_key(meta: Mapping[str, Any]) -> str | None:
    enc = meta.get("chunk_key_encoding", {})
    if enc.get("name") != "default":
        return None
    sep = enc.get("configuration", {}).get("separator", "/")
    return sep.join(["c"] + ["0"] * len(meta["shape"]))


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd_content_size(raw: bytes) -> int | None:
    """Frame_Content_Size of the zstd frame ``raw`` starts with (RFC 8878, section 3.1.1.1).

    Read from the frame header alone, before anything is decompressed. Returns None when
    ``raw`` is no zstd frame, or its header is damaged or declares no content size.
    """
    if len(raw) < 6 or raw[:4] != _ZSTD_MAGIC:
        return None
    descriptor = raw[4]
    if descriptor & 0x08:  # the reserved bit must be zero
        return None
    single_segment = bool(descriptor & 0x20)
    fcs_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    if not fcs_bytes:
        return None
    start = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03]
    if len(raw) < start + fcs_bytes:
        return None
    size = int.from_bytes(raw[start : start + fcs_bytes], "little")
    return size + 256 if fcs_bytes == 2 else size


def _chunk_bound(meta: Mapping[str, Any], chunk: Any) -> tuple[str, int]:
    """Return what one chunk of array ``meta`` (of shape ``chunk``) may decode to.

    ``("exact", n)``: a fixed-size type, exactly ``n`` bytes; ``("vlen", n)``: variable-length
    strings, at least ``n`` bytes (a count and one length per string). Raises ValueError for
    codecs sweeplab never writes, and for arrays declaring more than :data:`_MAX_MEMBER`.
    """
    codecs = [c.get("name") for c in meta["codecs"]]
    if codecs[1:] != ["zstd"] or codecs[0] not in ("bytes", "vlen-utf8"):
        raise ValueError(f"codecs {codecs}: sweeplab blocks are bytes or vlen-utf8, then zstd")
    count = int(np.prod([int(n) for n in chunk], dtype=object))
    if codecs[0] == "vlen-utf8":
        return "vlen", 4 + 4 * count
    nbytes = count * np.dtype(meta["data_type"]).itemsize
    if nbytes > _MAX_MEMBER:
        raise ValueError(f"a chunk of shape {list(chunk)} is {nbytes} bytes")
    return "exact", nbytes


def _check_frame(p: Path, member: str, raw: bytes, bound: tuple[str, int]) -> None:
    """Refuse a chunk whose zstd frame does not declare the size its array implies.

    Checked on the frame header before decompressing: a crafted frame declaring 2**40 bytes
    would otherwise be allocated in full by the decompressor.
    """
    kind, n = bound
    declared = _zstd_content_size(raw)
    if declared is None:
        raise CorruptBlockError(p, f"member {member} is not a zstd frame declaring its size")
    if kind == "exact" and declared != n:
        raise CorruptBlockError(
            p, f"member {member} declares {declared} bytes, its array's shape and type {n}"
        )
    if kind == "vlen" and not n <= declared <= _MAX_MEMBER:
        raise CorruptBlockError(
            p, f"member {member} declares {declared} bytes; its strings need {n} to "
            f"{_MAX_MEMBER}",
        )  # fmt: skip


def _check_members(p: Path, zf: zipfile.ZipFile) -> None:
    """Refuse a zip whose directory declares members sweeplab never writes, before any read.

    Blocks are written uncompressed (``ZIP_STORED``), so a member's bytes are its bytes on
    disk (no zip-level bomb); no member may declare more than :data:`_MAX_MEMBER` bytes, nor
    a metadata document more than :data:`_MAX_METADATA`.
    """
    for info in zf.infolist():
        if info.compress_type != zipfile.ZIP_STORED:
            raise CorruptBlockError(
                p, f"member {info.filename} is compressed (zip method {info.compress_type}); "
                "blocks are written uncompressed",
            )  # fmt: skip
        limit = _MAX_METADATA if info.filename.endswith("zarr.json") else _MAX_MEMBER
        if info.file_size > limit or info.compress_size != info.file_size:
            raise CorruptBlockError(
                p, f"member {info.filename} declares {info.file_size} bytes "
                f"({info.compress_size} stored); allowed: at most {limit}",
            )  # fmt: skip


def _decode(meta: Mapping[str, Any], raw: bytes) -> np.ndarray | None:
    """Decode one whole-array chunk with numcodecs; ``None`` for codecs we do not handle."""
    codecs = list(meta["codecs"])
    data: Any = raw
    for codec in reversed(codecs[1:]):
        if codec["name"] != "zstd":
            return None
        data = numcodecs.Zstd().decode(data)
    first = codecs[0]
    shape = tuple(meta["shape"])
    if first["name"] == "vlen-utf8":
        return np.asarray(numcodecs.VLenUTF8().decode(data), dtype=object).reshape(shape)
    if first["name"] != "bytes" or meta["data_type"] == "string":
        return None
    dtype = np.dtype(meta["data_type"])
    if dtype.itemsize > 1:
        endian = first.get("configuration", {}).get("endian", "little")
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _open_members(
    p: Path, experiment: str, expected: str, names: set[str] | None
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, tuple[str, ...]], set[str]]:
    """Read root attributes and the arrays ``names`` (all if None) of a block zip.

    With ``names=None`` every member is read in full, so every CRC is checked (a damaged
    member raises :class:`CorruptBlockError` naming it).

    Returns attrs, decoded arrays, dims of every array, and the arrays left for zarr to decode.
    """
    try:
        with zipfile.ZipFile(p) as zf:
            _check_members(p, zf)
            members = set(zf.namelist())
            root = json.loads(zf.read("zarr.json"))
            read = {"zarr.json"}
            attrs = dict(root.get("attributes", {}))
            if attrs.get("experiment") != experiment:
                got = attrs.get("experiment")
                raise CorruptBlockError(p, f"it holds a {got!r} block, not a {experiment!r} one")
            if attrs.get("block") != expected:
                raise CorruptBlockError(p, f"it holds block {attrs.get('block')!r}")
            if attrs.get("sweeplab_format") != FORMAT:
                raise CorruptBlockError(
                    p, f"format {attrs.get('sweeplab_format')!r} is not {FORMAT!r}"
                )
            metas = {
                k: m
                for k, m in root["consolidated_metadata"]["metadata"].items()
                if m.get("node_type") == "array"
            }
            arrays: dict[str, np.ndarray] = {}
            dims: dict[str, tuple[str, ...]] = {}
            left: set[str] = set()
            for key, meta in metas.items():
                dims[key] = tuple(meta.get("dimension_names") or ())
                if names is not None and key not in names:
                    continue
                chunk = meta["chunk_grid"]["configuration"]["chunk_shape"]
                try:
                    bound = _chunk_bound(meta, chunk)
                except ValueError as exc:
                    raise CorruptBlockError(p, f"array {key!r}: {exc}") from None
                ckey = _chunk_key(meta)
                if ckey is None or list(chunk) != list(meta["shape"]):
                    for member in sorted(members):  # zarr reads them: their frames first
                        if member.startswith(f"{key}/") and member != f"{key}/zarr.json":
                            _check_frame(p, member, zf.read(member), bound)
                    left.add(key)
                    continue
                if f"{key}/{ckey}" not in members:
                    raise CorruptBlockError(p, f"array {key!r} has no data (member missing)")
                member = zf.getinfo(f"{key}/{ckey}")
                read.add(member.filename)
                raw = zf.read(member)
                _check_frame(p, member.filename, raw, bound)
                decoded = _decode(meta, raw)
                if decoded is None:
                    left.add(key)
                    continue
                arrays[key] = decoded
            if names is None:  # every other member's CRC too (the metadata documents)
                for info in zf.infolist():
                    if info.filename not in read:
                        zf.read(info)  # a full read checks the member's CRC
    except CorruptBlockError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, RuntimeError,
            AttributeError, TypeError, MemoryError) as exc:  # fmt: skip
        raise CorruptBlockError(p, f"{type(exc).__name__}: {exc}") from None
    return attrs, arrays, dims, left


#: largest zip member a block may have (a block is written to memory whole: 1 GiB is far above
#: any block the planner makes, and far below what would exhaust a job's memory); also the
#: largest decoded chunk
_MAX_MEMBER = 1 << 30
#: largest metadata document (``zarr.json``) of a block: a few kB with the settings
_MAX_METADATA = 1 << 24


def read_block(path: str | os.PathLike[str], experiment: str, name: str | None = None) -> BlockData:
    """Read and verify a block store.

    Parameters
    ----------
    path : path
        The ``*.zarr.zip`` file.
    experiment : str
        The experiment the block must belong to.
    name : str, optional
        The block name it must hold (default: the file name without ``.zarr.zip``).

    Raises
    ------
    CorruptBlockError
        If the file is not a readable zip, a member is missing or fails its CRC, the content
        does not match its digest, or it belongs to another experiment or block.

    """
    p = Path(path)
    expected = name if name is not None else p.name.removesuffix(BLOCK_SUFFIX)
    # every member is read in full, which checks its CRC (the metadata documents included)
    attrs, arrays, dims, left = _open_members(p, experiment, expected, None)
    if left:
        arrays.update(_read_with_zarr(p, left))
    want = attrs.get("sweeplab_digest")
    if not want:
        raise CorruptBlockError(p, "it has no sweeplab_digest attribute")
    got = digest(arrays, dims)
    if got != want:
        raise CorruptBlockError(p, f"content digest {got[:19]}... differs from the recorded "
                                f"{str(want)[:19]}...")  # fmt: skip
    return BlockData(attrs, arrays, dims)


def read_point_table(path: str | os.PathLike[str], experiment: str) -> BlockData:
    """Read a block's point table only (:data:`POINT_TABLE`: keys, status, wall times, costs).

    The members read are checked by their zip CRC; the whole block's digest is checked when
    its values are aggregated or merged (:func:`read_block`).
    """
    p = Path(path)
    attrs, arrays, dims, left = _open_members(
        p, experiment, p.name.removesuffix(BLOCK_SUFFIX), set(POINT_TABLE)
    )
    if left:
        arrays.update(_read_with_zarr(p, left))
    missing = [n for n in POINT_TABLE if n not in arrays]
    if missing:
        raise CorruptBlockError(p, f"it has no {missing[0]!r} array")
    return BlockData(attrs, arrays, dims)


def _read_with_zarr(path: Path, names: set[str]) -> dict[str, np.ndarray]:
    import zarr
    from zarr.storage import ZipStore

    store = ZipStore(path, mode="r")
    try:
        group = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=True)
        return {n: np.asarray(group[n][...]) for n in names}
    except Exception as exc:
        raise CorruptBlockError(path, f"{type(exc).__name__}: {exc}") from None
    finally:
        store.close()


def open_block(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a block store with xarray (loaded into memory; the file is closed)."""
    import xarray as xr
    from zarr.storage import ZipStore

    store = ZipStore(Path(path), mode="r")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            return xr.open_zarr(store, consolidated=True, chunks=None).load()
    finally:
        store.close()
