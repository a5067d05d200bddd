"""Hardening issue, W3: a dataset opened before a re-aggregation keeps reading its own version.

``xr.open_zarr`` reads a chunk by its path when the value is used. The aggregate's versions
cycle through three chunk key encodings (``c.i.j``, ``c/i/j``, ``i.j``), and a new version
keeps the chunk files of the two before it (hard links: nothing copied), so a reader opened
before at most two later aggregations -- an update, an extend or a rebuild -- reads the
values it opened, never another version's. The third later aggregation reuses the oldest
version's keys (the documented limit: reopen the dataset).
"""

import shutil
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
import zarr
from synth import named, points_of, sharp_section, synthetic_block, write_blocks

from sweeplab.sweep import aggregate
from sweeplab.sweep.aggregate import KEY_ENCODINGS
from sweeplab.sweep.blockstore import write_block
from sweeplab.sweep.store import verify_aggregate

SECTION = sharp_section(depth=(2, 3), family=("balanced",), seeds=4)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readers")
    blocks = root / "blocks"
    write_blocks(blocks, SECTION)
    aggregate("sharpness", SECTION, blocks, root / "s.zarr")
    return root


@pytest.fixture(autouse=True)
def _local_dask():
    """Dask-backed readers compute in this process (not on a client another test left)."""
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture
def results(template, tmp_path) -> Path:
    shutil.copytree(template, tmp_path / "r")
    return tmp_path / "r"


def opened(store: Path) -> tuple[list[xr.Dataset], xr.Dataset]:
    """Readers of ``store`` (dask-backed and lazy numpy) and its values now (in memory)."""
    readers = [xr.open_zarr(store), xr.open_zarr(store, chunks=None)]
    return readers, xr.open_zarr(store).load()


def assert_reads(readers: list[xr.Dataset], expected: xr.Dataset) -> None:
    for ds in readers:
        xr.testing.assert_identical(ds.load(), expected)


def recompute(results: Path, section, offset: float, **where) -> None:
    """Rewrite one block of ``section`` with other values (``offset``)."""
    blocks = write_blocks(results / "blocks", section)
    name = named(blocks, **where)
    ds = synthetic_block("sharpness", section, points_of(blocks[name]), offset=offset)
    write_block(ds, results / "blocks" / f"{name}.zarr.zip")


def agg(results: Path, section, **kw) -> str:
    return aggregate("sharpness", section, results / "blocks", results / "s.zarr", **kw).mode


def encoding_of(store: Path) -> dict:
    enc = zarr.open_array(store / "exact").metadata.chunk_key_encoding.to_dict()
    return {"name": enc["name"], "separator": enc["configuration"]["separator"]}


def key_space(name: str) -> str:
    return "c." if name.startswith("c.") else "c/" if name == "c" else "i.j"


def test_a_reader_keeps_its_version_through_an_update(results):
    readers, before = opened(results / "s.zarr")
    recompute(results, SECTION, 10.0, depth=3, dio=2, seed=2)
    assert agg(results, SECTION) == "update"
    now = xr.open_zarr(results / "s.zarr").load()
    assert not now.exact.equals(before.exact)  # the update changed values...
    assert_reads(readers, before)  # ...which the old readers do not see
    verify_aggregate(results / "s.zarr")  # raises DamagedStoreError


def test_a_reader_keeps_its_version_through_an_extend_and_a_rebuild(results):
    readers, before = opened(results / "s.zarr")
    wider = sharp_section(depth=(2, 3, 4), family=("balanced",), seeds=4)
    write_blocks(results / "blocks", wider)
    assert agg(results, wider) == "extend"
    assert_reads(readers, before)  # it read depth 3's values at depth 2's... (61276c7)
    readers2, extended = opened(results / "s.zarr")
    assert extended.sizes["depth"] == 3
    shrunk = sharp_section(depth=(3,), family=("balanced",), seeds=4)
    assert agg(results, shrunk) == "rebuild"
    assert_reads(readers, before)  # ...and NaN after a shrink (61276c7)
    assert_reads(readers2, extended)
    assert xr.open_zarr(results / "s.zarr").sizes["depth"] == 1
    verify_aggregate(results / "s.zarr")  # raises DamagedStoreError


def test_a_full_rebuild_keeps_the_old_version_too(results):
    readers, before = opened(results / "s.zarr")
    recompute(results, SECTION, 5.0, depth=2, dio=1, seed=0)
    assert agg(results, SECTION, full=True) == "rebuild"
    assert_reads(readers, before)
    verify_aggregate(results / "s.zarr")  # raises DamagedStoreError


@pytest.mark.filterwarnings("ignore:Object at sweeplab-manifest.json is not recognized")
def test_versions_cycle_through_three_key_encodings_keeping_two_old_ones(results):
    store = results / "s.zarr"
    seen = [encoding_of(store)]
    readers = [opened(store)]
    for k in range(4):
        recompute(results, SECTION, 10.0 + k, depth=2 + k % 2, dio=1, seed=0)
        assert agg(results, SECTION) == "update"
        seen.append(encoding_of(store))
        readers.append(opened(store))
        # the current version and at most the two before it are on disk
        spaces = {key_space(p.name) for p in (store / "exact").iterdir() if p.name != "zarr.json"}
        assert len(spaces) == min(k + 2, 3), spaces
        verify_aggregate(store)
    assert seen == [KEY_ENCODINGS[k % 3] for k in range(5)]
    # every reader opened at most two aggregations ago reads its own version
    for rs, values in readers[-3:]:
        assert_reads(rs, values)
    # a reader listing the store (no consolidated metadata) sees only the current version
    xr.testing.assert_identical(
        xr.open_zarr(store, consolidated=False).load(), xr.open_zarr(store).load()
    )
    # the documented limit: three aggregations later, the oldest reader's keys hold version 4
    rs, values = readers[1]
    assert not np.array_equal(rs[1].exact.values, values.exact.values, equal_nan=True)


def test_the_first_version_has_the_keys_of_stores_written_before_versions(results):
    """Stores written before the versions existed (all ``c.i.j``) are continued as version 0."""
    store = results / "s.zarr"
    assert encoding_of(store) == KEY_ENCODINGS[0] == {"name": "default", "separator": "."}
    readers, before = opened(store)
    recompute(results, SECTION, 3.0, depth=2, dio=2, seed=2)
    assert agg(results, SECTION) == "update"
    assert encoding_of(store) == KEY_ENCODINGS[1]
    assert_reads(readers, before)
