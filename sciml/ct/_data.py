r"""CT data: textured random phantoms, simulated measurements, real DICOM slices, projection files.

* :func:`textured_phantom` draws piecewise-*smooth* phantoms with a band-limited random texture.
  Piecewise-constant ellipses alone flatter total-variation priors (TV is near-optimal for them);
  smooth intensity variations and texture are what real soft tissue adds.
* :func:`simulate` makes noisy data without the "inverse crime": from a phantom's exact line
  integrals, or from an image on a grid finer than the reconstruction grid (:func:`refine`), with
  Gaussian or Poisson (photon-counting) noise. :func:`downsample` gives the matching ground truth on
  the reconstruction grid.
* :func:`load_dicom` reads a real CT slice (by default pydicom's bundled ``CT_small.dcm``) as
  attenuation relative to water: out-of-distribution test images.
* :func:`save_projections` / :func:`load_projections` read and write scanner-style data: one file
  per view (``proj_0000.npy`` or ``.tif``) next to a ``geometry.json``.

Guerquin-Kern, Lejeune, Pruessmann and Unser (2012), "Realistic analytical phantoms for parallel
magnetic resonance imaging", IEEE TMI 31(3) (on the inverse crime); Kaipio and Somersalo (2007),
"Statistical inverse problems: discretization, model reduction and inverse crimes", J. Comput.
Appl. Math. 198(2).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import backend
from .._checks import check_float_array
from ._geometry import (
    AbstractGeometry,
    ConeBeam,
    FanBeam,
    ParallelBeam,
    check_count,
    check_geometry,
    check_shape,
    cone_beam,
    fan_beam,
    parallel_beam,
)
from ._phantoms import Ellipsoids, random_ellipses
from ._projector import checked_data, project


def _scalar(value: Any, name: str, ok, expected: str):
    """``value`` checked against ``ok`` when it is concrete (traced values pass through unchecked)."""
    if isinstance(value, jax.core.Tracer):
        return value
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        v = None
    if v is None or v.shape != () or not np.isfinite(v) or not ok(float(v)):
        raise ValueError(f"`{name}` must be {expected}, got {value!r}")
    return value


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(f"this function needs {module}: `pip install \"sciml[ct]\"`") from e


# --------------------------------------------------------------------------------------------------
# Grids: block averaging and refinement
# --------------------------------------------------------------------------------------------------


def downsample(image: Float[Array, "*shape"], factor: int) -> Float[Array, "*coarse"]:
    r"""Block-average ``image`` by ``factor`` along every axis.

    .. math:: y_{i} = \frac{1}{f^d} \sum_{j \in \text{block}(i)} x_j

    A pixel of the result is the mean of the ``factor**ndim`` pixels it covers, so a phantom
    rendered on a fine grid and its downsampled copy describe the same object (the fine one is what
    :func:`simulate` projects, the coarse one the ground truth on the reconstruction grid).

    Args:
        image: a real floating array, one image or volume (vmap for a batch).
        factor: a positive int dividing every axis of ``image``.

    Returns:
        The array of shape ``image.shape // factor``, in ``image``'s dtype.

    Raises:
        TypeError: ``image`` is not real floating.
        ValueError: ``factor`` is not a positive int or does not divide the shape.

    Example:
        >>> x = jnp.arange(16.0).reshape(4, 4)
        >>> sciml.ct.downsample(x, 2).tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    image = check_float_array(image, name="image")
    factor = check_count(factor, "factor")
    if any(s % factor for s in image.shape):
        raise ValueError(f"`factor`={factor} must divide every axis of `image`, got shape {image.shape}")
    split = [v for s in image.shape for v in (s // factor, factor)]
    return image.reshape(split).mean(axis=tuple(range(1, 2 * image.ndim, 2)))


# The field that holds the pixel (voxel) size of each geometry class.
_GRID_FIELD = {ParallelBeam: "pixel_size", FanBeam: "pixel_size", ConeBeam: "voxel_size"}


def refine(geometry: AbstractGeometry, factor: int) -> AbstractGeometry:
    """The same acquisition on a ``factor``-times finer image grid.

    Pixels (voxels) are ``factor`` times smaller and ``factor`` times as many along each axis, so the
    field of view, the detector, the distances and the angles are unchanged: the sinogram of the
    refined geometry is directly comparable with the original's, bin for bin.

    Args:
        geometry: from :func:`parallel_beam`, :func:`fan_beam` or :func:`cone_beam`.
        factor: a positive int.

    Returns:
        A geometry of the same class with ``image_shape`` multiplied and the pixel size divided by
        ``factor``.

    Raises:
        TypeError: ``geometry`` is not a sciml.ct geometry of a known class.
        ValueError: ``factor`` is not a positive int.

    Example:
        >>> g = sciml.ct.parallel_beam(np.linspace(0, np.pi, 8, endpoint=False), 48, (32, 32))
        >>> f = sciml.ct.refine(g, 2)
        >>> f.image_shape, float(f.pixel_size), f.sinogram_shape == g.sinogram_shape
        ((64, 64), 0.5, True)
    """
    check_geometry(geometry)
    factor = check_count(factor, "factor")
    field = _GRID_FIELD.get(type(geometry))
    if field is None:
        raise TypeError(f"`geometry`: refine knows {[c.__name__ for c in _GRID_FIELD]}, got "
                        f"{type(geometry).__name__}")
    return dataclasses.replace(geometry, **{
        field: getattr(geometry, field) / factor,
        "image_shape": tuple(s * factor for s in geometry.image_shape),
    })


# --------------------------------------------------------------------------------------------------
# Textured phantoms
# --------------------------------------------------------------------------------------------------


def _grid_points(shape: tuple[int, ...], half: float, dt) -> Float[Array, "points ndim"]:
    """Normalised (x, y[, z]) coordinates of the pixel centres of ``shape`` (sciml.ct conventions,
    ``half`` pixels per unit), flattened in array order."""
    def axis(n, flip=False):
        c = (jnp.arange(n, dtype=dt) - (n - 1) / 2) / half
        return -c if flip else c

    ax = [axis(shape[-1]), axis(shape[-2], flip=True)] + ([axis(shape[0])] if len(shape) == 3 else [])
    grids = jnp.meshgrid(*ax[::-1], indexing="ij")  # array order
    return jnp.stack(grids[::-1], axis=-1).reshape(-1, len(shape))


def _gaussian_field(key, shape: tuple[int, ...], half: float, correlation, dt) -> Float[Array, "*shape"]:
    """A stationary Gaussian random field of unit variance with covariance exp(-r^2 / (2 l^2)), l =
    ``correlation`` in normalised units: white noise filtered by exp(-|k|^2 l^2 / 4) in Fourier space
    (k in radians per normalised unit), so its statistics do not depend on the grid size."""
    white = jax.random.normal(key, shape, dt)
    h = 1.0 / half  # normalised length of one pixel
    ks = [2 * math.pi * jnp.fft.fftfreq(n, h).astype(dt) for n in shape[:-1]]
    ks.append(2 * math.pi * jnp.fft.rfftfreq(shape[-1], h).astype(dt))
    k2 = sum(jnp.reshape(k * k, [-1 if i == j else 1 for j in range(len(shape))]) for i, k in enumerate(ks))
    filt = jnp.exp(-k2 * (correlation * correlation / 4))
    spectrum = jnp.fft.rfftn(white) * filt.astype(backend.complex_dtype(dt))
    field = jnp.fft.irfftn(spectrum, s=shape).astype(dt)
    return (field - field.mean()) / jnp.maximum(field.std(), jnp.finfo(dt).tiny)


def textured_phantom(
    key: PRNGKeyArray,
    shape: tuple[int, ...],
    *,
    count: int = 10,
    texture: float | Float[Array, ""] = 0.05,
    smooth: float | Float[Array, ""] = 0.2,
    correlation: float | Float[Array, ""] = 0.05,
    supersample: int = 2,
    dtype: Any = None,
) -> Float[Array, "*shape"]:
    r"""A seeded random piecewise-smooth phantom with texture, 2D or 3D, inside the unit disc / ball.

    The geometry is :func:`random_ellipses` (``count`` ellipses or ellipsoids); each one's intensity
    ``c_i`` is modulated by a random quadratic polynomial ``f_i`` of its own body coordinates
    ``b = R_i^T (x - x_i) / s_i`` (``|f_i| <= 1`` inside it), and a texture field ``t`` is added on
    the object's support ``S`` (the union of the ellipses):

    .. math::
        u(x) = \max\Big(0,\ \sum_i c_i\, 1_{E_i}(x) \big(1 + \text{smooth}\, f_i(b)\big)
               + \text{texture}\cdot c_0\, t(x)\, 1_S(x)\Big),

    where ``c_0`` (0.5-1) is the body's intensity, the phantom's contrast against the empty
    background, and ``t`` is a unit-variance Gaussian random field with covariance
    ``exp(-r^2 / (2 correlation^2))`` (white noise low-pass filtered by FFT). The defaults (texture
    at 5 % of the contrast, correlated over 0.05 of the radius, i.e. ~1.6 pixels on a 64 x 64 grid,
    and +-20 % smooth shading) look like soft-tissue CT texture. Lengths are in normalised units
    (the FOV radius is 1), so a bigger ``shape`` renders the same kind of object at a finer
    resolution; :func:`downsample` it for the matching coarse image. Ellipse indicators are averaged
    over ``supersample**ndim`` points per pixel.

    ``shape`` and the ints are static; ``key`` (and the float options) may be traced, so a dataset is
    one ``jax.vmap`` over keys, or, for thousands of images, ``jax.lax.map(f, keys, batch_size=256)``
    (vmap in chunks: bounded memory, and it ran 2000 images of 64 x 64 in ~5 s on 2 CPU cores).

    Args:
        key: a PRNG key; the phantom is a deterministic function of it.
        shape: (ny, nx) or (nz, ny, nx) (sciml.ct image conventions).
        count: number of ellipses, the body included (as :func:`random_ellipses`).
        texture: texture standard deviation relative to the body intensity (>= 0).
        smooth: amplitude of the smooth shading of each ellipse, in [0, 1).
        correlation: correlation length of the texture in normalised units (> 0).
        supersample: points per pixel per axis for the ellipse edges.
        dtype: float dtype (default: the backend's).

    Returns:
        A non-negative image of ``shape``.

    Raises:
        ValueError: a bad ``shape``, ``count``, ``supersample`` or an out-of-range float option.

    Example:
        >>> img = sciml.ct.textured_phantom(jax.random.key(0), (32, 32))
        >>> img.shape, bool(img.min() >= 0)
        ((32, 32), True)
        >>> # a dataset: jax.vmap(lambda k: sciml.ct.textured_phantom(k, (64, 64)))(keys)
    """
    ndim = len(shape) if isinstance(shape, (tuple, list)) else 0
    if ndim not in (2, 3):
        raise ValueError(f"`shape` must be (ny, nx) or (nz, ny, nx), got {shape!r}")
    shape = check_shape(shape, ndim, "shape")
    count = check_count(count, "count")
    supersample = check_count(supersample, "supersample")
    _scalar(texture, "texture", lambda v: v >= 0, "a number >= 0")
    _scalar(smooth, "smooth", lambda v: 0 <= v < 1, "a number in [0, 1)")
    _scalar(correlation, "correlation", lambda v: v > 0, "a number > 0")
    dt = backend.float_dtype(dtype)
    floats = [jnp.asarray(v, dt) for v in (texture, smooth, correlation)]
    return _textured_phantom(key, *floats, shape=shape, count=count, supersample=supersample, dt=dt)


@functools.partial(jax.jit, static_argnames=("shape", "count", "supersample", "dt"))
def _textured_phantom(key, texture, smooth, correlation, *, shape, count, supersample, dt):
    # jitted once per shape: new texture/smooth/correlation values are arguments, not constants
    ndim = len(shape)
    k_geom, k_poly, k_tex = jax.random.split(key, 3)
    ph = random_ellipses(k_geom, ndim=ndim, count=count, dtype=dt)
    # quadratic monomials of the body coordinates: b_j and b_j b_k (j <= k), each within [-1, 1]
    pairs = [(j, k) for j in range(ndim) for k in range(j, ndim)]
    coef = jax.random.uniform(k_poly, (count, ndim + len(pairs)), dt, -1.0, 1.0)
    coef = coef / jnp.sum(jnp.abs(coef), axis=-1, keepdims=True)  # so |f_i| <= 1 inside E_i

    half = min(shape[-2:]) / 2
    fine = tuple(s * supersample for s in shape)
    pts = _grid_points(fine, half * supersample, dt)
    img = support = jnp.zeros(pts.shape[0], dt)
    # A Python loop over the (static, few) ellipses: it compiled about twice as fast as a lax.scan
    # here, and its intermediates are (points, ndim) per ellipse, never (points, count).
    for i in range(count):
        b = ((pts - ph.centre[i]) @ ph.rotation[i]) / ph.axes[i]  # R^T (x - x_i) / s_i, row-wise
        inside = jnp.sum(b * b, axis=-1) <= 1.0
        mono = [b[:, j] for j in range(ndim)] + [b[:, j] * b[:, k] for j, k in pairs]
        f = sum(coef[i, m] * v for m, v in enumerate(mono))
        img = img + jnp.where(inside, ph.intensity[i] * (1.0 + smooth * f), 0.0)
        support = jnp.maximum(support, inside.astype(dt))
    img = downsample(img.reshape(fine), supersample)
    support = downsample(support.reshape(fine), supersample)
    t = _gaussian_field(k_tex, shape, half, correlation, dt)
    return jnp.maximum(img + (texture * ph.intensity[0]) * t * support, 0.0).astype(dt)


# --------------------------------------------------------------------------------------------------
# Simulated measurements
# --------------------------------------------------------------------------------------------------

_NOISE = ("gaussian", "poisson", None)


def _grid_factor(image_shape: tuple[int, ...], geometry: AbstractGeometry) -> int:
    core = geometry.image_shape
    if len(image_shape) != len(core) or any(s % c for s, c in zip(image_shape, core)) \
            or len({s // c for s, c in zip(image_shape, core)}) != 1:
        raise ValueError(
            f"`image` must have shape {core} or an integer multiple of it (the same factor on every "
            f"axis: a finer grid over the same field of view), got {image_shape}")
    return image_shape[0] // core[0]


def simulate(
    phantom: Ellipsoids | Float[Array, "*shape"],
    geometry: AbstractGeometry,
    *,
    key: PRNGKeyArray | None,
    noise: str | None = "gaussian",
    sigma: float | Float[Array, ""] = 0.01,
    photons: float | Float[Array, ""] = 1e4,
    mu_scale: float | Float[Array, ""] | None = None,
    upsample: int = 2,
) -> Float[Array, "*sinogram"]:
    r"""Simulated noisy measurements of ``phantom`` for ``geometry``, without the inverse crime.

    The noise-free line integrals ``p`` are

    * for an :class:`Ellipsoids` phantom: its exact line integrals (:meth:`Ellipsoids.project`);
    * for an image: the image on its own grid, which may be ``k`` times finer than
      ``geometry.image_shape`` (same field of view), taken as piecewise constant (each pixel
      replicated ``upsample**ndim`` times) and projected with ``refine(geometry, k * upsample)``.
      So even an image on the reconstruction grid (``k = 1``) is not projected by the
      reconstruction's own discrete model unless ``upsample=1``.

    Noise:

    * ``"gaussian"``: ``y = p + sigma * max|p| * n``, ``n ~ N(0, 1)`` i.i.d.
    * ``"poisson"``: photon counting with ``I_0`` = ``photons`` incident per bin,

      .. math:: N \sim \text{Poisson}(I_0 e^{-\mu p}),\qquad y = -\log(\max(N, 1) / I_0) / \mu,

      with ``mu`` = ``mu_scale``, so ``Var y ~= e^{\mu p} / (I_0 \mu^2)``. The default reads image
      values as attenuation relative to water (water = 1, as :func:`load_dicom` gives and random
      phantoms roughly are) and the field-of-view diameter as 20 cm: with ``mu_water ~= 0.2 / cm``
      (about 70 keV), ``mu = 4 / (2 R) = 2 / geometry.fov_radius``. A water path across the whole
      field of view then transmits ``e^-4 ~= 1.8 %`` of the photons, a typical body path 5-20 %.
    * ``None``: ``y = p`` (``key`` is not used and may be None).

    Args:
        phantom: an :class:`Ellipsoids` phantom, or a real floating image of shape
            ``k * geometry.image_shape`` for a positive int ``k``.
        geometry: from :func:`parallel_beam`, :func:`fan_beam` or :func:`cone_beam`.
        key: PRNG key for the noise.
        noise: ``"gaussian"``, ``"poisson"`` or None.
        sigma: Gaussian noise std relative to ``max |p|`` (>= 0).
        photons: incident photons per detector bin for Poisson noise (> 0).
        mu_scale: attenuation per unit of line integral for Poisson noise (> 0); None for the
            default above.
        upsample: extra refinement of the image grid for projecting images (ignored for phantoms).

    Returns:
        The sinogram, shape ``geometry.sinogram_shape``.

    Raises:
        TypeError: ``phantom`` is neither a phantom nor a real floating array, or ``geometry`` is
            not a geometry.
        ValueError: an image shape that is not a multiple of ``geometry.image_shape``, a phantom of
            the wrong dimension, an unknown ``noise``, ``sigma`` < 0, ``photons`` <= 0,
            ``mu_scale`` <= 0, a bad ``upsample``, or no ``key`` for a noisy simulation.

    Example:
        >>> g = sciml.ct.parallel_beam(np.linspace(0, np.pi, 30, endpoint=False), 48, (32, 32))
        >>> fine = sciml.ct.shepp_logan().image((64, 64))   # twice as fine as the geometry's grid
        >>> y = sciml.ct.simulate(fine, g, key=jax.random.key(1), noise="poisson", photons=1e4)
        >>> y.shape
        (30, 48)
    """
    check_geometry(geometry)
    if not (noise is None or (isinstance(noise, str) and noise in _NOISE)):
        raise ValueError(f"`noise` must be one of {list(_NOISE)}, got {noise!r}")
    _scalar(sigma, "sigma", lambda v: v >= 0, "a number >= 0 (relative to max |sinogram|)")
    _scalar(photons, "photons", lambda v: v > 0, "a number > 0 (incident photons per bin)")
    if mu_scale is not None:
        _scalar(mu_scale, "mu_scale", lambda v: v > 0, "a number > 0 or None")
    upsample = check_count(upsample, "upsample")
    if noise is not None and key is None:
        raise ValueError(f"`key` must be a PRNG key for noise={noise!r}, got None")

    if isinstance(phantom, Ellipsoids):
        p = phantom.project(geometry)
    else:
        image = check_float_array(phantom, name="image")
        factor = _grid_factor(image.shape, geometry)
        for axis in range(image.ndim):
            image = jnp.repeat(image, upsample, axis=axis)
        p = project(image, refine(geometry, factor * upsample))

    if noise is None:
        return p
    if noise == "gaussian":
        scale = sigma * jnp.max(jnp.abs(p))
        return p + scale.astype(p.dtype) * jax.random.normal(key, p.shape, p.dtype)
    mu = 2.0 / geometry.fov_radius if mu_scale is None else mu_scale
    mu = jnp.asarray(mu, p.dtype)
    i0 = jnp.asarray(photons, p.dtype)
    counts = jax.random.poisson(key, i0 * jnp.exp(-mu * p), p.shape).astype(p.dtype)
    return -jnp.log(jnp.maximum(counts, 1.0) / i0) / mu


# --------------------------------------------------------------------------------------------------
# Real data: DICOM
# --------------------------------------------------------------------------------------------------


def load_dicom(path: str | Path | None = None, *, shape: tuple[int, int] | None = None,
               dtype: Any = None) -> Float[Array, "ny nx"]:
    r"""A real CT slice as linear attenuation relative to water, masked to its field of view.

    Stored values are mapped to Hounsfield units with the file's rescale,
    ``HU = stored * RescaleSlope + RescaleIntercept``, then to attenuation relative to water,

    .. math:: \mu / \mu_\text{water} = \max(0,\ 1 + \text{HU} / 1000)

    (air 0, water 1, dense bone ~2-3), optionally resized to ``shape`` (linear interpolation with
    antialiasing, i.e. area averaging when shrinking), and set to zero outside the disc inscribed in
    the image (pixel centres more than ``min(ny, nx) / 2 - 1`` pixels from the centre), so that
    a parallel or fan geometry of that image shape sees the whole object.

    The default file is pydicom's bundled ``CT_small.dcm`` (128 x 128, a cropped slice through a
    vertebra): real anatomy, out of the distribution of the random phantoms.

    Args:
        path: a DICOM file; None for pydicom's ``CT_small.dcm``.
        shape: (ny, nx) to resize to; None keeps the stored size.
        dtype: float dtype (default: the backend's).

    Returns:
        The image, non-negative, of ``shape`` (or the stored size).

    Raises:
        ImportError: pydicom is not installed (``pip install "sciml[ct]"``).
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not DICOM, not a CT image (Modality != "CT"), has no pixel data,
            or is not a single 2D slice; or a bad ``shape``.

    Example:
        >>> img = sciml.ct.load_dicom(shape=(64, 64))
        >>> img.shape, bool(img.min() >= 0), bool(1.0 < img.max() < 3.0)
        ((64, 64), True, True)
    """
    _require("pydicom")
    import pydicom
    import pydicom.data
    import pydicom.errors

    if path is None:
        path = pydicom.data.get_testdata_file("CT_small.dcm")
        if path is None:
            raise FileNotFoundError("pydicom's test file CT_small.dcm was not found; pass `path`")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path`: no DICOM file at {str(path)!r}")
    if shape is not None:
        shape = check_shape(shape, 2, "shape")
    try:
        ds = pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError as e:
        raise ValueError(f"`path`: {str(path)!r} is not a DICOM file ({e})") from e
    modality = ds.get("Modality")
    if modality != "CT":
        raise ValueError(f"`path`: {str(path)!r} is not a CT image (Modality {modality!r}, expected 'CT')")
    if "PixelData" not in ds:
        raise ValueError(f"`path`: {str(path)!r} has no pixel data")
    stored = np.asarray(ds.pixel_array)
    if stored.ndim != 2:
        raise ValueError(f"`path`: {str(path)!r} holds an array of shape {stored.shape}; "
                         "expected a single 2D slice")
    slope = float(ds.get("RescaleSlope", 1.0))
    intercept = float(ds.get("RescaleIntercept", 0.0))
    hu = stored.astype(np.float64) * slope + intercept
    image = backend.as_array(np.maximum(1.0 + hu / 1000.0, 0.0), dtype, name="image")
    if shape is not None and shape != image.shape:
        image = jnp.maximum(jax.image.resize(image, shape, "linear", antialias=True), 0.0)
    ny, nx = image.shape
    y = np.arange(ny) - (ny - 1) / 2
    x = np.arange(nx) - (nx - 1) / 2
    inside = y[:, None] ** 2 + x[None, :] ** 2 <= (min(ny, nx) / 2 - 1) ** 2
    return jnp.where(jnp.asarray(inside), image, 0.0).astype(image.dtype)


# --------------------------------------------------------------------------------------------------
# Projection files
# --------------------------------------------------------------------------------------------------

_FORMAT_VERSION = 1
_GEOMETRY_FILE = "geometry.json"
_VIEW = re.compile(r"^proj_(\d+)\.(npy|tif|tiff)$")
_EXT = {"npy": "npy", "tiff": "tif"}
# type name -> (class, constructor, {json field / constructor keyword: geometry attribute}); the
# first two fields after the angles are the constructor's positional arguments.
_KINDS = {
    "parallel": (ParallelBeam, parallel_beam, {
        "detector_count": "detector_count", "image_shape": "image_shape",
        "detector_spacing": "detector_spacing", "detector_offset": "detector_offset",
        "pixel_size": "pixel_size"}),
    "fan": (FanBeam, fan_beam, {
        "detector_count": "detector_count", "image_shape": "image_shape",
        "source_origin": "source_origin", "origin_detector": "origin_detector",
        "detector_spacing": "detector_spacing", "pixel_size": "pixel_size"}),
    "cone": (ConeBeam, cone_beam, {
        "detector_shape": "detector_shape", "volume_shape": "image_shape",
        "source_origin": "source_origin", "origin_detector": "origin_detector",
        "detector_spacing": "detector_spacing", "voxel_size": "voxel_size"}),
}


# fields a file may omit (older files): the constructor's default applies
_OPTIONAL = {"parallel": ("projector",)}


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else np.asarray(v).tolist()


def _geometry_dict(geometry: AbstractGeometry) -> dict:
    for name, (cls, _, fields) in _KINDS.items():
        if type(geometry) is cls:
            d = {"version": _FORMAT_VERSION, "type": name,
                 "units": {"angles": "radians", "lengths": "one unit for every length (pixel_size's)"},
                 "angles": _jsonable(geometry.angles)}
            d.update({key: _jsonable(getattr(geometry, attr)) for key, attr in fields.items()})
            d.update({key: getattr(geometry, key) for key in _OPTIONAL.get(name, ())})
            return d
    raise TypeError(f"`geometry` must be a ParallelBeam, FanBeam or ConeBeam, got {type(geometry).__name__}")


def _geometry_from(d: Any, where: Path) -> AbstractGeometry:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
    version = d.get("version", _FORMAT_VERSION)
    if not isinstance(version, int) or version > _FORMAT_VERSION:
        raise ValueError(f"{where}: field 'version' is {version!r}; this sciml reads versions <= "
                         f"{_FORMAT_VERSION}")
    kind = d.get("type")
    if kind not in _KINDS:
        raise ValueError(f"{where}: field 'type' must be one of {list(_KINDS)}, got {kind!r}")
    _, make, fields = _KINDS[kind]
    missing = [k for k in ("angles", *fields) if k not in d]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing} for a {kind!r} geometry")
    try:
        return make(d["angles"], **{k: d[k] for k in fields},
                    **{k: d[k] for k in _OPTIONAL.get(kind, ()) if k in d})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: invalid {kind!r} geometry: {e}") from e


def save_projections(directory: str | Path, sinogram: Float[Array, "n_angles ..."],
                     geometry: AbstractGeometry, *, format: str = "npy", overwrite: bool = False) -> Path:
    """Write a sinogram as one file per view plus ``geometry.json`` (read back by :func:`load_projections`).

    Layout: ``proj_0000.npy``, ``proj_0001.npy``, ... (or ``.tif``), view ``i`` at ``angles[i]``,
    each of the detector's shape (a 2D geometry's row is written as a 1 x n TIFF); and
    ``geometry.json`` with ``"version"``, ``"type"`` (``"parallel"``, ``"fan"`` or ``"cone"``),
    ``"units"``, ``"angles"`` and the constructor's fields (detector count/shape, spacing, offset,
    distances, pixel/voxel size, image/volume shape), written last.

    Args:
        directory: the folder (created if missing).
        sinogram: real floating array of shape ``geometry.sinogram_shape``.
        geometry: the geometry it was measured with.
        format: ``"npy"`` or ``"tiff"`` (needs tifffile).
        overwrite: replace ``geometry.json`` and ``proj_*`` files already in ``directory``.

    Returns:
        The directory, as a :class:`pathlib.Path`.

    Raises:
        TypeError: ``sinogram`` is not real floating or ``geometry`` is not a geometry.
        ValueError: a sinogram shape other than ``geometry.sinogram_shape``, or an unknown ``format``.
        FileExistsError: ``directory`` already holds projections and ``overwrite`` is False.
        ImportError: ``format="tiff"`` without tifffile (``pip install "sciml[ct]"``).

    Example:
        >>> import tempfile
        >>> g = sciml.ct.parallel_beam(np.linspace(0, np.pi, 4, endpoint=False), 12, (8, 8))
        >>> d = sciml.ct.save_projections(tempfile.mkdtemp(), jnp.ones(g.sinogram_shape), g)
        >>> sorted(p.name for p in d.iterdir())[:2]
        ['geometry.json', 'proj_0000.npy']
    """
    sinogram = checked_data(sinogram, geometry, "sinogram_shape", "sinogram", batched=False)
    if format not in _EXT:
        raise ValueError(f"`format` must be one of {list(_EXT)}, got {format!r}")
    meta = _geometry_dict(geometry)
    tifffile = _require("tifffile") if format == "tiff" else None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    old = [p for p in directory.iterdir() if _VIEW.match(p.name) or p.name == _GEOMETRY_FILE]
    if old and not overwrite:
        raise FileExistsError(f"`directory` {str(directory)!r} already holds projections "
                              f"({old[0].name}, ...); pass overwrite=True to replace them")
    for p in old:
        p.unlink()
    views = np.asarray(sinogram)
    for i, view in enumerate(views):
        path = directory / f"proj_{i:04d}.{_EXT[format]}"
        if format == "npy":
            np.save(path, view)
        else:
            tifffile.imwrite(path, view[None] if view.ndim == 1 else view)
    meta["views"] = {"count": len(views), "format": format, "files": f"proj_%04d.{_EXT[format]}"}
    (directory / _GEOMETRY_FILE).write_text(json.dumps(meta, indent=1))
    return directory


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{path}: not a readable .npy array ({e})") from e
    return np.asarray(_require("tifffile").imread(path))


def load_projections(directory: str | Path, *,
                     dtype: Any = None) -> tuple[Float[Array, "n_angles ..."], AbstractGeometry]:
    """Read projection data and its geometry from a folder (the layout of :func:`save_projections`).

    The folder holds ``geometry.json`` and either one file per view, ``proj_<index>.npy`` /
    ``.tif`` / ``.tiff`` (sorted by index, which must run 0, 1, ..., n_angles - 1), or else exactly
    one stacked ``.npy`` / multi-page ``.tif`` of shape ``(n_angles, *detector)``. Views of a 2D
    geometry may be stored as 1 x n images.

    Args:
        directory: the folder.
        dtype: float dtype of the returned sinogram (default: the backend's).

    Returns:
        ``(sinogram, geometry)``, the sinogram of shape ``geometry.sinogram_shape``.

    Raises:
        FileNotFoundError: no ``directory``, no ``geometry.json`` in it, or no projection files.
        ValueError: ``geometry.json`` is not valid JSON, has an unknown ``type``, misses a field or
            describes an invalid geometry; the number of views differs from the number of angles,
            the view indices have gaps, a view's shape differs from the detector's, or several
            candidate stacked files.
        ImportError: TIFF files without tifffile (``pip install "sciml[ct]"``).

    Example:
        >>> import tempfile
        >>> g = sciml.ct.parallel_beam(np.linspace(0, np.pi, 4, endpoint=False), 12, (8, 8))
        >>> d = sciml.ct.save_projections(tempfile.mkdtemp(), jnp.ones(g.sinogram_shape), g)
        >>> y, g2 = sciml.ct.load_projections(d)
        >>> y.shape, g2.image_shape
        ((4, 12), (8, 8))
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"`directory`: no folder at {str(directory)!r}")
    meta_path = directory / _GEOMETRY_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"no {_GEOMETRY_FILE} in {str(directory)!r}: it must describe the "
                                "geometry (see sciml.ct.save_projections)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_path}: not valid JSON ({e})") from e
    geometry = _geometry_from(meta, meta_path)
    n, *detector = geometry.sinogram_shape
    detector = tuple(detector)

    def fit(view: np.ndarray, what: Path, expected: tuple[int, ...]) -> np.ndarray:
        if view.shape == expected:
            return view
        # a 2D geometry's views may be stored as 1 x n images (a stack as n_angles x 1 x n)
        if len(detector) == 1 and view.shape == (*expected[:-1], 1, detector[0]):
            return view.reshape(expected)
        raise ValueError(f"{what}: shape {view.shape}, but the geometry in {_GEOMETRY_FILE} needs "
                         f"{expected}")

    views = sorted(((int(m.group(1)), p) for p in directory.iterdir() if (m := _VIEW.match(p.name))),
                   key=lambda t: t[0])
    if views:
        if len(views) != n:
            raise ValueError(f"{str(directory)!r} holds {len(views)} proj_* files but {_GEOMETRY_FILE} "
                             f"has {n} angles")
        gaps = [i for i, (idx, _) in enumerate(views) if idx != i]
        if gaps:
            raise ValueError(f"{str(directory)!r}: the proj_* indices must run 0..{n - 1}; expected "
                             f"index {gaps[0]}, found {views[gaps[0]][1].name}")
        data = np.stack([fit(_read(p), p, detector) for _, p in views])
    else:
        stacks = sorted(p for p in directory.iterdir() if p.suffix in (".npy", ".tif", ".tiff"))
        if not stacks:
            raise FileNotFoundError(f"no projections in {str(directory)!r}: expected proj_0000.npy "
                                    "(or .tif), ... or one stacked .npy")
        if len(stacks) > 1:
            raise ValueError(f"{str(directory)!r}: several candidate stacked files "
                             f"{[p.name for p in stacks]}; keep one, or name the views proj_0000...")
        data = fit(_read(stacks[0]), stacks[0], (n, *detector))
    return backend.as_array(data, dtype, name="sinogram"), geometry
