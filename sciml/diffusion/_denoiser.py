r"""A (conditional) denoiser with EDM preconditioning, and the denoising score-matching loss.

The network F sees the noisy image in VE form, x~ = x_t / alpha(t) = x_0 + sigma~ eps with sigma~ =
sigma(t) / alpha(t), and the denoiser is

.. math::
    D(x_t, t, c) = c_{skip} x~ + c_{out} F(c_{in} x~ \oplus c \oplus m, \log \sigma~),
    c_{skip} = \frac{\sigma_d^2}{\sigma~^2 + \sigma_d^2},\;
    c_{out} = \frac{\sigma~ \sigma_d}{\sqrt{\sigma~^2 + \sigma_d^2}},\;
    c_{in} = \frac{1}{\sqrt{\sigma~^2 + \sigma_d^2}}

(Karras, Aittala, Aila and Laine 2022, "Elucidating the design space of diffusion-based generative
models", NeurIPS), with the condition c (e.g. a sparse-view FBP image) and a mask channel m (1 when
the condition is given, 0 when it is dropped) concatenated to the input channels. The loss weight
(sigma~^2 + sigma_d^2) / (sigma~ sigma_d)^2 makes the network's regression target unit-variance at
every noise level: the loss is || F - (x_0 - c_skip x~) / c_out ||^2 averaged over pixels. Dropping the
condition with probability ``p_uncond`` during training gives one network that is both conditional and
unconditional (Ho and Salimans 2021, classifier-free guidance), which is how DDS and DPS run "the same
network without conditioning".
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._schedule import AbstractSchedule


class Denoiser(eqx.Module):
    """x_0-estimator D(x_t, t, cond) around a network ``net(inputs, noise_level) -> output``.

    Attributes:
        net: a callable pytree (e.g. :class:`sciml.nn.UNet`) mapping ``(channels + cond_channels +
            [1 if cond_channels], h, w)`` inputs and a scalar log sigma~ to ``(channels, h, w)``.
        schedule: the noise schedule it was trained with.
        channels: image channels.
        cond_channels: condition channels (0 for an unconditional model).
        sigma_data: the standard deviation of the training images (EDM's sigma_d).
    """

    net: Callable
    schedule: AbstractSchedule
    channels: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True, default=0)
    sigma_data: float = eqx.field(static=True, default=0.5)

    def __check_init__(self):
        if not isinstance(self.schedule, AbstractSchedule):
            raise TypeError(f"`schedule` must be a sciml.diffusion schedule (VP(), VE()), got "
                            f"{type(self.schedule).__name__}")
        if self.channels < 1 or self.cond_channels < 0:
            raise ValueError(f"`channels` must be >= 1 and `cond_channels` >= 0, got {self.channels}, "
                             f"{self.cond_channels}")
        if not self.sigma_data > 0:
            raise ValueError(f"`sigma_data` must be > 0, got {self.sigma_data}")

    @property
    def in_channels(self) -> int:
        """Channels the network takes: image, condition and (if conditional) the mask channel."""
        return self.channels + self.cond_channels + (1 if self.cond_channels else 0)

    def _inputs(self, x, cond, keep=True):
        if x.ndim != 3 or x.shape[0] != self.channels:
            raise ValueError(f"`x` must have shape ({self.channels}, h, w), got {x.shape}")
        if not self.cond_channels:
            if cond is not None:
                raise ValueError("this denoiser is unconditional (cond_channels=0) but got a `cond`")
            return x
        if cond is None:
            return jnp.concatenate([x, jnp.zeros((self.cond_channels + 1, *x.shape[1:]), x.dtype)])
        if cond.shape != (self.cond_channels, *x.shape[1:]):
            raise ValueError(f"`cond` must have shape {(self.cond_channels, *x.shape[1:])}, got {cond.shape}")
        m = jnp.asarray(keep, x.dtype)  # 0 drops the condition: the same input as cond=None
        return jnp.concatenate([x, m * cond.astype(x.dtype), jnp.full((1, *x.shape[1:]), m, x.dtype)])

    def _coefficients(self, t, dtype):
        alpha = self.schedule.alpha(t).astype(dtype)
        s = (self.schedule.sigma(t) / self.schedule.alpha(t)).astype(dtype)
        sd2 = jnp.asarray(self.sigma_data**2, dtype)
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * jnp.sqrt(sd2) / jnp.sqrt(s**2 + sd2)
        c_in = 1.0 / jnp.sqrt(s**2 + sd2)
        return alpha, s, c_skip, c_out, c_in

    def _raw(self, x_t, t, cond, keep=True):
        alpha, s, c_skip, c_out, c_in = self._coefficients(t, x_t.dtype)
        xv = x_t / alpha
        out = self.net(self._inputs(c_in * xv, cond, keep), jnp.log(s))
        return xv, out, c_skip, c_out

    def __call__(self, x_t: Float[Array, "c h w"], t: Float[Array, ""],
                 cond: Float[Array, "k h w"] | None = None) -> Float[Array, "c h w"]:
        """The denoised estimate E[x_0 | x_t (, cond)] (Tweedie) of one image; ``cond=None`` on a
        conditional model runs it unconditionally."""
        xv, out, c_skip, c_out = self._raw(x_t, t, cond)
        return c_skip * xv + c_out * out


def denoising_loss(denoiser: Denoiser, x0: Float[Array, "batch c h w"], key: Array, *,
                   cond: Float[Array, "batch k h w"] | None = None, p_uncond: float = 0.0,
                   t_min: float = 1e-3, log_ratio: tuple[float, float] | None = None) -> Float[Array, ""]:
    """Denoising score-matching loss of a batch, EDM-weighted (see the module docstring).

    Args:
        denoiser: the model being trained.
        x0: clean images.
        key: PRNG key (times, noise, condition dropout).
        cond: conditions, one per image (conditional models).
        p_uncond: probability of dropping an example's condition.
        t_min: smallest training time; t ~ U(t_min, 1) by default.
        log_ratio: ``(mean, std)``: draw log(sigma/alpha) ~ N(mean, std^2) instead (EDM's
            log-normal noise levels, e.g. (-1.2, 1.2)), mapped to t by the schedule and clipped to
            [t_min, 1]; concentrates training on the noise levels where images take shape.

    Returns:
        The mean weighted squared error (about 1 at initialisation, whatever the noise level).

    Example:
        >>> import jax, equinox as eqx, sciml
        >>> net = sciml.nn.UNet(1, 1, channels=(8, 16), groups=4, key=jax.random.key(0))
        >>> model = sciml.diffusion.Denoiser(net, sciml.diffusion.VP(), channels=1)
        >>> x0 = jax.random.uniform(jax.random.key(1), (4, 1, 16, 16))
        >>> loss = eqx.filter_jit(sciml.diffusion.denoising_loss)   # one compiled call, not op by op
        >>> float(loss(model, x0, jax.random.key(2))) > 0  # doctest: +SKIP
        True
    """
    if x0.ndim != 4:
        raise ValueError(f"`x0` must be a batch of images (batch, channels, h, w), got shape {x0.shape}")
    if cond is not None and cond.shape[0] != x0.shape[0]:
        raise ValueError(f"`cond` must have one condition per image: {x0.shape[0]}, got {cond.shape[0]}")
    if not 0 <= p_uncond <= 1:
        raise ValueError(f"`p_uncond` must be in [0, 1], got {p_uncond}")
    n = x0.shape[0]
    kt, ke, kd = jax.random.split(key, 3)
    if log_ratio is None:
        t = jax.random.uniform(kt, (n,), x0.dtype, minval=t_min, maxval=1.0)
    else:
        lr = log_ratio[0] + log_ratio[1] * jax.random.normal(kt, (n,), x0.dtype)
        t = jnp.clip(denoiser.schedule.time_of(lr).astype(x0.dtype), t_min, 1.0)
    eps = jax.random.normal(ke, x0.shape, x0.dtype)
    keep = jax.random.uniform(kd, (n,)) >= p_uncond

    def one(x, e, tt, c, k):
        alpha = denoiser.schedule.alpha(tt).astype(x.dtype)
        sigma = denoiser.schedule.sigma(tt).astype(x.dtype)
        x_t = alpha * x + sigma * e
        xv, out, c_skip, c_out = denoiser._raw(x_t, tt, c, k)
        target = (x - c_skip * xv) / c_out
        return jnp.mean((out - target) ** 2)

    if cond is None:
        losses = jax.vmap(lambda x, e, tt: one(x, e, tt, None, True))(x0, eps, t)
    else:
        losses = jax.vmap(one)(x0, eps, t, cond, keep)
    return jnp.mean(losses)
