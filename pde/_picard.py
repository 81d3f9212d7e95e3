r"""Full-history recursive multilevel Picard (MLP) approximation of u(0, x).

The PDE is the one of :mod:`pde._problem`. Write :math:`X^{t,x}` for the SDE started at
:math:`(t, x)`, :math:`F(t,x,v) = f(t, x, v_u, v_z)` and :math:`\Phi(t, x) = (u, \sigma^\top\nabla u)(t,x)`.
Feynman–Kac and the Bismut–Elworthy–Li formula give the fixed-point equation

.. math::
    \Phi(t,x) = \mathbb{E}\Big[g(X^{t,x}_T)\,\mathcal W_{t,T}\Big]
        + \int_t^T \mathbb{E}\Big[F\big(s, X^{t,x}_s, \Phi(s, X^{t,x}_s)\big)\,\mathcal W_{t,s}\Big]\,ds,
    \qquad \mathcal W_{t,s} = \Big(1, \frac{W_s - W_t}{s - t}\Big),

and MLP approximates its Picard iterates by a telescoping sum whose fine levels use few samples.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Var
from jaxtyping import Array, Float

from sciml import backend

from ._problem import AbstractProblem, Reference
from ._sde_types import AbstractExactSDE, AbstractSDE, BrownianMotion, GeometricBrownianMotion

__all__ = ["multilevel_picard"]


def _positive_int(value, name: str, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"got {name}={value!r}; `{name}` must be a positive int ({hint})")
    return int(value)


def _cost(level: int, base: int) -> int:
    """Number of SDE samples (each one g or f evaluation, f twice for l >= 1) behind one U_{level}.

    C(0) = 0 and C(n) = M^n + sum_{l<n} M^{n-l} (1 + C(l) + C(l-1)); roughly (2.1 n)^n at M = n.
    """
    costs = [0]
    for n in range(1, level + 1):
        inner = sum(base ** (n - lv) * (1 + costs[lv] + (costs[lv - 1] if lv else 0)) for lv in range(n))
        costs.append(base**n + inner)
    return costs[level]


def _depends_on_z(problem: AbstractProblem, dtype, dim: int) -> bool:
    """Whether f's output is connected to its z argument in f's jaxpr (a structural, conservative test:
    it cannot miss a dependence the way a derivative at one random point can, e.g. behind `where`)."""
    scalar = jax.ShapeDtypeStruct((), dtype)
    vector = jax.ShapeDtypeStruct((dim,), dtype)
    jaxpr = jax.make_jaxpr(problem.nonlinearity)(scalar, vector, scalar, vector).jaxpr
    dependent = {jaxpr.invars[3]}
    for eqn in jaxpr.eqns:
        if any(isinstance(v, Var) and v in dependent for v in eqn.invars):
            dependent.update(eqn.outvars)
    return any(isinstance(v, Var) and v in dependent for v in jaxpr.outvars)


def _bismut_mask(sde: AbstractSDE, dtype) -> Array:
    """Which components of z = sigma^T grad u the weight (W_s - W_t)/(s - t) estimates.

    For both SDEs below each X_i is driven by W_i alone and z_i(t, x) = E[phi(X_s) (W_s - W_t)_i]/(s - t)
    (Gaussian integration by parts); components with zero noise have z_i = 0 and are masked out.
    """
    if isinstance(sde, BrownianMotion):
        return (sde.scale > 0).astype(dtype)
    if isinstance(sde, GeometricBrownianMotion):
        return (sde.sigma > 0).astype(dtype)
    raise NotImplementedError(
        f"the gradient-augmented multilevel Picard scheme needs Bismut–Elworthy–Li weights for the SDE, "
        f"which are implemented for BrownianMotion and GeometricBrownianMotion only, got "
        f"{type(sde).__name__}; the nonlinearity depends on z = sigma^T grad u (pass gradient=False only "
        "if it does not)"
    )


def _sample_mean(fn: Callable, key: Array, count: int, per_sample: int, batch_size: int, out) -> Array:
    """Mean of ``fn(k)`` over ``count`` keys split from ``key``; at most about ``batch_size`` SDE samples
    are alive at once (vmap within a chunk, a scan over chunks), so memory does not grow like M^n."""
    keys = jax.random.split(key, count)
    chunk = max(1, batch_size // per_sample)
    if count <= chunk:
        return jnp.mean(jax.vmap(fn)(keys), axis=0)
    n_chunks, rest = divmod(count, chunk)

    def body(total, ks):
        return total + jnp.sum(jax.vmap(fn)(ks), axis=0), None

    head = keys[: n_chunks * chunk].reshape((n_chunks, chunk) + keys.shape[1:])
    total, _ = jax.lax.scan(body, jnp.zeros(out.shape, out.dtype), head)
    if rest:
        total = total + jnp.sum(jax.vmap(fn)(keys[n_chunks * chunk :]), axis=0)
    return total / jnp.asarray(count, out.dtype)


def _picard_fn(problem: AbstractProblem, dtype, base: int, gradient: bool, batch_size: int) -> Callable:
    """The recursion U_l(key, s, x) -> (u,) or (u, z), s = T - t the time to maturity."""
    sde = problem.sde
    dim = problem.dim
    horizon = problem.horizon.astype(dtype)
    out = jax.ShapeDtypeStruct((1 + dim,) if gradient else (1,), dtype)
    mask = _bismut_mask(sde, dtype) if gradient else None

    def nonlinearity(t, x, v):
        z = v[1:] if gradient else jnp.zeros((dim,), dtype)
        return problem.nonlinearity(t, x, v[0], z)

    def picard(level: int, key: Array, s: Float[Array, ""], x: Float[Array, " d"]) -> Array:
        if level == 0:
            return jnp.zeros(out.shape, dtype)
        t = horizon - s
        keys = jax.random.split(key, level + 1)
        sqrt_s = jnp.sqrt(s)
        g_x = problem.terminal(x) if gradient else None

        def terminal_sample(k):
            normal = jax.random.normal(k, (dim,), dtype)
            g_end = problem.terminal(sde.transition(t, horizon, x, sqrt_s * normal))
            if not gradient:
                return g_end[None]
            # g(x) is a control variate for the z part: E[g(x) (W_T - W_t)] = 0.
            diff = g_end - g_x
            return jnp.concatenate([diff[None], diff * mask * normal / sqrt_s])

        total = _sample_mean(terminal_sample, keys[0], base**level, 1, batch_size, out)
        if gradient:
            total = total.at[0].add(g_x)

        for lv in range(level):

            def picard_sample(k, lv=lv):
                k_time, k_normal, k_fine, k_coarse = jax.random.split(k, 4)
                v = jax.random.uniform(k_time, (), dtype)
                normal = jax.random.normal(k_normal, (dim,), dtype)
                if gradient:
                    # r - t = s v^2 has density (r - t)^(-1/2) / (2 sqrt(s)): the importance weight
                    # 2 sqrt(s (r - t)) = 2 s v cancels the 1/sqrt(r - t) of the Bismut weight, so its
                    # variance is finite (with uniform times it is not).
                    sqrt_elapsed = sqrt_s * v
                    remaining = s * (1 - v) * (1 + v)
                else:
                    sqrt_elapsed = jnp.sqrt(s * v)
                    remaining = s * (1 - v)  # > 0 as v < 1, so inner weights never divide by 0
                r = horizon - remaining
                x_r = sde.transition(t, r, x, sqrt_elapsed * normal)
                value = nonlinearity(r, x_r, picard(lv, k_fine, remaining, x_r))
                if lv > 0:
                    value = value - nonlinearity(r, x_r, picard(lv - 1, k_coarse, remaining, x_r))
                if not gradient:
                    return (s * value)[None]
                return jnp.concatenate([(2 * s * v * value)[None], (2 * sqrt_s * value) * mask * normal])

            per_sample = 1 + _cost(lv, base) + (_cost(lv - 1, base) if lv else 0)
            total = total + _sample_mean(
                picard_sample, keys[lv + 1], base ** (level - lv), per_sample, batch_size, out
            )
        return total

    return picard


@eqx.filter_jit
def _estimates(problem, x, keys, *, level, base, gradient, batch_size):
    """One MLP estimate of u(0, x) per key (shape (repeats,))."""
    picard = _picard_fn(problem, x.dtype, base, gradient, batch_size)
    horizon = problem.horizon.astype(x.dtype)
    one = lambda k: picard(level, k, horizon, x)[0]
    total = _cost(level, base)
    if keys.shape[0] * total <= batch_size:
        return jax.vmap(one)(keys)
    return jax.lax.map(one, keys, batch_size=max(1, batch_size // total))


def multilevel_picard(
    problem: AbstractProblem,
    x: Float[Array, " d"] | None = None,
    *,
    key: Array,
    level: int = 4,
    base: int | None = None,
    repeats: int = 1,
    gradient: bool | None = None,
    batch_size: int = 2**16,
) -> Reference:
    r"""Estimate u(0, x) by the full-history recursive multilevel Picard approximation.

    With :math:`U_0 = 0`, base :math:`M` and independent copies of everything random,

    .. math::
        U_n(t,x) = \frac{1}{M^n}\sum_{i=1}^{M^n} g(X^{t,x,i}_T)\,\mathcal W^i_{t,T}
          + \sum_{l=0}^{n-1} \frac{1}{M^{n-l}} \sum_{i=1}^{M^{n-l}}
            \frac{\big[F(R_i, X^{t,x,i}_{R_i}, U_l(R_i, X^{t,x,i}_{R_i}))
              - \mathbb 1_{l>0} F(R_i, X^{t,x,i}_{R_i}, U_{l-1}(R_i, X^{t,x,i}_{R_i}))\big]
              \,\mathcal W^i_{t,R_i}}{\rho_t(R_i)}

    where :math:`F(t,x,v) = f(t,x,v_u,v_z)` and :math:`\mathcal W_{t,s} = 1` when f does not depend
    on z: then :math:`R \sim \mathrm{Uniform}[t,T]` (:math:`1/\rho_t = T - t`), the scheme of
    Hutzenthaler et al. (2020). When f depends on :math:`z = \sigma^\top\nabla u`, U estimates
    :math:`(u, z)` jointly with the Bismut–Elworthy–Li weights
    :math:`\mathcal W_{t,s} = (1, (W_s - W_t)/(s - t))` (the terminal z term uses the control variate
    :math:`g(X_T) - g(x)`), and :math:`R - t = (T - t) V^2`, :math:`V \sim \mathrm{Uniform}[0,1)`,
    whose density :math:`\propto (R - t)^{-1/2}` keeps the weighted variance finite (E, Hutzenthaler,
    Jentzen and Kruse 2019; Hutzenthaler and Kruse 2020). SDE paths are drawn from the exact
    transition ``problem.sde.transition(t, s, x, sqrt(s - t) Z)``: no time discretisation.

    **Cost.** One estimate draws :math:`C_n` SDE samples of dimension d,
    :math:`C_n = M^n + \sum_{l<n} M^{n-l}(1 + C_l + C_{l-1})`, about :math:`(2.1\,n)^n` at :math:`M = n`:
    255, 4916, 121330, 3.65e6, 1.3e8 for n = 3..7, so n = M = 4..6 is the practical range on a CPU.
    For Lipschitz f the root-mean-square error decays like :math:`C^{-1/2 + \delta}` (up to logs).
    Samples are evaluated ``batch_size`` at a time (vmap within, a scan across), bounding memory.

    Args:
        problem: the PDE; ``problem.sde`` must be an :class:`~pde.AbstractExactSDE`.
        x: where to evaluate u(0, ·), shape (d,), a real floating array whose dtype the estimate
            uses (default ``problem.x0``).
        key: a JAX PRNG key.
        level: the recursion depth n >= 1 (static; compile time grows about 2.4x per level).
        base: the Monte Carlo base M >= 1 (default ``level``, the usual M = n).
        repeats: number of independent estimates; ``value`` is their mean and ``stderr`` their
            standard deviation / sqrt(repeats), NaN for ``repeats=1`` (one estimate says nothing about
            its own spread; an error bar of 0 would claim exactness).
        gradient: whether f depends on z. ``None`` detects it from f's jaxpr (is the output connected
            to the z input?); ``True`` always runs the (u, z) scheme; ``False`` passes z = 0 to f.
        batch_size: the most SDE samples evaluated at once (peak memory about
            ``batch_size * d`` floats times a small factor).

    Returns:
        A :class:`~pde.Reference` with ``method="multilevel picard"``.

    Raises:
        TypeError: ``problem`` is not an ``AbstractProblem``, ``x`` is not a real floating array or
            ``key`` is not a PRNG key.
        ValueError: ``x`` has the wrong shape; ``level``, ``base``, ``repeats`` or ``batch_size`` is
            not a positive int; ``problem.sde`` is not exactly solvable.
        NotImplementedError: f depends on z and the SDE is neither ``BrownianMotion`` nor
            ``GeometricBrownianMotion`` (no Bismut–Elworthy–Li weights for it here).

    Example (the reaction–diffusion problem, u(0, 0) = 1.6):
        >>> import pde
        >>> class ReactionDiffusion(pde.AbstractProblem):
        ...     sde: pde.BrownianMotion
        ...     horizon: jax.Array
        ...     x0: jax.Array
        ...     box: None = None
        ...     name = "rd"
        ...     def exact(self, t, x):
        ...         lam = 1 / jnp.sqrt(jnp.asarray(self.dim, x.dtype))
        ...         return 1.6 + jnp.sin(lam * jnp.sum(x)) * jnp.exp(self.dim * lam**2 * (t - 1) / 2)
        ...     def terminal(self, x):
        ...         return self.exact(jnp.ones((), x.dtype), x)
        ...     def nonlinearity(self, t, x, u, z):
        ...         return jnp.minimum(1, (u - self.exact(t, x)) ** 2)
        ...     def reference(self, x=None, *, key=None):
        ...         raise NotImplementedError
        >>> problem = ReactionDiffusion(pde.BrownianMotion(10), jnp.ones(()), jnp.zeros(10))
        >>> ref = pde.multilevel_picard(problem, key=jax.random.key(0), level=3)
        >>> ref.method, bool(abs(ref.value - 1.6) < 0.05)
        ('multilevel picard', True)

    References:
        W. E, M. Hutzenthaler, A. Jentzen, T. Kruse, "On multilevel Picard numerical approximations
        for high-dimensional nonlinear parabolic partial differential equations and high-dimensional
        nonlinear backward stochastic differential equations", J. Sci. Comput. 79 (2019).
        M. Hutzenthaler, A. Jentzen, T. Kruse, T. A. Nguyen, P. von Wurstemberger, "Overcoming the
        curse of dimensionality in the numerical approximation of semilinear parabolic partial
        differential equations", Proc. R. Soc. A 476 (2020).
        M. Hutzenthaler, T. Kruse, "Multilevel Picard approximations of high-dimensional semilinear
        parabolic differential equations with gradient-dependent nonlinearities", SIAM J. Numer.
        Anal. 58 (2020).
    """
    if not isinstance(problem, AbstractProblem):
        raise TypeError(f"`problem` must be a pde.AbstractProblem, got {type(problem).__name__}")
    if not isinstance(problem.sde, AbstractExactSDE):
        raise ValueError(
            "multilevel_picard samples X_s from the exact transition of the SDE, so `problem.sde` must "
            f"be an exactly solvable pde.AbstractExactSDE (e.g. BrownianMotion, GeometricBrownianMotion), "
            f"got {type(problem.sde).__name__}"
        )
    level = _positive_int(level, "level", "the recursion depth, typically 3..6")
    base = level if base is None else _positive_int(base, "base", "the Monte Carlo base M; None gives level")
    repeats = _positive_int(repeats, "repeats", "the number of independent estimates")
    batch_size = _positive_int(batch_size, "batch_size", "SDE samples evaluated at once")
    x = problem.x0 if x is None else backend.check_float_array(x, name="x")
    if x.shape != (problem.dim,):
        raise ValueError(
            f"`x` must have shape ({problem.dim},) (the problem's dimension), got shape {x.shape}"
        )
    keys = backend.split_key(key, repeats)  # TypeError for anything but a PRNG key
    if keys.shape[1:] not in ((), (2,)):
        raise TypeError(f"`key` must be one PRNG key, got a batch of keys of shape {key.shape}")
    if gradient is None:
        gradient = _depends_on_z(problem, x.dtype, problem.dim)
    elif not isinstance(gradient, bool):
        raise TypeError(f"`gradient` must be None, True or False, got {gradient!r}")
    if gradient:
        _bismut_mask(problem.sde, x.dtype)  # NotImplementedError here, at the boundary
    estimates = _estimates(
        problem, x, keys, level=level, base=base, gradient=gradient, batch_size=batch_size
    )
    value = jnp.mean(estimates)
    if repeats == 1:
        stderr = jnp.full((), jnp.nan, x.dtype)
    else:
        stderr = jnp.std(estimates, ddof=1) / jnp.sqrt(jnp.asarray(repeats, x.dtype))
    return Reference(value=value, stderr=stderr, method="multilevel picard")
