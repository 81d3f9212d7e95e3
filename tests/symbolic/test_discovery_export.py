"""symbolic.discovery export: SymPy/LaTeX with fitted constants, JAX callables, diffrax vector fields."""

import re

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy
from scipy.integrate import solve_ivp

import sciml.backend as B
from symbolic import discovery as d
from symbolic.discovery._agent import Hypothesis
from symbolic.discovery._export import to_callable, to_latex, to_sympy_expr, to_vector_field

NAMES = ["x", "y"]
# every built-in operator, fitted constants inside and outside nonlinear functions, an exact 1/7
RICH = (
    "c0*exp(-c1*x)*sin(c2*y) + sqrt(x)/(1 + y**2) + log(x)*tanh(y) + abs(y)**c3 + erf(x - y) + gamma(x)"
    " + x**3/7"
)
C_RICH = [1.7, 0.45, 2.3, 1.5]


def _hyp(formula, names, constants):
    e = d.from_sympy(d.parse(formula, names), names)
    c = np.asarray(constants, np.float64)
    return Hypothesis(expr=e, constants=c, loss=0.0, nmse=0.0, complexity=d.complexity(e), agent="test")


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0.3, 3.0, n), rng.uniform(-2.0, 2.0, n)], axis=1)


def test_callable_matches_lambdify_float64():
    with B.precision("float64"):
        h = _hyp(RICH, NAMES, C_RICH)
        s = to_sympy_expr(h, NAMES)
        assert not any(sym.name.startswith("c") for sym in s.free_symbols)
        X = _data()
        ref = sympy.lambdify(sympy.symbols("x y"), s, "scipy")(*X.T)
        f = to_callable(h)
        got = f(jnp.asarray(X))
        assert got.shape == (200,) and got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-12, atol=1e-12)
        one = f(jnp.asarray(X[7]))  # a single row gives a scalar
        assert one.shape == ()
        np.testing.assert_allclose(float(one), ref[7], rtol=1e-12)
        # the exported function is the one the collective fitted and scored (the stack machine)
        prog = d.compile_programs(h.expr)
        np.testing.assert_allclose(
            np.asarray(d.evaluate(prog, jnp.asarray(X), jnp.asarray(h.constants))),
            np.asarray(got),
            rtol=1e-13,
        )


def test_callable_under_jit_vmap_grad():
    with B.precision("float64"):
        h = _hyp(RICH, NAMES, C_RICH)
        f = to_callable(h)
        X = jnp.asarray(_data())
        full = f(X)
        np.testing.assert_allclose(np.asarray(jax.jit(f)(X)), np.asarray(full), rtol=1e-15)
        np.testing.assert_allclose(np.asarray(jax.vmap(f)(X)), np.asarray(full), rtol=1e-15)  # row by row
        batches = jax.vmap(f)(X.reshape(4, 50, 2))  # a batch of data sets
        np.testing.assert_allclose(np.asarray(batches).reshape(-1), np.asarray(full), rtol=1e-15)
        # gradient in the inputs against SymPy's derivative
        xs = sympy.symbols("x y", real=True)  # real symbols: d|y|/dy = sign(y)
        s = to_sympy_expr(h, NAMES).xreplace(dict(zip(sympy.symbols("x y"), xs)))
        grads = np.asarray(jax.vmap(jax.grad(f))(X))
        for j, v in enumerate(xs):
            ref = sympy.lambdify(xs, sympy.diff(s, v), "scipy")(*np.asarray(X).T)
            np.testing.assert_allclose(grads[:, j], ref, rtol=1e-10, atol=1e-10)
        # gradient in the constants (array leaves of the module)
        gc = eqx.filter_grad(lambda fn: jnp.sum(fn(X)))(f).constants
        skel = d.to_sympy(h.expr, NAMES).xreplace(dict(zip(sympy.symbols("x y"), xs)))
        cs = sympy.symbols("c0:4")
        for i, ci in enumerate(cs):
            dfi = sympy.diff(skel, ci).subs(dict(zip(cs, C_RICH)))
            ref = np.sum(sympy.lambdify(xs, dfi, "scipy")(*np.asarray(X).T))
            np.testing.assert_allclose(float(gc[i]), ref, rtol=1e-10)


def test_callable_new_constants_do_not_recompile():
    with B.precision("float64"):
        e = d.from_sympy(d.parse("c0*exp(-c1*x) + c2*y", NAMES), NAMES)
        X = jnp.asarray(_data(32))
        counted = eqx.filter_jit(eqx.debug.assert_max_traces(lambda fn, A: fn(A), max_traces=1))
        a = counted(to_callable(e, constants=[1.0, 0.5, 2.0]), X)
        b = counted(to_callable(e, constants=[3.0, 0.1, -1.0]), X)  # would raise if it retraced
        x, y = np.asarray(X).T
        np.testing.assert_allclose(np.asarray(a), np.exp(-0.5 * x) + 2.0 * y, rtol=1e-14)
        np.testing.assert_allclose(np.asarray(b), 3.0 * np.exp(-0.1 * x) - y, rtol=1e-14)


def test_snapped_literals_and_sympy_export():
    """A Hypothesis keeps one value per original constant; snapped ones are literals in its expr."""
    e = d.from_sympy(d.parse("x/3 + c1*y", NAMES), NAMES)  # c0 was snapped to 1/3
    h = Hypothesis(expr=e, constants=np.array([1 / 3, 0.25]), loss=0.0, nmse=0.0, complexity=7, agent="t")
    x, y = sympy.symbols("x y")
    assert to_sympy_expr(h, NAMES) == x / 3 + 0.25 * y
    assert to_sympy_expr(e, NAMES, constants=[9.0, 2.0]) == x / 3 + sympy.Float(2.0) * y  # bare expr
    assert to_latex(h, NAMES) == r"\frac{x}{3} + 0.25 y"


def test_latex_structure_and_values():
    h = _hyp("c0*x/(c1 + x)", ["x"], [2.5, 0.8])
    assert to_latex(h, ["x"]) == r"\frac{2.5 x}{x + 0.8}"
    assert to_latex(h, ["x"], target="v") == r"v = \frac{2.5 x}{x + 0.8}"
    names = ["T", "theta"]
    h = _hyp("c0*exp(-c1/T)*sin(c2*theta) + sqrt(T)", names, [1.234567891, 6021.7, 0.123456789])
    tex = to_latex(h, names, digits=3, target=r"\dot{k}")
    assert tex.startswith(r"\dot{k} = ")
    for part in (r"e^{- \frac{", r"\sin{\left(", r"\theta", r"\sqrt{T}", "1.23", "0.123"):
        assert part in tex, (part, tex)
    assert "1.2345" not in tex
    # full precision: the numbers in the LaTeX are the shortest decimals of the fitted doubles, so
    # reading them back gives exactly the fitted constants
    tex = to_latex(h, names, digits=None)
    got = sorted(float(m) for m in re.findall(r"\d+\.\d+", tex))
    assert got == sorted([1.234567891, 6021.7, 0.123456789])
    tex = to_latex(h, names, symbol_names={"theta": r"\vartheta"})
    assert r"\vartheta" in tex and r"\theta" not in tex.replace(r"\vartheta", "")


def _lv_rhs(u):
    x, y = u
    return 1.1 * x - 0.4 * x * y, 0.1 * x * y - 0.4 * y


def _solve(field, y0, ts, args=None):
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        t0=0.0,
        t1=float(ts[-1]),
        dt0=0.01,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10),
        max_steps=100_000,
    )
    return np.asarray(sol.ys)


def test_lotka_volterra_vector_field():
    """Two discovered right-hand sides as one diffrax vector field = the true Lotka-Volterra flow."""
    with B.precision("float64"):
        names = ["x", "y"]
        hx = _hyp("c0*x - c1*x*y", names, [1.1, 0.4])
        hy = _hyp("c0*x*y - c1*y", names, [0.1, 0.4])
        f = to_vector_field([hx, hy], names)
        y0 = jnp.array([10.0, 5.0])
        ts = jnp.linspace(0.0, 20.0, 41)
        # the field is the true right-hand side (to rounding) on states all over the phase plane
        U = np.random.default_rng(0).uniform(0.1, 30.0, (100, 2))
        fU = jax.vmap(lambda u: f(0.0, u, None))(jnp.asarray(U))
        np.testing.assert_allclose(np.asarray(fU), np.stack(_lv_rhs(U.T), axis=1), rtol=1e-13, atol=1e-12)
        got = _solve(f, y0, ts)
        # the true solution: the true right-hand side, another solver (8th order), tighter tolerance
        ref = solve_ivp(
            lambda t, u: _lv_rhs(u),
            (0.0, 20.0),
            [10.0, 5.0],
            method="DOP853",
            t_eval=np.asarray(ts),
            rtol=1e-12,
            atol=1e-12,
        ).y.T
        np.testing.assert_allclose(got, ref, rtol=1e-7)  # two solvers at tolerance 1e-10 and 1e-12
        # the first integral V = d*x - c*log(x) + b*y - a*log(y) is conserved along the solution
        V = 0.1 * got[:, 0] - 0.4 * np.log(got[:, 0]) + 0.4 * got[:, 1] - 1.1 * np.log(got[:, 1])
        assert np.ptp(V) < 1e-8


def test_vector_field_with_time_and_args():
    """dy/dt = A*cos(t) - y, y(0) = 0: y = A*(cos t + sin t - exp(-t))/2; t and A are columns."""
    with B.precision("float64"):
        names = ["t", "y", "A"]
        h = _hyp("c0*A*cos(t) - y", names, [1.0])
        f = to_vector_field([h], ["y"], variables=names)
        assert f.sources == (("t",), ("y", 0), ("args", "A"))
        ts = jnp.linspace(0.0, 6.0, 13)
        got = _solve(f, jnp.array([0.0]), ts, args={"A": jnp.asarray(2.0)})[:, 0]
        t = np.asarray(ts)
        np.testing.assert_allclose(got, np.cos(t) + np.sin(t) - np.exp(-t), rtol=1e-8, atol=1e-10)
        with pytest.raises(ValueError, match="`args` must be"):
            f(0.0, jnp.array([0.0]), None)


def test_export_errors():
    h = _hyp("c0*x + y", NAMES, [2.0])
    with pytest.raises(TypeError, match="`constants` must be None"):
        to_sympy_expr(h, NAMES, constants=[1.0])
    with pytest.raises(TypeError, match="`hypothesis`"):
        to_callable("c0*x")
    with pytest.raises(ValueError, match="`constants` has 0 values"):
        to_callable(h.expr)
    with pytest.raises(ValueError, match="finite"):
        to_callable(h.expr, constants=[np.nan])
    with pytest.raises(ValueError, match="`digits`"):
        to_latex(h, NAMES, digits=0)
    f = to_callable(h)
    with pytest.raises(ValueError, match=r"`X` must have shape \(n_rows, 2\)"):
        f(jnp.ones((3, 3)))
    with pytest.raises(TypeError, match="`X`"):
        f(jnp.ones((3, 2), jnp.int32))
    with pytest.raises(ValueError, match="`n_vars`"):
        to_callable(h, n_vars=1)
    with pytest.raises(ValueError, match="one right-hand side per state"):
        to_vector_field([h], NAMES)
    with pytest.raises(ValueError, match="`time`"):
        to_vector_field([h, h], ["t", "y"], time="t")
    with pytest.raises(TypeError, match="`hypotheses`"):
        to_vector_field(h, NAMES)
    vf = to_vector_field([h, h], NAMES)
    with pytest.raises(ValueError, match=r"`y` must have shape \(2,\)"):
        vf(0.0, jnp.ones(3), None)
