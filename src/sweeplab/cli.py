"""Command line: ``sweeplab run-block | aggregate | figures | info | export | slurm-dask``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
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
    # fontTools logs every glyph subset of a PDF at INFO (dozens of lines a figure)
    for noisy in ("distributed", "tornado", "asyncio", "numba", "matplotlib", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="sweeplab")
def main(verbose: bool) -> None:
    """Sweeps of deep-matrix-factorization sharpness/escape and MCvD channels."""
    _setup_logging(verbose)


def _experiments() -> list[str]:
    from sweeplab.sweep.experiments import EXPERIMENTS

    return list(EXPERIMENTS)


class _BadInput(click.ClickException):
    """A usage error shown as one ``Error:`` line (exit status 2, as click's usage errors)."""

    exit_code = 2


def _json(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadInput(f"Invalid value for {what}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _BadInput(f"Invalid value for {what}: must be a JSON object, not {text!r}")
    return value


def _os_error(exc: OSError, doing: str) -> click.ClickException:
    """One line for a file-system error: what was being done, the cause and the path it hit."""
    cause = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) not in doing else ""
    return click.ClickException(f"{doing}: {cause}{where}")


@main.command("run-block")
@click.argument("plan", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--dask",
    "dask_json",
    default="{}",
    envvar="SWEEPLAB_DASK",
    show_envvar=True,
    help="JSON of the config's dask section (address, scheduler_file, processes, timeout).",
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Block store <block>.zarr.zip."
)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1))
def run_block_cmd(plan: Path, dask_json: str, out: Path, threads: int) -> None:
    """Compute the block described by the plan file PLAN and write its one-file store atomically.

    Plan files are written by the workflow's planner (results/plans/<experiment>/<block>.json).
    """
    from sweeplab.sweep import run_plan
    from sweeplab.sweep.configcheck import check_schema, load_schema
    from sweeplab.sweep.store import check_writable

    dask = _json(dask_json, "--dask")
    try:  # the config's dask section: unknown keys and wrong types are refused, not ignored
        check_schema(dask, load_schema()["properties"]["dask"], ("dask",))
    except ValueError as exc:
        raise _BadInput(f"Invalid value for --dask: {exc}") from None
    try:  # a read-only or full file system is found before the block is computed, not after
        check_writable(out.parent)
    except OSError as exc:
        raise _os_error(exc, f"cannot write the block {out}") from None
    try:
        run_plan(plan, out, dask=dask, threads=threads)
    except ValueError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None
    except OSError as exc:
        raise _os_error(exc, f"cannot write the block {out}") from None


@main.command()
@click.argument("experiment", type=click.Choice(_experiments()))
@click.option("--settings", required=True, help="JSON of the experiment's config section.")
@click.option(
    "--blocks-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the experiment's block stores.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Aggregate store.")
@click.option("--full", is_flag=True, help="Rebuild from every block file (verifies them all).")
def aggregate(experiment: str, settings: str, blocks_dir: Path, out: Path, full: bool) -> None:
    """Bring the aggregate of EXPERIMENT at OUT up to date with the config's grid.

    Each grid point is read by its key from the block holding it; only blocks added or changed
    since the last aggregation are read (``--full``: all of them). A damaged block, one of
    another experiment, or two blocks holding one point with different values stop it, named.
    """
    from sweeplab.sweep import aggregate as agg
    from sweeplab.sweep import provenance
    from sweeplab.sweep.configcheck import validate_section
    from sweeplab.sweep.store import (
        check_aggregate_destination,
        remove_own_temporaries,
        settle_zarr_writes,
    )

    section = _json(settings, "--settings")
    try:
        validate_section(experiment, section)
    except ValueError as exc:
        raise _BadInput(f"Invalid value for --settings: {exc}") from None
    try:  # the store replaces whatever is at --out: only an aggregate of this experiment may be
        check_aggregate_destination(out, experiment, blocks_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise _os_error(exc, f"cannot inspect --out {out}") from None
    attrs = {"title": f"sweeplab {experiment} sweep", **provenance({experiment: section})}
    try:
        report = agg(experiment, section, blocks_dir, out, attrs=attrs, full=full)
    except (ValueError, OSError) as exc:
        settle_zarr_writes()  # writes still running when one failed: then nothing is left
        remove_own_temporaries(out)
        if isinstance(exc, OSError):
            raise _os_error(exc, f"cannot update the aggregate {out}") from None
        raise click.ClickException(" ".join(str(exc).split())) from None
    logging.getLogger("sweeplab").info(
        "%s: %d blocks -> %s (%s: %d read, %d reused; %d failed point(s))",
        experiment, report.n_blocks, out, report.mode, report.blocks_read,
        report.blocks_reused, report.n_failed,
    )  # fmt: skip


@main.command()
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Aggregated store(s) to draw from (default: results/<experiment>.zarr).",
)
@click.option("--out", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Directory of the files [default: results/figures/<experiment>, as the "
                   "workflow writes them].")  # fmt: skip
@click.argument("names", nargs=-1)
def figures(datasets: tuple[Path, ...], out: Path | None, names: tuple[str, ...]) -> None:
    """Draw figures NAMES as PNG, SVG and PDF from aggregated stores.

    Default: the figures of the --dataset stores' experiments, else every figure. The files
    are drawn under a temporary name and moved into OUT only when all are written.
    """
    import shutil

    try:  # imported here: `sweeplab --help` and the other commands need no matplotlib
        from sweeplab.plots import FIGURES, draw_all
    except ImportError as exc:
        raise click.ClickException(f"{exc}; pip install 'sweeplab[plots]'") from None
    from sweeplab.sweep.store import remove_stale_temporaries, temporary_name

    for name in names:
        if name not in FIGURES:
            raise click.BadParameter(
                f"{name!r} is not one of {', '.join(repr(n) for n in FIGURES)}",
                param_hint="NAMES",
            )
    if not names and datasets:
        experiments = [_dataset_experiment(path) for path in datasets]
        names = tuple(n for n, (experiment, _) in FIGURES.items() if experiment in experiments)
        if not names:
            raise click.ClickException(
                f"no figures are drawn from {', '.join(experiments)} datasets; experiments "
                f"with figures: {', '.join(sorted({e for e, _ in FIGURES.values()}))}"
            )

    base = out if out is not None else Path("results") / "figures"
    if base.parent.is_dir():
        remove_stale_temporaries(base)
    tmp = temporary_name(base)
    dest = base
    try:
        drawn = draw_all(list(datasets), tmp, names or None)
        paths = []
        for path in drawn:
            dest = out if out is not None else base / FIGURES[path.stem][0]
            dest.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest / path.name)
            paths.append(dest / path.name)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None
    except OSError as exc:
        raise _os_error(exc, f"cannot write the figures in {dest}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for path in paths:
        click.echo(str(path))


def _dataset_experiment(path: Path) -> str:
    """Return the ``experiment`` attribute of the aggregated store at ``path``."""
    import zarr  # the root attributes only: xarray would import dask (~1.5 s) to open it

    try:
        experiment = zarr.open_group(path, mode="r").attrs.get("experiment")
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise click.ClickException(f"{path} is not a readable zarr store ({reason})") from None
    if not isinstance(experiment, str) or not experiment:
        raise click.ClickException(
            f"{path} has no 'experiment' attribute, so its figures are unknown; name them"
        )
    return experiment


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--verify",
    is_flag=True,
    help="Check every file first: an aggregate against its manifest (presence, size, digest), "
    "a block file by its CRCs and content digest. Exit 1 naming the first bad file.",
)
def info(path: Path, verify: bool) -> None:
    """Summarise a dataset: dims, variables with units, provenance, failed points."""
    from sweeplab.sweep import open_block, open_dataset

    n_blocks = None
    checked = None
    if path.name.endswith(".zip"):
        _check_zip(path)
        if verify:
            checked = _verify_block(path)
    elif verify:
        from sweeplab.sweep.store import verify_aggregate

        try:
            checked = f"{len(verify_aggregate(path)['files'])} files match the manifest"
        except ValueError as exc:
            raise click.ClickException(" ".join(str(exc).split())) from None
        except OSError as exc:
            raise _os_error(exc, f"cannot verify {path}") from None
    manifest = path / "sweeplab-manifest.json"
    if manifest.is_file():
        try:
            doc = json.loads(manifest.read_text())
            n_blocks = len(doc["blocks"])
            if checked is None:  # presence and sizes at least (stat only); --verify reads all
                _warn_if_damaged(path, doc)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise click.ClickException(
                f"{manifest} is damaged ({type(exc).__name__}: {reason}); rebuild the "
                "aggregate with `sweeplab aggregate ... --full` or delete it and re-run "
                "`snakemake`"
            ) from None
    try:
        ds = open_block(path) if path.name.endswith(".zip") else open_dataset(path)
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise click.ClickException(f"{path} is not a readable zarr store ({reason})") from None
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
    for key in ("experiment", "block", "sweeplab_version", "git_revision", "command"):
        if key in ds.attrs:
            click.echo(f"{key}: {ds.attrs[key]}")
    if n_blocks is not None:
        click.echo(f"n_blocks: {n_blocks}")
    if checked is not None:
        click.echo(f"verified: {checked}")
    if "status" in ds:
        status = np.asarray(ds["status"].values)
        failed = int(np.count_nonzero(status == 1))
        click.echo(f"failed points: {failed}")
        if failed:
            errs = np.asarray(ds["error"].values)[status == 1]
            for e in sorted({str(x) for x in errs if str(x)})[:10]:
                click.echo(f"  {e}")


def _warn_if_damaged(path: Path, manifest: dict) -> None:
    """Log a warning when the aggregate ``path`` differs from its manifest's file table."""
    from sweeplab.sweep.store import check_files

    table = manifest.get("files")
    problem = (
        check_files(path, table, digests=False)
        if isinstance(table, dict)
        else "its manifest records no files (written before file digests)"
    )
    if problem is not None:
        logging.getLogger("sweeplab").warning(
            "%s is damaged or cannot be verified (%s); `sweeplab info --verify %s` checks every "
            "file, `sweeplab aggregate %s ... --full` rebuilds it",
            path, problem, path, manifest.get("experiment", "<experiment>"),
        )  # fmt: skip


def _verify_block(path: Path) -> str:
    """Read the block file ``path`` in full (CRCs, sizes, content digest); one line if bad."""
    import zipfile

    from sweeplab.sweep.blockstore import CorruptBlockError, read_block

    try:
        with zipfile.ZipFile(path) as zf:
            if zf.getinfo("zarr.json").file_size > 1 << 24:
                raise CorruptBlockError(path, "its zarr.json declares more than 16 MiB")
            experiment = json.loads(zf.read("zarr.json")).get("attributes", {}).get("experiment")
        read_block(path, str(experiment))
    except CorruptBlockError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None
    except (KeyError, ValueError, AttributeError, OSError, zipfile.BadZipFile) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise click.ClickException(
            f"{path} is not a valid block file ({reason}); delete it and re-run `snakemake`: "
            "its points are computed again"
        ) from None
    return "every member and the content digest"


def _check_zip(path: Path) -> None:
    """Refuse, in one line, a ``.zip`` that is not a whole zip archive (truncated, damaged)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise click.ClickException(
            f"{path} is not a valid block file (damaged or truncated zip archive: {reason}); "
            "delete it and re-run `snakemake`: its points are computed again"
        ) from None
    if bad is not None:
        raise click.ClickException(
            f"{path} is not a valid block file (member {bad} fails its CRC check); delete it "
            "and re-run `snakemake`: its points are computed again"
        )


@main.command()
@click.argument("name")
@click.argument("dest")
@click.option("--results", default="results", type=click.Path(path_type=Path), show_default=True)
@click.option("--force", is_flag=True, help="Replace DEST if it is a sweeplab store (atomically).")
def export(name: str, dest: str, results: Path, force: bool) -> None:
    """Export dataset NAME (e.g. ``channel``) to DEST: a directory, ``.zarr.zip`` or ``s3://`` URL.

    The copy is self-contained and consolidated, with a README attribute, and opens with
    ``xarray.open_zarr`` without sweeplab installed. An existing DEST is refused; with --force
    it is replaced only if it is a sweeplab store. DEST may not be in or around RESULTS.
    S3 endpoint and credentials come from the environment (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_PROFILE) or the fsspec configuration.
    """
    from sweeplab.sweep.export import export_dataset

    for chatty in ("botocore", "aiobotocore", "s3fs"):  # "Found credentials in ..." at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise click.ClickException(f"NAME must be a dataset name such as 'channel', not {name!r}")
    try:
        written = export_dataset(results / f"{name}.zarr", dest, force=force)
    except (ValueError, OSError) as exc:  # FileExistsError, FileNotFoundError are OSErrors
        raise click.ClickException(" ".join(str(exc).split())) from None
    click.echo(written)


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
@click.option(
    "--interface",
    help="Network interface scheduler and workers listen on (e.g. ib0, lo; the same name on "
    "every node).  [default: jobqueue.slurm.interface, else the interface of this host's "
    "address]",
)
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
    help="Also write the scheduler file here (mode 0600): address and the paths of the client's "
    "TLS credentials, for dask.scheduler_file.",
)
@click.option(
    "--credentials-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Where the private TLS credentials directory is made; worker jobs must see it.  "
    "[default: jobqueue.slurm.shared-temp-directory, else the current directory]",
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
    credentials_dir: Path | None,
    snakemake_args: tuple[str, ...],
) -> None:
    """Run the sweep with its points on Dask workers that are Slurm jobs (dask-jobqueue).

    Starts an adaptive SLURMCluster, then runs Snakemake here with SNAKEMAKE_ARGS (after
    ``--``): each block is a light local job that submits its points to the cluster, so a
    sweep of many tiny points costs a Slurm job per worker, not per block. Worker jobs are
    cancelled when Snakemake ends. Unset options fall back to dask-jobqueue's config
    (``jobqueue.slurm.*``).

    The cluster speaks TLS only, with mutual authentication: temporary self-signed credentials
    (or a site's, from Dask's ``distributed.comm.tls.*`` config) in a private directory that
    worker jobs and blocks read (``SWEEPLAB_DASK_CREDENTIALS``) and that is deleted at exit.
    """
    import contextlib

    from sweeplab.sweep.cluster import CREDENTIALS_ENV, write_scheduler_file
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
    with contextlib.ExitStack() as stack:
        try:
            running = stack.enter_context(slurm_cluster(workers, credentials_dir=credentials_dir))
        except (ValueError, RuntimeError) as exc:  # site TLS config, cryptography missing
            raise click.ClickException(str(exc)) from None
        address = running.address
        if scheduler_file is not None:
            write_scheduler_file(scheduler_file, address, running.credentials.client)
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
            "--set-threads", *(f"{name}_block=1" for name in _experiments()),
            *snakemake_args,
        ]  # fmt: skip
        log.info("running: %s", " ".join(cmd))
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        env = {**os.environ, "PATH": path, "DASK_SCHEDULER_ADDRESS": address,
               CREDENTIALS_ENV: str(running.scheduler_file)}  # fmt: skip
        returncode = subprocess.call(cmd, env=env)
    if returncode:
        raise SystemExit(returncode)


@main.command()
@click.option("--configfile", default="config/config.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Workflow config, as given to snakemake --configfile.")  # fmt: skip
@click.option("--results", default="results", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))  # fmt: skip
@click.option("--by", "by", metavar="AXIS[,AXIS]",
              help="Also count the points grouped by these axes' values.")  # fmt: skip
@click.option("--profile", type=click.Path(file_okay=False, path_type=Path),
              help="Workflow profile whose Slurm jobs are counted.  [default: profiles/slurm "
              "if it exists]")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per experiment.")
@click.option("--failed", is_flag=True, help="List the failed points with their errors.")
def status(configfile: Path, results: Path, by: str | None, profile: Path | None, as_json: bool,
           failed: bool) -> None:  # fmt: skip
    """Count the grid's points done, failed and pending, and the work left, per experiment.

    Reads the config as Snakemake does and the block files under RESULTS/blocks as they are
    (run it while a sweep runs: blocks count as they land). Estimates are the planner's:
    calibrated single-core seconds of the pending points, packed into blocks; the Slurm jobs
    are those of the profile's packing (its block_seconds) and group-components.
    """
    from sweeplab.sweep.status import UnknownAxisError, default_profile, sweep_status

    def size(nbytes: float) -> str:
        return f"{nbytes / 2**30:.3g} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.3g} MiB"

    axes = [a.strip() for a in by.split(",") if a.strip()] if by else []
    if by is not None and not axes:
        raise click.BadParameter("name one or more axes, e.g. --by depth,c", param_hint="--by")
    if profile is None:
        profile = default_profile(configfile)
    elif not (profile / "config.yaml").is_file():
        raise click.BadParameter(f"{profile} has no config.yaml", param_hint="--profile")
    try:
        found = sweep_status(configfile, results, by=axes, failed=failed, profile=profile)
    except UnknownAxisError as exc:
        raise click.BadParameter(str(exc), param_hint="--by") from None
    except ValueError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or results}: {exc.strerror or exc}") from None
    if as_json:
        click.echo(json.dumps({s.experiment: s.to_dict() for s in found}, indent=2))
        return
    for s in found:
        click.echo(f"{s.experiment}: {s.points} point(s): {s.done} done, {s.failed} failed, "
                   f"{s.pending} pending")  # fmt: skip
        if s.retry_failed:
            click.echo(f"  retry_failed: true, so failed points count as pending "
                       f"({s.failed_retried} of the pending ones failed before)")  # fmt: skip
        elif s.failed:
            click.echo("  failed points stay failed (set retry_failed: true to run them again)")
        click.echo(
            f"  to run: {s.blocks} block(s) of ~{s.block_seconds:g} s, {s.cpu_hours:.3g} "
            f"CPU-hours (calibrated single-core estimates, calibration x{s.calibration:.3g}), "
            f"peak memory per block {size(s.peak_block_memory)}"
        )
        if s.slurm is not None:
            click.echo(
                f"  Slurm ({s.slurm.profile}, blocks of ~{s.slurm.block_seconds:g} s): "
                f"{s.slurm.blocks} block(s) in {s.slurm.jobs} job(s) "
                f"({s.slurm.group_components} block(s) per job)"
            )
        click.echo(f"  on disk: {s.block_files} block file(s); {s.outside} point(s) outside the "
                   f"current grid ({s.outside_done} done, {s.outside_failed} failed)")  # fmt: skip
        if axes and s.by is None:
            click.echo(f"  (no --by table: {s.experiment} lacks one of {', '.join(axes)})")
        elif s.by is not None:
            head = [*s.by["axes"], "done", "failed", "pending"]
            rows = [[*(str(v[i]) for v in s.by["values"]), str(s.by["done"][i]),
                     str(s.by["failed"][i]), str(s.by["pending"][i])]
                    for i in range(len(s.by["done"]))]  # fmt: skip
            widths = [max(len(r[j]) for r in [head, *rows]) for j in range(len(head))]
            for r in [head, *rows]:
                click.echo("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        if failed:
            click.echo(f"  failed points: {len(s.failures)}")
            for f in s.failures:
                where = " ".join(f"{k}={v}" for k, v in f.params.items())
                click.echo(f"    {where}: {f.error or '(no message)'} [{f.block}]")


@main.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--results", default="results", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Verify and report; write nothing.")
def merge(src: Path, results: Path, dry_run: bool) -> None:
    """Bring in the blocks of SRC: a results or blocks directory, or a .tar/.tar.gz/.zip of one.

    Every block is verified (content digest; every point key recomputed from its parameters
    and settings) and must belong to the experiment directory it is under. Blocks whose points
    are all here already are skipped; a point held here with different values is a conflict.
    On any error nothing is written. Then `snakemake` aggregates the merged points without
    computing them again.
    """
    from sweeplab.sweep.merge import merge_blocks

    try:
        reports = merge_blocks(src, results, dry_run=dry_run)
    except ValueError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or src}: {exc.strerror or exc}") from None
    verb = "would merge" if dry_run else "merged"
    for r in reports:
        other = f", {len(r.other_version)} of another version" if r.other_version else ""
        if r.replaced:
            other += f"; {len(r.replaced)} merged block(s) replace a local copy with fewer results"
        click.echo(f"{r.experiment}: {verb} {len(r.merged)} block(s) ({r.new_points} new "
                   f"point(s)), skipped {len(r.skipped)} already present{other}")  # fmt: skip
    if not reports:
        click.echo(f"no blocks in {src}")
