"""Figures of the sharpness dataset (``results/sharpness.zarr``)."""

from __future__ import annotations

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import xarray as xr
from matplotlib.figure import Figure


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


FIGURES = {"sharpness_overview": sharpness_overview}
