"""SDE types: dX_t = mu(t, X_t) dt + sigma(t, X_t) dW_t on R^d, with d-dimensional Brownian W.

``diffusion(t, x)`` returns sigma as a lineax operator (d x d), so diagonal noise costs O(d) and
diffrax's ``ControlTerm`` consumes it directly (``operator.mv(dW)``). ``sigma^T grad u`` in the PDE
solvers is ``diffusion(t, x).transpose().mv(grad_u)``.

Exactly solvable SDEs (:class:`AbstractExactSDE`) also give the transition map ``X_{t1}`` as a
function of ``X_{t0}`` and the Brownian increment, so paths can be sampled without discretisation
error on any time grid.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float

from sciml import backend


class AbstractSDE(eqx.Module):
    """An Ito SDE dX = mu(t, X) dt + sigma(t, X) dW in R^dim (square noise: W is dim-dimensional)."""

    dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def drift(self, t: Float[Array, ""], x: Float[Array, " d"]) -> Float[Array, " d"]:
        """mu(t, x)."""

    @abc.abstractmethod
    def diffusion(self, t: Float[Array, ""], x: Float[Array, " d"]) -> lx.AbstractLinearOperator:
        """sigma(t, x) as a d x d lineax operator."""


class AbstractExactSDE(AbstractSDE):
    """An SDE whose transition over [t0, t1] is known in closed form."""

    @abc.abstractmethod
    def transition(
        self, t0: Float[Array, ""], t1: Float[Array, ""], x: Float[Array, " d"], dw: Float[Array, " d"]
    ) -> Float[Array, " d"]:
        """X_{t1} given X_{t0} = x and the Brownian increment dw = W_{t1} - W_{t0}."""


def _vector(value, dim: int, name: str) -> Array:
    arr = backend.as_array(value, name=name)
    if arr.ndim == 0:
        arr = jnp.full((dim,), arr)
    if arr.shape != (dim,):
        raise ValueError(f"`{name}` must be a scalar or have shape ({dim},), got shape {arr.shape}")
    return arr


def _check_nonnegative(value: Array, name: str) -> None:
    """ValueError when a concrete parameter has a negative or NaN entry (traced values pass)."""
    if not isinstance(value, jax.core.Tracer) and not bool(jnp.all(value >= 0)):
        raise ValueError(f"`{name}` must be >= 0 (a diffusion scale), got {value}")


def _check_dim(dim) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"got dim={dim!r}; `dim` must be a positive int")
    return int(dim)


class BrownianMotion(AbstractExactSDE):
    """Brownian motion with constant drift and scale: dX = b dt + s dW, s diagonal.

    Exact transition: X_{t1} = x + b (t1 - t0) + s * dw. ``scale=sqrt(2)`` gives the generator
    Delta (the heat equation u_t = Delta u).

    Args:
        dim: dimension d.
        scale: s, a scalar or shape (d,), >= 0 (array leaf).
        drift_vector: b, a scalar or shape (d,) (array leaf).
    """

    dim: int = eqx.field(static=True)
    scale: Float[Array, " d"]
    drift_vector: Float[Array, " d"]

    def __init__(self, dim: int, scale=1.0, drift_vector=0.0):
        self.dim = _check_dim(dim)
        self.scale = _vector(scale, dim, "scale")
        self.drift_vector = _vector(drift_vector, dim, "drift_vector")

    def __check_init__(self):
        _check_nonnegative(self.scale, "scale")

    def drift(self, t, x):
        return self.drift_vector.astype(x.dtype)

    def diffusion(self, t, x):
        return lx.DiagonalLinearOperator(self.scale.astype(x.dtype))

    def transition(self, t0, t1, x, dw):
        return x + self.drift_vector.astype(x.dtype) * (t1 - t0) + self.scale.astype(x.dtype) * dw


class GeometricBrownianMotion(AbstractExactSDE):
    """Independent geometric Brownian motions: dX_i = mu_i X_i dt + sigma_i X_i dW_i.

    Exact transition: X_{t1} = x * exp((mu - sigma^2/2)(t1 - t0) + sigma * dw).

    Args:
        dim: dimension d.
        mu: drift rates, a scalar or shape (d,) (array leaf).
        sigma: volatilities, a scalar or shape (d,), >= 0 (array leaf).
    """

    dim: int = eqx.field(static=True)
    mu: Float[Array, " d"]
    sigma: Float[Array, " d"]

    def __init__(self, dim: int, mu, sigma):
        self.dim = _check_dim(dim)
        self.mu = _vector(mu, dim, "mu")
        self.sigma = _vector(sigma, dim, "sigma")

    def __check_init__(self):
        _check_nonnegative(self.sigma, "sigma")

    def drift(self, t, x):
        return self.mu.astype(x.dtype) * x

    def diffusion(self, t, x):
        return lx.DiagonalLinearOperator(self.sigma.astype(x.dtype) * x)

    def transition(self, t0, t1, x, dw):
        mu, sigma = self.mu.astype(x.dtype), self.sigma.astype(x.dtype)
        return x * jnp.exp((mu - 0.5 * sigma**2) * (t1 - t0) + sigma * dw)


class ItoSDE(AbstractSDE):
    """A general Ito SDE from two functions (no exact transition; sampled with a scheme).

    Args:
        dim: dimension d.
        drift_fn: ``drift_fn(t, x, args) -> (d,)``.
        diffusion_fn: ``diffusion_fn(t, x, args) -> lineax operator`` (d x d).
        args: a pytree of array parameters passed to both (changing them does not recompile).
    """

    dim: int = eqx.field(static=True)
    drift_fn: Callable = eqx.field(static=True)
    diffusion_fn: Callable = eqx.field(static=True)
    args: object = None

    def __check_init__(self):
        _check_dim(self.dim)

    def drift(self, t, x):
        return self.drift_fn(t, x, self.args)

    def diffusion(self, t, x):
        return self.diffusion_fn(t, x, self.args)
