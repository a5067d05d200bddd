"""Dask workers as Slurm jobs (dask-jobqueue), for sweeps of very many tiny points.

One driver holds a :class:`dask_jobqueue.SLURMCluster` whose workers are Slurm batch jobs,
scaled adaptively between ``minimum_jobs`` and ``maximum_jobs``; the sweep's blocks run as
light local Snakemake jobs that submit their points to it (``DASK_SCHEDULER_ADDRESS``). This
costs one Slurm job per *worker*, not per block. ``sweeplab slurm-dask`` is the command line.

Options left as ``None`` fall back to dask-jobqueue's own configuration
(``jobqueue.slurm.*`` in ``~/.config/dask/jobqueue.yaml`` or ``DASK_JOBQUEUE__SLURM__*``), which is
where a site usually keeps its partition and account, then to the defaults below.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask
from dask.utils import parse_bytes

if TYPE_CHECKING:
    from dask_jobqueue import SLURMCluster

__all__ = ["SlurmWorkers", "slurm_cluster"]

logger = logging.getLogger(__name__)

_WALLTIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # Slurm's [D-]HH[:MM[:SS]] / MM forms

DEFAULTS = {"cores": 1, "memory": "2GB", "walltime": "01:00:00"}


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
        Network interface of scheduler and workers (e.g. ``"ib0"``; ``"lo"`` on one machine).
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
        kwargs: dict[str, Any] = {
            **resolved,
            "processes": 1,  # one worker process per job, `cores` threads (numba kernel is nogil)
            "log_directory": self.log_directory,
            # The statistical profiler slows Python-heavy points 10-15 % (see cluster.py).
            "job_script_prologue": [
                *(conf.get("job-script-prologue") or []),
                "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False",
            ],
        }
        if self.partition is not None:
            kwargs["queue"] = self.partition
        if self.account is not None:
            kwargs["account"] = self.account
        if self.interface is not None:
            kwargs["interface"] = self.interface
        if self.job_extra:
            kwargs["job_extra_directives"] = list(self.job_extra)
        return kwargs


@contextlib.contextmanager
def slurm_cluster(
    workers: SlurmWorkers, *, dashboard_address: str = "127.0.0.1:0"
) -> Iterator[SLURMCluster]:
    """Start an adaptive SLURMCluster, yield it, and cancel its worker jobs on exit.

    Parameters
    ----------
    workers : SlurmWorkers
        Per-job resources and the adaptive range.
    dashboard_address : str
        Where the scheduler's dashboard listens (loopback and a free port by default).

    Yields
    ------
    dask_jobqueue.SLURMCluster
        Its ``scheduler_address`` is what clients connect to.

    """
    kwargs = workers.cluster_kwargs()  # validate before importing/starting anything
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(
            "dask-jobqueue is not installed: pip install 'sweeplab[slurm]'"
        ) from None
    cluster = SLURMCluster(scheduler_options={"dashboard_address": dashboard_address}, **kwargs)
    try:
        logger.debug("worker job script:\n%s", cluster.job_script())
        cluster.adapt(minimum_jobs=workers.minimum_jobs, maximum_jobs=workers.maximum_jobs)
        logger.info(
            "SLURMCluster at %s (dashboard %s): %d-%d worker jobs of %s cores, %s, %s",
            cluster.scheduler_address,
            cluster.dashboard_link,
            workers.minimum_jobs,
            workers.maximum_jobs,
            kwargs["cores"],
            kwargs["memory"],
            kwargs["walltime"],
        )
        yield cluster
    finally:
        cluster.close()
