"""Tests of sciml.nn.UNet: shapes, parameter count, jit/vmap/grad, time conditioning, a training
sanity check and the boundary errors.

Compiling dominates the run time on a small CPU, so: one tiny configuration (channels=(8, 16), 16x16
images, batch 8) almost everywhere, jitted functions shared between tests, test data drawn with numpy
on the host (an eager ``jax.random`` call compiles a PRNG kernel per shape), and parameter counts
taken on abstract models (``eqx.filter_eval_shape``), which builds nothing."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sciml
import sciml.nn as snn
from sciml.nn._unet import _GroupNorm

SIZE = 16
BATCH = 8


def tiny(key, **kw):
    kw = {"channels": (8, 16), "groups": 4, **kw}
    return snn.UNet(1, 1, key=key, **kw)


def perturbed(model, seed, scale=0.1):
    """The model with every float leaf nudged, so the zero-initialised last conv is not zero.

    The noise is drawn on the host: an eager ``jax.random`` call per leaf shape would compile one
    PRNG kernel each, seconds in all."""
    rng = np.random.default_rng(seed)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    params = jax.tree_util.tree_map(
        lambda p: jnp.asarray(np.asarray(p) + scale * rng.standard_normal(p.shape).astype(p.dtype)),
        params,
    )
    return eqx.combine(params, static)


def smooth_images(n=BATCH, size=SIZE):
    """``n`` smooth (band-limited) images of shape (1, size, size), values in [-1, 1]."""
    g = np.linspace(0, 1, size)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    f = np.arange(1, n + 1)[:, None, None]
    img = np.sin(2 * np.pi * f / 4 * xx) * np.cos(np.pi * yy * (1 + f % 3))
    return img[:, None].astype(np.float32)


def normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def mse(model, x, t, target):
    return jnp.mean((jax.vmap(model)(x, t) - target) ** 2)


# Shared jitted functions: each compiles once per model structure and input shape.
batched = eqx.filter_jit(lambda model, x, t: jax.vmap(model)(x, t))
loss_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(mse))


def expected_params(cin, cout, channels, blocks, emb, attention):
    """Parameter count of the documented layout, counted by hand."""

    def conv(a, b, k=3):
        return a * b * k * k + b

    def res(a, b):
        skip = conv(a, b, 1) if a != b else 0
        return 2 * a + conv(a, b) + (emb * 2 * b + 2 * b) + 2 * b + conv(b, b) + skip

    n = conv(cin, channels[0]) + 2 * (emb * emb + emb)
    prev = channels[0]
    for i, c in enumerate(channels):
        for _ in range(blocks):
            n += res(prev, c)
            prev = c
        n += conv(c, c) if i < len(channels) - 1 else 0
    c = channels[-1]
    n += res(c, c) + (2 * c + conv(c, 3 * c, 1) + conv(c, c, 1) if attention else 0)
    for i in reversed(range(len(channels))):
        a = 2 * channels[i]
        for _ in range(blocks):
            n += res(a, channels[i])
            a = channels[i]
        n += conv(channels[i], channels[i - 1]) if i > 0 else 0
    return n + 2 * channels[0] + conv(channels[0], cout)


# --------------------------------------------------------------------------------------------------
# Shapes and parameters
# --------------------------------------------------------------------------------------------------


def test_shape_and_zero_init(getkey):
    model = tiny(getkey())
    out = batched(model, normal(0, (BATCH, 1, SIZE, SIZE)), jnp.linspace(0.0, 1.0, BATCH))
    assert out.shape == (BATCH, 1, SIZE, SIZE) and out.dtype == jnp.float32
    # The last conv is zero-initialised (documented), so a fresh network outputs exactly zero.
    assert np.all(np.asarray(out) == 0.0)


def test_attention_blocks_and_channels_out(getkey):
    model = snn.UNet(3, 2, channels=(8, 16), blocks=2, groups=4, attention=True, key=getkey())
    model = perturbed(model, 0)
    out = eqx.filter_jit(model)(normal(0, (3, SIZE, 8)), jnp.asarray(0.3))
    assert out.shape == (2, SIZE, 8)
    assert np.all(np.isfinite(np.asarray(out)))
    assert snn.count_params(model) == expected_params(3, 2, (8, 16), 2, 64, True)


@pytest.mark.parametrize(
    "kw",
    [
        {"channels": (8, 16), "groups": 4},
        {"channels": (32, 64, 128)},
        {"channels": (16,), "blocks": 3, "embedding_dim": 8, "groups": 16},
    ],
)
def test_count_params_matches_hand_count(kw):
    model = eqx.filter_eval_shape(snn.UNet, 2, 1, key=jax.random.key(0), **kw)
    blocks, emb = kw.get("blocks", 1), kw.get("embedding_dim", 64)
    assert snn.count_params(model) == expected_params(2, 1, kw["channels"], blocks, emb, False)


def test_count_params_small_cases(getkey):
    assert snn.count_params(snn.Linear(3, 2, key=jax.random.key(0))) == 8
    # The documented recipe agrees on a built model.
    model = tiny(getkey())
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    assert snn.count_params(model) == sum(p.size for p in leaves)
    assert snn.count_params(model) == expected_params(1, 1, (8, 16), 1, 64, False) == 37633
    assert snn.count_params({"a": jnp.ones((2, 3)), "n": jnp.arange(4), "s": "x"}) == 6


def test_group_norm_matches_equinox():
    x = normal(5, (16, 6, 4)) * 3 + 1
    rng = np.random.default_rng(6)
    w, b = rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    ours = eqx.tree_at(lambda m: (m.weight, m.bias), _GroupNorm(4, 16, dtype=jnp.float32), (w, b))
    ref = eqx.tree_at(lambda m: (m.weight, m.bias), eqx.nn.GroupNorm(4, 16), (w, b))
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(ref(x)), rtol=1e-5, atol=1e-5)


def test_float64_and_bfloat16_under_strict_promotion(getkey):
    # GroupNorm's float32 statistics must not rely on implicit float64/bfloat16 <-> float32 promotion
    with sciml.backend.precision("float64"):
        model = snn.UNet(1, 1, channels=(4, 8), groups=2, key=getkey(), dtype=jnp.float64)
        assert model(jnp.ones((1, 8, 8)), jnp.asarray(0.3)).dtype == jnp.float64
    x = jnp.ones((4, 2, 2), jnp.bfloat16)
    assert _GroupNorm(2, 4, dtype=jnp.bfloat16)(x).dtype == jnp.bfloat16


# --------------------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------------------


def test_jit_one_example_matches_vmap_and_does_not_retrace(getkey):
    model = perturbed(tiny(getkey()), 0)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def single(model, x, t):
        return model(x, t)

    x = normal(1, (BATCH, 1, SIZE, SIZE))
    t = jnp.linspace(-2.0, 2.0, BATCH)
    out = np.asarray(batched(model, x, t))
    # New values of t and x (same shapes) reuse the one trace.
    for i in (0, 3, BATCH - 1):
        np.testing.assert_allclose(out[i], np.asarray(single(model, x[i], t[i])), rtol=1e-5, atol=1e-5)
    assert single(model, 2 * x[0], jnp.asarray(0.1, jnp.float32)).shape == (1, SIZE, SIZE)


def test_gradients_finite_and_reach_every_layer(getkey):
    model = perturbed(tiny(getkey()), 0)
    x, target = normal(2, (BATCH, 1, SIZE, SIZE)), normal(3, (BATCH, 1, SIZE, SIZE))
    t = jnp.linspace(0.0, 1.0, BATCH)
    loss, grads = loss_and_grad(model, x, t, target)
    leaves = [np.asarray(g) for g in jax.tree_util.tree_leaves(grads)]  # checked on the host
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(g)) for g in leaves)
    # Every parameter array (first conv, time MLP, every block, last conv) gets a non-zero gradient.
    assert all(np.abs(g).max() > 0 for g in leaves)


def test_gradient_matches_finite_difference(getkey):
    model = perturbed(tiny(getkey()), 0)
    x, target = normal(2, (BATCH, 1, SIZE, SIZE)), normal(3, (BATCH, 1, SIZE, SIZE))
    t = jnp.linspace(0.0, 1.0, BATCH)
    _, grads = loss_and_grad(model, x, t, target)
    # The derivative along the unit gradient direction u = g / |g| is |g|; checked by central
    # differences (float32: h = 3e-3 is past the curvature error and short of the rounding error).
    params, static = eqx.partition(model, eqx.is_inexact_array)
    # Host arithmetic throughout: eager jax ops would compile once per parameter shape.
    params, grads = jax.tree_util.tree_map(np.asarray, (params, grads))
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in jax.tree_util.tree_leaves(grads)))

    def moved(h):  # evaluated by the already compiled `loss_and_grad`
        p = jax.tree_util.tree_map(lambda p, g: jnp.asarray(p + np.float32(h / norm) * g), params, grads)
        return float(loss_and_grad(eqx.combine(p, static), x, t, target)[0])

    h = 3e-3
    numeric = (moved(h) - moved(-h)) / (2 * h)
    assert norm > 0.1
    assert math.isclose(numeric, norm, rel_tol=1e-3), (numeric, norm)


# --------------------------------------------------------------------------------------------------
# Time conditioning
# --------------------------------------------------------------------------------------------------


def test_time_embedding_changes_the_output(getkey):
    model = perturbed(tiny(getkey()), 0)
    x = np.broadcast_to(normal(4, (1, SIZE, SIZE)), (BATCH, 1, SIZE, SIZE))
    # Conventions of very different scale: t in [0, 1], log-sigma, DDPM steps.
    t = jnp.asarray([0.0, 0.05, 0.5, 1.0, -3.0, 2.0, 100.0, 999.0])
    out = np.asarray(batched(model, x, t))
    scale = np.abs(out).mean()
    for i in range(BATCH):
        for j in range(i):
            assert np.abs(out[i] - out[j]).mean() > 1e-3 * scale, (t[i], t[j])


def test_embedding_is_sinusoidal(getkey):
    model = tiny(getkey())
    e = np.asarray(model.embed(0.7))
    assert e.shape == (64,)
    np.testing.assert_allclose(e[:32] ** 2 + e[32:] ** 2, 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(model.embed(0.0)), [0.0] * 32 + [1.0] * 32)


# --------------------------------------------------------------------------------------------------
# Training sanity check
# --------------------------------------------------------------------------------------------------


def test_learns_to_predict_the_noise():
    """Adam on the noise-prediction loss E |eps_theta(a x0 + s eps, t) - eps|^2 over a fixed set of 8
    smooth 16x16 images, fresh noise every step, a = cos(pi t / 2), s = sin(pi t / 2), t in [0.2, 1].
    The zero-initialised network starts at loss ~1 (= E eps^2); after 100 steps the mean loss of the
    last 10 steps must be at least 4x below that of the first 10 (measured: ~11x)."""
    steps, lr = 100, 3e-3
    x0 = smooth_images()
    rng = np.random.default_rng(0)  # data on the host: no PRNG kernels to compile
    ts = rng.uniform(0.2, 1.0, (steps, BATCH)).astype(np.float32)
    eps = rng.standard_normal((steps,) + x0.shape).astype(np.float32)
    a, s = np.cos(np.pi * ts / 2)[..., None, None, None], np.sin(np.pi * ts / 2)[..., None, None, None]
    xt = a * x0 + s * eps

    model = tiny(jax.random.key(0))
    opt = optax.adam(lr)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def update(model, state, grads):
        # optax mixes Python floats with its int32 step count, which strict promotion rejects.
        with jax.numpy_dtype_promotion("standard"):
            updates, state = opt.update(grads, state, model)
        return eqx.apply_updates(model, updates), state

    losses = []
    for i in range(steps):
        loss, grads = loss_and_grad(model, xt[i], ts[i], eps[i])
        model, state = update(model, state, grads)
        losses.append(float(loss))
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert 0.5 < first < 1.5, first
    assert last < first / 4, (first, last)


# --------------------------------------------------------------------------------------------------
# Errors at the boundary
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"channels": ()}, "channels"),
        ({"channels": 8}, "channels"),
        ({"channels": "8"}, "channels"),
        ({"channels": (8, 0)}, "channels"),
        ({"channels": (8, -16)}, "channels"),
        ({"channels": (8, 16.0)}, "channels"),
        ({"blocks": 0}, "blocks"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"embedding_dim": 7}, "embedding_dim.*even"),
        ({"groups": 0}, "groups"),
        ({"groups": 3}, "groups.*divide"),
        ({"channels": (8, 12), "groups": 8}, r"groups.*divide.*\[12\]"),
    ],
)
def test_constructor_errors(kw, match):
    kw = {"channels": (8, 16), "groups": 4, **kw}
    with pytest.raises(ValueError, match=match):
        snn.UNet(1, 1, key=jax.random.key(0), **kw)


@pytest.mark.parametrize("name, value", [("in_channels", 0), ("out_channels", -1), ("in_channels", 1.5)])
def test_constructor_size_errors(name, value):
    kw = {"in_channels": 1, "out_channels": 1, name: value}
    with pytest.raises(ValueError, match=name):
        snn.UNet(**kw, channels=(8,), groups=4, key=jax.random.key(0))


def test_constructor_needs_a_key():
    with pytest.raises(TypeError, match="key"):
        snn.UNet(1, 1, channels=(8,), groups=4, key=None)
    with pytest.raises(TypeError, match="key"):
        snn.UNet(1, 1, channels=(8,), groups=4, key=0)


@pytest.mark.parametrize("jit", [False, True])
def test_call_errors(getkey, jit):
    model = tiny(getkey())  # in_channels=1, two levels: sizes must be even
    call = eqx.filter_jit(model) if jit else model
    t = jnp.asarray(0.5)
    with pytest.raises(ValueError, match=r"in_channels=1.*3 channels"):
        call(jnp.zeros((3, 16, 16)), t)
    with pytest.raises(ValueError, match=r"`x`.*vmap"):
        call(jnp.zeros((4, 1, 16, 16)), t)
    with pytest.raises(ValueError, match=r"`x`.*\(16, 17\).*multiples of 2"):
        call(jnp.zeros((1, 16, 17)), t)
    with pytest.raises(ValueError, match=r"`x`.*\(9, 16\).*multiples of 2"):
        call(jnp.zeros((1, 9, 16)), t)
    with pytest.raises(ValueError, match=r"`t` must be a scalar.*\(3,\)"):
        call(jnp.zeros((1, 16, 16)), jnp.zeros(3))
    with pytest.raises(TypeError, match="`x`"):
        call(jnp.zeros((1, 16, 16), jnp.int32), t)
    with pytest.raises(TypeError, match="`t`"):
        call(jnp.zeros((1, 16, 16)), jnp.asarray(3))


def test_three_levels_need_multiples_of_four():
    model = eqx.filter_eval_shape(snn.UNet, 1, 1, channels=(8, 8, 8), key=jax.random.key(0))
    assert model.multiple == 4
    with pytest.raises(ValueError, match=r"`x`.*\(18, 16\).*multiples of 4"):
        model(jnp.zeros((1, 18, 16)), 0.5)
