"""End-to-end: the real snakemake CLI, a real Dask LocalCluster, real zarr stores."""

import http.server
import json
import os
import subprocess
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
import zarr
from wfutil import BIN, TINY, copy_run, planned_jobs, snakemake, write_config

from sweeplab import dmf, mcvd
from sweeplab.plots import FIGURES
from sweeplab.sweep import Ledger, open_block, open_dataset, plan, point_seed
from sweeplab.sweep.experiments import (
    EXPERIMENTS,
    REGISTRY,
    escape_minimizer,
    sharpness_minimizer,
)
from sweeplab.sweep.runner import FAIL_ENV

AGG = "results/.aggregated/escape"  # the escape aggregate's stamp: blocks + aggregate only


def _tree_state(path):
    """Bytes and mtime of every block store under ``path`` (the ledger caches are indexes)."""
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(path.rglob("*.zarr.zip"))}


def test_datasets_hold_the_grid_and_match_direct_calls(tiny_run):
    res = tiny_run / "results"
    # the aggregate rule's output is a stamp; the store is written by the job itself
    for experiment in EXPERIMENTS:
        assert (res / ".aggregated" / experiment).is_file()
        assert (res / f"{experiment}.zarr" / "sweeplab-manifest.json").is_file()
        assert list((res / "plans" / experiment).glob("b*.json"))
    sharp = open_dataset(res / "sharpness.zarr").load()
    assert sharp.family.values.tolist() == ["balanced", "gaussian"]
    assert sharp.seed.values.tolist() == [0, 1] and sharp.depth.values.tolist() == [3]
    ws, _ = sharpness_minimizer(3, 4, 2, "gaussian", 1, 0.5)
    assert float(sharp.exact.sel(depth=3, width=4, dio=2, family="gaussian", seed=1)) == (
        dmf.sharpness(ws)
    )
    assert int(sharp.status.sum()) == 0
    assert (sharp.bound >= sharp.exact * (1 - 1e-12)).all()

    esc = open_dataset(res / "escape.zarr").load()
    assert esc.c.values.tolist() == [0.9, 1.2]
    ws, _ = escape_minimizer(4, 1, 0)
    lam = dmf.sharpness(ws)
    direct = dmf.escape(ws, 1.2 * 2 / lam, max_steps=2000)
    point = esc.sel(depth=4, width=1, c=1.2, radius=1e-9, seed=0)
    assert dmf.OUTCOMES[int(point.outcome)] == direct.outcome
    np.testing.assert_allclose(point.loss.values, direct.loss, rtol=1e-9, atol=1e-300)
    assert dmf.OUTCOMES[int(esc.outcome.sel(c=0.9).item())] == "stayed"
    np.testing.assert_array_equal(point.w_star.values, np.concatenate([w.ravel() for w in ws]))
    # the tiny config sets escape.track_sharpness: Lanczos sharpness at every recorded checkpoint
    tracked = point.checkpoint_sharpness.values
    assert tracked[0] == pytest.approx(lam, rel=1e-6)
    assert np.isfinite(tracked[np.isfinite(point.loss.values)]).all()

    ch = open_dataset(res / "channel.zarr").load()
    g = mcvd.Geometry((0, 0, 10), (10, 0, 0), 5, 79.4)
    seed = point_seed(0, "channel", geometry="paper", D=79.4, dt=1e-3, correction="bridge")
    sim = mcvd.simulate(g, 0.5, 1e-3, 2000, seed=seed, batch_size=1000)
    f, _ = mcvd.cumulative_fraction(sim)
    got = ch.fraction_sim.sel(
        geometry="paper", D=79.4, dt=1e-3, correction="bridge", seed=0, reactivity=np.inf
    )  # the default axis: the absorbing receiver
    np.testing.assert_array_equal(got.values, f[49::50])
    for ds in (sharp, esc, ch):
        for name, var in ds.data_vars.items():
            assert var.attrs.get("units") and var.attrs.get("long_name"), name
        assert {"sweeplab_version", "git_revision", "config", "command"} <= set(ds.attrs)
    # every registered figure (the tiny config selects every experiment), in its experiment's
    # directory, as PNG, SVG and PDF
    drawn = {p.relative_to(res / "figures") for p in (res / "figures").glob("*/[!.]*")}
    assert drawn == {
        Path(experiment) / f"{name}.{ext}"
        for name, (experiment, _) in FIGURES.items()
        for ext in ("png", "svg", "pdf")
    }
    for name in ("exact", "image_chain", "first_order"):  # the channel models, every Ts
        assert ch[f"received_{name}"].notnull().all(), name
    assert ch.isi_sim.sizes["tap"] == 5 and ch.Ts.values.tolist() == [0.1]
    np.testing.assert_allclose(
        got.values, ch.fraction_exact.sel(geometry="paper").squeeze().values, atol=0.05
    )


def test_every_figure_is_png_at_200_dpi_svg_and_pdf(tiny_run):
    """The workflow's figures, each checked as tests/plots checks draw_all's."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plots"))
    from plotcheck import check_figure_files

    for name, (experiment, _) in FIGURES.items():
        check_figure_files(tiny_run / "results" / "figures" / experiment, name)


def test_info_and_export_share_over_http(tiny_run, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from sweeplab import cli

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    # the installed command once (info); export in process (each start costs about 3 s)
    info = subprocess.run(
        [str(BIN / "sweeplab"), "info", "results/escape.zarr"],
        cwd=tiny_run,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "dims: depth=1, width=1, c=2" in info.stdout and "failed points: 0" in info.stdout
    assert "predicted_escape_step" in info.stdout and "[step]" in info.stdout
    monkeypatch.chdir(tiny_run)
    for dest in (tmp_path / "share" / "escape.zarr", tmp_path / "escape.zarr.zip"):
        result = CliRunner().invoke(cli.main, ["export", "escape", str(dest)])
        assert result.exit_code == 0, result.output
    original = open_dataset(tiny_run / "results" / "escape.zarr").load()
    local = xr.open_zarr(tmp_path / "share" / "escape.zarr").load()
    xr.testing.assert_equal(local, original)
    assert "open_zarr" in local.attrs["README"]
    zipped = xr.open_zarr(zarr.storage.ZipStore(tmp_path / "escape.zarr.zip", mode="r")).load()
    xr.testing.assert_equal(zipped, original)

    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "share"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/escape.zarr"
        remote = xr.open_zarr(url).load()
        xr.testing.assert_equal(remote, original)
    finally:
        server.shutdown()
        server.server_close()


def test_lint_is_clean(tiny_run):
    proc = snakemake(tiny_run, "--lint", check=False)
    findings = [
        line.strip()
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip().startswith("* ")
    ]
    assert findings == [], proc.stdout + proc.stderr
    assert proc.returncode == 0


def test_report_holds_every_figure_with_its_caption(tiny_run):
    """`snakemake --report` on the tiny run: one entry per figure, each with its own caption."""
    import html
    import re

    report = tiny_run / "report.html"
    snakemake(tiny_run, "--report", str(report))
    text = report.read_text()
    # the report embeds one JSON record per file:
    # "results/figures/<experiment>/<name>.png": {..."caption": ...}
    records = dict(re.findall(r'"results/figures/\w+/(\w+)\.png": \{"name": .*?"caption": '
                              r'("(?:[^"\\]|\\.)*")', text))  # fmt: skip
    expected = {fig.name: fig.caption for exp in REGISTRY.values() for fig in exp.figures}
    assert sorted(records) == sorted(expected)

    def plain(rst_or_html: str) -> str:
        return " ".join(html.unescape(re.sub(r"<[^>]+>|`", "", rst_or_html)).split())

    for name, caption in expected.items():
        shown = plain(json.loads(records[name]))
        assert shown.startswith(plain(caption)), (name, shown[:200])
        assert f"sweeplab figures {name}" in shown
    assert report.stat().st_size < 5 * 2**20


def _escape_plan(workdir, **section):
    """The plan of the escape section (the tiny one with ``section``) against ``workdir``."""
    tiny = yaml.safe_load(TINY.read_text())
    return plan("escape", {**tiny["escape"], **section},
                workdir / "results" / "blocks" / "escape")  # fmt: skip


def _escape_values(workdir):
    ds = open_dataset(workdir / "results" / "escape.zarr").load()
    ds.attrs = {}
    return ds.drop_vars(["steps_run"], errors="ignore")


def _aggregate_log(workdir):
    return (workdir / "results" / "logs" / "aggregate" / "escape.log").read_text()


def _reversed_keys(value):
    """``value`` with the keys of every mapping in it in reverse order."""
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def test_incremental_extend_retry_delete_and_settings(tiny_run, tmp_path):
    # the dry runs plan the whole workflow (figures included); the runs but the last build the
    # escape aggregate only (figures are the figure tests' business, and cost most of a run)
    run = copy_run(tiny_run, tmp_path / "run")
    blocks = run / "results" / "blocks"
    # nothing changed but the order of every mapping's keys in config.yaml (the channel
    # geometries included): nothing to do (on 61276c7 it re-ran every aggregate and figure)
    reordered = _reversed_keys(yaml.safe_load((run / "config.yaml").read_text()))
    assert list(reordered) != list(yaml.safe_load((run / "config.yaml").read_text()))
    (run / "config.yaml").write_text(yaml.safe_dump(reordered, sort_keys=False))
    assert planned_jobs(snakemake(run, "-n")) == {}
    before = _tree_state(blocks)
    n_before = len(Ledger.load(blocks / "escape", "escape", save=False).keys)

    # c extended in the middle of the list and at its end, seeds 1 -> 2: only the 2 + 2 * 2
    # new points are computed, in one block; the new c = 1.5 points fail (injected)
    extended = {"c": [0.9, 1.0, 1.2, 1.5], "seeds": 2}
    write_config(run, escape=extended)
    assert _escape_plan(run, **extended).counts() == {"done": 2, "failed": 0, "pending": 6}
    jobs = planned_jobs(snakemake(run, "-n"))
    assert jobs == {
        "escape_block": 1,
        "aggregate": 1,
        "figures_escape": 1,
        "default": 1,
    }
    snakemake(run, AGG, env={FAIL_ENV: json.dumps({"c": 1.5})})
    after = _tree_state(blocks)
    assert {p: after[p] for p in before} == before  # old block stores untouched (bytes, mtime)
    new = [p for p in after if p not in before and p.name.endswith(".zarr.zip")]
    assert len(new) == 1 and open_block(new[0]).sizes["point"] == 6
    assert len(Ledger.load(blocks / "escape", "escape", save=False).keys) == n_before + 6
    esc = open_dataset(run / "results" / "escape.zarr").load()
    assert esc.c.values.tolist() == [0.9, 1.0, 1.2, 1.5] and esc.seed.values.tolist() == [0, 1]
    assert (esc.status.sel(c=1.5) == 1).all() and (esc.status.sel(c=[0.9, 1.0, 1.2]) == 0).all()
    assert "injected failure" in str(esc.error.sel(c=1.5, seed=0).item())
    assert "2 failed point(s)" in _aggregate_log(run)
    # the failed points are kept until retried; retry_failed recomputes just them
    assert planned_jobs(snakemake(run, "-n", AGG)) == {}
    snakemake(run, AGG, "--config", "retry_failed=True")
    retried = [p for p in _tree_state(blocks) if p not in after and p.name.endswith(".zarr.zip")]
    assert len(retried) == 1 and open_block(retried[0]).sizes["point"] == 2
    esc = open_dataset(run / "results" / "escape.zarr").load()
    assert int(esc.status.sum()) == 0 and esc.loss.sel(c=1.5).notnull().any()
    assert "0 failed point(s)" in _aggregate_log(run)
    reference = _escape_values(run)

    # a numerical setting recomputes every point of that experiment (and nothing else) ...
    write_config(run, escape={**extended, "max_steps": 2500})
    changed = _escape_plan(run, **extended, max_steps=2500)
    assert changed.counts() == {"done": 0, "failed": 0, "pending": 8}
    jobs = planned_jobs(snakemake(run, "-n"))
    assert jobs == {
        "escape_block": len(changed.blocks),
        "aggregate": 1,
        "figures_escape": 1,
        "default": 1,
    }
    snakemake(run, AGG)
    assert open_dataset(run / "results" / "escape.zarr").attrs["config"] != reference.attrs.get(
        "config", ""
    )
    # ... and switching it back recomputes nothing: the old blocks are still there (no block
    # file is written; the aggregate takes the old points)
    write_config(run, escape=extended)
    assert _escape_plan(run, **extended).counts() == {"done": 8, "failed": 0, "pending": 0}
    files = set(_tree_state(blocks))
    snakemake(run, AGG)
    assert set(_tree_state(blocks)) == files
    xr.testing.assert_identical(_escape_values(run), reference)

    # a deleted block is recomputed (the same points: the same name) and only it is read
    # (the tiny run's block: every point it holds is held by it alone)
    holders = _escape_plan(run, **extended).holder_blocks
    (victim,) = [p for p in before if p.parent.name == "escape"]
    assert victim.name.removesuffix(".zarr.zip") in holders
    victim.unlink()
    assert planned_jobs(snakemake(run, "-n")) == {
        "escape_block": 1,
        "aggregate": 1,
        "figures_escape": 1,
        "default": 1,
    }
    # the dry run above is rule all's plan; run it for the block and the aggregate only (the
    # figures are the figure tests' business)
    snakemake(run, str(victim.relative_to(run)), AGG)
    assert victim.exists()
    assert f"update: 1 read, {len(holders) - 1} reused" in _aggregate_log(run)
    assert planned_jobs(snakemake(run, "-n", AGG)) == {}
    xr.testing.assert_identical(_escape_values(run), reference)
