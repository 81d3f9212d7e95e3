"""sciml.ct: geometries, the Joseph projector and its exact adjoint, phantoms with exact projections.

References: the adjoint identity <A x, y> = <x, A^T y>; exact line integrals of ellipses (closed
form, independent of any discretisation); ASTRA's CPU projectors and scikit-image's radon (peers).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sciml
from sciml import ct

PAR = np.linspace(0, np.pi, 30, endpoint=False)
FULL = np.linspace(0, 2 * np.pi, 30, endpoint=False)


def geometries():
    return {
        "parallel": ct.parallel_beam(PAR, 48, (32, 32)),
        "parallel-rect": ct.parallel_beam(PAR, 40, (24, 36), detector_spacing=0.8, pixel_size=1.3),
        "strip": ct.parallel_beam(PAR, 48, (24, 36), detector_spacing=0.7, pixel_size=1.3,
                                  detector_offset=0.3, projector="strip"),
        "fan": ct.fan_beam(FULL, 64, (32, 32), source_origin=64.0, origin_detector=32.0),
        "cone": ct.cone_beam(FULL[::3], (20, 64), (16, 32, 32), source_origin=64.0,
                             origin_detector=32.0),
    }


def rel(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


@pytest.mark.parametrize("name", ["parallel", "parallel-rect", "strip", "fan", "cone"])
def test_backproject_is_exact_adjoint(name, getkey):
    g = geometries()[name]
    x = jax.random.normal(getkey(), g.image_shape)
    y = jax.random.normal(getkey(), g.sinogram_shape)
    lhs = jnp.vdot(ct.project(x, g), y)
    rhs = jnp.vdot(x, ct.backproject(y, g))
    assert abs(float(lhs - rhs)) <= 1e-5 * abs(float(lhs))


@pytest.mark.parametrize("name", ["strip", "fan"])
def test_data_dtype_sets_the_projector_dtype(name):
    # a geometry built at the default float32 with float64 data (and the reverse): the rays are
    # computed in the data's dtype, so the pair stays exactly adjoint and nothing is down- or upcast
    g = geometries()[name]
    rng = np.random.default_rng(0)
    with sciml.backend.precision("float64"):
        x = jnp.asarray(rng.standard_normal(g.image_shape))
        y = jnp.asarray(rng.standard_normal(g.sinogram_shape))
        ax, aty = ct.project(x, g), ct.backproject(y, g)
        assert ax.dtype == aty.dtype == ct.reconstruct(ax, g, "fbp").image.dtype == jnp.float64
        assert abs(float(jnp.vdot(ax, y) - jnp.vdot(x, aty))) <= 1e-12 * abs(float(jnp.vdot(ax, y)))
        g64 = ct.parallel_beam(PAR, 40, (24, 36), detector_offset=0.3)
    y32 = ct.project(jnp.ones(g64.image_shape), g64)
    assert y32.dtype == ct.reconstruct(y32, g64, "fbp").image.dtype == jnp.float32


def test_unit_square_central_rays():
    g = ct.parallel_beam(np.array([0.0, np.pi / 2, np.pi / 4]), 9, (5, 5), pixel_size=2.0,
                         detector_spacing=2.0)
    s = ct.project(jnp.ones((5, 5)), g)
    # central ray crosses 5 pixels of size 2 at 0 and 90 degrees, and the diagonal 10 sqrt 2 at 45
    assert float(s[0, 4]) == pytest.approx(10.0, rel=1e-6)
    assert float(s[1, 4]) == pytest.approx(10.0, rel=1e-6)
    assert float(s[2, 4]) == pytest.approx(10 * np.sqrt(2), rel=2e-2)


def test_strip_weights_are_pixel_strip_areas():
    """Closed forms: a pixel's strip weights are its intersection areas with the bins' strips over
    the bin width -- a box at 0 degrees, a triangle at 45 degrees -- and sum to the pixel's area."""
    g = ct.parallel_beam(np.array([0.0, np.pi / 4, 0.3]), 9, (1, 1), projector="strip")
    s = np.asarray(ct.project(jnp.ones((1, 1)), g))
    np.testing.assert_allclose(s[0], np.eye(9)[4], atol=1e-7)  # the pixel fills bin 4 exactly
    # 45 degrees: footprint a triangle on [-1/sqrt2, 1/sqrt2]; bin 4 = [-1/2, 1/2] holds
    # 1 - 2 * (1/sqrt2 - 1/2)^2 (two corner triangles of the unit-mass triangle cut off)
    side = (1 / np.sqrt(2) - 0.5) ** 2
    np.testing.assert_allclose(s[1, 3:6], [side, 1 - 2 * side, side], rtol=1e-5)
    np.testing.assert_allclose(s.sum(1), 1.0, rtol=1e-6)  # area / bin width, all mass on the detector
    # a constant image: the central bin is the chord length through the image, at any angle
    g = ct.parallel_beam(np.array([0.0, 0.3, 2.0]), 24, (8, 8), projector="strip")
    central = np.asarray(ct.project(jnp.ones((8, 8)), g))[:, 11:13].mean(1)
    np.testing.assert_allclose(central, 8 / np.maximum(np.abs(np.cos([0.0, 0.3, 2.0])),
                                                        np.abs(np.sin([0.0, 0.3, 2.0]))), rtol=1e-5)


def test_orientation_follows_astra_convention():
    # one bright pixel at row 2, col 12 of 16x16: x = 4.5, y = 5.5; u = x cos + y sin
    img = jnp.zeros((16, 16)).at[2, 12].set(1.0)
    g = ct.parallel_beam(np.array([0.0, np.pi / 2]), 24, (16, 16))
    s = np.asarray(ct.project(img, g))
    assert s[0].argmax() == 16 and s[1].argmax() == 17  # u = 4.5 and 5.5 -> bins 16, 17


@pytest.mark.parametrize("name", ["parallel", "fan", "cone"])
def test_discrete_projection_converges_to_exact_ellipse_integrals(name):
    # Joseph's projection of a rasterised phantom -> the analytic line integrals, error O(pixel)
    def err(n):
        if name == "parallel":
            g = ct.parallel_beam(PAR, int(1.5 * n), (n, n))
        elif name == "fan":
            g = ct.fan_beam(FULL, 2 * n, (n, n), source_origin=2.0 * n, origin_detector=1.0 * n)
        else:
            g = ct.cone_beam(FULL[::3], (n, 2 * n), (n, n, n), source_origin=2.0 * n,
                             origin_detector=1.0 * n)
        ph = ct.shepp_logan(g.ndim)
        return rel(ct.project(ph.image(g.image_shape, supersample=2), g), ph.project(g))

    small, big = (16, 32) if name == "cone" else (32, 64)
    e1, e2 = err(small), err(big)
    assert e2 < 0.12 if name == "cone" else e2 < 0.07
    assert e2 < 0.75 * e1  # halving the pixel shrinks the error


def test_disc_chord_lengths():
    # a centred disc of radius R: p(u) = 2 sqrt(R^2 - u^2) at every angle
    disc = ct.Ellipsoids(intensity=jnp.ones(1), centre=jnp.zeros((1, 2)), axes=jnp.full((1, 2), 0.5),
                         rotation=jnp.eye(2)[None])
    g = ct.parallel_beam(PAR, 64, (64, 64))
    r = 0.5 * g.fov_radius
    u = (np.arange(64) - 31.5)
    exact = 2 * np.sqrt(np.clip(r * r - u * u, 0, None))
    np.testing.assert_allclose(np.asarray(disc.project(g)), np.broadcast_to(exact, (30, 64)),
                               atol=1e-3)


def test_cone_central_row_is_fan_beam_of_central_slice(getkey):
    vol = jax.random.uniform(getkey(), (9, 32, 32))
    gc = ct.cone_beam(FULL, (9, 64), (9, 32, 32), source_origin=64.0, origin_detector=32.0)
    gf = ct.fan_beam(FULL, 64, (32, 32), source_origin=64.0, origin_detector=32.0)
    assert rel(ct.project(vol, gc)[:, 4], ct.project(vol[4], gf)) < 1e-5


def test_fan_tends_to_parallel_for_distant_source(getkey):
    img = ct.shepp_logan().image((32, 32))
    gp = ct.parallel_beam(PAR, 48, (32, 32))
    gf = ct.fan_beam(PAR, 48, (32, 32), source_origin=1e5, origin_detector=1.0)
    assert rel(ct.project(img, gf), ct.project(img, gp)) < 1e-3


def test_batched_jit_and_grad(getkey):
    g = geometries()["parallel"]
    xs = jax.random.normal(getkey(), (3, *g.image_shape))
    batched = jax.jit(ct.project)(xs, g)
    assert batched.shape == (3, *g.sinogram_shape)
    assert rel(batched[1], ct.project(xs[1], g)) < 1e-6
    assert ct.backproject(batched, g).shape == xs.shape
    # grad of the data misfit is the back-projected residual, 2 A^T (A x - y)
    y = jax.random.normal(getkey(), g.sinogram_shape)
    grad = jax.grad(lambda x: jnp.sum((ct.project(x, g) - y) ** 2))(xs[0])
    assert rel(grad, 2 * ct.backproject(ct.project(xs[0], g) - y, g)) < 1e-5


def test_new_angles_and_distances_do_not_recompile(getkey):
    f = eqx.debug.assert_max_traces(ct.project, max_traces=1)
    f = jax.jit(f)
    x = jax.random.normal(getkey(), (32, 32))
    for sod in (64.0, 80.0, 100.0):
        g = ct.fan_beam(FULL + 0.1 * sod, 64, (32, 32), source_origin=sod, origin_detector=32.0)
        f(x, g)


@pytest.mark.parametrize("n", [63, 127])
def test_parallel_agrees_with_skimage_radon(n):
    skimage_transform = pytest.importorskip("skimage.transform")
    # odd sizes: scikit-image rotates about pixel n // 2, which is our centre (n - 1) / 2 then
    img = np.array(ct.shepp_logan().image((n, n)))  # writable: skimage needs it
    angles = np.linspace(0, np.pi, 60, endpoint=False)
    ref = skimage_transform.radon(img, np.degrees(angles), circle=True).T
    assert rel(ct.project(img, ct.parallel_beam(angles, n, (n, n))), ref) < 0.02


def test_agrees_with_astra_cpu_projectors():
    astra = pytest.importorskip("astra")
    n = 64
    img = np.asarray(ct.shepp_logan().image((n, n)), np.float32)
    vol = astra.create_vol_geom(n, n)

    def astra_fp(proj_geom, kind):
        pid = astra.create_projector(kind, proj_geom, vol)
        sid, sino = astra.create_sino(img, pid)
        astra.data2d.delete(sid)
        astra.projector.delete(pid)
        return sino

    angles = np.linspace(0, np.pi, 60, endpoint=False)
    ours = ct.project(img, ct.parallel_beam(angles, 92, (n, n), detector_spacing=1.0))
    # ASTRA's "linear" is Joseph's method too: the same operator up to float rounding
    assert rel(ours, astra_fp(astra.create_proj_geom("parallel", 1.0, 92, angles), "linear")) < 1e-4
    assert rel(ours, astra_fp(astra.create_proj_geom("parallel", 1.0, 92, angles), "strip")) < 0.02
    # projector="strip" is ASTRA's 'strip' (pixel-strip areas): the same operator, odd spacing too
    for spacing, det in ((1.0, 92), (0.7, 132), (1.6, 58)):
        ours = ct.project(img, ct.parallel_beam(angles, det, (n, n), detector_spacing=spacing,
                                                projector="strip"))
        ref = astra_fp(astra.create_proj_geom("parallel", spacing, det, angles), "strip")
        assert rel(ours, ref) < 1e-5
    fan_angles = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    ours = ct.project(img, ct.fan_beam(fan_angles, 128, (n, n), source_origin=128.0,
                                       origin_detector=64.0))
    ref = astra_fp(astra.create_proj_geom("fanflat", 1.0, 128, fan_angles, 128.0, 64.0),
                   "strip_fanflat")
    assert rel(ours, ref) < 0.02


def test_bad_input_is_named():
    g = ct.parallel_beam(PAR, 48, (32, 32))
    with pytest.raises(ValueError, match="`image` must have shape"):
        ct.project(jnp.zeros((32, 31)), g)
    with pytest.raises(ValueError, match="`sinogram` must have shape"):
        ct.backproject(jnp.zeros((29, 48)), g)
    with pytest.raises(TypeError, match="`image` must be a real floating"):
        ct.project(jnp.zeros((32, 32), jnp.int32), g)
    with pytest.raises(TypeError, match="`geometry`"):
        ct.project(jnp.zeros((32, 32)), "parallel")
    with pytest.raises(ValueError, match="`angles` must be finite"):
        ct.parallel_beam(np.array([0.0, np.nan]), 48, (32, 32))
    with pytest.raises(ValueError, match="too small to cover"):
        ct.parallel_beam(PAR, 20, (32, 32))
    with pytest.raises(ValueError, match="`projector` must be one of"):
        ct.parallel_beam(PAR, 48, (32, 32), projector="linear")
    with pytest.raises(ValueError, match="too small to cover"):
        ct.fan_beam(FULL, 40, (32, 32), source_origin=64.0, origin_detector=32.0)
    with pytest.raises(ValueError, match="`source_origin`"):
        ct.fan_beam(FULL, 64, (32, 32), source_origin=-5.0, origin_detector=32.0)
    with pytest.raises(ValueError, match="inside the image"):
        ct.fan_beam(FULL, 64, (32, 32), source_origin=20.0, origin_detector=32.0)
    with pytest.raises(ValueError, match="`origin_detector`"):
        ct.fan_beam(FULL, 64, (32, 32), source_origin=64.0, origin_detector=0.0)
    with pytest.raises(ValueError, match="`pixel_size`"):
        ct.parallel_beam(PAR, 48, (32, 32), pixel_size=0)
    with pytest.raises(ValueError, match="`image_shape`"):
        ct.parallel_beam(PAR, 48, (32, 0))
    with pytest.raises(ValueError, match="cone is too wide"):
        ct.cone_beam(FULL, (200, 64), (16, 32, 32), source_origin=64.0, origin_detector=32.0)
    with pytest.raises(ValueError, match="3D geometry"):
        ct.shepp_logan(3).project(g)


def psnr(x, ref):
    ref = np.asarray(ref)
    return 10 * np.log10(np.ptp(ref) ** 2 / float(np.mean((np.asarray(x) - ref) ** 2)))


@pytest.mark.parametrize("filt", ["ramp", "hann"])
def test_fbp_recovers_shepp_logan_from_exact_data(filt):
    # exact line integrals (no inverse crime); the mean is preserved and the PSNR is high
    n = 64
    ph = ct.shepp_logan()
    truth = ph.image((n, n))
    g = ct.parallel_beam(np.linspace(0, np.pi, 120, endpoint=False), 92, (n, n))
    rec = ct.reconstruct(ph.project(g), g, ct.FBP(filter=filt))
    assert float(rec.image.mean()) == pytest.approx(float(truth.mean()), rel=0.01)
    assert psnr(rec.image, truth) > (26 if filt == "ramp" else 21)  # measured 27.0 / 22.2


@pytest.mark.slow  # 15 s; fan/cone projectors and FBP are covered by the other default tests
def test_fbp_fan_and_fdk_scale():
    n = 32
    ph = ct.shepp_logan()
    gf = ct.fan_beam(np.linspace(0, 2 * np.pi, 90, endpoint=False), 64, (n, n), source_origin=64.0,
                     origin_detector=32.0)
    rec = ct.reconstruct(ph.project(gf), gf, "fbp")
    truth = ph.image((n, n))
    assert float(rec.image.mean()) == pytest.approx(float(truth.mean()), rel=0.04)  # 2.4% at 32^2
    assert psnr(rec.image, truth) > 20
    ph3 = ct.shepp_logan(3)
    g3 = ct.cone_beam(np.linspace(0, 2 * np.pi, 30, endpoint=False), (24, 48), (16, 24, 24),
                      source_origin=48.0, origin_detector=24.0)
    rec3 = ct.reconstruct(ph3.project(g3), g3, "fdk")
    truth3 = ph3.image((16, 24, 24))
    # FDK is approximate off the mid-plane; measured 6.4% low on this 16x24x24 grid
    assert float(rec3.image.mean()) == pytest.approx(float(truth3.mean()), rel=0.1)


@pytest.mark.parametrize("method", [ct.CGLS(30), ct.SIRT(100), ct.TV(0.3, iterations=100)])
def test_iterative_methods_fit_the_data(method):
    n = 32
    ph = ct.shepp_logan()
    g = ct.parallel_beam(np.linspace(0, np.pi, 45, endpoint=False), 48, (n, n))
    y = ph.project(g)
    rec = jax.jit(lambda y, g: ct.reconstruct(y, g, method))(y, g)
    assert int(rec.iterations) == method.iterations
    assert float(rec.residual) < 0.1  # measured 0.03 (CGLS), 0.079 (SIRT), 0.034 (TV)
    assert psnr(rec.image, ph.image((n, n))) > 15  # a wrong scale or sign gives < 5


def test_cgls_solves_consistent_system(getkey):
    # y = A x_true in the range of A: CGLS drives the normal-equation residual to ~0
    g = ct.parallel_beam(np.linspace(0, np.pi, 40, endpoint=False), 24, (16, 16))
    x = jax.random.uniform(getkey(), (16, 16))
    rec = ct.reconstruct(ct.project(x, g), g, ct.CGLS(iterations=300, tol=1e-4))
    assert float(rec.residual) < 3e-3
    assert int(rec.iterations) < 300


def _tv_objective(x, y, g, weight):
    from sciml.ct._reconstruct import _gradient

    tv = jnp.sum(jnp.linalg.norm(_gradient(x), axis=0))
    return 0.5 * jnp.sum((ct.project(x, g) - y) ** 2) + weight * tv


def test_tv_reaches_the_minimum(getkey):
    # First-order optimality checked from outside PDHG: no feasible perturbation lowers the
    # objective 1/2||Ax - y||^2 + w TV(x) (x >= 0), and PDHG's answer beats L-BFGS-B on it.
    n, w = 12, 0.5
    g = ct.parallel_beam(np.linspace(0, np.pi, 10, endpoint=False), 18, (n, n))
    y = ct.project(ct.shepp_logan().image((n, n)), g) + 0.05 * jax.random.normal(getkey(), g.sinogram_shape)
    x = ct.reconstruct(y, g, ct.TV(w, iterations=1500)).image
    f0 = float(_tv_objective(x, y, g, w))
    for eps in (1e-2, 1e-3):
        for _ in range(5):
            z = jnp.maximum(x + eps * jax.random.normal(getkey(), x.shape), 0.0)
            assert float(_tv_objective(z, y, g, w)) >= f0 - 1e-4 * abs(f0)
    import scipy.optimize

    from sciml.ct._reconstruct import _gradient

    def smoothed(v):  # TV with |.| -> sqrt(|.|^2 + 1e-12): within w * n^2 * 1e-6 of the objective
        v = v.reshape(n, n)
        tv = jnp.sum(jnp.sqrt(jnp.sum(_gradient(v) ** 2, axis=0) + 1e-12))
        return 0.5 * jnp.sum((ct.project(v, g) - y) ** 2) + w * tv

    smooth = jax.jit(jax.value_and_grad(smoothed))
    def fun(v):
        return [np.asarray(a, np.float64) for a in smooth(jnp.asarray(v, jnp.float32))]

    res = scipy.optimize.minimize(fun, np.zeros(n * n), jac=True, method="L-BFGS-B",
                                  bounds=[(0, None)] * n * n, options={"maxiter": 5000})
    assert f0 <= res.fun * (1 + 1e-3)


@pytest.mark.slow  # 11 s; test_tv_reaches_the_minimum checks the solver against L-BFGS-B
def test_tv_limits():
    # weight 0, no constraint: least squares, here the phantom itself (consistent, determined system)
    g = ct.parallel_beam(np.linspace(0, np.pi, 40, endpoint=False), 24, (16, 16))
    x = ct.shepp_logan().image((16, 16))
    y = ct.project(x, g)
    rec = ct.reconstruct(y, g, ct.TV(0.0, iterations=800, nonneg=False))
    assert float(jnp.linalg.norm(rec.image - x) / jnp.linalg.norm(x)) < 0.02
    # along the regularisation path the minimiser's TV falls and its data misfit rises
    from sciml.ct._reconstruct import _gradient

    tvs, fits = [], []
    run = eqx.filter_jit(ct.reconstruct)  # the weight is an array leaf: one compilation for all three
    for w in (0.1, 1.0, 10.0):
        rec = run(y, g, ct.TV(w, iterations=400))
        tvs.append(float(jnp.sum(jnp.linalg.norm(_gradient(rec.image), axis=0))))
        fits.append(float(rec.residual))
    assert tvs[0] > tvs[1] > tvs[2] and fits[0] < fits[1] < fits[2]


def test_reconstruct_bad_input():
    g = ct.parallel_beam(PAR, 48, (32, 32))
    with pytest.raises(ValueError, match="one of"):
        ct.reconstruct(jnp.zeros(g.sinogram_shape), g, "art")
    with pytest.raises(ValueError, match="NaN"):
        ct.reconstruct(jnp.full(g.sinogram_shape, jnp.nan), g)
    with pytest.raises(ValueError, match="`sinogram` must have shape"):
        ct.reconstruct(jnp.zeros((30, 47)), g)
    with pytest.raises(ValueError, match="`filter`"):
        ct.FBP(filter="butterworth")
    with pytest.raises(ValueError, match="`iterations`"):
        ct.CGLS(iterations=0)
    with pytest.raises(ValueError, match="`weight`"):
        ct.TV(weight=-1.0)
