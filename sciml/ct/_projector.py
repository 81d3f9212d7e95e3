r"""The forward projector A and the back-projector A^T (its exact transpose).

Two discretisations, chosen by the geometry's ``projector`` (ASTRA's names in brackets):

* ``"joseph"`` (ASTRA ``linear``; every geometry) -- Joseph's method, below.
* ``"strip"`` (ASTRA ``strip``; 2D parallel beam) -- the area of intersection of each pixel with
  each detector bin's strip, divided by the bin width: a pixel's footprint on the detector is the
  trapezoid that a uniform square projects to, and its weight in a bin is the trapezoid's mass over
  the bin, in closed form (see :func:`_trapezoid_cdf`). The model of a detector that integrates over
  its bin width; it differs from Joseph's by ~0.5% on smooth images and is the one ASTRA's
  ``strip`` SIRT/CGLS use.

Joseph (1982), "An improved algorithm for reprojecting rays through pixel images", IEEE TMI 1(3):
a ray is cut by the planes of pixel centres along the axis it crosses fastest (x or y); at each
cut the image is interpolated linearly between the two neighbouring pixels (bilinearly between
four voxels in 3D), and the samples are summed with the step length ``pixel / |d_axis|`` between
planes. This is ASTRA's ``linear`` projector for 2D parallel and fan beams. Outside the image the
image is zero (the interpolation fades to zero over the half pixel at the border).

The back-projector is ``jax.linear_transpose`` of the projector, so it is the adjoint to float
rounding (<A x, y> = <x, A^T y>), not an approximation of it; both are linear, jit-compiled,
differentiable and batched over leading axes.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_float_array
from ._geometry import AbstractGeometry, check_geometry, in_dtype, pixel_centres

# Interpolation samples (rays x planes) per chunk of views: bounds memory for 3D geometries.
_SAMPLES_PER_CHUNK = 1 << 22


def _lerp(c, n):
    """Padded index i0 (zeros at 0 and n + 1) and weight w: value = (1 - w) P[i0] + w P[i0 + 1]."""
    cp = jnp.clip(c + 1.0, 0.0, n + 1.0)
    i0 = jnp.clip(jnp.floor(cp), 0, n)
    return i0.astype(jnp.int32), cp - i0


def _take(flat, idx):
    return flat.at[idx].get(mode="promise_in_bounds")


def _along(padded, shape, px, o, d, axis: int):
    """Sum over the planes normal to ``axis`` (0: x, 1: y) of the interpolated image, for rays
    (o, d) of shape (R, D); returns (R,) line integrals (valid where ``axis`` is dominant)."""
    nx, ny = shape[-1], shape[-2]
    n = nx if axis == 0 else ny
    dd = d[:, axis]
    safe = jnp.where(dd == 0, jnp.ones_like(dd), dd)
    k = jnp.arange(n, dtype=o.dtype)
    # physical coordinate of plane k along the axis (y runs downwards in rows)
    plane = (k - (n - 1) / 2) * px if axis == 0 else ((n - 1) / 2 - k) * px
    t = (plane[None, :] - o[:, axis:axis + 1]) / safe[:, None]
    other = 1 - axis
    q = o[:, other:other + 1] + t * d[:, other:other + 1]
    sx = nx + 2
    if axis == 0:  # cut at column k: interpolate along rows
        i0, w = _lerp((ny - 1) / 2 - q / px, ny)
        base, step = i0 * sx + (k.astype(jnp.int32) + 1)[None, :], sx
    else:  # cut at row k: interpolate along columns
        j0, w = _lerp(q / px + (nx - 1) / 2, nx)
        base, step = (k.astype(jnp.int32) + 1)[None, :] * sx + j0, 1
    flat = padded.reshape(-1)
    if len(shape) == 2:
        v = (1 - w) * _take(flat, base) + w * _take(flat, base + step)
    else:
        nz = shape[0]
        z = o[:, 2:3] + t * d[:, 2:3]
        k0, wz = _lerp(z / px + (nz - 1) / 2, nz)
        sz = (ny + 2) * sx
        b0 = base + k0 * sz
        v = ((1 - wz) * ((1 - w) * _take(flat, b0) + w * _take(flat, b0 + step))
             + wz * ((1 - w) * _take(flat, b0 + sz) + w * _take(flat, b0 + sz + step)))
    return v.sum(axis=1) * (px / jnp.abs(safe))


def _trapezoid_cdf(t, hi, lo):
    """CDF at ``t`` of the sum of uniforms on [-hi, hi] and [-lo, lo] (hi >= lo >= 0): the mass of
    a pixel's footprint left of ``t``. Written piecewise so that lo -> 0 (a box) stays exact."""
    lo_safe = jnp.maximum(lo, jnp.finfo(t.dtype).tiny ** 0.5)
    a, b = hi + lo, hi - lo
    rise = jnp.square(jnp.clip(t + a, 0.0, 2 * lo)) / (8 * hi * lo_safe)
    fall = 1 - jnp.square(jnp.clip(a - t, 0.0, 2 * lo)) / (8 * hi * lo_safe)
    middle = 0.5 + t / (2 * hi)
    return jnp.where(t <= -b, rise, jnp.where(t < b, middle, fall))


def _strip_project_one(image, geometry):
    """Pixel-driven strip-area projection of one 2D image (parallel beam): each pixel adds its
    footprint's mass over the ``geometry.strip_bins`` bins it can touch (a scatter-add; the
    back-projection, its transpose, is a gather)."""
    ny, nx = geometry.image_shape
    dt = image.dtype
    px = geometry.pixel_size.astype(dt)
    w = geometry.detector_spacing.astype(dt)
    n = geometry.detector_count
    X, Y = pixel_centres(geometry, dt)
    edge0 = -0.5 * n * w + geometry.detector_offset.astype(dt)  # left edge of bin 0
    j = jnp.arange(geometry.strip_bins, dtype=jnp.int32)

    def view(angle):
        c, s = jnp.cos(angle.astype(dt)), jnp.sin(angle.astype(dt))
        uc = (X * c + Y * s).reshape(-1)
        ac, as_ = 0.5 * px * jnp.abs(c), 0.5 * px * jnp.abs(s)
        hi, lo = jnp.maximum(ac, as_), jnp.minimum(ac, as_)
        # the bins a footprint can touch were counted at construction; a spacing changed since
        # (e.g. with eqx.tree_at) could need more
        span = eqx.error_if(2 * (hi + lo), 2 * (hi + lo) > (geometry.strip_bins - 1) * w,
                            "strip projector: a pixel footprint spans more detector bins than "
                            "geometry.strip_bins; rebuild the geometry with parallel_beam(...)")
        first = jnp.floor((uc - 0.5 * span - edge0) / w).astype(jnp.int32)
        bins = first[:, None] + j[None, :]
        left = edge0 + bins.astype(dt) * w - uc[:, None]
        mass = _trapezoid_cdf(left + w, hi, lo) - _trapezoid_cdf(left, hi, lo)
        valid = (bins >= 0) & (bins < n)
        weight = jnp.where(valid, mass, 0.0) * (px * px / w)
        vals = weight * image.reshape(-1)[:, None]
        return jnp.zeros(n, dt).at[jnp.clip(bins, 0, n - 1)].add(vals)

    batch = max(1, min(geometry.angles.shape[0], _SAMPLES_PER_CHUNK // (nx * ny * geometry.strip_bins)))
    return jax.lax.map(view, geometry.angles, batch_size=batch)


def _joseph_project_one(image: Float[Array, "..."], geometry: AbstractGeometry):
    shape = geometry.image_shape
    padded = jnp.pad(image, 1)
    px = geometry.voxel.astype(image.dtype)

    def view(angle):
        o, d = geometry.rays(angle.astype(image.dtype))
        o, d = o.astype(image.dtype), d.astype(image.dtype)
        x_major = jnp.abs(d[:, 0]) >= jnp.abs(d[:, 1])
        sx = _along(padded, shape, px, o, d, 0)
        sy = _along(padded, shape, px, o, d, 1)
        return jnp.where(x_major, sx, sy).reshape(geometry.sinogram_shape[1:])

    samples = (shape[-1] + shape[-2]) * math.prod(geometry.sinogram_shape[1:])
    batch = max(1, min(geometry.angles.shape[0], _SAMPLES_PER_CHUNK // samples))
    return jax.lax.map(view, geometry.angles, batch_size=batch)


# the geometry's ``projector`` (validated by its constructor) -> the kernel projecting one image
_KERNELS = {"joseph": _joseph_project_one, "strip": _strip_project_one}


def _project_one(image: Float[Array, "..."], geometry: AbstractGeometry):
    return _KERNELS[geometry.projector](image, in_dtype(geometry, image.dtype))


def checked_data(x, geometry, shape_attr: str, name: str, *, batched: bool = True):
    """``x`` as a real floating array whose trailing axes are the geometry's ``shape_attr``
    (``"image_shape"`` or ``"sinogram_shape"``; exactly that shape when not ``batched``), for a
    valid ``geometry``; errors name ``name``."""
    check_geometry(geometry)
    core = getattr(geometry, shape_attr)
    x = check_float_array(x, name=name)
    n = len(core)
    if x.ndim < n or x.shape[x.ndim - n:] != core or (not batched and x.ndim != n):
        batch = f" (or (*batch, {', '.join(map(str, core))}))" if batched else ""
        raise ValueError(f"`{name}` must have shape {core}{batch} for this geometry, got {x.shape}")
    return x


def _batched(fn, x, core_ndim: int):
    """Apply ``fn`` to the trailing ``core_ndim`` axes of ``x``, vmapped over the leading ones."""
    for _ in range(x.ndim - core_ndim):
        fn = jax.vmap(fn)
    return fn(x)


def project(image: Float[Array, "*batch ..."], geometry: AbstractGeometry) -> Float[Array, "..."]:
    """Forward projection: line integrals of ``image`` along the rays of ``geometry``.

    Args:
        image: real floating array of shape ``geometry.image_shape``, or with leading batch axes
            (e.g. a stack of slices), each projected independently.
        geometry: from :func:`parallel_beam`, :func:`fan_beam` or :func:`cone_beam`.

    Returns:
        The sinogram, shape ``(*batch, *geometry.sinogram_shape)``, in the image's dtype.

    Raises:
        TypeError: ``image`` is not real floating, or ``geometry`` is not a geometry.
        ValueError: the trailing axes of ``image`` do not match ``geometry.image_shape``.

    Example:
        >>> import numpy as np, jax.numpy as jnp, sciml
        >>> g = sciml.ct.parallel_beam(np.array([0.0, np.pi / 2]), 8, (4, 4))
        >>> sino = sciml.ct.project(jnp.ones((4, 4)), g)   # every central ray crosses 4 pixels
        >>> float(sino[0, 3]), float(sino[1, 4])
        (4.0, 4.0)
    """
    image = checked_data(image, geometry, "image_shape", "image")
    return _batched(lambda im: _project_one(im, geometry), image, geometry.ndim)


def backproject(sinogram: Float[Array, "*batch ..."], geometry: AbstractGeometry) -> Float[Array, "..."]:
    """Back-projection A^T y: the exact adjoint of :func:`project` (its linear transpose).

    Args:
        sinogram: real floating array of shape ``geometry.sinogram_shape`` (or with leading
            batch axes).
        geometry: the geometry the data was measured with.

    Returns:
        An image of shape ``(*batch, *geometry.image_shape)``.

    Raises:
        TypeError: ``sinogram`` is not real floating, or ``geometry`` is not a geometry.
        ValueError: the trailing axes of ``sinogram`` do not match ``geometry.sinogram_shape``.

    Example:
        >>> import numpy as np, jax, jax.numpy as jnp, sciml
        >>> g = sciml.ct.parallel_beam(np.linspace(0, np.pi, 12, endpoint=False), 24, (16, 16))
        >>> x = jax.random.normal(jax.random.key(0), (16, 16))
        >>> y = jax.random.normal(jax.random.key(1), g.sinogram_shape)
        >>> lhs = jnp.vdot(sciml.ct.project(x, g), y)
        >>> rhs = jnp.vdot(x, sciml.ct.backproject(y, g))
        >>> bool(abs(lhs - rhs) <= 1e-5 * abs(lhs))
        True
    """
    sinogram = checked_data(sinogram, geometry, "sinogram_shape", "sinogram")

    def one(y):
        primal = jax.ShapeDtypeStruct(geometry.image_shape, y.dtype)
        (x,) = jax.linear_transpose(lambda im: _project_one(im, geometry), primal)(y)
        return x

    return _batched(one, sinogram, len(geometry.sinogram_shape))
