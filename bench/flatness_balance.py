"""Which balance condition holds exactly when a minimizer is the flattest? (issue 20, item 3)

Run: .venv/bin/python bench/flatness_balance.py [--seeds N] [--quick]

For minimizers of many families and shapes (depth L = 2..5, hidden width 1..6, d_0 = d_L =
d_io = 1..3, seeds 0..N-1) it computes the exact sharpness (Kronecker K), the flattest value
2 L ||M||_2^(2-2/L) and these balance conditions, each a relative measure that is 0 when the
condition holds (tested at <= 1e-8; flat means (exact - flattest) / flattest <= 1e-9):

  frobenius     max_i ||W_{i+1}^T W_{i+1} - W_i W_i^T||_F / ||M||_2^(2/L)   (Frobenius balance)
  spectral      (max_i ||W_i||_2 - min_i ||W_i||_2) / max_i ||W_i||_2        (equal spectral norms)
  frob-norms    the same spread for ||W_i||_F                               (equal Frobenius norms)
  product       spread of p_i = ||A_i||_2 ||B_i||_2 over the layers          (constant product)
  product=M     max_i p_i / ||M||_2^((L-1)/L) - 1                           (p_i = ||M||^((L-1)/L))
  spectral=M    max_i ||W_i||_2 / ||M||_2^(1/L) - 1                          (||W_i|| = ||M||^(1/L))
  top-mode      max_i ||A_i^T u_1|| ||B_i v_1|| / ||M||_2^((L-1)/L) - 1   (u_1 v_1^T: top mode of M)

(product=M, spectral=M and top-mode are >= 0 at every minimizer, since prod_i p_i >= ||M||^(L-1).)
It prints, per condition and per shape class, how often the condition holds for flat and for
non-flat minimizers, and one counterexample of each kind.

Families: balanced (the flattest), gauge (random gauge of it, spreads 0, 0.3, 1), gaussian,
equal-norm (dmf.equal_norm_minimizer, values exp(U(-1, 1))), equal-spectrum (every
layer has the top singular values of one shared spectrum exp(U(-1, 1)), with Haar-random
singular vectors, so equal spectral norms but misaligned layers), scalar (all-scalar chains),
top-balanced (dmf.top_balanced_minimizer: aligned layers, top mode balanced, other modes
unbalanced, log-spread c log-uniform in [0.01, 1.5]), top-gauge (a balanced minimizer gauged
by G_i that fix the top mode's hidden vector, log-spread c in [0.01, 1.5]), dead-modes (a
balanced minimizer plus hidden-to-hidden blocks on modes the chain never reaches, norms
||M||^(1/L) exp(c z)), and the hand-built examples diag(2,1), diag(1,2) and diag(1, 1.2),
diag(1, 0.5), diag(1, 0.5).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from sweeplab import dmf

FLAT_RTOL = 1e-9
COND_TOL = 1e-8
CONDITIONS = (
    "frobenius",
    "spectral",
    "frob-norms",
    "product",
    "product=M",
    "spectral=M",
    "top-mode",
)


def measures(ws: list[np.ndarray], target: np.ndarray) -> dict[str, float]:
    """Relative balance measures of a minimizer (each 0 when its condition holds)."""
    depth = len(ws)
    b = dmf.balance(ws)
    s1 = np.linalg.norm(target, 2)
    top = dmf.top_mode_products(ws)

    def spread(x: np.ndarray) -> float:
        return float((x.max() - x.min()) / x.max())

    frob = float(b.imbalance_frobenius.max()) / s1 ** (2 / depth) if depth > 1 else 0.0
    return {
        "frobenius": frob,
        "spectral": spread(b.spectral_norms),
        "frob-norms": spread(b.frobenius_norms),
        "product": spread(b.product_norms),
        "product=M": float(b.product_norms.max() / s1 ** ((depth - 1) / depth) - 1),
        "spectral=M": float(b.spectral_norms.max() / s1 ** (1 / depth) - 1),
        "top-mode": float(max(top) / s1 ** ((depth - 1) / depth) - 1),
    }


def top_gauge(dio, widths, rng):
    """Balanced minimizer gauged by G_i = q q^T + P H_i P (P = I - q q^T, q the top mode)."""
    target = rng.standard_normal((dio, dio))
    ws = dmf.balanced_minimizer(target, widths, rng=rng)
    v1 = np.linalg.svd(target)[2][0]
    c = np.exp(rng.uniform(np.log(0.01), np.log(1.5)))
    x = v1
    out, g_inv_prev = [], None
    for i, w in enumerate(ws):
        if i < len(ws) - 1:
            q = w @ x
            q /= np.linalg.norm(q)
            x = q
            d = w.shape[0]
            p = np.eye(d) - np.outer(q, q)
            uu, vv = dmf.haar_orthogonal(d, rng), dmf.haar_orthogonal(d, rng)
            e = np.exp(c * rng.uniform(-1, 1, d))
            g = np.outer(q, q) + p @ ((uu * e) @ vv.T) @ p  # fixes q: G q = G^T q = q
            g_inv = np.linalg.inv(g)
        else:
            g, g_inv = None, None
        w_new = w if g is None else g @ w
        if g_inv_prev is not None:
            w_new = w_new @ g_inv_prev
        out.append(w_new)
        g_inv_prev = g_inv
    return out, target


def dead_modes(dio, widths, rng):
    """Balanced minimizer plus hidden-to-hidden blocks on modes the chain never reaches.

    Layers 2..L-1 get ``P_i^perp E_i P_{i-1}^perp`` (``P^perp``: projector off the rank-r path),
    with singular values ``||M||^(1/L) exp(c z)``: the product and K are unchanged (the input
    never reaches those modes, the output never reads them), the layer norms are not.
    """
    target = rng.standard_normal((dio, dio))
    ws = dmf.balanced_minimizer(target, widths, rng=rng)
    c = np.exp(rng.uniform(np.log(0.01), np.log(1.5)))
    t = np.linalg.norm(target, 2) ** (1 / len(ws))
    out = [ws[0]]
    for i in range(1, len(ws) - 1):
        q_out, q_in = np.linalg.svd(ws[i])[0][:, :dio], np.linalg.svd(ws[i - 1])[0][:, :dio]
        p_out = np.eye(widths[i]) - q_out @ q_out.T
        p_in = np.eye(widths[i - 1]) - q_in @ q_in.T
        g = rng.standard_normal((widths[i], widths[i - 1]))
        e = p_out @ g @ p_in
        norm = np.linalg.norm(e, 2)
        out.append(ws[i] + (t * np.exp(c * rng.standard_normal()) / norm) * e)
    out.append(ws[-1])
    return out, target


def equal_spectrum(dims, rng):
    """Layers with one shared descending spectrum x and Haar-random singular vectors."""
    k = max(min(dims[i], dims[i + 1]) for i in range(len(dims) - 1))
    x = np.sort(np.exp(rng.uniform(-1, 1, k)))[::-1]
    ws = []
    for i in range(len(dims) - 1):
        n = min(dims[i], dims[i + 1])
        u = dmf.haar_orthogonal(dims[i + 1], rng, n)
        v = dmf.haar_orthogonal(dims[i], rng, n)
        ws.append((u * x[:n]) @ v.T)
    prod = ws[0]
    for w in ws[1:]:
        prod = w @ prod
    return ws, prod


def generate(seeds: int, quick: bool):
    """Yield (family, shape class, label, weights, target)."""
    depths = [2, 3] if quick else [2, 3, 4, 5]
    widths_ = [1, 2, 3] if quick else [1, 2, 3, 4, 5, 6]
    dios = [1, 2] if quick else [1, 2, 3]
    yield (
        "example",
        "L=2, d_io>=2",
        "diag(2,1),diag(1,2)",
        *dmf.equal_norm_minimizer((2, 2, 2), [2.0, 1.0]),
    )
    hand = [np.diag([1.0, 1.2]), np.diag([1.0, 0.5]), np.diag([1.0, 0.5])]
    yield (
        "example",
        "L>=3, d_io>=2",
        "diag(1,1.2),diag(1,.5),diag(1,.5)",
        hand,
        hand[2] @ hand[1] @ hand[0],
    )
    for depth in depths:
        for width in widths_:
            for dio in dios:
                widths = [width] * (depth - 1)
                dims = (dio, *widths, dio)
                if width == 1 and dio == 1:
                    cls = "scalar chain"
                elif dio == 1:
                    cls = "d_io=1"
                elif depth == 2:
                    cls = "L=2, d_io>=2"
                else:
                    cls = "L>=3, d_io>=2"
                for seed in range(seeds):
                    rng = np.random.default_rng([20, depth, width, dio, seed])
                    lab = f"L={depth} w={width} d_io={dio} seed={seed}"
                    yield "gaussian", cls, lab, *dmf.gaussian_minimizer(dims, rng)
                    if width == 1 and dio == 1:
                        yield "scalar", cls, lab, *dmf.scalar_minimizer(depth, rng)
                    if width >= dio:
                        m = rng.standard_normal((dio, dio))
                        yield "balanced", cls, lab, dmf.balanced_minimizer(m, widths, rng=rng), m
                        for spread in (0.0, 0.3, 1.0):
                            yield (f"gauge {spread}", cls, lab,
                                   dmf.gauge_minimizer(m, widths, rng, spread), m)  # fmt: skip
                        c = np.exp(rng.uniform(np.log(0.01), np.log(1.5)))
                        yield ("top-balanced", cls, lab,
                               dmf.top_balanced_minimizer(m, widths, rng, c), m)  # fmt: skip
                        yield "top-gauge", cls, lab, *top_gauge(dio, widths, rng)
                        if depth >= 3 and width > dio:
                            yield "dead-modes", cls, lab, *dead_modes(dio, widths, rng)
                    yield "equal-spectrum", cls, lab, *equal_spectrum(dims, rng)
                    r = min(dims)
                    if r >= 2:
                        vals = np.exp(rng.uniform(-1, 1, r))
                        yield "equal-norm", cls, lab, *dmf.equal_norm_minimizer(dims, vals, rng)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per shape (default 20)")
    parser.add_argument("--quick", action="store_true", help="depth 2..3, widths 1..3, d_io 1..2")
    args = parser.parse_args()
    # counts[cond][cls] = [flat & holds, flat & fails, sharp & holds, sharp & fails]
    counts = {c: defaultdict(lambda: [0, 0, 0, 0]) for c in CONDITIONS}
    example = {}  # (cond, kind, class) -> text
    viol = defaultdict(lambda: defaultdict(int))  # (cond, kind) -> family -> count
    fam_counts = defaultdict(lambda: [0, 0])
    worst_resid = 0.0
    for fam, cls, lab, ws, target in generate(args.seeds, args.quick):
        prod = ws[0]
        for w in ws[1:]:
            prod = w @ prod
        resid = np.linalg.norm(prod - target) / np.linalg.norm(target)
        worst_resid = max(worst_resid, resid)
        exact = dmf.sharpness(ws)
        flattest = dmf.flattest_sharpness(target, len(ws))
        gap = (exact - flattest) / flattest
        flat = gap <= FLAT_RTOL
        fam_counts[fam][0 if flat else 1] += 1
        meas = measures(ws, target)
        for cond in CONDITIONS:
            holds = meas[cond] <= COND_TOL
            k = (0 if holds else 1) if flat else (2 if holds else 3)
            counts[cond][cls][k] += 1
            kind = {1: "not necessary", 2: "not sufficient"}.get(k)
            if kind:
                viol[(cond, kind)][fam] += 1
                if (cond, kind, cls) not in example:
                    example[(cond, kind, cls)] = (
                        f"{fam} {lab}: (exact - flattest)/flattest = {gap:.3g}, "
                        f"{cond} = {meas[cond]:.3g}"
                    )
    print(
        f"flat: (exact - flattest)/flattest <= {FLAT_RTOL:g}; a condition holds: measure <= "
        f"{COND_TOL:g}; worst residual |W_L..W_1 - M|/|M| = {worst_resid:.1e}"
    )
    print("\nminimizers per family: flat / not flat")
    for fam, (nf, ns) in fam_counts.items():
        print(f"  {fam:<12} {nf:>6} {ns:>6}")
    classes = ["scalar chain", "d_io=1", "L=2, d_io>=2", "L>=3, d_io>=2"]
    print("\nper condition and shape class: flat&holds flat&fails | sharp&holds sharp&fails")
    print(f"{'condition':<11} " + " ".join(f"{c:>27}" for c in classes))
    for cond in CONDITIONS:
        cells = []
        for cls in classes:
            a, b_, c, d = counts[cond][cls]
            cells.append(f"{a:>6} {b_:>5} | {c:>5} {d:>6}")
        print(f"{cond:<11} " + " ".join(f"{x:>27}" for x in cells))
    print("\nverdict (all classes): sufficient = no sharp minimizer satisfies it; "
          "necessary = every flat minimizer satisfies it")  # fmt: skip
    for cond in CONDITIONS:
        tot = np.sum([counts[cond][cls] for cls in classes], axis=0)
        print(f"  {cond:<11} sufficient: {'yes' if tot[2] == 0 else 'NO '} ({tot[2]} violations)"
              f"  necessary: {'yes' if tot[1] == 0 else 'NO '} ({tot[1]} violations)")  # fmt: skip
    print("\ncounterexamples: violations per family, then the first one per shape class")
    for cond in CONDITIONS:
        for kind in ("not sufficient", "not necessary"):
            if (cond, kind) not in viol:
                continue
            fams = ", ".join(f"{f} {n}" for f, n in viol[(cond, kind)].items())
            print(f"  {cond} {kind}: {fams}")
            for cls in classes:
                if (cond, kind, cls) in example:
                    print(f"      [{cls}] {example[(cond, kind, cls)]}")


if __name__ == "__main__":
    main()
