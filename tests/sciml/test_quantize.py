"""sciml.backend quantisation against an independent NumPy reference (STYLE.md #11, #12)."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml.backend import Quantized, dequantize, fake_quantize, quantize
from tests.helpers import tree_allclose

BITS = (2, 4, 8, 16)
SCHEMES = ("symmetric", "affine")
CONFIGS = [
    (bits, scheme, narrow)
    for bits in BITS
    for scheme in SCHEMES
    for narrow in ((True, False) if scheme == "symmetric" and bits in (4, 8) else (True,))
]


# --------------------------------------------------------------------------------------------------
# Independent NumPy reference (textbook formulas; np.round is round-half-to-even too)
# --------------------------------------------------------------------------------------------------


def ref_range(bits, scheme, narrow=True):
    if scheme == "symmetric":
        qmax = 2 ** (bits - 1) - 1
        return (-qmax if narrow else -qmax - 1), qmax
    return 0, 2**bits - 1


def ref_params(x, bits, scheme, axis):
    """Scale and zero point, float32 arithmetic, keepdims shape."""
    x = np.asarray(x, np.float32)
    red = tuple(i for i in range(x.ndim) if axis is None or i != axis % x.ndim)
    if scheme == "symmetric":
        amax = np.max(np.abs(x), axis=red, keepdims=True)
        scale = amax / np.float32(2 ** (bits - 1) - 1)
        scale = np.where(amax == 0, np.float32(1), scale).astype(np.float32)
        return scale, np.zeros_like(scale, dtype=np.int64)
    mn = np.minimum(np.min(x, axis=red, keepdims=True), np.float32(0))
    mx = np.maximum(np.max(x, axis=red, keepdims=True), np.float32(0))
    n = np.float32(2**bits - 1)
    scale = np.where(mx == mn, np.float32(1), (mx - mn) / n).astype(np.float32)
    zp = np.clip(np.round(-mn / scale), 0, 2**bits - 1).astype(np.int64)
    return scale, zp


def ref_codes(x, scale, zp, lo, hi):
    x = np.asarray(x, np.float32)
    return np.clip(np.round(x / np.asarray(scale, np.float32)) + zp, lo, hi).astype(np.int64)


def ref_quantize(x, bits, scheme="symmetric", axis=None, narrow=True):
    scale, zp = ref_params(x, bits, scheme, axis)
    return ref_codes(x, scale, zp, *ref_range(bits, scheme, narrow)), scale, zp


def assert_codes_close(a, b):
    """Codes equal up to rare off-by-one at rounding boundaries.

    XLA's vectorised float division on CPU is not correctly rounded (it may be 1 ulp off NumPy's,
    and differ between array shapes), so x/s can land on the other side of a .5 boundary; elsewhere
    the codes must agree exactly.
    """
    diff = np.abs(np.asarray(a).astype(np.int64) - np.asarray(b).astype(np.int64))
    assert diff.max(initial=0) <= 1 and np.mean(diff) < 1e-2


def as_np(a):
    return np.asarray(a).astype(np.int64) if jnp.issubdtype(a.dtype, jnp.integer) else np.asarray(a)


# --------------------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------------------

# One shape throughout: the jitted kernels are cached per (shape, dtype, config), which keeps the
# suite fast.
SHAPE = (6, 8)
STORAGE = {
    (2, "symmetric"): jnp.int8,
    (4, "symmetric"): jnp.int8,
    (8, "symmetric"): jnp.int8,
    (16, "symmetric"): jnp.int16,
    (2, "affine"): jnp.uint8,
    (4, "affine"): jnp.uint8,
    (8, "affine"): jnp.uint8,
    (16, "affine"): jnp.uint16,
}
REFERENCE_CASES = [(bits, scheme, narrow, None) for bits, scheme, narrow in CONFIGS] + [
    (8, "symmetric", True, 0),
    (8, "symmetric", True, -1),
    (8, "affine", True, 0),
    (8, "affine", True, -1),
]


def sample(key, scheme):
    x = 3.0 * jax.random.normal(key, SHAPE)
    return x + 1.0 if scheme == "affine" else x  # an off-centre range for the affine scheme


@pytest.mark.parametrize("bits,scheme,narrow,axis", REFERENCE_CASES)
def test_matches_numpy_reference(getkey, bits, scheme, narrow, axis):
    x = sample(getkey(), scheme)
    q = quantize(x, bits, scheme=scheme, axis=axis, narrow_range=narrow)
    codes, scale, zp = ref_quantize(x, bits, scheme, axis, narrow)
    np.testing.assert_allclose(np.asarray(q.scale), scale, rtol=1e-6)
    np.testing.assert_array_equal(as_np(q.zero_point), zp)
    assert_codes_close(q.values, codes)
    lo, hi = ref_range(bits, scheme, narrow)
    assert as_np(q.values).min() >= lo and as_np(q.values).max() <= hi
    assert q.values.dtype == q.zero_point.dtype == STORAGE[bits, scheme]
    assert q.scale.dtype == jnp.float32
    assert (q.bits, q.scheme, q.axis) == (bits, scheme, None if axis is None else axis % 2)


@pytest.mark.parametrize("bits,scheme,narrow,axis", REFERENCE_CASES)
def test_error_at_most_half_scale(getkey, bits, scheme, narrow, axis):
    x = sample(getkey(), scheme)
    q = quantize(x, bits, scheme=scheme, axis=axis, narrow_range=narrow)
    deq = dequantize(q)
    assert deq.dtype == jnp.float32 and deq.shape == SHAPE
    err = np.abs(np.asarray(x) - np.asarray(deq))
    bound = np.broadcast_to(np.asarray(q.scale) / 2, err.shape)
    # float32 division/multiplication add a few ulps of x on top of s/2.
    assert np.all(err <= bound * (1 + 1e-5) + 4 * np.finfo(np.float32).eps * np.abs(np.asarray(x)))


@pytest.mark.parametrize(
    "bits,scheme,narrow",
    [(4, "symmetric", False), (8, "affine", True), (16, "symmetric", True), (16, "affine", True)],
)
def test_user_scale_codes_exact(getkey, bits, scheme, narrow):
    x = 5.0 * jax.random.normal(getkey(), SHAPE)
    scale = np.float32(5.0 / 2 ** (bits - 2))  # a power of two: x / s is exact in any division
    zp = 2 ** (bits - 1) if scheme == "affine" else 0
    kw = {"zero_point": zp} if scheme == "affine" else {}
    q = quantize(x, bits, scheme=scheme, narrow_range=narrow, scale=scale, **kw)
    expected = ref_codes(x, scale, zp, *ref_range(bits, scheme, narrow))
    np.testing.assert_array_equal(as_np(q.values), expected)


@pytest.mark.parametrize(
    "bits,scheme,values_dtype", [(9, "symmetric", jnp.int16), (12, "affine", jnp.uint16)]
)
def test_storage_dtype_switches_above_8_bits(bits, scheme, values_dtype):
    q = quantize(jnp.linspace(-1.0, 2.0, 11), bits, scheme=scheme)
    assert q.values.dtype == q.zero_point.dtype == values_dtype
    assert int(as_np(q.values).max()) == ref_range(bits, scheme)[1]


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_input_keeps_dtype(dtype):
    x = jnp.linspace(-3.0, 3.0, 13).astype(dtype)
    for scheme in SCHEMES:
        q = quantize(x, 16, scheme=scheme)
        assert q.scale.dtype == dtype
        deq = dequantize(q)
        assert deq.dtype == dtype and bool(jnp.all(jnp.isfinite(deq)))
        np.testing.assert_allclose(
            np.asarray(deq, np.float32), np.asarray(x, np.float32), atol=2e-2
        )
    assert fake_quantize(x, 16).dtype == dtype


def test_round_half_to_even():
    x = jnp.array([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 0.49, 0.51])
    q = quantize(x, 8, scale=1.0)
    np.testing.assert_array_equal(as_np(q.values), [0, 2, 2, 4, 0, -2, -2, 0, 1])
    # affine: the tie is broken on x / s, then the zero point is added.
    qa = quantize(x, 8, scheme="affine", scale=1.0, zero_point=10)
    np.testing.assert_array_equal(as_np(qa.values), [10, 12, 12, 14, 10, 8, 8, 10, 11])
    np.testing.assert_array_equal(np.round(np.asarray(x)), [0, 2, 2, 4, 0, -2, -2, 0, 1])


def test_saturation_no_wraparound():
    x = jnp.array([-1e6, -100.0, -1.0, 0.0, 1.0, 100.0, 1e6, jnp.inf, -jnp.inf])
    q = quantize(x, 8, scale=0.01)
    np.testing.assert_array_equal(as_np(q.values), [-127, -127, -100, 0, 100, 127, 127, 127, -127])
    q = quantize(x, 8, scale=0.01, narrow_range=False)
    np.testing.assert_array_equal(as_np(q.values), [-128, -128, -100, 0, 100, 127, 127, 127, -128])
    q = quantize(x, 16, scale=1e-3)
    np.testing.assert_array_equal(as_np(q.values)[[0, 6]], [-32767, 32767])
    qa = quantize(x, 8, scheme="affine", scale=1.0, zero_point=3)
    np.testing.assert_array_equal(as_np(qa.values), [0, 0, 2, 3, 4, 103, 255, 255, 0])
    qa = quantize(x, 16, scheme="affine", scale=1.0, zero_point=0)
    np.testing.assert_array_equal(as_np(qa.values)[[0, 6]], [0, 65535])
    assert qa.values.dtype == jnp.uint16


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("axis", [0, -1])
def test_per_channel_equals_per_tensor_on_slices(getkey, scheme, axis):
    x = sample(getkey(), scheme) * jnp.arange(1.0, 9.0)  # channels of different ranges
    q = quantize(x, 8, scheme=scheme, axis=axis)
    ax = axis % x.ndim
    assert q.axis == ax
    keep = tuple(n if i == ax else 1 for i, n in enumerate(x.shape))
    assert q.scale.shape == keep and q.zero_point.shape == keep
    values, scale, zp = (np.asarray(a) for a in (q.values, q.scale, q.zero_point))
    for i in range(x.shape[ax]):
        qi = quantize(np.take(np.asarray(x), i, axis=ax), 8, scheme=scheme)
        assert_codes_close(np.take(values, i, axis=ax), qi.values)
        np.testing.assert_allclose(
            np.take(scale, i, axis=ax).squeeze(), qi.scale.squeeze(), rtol=1e-6
        )
        assert int(np.take(zp, i, axis=ax).squeeze()) == int(qi.zero_point.squeeze())


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("offset", [-7.0, 0.0, 3.0])
def test_affine_represents_zero_exactly(getkey, bits, offset):
    x = jax.random.uniform(getkey(), SHAPE, minval=0.1, maxval=2.3) + offset
    x = x.at[::2, ::3].set(0.0)
    q = quantize(x, bits, scheme="affine")
    deq = dequantize(q)
    assert np.all(np.asarray(deq)[::2, ::3] == 0.0)
    if offset > 0:  # all >= 0: the range is [0, max], so 0 is the lowest code
        assert int(q.zero_point.squeeze()) == 0
    if offset < -3:  # all <= 0: the range is [min, 0]
        assert int(q.zero_point.squeeze()) == 2**bits - 1


@pytest.mark.parametrize("scheme", SCHEMES)
def test_all_zero_no_nan(scheme):
    for bits in (2, 16):
        q = quantize(jnp.zeros(SHAPE), bits, scheme=scheme)
        assert float(q.scale.squeeze()) == 1.0
        np.testing.assert_array_equal(np.asarray(dequantize(q)), 0.0)
        # one non-zero channel among all-zero ones
        x = jnp.zeros(SHAPE).at[1, :4].set(jnp.array([1.0, -2.0, 0.5, 0.0]))
        q = quantize(x, bits, scheme=scheme, axis=0)
        deq = np.asarray(dequantize(q))
        assert np.all(np.isfinite(deq)) and np.all(np.isfinite(np.asarray(q.scale)))
        np.testing.assert_array_equal(np.delete(deq, 1, axis=0), 0.0)
    # grads of fake_quantize stay finite too
    g = jax.grad(lambda x: fake_quantize(x, 8, scheme=scheme).sum())(jnp.zeros(SHAPE))
    np.testing.assert_array_equal(np.asarray(g), 1.0)


def test_tiny_values_do_not_underflow_scale():
    x = jnp.array([1e-40, -3e-41, 0.0])  # float32 subnormals
    q = quantize(x, 8)
    assert float(q.scale.squeeze()) > 0
    deq = np.asarray(dequantize(q))
    assert np.all(np.isfinite(deq)) and np.all(np.abs(deq - np.asarray(x)) <= 1e-38)


# --------------------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_jit_matches_eager(getkey, scheme):
    x = jax.random.normal(getkey(), SHAPE)
    eager = quantize(x, 4, scheme=scheme, axis=-1)
    jitted = jax.jit(quantize, static_argnames=("bits", "scheme", "axis"))
    assert tree_allclose(jitted(x, bits=4, scheme=scheme, axis=-1), eager, rtol=0, atol=0)
    assert tree_allclose(eqx.filter_jit(quantize)(x, 4, scheme=scheme, axis=-1), eager)
    assert tree_allclose(jax.jit(dequantize)(eager), dequantize(eager))
    fq = eqx.filter_jit(fake_quantize)(x, 4, scheme=scheme, axis=-1)
    np.testing.assert_array_equal(np.asarray(fq), np.asarray(dequantize(eager)))


def test_user_scale_under_jit(getkey):
    x = jax.random.normal(getkey(), (10,))
    f = jax.jit(quantize, static_argnames=("bits", "scheme", "axis"))
    q = f(x, bits=8, scheme="affine", scale=jnp.float32(0.02), zero_point=jnp.int32(128))
    expected = ref_codes(x, np.float32(0.02), 128, 0, 255)
    np.testing.assert_array_equal(as_np(q.values), expected)


@pytest.mark.parametrize("scheme,axis", [("symmetric", None), ("affine", -1)])
def test_vmap_matches_loop(getkey, scheme, axis):
    xs = jax.random.normal(getkey(), (3, *SHAPE))
    f = functools.partial(quantize, bits=8, scheme=scheme, axis=axis)
    batched = jax.vmap(f)(xs)
    batched_np = jax.tree_util.tree_map(np.asarray, batched)
    for i, x in enumerate(np.asarray(xs)):
        single = f(x)
        assert tree_allclose(jax.tree_util.tree_map(lambda a, i=i: a[i], batched_np), single)
    # keepdims scales broadcast against the batched values without a vmap
    np.testing.assert_array_equal(
        np.asarray(dequantize(batched)), np.asarray(jax.vmap(dequantize)(batched))
    )
    fq = jax.vmap(lambda x: fake_quantize(x, 8, scheme=scheme, axis=axis))(xs)
    np.testing.assert_array_equal(np.asarray(fq), np.asarray(dequantize(batched)))


def test_fake_quantize_forward_and_gradient(getkey):
    x = jax.random.normal(getkey(), SHAPE)
    for scheme in SCHEMES:
        fq = fake_quantize(x, 4, scheme=scheme, axis=0)
        np.testing.assert_array_equal(
            np.asarray(fq), np.asarray(dequantize(quantize(x, 4, scheme=scheme, axis=0)))
        )
        # data-derived scale: nothing saturates, the straight-through gradient is the identity
        g = jax.grad(lambda x, s=scheme: jnp.sum(fake_quantize(x, 4, scheme=s, axis=0) ** 2))(x)
        np.testing.assert_allclose(np.asarray(g), 2 * np.asarray(fq), rtol=1e-6)


def test_fake_quantize_gradient_zero_where_saturated():
    x = jnp.array([-3.0, -0.5, 0.0, 0.3, 0.7, 2.0, jnp.inf])
    f = lambda x: fake_quantize(x, 4, scale=0.1).sum()  # codes in [-7, 7] -> x in [-0.7, 0.7]
    out = fake_quantize(x, 4, scale=0.1)
    np.testing.assert_allclose(np.asarray(out), [-0.7, -0.5, 0.0, 0.3, 0.7, 0.7, 0.7], rtol=1e-6)
    expected = [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    np.testing.assert_array_equal(np.asarray(jax.grad(f)(x)), expected)
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.grad(f))(x)), expected)
    # forward mode gives the same rule
    _, tangent = jax.jvp(lambda x: fake_quantize(x, 4, scale=0.1), (x,), (jnp.ones_like(x),))
    np.testing.assert_array_equal(np.asarray(tangent), expected)
    # no gradient flows into a user scale
    gs = jax.grad(lambda s: fake_quantize(x[:-1], 4, scale=s).sum())(jnp.float32(0.1))
    assert float(gs) == 0.0


def test_no_retrace_on_new_data(getkey):
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def roundtrip(x, scale):
        q = quantize(x, 8, scheme="affine", axis=0)
        return dequantize(q), fake_quantize(x, 8, scale=scale)

    for _ in range(3):
        roundtrip(jax.random.normal(getkey(), (4, 5)), jax.random.uniform(getkey(), (), minval=0.1))

    traces = []

    def per_channel(x):
        traces.append(None)  # runs once per trace, not per call
        return quantize(x, 8, axis=1)

    jitted = jax.jit(per_channel)
    for _ in range(3):
        jitted(jax.random.normal(getkey(), (4, 5)))
    assert len(traces) == 1


def test_quantized_is_a_pytree_with_hashable_static_fields():
    q = quantize(jnp.ones((2, 3)), 8, scheme="affine", axis=1)
    leaves, treedef = jax.tree_util.tree_flatten(q)
    assert len(leaves) == 3
    hash(treedef)
    assert treedef == jax.tree_util.tree_structure(
        quantize(2 * jnp.ones((2, 3)), 8, scheme="affine", axis=1)
    )


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 17, 0, -8, 8.0, True, "8", None])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="`bits` must be an int in \\[2, 16\\]"):
        quantize(jnp.ones(3), bits)


def test_bad_scheme():
    with pytest.raises(ValueError, match=r"`scheme` must be one of \['symmetric', 'affine'\]"):
        quantize(jnp.ones(3), 8, scheme="asymmetric")


@pytest.mark.parametrize("axis", [2, -3, 1.0])
def test_bad_axis(axis):
    with pytest.raises(ValueError, match="`axis`.*x.ndim=2" if axis != 1.0 else "`axis` must be"):
        quantize(jnp.ones((2, 3)), 8, axis=axis)


@pytest.mark.parametrize("x", [jnp.arange(3), np.array([True, False]), jnp.ones(2, jnp.complex64)])
def test_non_float_x(x):
    with pytest.raises(TypeError, match="`x` must be a real floating array"):
        quantize(x, 8)
    with pytest.raises(TypeError, match="`x` must be a real floating array"):
        fake_quantize(x, 8)


def test_non_array_x():
    with pytest.raises(TypeError, match="`x` must be a real floating array"):
        quantize("abc", 8)


def test_nan_raises_eagerly_and_under_jit():
    x = jnp.array([1.0, jnp.nan, 2.0])
    with pytest.raises(RuntimeError, match="`x` contains NaN; cannot quantize"):
        quantize(x, 8)
    with pytest.raises(RuntimeError, match="`x` contains NaN; cannot quantize"):
        eqx.filter_jit(quantize)(x, 8)
    with pytest.raises(RuntimeError, match="`x` contains NaN; cannot quantize"):
        jax.jit(functools.partial(fake_quantize, bits=8, scale=1.0))(x)


def test_inf_without_scale_raises():
    with pytest.raises(RuntimeError, match="`x` contains inf"):
        quantize(jnp.array([1.0, jnp.inf]), 8)


@pytest.mark.parametrize("scale", [0.0, -1.0, np.inf])
def test_bad_scale_value(scale):
    with pytest.raises(RuntimeError, match="`scale` must be positive and finite"):
        quantize(jnp.ones(3), 8, scale=scale)


def test_bad_scale_and_zero_point_arguments():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="`scale` must be a scalar"):
        quantize(x, 8, scale=jnp.ones(3))
    with pytest.raises(ValueError, match=r"`scale` must be shape \(2, 1\) or \(2,\)"):
        quantize(x, 8, axis=0, scale=jnp.ones(3))
    q = quantize(x, 8, axis=-1, scale=jnp.array([1.0, 2.0, 4.0]))  # flat (C,) per-channel scale
    np.testing.assert_array_equal(np.asarray(q.scale), [[1.0, 2.0, 4.0]])
    with pytest.raises(ValueError, match="`zero_point` is only for scheme='affine'"):
        quantize(x, 8, scale=1.0, zero_point=0)
    with pytest.raises(ValueError, match="give `scale` and `zero_point` together"):
        quantize(x, 8, scheme="affine", scale=1.0)
    with pytest.raises(ValueError, match="give `scale` and `zero_point` together"):
        quantize(x, 8, scheme="affine", zero_point=3)
    with pytest.raises(TypeError, match="`zero_point` must be an integer array"):
        quantize(x, 8, scheme="affine", scale=1.0, zero_point=3.0)
    with pytest.raises(RuntimeError, match=r"`zero_point` must lie in the code range \[0, 15\]"):
        quantize(x, 4, scheme="affine", scale=1.0, zero_point=16)
    with pytest.raises(TypeError, match="`narrow_range` must be a Python bool"):
        quantize(x, 8, narrow_range=1)


def test_dequantize_and_quantized_checks():
    with pytest.raises(TypeError, match="`q` must be a Quantized"):
        dequantize(jnp.ones(3))
    ok = dict(
        values=jnp.zeros((2, 3), jnp.int8),
        scale=jnp.ones((1, 1)),
        zero_point=jnp.zeros((1, 1), jnp.int8),
        bits=8,
        scheme="symmetric",
        axis=None,
    )
    Quantized(**ok)
    with pytest.raises(
        TypeError, match="`values` of a 8-bit symmetric Quantized must have dtype int8"
    ):
        Quantized(**{**ok, "values": jnp.zeros((2, 3), jnp.uint8)})
    with pytest.raises(TypeError, match="`scale` must be a real floating array"):
        Quantized(**{**ok, "scale": jnp.ones((1, 1), jnp.int32)})
    with pytest.raises(ValueError, match="keepdims shape"):
        Quantized(**{**ok, "scale": jnp.ones(())})
    with pytest.raises(ValueError, match="`axis` of a Quantized"):
        Quantized(**{**ok, "axis": 2})
    with pytest.raises(ValueError, match="`bits`"):
        Quantized(**{**ok, "bits": 20})
