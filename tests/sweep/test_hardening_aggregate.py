"""Hardening issue, W4 and C2: a damaged aggregate is noticed, a crafted block is refused early.

W4: the aggregate's manifest records every file of the store (size, mtime, BLAKE2b digest).
Every aggregate run checks presence and size (and the digest of a file whose mtime changed)
and rebuilds a damaged store from the blocks; ``info --verify`` and ``export`` check every
digest and refuse a damaged store in one line naming the file and the rebuild command.

C2: a block's zip directory and each chunk's zstd frame header are checked against what the
array's shape and type imply before anything is decompressed.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from synth import sharp_section, write_blocks

from sweeplab.cli import main
from sweeplab.sweep import aggregate
from sweeplab.sweep.blockstore import CorruptBlockError, read_block
from sweeplab.sweep.store import MANIFEST
from sweeplab.sweep.versions import chunk_key, store_version

SECTION = sharp_section(depth=(2, 3), family=("balanced",), seeds=4)
SRC = str(Path(__file__).resolve().parents[2] / "src")


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    return result


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def values(store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(store, mode="r")
    return {name: np.asarray(arr[...]) for name, arr in group.arrays()}


def assert_same_values(a: Path, b: Path) -> None:
    va, vb = values(a), values(b)
    assert set(va) == set(vb)
    for name in va:
        if va[name].dtype.kind == "f":
            np.testing.assert_array_equal(va[name], vb[name], err_msg=name)
        else:
            assert list(map(str, va[name].ravel().tolist())) == list(
                map(str, vb[name].ravel().tolist())
            ), name


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Blocks of SECTION, their aggregate and a full rebuild, built once for the module."""
    root = tmp_path_factory.mktemp("template")
    res = root / "results"
    blocks = res / "blocks" / "sharpness"
    write_blocks(blocks, SECTION)
    aggregate("sharpness", SECTION, blocks, res / "sharpness.zarr", attrs={"title": "t"})
    aggregate("sharpness", SECTION, blocks, root / "reference.zarr", full=True)
    return root


@pytest.fixture
def results(template, tmp_path):
    """``results/`` with the blocks of SECTION and their aggregate ``sharpness.zarr``.

    A copy of the module's template: ``copytree`` copies with ``copy2``, which keeps the
    mtimes the manifest and the block index record, so the copy is an undamaged store.
    """
    res = tmp_path / "results"
    shutil.copytree(template / "results", res)
    return res


def chunk_of(store: Path, variable: str = "exact") -> Path:
    """The one chunk of ``variable`` in the store's current version (see sweep.versions)."""
    ndim = len(zarr.open_array(store / variable).shape)
    chunk = store / variable / chunk_key((0,) * ndim, store_version(store))
    assert chunk.is_file()
    return chunk


def reference(template: Path, tmp_path: Path) -> Path:
    """A full rebuild of the same grid, in another path (a copy of the template's)."""
    out = tmp_path / "reference.zarr"
    shutil.copytree(template / "reference.zarr", out)
    return out


# --- W4: the aggregate run notices damage and rebuilds from the blocks ------------------------
def test_a_deleted_chunk_is_rebuilt_from_the_blocks(results, template, tmp_path, caplog):
    store = results / "sharpness.zarr"
    chunk = chunk_of(store)
    chunk.unlink()  # zarr would read fill values: nan where the blocks hold numbers
    with caplog.at_level(logging.WARNING, logger="sweeplab"):
        report = aggregate("sharpness", SECTION, results / "blocks" / "sharpness", store)
    assert report.mode == "rebuild"
    assert report.blocks_read == report.n_blocks
    assert f"{chunk.relative_to(store).as_posix()} is missing" in caplog.text
    chunk_of(store)  # the rebuilt version's chunk (the damaged version is not kept)
    assert_same_values(store, reference(template, tmp_path))
    assert not np.isnan(values(store)["exact"]).any()
    assert invoke("info", "--verify", store).exit_code == 0
    # and the next run has nothing to do
    again = aggregate("sharpness", SECTION, results / "blocks" / "sharpness", store)
    assert again.mode == "unchanged"


@pytest.mark.parametrize("damage", ["resized", "edited-new-mtime", "extra-chunk"])
def test_other_damage_seen_by_stat_is_rebuilt(results, template, tmp_path, damage, caplog):
    store = results / "sharpness.zarr"
    chunk = chunk_of(store)
    if damage == "resized":
        chunk.write_bytes(chunk.read_bytes()[:-3])
    elif damage == "edited-new-mtime":  # same size, other bytes, written later
        raw = bytearray(chunk.read_bytes())
        raw[-1] ^= 0xFF
        chunk.write_bytes(bytes(raw))
        st = chunk.stat()
        os.utime(chunk, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    else:  # a chunk beyond the recorded ones (zarr would read it if the array grew)
        (store / "exact" / "c.7").write_bytes(chunk.read_bytes())
    with caplog.at_level(logging.WARNING, logger="sweeplab"):
        report = aggregate("sharpness", SECTION, results / "blocks" / "sharpness", store)
    assert report.mode == "rebuild", caplog.text
    assert "rebuilding it from the blocks" in caplog.text
    assert_same_values(store, reference(template, tmp_path))
    assert not (store / "exact" / "c.7").exists()


# --- W4: info --verify and export check every digest ------------------------------------------
def test_an_undamaged_store_passes_info_verify_through_update_and_extend(results):
    store = results / "sharpness.zarr"
    blocks = results / "blocks" / "sharpness"
    result = invoke("info", "--verify", store)
    assert result.exit_code == 0, result.output
    assert "verified: " in result.output and "files match the manifest" in result.output
    # extend (a depth appended) and update (one block changed): the table follows every write
    bigger = {**SECTION, "depth": [2, 3, 4]}
    write_blocks(blocks, bigger)
    assert aggregate("sharpness", bigger, blocks, store, attrs={"title": "t2"}).mode == "extend"
    assert invoke("info", "--verify", store).exit_code == 0
    victim = sorted(blocks.glob("*.zarr.zip"))[0]
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "changed": read again
    assert aggregate("sharpness", bigger, blocks, store, attrs={"title": "t3"}).mode == "update"
    assert invoke("info", "--verify", store).exit_code == 0
    manifest = json.loads((store / MANIFEST).read_text())
    on_disk = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()} - {
        MANIFEST
    }
    assert set(manifest["files"]) == on_disk


@pytest.mark.parametrize("damage", ["truncated", "same-size-edit"])
def test_info_verify_and_export_refuse_a_damaged_store(results, tmp_path, damage):
    store = results / "sharpness.zarr"
    chunk = chunk_of(store)
    rel = chunk.relative_to(store).as_posix()
    st = chunk.stat()
    if damage == "truncated":
        chunk.write_bytes(chunk.read_bytes()[:10])
    else:  # other bytes, same size and mtime: only a digest sees it
        raw = bytearray(chunk.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        chunk.write_bytes(bytes(raw))
        os.utime(chunk, ns=(st.st_atime_ns, st.st_mtime_ns))
    text = one_error_line(invoke("info", "--verify", store))
    assert f"aggregate {store} is damaged" in text and rel in text, text
    assert "sweeplab aggregate sharpness" in text and "--full" in text, text
    assert "re-run `snakemake`" in text, text
    dest = tmp_path / "out" / "sharpness.zarr"
    text = one_error_line(invoke("export", "sharpness", dest, "--results", results))
    assert rel in text and "--full" in text, text
    assert not (tmp_path / "out").exists()  # nothing written, not even a temporary
    zdest = tmp_path / "sharpness.zarr.zip"
    one_error_line(invoke("export", "sharpness", zdest, "--results", results))
    assert not zdest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_plain_info_warns_about_a_damaged_store(results, caplog):
    store = results / "sharpness.zarr"
    chunk = chunk_of(store)
    chunk.unlink()
    with caplog.at_level(logging.WARNING, logger="sweeplab"):
        result = invoke("info", store)
    assert result.exit_code == 0, result.output
    rel = chunk.relative_to(store).as_posix()
    assert f"{store} is damaged or cannot be verified ({rel} is missing)" in caplog.text
    assert "--verify" in caplog.text and "--full" in caplog.text


def test_an_old_manifest_cannot_be_verified_and_is_rebuilt_once(results, tmp_path, caplog):
    store = results / "sharpness.zarr"
    manifest = json.loads((store / MANIFEST).read_text())
    del manifest["files"]
    manifest["format"] = 2  # as written before the file table
    (store / MANIFEST).write_text(json.dumps(manifest))
    text = one_error_line(invoke("info", "--verify", store))
    assert "predates the file table" in text and "--full" in text, text
    dest = tmp_path / "exported.zarr"
    text = one_error_line(invoke("export", "sharpness", dest, "--results", results))
    assert "predates the file table" in text, text
    assert not dest.exists()
    with caplog.at_level(logging.WARNING, logger="sweeplab"):
        report = aggregate("sharpness", SECTION, results / "blocks" / "sharpness", store)
    assert report.mode == "rebuild" and "older format" in caplog.text
    assert invoke("info", "--verify", store).exit_code == 0
    result = invoke("export", "sharpness", dest, "--results", results)
    assert result.exit_code == 0, result.output
    assert_same_values(dest, store)


def test_info_verify_checks_a_block_file(results, tmp_path):
    block = sorted((results / "blocks" / "sharpness").glob("*.zarr.zip"))[0]
    result = invoke("info", "--verify", block)
    assert result.exit_code == 0, result.output
    assert "verified: every member and the content digest" in result.output
    edited = tmp_path / block.name
    _rewrite_member(block, edited, "exact/c/0", lambda raw, info: _frame(2**40))
    text = one_error_line(invoke("info", "--verify", edited))
    assert f"block {edited} is corrupt" in text and "exact/c/0" in text, text


# --- C2: crafted blocks are refused before anything is decompressed ---------------------------
def _frame(declared: int, payload: bytes = b"\0" * 32) -> bytes:
    """A zstd frame whose header declares ``declared`` bytes, holding ``payload`` (raw block)."""
    header = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + declared.to_bytes(8, "little")
    block = ((len(payload) << 3) | 1).to_bytes(3, "little")  # last block, raw
    return header + block + payload


def _rewrite_member(src: Path, dest: Path, member: str, make, compress=zipfile.ZIP_STORED):
    """Copy the block zip ``src`` to ``dest`` with ``member``'s bytes replaced by ``make``."""
    tmp = dest.with_name(dest.name + ".new")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == member:
                data = make(data, info)
                zout.writestr(info.filename, data, compress_type=compress)
            else:
                zout.writestr(info, data)
    os.replace(tmp, dest)


@pytest.fixture
def block(results, tmp_path):
    """A copy of a valid block written by the project."""
    src = sorted((results / "blocks" / "sharpness").glob("*.zarr.zip"))[0]
    dest = tmp_path / "crafted" / src.name
    dest.parent.mkdir()
    dest.write_bytes(src.read_bytes())
    assert read_block(dest, "sharpness").arrays["exact"].shape == (2,)
    return dest


CHILD = """
import resource, sys
sys.path.insert(0, {src!r})
from sweeplab.sweep.blockstore import CorruptBlockError, read_block
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
try:
    read_block({path!r}, "sharpness")
except CorruptBlockError as exc:
    print("refused:", exc)
# VmHWM, not ru_maxrss: ru_maxrss survives fork and exec, so it would count the (large)
# pytest worker's resident set at the fork
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print("maxrss_kb", hwm)
"""


def test_a_frame_declaring_2_40_bytes_is_refused_before_decompressing(block):
    _rewrite_member(block, block, "exact/c/0", lambda raw, info: _frame(2**40))
    with pytest.raises(CorruptBlockError) as err:
        read_block(block, "sharpness")
    text = str(err.value)
    assert "\n" not in text
    assert str(block) in text and "exact/c/0" in text and str(2**40) in text, text
    assert "declares 1099511627776 bytes, its array's shape and type 16" in text
    # in a fresh process whose address space is capped at 2 GiB: refused, memory stays small
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(src=SRC, path=str(block))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused: block" in out.stdout, out.stdout
    maxrss_mb = int(out.stdout.split("maxrss_kb")[1]) / 1024
    assert maxrss_mb < 200, maxrss_mb


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda raw, info: _frame(24), "declares 24 bytes, its array's shape and type 16"),
        (lambda raw, info: raw[:4] + bytes([0x00]) + raw[5:], "not a zstd frame declaring"),
        (lambda raw, info: b"\x00" * len(raw), "not a zstd frame declaring"),
    ],
    ids=["wrong-size", "no-content-size", "not-zstd"],
)
def test_a_frame_not_declaring_the_arrays_size_is_refused(block, make, message):
    _rewrite_member(block, block, "exact/c/0", make)
    with pytest.raises(CorruptBlockError, match=message):
        read_block(block, "sharpness")


def test_strings_whose_frame_declares_too_much_are_refused(block):
    _rewrite_member(block, block, "error/c/0", lambda raw, info: _frame(2**40))
    with pytest.raises(CorruptBlockError, match=r"error/c/0 declares 1099511627776 bytes"):
        read_block(block, "sharpness")


def test_zip_level_bombs_are_refused_before_reading(block, tmp_path):
    # a deflated member: 64 MiB of zeros in a few kB of zip
    bomb = tmp_path / "bomb" / block.name
    bomb.parent.mkdir()
    _rewrite_member(block, bomb, "zarr.json", lambda raw, info: raw + b" " * (64 << 20),
                    compress=zipfile.ZIP_DEFLATED)  # fmt: skip
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CorruptBlockError, match=r"member zarr.json is compressed"):
        read_block(bomb, "sharpness")
    # a member whose directory entry declares 2 GiB
    raw = bytearray(block.read_bytes())
    with zipfile.ZipFile(block) as zf:
        info = zf.getinfo("exact/c/0")
    name = info.filename.encode()
    at = raw.index(b"PK\x01\x02")  # the central directory's entries
    while raw[at + 46 : at + 46 + len(name)] != name:
        at = raw.index(b"PK\x01\x02", at + 4)
    raw[at + 24 : at + 28] = (0x7FFFFFFF).to_bytes(4, "little")
    block.write_bytes(bytes(raw))
    with pytest.raises(CorruptBlockError, match=r"member exact/c/0 declares 2147483647 bytes"):
        read_block(block, "sharpness")


def test_the_file_table_keeps_only_entries_of_files_still_linked(tmp_path):
    """A file rewritten with the same size and mtime (a coarse clock) is digested again."""
    from sweeplab.sweep.store import file_digest, file_table

    old, new = tmp_path / "old.zarr", tmp_path / "new.zarr"
    (old / "a").mkdir(parents=True)
    (old / "a" / "c.0").write_bytes(b"x" * 100)
    (old / "a" / "c.1").write_bytes(b"y" * 100)
    table = file_table(old)
    (new / "a").mkdir(parents=True)
    for name in ("c.0", "c.1"):
        os.link(old / "a" / name, new / "a" / name)
    st = (new / "a" / "c.1").stat()
    (new / "a" / "c.1").unlink()  # replaced as an update does: a new file, same size and time
    (new / "a" / "c.1").write_bytes(b"z" * 100)
    os.utime(new / "a" / "c.1", ns=(st.st_atime_ns, st.st_mtime_ns))
    got = file_table(new, table, old)
    assert got["a/c.0"] == table["a/c.0"]
    assert got["a/c.1"][2] == file_digest(new / "a" / "c.1") != table["a/c.1"][2]
