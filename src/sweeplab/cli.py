"""Command line: ``sweeplab run-block | aggregate | figures | info | export``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
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
