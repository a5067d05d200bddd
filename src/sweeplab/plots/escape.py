"""Figures of the escape dataset (``results/escape.zarr``)."""

from __future__ import annotations

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from sweeplab import dmf

from .style import flags as _flags


def _minimizer(ds: xr.Dataset, depth: int, width: int, seed: int) -> list[np.ndarray]:
    """Layers of the stored starting minimizer ``w_star`` (every layer ``width x width``)."""
    flat = ds.w_star.sel(depth=depth, width=width, seed=seed).values
    n = width * width
    return [flat[i * n : (i + 1) * n].reshape(width, width) for i in range(depth)]


def escape_contour(ds: xr.Dataset) -> Figure:
    """Loss on the plane (v_1, v_N) through the first minimizer, with GD paths for several c."""
    sub = ds.isel(radius=0, seed=0)
    depth = int(ds.depth.values[-1])
    width = int(ds.width.values[0])
    sub = sub.sel(depth=depth, width=width)
    ws = _minimizer(ds, depth, width, int(ds.seed.values[0]))
    target = dmf.right_products(ws)[-1]  # w* is a minimizer: its product is the target
    v1 = dmf.top_eigenvector(ws)
    vn = dmf.null_direction(ws)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    if vn is None:
        ax.text(0.5, 0.5, "no null direction", ha="center")
        return fig
    a_max = float(np.nanmax(np.abs(sub.proj_top.values)))
    b_max = float(np.nanmax(np.abs(sub.proj_null.values)))
    a_max = max(a_max, 1e-3) * 1.2
    b_max = max(b_max, a_max) * 1.2
    a = np.linspace(-a_max, a_max, 81)
    b = np.linspace(-b_max, b_max, 81)
    z = np.empty((b.size, a.size))
    for i, bi in enumerate(b):
        for j, aj in enumerate(a):
            w = [w0 + aj * x + bi * y for w0, x, y in zip(ws, v1, vn, strict=True)]
            z[i, j] = dmf.loss(w, target)
    cs = ax.contourf(a, b, np.log10(z + 1e-30), levels=30, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="log10 loss")
    for c in sub.c.values:
        tr = sub.sel(c=c)
        label = f"c = {c:g} ({_flags(ds.outcome).get(int(tr.outcome), '?')})"
        ax.plot(tr.proj_top, tr.proj_null, ".-", ms=3, lw=1, label=label)
    ax.set(xlabel="<w - w*, v_1>", ylabel="<w - w*, v_N>",
           title=f"GD paths near a minimizer, L = {depth}, width {width}")  # fmt: skip
    ax.legend(fontsize=7)
    return fig


def escape_steps(ds: xr.Dataset) -> Figure:
    """Observed escape step against the linear-theory prediction."""
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    obs = ds.escape_step.values.ravel()
    pred = ds.predicted_escape_step.values.ravel()
    cs = ds.c.broadcast_like(ds.escape_step).transpose(*ds.escape_step.dims).values.ravel()
    ok = np.isfinite(obs) & np.isfinite(pred)
    sc = ax.scatter(pred[ok], obs[ok], c=cs[ok], cmap="plasma", s=18)
    if ok.any():
        lim = [max(1.0, pred[ok].min() * 0.8), pred[ok].max() * 1.2]
        ax.plot(lim, lim, "k--", lw=1, label="observed = predicted")
        ax.legend()
    fig.colorbar(sc, ax=ax, label="c = eta lambda*/2")
    ax.set(xscale="log", yscale="log", xlabel="predicted escape step ln(r_esc/r)/ln|1-eta lambda*|",
           ylabel="observed escape step", title="Escape from sharp minima")  # fmt: skip
    return fig


def escape_phase(ds: xr.Dataset) -> Figure:
    """Outcome phase diagram over (depth, c), one panel per width (first seed and radius)."""
    widths = ds.width.values
    fig, axes = plt.subplots(1, len(widths), figsize=(4.2 * len(widths), 3.6), squeeze=False)
    flags = {k: v for k, v in _flags(ds.outcome).items() if k >= 0}
    palette = ["#4c72b0", "#55a868", "#dd8452", "#8172b3", "#c44e52", "#937860"]
    cmap = mpl.colors.ListedColormap(palette[: len(flags)])
    for ax, w in zip(axes[0], widths, strict=True):
        sub = ds.sel(width=w).isel(radius=0, seed=0)
        codes = sub.outcome.transpose("depth", "c").values.astype(float)
        codes[codes < 0] = np.nan
        ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=len(flags) - 0.5, aspect="auto",
                  origin="lower")  # fmt: skip
        ax.set_xticks(range(sub.c.size), [f"{c:g}" for c in sub.c.values], rotation=60)
        ax.set_yticks(range(sub.depth.size), [str(d) for d in sub.depth.values])
        ax.set(xlabel="c = eta lambda*/2", ylabel="depth L",
               title="all-scalar" if w == 1 else f"width {w}")  # fmt: skip
    handles = [mpl.patches.Patch(color=cmap(i), label=k) for i, k in flags.items()]
    fig.legend(handles=handles, loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


FIGURES = {
    "escape_contour": escape_contour,
    "escape_steps": escape_steps,
    "escape_phase": escape_phase,
}
