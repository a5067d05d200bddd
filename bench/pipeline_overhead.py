"""Pipeline overhead, measured side by side in one run.

1. One block of many points: ``run_plan`` on its plan file (private Dask LocalCluster, labelled
   Dataset, atomic block write) vs calling the same point function in a plain loop. Points are
   sharpness points with a dense Hessian (~0.1-0.2 s each).
2. Many tiny blocks: the real ``snakemake`` CLI on a sweep of blocks of one such point each
   (``block_seconds`` below any point's cost) vs the same plain loop (each Snakemake job starts a
   Python process: this is the cost of a job).
3. No-op re-run with 1000 blocks: ``snakemake`` on a complete 1000-block sweep (real one-point
   block files with fill values, aggregated once) -- the time to plan (ledger, keys) and decide
   there is nothing to do.

Usage: .venv/bin/python bench/pipeline_overhead.py [--points 24] [--blocks 8] [--noop-blocks 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from sweeplab.sweep import grid_points, plan, run_plan
from sweeplab.sweep.blockstore import write_block
from sweeplab.sweep.datasets import label
from sweeplab.sweep.experiments import REGISTRY, sharpness_point
from sweeplab.sweep.experiments.base import canonical_json

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SETTINGS = {"gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 2000}


def sharp_config(depths, seeds, block_seconds=60.0, widths=(12,)):
    base = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    base["experiments"] = ["sharpness"]
    base["sharpness"] = {
        "depth": list(depths), "width": list(widths), "d_io": [4], "family": ["gaussian"],
        "seeds": seeds, **SETTINGS,
    }  # fmt: skip
    base["block_seconds"] = block_seconds
    return base


def plain_loop(config) -> float:
    grid = grid_points(REGISTRY["sharpness"], config["sharpness"])
    points = grid.points(np.arange(len(grid.keys)))
    t0 = time.perf_counter()
    for i in range(len(points)):
        p = points.params(i)
        sharpness_point(p["depth"], p["width"], p["dio"], p["family"], p["seed"], SETTINGS)
    return time.perf_counter() - t0


def fill_block(points, path: Path) -> None:
    """A real block file of ``points`` holding fill values (status ok)."""
    exp = REGISTRY["sharpness"]
    ds = label(exp, points, exp.empty_points(len(points), SETTINGS), SETTINGS)
    ds.attrs = {"experiment": "sharpness", "block": path.name.removesuffix(".zarr.zip"),
                "version": exp.version, "settings": canonical_json(SETTINGS), "entries": "{}",
                "salt": "[]"}  # fmt: skip
    write_block(ds, path)


def snakemake(workdir: Path, *args: str) -> float:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [
        str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
        "--configfile", str(workdir / "config.yaml"), "--cores", "1", "--quiet", "all", *args,
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--noop-blocks", type=int, default=1000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sweeplab-bench-"))
    try:
        # 1. one block of many points (threads = 1: same CPU budget as the plain loop)
        cfg = sharp_config([4], args.points, widths=(16,))
        plain_loop(cfg)  # warm caches
        one = plan("sharpness", cfg["sharpness"], tmp / "blocks", block_seconds=1e9)
        (plan_path,) = one.write_plan_files(tmp / "plans")
        loops, blocks = [], []
        for rep in range(args.repeats):  # alternate, keep the best of each (noisy machine)
            loops.append(plain_loop(cfg))
            t0 = time.perf_counter()
            run_plan(plan_path, tmp / f"r{rep}" / f"{plan_path.stem}.zarr.zip", threads=1)
            blocks.append(time.perf_counter() - t0)
        loop_s, block_s = min(loops), min(blocks)
        per_point = loop_s / args.points
        print(f"1. one block of {args.points} points ({per_point:.3f} s each in a plain loop)")
        print(f"   plain loop {loop_s:.2f} s, run_plan {block_s:.2f} s: overhead "
              f"{(block_s / loop_s - 1):+.1%} ({(block_s - loop_s) / args.points * 1e3:.1f} ms "
              "per point)")  # fmt: skip

        # 2. many tiny blocks through snakemake, one core
        wd = tmp / "many"
        wd.mkdir()
        cfg = sharp_config(range(3, 3 + args.blocks), 1, block_seconds=1e-9)
        (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
        loop_s = plain_loop(cfg)
        sm_s = snakemake(wd)
        print(
            f"2. {args.blocks} one-point blocks via snakemake (1 core): {sm_s:.2f} s vs plain "
            f"loop {loop_s:.2f} s: {sm_s / loop_s:.1f}x, "
            f"{(sm_s - loop_s) / args.blocks:.2f} s per block"
        )

        # 3. no-op re-run with N blocks
        wd = tmp / "noop"
        wd.mkdir()
        n = args.noop_blocks
        cfg = sharp_config(range(2, 2 + n // 10), 10, block_seconds=1e-9)
        (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
        blocks_dir = wd / "results" / "blocks" / "sharpness"
        full = plan("sharpness", cfg["sharpness"], blocks_dir, block_seconds=1e-9)
        n_blocks = len(full.blocks)
        for b in full.blocks:
            fill_block(full.grid.points(b.rows), blocks_dir / f"{b.name}.zarr.zip")
        snakemake(wd)  # aggregate and figures (nothing to compute)
        noop_s = snakemake(wd)
        print(f"3. no-op re-run with {n_blocks} blocks: {noop_s:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
