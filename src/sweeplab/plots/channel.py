"""Figures of the channel dataset (``results/channel.zarr``).

Every figure draws a panel saying what is missing instead of failing when the dataset lacks the
variables or geometries it needs (e.g. no slab geometry, or a store written before a variable
existed).
"""

from __future__ import annotations

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def _main_geometry(ds: xr.Dataset) -> str:
    names = [str(g) for g in ds.geometry.values]
    return "paper" if "paper" in names else names[0]


def _correction(ds: xr.Dataset) -> xr.Dataset:
    """Select the bridge correction if there is one, else the first."""
    corr = [str(c) for c in ds.correction.values]
    return ds.sel(correction="bridge") if "bridge" in corr else ds.isel(correction=0)


def _missing(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set(xticks=[], yticks=[])


def _is_slab(ds: xr.Dataset) -> np.ndarray:
    """Per geometry: True for a slab (``slab_width`` finite); False where the store has none."""
    if "slab_width" not in ds:
        return np.zeros(ds.sizes["geometry"], dtype=bool)
    w = ds.slab_width.isel({d: 0 for d in ds.slab_width.dims if d != "geometry"}).values
    return np.isfinite(w)


def _has(ds: xr.Dataset, *names: str) -> bool:
    return all(n in ds for n in names)


def channel_response(ds: xr.Dataset) -> Figure:
    """Plot simulated vs model hitting rate and cumulative fraction ("paper" geometry)."""
    g = _main_geometry(ds)
    sub = _correction(ds.sel(geometry=g)).isel(D=0, seed=0).sel(dt=float(ds.dt.min()))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].errorbar(sub.time_mid, sub.rate_sim, yerr=sub.rate_se, fmt=".", ms=2, label="simulated")
    curves = [
        ("exact", "exact", "-", "k"),
        ("first_order", "first-order", "-", "C1"),
        ("image_chain", "image chain", "-.", "C2"),
        ("free", "free space", "--", "C3"),
    ]
    for key, label, style, color in curves:
        if f"rate_{key}" in sub and bool(sub[f"rate_{key}"].notnull().any()):
            axes[0].plot(sub.time_mid, sub[f"rate_{key}"], style, color=color, label=label)
            axes[1].plot(sub.time, sub[f"fraction_{key}"], style, color=color, label=label)
    axes[0].set(xlabel="t (s)", ylabel="hitting rate (1/s)", title=f"geometry {g}")
    axes[1].plot(sub.time, sub.fraction_sim, ".", ms=3, color="C0", label="simulated")
    axes[1].axhline(float(sub.fraction_exact_inf), color="k", lw=0.8, ls=":", label="exact F(inf)")
    axes[1].set(xlabel="t (s)", ylabel="cumulative fraction F(t)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def channel_gap(ds: xr.Dataset) -> Figure:
    """Relative error of the first-order F(T) against the simulation, versus the gap."""
    sub = _correction(ds.isel(D=0, seed=0).sel(dt=float(ds.dt.min())))
    sub = sub.isel(geometry=np.flatnonzero(~_is_slab(ds)))
    fig, ax = plt.subplots(figsize=(5.2, 4))
    if sub.sizes["geometry"] == 0:
        _missing(ax, "no half-space geometries")
        return fig
    order = np.argsort(sub.gap.values)
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
    if "fraction_exact" in sub:
        ax.axhline(float(sub.fraction_exact.isel(time=-1, dt=0, correction=0)), color="C3",
                   ls="--", lw=0.8, label="exact model")  # fmt: skip
    ax.set(xscale="log", xlabel="dt (s)", ylabel="simulated F(T)",
           title=f"Simulator accuracy vs dt, geometry {g}")  # fmt: skip
    ax.legend(fontsize=7)
    return fig


def _log_edges(values: np.ndarray) -> np.ndarray:
    """Cell edges around sorted positive values, midway in log scale (x1.5 beyond the ends)."""
    logs = np.log(values)
    if values.size == 1:
        return np.array([values[0] / 1.5, values[0] * 1.5])
    mid = 0.5 * (logs[1:] + logs[:-1])
    return np.exp(np.concatenate([[2 * logs[0] - mid[0]], mid, [2 * logs[-1] - mid[-1]]]))


def channel_model_error(ds: xr.Dataset) -> Figure:
    """Map of the models' relative error of F(t) against the exact model over gap and time."""
    keys = [("first_order", "first-order"), ("image_chain", "image chain")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    if not _has(ds, "relerr_first_order_exact", "relerr_image_chain_exact"):
        for ax in axes:
            _missing(ax, "no errors against the exact model in this dataset")
        return fig
    sub = ds.isel(D=0, dt=0, correction=0, seed=0)  # the models do not depend on these
    sub = sub.isel(geometry=np.flatnonzero(~_is_slab(ds) & np.isfinite(sub.gap.values)))
    if sub.sizes["geometry"] == 0:
        for ax in axes:
            _missing(ax, "no half-space geometries")
        return fig
    sub = sub.isel(geometry=np.argsort(sub.gap.values))
    gaps = sub.gap.values
    time = sub.time.values
    t_edges = np.concatenate([[2 * time[0] - time[1] if time.size > 1 else 0.0], time])
    t_edges[0] = max(t_edges[0], 0.0)
    err = {k: 100 * sub[f"relerr_{k}_exact"].transpose("geometry", "time").values for k, _ in keys}
    finite = np.concatenate([e[np.isfinite(e)] for e in err.values()])
    lim = max(float(np.max(np.abs(finite))), 1e-6) if finite.size else 1.0
    for ax, (key, label) in zip(axes, keys, strict=True):
        mesh = ax.pcolormesh(t_edges, _log_edges(gaps), np.ma.masked_invalid(err[key]),
                             cmap="RdBu_r", vmin=-lim, vmax=lim)  # fmt: skip
        ax.set(yscale="log", xlabel="t (s)", title=f"{label} vs exact, F(t) error (%)")
    axes[0].set_ylabel("gap RX-plane (um)")
    fig.colorbar(mesh, ax=list(axes), label="relative error of F(t) (%)")
    return fig


def channel_slab(ds: xr.Dataset) -> Figure:
    """F(T) against the slab width: exact, two-mirror first-order and simulation."""
    fig, ax = plt.subplots(figsize=(5.6, 4))
    slab = _is_slab(ds)
    if not slab.any() or "fraction_exact" not in ds:
        _missing(ax, "no slab geometries")
        return fig
    sub = _correction(ds.isel(D=0, seed=0).sel(dt=float(ds.dt.min())))
    half = sub.isel(geometry=np.flatnonzero(~slab))
    sub = sub.isel(geometry=np.flatnonzero(slab))
    gaps = np.round(sub.gap.values, 9)
    t_end = float(ds.time[-1])
    for i, gap in enumerate(np.unique(gaps)):
        s = sub.isel(geometry=np.flatnonzero(gaps == gap))
        s = s.isel(geometry=np.argsort(s.slab_width.values))
        w = s.slab_width.values
        last = s.isel(time=-1)
        ax.plot(w, last.fraction_exact, "o-", color=f"C{i}", label=f"exact, gap {gap:g} um")
        ax.plot(w, last.fraction_first_order, "s--", color=f"C{i}", mfc="none",
                label=f"two-mirror first-order, gap {gap:g} um")  # fmt: skip
        ax.errorbar(w, last.fraction_sim, yerr=last.fraction_se, fmt="x", color=f"C{i}",
                    capsize=3, label=f"simulation, gap {gap:g} um")  # fmt: skip
        same = np.flatnonzero(np.isclose(half.gap.values, gap)) if half.sizes["geometry"] else []
        if len(same):
            f_half = float(half.fraction_exact.isel(geometry=same[0], time=-1))
            ax.axhline(f_half, color=f"C{i}", ls=":", lw=0.8, label="half-space, exact")
    ax.set(xscale="log", xlabel="slab width W (um)", ylabel=f"F(T = {t_end:g} s)",
           title="Second reflecting plane: F(T) vs slab width")  # fmt: skip
    ax.legend(fontsize=6)
    return fig


def channel_dt_exact(ds: xr.Dataset) -> Figure:
    """Plot the simulator error against the exact model vs dt, per correction."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if not _has(ds, "fraction_exact", "zscore_sim_exact"):
        for ax in axes:
            _missing(ax, "no exact model in this dataset")
        return fig
    g = _main_geometry(ds)
    sub = ds.sel(geometry=g).isel(D=0, seed=0)
    dts = sub.dt.values
    for corr in sub.correction.values:
        s = sub.sel(correction=corr).isel(time=-1)
        ref = s.fraction_exact.values
        rel = 100 * (s.fraction_sim.values / ref - 1)
        axes[0].errorbar(dts, rel, yerr=100 * s.fraction_se.values / ref, fmt="o-", capsize=3,
                         label=f"correction = {corr}")  # fmt: skip
        z = sub.zscore_sim_exact.sel(correction=corr).transpose("dt", "time").values
        n = np.isfinite(z).sum(axis=1)
        rms = np.sqrt(np.where(n > 0, np.nansum(z**2, axis=1), np.nan) / np.maximum(n, 1))
        axes[1].plot(dts, rms, "o-", label=f"correction = {corr}")
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set(xscale="log", xlabel="dt (s)", ylabel="F(T) error vs exact (%)",
                title=f"Simulator vs exact model, geometry {g}")  # fmt: skip
    axes[1].axhline(1, color="k", lw=0.8, ls=":")
    axes[1].set(xscale="log", xlabel="dt (s)", ylabel="RMS z-score over time",
                title="(F_sim - F_exact) / SE")  # fmt: skip
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


FIGURES = {
    "channel_response": channel_response,
    "channel_gap": channel_gap,
    "channel_dt": channel_dt,
    "channel_model_error": channel_model_error,
    "channel_slab": channel_slab,
    "channel_dt_exact": channel_dt_exact,
}
