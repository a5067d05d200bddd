"""Link figures of the channel dataset: BER, rate, first-order cost, reactive receiver.

Issue 21. Drawn by :mod:`sweeplab.plots.channel`, whose ``FIGURES`` lists them (this module has no
``FIGURES`` of its own: figure modules are named for their experiment). As there, a panel
without finite data says so (``"no finite data:"`` and why) and a structural absence (no slab,
no reactivity axis) is named; the closed forms are nan for a finite reactivity, so every figure
but :func:`channel_reactivity` shows the perfectly absorbing receiver.
"""

from __future__ import annotations

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import style
from .channel import (
    GAP_LABEL,
    MODELS,
    SIM_COLOUR,
    _absorbing,
    _correction,
    _gap_why,
    _is_slab,
    _legend,
    _log_edges,
    _missing,
    _why,
)

__all__ = ["LINK_FIGURES", "channel_ber", "channel_rate", "channel_rate_cost",
           "channel_reactivity"]  # fmt: skip

RATE_LABEL = "achievable rate at the BER target"


def _nice(value: float, _pos: int | None = None) -> str:
    """Tick text of a logarithmic axis: ``%g`` at 1, 2 and 5 times a power of ten, else none."""
    if not value > 0:
        return ""
    mantissa = value / 10 ** np.floor(np.log10(value) + 1e-9)
    return f"{value:g}" if any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5)) else ""


def _plain_log(ax: Axes, *axes: str) -> None:
    """Label the logarithmic ``axes`` ("x", "y") at 1-2-5 steps, as plain numbers.

    matplotlib's default labels every minor tick of an axis spanning less than a decade in
    scientific notation, which overlaps on short ranges (symbol times 0.02 .. 0.4 s).
    """
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        if axis.get_scale() == "log":
            axis.set_major_formatter(mticker.FuncFormatter(_nice))
            axis.set_minor_formatter(mticker.FuncFormatter(_nice))


def _base(ds: xr.Dataset) -> xr.Dataset:
    """First D and seed, the smallest dt, the bridge correction (the simulation drawn)."""
    return _correction(ds.isel(D=0, seed=0).sel(dt=float(ds.dt.min())))


def _values(da: xr.DataArray | None) -> np.ndarray:
    return np.asarray(da.values if da is not None else np.nan, dtype=float)


def _positive(y: np.ndarray) -> np.ndarray:
    """``y`` with values <= 0 (a BER that underflowed) as nan, for a logarithmic axis."""
    with style.quiet():
        return np.where(y > 0, y, np.nan)


def _geometry_title(sub: xr.Dataset, name: str) -> str:
    gap = float(sub.gap.sel(geometry=name)) if "gap" in sub else np.nan
    text = f"geometry {name}"
    if np.isfinite(gap):
        text += f", gap {gap:.3g} µm"
    width = float(sub.slab_width.sel(geometry=name)) if "slab_width" in sub else np.nan
    if np.isfinite(width):
        text += f", slab W = {width:.3g} µm"
    return text


def _near_far(sub: xr.Dataset) -> list[str]:
    """Return the geometries nearest to and farthest from the plane x = 0 (one if they coincide)."""
    names = [str(g) for g in sub.geometry.values]
    gap = _values(sub.gap) if "gap" in sub else np.full(len(names), np.nan)
    ok = np.isfinite(gap)
    if not ok.any():
        return [names[0]]
    idx = np.flatnonzero(ok)
    near, far = idx[np.argmin(gap[ok])], idx[np.argmax(gap[ok])]
    return [names[near]] if near == far else [names[near], names[far]]


def _ber_panel(ax: Axes, s: xr.Dataset, title: str) -> None:
    """BER against Ts for every model and the simulation (SE band) of one geometry."""
    ts = _values(s.Ts)
    keys = [k for k in MODELS if style.finite_any(_positive(_values(s.get(f"ber_{k}"))))]
    sim = _positive(_values(s.get("ber_sim")))
    if not keys and not style.finite_any(sim):
        style.no_data(ax, _why(s), title)
        return
    for key in keys:
        name, ls, colour = MODELS[key]
        ax.plot(ts, _positive(_values(s[f"ber_{key}"])), ls=ls, marker=".", color=colour,
                label=name)  # fmt: skip
    if style.finite_any(sim):
        se = _values(s.get("ber_sim_se"))
        with style.quiet():
            lo = np.where(sim - se > 0, sim - se, sim / 10)
        ax.fill_between(ts, lo, sim + se, color=SIM_COLOUR, alpha=0.25, lw=0,
                        label="simulated ± SE")  # fmt: skip
        ax.plot(ts, sim, "o", ms=3, color=SIM_COLOUR)
    ax.set(xscale="log", yscale="log", xlabel=style.label("symbol time Ts", s.Ts),
           ylabel=style.label("bit error rate", s.get("ber_exact", "1")), title=title)  # fmt: skip
    _plain_log(ax, "x")
    _legend(ax, fontsize="small")


def channel_ber(ds: xr.Dataset) -> Figure:
    """Bit error rate against the symbol time, every model and the simulation, near and far.

    Parameters
    ----------
    ds : Dataset
        The aggregated channel dataset.

    Returns
    -------
    Figure
        One panel per geometry shown: the one nearest to the plane x = 0 and the farthest
        (one panel if the grid has one gap). Log-log; the simulation with a ±1 SE band.

    """
    if "ber_exact" not in ds:
        fig, ax = plt.subplots(figsize=style.size("single", 2.6), layout="constrained")
        _missing(ax, "no link metrics (ber_*) in this dataset")
        return fig
    sub = _base(_absorbing(ds))
    names = _near_far(sub)
    width = "double" if len(names) > 1 else "single"
    fig, axes = plt.subplots(1, len(names), figsize=style.size(width, 2.8), layout="constrained",
                             squeeze=False)  # fmt: skip
    for ax, name in zip(axes[0], names, strict=True):
        _ber_panel(ax, sub.sel(geometry=name), _geometry_title(sub, name))
    return fig


def _rate_series(ax: Axes, x: np.ndarray, s: xr.Dataset, suffix: str = "") -> bool:
    """Draw max_rate_* of every model and the simulation against ``x``; whether any was drawn."""
    order = np.argsort(x)
    drawn = False
    for key, (name, ls, colour) in MODELS.items():
        y = _values(s.get(f"max_rate_{key}"))
        if style.finite_any(x, y, positive=True):
            ax.plot(x[order], y[order], ls=ls, marker=".", color=colour, label=name + suffix)
            drawn = True
    y = _values(s.get("max_rate_sim"))
    if style.finite_any(x, y, positive=True):
        ax.plot(x[order], y[order], "o", ms=4, color=SIM_COLOUR, mfc="none",
                label="simulated" + suffix)  # fmt: skip
        drawn = True
    return drawn


def channel_rate(ds: xr.Dataset) -> Figure:
    """Achievable rate at the BER target against the gap (half-space) and the slab width.

    Parameters
    ----------
    ds : Dataset
        The aggregated channel dataset.

    Returns
    -------
    Figure
        A panel against the gap for the half-space geometries and one against the slab width
        for the slabs (the panels the grid has geometries for), every model and the simulation;
        logarithmic x, linear rate from 0.

    """
    if "max_rate_exact" not in ds:
        fig, ax = plt.subplots(figsize=style.size("single", 2.6), layout="constrained")
        _missing(ax, "no link metrics (max_rate_*) in this dataset")
        return fig
    sub = _base(_absorbing(ds))
    slab = _is_slab(sub)
    panels = [("half", np.flatnonzero(~slab))] if (~slab).any() else []
    panels += [("slab", np.flatnonzero(slab))] if slab.any() else []
    width = "double" if len(panels) > 1 else "single"
    fig, axes = plt.subplots(1, len(panels), figsize=style.size(width, 2.8), layout="constrained",
                             squeeze=False)  # fmt: skip
    for ax, (kind, idx) in zip(axes[0], panels, strict=True):
        s = sub.isel(geometry=idx)
        if kind == "half":
            title = "Achievable rate vs gap (half-space)"
            x = _values(s.gap)
            if not _rate_series(ax, x, s):
                style.no_data(ax, _gap_why(s, _why(s)), title)
                continue
            ax.set(xscale="log", xlabel=style.label(GAP_LABEL, s.gap), title=title)
        else:
            title = "Achievable rate vs slab width"
            gaps = np.round(_values(s.gap), 9)
            drawn = False
            for gap in np.unique(gaps[np.isfinite(gaps)]):
                g = s.isel(geometry=np.flatnonzero(gaps == gap))
                drawn |= _rate_series(ax, _values(g.slab_width), g, f", gap {gap:g} µm")
            if not drawn:
                style.no_data(ax, _why(s), title)
                continue
            ax.set(xscale="log", xlabel=style.label("slab width W", s.slab_width), title=title)
        ax.set(ylabel=style.label(RATE_LABEL, s.max_rate_exact))
        ax.set_ylim(bottom=0)
        _plain_log(ax, "x")
        _legend(ax, fontsize="small")
    return fig


def channel_rate_cost(ds: xr.Dataset) -> Figure:
    """Plot what the first-order model's error costs: its rate and BER against exact.

    Parameters
    ----------
    ds : Dataset
        The aggregated channel dataset.

    Returns
    -------
    Figure
        Left: relative error (%) of the first-order achievable rate against the exact one,
        against the gap (half-space line, slabs as separate markers). Right: map of
        log10(BER_first-order / BER_exact) over the gap (half-space) and the symbol time.

    """
    fig, axes = plt.subplots(1, 2, figsize=style.size("double", 2.8), layout="constrained")
    needed = ("max_rate_relerr_first_order_exact", "ber_relerr_first_order_exact")
    if not all(n in ds for n in needed):
        for ax in axes:
            _missing(ax, "no link errors against the exact model in this dataset")
        return fig
    sub = _base(_absorbing(ds))
    slab = _is_slab(sub)
    gap = _values(sub.gap)
    err = 100 * _values(sub.max_rate_relerr_first_order_exact)
    ax = axes[0]
    title = "First-order model: rate error vs exact"
    with style.quiet():
        ok = np.isfinite(gap) & (gap > 0) & np.isfinite(err)
    if not ok.any():
        style.no_data(ax, _gap_why(sub, _why(sub)), title)
    else:
        half = np.flatnonzero(ok & ~slab)
        half = half[np.argsort(gap[half])]
        if half.size:
            ax.plot(gap[half], err[half], **style.series(0), label="half-space")
        widths = _values(sub.slab_width)
        for i, w in enumerate(np.unique(widths[ok & slab])):
            at = np.flatnonzero(ok & slab & (widths == w))
            ax.plot(gap[at], err[at], ls="none", marker=style.series(i + 1)["marker"],
                    color=style.series(i + 1)["color"], label=f"slab W = {w:g} µm")  # fmt: skip
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xscale="log", xlabel=style.label(GAP_LABEL, sub.gap),
               ylabel=style.label("max_rate error vs exact", "%"), title=title)  # fmt: skip
        _plain_log(ax, "x")
        _legend(ax, fontsize="small")
    ax = axes[1]
    title = "First-order BER / exact BER"
    with style.quiet():
        keep = np.flatnonzero(~slab & np.isfinite(gap) & (gap > 0))
    if not keep.size:
        style.no_data(ax, _gap_why(sub, "no half-space geometry with a finite gap"), title)
        return fig
    s = sub.isel(geometry=keep)
    s = s.isel(geometry=np.argsort(_values(s.gap)))
    with style.quiet():
        ratio = np.log10(1 + s.ber_relerr_first_order_exact.transpose("geometry", "Ts").values)
    if not np.isfinite(ratio).any():
        style.no_data(ax, _why(s), title)
        return fig
    lim = max(float(np.nanmax(np.abs(np.where(np.isfinite(ratio), ratio, np.nan)))), 1e-3)
    edges = _log_edges(_values(s.Ts)), _log_edges(_values(s.gap))
    mesh = ax.pcolormesh(*edges, np.ma.masked_invalid(ratio), cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set(xscale="log", yscale="log", xlabel=style.label("symbol time Ts", s.Ts),
           ylabel=style.label(GAP_LABEL, s.gap), title=title)  # fmt: skip
    _plain_log(ax, "x", "y")
    fig.colorbar(mesh, ax=ax, label=style.label("log10 BER ratio", "1"))
    return fig


def channel_reactivity(ds: xr.Dataset) -> Figure:
    """F(t) and the achievable rate against the receiver's reactivity k, nearest the wall.

    Parameters
    ----------
    ds : Dataset
        The aggregated channel dataset.

    Returns
    -------
    Figure
        The geometry nearest to the plane x = 0. Left: F(t) per reactivity (exact model lines,
        simulation markers). Right: exact and simulated achievable rate against finite k (log
        scale), the absorbing receiver (k = inf) as horizontal lines.

    """
    fig, axes = plt.subplots(1, 2, figsize=style.size("double", 2.8), layout="constrained")
    if "reactivity" not in ds.dims or "fraction_exact" not in ds:
        for ax in axes:
            _missing(ax, "no reactivity axis in this dataset")
        return fig
    sub = _base(ds)
    near = _near_far(sub.isel(reactivity=-1))[0]
    titles = [f"F(t) vs reactivity,\n{_geometry_title(sub.isel(reactivity=-1), near)}",
              "Achievable rate vs reactivity"]  # fmt: skip
    sub = sub.sel(geometry=near)
    ks = _values(sub.reactivity)
    why = _why(sub)
    ax = axes[0]
    drawn = False
    for i, k in enumerate(ks):
        s = sub.isel(reactivity=i)
        colour = style.PALETTE[i % len(style.PALETTE)]
        name = "k = ∞" if np.isinf(k) else f"k = {k:g} µm/s"
        if style.finite_any(s.time, s.fraction_exact):
            ax.plot(s.time, s.fraction_exact, "-", color=colour, label=f"exact, {name}")
            drawn = True
        if style.finite_any(s.time, s.fraction_sim):
            every = max(1, s.sizes["time"] // 25)  # markers sparse enough to show the line
            ax.plot(s.time, s.fraction_sim, "o", ms=3, color=colour, mfc="none",
                    markevery=every, label=f"simulated, {name}")  # fmt: skip
            drawn = True
    if drawn:
        ax.set(xlabel=style.label("time t", sub.time),
               ylabel=style.label("cumulative fraction F(t)", sub.fraction_exact),
               title=titles[0])  # fmt: skip
        _legend(ax, fontsize="small")
    else:
        style.no_data(ax, why, titles[0])
    ax = axes[1]
    rates = {"exact": _values(sub.get("max_rate_exact")), "sim": _values(sub.get("max_rate_sim"))}
    if not any(style.finite_any(r) for r in rates.values()):
        style.no_data(ax, why, titles[1])
        return fig
    finite = np.isfinite(ks)
    styles = {"exact": ("exact", "-", MODELS["exact"][2]), "sim": ("simulated", ":", SIM_COLOUR)}
    for src, (name, ls, colour) in styles.items():
        r = rates[src]
        if style.finite_any(ks[finite], r[finite]):
            ax.plot(ks[finite], r[finite], ls=ls, marker="o", color=colour, label=name)
        inf = r[~finite]
        if inf.size and np.isfinite(inf[0]):
            ax.axhline(inf[0], ls=ls, color=colour, lw=0.8, label=f"{name}, k = ∞")
    if finite.any():
        ax.set(xscale="log")
        _plain_log(ax, "x")
    else:
        titles[1] += " (k = ∞ only)"
    ax.set(
        xlabel=style.label("reactivity k", sub.reactivity),
        ylabel=style.label(RATE_LABEL, sub.get("max_rate_exact", "1")),
        title=titles[1],
    )
    ax.set_ylim(bottom=0)
    _legend(ax, fontsize="small")
    return fig


LINK_FIGURES = {
    "channel_ber": channel_ber,
    "channel_rate": channel_rate,
    "channel_rate_cost": channel_rate_cost,
    "channel_reactivity": channel_reactivity,
}
