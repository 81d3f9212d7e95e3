"""sciml.ct data: textured phantoms, simulated measurements, DICOM slices, projection files.

References: the noise models' own moments (Gaussian std; the delta-method variance e^{mu p}/(I0 mu^2)
of Poisson log-data); the phantoms' exact line integrals; pydicom's modality LUT as the peer for the
HU conversion.
"""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import ct

PAR = np.linspace(0, np.pi, 24, endpoint=False)
FULL = np.linspace(0, 2 * np.pi, 24, endpoint=False)


def rel(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


def laplacian(x):
    x = np.asarray(x, np.float64)
    return 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]


def flat_interior(img, width=5):
    """Pixels (without the border row/column) whose width x width neighbourhood is constant and > 0."""
    win = np.lib.stride_tricks.sliding_window_view(np.pad(np.asarray(img), width // 2, mode="edge"),
                                                   (width, width))
    flat = (win.max(axis=(-2, -1)) == win.min(axis=(-2, -1))) & (np.asarray(img) > 0)
    return flat[1:-1, 1:-1]


# --------------------------------------------------------------------------------------------------
# Phantoms and grids
# --------------------------------------------------------------------------------------------------

@eqx.debug.assert_max_traces(max_traces=1)
def _batch(keys):
    return jax.vmap(lambda k: ct.textured_phantom(k, (64, 64)))(keys)


@pytest.mark.slow  # 13 s; the sparse-view task tests draw textured phantoms too
def test_textured_phantom_seeded_nonnegative_batched(getkey):
    keys = jax.random.split(getkey(), 2)
    batch = jax.jit(_batch)(keys)
    again = jax.jit(_batch)(keys)  # same keys, same images, no retrace
    assert batch.shape == (2, 64, 64) and batch.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(batch), np.asarray(again))
    np.testing.assert_allclose(np.asarray(batch[1]), np.asarray(ct.textured_phantom(keys[1], (64, 64))),
                               atol=1e-5)
    assert float(batch.min()) >= 0.0
    assert float(jnp.abs(batch[0] - batch[1]).max()) > 0.1  # different keys, different phantoms
    # outside the unit disc (the field of view) the phantom is empty
    r = np.hypot(*np.meshgrid(np.arange(64) - 31.5, np.arange(64) - 31.5, indexing="ij"))
    assert float(jnp.abs(batch[:, r > 32]).max()) == 0.0


def test_texture_is_band_limited_noise_of_the_stated_amplitude(getkey):
    key = getkey()
    geometry_key = jax.random.split(key, 3)[0]
    plain = ct.random_ellipses(geometry_key).image((64, 64), supersample=2)
    # without shading and texture it is exactly the random_ellipses phantom (clipped at 0)
    bare = ct.textured_phantom(key, (64, 64), texture=0.0, smooth=0.0)
    np.testing.assert_allclose(np.asarray(bare), np.maximum(np.asarray(plain), 0.0), atol=1e-6)
    shaded = ct.textured_phantom(key, (64, 64), texture=0.0)
    textured = ct.textured_phantom(key, (64, 64), texture=0.08)
    sigma = 0.08 * float(ct.random_ellipses(geometry_key).intensity[0])  # texture * body intensity
    flat = flat_interior(plain)
    assert flat.sum() > 200
    # texture std as stated, measured where the ellipses are flat
    diff = np.asarray(textured - shaded)[1:-1, 1:-1]
    assert abs(diff[flat].std() / sigma - 1) < 0.25, diff[flat].std() / sigma
    # high frequencies (the discrete Laplacian) inside flat regions: none in the plain phantom, next
    # to none from the smooth shading, of the order of the texture std from the texture
    hf = [float(np.sqrt(np.mean(laplacian(a)[flat] ** 2))) / sigma for a in (plain, shaded, textured)]
    assert hf[0] == 0.0 and hf[1] < 0.02 and hf[2] > 0.5, hf


def test_textured_phantom_3d_and_bad_input(getkey):
    vol = ct.textured_phantom(getkey(), (8, 16, 16), count=3)
    assert vol.shape == (8, 16, 16) and float(vol.min()) >= 0.0 and float(vol.max()) > 0.3
    for kwargs, name in [({"texture": -0.1}, "texture"), ({"smooth": 1.0}, "smooth"),
                         ({"correlation": 0.0}, "correlation"), ({"count": 0}, "count"),
                         ({"supersample": 0}, "supersample")]:
        with pytest.raises(ValueError, match=name):
            ct.textured_phantom(getkey(), (16, 16), **kwargs)
    with pytest.raises(ValueError, match="shape"):
        ct.textured_phantom(getkey(), (16,))


def test_downsample_and_refine():
    x = jnp.arange(36.0).reshape(6, 6)
    np.testing.assert_allclose(np.asarray(ct.downsample(x, 3)), [[7.0, 10.0], [25.0, 28.0]])
    v = jnp.ones((4, 4, 4))
    assert ct.downsample(v, 2).shape == (2, 2, 2)
    with pytest.raises(ValueError, match="factor"):
        ct.downsample(x, 4)
    with pytest.raises(ValueError, match="factor"):
        ct.downsample(x, 0)
    for g in [ct.parallel_beam(PAR, 48, (32, 32)),
              ct.fan_beam(FULL, 64, (32, 32), source_origin=64.0, origin_detector=32.0),
              ct.cone_beam(FULL, (12, 64), (8, 32, 32), source_origin=64.0, origin_detector=32.0)]:
        f = ct.refine(g, 2)
        assert type(f) is type(g) and f.sinogram_shape == g.sinogram_shape
        assert f.image_shape == tuple(2 * s for s in g.image_shape)
        assert f.fov_radius == pytest.approx(g.fov_radius) and float(f.voxel) == 0.5 * float(g.voxel)
    with pytest.raises(ValueError, match="factor"):
        ct.refine(g, 1.5)


# --------------------------------------------------------------------------------------------------
# Simulated measurements
# --------------------------------------------------------------------------------------------------

def test_fine_grid_simulation_avoids_the_inverse_crime(getkey):
    g = ct.parallel_beam(PAR, 48, (32, 32))
    ph = ct.random_ellipses(getkey())
    exact = ph.project(g)
    fine = ph.image((64, 64), supersample=2)
    y = ct.simulate(fine, g, key=None, noise=None)  # 64 -> 128 grid, refine(g, 4)
    coarse = ct.project(ct.downsample(fine, 2), g)  # the reconstruction's own model
    assert rel(y, exact) < 0.04
    assert rel(y, exact) < rel(coarse, exact)  # closer to the truth than the discrete model ...
    assert rel(y, coarse) > 0.01  # ... and not the same data
    # upsample=1 on the reconstruction grid is the inverse crime, on request
    np.testing.assert_allclose(np.asarray(ct.simulate(ct.downsample(fine, 2), g, key=None, noise=None,
                                                      upsample=1)), np.asarray(coarse), atol=1e-5)
    # a phantom is projected exactly
    np.testing.assert_allclose(np.asarray(ct.simulate(ph, g, key=None, noise=None)), np.asarray(exact))


def test_gaussian_noise_std(getkey):
    g = ct.parallel_beam(PAR, 24, (16, 16))
    ph = ct.random_ellipses(getkey(), count=4)
    clean = ph.project(g)
    keys = jax.random.split(getkey(), 64)
    ys = jax.jit(jax.vmap(lambda k: ct.simulate(ph, g, key=k, sigma=0.02)))(keys)
    ratio = float(jnp.std(ys - clean)) / (0.02 * float(jnp.abs(clean).max()))
    assert abs(ratio - 1) < 0.05, ratio
    assert abs(float(jnp.mean(ys - clean))) < 0.05 * 0.02 * float(jnp.abs(clean).max())


def test_poisson_noise_variance(getkey):
    g = ct.parallel_beam(PAR[::3], 24, (16, 16))
    ph = ct.random_ellipses(getkey(), count=4)
    p = ph.project(g)
    i0, mu = 1e4, 2.0 / g.fov_radius  # mu: the documented default mu_scale
    keys = jax.random.split(getkey(), 256)
    sim = jax.jit(jax.vmap(lambda k, m: ct.simulate(ph, g, key=k, noise="poisson", photons=i0, mu_scale=m),
                           in_axes=(0, None)))
    ys = sim(keys, jnp.asarray(mu))
    # delta method: Var[-log(N / I0) / mu] = e^{mu p} / (I0 mu^2); per-bin estimates scatter by
    # sqrt(2 / 255) ~= 9 %, so their mean over 192 bins is within a few per cent
    ratio = jnp.var(ys, axis=0, ddof=1) / (jnp.exp(mu * p) / (i0 * mu * mu))
    assert abs(float(ratio.mean()) - 1) < 0.04, float(ratio.mean())
    assert float(rel(ys.mean(0), p)) < 0.01  # nearly unbiased at these counts
    # realistic attenuation: the body transmits between 1 % and 50 % along its longest chord
    assert 0.01 < float(jnp.exp(-mu * p.max())) < 0.5
    # a larger mu_scale means fewer photons through: noisier data (a new value, no recompilation)
    assert rel(sim(keys, jnp.asarray(3 * mu))[0], p) > rel(ys[0], p)
    default = ct.simulate(ph, g, key=keys[0], noise="poisson", photons=i0)
    np.testing.assert_allclose(np.asarray(default), np.asarray(ys[0]), rtol=1e-5)


def test_simulate_bad_input(getkey):
    g = ct.parallel_beam(PAR, 24, (16, 16))
    img = jnp.ones((16, 16))
    k = getkey()
    with pytest.raises(ValueError, match="image"):
        ct.simulate(jnp.ones((24, 24)), g, key=k)
    with pytest.raises(ValueError, match="image"):
        ct.simulate(jnp.ones((32, 48)), g, key=k)
    with pytest.raises(ValueError, match="noise"):
        ct.simulate(img, g, key=k, noise="salt")
    with pytest.raises(ValueError, match="sigma"):
        ct.simulate(img, g, key=k, sigma=-0.1)
    with pytest.raises(ValueError, match="photons"):
        ct.simulate(img, g, key=k, noise="poisson", photons=0.0)
    with pytest.raises(ValueError, match="mu_scale"):
        ct.simulate(img, g, key=k, noise="poisson", mu_scale=-1.0)
    with pytest.raises(ValueError, match="key"):
        ct.simulate(img, g, key=None)
    with pytest.raises(ValueError, match="upsample"):
        ct.simulate(img, g, key=k, upsample=0)


# --------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------

def test_load_dicom_matches_pydicom_hu():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = apply_modality_lut(ds.pixel_array, ds)  # pydicom's own rescale
    img = np.asarray(ct.load_dicom())
    assert img.shape == (128, 128) and img.dtype == np.float32
    inside = img > 0
    r = np.hypot(*np.meshgrid(np.arange(128) - 63.5, np.arange(128) - 63.5, indexing="ij"))
    assert np.all(inside == (r <= 63)) and np.all(img[r > 63] == 0)  # masked to the FOV disc
    np.testing.assert_allclose(img[inside], np.maximum(1 + hu[inside] / 1000, 0), rtol=1e-6)
    assert 0.0 <= img.min() and 1.5 < img.max() < 2.5  # soft tissue ~1, dense bone ~2

    small = ct.load_dicom(shape=(64, 64))
    assert small.shape == (64, 64) and float(small.min()) >= 0
    assert float(small[16:48, 16:48].mean()) == pytest.approx(float(img[32:96, 32:96].mean()), rel=0.02)
    g = ct.parallel_beam(PAR, 92, (64, 64))
    assert bool(jnp.all(jnp.isfinite(ct.simulate(small, g, key=None, noise=None))))


def test_load_dicom_errors(tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    missing = tmp_path / "nope.dcm"
    with pytest.raises(FileNotFoundError, match="nope.dcm"):
        ct.load_dicom(missing)
    with pytest.raises(ValueError, match="not a CT"):
        ct.load_dicom(get_testdata_file("MR_small.dcm"))
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(ValueError, match="not a DICOM"):
        ct.load_dicom(junk)
    with pytest.raises(ValueError, match="shape"):
        ct.load_dicom(shape=(0, 64))


# --------------------------------------------------------------------------------------------------
# Projection files
# --------------------------------------------------------------------------------------------------

def _geometries():
    return {
        "parallel": ct.parallel_beam(PAR[::4], 20, (12, 12), detector_spacing=0.9, pixel_size=1.1,
                                     detector_offset=0.25, projector="strip"),
        "fan": ct.fan_beam(FULL[::4], 32, (12, 12), source_origin=40.0, origin_detector=20.0,
                           detector_spacing=1.2),
        "cone": ct.cone_beam(FULL[::4], (6, 24), (4, 12, 12), source_origin=40.0, origin_detector=20.0,
                             detector_spacing=(1.5, 1.25), voxel_size=0.8),
    }


def _same_geometry(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb  # class and static fields (shapes, counts)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("fmt", ["npy", "tiff"])
@pytest.mark.parametrize("kind", ["parallel", "fan", "cone"])
def test_projection_round_trip(kind, fmt, tmp_path, getkey):
    g = _geometries()[kind]
    y = jax.random.normal(getkey(), g.sinogram_shape)
    out = ct.save_projections(tmp_path / "scan", y, g, format=fmt)
    names = sorted(p.name for p in out.iterdir())
    ext = "npy" if fmt == "npy" else "tif"
    assert names == ["geometry.json"] + [f"proj_{i:04d}.{ext}" for i in range(g.sinogram_shape[0])]
    meta = json.loads((out / "geometry.json").read_text())
    assert meta["type"] == kind and meta["version"] == 1 and len(meta["angles"]) == g.sinogram_shape[0]
    y2, g2 = ct.load_projections(out)
    np.testing.assert_array_equal(np.asarray(y2), np.asarray(y))
    _same_geometry(g2, g)


def test_stacked_npy_and_overwrite(tmp_path, getkey):
    g = _geometries()["fan"]
    y = jax.random.normal(getkey(), g.sinogram_shape)
    d = ct.save_projections(tmp_path, y, g)
    for p in d.glob("proj_*"):
        p.unlink()
    np.save(d / "scan.npy", np.asarray(y))
    y2, g2 = ct.load_projections(d)
    np.testing.assert_array_equal(np.asarray(y2), np.asarray(y))
    _same_geometry(g2, g)
    with pytest.raises(FileExistsError, match="overwrite"):
        ct.save_projections(d, y, g)
    ct.save_projections(d, 2 * y, g, overwrite=True)
    (d / "scan.npy").unlink()
    np.testing.assert_array_equal(np.asarray(ct.load_projections(d)[0]), 2 * np.asarray(y))


def test_projection_file_errors(tmp_path, getkey):
    g = _geometries()["parallel"]
    y = jax.random.normal(getkey(), g.sinogram_shape)
    with pytest.raises(ValueError, match="format"):
        ct.save_projections(tmp_path / "a", y, g, format="png")
    with pytest.raises(ValueError, match="sinogram"):
        ct.save_projections(tmp_path / "a", y[1:], g)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ct.load_projections(tmp_path / "nowhere")

    def fresh(name):
        return ct.save_projections(tmp_path / name, y, g)

    d = fresh("no_json")
    (d / "geometry.json").unlink()
    with pytest.raises(FileNotFoundError, match="geometry.json"):
        ct.load_projections(d)

    d = fresh("bad_type")
    meta = json.loads((d / "geometry.json").read_text())
    (d / "geometry.json").write_text(json.dumps({**meta, "type": "helical"}))
    with pytest.raises(ValueError, match="'type'.*helical"):
        ct.load_projections(d)

    d = fresh("missing_field")
    (d / "geometry.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "pixel_size"}))
    with pytest.raises(ValueError, match="pixel_size"):
        ct.load_projections(d)

    d = fresh("bad_json")
    (d / "geometry.json").write_text("{not json")
    with pytest.raises(ValueError, match="geometry.json.*JSON"):
        ct.load_projections(d)

    d = fresh("too_few")
    (d / "proj_0005.npy").unlink()
    with pytest.raises(ValueError, match="5 proj_.*6 angles"):
        ct.load_projections(d)

    d = fresh("gap")
    (d / "proj_0005.npy").rename(d / "proj_0007.npy")
    with pytest.raises(ValueError, match="proj_0007"):
        ct.load_projections(d)

    d = fresh("bad_view")
    np.save(d / "proj_0002.npy", np.zeros(19, np.float32))
    with pytest.raises(ValueError, match="proj_0002.npy.*shape"):
        ct.load_projections(d)

    d = fresh("bad_geometry")
    (d / "geometry.json").write_text(json.dumps({**meta, "detector_count": 3}))
    with pytest.raises(ValueError, match="too small"):
        ct.load_projections(d)

    d = fresh("empty")
    for p in d.glob("proj_*"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match="no projections"):
        ct.load_projections(d)
    np.save(d / "a.npy", np.asarray(y))
    np.save(d / "b.npy", np.asarray(y))
    with pytest.raises(ValueError, match="several"):
        ct.load_projections(d)
