"""Choose the Dask cluster a block runs on.

Order: an explicit scheduler address (argument, config ``dask.address`` or the environment
variable ``DASK_SCHEDULER_ADDRESS``, which ``sweeplab slurm-dask`` sets to its dask-jobqueue
cluster), a scheduler file (``dask.scheduler_file``), else a private in-process ``LocalCluster``
with as many worker threads as the Snakemake job has, capped by the CPUs of the Slurm allocation
when the block runs as a Slurm job.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import dask
from distributed import Client, LocalCluster

__all__ = ["allocated_cpus", "dask_client"]

logger = logging.getLogger(__name__)


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


@contextlib.contextmanager
def dask_client(threads: int, dask_config: Mapping[str, Any] | None = None) -> Iterator[Client]:
    """Yield a connected :class:`distributed.Client`, and close what was started here.

    Parameters
    ----------
    threads : int
        Threads of the Snakemake job (size of the private local cluster), >= 1.
    dask_config : mapping, optional
        The config's ``dask`` section: ``address``, ``scheduler_file``, ``processes``.

    """
    cfg = dict(dask_config or {})
    address = cfg.get("address") or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        logger.info("connecting to Dask scheduler at %s", address)
        with Client(address) as client:
            yield client
        return
    if cfg.get("scheduler_file"):
        logger.info("connecting to Dask scheduler from file %s", cfg["scheduler_file"])
        with Client(scheduler_file=cfg["scheduler_file"]) as client:
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
    with (
        dask.config.set({"distributed.worker.profile.enabled": False}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=per_worker,
            processes=processes,
            dashboard_address="127.0.0.1:0",  # its HTTP server starts anyway: loopback, free port
            **({"host": "127.0.0.1"} if processes else {}),  # threads: in-process transport
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
