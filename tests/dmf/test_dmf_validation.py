"""Edge cases of the public dmf API: complex/bool/object input, bools for numbers, overflow.

* complex layers or targets used to lose their imaginary part silently (float64 conversion);
  booleans, strings and object arrays were converted too — all are now refused by name;
* booleans were accepted wherever a number is (``eta=True`` ran with η = 1);
* finite weights whose products or Hessian overflow float64 (``1e200``) gave a sharpness of
  ``inf`` (or an ``escape`` run "diverged" from its first step): every sharpness function,
  the derivatives and the escape entry points now raise the same ``Float64OverflowError``
  (a ``ValueError`` and an ``OverflowError``), and values just below overflow are unchanged.
"""

import logging
import math

import numpy as np
import pytest

from sweeplab import dmf
from sweeplab.dmf.escape import _exact_sharpness, _lanczos_sharpness
from sweeplab.dmf.validation import Float64OverflowError


@pytest.fixture(scope="module")
def minimizer():
    return dmf.gaussian_minimizer((2, 3, 2), np.random.default_rng(0))


def _sharpness_calls():
    """Public entry points that take ``weights`` of a minimizer (name, call)."""
    return [
        ("sharpness", dmf.sharpness),
        ("sharpness_closed_form", dmf.sharpness_closed_form),
        ("sharpness_bound", dmf.sharpness_bound),
        ("hessian_eigenvalues", dmf.hessian_eigenvalues),
        ("kronecker_matrix", dmf.kronecker_matrix),
        ("top_eigenvector", dmf.top_eigenvector),
        ("null_direction", dmf.null_direction),
        ("loss", lambda ws: dmf.loss(ws, np.eye(2))),
        ("gradient", lambda ws: dmf.gradient(ws, np.eye(2))),
        ("sharpness_numerical", lambda ws: dmf.sharpness_numerical(ws, np.eye(2))),
        ("escape", lambda ws: dmf.escape(ws, 0.1, max_steps=2)),
        ("escape_batch", lambda ws: dmf.escape_batch(ws, [0.1], max_steps=2)),
    ]


@pytest.mark.parametrize(("name", "call"), _sharpness_calls())
@pytest.mark.parametrize(
    ("bad_w1", "match"),
    [
        (np.eye(2) + 1e-3j, r"W_1 must be real numbers, got an array of dtype complex128: complex"),
        (np.eye(2) + 0j, r"drop their imaginary part"),  # zero imaginary part: still refused
        ([[1.0, 0.0], [0.0, 1j]], r"W_1 must be real numbers, got entries of type complex"),
        (np.eye(2, dtype=bool), r"W_1 must be real numbers, got an array of dtype bool"),
        ([[True, False], [False, True]], r"W_1 must be real numbers, got entries of type bool"),
        ([[1.0, 0.0], [0.0, True]], r"entries of type bool"),  # a bool hidden among floats
        (np.eye(2).astype(object), r"W_1 must be real numbers, got an array of dtype object"),
        ([["1", "0"], ["0", "1"]], r"W_1 must be real numbers, got entries of type str"),
    ],
)
def test_weights_must_be_real_arrays(name, call, bad_w1, match):
    weights = [bad_w1, np.eye(2)]
    if name == "escape_batch" and isinstance(bad_w1, list):
        weights = [weights]  # a list first layer reads as one minimizer per step size
    with pytest.raises(ValueError, match=match):
        call(weights)


def test_targets_vectors_and_parameter_vectors_must_be_real(minimizer):
    ws, m = minimizer
    with pytest.raises(ValueError, match=r"target must be real numbers, got an array of dtype c"):
        dmf.sharpness(ws, target=m + 0j)
    with pytest.raises(ValueError, match=r"target must be real numbers, got an array of dtype c"):
        dmf.loss(ws, m + 1e-3j)
    with pytest.raises(ValueError, match=r"target must be real numbers, got entries of type bool"):
        dmf.loss([np.ones((1, 1))], [[True]])
    with pytest.raises(ValueError, match=r"target must be real numbers, got entries of type comp"):
        dmf.flattest_sharpness([[1 + 1j]], 3)
    with pytest.raises(ValueError, match=r"vectors: W_1 must be real numbers, got an array of dt"):
        dmf.hvp(ws, m, [w * 1j for w in ws])
    with pytest.raises(ValueError, match=r"vector must be real numbers, got an array of dtype c"):
        dmf.unflatten(np.ones(12) * 1j, [w.shape for w in ws])
    with pytest.raises(ValueError, match=r"etas must be real numbers, got entries of type bool"):
        dmf.escape_batch(ws, [True], max_steps=2)
    with pytest.raises(ValueError, match=r"etas must be real numbers, got entries of type comp"):
        dmf.escape_batch(ws, [0.1 + 0j], max_steps=2)


def test_integer_and_nested_list_input_is_unchanged(minimizer):
    ws, _ = minimizer
    as_lists = [w.tolist() for w in ws]
    assert dmf.sharpness(as_lists) == dmf.sharpness(ws)
    ints = [np.array([[2]]), np.array([[3]], dtype=np.int32)]
    assert dmf.sharpness(ints) == dmf.sharpness([[[2.0]], [[3.0]]]) == 26.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda ws, m: dmf.escape(ws, True), r"eta must be a finite number > 0, got True \(bool"),
        (
            lambda ws, m: dmf.escape(ws, 0.1, radius=True, escape_radius=2.0),
            r"radius must be a finite number > 0, got True \(bool",
        ),
        (
            lambda ws, m: dmf.escape(ws, 0.1, loss_tol="1e-20"),
            r"loss_tol must be a finite number > 0, got '1e-20' \(str",
        ),
        (
            lambda ws, m: dmf.escape(ws, 0.1, target=m, rtol=True),
            r"rtol must be a finite number > 0, got True \(bool",
        ),
        (
            lambda ws, m: dmf.escape(ws, 0.1, max_steps=10, checkpoints=[False, True]),
            r"checkpoints must be integer step indices, got entries of type bool",
        ),
        (
            lambda ws, m: dmf.escape(ws, 0.1, max_steps=True),
            r"max_steps must be an integer >= 1, got True \(bool, not an integer\)",
        ),
        (
            lambda ws, m: dmf.sharpness(ws, target=m, rtol=True),
            r"rtol must be a finite number > 0, got True",
        ),
        (
            lambda ws, m: dmf.sharpness_numerical(ws, m, tol=True),
            r"tol must be a finite number >= 0, got True \(bool",
        ),
        (
            lambda ws, m: dmf.sharpness_numerical(ws, m, tol="x"),
            r"tol must be a finite number >= 0, got 'x' \(str",
        ),
        (
            lambda ws, m: dmf.sharpness_numerical(ws, m, seed=True),
            r"seed must be an integer >= 0, got True",
        ),
        (
            lambda ws, m: dmf.sharpness_numerical(ws, m, seed=-1),
            r"seed must be an integer >= 0, got -1",
        ),
        (
            lambda ws, m: dmf.predicted_escape_step(10.0, True, 1e-9, 1e-3),
            r"eta must be a finite number > 0, got True",
        ),
        (
            lambda ws, m: dmf.predicted_escape_step(math.nan, 0.1, 1e-9, 1e-3),
            r"sharpness_star must be a finite number >= 0, got nan",
        ),
        (
            lambda ws, m: dmf.default_checkpoints(10, True),
            r"num must be an integer >= 1, got True",
        ),
        (lambda ws, m: dmf.default_checkpoints(10, 0), r"num must be an integer >= 1, got 0"),
        (
            lambda ws, m: dmf.balanced_minimizer(m, [3], rank_rtol=True),
            r"rank_rtol must be a finite number > 0, got True",
        ),
        (
            lambda ws, m: dmf.gauge_minimizer(m, [3], np.random.default_rng(0), True),
            r"spread must be a finite number >= 0, got True",
        ),
        (
            lambda ws, m: dmf.gauge_minimizer(m, [3], np.random.default_rng(0), "1"),
            r"spread must be a finite number >= 0, got '1' \(str",
        ),
        (
            lambda ws, m: dmf.scalar_minimizer(3, np.random.default_rng(0), True, 1.5),
            r"low must be a finite number > 0, got True",
        ),
        (
            lambda ws, m: dmf.haar_orthogonal(True, np.random.default_rng(0)),
            r"n must be an integer >= 1, got True",
        ),
        (
            lambda ws, m: dmf.flattest_sharpness(m, np.True_),
            r"depth must be an integer >= 1, got np\.True_",
        ),
    ],
)
def test_number_parameters_refuse_bools_strings_and_nan(minimizer, call, match):
    ws, m = minimizer
    with pytest.raises(ValueError, match=match):
        call(ws, m)


BIG = [np.array([[1e200]]), np.array([[1.0]])]  # K = diag(1, 1e400): overflows float64
OVERFLOW = r"weights too large: .* overflows float64 \(max \|w\| = 1e\+200, in W_1\)"


@pytest.mark.parametrize(
    "func",
    [
        dmf.sharpness,
        dmf.sharpness_closed_form,
        dmf.sharpness_bound,
        dmf.hessian_eigenvalues,
        dmf.kronecker_matrix,
        dmf.top_eigenvector,
        lambda ws: dmf.escape(ws, 1e-3, max_steps=10),
        lambda ws: dmf.escape_batch(ws, [1e-3, 2e-3], max_steps=10),
    ],
)
def test_overflowing_weights_raise_instead_of_inf(func):
    with pytest.raises(Float64OverflowError, match=OVERFLOW) as info:
        func(BIG)
    assert isinstance(info.value, ValueError) and isinstance(info.value, OverflowError)


def test_overflow_in_matrix_chains_and_with_a_target():
    ws, m = dmf.gaussian_minimizer((3, 3, 3, 3), np.random.default_rng(2))
    big = [1e120 * w for w in ws]  # product ~1e360: the chain itself overflows
    with pytest.raises(Float64OverflowError, match=r"the products W_L⋯W_\{i\+1\} and W_\{i-1\}"):
        dmf.sharpness(big)
    with pytest.raises(Float64OverflowError, match=r"the product W_L⋯W_1 overflows float64"):
        dmf.sharpness(big, target=m)  # no misleading "not a minimizer: residual inf"
    with pytest.raises(Float64OverflowError, match=r"the product W_L⋯W_1 overflows float64"):
        dmf.escape(big, 0.1, max_steps=2)
    with pytest.raises(Float64OverflowError, match=r"weights or target too large: the loss"):
        dmf.loss(big, m)
    with pytest.raises(Float64OverflowError, match=r"weights or target too large: the gradient"):
        dmf.gradient(big, m)
    with pytest.raises(Float64OverflowError, match=r"the Hessian-vector product overflows"):
        dmf.hvp(big, m, ws)
    with pytest.raises(Float64OverflowError, match=r"the Hessian-vector product overflows"):
        dmf.sharpness_numerical(big, m)
    with pytest.raises(Float64OverflowError, match=r"the Hessian-vector product overflows"):
        dmf.sharpness_numerical(big, m, "dense")
    with pytest.raises(Float64OverflowError, match=r"target too large: the flattest sharpness"):
        dmf.flattest_sharpness([[1e300]], 3)


def test_scalar_chain_overflow_in_the_hessian_only():
    # all products are finite (1e200, 1), but the Hessian entries w_1^2 = 1e400 are not
    ws = [np.array([[1e-200]]), np.array([[1e200]])]
    with pytest.raises(Float64OverflowError, match=r"overflows float64 \(max \|w\| = 1e\+200"):
        dmf.sharpness(ws)
    with pytest.raises(Float64OverflowError, match=r"the Hessian-vector product overflows"):
        dmf.sharpness_numerical(ws, [[1.0]])
    with pytest.raises(Float64OverflowError, match=r"the closed-form sharpness overflows"):
        dmf.sharpness_closed_form(ws)


def test_large_but_representable_weights_are_unchanged():
    ws = [np.array([[1e150]]), np.array([[1.0]])]  # sharpness 2 (1e300 + 1) = 2e300
    assert dmf.sharpness(ws) == pytest.approx(2e300, rel=1e-15)
    assert dmf.sharpness_closed_form(ws) == pytest.approx(2e300, rel=1e-15)
    assert dmf.sharpness_bound(ws) == pytest.approx(2e300, rel=1e-15)
    assert dmf.sharpness_numerical(ws, [[1e150]]) == pytest.approx(2e300, rel=1e-12)
    assert dmf.flattest_sharpness([[1e300]], 2) == 4e300
    tiny = [np.array([[1e-200]]), np.array([[1e-200]])]  # underflow to 0 is not an error
    assert dmf.sharpness(tiny) == 2 * (1e-200) ** 2 * 2
    assert dmf.sharpness([np.array([[3.0]]), np.array([[2.0]])]) == 26.0


def test_escape_records_nan_when_a_final_sharpness_overflows(caplog):
    caplog.set_level(logging.WARNING, logger="sweeplab.dmf.escape")
    assert math.isnan(_exact_sharpness(BIG))
    assert math.isnan(_lanczos_sharpness(BIG, np.array([[1e200]])))
    assert sum("not representable" in r.getMessage() for r in caplog.records) == 2
