"""A private single-node Slurm (munged + slurmctld + slurmd) in a temporary directory.

Used by the ``slurm`` test tier, and runnable by hand to poke at a profile::

    python tests/cluster/slurmlocal.py /tmp/myslurm      # starts, prints SLURM_CONF, waits
    # in another shell: export SLURM_CONF=/tmp/myslurm/slurm.conf; sinfo; sbatch --wrap hostname

Everything lives under one directory: the munge key and socket, ``slurm.conf``, state, spool,
pid and log files. Daemons are started as children of this process and stopped by their pids.
Ports are private (not 6817/6818) so a site Slurm on the same host is not disturbed, and
``CommunicationParameters=NoInAddrAny,NoCtldInAddrAny`` with every address set to 127.0.0.1 keeps
the daemons on loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing_binaries() -> list[str]:
    """Names of the Slurm/munge programs not on PATH (or in /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    need = (*DAEMONS, "sbatch", "squeue", "scancel", "srun", "sinfo")
    return [b for b in need if shutil.which(b, path=path) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    found = shutil.which(name, path=path)
    if found is None:
        raise FileNotFoundError(f"{name} not found: apt-get install slurm-wlm munge")
    return found


@dataclass
class LocalSlurm:
    """Handle on a running private Slurm; ``env`` holds what clients need (``SLURM_CONF``)."""

    root: Path
    cpus: int = 2
    memory_mb: int = 8000
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> str:
        """Run a Slurm client command against this cluster and return its stdout."""
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def start(self, timeout: float = 60) -> LocalSlurm:
        """Write the config, start the three daemons, wait until the node is idle."""
        r = self.root
        for sub in ("munge", "state", "spool", "log"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o700)
        key = r / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            key.chmod(0o600)
        host = socket.gethostname()
        ctld_port, d_port = _free_port(), _free_port()
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=sweeplab-test",
                    f"SlurmctldHost={host}(127.0.0.1)",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={r}/munge/munge.sock",
                    "CredType=cred/munge",
                    "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny",
                    f"SlurmctldPort={ctld_port}",
                    f"SlurmdPort={d_port}",
                    f"StateSaveLocation={r}/state",
                    f"SlurmdSpoolDir={r}/spool",
                    f"SlurmctldPidFile={r}/slurmctld.pid",
                    f"SlurmdPidFile={r}/slurmd.pid",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
                    f"SlurmdLogFile={r}/log/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobCompType=jobcomp/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    # Finished jobs stay visible to squeue for 5 min: the executor plugin
                    # reads job states from squeue when there is no accounting database.
                    "MinJobAge=300",
                    "KillWait=5",
                    "InactiveLimit=0",
                    "SlurmdTimeout=60",
                    f"NodeName={host} NodeAddr=127.0.0.1 NodeHostname={host} "
                    f"CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        env = {**os.environ, **self.env}
        log = lambda name: open(r / "log" / f"{name}.out", "ab")  # noqa: E731
        self.procs["munged"] = subprocess.Popen(
            [
                _which("munged"),
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={r}/munge/munge.sock",
                f"--pid-file={r}/munge/munged.pid",
                f"--log-file={r}/log/munged.log",
                f"--seed-file={r}/munge/munge.seed",
            ],
            stdout=log("munged"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait(lambda: (r / "munge" / "munge.sock").exists(), timeout, "munged socket")
        self.procs["slurmctld"] = subprocess.Popen(
            [_which("slurmctld"), "-D", "-i"],
            env=env,
            stdout=log("slurmctld"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait(lambda: self._ok("scontrol", "ping"), timeout, "slurmctld")
        self.procs["slurmd"] = subprocess.Popen(
            [_which("slurmd"), "-D", "-N", host],
            env=env,
            stdout=log("slurmd"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait(self._idle, timeout, "node idle")
        return self

    def _ok(self, *cmd: str) -> bool:
        try:
            self.run(*cmd, timeout=10)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def _idle(self) -> bool:
        try:
            state = self.run("sinfo", "-h", "-o", "%t", timeout=10).strip()
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return state in ("idle", "mix", "alloc")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}); see {self.root}/log")
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{what} not ready after {timeout} s; see {self.root}/log")

    def stop(self) -> None:
        """Cancel what is left, then stop the daemons (slurmd, slurmctld, munged) by pid."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self._ok("scancel", "--user", os.environ.get("USER", "root"))
        for name in reversed(DAEMONS):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        self.procs.clear()

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sweeplab-slurm").resolve()
    with LocalSlurm(root) as slurm:
        print(f"export SLURM_CONF={slurm.conf}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
