"""Incremental aggregation against an independent reference: xarray's combine_by_coords of
the block datasets themselves (the pre-registry aggregation path)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
from synth import sharp_section, synthetic_block, write_blocks

from sweeplab.sweep import CorruptBlockError, aggregate, open_dataset
from sweeplab.sweep.aggregate import MANIFEST, MissingBlocksError
from sweeplab.sweep.blockstore import write_block
from sweeplab.sweep.experiments import REGISTRY


def reference(datasets):
    ds = xr.combine_by_coords(
        list(datasets), compat="no_conflicts", data_vars="all", coords="different",
        join="outer", combine_attrs="drop",
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
    got = assert_matches(out, blocks.values())
    assert got.attrs["title"] == "t" and got.status.attrs["flag_values"] == [0, 1]

    # nothing changed: nothing read or written
    r = aggregate("sharpness", section, blocks_dir, out)
    assert (r.mode, r.blocks_read) == ("unchanged", 0)

    # one block recomputed (other values): only it is read, in place
    name = "depth~3_width~4_dio~2_family~gaussian_seeds~2-3"
    changed = synthetic_block(REGISTRY["sharpness"].parse_block(name), offset=10.0, failed=[0])
    write_block(changed, blocks_dir / f"{name}.zarr.zip")
    blocks[name] = changed
    r = aggregate("sharpness", section, blocks_dir, out)
    assert (r.mode, r.blocks_read, r.cells_written, r.n_failed) == ("update", 1, 1, 1)
    assert_matches(out, blocks.values())

    # an axis extended: only the new blocks are read, the rest comes from the old aggregate
    wider = sharp_section(depth=(2, 3, 4, 6))
    blocks.update({k: v for k, v in write_blocks(blocks_dir, wider).items() if k not in blocks})
    r = aggregate("sharpness", wider, blocks_dir, out)
    assert (r.mode, r.blocks_read, r.blocks_reused) == ("rebuild", 8, 24)
    assert_matches(out, blocks.values())

    # an axis value removed: nothing is read
    narrower = sharp_section(depth=(2, 6), family=("gaussian",))
    r = aggregate("sharpness", narrower, blocks_dir, out)
    assert (r.mode, r.blocks_read, r.n_blocks) == ("rebuild", 0, 8)
    kept = [ds for n, ds in blocks.items() if "gaussian" in n and ("h~2_" in n or "h~6_" in n)]
    assert_matches(out, kept)

    # and a full rebuild from the files agrees with the incremental result
    full = tmp_path / "full.zarr"
    aggregate("sharpness", narrower, blocks_dir, full, full=True)
    xr.testing.assert_equal(open_dataset(full).load(), open_dataset(out).load())
    manifest = json.loads((out / MANIFEST).read_text())
    assert len(manifest["blocks"]) == 8 and manifest["n_failed"] == 0


def test_escape_trajectories_and_padded_minimizers(tmp_path):
    blocks_dir = tmp_path / "escape"
    section = {
        "depth": [2, 3], "width": [1, 2], "c": [0.9, 1.1], "radius": [1e-9], "seeds": 2,
        "seeds_per_block": 1, "escape_radius": 1e-3, "max_steps": 50, "loss_tol": 1e-20,
    }  # fmt: skip
    blocks = write_blocks(blocks_dir, section, "escape")
    out = tmp_path / "escape.zarr"
    aggregate("escape", section, blocks_dir, out)
    got = open_dataset(out).load()
    assert got.sizes["param"] == 3 * 2 * 2  # the largest chain: depth 3, width 2
    for ds in blocks.values():
        sel = {d: ds[d].values for d in ("depth", "width", "c", "radius", "seed")}
        np.testing.assert_array_equal(got.loss.sel(sel).values, ds.loss.values)
        w = got.w_star.sel({d: sel[d] for d in ("depth", "width", "seed")})
        n = ds.sizes["param"]
        np.testing.assert_array_equal(w.isel(param=slice(0, n)).values, ds.w_star.values)
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
    esc = REGISTRY["escape"].parse_block("depth~2_width~1_c~1.1_radius~1e-09_seeds~0-0")
    foreign = synthetic_block(esc, settings={"max_steps": 10})
    foreign.attrs["block"] = name
    write_block(foreign, path)
    with pytest.raises(CorruptBlockError, match="holds a 'escape' block"):
        aggregate("sharpness", section, blocks_dir, out)
    path.unlink()
    with pytest.raises(MissingBlocksError, match=f"1 of 24 block.*missing.*{name}"):
        aggregate("sharpness", section, blocks_dir, out)
    xr.testing.assert_identical(open_dataset(out).load(), before)


def test_failed_update_leaves_the_old_store_untouched(tmp_path, blocks_dir):
    out = tmp_path / "sharpness.zarr"
    section = sharp_section(depth=range(2, 12))
    blocks = write_blocks(blocks_dir, section)
    aggregate("sharpness", section, blocks_dir, out)
    files = {p: (p.stat().st_ino, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    good = "depth~2_width~4_dio~1_family~balanced_seeds~0-1"
    write_block(synthetic_block(REGISTRY["sharpness"].parse_block(good), offset=5.0),
                blocks_dir / f"{good}.zarr.zip")  # fmt: skip
    bad = blocks_dir / "depth~11_width~4_dio~2_family~gaussian_seeds~2-3.zarr.zip"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(CorruptBlockError, match=bad.name):
        aggregate("sharpness", section, blocks_dir, out)
    after = {p: (p.stat().st_ino, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    assert after == files  # same files, same inodes, same bytes
    assert not list(tmp_path.glob(".sharpness.zarr.*"))
    assert_matches(out, blocks.values())


@pytest.mark.slow
def test_killed_aggregate_leaves_old_or_new_and_the_next_run_is_right(tmp_path, blocks_dir):
    section = sharp_section(depth=range(2, 42), seeds=8, per_block=2)
    blocks = write_blocks(blocks_dir, section)
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
        import shutil

        shutil.rmtree(out)
