r"""Kolmogorov and semilinear parabolic PDEs as values.

**Convention (stated once, used everywhere in ``pde``).** On :math:`[0, T) \times \mathbb{R}^d`

.. math::
    u_t + \tfrac12 \operatorname{Tr}\big(\sigma\sigma^\top(t,x)\, \operatorname{Hess}_x u\big)
        + \mu(t,x)\cdot\nabla_x u + f\big(t, x, u, \sigma^\top(t,x) \nabla_x u\big) = 0,
    \qquad u(T, x) = g(x),

and the quantity of interest is :math:`u(0, x)` at a point :math:`x_0` or on a box. By Feynman–Kac,
with :math:`dX_s = \mu(s, X_s) ds + \sigma(s, X_s) dW_s`, :math:`X_0 = x`,

.. math::
    u(0, x) = \mathbb{E}\Big[g(X_T)
        + \int_0^T f\big(s, X_s, u(s, X_s), \sigma^\top\nabla u(s, X_s)\big)\,ds\Big].

A *linear* problem has :math:`f(t,x,u,z) = -r\,u` with a constant discount rate :math:`r \ge 0`, so
:math:`u(0,x) = e^{-rT}\,\mathbb{E}[g(X_T)]`. The forward-time form of the heat equation,
:math:`v_t = \Delta v`, :math:`v(0,\cdot) = \varphi`, is this with :math:`\sigma = \sqrt2 I`,
:math:`g = \varphi` and :math:`v(T, x) = u(0, x)`.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._sde_types import AbstractSDE


class Box(eqx.Module):
    """The axis-aligned box ``[lo_1, hi_1] x ... x [lo_d, hi_d]``."""

    lo: Float[Array, " d"]
    hi: Float[Array, " d"]

    def __check_init__(self):
        if jnp.shape(self.lo) != jnp.shape(self.hi) or jnp.ndim(self.lo) != 1:
            raise ValueError(
                f"`lo` and `hi` must be vectors of one shape (d,), got {jnp.shape(self.lo)} and "
                f"{jnp.shape(self.hi)}"
            )
        if not isinstance(self.lo, jax.core.Tracer) and not bool(jnp.all(self.lo <= self.hi)):
            raise ValueError("`lo` must be <= `hi` in every coordinate")

    def sample(self, key: Array, n: int) -> Float[Array, "n d"]:
        """``n`` points drawn uniformly from the box."""
        u = jax.random.uniform(key, (n,) + self.lo.shape, self.lo.dtype)
        return self.lo + u * (self.hi - self.lo)


class Reference(eqx.Module):
    """A reference value and how it was obtained.

    Attributes:
        value: the reference u(0, x).
        stderr: its standard error (0 for closed forms; quadrature error bound or Monte Carlo
            standard error otherwise).
        method: ``"closed form"``, ``"quadrature"``, ``"monte carlo"``, ``"multilevel picard"`` or
            ``"published"``.
    """

    value: Float[Array, ""]
    stderr: Float[Array, ""]
    method: str = eqx.field(static=True)


class AbstractProblem(eqx.Module):
    """A (semi)linear parabolic PDE in the convention of this module.

    Subclasses hold their parameters as array leaves, implement :meth:`terminal`,
    :meth:`nonlinearity` and :meth:`reference`, and set the class attribute ``name`` (the CLI name).
    Linear problems subclass :class:`AbstractLinearProblem` instead.
    """

    sde: eqx.AbstractVar[AbstractSDE]
    horizon: eqx.AbstractVar[Float[Array, ""]]
    x0: eqx.AbstractVar[Float[Array, " d"]]
    box: eqx.AbstractVar[Box | None]

    name: ClassVar[str]

    @property
    def dim(self) -> int:
        return self.sde.dim

    @abc.abstractmethod
    def terminal(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        """g(x)."""

    @abc.abstractmethod
    def nonlinearity(
        self, t: Float[Array, ""], x: Float[Array, " d"], u: Float[Array, ""], z: Float[Array, " d"]
    ) -> Float[Array, ""]:
        """f(t, x, u, z) with z = sigma^T grad u. Linear problems return -r u."""

    @abc.abstractmethod
    def reference(self, x: Float[Array, " d"] | None = None, *, key: Array | None = None) -> Reference:
        """u(0, x) (default x = x0) with its error bar. Monte Carlo references need ``key``."""


class AbstractLinearProblem(AbstractProblem):
    """A linear Kolmogorov problem: f(t, x, u, z) = -r u with a constant discount rate r >= 0, so
    u(0, x) = exp(-r T) E[g(X_T^x)] (what ``DeepKolmogorov`` regresses on)."""

    discount_rate: eqx.AbstractVar[Float[Array, ""]]

    def nonlinearity(self, t, x, u, z):
        return -self.discount_rate.astype(u.dtype) * u


def nonlinearity_uses_z(problem: AbstractProblem, dtype) -> bool:
    """Whether f's output is connected to its z argument in f's jaxpr.

    Structural and conservative: it cannot miss a dependence the way a derivative at one random
    point can (e.g. behind ``where``), and a dead use such as ``0 * z`` counts as a use.
    """
    from jax.extend.core import Var

    scalar = jax.ShapeDtypeStruct((), dtype)
    vector = jax.ShapeDtypeStruct((problem.dim,), dtype)
    jaxpr = jax.make_jaxpr(problem.nonlinearity)(scalar, vector, scalar, vector).jaxpr
    live = {jaxpr.invars[3]}
    for eqn in jaxpr.eqns:
        if any(isinstance(v, Var) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    return any(isinstance(v, Var) and v in live for v in jaxpr.outvars)
