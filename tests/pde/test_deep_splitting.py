"""pde.solvers.DeepSplitting: numerics against closed forms (and against the exact solution of the
time-discrete scheme), the sign and time direction of f, box mode, transformations, parallel runs,
bad input.

Reaction–diffusion and Allen–Cahn come from ``pde.make_problem``; two problems whose time-discrete
scheme is solvable by hand (so the sign of f, its time argument and the gradient path can be
pinned down) are defined here, as final subclasses of pde.AbstractProblem driven by Brownian motion.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pde
from pde._problem import AbstractProblem, Box, Reference
from pde._problem import nonlinearity_uses_z as _uses_z
from pde._sde_types import BrownianMotion, ItoSDE
from pde.solvers import DeepSplitting, solve
from pde.solvers._deep_splitting import _mean_residual, _refit, _sample, _targets


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def _box(d, half):
    return Box(_f32(-half * np.ones(d)), _f32(half * np.ones(d)))


class DiscountedQuadratic(AbstractProblem):
    """dX = dW, g = |x|^2/d, f(t, x, u, z) = -r u + t |x|^2/d: linear in u, but with a source that
    couples t and x, so both the sign of f and the direction of time change u(0, x) by O(1):

        u(0, x) = e^{-rT} (q + T) + q I1 + I2,  q = |x|^2/d,  I1 = int_0^T s e^{-rs} ds,
        I2 = int_0^T s^2 e^{-rs} ds.
    """

    sde: BrownianMotion
    horizon: jax.Array
    x0: jax.Array
    box: Box | None
    rate: jax.Array

    name = "discounted-quadratic"

    def __init__(self, d, *, rate=1.0, horizon=1.0, half=0.5):
        self.sde = BrownianMotion(d, 1.0)
        self.horizon = _f32(horizon)
        self.x0 = jnp.zeros(d, jnp.float32)
        self.box = _box(d, half)
        self.rate = _f32(rate)

    def terminal(self, x):
        return jnp.sum(x**2) / x.shape[0]

    def nonlinearity(self, t, x, u, z):
        return -self.rate * u + t * jnp.sum(x**2) / x.shape[0]

    def reference(self, x=None, *, key=None):
        x = self.x0 if x is None else x
        r, T = self.rate, self.horizon
        q = jnp.sum(x**2) / x.shape[0]
        i1 = (1 - jnp.exp(-r * T) * (1 + r * T)) / r**2
        i2 = (2 - jnp.exp(-r * T) * (r**2 * T**2 + 2 * r * T + 2)) / r**3
        return Reference(jnp.exp(-r * T) * (q + T) + q * i1 + i2, _f32(0.0), "closed form")


def discounted_quadratic_scheme(rate, T, N, q=0.0, *, theta=0.0, sign=1.0, reverse_time=False,
                                f_at_tn=False):
    """The exact solution at x (q = |x|^2/d) of the time-discrete deep splitting scheme for
    DiscountedQuadratic: V_n = a_n q + b_n, because E[|X'|^2/d | X = x] = q + dt. The theta-scheme is

        V_n - theta dt f(t_n, x, V_n) = E[V_{n+1}(X') + (1 - theta) dt f(t_{n+1}, X', V_{n+1}(X'))].

    ``sign=-1`` is the scheme with f's sign flipped; ``reverse_time`` evaluates f at T - t instead of t;
    ``f_at_tn`` gives the explicit part the time t_n instead of the documented t_{n+1}.
    """
    dt = T / N
    a, b = 1.0, 0.0
    for n in reversed(range(N)):
        t0, t1 = n * dt, (n + 1 - f_at_tn) * dt
        if reverse_time:
            t0, t1 = T - t0, T - t1
        keep = 1 - sign * (1 - theta) * rate * dt
        denom = 1 + sign * theta * rate * dt
        a, b = (
            (sign * theta * dt * t0 + keep * a + sign * (1 - theta) * dt * t1) / denom,
            (keep * (a * dt + b) + sign * (1 - theta) * dt * t1 * dt) / denom,
        )
    return a * q + b


class ColeHopf(AbstractProblem):
    """dX = dW, g = a |x|^2, f = -|z|^2 / 2 (a Hamilton–Jacobi–Bellman equation that depends on
    z = grad u only). Cole–Hopf: u(0, x) = (d/2) ln(1 + 2aT) + a |x|^2 / (1 + 2aT)."""

    sde: BrownianMotion
    horizon: jax.Array
    x0: jax.Array
    box: Box | None
    a: jax.Array

    name = "cole-hopf"

    def __init__(self, d, *, a=0.5, horizon=0.5):
        self.sde = BrownianMotion(d, 1.0)
        self.horizon = _f32(horizon)
        self.x0 = jnp.zeros(d, jnp.float32)
        self.box = None
        self.a = _f32(a)

    def terminal(self, x):
        return self.a * jnp.sum(x**2)

    def nonlinearity(self, t, x, u, z):
        return -0.5 * jnp.sum(z**2)

    def reference(self, x=None, *, key=None):
        x = self.x0 if x is None else x
        s = 1 + 2 * self.a * self.horizon
        return Reference(x.shape[0] / 2 * jnp.log(s) + self.a * jnp.sum(x**2) / s, _f32(0.0), "closed form")


def cole_hopf_scheme(a, T, N, d, *, theta=0.0, sign=1.0):
    """The time-discrete theta-scheme for ColeHopf at x = 0: V_n = alpha_n |x|^2 + beta_n, with
    alpha_n + 2 theta dt alpha_n^2 = c := alpha - 2 (1 - theta) dt alpha^2 and beta_n = beta + c d dt
    (``sign=-1``: f flipped)."""
    dt = T / N
    alpha, beta = a, 0.0
    for _ in range(N):
        c = alpha - sign * 2 * (1 - theta) * dt * alpha**2
        w = sign * 2 * theta * dt
        alpha, beta = (c if w == 0 else (-1 + math.sqrt(1 + 4 * w * c)) / (2 * w)), beta + c * d * dt
    return beta


def _solve(problem, key, **config):
    return solve(problem, DeepSplitting(**config), key=key, progress=False)


# Every solve compiles one training step per time step (~1-3 s each on a 2-core CPU), so the default
# tests use N = 1..3 time steps and d = 4 (one network shape, compiled once per session); the
# longer and more accurate runs are marked slow.
D = 4
ACCURATE = dict(batch_size=512, steps=400, warm_steps=200)


# --- numerics ------------------------------------------------------------------------------------


def _check_sign_and_time(sol, N, theta):
    scheme = discounted_quadratic_scheme(1.0, 1.0, N, theta=theta)
    wrong = [
        discounted_quadratic_scheme(1.0, 1.0, N, theta=theta, sign=-1.0),
        discounted_quadratic_scheme(1.0, 1.0, N, theta=theta, reverse_time=True),
    ]
    if theta == 0:
        wrong.append(discounted_quadratic_scheme(1.0, 1.0, N, f_at_tn=True))
    assert all(abs(w - scheme) > 0.08 * scheme for w in wrong)
    assert abs(sol.value - scheme) < 0.02 * scheme, (sol.value, scheme)
    # The scheme's own bias against the closed form u(0, 0): O(dt) explicit, O(dt^2) trapezoidal.
    assert abs(scheme - float(sol.reference.value)) < (0.1 if theta == 0 else 0.03) * scheme


def test_sign_and_direction_of_time(getkey):
    """DiscountedQuadratic at x0 = 0, N = 3: the solver matches the exact solution of its own
    time-discrete scheme (0.5802) to 2%, while flipping f's sign (1.54), evaluating f at T - t (time
    backwards, 0.420) or at t_n instead of the documented t_{n+1} (0.444) moves it by > 8%."""
    N = 3
    sol = _solve(DiscountedQuadratic(D), getkey(), time_steps=N, on_box=False, **ACCURATE)
    _check_sign_and_time(sol, N, 0.0)
    assert sol.stats["times"] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert not sol.stats["uses_z"]


@pytest.mark.slow
def test_sign_and_direction_of_time_trapezoidal(getkey):
    """The same for theta = 1/2, whose scheme (0.5423) is within 3% of the closed form 0.5285."""
    N = 3
    sol = _solve(DiscountedQuadratic(D), getkey(), time_steps=N, theta=0.5, on_box=False, **ACCURATE)
    _check_sign_and_time(sol, N, 0.5)


@pytest.mark.parametrize("theta", [0.0, pytest.param(0.5, marks=pytest.mark.slow)])
def test_gradient_nonlinearity(getkey, theta):
    """f = -|z|^2/2 (Cole–Hopf): gradients of the frozen network (and for theta > 0 of the trained
    one) enter f. The solver matches its discrete scheme to 2%; the linear part alone
    (E g = a d T = 1) and the flipped sign (~1.4) are > 20% away."""
    N = 2
    sol = _solve(ColeHopf(D), getkey(), time_steps=N, theta=theta, **ACCURATE)
    scheme = cole_hopf_scheme(0.5, 0.5, N, D, theta=theta)
    assert sol.stats["uses_z"]
    assert abs(sol.value - scheme) < 0.02 * scheme, (sol.value, scheme)
    for wrong in (1.0, cole_hopf_scheme(0.5, 0.5, N, D, theta=theta, sign=-1.0)):
        assert abs(wrong - scheme) > 0.2 * scheme


@pytest.mark.slow  # 11 s; the other DeepSplitting tests cover the solver at x0 and its schemes
def test_reaction_diffusion_on_box(getkey):
    """The benchmark S3 at d = 4 on its box [-1, 1]^4 (f vanishes on the exact solution, so the scheme
    has no time-discretisation bias): u(0, 0) = 1.6 to 0.5%, u(0, .) on the box to 1% relative L1.
    Also: the model is u(0, .) under jit and vmap, history concatenates the fits, solve's `steps`
    scales both step counts, stats are indexed by n."""
    problem = pde.make_problem("reaction-diffusion", D)
    method = DeepSplitting(time_steps=2, batch_size=512, steps=200, warm_steps=100)
    sol = solve(problem, method, key=getkey(), steps=400, progress=False)
    assert sol.reference.value == pytest.approx(1.6)
    assert sol.rel_error < 5e-3, sol.value
    assert sol.box_rel_l1 is not None and sol.box_rel_l1 < 1e-2, sol.box_rel_l1
    x = problem.box.sample(getkey(), 256)
    pred = jax.jit(jax.vmap(sol.model))(x)
    np.testing.assert_allclose(pred, jax.vmap(sol.model)(x), rtol=1e-6)
    exact = jax.vmap(lambda xi: problem.reference(xi).value)(x)
    assert float(jnp.max(jnp.abs(pred - exact))) < 0.05
    assert float(jnp.std(exact)) > 0.1  # the box is large enough for that to mean something
    assert sol.stats["steps"] == [200, 400]  # V_1 is trained first, with `steps`
    assert sol.history.loss.shape == (600,)
    assert len(sol.stats["final_loss"]) == 2 and all(np.isfinite(sol.stats["final_loss"]))
    assert sol.value == pytest.approx(float(sol.model(problem.x0)))


@pytest.mark.slow
def test_reaction_diffusion_accurate(getkey):
    """S3 at d = 10, N = 10, at x0 with the default configuration: within 1e-3 of 1.6."""
    sol = _solve(pde.make_problem("reaction-diffusion", 10), getkey(), on_box=False)
    assert sol.rel_error < 1e-3, sol.value


def test_allen_cahn_stays_in_range(getkey):
    """Allen–Cahn has no closed form, but f = u - u^3 lies in [0, u] for u in [0, 1], so
    E g(X_T) <= u(0, 0) <= e^T E g(X_T): a sign error of f or a missing nonlinearity leaves the
    range."""
    problem = pde.make_problem("allen-cahn", D)
    sol = solve(problem, DeepSplitting(time_steps=2, **ACCURATE), key=getkey(), progress=False,
                reference=False)
    z = jax.random.normal(getkey(), (1 << 16, D))
    eg = float(jnp.mean(jax.vmap(problem.terminal)(math.sqrt(2 * 0.3) * z)))
    # At d = 4, u(0, 0) ~ 0.449 is 27% above E g ~ 0.353 and 6% below e^T E g ~ 0.476 (u^3 counts).
    assert 1.1 * eg < sol.value < math.exp(0.3) * eg, (eg, sol.value)


@pytest.mark.slow
def test_euler_maruyama_for_a_general_sde(getkey):
    """An ItoSDE (no exact transition) is stepped by Euler–Maruyama on the grid: with drift 0 and
    sigma = I it is the same Brownian motion, so DiscountedQuadratic's answer is unchanged."""
    N = 3
    sol = _solve(GeneralQuadratic(D), getkey(), time_steps=N, on_box=False, **ACCURATE)
    scheme = discounted_quadratic_scheme(1.0, 1.0, N)
    assert abs(sol.value - scheme) < 0.02 * scheme, (sol.value, scheme)


class GeneralQuadratic(DiscountedQuadratic):
    """DiscountedQuadratic with its Brownian motion as a general ItoSDE (sampled by Euler–Maruyama)."""

    sde: ItoSDE

    def __init__(self, d):
        super().__init__(d)
        self.sde = ItoSDE(d, lambda t, x, a: jnp.zeros_like(x),
                          lambda t, x, a: pde.BrownianMotion(d).diffusion(t, x))


# --- pieces, transformations -------------------------------------------------------------------


def test_targets_terminal_step_and_jit(getkey):
    """For V = g the target is g(x') + dt f(t1, x', g(x'), grad g(x')); _targets agrees with that by
    hand, under jit and under vmap."""
    problem = ColeHopf(D)
    x_next = jax.random.normal(getkey(), (5, 2, D))
    t1, dt = _f32(0.5), _f32(0.1)

    def by_hand(x):
        g = problem.terminal(x)
        return g + dt * problem.nonlinearity(t1, x, g, 2 * problem.a * x)

    expected = jnp.mean(jax.vmap(jax.vmap(by_hand))(x_next), axis=-1)
    eager = _targets(problem, None, t1, dt, x_next, uses_z=True)
    jitted = jax.jit(lambda x: _targets(problem, None, t1, dt, x, uses_z=True))(x_next)
    mapped = jax.vmap(lambda x: _targets(problem, None, t1, dt, x, uses_z=True))(x_next)
    for got in (eager, jitted, mapped):
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert eager.dtype == jnp.float32


@pytest.mark.parametrize("problem", [DiscountedQuadratic(3), GeneralQuadratic(3)])
def test_sample_paths(getkey, problem):
    """_sample (jitted) draws X_{t_n} = W_{t_n} (exact transition or Euler–Maruyama steps) and
    antithetic increments of variance dt."""
    n, dt, batch = 3, _f32(0.25), 1 << 14
    exact = isinstance(problem.sde, pde.AbstractExactSDE)
    x, dw = jax.jit(
        lambda k: _sample(problem, k, n * dt, dt, n_em=0 if exact else n, moved=True, batch=batch,
                          paths=4, on_box=False)
    )(getkey())
    assert x.shape == (batch, 3) and dw.shape == (batch, 4, 3) and x.dtype == jnp.float32
    np.testing.assert_allclose(jnp.var(x, axis=0), 0.75, rtol=0.05)
    np.testing.assert_allclose(jnp.var(dw, axis=(0, 1)), 0.25, rtol=0.05)
    np.testing.assert_array_equal(dw[:, :2], -dw[:, 2:])
    # Increments independent of the position.
    assert abs(float(jnp.mean(x * dw[:, 0]))) < 0.02


def test_mean_residual_with_theta(getkey):
    """_mean_residual is mean(y - [v(x) - theta dt f(t, x, v(x), sigma^T grad v(x))]): checked for
    DiscountedQuadratic (f = -r u + t q) with v(x) = |x|^2/d, where f is known in closed form."""
    problem = DiscountedQuadratic(D)
    x = jax.random.normal(getkey(), (64, D))
    y = jax.random.normal(getkey(), (64,))
    tn, dt = _f32(0.25), _f32(0.5)
    q = jnp.sum(x**2, axis=1) / D
    for theta in (0.0, 0.5):
        lhs = q - theta * dt * (-q + tn * q)
        got = _mean_residual(problem, problem.terminal, x, y, tn, dt, theta=theta, uses_z=False)
        np.testing.assert_allclose(got, jnp.mean(y - lhs), rtol=1e-5, atol=1e-6)


def test_uses_z_is_structural():
    assert _uses_z(ColeHopf(3), jnp.float32)
    assert not _uses_z(pde.make_problem("reaction-diffusion", 3), jnp.float32)
    assert not _uses_z(pde.make_problem("allen-cahn", 3), jnp.float32)


@pytest.mark.parametrize("depth", [0, 2])
def test_warm_start_is_the_same_function(getkey, depth):
    """_refit rewrites V_{n+1}'s network for V_n's standardisation without changing the function."""
    from pde.solvers._base import make_network
    from pde.solvers._deep_kolmogorov import Standardized

    problem = pde.make_problem("reaction-diffusion", D)
    net = make_network(problem, "scalar", D + 50, depth, "gelu", key=getkey())
    old = Standardized(net, _f32([0.1, -0.2, 0.3, 0.0]), _f32([0.5, 2.0, 1.0, 1.0]), _f32(1.5), _f32(0.2))
    new = _refit(None, old, _f32([-1.0, 0.0, 0.5, 0.1]), _f32([3.0, 0.25, 1.0, 0.5]), _f32(-2.0),
                 _f32(4.0))
    x = 2 * jax.random.normal(getkey(), (64, D))
    np.testing.assert_allclose(jax.vmap(new)(x), jax.vmap(old)(x), rtol=1e-5, atol=1e-5)
    assert float(new.y_scale) == 4.0 and float(new.x_shift[0]) == -1.0


def test_callback_stops_each_time_step(getkey):
    """A callback that asks to stop ends that time step's fit; the backward sweep goes on."""
    seen = []

    def stop(info):
        seen.append(info.step)
        return True

    method = DeepSplitting(time_steps=2, batch_size=64, steps=20, warm_steps=10, calibrate=False)
    sol = solve(pde.make_problem("reaction-diffusion", D), method, key=getkey(), callbacks=[stop],
                progress=False, reference=False)
    assert seen == [1, 1] and sol.stats["steps"] == [1, 1] and sol.history.stopped_early


def test_sharded_matches_single_device(getkey):
    """parallel="sharded" (4 CPU devices) computes the same numbers as one device, to rounding."""
    assert jax.device_count() >= 4
    key = getkey()
    method = DeepSplitting(time_steps=1, batch_size=256, steps=40)
    problem = ColeHopf(D)
    single = solve(problem, method, key=key, progress=False, reference=False)
    sharded = solve(problem, method, key=key, parallel="sharded", progress=False, reference=False)
    assert sharded.value == pytest.approx(single.value, rel=1e-4)
    np.testing.assert_allclose(sharded.history.loss, single.history.loss, rtol=1e-3)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, match",
    [
        (dict(time_steps=0), "time_steps"),
        (dict(time_steps=-2), "time_steps"),
        (dict(time_steps=2.5), "time_steps"),
        (dict(time_steps=True), "time_steps"),
        (dict(width=0), "width"),
        (dict(depth=-1), "depth"),
        (dict(batch_size=0), "batch_size"),
        (dict(steps=0), "steps"),
        (dict(warm_steps=0), "warm_steps"),
        (dict(paths_per_point=3), "paths_per_point"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate="fast"), "learning_rate"),
        (dict(theta=1.5), "theta"),
        (dict(on_box="yes"), "on_box"),
        (dict(calibrate=1), "calibrate"),
        (dict(pilot_size=0), "pilot_size"),
    ],
)
def test_bad_config(config, match):
    with pytest.raises(ValueError, match=match):
        DeepSplitting(**config)


def test_on_box_without_a_box(getkey):
    with pytest.raises(ValueError, match="no box"):
        solve(ColeHopf(3), DeepSplitting(on_box=True), key=getkey(), progress=False)


def test_x0_outside_the_box_is_solved_at_x0(getkey):
    """V_0 trained on the box and evaluated at an x0 outside it is an extrapolation (134% off for
    reaction-diffusion at x0 = 2 * 1, d = 5): the default solves at x0, on_box=True refuses."""
    problem = pde.make_problem("reaction-diffusion", 3, x0=2.0)
    assert not DeepSplitting()._on_box(problem)
    assert DeepSplitting().box_error(problem, None, key=getkey()) is None
    assert DeepSplitting()._on_box(pde.make_problem("reaction-diffusion", 3, x0=1.0))
    with pytest.raises(ValueError, match="x0 lies outside ReactionDiffusion's box"):
        solve(problem, DeepSplitting(on_box=True), key=getkey(), progress=False)


def test_box_error_is_none_without_a_pointwise_reference(getkey):
    method = DeepSplitting()
    assert method.box_error(ColeHopf(3), None, key=getkey()) is None  # no box
    assert method.box_error(pde.make_problem("allen-cahn", 3), None, key=getkey()) is None  # no box
    # A box, but a multilevel Picard reference: not evaluated at thousands of points.
    with_box = pde.make_problem("allen-cahn", 3, box=(-1.0, 1.0))
    assert with_box.box is not None
    assert method.box_error(with_box, None, key=getkey()) is None


def test_solve_rejects_non_problems(getkey):
    with pytest.raises(TypeError, match="problem"):
        solve(object(), DeepSplitting(), key=getkey())
    assert isinstance(DeepSplitting(), eqx.Module)
