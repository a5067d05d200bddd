"""Figures of the sharpness dataset (``results/sharpness.zarr``).

A panel without a finite value to show (e.g. every point failed) says so instead of failing.
"""

from __future__ import annotations

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import style

__all__ = ["FIGURES", "sharpness_balance", "sharpness_overview"]

#: floor of the logarithmic axes of :func:`sharpness_balance` (0 up to rounding is drawn there)
FLOOR = 1e-16
#: (variable, axis label, panel title) of the balance panels
BALANCE_PANELS = (
    ("imbalance_frobenius", "Frobenius imbalance", r"$\|W_{i+1}^TW_{i+1}-W_iW_i^T\|_F$"),
    ("spectral_spread", "spectral-norm spread", r"$\|W_i\|_2$"),
    ("product_spread", "product spread", r"$p_i=\|A_i\|_2\|B_i\|_2$"),
    ("product_excess", "product excess", r"$p_i$ against $\|M\|_2^{(L-1)/L}$"),
    ("top_mode_excess", "top-mode excess", r"$\|A_i^Tu_1\|\,\|B_iv_1\|$"),
)


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


def sharpness_balance(ds: xr.Dataset) -> Figure:
    """Exact over flattest sharpness against five balance measures, one dot per minimizer.

    Parameters
    ----------
    ds : Dataset
        The aggregated sharpness dataset (version >= 2: ``imbalance_frobenius``,
        ``spectral_spread``, ``product_spread``, ``product_excess``, ``top_mode_excess``).

    Returns
    -------
    Figure
        Five log-log panels of ``exact / flattest − 1`` against each measure, coloured by
        family; values below :data:`FLOOR` (0 up to rounding) are drawn at the floor.

    """
    fig, axes = plt.subplots(2, 3, figsize=style.size("double", 4.6), layout="constrained")
    panels = list(axes.flat)
    fig.delaxes(panels[-1])
    with style.quiet():
        gap = ds.exact / ds.flattest - 1.0
    why = style.reason(ds, "no finite exact sharpness or balance measure")
    families = [str(f) for f in ds.family.values]
    for ax, (var, text, title) in zip(panels, BALANCE_PANELS, strict=False):
        if var not in ds or not style.finite_any(gap.values, ds[var].values):
            style.no_data(ax, why, title)
            continue
        for k, fam in enumerate(families):
            x = ds[var].sel(family=fam).values.ravel()
            y = gap.sel(family=fam).values.ravel()
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                st = style.series(k)
                ax.plot(np.maximum(x[ok], FLOOR), np.maximum(y[ok], FLOOR), linestyle="none",
                        marker=st["marker"], color=st["color"], alpha=0.7, label=fam)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(xlabel=style.label(text, ds[var]), ylabel=style.label("exact / flattest − 1"),
               title=title)  # fmt: skip
    entries = {}
    for ax in panels[:-1]:
        entries.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside right upper",
                   title="family")  # fmt: skip
    return fig


FIGURES = {"sharpness_overview": sharpness_overview, "sharpness_balance": sharpness_balance}
