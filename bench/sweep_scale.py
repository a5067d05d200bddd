"""Sweeps of many points: planning, status, per-point overhead, insertion and merge, measured.

Every measurement runs the real ``snakemake`` / ``sweeplab`` CLI in a fresh temporary directory.
``--baseline TREE`` also runs the planning measurement on another checkout (e.g. a
``git worktree`` of main before the points ledger, 61276c7) in the same run, so the two are
side by side on the same machine load.

Usage::

    .venv/bin/python bench/sweep_scale.py plan [--points 1000000] [--baseline TREE]
    .venv/bin/python bench/sweep_scale.py status [--points 1000000]
    .venv/bin/python bench/sweep_scale.py overhead [--points 3000] [--points2 12000] \
        [--baseline TREE]
    .venv/bin/python bench/sweep_scale.py insert
    .venv/bin/python bench/sweep_scale.py merge
    .venv/bin/python bench/sweep_scale.py paper

``plan``: ``snakemake -n`` over an escape grid of 10 depths x 2 widths x N/(20 x seeds) c x
seeds (wall time and peak RSS of the snakemake process, from ``wait4``). The baseline tree gets
the same grid in its own layout (``seeds_per_block: 4``) at ``--baseline-points`` points.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd, cwd, env=None, check=True):
    """Run ``cmd``; return (wall seconds, peak RSS in MB of the child, CompletedProcess)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fo, stderr=fe, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # files, not pipes: no full-pipe deadlock
        wall = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
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
    base = {"experiments": [experiment], "dask": base["dask"], experiment: section}
    return base  # only the selected section: unselected ones are still validated


def env_for(tree: Path) -> dict:
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(tree / "src")}


def job_stats(text: str) -> dict[str, int]:
    """The first 'Job stats' table of a dry run (it is printed twice) as {rule: count}."""
    jobs: dict[str, int] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("Job stats:"):
            break
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            if parts[0] == "total":
                break
            jobs[parts[0]] = int(parts[1])
    return jobs


def plan_time(tree: Path, config: dict) -> tuple[float, float, int]:
    """``snakemake -n`` on ``config`` with the Snakefile of ``tree``: (s, MB, jobs)."""
    with tempfile.TemporaryDirectory(prefix="sweep-scale-") as tmp:
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(yaml.safe_dump(config))
        cmd = [str(BIN / "snakemake"), "-s", str(tree / "Snakefile"), "-d", tmp,
               "--configfile", str(cfg), "-n", "--cores", "2", "--quiet", "rules"]  # fmt: skip
        wall, rss, proc = run(cmd, tmp, env_for(tree))
        jobs = sum(job_stats(proc.stdout + proc.stderr).values())
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


def snakemake_run(tmp: Path, config: dict, *args: str, check: bool = True, tree: Path = REPO):
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [str(BIN / "snakemake"), "-s", str(tree / "Snakefile"), "-d", str(tmp),
           "--configfile", str(cfg), *args]  # fmt: skip
    return run(cmd, tmp, env_for(tree), check=check)


SHARP = {"gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 0}


def sharp_section(seeds: int) -> dict:
    return {"depth": [3], "width": [4], "d_io": [2], "family": ["gaussian"], "seeds": seeds,
            **SHARP}  # fmt: skip


def _loop(points: int) -> float:
    """Wall time of a plain loop over the sharpness points of seeds ``0..points-1``."""
    from sweeplab.sweep.experiments.sharpness import sharpness_point

    t0 = time.perf_counter()
    for seed in range(points):
        sharpness_point(3, 4, 2, "gaussian", seed, SHARP)
    return time.perf_counter() - t0


def _point_seconds(blocks: Path) -> float:
    """Sum of the per-point wall times the blocks recorded (the run's own compute time)."""
    from sweeplab.sweep.blockstore import read_point_table

    return sum(float(read_point_table(f, "sharpness").arrays["point_wall_time"].sum())
               for f in blocks.glob("*.zarr.zip"))  # fmt: skip


def _overhead_run(points: int, block_seconds: float, tree: Path) -> tuple[float, float, int]:
    """A whole Snakemake run (1 core) over ``points`` sharpness points with the tree ``tree``.

    Returns its wall time, the sum of its points' recorded wall times, and its blocks.
    """
    cfg = config_for(sharp_section(points), "sharpness")
    cfg["block_seconds"] = block_seconds
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as tmp:
        # blocks and aggregate only (no figures); the target after --cores: --configfile and
        # --set-threads take every following word
        target = "results/.aggregated/sharpness"
        wall, _, _ = snakemake_run(Path(tmp), cfg, "--cores", "1", target, "--set-threads",
                                   "sharpness_block=1", "--quiet", tree=tree)  # fmt: skip
        blocks = Path(tmp) / "results/blocks/sharpness"
        n_blocks = len(list(blocks.glob("*.zarr.zip")))
        inside = _point_seconds(blocks)
    return wall, inside, n_blocks


def bench_overhead(args) -> None:
    """A whole Snakemake run (1 core, blocks of 1 thread) vs a plain loop over the same points.

    Two measures of the overhead: against the plain loop (``run / loop - 1``; the loop runs
    just before each run, but the machine's speed can drift between them), and against the
    run's own compute (``run / sum of the points' recorded wall times - 1``, immune to drift).
    With ``--points2``, a second, larger run gives the overhead *per point*: the difference of
    the two runs over the difference of their compute. ``--baseline TREE`` runs every size
    with that checkout's Snakefile and sources too, interleaved, for before and after.
    """
    trees = [("this tree", REPO)]
    if args.baseline:
        trees.insert(0, ("baseline", Path(args.baseline).resolve()))
    sizes = [args.points] + ([args.points2] if args.points2 else [])
    rows = []
    for n in sizes:
        for name, tree in trees:
            loop = _loop(n)
            wall, inside, n_blocks = _overhead_run(n, args.block_seconds, tree)
            rows.append((name, n, loop, wall, inside, n_blocks))
    print(f"sharpness points of ~{1e3 * rows[0][2] / rows[0][1]:.1f} ms, block_seconds "
          f"{args.block_seconds:g}, 1 core")  # fmt: skip
    print(f"{'tree':<10} {'points':>7} {'blocks':>6} {'loop s':>8} {'run s':>8} "
          f"{'points s':>9} {'vs loop':>8} {'vs points':>9}")  # fmt: skip
    for name, n, loop, wall, inside, n_blocks in rows:
        print(f"{name:<10} {n:>7} {n_blocks:>6} {loop:>8.2f} {wall:>8.2f} {inside:>9.2f} "
              f"{100 * (wall / loop - 1):>7.1f}% {100 * (wall / inside - 1):>8.1f}%")  # fmt: skip
    if len(sizes) == 2:
        for name, _ in trees:
            (_, _, _, w1, i1, _), (_, _, _, w2, i2, _) = [r for r in rows if r[0] == name]
            per_point = (w2 - w1) / (i2 - i1) - 1
            print(f"{name}: per-point overhead {100 * per_point:5.1f} % "
                  f"(fixed {w1 - i1 * (1 + per_point):5.1f} s a run)")  # fmt: skip


def _results_points(res: Path, experiment: str) -> int:
    from sweeplab.sweep.ledger import Ledger

    return len(Ledger.load(res / "blocks" / experiment, experiment, save=False).keys)


def bench_insert(args) -> None:
    """Insert a c value in the middle of the list: points computed and wall time."""
    sec = escape_grid(2000, seeds=10)
    sec["depth"], sec["width"] = [4, 6], [1, 2]
    sec["c"] = [0.5, 0.9, 1.5, 2.0, 3.0]
    with tempfile.TemporaryDirectory(prefix="sweep-insert-") as tmp:
        t = Path(tmp)
        full, _, _ = snakemake_run(t, config_for(sec), "--cores", "2",
                                   "results/.aggregated/escape", "--quiet")  # fmt: skip
        before = _results_points(t / "results", "escape")
        sec["c"] = [0.5, 0.9, 1.2, 1.5, 2.0, 3.0]
        wall, _, _ = snakemake_run(t, config_for(sec), "--cores", "2",
                                   "results/.aggregated/escape", "--quiet")  # fmt: skip
        after = _results_points(t / "results", "escape")
    new = 4 * 10
    print(f"first run: {before} points in {full:.1f} s; insert c = 1.2 in the middle: "
          f"{after - before} points computed (new points: {new}) in {wall:.1f} s")  # fmt: skip


def bench_merge(args) -> None:
    """Two halves computed apart and merged vs one full run: aggregates equal, recomputed 0."""
    import numpy as np

    from sweeplab.sweep import open_dataset

    sec = escape_grid(2000, seeds=10)
    sec["depth"], sec["width"], sec["c"] = [4, 6], [1, 2], [0.5, 0.9, 1.2, 1.5]
    halves = [dict(sec, c=[0.5, 0.9]), dict(sec, c=[1.2, 1.5])]
    target = ["results/.aggregated/escape", "--quiet"]
    with tempfile.TemporaryDirectory(prefix="sweep-merge-") as tmp:
        t = Path(tmp)
        for i, half in enumerate(halves):
            (t / f"h{i}").mkdir()
            snakemake_run(t / f"h{i}", config_for(half), "--cores", "2", *target)
        (t / "full").mkdir()
        full_wall, _, _ = snakemake_run(t / "full", config_for(sec), "--cores", "2", *target)
        (t / "merged").mkdir()
        sweeplab = str(BIN / "sweeplab")
        t0 = time.perf_counter()
        for i in range(2):
            run([sweeplab, "merge", str(t / f"h{i}" / "results"), "--results",
                 str(t / "merged" / "results")], t, env_for(REPO))  # fmt: skip
        merge_wall = time.perf_counter() - t0
        n0 = _results_points(t / "merged" / "results", "escape")
        wall, _, _ = snakemake_run(t / "merged", config_for(sec), "--cores", "2", *target)
        recomputed = _results_points(t / "merged" / "results", "escape") - n0
        a = open_dataset(t / "full" / "results" / "escape.zarr").load()
        b = open_dataset(t / "merged" / "results" / "escape.zarr").load()
        same = all(
            np.array_equal(a[v].values, b[v].values, equal_nan=a[v].dtype.kind == "f")
            for v in a.data_vars
        )
    print(
        f"full run {full_wall:.1f} s; merging two halves {merge_wall:.1f} s, then snakemake "
        f"{wall:.1f} s: points recomputed {recomputed}, aggregates identical: {same}"
    )


def bench_paper(args) -> None:
    """config/paper.yaml: block jobs and Slurm jobs planned, before (baseline tree) and now."""
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    rows = []
    trees = [("this tree", REPO, cfg)]
    if args.baseline:
        old = yaml.safe_load((Path(args.baseline) / "config" / "paper.yaml").read_text())
        trees.insert(0, ("baseline", Path(args.baseline).resolve(), old))
    for name, tree, config in trees:
        with tempfile.TemporaryDirectory(prefix="sweep-paper-") as tmp:
            c = Path(tmp) / "config.yaml"
            c.write_text(yaml.safe_dump(config))
            # a dry run with the local executor (the Slurm plugin needs a Slurm controller),
            # and the profile's block_seconds where it sets one
            profile = yaml.safe_load((tree / "profiles/slurm/config.yaml").read_text())
            extra = ["--config", *profile["config"]] if "config" in profile else []
            cmd = [str(BIN / "snakemake"), "-s", str(tree / "Snakefile"), "-d", tmp,
                   "--configfile", str(c), "-n", "--cores", "2", *extra]  # fmt: skip
            _, _, proc = run(cmd, tmp, env_for(tree))
            table = job_stats(proc.stdout + proc.stderr)
            blocks = {e: table.get(f"{e}_block", 0) for e in ("sharpness", "escape", "channel")}
            per = {g.split("=")[0]: int(g.split("=")[1]) for g in profile["group-components"]}
            slurm = {e: -(-n // per[f"{e}_blocks"]) for e, n in blocks.items()}
            rows.append((name, blocks, slurm))
    for name, blocks, slurm in rows:
        print(
            f"{name:<10} block jobs {blocks} (total {sum(blocks.values())}); Slurm jobs "
            f"{slurm} (total {sum(slurm.values())})"
        )


def synthetic_blocks(results: Path, section: dict, per_block: int = 50_000) -> int:
    """Write the whole grid of an escape section as blocks of fill values (real format, keys)."""
    import json as _json

    import numpy as np

    from sweeplab.sweep.blockstore import write_block
    from sweeplab.sweep.datasets import label
    from sweeplab.sweep.experiments import get
    from sweeplab.sweep.experiments.base import canonical_json
    from sweeplab.sweep.identity import block_name, grid_points

    exp = get("escape")
    grid = grid_points(exp, section)
    settings = exp.settings(section)
    d = results / "blocks" / "escape"
    d.mkdir(parents=True, exist_ok=True)
    n = len(grid.keys)
    for lo in range(0, n, per_block):
        rows = np.arange(lo, min(lo + per_block, n))
        points = grid.points(rows)
        data = exp.empty_points(len(rows), section, points)
        ds = label(exp, points, data, section, wall=np.full(len(rows), 0.01),
                   cost=exp.point_cost(points.columns, settings))  # fmt: skip
        name = block_name(grid.keys[rows])
        ds.attrs = {"experiment": "escape", "block": name, "version": exp.version,
                    "settings": canonical_json(settings), "entries": "{}",
                    "salt": _json.dumps([])}  # fmt: skip
        write_block(ds, d / f"{name}.zarr.zip")
    return n


def bench_status(args) -> None:
    """``sweeplab status`` with N points and their blocks on disk: cold (no ledger cache), warm."""
    sec = escape_grid(args.points, seeds=100)
    with tempfile.TemporaryDirectory(prefix="sweep-status-") as tmp:
        t = Path(tmp)
        t0 = time.perf_counter()
        # in a child process: a child forked from a large parent reports the parent's pages in
        # its peak RSS (ru_maxrss), which would inflate the figures of the status runs
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            n = pool.submit(synthetic_blocks, t / "results", sec).result()
        made = time.perf_counter() - t0
        cfg = t / "config.yaml"
        cfg.write_text(yaml.safe_dump(config_for(sec)))
        cmd = [str(BIN / "sweeplab"), "status", "--configfile", str(cfg), "--results",
               str(t / "results")]  # fmt: skip
        (t / "results" / "blocks" / "escape" / ".ledger.npz").unlink(missing_ok=True)
        cold, rss_cold, proc = run(cmd, t, env_for(REPO))
        warm, rss_warm, _ = run(cmd, t, env_for(REPO))
    print(f"{n} points in {n // 50_000 + (n % 50_000 > 0)} blocks (written in {made:.0f} s)")
    print(f"status cold {cold:6.2f} s ({rss_cold:.0f} MB), warm {warm:6.2f} s ({rss_warm:.0f} MB)")
    print(proc.stdout.strip()[-600:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--baseline", help="checkout of the old layout (e.g. a worktree of 61276c7)")
    p.add_argument("--baseline-points", type=int, default=200_000)
    p.set_defaults(fn=bench_plan)
    p = sub.add_parser("overhead")
    p.add_argument("--points", type=int, default=3000)
    p.add_argument("--block-seconds", type=float, default=60.0)
    p.add_argument("--points2", type=int, default=None, help="a second, larger run")
    p.add_argument("--baseline", help="another checkout, run interleaved (before and after)")
    p.set_defaults(fn=bench_overhead)
    sub.add_parser("insert").set_defaults(fn=bench_insert)
    p = sub.add_parser("status")
    p.add_argument("--points", type=int, default=1_000_000)
    p.set_defaults(fn=bench_status)
    sub.add_parser("merge").set_defaults(fn=bench_merge)
    p = sub.add_parser("paper")
    p.add_argument("--baseline", help="checkout of the old layout (e.g. a worktree of 61276c7)")
    p.set_defaults(fn=bench_paper)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
