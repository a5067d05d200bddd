"""Figures of the escape dataset (``results/escape.zarr``).

Every figure reads the dataset only (``w_star`` holds each starting minimizer; ``v_1`` and
``v_N`` are recomputed from it with :func:`sweeplab.dmf.top_eigenvector` and
:func:`sweeplab.dmf.null_direction`). Statistics over seeds are shown as the median with the
min–max range. A figure whose data are missing on a valid config (no run escaped, only failed
or diverged points, no all-scalar chain) draws a panel saying so instead of failing; a panel with
nothing finite to show says ``"no finite data:"`` and why (e.g. a loss surface that overflows on
the plane of a diverged run is drawn where it is finite, and clipped at its top level where it
overflows).
"""

from __future__ import annotations

import json
import math

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from sweeplab import dmf

from . import style
from .style import flags as _flags

__all__ = ["FIGURES", "escape_contour", "escape_phase", "escape_sharpness", "escape_steps"]

#: outcome -> colour (Okabe–Ito; grey for failed points)
OUTCOME_COLOURS = {
    "stayed": style.OKABE_ITO["blue"],
    "escaped": style.OKABE_ITO["bluish_green"],
    "edge_of_stability": style.OKABE_ITO["orange"],
    "unconverged": style.OKABE_ITO["reddish_purple"],
    "diverged": style.OKABE_ITO["vermillion"],
    "none": "#999999",
}
OUTCOME_LABELS = {"none": "no result (failed point)", "edge_of_stability": "edge of stability"}
END_LABELS = {"diverged": "diverged (last finite step drawn)"}
END_MARKERS = {
    "stayed": "o",
    "escaped": "D",
    "edge_of_stability": "s",
    "unconverged": ">",
    "diverged": "X",
    "none": "",
}
DEPTH_MARKERS = style.MARKERS
NEAR_RADII = 3.0  # the near panel of escape_contour spans ± NEAR_RADII escape radii
C_LABEL = style.label(r"$c = \eta\lambda^*/2$")


# --- helpers ----------------------------------------------------------------------------------
def _setting(ds: xr.Dataset, key: str, default: float) -> float:
    """Return a numerical setting of the escape config stored in the dataset's provenance."""
    try:
        config = json.loads(ds.attrs["config"])  # {"escape": section} (or the bare section)
        return float(config.get("escape", config)[key])
    except (AttributeError, KeyError, TypeError, ValueError):
        return default


def _message_figure(title: str, text: str, *, finite: bool = False) -> Figure:
    """One panel stating why the figure has nothing to draw (``finite``: no finite data)."""
    fig, ax = plt.subplots(figsize=style.size("double", 2.4), layout="constrained")
    if finite:
        style.no_data(ax, text, title)
    else:
        style.message(ax, text, title)
    return fig


def _minimizer(ds: xr.Dataset, depth: int, width: int, seed: int) -> list[np.ndarray] | None:
    """Layers of the stored starting minimizer ``w_star`` (``None`` if not stored: failed)."""
    flat = np.asarray(ds.w_star.sel(depth=depth, width=width, seed=seed).values, dtype=float)
    n = width * width
    if flat.size < depth * n or not np.all(np.isfinite(flat[: depth * n])):
        return None
    return [flat[i * n : (i + 1) * n].reshape(width, width) for i in range(depth)]


def _outcome_names(ds: xr.Dataset) -> dict[int, str]:
    names = _flags(ds.outcome)
    names.setdefault(-1, "none")
    return names


def _plane_loss(
    ws: list[np.ndarray],
    v1: list[np.ndarray],
    vn: list[np.ndarray],
    a: np.ndarray,
    b: np.ndarray,
) -> np.ndarray:
    """``L(w* + a v_1 + b v_N)`` on the grid ``(b, a)`` (batched products, target = Π w*).

    Far from ``w*`` (e.g. the last checkpoint of a diverged run of a deep chain) the loss may
    overflow: those entries are inf or nan, without a warning.
    """
    target = dmf.right_products(ws)[-1]
    aa, bb = np.meshgrid(a, b)
    prod = None
    with style.quiet():
        for w, x, y in zip(ws, v1, vn, strict=True):
            layer = w[None] + aa.reshape(-1, 1, 1) * x[None] + bb.reshape(-1, 1, 1) * y[None]
            prod = layer if prod is None else np.matmul(layer, prod)
        assert prod is not None
        r = prod - target[None]
        return np.einsum("gij,gij->g", r, r).reshape(aa.shape)


def _log_loss(loss: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """``log10`` of the loss for contours, its levels and whether it overflowed somewhere.

    The levels span at most 14 decades below the largest finite value, every half decade; an
    overflowed loss (+inf) is set above the top level (drawn in the colour bar's ``max``
    extension), nan is masked. ``None`` if no value is finite.
    """
    with style.quiet():
        z = np.log10(np.maximum(loss, 1e-300))
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        return None
    hi = float(finite.max())
    lo = max(float(finite.min()), hi - 14.0)
    levels = np.arange(math.floor(lo), math.ceil(hi) + 0.5, 0.5)
    if levels.size < 2:
        levels = np.array([levels[0], levels[0] + 0.5])
    overflow = bool(np.isposinf(z).any())
    z = np.where(np.isposinf(z), levels[-1] + 1.0, z)
    return np.ma.masked_invalid(np.maximum(z, levels[0])), levels, overflow


def _spread(values: np.ndarray) -> tuple[float, float, float]:
    """Median, min and max of the finite values (nan if none)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    return float(np.median(v)), float(v.min()), float(v.max())


def _sci(x: float) -> str:
    """Return ``x`` as mathtext: ``1e-09`` gives ``10^{-9}``, ``2.5e-09`` a product with it."""
    mant, _, exp = f"{x:.3g}".partition("e")
    if not exp:
        return mant
    power = f"10^{{{int(exp)}}}"
    return power if mant == "1" else rf"{mant} \times {power}"


def _ramp(name: str, i: int, n: int) -> tuple[float, ...]:
    """Colour ``i`` of ``n`` from the dark two thirds of a sequential colour map."""
    return tuple(plt.get_cmap(name)(0.45 + 0.5 * (i / (n - 1) if n > 1 else 0.5)))


def _discrete_colourbar(
    fig: Figure,
    axes: object,
    cmap_name: str,
    values: list[float],
    labels: list[str],
    label: str,
    split: float | None = None,
) -> dict[float, tuple[float, ...]]:
    """Draw a colour bar with one band per value (equally spaced); return value -> colour.

    ``split``: a line is drawn between the bands below and above it (e.g. c = 1).
    """
    n = len(values)
    if cmap_name == "split" and split is not None:  # blues below the split, reds above
        below = [v for v in values if v < split]
        colours = [_ramp("Blues", i, len(below)) for i in range(len(below))]
        colours += [_ramp("Reds", i, n - len(below)) for i in range(n - len(below))]
    else:
        base = plt.get_cmap(cmap_name)
        colours = [base(0.5 if n == 1 else i / (n - 1)) for i in range(n)]
    cmap = mpl.colors.ListedColormap(colours)
    norm = mpl.colors.BoundaryNorm(np.arange(n + 1) - 0.5, n)
    cb = fig.colorbar(
        mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9, pad=0.02, label=label
    )
    cb.set_ticks(np.arange(n), labels=labels)
    cb.ax.tick_params(length=0)
    if split is not None:
        below = sum(v < split for v in values)
        if 0 < below < n:
            cb.ax.axhline(below - 0.5, color="k", lw=2)
    return dict(zip(values, colours, strict=True))


def _c_axis(ax: Axes, cs: np.ndarray) -> None:
    """Categorical c axis (equally spaced values), with the line c = 1 between bands."""
    ax.set_xticks(np.arange(cs.size), [f"{c:g}" for c in cs])
    ax.set_xlim(-0.6, cs.size - 0.4)
    ax.set_xlabel(C_LABEL)
    below = int(np.sum(cs < 1.0))
    if 0 < below < cs.size:
        ax.axvline(below - 0.5, color="0.6", lw=0.8, ls="-", zorder=0)


def _chain_label(depth: int, width: int) -> str:
    return f"L = {depth}, " + ("all-scalar" if width == 1 else f"width {width}")


def _n_seeds(ds: xr.Dataset) -> str:
    n = ds.sizes["seed"]
    return f"{n} seed{'s' if n != 1 else ''}"


# --- Figure 1: loss contours with GD paths ----------------------------------------------------
def _path(point: xr.Dataset) -> tuple[np.ndarray, np.ndarray, bool]:
    """Projections ``(a, b)`` of one run's GD path in step order, and whether it is dense.

    The checkpoints (log-spaced ``step``: ``proj_top``, ``proj_null``) merged with the dense
    window of the run (``window_start + window_step``: ``window_proj_top``,
    ``window_proj_null``), so that the departure along ``v_1`` is the actual path rather than
    straight segments between checkpoints: sorted by step, a step held by both drawn once (the
    checkpoint's value; both are the same iterate), non-finite values left out. A store
    without the window variables (written before they existed), or a run that never escaped
    (``window_start`` -1, nan for a failed point), gives the checkpoints alone.
    """
    steps = [np.asarray(point.step.values, dtype=np.int64)]
    xs = [np.asarray(point.proj_top.values, dtype=float)]
    ys = [np.asarray(point.proj_null.values, dtype=float)]
    n_ck = steps[0].size
    if all(name in point for name in ("window_start", "window_proj_top", "window_proj_null")):
        start = float(point.window_start)
        if np.isfinite(start) and start >= 0:
            steps.append(int(start) + np.asarray(point.window_step.values, dtype=np.int64))
            xs.append(np.asarray(point.window_proj_top.values, dtype=float))
            ys.append(np.asarray(point.window_proj_null.values, dtype=float))
    step, x, y = (np.concatenate(v) for v in (steps, xs, ys))
    from_window = np.arange(step.size) >= n_ck
    ok = np.isfinite(x) & np.isfinite(y)
    step, x, y, from_window = step[ok], x[ok], y[ok], from_window[ok]
    _, first = np.unique(step, return_index=True)  # sorted; the checkpoint's value first
    return x[first], y[first], bool(from_window[first].any())


def _contour_choice(ds: xr.Dataset) -> tuple[int, int, list[np.ndarray]] | str:
    """Deepest all-scalar chain with a stored minimizer: (depth, seed, layers) or why not."""
    if 1 not in [int(w) for w in ds.width.values]:
        return (
            "no all-scalar chain (width 1) in this dataset:\nFigure 1 is drawn for the deepest "
            "all-scalar chain;\nadd 1 to escape.width"
        )
    for depth in sorted((int(d) for d in ds.depth.values), reverse=True):
        for seed in (int(s) for s in ds.seed.values):
            ws = _minimizer(ds, depth, 1, seed)
            if ws is not None:
                return depth, seed, ws
    return "no stored starting minimizer for the all-scalar chains\n(every point failed)"


def escape_contour(ds: xr.Dataset) -> Figure:
    """Figure 1: loss on the plane (v_1, v_N) through w*, near w* and far, with the GD paths.

    The deepest all-scalar chain (width 1) of the dataset, its first seed with a stored
    minimizer and the radius closest to 1e-9; paths for every ``c`` coloured by ``η`` (centred
    on ``2/λ*``); ``λ* = dmf.sharpness(w_star)`` in the title. Each path is drawn through its
    log-spaced checkpoints and every step of its dense window around the escape step
    (:func:`_path`; checkpoints alone in a store without the ``window_*`` variables).

    Parameters
    ----------
    ds : Dataset
        The aggregated escape dataset.

    Returns
    -------
    Figure
        Two panels (near ``w*``, and the whole paths), or a panel saying why there are none.

    """
    title = "Escape of gradient descent from a sharp minimizer"
    choice = _contour_choice(ds)
    if isinstance(choice, str):
        return _message_figure(title, choice, finite="every point failed" in choice)
    depth, seed, ws = choice
    with style.quiet():
        lam = float(dmf.sharpness(ws))
    if not (np.isfinite(lam) and lam > 0):
        return _message_figure(
            title, "the sharpness of the stored minimizer is not finite", finite=True
        )
    v1 = dmf.top_eigenvector(ws)
    vn = dmf.null_direction(ws)
    if vn is None:
        return _message_figure(title, "the minimizer has no rescaling null direction")
    radii = np.asarray(ds.radius.values, dtype=float)
    radius = float(radii[np.argmin(np.abs(np.log(radii / 1e-9)))])
    sub = ds.sel(depth=depth, width=1, seed=seed, radius=radius)
    names = _outcome_names(ds)
    r_esc = _setting(ds, "escape_radius", 1e-3)
    near = NEAR_RADII * r_esc

    paths = []
    dense = False  # some path has its dense window around the escape step
    for c in (float(c) for c in sub.c.values):
        point = sub.sel(c=c)
        x, y, windowed = _path(point)
        dense |= windowed
        outcome = names.get(int(point.outcome), "none")
        eta = float(point.eta) if np.isfinite(float(point.eta)) else c * 2.0 / lam
        paths.append((c, eta, outcome, x, y))
    left = [p for p in paths if p[3].size and np.max(np.hypot(p[3], p[4])) > r_esc]
    # far extent: every path that left the ball, diverged ones only if nothing else did
    extent_paths = [p for p in left if p[2] != "diverged"] or left
    if extent_paths:
        xs = np.concatenate([p[3] for p in extent_paths] + [np.zeros(1)])
        ys = np.concatenate([p[4] for p in extent_paths] + [np.zeros(1)])
        fx = max(float(np.max(np.abs(xs))) * 1.15, near)
        fy = max(float(np.max(np.abs(ys))) * 1.15, near)

    crit = 2.0 / lam
    fig, axes = plt.subplots(1, 2, figsize=style.size("double", 4.3), layout="constrained")
    colours = _discrete_colourbar(
        fig,
        axes,
        "split",
        [p[0] for p in paths],
        [f"{p[1]:.4g}  (c = {p[0]:g})" for p in paths],
        style.label(r"step size $\eta$"),
        split=1.0,
    )
    panels = [(axes[0], near, near, f"near w* (± {NEAR_RADII:g} escape radii)")]
    if extent_paths:
        panels.append((axes[1], fx, fy, "far: the whole paths"))
    else:
        style.no_data(
            axes[1], "no run left the escape ball\n(every c < 1, or no result)",
            "far: the whole paths",
        )  # fmt: skip
    for ax, hx, hy, panel_title in panels:
        a = np.linspace(-hx, hx, 161)
        b = np.linspace(-hy, hy, 161)
        surface = _log_loss(_plane_loss(ws, v1, vn, a, b))
        if surface is None:
            style.no_data(ax, "the loss overflows everywhere on this plane", panel_title)
            continue
        z, levels, overflow = surface
        filled = ax.contourf(a, b, z, levels=levels, cmap="bone",
                             extend="max" if overflow else "neither")  # fmt: skip
        ax.contour(a, b, z, levels=levels[::2], colors="k", linewidths=0.3, alpha=0.5)
        fig.colorbar(filled, ax=ax, location="bottom", shrink=0.85, pad=0.01, aspect=35,
                     label=style.label(r"$\log_{10} L(w^* + a v_1 + b v_N)$"))  # fmt: skip
        for c, _eta, outcome, x, y in paths:
            if x.size == 0:
                continue
            ax.plot(x, y, "-", color=colours[c], lw=1.1, alpha=0.95)
            ax.plot(x[-1], y[-1], END_MARKERS.get(outcome) or "o", color=colours[c], mec="k",
                    mew=0.5, ms=5)  # fmt: skip
        ax.plot(0, 0, "*", color=style.OKABE_ITO["yellow"], mec="k", mew=0.6, ms=10, zorder=5)
        ax.set(
            xlim=(-hx, hx),
            ylim=(-hy, hy),
            title=panel_title,
            xlabel=style.label(r"$a = \langle w - w^*, v_1\rangle$"),
            ylabel=style.label(r"$b = \langle w - w^*, v_N\rangle$"),
        )
        ax.ticklabel_format(style="sci", scilimits=(-2, 3))
    present = sorted({p[2] for p in paths}, key=lambda o: list(END_MARKERS).index(o))
    handles = [Line2D([], [], ls="", marker="*", color=style.OKABE_ITO["yellow"], mec="k", ms=8,
                      label="w*")]  # fmt: skip
    handles += [
        Line2D(
            [],
            [],
            ls="",
            marker=END_MARKERS[o] or "o",
            color="0.6",
            mec="k",
            label=f"end: {END_LABELS.get(o, OUTCOME_LABELS.get(o, o))}",
        )
        for o in present
        if END_MARKERS.get(o)
    ]
    if axes[0].has_data():
        axes[0].legend(handles=handles, loc="upper left")
    fig.suptitle(
        f"{title}: all-scalar chain, L = {depth}, seed {seed}\n"
        rf"$\lambda^* = \lambda_{{\max}}(\nabla^2 L(w^*)) = {lam:.6g}$ (exact), "
        rf"$2/\lambda^* = {crit:.4g}$ (line in the colour bar); "
        rf"start $w^* + r v_1$, $r = {_sci(radius)}$;"
        "\nloss on the plane, GD paths projected on it ("
        + ("log-spaced checkpoints and every step around the escape)" if dense
           else "log-spaced checkpoint steps)")
    )  # fmt: skip
    return fig


# --- final sharpness vs 2/eta -----------------------------------------------------------------
def escape_sharpness(ds: xr.Dataset) -> Figure:
    """Plot final sharpness / (2/η) against c per outcome: median and min–max over seeds.

    Parameters
    ----------
    ds : Dataset
        The aggregated escape dataset.

    Returns
    -------
    Figure
        One panel per width, or a panel saying that no final sharpness is finite.

    """
    title = r"Sharpness where gradient descent ends, relative to $2/\eta$"
    with style.quiet():
        ratio = ds.final_sharpness / ds.two_over_eta
    if not np.isfinite(ratio.values).any():
        return _message_figure(
            title, "no final sharpness in this dataset\n(every run diverged or failed)",
            finite=True,
        )  # fmt: skip
    names = _outcome_names(ds)
    widths = [int(w) for w in ds.width.values]
    depths = [int(d) for d in ds.depth.values]
    cs = np.asarray(ds.c.values, dtype=float)
    codes = {int(k) for k in np.unique(ds.outcome.values)}
    present = [o for o in OUTCOME_COLOURS if o in {names.get(k) for k in codes}]
    fig, axes = plt.subplots(1, len(widths), figsize=style.size("double", 3.0), sharey=True,
                             squeeze=False, layout="constrained")  # fmt: skip
    for ax, w in zip(axes[0], widths, strict=True):
        groups = [(d, o) for d in depths for o in present]
        drawn = 0
        for g, (d, o) in enumerate(groups):
            code = next(k for k, v in names.items() if v == o)
            sel = ds.sel(width=w, depth=d)
            with style.quiet():
                r = (sel.final_sharpness / sel.two_over_eta).transpose("c", ...).values
            m = (sel.outcome == code).transpose("c", ...).values
            r, m = r.reshape(cs.size, -1), m.reshape(cs.size, -1)
            offset = (g - (len(groups) - 1) / 2) * min(0.8 / max(len(groups), 1), 0.12)
            for i in range(cs.size):
                med, lo, hi = _spread(r[i][m[i]])
                if not np.isfinite(med):
                    continue
                ax.errorbar(i + offset, med, yerr=[[med - lo], [hi - med]],
                            fmt=DEPTH_MARKERS[depths.index(d) % len(DEPTH_MARKERS)],
                            color=OUTCOME_COLOURS[o], mec="k", mew=0.4, ms=4, capsize=2,
                            elinewidth=0.9)  # fmt: skip
                drawn += 1
        ax.plot(np.arange(cs.size), cs, ":", color=style.GREY, lw=1)
        ax.axhline(1.0, color="k", lw=1.2)
        _c_axis(ax, cs)
        ax.set_title(("all-scalar chain" if w == 1 else f"width {w}") + f" ({_n_seeds(ds)})")
        if not drawn:
            ax.text(0.5, 0.5, f"{style.MESSAGE_PREFIX}:\nno final sharpness\n(diverged or failed)",
                    ha="center", transform=ax.transAxes, color="0.25")  # fmt: skip
    axes[0][0].set_ylabel(style.label(r"final sharpness $/\ (2/\eta)$"))
    handles = [
        Patch(color=OUTCOME_COLOURS[o], label=OUTCOME_LABELS.get(o, o))
        for o in present
        if o not in ("diverged", "none")
    ]
    handles += [
        Line2D(
            [],
            [],
            ls="",
            marker=DEPTH_MARKERS[i % len(DEPTH_MARKERS)],
            color="0.6",
            mec="k",
            label=f"L = {d}",
        )
        for i, d in enumerate(depths)
    ]
    handles += [
        Line2D([], [], color="k", lw=1.2, label="1: edge of stability\n" + r"($\lambda = 2/\eta$)"),
        Line2D([], [], color=style.GREY, ls=":", label=r"start: $\lambda^*/(2/\eta) = c$"),
    ]
    fig.legend(handles=handles, loc="outside right upper")
    fig.suptitle(f"{title}\nmedian and min–max over seeds; exact at a minimizer, Lanczos elsewhere")
    return fig


# --- escape step vs linear theory -------------------------------------------------------------
def escape_steps(ds: xr.Dataset) -> Figure:
    """Observed escape step against ln(r_esc/r)/ln|1-ηλ*|, median and min–max over seeds.

    Parameters
    ----------
    ds : Dataset
        The aggregated escape dataset.

    Returns
    -------
    Figure
        Observed against predicted step (log-log) and their ratio against c, or a panel saying
        that no run left the escape ball (or none has a finite prediction).

    """
    title = "Escape step: observed vs linear theory"
    if not np.isfinite(ds.escape_step.values).any():
        return _message_figure(
            title, "no run left the escape ball\n(every c < 1, or every point failed)",
            finite=True,
        )  # fmt: skip
    cs = np.asarray(ds.c.values, dtype=float)
    chains = [(int(d), int(w)) for w in ds.width.values for d in ds.depth.values]
    points = []  # (chain index, c index, prediction, median, min, max)
    for k, (d, w) in enumerate(chains):
        for i, c in enumerate(cs):
            for radius in ds.radius.values:
                point = ds.sel(depth=d, width=w, c=c, radius=radius)
                med, lo, hi = _spread(np.asarray(point.escape_step.values, dtype=float))
                pred = _spread(np.asarray(point.predicted_escape_step.values, dtype=float))[0]
                if np.isfinite(med) and np.isfinite(pred) and pred > 0 and med > 0:
                    points.append((k, i, pred, med, lo, hi))
    if not points:
        return _message_figure(
            title, "no finite positive prediction\n"
            r"($|1 - \eta\lambda^*| \leq 1$ wherever gradient descent left)", finite=True,
        )  # fmt: skip
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=style.size("double", 3.0), layout="constrained")
    colours = _discrete_colourbar(fig, [ax, ax2], "plasma", list(cs), [f"{c:g}" for c in cs],
                                  C_LABEL, split=1.0)  # fmt: skip
    n_chain = len(chains)
    for k, i, pred, med, lo, hi in points:
        offset = (k - (n_chain - 1) / 2) * min(0.8 / n_chain, 0.12)
        kw = {"fmt": DEPTH_MARKERS[k % len(DEPTH_MARKERS)], "color": colours[cs[i]], "mec": "k",
              "mew": 0.4, "ms": 4, "capsize": 2, "elinewidth": 0.9}  # fmt: skip
        ax.errorbar(pred, med, yerr=[[med - lo], [hi - med]], **kw)
        ax2.errorbar(i + offset, med / pred, yerr=[[(med - lo) / pred], [(hi - med) / pred]], **kw)
    preds = [p[2] for p in points]
    lim = [max(1.0, min(preds) * 0.7), max(preds) * 1.4]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=style.label(r"predicted $\ln(r_{esc}/r)\,/\,\ln|1-\eta\lambda^*|$", "step"),
        ylabel=style.label("observed escape step", ds.escape_step),
        title="observed vs predicted (dashed: equal)",
    )
    ax2.axhline(1.0, color="k", lw=1, ls="--")
    _c_axis(ax2, cs)
    ax2.set(ylabel=style.label("observed / predicted escape step"), title="ratio to linear theory")
    handles = [
        Line2D(
            [],
            [],
            ls="",
            marker=DEPTH_MARKERS[k % len(DEPTH_MARKERS)],
            color="0.6",
            mec="k",
            label=_chain_label(d, w),
        )
        for k, (d, w) in enumerate(chains)
    ]
    ax.legend(handles=handles, loc="upper left")
    fig.suptitle(
        f"{title}\n(median and min–max over {_n_seeds(ds)}; runs that left the escape ball)"
    )
    return fig


# --- outcome fractions ------------------------------------------------------------------------
def escape_phase(ds: xr.Dataset) -> Figure:
    """Fraction of seeds per outcome over c, one panel per (depth, width) (first radius).

    Parameters
    ----------
    ds : Dataset
        The aggregated escape dataset.

    Returns
    -------
    Figure
        Stacked bars of the outcome fractions against c, a grid of depth x width panels.

    """
    names = _outcome_names(ds)
    depths = [int(d) for d in ds.depth.values]
    widths = [int(w) for w in ds.width.values]
    cs = np.asarray(ds.c.values, dtype=float)
    radius = float(ds.radius.values[0])
    codes = [k for k in sorted(names, key=lambda k: (k < 0, k))]
    order = [k for k in codes if names[k] in OUTCOME_COLOURS]
    fig, axes = plt.subplots(len(depths), len(widths), squeeze=False, sharex=True, sharey=True,
                             layout="constrained",
                             figsize=style.size("double", 1.7 * len(depths) + 1.0))  # fmt: skip
    seen: set[str] = set()
    for i, d in enumerate(depths):
        for j, w in enumerate(widths):
            ax = axes[i][j]
            sub = ds.outcome.sel(depth=d, width=w, radius=radius).transpose("c", "seed")
            values = np.asarray(sub.values)
            bottom = np.zeros(cs.size)
            x = np.arange(cs.size)
            for k in order:
                frac = (values == k).mean(axis=1)
                if not frac.any():
                    continue
                seen.add(names[k])
                ax.bar(x, frac, bottom=bottom, width=0.8, color=OUTCOME_COLOURS[names[k]],
                       edgecolor="white", linewidth=0.5)  # fmt: skip
                bottom += frac
            ax.set_title(_chain_label(d, w))
            ax.set_xticks(x, [f"{c:g}" for c in cs], rotation=60)
            ax.set_ylim(0, 1)
            if i == len(depths) - 1:
                ax.set_xlabel(C_LABEL)
            if j == 0:
                ax.set_ylabel(style.label("fraction of seeds"))
    handles = [
        Patch(color=OUTCOME_COLOURS[names[k]], label=OUTCOME_LABELS.get(names[k], names[k]))
        for k in order
        if names[k] in seen
    ]
    fig.legend(handles=handles, loc="outside right upper")
    extra = f" (first of {ds.sizes['radius']} radii)" if ds.sizes["radius"] > 1 else ""
    fig.suptitle(f"Outcome of gradient descent over {_n_seeds(ds)}, start at r = {radius:g}{extra}")
    return fig


FIGURES = {
    "escape_contour": escape_contour,
    "escape_sharpness": escape_sharpness,
    "escape_steps": escape_steps,
    "escape_phase": escape_phase,
}
