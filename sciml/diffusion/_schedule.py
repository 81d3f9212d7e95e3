r"""Noise schedules: x_t = alpha(t) x_0 + sigma(t) eps, eps ~ N(0, I), t in [0, 1].

Every schedule is described by its two functions alpha(t) and sigma(t); samplers and losses only use
those (and their time derivatives, by automatic differentiation), so VP (DDPM) and VE (score SDE)
models share one sampler code path. The "VE form" of any schedule divides by alpha: x_t / alpha(t) =
x_0 + sigma~(t) eps with sigma~ = sigma / alpha, which is what the denoiser's preconditioning uses.

* :class:`VP` -- variance preserving, linear beta(t) = beta_min + t (beta_max - beta_min):
  alpha(t) = exp(-t^2 (beta_max - beta_min) / 4 - t beta_min / 2), sigma = sqrt(1 - alpha^2); the
  continuous limit of DDPM's linear schedule (Ho, Jain and Abbeel 2020; Song et al. 2021, "Score-based
  generative modeling through stochastic differential equations", ICLR).
* :class:`VE` -- variance exploding: alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t for
  all t (Song et al. 2021, NCSN++; samplers stop at a small t and return the denoised estimate).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def _positive(value, name: str) -> Array:
    v = jnp.asarray(value, dtype=jnp.result_type(float))
    if v.shape != ():
        raise ValueError(f"`{name}` must be a scalar, got shape {v.shape}")
    if not isinstance(v, jax.core.Tracer) and not bool(v > 0):
        raise ValueError(f"`{name}` must be > 0, got {value!r}")
    return v


def _check_ordered(lo, hi, lo_name: str, hi_name: str) -> None:
    if not isinstance(hi, jax.core.Tracer) and not bool(hi > lo):
        raise ValueError(f"`{hi_name}` must exceed `{lo_name}`, got {hi} <= {lo}")


class AbstractSchedule(eqx.Module):
    """A noise schedule: ``alpha(t)`` and ``sigma(t)`` on t in [0, 1], with sigma/alpha increasing."""

    @abc.abstractmethod
    def alpha(self, t: Float[ArrayLike, ""]) -> Float[Array, ""]:
        """Signal scale at time t."""

    @abc.abstractmethod
    def sigma(self, t: Float[ArrayLike, ""]) -> Float[Array, ""]:
        """Noise scale at time t."""

    def derivatives(self, t: Float[ArrayLike, ""]) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """(d alpha / dt, d sigma / dt) at t, by forward-mode differentiation."""
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        _, da = jax.jvp(self.alpha, (t,), (jnp.ones_like(t),))
        _, ds = jax.jvp(self.sigma, (t,), (jnp.ones_like(t),))
        return da, ds


    def time_of(self, log_ratio: Float[ArrayLike, "*n"]) -> Float[Array, "*n"]:
        """The time t at which log(sigma(t) / alpha(t)) equals ``log_ratio`` (bisection on [0, 1];
        clipped to the ends)."""
        target = jnp.asarray(log_ratio, dtype=jnp.result_type(float))

        def f(t):
            return jnp.log(self.sigma(t)) - jnp.log(self.alpha(t))

        def body(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            below = f(mid) < target
            return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

        lo, hi = jax.lax.fori_loop(0, 60, body, (jnp.zeros_like(target), jnp.ones_like(target)))
        return 0.5 * (lo + hi)


class VP(AbstractSchedule):
    """Variance-preserving schedule with linear beta(t) (DDPM in continuous time).

    Attributes:
        beta_min, beta_max: beta(0) and beta(1); the defaults 0.1 and 20 are DDPM's 1000-step
            schedule (beta from 1e-4 to 0.02) in continuous time.
    """

    beta_min: Float[Array, ""] = eqx.field(converter=lambda v: _positive(v, "beta_min"), default=0.1)
    beta_max: Float[Array, ""] = eqx.field(converter=lambda v: _positive(v, "beta_max"), default=20.0)

    def __check_init__(self):
        _check_ordered(self.beta_min, self.beta_max, "beta_min", "beta_max")

    def _log_alpha2(self, t):
        t = jnp.asarray(t, dtype=self.beta_min.dtype)
        return -0.5 * t**2 * (self.beta_max - self.beta_min) - t * self.beta_min

    def alpha(self, t):
        return jnp.exp(0.5 * self._log_alpha2(t))

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(self._log_alpha2(t)))  # sqrt(1 - alpha^2), accurate near t = 0


class VE(AbstractSchedule):
    """Variance-exploding schedule, geometric in t.

    Attributes:
        sigma_min, sigma_max: noise scale at t -> 0+ and at t = 1; sigma_max should exceed the
            largest distance between training images (Song and Ermon 2020, technique 1).
    """

    sigma_min: Float[Array, ""] = eqx.field(converter=lambda v: _positive(v, "sigma_min"), default=0.01)
    sigma_max: Float[Array, ""] = eqx.field(converter=lambda v: _positive(v, "sigma_max"), default=50.0)

    def __check_init__(self):
        _check_ordered(self.sigma_min, self.sigma_max, "sigma_min", "sigma_max")

    def alpha(self, t):
        return jnp.ones_like(jnp.asarray(t, dtype=self.sigma_min.dtype))

    def sigma(self, t):
        t = jnp.asarray(t, dtype=self.sigma_min.dtype)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t
