"""What the channel experiment refuses and estimates because of the exact model's limits.

(In ``tests/mcvd`` with the model limits it depends on; the experiment's end-to-end tests are in
``tests/sweep/test_channel_experiment.py``.)
"""

import copy

import numpy as np
import pytest

from sweeplab import mcvd
from sweeplab.sweep import validate_config
from sweeplab.sweep.experiments import REGISTRY

CHANNEL = REGISTRY["channel"]
PAPER = {"tx": [0, 0, 10], "rx": [10, 0, 0], "radius": 5}
SECTION = {
    "geometry": {"paper": PAPER}, "wall": True, "D": [79.4], "dt": [1e-3],
    "correction": ["bridge"], "seed": [0], "n_molecules": 2000, "t_end": 0.5,
    "bin_width": 0.05, "batch_size": 1000, "symbol_time": [0.1],
}  # fmt: skip


def _config(**geometry):
    section = copy.deepcopy(SECTION)
    section["geometry"].update(geometry)
    return {"experiments": ["channel"], "channel": section}


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"tx": [0, 0, 10], "rx": [5.00001, 0, 0], "radius": 5},
         r"^channel\.geometry\.tight: gap 1e-05 µm .* plane x = 0 .*allowed: gap >= 0\.005 µm"),
        ({"tx": [0, 0, 10], "rx": [5.0000005, 0, 0], "radius": 5, "slab_width": 10.000001},
         r"^channel\.geometry\.tight: gap 5e-07 µm .*allowed: gap >= 0\.005 µm"),
        ({"tx": [0, 0, 10], "rx": [6, 0, 0], "radius": 5, "slab_width": 11.0001},
         r"^channel\.geometry\.tight: gap 0\.0001 µm .* plane x = slab_width .*allowed"),
    ],
)  # fmt: skip
def test_config_refuses_a_gap_below_the_exact_models_minimum(entry, match):
    """H2: validation accepted gaps at which one exact evaluation took 50 s and 4 GB."""
    with pytest.raises(ValueError, match=match) as info:
        validate_config(_config(tight=entry))
    assert "\n" not in str(info.value)
    validate_config(_config(least={**PAPER, "rx": [5.005, 0, 0]}))  # the minimum itself
    if "slab_width" not in entry:  # no plane, no gap: the exact model is the closed form
        free = _config(tight=entry)
        free["channel"]["wall"] = False
        validate_config(free)


def _columns(names):
    n = len(names)
    return {"geometry": np.array(names, dtype=object), "D": np.full(n, 79.4),
            "dt": np.full(n, 1e-3), "correction": np.array(["bridge"] * n, dtype=object),
            "seed": np.zeros(n, dtype=np.int64)}  # fmt: skip


def test_cost_and_memory_estimates_include_the_exact_model():
    """H2: the estimates ignored the exact model, whose cost grows as gap^-1.5."""
    least = {**PAPER, "rx": [5.005, 0, 0]}
    settings = CHANNEL.settings(SECTION)
    with_entries = {**settings, "geometry": {"paper": PAPER, "least": least}}
    columns = _columns(["paper", "least"])
    cost = CHANNEL.point_cost(columns, with_entries)
    need, how = CHANNEL.point_memory(columns, with_entries)
    assert cost[1] > cost[0] and need[1] > need[0] and "exact model" in how
    g = mcvd.Geometry((0, 0, 10), (5.005, 0, 0), 5, 79.4)
    seconds, nbytes = mcvd.exact_window_cost(g)
    assert cost[1] - cost[0] > 10 * seconds and need[1] >= nbytes
    # without the geometries' entries (as the planner calls it) the simulation's estimate stays
    plain_cost = CHANNEL.point_cost(columns, settings)
    assert plain_cost[0] == plain_cost[1] and plain_cost[0] <= cost[0]


def test_channel_stores_nan_beyond_a_forms_validity_and_records_it(monkeypatch):
    """W5: the sweep stored the two-mirror form's negative, decreasing F (W = 12 um)."""
    import warnings

    from sweeplab.mcvd import analytic

    def zeros(g, t, tol):  # the exact model is not under test here: keep the test fast
        return np.zeros(np.shape(t))

    monkeypatch.setattr(analytic, "exact_absorbed_fraction", zeros)
    monkeypatch.setattr(analytic, "exact_hitting_rate", zeros)
    settings = {"bin_width": 0.5, "t_end": 10.0, "symbol_time": [0.5, 4.0]}
    time = CHANNEL.inner_coords(settings)["time"]
    for width in (12.0, None):
        g = mcvd.Geometry((0, 0, 10), (6, 0, 0), 5, 79.4, slab_width=width)
        data = {k: v[0] for k, v in CHANNEL.empty_points(1, settings).items()}
        with warnings.catch_warnings():
            warnings.simplefilter("error", mcvd.ValidityWarning)  # recorded, not warned
            CHANNEL._models(g, settings, data)
        for key, model in (("first_order", "first-order"), ("convolved", "first-order-convolved")):
            limit = data[f"valid_until_{key}"]
            assert limit == mcvd.validity_limit(g, model)
            f = data[f"fraction_{key}"]
            inside = time <= limit
            assert np.all(np.isfinite(f[inside])) and np.all(np.isnan(f[~inside]))
            assert np.all((f[inside] >= 0) & (f[inside] <= 1)) and np.all(np.diff(f[inside]) > 0)
            assert np.isfinite(data[f"received_{key}"][0])  # F(0.5 s): inside
            assert np.isnan(data[f"received_{key}"][1]) == (width is not None)  # F(4 s)
            assert 0 < data[f"peak_time_{key}"] < limit
        if width is None:
            assert data["valid_until_first_order"] == np.inf
            assert data["valid_until_image_chain"] == np.inf
        else:
            assert 1.0 < data["valid_until_first_order"] < 2.0
            assert np.isnan(data["valid_until_image_chain"])  # half-space only
