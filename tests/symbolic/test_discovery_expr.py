"""symbolic.discovery expressions: SymPy round trip, the stack-machine evaluator, grammar checks."""

import json
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

import sciml.backend as B
from symbolic import discovery as d

DATA = pathlib.Path(__file__).parents[1] / "data" / "equations_public.json"
TASKS = json.loads(DATA.read_text())["tasks"]
MAX_VARS = max(len(t["vars"]) for t in TASKS)
MAX_LEN = 32


def _task_expr(task):
    names = list(task["vars"])
    s = d.parse(task["formula"], names)
    return names, s, d.from_sympy(s, names)


def _box(task, n, seed, which="train"):
    rng = np.random.default_rng(seed)
    cols = [rng.uniform(*v[which], n) for v in task["vars"].values()]
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("task", TASKS, ids=[t["id"] for t in TASKS])
def test_round_trip_public(task):
    names, s, e = _task_expr(task)
    back = d.to_sympy(e, names)
    assert back == s  # structural equality (SymPy canonical form)
    assert sympy.simplify(back - s) == 0
    assert d.complexity(e) >= len(names)
    # a second round trip is the identity on trees
    assert d.from_sympy(back, names) == e


def test_evaluator_matches_lambdify_on_public_formulas():
    """Every public formula, float64, random points in the train box: within 1e-6 relative of NumPy."""
    worst = 0.0
    with B.precision("float64"):
        for task in TASKS:
            names, s, e = _task_expr(task)
            X = _box(task, 256, 0)
            ref = sympy.lambdify([sympy.Symbol(n) for n in names], s, "numpy")(*X.T)
            Xpad = np.zeros((X.shape[0], MAX_VARS))  # one shape for all tasks: one compiled kernel
            Xpad[:, : X.shape[1]] = X
            prog = d.compile_programs(e, max_len=MAX_LEN)
            got = np.asarray(d.evaluate(prog, jnp.asarray(Xpad), jnp.zeros((0,), jnp.float64)))
            assert got.dtype == np.float64
            assert np.all(np.isfinite(ref)), task["id"]
            err = np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12))
            worst = max(worst, err)
            assert err < 1e-6, (task["id"], err)
    assert worst < 1e-12  # in practice the stack machine is exact to rounding


def test_batch_matches_single_and_does_not_recompile():
    exprs = [_task_expr(t)[2] for t in TASKS]
    X = jnp.asarray(np.random.default_rng(1).uniform(1.0, 2.0, (64, MAX_VARS)), jnp.float32)
    # exprs use variables by index; P15's phi in [1, 2] makes log(1 - phi) NaN: fine, compared as NaN
    counted = eqx.filter_jit(eqx.debug.assert_max_traces(d.evaluate_batch, max_traces=1))
    first = d.compile_programs(exprs[:8], max_len=MAX_LEN)
    second = d.compile_programs(exprs[7:15], max_len=MAX_LEN)  # new candidates, same max_len
    c = jnp.zeros((8, 0))
    out1 = counted(first, X, c)
    out2 = counted(second, X, c)  # would raise if it retraced
    assert out1.shape == out2.shape == (8, 64)
    for k, e in enumerate(exprs[7:15]):
        single = d.evaluate(d.compile_programs(e, max_len=MAX_LEN), X, jnp.zeros((0,)))
        np.testing.assert_allclose(np.asarray(out2[k]), np.asarray(single), rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("tid", ["P04", "P06", "P15"])
def test_permutation_equivariance(tid, getkey):
    task = next(t for t in TASKS if t["id"] == tid)
    names, _, e = _task_expr(task)
    X = jnp.asarray(_box(task, 100, 3), jnp.float32)
    perm = jax.random.permutation(getkey(), X.shape[0])
    prog = d.compile_programs(e)
    f = lambda A: d.evaluate(prog, A, jnp.zeros((0,)))
    np.testing.assert_array_equal(np.asarray(f(X)[perm]), np.asarray(f(X[perm])))


def test_constants_jit_and_grad():
    e = d.from_sympy(d.parse("c0*exp(-c1*x) + c2", ["x"]), ["x"])
    prog = d.compile_programs(e)
    x = jnp.linspace(0.0, 2.0, 7, dtype=jnp.float32)[:, None]
    c = jnp.array([2.0, 0.5, -1.0])
    out = jax.jit(d.evaluate)(prog, x, c)
    np.testing.assert_allclose(np.asarray(out), 2.0 * np.exp(-0.5 * np.asarray(x[:, 0])) - 1.0, rtol=1e-6)
    g = jax.grad(lambda c_: jnp.sum(d.evaluate(prog, x, c_)))(c)
    xs = np.asarray(x[:, 0], np.float64)
    want = [np.sum(np.exp(-0.5 * xs)), np.sum(-2.0 * xs * np.exp(-0.5 * xs)), 7.0]
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-5)


def test_gamma_erf_abs_tanh_parity():
    with B.precision("float64"):
        names = ["x", "y"]
        s = d.parse("gamma(x) + erf(y)*abs(y) - tanh(x*y) + x**y + log(x)/sqrt(x)", names)
        e = d.from_sympy(s, names)
        assert d.to_sympy(e, names) == s
        X = np.random.default_rng(2).uniform(0.3, 3.0, (50, 2))
        ref = sympy.lambdify(sympy.symbols("x y"), s, "scipy")(*X.T) if _has_scipy() else None
        if ref is None:
            ref = np.array([float(s.subs({"x": a, "y": b}).evalf(20)) for a, b in X[:10]])
            X = X[:10]
        got = np.asarray(d.evaluate(d.compile_programs(e), jnp.asarray(X), jnp.zeros((0,), jnp.float64)))
        np.testing.assert_allclose(got, ref, rtol=1e-10)


def _has_scipy():
    try:
        import scipy.special  # noqa: F401
    except ImportError:
        return False
    return True


def test_protected_semantics_are_ieee():
    """Domain errors give NaN/inf (documented), not silently clipped values."""
    e = d.from_sympy(d.parse("log(x) + 1/(x - 1) + sqrt(x)", ["x"]), ["x"])
    out = np.asarray(d.evaluate(d.compile_programs(e), jnp.array([[-1.0], [1.0], [4.0]]), jnp.zeros((0,))))
    assert np.isnan(out[0]) and np.isinf(out[1]) and np.isfinite(out[2])


@pytest.mark.slow  # 10 s; custom operators also in the agents' tests
def test_custom_operator_end_to_end():
    softplus_sym = sympy.Function("softplus")
    softplus = d.Operator("softplus", 1, jax.nn.softplus, softplus_sym)
    hinge = d.Operator("hinge", 2, lambda a, b: jnp.maximum(a - b, 0.0), lambda a, b: sympy.Max(a - b, 0))
    g = d.default_grammar([softplus, hinge])
    names = ["x"]
    s = d.parse("c0*softplus(c1*x) + 2", names, g)
    e = d.from_sympy(s, names, g)
    inner = d.Call("softplus", (d.Call("mul", (d.Const(1), d.Var(0))),))
    assert e == d.Call("add", (d.Literal(sympy.Integer(2)), d.Call("mul", (d.Const(0), inner))))
    assert d.to_sympy(e, names, g) == s
    # the default grammar does not know it
    with pytest.raises(ValueError, match="softplus"):
        d.from_sympy(s, names)
    x = jnp.linspace(-2.0, 2.0, 9)[:, None]
    out = d.evaluate(d.compile_programs(e, g), x, jnp.array([1.5, 3.0]))
    np.testing.assert_allclose(
        np.asarray(out), 1.5 * np.asarray(jax.nn.softplus(3.0 * x[:, 0])) + 2, rtol=1e-6
    )
    # an operator with a callable (non-class) SymPy definition prints expanded
    h = d.Call("hinge", (d.Var(0), d.Literal(sympy.Integer(1))))
    assert d.to_sympy(h, names, g) == sympy.Max(sympy.Symbol("x") - 1, 0)
    np.testing.assert_allclose(
        np.asarray(d.evaluate(d.compile_programs(h, g), x, jnp.zeros((0,)))),
        np.maximum(np.asarray(x[:, 0]) - 1, 0),
    )
    # and it fits: the fitter takes the grammar
    xs = np.linspace(-2.0, 2.0, 64)[:, None]
    r = d.fit_constants(
        e, xs, 0.5 * np.log1p(np.exp(1.25 * xs[:, 0])) + 2, key=jax.random.key(0), grammar=g, n_screen=256
    )
    np.testing.assert_allclose(r.constants, [0.5, 1.25], rtol=1e-8)


@pytest.mark.parametrize(
    "fn",
    [
        lambda v: jnp.gradient(v),
        lambda v: jnp.cumsum(v),
        lambda v: np.gradient(v),
        lambda v: v - jnp.mean(v) * jnp.ones(3),
    ],
    ids=["jnp.gradient", "cumsum", "np.gradient", "column-stat"],
)
def test_non_pointwise_operator_is_rejected(fn):
    """MCI's published code leaked data through np.gradient over a column; such operators cannot exist."""
    op = d.Operator("leak", 1, fn, sympy.Function("leak"))
    with pytest.raises(ValueError, match="not pointwise"):
        d.default_grammar([op])


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("tan(x)", "tan"),
        ("sinh(x) + 1", "sinh"),
        ("f(x)", "not a whitelisted"),
        ("Derivative(x**2, x)", "Derivative"),
        ("x + y", "'y'"),
        ("x + I", "finite real"),
        ("Integral(x, x)", "Integral"),
    ],
)
def test_from_sympy_rejects(formula, match):
    s = (
        sympy.sympify(formula)
        if "Derivative" in formula or "Integral" in formula
        else d.parse(formula, ["x", "z"])
    )
    with pytest.raises(ValueError, match=match):
        d.from_sympy(s, ["x"])


def test_bad_inputs():
    e = d.from_sympy(d.parse("c0*x + c1", ["x"]), ["x"])
    prog = d.compile_programs(e)
    with pytest.raises(TypeError, match="`program`"):
        d.evaluate(e, jnp.ones((3, 1)), jnp.ones(2))
    with pytest.raises(ValueError, match="`X`"):
        d.evaluate(prog, jnp.ones(3), jnp.ones(2))
    with pytest.raises(ValueError, match="constant c1"):
        d.evaluate(prog, jnp.ones((3, 1)), jnp.ones(1))
    with pytest.raises(ValueError, match="variable 0"):
        d.evaluate(prog, jnp.ones((3, 0)), jnp.ones(2))
    with pytest.raises(ValueError, match="evaluate_batch"):
        d.evaluate(d.compile_programs([e]), jnp.ones((3, 1)), jnp.ones(2))
    with pytest.raises(ValueError, match="one constant vector per program"):
        d.evaluate_batch(d.compile_programs([e, e]), jnp.ones((3, 1)), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="max_len"):
        d.compile_programs(e, max_len=3)
    with pytest.raises(TypeError, match="`exprs\\[0\\]`"):
        d.compile_programs(["x"])
    with pytest.raises(ValueError, match="`arity`"):
        d.Operator("f", 3, jnp.add, sympy.Function("f"))
    with pytest.raises(ValueError, match="`name`"):
        d.Operator("not a name", 1, jnp.sin, sympy.sin)
    with pytest.raises(TypeError, match="`jax_fn`"):
        d.Operator("f", 1, 3.0, sympy.sin)
    with pytest.raises(ValueError, match="missing"):
        d.Grammar(d.BUILTIN_OPERATORS[5:])
    with pytest.raises(ValueError, match="duplicate"):
        d.default_grammar([d.BUILTIN_OPERATORS[5]])
    with pytest.raises(ValueError, match="`variables`"):
        d.parse("x", ["x", "x"])
    with pytest.raises(ValueError, match="does not parse"):
        d.parse("x +* (", ["x"])
    with pytest.raises(TypeError, match="`expr`"):
        d.complexity("x")
    with pytest.raises(ValueError, match="variable 1"):
        d.to_sympy(d.Var(1), ["x"])


def test_sympy_names_can_be_variables():
    # S, N, E, gamma are SymPy objects; as declared variables they are plain symbols
    names = ["S", "N", "E", "gamma"]
    s = d.parse("S*N + E/gamma", names)
    e = d.from_sympy(s, names)
    assert d.to_sympy(e, names) == s
    out = d.evaluate(d.compile_programs(e), jnp.array([[1.0, 2.0, 3.0, 4.0]]), jnp.zeros((0,)))
    np.testing.assert_allclose(np.asarray(out), [2.0 + 0.75])


def test_complexity_and_constants():
    e = d.from_sympy(d.parse("c0*exp(-c1/T) + c3", ["T"]), ["T"])
    assert d.complexity(e) == 10  # add c3 (mul c0 (exp (div (mul -1 c1) T)))
    assert d.n_constants(e) == 4
    f = d.free_constants(d.from_sympy(d.parse("1.1*x - 0.4*x*y + 2", ["x", "y"]), ["x", "y"]))
    assert d.to_sympy(f, ["x", "y"]) == sympy.sympify("c0*x - c1*x*y + 2")
