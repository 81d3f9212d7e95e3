"""symbolic.fuzzy: parity with LTNtorch (tests/data/ltn_reference.json), stability, transformations,
empty domains and boundary errors."""

import functools
import json
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import backend
from symbolic import fuzzy as F

REF = json.loads((pathlib.Path(__file__).parent.parent / "data" / "ltn_reference.json").read_text())

# Reference name -> (operator, keyword arguments). The sets of names are checked against the file.
BINARY = {
    "And_Min": (F.and_min, {}),
    "And_Prod_stable": (F.and_prod, {"stable": True}),
    "And_Prod": (F.and_prod, {}),
    "And_Luk": (F.and_luk, {}),
    "Or_Max": (F.or_max, {}),
    "Or_ProbSum_stable": (F.or_prob_sum, {"stable": True}),
    "Or_ProbSum": (F.or_prob_sum, {}),
    "Or_Luk": (F.or_luk, {}),
    "Implies_KleeneDienes": (F.implies_kleene_dienes, {}),
    "Implies_Godel": (F.implies_godel, {}),
    "Implies_Reichenbach_stable": (F.implies_reichenbach, {"stable": True}),
    "Implies_Reichenbach": (F.implies_reichenbach, {}),
    "Implies_Goguen_stable": (F.implies_goguen, {"stable": True}),
    "Implies_Goguen": (F.implies_goguen, {}),
    "Implies_Luk": (F.implies_luk, {}),
    "Equiv_Prod_Reichenbach_stable": (
        F.equiv,
        {"and_op": F.and_prod, "implies_op": F.implies_reichenbach, "stable": True},
    ),
    "Equiv_Min_Godel": (F.equiv, {"and_op": "and_min", "implies_op": "implies_godel"}),
    "Implies_SigmoidalReichenbach_s9_b0m0.5": (F.implies_sigmoidal, {"s": 9.0, "b0": -0.5}),
}
UNARY = {"Not_Std": F.not_std, "Not_Godel": F.not_godel}
AGGREGATORS = {
    "Forall_pMeanError_p2_stable": functools.partial(F.pmean_error, p=2.0, stable=True),
    "Forall_pMeanError_p2": functools.partial(F.pmean_error, p=2.0),
    "Forall_pMeanError_p6_stable": functools.partial(F.pmean_error, p=6.0, stable=True),
    "Exists_pMean_p2_stable": functools.partial(F.pmean, p=2.0, stable=True),
    "Exists_pMean_p2": functools.partial(F.pmean, p=2.0),
    "Exists_pMean_p6_stable": functools.partial(F.pmean, p=6.0, stable=True),
    "Aggreg_Min": F.min,
    "Aggreg_Mean": F.mean,
    "Aggreg_LogProd_stable": functools.partial(F.log_product, stable=True),
    "Aggreg_Max": F.max,
    "Aggreg_Prod": F.product,
}
EXTRA = REF["extra_not_in_LTNtorch"]
DTYPES = ["float32", "float64"]
# (values atol, values rtol, gradients rtol, gradients atol); the file's values carry 12 digits.
TOL = {"float32": (1e-6, 1e-6, 1e-4, 0.0), "float64": (1e-12, 1e-11, 1e-10, 0.0)}


@pytest.fixture(params=DTYPES)
def dtype(request):
    with backend.precision(request.param):
        yield jnp.dtype(request.param)


def _arr(values, dtype):
    return jnp.asarray(np.asarray(values, dtype=np.float64), dtype=dtype)


def _expected(values):
    return np.asarray([float(v) for v in values])  # "nan" strings become NaN


def _check(got, want, dtype, *, grads=False):
    atol, rtol, grtol, gatol = TOL[dtype.name]
    got = np.asarray(got, dtype=np.float64).ravel()
    want = _expected(np.ravel(want))
    if grads:
        np.testing.assert_allclose(got, want, rtol=grtol, atol=gatol, equal_nan=True)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


def test_reference_covers_every_entry():
    assert set(REF["binary"]) | {"Implies_SigmoidalReichenbach_s9_b0m0.5"} == set(BINARY)
    assert set(REF["unary"]) == set(UNARY)
    ref_aggs = set(REF["aggregators"]) - {"inputs", "matrix"} | set(EXTRA["aggregators"])
    assert ref_aggs == set(AGGREGATORS)


# --------------------------------------------------------------------------------------------------
# Parity with LTNtorch: values
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_values(name, dtype):
    op, kwargs = BINARY[name]
    x, y = _arr(REF["x_grid"], dtype), _arr(REF["y_grid"], dtype)
    out = op(x, y, **kwargs)
    assert out.dtype == dtype
    _check(out, REF["binary"].get(name) or EXTRA[name], dtype)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_values(name, dtype):
    ref = REF["unary"][name]
    out = UNARY[name](_arr(ref["x"], dtype))
    assert out.dtype == dtype
    _check(out, ref["out"], dtype)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_aggregator_values(name, dtype):
    ref = REF["aggregators"].get(name) or EXTRA["aggregators"][name]
    for key, values in REF["aggregators"]["inputs"].items():
        out = AGGREGATORS[name](_arr(values, dtype))
        assert out.dtype == dtype and out.shape == ()
        _check(out, [ref[key]], dtype)


@pytest.mark.parametrize("name", sorted(set(REF["aggregators"]["matrix"]) - {"M", "mask"}))
def test_aggregator_axes_and_masks(name, dtype):
    mat = REF["aggregators"]["matrix"]
    m, mask = _arr(mat["M"], dtype), jnp.asarray(mat["mask"])
    agg = AGGREGATORS[name]
    _check(agg(m, axis=1), mat[name]["dim1"], dtype)
    _check(agg(m, axis=0), mat[name]["dim0"], dtype)
    _check(agg(m), mat[name]["all"], dtype)
    _check(agg(m, axis=(0, 1)), mat[name]["all"], dtype)
    _check(agg(m, axis=-1, mask=mask), mat[name]["dim1_masked"], dtype)
    assert agg(m, axis=1, keepdims=True).shape == (2, 1)


# --------------------------------------------------------------------------------------------------
# Parity with LTNtorch: gradients (torch conventions at kinks)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(REF["grads"]) - {"points_xy", "note", "aggregators"}))
def test_binary_gradients(name, dtype):
    op, kwargs = BINARY[name]
    xy = _arr(REF["grads"]["points_xy"], dtype)
    dx, dy = jax.vmap(jax.grad(functools.partial(op, **kwargs), argnums=(0, 1)))(xy[:, 0], xy[:, 1])
    assert dx.dtype == dtype
    want_dx, want_dy = list(REF["grads"][name]["d_dx"]), list(REF["grads"][name]["d_dy"])
    if name == "Implies_KleeneDienes" and dtype == jnp.float32:
        # At (0.7, 0.3) the kink is decided by rounding: 1 - 0.7 > 0.3 in float64 (torch's -1/0), but
        # 1 - 0.7f == 0.3f in float32, a tie, which max splits 0.5/0.5 (the same torch convention).
        assert float(1 - xy[5, 0]) == float(xy[5, 1])
        want_dx[5], want_dy[5] = -0.5, 0.5
    _check(dx, want_dx, dtype, grads=True)
    _check(dy, want_dy, dtype, grads=True)


@pytest.mark.parametrize("name", sorted(REF["grads"]["aggregators"]))
def test_aggregator_gradients(name, dtype):
    for key, want in REF["grads"]["aggregators"][name].items():
        x = _arr(REF["aggregators"]["inputs"][key], dtype)
        g = jax.grad(AGGREGATORS[name])(x)
        assert g.dtype == dtype
        _check(g, want, dtype, grads=True)


def test_stable_gradients_finite_on_the_grid(dtype):
    x, y = _arr(REF["x_grid"], dtype), _arr(REF["y_grid"], dtype)
    vectors = [_arr(v, dtype) for v in REF["aggregators"]["inputs"].values()]

    @jax.jit  # one compilation for every operator (the test's run time is compile time)
    def grads(x, y, vectors):
        out = {}
        for name in F.names():
            op = functools.partial(F.get(name), stable=True)
            if name in AGGREGATOR_NAMES:
                out[name] = [jax.grad(op)(v) for v in vectors]
            elif name.startswith("not_"):
                out[name] = jax.vmap(jax.grad(op))(x)
            else:
                out[name] = jax.vmap(jax.grad(op, argnums=(0, 1)))(x, y)
        return out

    for name, g in grads(x, y, vectors).items():
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g)), name


AGGREGATOR_NAMES = {"min", "max", "mean", "pmean", "pmean_error", "product", "log_product"}


# --------------------------------------------------------------------------------------------------
# Parity with LTNtorch: knowledge-base formulas through the first-order layer
# --------------------------------------------------------------------------------------------------


def _formulas(dtype):
    tables = REF["formulas"]["tables"]
    a = F.Labelled(_arr(tables["A"], dtype), ("x",))
    b = F.Labelled(_arr(tables["B"], dtype), ("x",))
    r = F.Labelled(_arr(tables["R[x][y]"], dtype), ("x", "y"))
    y = F.variable("y", jnp.arange(3))
    implies = functools.partial(F.connective, F.implies_reichenbach, stable=True)
    f1 = F.forall("x", implies(a, b))
    f2 = F.forall("x", F.exists("y", r))
    f3 = F.exists("x", F.connective(F.and_prod, a, b, stable=True))
    return {
        "forall x: A(x) -> B(x)": f1,
        "exists x: A(x) & B(x)": f3,
        "forall x: exists y: R(x,y)": f2,
        "exists y: forall x: R(x,y)": F.exists("y", F.forall("x", r)),
        "forall x,y: A(x) -> R(x,y)": F.forall(["x", "y"], implies(a, r)),
        "forall x: ~A(x) | B(x)": F.forall(
            "x", F.connective(F.or_prob_sum, F.connective(F.not_std, a), b, stable=True)
        ),
        "forall x,y (guard y<2): R(x,y)": F.forall(["x", y], r, mask=F.predicate(lambda j: j < 2, y)),
        "open: exists y: R(x,y) (vector over x)": F.exists("y", r),
        "SatAgg(f1,f2,f3) default pMeanError p=2": F.sat_agg([f1, f2, f3]),
    }


def test_formulas(dtype):
    want = REF["formulas"]["values" if dtype == jnp.float32 else "values_float64_from_semantics"]
    got = _formulas(dtype)
    assert set(got) == set(want)
    for key, value in got.items():
        value = value.value if isinstance(value, F.Labelled) else value
        assert value.dtype == dtype, key
        _check(value, want[key], dtype)
    assert got["open: exists y: R(x,y) (vector over x)"].variables == ("x",)
    assert got["forall x: A(x) -> B(x)"].variables == ()


def test_formulas_jit_and_grad():
    tables = REF["formulas"]["tables"]

    @jax.jit
    def loss(r_table):
        r = F.Labelled(r_table, ("x", "y"))
        return 1 - F.sat_agg([F.forall("x", F.exists("y", r)), F.exists("y", F.forall("x", r))])

    r = jnp.asarray(tables["R[x][y]"], dtype=jnp.float32)
    g = jax.grad(loss)(r)
    eps = 1e-3
    e = jnp.zeros_like(r).at[1, 2].set(eps)
    fd = (loss(r + e) - loss(r - e)) / (2 * eps)
    np.testing.assert_allclose(g[1, 2], fd, rtol=1e-2)
    assert np.all(np.isfinite(g)) and np.all(g <= 0)  # more truth, less loss


# --------------------------------------------------------------------------------------------------
# First-order layer: broadcasting, predicates, diag, guards, empty domains
# --------------------------------------------------------------------------------------------------


def test_connective_broadcasts_over_union_of_variables():
    a = F.Labelled(jnp.array([0.1, 0.5]), ("x",))
    r = F.Labelled(jnp.arange(6.0).reshape(3, 2) / 6, ("y", "x"))
    out = F.connective(F.and_prod, a, r)
    assert out.variables == ("x", "y") and out.value.shape == (2, 3)
    np.testing.assert_allclose(out.value, a.value[:, None] * r.value.T, rtol=1e-6)
    assert F.connective(F.not_std, 0.25).variables == ()


def test_predicate_and_diag():
    x = F.variable("x", jnp.array([[0.0], [1.0], [2.0]]))
    y = F.variable("y", jnp.array([[0.0], [1.0], [4.0]]))
    near = lambda a, b: jnp.exp(-jnp.sum((a - b) ** 2))
    full = F.predicate(near, x, y)
    assert full.variables == ("x", "y") and full.value.shape == (3, 3)
    xd, yd = F.diag(x, y)
    zipped = F.predicate(near, xd, yd)
    assert zipped.variables == ("x|y",)
    np.testing.assert_allclose(zipped.value, jnp.diagonal(full.value), rtol=1e-6)
    closed = F.forall("x", zipped, stable=False)  # "x" finds the shared axis
    np.testing.assert_allclose(closed.value, F.pmean_error(jnp.diagonal(full.value)), rtol=1e-6)
    assert F.forall(xd, zipped).variables == ()


def test_guard_with_empty_rows():
    r = F.Labelled(jnp.array([[0.2, 0.9], [0.4, 0.6]]), ("x", "y"))
    guard = F.Labelled(jnp.array([[True, True], [False, False]]), ("x", "y"))
    ex = F.exists("y", r, mask=guard, stable=False)
    fa = F.forall("y", r, mask=guard, stable=False)
    np.testing.assert_allclose(ex.value, [np.sqrt((0.04 + 0.81) / 2), 0.0], rtol=1e-6)
    np.testing.assert_allclose(fa.value, [1 - np.sqrt((0.64 + 0.01) / 2), 1.0], rtol=1e-6)
    g = jax.grad(lambda v: F.forall("y", F.Labelled(v, ("x", "y")), mask=guard).value.sum())(r.value)
    assert np.all(np.isfinite(g)) and np.all(g[1] == 0)


def test_empty_domains():
    nothing = F.Labelled(jnp.zeros((0, 3)), ("x", "y"))
    assert F.forall("x", nothing).value.tolist() == [1.0, 1.0, 1.0]
    assert F.exists("x", nothing).value.tolist() == [0.0, 0.0, 0.0]
    none = jnp.zeros(0)
    assert [float(f(none)) for f in (F.min, F.pmean_error, F.product)] == [1.0, 1.0, 1.0]
    assert [float(f(none)) for f in (F.max, F.pmean, F.log_product)] == [0.0, 0.0, 0.0]
    assert float(F.mean(none, empty=0.5)) == 0.5
    off = jnp.zeros(3, dtype=bool)
    x = jnp.array([0.3, 0.6, 0.9])
    assert float(F.min(x, mask=off)) == 1.0 and float(F.pmean(x, mask=off)) == 0.0
    assert float(F.pmean_error(x, mask=off, empty=0.25)) == 0.25
    with pytest.raises(ValueError, match="empty domain.*`empty=`"):
        F.mean(none)
    with pytest.raises(ValueError, match="`mask` selects no element"):
        F.mean(x, mask=off)
    with pytest.raises(Exception, match="`mask` selects no element"):
        jax.jit(lambda m: F.mean(x, mask=m))(off).block_until_ready()


@pytest.mark.parametrize("p", [20.0, 50.0, 200.0])
def test_pmean_large_p_does_not_underflow(p):
    # x**p underflows in float32 (0.001**20 = 1e-60): the p-means must still follow their formula
    # (near the max / min for large p), with finite gradients, masked or not
    x = jnp.array([0.001, 0.002, 0.0015], jnp.float32)
    mask = jnp.array([True, True, False])

    def formula(v):  # the documented p-mean, in float64 scaled by the max so that it cannot underflow
        v = np.asarray(v, np.float64)
        return v.max() * np.mean((v / v.max()) ** p) ** (1 / p)

    np.testing.assert_allclose(F.pmean(x, p), formula(x), rtol=1e-5)
    np.testing.assert_allclose(F.pmean_error(1 - x, p), 1 - formula(x), rtol=1e-6)
    np.testing.assert_allclose(F.pmean(x, p, mask=mask), formula(x[:2]), rtol=1e-5)
    np.testing.assert_allclose(F.pmean_error(1 - x, p, mask=mask), 1 - formula(x[:2]), rtol=1e-6)
    grads = (lambda v: F.pmean(v, p), lambda v: F.pmean(v, p, mask=mask), lambda v: -F.pmean_error(1 - v, p))
    for f in grads:
        g = jax.jit(jax.grad(f))(x)
        assert np.all(np.isfinite(g)) and np.all(g >= 0) and float(g[1]) > 0.9


# --------------------------------------------------------------------------------------------------
# Transformations: jit, vmap, grad, dtype, no recompilation for new p
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(F.names()) - AGGREGATOR_NAMES))
def test_operators_under_jit_and_vmap(name, dtype):
    op = F.get(name)
    x, y = _arr(REF["x_grid"], dtype), _arr(REF["y_grid"], dtype)
    args = (x,) if name.startswith("not_") else (x, y)
    eager = op(*args)
    rtol = 1e-6 if dtype == jnp.float32 else 1e-14  # XLA may fuse (e.g. contract to FMA) under jit
    np.testing.assert_allclose(jax.jit(op)(*args), eager, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(jax.vmap(op)(*(a.reshape(7, 7) for a in args)).ravel(), eager, rtol=rtol)
    assert eager.dtype == dtype


def test_aggregators_under_vmap_and_jit():
    m = jnp.asarray(REF["aggregators"]["matrix"]["M"])
    for name in AGGREGATOR_NAMES:
        agg = F.get(name)
        np.testing.assert_allclose(jax.vmap(agg)(m), agg(m, axis=1), rtol=1e-6)
        # XLA may fuse under jit (1 - m * r contracts to an FMA in pmean_error): a few ulps
        np.testing.assert_allclose(jax.jit(agg, static_argnames="axis")(m, axis=0), agg(m, axis=0), rtol=1e-6)


def test_new_p_does_not_recompile():
    x = jnp.asarray(REF["aggregators"]["inputs"]["v4"])
    mask = x > 0.3

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(x, p, s):
        r = F.Labelled(x[:, None] * x[None, :], ("x", "y"))
        return (
            F.pmean(x, p),
            F.pmean_error(x, p, mask=mask),
            F.forall("x", F.exists("y", r, p=p), p=p).value,
            F.implies_sigmoidal(x, x, s=s),
        )

    outs = [f(x, jnp.float32(p), jnp.float32(s)) for p, s in [(2.0, 9.0), (3.5, 4.0), (6.0, 12.0)]]
    np.testing.assert_allclose(outs[2][0], F.pmean(x, 6.0), rtol=1e-6)
    assert not np.allclose(outs[0][0], outs[1][0])


# --------------------------------------------------------------------------------------------------
# Boundary errors name the argument
# --------------------------------------------------------------------------------------------------


def test_truth_values_out_of_range():
    with pytest.raises(ValueError, match=r"`x` must hold truth values in \[0, 1\].*clip=True"):
        F.and_prod(jnp.array([1.5, 0.2]), 0.5)
    with pytest.raises(ValueError, match="`y` must hold truth values"):
        F.implies_luk(0.5, jnp.array([-0.1]))
    with pytest.raises(ValueError, match="`x` must hold truth values"):
        F.pmean(jnp.array([0.5, jnp.nan]))
    assert float(F.and_prod(1.5, 0.5, clip=True)) == 0.5
    assert float(F.pmean_error(jnp.array([2.0, 1.0]), clip=True)) == 1.0
    jax.jit(F.and_prod)(jnp.array(1.5), 0.5)  # not checked inside jit


def test_bad_arguments():
    x = jnp.array([0.2, 0.4])
    with pytest.raises(TypeError, match="`x` must be a real floating array"):
        F.not_std(jnp.array([0, 1]))
    for p in (0.0, -1.0):
        with pytest.raises(ValueError, match="`p` must be > 0"):
            F.pmean(x, p)
    with pytest.raises(ValueError, match="`p` must be > 0"):
        jax.jit(lambda x: F.pmean(x, -2.0))(x)
    with pytest.raises(Exception, match="`p` must be > 0"):
        jax.jit(F.pmean_error)(x, jnp.float32(0.0)).block_until_ready()
    with pytest.raises(TypeError, match="`p` must be a real number"):
        F.pmean_error(x, True)
    with pytest.raises(ValueError, match="`s` must be > 0"):
        F.implies_sigmoidal(x, x, s=0.0)
    with pytest.raises(ValueError, match="`name` must be one of .*'and_prod'"):
        F.get("and_product")
    with pytest.raises(ValueError, match="`and_op` must be a callable or a binary connective, .*'and_min'"):
        F.equiv(x, x, and_op="and_mini")
    # a known name of the wrong kind (an aggregator, a negation) is named too, not a failure deep inside
    with pytest.raises(ValueError, match="`implies_op` must be a callable or a binary connective.*'pmean'"):
        F.equiv(x, x, implies_op="pmean")
    with pytest.raises(ValueError, match="`and_op` must be a callable or a binary connective.*'not_std'"):
        F.equiv(x, x, and_op="not_std")
    with pytest.raises(ValueError, match="`axis` must be None, an int"):
        F.min(x, axis=1)
    with pytest.raises(TypeError, match="`mask` must be a boolean array"):
        F.max(x, mask=jnp.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="`mask` must broadcast"):
        F.max(x, mask=jnp.array([True, False, True]))
    with pytest.raises(ValueError, match="`x` and `y` must broadcast"):
        F.and_min(x, jnp.zeros(3))
    with pytest.raises(TypeError, match="`stable` must be a bool"):
        F.and_prod(x, x, stable=1)


def test_bad_first_order_arguments():
    r = F.Labelled(jnp.full((2, 3), 0.5), ("x", "y"))
    with pytest.raises(ValueError, match="'z' is not a free variable of the formula.*'x', 'y'"):
        F.forall("z", r)
    with pytest.raises(ValueError, match="variable 'y' has 3 individuals.*`operands\\[1\\]`"):
        F.connective(F.and_min, r, F.Labelled(jnp.zeros(4), ("y",)))
    with pytest.raises(TypeError, match="`mask` must hold booleans"):
        F.exists("y", r, mask=r)
    with pytest.raises(TypeError, match="`p` and `stable` configure the default aggregator"):
        F.forall("x", r, p=3.0, aggregator=F.min)
    with pytest.raises(ValueError, match=r"`formulas\[1\]` must be closed"):
        F.sat_agg([F.forall(["x", "y"], r), F.forall("x", r)])
    with pytest.raises(ValueError, match="`formulas` must be a non-empty list"):
        F.sat_agg([])
    with pytest.raises(ValueError, match="`variables` must be distinct"):
        F.Labelled(jnp.zeros((2, 2)), ("x", "x"))
    with pytest.raises(ValueError, match="`name` must be a non-empty str"):
        F.variable("a|b", jnp.zeros(2))
    with pytest.raises(ValueError, match="equal numbers of individuals"):
        F.diag(F.variable("x", jnp.zeros(2)), F.variable("y", jnp.zeros(3)))
