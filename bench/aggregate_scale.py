"""Aggregation at scale, measured side by side in one run (see README "Performance").

Synthetic sharpness blocks (4 points -- seeds 0-3 of one depth -- x 14 variables, random
values; the grid is ``depth`` with N values, everything else one value) are written once in both
formats:

- **old**: one zarr v3 *directory* store per block, on the grid's dimensions (``depth~D.zarr``),
  aggregated by the reference path of commit 3c9a694 (open every block with xarray,
  ``combine_by_coords``, write a new store), kept here;
- **new**: one ``*.zarr.zip`` block file (format 2: dimension ``point``, named by its points'
  keys), aggregated by key by ``sweeplab.sweep.aggregate``.

Every measurement runs in a fresh subprocess (peak RSS is that process's own ``ru_maxrss``;
times exclude interpreter start-up and imports). A new-format aggregate runs as the workflow's
aggregate job does: after the plan of the same grid (``snakemake`` enumerates the grid's keys
before it starts any job and leaves them in ``<blocks>/.grid.npz``, which the aggregate reads);
that enumeration is done before the clock starts, for the rebuilds as for the updates. Reported:

1. full aggregate of N blocks, old vs new (ratio);
2. one block changed in an aggregated N-block sweep (in-place update) vs a new full rebuild;
3. the grid extended by one block (a new depth value) vs a new full rebuild;
4. peak RSS of the new full aggregate at 500 and at N blocks (and of the old one at N);
5. files and bytes per block, old vs new;
6. Slurm jobs the paper config submits through profiles/slurm (dry run), vs its block count.

Usage: .venv/bin/python bench/aggregate_scale.py [--blocks 2000] [--small 500] [--workdir DIR]
[--skip-old]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SETTINGS = {"gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 0}


def section(n_blocks: int, first_depth: int = 2) -> dict:
    return {
        "depth": list(range(first_depth, first_depth + n_blocks)), "width": [8], "d_io": [1],
        "family": ["gaussian"], "seeds": 4, **SETTINGS,
    }  # fmt: skip


def synthetic(depth: int):
    """Name and labelled dataset of the block of ``depth`` (values random, seeded by depth)."""
    import json

    import numpy as np

    from sweeplab.sweep.datasets import label
    from sweeplab.sweep.experiments import REGISTRY
    from sweeplab.sweep.experiments.base import canonical_json
    from sweeplab.sweep.identity import block_name, grid_points, raw_keys

    exp = REGISTRY["sharpness"]
    sec = section(1, depth)
    points = grid_points(exp, sec).points(np.arange(4))
    name = block_name(raw_keys(points.keys))
    rng = np.random.default_rng(depth)
    data = exp.empty_points(4, SETTINGS)
    for var_name, var in exp.variables.items():
        if var.dtype == "float64":
            data[var_name][:] = rng.random(4)
    data["status"][:] = 0
    cost = exp.point_cost(points.columns, SETTINGS)
    ds = label(exp, points, data, SETTINGS, wall=cost, cost=cost)
    ds.attrs = {"experiment": "sharpness", "block": name, "version": exp.version,
                "settings": canonical_json(SETTINGS), "entries": "{}",
                "salt": json.dumps([])}  # fmt: skip
    return name, ds


def on_grid(ds):
    """The old block layout: the point dimension unstacked into the grid's dimensions."""
    dims = ["depth", "width", "dio", "family", "seed"]
    grid = ds.drop_vars(["key", "point_wall_time", "point_cost"]).set_index(point=dims)
    return grid.unstack("point")


def write_pair(args: tuple[int, str]) -> None:
    """Write block ``depth`` in the old (directory) and the new (zip) format."""
    import warnings

    from sweeplab.sweep.blockstore import write_block

    depth, root = args
    name, ds = synthetic(depth)
    old = Path(root) / "old" / f"depth~{depth}.zarr"
    new = Path(root) / "new" / f"{name}.zarr.zip"
    if not old.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            on_grid(ds).to_zarr(old, mode="w", zarr_format=3, consolidated=True)
    if not new.exists():
        write_block(ds, new)


def old_aggregate(block_paths: list[Path], out: Path) -> None:
    """The aggregation path of commit 3c9a694 (sweeplab.sweep.store.aggregate), verbatim logic."""
    import xarray as xr

    from sweeplab.sweep.store import open_dataset, provenance, write_atomic

    parts = [open_dataset(p).load() for p in block_paths]
    ds = xr.combine_by_coords(
        parts, compat="no_conflicts", data_vars="all", coords="different", join="outer",
        combine_attrs="drop_conflicts",
    )  # fmt: skip
    ds.attrs = {"experiment": "sharpness", **provenance({"sharpness": None}),
                "n_blocks": len(block_paths)}  # fmt: skip
    write_atomic(ds, out)


def child(task: dict) -> dict:
    """Run one measurement in this (fresh) process; print time and peak RSS."""
    import resource

    from sweeplab.sweep import aggregate

    root = Path(task["root"])
    if task["kind"] != "old":  # the plan's enumeration, as in the workflow (see the docstring)
        from sweeplab.sweep.experiments import REGISTRY
        from sweeplab.sweep.identity import grid_points

        grid_points(REGISTRY["sharpness"], section(task["n"]), cache_dir=root / "new")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if task["kind"] == "old":
        sec = section(task["n"])
        paths = [root / "old" / f"depth~{d}.zarr" for d in sec["depth"]]
        old_aggregate(paths, Path(task["out"]))
        report = None
    else:
        sec = section(task["n"])
        report = aggregate("sharpness", sec, root / "new", task["out"], full=task["full"])
    elapsed = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"time": elapsed, "rss_mb": rss / 1024, "rss_after_imports_mb": base_rss / 1024,
            "mode": report.mode if report else "old", "read": report.blocks_read if report else
            task["n"]}  # fmt: skip


def measure(task: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(task)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def files_and_bytes(path: Path) -> tuple[int, int, int]:
    """Files, apparent bytes and allocated bytes (st_blocks) of a file or a directory tree."""
    items = [path] if path.is_file() else [p for p in path.rglob("*")]
    files = [p for p in items if p.is_file()]
    apparent = sum(p.stat().st_size for p in files)
    allocated = sum(p.stat().st_blocks * 512 for p in items)
    return len(files), apparent, allocated


def slurm_jobs() -> tuple[int, int]:
    """(Slurm jobs, block jobs) of config/paper.yaml through profiles/slurm, by a dry run."""
    with tempfile.TemporaryDirectory() as wd:
        proc = subprocess.run(
            [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", wd, "--configfile",
             str(REPO / "config" / "paper.yaml"), "--workflow-profile",
             str(REPO / "profiles" / "slurm"), "-n"],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        )  # fmt: skip
    out = proc.stdout + proc.stderr
    groups = len(re.findall(r"Group job \S+", out))
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    blocks = sum(int(v) for k, v in stats.items() if k.endswith("_block"))
    # block jobs outside a group would be submitted alone; every other rule is a localrule
    return groups, blocks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=2000)
    ap.add_argument("--small", type=int, default=500)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sweeplab-agg")
    ap.add_argument(
        "--skip-old",
        action="store_true",
        help="skip the old combine_by_coords path (about 5 minutes at 2000 blocks)",
    )
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    root = args.workdir
    (root / "old").mkdir(parents=True, exist_ok=True)
    (root / "new").mkdir(parents=True, exist_ok=True)
    n = args.blocks
    t0 = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(write_pair, [(d, str(root)) for d in range(2, n + 3)], chunksize=50))
    print(f"blocks ready in {root} ({time.perf_counter() - t0:.0f} s)")

    out = root / "agg"
    old = None
    if not args.skip_old:
        old = measure({"kind": "old", "n": n, "root": str(root), "out": str(root / "old.zarr")})
    small = measure({"kind": "new", "n": args.small, "root": str(root), "full": True,
                     "out": str(root / "small.zarr")})  # fmt: skip
    full = measure({"kind": "new", "n": n, "root": str(root), "full": True, "out": str(out)})
    # one block changed: rewrite it (new mtime) and bring the aggregate up to date in place
    write_changed(root, depth=n // 2)
    update = measure({"kind": "new", "n": n, "root": str(root), "full": False, "out": str(out)})
    # the grid extended by one block: depth n + 2 is new
    extend = measure({"kind": "new", "n": n + 1, "root": str(root), "full": False,
                      "out": str(out)})  # fmt: skip
    full2 = measure({"kind": "new", "n": n, "root": str(root), "full": True,
                     "out": str(root / "agg2.zarr")})  # fmt: skip

    def line(label: str, r: dict) -> str:
        return (f"  {label:<44} {r['time']:8.3f} s  peak RSS {r['rss_mb']:6.0f} MB "
                f"(after imports {r['rss_after_imports_mb']:.0f})  [{r['mode']}, "
                f"{r['read']} read]")  # fmt: skip

    print(f"\naggregate of {n} synthetic sharpness blocks (4 points x 14 variables each)")
    if old:
        print(line(f"old: combine_by_coords, {n} blocks", old))
    print(line(f"new: full rebuild, {n} blocks", full))
    print(line(f"new: full rebuild, {n} blocks (again)", full2))
    print(line(f"new: full rebuild, {args.small} blocks", small))
    print(line("new: 1 changed block, in place", update))
    print(line("new: grid extended by 1 block", extend))
    best_full = min(full["time"], full2["time"])
    if old:
        print(f"  full, new vs old: {old['time'] / best_full:.1f}x faster")
    print(f"  1 changed block vs new full rebuild: {best_full / update['time']:.0f}x faster")
    print(f"  grid + 1 block vs new full rebuild: {best_full / extend['time']:.0f}x faster")
    print(
        f"  peak RSS new full: {small['rss_mb']:.0f} MB at {args.small} blocks, "
        f"{full['rss_mb']:.0f} MB at {n} ({full['rss_mb'] / small['rss_mb'] - 1:+.1%})"
    )

    name, _ = synthetic(2)
    of, ob, oa = files_and_bytes(root / "old" / "depth~2.zarr")
    nf, nb, na = files_and_bytes(root / "new" / f"{name}.zarr.zip")
    print(f"\nper block: old {of} files, {ob / 1e3:.1f} kB ({oa / 1e3:.0f} kB allocated); "
          f"new {nf} file, {nb / 1e3:.1f} kB ({na / 1e3:.0f} kB allocated)")  # fmt: skip
    groups, blocks = slurm_jobs()
    print(
        f"\nconfig/paper.yaml through profiles/slurm: {blocks} block jobs in {groups} Slurm "
        f"jobs ({blocks / groups:.1f}x fewer; aggregate and figures run locally)"
    )


def write_changed(root: Path, depth: int) -> None:
    """Rewrite one new-format block with other values (a recomputed block)."""
    from sweeplab.sweep.blockstore import write_block

    name, ds = synthetic(depth)
    ds["exact"] = ds["exact"] + 1.0
    write_block(ds, root / "new" / f"{name}.zarr.zip")


if __name__ == "__main__":
    main()
