"""Helpers of the figure tests: render a figure in the style, list its texts, check labels."""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from sweeplab.plots import FIGURES, style

#: an axis label ends with its unit in brackets ("time t [s]"; dimensionless "[1]")
UNIT = re.compile(r"\[[^\[\]]+\]$")
TOLERANCE = 1.0  # display pixels


def render(name: str, ds: xr.Dataset) -> Figure:
    """Draw figure ``name`` from ``ds`` in the style, as ``draw_all`` does (canvas drawn)."""
    _, draw = FIGURES[name]
    with style.context():
        fig = draw(ds)
        fig.canvas.draw()
    return fig


def is_colorbar(ax: Axes) -> bool:
    return ax.get_label() == "<colorbar>"


def messages(fig: Figure) -> list[str]:
    """Texts of the panels that have no finite data (``"no finite data: ..."``)."""
    return [t.get_text() for ax in fig.axes for t in ax.texts
            if t.get_text().startswith(style.MESSAGE_PREFIX)]  # fmt: skip


def all_text(fig: Figure) -> str:
    return " ".join(t.get_text() for t in fig.findobj(Text))


def labelled_texts(fig: Figure) -> list[tuple[str, object]]:
    """(what, artist) of every label, title, suptitle, legend and panel message shown."""
    items: list[tuple[str, object]] = []
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None:
        items.append(("suptitle", suptitle))
    items += [("figure legend", legend) for legend in fig.legends]
    for i, ax in enumerate(fig.axes):
        items += [
            (f"axes {i} xlabel", ax.xaxis.label),
            (f"axes {i} ylabel", ax.yaxis.label),
            (f"axes {i} title", ax.title),
            (f"axes {i} left title", ax._left_title),
            (f"axes {i} right title", ax._right_title),
        ]
        items += [(f"axes {i} text", t) for t in ax.texts]
        if ax.get_legend() is not None:
            items.append((f"axes {i} legend", ax.get_legend()))
    shown = []
    for what, artist in items:
        if not artist.get_visible():
            continue
        if isinstance(artist, Text) and not artist.get_text().strip():
            continue
        shown.append((what, artist))
    return shown


def outside_canvas(fig: Figure) -> list[str]:
    """Texts of ``labelled_texts`` whose extent leaves the figure (empty: all inside)."""
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    bad = []
    for what, artist in labelled_texts(fig):
        ext = artist.get_window_extent(renderer)
        if (ext.x0 < box.x0 - TOLERANCE or ext.y0 < box.y0 - TOLERANCE
                or ext.x1 > box.x1 + TOLERANCE or ext.y1 > box.y1 + TOLERANCE):  # fmt: skip
            text = artist.get_text() if isinstance(artist, Text) else "legend"
            bad.append(f"{what} {text!r}: {ext.bounds} outside {box.bounds}")
    return bad


def unlabelled_axes(fig: Figure) -> list[str]:
    """Axis labels missing or without a unit in brackets (empty: all labelled).

    Panels without data (a ``no_data`` message) need no labels; an axis sharing its x (y) axis
    with a labelled panel (e.g. inner panels of a grid) needs none; a colour bar needs its
    label.
    """
    bad = []
    for i, ax in enumerate(fig.axes):
        if is_colorbar(ax):
            label = ax.get_ylabel() or ax.get_xlabel()
            if not UNIT.search(label):
                bad.append(f"colour bar {i}: {label!r}")
            continue
        if not ax.has_data():
            if not ax.texts:
                bad.append(f"axes {i}: empty panel without a message")
            continue
        for axis, siblings in (("x", ax.get_shared_x_axes()), ("y", ax.get_shared_y_axes())):
            label = getattr(ax, f"get_{axis}label")()
            if label:
                if not UNIT.search(label):
                    bad.append(f"axes {i} {axis}label without a unit: {label!r}")
                continue
            others = [getattr(s, f"get_{axis}label")() for s in siblings.get_siblings(ax)]
            if not any(UNIT.search(o) for o in others):
                bad.append(f"axes {i}: no {axis}label (nor a labelled shared axis)")
    return bad


def write_store(ds: xr.Dataset, path: Path) -> Path:
    """Write an edited dataset as an aggregated store that ``draw_all`` reads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr v3: consolidated metadata is not in the spec
        ds.to_zarr(path, mode="w")
    return path


def fail_everything(ds: xr.Dataset) -> xr.Dataset:
    """A copy of ``ds`` in which every point failed: status 1, every float nan."""
    failed = ds.copy(deep=True)
    for name, var in failed.data_vars.items():
        if var.dtype.kind == "f":
            failed[name][...] = np.nan
    failed["status"][...] = 1
    if "outcome" in failed:
        failed["outcome"][...] = -1
    return failed


def check_figure_files(directory, name):
    """PNG (>= 200 dpi, the figure's size), SVG and PDF of figure ``name`` in ``directory``."""
    with Image.open(directory / f"{name}.png") as png:
        dpi = png.info["dpi"]
        pixels = png.size
    assert round(min(dpi)) >= 200  # PNG stores pixels per metre: 200 dpi reads 199.9996
    svg = ET.parse(directory / f"{name}.svg").getroot()
    assert svg.tag.endswith("svg")
    # the figure's size, in points (1/72 in), as the SVG records it
    inches = np.array([float(svg.get(k).removesuffix("pt")) / 72 for k in ("width", "height")])
    expected = inches * min(dpi)
    assert np.allclose(pixels, expected, atol=2), (name, pixels, expected)
    assert (directory / f"{name}.pdf").read_bytes().startswith(b"%PDF-")
