"""Figures of the sharpness dataset (``results/sharpness.zarr``).

A panel without a finite value to show (e.g. every point failed) says so instead of failing.
"""

from __future__ import annotations

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import style

__all__ = ["FIGURES", "sharpness_overview"]


def sharpness_overview(ds: xr.Dataset) -> Figure:
    """Exact sharpness against the bound (S) and the flattest value, across depth and width.

    Parameters
    ----------
    ds : Dataset
        The aggregated sharpness dataset.

    Returns
    -------
    Figure
        Two panels: bound / exact, and exact / flattest (log scale), against the depth, one
        series per (family, width), averaged over seeds and input dimensions.

    """
    fig, axes = plt.subplots(1, 2, figsize=style.size("double", 2.6), layout="constrained")
    with style.quiet():
        ratio_b = (ds.bound / ds.exact).mean(["seed", "dio"])
        ratio_f = (ds.exact / ds.flattest).mean(["seed", "dio"])
    depth = ds.depth.values
    panels = [
        (axes[0], ratio_b, "bound (S) / exact", "Upper bound tightness", False),
        (axes[1], ratio_f, "exact / flattest", "Sharpness above the flattest minimum", True),
    ]
    why = style.reason(ds, "no finite exact sharpness")
    for ax, ratio, name, title, log in panels:
        if not style.finite_any(ratio.values, positive=log):
            style.no_data(ax, why, title)
            continue
        k = 0
        for fam in ds.family.values:
            for w in ds.width.values:
                y = ratio.sel(family=fam, width=w).values
                if style.finite_any(y, positive=log):
                    ax.plot(depth, y, **style.series(k), label=f"{fam}, width {w}")
                k += 1
        if log:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel=style.label("depth L", ds.depth), ylabel=style.label(name), title=title)
    entries = {}  # label -> handle, over both panels (a series may be finite in one only)
    for ax in axes:
        entries.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside right upper")
    return fig


FIGURES = {"sharpness_overview": sharpness_overview}
