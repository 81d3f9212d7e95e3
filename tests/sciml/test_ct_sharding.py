"""sciml.ct across devices: a batch of images / sinograms split over a one-axis device mesh (4 CPU
devices from the root conftest) gives the same numbers as one device, and the result stays split.

Reference: the same functions on the unsharded batch (float32 rounding: reductions may be ordered
differently per device, so 1e-5 relative)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import backend, ct
from sciml import diffusion as dm

from .test_diffusion_ct import _model

N = 16


def _mesh():
    return backend.make_mesh(4)


def _split_over(out, mesh):
    """Every device holds one quarter of the batch."""
    shards = out.addressable_shards
    assert len(shards) == mesh.size
    assert {s.data.shape[0] for s in shards} == {out.shape[0] // mesh.size}


def test_projector_and_fbp_on_a_sharded_batch(getkey):
    g = ct.fan_beam(np.linspace(0, 2 * np.pi, 12, endpoint=False), 32, (N, N), source_origin=40.0,
                    origin_detector=20.0)
    mesh = _mesh()
    xs = jax.random.uniform(getkey(), (8, N, N))
    xs_sharded = backend.shard_batch(xs, mesh)
    fp = jax.jit(ct.project)
    ys = fp(xs_sharded, g)
    _split_over(ys, mesh)
    np.testing.assert_allclose(ys, fp(xs, g), rtol=1e-5, atol=1e-5 * float(jnp.abs(ys).max()))
    bp = jax.jit(ct.backproject)(ys, g)
    _split_over(bp, mesh)
    np.testing.assert_allclose(bp, ct.backproject(fp(xs, g), g), rtol=1e-5,
                               atol=1e-5 * float(jnp.abs(bp).max()))
    fbp = jax.jit(jax.vmap(lambda y: ct.reconstruct(y, g, "fbp").image))
    np.testing.assert_allclose(fbp(ys), fbp(fp(xs, g)), atol=1e-5 * float(jnp.abs(xs).max()))


@pytest.mark.slow  # two compilations of a vmapped sampler: ~20 s
def test_cdpa_on_a_sharded_batch_of_sinograms(getkey):
    # four measurements, one per device, each reconstructed with its own key: the same samples as one
    # device computing them one by one
    g = ct.parallel_beam(np.linspace(0, np.pi, 8, endpoint=False), 24, (N, N))
    mesh = _mesh()
    truths = jax.vmap(lambda k: ct.random_ellipses(k).image((N, N)))(jax.random.split(getkey(), 4))
    ys = ct.project(truths, g)
    keys = jax.random.split(getkey(), 4)
    method = dm.CDPA(_model(getkey()), samples=2, sampler=dm.DDIM(steps=3, eta=0.8),
                     consistency=dm.CGConsistency(steps=2, gamma=1.0))

    @eqx.filter_jit
    def batch(ys, keys):
        rec = jax.vmap(lambda y, k: ct.reconstruct(y, g, method, key=k))(ys, keys)
        return rec.image, rec.std

    image, std = batch(backend.shard_batch(ys, mesh), backend.shard_batch(keys, mesh))
    _split_over(image, mesh)
    one = eqx.filter_jit(lambda y, k: ct.reconstruct(y, g, method, key=k))
    for i in range(4):
        rec = one(ys[i], keys[i])
        np.testing.assert_allclose(image[i], rec.image, atol=1e-4)
        np.testing.assert_allclose(std[i], rec.std, atol=1e-4)
