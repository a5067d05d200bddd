"""Matplotlib figures (PNG + SVG) of the three aggregated datasets.

Every function takes an opened dataset and returns a matplotlib Figure; :func:`draw_all` writes
them under ``results/figures``. Figures read only the stores (nothing here imports the sweep
layer); the loss-contour figure evaluates the loss around the minimizer stored in ``w_star``.
Which figures an experiment has is declared by its experiment module (a test checks the two agree).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from sweeplab import dmf

__all__ = ["FIGURES", "draw_all"]

logger = logging.getLogger(__name__)


def _flags(var: xr.DataArray) -> dict[int, str]:
    """Code -> meaning of a CF flag variable (``flag_values`` / ``flag_meanings``)."""
    values = [int(v) for v in np.atleast_1d(var.attrs["flag_values"])]
    return dict(zip(values, var.attrs["flag_meanings"].split(), strict=True))


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


def sharpness_overview(ds: xr.Dataset) -> Figure:
    """Exact sharpness against the bound (S) and the flattest value, across depth and width."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for fam in ds.family.values:
        sub = ds.sel(family=fam)
        ratio_b = (sub.bound / sub.exact).mean(["seed", "dio"])
        ratio_f = (sub.exact / sub.flattest).mean(["seed", "dio"])
        for w in ds.width.values:
            axes[0].plot(ds.depth, ratio_b.sel(width=w), "o-", label=f"{fam}, width {w}")
            axes[1].plot(ds.depth, ratio_f.sel(width=w), "o-", label=f"{fam}, width {w}")
    axes[0].set(xlabel="depth L", ylabel="bound (S) / exact", title="Upper bound tightness")
    axes[1].set(xlabel="depth L", ylabel="exact / flattest", yscale="log",
                title="Sharpness above the flattest minimum")  # fmt: skip
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    return fig


def _main_geometry(ds: xr.Dataset) -> str:
    names = [str(g) for g in ds.geometry.values]
    return "paper" if "paper" in names else names[0]


def channel_response(ds: xr.Dataset) -> Figure:
    """Plot simulated vs analytic hitting rate and cumulative fraction ("paper" geometry)."""
    g = _main_geometry(ds)
    sub = ds.sel(geometry=g, correction="bridge" if "bridge" in ds.correction else ds.correction[0])
    sub = sub.isel(D=0, seed=0).sel(dt=float(ds.dt.min()))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].errorbar(sub.time_mid, sub.rate_sim, yerr=sub.rate_se, fmt=".", ms=2, label="simulated")
    axes[0].plot(sub.time_mid, sub.rate_first_order, label="first-order (half-space)")
    axes[0].plot(sub.time_mid, sub.rate_free, "--", label="free space")
    axes[0].set(xlabel="t (s)", ylabel="hitting rate (1/s)", title=f"geometry {g}")
    axes[1].plot(sub.time, sub.fraction_sim, label="simulated")
    axes[1].plot(sub.time, sub.fraction_first_order, label="first-order")
    axes[1].plot(sub.time, sub.fraction_free, "--", label="free space")
    axes[1].axhline(float(sub.fraction_exact_inf), color="k", lw=0.8, label="exact F(inf)")
    axes[1].set(xlabel="t (s)", ylabel="cumulative fraction F(t)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def channel_gap(ds: xr.Dataset) -> Figure:
    """Relative error of the first-order F(T) against the simulation, versus the gap."""
    sub = ds.isel(D=0, seed=0).sel(dt=float(ds.dt.min()))
    sub = sub.sel(correction="bridge") if "bridge" in ds.correction else sub.isel(correction=0)
    order = np.argsort(sub.gap.values)
    fig, ax = plt.subplots(figsize=(5.2, 4))
    ax.plot(sub.gap.values[order], 100 * sub.relerr_first_order.values[order], "o-",
            label="first-order")  # fmt: skip
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="gap RX-plane (um)", ylabel="F(T) error vs simulation (%)",
           title="First-order model error vs gap")  # fmt: skip
    ax.legend()
    return fig


def channel_dt(ds: xr.Dataset) -> Figure:
    """Plot the simulated F(T) against the time step, with and without the crossing correction."""
    g = _main_geometry(ds)
    sub = ds.sel(geometry=g).isel(D=0, seed=0)
    fig, ax = plt.subplots(figsize=(5.2, 4))
    for corr in sub.correction.values:
        s = sub.sel(correction=corr)
        ax.errorbar(s.dt, s.fraction_sim.isel(time=-1), yerr=s.fraction_se.isel(time=-1),
                    fmt="o-", capsize=3, label=f"correction = {corr}")  # fmt: skip
    ax.axhline(float(sub.fraction_first_order.isel(time=-1, dt=0, correction=0)), color="k",
               lw=0.8, label="first-order model")  # fmt: skip
    ax.set(xscale="log", xlabel="dt (s)", ylabel="simulated F(T)",
           title=f"Simulator accuracy vs dt, geometry {g}")  # fmt: skip
    ax.legend(fontsize=7)
    return fig


FIGURES: dict[str, tuple[str, Callable[[xr.Dataset], Figure]]] = {
    "escape_contour": ("escape", escape_contour),
    "escape_steps": ("escape", escape_steps),
    "escape_phase": ("escape", escape_phase),
    "sharpness_overview": ("sharpness", sharpness_overview),
    "channel_response": ("channel", channel_response),
    "channel_gap": ("channel", channel_gap),
    "channel_dt": ("channel", channel_dt),
}


def draw_all(datasets: Iterable[Path], out: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Draw the named figures (all by default) from aggregated stores.

    Parameters
    ----------
    datasets : iterable of Path
        Aggregated stores; each figure uses the one whose ``experiment`` attribute matches.
        Empty: ``results/<experiment>.zarr``.
    out : Path
        Output directory (``<name>.png`` at 200 dpi and ``<name>.svg``).
    names : iterable of str, optional
        Figure names (keys of :data:`FIGURES`).

    Returns
    -------
    list of Path
        The written files.

    """
    by_experiment: dict[str, Path] = {}
    for path in datasets:
        with xr.open_zarr(path) as ds:
            by_experiment[str(ds.attrs.get("experiment"))] = Path(path)
    wanted = list(names or FIGURES)
    for name in wanted:
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r}; expected one of {sorted(FIGURES)}")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    cache: dict[str, xr.Dataset] = {}
    for name in wanted:
        experiment, fn = FIGURES[name]
        if experiment not in cache:
            path = by_experiment.get(experiment, Path("results") / f"{experiment}.zarr")
            if not path.exists():
                raise FileNotFoundError(f"figure {name} needs the {experiment} dataset {path}")
            cache[experiment] = xr.open_zarr(path).load()
        fig = fn(cache[experiment])
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=200)
            written.append(path)
        plt.close(fig)
        logger.info("figure %s written", name)
    return written
