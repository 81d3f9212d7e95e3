"""``sciml.ct.reconstruct``: one entry point, reconstruction methods as objects.

Analytic: :class:`FBP` (FDK on cone beam). Iterative, on the matched pair A = :func:`project`,
A^T = :func:`backproject`: :class:`CGLS` (conjugate gradients on the normal equations A^T A x =
A^T y; Hestenes and Stiefel 1952, in the CGLS form of Bjorck 1996), :class:`SIRT` (x <- x + C A^T R
(y - A x) with R, C the inverse row and column sums; Gregor and Benson 2008) and :class:`TV`
(total-variation regularised least squares by Chambolle-Pock), each a ``lax.while_loop`` with an
iteration count and a tolerance as arguments.
"""

from __future__ import annotations

import abc
import math

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
    """Conjugate gradients on the normal equations, from x0 = 0.

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


def _operator_norm(geometry, dtype, iterations: int = 30):
    """||A||_2 by power iteration on A^T A from a fixed start (deterministic, no key needed)."""
    x = jnp.ones(geometry.image_shape, dtype)

    def body(_, v):
        w = backproject(project(v, geometry), geometry)
        return w / jnp.linalg.norm(w)

    x = jax.lax.fori_loop(0, iterations, body, x / jnp.linalg.norm(x))
    return jnp.linalg.norm(project(x, geometry))


def _gradient(x):
    """Forward differences along every axis, zero at the far edge (Neumann): shape (ndim, *x.shape)."""
    return jnp.stack([jnp.diff(x, axis=a, append=jax.lax.slice_in_dim(x, -1, None, axis=a))
                      for a in range(x.ndim)])


class TV(AbstractReconstructor):
    r"""Total-variation regularised least squares, solved by Chambolle-Pock (PDHG).

    .. math::
        \min_{x \ge 0} \tfrac12 \|A x - y\|_2^2 + \lambda \sum_i |(\nabla x)_i|_2

    (isotropic TV, forward differences). PDHG on K = [A; s \nabla] with the gradient rescaled by
    s = ||A|| / sqrt(4 ndim) so both blocks have the same norm and ||K|| <= sqrt(2) ||A||, step sizes
    sigma = tau = 0.99 / ||K||, ||A|| from 30 power iterations. Chambolle and Pock (2011), "A
    first-order primal-dual algorithm for convex problems with applications to imaging", JMIV 40;
    Sidky, Jorgensen and Pan (2012), Phys. Med. Biol. 57, for CT.

    Attributes:
        weight: lambda, in the units of the objective above (it scales with the sinogram: double the
            data, double the weight for the same image). Choose it on held-out images.
        iterations: maximum number of PDHG iterations.
        tol: stop when ||x_k+1 - x_k|| <= tol * ||x_k+1||.
        nonneg: constrain x >= 0.
    """

    weight: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    iterations: int = eqx.field(default=300, static=True)
    tol: float = 0.0
    nonneg: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        _check_iters(self.iterations, self.tol)
        if not isinstance(self.weight, jax.core.Tracer) and not bool(self.weight >= 0):
            raise ValueError(f"`weight` must be >= 0, got {self.weight!r}")

    def __call__(self, sinogram, geometry, key=None):
        y = sinogram
        norm_a = _operator_norm(geometry, y.dtype)
        ndim = len(geometry.image_shape)
        s = norm_a / math.sqrt(4 * ndim)
        step = 0.99 / (math.sqrt(2.0) * norm_a)
        lam = self.weight.astype(y.dtype) / s  # lambda TV(x) = (lambda / s) ||s grad x||_1
        grad_t = jax.linear_transpose(_gradient, jnp.zeros(geometry.image_shape, y.dtype))

        def cond(state):
            k, _, _, _, _, change = state
            return (k < self.iterations) & (change > self.tol)

        def body(state):
            k, x, x_bar, p, q, _ = state
            p = (p + step * (project(x_bar, geometry) - y)) / (1 + step)
            q = q + step * s * _gradient(x_bar)
            q = q / jnp.maximum(1.0, jnp.linalg.norm(q, axis=0) / jnp.maximum(lam, 1e-30))
            x_new = x - step * (backproject(p, geometry) + s * grad_t(q)[0])
            if self.nonneg:
                x_new = jnp.maximum(x_new, 0.0)
            change = jnp.linalg.norm(x_new - x) / jnp.maximum(jnp.linalg.norm(x_new), 1e-30)
            return k + 1, x_new, 2 * x_new - x, p, q, change

        x0 = jnp.zeros(geometry.image_shape, y.dtype)
        q0 = jnp.zeros((ndim, *geometry.image_shape), y.dtype)
        inf = jnp.array(jnp.inf, y.dtype)
        k, x, _, _, _, _ = jax.lax.while_loop(cond, body, (jnp.array(0), x0, x0, jnp.zeros_like(y), q0, inf))
        return Reconstruction(image=x, residual=_residual(x, y, geometry), iterations=k)


_NAMES = {"fbp": FBP, "fdk": FBP, "cgls": CGLS, "sirt": SIRT, "tv": TV}


def reconstruct(sinogram, geometry: AbstractGeometry, method="fbp", *, key=None) -> Reconstruction:
    """Reconstruct an image from its sinogram.

    Args:
        sinogram: real floating array of shape ``geometry.sinogram_shape``.
        geometry: the acquisition geometry.
        method: a reconstructor object (:class:`FBP`, :class:`CGLS`, :class:`SIRT`, ...) or one of
            the names ``"fbp"``, ``"fdk"``, ``"cgls"``, ``"sirt"``, ``"tv"`` (default settings).
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
