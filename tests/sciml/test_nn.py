"""Tests of sciml.nn: activations (numerics, smoothness, transformations), MLP, flax interop."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import sciml.nn as snn
from sciml import backend
from tests.helpers import tree_allclose

# --------------------------------------------------------------------------------------------------
# Reference formulas, evaluated independently in float64 numpy
# --------------------------------------------------------------------------------------------------


def ref_gem(x, n):
    x = np.asarray(x, np.float64)
    xp = np.where(x > 0, x, 0.0)
    return np.where(x > 0, xp ** (2 * n + 1) / (1 + xp ** (2 * n)), 0.0)


def ref_egem(x, n, eps):
    x = np.asarray(x, np.float64)
    xp = np.where(x > 0, x, 0.0)
    return np.where(x > 0, xp ** (2 * n + 1) / (eps + xp ** (2 * n)), 0.0)


def ref_segem(x, n, alpha):
    x = np.asarray(x, np.float64)
    neg = alpha * x ** (2 * n + 1) / (1 + np.abs(x) ** (2 * n + 1))
    return np.where(x > 0, ref_gem(x, n), neg)


def sample_points(seed, num=1000):
    """1,000 points: moderate, near 0 and large (up to 1e3), each of both signs."""
    rng = np.random.default_rng(seed)
    k = num // 5
    pts = np.concatenate(
        [
            rng.uniform(-5, 5, 2 * k),
            rng.uniform(-1e-3, 1e-3, k),
            10.0 ** rng.uniform(-3, 3, k),
            -(10.0 ** rng.uniform(-3, 3, num - 4 * k)),
        ]
    )
    pts[:4] = [0.0, 1e3, -1e3, 1.0]
    return pts


def assert_close_scaled(out, ref, tol):
    """|out - ref| <= tol * max(1, |ref|): absolute near 0, relative where large."""
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    err = np.abs(out - ref) / np.maximum(1.0, np.abs(ref))
    assert np.all(np.isfinite(out)), "non-finite output"
    assert err.max() <= tol, f"max scaled error {err.max():.3g} > {tol} at x-index {err.argmax()}"


# --------------------------------------------------------------------------------------------------
# GEM family: values
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_gem_matches_formula_float32(n):
    x = sample_points(n)
    out = snn.gem(jnp.asarray(x, jnp.float32), n)
    assert out.dtype == jnp.float32
    # The reference sees the same (float32-rounded) inputs.
    assert_close_scaled(out, ref_gem(np.float32(x), n), 1e-6)
    assert_close_scaled(snn.GEM(n)(jnp.asarray(x, jnp.float32)), ref_gem(np.float32(x), n), 1e-6)


def test_gem_plain_formula_overflows_but_ours_does_not():
    x = jnp.asarray([1e3, 1e30], jnp.float32)
    naive = x**17 / (1 + x**16)  # N = 8
    assert not np.all(np.isfinite(np.asarray(naive)))
    np.testing.assert_allclose(snn.gem(x, 8), x, rtol=1e-6)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("eps", [1e-6, 1e-4, 1.0, 10.0])
def test_egem_matches_formula_float32(n, eps):
    x = np.float32(sample_points(10 + n))
    assert_close_scaled(snn.egem(jnp.asarray(x), n, eps), ref_egem(x, n, eps), 1e-6)
    assert_close_scaled(snn.EGEM(n, eps)(jnp.asarray(x)), ref_egem(x, n, eps), 1e-6)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_segem_matches_formula_float32(n, alpha):
    x = np.float32(sample_points(20 + n))
    assert_close_scaled(snn.segem(jnp.asarray(x), n, alpha), ref_segem(x, n, alpha), 1e-6)
    assert_close_scaled(snn.SEGEM(n, alpha)(jnp.asarray(x)), ref_segem(x, n, alpha), 1e-6)


def test_gem_family_matches_formula_float64():
    x = sample_points(30)
    with backend.precision("float64"):
        xj = jnp.asarray(x, jnp.float64)
        for n in (1, 2, 8):
            assert snn.gem(xj, n).dtype == jnp.float64
            assert_close_scaled(snn.gem(xj, n), ref_gem(x, n), 1e-13)
            assert_close_scaled(snn.egem(xj, n, 1e-4), ref_egem(x, n, 1e-4), 1e-13)
            assert_close_scaled(snn.segem(xj, n, 0.7), ref_segem(x, n, 0.7), 1e-13)


def test_egem_limits():
    x = jnp.linspace(-2.0, 2.0, 101)
    assert tree_allclose(snn.egem(x, 1, 1.0), snn.gem(x, 1), rtol=1e-6, atol=1e-7)
    # As eps -> 0, E-GEM -> ReLU (uniformly: |EGEM - relu| <= t / 2 for N = 1 with t = sqrt(eps)).
    errs = [float(jnp.max(jnp.abs(snn.egem(x, 1, e) - snn.relu(x)))) for e in (1e-2, 1e-4, 1e-6)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3


def test_segem_negative_branch_bounded_monotone_nonzero():
    x = -np.logspace(-2, 6, 200).astype(np.float32)
    f = lambda t: snn.segem(t, 2, 0.5)
    y, g = jax.jit(lambda x: (f(x), jax.vmap(jax.grad(f))(x)))(x)
    y, g = np.asarray(y), np.asarray(g)
    assert np.all(y < 0) and np.all(y >= -0.5)
    assert np.all(np.diff(y[::-1]) > -1e-7)  # increasing in x
    assert np.all(g[:100] > 0)  # no dead neurons


# --------------------------------------------------------------------------------------------------
# GEM family: derivatives
# --------------------------------------------------------------------------------------------------


def _fns64(n):
    return {
        "gem": lambda t: snn.gem(t, n),
        "egem": lambda t: snn.egem(t, n, 1e-2),
        "segem": lambda t: snn.segem(t, n, 0.7),
    }


@pytest.mark.parametrize("n", [1, 2])
def test_gem_family_grad_matches_finite_differences(n):
    rng = np.random.default_rng(40 + n)
    mag = 10.0 ** rng.uniform(-2, 3, 300)
    x = mag * rng.choice([-1.0, 1.0], 300)
    with backend.precision("float64"):
        for name, f in _fns64(n).items():
            xj = jnp.asarray(x, jnp.float64)
            g = np.asarray(jax.jit(jax.vmap(jax.grad(f)))(xj))
            h = 1e-6 * np.maximum(np.abs(x), 1e-2)
            fj = jax.jit(f)
            fd = (np.asarray(fj(xj + h)) - np.asarray(fj(xj - h))) / (2 * h)
            np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9, err_msg=name)


def _nth_derivative(f, k):
    for _ in range(k):
        f = jax.grad(f)
    return f


# Nested reverse-mode derivatives get slow to compile with the order: for N = 2 one case (covering
# GEM's branch and SE-GEM's) up to order 2N = 4; the jump at order 2N + 1 is checked at N = 1.
@pytest.mark.parametrize(
    "n, which, jump",
    [(1, "gem", 1), (1, "segem_half", 1), (1, "segem_one", 1), (2, "segem_half", 0)],
)
def test_derivatives_continuous_at_zero_up_to_order_2n(n, which, jump):
    alpha = {"gem": 0.0, "segem_half": 0.5, "segem_one": 1.0}[which]
    f = lambda t: snn.segem(t, n, alpha)  # alpha = 0 is GEM
    top = math.factorial(2 * n + 1)
    orders = range(2 * n + 1 + jump)
    with backend.precision("float64"):
        pts = jnp.asarray([-1e-2, -1e-3, -1e-4, 0.0, 1e-4, 1e-3, 1e-2], jnp.float64)
        # One compilation for all orders (eager nested grads are slow to dispatch).
        table = jax.jit(lambda p: [jax.vmap(_nth_derivative(f, k))(p) for k in orders])(pts)
        for k in orders:
            d = np.asarray(table[k])
            assert np.all(np.isfinite(d)), (k, d)
            h = np.abs(np.asarray(pts))
            if k <= 2 * n:
                # d^k f(h) = O(h^(2n+1-k)) -> d^k f(0) = 0 from both sides: C^(2n).
                assert d[3] == 0.0
                assert np.all(np.abs(d) <= 1.1 * top * h), (k, d)
            else:
                # Order 2n+1: right limit (2n+1)!, left limit alpha (2n+1)!; a jump unless alpha=1.
                np.testing.assert_allclose(d[4:], top, rtol=1e-3)
                np.testing.assert_allclose(d[:3], alpha * top, rtol=1e-3, atol=1e-12)


@pytest.mark.parametrize("n", [1, 8])
def test_gem_family_no_nan_gradients(n):
    x = jnp.asarray(
        [0.0, -0.0, -1e-30, 1e-30, -1.0, -1e3, -1e30, 1e-3, 1.0, 1e3, 1e6, 1e30, 3e38], jnp.float32
    )
    fns = {
        "gem": lambda t: snn.gem(t, n),
        "egem_small": lambda t: snn.egem(t, n, 1e-6),
        "egem_big": lambda t: snn.egem(t, n, 10.0),
        "segem": lambda t: snn.segem(t, n, 1.0),
    }

    def d12(x):
        return {nm: [jax.vmap(_nth_derivative(f, k))(x) for k in (1, 2)] for nm, f in fns.items()}

    table = jax.jit(d12)(x)
    for name, (d1, d2) in table.items():
        assert np.all(np.isfinite(np.asarray(d1))) and np.all(np.isfinite(np.asarray(d2))), name
        # Large x: slope 1 (GEM ~ x - x^(1-2n)).
        np.testing.assert_allclose(d1[-3:], 1.0, rtol=1e-6, err_msg=name)


def test_nan_input_propagates():
    x = jnp.asarray([jnp.nan, 1.0])
    for f in (snn.gem, snn.egem, snn.segem, snn.relu):
        assert np.isnan(np.asarray(f(x))[0]) and np.isfinite(np.asarray(f(x))[1])


# --------------------------------------------------------------------------------------------------
# Other activations
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "act, c",
    [
        (snn.relu, 1.0),
        (snn.softplus, 1.0),
        (lambda x: snn.leaky_relu(x, 0.01), 1.01),
        (lambda x: snn.leaky_relu(x, 0.3), 1.3),
        (snn.ReLU(), 1.0),
        (snn.Softplus(), 1.0),
        (snn.LeakyReLU(0.2), 1.2),
        (snn.LeakyReLU(), 1.01),
    ],
)
def test_odd_part_is_linear(act, c):
    x = jnp.linspace(-20.0, 20.0, 401)
    np.testing.assert_allclose(act(x) - act(-x), c * x, rtol=1e-6, atol=1e-5)


def test_gem_odd_part_is_not_linear():
    x = jnp.linspace(0.1, 3.0, 30)
    odd = snn.gem(x) - snn.gem(-x)
    np.testing.assert_allclose(odd, x * x**2 / (1 + x**2), rtol=1e-6)
    assert not np.allclose(odd / x, odd[0] / x[0])


def test_gelu_tanh_and_silu_match_closed_forms():
    x = jnp.linspace(-6.0, 6.0, 201)
    assert tree_allclose(snn.gelu(x), jax.nn.gelu(x, approximate=False), rtol=1e-6, atol=1e-7)
    assert tree_allclose(snn.GELU()(x), jax.nn.gelu(x, approximate=False), rtol=1e-6, atol=1e-7)
    assert tree_allclose(snn.GELU(approximate=True)(x), jax.nn.gelu(x), rtol=1e-6, atol=1e-7)
    assert tree_allclose(snn.Tanh()(x), jnp.tanh(x))
    assert tree_allclose(snn.tanh(x), jnp.tanh(x))
    xs = np.linspace(-6.0, 6.0, 201)
    silu = xs / (1 + np.exp(-xs))  # x sigmoid(x), float64 NumPy
    assert tree_allclose(snn.silu(x), jnp.asarray(silu, jnp.float32), rtol=1e-6, atol=1e-7)
    assert tree_allclose(snn.activation("silu")(x), snn.SiLU()(x))


NAMES = {
    "relu": snn.ReLU,
    "leaky_relu": snn.LeakyReLU,
    "softplus": snn.Softplus,
    "gelu": snn.GELU,
    "tanh": snn.Tanh,
    "silu": snn.SiLU,
    "gem": snn.GEM,
    "egem": snn.EGEM,
    "segem": snn.SEGEM,
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_activation_registry_conformance(name):
    act = snn.activation(name)
    assert isinstance(act, NAMES[name]) and isinstance(act, snn.AbstractActivation)
    x = jnp.linspace(-3.0, 3.0, 12).reshape(3, 4)
    y, yv, g = eqx.filter_jit(
        lambda a, x: (a(x), jax.vmap(a)(x), jax.grad(lambda t: a(t).sum())(x))
    )(act, x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert tree_allclose(yv, y, rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(g)))
    with backend.precision("float64"):
        assert eqx.filter_jit(act)(jnp.ones(3, jnp.float64)).dtype == jnp.float64


def test_activation_selection_errors():
    with pytest.raises(ValueError, match="unknown activation 'swish'") as info:
        snn.activation("swish")
    for name in NAMES:
        assert repr(name) in str(info.value)
    with pytest.raises(TypeError, match="only to an activation given by name"):
        snn.activation(snn.ReLU(), n=2)
    with pytest.raises(TypeError, match="`activation` must be"):
        snn.activation(3)
    assert isinstance(snn.activation("egem", n=2, eps=1e-4), snn.EGEM)
    act = snn.ReLU()
    assert snn.activation(act) is act
    lam = snn.activation(jnp.sin)
    assert isinstance(lam, snn.Lambda)
    assert tree_allclose(lam(jnp.ones(2)), jnp.sin(jnp.ones(2)))
    with pytest.raises(TypeError, match="holds arrays"):
        snn.Lambda(eqx.nn.Linear(2, 2, key=jax.random.key(0)))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: snn.GEM(0), "got n=0"),
        (lambda: snn.GEM(1.5), "positive int"),
        (lambda: snn.GEM(True), "positive int"),
        (lambda: snn.gem(jnp.ones(2), -1), "got n=-1"),
        (lambda: snn.EGEM(1, 0.0), "eps"),
        (lambda: snn.egem(jnp.ones(2), 1, -1.0), "eps"),
        (lambda: snn.SEGEM(1, -0.5), "alpha"),
    ],
)
def test_activation_bad_args(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_activation_rejects_integer_input():
    with pytest.raises(TypeError, match="floating"):
        snn.gem(jnp.arange(3))


def test_parameter_change_does_not_retrace():
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(act, x):
        return act(x)

    x = jnp.linspace(-1.0, 1.0, 5)
    for s in (0.01, 0.1, 0.3):
        np.testing.assert_allclose(f(snn.LeakyReLU(s), x), snn.leaky_relu(x, s), rtol=1e-6)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def g(act, x):
        return act(x)

    for eps in (1e-4, 1e-2, 1.0):
        np.testing.assert_allclose(g(snn.EGEM(2, eps), x), snn.egem(x, 2, eps), rtol=1e-6)


def test_parameters_frozen_unless_trainable():
    x = jnp.linspace(-2.0, 2.0, 9)
    for cls, field, kw in [
        (snn.LeakyReLU, "negative_slope", {}),
        (snn.EGEM, "eps", {"n": 1}),
        (snn.SEGEM, "alpha", {"n": 1}),
    ]:
        grad = eqx.filter_jit(eqx.filter_grad(lambda a: a(x).sum()))
        frozen, trained = grad(cls(**kw)), grad(cls(**kw, trainable=True))
        assert float(getattr(frozen, field)) == 0.0
        assert float(getattr(trained, field)) != 0.0


# --------------------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------------------


def test_mlp_shapes_vmap_jit_grad(getkey):
    model = snn.MLP(3, 2, width=8, depth=2, activation="gem", key=getkey())
    assert model.in_size == 3 and model.out_size == 2 and model.width == 8 and model.depth == 2
    assert len(model.layers) == 3 and isinstance(model.activation, snn.GEM)
    x = jax.random.normal(getkey(), (5, 3))
    y = eqx.filter_jit(jax.vmap(model))(x)
    assert y.shape == (5, 2) and y.dtype == jnp.float32
    assert tree_allclose(y[0], model(x[0]), rtol=1e-6)
    assert tree_allclose(jax.jit(lambda m, x: jax.vmap(m)(x))(model, x), y, rtol=1e-6)

    @eqx.filter_jit
    def loss(m):
        return jnp.mean(jax.vmap(m)(x) ** 2)

    grads = eqx.filter_jit(eqx.filter_grad(loss))(model)
    leaves = jax.tree_util.tree_leaves(grads)
    assert len(leaves) == 6 and all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    # One SGD step lowers the loss.
    stepped = eqx.apply_updates(model, jax.tree_util.tree_map(lambda g: -0.1 * g, grads))
    assert loss(stepped) < loss(model)


def test_mlp_forward_matches_numpy(getkey):
    model = snn.MLP(3, 2, 8, 2, activation="tanh", key=getkey(), final_activation="relu")
    x = np.asarray(jax.random.normal(getkey(), (3,)), np.float64)
    h = x
    for layer in model.layers[:-1]:
        h = np.tanh(h @ np.asarray(layer.weight, np.float64) + np.asarray(layer.bias, np.float64))
    last = model.layers[-1]
    h = np.maximum(h @ np.asarray(last.weight, np.float64) + np.asarray(last.bias, np.float64), 0)
    np.testing.assert_allclose(
        eqx.filter_jit(model)(jnp.asarray(x, jnp.float32)), h, rtol=1e-5, atol=1e-6
    )


def test_mlp_init_bounds_and_no_bias(getkey):
    # Shapes shared with the other MLP tests keep the (eager, per-shape) initialisation cached.
    model = snn.MLP(3, 2, width=8, depth=1, key=getkey(), use_bias=False)
    assert all(layer.bias is None for layer in model.layers)
    w0, w1 = np.asarray(model.layers[0].weight), np.asarray(model.layers[1].weight)
    assert w0.shape == (3, 8) and w1.shape == (8, 2)
    lim0, lim1 = 1 / math.sqrt(3), 1 / math.sqrt(8)
    assert np.abs(w0).max() <= lim0 * (1 + 1e-6) and np.abs(w1).max() <= lim1 * (1 + 1e-6)
    assert np.abs(w0).max() > 0.5 * lim0 and np.abs(w1).max() > 0.5 * lim1  # the full range


def test_mlp_depth_zero_is_affine(getkey):
    model = snn.MLP(3, 2, width=8, depth=0, key=getkey())
    assert len(model.layers) == 1
    x = jnp.asarray([1.0, -2.0, 0.5])
    lin = model.layers[0]
    assert tree_allclose(model(x), x @ lin.weight + lin.bias, rtol=1e-6)


def test_mlp_scalar_in_out(getkey):
    model = snn.MLP("scalar", "scalar", width=8, depth=1, activation="softplus", key=getkey())
    assert eqx.filter_jit(model)(jnp.asarray(0.3)).shape == ()
    t = jnp.linspace(0.0, 1.0, 7)
    ys, dy = eqx.filter_jit(lambda m, t: (jax.vmap(m)(t), jax.vmap(jax.grad(m))(t)))(model, t)
    assert ys.shape == (7,)
    assert dy.shape == (7,) and np.all(np.isfinite(np.asarray(dy)))


def test_mlp_wrong_input_shape(getkey):
    model = snn.MLP(3, 2, width=8, depth=1, key=getkey())
    with pytest.raises(ValueError, match=r"expected input of shape \(3,\).*got \(5,\).*jax\.vmap"):
        model(jnp.ones(5))
    with pytest.raises(ValueError, match=r"got \(2, 3\)"):
        model(jnp.ones((2, 3)))
    scalar = snn.MLP("scalar", 2, width=8, depth=1, key=getkey())
    with pytest.raises(ValueError, match=r"expected input of shape \(\)"):
        scalar(jnp.ones(1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width": 0}, r"got width=0; `width` must be a positive int"),
        ({"width": 2.0}, "`width` must be a positive int"),
        ({"width": True}, "`width` must be a positive int"),
        ({"depth": -1}, r"got depth=-1; `depth` must be an int >= 0"),
        ({"in_size": 0}, "`in_size` must be a positive int or \"scalar\""),
        ({"in_size": "vector"}, "`in_size`"),
        ({"out_size": -3}, "`out_size`"),
        ({"activation": "swish"}, "valid names"),
        ({"dtype": "int8"}, "`dtype`"),
    ],
)
def test_mlp_bad_constructor_args(kwargs, match):
    args = {"in_size": 3, "out_size": 1, "width": 4, "depth": 1, "key": jax.random.key(0)}
    with pytest.raises(ValueError, match=match):
        snn.MLP(**{**args, **kwargs})


def test_mlp_key_required():
    with pytest.raises(TypeError, match="`key`"):
        snn.MLP(3, 1, 4, 1, key=None)
    with pytest.raises(TypeError, match="`key`"):
        snn.MLP(3, 1, 4, 1, key=np.zeros(3))


def test_mlp_float64(getkey):
    with pytest.raises(ValueError, match="64-bit mode is off"):
        snn.MLP(3, 1, 4, 1, key=getkey(), dtype="float64")
    with backend.precision("float64"):
        model = snn.MLP(3, 2, 8, 2, activation="segem", key=getkey())
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree_util.tree_leaves(model))
        y = eqx.filter_jit(jax.vmap(model))(jnp.ones((2, 3), jnp.float64))
        assert y.dtype == jnp.float64
        explicit = snn.MLP(3, 2, 8, 2, key=getkey(), dtype="float32")
        assert explicit.layers[0].weight.dtype == jnp.float32


def test_mlp_same_structure_does_not_retrace(getkey):
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(model, x):
        return jax.vmap(model)(x)

    x = jnp.ones((4, 3))
    for slope in (0.0, 0.1, 0.2):
        f(snn.MLP(3, 2, 8, 2, activation=snn.LeakyReLU(slope), key=getkey()), x)


# --------------------------------------------------------------------------------------------------
# Flax interop
# --------------------------------------------------------------------------------------------------


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(3, 8, rngs=rngs)
        self.l2 = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.l1(x)))


class Scale(nnx.Variable):
    """A non-Param variable (not trained)."""


class ScaledLinear(nnx.Module):
    def __init__(self, rngs):
        self.lin = nnx.Linear(3, 2, rngs=rngs)
        self.bn = nnx.BatchNorm(2, use_running_average=True, rngs=rngs)
        self.scale = Scale(jnp.asarray(2.0))

    def __call__(self, x):
        return self.scale[...] * self.bn(self.lin(x))


def test_flax_wraps_linear_and_mlp():
    x = jax.random.normal(jax.random.key(1), (5, 3))
    for model in (nnx.Linear(3, 2, rngs=nnx.Rngs(0)), NnxMLP(nnx.Rngs(0))):
        wrapped = snn.from_flax(model)
        assert isinstance(wrapped, snn.FlaxModel) and isinstance(wrapped, eqx.Module)
        assert tree_allclose(wrapped(x), model(x), rtol=1e-6)
        assert tree_allclose(jax.jit(lambda m, x: m(x))(wrapped, x), model(x), rtol=1e-6)
        assert tree_allclose(jax.vmap(wrapped)(x), model(x), rtol=1e-6)


def test_flax_grad_matches_nnx_grad_and_trains():
    model = NnxMLP(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (16, 3))
    target = jnp.sin(x[:, :2])
    wrapped = snn.from_flax(model)

    def loss(m):
        return jnp.mean((m(x) - target) ** 2)

    grads = eqx.filter_jit(eqx.filter_grad(loss))(wrapped)
    ref = nnx.grad(loss)(model)
    ours = jax.tree_util.tree_leaves(grads.params)
    theirs = jax.tree_util.tree_leaves(ref)
    assert len(ours) == len(theirs) == 4
    assert all(tree_allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(ours, theirs))

    trained = eqx.apply_updates(wrapped, jax.tree_util.tree_map(lambda g: -0.1 * g, grads))
    assert loss(trained) < loss(wrapped)
    back = snn.to_flax(trained)
    assert isinstance(back, NnxMLP)
    assert tree_allclose(back(x), trained(x), rtol=1e-6)
    assert not tree_allclose(back(x), model(x))  # the trained params came back
    assert tree_allclose(snn.to_flax(snn.from_flax(model))(x), model(x), rtol=1e-6)


def test_flax_non_param_state_gets_zero_gradient():
    model = ScaledLinear(nnx.Rngs(0))
    # Non-trivial batch stats, so that the output depends on them.
    model.bn.mean[...] = jnp.asarray([0.5, -0.5])
    model.bn.var[...] = jnp.asarray([2.0, 3.0])
    wrapped = snn.from_flax(model)
    x = jnp.ones((4, 3))
    assert tree_allclose(wrapped(x), model(x), rtol=1e-6)
    grads = eqx.filter_grad(lambda m: jnp.sum(m(x) ** 2))(wrapped)
    rest = jax.tree_util.tree_leaves(grads.rest)
    assert len(rest) == 3  # bn mean, bn var, scale
    assert all(np.all(np.asarray(g) == 0) for g in rest)
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree_util.tree_leaves(grads.params))


def test_flax_apply_returns_updated_state():
    model = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.BatchNorm(4, rngs=nnx.Rngs(1)))
    wrapped = snn.from_flax(model)
    x = jax.random.normal(jax.random.key(2), (8, 3))
    y, updated = eqx.filter_jit(lambda m, x: m.apply(x))(wrapped, x)
    assert tree_allclose(y, wrapped(x), rtol=1e-6)
    assert tree_allclose(updated.params, wrapped.params)
    assert not tree_allclose(updated.rest, wrapped.rest)  # running mean/var moved
    # __call__ itself is pure: calling leaves the wrapper's state as it was.
    before = wrapped.rest
    wrapped(x)
    assert tree_allclose(wrapped.rest, before)


def test_flax_same_architecture_does_not_retrace():
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(m, x):
        return m(x)

    x = jnp.ones((2, 3))
    outs = [f(snn.from_flax(NnxMLP(nnx.Rngs(seed))), x) for seed in range(3)]
    assert not tree_allclose(outs[0], outs[1])


def test_flax_type_errors():
    with pytest.raises(TypeError, match=r"flax\.nnx\.Module, got .*Linear"):
        snn.from_flax(eqx.nn.Linear(2, 2, key=jax.random.key(0)))
    with pytest.raises(TypeError, match="got builtins.function"):
        snn.from_flax(lambda x: x)
    with pytest.raises(TypeError, match="`wrapped` must be a sciml.nn.FlaxModel"):
        snn.to_flax(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))


def test_public_api():
    expected = {
        "AbstractActivation", "ReLU", "LeakyReLU", "Softplus", "GELU", "Tanh", "SiLU", "GEM", "EGEM",
        "SEGEM", "Lambda", "activation", "relu", "leaky_relu", "softplus", "gelu", "tanh", "gem",
        "silu", "egem", "segem", "Linear", "MLP", "FlaxModel", "from_flax", "to_flax",
    }  # fmt: skip
    public = {n for n in dir(snn) if not n.startswith("_")}
    assert expected <= public
    for name in expected:
        obj = getattr(snn, name)
        assert obj.__doc__ and obj.__doc__.strip(), name
