"""Figures of the channel dataset (``results/channel.zarr``).

Every figure draws a panel saying what is missing instead of failing when the dataset lacks the
variables or geometries it needs (e.g. no slab geometry, or a store written before a variable
existed), and a panel saying ``"no finite data:"`` and why when it has nothing finite to show
(every point failed, or no molecule was absorbed so that relative errors are undefined).
Logarithmic axes are only set on panels with positive finite coordinates.
"""

from __future__ import annotations

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import style

__all__ = [
    "FIGURES",
    "channel_dt",
    "channel_dt_exact",
    "channel_gap",
    "channel_model_error",
    "channel_response",
    "channel_slab",
]

#: model key -> (legend label, line style, colour); the simulation is drawn with markers only
MODELS = {
    "exact": ("exact", "-", style.OKABE_ITO["black"]),
    "first_order": ("first-order", "--", style.OKABE_ITO["orange"]),
    "image_chain": ("image chain", "-.", style.OKABE_ITO["bluish_green"]),
    "free": ("free space", ":", style.OKABE_ITO["vermillion"]),
}
SIM_COLOUR = style.OKABE_ITO["blue"]
GAP_LABEL = "gap RX–plane"


def _absorbing(ds: xr.Dataset) -> xr.Dataset:
    """Select the perfectly absorbing receiver (reactivity inf), else the first reactivity.

    Stores written before the ``reactivity`` axis existed have no such dimension: unchanged.
    """
    if "reactivity" not in ds.dims:
        return ds
    k = np.asarray(ds.reactivity.values, dtype=float)
    return ds.isel(reactivity=int(np.flatnonzero(np.isposinf(k))[0]) if np.isposinf(k).any() else 0)


def _main_geometry(ds: xr.Dataset) -> str:
    names = [str(g) for g in ds.geometry.values]
    return "paper" if "paper" in names else names[0]


def _correction(ds: xr.Dataset) -> xr.Dataset:
    """Select the bridge correction if there is one, else the first."""
    corr = [str(c) for c in ds.correction.values]
    return ds.sel(correction="bridge") if "bridge" in corr else ds.isel(correction=0)


def _missing(ax: Axes, text: str) -> None:
    """Turn ``ax`` into a panel naming what the dataset lacks (a structural absence)."""
    ax.text(0.5, 0.5, style.wrap(text), ha="center", va="center", transform=ax.transAxes)
    ax.set(xticks=[], yticks=[])


def _is_slab(ds: xr.Dataset) -> np.ndarray:
    """Per geometry: True for a slab (``slab_width`` finite); False where the store has none."""
    if "slab_width" not in ds:
        return np.zeros(ds.sizes["geometry"], dtype=bool)
    w = ds.slab_width.isel({d: 0 for d in ds.slab_width.dims if d != "geometry"}).values
    return np.isfinite(w)


def _has(ds: xr.Dataset, *names: str) -> bool:
    return all(n in ds for n in names)


def _why(ds: xr.Dataset) -> str:
    """Why a selection has no finite value: failed points, no absorbed molecule, or nan/inf."""
    why = style.reason(ds, "")
    if why:
        return why
    if "fraction_sim" in ds:
        sim = np.asarray(ds.fraction_sim.values, dtype=float)
        if np.isfinite(sim).any() and not np.nanmax(np.abs(sim)) > 0:
            return "no molecule was absorbed (simulated F = 0)"
    return "the values are nan or inf"


def _gap_why(ds: xr.Dataset, default: str) -> str:
    """Why no geometry has a finite positive gap: no plane at all (``wall: false``), or else."""
    gap = np.asarray(ds.gap.values, dtype=float) if "gap" in ds else np.array([])
    if gap.size and np.isposinf(gap).all():
        return "no reflecting plane (channel.wall: false): the gap is infinite"
    return style.reason(ds, default)


def _legend(ax: Axes, **kwargs: object) -> None:
    """Add a legend to ``ax`` if it has labelled artists."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def channel_response(ds: xr.Dataset) -> Figure:
    """Plot simulated vs model hitting rate and cumulative fraction ("paper" geometry).

    Parameters
    ----------
    ds : Dataset
        The aggregated channel dataset.

    Returns
    -------
    Figure
        Hitting rate over time (left) and cumulative absorbed fraction F(t) (right).

    """
    ds = _absorbing(ds)
    g = _main_geometry(ds)
    sub = _correction(ds.sel(geometry=g)).isel(D=0, seed=0).sel(dt=float(ds.dt.min()))
    fig, axes = plt.subplots(1, 2, figsize=style.size("double", 2.7), layout="constrained")
    why = _why(sub)
    rates = [k for k in MODELS if f"rate_{k}" in sub and style.finite_any(sub[f"rate_{k}"])]
    fractions = [k for k in MODELS if style.finite_any(sub.get(f"fraction_{k}", np.nan))]
    ax = axes[0]
    if style.finite_any(sub.time_mid, sub.rate_sim) or rates:
        ax.errorbar(sub.time_mid, sub.rate_sim, yerr=sub.rate_se, fmt="o", ms=2, lw=0.8,
                    color=SIM_COLOUR, label="simulated")  # fmt: skip
        for key in rates:
            name, ls, colour = MODELS[key]
            ax.plot(sub.time_mid, sub[f"rate_{key}"], ls=ls, color=colour, label=name)
        ax.set(xlabel=style.label("time t", sub.time_mid),
               ylabel=style.label("hitting rate", sub.rate_sim), title=f"geometry {g}")  # fmt: skip
        _legend(ax)
    else:
        style.no_data(ax, why, f"geometry {g}")
    ax = axes[1]
    if style.finite_any(sub.time, sub.fraction_sim) or fractions:
        ax.plot(sub.time, sub.fraction_sim, "o", ms=3, color=SIM_COLOUR, label="simulated")
        for key in fractions:
            name, ls, colour = MODELS[key]
            ax.plot(sub.time, sub[f"fraction_{key}"], ls=ls, color=colour, label=name)
        f_inf = float(sub.fraction_exact_inf) if "fraction_exact_inf" in sub else np.nan
        if np.isfinite(f_inf):
            ax.axhline(f_inf, color="k", lw=0.8, ls=(0, (1, 2)), label=r"exact $F(\infty)$")
        ax.set(xlabel=style.label("time t", sub.time),
               ylabel=style.label("cumulative fraction F(t)", sub.fraction_sim))  # fmt: skip
        _legend(ax)
    else:
        style.no_data(ax, why)
    return fig


def channel_gap(ds: xr.Dataset) -> Figure:
    """Relative error of the first-order F(T) against the simulation, versus the gap.

    Parameters
    ----------
    ds : Dataset
        The aggregated channel dataset.

    Returns
    -------
    Figure
        One panel: error (%) against the gap of the half-space geometries (log scale).

    """
    ds = _absorbing(ds)
    sub = _correction(ds.isel(D=0, seed=0).sel(dt=float(ds.dt.min())))
    sub = sub.isel(geometry=np.flatnonzero(~_is_slab(ds)))
    fig, ax = plt.subplots(figsize=style.size("single", 2.6), layout="constrained")
    if sub.sizes["geometry"] == 0:
        _missing(ax, "no half-space geometries")
        return fig
    title = "First-order model error vs gap"
    gap = np.asarray(sub.gap.values, dtype=float)
    err = 100 * np.asarray(sub.relerr_first_order.values, dtype=float)
    if not style.finite_any(gap, err, positive=True):
        style.no_data(ax, _gap_why(sub, _why(sub)), title)
        return fig
    order = np.argsort(gap)
    ax.plot(gap[order], err[order], **style.series(0), label="first-order")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel=style.label(GAP_LABEL, sub.gap),
           ylabel=style.label("F(T) error vs simulation", "%"), title=title)  # fmt: skip
    ax.legend()
    return fig


def channel_dt(ds: xr.Dataset) -> Figure:
    """Plot the simulated F(T) against the time step, with and without the crossing correction.

    Parameters
    ----------
    ds : Dataset
        The aggregated channel dataset.

    Returns
    -------
    Figure
        One panel: simulated F(T) against dt (log scale), one series per correction, with the
        first-order and exact model values as horizontal lines.

    """
    ds = _absorbing(ds)
    g = _main_geometry(ds)
    sub = ds.sel(geometry=g).isel(D=0, seed=0)
    fig, ax = plt.subplots(figsize=style.size("single", 2.8), layout="constrained")
    title = f"Simulator accuracy vs dt,\ngeometry {g}"
    dts = np.asarray(sub.dt.values, dtype=float)
    last = sub.isel(time=-1)
    if not style.finite_any(dts[:, None], last.fraction_sim.transpose("dt", ...), positive=True):
        style.no_data(ax, _why(sub), title)
        return fig
    for i, corr in enumerate(sub.correction.values):
        s = last.sel(correction=corr)
        ax.errorbar(dts, s.fraction_sim, yerr=s.fraction_se, capsize=3, **style.series(i),
                    label=f"correction = {corr}")  # fmt: skip
    models = [("fraction_first_order", "first-order model", "--", "k"),
              ("fraction_exact", "exact model", "-.", style.OKABE_ITO["vermillion"])]  # fmt: skip
    for var, name, ls, colour in models:
        value = float(last[var].isel(dt=0, correction=0)) if var in last else np.nan
        if np.isfinite(value):
            ax.axhline(value, color=colour, ls=ls, lw=0.8, label=name)
    ax.set(xscale="log", xlabel=style.label("time step dt", sub.dt),
           ylabel=style.label("simulated F(T)", sub.fraction_sim), title=title)  # fmt: skip
    ax.legend()
    return fig


def _log_edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around sorted positive values, midway in log scale (x1.5 beyond the ends)."""
    logs = np.log(values)
    if values.size == 1:
        return np.array([values[0] / 1.5, values[0] * 1.5])
    mid = 0.5 * (logs[1:] + logs[:-1])
    return np.exp(np.concatenate([[2 * logs[0] - mid[0]], mid, [2 * logs[-1] - mid[-1]]]))


def channel_model_error(ds: xr.Dataset) -> Figure:
    """Map of the models' relative error of F(t) against the exact model over gap and time.

    Parameters
    ----------
    ds : Dataset
        The aggregated channel dataset.

    Returns
    -------
    Figure
        Two maps (first-order, image chain) over time and gap (log scale), one colour bar.

    """
    ds = _absorbing(ds)
    keys = [("first_order", "first-order"), ("image_chain", "image chain")]
    fig, axes = plt.subplots(1, 2, figsize=style.size("double", 2.8), layout="constrained")
    if not _has(ds, "relerr_first_order_exact", "relerr_image_chain_exact"):
        for ax in axes:
            _missing(ax, "no errors against the exact model in this dataset")
        return fig
    sub = ds.isel(D=0, dt=0, correction=0, seed=0)  # the models do not depend on these
    half = ~_is_slab(ds)
    if not half.any():
        for ax in axes:
            _missing(ax, "no half-space geometries")
        return fig
    gap = np.asarray(sub.gap.values, dtype=float)
    with style.quiet():  # gap is inf in free space (wall: false), nan for a failed point
        ok = half & np.isfinite(gap) & (gap > 0)
    titles = [f"{label} vs exact, F(t) error (%)" for _, label in keys]
    if not ok.any():
        for ax, title in zip(axes, titles, strict=True):
            style.no_data(ax, _gap_why(sub, "no finite positive gap"), title)
        return fig
    sub = sub.isel(geometry=np.flatnonzero(ok))
    sub = sub.isel(geometry=np.argsort(sub.gap.values))
    gaps = sub.gap.values
    time = sub.time.values
    t_edges = np.concatenate([[2 * time[0] - time[1] if time.size > 1 else 0.0], time])
    t_edges[0] = max(t_edges[0], 0.0)
    err = {k: 100 * sub[f"relerr_{k}_exact"].transpose("geometry", "time").values for k, _ in keys}
    finite = np.concatenate([e[np.isfinite(e)] for e in err.values()])
    lim = max(float(np.max(np.abs(finite))), 1e-6) if finite.size else 1.0
    mesh = None
    for ax, (key, _), title in zip(axes, keys, titles, strict=True):
        if not np.isfinite(err[key]).any():
            style.no_data(ax, _why(sub), title)
            continue
        mesh = ax.pcolormesh(t_edges, _log_edges(gaps), np.ma.masked_invalid(err[key]),
                             cmap="RdBu_r", vmin=-lim, vmax=lim)  # fmt: skip
        ax.set(yscale="log", xlabel=style.label("time t", sub.time),
               ylabel=style.label(GAP_LABEL, sub.gap), title=title)  # fmt: skip
    if all(ax.has_data() for ax in axes):  # one gap axis: shared, labelled on the left
        axes[1].sharey(axes[0])
        axes[1].label_outer()
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axes), label=style.label("relative error of F(t)", "%"))
    return fig


def channel_slab(ds: xr.Dataset) -> Figure:
    """F(T) against the slab width: exact, two-mirror first-order and simulation.

    Parameters
    ----------
    ds : Dataset
        The aggregated channel dataset.

    Returns
    -------
    Figure
        One panel: F(T) against the slab width (log scale), one colour per gap, with the
        half-space exact value of the same gap as a dotted line.

    """
    ds = _absorbing(ds)
    fig, ax = plt.subplots(figsize=style.size("double", 2.8), layout="constrained")
    slab = _is_slab(ds)
    if not slab.any() or "fraction_exact" not in ds:
        _missing(ax, "no slab geometries")
        return fig
    title = "Second reflecting plane: F(T) vs slab width"
    sub = _correction(ds.isel(D=0, seed=0).sel(dt=float(ds.dt.min())))
    half = sub.isel(geometry=np.flatnonzero(~slab))
    sub = sub.isel(geometry=np.flatnonzero(slab))
    last = sub.isel(time=-1)
    values = [last[v] for v in ("fraction_exact", "fraction_first_order", "fraction_sim")]
    if not any(style.finite_any(sub.slab_width, v, positive=True) for v in values):
        style.no_data(ax, _why(sub), title)
        return fig
    gaps = np.round(sub.gap.values, 9)
    t_end = float(ds.time[-1])
    for i, gap in enumerate(np.unique(gaps[np.isfinite(gaps)])):
        s = sub.isel(geometry=np.flatnonzero(gaps == gap))
        s = s.isel(geometry=np.argsort(s.slab_width.values))
        w = s.slab_width.values
        last = s.isel(time=-1)
        colour = style.PALETTE[i % len(style.PALETTE)]
        ax.plot(w, last.fraction_exact, "o-", color=colour, label=f"exact, gap {gap:g} µm")
        ax.plot(w, last.fraction_first_order, "s--", color=colour, mfc="none",
                label=f"two-mirror first-order, gap {gap:g} µm")  # fmt: skip
        ax.errorbar(w, last.fraction_sim, yerr=last.fraction_se, fmt="x", color=colour,
                    capsize=3, label=f"simulation, gap {gap:g} µm")  # fmt: skip
        same = np.flatnonzero(np.isclose(half.gap.values, gap)) if half.sizes["geometry"] else []
        if len(same):
            f_half = float(half.fraction_exact.isel(geometry=same[0], time=-1))
            if np.isfinite(f_half):
                ax.axhline(f_half, color=colour, ls=":", lw=0.8, label="half-space, exact")
    ax.set(xscale="log", xlabel=style.label("slab width W", sub.slab_width),
           ylabel=style.label(f"F(T = {t_end:g} s)", sub.fraction_exact), title=title)  # fmt: skip
    fig.legend(loc="outside right upper")
    return fig


def channel_dt_exact(ds: xr.Dataset) -> Figure:
    """Plot the simulator error against the exact model vs dt, per correction.

    Parameters
    ----------
    ds : Dataset
        The aggregated channel dataset.

    Returns
    -------
    Figure
        F(T) error of the simulation against the exact model (left) and the RMS z-score over
        time (right), against dt (log scale), one series per correction.

    """
    ds = _absorbing(ds)
    fig, axes = plt.subplots(1, 2, figsize=style.size("double", 2.7), layout="constrained")
    if not _has(ds, "fraction_exact", "zscore_sim_exact"):
        for ax in axes:
            _missing(ax, "no exact model in this dataset")
        return fig
    g = _main_geometry(ds)
    sub = ds.sel(geometry=g).isel(D=0, seed=0)
    dts = np.asarray(sub.dt.values, dtype=float)
    rel, rel_se, rms = {}, {}, {}
    with style.quiet():
        for corr in sub.correction.values:
            s = sub.sel(correction=corr).isel(time=-1)
            ref = np.asarray(s.fraction_exact.values, dtype=float)
            rel[corr] = 100 * (s.fraction_sim.values / ref - 1)
            rel_se[corr] = 100 * s.fraction_se.values / ref
            z = sub.zscore_sim_exact.sel(correction=corr).transpose("dt", "time").values
            n = np.isfinite(z).sum(axis=1)
            rms[corr] = np.sqrt(np.where(n > 0, np.nansum(z**2, axis=1), np.nan) / np.maximum(n, 1))
    titles = [f"Simulator vs exact model, geometry {g}", "(F_sim - F_exact) / SE"]
    why = _why(sub)
    ax = axes[0]
    if any(style.finite_any(dts, r, positive=True) for r in rel.values()):
        for i, corr in enumerate(rel):
            ax.errorbar(dts, rel[corr], yerr=rel_se[corr], capsize=3, **style.series(i),
                        label=f"correction = {corr}")  # fmt: skip
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xscale="log", xlabel=style.label("time step dt", sub.dt),
               ylabel=style.label("F(T) error vs exact", "%"), title=titles[0])  # fmt: skip
        ax.legend()
    else:
        style.no_data(ax, why, titles[0])
    ax = axes[1]
    if any(style.finite_any(dts, r, positive=True) for r in rms.values()):
        for i, corr in enumerate(rms):
            ax.plot(dts, rms[corr], **style.series(i), label=f"correction = {corr}")
        ax.axhline(1, color="k", lw=0.8, ls=":")
        ax.set(xscale="log", xlabel=style.label("time step dt", sub.dt),
               ylabel=style.label("RMS z-score over time", sub.zscore_sim_exact),
               title=titles[1])  # fmt: skip
        ax.legend()
    else:
        if why == "no molecule was absorbed (simulated F = 0)":
            why += ": the standard error is 0 and no z-score is defined"
        style.no_data(ax, why, titles[1])
    return fig


FIGURES = {
    "channel_response": channel_response,
    "channel_gap": channel_gap,
    "channel_dt": channel_dt,
    "channel_model_error": channel_model_error,
    "channel_slab": channel_slab,
    "channel_dt_exact": channel_dt_exact,
}

# the link figures (BER, achievable rate, reactive receiver) live in their own module
from .channel_link import LINK_FIGURES  # noqa: E402

FIGURES.update(LINK_FIGURES)
