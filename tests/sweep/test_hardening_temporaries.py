"""Issue 22, S2: temporaries on a shared file system belong to a host and a process.

A temporary ``.<target>.tmp-<host>@<pid>-<rand>`` is removed as stale only when it is this
host's and its process is gone, or when nobody has touched it for ``STALE_AGE`` (24 h): a
live writer on another node keeps its temporary. Names of the older ``.tmp-<pid>-<rand>``
form are judged by their pid, as before.
"""

import os
import socket
import subprocess
import time

import pytest

from sweeplab.sweep.store import STALE_AGE, remove_stale_temporaries, temporary_name


@pytest.fixture(scope="module")
def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_temporary_name_carries_the_host_and_the_pid(tmp_path):
    name = temporary_name(tmp_path / "x.zarr").name
    host = socket.gethostname()
    assert name.startswith(f".x.zarr.tmp-{host}@{os.getpid()}-"), name
    assert len(name) - len(f".x.zarr.tmp-{host}@{os.getpid()}-") == 8


def make(path, age=0.0, directory=True):
    if directory:
        path.mkdir()
        (path / "zarr.json").write_text("{}")
    else:
        path.write_bytes(b"partial")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_only_this_hosts_dead_writers_or_old_temporaries_are_removed(tmp_path, dead_pid):
    host, me = socket.gethostname(), os.getpid()
    target = tmp_path / "x.zarr"
    removed = [
        make(tmp_path / f".x.zarr.tmp-{host}@{dead_pid}-00000001"),  # this host, process gone
        make(tmp_path / f".x.zarr.tmp-{host}@{dead_pid}-00000002", directory=False),
        make(tmp_path / f".x.zarr.tmp-node7@{me}-00000003", age=STALE_AGE + 60),  # untouched 24 h
        make(tmp_path / f".x.zarr.tmp-{dead_pid}-00000004"),  # old form, process gone
        make(tmp_path / ".x.zarr.tmp-garbage", age=STALE_AGE + 60),
    ]
    kept = [
        make(tmp_path / f".x.zarr.tmp-{host}@{me}-00000005"),  # this host, still running
        make(tmp_path / f".x.zarr.tmp-node7@{dead_pid}-00000006"),  # another node's writer
        make(tmp_path / f".x.zarr.tmp-node7@{dead_pid}-00000007", age=STALE_AGE - 600),
        make(tmp_path / f".x.zarr.tmp-{me}-00000008", age=STALE_AGE + 60),  # old form, alive
        make(tmp_path / ".x.zarr.tmp-garbage2"),
        make(tmp_path / f".y.zarr.tmp-{host}@{dead_pid}-00000009"),  # another target's
    ]
    remove_stale_temporaries(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
    assert not any(p.exists() for p in removed)


def test_the_age_limit_can_be_given(tmp_path, dead_pid):
    other = make(tmp_path / f".x.zarr.tmp-node7@{dead_pid}-00000001", age=120)
    remove_stale_temporaries(tmp_path / "x.zarr", max_age=3600)
    assert other.exists()
    remove_stale_temporaries(tmp_path / "x.zarr", max_age=60)
    assert not other.exists()
