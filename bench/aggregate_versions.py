"""What keeping a reader's version costs an incremental aggregate, side by side in one run.

Since the W3 fix (``sweeplab.sweep.versions``) every new version of an aggregate writes its
chunks under another chunk key encoding and keeps the two versions before it as hard links,
so an update links every chunk file twice and rewrites every array's metadata. This script
measures that against a baseline checkout (``--base``: a directory holding ``src/sweeplab``
of another commit, e.g. a ``git worktree`` of the commit before the fix), alternating the two
in fresh subprocesses on copies of one store, and reports the medians and their ratio:

1. one block changed (an in-place update), and the grid extended by one block;
2. for the sharpness blocks of ``bench/aggregate_scale.py`` (N depths x 4 seeds: one cell),
   and for the same grid cut into many cells (``CELL_ELEMENTS`` lowered to ``--cell``
   values: about N x 4 / cell cells, a chunk file per variable each), where linking costs most;
3. the store's allocated size after three updates (the kept versions' chunks).

Usage: .venv/bin/python bench/aggregate_versions.py --base /work/wt-base [--blocks 2000]
[--cell 64] [--repeat 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from aggregate_scale import section, synthetic, write_changed, write_pair  # noqa: E402


def child(task: dict) -> dict:
    """One aggregate in this fresh process (sweeplab from PYTHONPATH); return its time."""
    import importlib

    from sweeplab.sweep.experiments import REGISTRY
    from sweeplab.sweep.identity import grid_points

    agg_mod = importlib.import_module("sweeplab.sweep.aggregate")  # the module, not the function
    if task["cell"]:
        agg_mod.CELL_ELEMENTS = task["cell"]
    root = Path(task["root"])
    sec = section(task["n"])
    grid_points(REGISTRY["sharpness"], sec, cache_dir=root / "new")  # the plan's enumeration
    times, modes = [], []
    for _ in range(task.get("times", 1)):
        t0 = time.perf_counter()
        report = agg_mod.aggregate("sharpness", sec, root / "new", task["out"],
                                   full=task.get("full", False))  # fmt: skip
        times.append(time.perf_counter() - t0)
        modes.append(report.mode)
        if task.get("touch"):  # make the changed block dirty again for the next run
            path = root / "new" / task["touch"]
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    return {"times": times, "modes": modes}


def run(src: Path, task: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(task)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(src)},
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def allocated(path: Path) -> tuple[int, int, int]:
    """Paths of files, distinct files (hard links counted once), and allocated bytes."""
    items = list(path.rglob("*"))
    inodes = {(st.st_dev, st.st_ino): st for st in (p.stat() for p in items)}
    files = sum(p.is_file() for p in items)
    return files, len(inodes), sum(st.st_blocks * 512 for st in inodes.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=Path, help="checkout of the baseline commit (required)")
    ap.add_argument("--blocks", type=int, default=2000)
    ap.add_argument("--cell", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sweeplab-ver")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.base is None:
        ap.error("--base DIR is required (a checkout of the baseline commit)")
    root, n = args.workdir, args.blocks
    (root / "old").mkdir(parents=True, exist_ok=True)
    (root / "new").mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(write_pair, [(d, str(root)) for d in range(2, n + 3)], chunksize=50))
    srcs = {"base": args.base / "src", "new": REPO / "src"}
    print(f"{n} synthetic sharpness blocks in {root}; base = {args.base}")
    for cell in (0, args.cell):
        label = "one cell" if not cell else f"CELL_ELEMENTS = {cell}"
        base_store = root / f"start-{cell}.zarr"
        shutil.rmtree(base_store, ignore_errors=True)
        # the starting store, by the baseline (version-0 keys, which both read)
        run(srcs["base"], {"root": str(root), "n": n, "out": str(base_store), "full": True,
                           "cell": cell})  # fmt: skip
        write_changed(root, depth=n // 2)
        changed = f"{synthetic(n // 2)[0]}.zarr.zip"
        results: dict[str, dict[str, list[float]]] = {k: {"update": [], "extend": []}
                                                      for k in srcs}  # fmt: skip
        sizes = {}
        for r in range(args.repeat):
            for name, src in list(srcs.items()) if r % 2 == 0 else list(srcs.items())[::-1]:
                out = root / f"{name}-{cell}.zarr"
                shutil.rmtree(out, ignore_errors=True)
                shutil.copytree(base_store, out)  # copy2: the mtimes the file table records
                got = run(src, {"root": str(root), "n": n, "out": str(out), "cell": cell,
                                "times": 3, "touch": changed})  # fmt: skip
                assert set(got["modes"]) == {"update"}, got
                results[name]["update"].extend(got["times"])
                sizes[name] = allocated(out)
                shutil.rmtree(out)
                shutil.copytree(base_store, out)
                got = run(src, {"root": str(root), "n": n + 1, "out": str(out), "cell": cell})
                assert got["modes"] == ["extend"], got
                results[name]["extend"].extend(got["times"])
        print(f"\n{label} (store of {allocated(base_store)[0]} files):")
        for what in ("update", "extend"):
            b = statistics.median(results["base"][what])
            v = statistics.median(results["new"][what])
            print(
                f"  {what:<7} base {b * 1e3:7.1f} ms   versions {v * 1e3:7.1f} ms   "
                f"ratio {v / b:5.2f}  ({len(results['new'][what])} runs each, medians)"
            )
        for name in srcs:
            files, distinct, size = sizes[name]
            print(
                f"  after 3 updates, {name:<4}: {files} file paths, {distinct} inodes (with "
                f"directories), {size / 1e3:.0f} kB allocated (hard links counted once)"
            )


if __name__ == "__main__":
    main()
