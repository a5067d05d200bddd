"""config/paper.yaml's eos section through the whole workflow, narrowed to one spectrum.

Run: .venv/bin/python bench/eos_paper.py [--workdir DIR] [--cores 2] [--starts small,gaussian]
     [--skip-run]

Writes ``DIR/config/eos-paper.yaml``: config/paper.yaml with ``experiments: [eos]``, the
spectrum s3 = (6, 5.5, 5) only, width 3 and the given starts, and every other eos setting as
paper.yaml has it (depths 2, 3, 4; 2001 step sizes in [0.005, 0.125]; 20 000 steps). It then
runs ``snakemake --configfile DIR/config/eos-paper.yaml --cores N`` in DIR (plan, blocks,
aggregate, figures; timed) unless ``--skip-run``, and reads ``DIR/results/eos.zarr`` to print,
per (start, depth):
  * the first step size at which 1, 2 and 3 modes oscillate, period 4, period 8, an aperiodic
    orbit, and divergence, next to the thresholds 1/(L sigma_i^(2-2/L));
  * over the step sizes up to 1.25 t_3, how many agree with the prediction (observed number of
    oscillating modes = number of thresholds below eta, not diverged), how many diverged, and
    the first disagreement.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

REPO = Path(__file__).resolve().parents[1]


def write_config(workdir: Path, starts: list[str]) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    eos = cfg["eos"]
    eos["spectra"] = {"s3": eos["spectra"]["s3"]}
    eos["width"] = [3]
    eos["start"] = starts
    out = {"experiments": ["eos"], "dask": cfg.get("dask"), "eos": eos}
    path = workdir / "config" / "eos-paper.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(out, sort_keys=False))
    return path


def run(workdir: Path, config: Path, cores: int) -> float:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(bindir / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(config), "--cores", str(cores), "--quiet"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=workdir)
    return time.perf_counter() - t0


def report(store: Path) -> None:
    ds = xr.open_zarr(store, chunks=None).load()
    names = dict(
        zip(ds.outcome.attrs["flag_values"], ds.outcome.attrs["flag_meanings"].split(), strict=True)
    )
    eta = ds.eta.values
    ok = int((ds.status == 0).sum())
    print(f"{ok} of {ds.status.size} points ok; eta: {len(eta)} values in "
          f"[{eta[0]:g}, {eta[-1]:g}], spacing {eta[1] - eta[0]:.3g}")  # fmt: skip
    print("| start | L | thresholds | 1 mode | 2 modes | 3 modes | p4 | p8 | aperiodic | "
          "diverged | eta <= 1.25 t3: n, agree, diverged | first disagreement |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for start in ds.start.values:
        for depth in ds.depth.values:
            s = ds.sel(spectrum="s3", width=3, start=start, seed=0, depth=depth)
            out = np.array([names[int(v)] for v in s.outcome.values])
            period, n_obs, n_pred = s.period.values, s.n_oscillating.values, s.n_predicted.values
            th = np.asarray(s.threshold.values)
            th = th[0] if th.ndim > 1 else th

            def first(mask: np.ndarray) -> str:
                i = np.flatnonzero(mask)
                return f"{eta[i[0]]:.5f}" if len(i) else "-"

            agree = (n_obs == n_pred) & (out != "diverged")
            within = eta <= 1.25 * th.max()
            dis = np.flatnonzero(~agree & within)
            aperiodic = (out == "edge_of_stability") & (period == 0)
            print(f"| {start} | {depth} | {', '.join(f'{t:.5f}' for t in th)} | "
                  f"{first(n_obs >= 1)} | {first(n_obs >= 2)} | {first(n_obs >= 3)} | "
                  f"{first(period == 4)} | {first(period == 8)} | {first(aperiodic)} | "
                  f"{first(out == 'diverged')} | {int(within.sum())}, {int(agree[within].sum())}, "
                  f"{int((out[within] == 'diverged').sum())} | "
                  f"{f'{eta[dis[0]]:.5f}' if len(dis) else '-'} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("bench-eos-paper"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--starts", default="small,gaussian")
    ap.add_argument("--skip-run", action="store_true")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(args.workdir.resolve(), args.starts.split(","))
    if not args.skip_run:
        wall = run(args.workdir.resolve(), config, args.cores)
        print(f"workflow: {wall:.1f} s wall on {args.cores} cores ({config})")
    report(args.workdir / "results" / "eos.zarr")


if __name__ == "__main__":
    main()
