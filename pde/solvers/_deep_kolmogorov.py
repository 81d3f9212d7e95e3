r"""Deep Kolmogorov: learn x -> u(0, x) on a box by Feynman–Kac regression (linear PDEs).

For a linear problem, u(0, x) = e^{-rT} E[g(X_T^x)] is the minimiser over functions v of

.. math::  \mathbb{E}\big[\,|v(\xi) - e^{-rT} g(X_T^{\xi})|^2\big],\qquad \xi \sim \mathrm{U}(\text{box}),

so a network trained by SGD on this loss approximates u(0, .) on the whole box at once
(Beck, Becker, Grohs, Jaafari, Jentzen 2018, "Solving the Kolmogorov PDE by means of deep
learning", J. Sci. Comput. 2021).

Two variance reductions that leave the minimiser unchanged: each sampled point ``xi`` gets the
average of ``paths_per_point`` terminal samples (antithetic pairs ``Z, -Z``), which divides the
regression noise by about that number at the cost of cheap SDE samples instead of network passes;
and the network sees standardised inputs and outputs (box mapped to [-1, 1]^d, targets to zero
mean and unit variance from a pilot sample), which conditions the optimisation for any box and
scale (e.g. the max-call on [90, 110]^d with values near 170).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from sciml import backend, train

from .._problem import AbstractLinearProblem, AbstractProblem
from .._sde_types import AbstractExactSDE
from ._base import (
    AbstractMethod,
    adam_schedule,
    box_rel_l1,
    check_antithetic_paths,
    check_positive_int,
    make_network,
    x0_in_box,
)


class Standardized(eqx.Module):
    """u(x) = y_shift + y_scale * net((x - x_shift) / x_scale); shifts and scales are not trained."""

    net: eqx.Module
    x_shift: jax.Array
    x_scale: jax.Array
    y_shift: jax.Array
    y_scale: jax.Array

    def __call__(self, x):
        sg = jax.lax.stop_gradient
        z = (x - sg(self.x_shift)) / sg(self.x_scale)
        return sg(self.y_shift) + sg(self.y_scale) * self.net(z)


def _terminal_targets(problem: AbstractProblem, x, key, paths: int):
    """e^{-rT} * mean over ``paths`` antithetic samples of g(X_T^x), for one point x."""
    sde = problem.sde
    if not isinstance(sde, AbstractExactSDE):
        raise ValueError(
            f"DeepKolmogorov samples X_T exactly and needs an AbstractExactSDE; {type(sde).__name__} "
            "is not one"
        )
    T = problem.horizon.astype(x.dtype)
    half = max(paths // 2, 1)
    z = jax.random.normal(key, (half, x.shape[0]), x.dtype)
    z = jnp.concatenate([z, -z]) if paths > 1 else z
    xt = jax.vmap(lambda dw: sde.transition(jnp.zeros((), x.dtype), T, x, dw))(jnp.sqrt(T) * z)
    g = jax.vmap(problem.terminal)(xt)
    return jnp.exp(-problem.discount_rate.astype(x.dtype) * T) * jnp.mean(g)


class DeepKolmogorov(AbstractMethod):
    """Feynman–Kac regression for a linear problem on its box.

    Args:
        width: hidden width (default ``dim + 50``).
        depth: hidden layers.
        activation: any ``sciml.nn.activation`` name or module (relu, leaky_relu, softplus, gelu,
            tanh, gem, ...).
        batch_size: sampled points per step (split over devices when ``parallel`` is set).
        paths_per_point: terminal samples averaged per point: 1 (plain) or an even number
            (antithetic pairs).
        steps: default number of Adam steps.
        learning_rate: initial Adam step size (cosine-decayed to 1% over the run).
        eval_points: uniformly drawn box points for the relative L1 error.
        network: a network of your own for x -> u(0, x) ((d,) -> ()): an equinox Module or
            ``sciml.nn.from_flax(nnx_model)``; replaces width/depth/activation.
    """

    width: int | None = eqx.field(default=None, static=True)
    depth: int = eqx.field(default=2, static=True)
    activation: object = eqx.field(default="gelu", static=True)
    batch_size: int = eqx.field(default=1024, static=True)
    paths_per_point: int = eqx.field(default=16, static=True)
    steps: int = eqx.field(default=3000, static=True)
    learning_rate: float = eqx.field(default=3e-3, static=True)
    eval_points: int = eqx.field(default=8192, static=True)
    network: eqx.Module | None = None

    def __check_init__(self):
        check_positive_int(self.width, "width", allow_none=True)
        check_positive_int(self.depth + 1, "depth + 1")
        for name in ("batch_size", "paths_per_point", "steps", "eval_points"):
            check_positive_int(getattr(self, name), name)
        check_antithetic_paths(self.paths_per_point)
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate!r}")

    def run(self, problem, *, key, steps, parallel, progress, callbacks):
        if not isinstance(problem, AbstractLinearProblem):
            raise ValueError(
                f"DeepKolmogorov solves linear problems (pde.AbstractLinearProblem); "
                f"{type(problem).__name__} is semilinear: use DeepBSDE or DeepSplitting"
            )
        if problem.box is None:
            raise ValueError(f"DeepKolmogorov learns u on a box; {type(problem).__name__} has none")
        if not x0_in_box(problem):
            raise ValueError(
                f"DeepKolmogorov learns u(0, .) on the box and evaluates it at x0, but x0 lies outside "
                f"{type(problem).__name__}'s box, so u(0, x0) would be an extrapolation; pass a box "
                "that contains x0 (e.g. make_problem(..., box=(lo, hi)))"
            )
        steps = steps or self.steps
        k_net, k_pilot, k_fit = backend.split_key(key, 3)
        box = problem.box
        width = self.width or problem.dim + 50
        net = make_network(problem, "scalar", width, self.depth, self.activation, key=k_net,
                           network=self.network)

        paths = self.paths_per_point

        def sample(k):
            kx, kw = jax.random.split(k)
            x = box.sample(kx, self.batch_size)
            y = jax.vmap(lambda xi, ki: _terminal_targets(problem, xi, ki, paths))(
                x, jax.random.split(kw, self.batch_size)
            )
            return x, y

        x_pilot, y_pilot = jax.jit(sample)(k_pilot)
        y_scale = jnp.maximum(jnp.std(y_pilot), 1e-6 * (jnp.abs(jnp.mean(y_pilot)) + 1))
        model = Standardized(
            net,
            x_shift=(box.lo + box.hi) / 2,
            x_scale=jnp.maximum((box.hi - box.lo) / 2, jnp.finfo(box.lo.dtype).eps),
            y_shift=jnp.mean(y_pilot),
            y_scale=y_scale,
        )

        def loss_fn(m, batch, k):
            x, y = batch
            return jnp.mean((jax.vmap(m)(x) - y) ** 2)

        model, history = train.fit(
            model, loss_fn, sample, adam_schedule(steps, self.learning_rate), steps=steps,
            key=k_fit, parallel=parallel, progress=progress, callbacks=callbacks,
        )
        value = model(problem.x0)
        return value, model, history, {}

    def box_error(self, problem, model, *, key):
        return box_rel_l1(problem, model, key=key, n_points=self.eval_points)
