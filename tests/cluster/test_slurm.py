"""The sweep on a real (private, single-node) Slurm: executor profile, dask-jobqueue, scancel.

Every test compares against a plain local run of the same config: Slurm must change where
blocks run, never what they compute.
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import xarray as xr
from wfutil import BIN, REPO, planned_jobs, snakemake, write_config

from sweeplab.sweep import open_block, open_dataset, read_block

pytestmark = pytest.mark.slurm

PROFILE = REPO / "profiles" / "slurm"
TIMING = ("time_exact", "time_lanczos", "time_dense", "wall_time")  # differ run to run
# No accounting database here: job states come from squeue (the cluster keeps finished jobs for
# MinJobAge = 300 s), and the first status check need not wait the plugin's default 40 s.
SLURM_ARGS = (
    "--workflow-profile", str(PROFILE),
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "1",
    "--seconds-between-status-checks", "2",
)  # fmt: skip


def jobs(slurm) -> dict[str, dict[str, str]]:
    """Every job the controller still knows (finished ones included), by job id."""
    out = slurm.run("squeue", "-h", "--states=all", "-o", "%i|%j|%T|%k|%C|%m")
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return {r[0]: dict(zip(("name", "state", "comment", "cpus", "mem"), r[1:], strict=True))
            for r in rows}  # fmt: skip


def load(path: Path) -> xr.Dataset:
    ds = open_block(path) if path.name.endswith(".zip") else open_dataset(path).load()
    ds = ds.drop_vars(TIMING, errors="ignore")
    ds.attrs = {}
    return ds


def assert_same_results(a: Path, b: Path, experiments) -> None:
    """Aggregated datasets and every block store of two run directories are equal."""
    for exp in experiments:
        xr.testing.assert_equal(load(a / "results" / f"{exp}.zarr"),
                                load(b / "results" / f"{exp}.zarr"))  # fmt: skip
    blocks_a = sorted(p.relative_to(a) for p in (a / "results" / "blocks").glob("*/*.zarr.zip"))
    blocks_b = sorted(p.relative_to(b) for p in (b / "results" / "blocks").glob("*/*.zarr.zip"))
    assert blocks_a == blocks_b and blocks_a
    for rel in blocks_a:
        xr.testing.assert_equal(load(a / rel), load(b / rel))


def test_executor_profile_runs_grouped_blocks_as_slurm_jobs(slurm, tiny_run, tmp_path):
    write_config(tmp_path)
    before = set(jobs(slurm))
    proc = snakemake(tmp_path, *SLURM_ARGS, env=slurm.env, timeout=900)
    assert "SLURM run ID" in proc.stderr
    assert_same_results(tiny_run, tmp_path, ["sharpness", "escape", "channel"])

    # 5 blocks of 3 experiments, grouped per experiment (group-components 20): exactly 3 Slurm
    # jobs were submitted; aggregate and figures are local rules
    known = jobs(slurm)
    submitted = set(known) - before
    stores = sorted((tmp_path / "results" / "blocks").glob("*/*.zarr.zip"))
    assert len(stores) == 5
    by_job = {open_block(s).attrs["slurm_job_id"]: s.parent.name for s in stores}
    assert set(by_job) == submitted and len(submitted) == 3
    # every block store was written inside its group's Slurm job, which completed with the
    # resources the registry and the profile set: a group job asks for the CPUs and memory of
    # one block (cores: 2) and runs its blocks in series
    logs = {p.stem: p for p in (tmp_path / "logs" / "slurm").rglob("*.log")}
    for job_id, experiment in by_job.items():
        assert job_id in logs, f"no batch log for job {job_id} ({experiment})"
        assert known[job_id]["state"] == "COMPLETED"
        assert known[job_id]["cpus"] == "2"
        assert f"{experiment}_blocks" in known[job_id]["comment"]
        assert known[job_id]["mem"] == ("4000M" if experiment == "sharpness" else "2000M")
    for store in stores:  # the block's private Dask cluster took its size from the allocation
        name = store.name.removesuffix(".zarr.zip")
        rule_log = tmp_path / "results" / "logs" / store.parent.name / f"{name}.log"
        assert "private LocalCluster (1 workers x 2 threads)" in rule_log.read_text()

    # a dry run through the profile submits nothing: the documented way to test a profile
    before = set(jobs(slurm))
    dry = snakemake(tmp_path, *SLURM_ARGS, "-n", "--forceall", env=slurm.env)
    assert planned_jobs(dry)["channel_block"] == 1
    assert set(jobs(slurm)) == before


def _finish(proc: subprocess.Popen, timeout: float = 900) -> str:
    """Wait for a background Snakemake; on timeout kill its whole process group."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return out


def _start(workdir: Path, slurm, *args: str) -> subprocess.Popen:
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *SLURM_ARGS, *args]  # fmt: skip
    env = {**os.environ, **slurm.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        cmd, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def _cancel_running_block(slurm, workdir: Path, block: str, timeout: float = 300) -> str:
    """scancel the Slurm job of ``block`` once its computation has visibly started."""
    log = workdir / "results" / "logs" / "channel" / f"{block}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [i for i, j in jobs(slurm).items()
                   if j["state"] == "RUNNING" and "channel_blocks" in j["comment"]]  # fmt: skip
        if running and log.exists() and "batch 1/" in log.read_text():
            slurm.run("scancel", running[0])
            return running[0]
        time.sleep(0.5)
    raise TimeoutError(f"block {block} never ran")


SLOW = "geometry~paper_D~79.4_dt~0.0001_correction~bridge_seed~0"


def _cancel_config(workdir: Path) -> None:
    # Two channel blocks; the dt = 1e-4 one takes ~10-20 s in 8 Dask tasks, which leaves time
    # to cancel it after its first batch is done.
    channel = {"dt": [1e-3, 1e-4], "n_molecules": 16000, "batch_size": 2000}
    write_config(workdir, experiments=["channel"], channel=channel)


def test_scancel_is_retried_or_reported_and_nothing_is_lost(slurm, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    _cancel_config(local)
    snakemake(local)

    # (a) with the profile's retries, a cancelled block job is resubmitted and the run succeeds
    retried = tmp_path / "retried"
    retried.mkdir()
    _cancel_config(retried)
    proc = _start(retried, slurm)
    try:
        killed = _cancel_running_block(slurm, retried, SLOW)
    finally:
        out = _finish(proc)
    assert proc.returncode == 0, out[-4000:]
    assert jobs(slurm)[killed]["state"] == "CANCELLED"
    store = retried / "results" / "blocks" / "channel" / f"{SLOW}.zarr.zip"
    assert open_block(store).attrs["slurm_job_id"] != killed  # written by the retry
    assert_same_results(local, retried, ["channel"])
    assert not list((retried / "results" / "blocks").glob("*/.*.tmp-*"))

    # (b) without retries the cancelled job is reported, the other block is kept, and a re-run
    # runs exactly the lost block and completes
    reported = tmp_path / "reported"
    reported.mkdir()
    _cancel_config(reported)
    proc = _start(reported, slurm, "--retries", "0")
    try:
        killed = _cancel_running_block(slurm, reported, SLOW)
    finally:
        out = _finish(proc)
    assert proc.returncode != 0
    # a failed group job is reported with its Slurm log, which shows the cancellation
    assert "Error in group channel_blocks" in out and f"/{killed}.log" in out
    assert f"JOB {killed} ON" in out and "CANCELLED" in out
    channel = reported / "results" / "blocks" / "channel"
    assert not (channel / f"{SLOW}.zarr.zip").exists()
    kept = sorted(channel.glob("*.zarr.zip"))  # what the cancelled group finished is whole
    for store in kept:
        read_block(store, "channel")
    plan = planned_jobs(snakemake(reported, *SLURM_ARGS, "-n", env=slurm.env))
    assert plan == {"channel_block": 2 - len(kept), "aggregate": 1, "figures_channel": 1,
                    "default": 1}  # fmt: skip
    snakemake(reported, *SLURM_ARGS, env=slurm.env, timeout=900)
    assert_same_results(local, reported, ["channel"])


def test_dask_jobqueue_runs_points_on_slurm_workers(slurm, tmp_path):
    cfg = {"experiments": ["channel", "sharpness"], "channel": {"dt": [1e-3, 1e-4]}}
    local = tmp_path / "local"
    local.mkdir()
    write_config(local, **cfg)
    snakemake(local)

    remote = tmp_path / "jobqueue"
    remote.mkdir()
    write_config(remote, **cfg)
    before = set(jobs(slurm))
    cmd = [str(BIN / "sweeplab"), "slurm-dask", "--interface", "lo", "--max-jobs", "2",
           "--memory", "1GB", "--walltime", "00:20:00", "--scheduler-file", "scheduler.json",
           "--", "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml"]  # fmt: skip
    # info-level distributed logs (inherited by the worker jobs) show who connected to whom
    env = {**os.environ, **slurm.env, "DASK_LOGGING__DISTRIBUTED": "info"}
    proc = subprocess.run(cmd, cwd=remote, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    address = json.loads((remote / "scheduler.json").read_text())["address"]
    assert address.startswith("tcp://127.0.0.1:")
    assert f"SLURMCluster at {address}" in proc.stderr
    assert_same_results(local, remote, ["channel", "sharpness"])

    # the points ran on Dask workers that were Slurm jobs, all cancelled when the run ended
    workers = {i: j for i, j in jobs(slurm).items() if i not in before}
    assert workers and all(j["name"] == "dask-worker" for j in workers.values())
    assert all(j["state"] in ("CANCELLED", "COMPLETED") for j in workers.values())
    registered = 0
    for job_id in workers:
        log = remote / "logs" / "dask-slurm" / f"dask-worker-{job_id}.err"
        # distributed pads its log columns: "Registered to:      tcp://..."
        pattern = rf"Registered to:\s+{re.escape(address)}\b"
        registered += log.exists() and re.search(pattern, log.read_text()) is not None
    assert registered >= 1
    # blocks were light Dask clients of that cluster, not Slurm jobs themselves
    stores = sorted((remote / "results" / "blocks").glob("*/*.zarr.zip"))
    assert len(stores) == 4
    for store in stores:
        assert "slurm_job_id" not in open_block(store).attrs
        name = store.name.removesuffix(".zarr.zip")
        rule_log = remote / "results" / "logs" / store.parent.name / f"{name}.log"
        assert f"connecting to Dask scheduler at {address}" in rule_log.read_text()
