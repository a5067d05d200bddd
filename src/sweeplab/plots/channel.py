"""Figures of the channel dataset (``results/channel.zarr``)."""

from __future__ import annotations

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure


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


FIGURES = {
    "channel_response": channel_response,
    "channel_gap": channel_gap,
    "channel_dt": channel_dt,
}
