"""``sweeplab merge``: halves merged equal one run; refusals write nothing; archives; no-op twice.

Real blocks of a tiny escape section (200 GD steps per run, c = [0.9, 1.2], 2 seeds) are computed
once per module by ``run_plan`` on one shared in-process Dask cluster: each half (c = 0.9, c =
1.2) in its own results directory, and the whole grid in a third.
"""

import json
import os
import shutil
import tarfile

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from distributed import LocalCluster

from sweeplab.cli import main
from sweeplab.sweep import aggregate, open_block, plan, run_plan
from sweeplab.sweep.blockstore import write_block
from sweeplab.sweep.experiments import get
from sweeplab.sweep.merge import MergeError, merge_blocks
from sweeplab.sweep.runner import FAIL_ENV

ESC = get("escape")


def section(c=(0.9, 1.2)):
    return {
        "depth": [4], "width": [1], "c": list(c), "radius": [1e-9], "seeds": 2,
        "escape_radius": 1e-3, "max_steps": 200, "loss_tol": 1e-20, "track_sharpness": False,
    }  # fmt: skip


SHARP = {
    "depth": [3], "width": [4], "d_io": [2], "family": ["balanced"], "seeds": 1,
    "gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 500,
}  # fmt: skip


@pytest.fixture(scope="module")
def dask_address():
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False,
        dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0",
    ) as cluster:  # fmt: skip
        yield cluster.scheduler_address


def compute(results, experiment, sec, address):
    blocks = results / "blocks" / experiment
    p = plan(experiment, sec, blocks)
    for f in p.write_plan_files(results / "plans" / experiment):
        run_plan(f, blocks / f"{f.stem}.zarr.zip", dask={"address": address})
    return sorted(blocks.glob("*.zarr.zip"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dask_address):
    root = tmp_path_factory.mktemp("merge")
    out = {}
    for name, c in (("low", [0.9]), ("high", [1.2]), ("full", [0.9, 1.2])):
        compute(root / name, "escape", section(c), dask_address)
        out[name] = root / name
    # the c = 1.2 half again, its points failed (the same block name as "high")
    os.environ[FAIL_ENV] = json.dumps({"c": 1.2})
    try:
        compute(root / "failed", "escape", section([1.2]), dask_address)
    finally:
        del os.environ[FAIL_ENV]
    out["failed"] = root / "failed"
    compute(root / "sharp", "sharpness", SHARP, dask_address)
    out["sharp"] = root / "sharp"
    return out


def tree(path):
    """Every file under ``path`` with its size and mtime (to show that nothing was written)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}  # fmt: skip


def blocks_of(results, experiment="escape"):
    return sorted((results / "blocks" / experiment).glob("*.zarr.zip"))


def fresh(runs, tmp_path, name):
    dest = tmp_path / name
    shutil.copytree(runs[name], dest)
    return dest


def invoke(*args):
    result = CliRunner().invoke(main, ["merge", *map(str, args)])
    assert "Traceback" not in result.output
    return result


def aggregated(results, out):
    aggregate("escape", section(), results / "blocks" / "escape", out)
    return xr.open_zarr(out).load()


def test_two_halves_merged_equal_one_run(runs, tmp_path):
    dest = fresh(runs, tmp_path, "low")
    result = invoke(runs["high"], "--results", dest)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "escape: merged 1 block(s) (2 new point(s)), skipped 0 already present"
    )
    p = plan("escape", section(), dest / "blocks" / "escape")
    assert p.counts() == {"done": 4, "failed": 0, "pending": 0} and not p.blocks
    merged = aggregated(dest, tmp_path / "merged.zarr")
    single = aggregated(runs["full"], tmp_path / "single.zarr")
    timing = {n for n, v in ESC.variables.items() if v.timing}
    assert set(merged.data_vars) == set(single.data_vars)
    for name in merged.data_vars:
        if name not in timing:
            xr.testing.assert_identical(merged[name], single[name])

    # the same source again: a no-op
    before = tree(dest)
    result = invoke(runs["high"], "--results", dest)
    assert result.exit_code == 0, result.output
    assert "merged 0 block(s) (0 new point(s)), skipped 1 already present" in result.output
    assert tree(dest) == before
    # the whole single run: every point here already, with the same values
    result = invoke(runs["full"], "--results", dest)
    assert result.exit_code == 0 and "merged 0 block(s)" in result.output
    assert tree(dest) == before


def test_archive_source_and_dry_run(runs, tmp_path):
    archive = tmp_path / "high.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(runs["high"] / "blocks", arcname="results/blocks")
    dest = fresh(runs, tmp_path, "low")
    before = tree(dest)
    result = invoke(archive, "--results", dest, "--dry-run")
    assert result.exit_code == 0 and "would merge 1 block(s)" in result.output
    assert tree(dest) == before
    reports = merge_blocks(archive, dest)
    assert [(r.experiment, len(r.merged), r.new_points) for r in reports] == [("escape", 1, 2)]
    assert [p.name for p in blocks_of(dest)] == sorted(
        p.name for p in blocks_of(runs["low"]) + blocks_of(runs["high"])
    )
    assert plan("escape", section(), dest / "blocks" / "escape").counts()["pending"] == 0

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        tf.add(blocks_of(runs["high"])[0], arcname="../escape/x.zarr.zip")
    result = invoke(evil, "--results", dest)
    assert result.exit_code == 1 and "unsafe path" in result.output


def refused(source, dest, *needles):
    before = tree(dest)
    result = invoke(source, "--results", dest)
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1
    for needle in needles:
        assert str(needle) in result.output
    assert tree(dest) == before
    return result.output


def test_a_conflicting_block_is_refused_naming_both_files(runs, tmp_path):
    (block,) = blocks_of(runs["high"])
    ds = open_block(block)
    ds["final_loss"].values[0] += 1.0
    src = tmp_path / "src" / "blocks" / "escape" / block.name
    write_block(ds, src)
    dest = fresh(runs, tmp_path, "full")
    (local,) = blocks_of(dest)
    out = refused(tmp_path / "src", dest, src, local, "final_loss")
    assert "different values" in out
    with pytest.raises(MergeError, match="final_loss"):
        merge_blocks(tmp_path / "src", dest, dry_run=True)


def test_a_damaged_block_refuses_the_whole_merge(runs, tmp_path):
    src = tmp_path / "src" / "blocks" / "escape"
    src.mkdir(parents=True)
    (good,) = blocks_of(runs["high"])
    shutil.copy(good, src / good.name)
    (victim,) = blocks_of(runs["low"])
    raw = bytearray(victim.read_bytes())
    at = len(raw) // 3
    raw[at : at + 8] = bytes(b ^ 0xFF for b in raw[at : at + 8])
    (src / victim.name).write_bytes(bytes(raw))
    dest = tmp_path / "empty"  # the good block alone would be merged
    refused(tmp_path / "src", dest, src / victim.name, "damaged")
    assert not dest.exists()


def test_a_block_of_another_experiment_is_refused_by_name(runs, tmp_path):
    src = tmp_path / "src" / "blocks" / "escape"
    src.mkdir(parents=True)
    (sharp,) = blocks_of(runs["sharp"], "sharpness")
    shutil.copy(sharp, src / sharp.name)
    dest = fresh(runs, tmp_path, "low")
    out = refused(tmp_path / "src", dest, src / sharp.name, "'sharpness' block", "'escape'")
    assert "nothing merged" in out


def test_sources_that_are_not_block_trees(runs, tmp_path):
    dest = tmp_path / "dest"
    assert "does not exist" in refused(tmp_path / "nope", dest)
    (tmp_path / "empty").mkdir()
    assert "no blocks found" in refused(tmp_path / "empty", dest)
    # a blocks tree (SRC/<experiment>/...) works as well as a results directory
    reports = merge_blocks(runs["high"] / "blocks", dest)
    assert [len(r.merged) for r in reports] == [1]
    assert np.array_equal(
        [p.read_bytes() for p in blocks_of(dest)], [p.read_bytes() for p in blocks_of(runs["high"])]
    )


def test_failed_points_here_are_superseded_by_merged_successes(runs, tmp_path):
    dest = fresh(runs, tmp_path, "failed")
    (mine,) = blocks_of(dest)
    (theirs,) = blocks_of(runs["high"])
    assert mine.name == theirs.name
    assert plan("escape", section([1.2]), dest / "blocks" / "escape").counts()["failed"] == 2
    result = invoke(runs["high"], "--results", dest)
    assert result.exit_code == 0, result.output
    assert "merged 1 block(s) (2 new point(s))" in result.stdout
    assert "replace a local copy" in result.stdout
    assert mine.read_bytes() == theirs.read_bytes()
    assert plan("escape", section([1.2]), dest / "blocks" / "escape").counts()["done"] == 2
    # the other way round: the failures add nothing to the successes
    dest = fresh(runs, tmp_path, "high")
    before = tree(dest)
    result = invoke(runs["failed"], "--results", dest)
    assert result.exit_code == 0 and "merged 0 block(s)" in result.stdout
    assert tree(dest) == before


def test_two_source_blocks_that_disagree_are_refused(runs, tmp_path):
    (block,) = blocks_of(runs["high"])
    ds = open_block(block)
    ds["eta"].values[1] *= 2.0
    src = tmp_path / "src" / "blocks" / "escape"
    write_block(ds, src / block.name)
    (full,) = blocks_of(runs["full"])
    shutil.copy(full, src / full.name)
    dest = fresh(runs, tmp_path, "low")
    out = refused(tmp_path / "src", dest, "source blocks", src / block.name, src / full.name)
    assert "'eta'" in out


def test_keys_ending_in_zero_bytes_keep_their_length():
    from sweeplab.sweep.merge import _key_bytes

    raw = np.frombuffer(b"a" * 15 + b"\0" + b"\0" * 16, dtype="S16")
    assert _key_bytes(raw) == [b"a" * 15 + b"\0", b"\0" * 16]


def test_a_failed_copy_leaves_nothing_behind(runs, tmp_path, monkeypatch):
    import sweeplab.sweep.merge as merge_mod

    src = tmp_path / "src" / "blocks" / "escape"
    src.mkdir(parents=True)
    for p in blocks_of(runs["low"]) + blocks_of(runs["high"]):
        shutil.copy(p, src / p.name)
    calls = []
    real = shutil.copyfile

    def copyfile(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(b))
        return real(a, b)

    monkeypatch.setattr(merge_mod.shutil, "copyfile", copyfile)
    dest = tmp_path / "dest"
    result = invoke(tmp_path / "src", "--results", dest)
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert len(calls) == 2 and tree(dest) == {}  # the first copy's temporary is gone too
