"""Merge the blocks of another results directory (or an archive of one) into this one.

A block file is content-named (a hash of its points' keys), so a block computed elsewhere -- on
another cluster, by a colleague -- can join ``results/blocks/<experiment>/`` under its own name,
and the planner then counts its points as done: ``snakemake`` aggregates them without computing
them again.

:func:`merge_blocks` validates everything before it writes anything:

- every source block is read and verified (:func:`~.blockstore.read_block`: zip CRCs, content
  digest, experiment and block name; every point key recomputed from the block's parameters and
  recorded settings), and must belong to the experiment directory it is under;
- a block whose points are all held here already (successful records with the same keys, or the
  same file with identical content) is skipped;
- a point held here (or by another source block) successfully with different values is a
  conflict, refused naming both files.

Then each block is copied to a temporary sibling of its destination, and all are renamed into
place at the end (if a copy fails, the temporaries are removed): a failed merge writes nothing,
and merging the same source twice is a no-op.
"""

from __future__ import annotations

import filecmp
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from .aggregate import compare_records, verify_keys
from .blockstore import BLOCK_SUFFIX, BlockData, CorruptBlockError, read_block
from .experiments import REGISTRY, Experiment, get
from .identity import KEY_BYTES, raw_keys
from .ledger import Ledger
from .store import temporary_name

__all__ = ["ARCHIVE_SUFFIXES", "MergeError", "MergeReport", "merge_blocks"]

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
BLOCK_FILE = re.compile(r"b[0-9a-f]{24}" + re.escape(BLOCK_SUFFIX))
KEY = f"S{KEY_BYTES}"


class MergeError(ValueError):
    """A merge refused (nothing written): the message names the file(s) and the reason."""


@dataclass
class MergeReport:
    """What a merge did (or would do) for one experiment.

    Attributes
    ----------
    merged : list of str
        Block names brought in.
    skipped : list of str
        Source blocks whose points are all here already.
    other_version : list of str
        Source blocks computed by another version of the experiment (not merged: their points
        are not this version's).
    replaced : list of str
        Merged blocks that replace a local file of the same name holding fewer successful
        points (e.g. failed here, successful there).
    new_points : int
        Distinct points the merged blocks add successful records of.

    """

    experiment: str
    merged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    other_version: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    new_points: int = 0


# --- the source ------------------------------------------------------------------------------
def _is_archive(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith(ARCHIVE_SUFFIXES) and not name.endswith(BLOCK_SUFFIX)


def _safe_member(archive: Path, name: str) -> None:
    """Refuse an archive member whose path is absolute or climbs out (``..``)."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", name):
        raise MergeError(f"archive {archive}: member {name!r} has an unsafe path; nothing merged")


def _extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest`` (paths checked; tar members through the data filter)."""
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _safe_member(archive, info.filename)
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    _safe_member(archive, m.name)
                tf.extractall(dest, members=members, filter="data")
    except MergeError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise MergeError(
            f"archive {archive}: cannot be extracted ({exc}); nothing merged"
        ) from None


def _holds_blocks(d: Path) -> bool:
    """Tell whether ``d`` is a blocks tree (an experiment's directory in it holds blocks)."""
    return any(
        (d / name).is_dir() and any((d / name).glob(f"*{BLOCK_SUFFIX}")) for name in REGISTRY
    )


def _find_tree(root: Path, depth: int = 3) -> Path | None:
    """Return the blocks tree in ``root``: ``root/blocks``, ``root`` or a single subdirectory's."""
    for cand in (root / "blocks", root):
        if cand.is_dir() and _holds_blocks(cand):
            return cand
    if depth:
        subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if len(subdirs) == 1:
            return _find_tree(subdirs[0], depth - 1)
    return None


@contextmanager
def _source_tree(src: Path) -> Iterator[Path | None]:
    """Yield the blocks tree of ``src`` (a directory or an archive, extracted to a temp dir)."""
    if _is_archive(src):
        with tempfile.TemporaryDirectory(prefix="sweeplab-merge-") as tmp:
            _extract(src, Path(tmp))
            yield _find_tree(Path(tmp))
        return
    if src.name.endswith(BLOCK_SUFFIX):
        raise MergeError(f"{src} is one block file; give the results or blocks directory "
                         "holding it (SRC/blocks/<experiment>/) or an archive of one")  # fmt: skip
    if not src.exists():
        raise MergeError(f"{src} does not exist")
    if not src.is_dir():
        raise MergeError(f"{src} is neither a directory nor a .tar, .tar.gz, .tgz or .zip archive")
    yield _find_tree(src)


# --- validation ------------------------------------------------------------------------------
@dataclass(eq=False)
class _Source:
    """A verified source block."""

    path: Path
    name: str
    data: BlockData
    keys: np.ndarray  # raw S16
    status: np.ndarray


def _source_blocks(tree: Path) -> dict[str, list[Path]]:
    """Map each experiment to its block files in ``tree``; refuse a stray block by name."""
    out: dict[str, list[Path]] = {}
    for entry in sorted(tree.iterdir()):
        if entry.name.startswith("."):
            continue  # .ledger.npz, temporaries
        if entry.is_file() and entry.name.endswith(BLOCK_SUFFIX):
            raise MergeError(f"block {entry} is not under an experiment directory "
                             f"({', '.join(REGISTRY)}); nothing merged")  # fmt: skip
        if not entry.is_dir():
            continue
        files = sorted(p for p in entry.iterdir()
                       if p.name.endswith(BLOCK_SUFFIX) and not p.name.startswith("."))  # fmt: skip
        if not files:
            continue
        if entry.name not in REGISTRY:
            raise MergeError(f"{entry} holds blocks but is not an experiment directory "
                             f"({', '.join(REGISTRY)}); nothing merged")  # fmt: skip
        for p in files:
            if not BLOCK_FILE.fullmatch(p.name):
                raise MergeError(
                    f"block {p}: its name is not a block name (b + 24 hex digits + "
                    f"{BLOCK_SUFFIX}); nothing merged"
                )
        out[entry.name] = files
    return out


def _check_zip(path: Path) -> str | None:
    """Return the ``experiment`` attribute of a block zip after checking every member's CRC.

    :func:`~.blockstore.read_block` checks the members it reads; a copy from elsewhere gets
    every member checked (the per-array metadata too). ``None`` if the zip cannot be read
    (``read_block`` then names the problem).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise MergeError(f"block {path} is damaged (member {bad!r} fails its CRC check); "
                                 "nothing merged")  # fmt: skip
            return json.loads(zf.read("zarr.json")).get("attributes", {}).get("experiment")
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, AttributeError, EOFError) as exc:
        if isinstance(exc, MergeError):
            raise
        return None


def _reason(exc: CorruptBlockError) -> str:
    text = str(exc)
    match = re.search(r" is corrupt \((.*)\); delete it", text, flags=re.S)
    return match.group(1) if match else text


def _verify(exp: Experiment, path: Path) -> _Source | None:
    """Read and verify a source block (``None``: computed by another version)."""
    other = _check_zip(path)
    if other is not None and other != exp.name:
        raise MergeError(f"block {path} is a {other!r} block under the {exp.name!r} directory; "
                         "nothing merged")  # fmt: skip
    try:
        data = read_block(path, exp.name)
        version = data.attrs.get("version")
        if version is not None and version != exp.version:
            logger.warning("%s: computed by %s version %s, this is version %s: not merged",
                           path, exp.name, version, exp.version)  # fmt: skip
            return None
        verify_keys(exp, data, path)
    except CorruptBlockError as exc:
        raise MergeError(f"block {path} is damaged ({_reason(exc)}); nothing merged") from None
    return _Source(path, path.name.removesuffix(BLOCK_SUFFIX), data, raw_keys(data.arrays["key"]),
                   np.asarray(data.arrays["status"]))  # fmt: skip


def _key_bytes(raw: np.ndarray) -> list[bytes]:
    """Return each raw key as its 16 bytes (``tolist`` would strip trailing zero bytes)."""
    data = np.ascontiguousarray(raw, dtype=KEY).tobytes()
    return [data[i : i + KEY_BYTES] for i in range(0, len(data), KEY_BYTES)]


class _Blocks:
    """Blocks read on demand, a few kept (with the row of each key), so memory stays bounded."""

    def __init__(self, experiment: str, keep: int = 8) -> None:
        self.experiment = experiment
        self.keep = keep
        self._cache: OrderedDict[Path, tuple[BlockData, dict[bytes, int]]] = OrderedDict()

    def get(self, path: Path) -> tuple[BlockData, dict[bytes, int]]:
        """Return the block at ``path`` and the row of each of its keys."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        data = read_block(path, self.experiment)
        rows = {k: i for i, k in enumerate(_key_bytes(raw_keys(data.arrays["key"])))}
        self._cache[path] = data, rows
        if len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return data, rows


def _plan_experiment(
    exp: Experiment, files: list[Path], dest: Path
) -> tuple[MergeReport, list[Path]]:
    """Verify one experiment's source blocks against ``dest``; return the report and the copies.

    Each source block is read, verified and compared in turn (then let go); the local blocks it
    is compared with are read on demand.
    """
    report = MergeReport(exp.name)
    ledger = Ledger.load(dest, exp.name, save=False)
    blocks = _Blocks(exp.name)
    incoming: dict[bytes, tuple[Path, int]] = {}  # ok keys new here -> first source block, row
    to_copy: list[Path] = []
    new_keys: set[bytes] = set()
    for path in files:
        src = _verify(exp, path)
        if src is None:
            report.other_version.append(path.name.removesuffix(BLOCK_SUFFIX))
            continue
        target = dest / path.name
        if target.exists() and filecmp.cmp(path, target, shallow=False):
            report.skipped.append(src.name)  # this very file is here already
            continue
        record, status, _ = ledger.lookup(src.keys)
        kb = _key_bytes(src.keys)
        ok = src.status == 0
        # a point held here successfully must have the same values
        for i in np.flatnonzero(ok & (status == 0)):
            b = int(ledger.block[record[i]])
            here, rows = blocks.get(ledger.path(b))
            name = compare_records(exp, src.data, int(i), here, rows[kb[i]])
            if name is not None:
                raise MergeError(
                    f"{exp.name}: blocks {path} and {ledger.path(b)} hold point "
                    f"{kb[i].hex()} with different values of {name!r}; nothing merged"
                )
        # ... and so must a point two source blocks bring
        fresh = np.flatnonzero(ok & (status != 0))
        for i in fresh:
            first = incoming.setdefault(kb[i], (path, int(i)))
            if first[0] == path:
                continue
            there, _ = blocks.get(first[0])
            name = compare_records(exp, src.data, int(i), there, first[1])
            if name is not None:
                raise MergeError(
                    f"{exp.name}: source blocks {path} and {first[0]} hold point "
                    f"{kb[i].hex()} with different values of {name!r}; nothing merged"
                )
        # covered: held here successfully, or a failure of a point this directory has a record of
        covered = (status == 0) | (~ok & (status >= 0))
        if covered.all():
            report.skipped.append(src.name)
            continue
        if target.exists():
            _check_replacement(exp, src, target, ledger)
            report.replaced.append(src.name)
        report.merged.append(src.name)
        to_copy.append(path)
        new_keys.update(kb[i] for i in fresh)
    report.new_points = len(new_keys)
    return report, to_copy


def _check_replacement(exp: Experiment, src: _Source, target: Path, ledger: Ledger) -> None:
    """Refuse a source block replacing a same-named local file unless it holds more.

    One name means the same points (and salt), e.g. a block whose points failed here and
    succeeded elsewhere. The source replaces the local file if every successful record of the
    local file is successful in the source with the same values; otherwise both files hold
    something the other lacks, and the merge is refused naming them.
    """
    name = target.name.removesuffix(BLOCK_SUFFIX)
    mine = read_block(target, exp.name) if name in ledger.names else None
    if mine is None:
        raise MergeError(f"{exp.name}: {target} exists but is not an indexed block; nothing merged")
    theirs = {k: i for i, k in enumerate(_key_bytes(src.keys))}
    status = np.asarray(mine.arrays["status"])
    for j, k in enumerate(_key_bytes(raw_keys(mine.arrays["key"]))):
        if status[j] != 0:
            continue
        i = theirs.get(k)
        if i is None or src.status[i] != 0:
            raise MergeError(
                f"{exp.name}: {src.path} and {target} are different files of one block, each "
                "holding successful points the other lacks; remove one of them; nothing merged"
            )
        var = compare_records(exp, src.data, i, mine, j)
        if var is not None:
            raise MergeError(
                f"{exp.name}: blocks {src.path} and {target} hold point "
                f"{k.hex()} with different values of {var!r}; "
                "nothing merged"
            )


# --- writing ---------------------------------------------------------------------------------
def _copy_all(copies: list[tuple[Path, Path]]) -> None:
    """Copy each source to a temporary sibling of its target, then rename all into place."""
    temps: list[tuple[Path, Path]] = []
    try:
        for src, target in copies:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = temporary_name(target)
            temps.append((tmp, target))
            shutil.copyfile(src, tmp)  # a fresh mtime: Snakemake sees a new input
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    try:  # renames within one directory: each block appears whole, the merge only adds
        for tmp, target in temps:
            os.replace(tmp, target)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


def merge_blocks(
    src: str | os.PathLike[str],
    results: str | os.PathLike[str] = "results",
    *,
    dry_run: bool = False,
) -> list[MergeReport]:
    """Merge the blocks of ``src`` into ``results/blocks/<experiment>/``.

    Parameters
    ----------
    src : path
        A results directory (``SRC/blocks/<experiment>/*.zarr.zip``), a blocks directory
        (``SRC/<experiment>/*.zarr.zip``), or a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``
        archive holding one (possibly under a single top directory).
    results : path
        The results directory to merge into.
    dry_run : bool
        Verify and report only; write nothing.

    Returns
    -------
    list of MergeReport
        One per experiment of the source, in registry order.

    Raises
    ------
    ValueError
        :class:`MergeError` or :class:`~.blockstore.CorruptBlockError`, naming the file(s):
        an unusable source, a damaged block, a block of another experiment, a conflict. Nothing
        is written.

    """
    src = Path(src)
    results = Path(results)
    with _source_tree(src) as tree:
        if tree is None:
            raise MergeError(f"{src}: no blocks found (expected SRC/blocks/<experiment>/"
                             f"*{BLOCK_SUFFIX} or SRC/<experiment>/*{BLOCK_SUFFIX})")  # fmt: skip
        if (results / "blocks").resolve() == tree.resolve():
            raise MergeError(f"{src} is the results directory {results} itself")
        by_exp = _source_blocks(tree)
        reports, copies = [], []
        for name in (n for n in REGISTRY if n in by_exp):
            exp = get(name)
            dest = results / "blocks" / name
            report, files = _plan_experiment(exp, by_exp[name], dest)
            reports.append(report)
            copies += [(f, dest / f.name) for f in files]
        if not dry_run and copies:
            _copy_all(copies)
    for r in reports:
        logger.debug("%s: %s %d block(s) (%d new point(s)), skipped %d", r.experiment,
                    "would merge" if dry_run else "merged", len(r.merged), r.new_points,
                    len(r.skipped))  # fmt: skip
    return reports
