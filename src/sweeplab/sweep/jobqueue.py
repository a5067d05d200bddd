"""Dask workers as Slurm jobs (dask-jobqueue), for sweeps of very many tiny points.

One driver holds a :class:`dask_jobqueue.SLURMCluster` whose workers are Slurm batch jobs,
scaled adaptively between ``minimum_jobs`` and ``maximum_jobs``; the sweep's blocks run as
light local Snakemake jobs that submit their points to it (``DASK_SCHEDULER_ADDRESS``). This
costs one Slurm job per *worker*, not per block. ``sweeplab slurm-dask`` is the command line.

Security: scheduler and workers speak TLS only (``require_encryption``), with mutual
authentication: every peer (worker, client) must present a certificate signed by the cluster's
CA. By default that is a fresh self-signed certificate (:meth:`Security.temporary
<distributed.security.Security.temporary>`) written, with its key, to a private directory
(mode 0700, files 0600) that the worker jobs read from the shared filesystem and that is deleted
when the cluster stops; a site's own certificates are used instead when Dask's configuration
names them (``distributed.comm.tls.ca-file`` and ``.scheduler/.worker/.client.cert``). Job
scripts and command lines carry paths, never keys. Scheduler and workers listen on one network
interface (``interface``), the dashboard on loopback.

Options left as ``None`` fall back to dask-jobqueue's own configuration
(``jobqueue.slurm.*`` in ``~/.config/dask/jobqueue.yaml`` or ``DASK_JOBQUEUE__SLURM__*``), which is
where a site usually keeps its partition and account, then to the defaults below.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import shlex
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import psutil
from dask.utils import parse_bytes
from distributed.security import Security

from .cluster import write_scheduler_file

if TYPE_CHECKING:
    from dask_jobqueue import SLURMCluster

__all__ = [
    "ClusterCredentials",
    "RunningCluster",
    "SlurmWorkers",
    "cluster_credentials",
    "default_interface",
    "slurm_cluster",
]

logger = logging.getLogger(__name__)

_WALLTIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # Slurm's [D-]HH[:MM[:SS]] / MM forms

DEFAULTS = {"cores": 1, "memory": "2GB", "walltime": "01:00:00"}

CREDENTIALS_PREFIX = ".sweeplab-dask-"
"""Name prefix of the private directory of a cluster's TLS credentials and scheduler file."""

# Dask settings that must name a site's certificates, all of them, for the site mode.
_SITE_TLS = (
    "distributed.comm.tls.ca-file",
    "distributed.comm.tls.scheduler.cert",
    "distributed.comm.tls.worker.cert",
    "distributed.comm.tls.client.cert",
)


def _ipv4_interfaces() -> dict[str, list[str]]:
    """Map each network interface of this machine that has IPv4 addresses to them."""
    out: dict[str, list[str]] = {}
    for name, addrs in psutil.net_if_addrs().items():
        found = [a.address for a in addrs if a.family == socket.AF_INET]
        if found:
            out[name] = found
    return out


def default_interface() -> str:
    """Choose the network interface of scheduler and workers when none is given.

    The interface holding the address this machine's host name resolves to (how Slurm and
    the compute nodes usually know the login node), else the one holding the source address
    of its default route; if neither is a non-loopback address of a local interface, the
    loopback interface (a single machine).

    Returns
    -------
    str
        An interface name of this machine, e.g. ``"eth0"`` or ``"lo"``.

    """
    from distributed.utils import get_ip

    interfaces = _ipv4_interfaces()
    by_address = {a: name for name, addresses in interfaces.items() for a in addresses}
    candidates = []
    with contextlib.suppress(OSError):
        candidates.append(socket.gethostbyname(socket.gethostname()))
    with contextlib.suppress(OSError):
        candidates.append(get_ip())  # source address of the default route
    for address in candidates:
        if not ipaddress.ip_address(address).is_loopback and address in by_address:
            return by_address[address]
    loopback = (n for n, a in interfaces.items() if ipaddress.ip_address(a[0]).is_loopback)
    return next(loopback, "lo")


@dataclass(frozen=True)
class SlurmWorkers:
    """What each Slurm worker job asks for, and how many may run.

    Attributes
    ----------
    cores : int, optional
        CPUs per worker job (``--cpus-per-task``), one Dask thread each; >= 1.
    memory : str, optional
        Memory per worker job, e.g. ``"4GB"`` (``--mem``).
    walltime : str, optional
        Time limit per worker job, Slurm format (``"01:00:00"``, ``"2-00:00:00"``).
    partition, account : str, optional
        Slurm partition (``-p``) and account (``-A``).
    minimum_jobs, maximum_jobs : int
        Adaptive scaling range of worker jobs, ``0 <= minimum_jobs <= maximum_jobs``,
        ``maximum_jobs >= 1``.
    interface : str, optional
        Network interface of scheduler and workers (e.g. ``"ib0"``; ``"lo"`` on one machine);
        the same name must exist on the compute nodes. Default: ``jobqueue.slurm.interface``,
        else :func:`default_interface`.
    log_directory : str
        Where the worker jobs' stdout/stderr go (``dask-worker-<jobid>.err``).
    job_extra : sequence of str
        Extra ``#SBATCH`` directives, e.g. ``("--qos=short",)``.

    """

    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    partition: str | None = None
    account: str | None = None
    minimum_jobs: int = 0
    maximum_jobs: int = 4
    interface: str | None = None
    log_directory: str = "logs/dask-slurm"
    job_extra: Sequence[str] = field(default_factory=tuple)

    def cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~dask_jobqueue.SLURMCluster`, validated.

        Raises
        ------
        ValueError
            Naming the bad value and the allowed range.

        """
        conf = dask.config.get("jobqueue.slurm", default={}) or {}
        resolved: dict[str, Any] = {}
        for key in ("cores", "memory", "walltime"):
            value = getattr(self, key)
            if value is None:
                value = conf.get(key) or DEFAULTS[key]
            resolved[key] = value
        cores = resolved["cores"]
        if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
            raise ValueError(f"cores = {cores!r}; allowed: an integer >= 1")
        try:
            if parse_bytes(resolved["memory"]) <= 0:
                raise ValueError
        except (ValueError, TypeError):
            raise ValueError(
                f"memory = {resolved['memory']!r}; allowed: a positive size such as '4GB'"
            ) from None
        if not _WALLTIME.match(str(resolved["walltime"])):
            raise ValueError(
                f"walltime = {resolved['walltime']!r}; allowed: Slurm time such as "
                "'01:00:00' or '2-00:00:00'"
            )
        if self.maximum_jobs < 1:
            raise ValueError(f"maximum_jobs = {self.maximum_jobs}; allowed: >= 1")
        if not 0 <= self.minimum_jobs <= self.maximum_jobs:
            raise ValueError(
                f"minimum_jobs = {self.minimum_jobs}; allowed: 0 .. maximum_jobs "
                f"({self.maximum_jobs})"
            )
        interface = self.interface or conf.get("interface") or default_interface()
        local = _ipv4_interfaces()
        if interface not in local:
            raise ValueError(
                f"interface = {interface!r}; allowed: a network interface of this machine with "
                f"an IPv4 address ({', '.join(sorted(local))})"
            )
        python = conf.get("python") or sys.executable
        kwargs: dict[str, Any] = {
            **resolved,
            "processes": 1,  # one worker process per job, `cores` threads (numba kernel is nogil)
            "log_directory": self.log_directory,
            # scheduler and workers (and their nannies) listen on this interface only
            "interface": interface,
            "job_script_prologue": [
                *(conf.get("job-script-prologue") or []),
                # The statistical profiler slows Python-heavy points 10-15 % (see cluster.py).
                "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False",
                "export DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION=True",
                # The worker's HTTP server (metrics, health) binds every interface unless given
                # an address: the interface's, found on the compute node; no address, no worker.
                f"SWEEPLAB_DASK_HOST=$({shlex.quote(python)} -c {shlex.quote(_HOST_OF)} "
                f"{shlex.quote(interface)}) || exit 1",
            ],
            "worker_extra_args": [
                *(conf.get("worker-extra-args") or []),
                "--dashboard-address",
                '"${SWEEPLAB_DASK_HOST}:0"',
            ],
        }
        if self.partition is not None:
            kwargs["queue"] = self.partition
        if self.account is not None:
            kwargs["account"] = self.account
        if self.job_extra:
            kwargs["job_extra_directives"] = list(self.job_extra)
        return kwargs


_HOST_OF = (
    "import sys; from distributed.utils import get_ip_interface; "
    "print(get_ip_interface(sys.argv[1]))"
)


@dataclass(frozen=True)
class ClusterCredentials:
    """TLS credentials of one cluster, and the private directory that holds them.

    Attributes
    ----------
    directory : pathlib.Path
        Private directory (mode 0700) of the PEM files (mode 0600) and the scheduler file;
        deleted when the cluster stops.
    security : distributed.security.Security
        Scheduler and worker credentials, as file paths, ``require_encryption=True``.
    client : dict
        The client's :class:`~distributed.security.Security` keyword arguments (paths).
    site : bool
        Whether these are a site's certificates (Dask configuration) rather than temporary
        self-signed ones.

    """

    directory: Path
    security: Security
    client: dict[str, Any]
    site: bool


def _write_private(path: Path, text: str) -> Path:
    """Write ``text`` to a new file readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def cluster_credentials(parent: str | os.PathLike[str]) -> ClusterCredentials:
    """Create a cluster's TLS credentials in a new private directory under ``parent``.

    A site's certificates when Dask's configuration names the CA
    (``distributed.comm.tls.ca-file``, with ``.scheduler.cert``, ``.worker.cert`` and
    ``.client.cert``, keys in ``.key`` or appended to the certificates); otherwise one
    temporary self-signed certificate and key (:meth:`Security.temporary
    <distributed.security.Security.temporary>`) shared by scheduler, workers and clients,
    written as ``ca.pem`` and ``key.pem``.

    Parameters
    ----------
    parent : path
        Where the directory ``.sweeplab-dask-*`` is created; must be visible to the worker
        jobs (a shared filesystem) when the credentials are temporary.

    Returns
    -------
    ClusterCredentials

    Raises
    ------
    ValueError
        When the site configuration names some certificates but not all, or a missing file.
    RuntimeError
        When temporary credentials are needed and ``cryptography`` is not installed.

    """
    directory = Path(tempfile.mkdtemp(prefix=CREDENTIALS_PREFIX, dir=parent)).resolve()
    directory.chmod(0o700)
    try:
        if dask.config.get("distributed.comm.tls.ca-file", None):
            missing = [key for key in _SITE_TLS if not dask.config.get(key, None)]
            if missing:
                raise ValueError(
                    f"site TLS certificates: {', '.join(missing)} not set; set the CA and the "
                    "scheduler, worker and client certificates, or none of them (temporary "
                    "self-signed credentials)"
                )
            security = Security(require_encryption=True)
            client = {
                "tls_ca_file": security.tls_ca_file,
                "tls_client_cert": security.tls_client_cert,
                "tls_client_key": security.tls_client_key,
                "require_encryption": True,
            }
            for key, value in client.items():
                if isinstance(value, str):
                    if not Path(value).is_file():
                        raise ValueError(f"site TLS certificates: {key} {value} does not exist")
                    client[key] = str(Path(value).resolve())
            client = {k: v for k, v in client.items() if v is not None}
            return ClusterCredentials(directory, security, client, site=True)
        try:
            temporary = Security.temporary()
        except ImportError:
            raise RuntimeError(
                "temporary TLS credentials need the cryptography package: pip install "
                "cryptography (or configure a site's certificates, distributed.comm.tls.*)"
            ) from None
        cert = str(_write_private(directory / "ca.pem", temporary.tls_ca_file))
        key = str(_write_private(directory / "key.pem", temporary.tls_scheduler_key))
        roles = {f"tls_{role}_{kind}": path for role in ("client", "scheduler", "worker")
                 for kind, path in (("cert", cert), ("key", key))}  # fmt: skip
        security = Security(require_encryption=True, tls_ca_file=cert, **roles)
        client = {"tls_ca_file": cert, "tls_client_cert": cert, "tls_client_key": key,
                  "require_encryption": True}  # fmt: skip
        return ClusterCredentials(directory, security, client, site=False)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


@dataclass(frozen=True)
class RunningCluster:
    """A started SLURMCluster and how clients reach it.

    Attributes
    ----------
    cluster : dask_jobqueue.SLURMCluster
        The cluster.
    address : str
        Its scheduler's address, ``tls://<interface address>:<port>``.
    scheduler_file : pathlib.Path
        Private scheduler file (mode 0600) with the address and the client's credentials
        (paths), for :func:`sweeplab.sweep.cluster.dask_client`.
    credentials : ClusterCredentials
        The TLS credentials.

    """

    cluster: SLURMCluster
    address: str
    scheduler_file: Path
    credentials: ClusterCredentials


@contextlib.contextmanager
def slurm_cluster(
    workers: SlurmWorkers,
    *,
    dashboard_address: str = "127.0.0.1:0",
    credentials_dir: str | os.PathLike[str] | None = None,
) -> Iterator[RunningCluster]:
    """Start an adaptive TLS-only SLURMCluster, yield it, and cancel its worker jobs on exit.

    Parameters
    ----------
    workers : SlurmWorkers
        Per-job resources, the adaptive range and the network interface.
    dashboard_address : str
        Where the scheduler's dashboard listens (loopback and a free port by default).
    credentials_dir : path, optional
        Parent of the private credentials directory; must be on a filesystem the worker jobs
        see. Default: dask-jobqueue's ``jobqueue.slurm.shared-temp-directory``, else the
        current directory.

    Yields
    ------
    RunningCluster
        Its ``address`` and ``scheduler_file`` are what clients connect with; the credentials
        directory is deleted on exit.

    """
    kwargs = workers.cluster_kwargs()  # validate before importing/starting anything
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(
            "dask-jobqueue is not installed: pip install 'sweeplab[slurm]'"
        ) from None
    if credentials_dir is None:
        shared = dask.config.get("jobqueue.slurm.shared-temp-directory", None)
        credentials_dir = os.path.expanduser(os.path.expandvars(shared)) if shared else "."
    credentials = cluster_credentials(credentials_dir)
    try:
        cluster = SLURMCluster(
            scheduler_options={"dashboard_address": dashboard_address},
            security=credentials.security,
            protocol="tls://",
            **kwargs,
        )
        try:
            script = cluster.job_script()
            if "PRIVATE KEY" in script:  # dask-jobqueue passes paths; never let a key through
                raise RuntimeError("refusing to submit a worker job script holding a key")
            logger.debug("worker job script:\n%s", script)
            cluster.adapt(minimum_jobs=workers.minimum_jobs, maximum_jobs=workers.maximum_jobs)
            address = cluster.scheduler_address
            scheduler_file = write_scheduler_file(
                credentials.directory / "scheduler.json", address, credentials.client
            )
            logger.info(
                "SLURMCluster at %s (TLS, %s credentials in %s; dashboard %s): %d-%d worker "
                "jobs of %s cores, %s, %s",
                address,
                "site" if credentials.site else "temporary",
                credentials.directory,
                cluster.dashboard_link,
                workers.minimum_jobs,
                workers.maximum_jobs,
                kwargs["cores"],
                kwargs["memory"],
                kwargs["walltime"],
            )
            yield RunningCluster(cluster, address, scheduler_file, credentials)
        finally:
            cluster.close()
    finally:
        shutil.rmtree(credentials.directory, ignore_errors=True)
