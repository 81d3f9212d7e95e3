"""``sciml.ct.reconstruct``: one entry point, reconstruction methods as objects.

Analytic: :class:`FBP` (FDK on cone beam). Iterative, on the matched pair A = :func:`project`,
A^T = :func:`backproject`: :class:`CGLS` (conjugate gradients on the normal equations A^T A x =
A^T y; Hestenes and Stiefel 1952, in the CGLS form of Bjorck 1996) and :class:`SIRT` (x <- x + C A^T R
(y - A x) with R, C the inverse row and column sums; Gregor and Benson 2008), each a
``lax.while_loop`` with an iteration count and a relative-residual tolerance as arguments.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._fbp import FILTERS, fbp
from ._geometry import AbstractGeometry, check_count
from ._projector import backproject, checked_data, project


class Reconstruction(eqx.Module):
    """A reconstruction: ``image``; for sampling methods also ``samples`` (K, ...) and their
    per-pixel ``std``; ``iterations`` run and the final relative data residual ||A x - y|| / ||y||."""

    image: Float[Array, "..."]
    residual: Float[Array, ""]
    iterations: Array | None = None
    samples: Float[Array, "k ..."] | None = None
    std: Float[Array, "..."] | None = None


class AbstractReconstructor(eqx.Module):
    """A reconstruction method: ``__call__(sinogram, geometry, key) -> Reconstruction``."""

    @abc.abstractmethod
    def __call__(self, sinogram, geometry: AbstractGeometry, key) -> Reconstruction:
        """Reconstruct one (unbatched) sinogram."""


def _residual(x, y, geometry):
    return jnp.linalg.norm(project(x, geometry) - y) / jnp.linalg.norm(y)


class FBP(AbstractReconstructor):
    """Filtered back-projection (FDK for cone beam); see :mod:`sciml.ct._fbp`.

    Attributes:
        filter: ramp window, one of ``"ramp"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"``,
            ``"hann"``.
        cutoff: relative cutoff frequency in (0, 1].
    """

    filter: str = eqx.field(default="ramp", static=True)
    cutoff: float = eqx.field(default=1.0, static=True)

    def __check_init__(self):
        if self.filter not in FILTERS:
            raise ValueError(f"`filter` must be one of {FILTERS}, got {self.filter!r}")
        if not 0 < self.cutoff <= 1:
            raise ValueError(f"`cutoff` must be in (0, 1], got {self.cutoff!r}")

    def __call__(self, sinogram, geometry, key=None):
        x = fbp(sinogram, geometry, filter=self.filter, cutoff=self.cutoff)
        return Reconstruction(image=x, residual=_residual(x, sinogram, geometry))


def _check_iters(iterations, tol):
    check_count(iterations, "iterations")
    if not tol >= 0:
        raise ValueError(f"`tol` must be >= 0, got {tol!r}")


class CGLS(AbstractReconstructor):
    """Conjugate gradients on the normal equations, from x0 = 0 (or ``nonneg`` clipping at the end).

    Attributes:
        iterations: maximum number of iterations (early stopping regularises: ~10-30 for noisy data).
        tol: stop when ||A^T (y - A x)|| <= tol * ||A^T y||.
    """

    iterations: int = eqx.field(default=20, static=True)
    tol: float = 0.0

    def __check_init__(self):
        _check_iters(self.iterations, self.tol)

    def __call__(self, sinogram, geometry, key=None):
        y = sinogram
        x = jnp.zeros(geometry.image_shape, y.dtype)
        r = y
        s = backproject(r, geometry)
        p = s
        gamma = jnp.vdot(s, s)
        stop = (self.tol * jnp.linalg.norm(s)) ** 2

        def cond(state):
            k, _, _, _, gamma = state
            return (k < self.iterations) & (gamma > stop) & (gamma > 0)

        def body(state):
            k, x, r, p, gamma = state
            q = project(p, geometry)
            alpha = gamma / jnp.vdot(q, q)
            x = x + alpha * p
            r = r - alpha * q
            s = backproject(r, geometry)
            gamma_new = jnp.vdot(s, s)
            p = s + (gamma_new / gamma) * p
            return k + 1, x, r, p, gamma_new

        k, x, r, _, _ = jax.lax.while_loop(cond, body, (jnp.array(0), x, r, p, gamma))
        return Reconstruction(image=x, residual=jnp.linalg.norm(r) / jnp.linalg.norm(y), iterations=k)


class SIRT(AbstractReconstructor):
    """Simultaneous iterative reconstruction: x <- x + C A^T R (y - A x), from x0 = 0.

    Attributes:
        iterations: maximum number of iterations.
        tol: stop when the relative data residual changes by less than ``tol`` in one iteration.
        nonneg: clip negative values after each iteration (attenuation is >= 0).
    """

    iterations: int = eqx.field(default=200, static=True)
    tol: float = 0.0
    nonneg: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        _check_iters(self.iterations, self.tol)

    def __call__(self, sinogram, geometry, key=None):
        y = sinogram
        ones_x = jnp.ones(geometry.image_shape, y.dtype)
        row = project(ones_x, geometry)
        col = backproject(jnp.ones_like(y), geometry)
        R = jnp.where(row > 0, 1.0 / jnp.where(row > 0, row, 1.0), 0.0)
        C = jnp.where(col > 0, 1.0 / jnp.where(col > 0, col, 1.0), 0.0)
        ny = jnp.linalg.norm(y)

        def cond(state):
            k, _, res, prev = state
            # res and prev: residual norms before the last two updates (k >= 2 compares them)
            return (k < self.iterations) & ((k < 2) | (jnp.abs(prev - res) > self.tol * ny))

        def body(state):
            k, x, res, _ = state
            r = y - project(x, geometry)
            x = x + C * backproject(R * r, geometry)
            if self.nonneg:
                x = jnp.maximum(x, 0.0)
            return k + 1, x, jnp.linalg.norm(r), res

        inf = jnp.array(jnp.inf, y.dtype)
        k, x, _, _ = jax.lax.while_loop(cond, body, (jnp.array(0), jnp.zeros_like(ones_x), ny, inf))
        return Reconstruction(image=x, residual=_residual(x, y, geometry), iterations=k)


_NAMES = {"fbp": FBP, "fdk": FBP, "cgls": CGLS, "sirt": SIRT}


def reconstruct(sinogram, geometry: AbstractGeometry, method="fbp", *, key=None) -> Reconstruction:
    """Reconstruct an image from its sinogram.

    Args:
        sinogram: real floating array of shape ``geometry.sinogram_shape``.
        geometry: the acquisition geometry.
        method: a reconstructor object (:class:`FBP`, :class:`CGLS`, :class:`SIRT`, ...) or one of
            the names ``"fbp"``, ``"fdk"``, ``"cgls"``, ``"sirt"`` (default settings).
        key: PRNG key, for sampling methods only.

    Returns:
        A :class:`Reconstruction`.

    Raises:
        ValueError: unknown method name, or a sinogram that does not match the geometry or holds
            NaN / inf.

    Example:
        >>> import numpy as np, sciml
        >>> g = sciml.ct.parallel_beam(np.linspace(0, np.pi, 60, endpoint=False), 48, (32, 32))
        >>> phantom = sciml.ct.shepp_logan()
        >>> rec = sciml.ct.reconstruct(phantom.project(g), g, "fbp")
        >>> rec.image.shape
        (32, 32)
    """
    if isinstance(method, str):
        if method not in _NAMES:
            raise ValueError(f"`method` must be a reconstructor or one of {sorted(_NAMES)}, got "
                             f"{method!r}")
        method = _NAMES[method]()
    if not isinstance(method, AbstractReconstructor):
        raise TypeError(f"`method` must be a sciml.ct reconstructor or a name, got "
                        f"{type(method).__name__}")
    y = checked_data(sinogram, geometry, "sinogram_shape", "sinogram", batched=False)
    if isinstance(y, jax.core.Tracer):
        y = eqx.error_if(y, ~jnp.all(jnp.isfinite(y)), "`sinogram` contains NaN or inf")
    elif not bool(jnp.all(jnp.isfinite(y))):
        raise ValueError("`sinogram` contains NaN or inf; mask or repair those bins first")
    return method(y, geometry, key)
