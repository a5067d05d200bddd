"""Edge cases of the public mcvd API: booleans, non-real types, NaN/inf and misnamed parameters.

Booleans are integers to Python (``True == 1``), so ``D=True`` or ``t_end=True`` used to run as
1 µm²/s or 1 s; every time/length/coefficient parameter now refuses them, by name and with the
allowed range, while numpy integer/float scalars and integer times keep working unchanged.
"""

import math

import numpy as np
import pytest

from sweeplab.mcvd import (
    Geometry,
    absorbed_fraction,
    binned_hitting_rate,
    erfc_terms,
    exact_absorbed_fraction,
    exact_hitting_rate,
    hitting_rate,
    image_charges,
    isi_taps,
    laplace_hitting,
    peak,
    received_fraction,
    relative_error,
    simulate,
    simulate_batch,
    simulate_image_pair,
    whole_steps,
)

D = 79.4
RR = 5.0
BASE = {"tx": (0, 0, 10), "rx": (10, 0, 0), "radius": RR, "D": D}
HALF = Geometry(**BASE)
SLAB = Geometry(**BASE, slab_width=30.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"D": True}, r"D must be finite and > 0 µm²/s, got True \(bool, not a real number\)"),
        ({"D": np.True_}, r"D must be finite and > 0 µm²/s, got np\.True_ \(bool"),
        ({"radius": True}, r"radius must be finite and > 0 µm, got True \(bool"),
        ({"D": "79.4"}, r"D must be finite and > 0 µm²/s, got '79\.4' \(str"),
        ({"D": 79.4 + 0j}, r"D must be finite and > 0 µm²/s, got \(79\.4\+0j\) \(complex"),
        ({"D": None}, r"D must be finite and > 0 µm²/s, got None \(NoneType"),
        (
            {"D": np.array([D])},
            r"D must be .* got array\(\[79\.4\]\) \(an array of shape \(1,\)",
        ),
        ({"D": math.inf}, r"D must be finite and > 0 µm²/s, got inf"),
        ({"tx": (True, 0, 10)}, r"tx must be three real coordinates .* \(entries of type bool"),
        ({"rx": ("10", 0, 0)}, r"rx must be three real coordinates .* \(entries of type str"),
        ({"rx": np.array([10, 0, 0], dtype=bool)}, r"rx must be three real .* dtype bool"),
        ({"wall": 1}, r"wall must be True \(reflecting plane x = 0\) or False, got 1"),
        ({"slab_width": np.True_}, r"slab_width must be None \(half-space\) .* got np\.True_"),
    ],
)
def test_geometry_refuses_bools_and_non_real_numbers(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Geometry(**{**BASE, **kwargs})


def test_geometry_accepts_numpy_and_integer_numbers_unchanged():
    g = Geometry(
        np.array([0, 0, 10]), (np.int64(10), 0.0, np.float32(0)), np.float32(5), np.int64(80)
    )
    assert g == Geometry((0.0, 0.0, 10.0), (10.0, 0.0, 0.0), 5.0, 80.0)
    assert all(isinstance(v, float) for v in (*g.tx, *g.rx, g.radius, g.D))
    assert Geometry(**{**BASE, "D": np.array(D)}).D == D  # a 0-d array is one number
    assert Geometry(**BASE, slab_width=np.float64(30)).slab_width == 30.0
    assert Geometry(**BASE, wall=np.True_).wall is True


@pytest.mark.parametrize(
    ("t", "match"),
    [
        (True, r"times must be finite and >= 0 s, got True \(bool, not a real number\)"),
        ([True, False], r"got \[True, False\] \(entries of type bool"),
        ([0.5, True], r"got \[0\.5, True\] \(entries of type bool"),
        (np.array([1, 0], dtype=bool), r"\(an array of dtype bool"),
        (1 + 0j, r"got \(1\+0j\) \(complex, not a real number\)"),
        (np.array([1.0 + 0j]), r"\(an array of dtype complex128"),
        ("1", r"got '1' \(str"),
        (None, r"got None \(NoneType"),
        (np.array([1.0], dtype=object), r"\(an array of dtype object"),
        ([np.nan], r"times must be finite and >= 0 s, got \[nan\]"),
        ([1.0, -np.inf], r"times must be finite and >= 0 s, got \[-inf\]"),
    ],
)
@pytest.mark.parametrize(
    "func", [absorbed_fraction, hitting_rate, exact_absorbed_fraction, exact_hitting_rate]
)
def test_times_refuse_bools_and_non_real_numbers(func, t, match):
    with pytest.raises(ValueError, match=r"times must be finite and >= 0 s, got "):
        func(HALF, t)
    with pytest.raises(ValueError, match=match):
        func(HALF, t)


def test_real_times_of_any_numeric_type_give_identical_results():
    ref = absorbed_fraction(HALF, np.array([0.0, 0.5, 1.0, 2.0]))
    np.testing.assert_array_equal(absorbed_fraction(HALF, [0, 0.5, 1, 2]), ref)
    np.testing.assert_array_equal(absorbed_fraction(HALF, np.array([0, 1, 2]))[1:], ref[2:])
    assert float(absorbed_fraction(HALF, np.float32(0.5))) == float(ref[1])
    assert float(hitting_rate(HALF, np.int64(1))) == float(hitting_rate(HALF, 1.0))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: erfc_terms(SLAB, t_max=True), r"t_max must be a finite time >= 0 s .* got True"),
        (lambda: erfc_terms(SLAB, t_max=np.nan), r"t_max must be a finite time >= 0 s .* got nan"),
        (lambda: erfc_terms(SLAB, t_max="2"), r"t_max must be a finite time .* got '2' \(str"),
        (lambda: erfc_terms(HALF, t_max=-1.0), r"t_max must be a finite time >= 0 s .* got -1\.0"),
        (lambda: laplace_hitting(HALF, True), r"s must be complex or real numbers .* got True"),
        (lambda: laplace_hitting(HALF, [1.0, False]), r"s must be .*\(entries of type bool"),
        (lambda: laplace_hitting(HALF, 1.0, tol=True), r"tol must be a number in \[1e-12"),
        (
            lambda: laplace_hitting(HALF, 1.0, order=True),
            r"order must be an integer >= 1, got True",
        ),
        (lambda: laplace_hitting(HALF, 1.0, order=0), r"order must be an integer >= 1, got 0"),
        (lambda: laplace_hitting(HALF, 1.0, order=2.5), r"order must be an integer >= 1, got 2\.5"),
        (lambda: exact_absorbed_fraction(HALF, 1, tol=np.nan), r"tol must be a number .* nan"),
        (lambda: image_charges(HALF, tol=True), r"tol must be a finite number > 0, got True"),
        (lambda: image_charges(HALF, tol=np.nan), r"tol must be a finite number > 0, got nan"),
        (lambda: image_charges(HALF, tol=0.0), r"tol must be a finite number > 0, got 0\.0"),
        (
            lambda: image_charges(HALF, max_terms=True),
            r"max_terms must be an integer >= 1, got True",
        ),
    ],
)
def test_analytic_and_exact_parameters_refuse_bools_nan_and_non_real(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"t_end": True}, r"t_end must be a finite number > 0 s, got True \(bool"),
        ({"t_end": np.True_}, r"t_end must be a finite number > 0 s, got np\.True_ \(bool"),
        ({"dt": True}, r"dt must be a finite number > 0 s, got True \(bool"),
        ({"t_end": "0.1"}, r"t_end must be a finite number > 0 s, got '0\.1' \(str"),
        ({"t_end": np.inf}, r"t_end must be a finite number > 0 s, got inf"),
        ({"dt": np.nan}, r"dt must be a finite number > 0 s, got nan"),
    ],
)
@pytest.mark.parametrize("func", [simulate, simulate_batch, simulate_image_pair])
def test_simulator_times_refuse_bools_and_non_real(func, kwargs, match):
    args = {"t_end": 0.1, "dt": 1e-3, **kwargs}
    extra = {"seed": 1} if func is simulate else {}
    pos = (1,) if func is not simulate else ()
    with pytest.raises(ValueError, match=match):
        func(HALF, args["t_end"], args["dt"], 10, *pos, **extra)


def test_simulate_batch_jumps_must_be_a_bool():
    with pytest.raises(ValueError, match=r"jumps must be True \(.*\) or False, got 'no'"):
        simulate_batch(HALF, 0.01, 1e-3, 5, 1, jumps="no")


@pytest.fixture(scope="module")
def sim():
    return simulate(HALF, 0.1, 1e-3, 200, seed=1)


@pytest.mark.parametrize(
    ("bin_width", "match"),
    [
        (0, r"bin_width must be a finite number > 0 s, got 0$"),
        (-0.01, r"bin_width must be a finite number > 0 s, got -0\.01$"),
        (np.nan, r"bin_width must be a finite number > 0 s, got nan$"),
        (np.inf, r"bin_width must be a finite number > 0 s, got inf$"),
        (True, r"bin_width must be a finite number > 0 s, got True \(bool"),
        (
            1e-4,
            r"bin_width / dt must be a positive integer number of steps, got bin_width = 0\.0001 s"
            r", dt = 0\.001 s",
        ),
        (0.03, r"bin_width = 0\.03 s \(30 steps\) must divide the 100 steps"),
    ],
)
def test_binned_hitting_rate_names_bin_width_and_its_range(sim, bin_width, match):
    with pytest.raises(ValueError, match=match) as info:
        binned_hitting_rate(sim, bin_width)
    assert "t_end must" not in str(info.value)
    with pytest.raises(ValueError, match=match):  # peak bins the simulation the same way
        peak(sim, bin_width=bin_width)


def test_metric_parameters_refuse_bools_nan_and_non_real(sim):
    with pytest.raises(ValueError, match=r"symbol_time must be a finite number > 0 s, got True"):
        received_fraction(sim, True)
    with pytest.raises(ValueError, match=r"symbol_time must be .* got '0\.05' \(str"):
        isi_taps(HALF, "0.05", model="free")
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0, got True"):
        peak(sim, bin_width=0.005, seed=True)
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0, got -1"):
        peak(sim, bin_width=0.005, seed=-1)
    ones = np.ones(3)
    with pytest.raises(ValueError, match=r"floor must be a finite number >= 0, got True"):
        relative_error(ones, ones, floor=True)
    with pytest.raises(ValueError, match=r"floor must be a finite number >= 0, got nan"):
        relative_error(ones, ones, floor=np.nan)


def test_relative_error_still_propagates_nan_values():
    out = relative_error(np.array([np.nan, 1.1]), np.array([0.5, 1.0]))
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1.0, 0.0), r"step must be a finite number > 0 s, got 0\.0"),
        ((1.0, True), r"step must be a finite number > 0 s, got True \(bool"),
        ((np.nan, 0.1), r"duration must be a finite number >= 0 s, got nan"),
        ((np.inf, 0.1), r"duration must be a finite number >= 0 s, got inf"),
        ((True, 0.1), r"duration must be a finite number >= 0 s, got True \(bool"),
        ((1.0, 0.1, np.nan), r"rtol must be a finite number >= 0, got nan"),
    ],
)
def test_whole_steps_refuses_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        whole_steps(*args)


def test_whole_steps_answers_unchanged():
    assert whole_steps(2.0, 1e-4) and whole_steps(0.3, 0.1) and whole_steps(0, 0.1)
    assert not whole_steps(np.float32(0.5), np.int64(1))
    assert whole_steps(3, 1) and not whole_steps(0.25, 0.1)
