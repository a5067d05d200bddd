"""Choose the Dask cluster a block runs on.

Order: an explicit scheduler address (argument, config ``dask.address`` or the environment
variable ``DASK_SCHEDULER_ADDRESS``, which ``sweeplab slurm-dask`` sets to its dask-jobqueue
cluster), a scheduler file (``dask.scheduler_file``), else a private in-process ``LocalCluster``
with as many worker threads as the Snakemake job has, capped by the CPUs of the Slurm allocation
when the block runs as a Slurm job.

Everything the private cluster starts (scheduler, workers, nannies and their HTTP servers)
listens on 127.0.0.1 only.

Waiting for a remote scheduler is bounded by ``dask.timeout`` (seconds, default
:data:`DEFAULT_TIMEOUT`): a scheduler file that does not appear, or a scheduler that does not
answer, raises :class:`SchedulerUnavailableError` (a :class:`ValueError`) naming the file or the
address.

TLS credentials of a remote scheduler come from, in this order: the ``security`` entry of the
scheduler file (as written by ``sweeplab slurm-dask``), the ``security`` entry of the file named
by the environment variable ``SWEEPLAB_DASK_CREDENTIALS`` (set by ``sweeplab slurm-dask`` for the
blocks it runs), else Dask's own configuration (``distributed.comm.tls.*``). These entries hold
only *paths* of PEM files, never key material.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster
from distributed.security import Security

__all__ = [
    "CREDENTIALS_ENV",
    "DEFAULT_TIMEOUT",
    "SchedulerUnavailableError",
    "allocated_cpus",
    "dask_client",
    "load_security",
    "write_scheduler_file",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
"""Default of ``dask.timeout``: how long to wait for a scheduler file or a scheduler, in s."""

CREDENTIALS_ENV = "SWEEPLAB_DASK_CREDENTIALS"
"""Environment variable naming a scheduler file whose ``security`` entry the client uses."""

# Client-side keyword arguments of distributed.security.Security a scheduler file may carry.
_CLIENT_SECURITY_KEYS = frozenset(
    {"tls_ca_file", "tls_client_cert", "tls_client_key", "tls_ciphers", "require_encryption"}
)
_PATH_KEYS = ("tls_ca_file", "tls_client_cert", "tls_client_key")
_POLL = 0.1  # s between looks at a scheduler file that is not there yet


class SchedulerUnavailableError(ValueError):
    """A remote Dask scheduler could not be reached in time (its message is one line)."""


def allocated_cpus() -> int | None:
    """CPUs this process may use: the Slurm allocation's, else the CPU affinity mask's.

    Returns
    -------
    int or None
        ``SLURM_CPUS_PER_TASK`` inside a Slurm job step, else the size of the affinity mask
        (``None`` where the platform has none).

    """
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return None


def scheduler_timeout(dask_config: Mapping[str, Any] | None = None) -> float:
    """Return the config's ``dask.timeout``, validated, else :data:`DEFAULT_TIMEOUT`.

    Parameters
    ----------
    dask_config : mapping, optional
        The config's ``dask`` section.

    Returns
    -------
    float
        Seconds to wait for a scheduler file, and again for the scheduler to answer; > 0.

    Raises
    ------
    ValueError
        When ``timeout`` is not a finite number of seconds > 0.

    """
    value = (dask_config or {}).get("timeout")
    if value is None:
        return DEFAULT_TIMEOUT
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"dask.timeout = {value!r}; allowed: a number of seconds > 0")
    return float(value)


def write_scheduler_file(
    path: str | os.PathLike[str],
    address: str,
    security: Mapping[str, Any] | None = None,
) -> Path:
    """Write a scheduler file readable by its owner only (mode 0600), atomically.

    Its ``address`` is what ``Client(scheduler_file=...)`` and ``dask scheduler
    --scheduler-file`` use; the optional ``security`` entry holds the client's TLS credentials
    as *paths* (keys of :class:`~distributed.security.Security`: ``tls_ca_file``,
    ``tls_client_cert``, ``tls_client_key``, ``require_encryption``), read by
    :func:`dask_client`.

    Parameters
    ----------
    path : path
        Destination; a temporary ``.<name>.tmp`` beside it is renamed over it.
    address : str
        Scheduler address, e.g. ``"tls://10.0.0.5:34567"``.
    security : mapping, optional
        Client credentials (paths only; in-memory PEM text is refused).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        When ``security`` has other keys, or holds key material instead of a path.

    """
    path = Path(path)
    content: dict[str, Any] = {"address": address}
    if security is not None:
        content["security"] = _check_security(dict(security), path)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(content, f, indent=1)
    tmp.replace(path)
    return path


def _check_security(entry: dict[str, Any], source: Path) -> dict[str, Any]:
    extra = set(entry) - _CLIENT_SECURITY_KEYS
    if extra:
        raise ValueError(
            f"{source}: security keys {sorted(extra)} unknown; allowed: "
            f"{sorted(_CLIENT_SECURITY_KEYS)}"
        )
    for key in _PATH_KEYS:
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or "\n" in value):
            raise ValueError(f"{source}: security {key} must be the path of a PEM file")
    return entry


def load_security(path: str | os.PathLike[str]) -> Security | None:
    """Build the client :class:`~distributed.security.Security` of a scheduler file.

    The file's ``security`` entry holds the paths of the client's TLS credentials.

    Relative paths are relative to the file's directory. A private key file that others may
    read is used, with a warning.

    Parameters
    ----------
    path : path
        A scheduler file (JSON).

    Returns
    -------
    distributed.security.Security or None
        ``None`` when the file has no ``security`` entry.

    Raises
    ------
    SchedulerUnavailableError
        When the file or a credential file it names cannot be read.

    """
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SchedulerUnavailableError(
            f"cannot read Dask credentials file {path}: {exc}"
        ) from None
    entry = content.get("security") if isinstance(content, dict) else None
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise SchedulerUnavailableError(f"{path}: 'security' must be a JSON object")
    entry = _check_security(dict(entry), path)
    for key in _PATH_KEYS:
        if entry.get(key) is None:
            continue
        file = path.parent / entry[key]  # an absolute path stays as it is
        if not file.is_file():
            raise SchedulerUnavailableError(f"{path}: {key} {file} does not exist")
        entry[key] = str(file)
    key_file = entry.get("tls_client_key") or entry.get("tls_client_cert")
    if key_file and stat.S_IMODE(os.stat(key_file).st_mode) & 0o077:
        logger.warning("TLS key %s is readable by other users: chmod 600 it", key_file)
    entry.setdefault("require_encryption", True)
    return Security(**entry)


def _wait_for_scheduler_file(path: Path, timeout: float) -> str:
    """Return the address in scheduler file ``path``, waiting up to ``timeout`` s for it."""
    deadline = time.monotonic() + timeout
    problem = "does not exist"
    while True:
        try:
            address = json.loads(path.read_text())["address"]
            if isinstance(address, str) and address:
                return address
            problem = "has no scheduler address"
        except FileNotFoundError:
            problem = "does not exist"
        except (OSError, ValueError, KeyError, TypeError) as exc:  # being written, or not JSON
            problem = f"is not a scheduler file ({type(exc).__name__}: {exc})"
        if time.monotonic() >= deadline:
            raise SchedulerUnavailableError(
                f"Dask scheduler file {path} {problem} after waiting {timeout:g} s "
                "(dask.timeout); start the scheduler or fix dask.scheduler_file"
            )
        time.sleep(_POLL)


_UNSET = object()


@contextlib.contextmanager
def _default_scheduler_restored() -> Iterator[None]:
    """Restore dask's default ``scheduler`` setting on exit.

    A Client sets it when created and resets it on close only if no other client is registered;
    a Client whose connection failed stays registered. Without this, dask computations later in
    the same process would look for a client that no longer exists.
    """
    saved = dask.config.config.get("scheduler", _UNSET)
    try:
        yield
    finally:
        if saved is _UNSET:
            dask.config.config.pop("scheduler", None)
        else:
            dask.config.config["scheduler"] = saved


@contextlib.contextmanager
def _remote_client(
    address: str, security: Security | None, timeout: float, source: str = ""
) -> Iterator[Client]:
    kwargs: dict[str, Any] = {"timeout": timeout}
    if security is not None:
        kwargs["security"] = security
    with _default_scheduler_restored():
        try:
            client = Client(address, **kwargs)
        # OSError: timed out / refused / TLS handshake failed; TypeError, RuntimeError: a tls://
        # address without credentials, or encryption required for a tcp:// one
        except (OSError, TypeError, RuntimeError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise SchedulerUnavailableError(
                f"cannot connect to the Dask scheduler at {address}{source} within {timeout:g} s "
                f"(dask.timeout): {reason}"
            ) from None
        with client:
            yield client


@contextlib.contextmanager
def dask_client(threads: int, dask_config: Mapping[str, Any] | None = None) -> Iterator[Client]:
    """Yield a connected :class:`distributed.Client`, and close what was started here.

    Parameters
    ----------
    threads : int
        Threads of the Snakemake job (size of the private local cluster), >= 1.
    dask_config : mapping, optional
        The config's ``dask`` section: ``address``, ``scheduler_file``, ``processes``,
        ``timeout`` (s, default :data:`DEFAULT_TIMEOUT`).

    Raises
    ------
    SchedulerUnavailableError
        A remote scheduler (or its scheduler file) was not there within ``timeout`` s; the
        message names the address or file.
    ValueError
        A bad ``timeout``.

    """
    cfg = dict(dask_config or {})
    timeout = scheduler_timeout(cfg)
    address = cfg.get("address") or os.environ.get("DASK_SCHEDULER_ADDRESS")
    credentials = os.environ.get(CREDENTIALS_ENV)
    if address:
        logger.info("connecting to Dask scheduler at %s", address)
        security = load_security(credentials) if credentials else None
        with _remote_client(address, security, timeout) as client:
            yield client
        return
    if cfg.get("scheduler_file"):
        path = Path(cfg["scheduler_file"])
        logger.info("connecting to Dask scheduler from file %s", path)
        address = _wait_for_scheduler_file(path, timeout)
        security = load_security(path)
        if security is None and credentials:
            security = load_security(credentials)
        with _remote_client(address, security, timeout, f" (from {path})") as client:
            yield client
        return
    processes = bool(cfg.get("processes", False))
    cpus = allocated_cpus()
    if cpus is not None and threads > cpus:
        logger.info("%d threads asked, %d CPUs allocated: using %d", threads, cpus, cpus)
        threads = cpus
    # The worker's statistical profiler samples every thread's stack every 10 ms under the GIL,
    # which slows Python-heavy points (Lanczos, GD loops): off for our private cluster.
    workers, per_worker = (threads, 1) if processes else (1, threads)
    logger.info("starting a private LocalCluster (%d workers x %d threads)", workers, per_worker)
    # Loopback only. Processes: scheduler, nannies and workers listen on tcp://127.0.0.1 and
    # each HTTP server on its node's host. Threads: the transport is in-process, but a worker
    # still starts an HTTP server, which binds every interface unless given an address.
    where = {"host": "127.0.0.1"} if processes else {"worker_dashboard_address": "127.0.0.1:0"}
    # The workers' scratch space (lock files, spilled data) is this job's own directory, made
    # in the job's temporary directory ($TMPDIR, which Slurm and Snakemake set; Dask's
    # ``temporary-directory`` if configured) and deleted at exit, not a dask-scratch-space
    # shared by every job on the node.
    with (
        _default_scheduler_restored(),
        tempfile.TemporaryDirectory(
            prefix="sweeplab-dask-",
            dir=dask.config.get("temporary-directory", None),
            ignore_cleanup_errors=True,
        ) as scratch,
        dask.config.set(
            {"distributed.worker.profile.enabled": False, "temporary-directory": scratch}
        ),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=per_worker,
            processes=processes,
            dashboard_address="127.0.0.1:0",  # its HTTP server starts anyway: loopback, free port
            local_directory=scratch,
            **where,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
