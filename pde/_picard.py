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
from jaxtyping import Array, Float

from sciml import backend

from ._problem import AbstractProblem, Reference, nonlinearity_uses_z
from ._sde_types import AbstractExactSDE, AbstractSDE, BrownianMotion, GeometricBrownianMotion

__all__ = ["multilevel_picard"]


def _positive_int(value, name: str, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"got {name}={value!r}; `{name}` must be a positive int ({hint})")
    return int(value)


def _check_key(key) -> None:
    if isinstance(key, jax.Array):
        typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        if (typed and key.shape == ()) or (key.dtype == jnp.uint32 and key.shape == (2,)):
            return
        if typed or (key.dtype == jnp.uint32 and key.shape[-1:] == (2,)):
            raise TypeError(f"`key` must be one PRNG key, got a batch of keys of shape {key.shape}")
    backend.split_key(key)  # raises the backend's TypeError for anything that is not a key
    raise TypeError(f"`key` must be one JAX PRNG key, got {key!r}")


def _cost(level: int, base: int) -> int:
    """Number of SDE samples (each one g or f evaluation, f twice for l >= 1) behind one U_{level}.

    C(0) = 0 and C(n) = M^n + sum_{l<n} M^{n-l} (1 + C(l) + C(l-1)); roughly (2.1 n)^n at M = n.
    """
    costs = [0]
    for n in range(1, level + 1):
        inner = sum(base ** (n - lv) * (1 + costs[lv] + (costs[lv - 1] if lv else 0)) for lv in range(n))
        costs.append(base**n + inner)
    return costs[level]


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


def _merged_sizes(queries: dict[int, int], base: int) -> tuple[dict[int, int], int, int]:
    """For a merged evaluation of U_l at ``queries[l]`` points: the number of points per level (the
    queries plus what the levels above ask for), and how many normal vectors and uniforms it draws."""
    top = max(queries)
    points = {lv: queries.get(lv, 0) for lv in range(1, top + 1)}
    for lv_top in range(top, 0, -1):  # level l only queries levels below it, so points[l] is final here
        for lv in range(1, lv_top):
            points[lv] += points[lv_top] * base ** (lv_top - lv)  # the fine term of loop lv
            if lv < lv_top - 1:
                points[lv] += points[lv_top] * base ** (lv_top - lv - 1)  # the coarse term of loop lv + 1
    steps = {lv: sum(base ** (lv - k) for k in range(lv)) for lv in points}
    n_uniform = sum(points[lv] * steps[lv] for lv in points)
    n_normal = n_uniform + sum(points[lv] * base**lv for lv in points)
    return points, n_normal, n_uniform


class _Draws:
    """Standard normal vectors and uniforms on [0, 1), drawn by one PRNG call and handed out in static
    slices.

    XLA compiles jax's (partitionable threefry) PRNG code slowly on CPU, about a second per call
    site, so an evaluation draws everything it needs at once: uniforms on (-1, 1), mapped to normals
    by sqrt(2) erfinv (what ``jax.random.normal`` does) or to [0, 1) by (u + 1)/2.
    """

    def __init__(self, key: Array, n_normal: int, n_uniform: int, dim: int, dtype):
        low = np.nextafter(np.asarray(-1, dtype), np.asarray(0, dtype))
        u = jax.random.uniform(key, (n_normal * dim + n_uniform,), dtype, minval=low, maxval=1)
        self._normal = np.sqrt(2).astype(dtype) * jax.lax.erf_inv(u[: n_normal * dim]).reshape(n_normal, dim)
        self._uniform = (u[n_normal * dim :] + 1) / 2
        self._next_normal = self._next_uniform = 0

    def normal(self, n: int) -> Array:
        self._next_normal += n
        return self._normal[self._next_normal - n : self._next_normal]

    def uniform(self, n: int) -> Array:
        self._next_uniform += n
        return self._uniform[self._next_uniform - n : self._next_uniform]

    def check_used(self) -> None:
        assert self._next_normal == self._normal.shape[0], (self._next_normal, self._normal.shape)
        assert self._next_uniform == self._uniform.shape[0], (self._next_uniform, self._uniform.shape)


def _sample_mean(
    sample: Callable, key: Array, s, x, count: int, per_sample: int, batch_size: int, width: int
) -> Array:
    """Per point, the mean of ``count`` draws of ``sample(key, s, x) -> (N, width)`` (N flat samples).

    The B points are repeated ``count`` times into one flat batch. When ``B * count * per_sample`` SDE
    samples would exceed ``batch_size``, the flat batch is cut into equal chunks summed by a scan (the
    last one padded), so memory stays bounded while the cost grows like M^n.
    """
    n_points = s.shape[0]
    total = n_points * count
    n_chunks = min(-(-total * per_sample // batch_size), total)
    if n_chunks <= 1:
        values = sample(key, jnp.repeat(s, count, axis=0), jnp.repeat(x, count, axis=0))
        return jnp.mean(values.reshape((n_points, count) + values.shape[1:]), axis=1)
    chunk = -(-total // n_chunks)

    def body(acc, inputs):
        index, chunk_key = inputs
        flat = index * chunk + jnp.arange(chunk)
        owner = jnp.minimum(flat, total - 1) // count
        values = sample(chunk_key, s[owner], x[owner])
        values = jnp.where((flat < total)[:, None], values, 0)  # the padding of the last chunk
        return acc.at[owner].add(values), None

    init = jnp.zeros((n_points, width), x.dtype)
    acc, _ = jax.lax.scan(body, init, (jnp.arange(n_chunks), jax.random.split(key, n_chunks)))
    return acc / jnp.asarray(count, x.dtype)


def _picard_fn(problem: AbstractProblem, dtype, base: int, gradient: bool, batch_size: int) -> Callable:
    """The recursion ``picard(level, key, s, x) -> (B, 1)`` or ``(B, 1 + d)`` (u, or u and z) at B
    points (s, x), s = T - t the time left.

    Two evaluation orders give the same estimator. ``merged`` evaluates every U_l once per level, on
    the concatenation of all points where the levels above query it (sample top-down, then evaluate
    bottom-up), with all randomness drawn up front: a program of O(n^2) operations instead of the
    ~2.4^n copies of plain recursion, which matters because XLA compile time, not run time, dominates
    at small n. It holds all B * C_n samples at once, so when that exceeds ``batch_size`` the top
    layer of the recursion runs as a chunked scan and recurses per chunk.
    """
    sde = problem.sde
    dim = problem.dim
    horizon = jnp.asarray(problem.horizon, dtype)
    width = 1 + dim if gradient else 1
    mask = _bismut_mask(sde, dtype) if gradient else None
    transition = jax.vmap(sde.transition)
    terminal = jax.vmap(problem.terminal)

    def nonlinearity(t, x, v):
        z = v[:, 1:] if gradient else jnp.zeros(x.shape, dtype)
        return jax.vmap(problem.nonlinearity)(t, x, v[:, 0], z)

    def terminal_sample(draws, s, x):
        normal = draws.normal(s.shape[0])
        sqrt_s = jnp.sqrt(s)
        end = jnp.broadcast_to(horizon, s.shape)
        g_end = terminal(transition(horizon - s, end, x, sqrt_s[:, None] * normal))
        if not gradient:
            return g_end[:, None]
        # Antithetic pair (Z, -Z): the z part sees only the odd part of W -> g(X_T), which removes
        # most of its variance near stationary points of g (e.g. g even about x), for one more g
        # evaluation and no more recursion.
        g_anti = terminal(transition(horizon - s, end, x, -sqrt_s[:, None] * normal))
        z_part = ((g_end - g_anti) / (2 * sqrt_s))[:, None] * mask * normal
        return jnp.concatenate([((g_end + g_anti) / 2)[:, None], z_part], axis=1)

    def first_step(draws, s, x):
        """The random time r in [t, T) and X_r for one sample per point, with its weights."""
        v = draws.uniform(s.shape[0])
        normal = draws.normal(s.shape[0])
        if gradient:
            # r - t = s v^2 has density (r - t)^(-1/2) / (2 sqrt(s)): the importance weight
            # 2 sqrt(s (r - t)) = 2 s v cancels the 1/sqrt(r - t) of the Bismut weight, so its variance
            # is finite (with uniform times it is not).
            sqrt_elapsed = jnp.sqrt(s) * v
            remaining = s * (1 - v) * (1 + v)
            weights = (2 * s * v, (2 * jnp.sqrt(s))[:, None] * mask * normal)
        else:
            sqrt_elapsed = jnp.sqrt(s * v)
            remaining = s * (1 - v)  # > 0 as v < 1, so inner weights never divide by 0
            weights = (s, None)
        r = horizon - remaining
        x_r = transition(horizon - s, r, x, sqrt_elapsed[:, None] * normal)
        return r, x_r, remaining, weights

    def weigh(value, weights):
        w_u, w_z = weights
        if not gradient:
            return (w_u * value)[:, None]
        return jnp.concatenate([(w_u * value)[:, None], value[:, None] * w_z], axis=1)

    def repeat_mean(sample, draws, s, x, count):
        values = sample(draws, jnp.repeat(s, count, axis=0), jnp.repeat(x, count, axis=0))
        return jnp.mean(values.reshape((s.shape[0], count) + values.shape[1:]), axis=1)

    def merged(draws, queries):
        """U_l at queries[l] = (s, x) for each l in queries (a dict), as a dict."""
        top = max(queries)
        blocks = {lv: [] for lv in range(1, top + 1)}  # level -> [(s, x)], in offset order
        for lv, block in queries.items():
            blocks[lv].append(block)

        def query(lv, s_q, x_q):
            if lv == 0:
                return None  # U_0 = 0
            offset = sum(block[0].shape[0] for block in blocks[lv])
            blocks[lv].append((s_q, x_q))
            return offset

        def lookup(values, lv, offset, size):
            if lv == 0:
                return jnp.zeros((size, width), dtype)
            return values[lv][offset : offset + size]

        plans = {}
        for lv_top in range(top, 0, -1):  # sample top-down: level l queries only levels below it
            s_l = jnp.concatenate([block[0] for block in blocks[lv_top]])
            x_l = jnp.concatenate([block[1] for block in blocks[lv_top]])
            n = s_l.shape[0]
            steps = []
            for lv in range(lv_top):
                count = base ** (lv_top - lv)
                s_rep, x_rep = jnp.repeat(s_l, count, axis=0), jnp.repeat(x_l, count, axis=0)
                r, x_r, remaining, weights = first_step(draws, s_rep, x_rep)
                fine = query(lv, remaining, x_r)
                coarse = query(lv - 1, remaining, x_r) if lv > 0 else None
                steps.append((lv, count, r, x_r, weights, fine, coarse))
            plans[lv_top] = (n, repeat_mean(terminal_sample, draws, s_l, x_l, base**lv_top), steps)
        draws.check_used()
        values = {}
        for lv_top in range(1, top + 1):  # evaluate bottom-up
            n, total, steps = plans[lv_top]
            for lv, count, r, x_r, weights, fine, coarse in steps:
                value = nonlinearity(r, x_r, lookup(values, lv, fine, n * count))
                if lv > 0:
                    value = value - nonlinearity(r, x_r, lookup(values, lv - 1, coarse, n * count))
                total = total + jnp.mean(weigh(value, weights).reshape(n, count, width), axis=1)
            values[lv_top] = total
        return {lv: values[lv][: block[0].shape[0]] for lv, block in queries.items()}

    def merged_draws(key, queries):
        _, n_normal, n_uniform = _merged_sizes({lv: q[0].shape[0] for lv, q in queries.items()}, base)
        return _Draws(key, n_normal, n_uniform, dim, dtype)

    def picard(level: int, key: Array, s: Float[Array, " b"], x: Float[Array, "b d"]) -> Array:
        if level == 0:
            return jnp.zeros((s.shape[0], width), dtype)
        if s.shape[0] * _cost(level, base) <= batch_size:
            return merged(merged_draws(key, {level: (s, x)}), {level: (s, x)})[level]
        # Too many samples for one merged evaluation: the top layer as chunked loops.
        keys = jax.random.split(key, level + 1)

        def terminal_chunk(k, s, x):
            return terminal_sample(_Draws(k, s.shape[0], 0, dim, dtype), s, x)

        total = _sample_mean(terminal_chunk, keys[0], s, x, base**level, 1, batch_size, width)
        for lv in range(level):
            per_sample = 1 + _cost(lv, base) + (_cost(lv - 1, base) if lv else 0)

            def sample(k, s, x, lv=lv, per_sample=per_sample):
                n = s.shape[0]
                if n * per_sample <= batch_size:  # first step and both subtrees from one set of draws
                    inner = [lv_in for lv_in in (lv, lv - 1) if lv_in > 0]
                    sizes = _merged_sizes({lv_in: n for lv_in in inner}, base)[1:] if inner else (0, 0)
                    draws = _Draws(k, sizes[0] + n, sizes[1] + n, dim, dtype)
                    r, x_r, remaining, weights = first_step(draws, s, x)
                    values = merged(draws, {lv_in: (remaining, x_r) for lv_in in inner}) if inner else {}
                    zero = jnp.zeros((n, width), dtype)
                    fine, coarse = values.get(lv, zero), values.get(lv - 1, zero)
                else:
                    k_step, k_fine, k_coarse = jax.random.split(k, 3)
                    r, x_r, remaining, weights = first_step(_Draws(k_step, n, n, dim, dtype), s, x)
                    fine = picard(lv, k_fine, remaining, x_r)
                    coarse = picard(lv - 1, k_coarse, remaining, x_r) if lv else None
                value = nonlinearity(r, x_r, fine)
                if lv > 0:
                    value = value - nonlinearity(r, x_r, coarse)
                return weigh(value, weights)

            count = base ** (level - lv)
            total = total + _sample_mean(sample, keys[lv + 1], s, x, count, per_sample, batch_size, width)
        return total

    return picard


@eqx.filter_jit
def _estimates(problem, x, key, *, repeats, level, base, gradient, batch_size):
    """``repeats`` independent MLP estimates of u(0, x), shape (repeats,)."""
    picard = _picard_fn(problem, x.dtype, base, gradient, batch_size)
    horizon = jnp.asarray(problem.horizon, x.dtype)
    cost = _cost(level, base)
    n_chunks = min(repeats, -(-repeats * cost // batch_size))
    chunk = -(-repeats // n_chunks)
    s = jnp.broadcast_to(horizon, (chunk,))
    points = jnp.broadcast_to(x, (chunk, x.shape[0]))
    if n_chunks == 1:
        return picard(level, key, s, points)[:, 0]
    estimates = jax.lax.map(lambda k: picard(level, k, s, points)[:, 0], jax.random.split(key, n_chunks))
    return estimates.reshape(-1)[:repeats]


def multilevel_picard(
    problem: AbstractProblem,
    x: Float[Array, " d"] | None = None,
    *,
    key: Array,
    level: int = 4,
    base: int | None = None,
    repeats: int = 1,
    gradient: bool | None = None,
    batch_size: int = 2**17,
) -> Reference:
    r"""Estimate u(0, x) by the full-history recursive multilevel Picard approximation.

    With :math:`U_0 = 0`, base :math:`M` and independent copies of everything random,

    .. math::
        U_n(t,x) = \frac{1}{M^n}\sum_{i=1}^{M^n} g(X^{t,x,i}_T)\,\mathcal W^i_{t,T}
          + \sum_{l=0}^{n-1} \frac{1}{M^{n-l}} \sum_{i=1}^{M^{n-l}}
            \frac{\big[F(R_i, X^{t,x,i}_{R_i}, U_l(R_i, X^{t,x,i}_{R_i}))
              - \mathbb 1_{l>0} F(R_i, X^{t,x,i}_{R_i}, U_{l-1}(R_i, X^{t,x,i}_{R_i}))\big]
              \,\mathcal W^i_{t,R_i}}{\rho_t(R_i)}

    where :math:`F(t,x,v) = f(t,x,v_u,v_z)`. When f does not depend on z, U is scalar,
    :math:`\mathcal W = 1` and :math:`R \sim \mathrm{Uniform}[t,T)` (:math:`1/\rho_t = T - t`): the
    scheme of Hutzenthaler et al. (2020). When f depends on :math:`z = \sigma^\top\nabla u`, U estimates
    :math:`(u, z)` jointly with the Bismut–Elworthy–Li weights
    :math:`\mathcal W_{t,s} = (1, (W_s - W_t)/(s - t))` (E, Hutzenthaler, Jentzen and Kruse 2019;
    Hutzenthaler and Kruse 2020); they give :math:`\sigma^\top\nabla u` for ``BrownianMotion`` and
    ``GeometricBrownianMotion``, where each :math:`X_i` is driven by :math:`W_i` alone. Two variance
    reductions: :math:`R - t = (T - t) V^2`, :math:`V \sim \mathrm{Uniform}[0,1)`, a density
    :math:`\propto (R - t)^{-1/2}` under which the weighted z term has finite variance (under
    uniform times it has not), and antithetic terminal samples :math:`\pm Z` (the z term sees
    :math:`(g(X^+_T) - g(X^-_T))/2`). SDE values come from the exact transition
    ``problem.sde.transition(t, s, x, sqrt(s - t) Z)``: no time discretisation.

    **Cost.** One estimate draws :math:`C_n` SDE samples of dimension d,
    :math:`C_n = M^n + \sum_{l<n} M^{n-l}(1 + C_l + C_{l-1})`, about :math:`(2.1\,n)^n` at :math:`M = n`:
    255, 4916, 121330, 3.65e6, 1.3e8 for n = 3..7, so n = M = 4..6 is the practical range on a CPU.
    For a Lipschitz f without z and M = n, a root-mean-square error :math:`\varepsilon` costs
    :math:`O(d\,\varepsilon^{-(2+\delta)})` for every :math:`\delta > 0` (Hutzenthaler et al. 2020).
    All samples of one estimate form one flat batch (every U_l is evaluated once per level on all
    the points where it is needed, and all its random numbers come from one PRNG call), so compile time
    grows slowly with n; above ``batch_size`` samples the top of the recursion runs as a scan over
    chunks, bounding memory.

    **Convergence of the (u, z) scheme.** The z estimates are noisy, and f passes their noise on to
    the next level; the estimates converge quickly only when f's Lipschitz constant in z, times
    :math:`\sqrt{T}`, is small against :math:`\sqrt{M}`. Measured (dX = dW, d = 5, T = 1, g = |x|^2):
    for :math:`f = 0.1 \sum_i z_i` the spread of one estimate falls about 3x per level, to 1.9% at
    level 5; for :math:`f = 0.5 \sum_i z_i` only about 1.2x per level (26% at level 5). The HJB term
    :math:`-\lambda\lVert z\rVert^2/2` (sigma = sqrt2 I), not Lipschitz, is biased low (the
    squared noise of z) by 7.5%, 3.3%, 1.0% at levels 3, 4, 5 for :math:`\lambda = 0.25`, and diverges
    (estimates of order -10 to -1e3 at level 5) for :math:`\lambda = 1` (d = 5, T = 1). Since
    :math:`\mathbb E f(z + \text{noise}) \ne f(z)` for nonlinear f, low levels are biased in general.

    **Measured** (2 CPU cores, one estimate): Allen–Cahn, d = 100, spreads 1.1% at level 4 (0.01 s)
    and 0.4% at level 5 (0.3 s); reaction–diffusion, d = 100, 7.6% and 2.3%; default risk (GBM),
    d = 100, 0.5% and 0.17% (1 s). Compilation takes 1-10 s up to level 5, about a minute at 6.

    Args:
        problem: the PDE; ``problem.sde`` must be an :class:`~pde.AbstractExactSDE`.
        x: where to evaluate u(0, ·), shape (d,), a real floating array whose dtype the estimate
            uses (default ``problem.x0``).
        key: a JAX PRNG key.
        level: the recursion depth n >= 1 (static: each level compiles once).
        base: the Monte Carlo base M >= 1 (default ``level``, the usual M = n).
        repeats: number of independent estimates; ``value`` is their mean and ``stderr`` their
            standard deviation / sqrt(repeats), NaN for ``repeats=1`` (one estimate says nothing about
            its own spread; an error bar of 0 would claim exactness).
        gradient: whether f depends on z. ``None`` detects it from f's jaxpr (is the output connected
            to the z input? Unlike a derivative at a random point, this cannot miss a dependence
            hidden behind ``jnp.where``; it may see one that is numerically nil, which only costs
            time); ``True`` always runs the (u, z) scheme; ``False`` passes z = 0 to f.
        batch_size: the most SDE samples evaluated at once (peak memory about
            ``batch_size * d`` floats times a small factor).

    Returns:
        A :class:`~pde.Reference` with ``method="multilevel picard"``, in the dtype of ``x``. Works
        under ``jax.jit`` and ``jax.vmap`` (over ``x``, with one key: then every point sees the same
        random numbers).

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
        >>> ref = pde.multilevel_picard(problem, key=jax.random.key(0), level=4, repeats=16)
        >>> ref.method, bool(abs(ref.value - 1.6) < 4 * ref.stderr), bool(ref.stderr < 0.05)
        ('multilevel picard', True, True)

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
    _check_key(key)
    if gradient is None:
        gradient = nonlinearity_uses_z(problem, x.dtype)
    elif not isinstance(gradient, bool):
        raise TypeError(f"`gradient` must be None, True or False, got {gradient!r}")
    if gradient:
        _bismut_mask(problem.sde, x.dtype)  # NotImplementedError here, at the boundary
    estimates = _estimates(
        problem, x, key, repeats=repeats, level=level, base=base, gradient=gradient, batch_size=batch_size
    )
    value = jnp.mean(estimates)
    if repeats == 1:
        stderr = jnp.full((), jnp.nan, x.dtype)
    else:
        stderr = jnp.std(estimates, ddof=1) / jnp.sqrt(jnp.asarray(repeats, x.dtype))
    return Reference(value=value, stderr=stderr, method="multilevel picard")
