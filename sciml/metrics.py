"""Image-quality and uncertainty metrics: PSNR, SSIM, relative L^p errors, calibration.

Every function takes **one** image (any shape for :func:`psnr` and :func:`relative_error`, a 2D image
or a 3D volume for :func:`ssim`) and returns scalars; batch with ``jax.vmap``. All of them work under
``jax.jit``, ``vmap`` and ``grad``. Shapes and dtypes are checked at trace time; value checks
(``data_range > 0``, ``k > 0``, ...) run only on concrete values, i.e. outside ``jit``/``vmap``.

**Precision.** Inputs must already be real floating arrays (nothing is cast silently from integers).
The arithmetic runs in float32, or in float64 when an input is float64; bfloat16/float16 inputs are
computed in float32.

**Conventions.** Where a peer implementation exists the numbers match it: :func:`psnr` is
``skimage.metrics.peak_signal_noise_ratio(reference, x, data_range=...)`` and :func:`ssim` is
``skimage.metrics.structural_similarity`` (uniform 7^d window with the sample covariance, or Gaussian
weights with the population covariance as in Wang et al. 2004), both with ``data_range`` defaulting
to the range of ``reference``.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._checks import check_float_array, check_real_scalar

__all__ = ["Calibration", "calibration", "psnr", "relative_error", "ssim", "std_scale"]


# --------------------------------------------------------------------------------------------------
# Boundary checks
# --------------------------------------------------------------------------------------------------


def _is_concrete(*values: Any) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def _arrays(**named: Any) -> tuple[jax.Array, ...]:
    """The named inputs as real floating arrays of one shape and one compute dtype (float32 or
    float64); raises naming the argument otherwise."""
    arrays = {name: check_float_array(v, name=name) for name, v in named.items()}
    (first, a0), *rest = arrays.items()
    for name, a in rest:
        if a.shape != a0.shape:
            raise ValueError(
                f"`{name}` must have the same shape as `{first}`, got {name}.shape={a.shape} and "
                f"{first}.shape={a0.shape}; compare one image at a time (batch with jax.vmap)"
            )
    if a0.size == 0:
        raise ValueError(f"`{first}` must not be empty, got shape {a0.shape}")
    dtype = jnp.float64 if any(a.dtype == jnp.float64 for a in arrays.values()) else jnp.float32
    return tuple(a.astype(dtype) for a in arrays.values())


def _scalar(value: Any, name: str, dtype: Any, *, positive: bool = False, nonneg: bool = False):
    """A real scalar parameter as a 0-d array of ``dtype``; the sign check runs on concrete values."""
    arr = check_real_scalar(value, name, dtype)
    if _is_concrete(arr):
        if positive and not bool(arr > 0):
            raise ValueError(f"got {name}={value!r}; `{name}` must be > 0")
        if nonneg and not bool(arr >= 0):
            raise ValueError(f"got {name}={value!r}; `{name}` must be >= 0")
    return arr


@jax.jit
def _peak_to_peak(a: jax.Array) -> jax.Array:
    return jnp.max(a) - jnp.min(a)


@jax.jit
def _min(a: jax.Array) -> jax.Array:
    return jnp.min(a)


def _data_range(data_range: Any, reference: jax.Array) -> jax.Array:
    if data_range is None:
        r = _peak_to_peak(reference)
        if _is_concrete(r) and not bool(r > 0):
            raise ValueError(
                "`data_range` defaults to reference.max() - reference.min(), which is "
                f"{float(r)!r} here (a constant `reference`); pass `data_range` explicitly, e.g. "
                "data_range=1.0 for images in [0, 1]"
            )
        return r
    return _scalar(data_range, "data_range", reference.dtype, positive=True)


# --------------------------------------------------------------------------------------------------
# PSNR and relative errors
# --------------------------------------------------------------------------------------------------


def psnr(
    x: Float[Array, "*shape"], reference: Float[Array, "*shape"], *, data_range: Any = None
) -> Float[Array, ""]:
    r"""Peak signal-to-noise ratio of ``x`` against ``reference``, in decibels.

    .. math::

        \mathrm{PSNR}(x, y) = 10 \log_{10} \frac{R^2}{\mathrm{MSE}(x, y)}, \qquad
        \mathrm{MSE}(x, y) = \frac{1}{N} \sum_i (x_i - y_i)^2,

    with ``R = data_range``. ``x == reference`` gives ``inf``. Equal to
    ``skimage.metrics.peak_signal_noise_ratio(reference, x, data_range=R)`` (note skimage's order:
    reference first).

    Args:
        x: the image to score, real floating, any shape.
        reference: the ground truth, same shape as ``x``.
        data_range: the peak-to-peak range ``R`` of the signal (a scalar, may be a traced array).
            Default: ``reference.max() - reference.min()``. Pass it explicitly when comparing
            across images (e.g. ``1.0`` for images in [0, 1]), or every image gets its own scale.

    Returns:
        The PSNR, a scalar of the compute dtype.

    Raises:
        TypeError: ``x`` or ``reference`` is not a real floating array.
        ValueError: shapes differ, the input is empty, or (outside jit) ``data_range <= 0``, including
            a default range of 0 from a constant ``reference``.

    Example:
        >>> ref = jnp.linspace(0.0, 1.0, 64).reshape(8, 8)
        >>> round(float(sciml.metrics.psnr(ref + 0.1, ref)), 4)  # MSE = 0.01, range 1
        20.0
    """
    x, reference = _arrays(x=x, reference=reference)
    return _psnr(x, reference, _data_range(data_range, reference))


@jax.jit
def _psnr(x, reference, r):
    mse = jnp.mean(jnp.square(x - reference))
    return 10 * jnp.log10(jnp.square(r) / mse)


def relative_error(
    x: Float[Array, "*shape"], reference: Float[Array, "*shape"], *, ord: Any = 2
) -> Float[Array, ""]:
    r"""Relative error of ``x`` in the entrywise L^p norm: ``||x - reference||_p / ||reference||_p``.

    .. math::

        e_p = \frac{\big(\sum_i |x_i - y_i|^p\big)^{1/p}}{\big(\sum_i |y_i|^p\big)^{1/p}}, \quad
        p \in \{1, 2\}, \qquad e_\infty = \frac{\max_i |x_i - y_i|}{\max_i |y_i|},

    over all entries (the array is flattened; for ``p = 2`` on a matrix this is the Frobenius norm).
    A zero ``reference`` gives ``inf`` (``nan`` when ``x`` is zero too).

    Args:
        x: the approximation, real floating, any shape.
        reference: the ground truth, same shape as ``x``.
        ord: the norm order ``p``: ``1``, ``2`` or ``jnp.inf``.

    Returns:
        The relative error, a scalar of the compute dtype.

    Raises:
        TypeError: ``x`` or ``reference`` is not a real floating array.
        ValueError: shapes differ, the input is empty, or ``ord`` is not one of 1, 2, inf.

    Example:
        >>> ref = jnp.ones((4, 4))
        >>> float(sciml.metrics.relative_error(1.5 * ref, ref, ord=jnp.inf))
        0.5
    """
    if isinstance(ord, bool) or not isinstance(ord, (int, float)) or ord not in (1, 2, math.inf):
        raise ValueError(f"`ord` must be one of 1, 2 or jnp.inf (the L^p norm order), got {ord!r}")
    x, reference = _arrays(x=x, reference=reference)
    return _relative_error(x, reference, ord=ord)


@functools.partial(jax.jit, static_argnames="ord")
def _relative_error(x, reference, ord):
    norm = functools.partial(jnp.linalg.norm, ord=ord)
    return norm(jnp.ravel(x - reference)) / norm(jnp.ravel(reference))


# --------------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------------

# Gaussian windows are truncated at radius int(3.5 sigma + 0.5): 11 taps for sigma = 1.5, Wang et
# al.'s 11x11 window; the same truncation as skimage (which passes truncate=3.5 to ndimage).
_TRUNCATE = 3.5


def _check_window(window: Any, gaussian: bool, sigma: Any, shape: tuple[int, ...]) -> int:
    if window is None:
        if not gaussian:
            window = 7
        else:
            if not _is_concrete(sigma):
                raise ValueError(
                    "`window` must be given when `sigma` is traced (the default Gaussian window, "
                    "2 * int(3.5 * sigma + 0.5) + 1 taps, has to be known at trace time)"
                )
            window = 2 * int(_TRUNCATE * float(sigma) + 0.5) + 1
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"`window` must be an odd int >= 3 or None, got {type(window).__name__}")
    if window < 3:
        raise ValueError(f"got window={window}; `window` must be an odd int >= 3, e.g. 7")
    if window % 2 == 0:
        raise ValueError(
            f"got window={window}; `window` must be odd (centred on a pixel), e.g. {window + 1}"
        )
    if window > min(shape):
        raise ValueError(
            f"got window={window} for an image of shape {shape}; `window` must be at most the "
            f"smallest side ({min(shape)}): pass a smaller odd window"
        )
    return int(window)


def _valid_filter(a: jax.Array, weights: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Separable correlation with ``weights`` along ``axes``, keeping only the windows that lie
    wholly inside the image ('valid' mode): exactly the region skimage keeps after its crop."""
    taps = weights.shape[0]
    for axis in axes:
        n = a.shape[axis] - taps + 1
        a = functools.reduce(
            operator.add,
            (weights[j] * jax.lax.slice_in_dim(a, j, j + n, axis=axis) for j in range(taps)),
        )
    return a


def ssim(
    x: Float[Array, "*spatial"],
    reference: Float[Array, "*spatial"],
    *,
    data_range: Any = None,
    window: int | None = None,
    gaussian: bool = False,
    sigma: Any = 1.5,
    k1: Any = 0.01,
    k2: Any = 0.03,
) -> Float[Array, ""]:
    r"""Mean structural similarity (SSIM) of a 2D image or 3D volume against ``reference``.

    With local means :math:`\mu`, variances :math:`\sigma^2` and covariance :math:`\sigma_{xy}` over
    a sliding window,

    .. math::

        \mathrm{SSIM}(x, y) = \frac{(2 \mu_x \mu_y + C_1)(2 \sigma_{xy} + C_2)}
        {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}, \qquad
        C_1 = (k_1 R)^2, \; C_2 = (k_2 R)^2,

    averaged over the windows that lie wholly inside the image (no padding). The window is uniform
    (``window``^d pixels, sample covariance, i.e. the N/(N-1) correction) or, with ``gaussian=True``,
    Gaussian weights of standard deviation ``sigma`` with the population covariance (Wang et al.).
    This is ``skimage.metrics.structural_similarity(x, reference, data_range=R, win_size=window)``,
    and with ``gaussian=True`` and ``window=None`` it is skimage's ``gaussian_weights=True,
    use_sample_covariance=False, sigma=sigma``. (skimage's crop of (win_size - 1) // 2 pixels per side
    keeps exactly the windows that lie inside the image, which is what is computed here.) Values lie
    in [-1, 1]; ``ssim(x, x) == 1``. In float32 the result agrees with skimage's float64 one to about
    1e-6 for images whose offset is comparable to their range (1e-5 for an offset of 100 times the
    range, where E[x^2] - E[x]^2 over a window starts to cancel); pass float64 for more.

    Args:
        x: the image to score: one 2D image or 3D volume, real floating (batch with ``jax.vmap``).
        reference: the ground truth, same shape as ``x``.
        data_range: the dynamic range ``R`` (a scalar, may be traced). Default:
            ``reference.max() - reference.min()`` (skimage insists on an explicit value for floats;
            passing the same number reproduces it). Pass it explicitly to compare across images.
        window: odd side length of the window, >= 3 and at most the smallest side of the image.
            Default: 7 for the uniform window; for ``gaussian=True`` the Gaussian truncated at
            radius ``int(3.5 sigma + 0.5)`` (11 taps for ``sigma=1.5``, as in Wang et al. and skimage).
            An explicit window with ``gaussian=True`` truncates the Gaussian to that many taps.
        gaussian: Gaussian-weighted window (and population covariance) instead of a uniform one.
        sigma: standard deviation of the Gaussian window in pixels (``gaussian=True`` only).
        k1: luminance stabiliser, >= 0.
        k2: contrast stabiliser, >= 0.

    Returns:
        The mean SSIM, a scalar of the compute dtype.

    Raises:
        TypeError: ``x`` or ``reference`` is not a real floating array, or ``window`` is not an int.
        ValueError: shapes differ, the images are not 2D or 3D, ``window`` is even, < 3 or larger than
            the image; outside jit also ``data_range <= 0``, ``sigma <= 0``, ``k1 < 0`` or ``k2 < 0``.

    Example:
        >>> ref = jnp.sin(jnp.linspace(0.0, 6.0, 32))[:, None] * jnp.cos(jnp.linspace(0.0, 4.0, 24))
        >>> round(float(sciml.metrics.ssim(ref, ref)), 5)
        1.0
        >>> bool(sciml.metrics.ssim(ref + 0.1, ref, gaussian=True) < 1)
        True

    Reference:
        Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment: from error
        visibility to structural similarity", IEEE Trans. Image Process. 13(4), 600-612, 2004.
    """
    x, reference = _arrays(x=x, reference=reference)
    if reference.ndim not in (2, 3):
        raise ValueError(
            f"`x` and `reference` must be one 2D image or one 3D volume, got shape {reference.shape}; "
            "for a batch of images use jax.vmap(ssim)"
        )
    if not isinstance(gaussian, bool):
        raise TypeError(f"`gaussian` must be a bool, got {type(gaussian).__name__}")
    dtype = reference.dtype
    sigma_arr = _scalar(sigma, "sigma", dtype, positive=gaussian)
    window = _check_window(window, gaussian, sigma, reference.shape)  # the raw sigma: concrete?
    k1 = _scalar(k1, "k1", dtype, nonneg=True)
    k2 = _scalar(k2, "k2", dtype, nonneg=True)
    r = _data_range(data_range, reference)
    return _ssim(x, reference, r, sigma_arr, k1, k2, window=window, gaussian=gaussian)


@functools.partial(jax.jit, static_argnames=("window", "gaussian"))
def _ssim(x, reference, r, sigma, k1, k2, *, window, gaussian):
    dtype, ndim = reference.dtype, reference.ndim
    if gaussian:
        taps = jnp.arange(window, dtype=dtype) - (window - 1) // 2
        weights = jnp.exp(-0.5 * jnp.square(taps / sigma))
        weights = weights / jnp.sum(weights)
        cov_norm = 1.0
    else:
        weights = jnp.full((window,), 1.0 / window, dtype)
        n = window**ndim
        cov_norm = n / (n - 1)

    # Local (co)variances are shift invariant: subtract one global offset from both images first so
    # that float32 E[x^2] - E[x]^2 does not cancel catastrophically on images with a large offset.
    offset = jnp.mean(reference)
    xs, ys = x - offset, reference - offset
    stacked = jnp.stack([xs, ys, xs * xs, ys * ys, xs * ys])
    fx, fy, fxx, fyy, fxy = _valid_filter(stacked, weights, tuple(range(1, ndim + 1)))
    vx = cov_norm * (fxx - fx * fx)
    vy = cov_norm * (fyy - fy * fy)
    vxy = cov_norm * (fxy - fx * fy)
    ux, uy = fx + offset, fy + offset

    c1, c2 = jnp.square(k1 * r), jnp.square(k2 * r)
    # (2 ux uy + C1) / (ux^2 + uy^2 + C1) written as 1 - (ux - uy)^2 / (...): the same number without
    # the cancellation of two ~ux^2 terms when the means are large compared with their difference.
    luminance = 1 - jnp.square(fx - fy) / (ux * ux + uy * uy + c1)
    s = luminance * (2 * vxy + c2) / (vx + vy + c2)
    return jnp.mean(s)


# --------------------------------------------------------------------------------------------------
# Calibration of an uncertainty estimate
# --------------------------------------------------------------------------------------------------


class Calibration(eqx.Module):
    """How well a per-pixel ``std`` describes the error of ``mean`` (see :func:`calibration`).

    Attributes:
        correlation: Pearson correlation over pixels between ``std`` and ``|mean - reference|``;
            0 when either is constant (e.g. ``std == 0`` everywhere).
        coverage: fraction of pixels with ``|mean - reference| <= k * std``.
        k: the multiple of ``std`` used for ``coverage``.
        rmse: root-mean-square error of ``mean``.
        mean_std: mean of ``std`` over pixels.
        rms_std: root-mean-square of ``std``; for a calibrated Gaussian it is close to ``rmse``.
    """

    correlation: Float[Array, ""]
    coverage: Float[Array, ""]
    k: Float[Array, ""]
    rmse: Float[Array, ""]
    mean_std: Float[Array, ""]
    rms_std: Float[Array, ""]


def _pearson(a: jax.Array, b: jax.Array) -> jax.Array:
    # Shift by the first entry so that a constant input centres to exact zeros (its mean in floating
    # point need not equal the constant), giving a zero denominator and correlation 0, not noise.
    a = jnp.ravel(a)
    b = jnp.ravel(b)
    a = a - a[0]
    b = b - b[0]
    da, db = a - jnp.mean(a), b - jnp.mean(b)
    denom = jnp.sqrt(jnp.sum(da * da)) * jnp.sqrt(jnp.sum(db * db))
    ok = denom > 0
    rho = jnp.sum(da * db) / jnp.where(ok, denom, 1)
    return jnp.where(ok, jnp.clip(rho, -1, 1), 0)


def calibration(
    mean: Float[Array, "*shape"],
    std: Float[Array, "*shape"],
    reference: Float[Array, "*shape"],
    *,
    k: Any = 2.0,
    samples: int | None = None,
) -> Calibration:
    r"""Calibration of a per-pixel uncertainty ``std`` for an estimate ``mean`` of ``reference``.

    With the error :math:`e_i = |\bar{x}_i - y_i|` and the predicted spread :math:`s_i`,

    .. math::

        \rho = \frac{\sum_i (s_i - \bar s)(e_i - \bar e)}
        {\sqrt{\sum_i (s_i - \bar s)^2} \sqrt{\sum_i (e_i - \bar e)^2}}, \qquad
        \mathrm{coverage} = \frac{1}{N} \#\{i : e_i \le k s_i\}.

    A useful uncertainty map has ``correlation`` near 1 (it is large where the error is) and the
    right size: for Gaussian errors of standard deviation ``std``, ``coverage`` is about 0.683, 0.954,
    0.997 for k = 1, 2, 3, and ``rmse`` is about ``rms_std``. Where ``std`` or the error is constant
    (in particular ``std == 0`` everywhere) the correlation is undefined; it is reported as 0, never
    NaN. With ``std == 0`` the coverage is the fraction of pixels that are exactly right.

    When ``mean`` is the average of K posterior samples and ``std`` their spread (as returned by
    the sampling reconstructions), pass ``samples=K``: the reference and the K samples are then
    draws from one distribution, so the error of the K-sample mean has the *predictive* standard
    deviation :math:`s\sqrt{1 + 1/K}` (Monte Carlo error of the mean included), and that is the
    spread checked (with ``std`` the unbiased sample estimate, :math:`e_i / (s_i\sqrt{1 + 1/K})`
    is Student-t with K - 1 degrees of freedom for Gaussian posteriors).

    Args:
        mean: the estimate (e.g. the posterior mean), real floating, any shape.
        std: its per-pixel standard deviation, same shape, >= 0.
        reference: the ground truth, same shape.
        k: the number of standard deviations for ``coverage``, > 0 (may be traced).
        samples: K when ``mean`` is the mean of K samples whose spread is ``std`` (a positive
            Python int); None (default) checks ``std`` as given.

    Returns:
        A :class:`Calibration` of scalars.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: shapes differ, the input is empty, or (outside jit) ``k <= 0`` or ``std`` has a
            negative (or NaN) entry.

    Example:
        >>> ref = jnp.zeros(4)
        >>> mean = jnp.array([0.1, -0.2, 0.3, 0.4])
        >>> cal = sciml.metrics.calibration(mean, 0.5 * jnp.abs(mean), ref, k=1.5)
        >>> round(float(cal.correlation), 4), float(cal.coverage)
        (1.0, 0.0)
    """
    mean, std, reference = _arrays(mean=mean, std=std, reference=reference)
    k = _scalar(k, "k", mean.dtype, positive=True)
    if _is_concrete(std) and not bool((lowest := _min(std)) >= 0):
        raise ValueError(f"`std` must be >= 0 everywhere, got a minimum of {float(lowest)!r}")
    if samples is not None:
        if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
            raise ValueError(f"`samples` must be a positive int (the K averaged in `mean`), got {samples!r}")
        std = std * math.sqrt(1.0 + 1.0 / int(samples))
    return _calibration(mean, std, reference, k)


@jax.jit
def _calibration(mean, std, reference, k):
    err = jnp.abs(mean - reference)
    return Calibration(
        correlation=_pearson(std, err),
        coverage=jnp.mean((err <= k * std).astype(mean.dtype)),
        k=k,
        rmse=jnp.sqrt(jnp.mean(jnp.square(err))),
        mean_std=jnp.mean(std),
        rms_std=jnp.sqrt(jnp.mean(jnp.square(std))),
    )


def std_scale(
    mean: Float[Array, "*shape"],
    std: Float[Array, "*shape"],
    reference: Float[Array, "*shape"],
) -> Float[Array, ""]:
    r"""The sigma-scaling factor of an uncertainty map, fitted on validation data (Laves et al. 2020).

    Sampling posteriors of a learned prior are often over- or under-dispersed by a roughly constant
    factor. Sigma scaling (Laves, Ihler, Fast, Kahrs, Ortmaier, "Well-calibrated regression uncertainty
    in medical imaging with deep learning", MIDL 2020) rescales the predicted spread by the one factor
    :math:`s` that maximises the Gaussian likelihood of the errors on *validation* data,

    .. math::

        s^2 = \frac{1}{N} \sum_{i:\,\sigma_i > 0} \frac{(\bar{x}_i - y_i)^2}{\sigma_i^2},

    and reports :math:`s\,\sigma` on new data. It changes the size of the uncertainty, never its
    ranking (the std-error correlation is unchanged). Fit it on images that are not used for testing;
    pass ``mean``/``std``/``reference`` of several images stacked (any shape).

    Args:
        mean: the estimates, real floating.
        std: their predicted standard deviations, same shape, >= 0 (pixels with 0 are skipped).
        reference: the ground truth, same shape.

    Returns:
        The scalar factor ``s`` (NaN if no pixel has ``std > 0``).

    Raises:
        TypeError / ValueError: as :func:`calibration`.

    Example:
        >>> ref = jnp.zeros(4)
        >>> mean = jnp.array([0.2, -0.2, 0.2, -0.2])
        >>> float(sciml.metrics.std_scale(mean, jnp.full(4, 0.1), ref))
        2.0
    """
    mean, std, reference = _arrays(mean=mean, std=std, reference=reference)
    if _is_concrete(std) and not bool((lowest := _min(std)) >= 0):
        raise ValueError(f"`std` must be >= 0 everywhere, got a minimum of {float(lowest)!r}")
    return _std_scale(mean, std, reference)


@jax.jit
def _std_scale(mean, std, reference):
    pos = std > 0
    z2 = jnp.where(pos, jnp.square(mean - reference) / jnp.where(pos, std, 1.0) ** 2, 0.0)
    return jnp.sqrt(jnp.sum(z2) / jnp.sum(pos.astype(z2.dtype)))
