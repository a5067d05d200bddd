"""Points as the unit of identity: keys, ledger, packing, retry, conflicts (real blocks).

Blocks are computed by the real ``run_plan`` against one shared loopback Dask cluster, on tiny
escape sections (200 GD steps per run).
"""

import json
import os

import numpy as np
import pytest
from distributed import LocalCluster

from sweeplab import dmf
from sweeplab.sweep import aggregate, open_block, open_dataset, plan, run_plan
from sweeplab.sweep.aggregate import ConflictError, MissingPointsError
from sweeplab.sweep.blockstore import read_block, write_block
from sweeplab.sweep.experiments import MAX_GRID_POINTS, escape_minimizer, get, validate_config
from sweeplab.sweep.identity import block_name, grid_points, hex_keys, point_keys
from sweeplab.sweep.ledger import Ledger
from sweeplab.sweep.planner import MAX_BLOCK_POINTS, load_plan_file
from sweeplab.sweep.runner import FAIL_ENV

ESC = get("escape")


def section(**kw):
    base = {
        "depth": [4], "width": [1], "c": [0.9, 1.2], "radius": [1e-9], "seeds": 2,
        "escape_radius": 1e-3, "max_steps": 200, "loss_tol": 1e-20, "track_sharpness": False,
    }  # fmt: skip
    base.update(kw)
    return base


@pytest.fixture(scope="module")
def dask_address():
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
    ) as cluster:  # fmt: skip  (in-process transport; HTTP servers on loopback)
        yield cluster.scheduler_address


def compute(results, sec, address, **plan_kw):
    """Plan ``sec`` against ``results`` and run every planned block; return the plan."""
    blocks = results / "blocks" / "escape"
    p = plan("escape", sec, blocks, **plan_kw)
    for f in p.write_plan_files(results / "plans" / "escape"):
        run_plan(f, blocks / f"{f.stem}.zarr.zip", dask={"address": address})
    return p


def n_computed(results):
    led = Ledger.load(results / "blocks" / "escape", "escape")
    return len(led.keys)


# --- keys -----------------------------------------------------------------------------------
def test_keys_depend_on_point_and_settings_not_on_grid_or_order():
    a = grid_points(ESC, section(c=[0.9, 1.2]))
    b = grid_points(ESC, section(c=[1.5, 1.2, 0.9], seeds=3))
    ka = dict(zip(map(tuple, zip(*a.columns(np.arange(4)).values(), strict=True)),
                  a.keys, strict=True))  # fmt: skip
    cols_b = b.columns(np.arange(len(b.keys)))
    for i, combo in enumerate(zip(*cols_b.values(), strict=True)):
        if combo in ka:
            assert ka[combo] == b.keys[i]
    # the same points given as columns (any order) hash to the grid's keys
    cols = a.columns(np.arange(4)[::-1])
    np.testing.assert_array_equal(
        point_keys(ESC, ESC.settings(section()), section(), cols), a.keys[::-1]
    )
    # canonical numbers: 1 and 1.0, 1e-3 and 0.001 are the same
    same = grid_points(ESC, section(escape_radius=0.001, max_steps=200.0))
    np.testing.assert_array_equal(same.keys, a.keys)
    # a setting or the version changes every key
    assert not np.isin(grid_points(ESC, section(max_steps=100)).keys, a.keys).any()


def test_version_bump_changes_every_key(monkeypatch):
    before = grid_points(ESC, section()).keys
    monkeypatch.setattr(type(ESC), "version", ESC.version + 1)
    assert not np.isin(grid_points(ESC, section()).keys, before).any()


def test_grid_size_is_refused_before_enumeration():
    cfg = {"experiments": ["escape"], "escape": section(seeds=10**18)}
    with pytest.raises(ValueError, match=r"2e\+18 points .*seeds 10+\); allowed: at most 1e\+07"):
        validate_config(cfg)
    assert MAX_GRID_POINTS == 10**7


# --- packing --------------------------------------------------------------------------------
def test_packing_covers_every_point_once_respects_target_and_is_deterministic(tmp_path):
    sec = section(depth=[2, 3, 4], width=[1, 2], c=list(np.round(np.linspace(0.5, 3, 25), 3)),
                  seeds=8)  # fmt: skip
    target = 0.005  # seconds: 57 blocks under the escape cost model
    p = plan("escape", sec, tmp_path / "none", block_seconds=target)
    rows = np.concatenate([b.rows for b in p.blocks])
    assert sorted(rows.tolist()) == list(range(len(p.grid.keys)))
    cost = ESC.point_cost(p.grid.columns(np.arange(len(p.grid.keys))), ESC.settings(sec))
    for b in p.blocks:
        total = float(cost[b.rows].sum())
        assert b.seconds == pytest.approx(total)
        # a block closes once its points reach the target: it holds at most one point more
        assert total - cost[b.rows].max() < target or len(b.rows) == 1
    assert len(p.blocks) > 10
    # points of one minimizer (depth, width, radius, seed) stay together, c inside
    cols = p.grid.columns(p.blocks[0].rows)
    assert len(set(cols["c"].tolist())) > 1
    again = plan("escape", sec, tmp_path / "none", block_seconds=target)
    assert [b.name for b in again.blocks] == [b.name for b in p.blocks]
    for x, y in zip(again.blocks, p.blocks, strict=True):
        np.testing.assert_array_equal(x.rows, y.rows)


def test_packing_respects_the_memory_bound_and_isolates_costly_points(tmp_path):
    sec = section(depth=[2, 15], width=[1, 8], c=[0.9, 1.2, 1.5], seeds=4)
    loose = plan("escape", sec, tmp_path / "none", block_seconds=1e9)
    assert len(loose.blocks) == 1
    biggest = max(ESC.point_memory(loose.grid.columns(np.arange(48)), ESC.settings(sec))[0])
    bound_mb = 4 * biggest / 2**20
    tight = plan("escape", sec, tmp_path / "none", block_seconds=1e9, block_mem_mb=bound_mb)
    assert len(tight.blocks) > 1
    assert all(b.memory <= bound_mb * 2**20 for b in tight.blocks)
    assert sorted(np.concatenate([b.rows for b in tight.blocks]).tolist()) == list(range(48))
    # every point costlier than the target alone in its block
    cheap = plan("escape", sec, tmp_path / "none", block_seconds=1e-9)
    assert all(len(b.rows) == 1 for b in cheap.blocks) and len(cheap.blocks) == 48
    assert MAX_BLOCK_POINTS >= 10_000
    with pytest.raises(ValueError, match="a block holding it alone needs"):
        plan("escape", sec, tmp_path / "none", block_mem_mb=1e-6)


def test_plan_files_are_checked_against_their_block_name(tmp_path):
    p = plan("escape", section(), tmp_path / "blocks")
    (f,) = p.write_plan_files(tmp_path / "plans")
    exp, points, _settings, _sec, _salt = load_plan_file(f)
    assert len(points) == 4 and exp is ESC
    content = json.loads(f.read_text())
    content["settings"]["max_steps"] = 100  # other settings: other keys, not this block
    f.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="do not hash to its block name"):
        load_plan_file(f)


# --- identity through real blocks -------------------------------------------------------------
def test_a_point_is_computed_once_whatever_grid_or_packing(tmp_path, dask_address):
    res = tmp_path / "results"
    compute(res, section(c=[0.9, 1.2]), dask_address)
    assert n_computed(res) == 4
    # another grid, other packing: only c = 1.5 is new
    p = compute(res, section(c=[1.2, 1.5, 0.9]), dask_address, block_seconds=1e-9)
    assert p.counts() == {"done": 4, "failed": 0, "pending": 2}
    assert n_computed(res) == 6
    # inserting a value in the middle of a list runs only the new points
    p = compute(res, section(c=[0.9, 1.0, 1.2, 1.5]), dask_address)
    assert p.counts()["pending"] == 2 and n_computed(res) == 8
    # a settings change recomputes; switching back recomputes nothing
    p = compute(res, section(max_steps=100), dask_address)
    assert p.counts()["pending"] == 4
    assert plan("escape", section(), res / "blocks" / "escape").counts()["pending"] == 0
    ds_sec = section(c=[0.9, 1.0, 1.2, 1.5])
    aggregate("escape", ds_sec, res / "blocks" / "escape", res / "escape.zarr")
    ds = open_dataset(res / "escape.zarr").load()
    assert ds.c.values.tolist() == [0.9, 1.0, 1.2, 1.5]
    assert (ds.steps_run <= 200).all() and int(ds.status.sum()) == 0
    ws, _ = escape_minimizer(4, 1, 1)
    direct = dmf.escape(ws, 1.0 * 2 / dmf.sharpness(ws), max_steps=200)
    point = ds.sel(depth=4, width=1, c=1.0, radius=1e-9, seed=1)
    assert dmf.OUTCOMES[int(point.outcome)] == direct.outcome
    np.testing.assert_allclose(point.loss.values, direct.loss, rtol=1e-9, atol=1e-300)


def test_retry_recomputes_only_failed_points_and_the_aggregate_takes_them(
    tmp_path, dask_address, monkeypatch
):
    res = tmp_path / "results"
    blocks = res / "blocks" / "escape"
    monkeypatch.setenv(FAIL_ENV, json.dumps({"c": 1.2, "seed": 1}))
    compute(res, section(), dask_address)
    monkeypatch.delenv(FAIL_ENV)
    aggregate("escape", section(), blocks, res / "escape.zarr")
    ds = open_dataset(res / "escape.zarr").load()
    assert int(ds.status.sum()) == 1
    assert "injected failure" in str(ds.error.sel(c=1.2, seed=1).squeeze().item())
    p = plan("escape", section(), blocks)
    assert p.counts() == {"done": 3, "failed": 1, "pending": 0} and not p.blocks
    p = plan("escape", section(), blocks, retry_failed=True)
    assert p.counts()["pending"] == 1 and len(p.blocks) == 1
    assert p.blocks[0].salt  # a new name although the points' keys are the same
    before = {f.name: f.stat().st_mtime_ns for f in blocks.glob("*.zarr.zip")}
    compute(res, section(), dask_address, retry_failed=True)
    after = {f.name: f.stat().st_mtime_ns for f in blocks.glob("*.zarr.zip")}
    assert {k: v for k, v in after.items() if k in before} == before  # old blocks untouched
    assert len(after) == len(before) + 1
    assert len(read_block(blocks / f"{p.blocks[0].name}.zarr.zip", "escape").arrays["key"]) == 1
    report = aggregate("escape", section(), blocks, res / "escape.zarr")
    assert report.mode == "update" and report.blocks_read == 1
    ds = open_dataset(res / "escape.zarr").load()
    assert int(ds.status.sum()) == 0 and np.isfinite(ds.final_loss).all()
    assert plan("escape", section(), blocks, retry_failed=True).counts()["pending"] == 0


def test_conflicting_blocks_and_blocks_with_other_settings(tmp_path, dask_address):
    res = tmp_path / "results"
    blocks = res / "blocks" / "escape"
    compute(res, section(), dask_address)
    with pytest.raises(MissingPointsError, match="2 of 6 point"):
        aggregate("escape", section(seeds=3), blocks, res / "escape.zarr")
    (path,) = blocks.glob("*.zarr.zip")
    data = read_block(path, "escape")
    ds = open_block(path)
    # the same points with one value changed, under another (valid) block name
    twin = ds.copy(deep=True)
    twin["final_loss"][0] = 123.0
    name = block_name(np.frombuffer(b"x" * 16, dtype="S16"))
    twin.attrs["block"] = name
    write_block(twin, blocks / f"{name}.zarr.zip")
    with pytest.raises(ConflictError, match=f"{path.name}.*{name}|{name}.*{path.name}"):
        aggregate("escape", section(), blocks, res / "escape.zarr")
    (blocks / f"{name}.zarr.zip").unlink()
    # a block claiming the grid's keys under other settings (W1): its keys do not recompute
    other = ds.copy(deep=True)
    settings = json.loads(other.attrs["settings"])
    settings["max_steps"] = 100
    other.attrs["settings"] = json.dumps(settings)
    path.unlink()
    write_block(other, path)
    with pytest.raises(ValueError, match="keys do not match its parameters and settings"):
        aggregate("escape", section(), blocks, res / "escape.zarr")
    np.testing.assert_array_equal(
        np.sort(data.arrays["key"].astype(str)),
        np.sort(hex_keys(grid_points(ESC, section()).keys).astype(str)),
    )


def test_ledger_cache_reads_only_new_files(tmp_path, dask_address, monkeypatch):
    res = tmp_path / "results"
    blocks = res / "blocks" / "escape"
    compute(res, section(c=[0.9]), dask_address)
    first = Ledger.load(blocks, "escape")
    assert (blocks / ".ledger.npz").exists()
    compute(res, section(c=[1.2]), dask_address)
    import sweeplab.sweep.ledger as ledger_mod

    read = []
    real = ledger_mod.read_point_table
    monkeypatch.setattr(ledger_mod, "read_point_table",
                        lambda p, e: read.append(p) or real(p, e))  # fmt: skip
    second = Ledger.load(blocks, "escape")
    assert len(read) == 1 and len(second.keys) == len(first.keys) + 2
    read.clear()
    Ledger.load(blocks, "escape")
    assert not read
    os.unlink(blocks / f"{first.names[0]}.zarr.zip")
    assert len(Ledger.load(blocks, "escape").keys) == 2 and not read


def test_planner_estimates_see_the_channel_geometries(tmp_path):
    """The planner's cost estimate includes the exact model's, which depends on a geometry's
    entries (a receiver 5 nm from the plane costs far more than one 5 um away): it passed the
    settings without the mapping axes' entries, so every geometry was estimated alike."""
    import yaml

    section = yaml.safe_load(open(".test/config/config.yaml"))["channel"]
    near = {**section["geometry"]["paper"], "rx": [5.005, 0, 0]}
    section = {**section, "geometry": {**section["geometry"], "near": near}}
    p = plan("channel", section, tmp_path / "blocks", block_seconds=1e-9)  # a block per point
    seconds = {p.grid.columns(b.rows)["geometry"][0]: b.seconds for b in p.blocks}
    assert seconds["near"] > 2 * seconds["paper"], seconds
