"""The Slurm modes' input checks and allocation sizing (no Slurm needed)."""

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
