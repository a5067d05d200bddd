"""Escape runs: batching (issue 2) and the compiled GD kernels (issue 19).

Run: .venv/bin/python bench/dmf_escape.py [--default-grid] [--paper] [--processes 2]

Batching section (issue 2; --skip-batching to skip). For each case (scalar L = 15; matrix
L = 4 with d_i = 4) and 32 step sizes eta = c * 2 / lambda*, c in linspace(0.5, 3, 32), it times
  * loop_escape: 32 calls of `dmf.escape` (the per-run reference loop),
  * loop_batch1: 32 calls of `dmf.escape_batch` with one step size each,
  * batched:     one call of `dmf.escape_batch` with all 32 step sizes,
checks that all three give the same outcomes and escape steps, and prints the ratios, then the
cost of the diagnostics (monitor replay and final Lanczos) as a fraction of the batched time.

Engine section (issue 19; --skip-kernel to skip). Same 32 step sizes, r = 1e-9,
loss_tol = 1e-20, max_steps 20,000 (2,000 for widths 16 and 24), best of 2, side by side:
  * numpy:  `escape_batch(engine="numpy")`, the stacked numpy path (today's escape_batch);
  * kernel: `escape_batch(engine="kernel")`, the compiled kernel with its monitors;
  * plain loop: a compiled GD loop with no monitor at all (the limit): prefix/suffix products
    for the scalar chain, the library's fused d x d gradient for matrix chains;
M GD steps/s of the engine alone, and (in brackets) of the whole escape_batch call, which adds
the classification and the final sharpness; kernel/numpy and plain/kernel ratios per GD step;
monitors = 1 - (plain time per step) / (kernel time per step). Widths 4, 8, 16 and 24 locate
the crossover of `KERNEL_MAX_WIDTH`.

Grid sections (--default-grid, --paper). Every run of the default (16 minimizers x 6 c,
20,000 steps) or paper (192 minimizers x 10 c, 100,000 steps) escape grid, seeded as the sweep
does, through both engines, batched per minimizer over its c values, on --processes worker
processes: wall time of each engine, the final-Lanczos share of the block time per width, the
outcome tables, and every run whose outcome, escape step, steps_run or period differ, or whose
final sharpness differs by more than 1e-6 relative (--json writes all rows).
"""

import argparse
import importlib
import json
import multiprocessing
import time

import numba
import numpy as np

from sweeplab import dmf
from sweeplab.dmf import kernels
from sweeplab.sweep.canonical import point_seed

esc = importlib.import_module("sweeplab.dmf.escape")  # the module (dmf.escape is the function)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def diagnostics_cost(ws, target, batch, max_steps):
    """Return (monitor seconds, Lanczos seconds) of the diagnostics of one batched call."""
    n = len(batch)
    p = np.stack([dmf.flatten(r.final_weights) for r in batch])
    p = np.where(np.isfinite(p), p, 1.0)
    v1 = dmf.flatten(dmf.top_eigenvector(ws))[None, :]
    p_star = dmf.flatten(ws)[None, :]
    loss = np.array([r.final_loss for r in batch])
    loss = np.where(np.isfinite(loss) & (loss > 0), loss, 1.0)
    rows = np.arange(n)
    t0 = time.perf_counter()
    tail = esc._Tail(n, max_steps)
    for t in range(tail.t_start, max_steps + 1):
        proj = None
        if tail.wants_projection(t):
            proj = np.einsum("ni,ni->n", p - p_star, v1)
        tail.update(t, rows, loss, proj)
    for j in range(n):
        tail.classify(j, float(loss[j]), 1e-20, True)
    t1 = time.perf_counter()
    for r in batch:
        if r.final_sharpness_method == "lanczos":
            esc._lanczos_sharpness(list(r.final_weights), target)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def batching_section():
    n_eta = 32
    max_steps = 5000
    cases = {
        "scalar L=15": dmf.scalar_minimizer(15, np.random.default_rng(1)),
        "matrix L=4, d=4": dmf.gaussian_minimizer((4, 4, 4, 4, 4), np.random.default_rng(1)),
    }
    print(f"{n_eta} step sizes, max_steps = {max_steps}; wall seconds")
    print(
        f"{'case':<16} {'loop_escape':>11} {'loop_batch1':>11} {'batched':>8} "
        f"{'ratio_vs_escape':>15} {'ratio_vs_batch1':>15}"
    )
    rows = []
    for name, (ws, target) in cases.items():
        lam = dmf.sharpness(ws)
        etas = np.linspace(0.5, 3.0, n_eta) * 2 / lam
        kw = {"max_steps": max_steps, "loss_tol": 1e-20}
        t_loop, singles = timed(
            lambda ws=ws, etas=etas, kw=kw: [dmf.escape(ws, e, **kw) for e in etas]
        )
        t_loop1, singles1 = timed(
            lambda ws=ws, etas=etas, kw=kw: [dmf.escape_batch(ws, [e], **kw)[0] for e in etas]
        )
        dmf.escape_batch(ws, etas[:1], max_steps=10)  # compile the kernel outside the timing
        t_batch, batch = timed(lambda ws=ws, etas=etas, kw=kw: dmf.escape_batch(ws, etas, **kw))
        for a, b, c in zip(singles, singles1, batch, strict=True):
            assert (a.outcome, a.escape_step) == (b.outcome, b.escape_step)
            assert (a.outcome, a.escape_step) == (c.outcome, c.escape_step)
        # rounding differs between the paths; on sensitive (chaotic) orbits the trajectories
        # drift apart over thousands of steps, and so may the detected period
        same_period = sum(a.period == c.period for a, c in zip(singles, batch, strict=True))
        outcomes = {o: sum(r.outcome == o for r in batch) for o in dmf.OUTCOMES}
        print(
            f"{name:<16} {t_loop:>11.3f} {t_loop1:>11.3f} {t_batch:>8.3f} "
            f"{t_loop / t_batch:>15.1f} {t_loop1 / t_batch:>15.1f}   {outcomes}, "
            f"same period {same_period}/{n_eta}"
        )
        rows.append((name, t_batch, *diagnostics_cost(ws, target, batch, max_steps)))
    print("\ndiagnostics inside the batched call (seconds; fraction of the batched wall time)")
    print(f"{'case':<16} {'batched':>8} {'monitor':>8} {'lanczos':>8} {'fraction':>9}")
    for name, t_batch, t_mon, t_lz in rows:
        print(
            f"{name:<16} {t_batch:>8.3f} {t_mon:>8.4f} {t_lz:>8.4f} "
            f"{(t_mon + t_lz) / t_batch:>8.1%}"
        )


# ---------------------------------------------------------------------------------------------
# compiled kernels (issue 19): kernel vs the stacked numpy path vs a plain compiled loop


@numba.njit(cache=True)
def plain_scalar_gd(p0, m, eta, loss_tol, max_steps):
    """Plain GD on a scalar chain, no monitors: prefix/suffix products, one update per step.

    Stops when the loss is <= loss_tol or at max_steps (the escape rule without any monitor);
    returns the number of GD updates made.
    """
    depth = p0.shape[0]
    p = p0.copy()
    left = np.empty(depth)
    right = np.empty(depth)
    for t in range(max_steps + 1):
        left[0] = 1.0
        for i in range(1, depth):
            left[i] = left[i - 1] * p[i - 1]
        right[depth - 1] = 1.0
        for i in range(depth - 2, -1, -1):
            right[i] = right[i + 1] * p[i + 1]
        r = left[depth - 1] * p[depth - 1] - m
        if r * r <= loss_tol or t == max_steps:
            return t
        for i in range(depth):
            p[i] -= eta * ((left[i] * right[i]) * (2.0 * r))
    return max_steps


@numba.njit(cache=True)
def plain_square_gd(p0, m, square, n_layers, eta, loss_tol, max_steps):
    """Plain GD on a chain of d x d layers (the library's fused gradient), no monitors."""
    p = p0.copy()
    dd = len(square) * len(square)
    fwd = np.empty(n_layers * dd)
    cbuf = np.empty((2, dd))
    grad = np.empty(p.shape[0])
    for t in range(max_steps + 1):
        loss = kernels._square_loss_grad(p, m, square, n_layers, fwd, cbuf, grad)
        if loss <= loss_tol or t == max_steps:
            return t
        for i in range(p.shape[0]):
            p[i] -= eta * grad[i]
    return max_steps


def engine_times(ws, etas, max_steps, engine, repeat=2):
    """Best-of-``repeat`` seconds of the GD engine alone and of the whole escape_batch call."""
    spent = {}
    orig = {"kernel": esc._run_kernel, "numpy": esc._run_numpy}[engine]

    def wrapped(*a, **k):
        t0 = time.perf_counter()
        out = orig(*a, **k)
        spent["t"] = time.perf_counter() - t0
        return out

    name = "_run_kernel" if engine == "kernel" else "_run_numpy"
    best_engine, best_wall, runs = np.inf, np.inf, None
    setattr(esc, name, wrapped)
    try:
        for _ in range(repeat):
            t_wall, runs = timed(
                lambda: dmf.escape_batch(
                    ws, etas, max_steps=max_steps, loss_tol=1e-20, engine=engine
                )
            )
            best_engine = min(best_engine, spent["t"])
            best_wall = min(best_wall, t_wall)
    finally:
        setattr(esc, name, orig)
    return best_engine, best_wall, runs


def plain_time(ws, etas, max_steps, repeat=2):
    """Best-of-``repeat`` seconds and GD steps of the plain compiled loops over all step sizes."""
    dims = dmf.validation.chain_dims(ws)
    p_star = dmf.flatten(ws)
    p0 = p_star + 1e-9 * dmf.flatten(dmf.top_eigenvector(ws))
    m = dmf.right_products(ws)[-1].ravel().copy()
    if all(d == 1 for d in dims):

        def run():
            return sum(plain_scalar_gd(p0, m[0], e, 1e-20, max_steps) for e in etas)
    else:
        square = (0,) * dims[0]

        def run():
            return sum(plain_square_gd(p0, m, square, len(ws), e, 1e-20, max_steps) for e in etas)

    run()  # compile
    best, steps = np.inf, 0
    for _ in range(repeat):
        t, steps = timed(run)
        best = min(best, t)
    return best, steps


def kernel_section(max_steps=20_000, n_eta=32):
    """Print kernel vs numpy path vs plain compiled loop, GD steps/s, one run side by side."""
    cases = {
        "scalar L=15": dmf.scalar_minimizer(15, np.random.default_rng(1))[0],
        "matrix L=4 d=4": dmf.gaussian_minimizer((4,) * 5, np.random.default_rng(2))[0],
        "matrix L=4 d=8": dmf.gaussian_minimizer((8,) * 5, np.random.default_rng(2))[0],
        "matrix L=4 d=16": dmf.gaussian_minimizer((16,) * 5, np.random.default_rng(2))[0],
        "matrix L=4 d=24": dmf.gaussian_minimizer((24,) * 5, np.random.default_rng(2))[0],
    }
    print(
        f"\nGD engines, {n_eta} step sizes c in linspace(0.5, 3), r = 1e-9, loss_tol = 1e-20; "
        "M GD steps/s of the engine alone (best of 2; the whole escape_batch call in brackets, "
        "which adds classification and the final sharpness)"
    )
    print(
        f"{'case':<16} {'max_steps':>9} {'GD steps':>9} {'numpy':>15} {'kernel':>15} "
        f"{'plain loop':>10} {'kernel/numpy':>12} {'plain/kernel':>12} {'monitors':>8}"
    )
    for name, ws in cases.items():
        steps_cap = max_steps if "d=16" not in name and "d=24" not in name else 2000
        lam = dmf.sharpness(ws)
        etas = np.linspace(0.5, 3.0, n_eta) * 2 / lam
        dmf.escape_batch(ws, etas[:1], max_steps=10, loss_tol=1e-20, engine="kernel")  # compile
        t_np, w_np, r_np = engine_times(ws, etas, steps_cap, "numpy")
        t_k, w_k, r_k = engine_times(ws, etas, steps_cap, "kernel")
        steps = sum(r.steps_run for r in r_k)
        # rates use each engine's own GD steps: on matrix chains chaotic runs may end apart
        steps_np = sum(r.steps_run for r in r_np)
        plain = "-"
        ratio_plain = monitors = float("nan")
        if "d=16" not in name and "d=24" not in name:
            # the plain loop has no divergence test: diverging runs go on (nan) to max_steps,
            # so compare time per GD step
            t_p, p_steps = plain_time(ws, etas, steps_cap)
            plain = f"{p_steps / t_p / 1e6:10.1f}"
            ratio_plain = (t_k / steps) / (t_p / p_steps)
            monitors = 1 - 1 / ratio_plain
        print(
            f"{name:<16} {steps_cap:>9} {steps:>9} "
            f"{steps_np / t_np / 1e6:>6.2f} ({steps_np / w_np / 1e6:>6.2f}) "
            f"{steps / t_k / 1e6:>6.2f} ({steps / w_k / 1e6:>6.2f}) {plain:>10} "
            f"{(steps / t_k) / (steps_np / t_np):>11.1f}x {ratio_plain:>11.2f}x {monitors:>8.0%}"
        )


# ---------------------------------------------------------------------------------------------
# the paper config's escape section: pure compute of its 1920 runs


PAPER = {
    "depth": [4, 8, 15],
    "width": [1, 4],
    "c": [0.5, 0.9, 0.99, 1.01, 1.05, 1.1, 1.2, 1.5, 2.0, 3.0],
    "seeds": range(32),
    "max_steps": 100_000,
    "loss_tol": 1e-20,
}
DEFAULT = {
    "depth": [4, 15],
    "width": [1, 4],
    "c": [0.5, 0.99, 1.01, 1.1, 1.5, 3.0],
    "seeds": range(4),
    "max_steps": 20_000,
    "loss_tol": 1e-20,
}


def grid_minimizer(depth, width, seed):
    """The escape sweep's minimizer of a grid point (same seeding as the sweep experiment)."""
    rng = np.random.default_rng(point_seed(seed, "escape", depth=depth, width=width))
    if width == 1:
        return dmf.scalar_minimizer(depth, rng)[0]
    return dmf.gaussian_minimizer((width,) * (depth + 1), rng)[0]


def _grid_block(args):
    """Run one minimizer's step sizes through one engine; return timings and result rows."""
    depth, width, seed, grid, engine, loss_tol = args
    ws = grid_minimizer(depth, width, seed)
    lam = dmf.sharpness(ws)
    etas = [c * 2 / lam for c in grid["c"]]
    lz = {"t": 0.0}
    orig = esc._lanczos_sharpness

    def timed_lanczos(*a):
        t0 = time.perf_counter()
        out = orig(*a)
        lz["t"] += time.perf_counter() - t0
        return out

    esc._lanczos_sharpness = timed_lanczos
    t0 = time.perf_counter()
    try:
        runs = dmf.escape_batch(
            ws,
            etas,
            max_steps=grid["max_steps"],
            checkpoints=dmf.default_checkpoints(grid["max_steps"]),
            loss_tol=loss_tol,
            engine=engine,
        )
    except ValueError as exc:
        return (depth, width, seed), time.perf_counter() - t0, 0.0, str(exc)
    finally:
        esc._lanczos_sharpness = orig
    rows = [
        (r.outcome, r.escape_step, r.steps_run, r.period, r.final_sharpness, r.final_loss)
        for r in runs
    ]
    return (depth, width, seed), time.perf_counter() - t0, lz["t"], rows


def run_grid(grid, engine, processes, loss_tol):
    """Run every minimizer of ``grid`` (batched over its c values); return wall s and blocks."""
    jobs = [
        (d, w, s, grid, engine, loss_tol)
        for d in grid["depth"]
        for w in grid["width"]
        for s in grid["seeds"]
    ]
    # warm the kernels (compile or load the cache) in every worker before timing
    t0 = time.perf_counter()
    if processes > 1:
        with multiprocessing.Pool(processes) as pool:
            out = pool.map(_grid_block, jobs, chunksize=1)
    else:
        out = [_grid_block(j) for j in jobs]
    return time.perf_counter() - t0, out


SHARPNESS_SAME = 1e-6
"""Final sharpness values closer than this (relative) count as the same (rounding)."""


def _close(a, b, rtol):
    if np.isnan(a) and np.isnan(b):
        return True
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def grid_section(grid, name, processes, out_json=None, reference=None):
    """Print wall time and agreement of the numpy path and the kernel on an escape grid.

    With ``reference`` (a file written by ``--json``), the numpy rows and wall time are read
    from it instead of being recomputed.
    """
    print(f"\n{name} escape grid, {processes} processes, loss_tol = {grid['loss_tol']:g}")
    res = {}
    for engine in ("numpy", "kernel"):
        if engine == "numpy" and reference is not None:
            with open(reference) as fh:
                stored = json.load(fh)
            out = [
                (tuple(k), t, lz, rows if isinstance(rows, str) else [tuple(r) for r in rows])
                for k, t, lz, rows in stored["blocks"]["numpy"]
            ]
            res[engine] = (stored["wall"]["numpy"], out)
            print(f"  numpy : stored in {reference}, wall {stored['wall']['numpy']:.1f} s")
            continue
        wall, out = run_grid(grid, engine, processes, grid["loss_tol"])
        res[engine] = (wall, out)
        n_runs = sum(len(rows) for *_, rows in out if not isinstance(rows, str))
        refused = [(key, rows) for key, _, _, rows in out if isinstance(rows, str)]
        t_block = sum(t for _, t, _, _ in out)
        t_lz = {w: sum(lz for (d, ww, s), _, lz, _ in out if ww == w) for w in grid["width"]}
        t_w = {w: sum(t for (d, ww, s), t, _, _ in out if ww == w) for w in grid["width"]}
        print(
            f"  {engine:<6}: wall {wall:8.1f} s for {n_runs} runs ({len(refused)} minimizers "
            f"refused); block time {t_block:.1f} s; final Lanczos share "
            + ", ".join(f"width {w}: {t_lz[w] / t_w[w]:.1%}" for w in grid["width"])
        )
        for key, msg in refused:
            print(f"    refused {key}: {msg[:160]}")
    wall_np, out_np = res["numpy"]
    wall_k, out_k = res["kernel"]
    print(f"  kernel / numpy wall: {wall_np / wall_k:.1f}x faster")
    differ = []
    rounding = 0
    tables = {"numpy": {}, "kernel": {}}
    for (key, _, _, rows_np), (_, _, _, rows_k) in zip(out_np, out_k, strict=True):
        if isinstance(rows_np, str):
            continue
        for c, a, b in zip(grid["c"], rows_np, rows_k, strict=True):
            for eng, row in (("numpy", a), ("kernel", b)):
                t = tables[eng].setdefault((key[1], c), {})
                t[row[0]] = t.get(row[0], 0) + 1
            if a[:4] != b[:4] or not _close(a[4], b[4], SHARPNESS_SAME):
                differ.append((key, c, a, b))
            elif a[4] != b[4] and not (np.isnan(a[4]) and np.isnan(b[4])):
                rounding += 1
    print(
        f"  runs whose outcome, escape_step, steps_run or period differ, or final_sharpness by "
        f"more than {SHARPNESS_SAME:g} relative: {len(differ)} (final_sharpness apart by "
        f"rounding only, <= {SHARPNESS_SAME:g}: {rounding})"
    )
    for key, c, a, b in differ:
        print(
            f"    depth={key[0]} width={key[1]} seed={key[2]} c={c}: numpy {a[:5]} kernel {b[:5]}"
        )
    same_tables = tables["numpy"] == tables["kernel"]
    print(f"  outcome tables (width, c) identical: {same_tables}")
    if out_json:
        with open(out_json, "w") as fh:
            json.dump(
                {
                    "wall": {"numpy": wall_np, "kernel": wall_k},
                    "differ": [[list(k), c, list(a), list(b)] for k, c, a, b in differ],
                    "blocks": {
                        e: [[list(k), t, lz, rows] for k, t, lz, rows in res[e][1]] for e in res
                    },
                },
                fh,
                default=float,
            )
    return differ


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paper", action="store_true", help="also run the paper escape grid")
    parser.add_argument("--default-grid", action="store_true", help="also run the default grid")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the paper-grid rows to this file")
    parser.add_argument(
        "--reference", default=None, help="read the paper grid's numpy rows from this --json file"
    )
    parser.add_argument("--skip-batching", action="store_true", help="skip the issue-2 section")
    parser.add_argument("--skip-kernel", action="store_true", help="skip the engine section")
    args = parser.parse_args()
    if not args.skip_batching:
        batching_section()
    if not args.skip_kernel:
        kernel_section()
    if args.default_grid:
        grid_section(DEFAULT, "default", args.processes)
    if args.paper:
        grid_section(PAPER, "paper", args.processes, args.json, args.reference)


if __name__ == "__main__":
    main()
