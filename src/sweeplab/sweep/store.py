"""Zarr stores: provenance attributes, atomic directory writes, opening datasets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sweeplab

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "MANIFEST",
    "STALE_AGE",
    "DamagedStoreError",
    "check_aggregate_destination",
    "check_clear_of",
    "check_files",
    "check_writable",
    "file_digest",
    "file_table",
    "open_dataset",
    "provenance",
    "read_manifest",
    "recover_aside",
    "remove_own_temporaries",
    "remove_stale_temporaries",
    "settle_zarr_writes",
    "store_files",
    "swap_into_place",
    "temporary_name",
    "verify_aggregate",
    "write_atomic",
    "write_json",
]

logger = logging.getLogger(__name__)

#: the manifest file inside an aggregate store (written by :mod:`.aggregate`; defined here so
#: that the workflow can look for it without importing zarr and xarray)
MANIFEST = "sweeplab-manifest.json"


# --- the aggregate's file table: every file of the store, its size, mtime and digest ---------


class DamagedStoreError(ValueError):
    """An aggregate whose files are not those its manifest records (or that cannot be checked)."""

    def __init__(self, path: str | os.PathLike[str], problem: str, experiment: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(
            f"aggregate {self.path} is damaged or cannot be verified ({problem}); rebuild it "
            f"from the blocks: delete it and re-run `snakemake` (with your usual --configfile), "
            f"or run `sweeplab aggregate {experiment} --settings ... --blocks-dir ... "
            f"--out {self.path} --full`"
        )


def file_digest(path: str | os.PathLike[str]) -> str:
    """BLAKE2b-128 of a file's bytes (hex): the digest the manifest's file table records."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _walk_files(root: Path, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    with os.scandir(root / rel if rel else root) as entries:
        for entry in entries:
            if entry.name.startswith("."):  # temporaries: never read as zarr keys
                continue
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from _walk_files(root, name)
            elif name != MANIFEST:
                yield name, entry.stat()


def store_files(root: str | os.PathLike[str]) -> dict[str, os.stat_result]:
    """Every file of the store ``root`` but its manifest and dot files: relative path -> stat."""
    return dict(_walk_files(Path(root)))


def file_table(
    root: str | os.PathLike[str],
    previous: Mapping[str, Any] | None = None,
    linked_from: str | os.PathLike[str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, list[Any]]:
    """Return the file table of the store ``root``: relative path -> [size, mtime_ns, digest].

    ``root`` may be a hard-linked copy of the store ``linked_from`` whose table is
    ``previous`` (an update): a file that is still the same file there (same inode, size and
    mtime as recorded) keeps its entry; every other file is read and digested. Files written
    anew always have another inode (the old store still holds the old one), so a rewrite is
    never mistaken for a kept file, whatever the clock's resolution. ``aliases`` maps a path
    of ``root`` to the path of ``linked_from`` it was linked from, where they differ (a new
    version's chunk key).
    """
    root = Path(root)
    previous = previous or {}
    aliases = aliases or {}
    table: dict[str, list[Any]] = {}
    for rel, st in sorted(store_files(root).items()):
        source = aliases.get(rel, rel)
        old = previous.get(source)
        if (
            linked_from is not None
            and isinstance(old, list)
            and old[:2] == [st.st_size, st.st_mtime_ns]
            and _same_file(Path(linked_from) / source, st)
        ):
            table[rel] = list(old)
        else:
            table[rel] = [st.st_size, st.st_mtime_ns, file_digest(root / rel)]
    return table


def _same_file(path: Path, st: os.stat_result) -> bool:
    try:
        other = path.stat()
    except OSError:
        return False
    return (other.st_ino, other.st_dev) == (st.st_ino, st.st_dev)


def check_files(
    root: str | os.PathLike[str], table: Mapping[str, Any], *, digests: bool
) -> str | None:
    """Return the first difference between the store ``root`` and its file ``table``, or None.

    Every recorded file must exist with its recorded size, and no other file may be there. A
    file's digest is checked when its mtime differs from the recorded one, and for every file
    with ``digests`` (a full read of the store).
    """
    root = Path(root)
    found = store_files(root)
    for rel in sorted(table):
        entry = table[rel]
        if not (isinstance(entry, list) and len(entry) == 3):
            return f"its manifest's entry of {rel} is unreadable"
        size, mtime, digest = entry
        st = found.get(rel)
        if st is None:
            return f"{rel} is missing"
        if st.st_size != size:
            return f"{rel} has {st.st_size} bytes, not the recorded {size}"
        if (digests or st.st_mtime_ns != mtime) and file_digest(root / rel) != digest:
            return f"{rel} differs from its recorded digest"
    extra = sorted(set(found) - set(table))
    if extra:
        return f"{extra[0]} is not one of its recorded files"
    return None


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Return the manifest of the aggregate ``root`` (None if it has none or it is unreadable)."""
    try:
        doc = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def verify_aggregate(
    root: str | os.PathLike[str], manifest: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Check every file of the aggregate ``root`` against its manifest (presence, size, digest).

    Returns the manifest checked against (read from ``root`` unless given).

    Raises
    ------
    DamagedStoreError
        One line naming the store, the first bad file (or why it cannot be verified: no
        manifest, or one written before manifests recorded the files) and the commands that
        rebuild it.

    """
    root = Path(root)
    experiment = root.name.removesuffix(".zarr") or "<experiment>"
    doc = dict(manifest) if manifest is not None else read_manifest(root)
    if doc is None:
        why = "missing" if not (root / MANIFEST).exists() else "unreadable"
        raise DamagedStoreError(root, f"its {MANIFEST} is {why}", experiment)
    if isinstance(doc.get("experiment"), str) and doc["experiment"]:
        experiment = doc["experiment"]
    table = doc.get("files")
    if not isinstance(table, dict):
        raise DamagedStoreError(
            root, f"its {MANIFEST} predates the file table (sweeplab before file digests)",
            experiment,
        )  # fmt: skip
    problem = check_files(root, table, digests=True)
    if problem is not None:
        raise DamagedStoreError(root, problem, experiment)
    return doc


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


#: A temporary untouched for this long (seconds) is stale whoever wrote it: the only way to
#: clean up after a writer that died on another node of a shared file system (whose pid means
#: nothing here). No sweeplab write takes that long.
STALE_AGE = 24 * 3600.0


def _host_tag() -> str:
    """Return the host name as temporary names carry it (letters, digits, ``.``, ``_``, ``-``)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64]
    return host or "localhost"


def _temporary_owner(name: str) -> tuple[str | None, int | None]:
    """(host, pid) that a temporary's name records; host None for the old ``tmp-<pid>-`` form.

    pid is None when the name records none (not a temporary of ours).
    """
    rest = name.rsplit(".tmp-", 1)[1]
    host, sep, rest = rest.rpartition("@")
    pid_text = rest.split("-", 1)[0]
    if not pid_text.isdigit():
        return (host if sep else None), None
    return (host if sep else None), int(pid_text)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(target: Path, *, max_age: float = STALE_AGE) -> None:
    """Delete the stale temporaries ``.<target>.tmp-*`` left beside ``target`` by other writers.

    A temporary ``.<target>.tmp-<host>@<pid>-<rand>`` (see :func:`temporary_name`) is stale
    when ``host`` is this host and process ``pid`` is gone. On a shared file system a writer on
    another node is never judged by its pid (it means nothing here): its temporary is stale only
    once it has not been modified for ``max_age`` seconds (default :data:`STALE_AGE`, 24 h),
    which is also the rule for any other ``.tmp-`` name. Names of the older form
    ``.<target>.tmp-<pid>-<rand>`` (no host) are judged by their pid on this host, as before.
    A temporary of a writer that is still running (a duplicate Slurm attempt, a ``--nolock``
    run) is left alone.
    """
    now = time.time()
    here = _host_tag()
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        host, pid = _temporary_owner(stale.name)
        if pid is not None and host in (None, here):
            if not _pid_alive(pid):
                _remove(stale)
            continue
        try:
            age = now - stale.lstat().st_mtime
        except FileNotFoundError:
            continue
        if age > max_age:
            _remove(stale)


def remove_own_temporaries(target: Path) -> None:
    """Delete this process's temporaries of ``target`` (after a write of it failed)."""
    prefix = f".{target.name}.tmp-{_host_tag()}@{os.getpid()}-"
    for mine in target.parent.glob(f".{target.name}.tmp-*"):
        if mine.name.startswith(prefix):
            _remove(mine)


def settle_zarr_writes(timeout: float = 30.0) -> None:
    """Wait until the writes zarr still runs in the background have ended (at most ``timeout``).

    When one of many concurrent chunk writes fails (disk full, read-only), zarr raises at once
    while the others go on in its I/O thread and may create files after the caller cleaned up.
    Call this before removing a failed write's temporaries.
    """
    sync = sys.modules.get("zarr.core.sync")
    loop = sync.loop[0] if sync is not None else None
    if loop is None or not loop.is_running():
        return

    async def drain() -> None:
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    try:
        asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout + 5)
    except Exception as exc:  # best effort: the caller's error matters more
        logger.debug("could not wait for zarr's pending writes: %s", exc)


def temporary_name(target: Path) -> Path:
    """Return a unique temporary sibling of ``target`` naming this host and process.

    ``.<target>.tmp-<host>@<pid>-<rand>``: :func:`remove_stale_temporaries` of any process
    knows whose it is (on a shared file system, several hosts write beside each other).
    """
    tag = f"{_host_tag()}@{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return target.with_name(f".{target.name}.tmp-{tag}")


def check_clear_of(dest: Path, what: str, path: Path, *, inside: bool, advice: str) -> None:
    """Refuse a destination ``dest`` that is ``path``, contains it, or (``inside``) lies in it.

    Writing a store replaces whatever is at its destination: one that is or contains a
    directory to keep (the results, the blocks, the working directory) would delete it.

    Raises
    ------
    ValueError
        ``"<dest> is|contains|is inside <what> <path>; <advice>"``.

    """
    resolved, keep = Path(dest).resolve(), Path(path).resolve()
    if resolved == keep:
        raise ValueError(f"{dest} is {what} {path}; {advice}")
    if resolved in keep.parents:
        raise ValueError(f"{dest} contains {what} {path}; {advice}")
    if inside and keep in resolved.parents:
        raise ValueError(f"{dest} is inside {what} {path}; {advice}")


def _aggregate_experiment(path: Path) -> str | None:
    """Return the experiment of the aggregate at ``path`` (its manifest's, else its attribute).

    None if ``path`` is not a sweeplab aggregate. An empty directory counts as one of any
    experiment (``""``): replacing it loses nothing.
    """
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return ""
    for name in entries:  # an aggregate holds zarr nodes and its manifest, nothing else
        child = path / name
        if child.is_symlink():
            return None
        if name not in ("zarr.json", MANIFEST) and not (child / "zarr.json").is_file():
            return None
    for name, key in ((MANIFEST, ("experiment",)), ("zarr.json", ("attributes", "experiment"))):
        try:
            doc: Any = json.loads((path / name).read_text())
            for k in key:
                doc = doc[k]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(doc, str):
            return doc
    return None


def check_aggregate_destination(
    out: Path, experiment: str, blocks_dir: Path, cwd: Path | None = None
) -> None:
    """Refuse an aggregate destination ``out`` whose replacement would delete something else.

    ``out`` may be absent, an empty directory, or an aggregate of ``experiment`` (a directory
    of zarr nodes whose manifest, or else root ``experiment`` attribute, names it). Refused:
    a symbolic link; anything else that exists (a user's file or directory, a block file,
    another experiment's aggregate); the blocks directory (``blocks_dir``, or its parent when
    that is the ``blocks`` directory of all experiments), anything in it and any of its
    ancestors (the results directory among them); the working directory ``cwd`` and its
    ancestors.

    Raises
    ------
    ValueError
        One line naming ``out`` and why it is refused.

    """
    out = Path(out)
    blocks_dir = Path(blocks_dir)
    blocks = blocks_dir.parent if blocks_dir.parent.name == "blocks" else blocks_dir
    advice = "give the aggregate its own path, e.g. results/<experiment>.zarr"
    if out.is_symlink():
        raise ValueError(f"--out {out} is a symbolic link; give the real path")
    try:
        check_clear_of(out, "the blocks directory", blocks, inside=True, advice=advice)
        check_clear_of(out, "the working directory", Path.cwd() if cwd is None else cwd,
                       inside=False, advice=advice)  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"--out {exc}") from None
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise ValueError(
            f"--out {out} exists and is not an aggregate (not a directory); refusing to replace it"
        )
    found = _aggregate_experiment(out)
    if found is None:
        raise ValueError(
            f"--out {out} exists and is not a sweeplab aggregate; refusing to replace it "
            "(allowed: a new path, an empty directory or this experiment's aggregate)"
        )
    if found and found != experiment:
        raise ValueError(
            f"--out {out} is the aggregate of {found!r}, not of {experiment!r}; refusing to "
            "replace it"
        )


def check_writable(directory: Path) -> None:
    """Check that a file can be written in ``directory`` (or, if absent, its nearest ancestor).

    Writes and deletes a small probe file (a temporary of ``directory``), so a read-only or
    full file system is found before any work that would then be lost.

    Raises
    ------
    OSError
        With the probe's or the directory's path as ``filename``.

    """
    here = Path(directory)
    while not here.exists() and here != here.parent:
        here = here.parent
    probe = temporary_name(here / "sweeplab-write-probe")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def write_json(path: Path, content: Any) -> None:
    """Write ``content`` to ``path`` as JSON, in a new file moved into place.

    Never modified in place: a hard-linked original (the live store's, under copy-on-write)
    keeps its own content, and a reader never sees a half-written file.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(content, sort_keys=True))
    os.replace(tmp, path)


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
    except BaseException:
        settle_zarr_writes()  # else zarr's other writes may recreate files in tmp after rmtree
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def open_dataset(path: str | os.PathLike[str], **kwargs: Any) -> xr.Dataset:
    """Open a sweeplab zarr store (lazily) with xarray.

    ``kwargs`` go to :func:`xarray.open_zarr`; by default its arrays are dask arrays in the
    store's chunks, with ``chunks=None`` lazily loaded numpy arrays (no dask).
    """
    import xarray as xr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        return xr.open_zarr(path, consolidated=True, **kwargs)
