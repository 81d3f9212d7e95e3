r"""Deep splitting: a backward sequence of regressions, one network per time step (semilinear PDEs).

On the grid :math:`t_n = nT/N`, :math:`n = 0..N`, write :math:`\Delta t = T/N` and let :math:`X` solve
the problem's SDE from :math:`X_{t_0} = \xi`. Feynman–Kac on one step,

.. math::
    u(t_n, x) = \mathbb{E}\Big[u(t_{n+1}, X_{t_{n+1}}) + \int_{t_n}^{t_{n+1}}
        f\big(s, X_s, u(s, X_s), \sigma^\top\nabla u(s, X_s)\big)\,ds \,\Big|\, X_{t_n} = x\Big],

with the integral taken at its right end point (where the already known :math:`V_{n+1}` lives) gives
the scheme :math:`V_N = g` and, for :math:`n = N-1, \dots, 0`,

.. math::
    V_n = \operatorname*{argmin}_v \mathbb{E}\Big|v(X_{t_n}) - \Big[V_{n+1}(X_{t_{n+1}})
        + \Delta t\, f\big(t_{n+1}, X_{t_{n+1}}, V_{n+1}(X_{t_{n+1}}),
        \sigma^\top(t_{n+1}, X_{t_{n+1}})\nabla V_{n+1}(X_{t_{n+1}})\big)\Big]\Big|^2 ,

each :math:`V_n` a network trained by Adam on fresh paths while :math:`V_{n+1}` is frozen. The
minimiser is the conditional expectation, so :math:`V_n \approx u(t_n, \cdot)` on the law of
:math:`X_{t_n}`, and :math:`V_0` approximates :math:`u(0, \cdot)` on the law of :math:`\xi`: the
problem's box (``on_box``) or the point :math:`x_0`.

**Time argument.** Beck et al. write the PDE forward in time with an autonomous nonlinearity
:math:`F(x, u, \nabla u)` and, on each step, evaluate :math:`F` at the end point :math:`Y` of the
diffusion with the *previous* approximation :math:`U_{n-1}` (an explicit Euler step of the
nonlinear part). In this package's backward convention the previous approximation is
:math:`V_{n+1} \approx u(t_{n+1}, \cdot)`, so the consistent time argument of a time-dependent
:math:`f` is :math:`t_{n+1}`: every argument of :math:`f` is then taken at the same point
:math:`(t_{n+1}, X_{t_{n+1}})`. (With :math:`t_n` instead the scheme stays first order, but e.g. the
reaction–diffusion benchmark's :math:`f`, which vanishes on the exact solution, would no longer do
so on :math:`V_{n+1}`.)

Paths are sampled exactly for an :class:`~pde.AbstractExactSDE` (one transition from :math:`t_0` to
:math:`t_n`, one to :math:`t_{n+1}`) and by Euler–Maruyama on the grid otherwise. Two variance
reductions leave the minimiser unchanged: each :math:`X_{t_n}` gets the mean of
``paths_per_point`` targets from antithetic increments :math:`\pm\Delta W` (which cancels the
first-order noise :math:`\nabla V_{n+1}\cdot\sigma\Delta W`), and every network sees standardised
inputs and outputs (from a pilot sample of its own step). :math:`V_n` starts from :math:`V_{n+1}`,
rewritten exactly for the new standardisation, so the warm-started regressions need fewer steps.

SGD leaves each trained :math:`V_n` with a random mean error over the law of :math:`X_{t_n}` (the
noise of the last steps), and these errors add up through the steps. With ``calibrate`` the output
of :math:`V_n` is shifted by its mean residual on the pilot sample, which was not trained on: the
regression's intercept, re-estimated from :math:`2^{16}` fresh samples instead of from SGD.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from sciml import backend, train
from sciml.train import History

from .._problem import AbstractProblem, nonlinearity_uses_z
from .._sde_types import AbstractExactSDE
from ._base import (
    AbstractMethod,
    adam_schedule,
    box_rel_l1,
    check_antithetic_paths,
    check_positive_int,
    check_theta,
    make_network,
    x0_in_box,
)
from ._deep_bsde import euler_or_exact_step as step
from ._deep_kolmogorov import Standardized


def _targets(problem: AbstractProblem, prev, t1, dt, x_next, *, uses_z: bool):
    r"""The regression targets :math:`V(x') + \Delta t\, f(t_1, x', V(x'), \sigma^\top\nabla V(x'))`
    for a batch of next-step points ``x_next`` (shape ``(..., d)``), averaged over axis ``-2``.

    ``prev`` is the frozen network :math:`V_{n+1}`, or ``None`` for :math:`V_N = g`.
    """
    value_fn = problem.terminal if prev is None else prev

    def one(x):
        if uses_z:
            v, grad = jax.value_and_grad(value_fn)(x)
            z = problem.sde.diffusion(t1, x).transpose().mv(grad)
        else:
            v, z = value_fn(x), jnp.zeros_like(x)
        return v + dt * problem.nonlinearity(t1, x, v, z)

    flat = x_next.reshape((-1, x_next.shape[-1]))
    y = jax.vmap(one)(flat).reshape(x_next.shape[:-1])
    # V_{n+1} is frozen: no gradient reaches its parameters (which ride along in fit's model, so
    # Adam sees exactly zero gradients for them and leaves them unchanged).
    return jax.lax.stop_gradient(jnp.mean(y, axis=-1))


def _implicit(problem: AbstractProblem, v, t0, theta: float, dt, x, uses_z: bool):
    r"""The left side of the regression at one point,
    :math:`v(x) - \theta\Delta t\, f(t_0, x, v(x), \sigma^\top\nabla v(x))` (just :math:`v(x)` for the
    explicit scheme, ``theta = 0``)."""
    if theta == 0:
        return v(x)
    w = theta * dt
    if uses_z:
        val, grad = jax.value_and_grad(v)(x)
        z = problem.sde.diffusion(t0, x).transpose().mv(grad)
    else:
        val, z = v(x), jnp.zeros_like(x)
    return val - w * problem.nonlinearity(t0, x, val, z)


def _sample(problem: AbstractProblem, key, tn, dt, *, n_em: int, moved: bool, batch: int, paths: int,
            on_box: bool):
    """Points X_{t_n} (batch, d) from xi (uniform on the box, or x0), with ``paths`` antithetic
    increments W_{t_{n+1}} - W_{t_n} per point (batch, paths, d).

    ``moved``: whether xi is moved to t_n at all (always for an exact SDE, by one transition over
    [0, t_n], so ``tn`` may be traced and n = 0 is a zero step; for another SDE when n > 0, by
    ``n_em`` = n Euler–Maruyama steps of size ``dt``).
    """
    d = problem.dim
    dtype = problem.x0.dtype
    half = max(paths // 2, 1)
    exact = isinstance(problem.sde, AbstractExactSDE)
    n_path = 0 if not moved else (1 if exact else n_em)
    # One flat draw per distribution, reshaped: a step is compiled for every time step, and XLA
    # compiles sharding-invariant threefry bits of a flat shape about 3x faster than of (b, m, d).
    k_xi, k_z = jax.random.split(key)
    z = jax.random.normal(k_z, (batch * (n_path + half) * d,), dtype).reshape(batch, n_path + half, d)
    if on_box:
        box = problem.box
        u = jax.random.uniform(k_xi, (batch * d,), dtype).reshape(batch, d)
        x = box.lo + u * (box.hi - box.lo)  # = box.sample(k_xi, batch) in law
    else:
        x = jnp.broadcast_to(problem.x0, (batch, d))
    if moved and exact:
        zero = jnp.zeros((), dtype)
        x = jax.vmap(lambda xi, zi: step(problem.sde, zero, tn, xi, jnp.sqrt(tn) * zi))(x, z[:, 0])
    elif moved:

        def body(i, x):
            ti = i.astype(dtype) * dt
            zi = jax.lax.dynamic_index_in_dim(z, i, axis=1, keepdims=False)
            return jax.vmap(lambda xj, zj: step(problem.sde, ti, ti + dt, xj, jnp.sqrt(dt) * zj))(x, zi)

        x = jax.lax.fori_loop(0, n_em, body, x)
    dw = jnp.sqrt(dt) * z[:, n_path:]
    if paths > 1:
        dw = jnp.concatenate([dw, -dw], axis=1)
    return x, dw


@eqx.filter_jit
def _pilot(problem: AbstractProblem, prev, key, tn, dt, *, theta: float, uses_z: bool, **sample_kw):
    """A sample of points X_{t_n} and their targets, for the standardisation of V_n. Module-level and
    jitted with the time as an argument: compiled once per kind of step and reused across steps and
    runs of the same shapes (exact SDEs)."""
    x, dw = _sample(problem, key, tn, dt, **sample_kw)
    t1 = tn + dt
    y = _targets(problem, prev, t1, (1 - theta) * dt, _next_points(problem, tn, t1, x, dw), uses_z=uses_z)
    return x, y


@eqx.filter_jit
def _mean_residual(problem: AbstractProblem, v, x, y, tn, dt, *, theta: float, uses_z: bool):
    """mean(y - lhs(v, x)) over a sample: how far V_n is, on average over the law of X_{t_n}, from
    the conditional expectation it regresses."""
    return jnp.mean(y - jax.vmap(lambda xi: _implicit(problem, v, tn, theta, dt, xi, uses_z))(x))


def _next_points(problem: AbstractProblem, tn, t1, x, dw):
    """X_{t_{n+1}} for every point of ``x`` (batch, d) and each of its increments ``dw`` (batch, K, d)."""
    return jax.vmap(lambda xi, dwi: jax.vmap(lambda w: step(problem.sde, tn, t1, xi, w))(dwi))(x, dw)


def _refit(net, old: Standardized | None, x_shift, x_scale, y_shift, y_scale) -> Standardized:
    """``Standardized(net, ...)`` with the new shifts and scales; when ``old`` is given, its network
    is rewritten (first layer for the inputs, last for the outputs) so that the result is the same
    function as ``old``: an exact warm start."""
    if old is None:
        return Standardized(net, x_shift, x_scale, y_shift, y_scale)
    net = old.net
    # z_old = (x - s_old)/c_old = a z_new + b with z_new = (x - s_new)/c_new.
    a = x_scale / old.x_scale
    b = (x_shift - old.x_shift) / old.x_scale
    first = net.layers[0]
    net = eqx.tree_at(
        lambda m: (m.layers[0].weight, m.layers[0].bias),
        net,
        (a[:, None] * first.weight, first.bias + b @ first.weight),
    )
    # y = s_old + c_old h = s_new + c_new h' with h' = r h + (s_old - s_new)/c_new.
    r = old.y_scale / y_scale
    last = net.layers[-1]
    net = eqx.tree_at(
        lambda m: (m.layers[-1].weight, m.layers[-1].bias),
        net,
        (r * last.weight, r * last.bias + (old.y_shift - y_shift) / y_scale),
    )
    return Standardized(net, x_shift, x_scale, y_shift, y_scale)


def _concatenate(histories: list[History]) -> History:
    return History(
        loss=np.concatenate([h.loss for h in histories]),
        first_step=0,
        compile_seconds=float(sum(h.compile_seconds for h in histories)),
        run_seconds=float(sum(h.run_seconds for h in histories)),
        state=histories[-1].state,
        stopped_early=any(h.stopped_early for h in histories),
    )


class DeepSplitting(AbstractMethod):
    r"""Deep splitting for a semilinear problem, at :math:`x_0` or on the problem's box.

    Trains :math:`V_{N-1}, \dots, V_0` backward, one ``sciml.train.fit`` call per time step (paths
    sampled inside the compiled step), on the loss of the module docstring, here with the
    :math:`\theta`-weighting of the time integral,

    .. math::
        \mathbb{E}\Big|v(X_{t_n}) - \theta\Delta t\, f\big(t_n, X_{t_n}, v, \sigma^\top\nabla v\big)
            - \Big[V_{n+1} + (1-\theta)\Delta t\, f\big(t_{n+1}, X_{t_{n+1}}, V_{n+1},
            \sigma^\top\nabla V_{n+1}\big)\Big](X_{t_{n+1}})\Big|^2 .

    ``theta=0`` (default) is the paper's explicit scheme, first order in :math:`\Delta t`;
    ``theta=0.5`` is the trapezoidal rule, second order when :math:`f` does not depend on :math:`z`
    (an extension: the loss is then nonlinear in :math:`v`, and with :math:`z` it differentiates
    the trained network twice). :math:`V_{N-1}` starts from a fresh initialisation and trains for
    ``steps`` Adam steps; every later network starts from the one before it (the same function) and
    trains for ``warm_steps``, because its target moves by only :math:`O(\Delta t)`. The learning rate
    decays from ``learning_rate`` to 1% of it (cosine) within each time step. Callbacks and the
    progress bar see each time step's fit separately; a callback that stops a fit ends that time
    step only.

    Args:
        time_steps: N, the number of time steps (and networks).
        width: hidden width (default ``dim + 50``).
        depth: hidden layers.
        activation: any ``sciml.nn.activation`` name or module (gelu, tanh, softplus, ...).
        batch_size: points X_{t_n} per Adam step (split over devices when ``parallel`` is set).
        paths_per_point: next-step samples averaged per point: 1 (plain) or an even number
            (antithetic pairs).
        steps: Adam steps for the first-trained network V_{N-1}. ``solve(..., steps=s)`` replaces it
            by ``s`` and scales ``warm_steps`` by the same factor.
        warm_steps: Adam steps for each warm-started network V_{N-2}, ..., V_0.
        learning_rate: initial Adam step size of every time step.
        theta: weight of the implicit end of the time integral, in [0, 1] (see above).
        on_box: learn u(0, .) on the problem's box (xi uniform on it) instead of at x0 (xi = x0, so
            V_0 is fitted at one point). Default: on the box when the problem has one that contains
            x0.
        calibrate: shift each trained network's output by its mean residual on the pilot sample
            (see the module docstring; exact for ``theta=0``, to first order in dt otherwise).
        pilot_size: points of the pilot sample that sets each network's standardisation and
            calibration.
        eval_points: uniformly drawn box points for the relative L1 error (``box_error``).

    Returns:
        (from ``run``, through :func:`~pde.solvers.solve`) ``(value, model, history, stats)``:
        ``model`` is :math:`V_0` (``model(x)`` approximates :math:`u(0, x)` on the box when
        ``on_box``, at :math:`x_0` only otherwise) and ``value = model(x0)``; ``history`` concatenates
        the ``N`` training histories in training order (:math:`V_{N-1}` first; ``history.state`` is
        the last fit's); ``stats`` holds ``"times"`` (:math:`t_0, \dots, t_N`), ``"steps"`` (steps
        taken) and ``"final_loss"`` (mean loss over the last tenth of each fit), both indexed by
        :math:`n = 0, \dots, N-1`, and ``"uses_z"`` (whether :math:`f` reads :math:`z`, i.e. whether
        gradients of the networks were needed).

    Raises:
        ValueError: an invalid configuration (non-positive ``time_steps``, ``steps``, ...; odd
            ``paths_per_point`` > 1; ``learning_rate`` <= 0; ``theta`` outside [0, 1]), or, in
            ``run``, ``on_box=True`` for a problem without a box or with x0 outside it.

    Example:
        >>> from pde.solvers import DeepSplitting
        >>> method = DeepSplitting(time_steps=10, theta=0.5)
        >>> (method.steps, method.warm_steps, method.paths_per_point)
        (500, 200, 2)
        >>> # pde.solve(pde.make_problem("allen-cahn", 100), method, key=jax.random.key(0)).value
        >>> # is about 0.0527 (reference 0.052802) after about 1 minute of CPU time.

    Paper: C. Beck, S. Becker, P. Cheridito, A. Jentzen, A. Neufeld, "Deep splitting method for
    parabolic PDEs", SIAM J. Sci. Comput. 43 (2021), A3135–A3154 (arXiv:1907.03452).
    """

    time_steps: int = eqx.field(default=10, static=True)
    width: int | None = eqx.field(default=None, static=True)
    depth: int = eqx.field(default=2, static=True)
    activation: Any = eqx.field(default="gelu", static=True)
    batch_size: int = eqx.field(default=1024, static=True)
    paths_per_point: int = eqx.field(default=2, static=True)
    steps: int = eqx.field(default=500, static=True)
    warm_steps: int = eqx.field(default=200, static=True)
    learning_rate: float = eqx.field(default=3e-3, static=True)
    theta: float = eqx.field(default=0.0, static=True)
    on_box: bool | None = eqx.field(default=None, static=True)
    calibrate: bool = eqx.field(default=True, static=True)
    pilot_size: int = eqx.field(default=1 << 16, static=True)
    eval_points: int = eqx.field(default=8192, static=True)

    def __check_init__(self):
        check_positive_int(self.width, "width", allow_none=True)
        if isinstance(self.depth, bool) or not isinstance(self.depth, (int, np.integer)) or self.depth < 0:
            raise ValueError(f"got depth={self.depth!r}; `depth` must be an int >= 0")
        for name in ("time_steps", "batch_size", "paths_per_point", "steps", "warm_steps", "pilot_size",
                     "eval_points"):
            check_positive_int(getattr(self, name), name)
        check_antithetic_paths(self.paths_per_point)
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) or not (
            self.learning_rate > 0
        ):
            raise ValueError(f"got learning_rate={self.learning_rate!r}; `learning_rate` must be a float > 0")
        check_theta(self.theta)
        if not isinstance(self.calibrate, bool):
            raise ValueError(f"got calibrate={self.calibrate!r}; `calibrate` must be True or False")
        if self.on_box is not None and not isinstance(self.on_box, bool):
            raise ValueError(f"got on_box={self.on_box!r}; `on_box` must be True, False or None (auto)")

    def _on_box(self, problem: AbstractProblem) -> bool:
        if self.on_box is None:
            return problem.box is not None and x0_in_box(problem)
        if self.on_box and problem.box is None:
            raise ValueError(
                f"on_box=True but {type(problem).__name__} has no box; pass on_box=False to solve at x0"
            )
        if self.on_box and not x0_in_box(problem):
            raise ValueError(
                f"on_box=True but x0 lies outside {type(problem).__name__}'s box, so u(0, x0) would be "
                "an extrapolation of V_0; pass a box that contains x0, or on_box=False to solve at x0"
            )
        return self.on_box

    def run(self, problem, *, key, steps, parallel, progress, callbacks):
        on_box = self._on_box(problem)
        N = self.time_steps
        first_steps = steps or self.steps
        warm_steps = max(1, round(self.warm_steps * first_steps / self.steps))
        dtype = problem.x0.dtype
        T = problem.horizon.astype(dtype)
        dt = T / N
        uses_z = nonlinearity_uses_z(problem, dtype)
        theta = self.theta
        exact = isinstance(problem.sde, AbstractExactSDE)
        width = self.width or problem.dim + 50
        k_net, k_run = backend.split_key(key, 2)
        net = make_network(problem, "scalar", width, self.depth, self.activation, key=k_net)
        keys = backend.split_key(k_run, N)

        prev: Standardized | None = None
        histories: list[History] = [None] * N
        final_loss = [0.0] * N
        step_counts = [0] * N
        for n in reversed(range(N)):
            tn = n * dt
            k_pilot, k_fit = backend.split_key(keys[n], 2)
            # An exact SDE is moved over [0, t_n] even for n = 0 (a zero step), so that every step
            # shares one compiled pilot.
            sample_kw = dict(n_em=0 if exact else n, moved=exact or n > 0, paths=self.paths_per_point,
                             on_box=on_box)
            x_p, y_p = _pilot(problem, prev, k_pilot, tn, dt, theta=theta, uses_z=uses_z,
                              batch=self.pilot_size, **sample_kw)
            x_std = jnp.std(x_p, axis=0)
            fallback = jnp.ones_like(x_std) if prev is None else prev.x_scale
            x_scale = jnp.where(x_std > 1e-6 * (1 + jnp.abs(jnp.mean(x_p, axis=0))), x_std, fallback)
            y_scale = jnp.maximum(jnp.std(y_p), 1e-6 * (jnp.abs(jnp.mean(y_p)) + 1))
            model = _refit(net, prev, jnp.mean(x_p, axis=0), x_scale, jnp.mean(y_p), y_scale)

            def sampler(k, tn=tn, sample_kw=sample_kw):
                return _sample(problem, k, tn, dt, batch=self.batch_size, **sample_kw)

            def loss_fn(m, batch, k, tn=tn):
                v, frozen = m
                x, dw = batch
                t1 = tn + dt
                y = _targets(problem, frozen, t1, (1 - theta) * dt, _next_points(problem, tn, t1, x, dw),
                             uses_z=uses_z)
                lhs = jax.vmap(lambda xi: _implicit(problem, v, tn, theta, dt, xi, uses_z))(x)
                return jnp.mean((lhs - y) ** 2)

            n_steps = first_steps if prev is None else warm_steps
            (model, _), history = train.fit(
                (model, prev), loss_fn, sampler, adam_schedule(n_steps, self.learning_rate),
                steps=n_steps, key=k_fit, parallel=parallel, progress=progress, callbacks=callbacks,
            )
            if self.calibrate:
                # The pilot sample was not trained on: its mean residual is an unbiased estimate of
                # the network's mean error, which SGD noise leaves at the end of training and which
                # adds up over the steps. Shifting the output removes it (exactly for theta = 0).
                shift = _mean_residual(problem, model, x_p, y_p, tn, dt, theta=theta, uses_z=uses_z)
                model = eqx.tree_at(lambda m: m.y_shift, model, model.y_shift + shift)
            histories[N - 1 - n] = history
            tail = history.loss[-max(1, len(history.loss) // 10):]
            final_loss[n] = float(np.mean(tail)) if len(tail) else float("nan")
            step_counts[n] = len(history.loss)
            prev = model

        stats = {
            "times": [float(n * dt) for n in range(N + 1)],
            "steps": step_counts,
            "final_loss": final_loss,
            "uses_z": uses_z,
        }
        return prev(problem.x0), prev, _concatenate(histories), stats

    def box_error(self, problem, model, *, key):
        if not self._on_box(problem):
            return None
        return box_rel_l1(problem, model, key=key, n_points=self.eval_points)
