"""Incremental aggregation against an independent reference: the block datasets themselves,
unstacked from their point dimension to the grid and combined by xarray's combine_by_coords."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import xarray as xr
from synth import named, points_of, sharp_section, synthetic_block, write_blocks

from sweeplab.sweep import CorruptBlockError, aggregate, open_dataset
from sweeplab.sweep.aggregate import MANIFEST, MissingPointsError
from sweeplab.sweep.blockstore import write_block
from sweeplab.sweep.experiments import REGISTRY
from sweeplab.sweep.identity import grid_points

TABLE = ["key", "point_wall_time", "point_cost"]


def on_grid(ds):
    """A block dataset with its ``point`` dimension unstacked into the experiment's grid dims."""
    exp = REGISTRY[ds.attrs["experiment"]]
    dims = [a.dimension for a in exp.axes]
    return ds.drop_vars(TABLE).set_index(point=dims).unstack("point")


def reference(datasets):
    ds = xr.combine_by_coords(
        [on_grid(d) for d in datasets], compat="no_conflicts", data_vars="all",
        coords="different", join="outer", combine_attrs="drop",
    )  # fmt: skip
    return ds


def assert_matches(out, datasets):
    datasets = list(datasets)
    got = open_dataset(out).load()
    want = reference(datasets)
    assert set(got.data_vars) == set(want.data_vars)
    for name in want.variables:
        np.testing.assert_array_equal(
            got[name].transpose(*want[name].dims).values.astype(want[name].dtype),
            want[name].values, err_msg=name,
        )  # fmt: skip
        assert got[name].attrs.get("units") == datasets[0][name].attrs.get("units"), name
    return got


def test_full_then_incremental_add_change_remove(tmp_path, blocks_dir):
    out = tmp_path / "sharpness.zarr"
    section = sharp_section()
    blocks = write_blocks(blocks_dir, section)
    r = aggregate("sharpness", section, blocks_dir, out, attrs={"title": "t"})
    assert (r.mode, r.blocks_read, r.n_blocks) == ("rebuild", len(blocks), 24)
    # 24 blocks, one cell (the grid is small): each block read once, the cell written once
    # (it was loaded and written again for every block, which made small blocks slow)
    from sweeplab.sweep.aggregate import Layout

    assert len(list(Layout(REGISTRY["sharpness"], section).cells())) == 1
    assert r.cells_written == 1
    got = assert_matches(out, blocks.values())
    assert got.attrs["title"] == "t" and got.status.attrs["flag_values"] == [0, 1]

    # nothing changed: nothing read or written
    r = aggregate("sharpness", section, blocks_dir, out)
    assert (r.mode, r.blocks_read) == ("unchanged", 0)

    # one block recomputed (other values): only it is read, in place
    name = named(blocks, depth=3, dio=2, family="gaussian", seed=2)
    changed = synthetic_block("sharpness", section, points_of(blocks[name]), offset=10.0,
                              failed=[0])  # fmt: skip
    assert changed.attrs["block"] == name
    write_block(changed, blocks_dir / f"{name}.zarr.zip")
    blocks[name] = changed
    r = aggregate("sharpness", section, blocks_dir, out)
    assert (r.mode, r.blocks_read, r.cells_written, r.n_failed) == ("update", 1, 1, 1)
    assert_matches(out, blocks.values())

    # an axis extended: only the new blocks are read, the rest comes from the old aggregate
    wider = sharp_section(depth=(2, 3, 4, 6))
    blocks.update({k: v for k, v in write_blocks(blocks_dir, wider).items() if k not in blocks})
    r = aggregate("sharpness", wider, blocks_dir, out)
    # appended at the end: the store is resized in the old chunking, the new cell written
    assert (r.mode, r.blocks_read, r.blocks_reused, r.cells_written) == ("extend", 8, 24, 1)
    assert_matches(out, blocks.values())

    # a value inserted in the middle: re-laid out, the old values copied, only new blocks read
    middle = sharp_section(depth=(2, 3, 4, 5, 6))
    blocks.update({k: v for k, v in write_blocks(blocks_dir, middle).items() if k not in blocks})
    r = aggregate("sharpness", middle, blocks_dir, out)
    assert (r.mode, r.blocks_read, r.blocks_reused) == ("rebuild", 8, 32)
    # one cell: copied from the old aggregate, filled from the new blocks, written once (it
    # was written with the old values, read back and written again)
    assert r.cells_written == 1
    assert_matches(out, blocks.values())

    # an axis value removed: nothing is read
    narrower = sharp_section(depth=(2, 6), family=("gaussian",))
    r = aggregate("sharpness", narrower, blocks_dir, out)
    assert (r.mode, r.blocks_read, r.n_blocks) == ("rebuild", 0, 8)
    kept = [ds for ds in blocks.values()
            if (ds.family == "gaussian").all() and np.isin(ds.depth, [2, 6]).all()]  # fmt: skip
    assert len(kept) == 8
    assert_matches(out, kept)

    # and a full rebuild from the files agrees with the incremental result
    full = tmp_path / "full.zarr"
    aggregate("sharpness", narrower, blocks_dir, full, full=True)
    xr.testing.assert_equal(open_dataset(full).load(), open_dataset(out).load())
    manifest = json.loads((out / MANIFEST).read_text())
    assert len(manifest["blocks"]) == 8 and manifest["n_failed"] == 0


def test_aggregate_reads_the_plans_grid_keys_and_never_writes_them(
    tmp_path, blocks_dir, monkeypatch
):
    """The aggregate job reuses the keys the plan enumerated (``.grid.npz`` in the blocks
    directory) instead of enumerating the grid again; it writes no cache itself, and a cache
    whose length does not fit the grid is ignored."""
    from sweeplab.sweep import identity

    section = sharp_section()
    blocks = write_blocks(blocks_dir, section)
    cache = blocks_dir / identity.GRID_CACHE
    aggregate("sharpness", section, blocks_dir, tmp_path / "a.zarr")
    assert not cache.exists()
    identity.grid_points(REGISTRY["sharpness"], section, cache_dir=blocks_dir)  # the plan
    assert cache.exists()
    enumerate_ = identity._enumerate

    def refuse(*args, **kwargs):
        raise AssertionError("the grid was enumerated again")

    monkeypatch.setattr(identity, "_enumerate", refuse)
    aggregate("sharpness", section, blocks_dir, tmp_path / "b.zarr")
    assert_matches(tmp_path / "b.zarr", blocks.values())
    # a damaged cache (one key short, same definition) is enumerated again, not trusted
    with np.load(cache) as z:
        definition, keys = z["definition"], z["keys"]
    np.savez(cache, definition=definition, keys=keys[:-1])
    with pytest.raises(AssertionError, match="enumerated again"):
        aggregate("sharpness", section, blocks_dir, tmp_path / "c.zarr")
    monkeypatch.setattr(identity, "_enumerate", enumerate_)
    aggregate("sharpness", section, blocks_dir, tmp_path / "c.zarr")
    assert_matches(tmp_path / "c.zarr", blocks.values())


def test_appending_resizes_in_place_writes_new_cells_and_leaves_the_old_store(
    tmp_path, blocks_dir, monkeypatch
):
    """An axis extended at its end: the store keeps its chunking and is resized; only the
    cells of new points are written (small cells here: one depth each), in a copy-on-write
    copy, so the files of the old store (hard links a reader may hold) never change."""
    agg = sys.modules["sweeplab.sweep.aggregate"]
    monkeypatch.setattr(agg, "CELL_ELEMENTS", 16)  # depth x (d_io 2, family 2, seeds 4)
    out = tmp_path / "sharpness.zarr"
    section = sharp_section()
    blocks = write_blocks(blocks_dir, section)
    r = aggregate("sharpness", section, blocks_dir, out)
    assert (r.mode, r.cells_written) == ("rebuild", 3)
    held = tmp_path / "held"  # what an open reader holds: the old files themselves
    for f in sorted(out.rglob("*")):
        if f.is_file():
            (held / f.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
            os.link(f, held / f.relative_to(out))
    before = {f: f.read_bytes() for f in held.rglob("*") if f.is_file()}

    wider = sharp_section(depth=(2, 3, 4, 5))
    blocks.update({k: v for k, v in write_blocks(blocks_dir, wider).items() if k not in blocks})
    r = aggregate("sharpness", wider, blocks_dir, out)
    assert (r.mode, r.blocks_read, r.blocks_reused, r.cells_written) == ("extend", 8, 24, 1)
    assert_matches(out, blocks.values())
    assert {f: f.read_bytes() for f in before} == before
    # its consolidated metadata is what zarr gathers from the arrays' own documents
    import warnings

    import zarr

    again = tmp_path / "again.zarr"
    shutil.copytree(out, again)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(again, zarr_format=3)
    meta = [
        json.loads((d / "zarr.json").read_text())["consolidated_metadata"] for d in (out, again)
    ]
    assert meta[0] == meta[1]
    # and the extended store equals a full rebuild (values, coordinates, attributes)
    full = tmp_path / "full.zarr"
    aggregate("sharpness", wider, blocks_dir, full, full=True)
    xr.testing.assert_identical(open_dataset(full).load(), open_dataset(out).load())


def test_appended_layout_keeps_old_chunks_up_to_twice_the_cells():
    """The old chunking is kept while it makes at most twice the natural number of cells;
    beyond, or when a count axis (seeds) or a middle value changes, the store is re-laid out."""
    from sweeplab.sweep.aggregate import Layout

    exp = REGISTRY["sharpness"]
    old = Layout(exp, sharp_section(depth=(2, 3, 4)))
    manifest = {"coords": old.keys, "chunks": old.chunks}
    assert old.chunks["depth"] == 3
    for depth, cells in [((2, 3, 4, 5), 2), ((2, 3, 4, 5, 6, 7), 2), ((2, 3, 4, 5, 6, 7, 8), None)]:
        kept = Layout(exp, sharp_section(depth=depth)).appended(manifest)
        assert (kept.cell_counts[0] if kept else None) == cells, depth
    assert Layout(exp, sharp_section(depth=(1, 2, 3, 4))).appended(manifest) is None
    assert Layout(exp, sharp_section(depth=(2, 3, 4, 5), seeds=6)).appended(manifest) is None
    assert Layout(exp, sharp_section(depth=(2, 3, 4))).appended(manifest) is None  # unchanged


def test_escape_trajectories_and_padded_minimizers(tmp_path):
    blocks_dir = tmp_path / "escape"
    section = {
        "depth": [2, 3], "width": [1, 2], "c": [0.9, 1.1], "radius": [1e-9], "seeds": 2,
        "escape_radius": 1e-3, "max_steps": 50, "loss_tol": 1e-20,
    }  # fmt: skip
    blocks = write_blocks(blocks_dir, section, "escape", per_block=1)
    assert len(blocks) == 16
    out = tmp_path / "escape.zarr"
    aggregate("escape", section, blocks_dir, out)
    got = open_dataset(out).load()
    assert got.sizes["param"] == 3 * 2 * 2  # the largest chain: depth 3, width 2
    for ds in blocks.values():
        for i in range(ds.sizes["point"]):
            p = ds.isel(point=i)
            sel = {d: p[d].item() for d in ("depth", "width", "c", "radius", "seed")}
            np.testing.assert_array_equal(got.loss.sel(sel).values, p.loss.values)
            w = got.w_star.sel({d: sel[d] for d in ("depth", "width", "seed")})
            n = sel["depth"] * sel["width"] ** 2
            np.testing.assert_array_equal(w.isel(param=slice(0, n)).values,
                                          p.w_star.values[:n])  # fmt: skip
            assert np.isnan(w.isel(param=slice(n, None)).values).all()


def test_damaged_or_foreign_block_is_named_and_the_aggregate_kept(tmp_path, blocks_dir):
    out = tmp_path / "sharpness.zarr"
    section = sharp_section()
    blocks = write_blocks(blocks_dir, section)
    aggregate("sharpness", section, blocks_dir, out)
    before = open_dataset(out).load()
    name = next(iter(blocks))
    path = blocks_dir / f"{name}.zarr.zip"
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(CorruptBlockError, match=name):
        aggregate("sharpness", section, blocks_dir, out)
    xr.testing.assert_identical(open_dataset(out).load(), before)
    with pytest.raises(CorruptBlockError, match=name):
        aggregate("sharpness", section, blocks_dir, tmp_path / "other.zarr", full=True)
    assert not (tmp_path / "other.zarr").exists()
    # a block of another experiment under this block's name
    esc_section = {
        "depth": [2], "width": [1], "c": [1.1], "radius": [1e-9], "seeds": 1,
        "escape_radius": 1e-3, "max_steps": 10, "loss_tol": 1e-20,
    }  # fmt: skip
    esc_points = grid_points(REGISTRY["escape"], esc_section).points(np.arange(1))
    foreign = synthetic_block("escape", esc_section, esc_points, name=name)
    write_block(foreign, path)
    with pytest.raises(CorruptBlockError, match="holds a 'escape' block"):
        aggregate("sharpness", section, blocks_dir, out)
    path.unlink()
    first = blocks[name].isel(point=0)
    params = ", ".join(f"'{a.name}': {first[a.dimension].item()!r}"
                       for a in REGISTRY["sharpness"].axes)  # fmt: skip
    with pytest.raises(MissingPointsError) as err:
        aggregate("sharpness", section, blocks_dir, out)
    assert f"2 of 48 point(s) are in no block of {blocks_dir}" in str(err.value)
    assert f"(first: {{{params}}})" in str(err.value) and "snakemake" in str(err.value)
    xr.testing.assert_identical(open_dataset(out).load(), before)


def _edit_member(path, member, source):
    """Replace zip member ``member`` with the (same shape and dtype) data of ``source``: a
    consistent zip whose content changed (its point table still reads)."""
    tmp = path.with_suffix(".new")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        other = src.read(source)
        for info in src.infolist():
            dst.writestr(info, other if info.filename == member else src.read(info))
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def aggregated80(tmp_path_factory):
    """80 blocks (10 depths) and their aggregate, written once; tests edit copies."""
    root = tmp_path_factory.mktemp("agg80")
    section = sharp_section(depth=range(2, 12))
    blocks = write_blocks(root / "blocks", section)
    aggregate("sharpness", section, root / "blocks", root / "sharpness.zarr")
    return root, section, blocks


@pytest.mark.parametrize("damage", ["edited", "truncated"])
def test_failed_update_leaves_the_old_store_untouched(tmp_path, aggregated80, damage):
    root, section, blocks = aggregated80
    blocks_dir, out = tmp_path / "blocks", tmp_path / "sharpness.zarr"
    shutil.copytree(root / "blocks", blocks_dir)
    shutil.copytree(root / "sharpness.zarr", out)
    assert len(blocks) == 80
    files = {p: (p.stat().st_ino, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    # blocks are read in name order: the good one is written into the copy before the bad one
    good, bad_name = sorted(blocks)[0], sorted(blocks)[-1]
    write_block(synthetic_block("sharpness", section, points_of(blocks[good]), offset=5.0),
                blocks_dir / f"{good}.zarr.zip")  # fmt: skip
    bad = blocks_dir / f"{bad_name}.zarr.zip"
    if damage == "edited":  # fails when its values are read, in the middle of the update
        _edit_member(bad, "bound/c/0", "exact/c/0")
    else:  # fails when the ledger reads its point table, before anything is written
        bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(CorruptBlockError, match=bad.name) as err:
        aggregate("sharpness", section, blocks_dir, out)
    if damage == "edited":
        assert "digest" in str(err.value)
    after = {p: (p.stat().st_ino, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    assert after == files  # same files, same inodes, same bytes
    assert not list(tmp_path.glob(".sharpness.zarr.*"))
    assert_matches(out, blocks.values())


@pytest.mark.slow
def test_killed_aggregate_leaves_old_or_new_and_the_next_run_is_right(tmp_path, blocks_dir):
    section = sharp_section(depth=range(2, 42), seeds=8)
    blocks = write_blocks(blocks_dir, section, per_block=2)
    out = tmp_path / "sharpness.zarr"
    code = (
        "import sys, json; from sweeplab.sweep import aggregate; "
        f"aggregate('sharpness', json.loads(sys.argv[1]), {str(blocks_dir)!r}, {str(out)!r})"
    )
    for delay in (0.3, 0.8, 1.5):
        proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(section)])
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if out.exists():  # what a reader sees after the kill is a complete store
            assert (out / MANIFEST).exists()
            assert_matches(out, blocks.values())
        aggregate("sharpness", section, blocks_dir, out)
        assert_matches(out, blocks.values())
        assert not list(tmp_path.glob(".sharpness.zarr.*"))
        shutil.rmtree(out)
