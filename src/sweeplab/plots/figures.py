"""Draw figures (PNG, SVG and PDF) from aggregated datasets.

Each experiment with figures has a module ``sweeplab.plots.<experiment>`` whose ``FIGURES`` maps a
figure name to a function ``Dataset -> matplotlib Figure``; it is found by name (no list to
edit). Figures read only the stores: nothing here imports the sweep layer. Which figures an
experiment has is declared by its experiment module; a test checks the two agree.

Every figure is drawn and saved inside :func:`sweeplab.plots.style.context` (the one style of
the figures: journal-column sizes, fonts, colour-blind-safe palette, constrained layout); the
style is not applied globally, so importing this package changes no matplotlib setting.
"""

from __future__ import annotations

import importlib
import io
import logging
import pkgutil
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import xarray as xr
from matplotlib.figure import Figure

from . import style

__all__ = ["FIGURES", "FORMATS", "draw_all"]

logger = logging.getLogger(__name__)

#: file formats written per figure: raster (PNG at ``style.DPI``) and vector (SVG, PDF)
FORMATS = ("png", "svg", "pdf")
#: no creation date in the vector files, so that redrawing the same data gives the same bytes
_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


def _save_png(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a 256-colour palette PNG at :data:`sweeplab.plots.style.DPI`.

    Line plots, markers, text and the discrete colour levels of these figures need far fewer
    than 256 colours (antialiasing aside); the palette PNG is 3.7x smaller than matplotlib's
    RGBA one (1.97 MB -> 0.53 MB for the default sweep's 21 figures), which keeps the HTML
    report, where every PNG is embedded, small. The vector formats are unchanged.
    """
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=style.DPI)
    buf.seek(0)
    with Image.open(buf) as rgba:
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba.convert("RGBA")).convert("RGB")
    palette = rgb.quantize(256, method=Image.Quantize.FASTOCTREE)
    palette.save(path, format="png", dpi=(style.DPI, style.DPI), optimize=True)


def _discover() -> dict[str, tuple[str, Callable[[xr.Dataset], Figure]]]:
    figures: dict[str, tuple[str, Callable[[xr.Dataset], Figure]]] = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name in ("figures", "style"):
            continue
        module = importlib.import_module(f"sweeplab.plots.{info.name}")
        for name, fn in getattr(module, "FIGURES", {}).items():
            figures[name] = (info.name, fn)
    return figures


#: figure name -> (experiment, drawing function)
FIGURES = _discover()


def draw_all(datasets: Iterable[Path], out: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Draw the named figures (all by default) from aggregated stores.

    Parameters
    ----------
    datasets : iterable of Path
        Aggregated stores; each figure uses the one whose ``experiment`` attribute matches.
        Empty: ``results/<experiment>.zarr``.
    out : Path
        Output directory: ``<name>.png`` (at :data:`sweeplab.plots.style.DPI` dots per inch),
        ``<name>.svg`` and ``<name>.pdf`` per figure.
    names : iterable of str, optional
        Figure names (keys of :data:`FIGURES`).

    Returns
    -------
    list of Path
        The written files, per figure in the order of :data:`FORMATS`.

    """
    by_experiment: dict[str, Path] = {}
    for path in datasets:
        with xr.open_zarr(path, chunks=None) as ds:  # no dask: ~1.7 s of imports a job
            by_experiment[str(ds.attrs.get("experiment"))] = Path(path)
    wanted = list(names or FIGURES)
    for name in wanted:
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r}; expected one of {sorted(FIGURES)}")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    cache: dict[str, xr.Dataset] = {}
    for name in wanted:
        experiment, fn = FIGURES[name]
        if experiment not in cache:
            path = by_experiment.get(experiment, Path("results") / f"{experiment}.zarr")
            if not path.exists():
                raise FileNotFoundError(f"figure {name} needs the {experiment} dataset {path}")
            cache[experiment] = xr.open_zarr(path, chunks=None).load()
        with style.context():  # rc settings are read while drawing *and* while saving
            fig = fn(cache[experiment])
            try:
                for ext in FORMATS:
                    path = out / f"{name}.{ext}"
                    if ext == "png":
                        _save_png(fig, path)
                    else:
                        fig.savefig(path, dpi=style.DPI, metadata=_METADATA.get(ext))
                    written.append(path)
                    # the layout is in inches and points, the same in every format: solve the
                    # constrained layout once (it was about a third of a figure's drawing time)
                    fig.set_layout_engine("none")
            finally:
                plt.close(fig)
        logger.info("figure %s written (%s)", name, ", ".join(FORMATS))
    return written
