"""Export an aggregated dataset for sharing: a directory store, a ``.zarr.zip``, or object storage.

Every export is a self-contained, consolidated zarr v3 store that plain ``xarray.open_zarr``
opens without sweeplab. The source aggregate is verified first, every file against its
manifest's file table (presence, size, digest; :func:`~sweeplab.sweep.store.verify_aggregate`):
a damaged store is refused, naming the file and the command that rebuilds it, and nothing is
written. :func:`export_dataset` never deletes or overwrites anything but a
sweeplab store, and only when asked to (``force``):

- An existing destination is refused. With ``force`` it is replaced only if it is a sweeplab
  store: its root ``zarr.json`` is a zarr v3 group whose attributes hold sweeplab's provenance
  (``sweeplab_version``, ``git_revision``; see :func:`sweeplab.sweep.store.provenance`) and it
  holds nothing but zarr nodes (and an aggregate's ``sweeplab-manifest.json``).
- A destination equal to, inside, or containing the results directory of the source (the
  source's parent) is refused, as is a symbolic link.
- Local stores are written under a temporary sibling name and swapped into place
  (:func:`~sweeplab.sweep.store.write_atomic`, :func:`os.replace` for a zip), so a reader sees
  the old store or the complete new one; temporaries are removed on failure.
- Object storage (``s3://bucket/prefix/NAME.zarr``, any fsspec URL) has no rename. The store is
  written to a local temporary directory, its objects are uploaded, and the root ``zarr.json``
  (which carries the consolidated metadata) is uploaded **last**: until that single PUT, the
  prefix is not a zarr store at all, so a reader never opens a half-written store as complete.
  A failed upload deletes the objects it wrote. A forced replacement deletes the old root
  ``zarr.json`` first (the old store disappears as a whole), then the old store's other
  objects, then uploads the new one: in between readers find no store, never a mix.
  Endpoint and credentials come from the usual fsspec/s3fs/botocore configuration
  (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``,
  ``~/.aws``, ``FSSPEC_S3_*``) or from ``storage_options``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import xarray as xr

from .store import (
    DamagedStoreError,
    check_clear_of,
    check_files,
    open_dataset,
    read_manifest,
    remove_stale_temporaries,
    temporary_name,
    verify_aggregate,
    write_atomic,
)

__all__ = ["PROVENANCE_KEYS", "export_dataset", "is_sweeplab_metadata"]

logger = logging.getLogger(__name__)

#: Root attributes that mark a zarr store as written by sweeplab (see ``store.provenance``).
PROVENANCE_KEYS = ("sweeplab_version", "git_revision")
#: Files other than zarr nodes that a sweeplab store may hold at its top level.
_OWN_FILES = ("zarr.json", "sweeplab-manifest.json")
_UPLOAD_THREADS = 8


def is_sweeplab_metadata(meta: bytes | str | None) -> bool:
    """Whether ``meta``, the text of a root ``zarr.json``, is a sweeplab zarr v3 group.

    Parameters
    ----------
    meta : bytes or str or None
        Contents of the store's root ``zarr.json`` (None: there is none).

    Returns
    -------
    bool
        True for a zarr v3 group whose attributes hold every key of :data:`PROVENANCE_KEYS`.

    """
    if meta is None:
        return False
    try:
        doc = json.loads(meta)
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(doc, dict) or doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        return False
    attrs = doc.get("attributes")
    return isinstance(attrs, dict) and all(attrs.get(k) for k in PROVENANCE_KEYS)


def _foreign_entry(relpaths: Iterable[str]) -> str | None:
    """Return the first of a store's paths (``/``-separated) that is no part of a zarr store.

    A top-level entry is either one of :data:`_OWN_FILES` or a directory holding a ``zarr.json``
    (an array or group). Directories are given with a trailing ``/``. None if all are.
    """
    paths = sorted(relpaths)
    nodes = {p.split("/", 1)[0] for p in paths if p.count("/") == 1 and p.endswith("/zarr.json")}
    for p in paths:
        top, sep, _ = p.partition("/")
        if (not sep and top not in _OWN_FILES) or (sep and top not in nodes):
            return p
    return None


def _local_entries(root: Path) -> list[str]:
    """Every file and directory below ``root`` (directories with a trailing ``/``).

    Raises
    ------
    ValueError
        If the tree holds a symbolic link (replacing it could delete what the link points to).

    """
    out = []
    for here, dirs, files in os.walk(root):
        rel = Path(here).relative_to(root)
        for name in dirs + files:
            path = Path(here, name)
            if path.is_symlink():
                raise ValueError(f"{root} holds a symbolic link ({path}); refusing to replace it")
            out.append((rel / name).as_posix() + ("/" if name in dirs else ""))
    return out


def _not_sweeplab(dest: object, why: str = "") -> ValueError:
    return ValueError(
        f"{dest} exists and is not a sweeplab store{why}; refusing to replace it, even with --force"
    )


def _exists_error(dest: object, what: str = "already exists") -> FileExistsError:
    return FileExistsError(
        f"{dest} {what}; pass --force (force=True) to replace it if it is a sweeplab store"
    )


def _check_replaceable_local(dest: Path, zip_dest: bool) -> None:
    """Raise unless ``dest`` (which exists) is a sweeplab store of the requested kind."""
    if zip_dest:
        if not dest.is_file() or not zipfile.is_zipfile(dest):
            raise _not_sweeplab(dest, " (not a zip file)")
        try:
            with zipfile.ZipFile(dest) as zf:
                names = zf.namelist()
                meta = zf.read("zarr.json") if "zarr.json" in names else None
        except zipfile.BadZipFile as exc:
            raise _not_sweeplab(dest, f" (a damaged zip file: {exc})") from None
        if not is_sweeplab_metadata(meta):
            raise _not_sweeplab(dest, " (no sweeplab provenance in its zarr.json)")
    else:
        if not dest.is_dir():
            raise _not_sweeplab(dest, " (not a directory)")
        meta_path = dest / "zarr.json"
        meta = meta_path.read_bytes() if meta_path.is_file() else None
        if not is_sweeplab_metadata(meta):
            raise _not_sweeplab(dest, " (no sweeplab provenance in its zarr.json)")
        names = _local_entries(dest)
    foreign = _foreign_entry(names)
    if foreign is not None:
        raise ValueError(
            f"{dest} is a sweeplab store but also holds {foreign}, which is not part of a zarr "
            "store; refusing to replace it"
        )


def _check_local_dest(dest: Path, src: Path, force: bool) -> None:
    """Refuse a local ``dest`` that is unsafe to write (see the module docstring)."""
    if dest.is_symlink():
        raise ValueError(f"{dest} is a symbolic link; give the real path")
    if dest.resolve() == src.resolve():
        raise ValueError(f"{dest} is the dataset being exported")
    check_clear_of(
        dest, "the results directory", src.parent, inside=True, advice="export elsewhere"
    )
    ancestor = dest.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"cannot create {dest}: {ancestor} is not a directory")
    if os.path.lexists(dest):
        if not force:
            raise _exists_error(dest)
        _check_replaceable_local(dest, dest.name.endswith(".zip"))


def _to_zarr(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` as a new consolidated zarr v3 directory store at ``path``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.to_zarr(path, mode="w-", zarr_format=3, consolidated=True)


def _store_files(root: Path) -> list[Path]:
    return [f for f in sorted(root.rglob("*")) if f.is_file()]


def _write_zip(ds: xr.Dataset, dest: Path) -> None:
    """Write ``ds`` as a one-file zip store at ``dest`` (replacing it), leaving no temporaries."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    tmpzip = temporary_name(dest)
    tmpdir = tmpzip.with_name(tmpzip.name + ".d")
    try:
        _to_zarr(ds, tmpdir)
        with zipfile.ZipFile(tmpzip, "w", compression=zipfile.ZIP_STORED) as zf:
            for f in _store_files(tmpdir):
                zf.write(f, f.relative_to(tmpdir).as_posix())
        os.replace(tmpzip, dest)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
        tmpzip.unlink(missing_ok=True)


def _export_local(ds: xr.Dataset, dest: Path) -> None:
    if dest.name.endswith(".zip"):
        _write_zip(ds, dest)
    else:
        write_atomic(ds, dest)


def _remote_fs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except ImportError as exc:
        hint = " (pip install 'sweeplab[s3]')" if url.startswith("s3") else ""
        raise ValueError(f"cannot write {url}: {exc}{hint}") from None
    except ValueError as exc:  # "Protocol not known: ..."
        raise ValueError(f"cannot write {url}: {exc}") from None
    path = path.rstrip("/")
    if "/" not in path:
        raise ValueError(
            f"{url}: give a prefix inside the bucket, e.g. {url.rstrip('/')}/NAME.zarr"
        )
    if path.endswith(".zip"):
        raise ValueError(f"{url}: object storage takes a directory store (NAME.zarr), not a zip")
    return fs, path


def _check_remote_dest(fs: Any, url: str, path: str, force: bool) -> list[str]:
    """Refuse an occupied ``path`` unless ``force`` and it is a sweeplab store; return its keys."""
    fs.invalidate_cache()
    keys = list(fs.find(path))
    if not keys:
        return []
    if not force:
        raise _exists_error(url, f"already holds {len(keys)} object(s)")
    prefix = path + "/"
    if any(not k.startswith(prefix) for k in keys):
        raise _not_sweeplab(url, f" ({path} is an object, not a store)")
    rel = [k[len(prefix) :] for k in keys]
    meta = fs.cat_file(prefix + "zarr.json") if "zarr.json" in rel else None
    if not is_sweeplab_metadata(meta):
        raise _not_sweeplab(url, " (no sweeplab provenance in its zarr.json)")
    foreign = _foreign_entry(rel)
    if foreign is not None:
        raise ValueError(
            f"{url} is a sweeplab store but also holds {foreign}, which is not part of a zarr "
            "store; refusing to replace it"
        )
    return keys


def _upload(fs: Any, pairs: list[tuple[str, str]]) -> None:
    """Upload (local, remote) file pairs concurrently.

    On the first failure the pending uploads are cancelled and the running ones awaited (the
    pool's exit), so nothing is still being written when the caller cleans up.
    """
    with ThreadPoolExecutor(_UPLOAD_THREADS) as pool:
        futures = [pool.submit(fs.put_file, lpath, rpath) for lpath, rpath in pairs]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


@contextmanager
def _remote_errors(url: str) -> Iterator[None]:
    """Turn a storage backend's own exceptions (botocore's, aiohttp's, ...) into OSError.

    s3fs maps the common S3 errors to OSError subclasses already; credentials and connection
    errors (``NoCredentialsError``, ``EndpointConnectionError``) it lets through.
    """
    try:
        yield
    except (OSError, ValueError):
        raise
    except Exception as exc:
        raise OSError(f"cannot write {url}: {type(exc).__name__}: {exc}") from exc


def _write_remote(ds: xr.Dataset, fs: Any, path: str, url: str, old: list[str]) -> None:
    """Write ``ds`` at ``path`` of ``fs``, deleting the checked sweeplab store ``old`` first."""
    with tempfile.TemporaryDirectory(prefix="sweeplab-export-") as tmp:
        local = Path(tmp) / "store.zarr"
        _to_zarr(ds, local)
        root_meta = local / "zarr.json"
        pairs = [
            (str(f), f"{path}/{f.relative_to(local).as_posix()}")
            for f in _store_files(local)
            if f != root_meta
        ]
        if old:
            logger.info("replacing the sweeplab store at %s (%d objects)", url, len(old))
            fs.rm_file(f"{path}/zarr.json")  # from here on the old store is gone as a whole
            rest = [k for k in old if k != f"{path}/zarr.json"]
            if rest:
                fs.rm(rest)
        try:
            _upload(fs, pairs)
            fs.put_file(str(root_meta), f"{path}/zarr.json")  # last: the store is now complete
        except BaseException:
            try:
                fs.rm([r for _, r in pairs] + [f"{path}/zarr.json"])
            except Exception as exc:  # the original error matters more
                logger.warning("could not remove the partial upload at %s: %s", url, exc)
            raise
        finally:
            fs.invalidate_cache(path)


def _missing_source(src: Path) -> FileNotFoundError:
    results = src.parent
    if not results.is_dir():
        return FileNotFoundError(
            f"no results directory {results}; run the workflow first (or pass --results)"
        )
    names = sorted(
        p.name.removesuffix(".zarr") for p in results.glob("*.zarr") if (p / "zarr.json").is_file()
    )
    available = ", ".join(names) if names else "none (run the workflow first)"
    return FileNotFoundError(
        f"no dataset {src.name.removesuffix('.zarr')!r} in {results}; available: {available}"
    )


def export_dataset(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    force: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Copy the dataset ``src`` to ``dest`` as a self-contained consolidated zarr v3 store.

    Parameters
    ----------
    src : path
        An aggregated dataset, ``<results>/<name>.zarr``. Its parent is the results directory,
        which ``dest`` may not be, lie in, or contain.
    dest : path or str
        A directory store path, a ``*.zip`` path (one-file store), or an fsspec URL such as
        ``s3://bucket/prefix/<name>.zarr`` (a directory-style store in object storage).
    force : bool
        Replace ``dest`` if, and only if, it is a sweeplab store (see the module docstring).
    storage_options : mapping, optional
        fsspec options of a URL ``dest`` (endpoint_url, key, secret, ...); by default the
        environment / fsspec configuration.

    Returns
    -------
    str
        ``dest`` as written (a path or the URL).

    Raises
    ------
    FileNotFoundError
        If ``src`` does not exist (the message lists the datasets that do).
    FileExistsError
        If ``dest`` exists and ``force`` is false.
    ValueError
        If ``dest`` is unsafe (the results directory, a symbolic link, not a sweeplab store
        under ``force``, a bucket without prefix, ...) or ``src`` is not a readable store.
    DamagedStoreError
        (a ValueError) If a file of ``src`` is not the one its manifest records, or ``src``
        has no manifest with a file table; the message names the rebuild command.
    OSError
        If writing fails (disk full, permissions, missing bucket); nothing is left behind.

    """
    src = Path(src)
    dest_text = str(dest)
    remote = isinstance(dest, str) and "://" in dest and not dest.startswith("file://")
    if not src.is_dir():
        raise _missing_source(src)
    if remote:
        fs, path = _remote_fs(dest_text, storage_options)
        with _remote_errors(dest_text):
            old = _check_remote_dest(fs, dest_text, path, force)
    else:
        local = Path(os.path.abspath(dest_text.removeprefix("file://")))
        _check_local_dest(local, src, force)
    manifest = verify_aggregate(src)  # every file's digest: a damaged store is not shipped
    try:
        # numpy, not dask: a dask load would go to whatever default scheduler the process has
        # (a distributed Client left behind by a closed cluster made it wait forever)
        ds = open_dataset(src, chunks=None).load()
    except Exception as exc:
        raise ValueError(f"{src} is not a readable zarr store ({exc})") from None
    # replaced or changed while it was read (an aggregate ran): what was read is not verified
    problem = "it changed while it was read" if read_manifest(src) != manifest else None
    problem = problem or check_files(src, manifest["files"], digests=False)
    if problem is not None:
        raise DamagedStoreError(src, problem, str(manifest.get("experiment")))
    name = src.name.removesuffix(".zarr")
    ds.attrs["README"] = (
        f"sweeplab {name} dataset (sweeplab {ds.attrs.get('sweeplab_version', '?')}). Open with "
        "xarray.open_zarr(path). Every variable has units and long_name attributes; 'status' is 1 "
        "where a point failed ('error' holds its message); 'config' holds the sweep settings."
    )
    if remote:
        with _remote_errors(dest_text):
            _write_remote(ds, fs, path, dest_text, old)
    else:
        _export_local(ds, local)
    logger.info("exported %s to %s", src, dest_text)
    return dest_text
