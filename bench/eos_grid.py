"""Edge of stability: the eta grid that resolves the mode thresholds, and the GFS sharpness.

Run: .venv/bin/python bench/eos_grid.py [--num 250] [--steps 20000] [--threads 2]
     [--gfs-steps 2000] [--gfs-seeds 2] [--cascade-num 300]
     [--skip-grid] [--skip-cascade] [--skip-gfs] [--json out.json]

Grid section. Spectrum s3 = (6, 5.5, 5), depth L = 3 (thresholds 1/(L sigma_i^(4/3)) =
0.03057, 0.03433, 0.03899), every start kind of the eos experiment (small = 0.3 I on the
diagonal subspace; perturbed = 0.3 I + 1e-6 N(0, 1); orthogonal = 0.3 x Haar; gaussian), seed 0,
``--num`` step sizes evenly spaced over [0.9 t_1, 1.1 t_3] = [0.02751, 0.04289]. The sweep is
run as the pipeline does (plan, blocks on a local Dask cluster of ``--threads`` threads,
aggregate) and timed (wall, and CPU-seconds summed over the points). It prints:
  * the grid spacing and, per start, where the observed number of oscillating modes changes
    (the grid points either side) next to each threshold;
  * for every eta, the predicted number of oscillating modes (thresholds below eta) and the
    observed one (amplitude range over the final orbit > 1e-3 sigma_i; nan when diverged),
    summarised as a table of disagreements: maximal eta ranges where a start's observed count
    (or outcome) differs from the prediction.

Cascade section. The period of the small-start (diagonal) orbit of s3 at depths 2, 3, 4 over
``--cascade-num`` step sizes in [0.9 t_1, 1.25 t_3] (direct dmf.descend calls): where the
outcome, period or number of oscillating modes changes, next to the thresholds (the period-
doubling cascade that config/paper.yaml is sized to show).

GFS section. Scalar chains (spectrum (6,), width 1), depths 3 and 4, starts perturbed and
gaussian with alpha in {0.3, 1.0, 3.0}, ``--gfs-seeds`` seeds, 12 step sizes c x the threshold
1/(L 6^(2-2/L)), c in [0.5, 1.6]: GD for ``--gfs-steps`` steps with the GFS sharpness
(sweeplab.dmf.gfs_sharpness) at EVERY step. Per (L, start, alpha): the GFS x eta/2 at the start,
how many runs start above 1 although a flatter minimizer exists (c < 1) and how many of those
end at or below 1, outcomes, and every run whose GFS increases by more than 1e-12 relative in
one step; with the conditions the runs meet (all weights positive at the start, sign of
prod w equal to the target's). (The orthogonal start of a scalar chain is +-alpha per layer:
balanced, so its GFS is constant, or undefined when the signs make gradient flow end at a
saddle; it is left out.)
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from sweeplab import dmf
from sweeplab.sweep import aggregate, open_block, open_dataset, plan, provenance, run_plan
from sweeplab.sweep.experiments.eos import eos_problem

SPECTRUM = [6.0, 5.5, 5.0]
DEPTH = 3
STARTS = ["small", "perturbed", "orthogonal", "gaussian"]
INCREASE_RTOL = 1e-12


def grid_section(num: int, steps: int, threads: int) -> dict:
    target = np.diag(SPECTRUM)
    t = dmf.mode_thresholds(target, DEPTH)
    lo, hi = 0.9 * t[0], 1.1 * t[-1]
    section = {
        "spectra": {"s3": SPECTRUM},
        "depth": [DEPTH],
        "width": [3],
        "start": STARTS,
        "eta": {"start": float(f"{lo:.5g}"), "stop": float(f"{hi:.5g}"), "num": num},
        "seeds": 1,
        "max_steps": steps,
        "alpha": 0.3,
        "checkpoints": 64,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        blocks = root / "blocks"
        blocks.mkdir()
        t0 = time.perf_counter()
        p = plan("eos", section, blocks)
        for f in p.write_plan_files(root / "plans"):
            run_plan(f, blocks / f"{f.stem}.zarr.zip", dask={"processes": False}, threads=threads)
        aggregate("eos", section, blocks, root / "eos.zarr", attrs=provenance({"eos": section}))
        wall = time.perf_counter() - t0
        ds = open_dataset(root / "eos.zarr").load()
        n_blocks = len(p.blocks)
        cpu = sum(float(open_block(b).point_wall_time.sum()) for b in blocks.glob("*.zarr.zip"))
    sel = ds.isel(spectrum=0, depth=0, width=0, seed=0)
    eta = sel.eta.values
    h = float(eta[1] - eta[0]) if eta.size > 1 else float("nan")
    print(f"## Grid: spectrum {SPECTRUM}, L = {DEPTH}, width 3, alpha 0.3, {steps} steps")
    print(f"thresholds {np.round(t, 6).tolist()}; eta grid {eta[0]:.6g} .. {eta[-1]:.6g}, "
          f"{eta.size} values, spacing {h:.3g} ({h / t[0]:.2%} of t_1)")  # fmt: skip
    print(f"sweep: {eta.size * len(STARTS)} runs in {n_blocks} block(s), wall {wall:.1f} s on "
          f"{threads} thread(s) (plan + compute + aggregate); point wall times summed: "
          f"{cpu:.1f} s")  # fmt: skip
    outcomes = dmf.DESCEND_OUTCOMES
    rows = []
    print("\n### Where the observed count changes (grid points either side), per start")
    print("| start | transitions (eta_before -> eta_after: count) |")
    print("|---|---|")
    for s in STARTS:
        x = sel.sel(start=s)
        obs = x.n_oscillating.values
        trans = []
        for i in range(1, eta.size):
            a, b = obs[i - 1], obs[i]
            if not (a == b or (np.isnan(a) and np.isnan(b))):
                sa = "div" if np.isnan(a) else int(a)
                sb = "div" if np.isnan(b) else int(b)
                trans.append(f"{eta[i - 1]:.5f} -> {eta[i]:.5f}: {sa} -> {sb}")
        print(f"| {s} | {'; '.join(trans) or 'none'} |")
    print("\n### Disagreements: observed number of oscillating modes != predicted")
    print("| start | eta range | n | predicted | observed | outcome (period) |")
    print("|---|---|---|---|---|---|")
    for s in STARTS:
        x = sel.sel(start=s)
        pred = x.n_predicted.values
        obs = x.n_oscillating.values
        out = [outcomes[int(c)] for c in x.outcome.values]
        per = x.period.values
        i = 0
        while i < eta.size:
            bad = not obs[i] == pred[i]
            if not bad:
                i += 1
                continue
            j = i
            key = (pred[i], obs[i] if np.isfinite(obs[i]) else -1, out[i])
            while j + 1 < eta.size:
                k2 = (pred[j + 1], obs[j + 1] if np.isfinite(obs[j + 1]) else -1, out[j + 1])
                if k2 != key or obs[j + 1] == pred[j + 1]:
                    break
                j += 1
            periods = sorted({int(v) for v in per[i : j + 1]})
            o = "diverged" if not np.isfinite(obs[i]) else str(int(obs[i]))
            print(f"| {s} | {eta[i]:.5f} - {eta[j]:.5f} | {j - i + 1} | {int(pred[i])} | {o} | "
                  f"{out[i]} ({', '.join(map(str, periods))}) |")  # fmt: skip
            rows.append((s, eta[i], eta[j], j - i + 1, int(pred[i]), o, out[i]))
            i = j + 1
    print("\n### Outcome counts per start")
    for s in STARTS:
        x = sel.sel(start=s)
        counts = {o: int(np.sum(x.outcome.values == k)) for k, o in enumerate(outcomes)}
        agree = int(np.sum(x.n_oscillating.values == x.n_predicted.values))
        print(f"- {s}: {counts}; observed = predicted at {agree} of {eta.size} step sizes")
    ratio = sel.sharpness_ratio.values
    eos_mask = sel.outcome.values == outcomes.index("edge_of_stability")
    with np.errstate(invalid="ignore"):
        print(f"\nfinal sharpness x eta/2 over edge-of-stability runs: median "
              f"{np.nanmedian(ratio[eos_mask]):.3f}, range {np.nanmin(ratio[eos_mask]):.3f} - "
              f"{np.nanmax(ratio[eos_mask]):.3f} (last iterate of the orbit)")  # fmt: skip
    return {"wall": wall, "cpu": cpu, "n": int(eta.size * len(STARTS)), "disagreements": rows}


def gfs_section(steps: int, seeds: int) -> list[dict]:
    print(f"\n## GFS sharpness at every step, scalar chains (target 6), {steps} steps")
    out = []
    ck = np.arange(steps + 1)
    for depth in (3, 4):
        target = np.array([[6.0]])
        thr = float(dmf.mode_thresholds(target, depth)[0])
        for start in ("perturbed", "gaussian"):
            for alpha in (0.3, 1.0, 3.0):
                for seed in range(seeds):
                    ws, m = eos_problem([6.0], depth, 1, start, seed, {"alpha": alpha}, "s1")
                    w0 = np.array([w.item() for w in ws])
                    for c in np.linspace(0.5, 1.6, 12):
                        eta = c * thr
                        r = dmf.descend(ws, m, eta, max_steps=steps, checkpoints=ck)
                        g = []
                        for p in r.checkpoint_weights:
                            if not np.all(np.isfinite(p)):
                                break
                            try:
                                g.append(dmf.gfs_sharpness(dmf.unflatten(p, [(1, 1)] * depth), m))
                            except ValueError:  # gradient flow ends at a saddle
                                g.append(np.nan)
                        g = np.asarray(g) * eta / 2
                        with np.errstate(invalid="ignore"):
                            rel = np.diff(g) / g[:-1]
                        up = np.flatnonzero(rel > INCREASE_RTOL)
                        out.append({
                            "depth": depth, "start": start, "alpha": alpha, "seed": seed,
                            "c": float(c), "outcome": r.outcome,
                            "gfs0": float(g[0]) if g.size else np.nan,
                            "gfs_end": float(g[-1]) if g.size else np.nan,
                            "max_rel_increase": float(np.nanmax(rel)) if np.isfinite(rel).any()
                            else np.nan,
                            "n_increasing": int(up.size),
                            "first_increase": int(up[0]) if up.size else -1,
                            "sharp0": float(r.checkpoint_sharpness[0] * eta / 2),
                            "positive": bool(np.all(w0 > 0)),
                            "sign_ok": bool(np.prod(np.sign(w0)) > 0),
                        })  # fmt: skip
    print(
        "GFS = GFS sharpness x eta/2 (1: 2/eta); c = eta / threshold, so that the flattest "
        "minimizer has GFS = c; 'above' = runs starting with GFS > 1 although c < 1."
    )
    print("| L | start | alpha | runs | w_i > 0 | sign ok | GFS at start (min - max) | above | "
          "of which end GFS <= 1 | converged | EoS | unconv. | diverged | runs with an increase "
          "| largest one-step rel. change |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for depth in (3, 4):
        for start in ("perturbed", "gaussian"):
            for alpha in (0.3, 1.0, 3.0):
                sub = [
                    r for r in out if (r["depth"], r["start"], r["alpha"]) == (depth, start, alpha)
                ]
                above = [r for r in sub if r["gfs0"] > 1 and r["c"] < 1]
                ends = sum(1 for r in above if r["gfs_end"] <= 1 + 1e-9)
                oc = {o: sum(1 for r in sub if r["outcome"] == o) for o in dmf.DESCEND_OUTCOMES}
                g0 = [r["gfs0"] for r in sub if np.isfinite(r["gfs0"])]
                inc = [r["max_rel_increase"] for r in sub if np.isfinite(r["max_rel_increase"])]
                print(f"| {depth} | {start} | {alpha} | {len(sub)} | "
                      f"{sum(r['positive'] for r in sub)} | {sum(r['sign_ok'] for r in sub)} | "
                      f"{min(g0):.3f} - {max(g0):.3f} | {len(above)} | {ends} | "
                      f"{oc['converged']} | {oc['edge_of_stability']} | {oc['unconverged']} | "
                      f"{oc['diverged']} | {sum(1 for r in sub if r['n_increasing'])} | "
                      f"{max(inc):.2e} |")  # fmt: skip
    n_inc = sum(1 for r in out if r["n_increasing"])
    print(f"\n{len(out)} runs; GFS sharpness increased (> {INCREASE_RTOL:g} relative in one "
          f"step) in {n_inc} of them")  # fmt: skip
    print("\n### Runs whose GFS sharpness increases (sharp0 = sharpness of w_0 x eta/2)")
    print("| L | start | alpha | seed | c | outcome | GFS start | sharp0 | first step up | "
          "steps up | largest rel. increase | w_i > 0 | sign ok |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in out:
        if r["n_increasing"]:
            print(f"| {r['depth']} | {r['start']} | {r['alpha']} | {r['seed']} | {r['c']:.1f} | "
                  f"{r['outcome']} | {r['gfs0']:.3f} | {r['sharp0']:.3g} | "
                  f"{r['first_increase']} | {r['n_increasing']} | {r['max_rel_increase']:.2e} | "
                  f"{r['positive']} | {r['sign_ok']} |")  # fmt: skip
    calm = [r for r in out if r["sharp0"] <= 1]
    print(f"\nruns starting with sharpness(w_0) <= 2/eta: {len(calm)}, with an increase: "
          f"{sum(1 for r in calm if r['n_increasing'])}; starting above: {len(out) - len(calm)}, "
          f"with an increase: {n_inc - sum(1 for r in calm if r['n_increasing'])}")  # fmt: skip
    return out


def cascade_section(steps: int, num: int) -> list[dict]:
    """Period of the diagonal (small-start) orbit against eta for s3, depths 2, 3 and 4."""
    print(f"\n## Period-doubling cascade: s3, small start (0.3 I), width 3, {steps} steps")
    print("| L | thresholds | eta where the period or outcome changes (value from there on) |")
    print("|---|---|---|")
    out = []
    target = np.diag(SPECTRUM)
    for depth in (2, 3, 4):
        t = dmf.mode_thresholds(target, depth)
        ws = [0.3 * np.eye(3)] * depth
        etas = np.linspace(0.9 * t[0], 1.25 * t[-1], num)
        prev, changes = None, []
        for eta in etas:
            r = dmf.descend(ws, target, float(eta), max_steps=steps, track_sharpness=False)
            n_osc = int(r.oscillating().sum()) if r.outcome != "diverged" else -1
            state = (r.outcome, r.period, n_osc)
            if state != prev:
                label = {"edge_of_stability": f"EoS p{r.period}"}.get(r.outcome, r.outcome)
                changes.append(f"{eta:.5f}: {label}, {n_osc if n_osc >= 0 else '-'} modes")
                prev = state
            out.append({"depth": depth, "eta": float(eta), "outcome": r.outcome,
                        "period": r.period, "n_oscillating": n_osc})  # fmt: skip
        print(f"| {depth} | {', '.join(f'{x:.5f}' for x in t)} | {'; '.join(changes)} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=250)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gfs-steps", type=int, default=2000)
    ap.add_argument("--gfs-seeds", type=int, default=2)
    ap.add_argument("--skip-gfs", action="store_true")
    ap.add_argument("--skip-grid", action="store_true")
    ap.add_argument("--skip-cascade", action="store_true")
    ap.add_argument("--cascade-num", type=int, default=300)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = {}
    if not args.skip_grid:
        result["grid"] = grid_section(args.num, args.steps, args.threads)
    if not args.skip_cascade:
        result["cascade"] = cascade_section(args.steps, args.cascade_num)
    if not args.skip_gfs:
        result["gfs"] = gfs_section(args.gfs_steps, args.gfs_seeds)
    if args.json:
        args.json.write_text(json.dumps(result, default=str, indent=1))


if __name__ == "__main__":
    main()
