"""The sweep on a real (private, single-node) Slurm: executor profile, dask-jobqueue, scancel.

``slurm-dask`` runs with TLS on: its scheduler and worker jobs refuse clients without the
cluster's credentials.

Every test compares against a plain local run of the same config: Slurm must change where
blocks run, never what they compute.
"""

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import xarray as xr
import yaml
from distributed import Client
from distributed.security import Security
from wfutil import BIN, REPO, TINY, planned_jobs, snakemake, write_config

from sweeplab.sweep import open_block, open_dataset, plan, read_block
from sweeplab.sweep.cluster import SchedulerUnavailableError, dask_client
from sweeplab.sweep.experiments import REGISTRY

pytestmark = pytest.mark.slurm

PROFILE = REPO / "profiles" / "slurm"
#: wall times differ run to run: the variables the registry marks as timing, and each point's
TIMING = (
    "point_wall_time",
    *sorted({n for e in REGISTRY.values() for n, v in e.variables.items() if v.timing}),
)
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
    experiments = yaml.safe_load(TINY.read_text())["experiments"]
    assert_same_results(tiny_run, tmp_path, experiments)

    # the planned blocks of every experiment (the same as the local run's: the tiny points fit
    # one block at the profile's block_seconds too), grouped per experiment (group-components):
    # exactly one Slurm job per experiment was submitted; aggregate and figures are local rules
    known = jobs(slurm)
    submitted = set(known) - before
    stores = sorted((tmp_path / "results" / "blocks").glob("*/*.zarr.zip"))
    local = sorted((tiny_run / "results" / "blocks").glob("*/*.zarr.zip"))
    assert [s.name for s in stores] == [s.name for s in local]
    assert {s.parent.name for s in stores} == set(experiments)
    by_job = {open_block(s).attrs["slurm_job_id"]: s.parent.name for s in stores}
    assert set(by_job) == submitted and len(submitted) == len(experiments)
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


#: a block of about one point's estimated cost (the profile sets 600 s): one block per point
ONE_POINT = ("--config", "block_seconds=0.5")


def _cancel_config(workdir: Path) -> str:
    """Write the config; return the name of the slow block (the dt = 1e-4 point's).

    Two channel points, one block each (ONE_POINT); the dt = 1e-4 one takes ~10-20 s in 8 Dask
    tasks, which leaves time to cancel it after its first batch is done.
    """
    channel = {"dt": [1e-3, 1e-4], "n_molecules": 16000, "batch_size": 2000}
    path = write_config(workdir, experiments=["channel"], channel=channel)
    section = yaml.safe_load(path.read_text())["channel"]
    p = plan("channel", section, workdir / "results" / "blocks" / "channel", block_seconds=0.5)
    assert len(p.blocks) == 2
    (slow,) = [b.name for b in p.blocks if p.grid.columns(b.rows)["dt"].tolist() == [1e-4]]
    return slow


def test_scancel_is_retried_or_reported_and_nothing_is_lost(slurm, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    slow = _cancel_config(local)
    snakemake(local, *ONE_POINT)

    # (a) with the profile's retries, a cancelled block job is resubmitted and the run succeeds
    retried = tmp_path / "retried"
    retried.mkdir()
    assert _cancel_config(retried) == slow
    proc = _start(retried, slurm, *ONE_POINT)
    try:
        killed = _cancel_running_block(slurm, retried, slow)
    finally:
        out = _finish(proc)
    assert proc.returncode == 0, out[-4000:]
    assert jobs(slurm)[killed]["state"] == "CANCELLED"
    store = retried / "results" / "blocks" / "channel" / f"{slow}.zarr.zip"
    assert open_block(store).attrs["slurm_job_id"] != killed  # written by the retry
    assert_same_results(local, retried, ["channel"])
    assert not list((retried / "results" / "blocks").glob("*/.*.tmp-*"))

    # (b) without retries the cancelled job is reported, the other block is kept, and a re-run
    # runs exactly the lost block and completes
    reported = tmp_path / "reported"
    reported.mkdir()
    assert _cancel_config(reported) == slow
    proc = _start(reported, slurm, "--retries", "0", *ONE_POINT)
    try:
        killed = _cancel_running_block(slurm, reported, slow)
    finally:
        out = _finish(proc)
    assert proc.returncode != 0
    # a failed group job is reported with its Slurm log, which shows the cancellation
    assert "Error in group channel_blocks" in out and f"/{killed}.log" in out
    assert f"JOB {killed} ON" in out and "CANCELLED" in out
    channel = reported / "results" / "blocks" / "channel"
    assert not (channel / f"{slow}.zarr.zip").exists()
    kept = sorted(channel.glob("*.zarr.zip"))  # what the cancelled group finished is whole
    for store in kept:
        read_block(store, "channel")
    dry = planned_jobs(snakemake(reported, *SLURM_ARGS, *ONE_POINT, "-n", env=slurm.env))
    assert dry == {"channel_block": 2 - len(kept), "aggregate": 1, "figures_channel": 1,
                   "default": 1}  # fmt: skip
    snakemake(reported, *SLURM_ARGS, *ONE_POINT, env=slurm.env, timeout=900)
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
    sched = json.loads((remote / "scheduler.json").read_text())
    address = sched["address"]
    assert address.startswith("tls://127.0.0.1:")  # TLS only, on the interface asked for
    assert f"SLURMCluster at {address}" in proc.stderr
    assert (remote / "scheduler.json").stat().st_mode & 0o777 == 0o600
    # the credentials lived in a private directory of the run, deleted when it ended
    creds = Path(sched["security"]["tls_client_key"]).parent
    assert creds.parent == remote.resolve() and creds.name.startswith(".sweeplab-dask-")
    assert not creds.exists()
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
    assert len(stores) == len(list((local / "results" / "blocks").glob("*/*.zarr.zip")))
    assert {s.parent.name for s in stores} == {"channel", "sharpness"}
    for store in stores:
        assert "slurm_job_id" not in open_block(store).attrs
        name = store.name.removesuffix(".zarr.zip")
        rule_log = remote / "results" / "logs" / store.parent.name / f"{name}.log"
        assert f"connecting to Dask scheduler at {address}" in rule_log.read_text()
    logs = [proc.stderr, *(p.read_text() for p in (remote / "logs").rglob("*.*") if p.is_file()),
            *(p.read_text() for p in (remote / "results" / "logs").rglob("*.log"))]  # fmt: skip
    assert not any("PRIVATE KEY" in text for text in logs)


def _listening(proc: psutil.Process) -> list[str]:
    """Addresses the process and its children listen on."""
    found = []
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            found += [c.laddr.ip for c in p.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]  # fmt: skip
    return found


def _refused_without_client_cert(address: str, ca_file: str) -> bool:
    """Whether a TLS client that trusts the scheduler but shows no certificate is turned away."""
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False
    try:
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            ctx.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"\0" * 8)
            return tls.recv(1) == b""  # TLS 1.3: the server's alert, or a close, comes here
    except (ssl.SSLError, ConnectionError):
        return True


def test_slurm_dask_serves_tls_only_and_refuses_clients_without_credentials(slurm, tmp_path):
    before = set(jobs(slurm))
    cmd = [str(BIN / "sweeplab"), "slurm-dask", "--serve", "--interface", "lo", "--min-jobs", "1",
           "--max-jobs", "1", "--memory", "1GB", "--walltime", "00:10:00",
           "--scheduler-file", "scheduler.json"]  # fmt: skip
    env = {**os.environ, **slurm.env, "DASK_LOGGING__DISTRIBUTED": "info"}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    sched = tmp_path / "scheduler.json"
    try:
        deadline = time.monotonic() + 120
        while not sched.exists():
            assert proc.poll() is None, proc.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "no scheduler file after 120 s"
            time.sleep(0.2)
        info = json.loads(sched.read_text())
        address, security = info["address"], info["security"]
        assert address.startswith("tls://127.0.0.1:") and security["require_encryption"]
        creds = Path(security["tls_client_key"]).parent
        assert creds.stat().st_mode & 0o777 == 0o700
        assert {p.name: p.stat().st_mode & 0o777 for p in creds.iterdir()} == {
            "ca.pem": 0o600, "key.pem": 0o600, "scheduler.json": 0o600}  # fmt: skip
        assert sched.stat().st_mode & 0o777 == 0o600 and "PRIVATE KEY" not in sched.read_text()

        # with the credentials (as a block connects), a task runs on the worker job
        with dask_client(1, {"scheduler_file": str(sched), "timeout": 30}) as client:
            client.wait_for_workers(1, timeout=300)
            assert client.submit(sum, [20, 22]).result(timeout=120) == 42
            worker_addresses = list(client.scheduler_info()["workers"])
        assert worker_addresses and all(a.startswith("tls://127.0.0.1:") for a in worker_addresses)

        # everything listens on the interface asked for (lo): the scheduler in slurm-dask, the
        # worker job's nanny, worker and the worker's HTTP server
        assert set(_listening(psutil.Process(proc.pid))) == {"127.0.0.1"}
        worker_procs = [p for p in psutil.process_iter(["cmdline"])
                        if "distributed.cli.dask_worker" in " ".join(p.info["cmdline"] or [])
                        and address in (p.info["cmdline"] or [])]  # fmt: skip
        assert worker_procs
        for p in worker_procs:
            found = _listening(p)
            assert len(found) >= 3 and set(found) == {"127.0.0.1"}, found

        # the submitted batch script names the credential files and holds no key
        (job_id,) = set(jobs(slurm)) - before
        script = slurm.run("scontrol", "write", "batch_script", job_id, "-")
        assert "PRIVATE KEY" not in script and f"--tls-key {creds}/key.pem" in script
        assert "--protocol tls://" in script

        # without the credentials: refused, each within a short timeout
        plain = address.replace("tls://", "tcp://")
        for bad in ({"address": plain, "timeout": 3}, {"address": address, "timeout": 3}):
            t0 = time.monotonic()
            with pytest.raises(SchedulerUnavailableError, match=re.escape(bad["address"])):
                with dask_client(1, bad):
                    pass
            assert time.monotonic() - t0 < 30
        t0 = time.monotonic()
        with pytest.raises(OSError):  # a TLS client with a certificate of its own making
            Client(address, security=Security.temporary(), timeout=3)
        assert time.monotonic() - t0 < 30
        assert _refused_without_client_cert(address, security["tls_ca_file"])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: stop the cluster, cancel its jobs
        try:
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, out[-4000:]
    assert not creds.exists()  # credentials deleted with the cluster
    assert "PRIVATE KEY" not in out
    # its worker job was cancelled when the cluster stopped
    deadline = time.monotonic() + 60
    while jobs(slurm)[job_id]["state"] not in ("CANCELLED", "COMPLETED"):
        assert time.monotonic() < deadline, jobs(slurm)[job_id]
        time.sleep(1)
