"""Figures of the edge-of-stability dataset (``results/eos.zarr``).

Each figure draws one slice of the grid, chosen from the dataset alone: the spectrum with the
most modes (the first such), the smallest width that holds all its modes (else the largest),
the first seed. A panel with nothing finite to draw (every run diverged or failed) says so
(:func:`sweeplab.plots.style.no_data`); the GFS figure says so when the grid has no scalar chain.
"""

from __future__ import annotations

import json

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from . import style
from .style import flags as _flags

__all__ = [
    "FIGURES",
    "eos_balance",
    "eos_bifurcation",
    "eos_gfs",
    "eos_progressive",
    "eos_sharpness",
]

OUTCOME_COLOURS = {
    "converged": style.OKABE_ITO["blue"],
    "edge_of_stability": style.OKABE_ITO["orange"],
    "unconverged": style.OKABE_ITO["reddish_purple"],
    "diverged": style.OKABE_ITO["vermillion"],
    "none": "#999999",
}
ETA_LABEL = style.label(r"step size $\eta$")
MAX_CURVES = 6


def _n_modes(ds: xr.Dataset, spectrum: str) -> int:
    sv = ds.singular_value.sel(spectrum=spectrum).values
    with style.quiet():
        counts = np.isfinite(sv).sum(axis=-1)
    return int(counts.max()) if counts.size else 0


def _mode_slice(ds: xr.Dataset) -> tuple[xr.Dataset, str]:
    """Return the slice drawn: spectrum with most modes, smallest width holding them, first seed."""
    spectra = [str(s) for s in ds.spectrum.values]
    n = [_n_modes(ds, s) for s in spectra]
    spectrum = spectra[int(np.argmax(n))]
    widths = [int(w) for w in ds.width.values]
    wide = [w for w in widths if w >= max(n)]
    width = min(wide) if wide else max(widths)
    seed = int(ds.seed.values[0])
    sel = ds.sel(spectrum=spectrum, width=width, seed=seed)
    return sel, f"spectrum {spectrum}, width {width}, seed {seed}"


def _spectrum_lengths(ds: xr.Dataset) -> dict[str, int]:
    """Return spectrum name -> number of values, from the stored config (else the data)."""
    try:
        spectra = json.loads(ds.attrs["config"])["eos"]["spectra"]
        return {str(s): len(spectra[str(s)]) for s in ds.spectrum.values}
    except (KeyError, TypeError, ValueError):
        return {str(s): _n_modes(ds, str(s)) for s in ds.spectrum.values}


def _eta_axis(ax: Axes) -> None:
    """Label the step-size axis with at most four ticks (long decimals do not overlap)."""
    ax.set_xlabel(ETA_LABEL)
    ax.xaxis.set_major_locator(MaxNLocator(4))


def _no_finite(ax: Axes, sel: xr.Dataset, what: str, title: str = "") -> None:
    style.no_data(ax, style.reason(sel, what), title)


def _panel_grid(rows: int, cols: int, height: float) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(rows, cols, figsize=style.size("double", height), squeeze=False,
                             layout="constrained", sharex=True, sharey="row")  # fmt: skip
    return fig, axes


# --- bifurcation diagram ----------------------------------------------------------------------
def eos_bifurcation(ds: xr.Dataset) -> Figure:
    """Final-orbit mode amplitudes (min and max) against η with the mode thresholds.

    Parameters
    ----------
    ds : Dataset
        The aggregated eos dataset.

    Returns
    -------
    Figure
        One panel per depth (rows) and start kind (columns).

    """
    sel, where = _mode_slice(ds)
    depths = [int(d) for d in ds.depth.values]
    starts = [str(s) for s in ds.start.values]
    eta = np.asarray(ds.eta.values, dtype=float)
    fig, axes = _panel_grid(len(depths), len(starts), 1.1 + 1.6 * len(depths))
    n_modes = int(sel.sizes["mode"])
    for r, d in enumerate(depths):
        for c, s in enumerate(starts):
            ax = axes[r, c]
            p = sel.sel(depth=d, start=s)
            title = f"L = {d}, start {s}"
            lo = p.amp_min.transpose("eta", "mode").values
            hi = p.amp_max.transpose("eta", "mode").values
            if not style.finite_any(lo):
                _no_finite(ax, p, "every run diverged", title)
                continue
            thr = p.threshold.transpose("eta", "mode").values
            for i in range(n_modes):
                colour = style.PALETTE[i % len(style.PALETTE)]
                for vals in (lo[:, i], hi[:, i]):
                    ax.plot(eta, vals, ls="", marker=".", ms=2.5, color=colour)
                with style.quiet():
                    t = np.nanmax(thr[:, i]) if np.isfinite(thr[:, i]).any() else np.nan
                if np.isfinite(t) and eta.min() <= t <= eta.max():
                    ax.axvline(t, color=colour, ls="--", lw=0.8)
            ax.set_title(title)
            if r == len(depths) - 1:
                _eta_axis(ax)
            if c == 0:
                ax.set_ylabel(style.label(r"$u_i^\top P v_i$"))
    handles = [Line2D([], [], ls="", marker="o", ms=3, color=style.PALETTE[i % len(style.PALETTE)],
                      label=f"mode {i + 1}") for i in range(n_modes)]  # fmt: skip
    handles.append(Line2D([], [], color=style.GREY, ls="--", lw=0.8,
                          label="threshold\n" + r"$1/(L\sigma_i^{2-2/L})$"))  # fmt: skip
    fig.legend(handles=handles, loc="outside right upper")
    fig.suptitle(f"Mode amplitudes over the final orbit (min and max)\n{where}")
    return fig


# --- sharpness relative to 2/eta --------------------------------------------------------------
def eos_sharpness(ds: xr.Dataset) -> Figure:
    """Plot the final sharpness × η/2 against η, coloured by outcome, one marker per depth.

    Parameters
    ----------
    ds : Dataset
        The aggregated eos dataset.

    Returns
    -------
    Figure
        One panel per start kind.

    """
    sel, where = _mode_slice(ds)
    names = _flags(ds.outcome)
    names.setdefault(-1, "none")
    depths = [int(d) for d in ds.depth.values]
    starts = [str(s) for s in ds.start.values]
    eta = np.asarray(ds.eta.values, dtype=float)
    fig, axes = plt.subplots(1, len(starts), figsize=style.size("double", 2.8), squeeze=False,
                             sharey=True, layout="constrained")  # fmt: skip
    present: set[str] = set()
    for ax, s in zip(axes[0], starts, strict=True):
        p = sel.sel(start=s)
        ratio = p.sharpness_ratio.transpose("depth", "eta").values
        if not style.finite_any(ratio):
            _no_finite(ax, p, "every run diverged", f"start {s}")
            continue
        codes = p.outcome.transpose("depth", "eta").values
        for k, d in enumerate(depths):
            for code in np.unique(codes[k]).tolist():
                name = names.get(int(code), "none")
                m = codes[k] == code
                if name == "diverged":  # no sharpness: a cross along the bottom of the panel
                    present.add(name)
                    bottom = ax.get_xaxis_transform()  # x in data, y in axes fraction
                    ax.plot(eta[m], np.full(int(m.sum()), 0.03), ls="", marker="x", ms=3,
                            color=OUTCOME_COLOURS[name], transform=bottom)  # fmt: skip
                    continue
                if not style.finite_any(ratio[k][m]):
                    continue
                present.add(name)
                marker = style.MARKERS[k % len(style.MARKERS)]
                colour = OUTCOME_COLOURS.get(name, "#999999")
                ax.plot(eta[m], ratio[k][m], ls="", marker=marker, ms=3, color=colour, mec="k",
                        mew=0.3)  # fmt: skip
            flat = p.flattest_sharpness.sel(depth=d).values * eta / 2.0
            ax.plot(eta, flat, ":", color=style.GREY, lw=1)
        ax.axhline(1.0, color="k", lw=1.0)
        ax.set_title(f"start {s}")
        _eta_axis(ax)
    axes[0][0].set_ylabel(style.label(r"final sharpness $\times\ \eta/2$"))
    handles: list = [Patch(color=OUTCOME_COLOURS[o], label=o.replace("_", " "))
                     for o in OUTCOME_COLOURS if o in present and o != "diverged"]  # fmt: skip
    if "diverged" in present:
        handles.append(Line2D([], [], ls="", marker="x", color=OUTCOME_COLOURS["diverged"],
                              label="diverged (no sharpness)"))  # fmt: skip
    handles += [Line2D([], [], ls="", marker=style.MARKERS[k % len(style.MARKERS)], color="0.6",
                       mec="k", label=f"L = {d}") for k, d in enumerate(depths)]  # fmt: skip
    handles += [
        Line2D([], [], color="k", lw=1.0, label="1: edge of stability"),
        Line2D([], [], color=style.GREY, ls=":", label="flattest minimizer"),
    ]
    fig.legend(handles=handles, loc="outside right upper")
    fig.suptitle(f"Sharpness where gradient descent ends, relative to $2/\\eta$\n{where}")
    return fig


# --- balance ----------------------------------------------------------------------------------
def eos_balance(ds: xr.Dataset) -> Figure:
    """Spectral (product-norm) and Frobenius balance ratios at the last iterate against η.

    Parameters
    ----------
    ds : Dataset
        The aggregated eos dataset.

    Returns
    -------
    Figure
        Two panels, one line per start kind and depth.

    """
    sel, where = _mode_slice(ds)
    eta = np.asarray(ds.eta.values, dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=style.size("double", 2.8), squeeze=False,
                             layout="constrained")  # fmt: skip
    combos = [(s, int(d)) for s in ds.start.values.tolist() for d in ds.depth.values]
    panels = [
        ("product_norm_ratio", r"$\max_i/\min_i\ \|A_i\|_2\|B_i\|_2$", "spectral balance"),
        ("frobenius_norm_ratio", r"$\max_i/\min_i\ \|W_i\|_F$", "Frobenius balance"),
    ]
    for ax, (var, ylabel, title) in zip(axes[0], panels, strict=True):
        values = sel[var].values
        if not style.finite_any(values):
            _no_finite(ax, sel, "every run diverged (no last iterate)", title)
            continue
        for k, (s, d) in enumerate(combos):
            y = sel[var].sel(start=s, depth=d).values
            if style.finite_any(y):
                ax.plot(eta, y, label=f"{s}, L = {d}", **style.series(k), ms=2.5)
        ax.axhline(1.0, color=style.GREY, lw=0.8)
        ax.set_title(title)
        _eta_axis(ax)
        ax.set_ylabel(style.label(ylabel))
    handles, labels = axes[0][0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[0][1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper")
    fig.suptitle(f"Balance at the last iterate (1 = balanced)\n{where}")
    return fig


# --- sharpness over steps ---------------------------------------------------------------------
def _spread_etas(eta: np.ndarray, ok: np.ndarray) -> list[int]:
    """Up to MAX_CURVES indices of ``eta`` with ``ok``, spread evenly over the grid."""
    idx = np.flatnonzero(ok)
    if idx.size <= MAX_CURVES:
        return idx.tolist()
    pick = np.round(np.linspace(0, idx.size - 1, MAX_CURVES)).astype(int)
    return idx[pick].tolist()


def _over_steps(ax: Axes, p: xr.Dataset, var: str, title: str) -> bool:
    """Draw ``var × η/2`` over the checkpoint steps for a few η; False if nothing finite."""
    eta = np.asarray(p.eta.values, dtype=float)
    steps = np.asarray(p.step.values, dtype=float)
    values = p[var].transpose("eta", "step").values
    ok = np.array([style.finite_any(v) for v in values])
    chosen = _spread_etas(eta, ok)
    if not chosen:
        _no_finite(ax, p, f"no finite {var.replace('_', ' ')} (every run diverged)", title)
        return False
    for k, i in enumerate(chosen):
        ax.plot(steps, values[i] * eta[i] / 2.0, label=rf"$\eta$ = {eta[i]:.4g}",
                **style.series(k), ms=2.5)  # fmt: skip
    ax.axhline(1.0, color="k", lw=1.0)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(0.0, max(float(steps.max()), 1.0))
    ax.set_xlabel(style.label("step", "step"))
    ax.set_title(title)
    return True


def eos_progressive(ds: xr.Dataset) -> Figure:
    """Checkpoint sharpness × η/2 against the step for up to six η (progressive sharpening).

    Parameters
    ----------
    ds : Dataset
        The aggregated eos dataset.

    Returns
    -------
    Figure
        One panel (deepest chain, first start kind).

    """
    sel, where = _mode_slice(ds)
    depth = int(ds.depth.values.max())
    start = str(ds.start.values[0])
    fig, ax = plt.subplots(figsize=style.size("double", 2.8), layout="constrained")
    title = f"L = {depth}, start {start}, {where}"
    if _over_steps(ax, sel.sel(depth=depth, start=start), "checkpoint_sharpness", title):
        ax.set_ylabel(style.label(r"sharpness $\times\ \eta/2$"))
        fig.legend(loc="outside right upper")
    fig.suptitle("Sharpness along gradient descent (1 = edge of stability)")
    return fig


def eos_gfs(ds: xr.Dataset) -> Figure:
    """GFS sharpness × η/2 against the step for scalar chains, one panel per start kind.

    Parameters
    ----------
    ds : Dataset
        The aggregated eos dataset.

    Returns
    -------
    Figure
        One panel per start kind, or one panel saying the grid has no scalar chain.

    """
    title = "Sharpness of the gradient-flow solution (GFS) along gradient descent"
    lengths = _spectrum_lengths(ds)
    scalar = [s for s in lengths if lengths[s] == 1]
    widths = [int(w) for w in ds.width.values]
    if not scalar or 1 not in widths:
        fig, ax = plt.subplots(figsize=style.size("double", 2.4), layout="constrained")
        style.message(ax, "the grid has no scalar chain (a one-value spectrum with width 1)", title)
        return fig
    gfs = ds.gfs_sharpness.sel(width=1)
    finite = [s for s in scalar if style.finite_any(gfs.sel(spectrum=s).values)]
    if not finite:
        fig, ax = plt.subplots(figsize=style.size("double", 2.4), layout="constrained")
        sel = ds.sel(width=1, spectrum=scalar)
        _no_finite(ax, sel, "every scalar-chain run diverged", title)
        return fig
    spectrum = finite[0]
    seed = int(ds.seed.values[0])
    depth = int(ds.depth.values.max())
    starts = [str(s) for s in ds.start.values]
    fig, axes = plt.subplots(1, len(starts), figsize=style.size("double", 2.8), squeeze=False,
                             sharey=True, layout="constrained")  # fmt: skip
    drawn = False
    for ax, s in zip(axes[0], starts, strict=True):
        p = ds.sel(spectrum=spectrum, width=1, seed=seed, depth=depth, start=s)
        drawn |= _over_steps(ax, p, "gfs_sharpness", f"start {s}")
    axes[0][0].set_ylabel(style.label(r"GFS sharpness $\times\ \eta/2$"))
    if drawn:
        handles, labels = next(
            (a.get_legend_handles_labels() for a in axes[0] if a.get_legend_handles_labels()[0]),
        )
        fig.legend(handles, labels, loc="outside right upper")
    fig.suptitle(f"{title}\nspectrum {spectrum}, L = {depth}, seed {seed}")
    return fig


FIGURES = {
    "eos_bifurcation": eos_bifurcation,
    "eos_sharpness": eos_sharpness,
    "eos_balance": eos_balance,
    "eos_progressive": eos_progressive,
    "eos_gfs": eos_gfs,
}
