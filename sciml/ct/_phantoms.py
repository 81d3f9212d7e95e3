r"""Phantoms made of ellipses (2D) or ellipsoids (3D), with exact line integrals.

A phantom is a sum of ellipsoids, each with an intensity (attenuation per unit length), a centre, its
semi-axes and a rotation. Coordinates are normalised: the phantom lives in the unit disc / ball,
which is mapped onto the field of view of an image (radius ``min(ny, nx) / 2 * pixel_size``).

Two ways to get data from it, which is what avoids the "inverse crime" (simulating and
reconstructing with the same discrete model):

* :meth:`Ellipsoids.image` rasterises it, averaging ``supersample**ndim`` points per pixel;
* :meth:`Ellipsoids.project` gives its *exact* line integrals along the rays of any geometry: a
  ray o + t d meets an ellipsoid (centre c, semi-axes s, rotation R) where the unit sphere meets
  o' + t d' with o' = R^T (o - c) / s and d' = R^T d / s, so the chord length is
  2 sqrt((o'.d')^2 - |d'|^2 (|o'|^2 - 1)) / |d'|^2.

Shepp and Logan (1974), "The Fourier reconstruction of a head section", IEEE TNS 21; the
"modified" contrasts of Toft (1996), as in scikit-image and ODL; the 3D version of Kak and Slaney
(1988), "Principles of Computerized Tomographic Imaging", Table 3.1, with Toft's contrasts.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import backend
from ._geometry import AbstractGeometry, check_count, check_geometry, check_shape

# (intensity, a, b, x0, y0, phi in degrees): modified Shepp-Logan (Toft 1996).
_SL2D = np.array([
    [1.0, 0.69, 0.92, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0],
    [-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0],
    [-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0],
    [0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0],
    [0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0],
    [0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0],
    [0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0],
    [0.1, 0.0230, 0.0230, 0.0, -0.606, 0.0],
    [0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0],
])
# (intensity, a, b, c, x0, y0, z0, phi in degrees about z): Kak & Slaney 3D, Toft's contrasts.
_SL3D = np.array([
    [1.0, 0.69, 0.92, 0.90, 0.0, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.874, 0.88, 0.0, 0.0, 0.0, 0.0],
    [-0.2, 0.11, 0.31, 0.22, 0.22, 0.0, -0.25, -18.0],
    [-0.2, 0.16, 0.41, 0.21, -0.22, 0.0, -0.25, 18.0],
    [0.1, 0.21, 0.25, 0.35, 0.0, 0.35, -0.25, 0.0],
    [0.1, 0.046, 0.046, 0.046, 0.0, 0.1, -0.25, 0.0],
    [0.1, 0.046, 0.046, 0.02, 0.0, -0.1, -0.25, 0.0],
    [0.1, 0.046, 0.023, 0.02, -0.08, -0.605, -0.25, 0.0],
    [0.1, 0.023, 0.023, 0.02, 0.0, -0.606, -0.25, 0.0],
    [0.1, 0.023, 0.046, 0.02, 0.06, -0.605, -0.25, 0.0],
])


def _rot_z(phi, ndim):
    c, s = jnp.cos(phi), jnp.sin(phi)
    r2 = jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2)
    if ndim == 2:
        return r2
    n = phi.shape[0]
    r = jnp.zeros((n, 3, 3), phi.dtype).at[:, :2, :2].set(r2)
    return r.at[:, 2, 2].set(1.0)


class Ellipsoids(eqx.Module):
    """A phantom: a sum of ``n`` ellipses (ndim=2) or ellipsoids (ndim=3) in normalised coordinates.

    Attributes:
        intensity: (n,) value added inside each ellipsoid.
        centre: (n, ndim) centres, (x, y[, z]).
        axes: (n, ndim) semi-axes along the rotated x, y[, z] axes (> 0).
        rotation: (n, ndim, ndim) rotation matrices (body frame -> world frame).
    """

    intensity: Float[Array, " n"]
    centre: Float[Array, "n ndim"]
    axes: Float[Array, "n ndim"]
    rotation: Float[Array, "n ndim ndim"]

    def __check_init__(self):
        n, d = self.centre.shape
        if d not in (2, 3) or self.axes.shape != (n, d) or self.intensity.shape != (n,) \
                or self.rotation.shape != (n, d, d):
            raise ValueError(
                "Ellipsoids needs intensity (n,), centre (n, d), axes (n, d), rotation (n, d, d) "
                f"with d in (2, 3); got {self.intensity.shape}, {self.centre.shape}, "
                f"{self.axes.shape}, {self.rotation.shape}")

    @property
    def ndim(self) -> int:
        return self.centre.shape[1]

    def values(self, points: Float[Array, "... ndim"]) -> Float[Array, "..."]:
        """The phantom at normalised points (last axis: x, y[, z])."""
        q = jnp.einsum("nji,...nj->...ni", self.rotation, points[..., None, :] - self.centre)
        inside = jnp.sum((q / self.axes) ** 2, axis=-1) <= 1.0
        return jnp.sum(jnp.where(inside, self.intensity, 0.0), axis=-1)

    def image(self, shape, *, supersample: int = 4, dtype=None) -> Float[Array, "..."]:
        """Rasterise onto an image of ``shape`` ((ny, nx) or (nz, ny, nx), sciml.ct conventions):
        each pixel is the mean over a ``supersample``-per-axis grid of points inside it."""
        shape = check_shape(shape, self.ndim, "shape")
        check_count(supersample, "supersample")
        dt = backend.float_dtype(dtype)
        half = min(shape[-2:]) / 2  # pixels per unit of normalised length
        sub = (jnp.arange(supersample, dtype=dt) + 0.5) / supersample - 0.5

        def axis(n, flip=False):
            c = (jnp.arange(n, dtype=dt) - (n - 1) / 2)[:, None] + sub[None, :]
            return (-c if flip else c).reshape(-1) / half

        # world axes in array order: (z,) y (rows, upwards), x (cols)
        ax = [axis(shape[-1]), axis(shape[-2], flip=True)] + ([axis(shape[0])] if self.ndim == 3 else [])
        grids = jnp.meshgrid(*ax[::-1], indexing="ij")  # array order
        pts = jnp.stack(grids[::-1], axis=-1)  # (..., ndim) as (x, y[, z])
        vals = jax.lax.map(self.values, pts, batch_size=max(1, 4096 // pts.shape[1]))
        fine = tuple(s * supersample for s in shape)
        vals = vals.reshape(fine)
        split = [v for s in shape for v in (s, supersample)]
        return vals.reshape(split).mean(axis=tuple(range(1, 2 * len(shape), 2))).astype(dt)

    def project(self, geometry: AbstractGeometry) -> Float[Array, "..."]:
        """Exact line integrals along the rays of ``geometry`` (the phantom scaled to its field of
        view): noise-free data with no discretisation model in it."""
        check_geometry(geometry, ndim=self.ndim, what=f"a {self.ndim}D phantom")
        scale = geometry.fov_radius  # physical length of one normalised unit

        def view(angle):
            o, d = geometry.rays(angle)
            o = o / scale
            # per ellipsoid: body-frame origin and direction divided by the semi-axes
            op = jnp.einsum("nji,rnj->rni", self.rotation, o[:, None, :] - self.centre) / self.axes
            dp = jnp.einsum("nji,rnj->rni", self.rotation, jnp.broadcast_to(d[:, None, :], op.shape)) \
                / self.axes
            b = jnp.sum(op * dp, -1)
            a = jnp.sum(dp * dp, -1)
            disc = b * b - a * (jnp.sum(op * op, -1) - 1.0)
            chord = 2.0 * jnp.sqrt(jnp.maximum(disc, 0.0)) / a  # normalised length
            return (chord * self.intensity).sum(-1).reshape(geometry.sinogram_shape[1:]) * scale

        return jax.lax.map(view, geometry.angles)


def _from_table(table, ndim, dtype):
    t = np.asarray(table, np.float64)
    dt = backend.float_dtype(dtype)
    phi = jnp.asarray(np.deg2rad(t[:, -1]), dt)
    return Ellipsoids(intensity=jnp.asarray(t[:, 0], dt), centre=jnp.asarray(t[:, 1 + ndim:1 + 2 * ndim], dt),
                      axes=jnp.asarray(t[:, 1:1 + ndim], dt), rotation=_rot_z(phi, ndim))


def shepp_logan(ndim: int = 2, *, dtype=None) -> Ellipsoids:
    """The modified Shepp-Logan phantom (Toft's contrasts, values in [0, 1]), 2D or 3D.

    Example:
        >>> import sciml
        >>> img = sciml.ct.shepp_logan().image((64, 64))
        >>> img.shape, float(img.max()) <= 1.0 + 1e-6
        ((64, 64), True)
    """
    if ndim not in (2, 3):
        raise ValueError(f"`ndim` must be 2 or 3, got {ndim!r}")
    return _from_table(_SL2D if ndim == 2 else _SL3D, ndim, dtype)


def random_ellipses(key, *, ndim: int = 2, count: int = 10, dtype=None) -> Ellipsoids:
    """A random phantom: one large body ellipse (intensity 0.5-1) and ``count`` - 1 inner ellipses
    (ellipsoids) with intensities in [-0.3, 0.3], random axes, centres and rotations, inside the
    unit disc. Seeded by ``key``; vmap over keys for a dataset."""
    if ndim not in (2, 3):
        raise ValueError(f"`ndim` must be 2 or 3, got {ndim!r}")
    check_count(count, "count")
    dt = backend.float_dtype(dtype)
    k = jax.random.split(key, 6)
    n = count - 1
    body_axes = jax.random.uniform(k[0], (1, ndim), dt, 0.7, 0.9)
    body_int = jax.random.uniform(k[1], (1,), dt, 0.5, 1.0)
    axes = jax.random.uniform(k[2], (n, ndim), dt, 0.05, 0.35)
    # centres: inside the body, so that the inner ellipses stay in the field of view
    r = jnp.sqrt(jax.random.uniform(k[3], (n, 1), dt)) * 0.55
    direction = jax.random.normal(k[4], (n, ndim), dt)
    centre = r * direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    ki, kr = jax.random.split(k[5])
    inner = jax.random.uniform(ki, (n,), dt, -0.3, 0.3)
    phi = jax.random.uniform(kr, (count,), dt, 0.0, math.pi)
    return Ellipsoids(
        intensity=jnp.concatenate([body_int, inner]),
        centre=jnp.concatenate([jnp.zeros((1, ndim), dt), centre]),
        axes=jnp.concatenate([body_axes, axes]),
        rotation=_rot_z(phi, ndim),
    )
