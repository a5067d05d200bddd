"""Command line: ``sweeplab run-block | aggregate | figures | info | export | slurm-dask``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import click
import numpy as np

__all__ = ["main"]


def _setup_logging(verbose: bool) -> None:
    # distributed configures its own loggers when imported (later, lazily): quieten them via config
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "debug" if verbose else "warning")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("distributed", "tornado", "asyncio", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="sweeplab")
def main(verbose: bool) -> None:
    """Sweeps of deep-matrix-factorization sharpness/escape and MCvD channels."""
    _setup_logging(verbose)


@main.command("run-block")
@click.argument("experiment", type=click.Choice(["sharpness", "escape", "channel"]))
@click.argument("block")
@click.option("--settings", required=True, help="JSON of the experiment's config section.")
@click.option(
    "--dask",
    "dask_json",
    default="{}",
    envvar="SWEEPLAB_DASK",
    show_envvar=True,
    help="JSON of the config's dask section (address, scheduler_file, processes).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Block zarr store.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1))
def run_block_cmd(
    experiment: str, block: str, settings: str, dask_json: str, out: Path, threads: int
) -> None:
    """Run one BLOCK of EXPERIMENT and write its zarr store atomically."""
    from sweeplab.sweep import run_block

    config = {experiment: json.loads(settings), "dask": json.loads(dask_json)}
    try:
        run_block(experiment, block, config, out, threads=threads)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("experiment", type=click.Choice(["sharpness", "escape", "channel"]))
@click.argument("blocks", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--settings", required=True, help="JSON of the experiment's config section.")
@click.option("--out", required=True, type=click.Path(path_type=Path))
def aggregate(experiment: str, blocks: tuple[Path, ...], settings: str, out: Path) -> None:
    """Combine the BLOCKS stores of EXPERIMENT into one dataset at OUT."""
    from sweeplab.sweep import aggregate as agg

    ds = agg(list(blocks), out, {experiment: json.loads(settings)}, experiment)
    failed = int(np.asarray(ds["status"]).sum())
    logging.getLogger("sweeplab").info(
        "%s: %d blocks -> %s (%d failed point(s))", experiment, len(blocks), out, failed
    )


@main.command()
@click.option("--results", default="results", type=click.Path(path_type=Path), show_default=True)
@click.option("--out", default="results/figures", type=click.Path(path_type=Path))
@click.argument("names", nargs=-1)
def figures(results: Path, out: Path, names: tuple[str, ...]) -> None:
    """Draw figures (PNG + SVG) from the aggregated stores in RESULTS."""
    from sweeplab.plots import draw_all

    for path in draw_all(results, out, names or None):
        click.echo(str(path))


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def info(path: Path) -> None:
    """Summarise a dataset: dims, variables with units, provenance, failed points."""
    from sweeplab.sweep import open_dataset

    ds = open_dataset(path)
    click.echo(f"{path}")
    click.echo("dims: " + ", ".join(f"{k}={v}" for k, v in ds.sizes.items()))
    click.echo("coords:")
    for name, c in ds.coords.items():
        vals = c.values
        shown = ", ".join(map(str, vals[:6])) + (" ..." if vals.size > 6 else "")
        click.echo(f"  {name} [{c.attrs.get('units', '?')}]: {shown}")
    click.echo("variables:")
    for name, v in ds.data_vars.items():
        click.echo(
            f"  {name}{tuple(v.dims)} [{v.attrs.get('units', '?')}]: {v.attrs.get('long_name', '')}"
        )
    for key in ("experiment", "sweeplab_version", "git_revision", "command", "n_blocks"):
        if key in ds.attrs:
            click.echo(f"{key}: {ds.attrs[key]}")
    if "status" in ds:
        status = ds["status"].load()
        failed = int((status == 1).sum())
        click.echo(f"failed points: {failed}")
        if failed:
            errs = ds["error"].where(status == 1).values.ravel()
            for e in sorted({str(x) for x in errs if isinstance(x, str) and x})[:10]:
                click.echo(f"  {e}")


@main.command()
@click.argument("name")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--results", default="results", type=click.Path(path_type=Path), show_default=True)
def export(name: str, dest: Path, results: Path) -> None:
    """Export dataset NAME (e.g. ``channel``) to DEST: a directory store, or ``.zarr.zip``.

    The copy is self-contained and consolidated, with a README attribute, and opens with
    ``xarray.open_zarr`` without sweeplab installed.
    """
    from sweeplab.sweep import open_dataset, write_atomic

    src = results / f"{name}.zarr"
    if not src.exists():
        raise click.ClickException(f"no dataset {src}; run the workflow first")
    ds = open_dataset(src).load()
    ds.attrs["README"] = (
        f"sweeplab {name} dataset (sweeplab {ds.attrs.get('sweeplab_version', '?')}). Open with "
        "xarray.open_zarr(path). Every variable has units and long_name attributes; 'status' is 1 "
        "where a point failed ('error' holds its message); 'config' holds the sweep settings."
    )
    if dest.name.endswith(".zip"):
        tmpdir = dest.with_name(f".{dest.name}.d")
        write_atomic(ds, tmpdir)
        tmpzip = dest.with_name(f".{dest.name}.tmp")
        with zipfile.ZipFile(tmpzip, "w", compression=zipfile.ZIP_STORED) as zf:
            for f in sorted(tmpdir.rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(tmpdir).as_posix())
        tmpzip.replace(dest)
        shutil.rmtree(tmpdir)
    else:
        write_atomic(ds, dest)
    click.echo(str(dest))


BLOCK_RULES = ("sharpness_block", "escape_block", "channel_block")


@main.command(
    "slurm-dask",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--cores", type=click.IntRange(min=1), help="CPUs per worker job.  [default: 1]")
@click.option("--memory", help="Memory per worker job, e.g. 4GB.  [default: 2GB]")
@click.option("--walltime", help="Time limit per worker job.  [default: 01:00:00]")
@click.option("--partition", help="Slurm partition of the worker jobs (-p).")
@click.option("--account", help="Slurm account of the worker jobs (-A).")
@click.option("--min-jobs", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--max-jobs", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--interface", help="Network interface of scheduler and workers (e.g. ib0, lo).")
@click.option("--log-dir", default="logs/dask-slurm", show_default=True, help="Worker job logs.")
@click.option("--job-extra", multiple=True, help="Extra #SBATCH directive (repeatable).")
@click.option(
    "--blocks-in-flight",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Block jobs Snakemake runs at once on this machine (each a light Dask client).",
)
@click.option(
    "--serve",
    is_flag=True,
    help="Only run the cluster (until Ctrl-C) and write its address to --scheduler-file.",
)
@click.option(
    "--scheduler-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the scheduler address here (JSON, as `dask scheduler --scheduler-file`).",
)
@click.argument("snakemake_args", nargs=-1, type=click.UNPROCESSED)
def slurm_dask(
    cores: int | None,
    memory: str | None,
    walltime: str | None,
    partition: str | None,
    account: str | None,
    min_jobs: int,
    max_jobs: int,
    interface: str | None,
    log_dir: str,
    job_extra: tuple[str, ...],
    blocks_in_flight: int,
    serve: bool,
    scheduler_file: Path | None,
    snakemake_args: tuple[str, ...],
) -> None:
    """Run the sweep with its points on Dask workers that are Slurm jobs (dask-jobqueue).

    Starts an adaptive SLURMCluster, then runs Snakemake here with SNAKEMAKE_ARGS (after
    ``--``): each block is a light local job that submits its points to the cluster, so a
    sweep of many tiny points costs a Slurm job per worker, not per block. Worker jobs are
    cancelled when Snakemake ends. Unset options fall back to dask-jobqueue's config
    (``jobqueue.slurm.*``).
    """
    from sweeplab.sweep.jobqueue import SlurmWorkers, slurm_cluster

    workers = SlurmWorkers(
        cores=cores,
        memory=memory,
        walltime=walltime,
        partition=partition,
        account=account,
        minimum_jobs=min_jobs,
        maximum_jobs=max_jobs,
        interface=interface,
        log_directory=log_dir,
        job_extra=job_extra,
    )
    try:
        workers.cluster_kwargs()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    log = logging.getLogger("sweeplab")
    with slurm_cluster(workers) as cluster:
        address = cluster.scheduler_address
        if scheduler_file is not None:
            tmp = scheduler_file.with_name(f".{scheduler_file.name}.tmp")
            tmp.write_text(json.dumps({"address": address}))
            tmp.replace(scheduler_file)
        if serve:
            log.info("serving %s; Ctrl-C stops the cluster and cancels its jobs", address)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return
        cmd = [
            sys.executable, "-m", "snakemake",
            "--cores", str(blocks_in_flight),
            "--set-threads", *(f"{rule}=1" for rule in BLOCK_RULES),
            *snakemake_args,
        ]  # fmt: skip
        log.info("running: %s", " ".join(cmd))
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        env = {**os.environ, "PATH": path, "DASK_SCHEDULER_ADDRESS": address}
        returncode = subprocess.call(cmd, env=env)
    if returncode:
        raise SystemExit(returncode)
