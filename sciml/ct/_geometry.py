"""CT acquisition geometries: 2D parallel and fan beam, 3D cone beam on a circular orbit.

Coordinates (the ASTRA toolbox's, so that sinograms can be compared bin for bin):

* A 2D image ``img[row, col]`` of shape ``(ny, nx)`` has pixel centres
  ``x = (col - (nx - 1)/2) * pixel_size`` and ``y = ((ny - 1)/2 - row) * pixel_size``: x to the right,
  y up, the origin at the image centre.
* A 3D volume ``vol[slice, row, col]`` of shape ``(nz, ny, nx)`` adds ``z = (slice - (nz - 1)/2) *
  voxel_size``; every slice is a 2D image in the convention above, and the orbit is about the z axis.
* At angle ``theta`` the detector axis is ``e_u = (cos theta, sin theta)`` and rays travel along
  ``e_r = (-sin theta, cos theta)``. Parallel beam: bin k measures the line ``u_k e_u + t e_r`` with
  ``u_k = (k - (n - 1)/2) * detector_spacing + detector_offset``, so ``u = x cos theta + y sin theta``.
  Fan and cone beam: the source sits at ``-source_origin * e_r`` and the detector centre at
  ``+origin_detector * e_r``; cone-beam detector rows are along z, ``v_r = (r - (nr - 1)/2) *
  detector_spacing[0]``.
* Sinograms are ``(n_angles, detector_count)`` in 2D and ``(n_angles, detector_rows, detector_cols)``
  in 3D; values are line integrals in physical length units times the attenuation per unit length.

All lengths share one unit (the pixel size is 1 by default, so distances are in pixels). Angles are in
radians. Numbers are array leaves, so changing a distance or the angles does not recompile; shapes
and counts are static.
"""

from __future__ import annotations

import abc
import functools
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import backend


def _angles(angles: Any) -> Float[Array, " n"]:
    try:
        a = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`angles` must be a 1-D array of radians, got {type(angles).__name__}") from e
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"`angles` must be a non-empty 1-D array of radians, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("`angles` must be finite (radians); got NaN or inf")
    return backend.as_array(a, name="angles")


def _positive(value: Any, name: str) -> Float[Array, ""]:
    v = np.asarray(value, dtype=np.float64)
    if v.shape != () or not np.isfinite(v) or v <= 0:
        raise ValueError(f"`{name}` must be a finite scalar > 0, got {value!r}")
    return backend.as_array(v, name=name)


def _finite(value: Any, name: str) -> Float[Array, ""]:
    v = np.asarray(value, dtype=np.float64)
    if v.shape != () or not np.isfinite(v):
        raise ValueError(f"`{name}` must be a finite scalar, got {value!r}")
    return backend.as_array(v, name=name)


def check_shape(value: Any, ndim: int, name: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in value)
        ok = len(shape) == ndim and all(s >= 1 and s == v for s, v in zip(shape, value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be {ndim} positive ints, got {value!r}")
    return shape


def pixel_centres(geometry, dtype) -> tuple[Array, Array]:
    """Physical (x, y) of the pixel centres of a slice, each of shape (ny, nx), in ``dtype``."""
    ny, nx = geometry.image_shape[-2:]
    px = geometry.voxel.astype(dtype)
    x = (jnp.arange(nx, dtype=dtype) - (nx - 1) / 2) * px
    y = ((ny - 1) / 2 - jnp.arange(ny, dtype=dtype)) * px
    return tuple(jnp.meshgrid(y, x, indexing="ij")[::-1])  # X, Y


def in_dtype(geometry, dtype):
    """``geometry`` with its numbers cast to ``dtype``: the projector and FBP compute the rays in
    the data's dtype, so a float64 image is not projected along float32 rays (and the transpose,
    compiled apart, is still exact to the data's rounding)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a,
                        geometry)


# the projector discretisations (see sciml.ct._projector); "strip" is for 2D parallel beam only
PROJECTORS = ("joseph", "strip")


def check_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return int(value)


class AbstractGeometry(eqx.Module):
    """A CT acquisition: the rays of every view, and the shapes of the image and the sinogram.

    Subclasses give :meth:`rays`, the rays of one view as (origins, unit directions) in physical
    coordinates; the projector (:func:`sciml.ct.project`) integrates the image along them.
    """

    angles: eqx.AbstractVar[Float[Array, " n_angles"]]
    image_shape: eqx.AbstractVar[tuple[int, ...]]
    # the projector's discretisation: "joseph" (ASTRA's 'linear'), or "strip" (2D parallel beam)
    projector: eqx.AbstractVar[str]

    @property
    @abc.abstractmethod
    def sinogram_shape(self) -> tuple[int, ...]:
        """Shape of the measured data: (n_angles, detector bins...)."""

    @property
    @abc.abstractmethod
    def voxel(self) -> Float[Array, ""]:
        """Pixel/voxel edge length (the same along every axis)."""

    @abc.abstractmethod
    def rays(self, angle: Float[Array, ""]) -> tuple[Float[Array, "rays dim"], Float[Array, "rays dim"]]:
        """Origins and unit directions of the rays of the view at ``angle`` (detector order)."""

    @property
    def ndim(self) -> int:
        return len(self.image_shape)

    @property
    def fov_radius(self) -> float:
        """Radius of the circle (cylinder) inscribed in the image: the reconstructable field of view."""
        return 0.5 * min(self.image_shape[-2:]) * float(self.voxel)


def check_geometry(geometry: Any, *, ndim: int | None = None, what: str = "this") -> None:
    """``geometry`` must be a sciml.ct geometry (of ``ndim`` dimensions when given)."""
    if not isinstance(geometry, AbstractGeometry):
        raise TypeError(
            "`geometry` must be a sciml.ct geometry (parallel_beam, fan_beam or cone_beam), got "
            f"{type(geometry).__name__}"
        )
    if ndim is not None and geometry.ndim != ndim:
        raise ValueError(f"{what} needs a {ndim}D geometry, got {type(geometry).__name__} with "
                         f"image shape {geometry.image_shape}")


class _AbstractBeam2D(AbstractGeometry):
    """A 2D geometry: one row of ``detector_count`` bins, square pixels of ``pixel_size``."""

    pixel_size: eqx.AbstractVar[Float[Array, ""]]
    detector_count: eqx.AbstractVar[int]

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        return (self.angles.shape[0], self.detector_count)

    @property
    def voxel(self):
        return self.pixel_size


def _u(count: int, spacing, offset=0.0):
    return (jnp.arange(count, dtype=spacing.dtype) - (count - 1) / 2) * spacing + offset


def _frame(angle):
    c, s = jnp.cos(angle), jnp.sin(angle)
    return jnp.stack([c, s]), jnp.stack([-s, c])  # e_u, e_r


class ParallelBeam(_AbstractBeam2D):
    """2D parallel beam (see the module docstring for the coordinates); build with :func:`parallel_beam`."""

    angles: Float[Array, " n_angles"]
    detector_spacing: Float[Array, ""]
    detector_offset: Float[Array, ""]
    pixel_size: Float[Array, ""]
    detector_count: int = eqx.field(static=True)
    image_shape: tuple[int, int] = eqx.field(static=True)
    projector: str = eqx.field(static=True)
    # "strip": how many detector bins one pixel's footprint can touch (ceil(sqrt 2 px / spacing) + 1)
    strip_bins: int = eqx.field(static=True)

    def rays(self, angle):
        e_u, e_r = _frame(angle)
        u = _u(self.detector_count, self.detector_spacing, self.detector_offset)
        return u[:, None] * e_u, jnp.broadcast_to(e_r, (self.detector_count, 2))


class FanBeam(_AbstractBeam2D):
    """2D fan beam with a flat detector; build with :func:`fan_beam`."""

    angles: Float[Array, " n_angles"]
    source_origin: Float[Array, ""]
    origin_detector: Float[Array, ""]
    detector_spacing: Float[Array, ""]
    pixel_size: Float[Array, ""]
    detector_count: int = eqx.field(static=True)
    image_shape: tuple[int, int] = eqx.field(static=True)

    projector: ClassVar[str] = "joseph"

    def rays(self, angle):
        e_u, e_r = _frame(angle)
        src = -self.source_origin * e_r
        det = self.origin_detector * e_r + _u(self.detector_count, self.detector_spacing)[:, None] * e_u
        d = det - src
        d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
        return jnp.broadcast_to(src, d.shape), d


class ConeBeam(AbstractGeometry):
    """3D cone beam, circular orbit about z, flat detector; build with :func:`cone_beam`."""

    angles: Float[Array, " n_angles"]
    source_origin: Float[Array, ""]
    origin_detector: Float[Array, ""]
    detector_spacing: Float[Array, "2"]
    voxel_size: Float[Array, ""]
    detector_shape: tuple[int, int] = eqx.field(static=True)
    image_shape: tuple[int, int, int] = eqx.field(static=True)

    @property
    def sinogram_shape(self) -> tuple[int, int, int]:
        return (self.angles.shape[0], *self.detector_shape)

    @property
    def voxel(self):
        return self.voxel_size

    projector: ClassVar[str] = "joseph"

    def rays(self, angle):
        e_u, e_r = _frame(angle)
        zero = jnp.zeros((), e_u.dtype)
        e_u3, e_r3 = jnp.append(e_u, zero), jnp.append(e_r, zero)
        rows, cols = self.detector_shape
        v = _u(rows, self.detector_spacing[0])
        u = _u(cols, self.detector_spacing[1])
        src = -self.source_origin * e_r3
        det = (self.origin_detector * e_r3 + u[None, :, None] * e_u3
               + v[:, None, None] * jnp.array([0.0, 0.0, 1.0], e_u.dtype))
        d = (det - src).reshape(rows * cols, 3)
        d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
        return jnp.broadcast_to(src, d.shape), d


# --------------------------------------------------------------------------------------------------
# Constructors (the validated public entry points)
# --------------------------------------------------------------------------------------------------


def _check_fan_cover(half_width, sod, odd, radius, what: str) -> None:
    """The detector must see the whole field of view: the ray tangent to the FOV circle from the
    source lands at u = R * SDD / sqrt(SOD^2 - R^2) on the detector."""
    need = radius * (sod + odd) / math.sqrt(sod * sod - radius * radius)
    if half_width < need * (1 - 1e-6):
        raise ValueError(
            f"the detector is too small to cover the object: `{what}` spans +-{half_width:g}, but rays "
            f"through the field of view (radius {radius:g}) reach +-{need:.4g} on the detector; use "
            f"more detector bins or a larger spacing"
        )


def _eager(constructor):
    """Build geometries eagerly even inside a jit trace: their validation needs concrete numbers,
    and a geometry made from Python/NumPy values inside ``jax.jit`` is a constant anyway."""

    @functools.wraps(constructor)
    def wrapper(*args, **kwargs):
        with jax.ensure_compile_time_eval():
            return constructor(*args, **kwargs)

    return wrapper


@_eager
def parallel_beam(angles, detector_count: int, image_shape, *, detector_spacing=1.0, pixel_size=1.0,
                  detector_offset=0.0, projector: str = "joseph") -> ParallelBeam:
    """2D parallel-beam geometry.

    Args:
        angles: projection angles in radians, shape (n_angles,).
        detector_count: number of detector bins.
        image_shape: (ny, nx) of the image to reconstruct.
        detector_spacing: bin width, in the length unit of ``pixel_size`` (default 1 = one pixel).
        pixel_size: pixel edge length (default 1).
        detector_offset: shift of the detector centre along e_u (default 0).
        projector: the discretisation of :func:`project` -- ``"joseph"`` (line integrals with linear
            interpolation; ASTRA's ``linear``) or ``"strip"`` (pixel-strip intersection areas over
            the bin width; ASTRA's ``strip``).

    Returns:
        A :class:`ParallelBeam`.

    Raises:
        ValueError: empty or non-finite angles, non-positive sizes, a detector narrower than the
            image's inscribed circle (the field of view), or an unknown ``projector``.

    Example:
        >>> import numpy as np, sciml
        >>> g = sciml.ct.parallel_beam(np.linspace(0, np.pi, 60, endpoint=False), 92, (64, 64))
        >>> g.sinogram_shape
        (60, 92)
    """
    if projector not in PROJECTORS:
        raise ValueError(f"`projector` must be one of {sorted(PROJECTORS)}, got {projector!r}")
    spacing, px = _positive(detector_spacing, "detector_spacing"), _positive(pixel_size, "pixel_size")
    g = ParallelBeam(
        angles=_angles(angles), detector_spacing=spacing,
        detector_offset=_finite(detector_offset, "detector_offset"), pixel_size=px,
        detector_count=check_count(detector_count, "detector_count"),
        image_shape=check_shape(image_shape, 2, "image_shape"), projector=projector,
        strip_bins=math.ceil(math.sqrt(2) * float(px) / float(spacing) * (1 + 1e-6)) + 1
        if projector == "strip" else 0,
    )
    half = 0.5 * g.detector_count * float(g.detector_spacing)
    lo, hi = -half + float(g.detector_offset), half + float(g.detector_offset)
    sp = float(g.detector_spacing)
    if lo > -g.fov_radius * (1 + 1e-6) + 0.5 * sp or hi < g.fov_radius * (1 - 1e-6) - 0.5 * sp:
        raise ValueError(
            f"the detector is too small to cover the object: `detector_count` * `detector_spacing` "
            f"spans [{lo:g}, {hi:g}] but the field of view (the image's inscribed circle) has radius "
            f"{g.fov_radius:g}; use detector_count >= {math.ceil(2 * g.fov_radius / sp)}"
        )
    return g


def _source_distances(source_origin, origin_detector, radius_needed: float):
    sod = _positive(source_origin, "source_origin")
    odd = _positive(origin_detector, "origin_detector")
    if float(sod) <= radius_needed:
        raise ValueError(
            f"`source_origin`={float(sod):g} puts the source inside the image (its corners are "
            f"{radius_needed:g} from the rotation axis); it must be larger"
        )
    return sod, odd


@_eager
def fan_beam(angles, detector_count: int, image_shape, *, source_origin, origin_detector,
             detector_spacing=1.0, pixel_size=1.0) -> FanBeam:
    """2D fan-beam geometry with a flat detector.

    Args:
        angles: source angles in radians, shape (n_angles,) (a full scan needs pi + fan angle).
        detector_count: number of detector bins.
        image_shape: (ny, nx).
        source_origin: distance from the source to the rotation axis (> the image half-diagonal).
        origin_detector: distance from the rotation axis to the detector.
        detector_spacing: bin width at the detector (default 1, the unit of ``pixel_size``).
        pixel_size: pixel edge length (default 1).

    Returns:
        A :class:`FanBeam`.

    Raises:
        ValueError: bad angles or sizes, the source inside the image, or a detector too small to
            cover the field of view.

    Example:
        >>> import numpy as np, sciml
        >>> g = sciml.ct.fan_beam(np.linspace(0, 2 * np.pi, 90, endpoint=False), 128, (64, 64),
        ...                       source_origin=128.0, origin_detector=64.0)
        >>> g.sinogram_shape
        (90, 128)
    """
    shape = check_shape(image_shape, 2, "image_shape")
    px = _positive(pixel_size, "pixel_size")
    sod, odd = _source_distances(source_origin, origin_detector,
                                 0.5 * math.hypot(*shape) * float(px))
    g = FanBeam(angles=_angles(angles), source_origin=sod, origin_detector=odd,
                detector_spacing=_positive(detector_spacing, "detector_spacing"), pixel_size=px,
                detector_count=check_count(detector_count, "detector_count"), image_shape=shape)
    _check_fan_cover(0.5 * g.detector_count * float(g.detector_spacing), float(sod), float(odd),
                     g.fov_radius, "detector_count * detector_spacing")
    return g


@_eager
def cone_beam(angles, detector_shape, volume_shape, *, source_origin, origin_detector,
              detector_spacing=(1.0, 1.0), voxel_size=1.0) -> ConeBeam:
    """3D cone-beam geometry: circular source orbit about z, flat detector.

    Args:
        angles: source angles in radians, shape (n_angles,).
        detector_shape: (rows, cols) of the detector; rows run along z.
        volume_shape: (nz, ny, nx).
        source_origin: source-to-axis distance (> the half-diagonal of a slice).
        origin_detector: axis-to-detector distance.
        detector_spacing: (row, col) pixel pitch at the detector, or one number for both (default 1).
        voxel_size: voxel edge length (default 1).

    Returns:
        A :class:`ConeBeam`.

    Raises:
        ValueError: bad angles or sizes, the source inside the volume, a detector too small to cover
            the field of view, or a cone so wide (half-angle >= 45 degrees along z) that rays would
            cross slices faster than columns.

    Example:
        >>> import numpy as np, sciml
        >>> g = sciml.ct.cone_beam(np.linspace(0, 2 * np.pi, 16, endpoint=False), (48, 64), (32, 32, 32),
        ...                        source_origin=96.0, origin_detector=32.0)
        >>> g.sinogram_shape
        (16, 48, 64)
    """
    vshape = check_shape(volume_shape, 3, "volume_shape")
    dshape = check_shape(detector_shape, 2, "detector_shape")
    vs = _positive(voxel_size, "voxel_size")
    sp = np.broadcast_to(np.asarray(detector_spacing, dtype=np.float64), (2,)) \
        if np.ndim(detector_spacing) <= 1 else None
    if sp is None or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"`detector_spacing` must be one or two finite numbers > 0, got "
                         f"{detector_spacing!r}")
    sod, odd = _source_distances(source_origin, origin_detector,
                                 0.5 * math.hypot(*vshape[1:]) * float(vs))
    g = ConeBeam(angles=_angles(angles), source_origin=sod, origin_detector=odd,
                 detector_spacing=backend.as_array(sp, name="detector_spacing"), voxel_size=vs,
                 detector_shape=dshape, image_shape=vshape)
    _check_fan_cover(0.5 * dshape[1] * sp[1], float(sod), float(odd), g.fov_radius,
                     "detector cols * detector_spacing[1]")
    # The projector steps plane by plane along x or y; a ray must never be steeper in z than in the
    # steeper of x and y, which holds for every ray when tan(half cone angle) <= 1/sqrt(2).
    half_v, sdd = 0.5 * dshape[0] * sp[0], float(sod + odd)
    if half_v > sdd / math.sqrt(2):
        raise ValueError(
            f"the cone is too wide: detector rows span +-{half_v:g} at distance {sdd:g} from the "
            f"source; the projector needs rows * spacing / 2 <= {sdd / math.sqrt(2):.4g} "
            "(half cone angle <= 35.3 degrees)"
        )
    return g
