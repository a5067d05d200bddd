"""Figure 1 (escape_contour) draws each GD path through its dense window around the escape.

The tiny escape run (depth 4, all-scalar, seed 0): c = 0.9 stays in the ball (no window),
c = 1.2 escapes at about step 40, between log-spaced checkpoints ~10 % apart.
"""

import numpy as np
from plotcheck import all_text, outside_canvas, render, unlabelled_axes, write_store

from sweeplab.plots import draw_all
from sweeplab.sweep import open_dataset

WINDOW_VARS = ("window_start", "window_loss", "window_distance", "window_proj_top",
               "window_proj_null")  # fmt: skip


def _point(ds, c):
    return ds.sel(depth=4, width=1, radius=1e-9, seed=0, c=c)


def _expected(point, dense=True):
    """The path by hand: checkpoints and window steps, by step, each step once, finite."""
    path = {}
    if dense and int(point.window_start) >= 0:
        steps = int(point.window_start) + point.window_step.values
        path.update(zip(steps.tolist(), zip(point.window_proj_top.values,
                                            point.window_proj_null.values, strict=True),
                        strict=True))  # fmt: skip
    checkpoints = zip(point.proj_top.values, point.proj_null.values, strict=True)
    path.update(zip(point.step.values.tolist(), checkpoints, strict=True))  # same iterate
    steps = sorted(s for s, (a, b) in path.items() if np.isfinite(a) and np.isfinite(b))
    return np.array([path[s][0] for s in steps]), np.array([path[s][1] for s in steps])


def _paths(fig):
    """(x, y) of every line of more than one vertex, in each of the two contour panels."""
    return [[(np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
             for line in ax.lines if len(line.get_xdata()) > 1] for ax in fig.axes[:2]]  # fmt: skip


def _drawn(fig, x, y):
    """Whether both panels draw the path (x, y) as one line, vertex for vertex."""
    return all(any(np.array_equal(px, x) and np.array_equal(py, y) for px, py in panel)
               for panel in _paths(fig))  # fmt: skip


def test_escaping_path_goes_through_every_step_of_its_window(tiny):
    ds = tiny["escape"]
    point = _point(ds, 1.2)
    start = int(point.window_start)
    assert 0 <= start < 100, start
    fig = render("escape_contour", ds)
    x, y = _expected(point)
    assert _drawn(fig, x, y)
    # more vertices than the checkpoints alone, among them every (finite) window step
    x_ck, y_ck = _expected(point, dense=False)
    assert x.size >= x_ck.size + 100, (x.size, x_ck.size)
    assert not _drawn(fig, x_ck, y_ck)
    win = np.isfinite(point.window_proj_top.values)
    assert win.sum() == point.sizes["window_step"]  # the tiny run: no nan in the window
    assert np.isin(point.window_proj_top.values[win], x).all()
    assert np.isin(point.window_proj_null.values[win], y).all()
    # the departure along v_1: consecutive steps of the window are consecutive vertices
    i = int(np.flatnonzero(x == point.window_proj_top.values[0])[0])
    np.testing.assert_array_equal(x[i : i + win.sum()], point.window_proj_top.values)
    # the run that stayed has no window: its checkpoints alone
    stayed = _point(ds, 0.9)
    assert int(stayed.window_start) == -1
    assert _drawn(fig, *_expected(stayed, dense=False))
    assert "every step around the escape" in all_text(fig)
    assert outside_canvas(fig) == [] and unlabelled_axes(fig) == []


def test_store_without_window_variables_draws_the_checkpoints(tiny, tmp_path):
    """An aggregate written before the window existed: checkpoints alone, no exception."""
    old = tiny["escape"].drop_vars([*WINDOW_VARS, "window_step"])
    assert not any(name.startswith("window") for name in old.variables)
    fig = render("escape_contour", old)
    for c in (0.9, 1.2):
        assert _drawn(fig, *_expected(_point(tiny["escape"], c), dense=False)), c
    text = all_text(fig)
    assert "log-spaced checkpoint steps" in text and "every step around" not in text
    assert outside_canvas(fig) == [] and unlabelled_axes(fig) == []
    # the figure job of such a store
    store = write_store(old, tmp_path / "escape.zarr")
    assert "window_start" not in open_dataset(store)
    paths = draw_all([store], tmp_path / "figures", ["escape_contour"])
    assert all(p.stat().st_size > 0 for p in paths)
