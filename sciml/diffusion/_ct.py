r"""Diffusion-model CT reconstruction: CDPA, and the DDS and DPS baselines, as ``sciml.ct`` methods.

All three draw K samples x ~ p(x | y) from a 2D diffusion prior over slices and return their mean as
the image and their per-pixel standard deviation as the uncertainty (``Reconstruction.samples`` /
``.std``). A 3D geometry (cone beam) is handled slice-wise: the denoiser runs on every axial slice
(batched with vmap), while data consistency uses the full 3D operator.

* :class:`CDPA` -- *conditional* diffusion with explicit data consistency (after Barba et al.,
  "Conditional Diffusion Posterior Alignment" for sparse-view cone-beam CT, Swiss Data Science
  Center): the denoiser sees the noisy slice and the sparse-view analytic reconstruction (FBP / FDK)
  of the same slice; at every step its Tweedie estimate x0_hat is moved towards the data by a few
  conjugate-gradient steps on

  .. math:: (A^T A + \gamma I) x = A^T y + \gamma \hat x_0, \quad x^{(0)} = \hat x_0

  (:class:`CGConsistency`; gamma = 0 is plain CG on the normal equations started at x0_hat, as DDS
  does), then a DDIM step (eta > 0 keeps the samples diverse) moves to the next noise level. The
  returned samples are the final corrected estimates, so they agree with the measured projections.
* :class:`DDS` -- the same sampler and data consistency with the condition dropped: the same network
  run unconditionally (Chung, Lee and Ye 2024, "Decomposed diffusion sampler for accelerating
  large-scale inverse problems", ICLR).
* :class:`DPS` -- diffusion posterior sampling: an unconditional DDIM/DDPM step plus the gradient step
  -zeta grad_{x_t} ||y - A x0_hat(x_t)|| through the denoiser (Chung, Kim, Mccann, Klasky and Ye
  2023, ICLR).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..ct._geometry import AbstractGeometry, check_count
from ..ct._projector import backproject, project
from ..ct._reconstruct import FBP, AbstractReconstructor, Reconstruction, _residual
from ._denoiser import Denoiser
from ._sample import DDIM, AbstractSampler, ddim_update, initial_noise


class AbstractConsistency(eqx.Module):
    """Data consistency: ``__call__(x0_hat, sinogram, geometry) -> x`` moves an estimate towards the
    measurements."""

    @abc.abstractmethod
    def __call__(self, x0: Array, sinogram: Array, geometry: AbstractGeometry) -> Array:
        """Correct one estimate (of shape ``geometry.image_shape``)."""


class CGConsistency(AbstractConsistency):
    r"""``steps`` conjugate-gradient iterations on (A^T A + gamma I) x = A^T y + gamma x0_hat from
    x0_hat: early-stopped CG keeps x near the prior's estimate in the null space of A and fits the data
    in its range (gamma > 0 adds a proximal pull towards x0_hat, for noisy data).

    The defaults (1 step, gamma = 100) were chosen on validation images of the shipped model's task
    (64 x 64, 8 and 16 parallel views, 2e4 photons per bin): there, more or unregularised CG steps fit
    the noise (residual below the noise level) and lose PSNR; noise-free data want more steps.

    Attributes:
        steps: CG iterations (0 disables data consistency).
        gamma: proximal weight, in the units of A^T A (it scales with the number of views and the
            pixel size; array leaf: no recompilation).
        nonneg: clip the corrected estimate at 0.
    """

    steps: int = eqx.field(static=True, default=1)
    gamma: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=100.0)
    nonneg: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"`steps` must be an int >= 0, got {self.steps!r}")
        if not isinstance(self.gamma, jax.core.Tracer) and not bool(self.gamma >= 0):
            raise ValueError(f"`gamma` must be >= 0, got {self.gamma!r}")

    def __call__(self, x0, sinogram, geometry):
        gamma = self.gamma.astype(x0.dtype)

        def normal(v):
            return backproject(project(v, geometry), geometry) + gamma * v

        r = backproject(sinogram - project(x0, geometry), geometry)  # b - M x0 with b = A^T y + gamma x0
        p = r
        rr = jnp.vdot(r, r)

        def body(_, state):
            x, r, p, rr = state
            q = normal(p)
            alpha = rr / jnp.maximum(jnp.vdot(p, q), jnp.finfo(x.dtype).tiny)
            x = x + alpha * p
            r = r - alpha * q
            rr_new = jnp.vdot(r, r)
            p = r + (rr_new / jnp.maximum(rr, jnp.finfo(x.dtype).tiny)) * p
            return x, r, p, rr_new

        x, _, _, _ = jax.lax.fori_loop(0, self.steps, body, (x0, r, p, rr))
        return jnp.maximum(x, 0.0) if self.nonneg else x


def _check_model(denoiser, geometry, conditional: bool):
    if not isinstance(denoiser, Denoiser):
        raise TypeError(f"`denoiser` must be a sciml.diffusion.Denoiser, got {type(denoiser).__name__}")
    if denoiser.channels != 1:
        raise ValueError(f"CT methods need a one-channel denoiser, got channels={denoiser.channels}")
    if conditional and denoiser.cond_channels != 1:
        raise ValueError(f"a conditional method needs a denoiser with cond_channels=1 (the analytic "
                         f"reconstruction), got cond_channels={denoiser.cond_channels}")
    if geometry.ndim not in (2, 3):
        raise ValueError(f"diffusion reconstruction needs a 2D or 3D geometry, got ndim={geometry.ndim}")


def _slicewise(denoiser, x, t, cond):
    """Apply a 2D denoiser to every axial slice of x (2D image or 3D volume)."""
    h, w = x.shape[-2:]
    xs = x.reshape(-1, 1, h, w)
    if cond is None:
        out = jax.vmap(lambda a: denoiser(a, t))(xs)
    else:
        out = jax.vmap(lambda a, c: denoiser(a, t, c))(xs, cond.reshape(-1, 1, h, w))
    return out.reshape(x.shape)


def _summary(samples, sinogram, geometry, iterations, std_scale=1.0):
    mean = jnp.mean(samples, axis=0)
    std = jnp.std(samples, axis=0, ddof=1) if samples.shape[0] > 1 else jnp.zeros_like(mean)
    std = std * jnp.asarray(std_scale, std.dtype)
    return Reconstruction(image=mean, residual=_residual(mean, sinogram, geometry),
                          iterations=jnp.asarray(iterations), samples=samples, std=std)


class _AbstractDiffusionReconstructor(AbstractReconstructor):
    denoiser: eqx.AbstractVar[Denoiser]
    samples: eqx.AbstractVar[int]
    sample_batch: eqx.AbstractVar[int | None]
    std_scale: eqx.AbstractVar[Float[Array, ""]]

    def _keys(self, key):
        if key is None:
            raise ValueError(f"`key` is required: {type(self).__name__} draws samples; pass "
                             "key=jax.random.key(...) to sciml.ct.reconstruct")
        return jax.random.split(key, self.samples)

    def _draw(self, one, keys):
        batch = self.samples if self.sample_batch is None else self.sample_batch
        return jax.lax.map(one, keys, batch_size=batch)


class _AbstractGuided(_AbstractDiffusionReconstructor):
    """Sampler + data consistency around a 2D denoiser; subclasses choose the condition."""

    sampler: eqx.AbstractVar[AbstractSampler]
    consistency: eqx.AbstractVar[AbstractConsistency]
    conditional: ClassVar[bool]

    @abc.abstractmethod
    def condition(self, sinogram, geometry) -> Array | None:
        """The per-slice condition given to the denoiser (None: unconditional)."""

    def __call__(self, sinogram, geometry, key=None):
        keys = self._keys(key)
        _check_model(self.denoiser, geometry, conditional=self.conditional)
        cond = self.condition(sinogram, geometry)
        shape = geometry.image_shape
        schedule = self.denoiser.schedule

        def denoise(x, t):
            return _slicewise(self.denoiser, x, t, cond)

        def correct(x0, t):
            return self.consistency(x0, sinogram, geometry)

        def one(k):
            k0, k1 = jax.random.split(k)
            x_T = initial_noise(schedule, k0, shape, sinogram.dtype)
            return self.sampler.run(denoise, schedule, x_T, k1, correct)

        samples = self._draw(one, keys)
        return _summary(samples, sinogram, geometry, getattr(self.sampler, "steps", 0) or 0,
                        self.std_scale)


def _check_std_scale(std_scale):
    if std_scale.ndim != 0 or not jnp.issubdtype(std_scale.dtype, jnp.floating):
        raise ValueError(f"`std_scale` must be a real scalar, got {std_scale!r}")
    if not isinstance(std_scale, jax.core.Tracer) and not bool(std_scale > 0):
        raise ValueError(f"`std_scale` must be > 0 (fit it with sciml.metrics.std_scale), got {std_scale!r}")


def _check_samples(samples, sample_batch):
    check_count(samples, "samples")
    if sample_batch is not None:
        check_count(sample_batch, "sample_batch")


class CDPA(_AbstractGuided):
    """Conditional diffusion posterior sampling with explicit data consistency (see module docstring).

    Attributes:
        denoiser: a conditional :class:`~sciml.diffusion.Denoiser` (1 image + 1 condition channel),
            trained on slices with their sparse-view analytic reconstructions as conditions.
        samples: K posterior samples; the image is their mean and ``std`` their spread.
        sampler: a :class:`~sciml.diffusion.DDIM` (default 25 steps, eta = 0.8) or other sampler.
        consistency: the data-consistency step (default :class:`CGConsistency`: 1 CG step, gamma=100).
        analytic: the analytic reconstruction that conditions the denoiser (default ramp FBP / FDK);
            it must be the one the model was trained with.
        sample_batch: samples drawn at once (memory); default all K.
        std_scale: the reported ``std`` is the samples' standard deviation times this factor (1 by
            default; sigma scaling, Laves et al. 2020: fit it on validation images with
            :func:`sciml.metrics.std_scale`; an array leaf, no recompilation).

    Example:
        >>> import jax, numpy as np, sciml
        >>> net = sciml.nn.UNet(3, 1, channels=(8, 16), groups=4, key=jax.random.key(0))
        >>> model = sciml.diffusion.Denoiser(net, sciml.diffusion.VP(), channels=1, cond_channels=1)
        >>> g = sciml.ct.parallel_beam(np.linspace(0, np.pi, 8, endpoint=False), 24, (16, 16))
        >>> y = sciml.ct.shepp_logan().project(g)
        >>> method = sciml.diffusion.CDPA(model, samples=2, sampler=sciml.diffusion.DDIM(steps=3))
        >>> rec = sciml.ct.reconstruct(y, g, method, key=jax.random.key(1))  # doctest: +SKIP
        >>> rec.samples.shape, rec.std.shape  # doctest: +SKIP
        ((2, 16, 16), (16, 16))
    """

    denoiser: Denoiser
    samples: int = eqx.field(static=True, default=8)
    sampler: AbstractSampler = DDIM(steps=25, eta=0.8)
    consistency: AbstractConsistency = eqx.field(default_factory=CGConsistency)  # no arrays at import
    analytic: AbstractReconstructor = FBP()
    sample_batch: int | None = eqx.field(static=True, default=None)
    std_scale: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)

    conditional: ClassVar[bool] = True

    def __check_init__(self):
        _check_samples(self.samples, self.sample_batch)
        _check_std_scale(self.std_scale)

    def condition(self, sinogram, geometry):
        return self.analytic(sinogram, geometry).image


class DDS(_AbstractGuided):
    """Decomposed diffusion sampler (Chung, Lee and Ye 2024): the CDPA sampler without the condition.

    Attributes: as :class:`CDPA` (``std_scale`` included), without ``analytic``; the denoiser may be
    unconditional or a conditional one trained with condition dropout (then it runs with the condition
    dropped).
    """

    denoiser: Denoiser
    samples: int = eqx.field(static=True, default=8)
    sampler: AbstractSampler = DDIM(steps=25, eta=0.85)
    consistency: AbstractConsistency = eqx.field(default_factory=CGConsistency)  # no arrays at import
    sample_batch: int | None = eqx.field(static=True, default=None)
    std_scale: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)

    conditional: ClassVar[bool] = False

    def __check_init__(self):
        _check_samples(self.samples, self.sample_batch)
        _check_std_scale(self.std_scale)

    def condition(self, sinogram, geometry):
        return None


class DPS(_AbstractDiffusionReconstructor):
    """Diffusion posterior sampling (Chung et al. 2023) with an unconditional denoiser.

    Each step: x0_hat = D(x_t, t), the DDIM step to s, then x_s -= step_size * grad_{x_t} ||y - A
    x0_hat(x_t)||. The gradient goes through the network, so a step costs about three denoiser
    evaluations; DPS needs many steps (hundreds).

    Attributes:
        denoiser: unconditional, or conditional trained with dropout (run unconditionally).
        samples: K posterior samples.
        steps: denoiser evaluations.
        eta: DDIM stochasticity (1: ancestral, as in the paper).
        step_size: zeta, in image units per unit relative residual gradient (array leaf).
        sample_batch: samples drawn at once.
        std_scale: sigma-scaling factor of the reported ``std`` (as :class:`CDPA`).
    """

    denoiser: Denoiser
    samples: int = eqx.field(static=True, default=8)
    steps: int = eqx.field(static=True, default=100)
    eta: float = eqx.field(static=True, default=1.0)
    step_size: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)
    t_min: float = eqx.field(static=True, default=1e-3)
    sample_batch: int | None = eqx.field(static=True, default=None)
    std_scale: Float[Array, ""] = eqx.field(converter=jnp.asarray, default=1.0)

    def __check_init__(self):
        _check_samples(self.samples, self.sample_batch)
        _check_std_scale(self.std_scale)
        check_count(self.steps, "steps")
        if self.steps < 2:
            raise ValueError(f"`steps` must be >= 2, got {self.steps}")

    def __call__(self, sinogram, geometry, key=None):
        keys = self._keys(key)
        _check_model(self.denoiser, geometry, conditional=False)
        schedule = self.denoiser.schedule
        shape = geometry.image_shape
        dtype = sinogram.dtype
        times = jnp.linspace(1.0, self.t_min, self.steps, dtype=dtype)
        ny = jnp.linalg.norm(sinogram)

        def misfit(x, t):
            x0 = _slicewise(self.denoiser, x, t, None)
            return jnp.linalg.norm(project(x0, geometry) - sinogram) / ny, x0

        def one(k):
            k0, k1 = jax.random.split(k)
            x_T = initial_noise(schedule, k0, shape, dtype)

            def body(x, inputs):
                t, s, kk = inputs
                (_, x0), g = jax.value_and_grad(misfit, has_aux=True)(x, t)
                x_s = ddim_update(schedule, x, x0, t, s, self.eta, kk)
                return x_s - self.step_size.astype(dtype) * g, None

            x, _ = jax.lax.scan(body, x_T, (times[:-1], times[1:], jax.random.split(k1, self.steps - 1)))
            return _slicewise(self.denoiser, x, times[-1], None)

        return _summary(self._draw(one, keys), sinogram, geometry, self.steps, self.std_scale)
