r"""Sampling paths of Ito SDEs, through diffrax or an exact transition.

For :math:`dX_t = \mu(t, X_t)\,dt + \sigma(t, X_t)\,dW_t`, :math:`X_{t_0} = x_0 \in \mathbb{R}^d`, on
a time grid :math:`t_0 < t_1 < \dots < t_{n-1}`, :func:`sample_path` returns :math:`X` at the grid
points together with the Brownian increments :math:`\Delta W_i = W_{t_{i+1}} - W_{t_i}` that drove
it (the deep BSDE solver needs both). The scheme is an object (diffrax's ``diffeqsolve(terms,
solver, ...)`` is the model): :class:`EulerMaruyama` and :class:`Milstein` step with diffrax,
:class:`Exact` applies the closed-form transition of an :class:`AbstractExactSDE`.

Everything is written for one path and batched with ``vmap`` (:func:`sample_paths`); it works under
``jax.jit`` (the SDE and the scheme are pytrees, ``ts`` is an array, ``substeps`` and ``n_paths``
are static ints) and is differentiable with respect to ``x0`` (pathwise derivatives). Arrays follow
the dtype of ``x0``; ``ts`` is cast to it.

**The Brownian path.** The diffrax schemes step with ``StepTo`` on a fixed grid (``substeps`` equal
steps per interval of ``ts``), so the Brownian motion is only ever needed at grid points. It is
therefore drawn there exactly — ``N(0, h I)`` increments, one ``jax.random.normal`` call — and handed
to ``ControlTerm`` as a small grid path that returns each drawn increment bit for bit; ``Path.dws``
are those same numbers (summed over sub-steps). ``diffrax.VirtualBrownianTree`` would also be
consistent, but it is exact only up to its ``tol`` and bisects per evaluation (about 50x slower here:
2000 paths x 100 steps, d = 10, on CPU); ``diffrax.UnsafeBrownianPath`` keys each draw on ``(t0, t1)``,
so its increment over ``[ts[i], ts[i+1]]`` is not the sum of the sub-step increments that drove the
solve. The price is memory: ``(n - 1) * substeps * d`` numbers per path, the size of the fine path.

The SDE types are re-exported here, so ``pde.sde.BrownianMotion`` and ``pde.BrownianMotion`` are
the same class.
"""

from __future__ import annotations

import abc

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from sciml import backend

from ._sde_types import AbstractExactSDE as AbstractExactSDE
from ._sde_types import AbstractSDE as AbstractSDE
from ._sde_types import BrownianMotion as BrownianMotion
from ._sde_types import GeometricBrownianMotion as GeometricBrownianMotion
from ._sde_types import ItoSDE as ItoSDE

__all__ = [
    "AbstractExactSDE",
    "AbstractSDE",
    "AbstractScheme",
    "BrownianMotion",
    "EulerMaruyama",
    "Exact",
    "GeometricBrownianMotion",
    "ItoSDE",
    "Milstein",
    "Path",
    "sample_path",
    "sample_paths",
    "sample_terminal",
]


class Path(eqx.Module):
    """A sampled path on a time grid and the Brownian increments that drove it.

    From :func:`sample_paths` every field has a leading batch axis ``(n_paths, ...)``.

    Attributes:
        ts: the grid, shape ``(n,)``.
        xs: ``X`` at ``ts``, shape ``(n, d)``; ``xs[0] = x0``.
        dws: ``W_{ts[i+1]} - W_{ts[i]}``, shape ``(n - 1, d)``: exactly the increments the scheme
            used (with ``substeps > 1``, the sum of the sub-step increments, to rounding).
    """

    ts: Float[Array, " n"]
    xs: Float[Array, "n d"]
    dws: Float[Array, "n-1 d"]


# --------------------------------------------------------------------------------------------------
# Schemes
# --------------------------------------------------------------------------------------------------


class AbstractScheme(eqx.Module):
    """How a path of an SDE is sampled on a time grid.

    Subclasses implement :meth:`check` (called at the boundary, once, before any tracing of values)
    and :meth:`sample` (one path, inputs already validated; must be jit-, vmap- and grad-safe).
    """

    @abc.abstractmethod
    def check(self, sde: AbstractSDE, x0: Float[Array, " d"]) -> None:
        """Raise ``ValueError`` if this scheme cannot sample ``sde`` (shapes only, no values)."""

    @abc.abstractmethod
    def sample(
        self,
        sde: AbstractSDE,
        x0: Float[Array, " d"],
        ts: Float[Array, " n"],
        substeps: int,
        *,
        key: PRNGKeyArray,
    ) -> Path:
        """One path of ``sde`` from ``x0`` on the grid ``ts`` (same dtype as ``x0``)."""


class _GridBrownianPath(diffrax.AbstractBrownianPath):
    """A Brownian path sampled exactly on a fixed grid, linear in between.

    On the grid ``W`` is an exact Gaussian random walk, so a solver stepping from grid point to grid
    point (``StepTo``) sees exact ``N(0, h I)`` increments, and an increment over one grid cell is
    returned bit for bit as drawn: the stored increments *are* the ones that drove the solve.
    (Subclassing ``AbstractBrownianPath`` is how diffrax recognises an SDE.)
    """

    ts: Float[Array, " m"]
    increments: Float[Array, "m-1 d"]
    ws: Float[Array, "m d"]
    levy_area: type = eqx.field(static=True)

    def __init__(self, ts, increments):
        self.ts = ts
        self.increments = increments
        self.levy_area = diffrax.BrownianIncrement
        zero = jnp.zeros_like(increments[:1])
        self.ws = jnp.concatenate([zero, jnp.cumsum(increments, axis=0)])

    @property
    def t0(self):
        return self.ts[0]

    @property
    def t1(self):
        return self.ts[-1]

    def _value(self, t):
        i = jnp.clip(jnp.searchsorted(self.ts, t, side="right") - 1, 0, self.ts.shape[0] - 2)
        frac = (t - self.ts[i]) / (self.ts[i + 1] - self.ts[i])
        return self.ws[i] + frac * (self.ws[i + 1] - self.ws[i]), i

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        del left  # continuous
        if use_levy:
            raise ValueError("the grid Brownian path has no Levy area; use a solver that needs none")
        w0, i0 = self._value(t0)
        if t1 is None:
            return w0
        w1, _ = self._value(t1)
        one_cell = (self.ts[i0] == t0) & (self.ts[i0 + 1] == t1)
        return jnp.where(one_cell, self.increments[i0], w1 - w0)


def _drift_vf(t, x, sde):
    return sde.drift(t, x)


def _diffusion_vf(t, x, sde):
    return sde.diffusion(t, x)


class _AbstractDiffraxScheme(AbstractScheme):
    """A scheme that integrates with ``diffrax.diffeqsolve`` at a constant step on the grid."""

    @abc.abstractmethod
    def solver(self) -> diffrax.AbstractSolver:
        """The diffrax solver."""

    def sample(self, sde, x0, ts, substeps, *, key):
        n, d = ts.shape[0], x0.shape[0]
        fraction = jnp.arange(substeps, dtype=ts.dtype) / substeps
        # ts[:-1] + 0 * dt is ts[:-1] exactly, so every grid point of ts is a step end point.
        fine = (ts[:-1, None] + jnp.diff(ts)[:, None] * fraction).reshape(-1)
        fine = jnp.concatenate([fine, ts[-1:]])
        h = jnp.diff(fine)
        increments = jax.random.normal(key, (h.shape[0], d), x0.dtype) * jnp.sqrt(h)[:, None]
        bm = _GridBrownianPath(fine, increments)
        terms = diffrax.MultiTerm(diffrax.ODETerm(_drift_vf), diffrax.ControlTerm(_diffusion_vf, bm))
        sol = diffrax.diffeqsolve(
            terms,
            self.solver(),
            t0=ts[0],
            t1=ts[-1],
            dt0=None,
            y0=x0,
            args=sde,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.StepTo(ts=fine),
            max_steps=(n - 1) * substeps,
        )
        # With substeps == 1 these are bit for bit the increments the solver consumed.
        dws = increments.reshape(n - 1, substeps, d).sum(axis=1)
        return Path(ts=ts, xs=sol.ys, dws=dws)


class EulerMaruyama(_AbstractDiffraxScheme):
    r"""The Euler–Maruyama scheme (``diffrax.Euler`` on a ``ControlTerm``); any noise.

    .. math:: X_{k+1} = X_k + \mu(t_k, X_k)\,h + \sigma(t_k, X_k)\,\Delta W_k.

    Strong order 1/2, weak order 1 (Kloeden & Platen, *Numerical Solution of Stochastic
    Differential Equations*, 1992, §10.2, §14.1).

    Example:
        >>> import pde.sde as S
        >>> sde = S.GeometricBrownianMotion(1, mu=0.05, sigma=0.2)
        >>> path = S.sample_path(sde, jnp.ones(1), jnp.linspace(0.0, 1.0, 5),
        ...                      key=jax.random.key(0), scheme=S.EulerMaruyama())
        >>> path.xs.shape, path.dws.shape
        ((5, 1), (4, 1))
    """

    def check(self, sde, x0):
        pass

    def solver(self):
        return diffrax.Euler()


class Milstein(_AbstractDiffraxScheme):
    r"""The Ito Milstein scheme (``diffrax.ItoMilstein``); diagonal noise only.

    .. math:: X^i_{k+1} = X^i_k + \mu^i h + \sigma^{ii} \Delta W^i_k
        + \tfrac12 \sigma^{ii} \partial_i \sigma^{ii} \big((\Delta W^i_k)^2 - h\big).

    Strong order 1 for commutative noise (Kloeden & Platen 1992, §10.3). This class checks that
    ``sde.diffusion`` returns a ``lineax.DiagonalLinearOperator``; the scheme is exact to order 1
    when each ``sigma^{ii}`` depends on ``x_i`` only (otherwise the noise need not commute — not
    checked). diffrax materialises the d x d x d second-order term, so the cost grows as d^3.

    Example:
        >>> import pde.sde as S
        >>> sde = S.GeometricBrownianMotion(2, mu=0.05, sigma=0.2)
        >>> S.sample_path(sde, jnp.ones(2), jnp.linspace(0.0, 1.0, 3), key=jax.random.key(0),
        ...               scheme=S.Milstein()).xs.shape
        (3, 2)
    """

    def check(self, sde, x0):
        op = jax.eval_shape(sde.diffusion, jax.ShapeDtypeStruct((), x0.dtype), x0)
        if not isinstance(op, lx.DiagonalLinearOperator):
            raise ValueError(
                f"`Milstein()` needs diagonal noise (`diffusion` returning a "
                f"lineax.DiagonalLinearOperator), but {type(sde).__name__}.diffusion returns "
                f"{type(op).__name__}; use `scheme=EulerMaruyama()` for general noise"
            )
        # diffrax.ItoMilstein builds its Ito correction with an identity of JAX's default float
        # dtype, which strict promotion will not mix with any other dtype of x0.
        eye_dtype = jax.eval_shape(lambda: jnp.eye(1)).dtype
        if x0.dtype != eye_dtype:
            raise ValueError(
                f"`Milstein()` (diffrax.ItoMilstein) computes in JAX's default float dtype "
                f"({eye_dtype}), got `x0` of dtype {x0.dtype}; pass `x0.astype({eye_dtype})` or use "
                "`scheme=EulerMaruyama()`"
            )

    def solver(self):
        return diffrax.ItoMilstein()


class Exact(AbstractScheme):
    r"""Exact sampling through ``sde.transition`` (an :class:`AbstractExactSDE` only).

    Draws :math:`\Delta W_i \sim N(0, (t_{i+1} - t_i) I)` and sets
    :math:`X_{i+1} = \mathrm{transition}(t_i, t_{i+1}, X_i, \Delta W_i)`: no discretisation error on
    any grid, so ``substeps`` is ignored.

    Example:
        >>> import pde.sde as S
        >>> sde = S.BrownianMotion(2)
        >>> path = S.sample_path(sde, jnp.zeros(2), jnp.linspace(0.0, 1.0, 4),
        ...                      key=jax.random.key(0), scheme=S.Exact())
        >>> bool(jnp.allclose(path.xs[-1], path.dws.sum(0), atol=1e-6))
        True
    """

    def check(self, sde, x0):
        if not isinstance(sde, AbstractExactSDE):
            raise ValueError(
                f"`Exact()` needs an AbstractExactSDE (one with a closed-form `transition`), got "
                f"{type(sde).__name__}; use `scheme=EulerMaruyama()` (or `Milstein()` for diagonal "
                "noise) instead"
            )

    def sample(self, sde, x0, ts, substeps, *, key):
        del substeps
        dt = jnp.diff(ts)
        dws = jax.random.normal(key, (dt.shape[0], x0.shape[0]), x0.dtype) * jnp.sqrt(dt)[:, None]

        def step(x, inputs):
            t0, t1, dw = inputs
            x1 = sde.transition(t0, t1, x, dw)
            return x1, x1

        _, xs = jax.lax.scan(step, x0, (ts[:-1], ts[1:], dws))
        return Path(ts=ts, xs=jnp.concatenate([x0[None], xs]), dws=dws)


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"got {name}={value!r}; `{name}` must be a positive (static) int")
    return int(value)


def _as_x0(x0) -> Array:
    """``x0`` as an array of its own float dtype (non-float input gets the backend's default)."""
    arr = x0 if isinstance(x0, jax.Array) else np.asarray(x0)
    if jnp.issubdtype(arr.dtype, jnp.floating):
        return jnp.asarray(arr)
    return backend.as_array(arr, name="x0")


def _check_ts(ts, dtype) -> Array:
    ts = jnp.asarray(ts).astype(dtype)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"`ts` must be a 1-D array of at least 2 times, got shape {ts.shape}")
    increasing = jnp.all(ts[1:] > ts[:-1])
    if isinstance(increasing, jax.core.Tracer):
        ts = eqx.error_if(ts, ~increasing, "`ts` must be strictly increasing")
    elif not bool(increasing):
        raise ValueError(f"`ts` must be strictly increasing, got {ts}")
    return ts


def _prepare(sde, x0, ts, scheme, substeps, *, batched_x0: int | None = None):
    """Validate at the boundary; returns (x0, ts, scheme, substeps)."""
    if not isinstance(sde, AbstractSDE):
        raise TypeError(f"`sde` must be a pde.AbstractSDE, got {type(sde).__name__}")
    if scheme is None:
        scheme = Exact() if isinstance(sde, AbstractExactSDE) else EulerMaruyama()
    if not isinstance(scheme, AbstractScheme):
        raise TypeError(
            "`scheme` must be an AbstractScheme (EulerMaruyama(), Milstein(), Exact()) or None, got "
            f"{type(scheme).__name__}"
        )
    substeps = _check_positive_int(substeps, "substeps")
    x0 = _as_x0(x0)
    shapes = [(sde.dim,)] if batched_x0 is None else [(sde.dim,), (batched_x0, sde.dim)]
    if x0.shape not in shapes:
        want = " or ".join(str(s) for s in shapes)
        raise ValueError(f"`x0` must have shape {want} (sde.dim={sde.dim}), got shape {x0.shape}")
    ts = _check_ts(ts, x0.dtype)
    x_one = jax.ShapeDtypeStruct((sde.dim,), x0.dtype)
    t_one = jax.ShapeDtypeStruct((), x0.dtype)
    try:
        mu, sig_dw = jax.eval_shape(lambda t, x: (sde.drift(t, x), sde.diffusion(t, x).mv(x)), t_one, x_one)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{type(sde).__name__} could not be evaluated at x of shape {x_one.shape}: {e}"
        ) from e
    if mu.shape != (sde.dim,) or sig_dw.shape != (sde.dim,):
        raise ValueError(
            f"{type(sde).__name__} must have drift of shape ({sde.dim},) and a {sde.dim} x {sde.dim} "
            f"diffusion; got drift {mu.shape} and diffusion @ dW {sig_dw.shape}"
        )
    scheme.check(sde, x_one)
    return x0, ts, scheme, substeps


# One compiled program per (scheme, SDE structure, shapes, substeps) rather than op-by-op dispatch
# of the glue around diffeqsolve; inside a caller's jit these are inlined. Validation stays outside,
# where values are concrete.
@eqx.filter_jit
def _sample_one(scheme, sde, x0, ts, substeps, key):
    return scheme.sample(sde, x0, ts, substeps, key=key)


@eqx.filter_jit
def _sample_many(scheme, sde, x0, ts, substeps, key, n_paths):
    def one(x, k):
        return scheme.sample(sde, x, ts, substeps, key=k)

    keys = jax.random.split(key, n_paths)
    return jax.vmap(one, in_axes=(0 if x0.ndim == 2 else None, 0))(x0, keys)


def sample_path(
    sde: AbstractSDE,
    x0: Float[Array, " d"],
    ts: Float[Array, " n"],
    *,
    key: PRNGKeyArray,
    scheme: AbstractScheme | None = None,
    substeps: int = 1,
) -> Path:
    r"""One path of :math:`dX = \mu(t, X)\,dt + \sigma(t, X)\,dW` from ``x0`` on the grid ``ts``.

    EulerMaruyama/Milstein integrate with ``diffrax.diffeqsolve`` over ``[ts[0], ts[-1]]`` with
    ``StepTo`` on the grid that splits each ``[ts[i], ts[i+1]]`` into ``substeps`` equal steps, driven
    by a Brownian path sampled exactly on that grid, and save at ``ts``. Exact draws the increments
    on ``ts`` and applies ``sde.transition``.

    Args:
        sde: the SDE (an :class:`AbstractSDE`; a pytree, so it may be a jit argument).
        x0: the initial value, shape ``(sde.dim,)``; its dtype is the dtype of the result.
        ts: strictly increasing times, shape ``(n,)`` with ``n >= 2``; cast to ``x0.dtype``.
        key: a PRNG key (used as is: ``sample_paths`` splits it).
        scheme: :class:`Exact` (default for an :class:`AbstractExactSDE`), :class:`EulerMaruyama`
            (default otherwise) or :class:`Milstein`.
        substeps: steps per grid interval for the diffrax schemes (a static int).

    Returns:
        A :class:`Path` with ``ts (n,)``, ``xs (n, d)`` and ``dws (n-1, d)``.

    Raises:
        ValueError: ``x0`` is not of shape ``(sde.dim,)``; ``ts`` is not 1-D with >= 2 strictly
            increasing points (checked under jit with ``eqx.error_if``); ``substeps`` is not a
            positive int; the scheme does not fit the SDE (Exact without a transition, Milstein
            without diagonal noise).
        TypeError: ``sde`` or ``scheme`` has the wrong type.

    Example:
        >>> import pde.sde as S
        >>> path = S.sample_path(S.BrownianMotion(3), jnp.zeros(3), jnp.linspace(0.0, 1.0, 11),
        ...                      key=jax.random.key(0))
        >>> path.ts.shape, path.xs.shape, path.dws.shape
        ((11,), (11, 3), (10, 3))

    References: P. E. Kloeden and E. Platen, *Numerical Solution of Stochastic Differential
    Equations*, Springer, 1992; P. Kidger, *On Neural Differential Equations*, 2021 (diffrax).
    """
    x0, ts, scheme, substeps = _prepare(sde, x0, ts, scheme, substeps)
    return _sample_one(scheme, sde, x0, ts, substeps, key)


def sample_paths(
    sde: AbstractSDE,
    x0: Float[Array, " d"] | Float[Array, "n_paths d"],
    ts: Float[Array, " n"],
    n_paths: int,
    *,
    key: PRNGKeyArray,
    scheme: AbstractScheme | None = None,
    substeps: int = 1,
) -> Path:
    """``n_paths`` independent paths: :func:`sample_path` vmapped over ``jax.random.split(key, n_paths)``.

    Path ``i`` equals ``sample_path(sde, x0[i], ts, key=jax.random.split(key, n_paths)[i], ...)``.

    Args:
        sde: the SDE.
        x0: shape ``(d,)`` (shared start) or ``(n_paths, d)`` (one start per path).
        ts: strictly increasing times, shape ``(n,)``.
        n_paths: number of paths (a static int).
        key: a PRNG key.
        scheme: as in :func:`sample_path`.
        substeps: as in :func:`sample_path`.

    Returns:
        A :class:`Path` whose every field has a leading axis of size ``n_paths``: ``ts (n_paths, n)``,
        ``xs (n_paths, n, d)``, ``dws (n_paths, n-1, d)``.

    Raises:
        ValueError: as :func:`sample_path`, and ``n_paths`` not a positive int.

    Example:
        >>> import pde.sde as S
        >>> sde = S.GeometricBrownianMotion(1, mu=0.05, sigma=0.2)
        >>> paths = S.sample_paths(sde, jnp.ones(1), jnp.array([0.0, 1.0]), 1000,
        ...                        key=jax.random.key(0))
        >>> paths.xs.shape
        (1000, 2, 1)
        >>> bool(abs(paths.xs[:, -1, 0].mean() - jnp.exp(0.05)) < 0.03)
        True
    """
    n_paths = _check_positive_int(n_paths, "n_paths")
    x0, ts, scheme, substeps = _prepare(sde, x0, ts, scheme, substeps, batched_x0=n_paths)
    return _sample_many(scheme, sde, x0, ts, substeps, key, n_paths)


def sample_terminal(
    sde: AbstractSDE,
    x0: Float[Array, " d"],
    t0: Float[Array, ""] | float,
    t1: Float[Array, ""] | float,
    *,
    key: PRNGKeyArray,
    scheme: AbstractScheme | None = None,
    steps: int = 1,
) -> Float[Array, " d"]:
    """A sample of ``X_{t1}`` given ``X_{t0} = x0``: one transition (Exact) or ``steps`` steps.

    Args:
        sde: the SDE.
        x0: shape ``(sde.dim,)``.
        t0, t1: start and end times, ``t0 < t1`` (scalars; may be traced).
        key: a PRNG key.
        scheme: as in :func:`sample_path`.
        steps: number of equal steps for the diffrax schemes (a static int; ignored by Exact).

    Returns:
        ``X_{t1}``, shape ``(d,)``, dtype of ``x0``.

    Raises:
        ValueError: as :func:`sample_path` (``t1 <= t0`` is a non-increasing grid).

    Example:
        >>> import pde.sde as S
        >>> S.sample_terminal(S.BrownianMotion(2), jnp.zeros(2), 0.0, 1.0,
        ...                   key=jax.random.key(0)).shape
        (2,)
    """
    x0 = _as_x0(x0)
    ts = jnp.stack([jnp.asarray(t0).astype(x0.dtype), jnp.asarray(t1).astype(x0.dtype)])
    return sample_path(sde, x0, ts, key=key, scheme=scheme, substeps=steps).xs[-1]
