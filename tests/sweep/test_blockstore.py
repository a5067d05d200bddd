"""One-file block stores: round trip, any-zarr readability, and detection of damage."""

import os
import zipfile

import numpy as np
import pytest
import xarray as xr
import zarr
from synth import sharp_section, synthetic_block

from sweeplab.sweep.blockstore import (
    CorruptBlockError,
    _read_with_zarr,
    open_block,
    read_block,
    read_point_table,
    write_block,
)
from sweeplab.sweep.experiments import REGISTRY
from sweeplab.sweep.identity import grid_points

SECTION = sharp_section(depth=(3,), family=("gauge",), seeds=4)
SECTION["d_io"] = [2]


def _block(seeds=(0, 1), **kw):
    grid = grid_points(REGISTRY["sharpness"], SECTION)
    return synthetic_block("sharpness", SECTION, grid.points(np.asarray(seeds)), **kw)


@pytest.fixture
def block_file(tmp_path):
    ds = _block(failed=[1])
    path = tmp_path / f"{ds.attrs['block']}.zarr.zip"
    write_block(ds, path)
    return path, ds


def test_one_file_readable_by_plain_zarr_and_xarray(block_file, tmp_path):
    path, ds = block_file
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporaries left
    opened = xr.open_zarr(zarr.storage.ZipStore(path, mode="r")).load()
    for name in ds.data_vars:
        np.testing.assert_array_equal(opened[name].values, ds[name].values)
        assert opened[name].attrs["units"] == ds[name].attrs["units"]
    assert opened.status.attrs["flag_meanings"] == "ok failed"
    assert open_block(path).attrs["sweeplab_digest"].startswith("sha256:")
    # format 2: one point dimension; keys and parameters as its coordinates
    assert dict(opened.sizes) == {"point": 2}
    assert opened.key.values.tolist() == ds.key.values.tolist()
    assert opened.seed.values.tolist() == [0, 1]
    assert opened.attrs["sweeplab_format"] == "sweeplab-block-2"


def test_fast_reader_equals_zarr_reader(block_file):
    path, ds = block_file
    fast = read_block(path, "sharpness")
    slow = _read_with_zarr(path, set(fast.arrays))
    assert set(fast.arrays) == set(ds.variables)
    for name, values in fast.arrays.items():
        np.testing.assert_array_equal(values, np.asarray(slow[name]))
    assert str(fast.arrays["error"][1]).startswith("RuntimeError: point 1")
    table = read_point_table(path, "sharpness")
    assert set(table.arrays) == {"key", "status", "point_wall_time", "point_cost"}
    assert table.arrays["status"].tolist() == [0, 1]
    np.testing.assert_array_equal(table.arrays["key"], ds.key.values)


def _rewrite(path, drop=None, edit=None):
    """Copy the zip without member ``drop``, or with member ``edit`` replaced by the (valid,
    same shape and dtype) data of ``exact`` -- a consistent zip whose content changed."""
    tmp = path.with_suffix(".new")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        other = src.read("exact/c/0")
        for info in src.infolist():
            data = src.read(info)
            if info.filename == drop:
                continue
            if info.filename == edit:
                data = other
            dst.writestr(info, data)
    os.replace(tmp, path)


@pytest.mark.parametrize(
    "damage",
    ["truncate", "flip-byte", "delete-member", "edit-member", "other-experiment", "renamed"],
)
def test_damaged_block_is_named(block_file, tmp_path, damage):
    path, _ = block_file
    expected = path
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "flip-byte":  # bit rot inside a member: the zip CRC no longer matches
        raw = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("exact/c/0")
        raw[info.header_offset + 30 + len(info.filename) + 3] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "delete-member":
        _rewrite(path, drop="exact/c/0")
    elif damage == "edit-member":  # a consistent zip whose content was changed
        _rewrite(path, edit="bound/c/0")
    elif damage == "other-experiment":
        with pytest.raises(CorruptBlockError, match="not a 'escape' one"):
            read_block(path, "escape")
        return
    elif damage == "renamed":  # the file of another block's name (seeds 2 and 3)
        expected = path.with_name(f"{_block(seeds=(2, 3)).attrs['block']}.zarr.zip")
        assert expected != path
        path.rename(expected)
    with pytest.raises(CorruptBlockError) as err:
        read_block(expected, "sharpness")
    if damage == "edit-member":
        assert "digest" in str(err.value)
    if damage == "renamed":
        assert f"holds block {path.name.removesuffix('.zarr.zip')!r}" in str(err.value)
    assert str(expected) in str(err.value)
    assert "delete it and re-run `snakemake`" in str(err.value)


def test_block_path_must_be_a_zip(tmp_path):
    ds = _block()
    with pytest.raises(ValueError, match=r"must end in \.zarr\.zip"):
        write_block(ds, tmp_path / "x.zarr")


@pytest.mark.parametrize("experiment", ["sharpness", "escape", "channel"])
def test_writer_is_byte_identical_to_xarray_to_zarr(experiment):
    """Blocks are written with zarr directly (no xarray in a block job); every member of the
    store equals what ``xarray.Dataset.to_zarr`` writes for the same dataset, metadata
    (``_FillValue``, ``coordinates``, dimension names, codecs) and chunks alike."""
    import warnings

    import yaml
    from synth import block_rows
    from zarr.storage import MemoryStore

    from sweeplab.sweep.blockstore import BlockData, _zarr_members

    section = yaml.safe_load(open(".test/config/config.yaml"))[experiment]
    grid, groups = block_rows(experiment, section)
    ds = synthetic_block(experiment, section, grid.points(groups[0]), failed=[0])
    memory = MemoryStore()
    encoding = {n: {"chunks": v.shape or None} for n, v in ds.variables.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(memory, mode="w", zarr_format=3, consolidated=True, encoding=encoding,
                   write_empty_chunks=True)  # fmt: skip
    want = {k: v.to_bytes() for k, v in memory._store_dict.items()}
    got = _zarr_members(BlockData.from_dataset(ds))
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []


def test_a_block_job_imports_no_xarray_or_dask_array(tmp_path):
    """``sweeplab run-block`` computes and writes a block without xarray, pandas or
    dask.array: their imports were about 1.5 s of every block job's start-up."""
    import subprocess
    import sys

    from sweeplab.sweep import plan

    section = sharp_section(depth=(2,), family=("gaussian",), seeds=2)
    section["d_io"] = [1]
    files = plan("sharpness", section, tmp_path / "blocks").write_plan_files(tmp_path / "plans")
    out = tmp_path / "blocks" / f"{files[0].stem}.zarr.zip"
    heavy = ["xarray", "pandas", "dask.array", "matplotlib"]
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from sweeplab.cli import main\n"
        f"r = CliRunner().invoke(main, ['run-block', {str(files[0])!r}, '--out', {str(out)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    assert read_block(out, "sharpness").arrays["status"].tolist() == [0, 0]
