"""The Slurm modes' input checks and allocation sizing (no Slurm needed)."""

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from sweeplab.sweep.cluster import allocated_cpus
from sweeplab.sweep.jobqueue import SlurmWorkers

BIN = Path(sys.executable).parent


def test_allocated_cpus_prefers_the_slurm_allocation(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert allocated_cpus() == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert allocated_cpus() == len(__import__("os").sched_getaffinity(0))


def test_worker_spec_defaults_and_site_config():
    import dask

    kw = SlurmWorkers(partition="cpu", account="proj1", job_extra=("--qos=short",)).cluster_kwargs()
    assert (kw["cores"], kw["memory"], kw["walltime"]) == (1, "2GB", "01:00:00")
    assert (kw["queue"], kw["account"]) == ("cpu", "proj1")
    assert kw["job_extra_directives"] == ["--qos=short"]
    with dask.config.set({"jobqueue.slurm.cores": 8, "jobqueue.slurm.memory": "16GB"}):
        kw = SlurmWorkers().cluster_kwargs()  # a site's jobqueue.yaml fills what is unset
        assert (kw["cores"], kw["memory"]) == (8, "16GB")
        assert SlurmWorkers(cores=2).cluster_kwargs()["cores"] == 2  # explicit wins


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cores": 0}, "cores = 0; allowed: an integer >= 1"),
        ({"memory": "lots"}, "memory = 'lots'; allowed: a positive size"),
        ({"walltime": "1 hour"}, "walltime = '1 hour'; allowed: Slurm time"),
        ({"maximum_jobs": 0}, "maximum_jobs = 0; allowed: >= 1"),
        ({"minimum_jobs": 5, "maximum_jobs": 2}, "minimum_jobs = 5; allowed: 0 .. maximum_jobs"),
    ],
)
def test_worker_spec_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        SlurmWorkers(**kwargs).cluster_kwargs()


def test_slurm_dask_cli_rejects_bad_spec_before_submitting(tmp_path):
    proc = subprocess.run(
        [str(BIN / "sweeplab"), "slurm-dask", "--walltime", "1 hour"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "walltime = '1 hour'; allowed: Slurm time" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing submitted, nothing written


# --- network interface and TLS of `slurm-dask` (no Slurm needed: no worker job is submitted) ---


def test_interface_defaults_to_a_local_one_and_is_checked():
    import dask
    import psutil

    from sweeplab.sweep.jobqueue import default_interface

    kw = SlurmWorkers().cluster_kwargs()
    assert kw["interface"] == default_interface() and kw["interface"] in psutil.net_if_addrs()
    with dask.config.set({"jobqueue.slurm.interface": "lo"}):
        assert SlurmWorkers().cluster_kwargs()["interface"] == "lo"  # the site's choice
        assert SlurmWorkers(interface="lo").cluster_kwargs()["interface"] == "lo"
    with pytest.raises(ValueError, match=r"interface = 'nosuch0'; allowed: a network interface"):
        SlurmWorkers(interface="nosuch0").cluster_kwargs()


def test_worker_jobs_require_tls_and_bind_their_http_server():
    import dask

    with dask.config.set({"jobqueue.slurm.worker-extra-args": ["--lifetime", "55m"]}):
        kw = SlurmWorkers(interface="lo").cluster_kwargs()
    assert "export DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True" in kw["job_script_prologue"]
    assert any(line.startswith("SWEEPLAB_DASK_HOST=$(") and line.endswith(" lo) || exit 1")
               for line in kw["job_script_prologue"])  # fmt: skip
    assert kw["worker_extra_args"] == ["--lifetime", "55m", "--dashboard-address",
                                       '"${SWEEPLAB_DASK_HOST}:0"']  # fmt: skip


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_temporary_credentials_are_private_files(tmp_path):
    from sweeplab.sweep.jobqueue import cluster_credentials

    creds = cluster_credentials(tmp_path)
    assert not creds.site and creds.directory.parent == tmp_path.resolve()
    assert creds.directory.name.startswith(".sweeplab-dask-") and _mode(creds.directory) == 0o700
    assert sorted(p.name for p in creds.directory.iterdir()) == ["ca.pem", "key.pem"]
    assert all(_mode(p) == 0o600 for p in creds.directory.iterdir())
    assert "PRIVATE KEY" in (creds.directory / "key.pem").read_text()
    sec = creds.security
    assert sec.require_encryption
    for role in ("scheduler", "worker", "client"):  # every role: paths, not in-memory PEM
        tls = sec.get_tls_config_for_role(role)
        assert all(Path(tls[k]).parent == creds.directory for k in ("ca_file", "cert", "key"))
    assert creds.client == {
        "tls_ca_file": sec.tls_ca_file,
        "tls_client_cert": sec.tls_ca_file,
        "tls_client_key": sec.tls_client_key,
        "require_encryption": True,
    }


def test_site_certificates_come_from_dask_config(tmp_path):
    import dask
    from distributed.security import Security

    from sweeplab.sweep.jobqueue import cluster_credentials

    temp = Security.temporary()
    (tmp_path / "ca.pem").write_text(temp.tls_ca_file)
    (tmp_path / "node.pem").write_text(temp.tls_worker_cert + temp.tls_worker_key)  # key appended
    site = {"distributed.comm.tls.ca-file": str(tmp_path / "ca.pem")}
    with dask.config.set(site), pytest.raises(ValueError, match=r"scheduler\.cert, distributed"):
        cluster_credentials(tmp_path)
    assert not list(tmp_path.glob(".sweeplab-dask-*"))  # cleaned up
    for role in ("scheduler", "worker", "client"):
        site[f"distributed.comm.tls.{role}.cert"] = str(tmp_path / "node.pem")
    with dask.config.set(site):
        creds = cluster_credentials(tmp_path)
    assert creds.site and not list(creds.directory.iterdir())  # nothing copied
    assert creds.security.require_encryption
    assert creds.security.tls_worker_cert == str(tmp_path / "node.pem")
    assert creds.client == {"tls_ca_file": str((tmp_path / "ca.pem").resolve()),
                            "tls_client_cert": str((tmp_path / "node.pem").resolve()),
                            "require_encryption": True}  # fmt: skip


def test_slurm_cluster_scheduler_is_tls_only_on_its_interface(tmp_path, monkeypatch):
    import psutil
    from distributed import Client

    from sweeplab.sweep.cluster import SchedulerUnavailableError, dask_client
    from sweeplab.sweep.jobqueue import slurm_cluster

    monkeypatch.chdir(tmp_path)
    workers = SlurmWorkers(interface="lo", minimum_jobs=0, maximum_jobs=1)
    with slurm_cluster(workers) as running:
        address = running.address
        assert address.startswith("tls://127.0.0.1:")
        listening = [c.laddr.ip for c in psutil.Process().net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]  # fmt: skip
        assert listening and set(listening) == {"127.0.0.1"}  # scheduler and its dashboard
        creds = running.credentials.directory
        assert creds.parent == tmp_path.resolve() and _mode(creds) == 0o700
        assert running.scheduler_file.parent == creds and _mode(running.scheduler_file) == 0o600
        # the worker job script names the credential files; no key travels in it
        script = running.cluster.job_script()
        assert "PRIVATE KEY" not in script and f"--tls-key {creds}/key.pem" in script
        assert f" {address} " in script and "--protocol tls://" in script
        assert "--interface lo" in script
        # blocks connect with the scheduler file; a client without credentials is refused
        with dask_client(1, {"scheduler_file": str(running.scheduler_file), "timeout": 10}) as c:
            assert c.scheduler_info()["address"] == address
        for bad in (address.replace("tls://", "tcp://"), address):
            with pytest.raises(SchedulerUnavailableError, match=bad):
                with dask_client(1, {"address": bad, "timeout": 2}):
                    pass
        # Clients that failed to connect are finalised by the garbage collector: a Client's
        # __del__ closes its loop runner, and when that collection fires inside the next
        # Client's loop-runner start (distributed 2026.x) the two deadlock (seen: make test hung
        # here for 10 minutes with both threads idle). Collect them here, outside any start.
        gc.collect()
        with pytest.raises(OSError):  # a TLS client with a certificate of its own making
            from distributed.security import Security

            Client(address, security=Security.temporary(), timeout=2)
        gc.collect()
    assert not creds.exists()  # removed with the cluster


def test_slurm_dask_cli_rejects_unknown_interface_before_starting(tmp_path):
    proc = subprocess.run(
        [str(BIN / "sweeplab"), "slurm-dask", "--interface", "nosuch0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "interface = 'nosuch0'; allowed: a network interface" in proc.stderr
    assert not list(tmp_path.iterdir())
