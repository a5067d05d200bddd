"""The Dask client of a block: loopback-only private cluster, bounded waits, TLS credentials."""

import ipaddress
import json
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import psutil
import pytest
from distributed import Client, LocalCluster
from distributed.security import Security

from sweeplab.sweep.cluster import (
    CREDENTIALS_ENV,
    SchedulerUnavailableError,
    dask_client,
    write_scheduler_file,
)

BIN = Path(sys.executable).parent
#: Where the LocalClusters of these tests listen: the scheduler's HTTP server and each worker's
#: (in-process workers start one too, which binds every interface unless given an address).
LOOPBACK = {"dashboard_address": "127.0.0.1:0", "worker_dashboard_address": "127.0.0.1:0"}


def listening_sockets() -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening inet socket of this process and its children."""
    me = psutil.Process()
    found = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found += [(proc.pid, c.laddr.ip, c.laddr.port) for c in conns
                  if c.status == psutil.CONN_LISTEN]  # fmt: skip
    return found


@pytest.mark.parametrize("processes", [False, True])
def test_private_cluster_listens_on_loopback_only(processes):
    with dask_client(2, {"processes": processes}) as client:
        assert client.submit(sum, [1, 2]).result() == 3  # workers up and serving
        found = listening_sockets()
    # the scheduler's comm and HTTP servers, then per worker its HTTP server (threads: the
    # comms are in-process), or its nanny's and its own comm and its HTTP server (processes)
    assert len(found) >= (2 + 2 * 3 if processes else 2), found
    exposed = [s for s in found if not ipaddress.ip_address(s[1]).is_loopback]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_the_local_clusters_of_these_tests_listen_on_loopback_only():
    """As in test_scheduler_file_written_late_is_waited_for and the tls_cluster fixture."""
    for security in (None, Security.temporary()):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                          security=security, **LOOPBACK) as cluster:  # fmt: skip
            found = listening_sockets()
            assert len(found) >= 2 + (security is not None), found  # HTTP servers (+ TLS comm)
            exposed = [s for s in found if not ipaddress.ip_address(s[1]).is_loopback]
            assert not exposed, f"listening beyond loopback: {exposed}"
            assert cluster.scheduler_address.split("://")[0] in ("inproc", "tls")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_the_suite_refuses_to_listen_beyond_loopback(loopback_only, host):
    """tests/conftest.py: a listener on every interface is refused, and fails its test."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    with socket.socket(family) as s:
        if host:
            s.bind((host, 0))
        with pytest.raises(OSError, match=r"tests listen on loopback only, not on"):
            s.listen()
    assert len(loopback_only) == 1  # the autouse fixture would now fail this test
    loopback_only.clear()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
    assert not loopback_only


def test_private_cluster_scratch_space_is_the_jobs_own_and_removed(tmp_path, monkeypatch):
    """Workers' lock files go to a directory of this job in $TMPDIR, not dask-scratch-space."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # as TMPDIR=tmp_path would
    with dask.config.set({"temporary-directory": None}), dask_client(1) as client:
        (where,) = client.run(lambda dask_worker: dask_worker.local_directory).values()
        (mine,) = tmp_path.iterdir()
        assert mine.name.startswith("sweeplab-dask-") and Path(where).is_relative_to(mine)
    assert list(tmp_path.iterdir()) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raised_within(fn, seconds: float) -> BaseException:
    """Run ``fn`` in a daemon thread; the exception it raised within ``seconds`` s.

    Fails (instead of hanging the session) when ``fn`` is still running then.
    """
    box: list[BaseException | None] = []

    def target():
        try:
            fn()
        except BaseException as exc:
            box.append(exc)
        else:
            box.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    assert box[0] is not None, "no error raised"
    return box[0]


def connect(dask_config) -> None:
    with dask_client(1, dask_config) as client:
        client.submit(sum, [1]).result()


def test_missing_scheduler_file_fails_in_time_naming_the_file(tmp_path):
    missing = tmp_path / "never.json"
    t0 = time.monotonic()
    exc = raised_within(lambda: connect({"scheduler_file": str(missing), "timeout": 1}), 30)
    assert isinstance(exc, SchedulerUnavailableError) and isinstance(exc, ValueError)
    assert time.monotonic() - t0 < 10
    assert str(missing) in str(exc) and "does not exist" in str(exc)
    assert "\n" not in str(exc)


@pytest.mark.parametrize("via", ["config", "environment"])
def test_unreachable_address_fails_in_time_naming_it(via, monkeypatch):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = {"timeout": 2}
    if via == "config":
        cfg["address"] = address
    else:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
    t0 = time.monotonic()
    exc = raised_within(lambda: connect(cfg), 60)
    assert isinstance(exc, SchedulerUnavailableError), repr(exc)
    assert time.monotonic() - t0 < 20
    assert address in str(exc) and "\n" not in str(exc)


def test_stale_scheduler_file_names_address_and_file(tmp_path):
    path = write_scheduler_file(tmp_path / "sched.json", f"tcp://127.0.0.1:{free_port()}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    exc = raised_within(lambda: connect({"scheduler_file": str(path), "timeout": 1}), 60)
    assert isinstance(exc, SchedulerUnavailableError)
    assert json.loads(path.read_text())["address"] in str(exc) and str(path) in str(exc)


def test_scheduler_file_written_late_is_waited_for(tmp_path):
    path = tmp_path / "sched.json"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, **LOOPBACK) as cluster:
        address = cluster.scheduler_address
        timer = threading.Timer(0.5, write_scheduler_file, (path, address))
        timer.start()
        try:
            with dask_client(1, {"scheduler_file": str(path), "timeout": 20}) as client:
                assert client.scheduler.address == address
                assert client.submit(sum, [2, 3]).result() == 5
        finally:
            timer.join()


@pytest.mark.parametrize("timeout", [0, -1, "soon", True, float("inf")])
def test_bad_timeout_is_named(timeout):
    with pytest.raises(ValueError, match=r"dask\.timeout = .*; allowed: a number of seconds > 0"):
        connect({"address": "tcp://127.0.0.1:1", "timeout": timeout})


def test_run_block_reports_missing_scheduler_file_in_one_line(tmp_path):
    from sweeplab.sweep import plan

    section = {"depth": [3], "width": [4], "d_io": [2], "family": ["balanced"], "seeds": 2,
               "gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 0}  # fmt: skip
    (path,) = plan("sharpness", section, tmp_path / "blocks").write_plan_files(tmp_path / "plans")
    out = tmp_path / "blocks" / f"{path.stem}.zarr.zip"
    missing = tmp_path / "sched.json"
    cmd = [str(BIN / "sweeplab"), "run-block", str(path),
           "--dask", json.dumps({"scheduler_file": str(missing), "timeout": 1}),
           "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(missing) in errors[0], proc.stderr
    assert not out.exists()


@pytest.fixture
def tls_cluster(tmp_path):
    """A loopback LocalCluster requiring TLS; its credentials as files and a scheduler file."""
    sec = Security.temporary()
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    (creds / "ca.pem").write_text(sec.tls_ca_file)
    (creds / "key.pem").write_text(sec.tls_client_key)
    (creds / "key.pem").chmod(0o600)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, security=sec,
                      **LOOPBACK) as cluster:  # fmt: skip
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        client = {"tls_ca_file": "ca.pem", "tls_client_cert": "ca.pem",
                  "tls_client_key": "key.pem", "require_encryption": True}  # fmt: skip
        path = write_scheduler_file(creds / "scheduler.json", cluster.scheduler_address, client)
        yield cluster.scheduler_address, path


def test_scheduler_file_credentials_reach_a_tls_scheduler(tls_cluster):
    address, path = tls_cluster
    assert "PRIVATE KEY" not in path.read_text()  # paths, never keys
    with dask_client(1, {"scheduler_file": str(path), "timeout": 10}) as client:
        assert client.scheduler.address == address
        assert client.submit(sum, [4, 5]).result() == 9


def test_address_uses_the_credentials_named_by_the_environment(tls_cluster, monkeypatch):
    address, path = tls_cluster
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
    exc = raised_within(lambda: connect({"timeout": 2}), 60)  # Dask's config has no TLS
    assert isinstance(exc, SchedulerUnavailableError) and address in str(exc)
    monkeypatch.setenv(CREDENTIALS_ENV, str(path))
    connect({"timeout": 10})


def test_clients_without_the_credentials_are_refused(tls_cluster, tmp_path):
    address, _ = tls_cluster
    plain = address.replace("tls://", "tcp://")
    for dask_config in ({"address": plain, "timeout": 2},
                        {"address": address, "timeout": 2}):  # fmt: skip
        exc = raised_within(lambda cfg=dask_config: connect(cfg), 60)
        assert isinstance(exc, SchedulerUnavailableError), repr(exc)
    # a refused client leaves dask's default scheduler as it was (dask computations still work)
    assert dask.config.get("scheduler", None) is None
    # a TLS client with a certificate of its own making is refused too
    other = Security.temporary()
    with pytest.raises(OSError):
        try:
            Client(address, security=other, timeout=2)
        finally:
            dask.config.config.pop("scheduler", None)  # a bare failed Client leaves it set
    # a credentials entry holding key material is refused when written
    with pytest.raises(ValueError, match="must be the path of a PEM file"):
        write_scheduler_file(
            tmp_path / "bad.json", address, {"tls_client_key": other.tls_client_key}
        )
