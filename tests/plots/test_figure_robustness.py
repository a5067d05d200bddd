"""Valid configs never crash the figure jobs; panels without finite data say so.

Each case is a real tiny run through the sweep API (every c below 1; a channel run too short
for any molecule to be absorbed) or a tiny run edited the way the pipeline records failures
(status failed, every float nan) or a divergence (an enormous last finite checkpoint).
"""

import numpy as np
from plotcheck import (
    all_text,
    fail_everything,
    messages,
    outside_canvas,
    render,
    unlabelled_axes,
    write_store,
)

from sweeplab import dmf
from sweeplab.plots import FIGURES, draw_all, style
from sweeplab.sweep import open_dataset

STAYED = dmf.OUTCOMES.index("stayed")
DIVERGED = dmf.OUTCOMES.index("diverged")


def _names(experiment):
    return [n for n, (e, _) in FIGURES.items() if e == experiment]


def _draw_job(store, out, experiment):
    """The figures job of one experiment: every file written."""
    names = _names(experiment)
    paths = draw_all([store], out, names)
    assert paths == [out / f"{n}.{ext}" for n in names for ext in ("png", "svg", "pdf")]
    assert all(p.stat().st_size > 0 for p in paths)


def _check(fig):
    """Even a figure of edge-case data keeps its texts inside and its axes labelled."""
    assert outside_canvas(fig) == []
    assert unlabelled_axes(fig) == []


def test_escape_without_escapes_says_so(escape_stayed):
    """Every c < 1: every run stayed, no escape step exists."""
    ds = open_dataset(escape_stayed).load()
    assert (ds.outcome == STAYED).all() and not np.isfinite(ds.escape_step.values).any()
    for name in _names("escape"):
        _check(render(name, ds))
    steps = render("escape_steps", ds)
    assert any("no run left the escape ball" in m for m in messages(steps)), messages(steps)
    contour = render("escape_contour", ds)
    assert any("no run left the escape ball" in m for m in messages(contour))
    assert contour.axes[0].has_data()  # the near panel is drawn


def test_escape_contour_of_a_diverged_run_with_non_finite_values(tiny):
    """A diverged path: inf, then an enormous last finite checkpoint, then nan.

    The far panel spans the path, where the loss on the plane overflows (inf or nan): it is
    drawn where finite and clipped at the top level where it overflows.
    """
    ds = tiny["escape"].copy(deep=True)
    c = float(ds.c.values[-1])
    top = ds.proj_top.sel(c=c).values.copy()
    n = ds.sizes["step"]
    top[..., n // 2 - 2] = np.inf
    top[..., n // 2 - 1] = 1e90
    top[..., n // 2 :] = np.nan
    ds["proj_top"].loc[{"c": c}] = top
    ds["proj_null"].loc[{"c": c}] = np.where(np.isfinite(top), ds.proj_null.sel(c=c), np.nan)
    # the dense window around the escape step: nan from the first non-finite checkpoint on
    steps = ds.window_start.sel(c=c) + ds.window_step
    after = steps >= int(ds.step.values[n // 2 - 2])
    for name in ("window_proj_top", "window_proj_null"):
        ds[name].loc[{"c": c}] = ds[name].sel(c=c).where(~after)
    for name in ("final_sharpness", "final_loss"):
        ds[name].loc[{"c": c}] = np.nan
    ds["outcome"].loc[{"c": c}] = DIVERGED
    for name in _names("escape"):
        fig = render(name, ds)
        _check(fig)
    fig = render("escape_contour", ds)
    near, far = fig.axes[:2]
    assert near.has_data() and far.has_data()
    assert "far: the whole paths" in all_text(fig)
    assert far.get_xlim()[1] > 1e89  # the far panel reaches the last finite checkpoint
    ends = [line.get_xdata()[-1] for line in far.lines if len(line.get_xdata()) > 1]
    assert 1e90 in ends  # the path ends there (not at a later step of the window)


def test_channel_with_every_point_failed(tiny, tmp_path):
    failed = fail_everything(tiny["channel"])
    store = write_store(failed, tmp_path / "channel.zarr")
    _draw_job(store, tmp_path / "figures", "channel")
    for name in _names("channel"):
        fig = render(name, failed)
        _check(fig)
        if name == "channel_slab":  # the tiny run has no slab: a structural message
            assert "no slab geometries" in all_text(fig)
            continue
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        found = messages(fig)
        assert len(found) == len(panels), (name, found)
        assert all("every point failed" in m for m in found), (name, found)


def test_channel_without_absorbed_molecules(channel_empty):
    """A valid tiny run in which no molecule reaches the receiver: F_sim = 0, errors undefined."""
    ds = open_dataset(channel_empty).load()
    assert (ds.status == 0).all()
    assert (ds.fraction_sim.values == 0).all()
    for name in _names("channel"):
        _check(render(name, ds))
    gap = messages(render("channel_gap", ds))
    assert len(gap) == 1 and "no molecule was absorbed" in gap[0]
    dt_exact = render("channel_dt_exact", ds)
    assert any("no molecule was absorbed" in m for m in messages(dt_exact))
    response = render("channel_response", ds)
    assert messages(response) == []  # zeros are finite: drawn, with the models


def test_sharpness_with_every_point_failed(tiny, tmp_path):
    failed = fail_everything(tiny["sharpness"])
    store = write_store(failed, tmp_path / "sharpness.zarr")
    _draw_job(store, tmp_path / "figures", "sharpness")
    fig = render("sharpness_overview", failed)
    _check(fig)
    found = messages(fig)
    assert len(found) == 2 and all("every point failed" in m for m in found), found
    assert not any(ax.get_yscale() == "log" for ax in fig.axes)


def test_messages_start_with_the_prefix():
    assert style.MESSAGE_PREFIX == "no finite data"
