"""Publication quality: one style, journal sizes, labels with units inside the canvas, output."""

import matplotlib as mpl
import pytest
from matplotlib.colors import to_hex
from matplotlib.layout_engine import ConstrainedLayoutEngine
from plotcheck import check_figure_files, outside_canvas, render, unlabelled_axes

from sweeplab.plots import FIGURES, draw_all, escape, style
from sweeplab.plots.figures import FORMATS

OKABE_ITO = {"#000000", "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00",
             "#cc79a7"}  # fmt: skip


def _publication_ready(fig):
    width = fig.get_size_inches()[0]
    assert width in (pytest.approx(style.SINGLE), pytest.approx(style.DOUBLE)), width
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    assert outside_canvas(fig) == []
    assert unlabelled_axes(fig) == []


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_is_publication_ready(tiny, name):
    """Journal width, constrained layout, every text inside the canvas, units on every axis."""
    fig = render(name, tiny[FIGURES[name][0]])
    _publication_ready(fig)
    if name != "channel_slab":  # the tiny run has no slab geometry (see the next test)
        assert all(ax.has_data() for ax in fig.axes), "the tiny run has data for every panel"


@pytest.mark.parametrize("name", [n for n, (e, _) in FIGURES.items() if e == "channel"])
def test_channel_figure_with_several_geometries_is_publication_ready(channel_rich, name):
    """Every channel panel drawn (slab, several gaps, time steps and corrections)."""
    fig = render(name, channel_rich)
    _publication_ready(fig)
    assert all(ax.has_data() for ax in fig.axes)


def test_draw_all_writes_png_svg_and_pdf(tiny_stores, tmp_path):
    """Figures of two experiments as PNG, SVG and PDF, in order; rc state untouched. (Every
    figure's files are checked the same way on the workflow's own, in tests/workflow.)"""
    names = ["sharpness_overview", "escape_phase"]
    before = {k: mpl.rcParams[k] for k in style.RC}
    paths = draw_all(list(tiny_stores.values()), tmp_path, names)
    assert {k: mpl.rcParams[k] for k in style.RC} == before  # the style is not global state
    assert paths == [tmp_path / f"{n}.{ext}" for n in names for ext in ("png", "svg", "pdf")]
    assert FORMATS == ("png", "svg", "pdf")
    for name in names:
        check_figure_files(tmp_path, name)


def test_style_is_an_rc_context_not_global_state():
    assert mpl.rcParams["axes.prop_cycle"] != style.RC["axes.prop_cycle"]
    with style.context():
        assert mpl.rcParams["figure.constrained_layout.use"]
        assert mpl.rcParams["savefig.dpi"] >= 200
        assert mpl.rcParams["pdf.fonttype"] == 42  # TrueType fonts embedded in the PDF
        cycle = [to_hex(c["color"]) for c in mpl.rcParams["axes.prop_cycle"]]
    assert set(cycle) == OKABE_ITO
    assert mpl.rcParams["axes.prop_cycle"] != style.RC["axes.prop_cycle"]


def test_outcome_colours_are_colour_blind_safe():
    colours = {to_hex(c) for o, c in escape.OUTCOME_COLOURS.items() if o != "none"}
    assert colours <= OKABE_ITO and len(colours) == len(escape.OUTCOME_COLOURS) - 1


def test_series_differ_by_more_than_colour():
    styles = [style.series(i) for i in range(6)]
    assert len({s["color"] for s in styles}) == 6
    assert len({s["marker"] for s in styles}) == 6
    assert len({str(s["linestyle"]) for s in styles}) == 6


def test_labels_take_units_from_the_dataset(tiny):
    channel, esc = tiny["channel"], tiny["escape"]
    assert style.label("time t", channel.time) == "time t [s]"
    assert style.label("gap", channel.gap) == "gap [µm]"
    assert style.label("hitting rate", channel.rate_sim) == "hitting rate [1/s]"
    assert style.label("c", esc.c) == "c [1]"  # dimensionless: [1], as the units attribute
    assert style.label("fraction") == "fraction [1]"
    assert style.label("escape step", esc.escape_step) == "escape step [steps]"
    assert style.label("error", "%") == "error [%]"


def test_messages_wrap_but_keep_mathtext_whole():
    text = style.wrap("no finite data: " + "word " * 20 + "\n" + r"($|1 - \eta| \leq 1$ " * 3)
    lines = text.split("\n")
    assert all(len(line) <= style.MESSAGE_WIDTH for line in lines[:-1])
    assert lines[-1] == r"($|1 - \eta| \leq 1$ " * 3


def test_sizes_are_journal_columns():
    assert style.size("single")[0] == pytest.approx(3.4)
    assert style.size("double", 2.5) == (pytest.approx(7.0), 2.5)
    with pytest.raises(ValueError, match="single"):
        style.size("triple")
