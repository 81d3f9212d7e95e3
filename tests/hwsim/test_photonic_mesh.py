"""hwsim.photonic, device level: MZI meshes and their non-idealities.

References: the decompositions of the ``interferometer`` package 1.1.2 for a fixed 8x8 Haar unitary
and its phase-noise fidelity table (tests/data/clements_reference.json, copied from
shared/reference); explicit matrices for Eq. 1 of Clements et al. (2016); closed forms for the
insertion loss, the crosstalk and the DAC grid; central finite differences for the gradients.
"""

import json
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml.backend as B
from hwsim import photonic

DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "clements_reference.json"
REF = json.loads(DATA.read_text())["results"]["haar8_seed0"]
REF_KEYS = {"clements": "clements_square", "reck": "reck_triangle"}
U_REF = np.array(REF["U_real"]) + 1j * np.array(REF["U_imag"])


def haar(n, seed):
    """A Haar-random unitary (QR of a complex Ginibre matrix, phases of R's diagonal fixed)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / np.sqrt(2)
    q, r = np.linalg.qr(x)
    return q * (np.diag(r) / np.abs(np.diag(r)))


def orthogonal(n, seed, det):
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))
    if np.sign(np.linalg.det(q)) != det:
        q[:, 0] = -q[:, 0]
    return q


def angle_err(a, b):
    """|a - b| modulo 2 pi (wrap-safe)."""
    return np.abs(np.angle(np.exp(1j * (np.asarray(a, np.float64) - np.asarray(b, np.float64)))))


def max_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


# --------------------------------------------------------------------------------------------------
# The MZI, the meshes, their layout and reconstruction
# --------------------------------------------------------------------------------------------------


def test_mzi_transfer_is_eq1_of_clements():
    rng = np.random.default_rng(1)
    theta, phi = rng.uniform(-np.pi, np.pi, 5), rng.uniform(-np.pi, np.pi, 5)
    with B.precision("float64"):
        t = np.asarray(photonic.mzi_transfer(jnp.asarray(theta), jnp.asarray(phi)))
    e, c, s = np.exp(1j * phi), np.cos(theta), np.sin(theta)
    expected = np.stack([np.stack([e * c, -s], -1), np.stack([e * s, c], -1)], -2)
    assert t.shape == (5, 2, 2) and t.dtype == np.complex128
    assert max_err(t, expected) < 1e-15
    assert max_err(np.conj(np.swapaxes(t, -1, -2)) @ t, np.eye(2)) < 1e-15


def check_layout(mesh, n):
    """Counts, depth and the column structure, checked from the static fields alone."""
    assert mesh.num_mzi == n * (n - 1) // 2
    depth = {"clements": n if n > 2 else 1, "reck": 2 * n - 3}[mesh.kind]
    assert mesh.depth == depth
    for col in range(mesh.depth):
        used = [m for pair, c in zip(mesh.modes, mesh.columns) if c == col for m in pair]
        assert len(used) == len(set(used)) > 0  # disjoint pairs, no empty column
    if mesh.kind == "clements":  # rectangular: column c holds the pairs (k, k+1) with k = c mod 2
        assert all(k % 2 == c % 2 for (k, _), c in zip(mesh.modes, mesh.columns))


@pytest.mark.parametrize("mesh", photonic.MESHES)
@pytest.mark.parametrize("n", [2, 3, 4, 7, 8, 16, 33, 64])
def test_reconstruct_float64(n, mesh):
    u = haar(n, seed=n)
    with B.precision("float64"):
        m = photonic.decompose(u, mesh)
        assert m.theta.dtype == np.float64
        err = max_err(photonic.reconstruct(m), u)
    check_layout(m, n)
    assert err < 1e-12, err


@pytest.mark.parametrize("mesh", photonic.MESHES)
@pytest.mark.parametrize("n", [8, 64])
def test_reconstruct_float32(n, mesh):
    u = haar(n, seed=100 + n)
    m = photonic.decompose(u, mesh)
    rec = photonic.reconstruct(m)
    assert m.theta.dtype == np.float32 and rec.dtype == np.complex64
    assert max_err(rec, u) < 1e-5


def test_one_mode_mesh():
    m = photonic.decompose(np.array([[np.exp(0.3j)]]))
    assert (m.num_mzi, m.depth) == (0, 0)
    assert max_err(photonic.reconstruct(m), [[np.exp(0.3j)]]) < 1e-6


@pytest.mark.parametrize("mesh", photonic.MESHES)
def test_matches_interferometer_reference(mesh):
    """Same MZIs in the same order on the same modes, same phases (mod 2 pi), same output phases."""
    ref = REF[REF_KEYS[mesh]]
    with B.precision("float64"):
        m = photonic.decompose(U_REF, mesh)
        assert max_err(photonic.reconstruct(m), U_REF) < 1e-12
    assert (m.num_mzi, m.depth) == (ref["num_mzi"], ref["depth"])
    assert list(m.modes) == [(z["mode1"] - 1, z["mode2"] - 1) for z in ref["mzis"]]
    assert max_err(m.theta, [z["theta"] for z in ref["mzis"]]) < 1e-9
    assert angle_err(m.phi, [z["phi"] for z in ref["mzis"]]).max() < 1e-9
    assert angle_err(m.output_phases, ref["output_phases"]).max() < 1e-9


@pytest.mark.parametrize("mesh", photonic.MESHES)
@pytest.mark.parametrize("n,det", [(2, -1), (7, 1), (8, -1), (8, 1)])
def test_real_orthogonal(n, det, mesh):
    o = orthogonal(n, seed=n, det=det)
    with B.precision("float64"):
        m = photonic.decompose(o, mesh, real=True)
        rec = np.asarray(photonic.reconstruct(m))
    assert np.all(np.asarray(m.phi) == 0.0)  # one angle per MZI
    out = np.asarray(m.output_phases)
    assert np.all((out == 0.0) | (out == np.pi))
    assert np.prod(np.cos(out)) == det  # the signs of D carry the determinant
    assert max_err(rec.real, o) < 1e-12 and np.abs(rec.imag).max() < 1e-12


@pytest.mark.parametrize("real", [False, True])
@pytest.mark.parametrize("shape", [(7, 3), (3, 8), (4, 4), (1, 4), (2, 1)])
def test_svd_mesh_reconstructs_the_matrix(shape, real):
    rng = np.random.default_rng(sum(shape))
    w = rng.standard_normal(shape) * 3.0
    if not real:
        w = w + 1j * rng.standard_normal(shape)
    with B.precision("float64"):
        svd = photonic.svd_mesh(w, "reck" if shape[0] == 4 else "clements", real=real)
        rec = np.asarray(photonic.reconstruct_matrix(svd))
    s = np.linalg.svd(w, compute_uv=False)
    assert svd.shape == shape
    assert float(svd.scale) == pytest.approx(s[0], rel=1e-14)
    sigma = np.asarray(svd.sigma)
    assert sigma[0] == 1.0 and np.all(sigma <= 1.0) and np.all(sigma >= 0.0)
    assert max_err(rec, w) < 1e-12


def test_svd_mesh_of_zero_matrix():
    with B.precision("float64"):
        svd = photonic.svd_mesh(np.zeros((2, 3)))
        assert float(svd.scale) == 0.0 and np.all(np.asarray(svd.sigma) == 0.0)
        assert np.all(np.asarray(photonic.reconstruct_matrix(svd)) == 0)


# --------------------------------------------------------------------------------------------------
# Non-idealities
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mesh", photonic.MESHES)
def test_phase_noise_fidelity_matches_reference_table(mesh):
    """Mean fidelity over 4000 trials vs the reference's 20 (seed 123): |diff| <= 0.005, and the
    infidelity 1 - F within 25% (about 4 standard errors of the 20-trial reference mean)."""
    table = REF[REF_KEYS[mesh]]["phase_noise_sensitivity_20trials_seed123"]
    sigmas = [0.001, 0.01, 0.05, 0.1]
    with B.precision("float64"):
        m = photonic.decompose(U_REF, mesh)
        target = jnp.asarray(U_REF)

        def trial(sigma, key):
            noisy = photonic.perturb(m, photonic.Noise(phase_std=sigma), key=key)
            return photonic.fidelity(target, photonic.reconstruct(noisy))

        keys = jax.random.split(jax.random.key(2024), 4000)
        # vmap over the noise levels and the keys: one compilation for all 4 x 4000 trials.
        trials = jax.jit(jax.vmap(jax.vmap(trial, in_axes=(None, 0)), in_axes=(0, None)))
        fids = np.asarray(trials(jnp.asarray(sigmas), keys))
        for i in range(3):  # the batched trials are the unbatched ones
            assert fids[2, i] == pytest.approx(float(trial(sigmas[2], keys[i])), abs=1e-14)
    assert len(np.unique(fids[2])) == 4000  # independent trials
    for sigma, f in zip(sigmas, fids.mean(axis=1)):
        ref = table[str(sigma)]["mean_fidelity"]
        assert abs(f - ref) <= 0.005, (sigma, f, ref)
        assert (1 - f) / (1 - ref) == pytest.approx(1.0, abs=0.25), (sigma, f, ref)


def ref_mesh(kind):
    """The reference unitary's mesh in float64 (one layout per kind, so compilations are shared)."""
    with B.precision("float64"):
        return photonic.decompose(U_REF, kind)


@pytest.mark.parametrize("mesh", photonic.MESHES)
def test_zero_noise_is_exactly_ideal(mesh, getkey):
    m = ref_mesh(mesh)
    with B.precision("float64"):
        noisy = photonic.perturb(m, photonic.Noise(), key=getkey())
        for a, b in zip(jax.tree.leaves(m), jax.tree.leaves(noisy)):
            assert np.array_equal(a, b)
        assert np.array_equal(photonic.reconstruct(noisy), photonic.reconstruct(m))
        # An SVDMesh too (8 x 8: its meshes have the layout of the reference mesh).
        svd = photonic.svd_mesh(np.arange(64.0).reshape(8, 8) ** 0.5, mesh)
        noisy_svd = photonic.perturb(svd, photonic.Noise(), key=getkey())
        assert np.array_equal(photonic.reconstruct_matrix(noisy_svd), photonic.reconstruct_matrix(svd))


def test_insertion_loss_closed_form(getkey):
    loss_db = 0.7
    with B.precision("float64"):
        noise = photonic.Noise(loss_db=loss_db)  # a float64 level: a float32 0.7 is off by 1e-8
        lossy = photonic.perturb(ref_mesh("clements"), noise, key=getkey())
        assert max_err(lossy.transmission, np.full(28, 10 ** (-loss_db / 20))) < 1e-16
        set_loss = lambda m: eqx.tree_at(lambda m: m.transmission, m, lossy.transmission[: m.num_mzi])
        # One MZI: both outputs of a unitary 2x2 lose exactly 10^(-L/10) of the power.
        two = set_loss(photonic.decompose(haar(2, 7)))
        power = np.sum(np.abs(np.asarray(photonic.reconstruct(two))) ** 2, axis=0)
        assert max_err(power, [10 ** (-loss_db / 10)] * 2) < 1e-14
        # A uniform loss on one MZI does not change the fidelity (it is normalised out).
        assert float(photonic.fidelity(haar(2, 7), photonic.reconstruct(two))) == pytest.approx(1, abs=1e-14)
        # All MZIs in the bar state (theta = 0): light stays on its mode and loses L dB at every
        # MZI on that mode, whatever the mesh.
        for kind in photonic.MESHES:
            m = set_loss(ref_mesh(kind))
            m = eqx.tree_at(lambda m: m.theta, m, jnp.zeros_like(m.theta))
            u = np.asarray(photonic.reconstruct(m))
            passes = np.array([sum(j in pair for pair in m.modes) for j in range(8)])
            assert max_err(np.abs(u) ** 2, np.diag(10 ** (-loss_db * passes / 10))) < 1e-14


def test_crosstalk_adds_a_fraction_of_the_neighbours_phases(getkey):
    kappa = 0.03
    m = ref_mesh("clements")
    with B.precision("float64"):
        noisy = photonic.perturb(m, photonic.Noise(crosstalk=kappa), key=getkey())
    for leaf in ("theta", "phi"):
        p = np.asarray(getattr(m, leaf))
        expected = p.copy()
        for i, ((a, _), col) in enumerate(zip(m.modes, m.columns)):
            for j, ((b, _), col_j) in enumerate(zip(m.modes, m.columns)):
                if col_j == col and abs(a - b) == 2:
                    expected[i] += kappa * np.mod(p[j], 2 * np.pi)
        assert max_err(getattr(noisy, leaf), expected) < 1e-12
    assert np.array_equal(noisy.output_phases, m.output_phases)
    assert np.sum(np.asarray(noisy.theta) != np.asarray(m.theta)) >= 20  # most MZIs have neighbours


def test_gain_and_phase_noise_statistics(getkey):
    """40 draws of the 56 phase shifters: sample means and standard deviations of the errors."""
    m = ref_mesh("clements")
    p = np.concatenate([m.theta, m.phi])
    with B.precision("float64"):
        gain, noise = photonic.Noise(gain_std=0.05), photonic.Noise(phase_std=0.02)
        draw = lambda n: np.concatenate([np.concatenate([x.theta, x.phi]) for x in (
            photonic.perturb(m, n, key=getkey()) for _ in range(40))])
        ratio = (draw(gain) - np.tile(p, 40)) / np.tile(np.mod(p, 2 * np.pi), 40)
        delta = draw(noise) - np.tile(p, 40)
    for x, std in ((ratio, 0.05), (delta, 0.02)):
        assert abs(x.mean()) < 4 * std / np.sqrt(x.size)
        assert x.std() == pytest.approx(std, rel=0.1)  # 10% is 6 standard errors for 2240 samples


def test_dac_quantisation(getkey):
    bits = 4
    step = 2 * np.pi / 2**bits
    m = ref_mesh("clements")
    with B.precision("float64"):
        q = photonic.perturb(m, photonic.Noise(bits=bits), key=getkey())
        for leaf in ("theta", "phi", "output_phases"):
            x, x0 = np.asarray(getattr(q, leaf)), np.asarray(getattr(m, leaf))
            assert np.all((x >= 0) & (x < 2 * np.pi))
            assert np.abs(x / step - np.round(x / step)).max() < 1e-9  # on the DAC grid
            assert angle_err(x, x0).max() <= step / 2 + 1e-12  # the nearest level, wrapping
        f4 = float(photonic.fidelity(U_REF, photonic.reconstruct(q)))
        # The DAC passes gradients straight through (sciml.backend.fake_quantize).
        dac = lambda th: photonic.perturb(eqx.tree_at(lambda m: m.theta, m, th), photonic.Noise(bits=bits),
                                          key=getkey()).theta.sum()
        assert np.array_equal(jax.jit(jax.grad(dac))(m.theta), np.ones(m.num_mzi))
    assert 0.5 < f4 < 0.999  # 4 bits: rounding errors up to pi/16 on all 64 phases


# --------------------------------------------------------------------------------------------------
# Transformations: jit without retracing, vmap over keys, grad against finite differences
# --------------------------------------------------------------------------------------------------


def test_jit_no_recompile(getkey):
    u = haar(8, 11)
    m = photonic.decompose(u)
    target = jnp.asarray(u, jnp.complex64)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def noisy_fidelity(mesh, noise, key):
        return photonic.fidelity(target, photonic.reconstruct(photonic.perturb(mesh, noise, key=key)))

    key = getkey()
    f1 = noisy_fidelity(m, photonic.Noise(phase_std=0.01), key)
    f2 = noisy_fidelity(m, photonic.Noise(phase_std=0.05, gain_std=0.01, crosstalk=0.02, loss_db=0.1), key)
    f3 = noisy_fidelity(m, photonic.Noise(phase_std=0.01), getkey())
    assert 1 > float(f1) > float(f2) > 0.9  # new levels, same trace (assert_max_traces)
    assert float(f3) != float(f1)  # a new key, a new draw, same trace


def test_grad_matches_finite_differences(getkey):
    """Directional derivative of 1 - F through perturb and reconstruct vs central differences."""
    m = ref_mesh("clements")
    key = getkey()
    with B.precision("float64"):
        target = jnp.asarray(haar(8, 13))
        noise = photonic.Noise(phase_std=0.01, gain_std=0.01, crosstalk=0.02, loss_db=0.3)

        def loss(mesh, noise):
            return 1 - photonic.fidelity(target, photonic.reconstruct(photonic.perturb(mesh, noise, key=key)))

        grad_fn = eqx.filter_jit(eqx.filter_grad(loss))
        grad = grad_fn(m, noise)
        rng = np.random.default_rng(0)
        direction = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape)), m)
        direction = eqx.tree_at(lambda d: d.transmission, direction, jnp.zeros(m.num_mzi))
        along = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
        h = 1e-6
        step = lambda s: jax.tree.map(lambda x, d: x + s * d, m, direction)
        fd = (float(loss(step(h), noise)) - float(loss(step(-h), noise))) / (2 * h)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))
    assert abs(along) > 1e-3
    assert along == pytest.approx(fd, rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Errors at the boundary
# --------------------------------------------------------------------------------------------------


def test_bad_input(getkey):
    u = haar(4, 16)
    bad = u.copy()
    bad[0, 0] += 0.1
    dev = np.linalg.norm(bad.conj().T @ bad - np.eye(4))
    with pytest.raises(ValueError, match=rf"U\^H U - I\|\|_F = {dev:.3g}"):
        photonic.decompose(bad)
    with pytest.raises(ValueError, match="square"):
        photonic.decompose(np.ones((3, 4)))
    with pytest.raises(ValueError, match="2-D"):
        photonic.decompose(np.ones(3))
    nan = u.copy()
    nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        photonic.decompose(nan)
    with pytest.raises(ValueError, match=r"`mesh` must be one of \['clements', 'reck'\]"):
        photonic.decompose(u, mesh="butterfly")
    with pytest.raises(ValueError, match="`mesh`"):
        photonic.svd_mesh(np.ones((2, 3)), mesh=3)
    with pytest.raises(ValueError, match="real=True"):
        photonic.decompose(u, real=True)
    with pytest.raises(ValueError, match="`W` must be real"):
        photonic.svd_mesh(u, real=True)
    with pytest.raises(TypeError, match="`real`"):
        photonic.decompose(u, real="yes")
    with pytest.raises(TypeError, match="numeric"):
        photonic.decompose(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(TypeError, match="outside jax.jit"):
        jax.jit(photonic.decompose)(jnp.eye(2))
    with pytest.raises(ValueError, match="`atol`"):
        photonic.decompose(u, atol=-1.0)

    for name in ("phase_std", "gain_std", "crosstalk", "loss_db"):
        with pytest.raises(ValueError, match=f"`{name}` must be a finite number >= 0"):
            photonic.Noise(**{name: -0.1})
    with pytest.raises(ValueError, match="`crosstalk`"):
        photonic.Noise(crosstalk=float("nan"))
    with pytest.raises(ValueError, match="`phase_std` must be a real scalar"):
        photonic.Noise(phase_std=np.array([0.1, 0.2]))
    for bits in (0, 1, 17):
        with pytest.raises(ValueError, match=r"`bits` must be None \(no DAC\) or an int in \[2, 16\]"):
            photonic.Noise(bits=bits)
    with pytest.raises(TypeError, match="`bits`"):
        photonic.Noise(bits=4.0)

    m = photonic.decompose(u)
    with pytest.raises(TypeError, match="`noise`"):
        photonic.perturb(m, 0.1, key=getkey())
    with pytest.raises(TypeError, match="`mesh`"):
        photonic.perturb(u, photonic.Noise(), key=getkey())
    with pytest.raises(TypeError, match="`key`"):
        photonic.perturb(m, photonic.Noise(), key=3)
    with pytest.raises(TypeError, match="`mesh`"):
        photonic.reconstruct(u)
    with pytest.raises(TypeError, match="`svd`"):
        photonic.reconstruct_matrix(m)
    with pytest.raises(ValueError, match="same size"):
        photonic.fidelity(jnp.eye(3), jnp.eye(4))
    with pytest.raises(ValueError, match="square"):
        photonic.fidelity(jnp.eye(3), jnp.ones((3, 4)))
    with pytest.raises(TypeError, match="`theta`"):
        photonic.mzi_transfer(jnp.arange(3), jnp.zeros(3))


def test_mesh_layout_is_checked():
    z = jnp.zeros(2)
    ok = dict(theta=z, phi=z, output_phases=jnp.zeros(3), transmission=jnp.ones(2), n=3)
    photonic.MZIMesh(**ok, modes=((0, 1), (1, 2)), columns=(0, 1))
    with pytest.raises(ValueError, match="`columns\\[1\\]` = 0 must be later"):
        photonic.MZIMesh(**ok, modes=((0, 1), (1, 2)), columns=(0, 0))
    with pytest.raises(ValueError, match="`modes\\[1\\]` must be a pair of adjacent modes"):
        photonic.MZIMesh(**ok, modes=((0, 1), (0, 2)), columns=(0, 1))
    with pytest.raises(ValueError, match="`theta` must have last dimension 2"):
        photonic.MZIMesh(**{**ok, "theta": jnp.zeros(3)}, modes=((0, 1), (1, 2)), columns=(0, 1))
    with pytest.raises(TypeError, match="`phi` must have the dtype"):
        photonic.MZIMesh(**{**ok, "phi": jnp.zeros(2, jnp.float16)}, modes=((0, 1), (1, 2)),
                         columns=(0, 1))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_leaves_reconstruct_in_complex64(dtype):
    """`decompose(dtype=...)` accepts float16/bfloat16; `lax.complex` takes only float32/float64 parts,
    so the phasors are widened (B.complex_dtype maps half precision to complex64)."""
    u = haar(3, 21)
    m = photonic.decompose(u, dtype=dtype)
    assert m.theta.dtype == dtype
    rec = photonic.reconstruct(m)
    assert rec.dtype == np.complex64
    assert max_err(rec, u) < 3e-2  # bfloat16 phases: 8 significant bits
    assert photonic.mzi_transfer(jnp.zeros(2, dtype), jnp.zeros(2, dtype)).dtype == np.complex64


def test_batched_mesh_and_batch_mismatch_are_named(getkey):
    """A mesh with batch dimensions (MZIMesh admits them, for vmap's inputs) and fidelities whose batch
    dimensions do not broadcast: clear errors, not a failing JAX primitive."""
    m = photonic.decompose(np.eye(3))
    keys = jax.random.split(getkey(), 2)
    batch = jax.vmap(lambda k: photonic.perturb(m, photonic.Noise(phase_std=0.1), key=k))(keys)
    assert jax.vmap(photonic.reconstruct)(batch).shape == (2, 3, 3)
    with pytest.raises(ValueError, match=r"`mesh.theta` has shape \(2, 3\), a batch of meshes"):
        photonic.reconstruct(batch)
    with pytest.raises(ValueError, match="`mesh.theta` has shape"):
        photonic.perturb(batch, photonic.Noise(), key=getkey())
    with pytest.raises(ValueError, match="batch dimensions of `U` and `U_n` must broadcast"):
        photonic.fidelity(jnp.zeros((2, 3, 3)), jnp.zeros((4, 3, 3)))
