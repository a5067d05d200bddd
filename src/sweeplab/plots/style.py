"""The one figure style of :mod:`sweeplab.plots`, and helpers shared by the figure modules.

Conventions
-----------
Sizes
    Figures are one journal column (:data:`SINGLE` = 3.4 in) or two columns (:data:`DOUBLE` =
    7.0 in) wide; :func:`size` gives ``(width, height)``.
Layout
    Constrained layout everywhere (``layout="constrained"`` at creation, and the default in
    :data:`RC`), so that no label is clipped; no ``tight_layout``.
Colours, lines and markers
    The Okabe–Ito palette (:data:`PALETTE`, safe for the common colour-vision deficiencies) is the
    property cycle; series ``i`` of a panel takes :func:`series` ``(i)``, which also varies the
    marker and the line style, so that series differ by more than their colour. Colour maps are
    perceptually uniform (``plasma``, ``bone``) or diverging blue–red (``RdBu_r``).
Units
    Every axis label (and colour-bar label) ends with its unit in square brackets,
    ``"time t [s]"``, taken from the variable's ``units`` attribute where there is one
    (:func:`label`). Dimensionless quantities are labelled ``[1]`` (the CF/UDUNITS spelling,
    which the datasets' ``units`` attributes use), percentages ``[%]``, gradient-descent step
    counts ``[steps]``.
Empty panels
    A panel with no finite value to show states it with :func:`no_data`:
    ``"no finite data:"`` and the reason below, centred, without ticks.
Output
    :func:`sweeplab.plots.draw_all` writes each figure as PNG at :data:`DPI` dots per inch, SVG and
    PDF (TrueType fonts embedded), with :data:`RC` applied through :func:`context` only while it
    draws and saves: importing the package changes no global matplotlib state.
"""

from __future__ import annotations

import contextlib
import textwrap
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr
from cycler import cycler
from matplotlib import rc_context
from matplotlib.axes import Axes

__all__ = [
    "DOUBLE",
    "DPI",
    "GREY",
    "LINESTYLES",
    "MARKERS",
    "MESSAGE_PREFIX",
    "OKABE_ITO",
    "PALETTE",
    "RC",
    "SINGLE",
    "context",
    "finite_any",
    "flags",
    "label",
    "message",
    "no_data",
    "quiet",
    "reason",
    "series",
    "size",
    "unit",
    "wrap",
]

#: width of a figure of one journal column (inches)
SINGLE = 3.4
#: width of a figure spanning both columns (inches)
DOUBLE = 7.0
#: resolution of the PNG output (dots per inch)
DPI = 200

#: Okabe & Ito (2008) colour-blind-safe palette: black, orange, sky blue, bluish green, yellow,
#: blue, vermillion, reddish purple.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
#: the order of the property cycle (yellow, hard to see on white, last)
PALETTE: tuple[str, ...] = tuple(
    OKABE_ITO[k]
    for k in (
        "blue",
        "orange",
        "bluish_green",
        "vermillion",
        "reddish_purple",
        "sky_blue",
        "black",
        "yellow",
    )
)
#: markers of series 0, 1, ... (see :func:`series`)
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "h")
#: line styles of series 0, 1, ... (see :func:`series`)
LINESTYLES: tuple[str | tuple[int, tuple[int, ...]], ...] = (
    "-",
    "--",
    "-.",
    ":",
    (0, (5, 1, 1, 1, 1, 1)),
    (0, (1, 1)),
)
#: grey of reference lines and of "no result" marks
GREY = "0.45"
#: text of a panel without finite data, before its reason
MESSAGE_PREFIX = "no finite data"
#: characters per line of a message in a panel (fits a single-column panel at 8 pt)
MESSAGE_WIDTH = 40

#: matplotlib settings of every figure (applied by :func:`context`)
RC: dict[str, Any] = {
    "figure.constrained_layout.use": True,
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "savefig.bbox": None,  # the layout keeps everything inside: no cropping to a changing size
    "pdf.fonttype": 42,  # embed TrueType fonts (journals reject Type 3)
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "font.family": "sans-serif",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "figure.titlesize": 9,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.linewidth": 0.6,
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "errorbar.capsize": 2,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "legend.frameon": True,
    "legend.framealpha": 0.85,
    "legend.edgecolor": "0.8",
    "image.cmap": "viridis",
}

#: dataset ``units`` -> label text (others are shown as stored)
UNIT_TEXT = {"um": "µm", "um^2/s": "µm²/s", "um/s": "µm/s", "step": "steps", "": "1"}


def context() -> contextlib.AbstractContextManager[None]:
    """Return an rc context applying :data:`RC` (draw *and* save figures inside it).

    Returns
    -------
    context manager
        ``matplotlib.rc_context(RC)``.

    """
    return rc_context(RC)


def size(width: str = "double", height: float | None = None) -> tuple[float, float]:
    """Return the figure size ``(width, height)`` in inches for a journal layout.

    Parameters
    ----------
    width : {"single", "double"}
        One column (:data:`SINGLE`) or both (:data:`DOUBLE`).
    height : float, optional
        Height in inches; default: 3/4 of a single column, 0.4 of a double one.

    Returns
    -------
    tuple of float
        The size for ``plt.subplots(figsize=...)``.

    """
    if width not in ("single", "double"):
        raise ValueError(f"width must be 'single' or 'double', not {width!r}")
    w = SINGLE if width == "single" else DOUBLE
    return w, float(height) if height is not None else round(w * (0.75 if w == SINGLE else 0.4), 2)


def series(i: int) -> dict[str, Any]:
    """Return the colour, marker and line style of series ``i`` of a panel.

    Parameters
    ----------
    i : int
        Index of the series.

    Returns
    -------
    dict
        ``color``, ``marker`` and ``linestyle`` keyword arguments of ``Axes.plot``.

    """
    return {
        "color": PALETTE[i % len(PALETTE)],
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": LINESTYLES[i % len(LINESTYLES)],
    }


def unit(units: str | xr.DataArray | None) -> str:
    """Return the unit text of a label: ``"um"`` gives ``"µm"``, dimensionless ``"1"``.

    Parameters
    ----------
    units : str or DataArray or None
        A unit string, or a variable whose ``units`` attribute is used (missing: ``"1"``).

    Returns
    -------
    str
        The unit as shown between the brackets of a label.

    """
    if isinstance(units, xr.DataArray):
        units = units.attrs.get("units")
    text = str(units if units is not None else "1").strip()
    return UNIT_TEXT.get(text, text)


def label(text: str, units: str | xr.DataArray | None = "1") -> str:
    """Return an axis label ending with its unit in brackets: ``label("time t", "s")``.

    Parameters
    ----------
    text : str
        What the axis shows (may contain mathtext).
    units : str or DataArray or None
        The unit, or the variable whose ``units`` attribute gives it; ``"1"`` (the default, or
        ``None``) for a dimensionless quantity.

    Returns
    -------
    str
        ``"<text> [<unit>]"``, e.g. ``"time t [s]"``, ``"fraction of seeds [1]"``.

    """
    return f"{text} [{unit(units)}]"


def finite_any(*arrays: Any, positive: bool = False) -> bool:
    """Return whether some element is finite in all the (broadcast) arrays at once.

    Parameters
    ----------
    *arrays : array_like
        Values drawn together (e.g. x and y of a line).
    positive : bool
        Require the first array to be > 0 there too (a logarithmic axis).

    Returns
    -------
    bool
        True if at least one point can be drawn.

    """
    if not arrays:
        return False
    values = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in arrays))
    ok = np.ones(values[0].shape, dtype=bool)
    for v in values:
        ok &= np.isfinite(v)
    if positive:
        with np.errstate(invalid="ignore"):
            ok &= values[0] > 0
    return bool(ok.any())


def wrap(text: str, width: int = MESSAGE_WIDTH) -> str:
    """Break the lines of ``text`` at spaces to at most ``width`` characters.

    Lines holding mathtext (``$``) are kept whole (a break inside ``$...$`` would not parse);
    existing line breaks are kept.

    Parameters
    ----------
    text : str
        The text.
    width : int
        Characters per line.

    Returns
    -------
    str
        The wrapped text.

    """
    return "\n".join(
        line if "$" in line else textwrap.fill(line, width, break_on_hyphens=False)
        for line in text.split("\n")
    )


def message(ax: Axes, text: str, title: str = "") -> None:
    """Turn ``ax`` into a panel that states ``text`` (what the data lack) instead of a plot.

    Parameters
    ----------
    ax : Axes
        The panel (its ticks are removed).
    text : str
        The message, grey, centred, wrapped to :data:`MESSAGE_WIDTH`.
    title : str, optional
        Title of the panel.

    """
    ax.text(0.5, 0.5, wrap(text), ha="center", va="center", transform=ax.transAxes,
            color="0.25")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def no_data(ax: Axes, why: str, title: str = "") -> None:
    """Turn ``ax`` into a panel saying that it has no finite data, and why.

    Parameters
    ----------
    ax : Axes
        The panel (its ticks are removed).
    why : str
        The reason, shown below ``"no finite data:"`` (wrapped to :data:`MESSAGE_WIDTH`).
    title : str, optional
        Title of the panel.

    """
    message(ax, f"{MESSAGE_PREFIX}:\n{wrap(why)}", title)


def flags(var: xr.DataArray) -> dict[int, str]:
    """Return code -> meaning of a CF flag variable (``flag_values`` / ``flag_meanings``).

    Parameters
    ----------
    var : DataArray
        An integer variable with ``flag_values`` and ``flag_meanings`` attributes.

    Returns
    -------
    dict
        Code -> meaning.

    """
    values = [int(v) for v in np.atleast_1d(var.attrs["flag_values"])]
    return dict(zip(values, var.attrs["flag_meanings"].split(), strict=True))


def reason(ds: xr.Dataset, default: str) -> str:
    """Return why a selection of a dataset has nothing finite: failed points, else ``default``.

    Parameters
    ----------
    ds : Dataset
        The selection drawn (its ``status`` flag variable, if any, is read).
    default : str
        The reason when not every point failed.

    Returns
    -------
    str
        ``"every point failed"``, ``"every point failed or ..."`` or ``default``.

    """
    if "status" not in ds:
        return default
    status = ds["status"]
    try:
        codes = [k for k, v in flags(status).items() if v != "ok"]
    except (KeyError, ValueError):
        codes = [1]
    failed = np.isin(np.asarray(status.values), codes)
    if failed.size and failed.all():
        return "every point failed"
    return default


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence numpy's floating-point warnings (nan/inf in the data are expected and shown).

    Yields
    ------
    None
        Inside: ``np.errstate(all="ignore")`` and no ``RuntimeWarning`` (e.g. all-nan slices).

    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
