"""Channel figures of schema-valid configs the tiny run does not cover draw, never crash.

``channel.wall: false`` (free space) stores ``gap = inf`` (:attr:`sweeplab.mcvd.Geometry.gap`) and
every model equal to the free-space one (relative errors 0). The dataset below is the tiny run
edited that way, as the channel experiment writes it for ``wall: false``.
"""

import numpy as np
from plotcheck import all_text, messages, outside_canvas, render, unlabelled_axes

from sweeplab.plots import FIGURES


def _free_space(ds):
    ds = ds.copy(deep=True)
    ds["gap"][...] = np.inf
    ds["slab_width"][...] = np.nan
    for name in ds.data_vars:
        if name.startswith("relerr_") and name.endswith("_exact"):
            ds[name] = ds[name].where(np.isnan(ds[name]), 0.0)
    return ds


def test_channel_figures_without_a_wall(tiny):
    """C3: ``channel.wall: false`` crashed ``channel_model_error`` (pcolormesh on gap = inf)."""
    ds = _free_space(tiny["channel"])
    for name in [n for n, (e, _) in FIGURES.items() if e == "channel"]:
        fig = render(name, ds)
        assert outside_canvas(fig) == [] and unlabelled_axes(fig) == [], name
    fig = render("channel_model_error", ds)
    found = messages(fig)
    assert len(found) == 2 and all("no reflecting plane" in m for m in found), found
    assert "gap" in all_text(fig)
