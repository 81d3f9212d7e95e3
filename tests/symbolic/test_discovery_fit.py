"""symbolic.discovery constant fitting: variable projection, multi-start LM (float64), snapping."""

import json
import pathlib

import jax
import numpy as np
import pytest
import sympy

from symbolic import discovery as d

DATA = pathlib.Path(__file__).parents[1] / "data" / "equations_public.json"
TASKS = {t["id"]: t for t in json.loads(DATA.read_text())["tasks"]}
N = 200  # one data size for every fit: shared compiled kernels


def _skeleton(formula, names):
    return d.from_sympy(d.parse(formula, names), names)


def test_arrhenius_recovered_from_far_away():
    """A*exp(-E/(R*T)): BFGS from all-ones fails (MCI); VarPro on A + log-magnitude LM on E does not."""
    T = np.random.default_rng(0).uniform(300.0, 1000.0, (N, 1))
    A, E = 3.7e7, 52341.9
    y = A * np.exp(-E / (8.314 * T[:, 0]))
    e = _skeleton("c0*exp(-c1/(8.314*T))", ["T"])
    r = d.fit_constants(e, T, y, key=jax.random.key(0))
    assert r.valid
    np.testing.assert_allclose(r.constants, [A, E], rtol=1e-6)
    assert r.loss < 1e-12 * np.var(y)
    # 3.7e7 is the integer 37000000: snapped and kept. 52341.9 is within 1e-4 of 52342, but fixing it
    # there worsens the exact fit, so that snap is refused.
    assert r.snapped == (True, False)


def test_large_frequency_recovered():
    """a*sin(w*t) with w large: multimodal in w; screening over log|w| then LM finds it."""
    t = np.linspace(0.0, 4.0, N)[:, None]
    a, w = 1.73, 23.718
    y = a * np.sin(w * t[:, 0])
    e = _skeleton("c0*sin(c1*t)", ["t"])
    r = d.fit_constants(e, t, y, key=jax.random.key(1), snap=False)
    c0, c1 = r.constants
    # sin is odd: (a, w) and (-a, -w) are the same function
    assert np.sign(c0) == np.sign(c1)
    np.testing.assert_allclose(np.abs(r.constants), [a, w], rtol=1e-6)


def test_frequency_with_offset_and_damping():
    t = np.linspace(0.0, 3.0, N)[:, None]
    y = 0.9 * np.exp(-0.37 * t[:, 0]) * np.cos(11.3 * t[:, 0]) + 0.25
    e = _skeleton("c0*exp(c1*t)*cos(c2*t) + c3", ["t"])
    off, lin = d.linear_constants(e)
    assert off is None and sorted(i for i, _ in lin) == [0, 3]
    r = d.fit_constants(e, t, y, key=jax.random.key(2), snap=False)
    c = r.constants
    np.testing.assert_allclose([c[0], c[1], abs(c[2]), c[3]], [0.9, -0.37, 11.3, 0.25], rtol=1e-6)


@pytest.mark.parametrize(
    ("tid", "skeleton", "truth"),
    [
        ("P07", "c0*x - c1*x*y", [1.1, 0.4]),
        ("P10", "c0*S/(c1 + S)", [2.5, 0.8]),
        ("P13", "c0*N*(1 - N/c1)", [0.7, 50.0]),
        ("P14", "c0*exp(-c1/T)", [1e7, 6000.0]),
        ("P12", "c0*sin(theta)", [-9.81]),
        ("P11", "c0*(1 - x**2)*v - x", [1.5]),
    ],
)
def test_public_formulas_with_free_constants(tid, skeleton, truth):
    task = TASKS[tid]
    names = list(task["vars"])
    rng = np.random.default_rng(0)
    X = np.stack([rng.uniform(*v["train"], N) for v in task["vars"].values()], axis=1)
    y = sympy.lambdify([sympy.Symbol(n) for n in names], d.parse(task["formula"], names), "numpy")(*X.T)
    r = d.fit_constants(_skeleton(skeleton, names), X, y, key=jax.random.key(0))
    assert r.valid
    np.testing.assert_allclose(r.constants, truth, rtol=1e-6)
    assert r.loss <= 1e-16 * np.var(y) + 1e-28
    # every true value here but 9.81 is a simple rational (q <= 12): snapped exactly
    want_snapped = tuple(d.snap_value(v) is not None for v in truth)
    assert r.snapped == want_snapped
    for v, ex in zip(truth, r.exact):
        if ex is not None:
            assert ex == sympy.nsimplify(v)
    # the returned skeleton carries the exact literals in place of the snapped constants
    lit = d.to_sympy(r.expr, names)
    assert sum(1 for s in lit.free_symbols if s.name.startswith("c")) == len(truth) - sum(r.snapped)


def test_free_constants_helper_gives_fit_skeleton():
    task = TASKS["P09"]
    names = list(task["vars"])
    e = d.free_constants(d.from_sympy(d.parse(task["formula"], names), names), keep_integers=False)
    assert d.n_constants(e) == 2
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.0, 1.0, (N, 2))
    y = -4 * X[:, 0] - 0.4 * X[:, 1]
    r = d.fit_constants(e, X, y, key=jax.random.key(0))
    got = d.to_sympy(r.expr, names)
    assert sympy.simplify(got - d.parse(task["formula"], names)) == 0
    assert all(r.snapped)


@pytest.mark.slow  # 12 s; snapping is also checked by the Arrhenius and public-formula fits
def test_snap_pi_and_refit():
    x = np.linspace(-1.0, 1.0, N)[:, None]
    y = 1.234567 * np.sin(2 * np.pi * x[:, 0]) + 0.5 * x[:, 0]
    e = _skeleton("c0*sin(c1*x) + c2*x", ["x"])
    r = d.fit_constants(e, x, y, key=jax.random.key(3))
    assert r.snapped == (False, True, True)
    assert r.exact[1] in (2 * sympy.pi, -2 * sympy.pi) and r.exact[2] == sympy.Rational(1, 2)
    np.testing.assert_allclose(abs(r.constants[0]), 1.234567, rtol=1e-8)


def test_snap_rejected_when_it_hurts():
    """2.00003 is within 1e-4 of 2, but fixing it there visibly worsens an exact fit: not snapped."""
    x = np.linspace(0.1, 3.0, N)[:, None]
    y = 1.7 * np.exp(2.00003 * x[:, 0])
    r = d.fit_constants(_skeleton("c0*exp(c1*x)", ["x"]), x, y, key=jax.random.key(0))
    assert r.snapped == (True, False)  # 1.7 = 17/10 holds; 2.00003 is refused
    np.testing.assert_allclose(r.constants, [1.7, 2.00003], rtol=1e-8)


def test_snapping_that_lengthens_the_program():
    """Snapped constants of subtracted terms become (-1)* factors: the refit gets a longer program."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.0, 1.0, (N, 2))
    y = -1.3 * X[:, 0] + 0.8 * X[:, 0] ** 3 - 0.4 * X[:, 1]
    r = d.fit_constants(_skeleton("c0*x**3 - c1*v - c2*x", ["x", "v"]), X, y, key=jax.random.key(0))
    assert r.valid and all(r.snapped) and r.loss < 1e-25
    assert [float(v) for v in r.exact] == [0.8, 0.4, 1.3]


def test_snap_value():
    assert d.snap_value(0.5000001) == sympy.Rational(1, 2)
    assert d.snap_value(-3.1415926) == -sympy.pi
    assert d.snap_value(0.7853981) == sympy.pi / 4
    assert d.snap_value(6000.2) == 6000  # relative tolerance, as the benchmark protocol specifies
    assert d.snap_value(0.1234567) is None
    assert d.snap_value(0.0) is None
    with pytest.raises(ValueError, match="`rtol`"):
        d.snap_value(1.0, rtol=2.0)
    with pytest.raises(TypeError, match="`value`"):
        d.snap_value("1")


def test_linear_constants_structure():
    names = ["x", "y"]
    off, lin = d.linear_constants(_skeleton("c0*x + c1*exp(c2*x) - c3*y/x + x**2", names))
    assert [i for i, _ in lin] == [0, 1, 3]
    assert d.to_sympy(off, names) == sympy.Symbol("x") ** 2
    assert d.to_sympy(dict(lin)[3], names) == -sympy.Symbol("y") / sympy.Symbol("x")
    # a constant used twice, or inside a nonlinear function, is not linear
    off, lin = d.linear_constants(_skeleton("c0*x + c0*y + c1*(x + c2*y)", names))
    assert [i for i, _ in lin] == [1]


def test_invalid_candidate_is_marked():
    x = np.linspace(0.0, 1.0, N)[:, None]
    r = d.fit_constants(_skeleton("c0*log(x - 10)", ["x"]), x, x[:, 0], key=jax.random.key(0))
    assert not r.valid and r.loss == np.inf


def test_same_key_same_result_and_no_constants():
    x = np.linspace(0.5, 2.0, N)[:, None]
    y = 3.3 / x[:, 0] + 0.7
    e = _skeleton("c0/x + c1", ["x"])
    r1 = d.fit_constants(e, x, y, key=jax.random.key(5), snap=False)
    r2 = d.fit_constants(e, x, y, key=jax.random.key(5), snap=False)
    np.testing.assert_array_equal(r1.constants, r2.constants)
    r0 = d.fit_constants(_skeleton("1/x", ["x"]), x, y, key=jax.random.key(5))
    assert r0.constants.shape == (0,) and r0.valid
    np.testing.assert_allclose(r0.loss, np.mean((1 / x[:, 0] - y) ** 2), rtol=1e-12)


def test_fit_bad_inputs():
    e = _skeleton("c0*x", ["x"])
    x = np.ones((5, 1))
    with pytest.raises(TypeError, match="`key`"):
        d.fit_constants(e, x, np.ones(5), key=0)
    with pytest.raises(ValueError, match="`X`"):
        d.fit_constants(e, np.ones(5), np.ones(5), key=jax.random.key(0))
    with pytest.raises(ValueError, match="`y`"):
        d.fit_constants(e, x, np.ones(4), key=jax.random.key(0))
    with pytest.raises(ValueError, match="finite"):
        d.fit_constants(e, x, np.full(5, np.nan), key=jax.random.key(0))
    with pytest.raises(ValueError, match="`n_starts`"):
        d.fit_constants(e, x, np.ones(5), key=jax.random.key(0), n_starts=0)
    with pytest.raises(ValueError, match="`n_screen`"):
        d.fit_constants(e, x, np.ones(5), key=jax.random.key(0), n_starts=8, n_screen=4)
    with pytest.raises(ValueError, match="variable 1"):
        d.fit_constants(_skeleton("c0*y", ["x", "y"]), x, np.ones(5), key=jax.random.key(0))
    with pytest.raises(TypeError, match="`expr`"):
        d.fit_constants("c0*x", x, np.ones(5), key=jax.random.key(0))


def test_row_weights_fit_a_subset_with_the_same_kernel():
    """A 0/1 mask fits the masked rows only: the same constants as fitting the subset itself."""
    rng = np.random.default_rng(4)
    x = rng.uniform(0.5, 2.0, (N, 1))
    y = 2.0 * np.exp(-1.5 * x[:, 0])
    y[: N // 4] += 5.0  # corrupted rows, masked out
    mask = np.r_[np.zeros(N // 4), np.ones(N - N // 4)]
    e = _skeleton("c0*exp(c1*x)", ["x"])
    r = d.fit_constants(e, x, y, key=jax.random.key(0), weights=mask)
    np.testing.assert_allclose(r.constants, [2.0, -1.5], rtol=1e-9)
    assert r.loss < 1e-25
    with pytest.raises(ValueError, match="weights"):
        d.fit_constants(e, x, y, key=jax.random.key(0), weights=np.zeros(N))
