"""sciml.backend: precision policy, devices and meshes, PRNG helpers, the shared matmul."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

import sciml.backend as B

# --- precision -------------------------------------------------------------------------------------


def test_default_precision_is_float32():
    assert B.default_dtype() == np.float32
    assert B.float_dtype() == np.float32
    assert B.complex_dtype() == np.complex64
    assert B.float_dtype("bfloat16") == jnp.bfloat16
    assert B.float_dtype(np.float16) == np.float16


def test_precision_context_turns_on_float64_and_restores():
    with B.precision("float64"):
        assert B.default_dtype() == np.float64
        assert B.complex_dtype() == np.complex128
        assert B.as_array([1, 2]).dtype == np.float64
        assert jnp.ones(2, B.float_dtype()).dtype == np.float64
    assert B.default_dtype() == np.float32
    assert not jax.config.jax_enable_x64


def test_precision_from_environment_variable():
    code = (
        "import sciml.backend as B, jax.numpy as jnp;"
        "print(B.default_dtype(), jnp.ones(2, B.float_dtype()).dtype, B.complex_dtype())"
    )
    env = {**os.environ, "SCIML_PRECISION": "float64"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["float64", "float64", "complex128"]
    env["SCIML_PRECISION"] = "float12"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "SCIML_PRECISION" in bad.stderr


def test_precision_errors():
    with pytest.raises(ValueError, match=r"`name` must be one of \['float32', 'float64'\]"):
        B.set_precision("float16")
    with pytest.raises(ValueError, match=r"`dtype` must be one of"):
        B.float_dtype("double")
    with pytest.raises(ValueError, match="real floating dtype"):
        B.float_dtype(np.int32)
    with pytest.raises(ValueError, match="64-bit mode is off"):
        B.float_dtype("float64")
    with pytest.raises(TypeError, match="`x` must be real numeric"):
        B.as_array(jnp.ones(2, jnp.complex64))


# --- devices ---------------------------------------------------------------------------------------


def test_devices_and_mesh():
    assert B.device_count() == 4 and len(B.devices()) == 4 and len(B.devices(2)) == 2
    mesh = B.make_mesh(4, "data")
    assert mesh.axis_names == ("data",) and mesh.shape["data"] == 4
    with pytest.raises(ValueError, match="asked for 5 devices but only 4 cpu device"):
        B.make_mesh(5)
    with pytest.raises(ValueError, match="positive int"):
        B.devices(0)
    with pytest.raises(ValueError, match="`axis_name` must be a non-empty str"):
        B.make_mesh(2, "")


def test_shard_batch_and_replicate():
    mesh = B.make_mesh(4)
    batch = {"x": np.arange(16.0, dtype=np.float32).reshape(8, 2), "y": np.arange(8, dtype=np.int32)}
    sharded = B.shard_batch(batch, mesh)
    assert sharded["x"].sharding == NamedSharding(mesh, PartitionSpec("batch"))
    assert [s.data.shape for s in sharded["x"].addressable_shards] == [(2, 2)] * 4
    np.testing.assert_array_equal(sharded["x"], batch["x"])
    rep = B.replicate({"w": jnp.ones(3), "n": 3}, mesh)
    assert rep["w"].sharding.is_fully_replicated and rep["n"] == 3
    with pytest.raises(ValueError, match=r"batch leaf \['x'\] has shape \(6, 2\).*divisible by the 4"):
        B.shard_batch({"x": np.ones((6, 2))}, mesh)
    with pytest.raises(ValueError, match="not an axis of the mesh"):
        B.shard_batch(batch, mesh, axis="model")


# --- PRNG ------------------------------------------------------------------------------------------


def test_prng_helpers():
    k = B.key(3)
    assert jnp.issubdtype(k.dtype, jax.dtypes.prng_key)
    assert B.split_key(k, 3).shape == (3,)
    tree = {"a": 1, "b": (2, 3)}
    keys = B.split_like(k, tree)
    flat = jax.random.key_data(jnp.stack(jax.tree_util.tree_leaves(keys)))
    assert len({tuple(r) for r in np.asarray(flat).tolist()}) == 3  # distinct
    with pytest.raises(TypeError, match="`seed` must be an int"):
        B.key(1.5)
    with pytest.raises(TypeError, match="must be a JAX PRNG key"):
        B.split_key(jnp.ones(3))


# --- matmul ----------------------------------------------------------------------------------------


def test_matmul_matches_numpy_float64_reference(getkey):
    a = jax.random.normal(getkey(), (5, 7, 9))
    b = jax.random.normal(getkey(), (9, 4))
    ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    np.testing.assert_allclose(B.matmul(a, b), ref, rtol=1e-5, atol=1e-5)
    v = jax.random.normal(getkey(), (9,))
    np.testing.assert_allclose(B.matmul(a[0], v), np.asarray(a[0]) @ np.asarray(v), rtol=1e-5,
                               atol=1e-5)


def test_matmul_int8_accumulates_exactly_in_int32():
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (16, 300), dtype=np.int8)
    b = rng.integers(-128, 128, (300, 8), dtype=np.int8)
    out = B.matmul(jnp.asarray(a), jnp.asarray(b))
    assert out.dtype == jnp.int32
    np.testing.assert_array_equal(out, a.astype(np.int64) @ b.astype(np.int64))


def test_matmul_complex_and_mixed_float():
    a = jnp.asarray([[1 + 2j, 3 - 1j]], jnp.complex64)
    b = jnp.asarray([[1.0], [2.0]], jnp.float32)
    out = B.matmul(a, b)
    assert out.dtype == jnp.complex64
    np.testing.assert_allclose(out, np.asarray(a) @ np.asarray(b))
    bf = B.matmul(jnp.ones((2, 3), jnp.bfloat16), jnp.ones((3, 2), jnp.bfloat16))
    assert bf.dtype == jnp.bfloat16 and float(bf[0, 0]) == 3.0


def test_matmul_transformations(getkey):
    a = jax.random.normal(getkey(), (3, 4))
    b = jax.random.normal(getkey(), (4, 2))
    np.testing.assert_allclose(jax.jit(B.matmul)(a, b), a @ b, rtol=1e-6)
    batched = jax.vmap(B.matmul, in_axes=(None, 0))(a, jnp.stack([b, 2 * b]))
    np.testing.assert_allclose(batched[1], 2 * (a @ b), rtol=1e-5)
    g = jax.grad(lambda a: jnp.sum(B.matmul(a, b)))(a)
    np.testing.assert_allclose(g, jnp.broadcast_to(jnp.sum(b, axis=1), (3, 4)), rtol=1e-6)


def test_matmul_errors():
    msg = r"inner dimensions differ: `a` has shape \(2, 3\).*`b` has shape \(4, 5\)"
    with pytest.raises(ValueError, match=msg):
        B.matmul(jnp.ones((2, 3)), jnp.ones((4, 5)))
    with pytest.raises(TypeError, match="both be integer or both be floating"):
        B.matmul(jnp.ones((2, 3), jnp.int8), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="must have shape"):
        B.matmul(jnp.ones((2, 3)), jnp.ones((3, 2, 2)))
    with pytest.raises(TypeError, match="must be numeric"):
        B.matmul(jnp.ones((2, 3), bool), jnp.ones((3, 2), bool))
