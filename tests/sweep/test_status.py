"""``sweeplab status``: counts against the blocks on disk, --by, --json, --failed, errors.

Real blocks of a tiny escape section (200 GD steps per run) are computed once per module by
``run_plan`` on one shared in-process Dask cluster: c = 0.9 and 1.5 succeed, c = 1.2 fails
(injected), and the config's grid is c = [0.9, 1.2, 3.0] (1.5 is outside it, 3.0 pending).
"""

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from distributed import LocalCluster

from sweeplab.cli import main
from sweeplab.sweep import plan, run_plan
from sweeplab.sweep.blockstore import read_block
from sweeplab.sweep.experiments import get
from sweeplab.sweep.identity import grid_points, raw_keys
from sweeplab.sweep.runner import FAIL_ENV
from sweeplab.sweep.status import sweep_status

ESC = get("escape")
GRID_C = [0.9, 1.2, 3.0]


def section(c):
    return {
        "depth": [4], "width": [1], "c": list(c), "radius": [1e-9], "seeds": 2,
        "escape_radius": 1e-3, "max_steps": 200, "loss_tol": 1e-20, "track_sharpness": False,
    }  # fmt: skip


def write_config(path, c=GRID_C, **top):
    cfg = {"experiments": ["escape"], "dask": {"processes": False}, **top, "escape": section(c)}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def dask_address():
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False,
        dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0",
    ) as cluster:  # fmt: skip
        yield cluster.scheduler_address


def compute(results, sec, address, fail=None):
    """Plan ``sec`` against ``results`` and run its blocks (``fail``: injected failures)."""
    blocks = results / "blocks" / "escape"
    p = plan("escape", sec, blocks)
    old = os.environ.pop(FAIL_ENV, None)
    try:
        if fail:
            os.environ[FAIL_ENV] = json.dumps(fail)
        for f in p.write_plan_files(results / "plans" / "escape"):
            run_plan(f, blocks / f"{f.stem}.zarr.zip", dask={"address": address})
    finally:
        os.environ.pop(FAIL_ENV, None)
        if old is not None:
            os.environ[FAIL_ENV] = old
    return p


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, dask_address):
    root = tmp_path_factory.mktemp("status")
    results = root / "results"
    compute(results, section([0.9, 1.5]), dask_address)
    compute(results, section([1.2]), dask_address, fail={"c": 1.2})
    config = write_config(root / "config.yaml")
    profile = root / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump({
        "group-components": ["escape_blocks=2"], "config": ["block_seconds=1.0e-9"],
    }))  # fmt: skip
    return root, results, config, profile


def direct_counts(results, c=GRID_C):
    """Done, failed, pending and outside counts read from the block files themselves."""
    records: dict[bytes, set[int]] = {}
    for path in sorted((results / "blocks" / "escape").glob("*.zarr.zip")):
        data = read_block(path, "escape")
        for k, s in zip(raw_keys(data.arrays["key"]).tolist(), data.arrays["status"].tolist(),
                        strict=True):  # fmt: skip
            records.setdefault(k, set()).add(int(s))
    grid = set(grid_points(ESC, section(c)).keys.tolist())
    done = sum(1 for k in grid if 0 in records.get(k, ()))
    failed = sum(1 for k in grid if k in records and 0 not in records[k])
    outside = [k for k in records if k not in grid]
    return {
        "done": done, "failed": failed, "pending": len(grid) - done - failed,
        "outside": len(outside), "outside_done": sum(1 for k in outside if 0 in records[k]),
    }  # fmt: skip


def run(*args):
    result = CliRunner().invoke(main, ["status", *map(str, args)])
    assert "Traceback" not in result.output
    return result


def test_counts_equal_the_blocks_on_disk(sweep):
    _, results, config, profile = sweep
    want = direct_counts(results)
    assert want == {"done": 2, "failed": 2, "pending": 2, "outside": 2, "outside_done": 2}
    files = {p for p in results.rglob("*") if p.name != ".ledger.npz"}
    (s,) = sweep_status(config, results, profile=profile)
    assert {p for p in results.rglob("*") if p.name != ".ledger.npz"} == files  # plans nothing
    assert (s.done, s.failed, s.pending) == (want["done"], want["failed"], want["pending"])
    assert (s.outside, s.outside_done) == (want["outside"], want["outside_done"])
    assert s.points == 6 and s.blocks == 1 and s.cpu_hours > 0 and s.block_files == 2
    # the profile's 1e-9 s blocks: one block per pending point, two blocks per Slurm job
    assert (s.slurm.blocks, s.slurm.group_components, s.slurm.jobs) == (2, 2, 1)

    result = run("--configfile", config, "--results", results, "--json", "--profile", profile)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)["escape"]
    for name in ("done", "failed", "pending"):
        assert type(doc[name]) is int and doc[name] == want[name]
    assert doc["outside"] == 2 and doc["blocks"] == 1 and doc["slurm"]["jobs"] == 1

    text = run("--configfile", config, "--results", results, "--profile", profile).output
    assert "escape: 6 point(s): 2 done, 2 failed, 2 pending" in text
    assert "failed points stay failed" in text and "CPU-hours" in text
    assert "2 block(s) in 1 job(s) (2 block(s) per job)" in text
    assert "2 point(s) outside the current grid" in text


def test_by_tables_sum_to_the_totals(sweep):
    _, results, config, _ = sweep
    result = run("--configfile", config, "--results", results, "--json", "--by", "c,seed")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)["escape"]
    by = doc["by"]
    assert by["axes"] == ["c", "seed"] and len(by["done"]) == 6
    for name in ("done", "failed", "pending"):
        assert sum(by[name]) == doc[name]
    rows = {(c, s): (d, f, p) for c, s, d, f, p in zip(*by["values"], by["done"], by["failed"],
                                                          by["pending"], strict=True)}  # fmt: skip
    assert rows[(0.9, 0)] == (1, 0, 0) and rows[(1.2, 1)] == (0, 1, 0)
    assert rows[(3.0, 0)] == (0, 0, 1)
    text = run("--configfile", config, "--results", results, "--by", "c").output
    lines = [ln.split() for ln in text.splitlines() if ln.strip().startswith(("c ", "0.9", "1.2",
                                                                               "3.0"))]  # fmt: skip
    assert lines == [["c", "done", "failed", "pending"], ["0.9", "2", "0", "0"],
                     ["1.2", "0", "2", "0"], ["3.0", "0", "0", "2"]]  # fmt: skip


def test_failed_lists_the_injected_error(sweep):
    _, results, config, _ = sweep
    result = run("--configfile", config, "--results", results, "--failed")
    assert result.exit_code == 0, result.output
    assert "failed points: 2" in result.output
    listed = [ln for ln in result.output.splitlines() if "injected failure" in ln]
    assert len(listed) == 2 and all("c=1.2" in ln for ln in listed)
    assert {"seed=0" in ln for ln in listed} == {True, False}
    doc = json.loads(run("--configfile", config, "--results", results, "--failed",
                         "--json").output)  # fmt: skip
    assert [f["params"]["c"] for f in doc["escape"]["failures"]] == [1.2, 1.2]


def test_errors_are_one_line(sweep, tmp_path):
    _, results, config, _ = sweep
    result = run("--configfile", config, "--results", results, "--by", "nope")
    assert result.exit_code == 2
    error = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(error) == 1 and "'nope'" in error[0]
    assert "depth, width, c, radius, seed" in error[0]

    result = run("--configfile", tmp_path / "missing.yaml", "--results", results)
    assert result.exit_code == 1 and "missing.yaml" in result.output
    assert len(result.output.strip().splitlines()) == 1

    bad = tmp_path / "bad.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["escape"]["max_steps"] = -3
    bad.write_text(yaml.safe_dump(cfg))
    result = run("--configfile", bad, "--results", results)
    assert result.exit_code == 1 and "max_steps" in result.output
    assert len(result.output.strip().splitlines()) == 1

    bad.write_text("escape: [unclosed\n")
    result = run("--configfile", bad, "--results", results)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1


def test_status_follows_blocks_as_they_land(sweep, tmp_path, dask_address):
    _, results, config, _ = sweep
    mine = tmp_path / "results"
    shutil.copytree(results, mine)
    before = json.loads(run("--configfile", config, "--results", mine, "--json").output)
    assert (before["escape"]["done"], before["escape"]["pending"]) == (2, 2)
    compute(mine, section(GRID_C), dask_address)  # the pending c = 3.0 points land
    after = json.loads(run("--configfile", config, "--results", mine, "--json").output)
    assert (after["escape"]["done"], after["escape"]["failed"]) == (4, 2)
    assert (after["escape"]["pending"], after["escape"]["blocks"]) == (0, 0)
    assert direct_counts(mine)["done"] == 4

    retry = write_config(tmp_path / "retry.yaml", retry_failed=True)
    result = run("--configfile", retry, "--results", mine, "--json")
    doc = json.loads(result.output)["escape"]
    assert (doc["done"], doc["failed"], doc["pending"], doc["failed_retried"]) == (4, 0, 2, 2)
    text = run("--configfile", retry, "--results", mine).output
    assert "retry_failed: true, so failed points count as pending" in text
    assert np.isclose(doc["cpu_hours"] * 3600, sum(
        b.seconds for b in plan("escape", section(GRID_C), mine / "blocks" / "escape",
                                retry_failed=True).blocks))  # fmt: skip


def test_status_loads_no_science_dask_or_xarray(sweep, tmp_path):
    """``sweeplab status`` plans from the registry and the ledger alone: a fresh interpreter
    running it (every option) imports none of the science cores' heavy dependencies (scipy,
    numba), nor Dask or xarray; their imports were most of a warm status's time."""
    import subprocess
    import sys

    _, results, _, profile = sweep
    cfg = write_config(tmp_path / "config.yaml", c=[*GRID_C, 5.0])
    heavy = ["scipy", "numba", "xarray", "dask", "distributed", "sweeplab.dmf.escape"]
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from sweeplab.cli import main\n"
        f"r = CliRunner().invoke(main, ['status', '--configfile', {str(cfg)!r}, '--results', "
        f"{str(results)!r}, '--by', 'c', '--failed', '--json', '--profile', {str(profile)!r}])\n"
        "assert '\"failed\": 2' in r.output, r.output\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
