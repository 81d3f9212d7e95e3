"""sciml.metrics against scikit-image and closed forms, under jit/vmap/grad (STYLE.md #11, #12)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sciml.metrics import Calibration, calibration, psnr, relative_error, ssim, std_scale

# skimage runs in float64 on the same (float32-representable) inputs; sciml computes in float32.
# Measured: max |difference| 1e-6 (2D and 3D, random and smooth, uniform and Gaussian windows).
SSIM_ATOL = 1e-4
PSNR_RTOL = 1e-5


def _f32(a):
    return np.asarray(a, np.float32)


def _pair(kind, shape, seed=0):
    """(x, reference), float32, reference in [0, 1] (or offset by 100 for 'offset')."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        ref = rng.random(shape)
        x = np.clip(ref + 0.2 * rng.standard_normal(shape), 0, 1)
    else:
        ref = gaussian_filter(rng.standard_normal(shape), 3.0)
        ref = (ref - ref.min()) / (ref.max() - ref.min())
        x = ref + 0.05 * gaussian_filter(rng.standard_normal(shape), 2.0)
        x = x + 0.02 * rng.standard_normal(shape)
        if kind == "offset":  # float32 E[x^2] - E[x]^2 would cancel without the mean shift
            ref, x = ref + 100.0, x + 100.0
    return _f32(x), _f32(ref)


def _range(ref):
    return float(np.max(ref.astype(np.float64)) - np.min(ref.astype(np.float64)))


# --------------------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------------------


def test_psnr_closed_form():
    ref = jnp.linspace(0.0, 2.0, 60, dtype=jnp.float32).reshape(6, 10)  # range 2
    # x = ref + d: MSE = d^2, PSNR = 10 log10(4 / d^2)
    for d in (0.5, 0.1, 0.01):
        np.testing.assert_allclose(psnr(ref + d, ref), 10 * np.log10(4 / d**2), rtol=PSNR_RTOL)
    np.testing.assert_allclose(psnr(ref + 0.5, ref, data_range=1.0), 10 * np.log10(1 / 0.25), rtol=1e-6)
    assert psnr(ref, ref) == jnp.inf


@pytest.mark.parametrize("shape", [(32, 24), (8, 9, 10), (100,)])
def test_psnr_matches_skimage(shape):
    x, ref = _pair("random", shape)
    expected = peak_signal_noise_ratio(ref.astype(np.float64), x.astype(np.float64), data_range=_range(ref))
    np.testing.assert_allclose(psnr(x, ref), expected, rtol=PSNR_RTOL)
    expected = peak_signal_noise_ratio(ref.astype(np.float64), x.astype(np.float64), data_range=3.0)
    np.testing.assert_allclose(psnr(x, ref, data_range=3.0), expected, rtol=PSNR_RTOL)


# --------------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "smooth", "offset"])
@pytest.mark.parametrize("shape", [(48, 40), (16, 18, 20)])
@pytest.mark.parametrize("window", [3, 7])
def test_ssim_uniform_matches_skimage(kind, shape, window):
    x, ref = _pair(kind, shape)
    expected = structural_similarity(
        x.astype(np.float64), ref.astype(np.float64), data_range=_range(ref), win_size=window
    )
    assert abs(float(ssim(x, ref, window=window)) - expected) < SSIM_ATOL


@pytest.mark.parametrize("kind", ["random", "smooth"])
@pytest.mark.parametrize("shape", [(48, 40), (16, 18, 20)])
@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_ssim_gaussian_matches_skimage(kind, shape, sigma):
    x, ref = _pair(kind, shape)
    expected = structural_similarity(
        x.astype(np.float64), ref.astype(np.float64), data_range=_range(ref),
        gaussian_weights=True, use_sample_covariance=False, sigma=sigma,
    )
    assert abs(float(ssim(x, ref, gaussian=True, sigma=sigma)) - expected) < SSIM_ATOL


def test_ssim_explicit_data_range_and_constants_match_skimage():
    x, ref = _pair("smooth", (30, 30))
    expected = structural_similarity(
        x.astype(np.float64), ref.astype(np.float64), data_range=2.0, win_size=5, K1=0.02, K2=0.05
    )
    got = ssim(x, ref, data_range=2.0, window=5, k1=0.02, k2=0.05)
    assert abs(float(got) - expected) < SSIM_ATOL


def test_ssim_closed_forms():
    x, ref = _pair("random", (48, 40))  # the shape of the skimage tests: compiled already
    np.testing.assert_allclose(ssim(ref, ref), 1.0, atol=1e-6)
    np.testing.assert_allclose(ssim(ref, ref, gaussian=True), 1.0, atol=1e-6)
    # the default Gaussian window is 2 * int(3.5 sigma + 0.5) + 1 = 11 taps for sigma = 1.5
    assert ssim(x, ref, gaussian=True) == ssim(x, ref, gaussian=True, window=11)
    # symmetric in its arguments once the range is fixed
    np.testing.assert_allclose(ssim(x, ref, data_range=1.0), ssim(ref, x, data_range=1.0), atol=1e-6)
    # bounded by 1 in absolute value, also for anti-correlated images
    for a, b in ((x, ref), (1 - x, ref), (-x, ref)):
        assert -1.0 <= float(ssim(a, b, data_range=1.0)) <= 1.0
    # a window as large as the (square) image: one window, the global SSIM with sample covariances
    square = (slice(0, 19), slice(0, 19))
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    cov = np.cov(x[square].ravel(), ref[square].ravel())
    mx, my = x[square].mean(dtype=np.float64), ref[square].mean(dtype=np.float64)
    expected = (2 * mx * my + c1) * (2 * cov[0, 1] + c2)
    expected /= (mx**2 + my**2 + c1) * (cov[0, 0] + cov[1, 1] + c2)
    np.testing.assert_allclose(ssim(x[square], ref[square], data_range=1.0, window=19), expected, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Relative errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ord", [1, 2, np.inf])
def test_relative_error(ord):
    x, ref = _pair("random", (12, 13))
    ref64, x64 = ref.astype(np.float64).ravel(), x.astype(np.float64).ravel()
    expected = np.linalg.norm(x64 - ref64, ord) / np.linalg.norm(ref64, ord)
    np.testing.assert_allclose(relative_error(x, ref, ord=ord), expected, rtol=1e-5)
    # closed form: x = (1 + t) ref -> |t| in every norm
    np.testing.assert_allclose(relative_error(0.75 * ref, ref, ord=ord), 0.25, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------


CAL_SHAPE = (64, 64)  # one shape for all calibration tests: one compilation


def test_calibration_exact_coverage():
    # error 1 everywhere; std 0.75 (k std = 1.5 >= 1: covered) on 1900 of 4096 pixels, 0.25 elsewhere
    ref = jnp.zeros(CAL_SHAPE)
    mean = jnp.ones(CAL_SHAPE)
    std = jnp.where(jnp.arange(4096).reshape(CAL_SHAPE) < 1900, 0.75, 0.25)
    cal = calibration(mean, std, ref, k=2.0)
    assert isinstance(cal, Calibration)
    assert float(cal.coverage) == 1900 / 4096
    assert float(cal.k) == 2.0
    assert float(cal.rmse) == 1.0
    np.testing.assert_allclose(cal.mean_std, (1900 * 0.75 + 2196 * 0.25) / 4096, rtol=1e-6)
    np.testing.assert_allclose(cal.rms_std, np.sqrt((1900 * 0.75**2 + 2196 * 0.25**2) / 4096), rtol=1e-6)
    assert float(cal.correlation) == 0.0  # the error is constant: correlation undefined -> 0
    # the boundary counts as covered: error exactly k * std
    assert float(calibration(mean, jnp.full(CAL_SHAPE, 0.5), ref, k=2.0).coverage) == 1.0


def test_calibration_correlation():
    rng = np.random.default_rng(1)
    ref = _f32(rng.standard_normal(CAL_SHAPE))
    err = _f32(rng.standard_normal(CAL_SHAPE))
    mean = ref + err
    np.testing.assert_allclose(calibration(mean, 0.3 * np.abs(err), ref).correlation, 1.0, atol=1e-6)
    std = _f32(rng.random(CAL_SHAPE))
    expected = np.corrcoef(std.ravel(), np.abs(mean - ref).ravel())[0, 1]
    np.testing.assert_allclose(calibration(mean, std, ref).correlation, expected, atol=1e-5)
    # Gaussian errors of the stated std: coverage 0.9545 at k = 2 (4096 pixels: 4 standard errors
    # is 0.013), rmse close to rms_std, and std correlates with |error|
    sd = _f32(np.linspace(0.1, 1.0, 4096).reshape(CAL_SHAPE))
    cal = calibration(ref + sd * _f32(rng.standard_normal(CAL_SHAPE)), sd, ref, k=2.0)
    assert abs(float(cal.coverage) - 0.9545) < 0.013
    np.testing.assert_allclose(cal.rmse, cal.rms_std, rtol=0.03)
    assert float(cal.correlation) > 0.2


def test_std_scale_is_the_gaussian_maximum_likelihood_factor():
    # errors N(0, (1.7 sd)^2) with a predicted sd: the fitted factor is 1.7 within 4 s.e. (the
    # estimate of s^2 from 4096 chi^2_1 terms has relative s.e. sqrt(2/4096) = 2.2%, s: 1.1%),
    # it is the minimiser of the Gaussian NLL in s, and the rescaled coverage at 2 std is 0.9545
    rng = np.random.default_rng(5)
    ref = _f32(rng.standard_normal(CAL_SHAPE))
    sd = _f32(np.linspace(0.1, 1.0, 4096).reshape(CAL_SHAPE))
    mean = ref + 1.7 * sd * _f32(rng.standard_normal(CAL_SHAPE))
    s = float(std_scale(mean, sd, ref))
    assert abs(s - 1.7) < 4 * 0.011 * 1.7
    z2 = np.square((np.asarray(mean) - np.asarray(ref)) / np.asarray(sd))
    nll = lambda c: np.mean(np.log(c) + z2 / (2 * c * c))  # noqa: E731
    assert nll(s) <= min(nll(0.98 * s), nll(1.02 * s))
    assert abs(float(calibration(mean, s * sd, ref).coverage) - 0.9545) < 0.013
    # pixels with zero std are skipped; under jit; errors named
    sd0 = jnp.asarray(sd).at[0, 0].set(0.0)
    np.testing.assert_allclose(std_scale(mean, sd0, ref), jax.jit(std_scale)(mean, sd0, ref), rtol=1e-6)
    assert np.isfinite(float(std_scale(mean, sd0, ref)))
    with pytest.raises(ValueError, match="`std`"):
        std_scale(mean, -sd, ref)


def test_calibration_of_a_sample_mean_is_student_t():
    # reference and K samples iid N(mu, sd^2) per pixel; mean = sample mean, std = sample std (ddof 1):
    # |ref - mean| / (std sqrt(1 + 1/K)) is |t_{K-1}|, so the coverage at k is P(|t_{K-1}| <= k);
    # without `samples` it is P(|t_{K-1}| <= k / sqrt(1 + 1/K)). 4096 pixels: 4 s.e. <= 0.032.
    from scipy import stats

    rng = np.random.default_rng(3)
    k_samples = 8
    mu = rng.standard_normal(CAL_SHAPE)
    sd = np.linspace(0.1, 2.0, 4096).reshape(CAL_SHAPE)
    draws = mu + sd * rng.standard_normal((k_samples + 1, *CAL_SHAPE))
    ref, samples = _f32(draws[0]), draws[1:]
    mean, std = _f32(samples.mean(0)), _f32(samples.std(0, ddof=1))
    for k in (1.0, 2.0):
        t = stats.t(k_samples - 1)
        pred = calibration(mean, std, ref, k=k, samples=k_samples)
        raw = calibration(mean, std, ref, k=k)
        assert abs(float(pred.coverage) - (2 * t.cdf(k) - 1)) < 0.032
        assert abs(float(raw.coverage) - (2 * t.cdf(k / np.sqrt(1 + 1 / k_samples)) - 1)) < 0.032
        np.testing.assert_allclose(pred.mean_std, raw.mean_std * np.sqrt(1 + 1 / k_samples), rtol=1e-6)
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="samples"):
            calibration(mean, std, ref, samples=bad)


@pytest.mark.parametrize("level", [0.0, 0.1])
def test_calibration_constant_std_gives_zero_correlation(level):
    rng = np.random.default_rng(2)
    ref = _f32(rng.standard_normal(CAL_SHAPE))
    mean = ref + _f32(0.1 * rng.standard_normal(CAL_SHAPE))
    mean[0, 0] = ref[0, 0]  # one exact pixel
    cal = calibration(mean, np.full(CAL_SHAPE, level, np.float32), ref)
    assert float(cal.correlation) == 0.0
    if level == 0.0:
        assert float(cal.coverage) == 1 / 4096  # only the exact pixel is covered by a zero spread


# --------------------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------------------


def test_jit_matches_eager_and_traces_once():
    x, ref = _pair("smooth", (24, 24))

    @eqx.debug.assert_max_traces(max_traces=1)
    def all_metrics(x, ref, data_range, k):
        return (
            psnr(x, ref, data_range=data_range),
            ssim(x, ref, data_range=data_range),
            ssim(x, ref, data_range=data_range, gaussian=True),
            relative_error(x, ref, ord=1),
            calibration(x, jnp.abs(x - ref) + 0.01, ref, k=k),
        )

    jitted = jax.jit(all_metrics)
    for data_range, k in ((1.0, 2.0), (2.0, 3.0)):  # new values, no retrace (array leaves)
        dr, kk = jnp.asarray(data_range), jnp.asarray(k)
        got = jitted(x, ref, dr, kk)
        want = all_metrics.__wrapped__(x, ref, dr, kk)
        for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_vmap_matches_loop():
    pairs = [_pair("random", (24, 24), seed) for seed in range(3)]
    xs, refs = jnp.stack([p[0] for p in pairs]), jnp.stack([p[1] for p in pairs])
    stds = jnp.abs(xs - refs) + 0.05
    fns = {
        "psnr": lambda x, r, s: psnr(x, r),
        "ssim": lambda x, r, s: ssim(x, r),
        "relative_error": lambda x, r, s: relative_error(x, r),
        "calibration": lambda x, r, s: calibration(x, s, r),
    }
    for name, fn in fns.items():
        batched = jax.jit(jax.vmap(fn))(xs, refs, stds)
        for i in range(3):
            single = fn(xs[i], refs[i], stds[i])
            for b, s in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(single)):
                np.testing.assert_allclose(b[i], s, rtol=1e-5, atol=1e-6, err_msg=name)


def test_grad_matches_finite_differences():
    x, ref = _pair("smooth", (24, 24))
    v = _f32(np.random.default_rng(3).standard_normal(x.shape))
    for fn in (lambda a: ssim(a, ref, data_range=1.0), lambda a: psnr(a, ref, data_range=1.0)):
        g = jax.grad(fn)(jnp.asarray(x))
        h = 1e-3
        fd = (fn(x + h * v) - fn(x - h * v)) / (2 * h)
        np.testing.assert_allclose(jnp.vdot(g, v), fd, rtol=2e-2)


# --------------------------------------------------------------------------------------------------
# Errors at the boundary
# --------------------------------------------------------------------------------------------------


def test_errors():
    a = jnp.ones((16, 16))
    ramp = jnp.linspace(0.0, 1.0, 256).reshape(16, 16)
    with pytest.raises(ValueError, match="`reference` must have the same shape as `x`"):
        psnr(a, jnp.ones((16, 15)))
    with pytest.raises(ValueError, match="`std` must have the same shape as `mean`"):
        calibration(a, jnp.ones((4, 4)), a)
    with pytest.raises(TypeError, match="`x` must be a real floating array"):
        ssim(jnp.ones((16, 16), jnp.int32), ramp)
    with pytest.raises(TypeError, match="`reference` must be a real floating array"):
        relative_error(a, jnp.ones((16, 16), jnp.int32))
    with pytest.raises(ValueError, match="`data_range` must be > 0"):
        psnr(ramp, ramp, data_range=0.0)
    with pytest.raises(ValueError, match="`data_range` must be > 0"):
        ssim(ramp, ramp, data_range=-1.0)
    with pytest.raises(ValueError, match="`data_range` defaults to .* constant `reference`"):
        psnr(ramp, a)
    with pytest.raises(ValueError, match="`window` must be odd"):
        ssim(ramp, ramp, window=6)
    with pytest.raises(ValueError, match="`window` must be an odd int >= 3"):
        ssim(ramp, ramp, window=1)
    with pytest.raises(ValueError, match="`window` must be at most the smallest side"):
        ssim(ramp[:, :5], ramp[:, :5])
    with pytest.raises(ValueError, match="`window` must be at most the smallest side"):
        ssim(ramp[:9, :9], ramp[:9, :9], gaussian=True)  # default Gaussian window: 11 taps
    with pytest.raises(ValueError, match="2D image or one 3D volume"):
        ssim(jnp.ones(16), jnp.ones(16))
    with pytest.raises(ValueError, match="`sigma` must be > 0"):
        ssim(ramp, ramp, gaussian=True, sigma=0.0, window=7)
    with pytest.raises(ValueError, match="`k1` must be >= 0"):
        ssim(ramp, ramp, k1=-0.1)
    with pytest.raises(ValueError, match="`ord` must be one of 1, 2 or jnp.inf"):
        relative_error(ramp, ramp, ord=3)
    with pytest.raises(ValueError, match="`k` must be > 0"):
        calibration(ramp, a, ramp, k=0.0)
    with pytest.raises(ValueError, match="`std` must be >= 0"):
        calibration(ramp, -a, ramp)


def test_errors_under_jit():
    ramp = jnp.linspace(0.0, 1.0, 256).reshape(16, 16)
    # static checks (shapes, dtypes, window) still apply at trace time
    with pytest.raises(ValueError, match="same shape"):
        jax.jit(psnr)(ramp, ramp[:8])
    with pytest.raises(TypeError, match="real floating"):
        jax.jit(ssim)(ramp.astype(jnp.int32), ramp)
    with pytest.raises(ValueError, match="`window` must be odd"):
        jax.jit(lambda a, b: ssim(a, b, window=4))(ramp, ramp)
    with pytest.raises(ValueError, match="`window` must be given when `sigma` is traced"):
        jax.jit(lambda a, b, s: ssim(a, b, gaussian=True, sigma=s))(ramp, ramp, jnp.asarray(1.5))
    traced_sigma = jax.jit(lambda a, b, s: ssim(a, b, gaussian=True, sigma=s, window=11))
    np.testing.assert_allclose(traced_sigma(ramp, ramp, 1.5), 1.0, atol=1e-6)  # fine with a window
    # value checks do not: a traced data_range <= 0 gives a non-finite PSNR instead of an error
    out = jax.jit(lambda a, b, r: psnr(a, b, data_range=r))(ramp + 0.1, ramp, jnp.asarray(0.0))
    assert not jnp.isfinite(out)
