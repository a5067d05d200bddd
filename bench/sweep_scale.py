"""Sweeps of many points: planning, status, per-point overhead, insertion and merge, measured.

Every measurement runs the real ``snakemake`` / ``sweeplab`` CLI in a fresh temporary directory.
``--baseline TREE`` also runs the planning measurement on another checkout (e.g. a
``git worktree`` of main before the points ledger, 61276c7) in the same run, so the two are
side by side on the same machine load.

Usage::

    .venv/bin/python bench/sweep_scale.py plan [--points 1000000] [--baseline TREE]
    .venv/bin/python bench/sweep_scale.py status [--points 1000000]
    .venv/bin/python bench/sweep_scale.py overhead [--points 6000]
    .venv/bin/python bench/sweep_scale.py insert
    .venv/bin/python bench/sweep_scale.py merge
    .venv/bin/python bench/sweep_scale.py paper

``plan``: ``snakemake -n`` over an escape grid of 10 depths x 2 widths x N/(20 x seeds) c x
seeds (wall time and peak RSS of the snakemake process, from ``wait4``). The baseline tree gets
the same grid in its own layout (``seeds_per_block: 4``) at ``--baseline-points`` points.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd, cwd, env=None, check=True):
    """Run ``cmd``; return (wall seconds, peak RSS in MB of the child, CompletedProcess)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read()
    err = proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if check and code != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({code}):\n{err[-3000:]}")
    done = subprocess.CompletedProcess(cmd, code, out, err)
    return wall, usage.ru_maxrss / 1024, done


def escape_grid(points: int, seeds: int = 100, old_layout: bool = False) -> dict:
    """An escape section of ``points`` points: 10 depths x 2 widths x n_c x seeds."""
    n_c = max(1, points // (20 * seeds))
    section = {
        "depth": list(range(2, 12)),
        "width": [1, 2],
        "c": [round(0.5 + 2.5 * i / n_c, 6) for i in range(n_c)],
        "radius": [1e-9],
        "seeds": seeds,
        "escape_radius": 1e-3,
        "max_steps": 200,
        "loss_tol": 1e-20,
        "track_sharpness": False,
    }
    if old_layout:
        section["seeds_per_block"] = 4
    return section


def config_for(section: dict, experiment: str = "escape") -> dict:
    base = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    base["experiments"] = [experiment]
    base[experiment] = section
    return base


def env_for(tree: Path) -> dict:
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(tree / "src")}


def plan_time(tree: Path, config: dict) -> tuple[float, float, int]:
    """``snakemake -n`` on ``config`` with the Snakefile of ``tree``: (s, MB, jobs)."""
    with tempfile.TemporaryDirectory(prefix="sweep-scale-") as tmp:
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(yaml.safe_dump(config))
        cmd = [str(BIN / "snakemake"), "-s", str(tree / "Snakefile"), "-d", tmp,
               "--configfile", str(cfg), "-n", "--cores", "2", "--quiet", "rules"]  # fmt: skip
        wall, rss, proc = run(cmd, tmp, env_for(tree))
        jobs = 0
        for line in (proc.stdout + proc.stderr).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
                jobs = int(parts[1])
    return wall, rss, jobs


def bench_plan(args) -> None:
    rows = []
    if args.baseline:
        cfg = config_for(escape_grid(args.baseline_points, seeds=40, old_layout=True))
        wall, rss, jobs = plan_time(Path(args.baseline).resolve(), cfg)
        rows.append(("baseline", args.baseline_points, wall, rss, jobs))
    cfg = config_for(escape_grid(args.points, seeds=100))
    wall, rss, jobs = plan_time(REPO, cfg)
    rows.append(("this tree", args.points, wall, rss, jobs))
    print(f"{'tree':<10} {'points':>9} {'plan s':>8} {'peak MB':>8} {'jobs':>7}")
    for name, n, wall, rss, jobs in rows:
        print(f"{name:<10} {n:>9} {wall:>8.1f} {rss:>8.0f} {jobs:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--baseline", help="checkout of the old layout (e.g. a worktree of 61276c7)")
    p.add_argument("--baseline-points", type=int, default=200_000)
    p.set_defaults(fn=bench_plan)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
