"""Diffusion CT methods on tiny problems: data consistency (CG against a direct solve), CDPA / DDS /
DPS through sciml.ct.reconstruct (shapes, jit, data agreement, 3D slice-wise), weights save/load, the
sparse-view task's simulation, and errors. The quality acceptance runs in the benchmarks."""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import sciml
from sciml import ct, nn
from sciml import diffusion as dm

N = 16


def _model(key, cond=True, perturb=True):
    net = nn.UNet(3 if cond else 1, 1, channels=(8, 16), groups=4, key=key)
    if perturb:  # the last conv starts at zero; give the network a non-trivial output
        params, static = eqx.partition(net, eqx.is_inexact_array)
        # one normal draw for the flattened parameters (per-leaf draws compile a kernel per shape)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        flat = flat + 0.05 * jax.random.normal(jax.random.fold_in(key, 1), flat.shape, flat.dtype)
        net = eqx.combine(unravel(flat), static)
    return dm.Denoiser(net, dm.VP(), channels=1, cond_channels=1 if cond else 0)


@pytest.fixture(scope="module")
def problem():
    g = ct.parallel_beam(np.linspace(0, np.pi, 8, endpoint=False), 24, (N, N))
    truth = ct.shepp_logan().image((N, N))
    return truth, ct.project(truth, g), g


def test_cg_consistency_matches_direct_solve(problem, getkey):
    # enough CG steps solve (A^T A + gamma I) x = A^T y + gamma x0 exactly (dense solve as reference)
    _, y, g = problem
    x0 = jax.random.uniform(getkey(), (N, N))
    gamma = 0.5
    A = jax.jacfwd(lambda x: ct.project(x, g))(jnp.zeros((N, N))).reshape(-1, N * N)
    M = A.T @ A + gamma * jnp.eye(N * N)
    direct = jnp.linalg.solve(M, A.T @ y.ravel() + gamma * x0.ravel())
    x = dm.CGConsistency(steps=200, gamma=gamma)(x0, y, g)
    np.testing.assert_allclose(x.ravel(), direct, atol=2e-3 * float(jnp.abs(direct).max()))
    # zero steps: the estimate unchanged; a few steps already lower the data misfit
    np.testing.assert_array_equal(dm.CGConsistency(steps=0)(x0, y, g), x0)
    r0 = jnp.linalg.norm(ct.project(x0, g) - y)
    x3 = dm.CGConsistency(steps=3, gamma=0.0)(x0, y, g)
    assert float(jnp.linalg.norm(ct.project(x3, g) - y)) < 0.2 * float(r0)


# DDS and DPS run the same sampler and consistency code as CDPA (slow: ~14 s each)
@pytest.mark.parametrize("kind", ["cdpa", pytest.param("dds", marks=pytest.mark.slow),
                                  pytest.param("dps", marks=pytest.mark.slow)])
def test_methods_through_reconstruct(kind, problem, getkey):
    truth, y, g = problem
    model = _model(getkey(), cond=kind == "cdpa")
    dc = dm.CGConsistency(steps=5, gamma=0.0)
    method = {"cdpa": dm.CDPA(model, samples=3, sampler=dm.DDIM(steps=4, eta=0.8), consistency=dc),
              "dds": dm.DDS(model, samples=3, sampler=dm.DDIM(steps=4, eta=0.8), consistency=dc),
              "dps": dm.DPS(model, samples=3, steps=4)}[kind]
    run = eqx.filter_jit(ct.reconstruct)  # one wrapper: later calls reuse its compiled function
    rec = run(y, g, method, key=getkey())
    assert rec.image.shape == (N, N) and rec.samples.shape == (3, N, N) and rec.std.shape == (N, N)
    np.testing.assert_allclose(rec.image, rec.samples.mean(0), atol=1e-5)
    assert bool(jnp.all(rec.std >= 0)) and float(rec.std.mean()) > 0  # the samples differ
    if kind != "dps":
        # 5 CG steps on every estimate: even an untrained prior ends close to the data
        assert float(rec.residual) < 0.05
    # sigma scaling multiplies the reported std only (an array leaf: same compiled function)
    scaled = run(y, g, eqx.tree_at(lambda m: m.std_scale, method, jnp.asarray(1.5)), key=jax.random.key(0))
    if kind != "dps":
        base = run(y, g, method, key=jax.random.key(0))
        np.testing.assert_allclose(scaled.std, 1.5 * base.std, rtol=1e-6)
        np.testing.assert_array_equal(scaled.image, base.image)
    # same key, same samples
    again = run(y, g, method, key=jax.random.key(0))
    again2 = run(y, g, method, key=jax.random.key(0))
    np.testing.assert_array_equal(again.samples, again2.samples)


@pytest.mark.slow  # ~40 s compile; 3D slice-wise CDPA also in the cone benchmark
def test_cdpa_on_a_cone_beam_volume_slicewise(getkey):
    g = ct.cone_beam(np.linspace(0, 2 * np.pi, 8, endpoint=False), (12, 24), (8, N, N), source_origin=60.0,
                     origin_detector=20.0)
    y = ct.project(ct.shepp_logan(3).image((8, N, N)), g)
    method = dm.CDPA(_model(getkey()), samples=2, sampler=dm.DDIM(steps=3),
                     consistency=dm.CGConsistency(5, 0.0))
    rec = ct.reconstruct(y, g, method, key=getkey())
    assert rec.image.shape == (8, N, N) and rec.std.shape == (8, N, N)
    assert float(rec.residual) < 0.1


def test_save_and_load_round_trip(tmp_path, getkey):
    model = _model(getkey())
    path = dm.save_denoiser(tmp_path / "m.eqx", model, metadata={"image_shape": [N, N], "note": "x"})
    loaded, meta = dm.load_denoiser(path, image_shape=(N, N))
    assert meta["note"] == "x"
    x, c = jax.random.normal(getkey(), (1, N, N)), jax.random.normal(getkey(), (1, N, N))
    np.testing.assert_array_equal(loaded(x, jnp.asarray(0.3), c), model(x, jnp.asarray(0.3), c))
    with pytest.raises(ValueError, match="trained on"):
        dm.load_denoiser(path, image_shape=(64, 64))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dm.load_denoiser(tmp_path / "nope.eqx")
    (tmp_path / "bad.eqx").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="not a sciml denoiser"):
        dm.load_denoiser(tmp_path / "bad.eqx")


def test_float32_weights_load_in_float64(tmp_path, getkey):
    # the shipped model is float32; under float64 precision it loads in float64 (an exact cast)
    model = _model(getkey(), perturb=False)
    path = dm.save_denoiser(tmp_path / "m.eqx", model)
    with sciml.backend.precision("float64"):
        loaded, _ = dm.load_denoiser(path)
        assert {str(leaf.dtype) for leaf in jax.tree.leaves(eqx.filter(loaded, eqx.is_array))} == {"float64"}
        w = loaded.net.conv_in.weight
    np.testing.assert_array_equal(np.asarray(w), np.asarray(model.net.conv_in.weight, np.float64))


@pytest.mark.slow  # ~40 s: fine-grid simulation compiles
def test_sparse_view_task(getkey):
    task = dm.SparseViewTask(size=N, views=(4, 8), photons=1e4)
    truth, y, g = task.measure(getkey(), 8)
    assert truth.shape == (N, N) and y.shape == (8, task.detector_count)
    # the data come from the fine grid: close to, but not exactly, the coarse projection of the truth
    rel = float(jnp.linalg.norm(ct.project(truth, g) - y) / jnp.linalg.norm(y))
    assert 1e-3 < rel < 0.1
    x, cond = task.dataset(getkey(), 4, chunk=2)
    assert x.shape == cond.shape == (4, 1, N, N) and bool(jnp.all(x >= 0))
    with pytest.raises(ValueError, match="`phantom`"):
        dm.SparseViewTask(phantom="cats")
    with pytest.raises(ValueError, match="`views`"):
        dm.SparseViewTask(views=())


def test_bad_input_is_named(problem, getkey):
    _, y, g = problem
    uncond = _model(getkey(), cond=False)
    with pytest.raises(ValueError, match="cond_channels=1"):
        ct.reconstruct(y, g, dm.CDPA(uncond, samples=2), key=getkey())
    with pytest.raises(ValueError, match="`key`"):
        ct.reconstruct(y, g, dm.DDS(uncond, samples=2))
    with pytest.raises(ValueError, match="`samples`"):
        dm.CDPA(uncond, samples=0)
    with pytest.raises(ValueError, match="`gamma`"):
        dm.CGConsistency(gamma=-1.0)
    with pytest.raises(ValueError, match="`std_scale`"):
        dm.CDPA(_model(getkey()), samples=2, std_scale=0.0)
    with pytest.raises(TypeError, match="`denoiser`"):
        ct.reconstruct(y, g, dm.DDS("model", samples=2), key=getkey())
