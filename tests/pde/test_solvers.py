"""pde.solve with DeepKolmogorov, DeepBSDE, MultilevelPicard at small d and few steps.

Tolerances are loose enough for a few hundred steps but tight enough to fail on a wrong sign of f,
a factor 2 in the diffusion, or a reversed time direction (each case states the wrong answer it
rules out).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pde
import sciml
from pde.solvers._deep_bsde import _BSDEModel, _roll, _z_diagnostics, forward_paths


def test_deep_kolmogorov_heat_paraboloid_small_d():
    d = 5
    problem = pde.make_problem("heat-paraboloid", d)
    sol = pde.solve(problem, pde.DeepKolmogorov(batch_size=256, width=32), key=jax.random.key(0),
                    steps=400, progress=False)
    # u = |x|^2 + 2Td: a diffusion off by a factor 2 gives |x|^2 + Td or + 4Td, i.e. a relative
    # error of about 0.4 or 0.8 on [0,1]^5 (mean |x|^2 = 5/3); forgetting time gives 2Td -> 0.
    assert sol.box_rel_l1 < 0.02
    assert sol.n_params > 0 and sol.history is not None
    assert abs(sol.value - float(sol.reference.value)) / float(sol.reference.value) < 0.05


def test_deep_kolmogorov_max_call_small_d():
    d = 3
    problem = pde.make_problem("max-call", d)
    sol = pde.solve(problem, pde.DeepKolmogorov(batch_size=256, width=32), key=jax.random.key(1),
                    steps=400, progress=False)
    # no discount would be e^{0.05} ~ 5% too high; undiscounted/misdrifted GBMs miss by more
    assert sol.box_rel_l1 < 0.02, sol.box_rel_l1


@pytest.mark.parametrize("parallel", ["sharded", pytest.param("pmap", marks=pytest.mark.slow)])
def test_deep_kolmogorov_on_four_devices_matches_one(parallel):
    problem = pde.make_problem("heat-paraboloid", 4)
    method = pde.DeepKolmogorov(batch_size=128, width=16, paths_per_point=4, eval_points=1024)
    one = pde.solve(problem, method, key=jax.random.key(2), steps=150, progress=False)
    four = pde.solve(problem, method, key=jax.random.key(2), steps=150, progress=False,
                     parallel=parallel)
    if parallel == "sharded":  # the same program on a sharded batch: same numbers to rounding
        np.testing.assert_allclose(four.value, one.value, rtol=1e-4)
    else:  # pmap samples each device's share with its own key: the same estimate statistically
        assert abs(four.value - one.value) / abs(one.value) < 0.02
        assert four.box_rel_l1 < 2 * one.box_rel_l1 + 0.01


@pytest.mark.slow  # 21 s; DeepBSDE also runs in the sharded test
def test_deep_bsde_hjb_small_d_uses_the_nonlinearity():
    d = 10
    # lam=1 at d=10: the nonlinearity moves u(0,0) from E[g] = 2.26 down to 2.16; a solver that
    # ignores f returns ~2.26, one with f's sign flipped lands above 2.26.
    problem = pde.make_problem("hjb", d, lam=1)
    linear_part = float(jnp.mean(jax.vmap(problem.terminal)(
        jnp.sqrt(2.0) * jax.random.normal(jax.random.key(0), (20000, d)))))
    ref = float(problem.reference().value)
    sol = pde.solve(problem, pde.DeepBSDE(time_steps=10, batch_size=128), key=jax.random.key(3),
                    steps=300, progress=False)
    assert not sol.stats["z_collapsed"]
    # closer to the true value than to the linear part (which a solver ignoring f would return)
    assert abs(sol.value - ref) < 0.5 * abs(linear_part - ref), (sol.value, ref, linear_part)
    assert sol.rel_error < 0.02


# slow: 16 s; the sharded path is checked by the DeepKolmogorov test above and sciml.train's tests
@pytest.mark.parametrize("parallel", [pytest.param("sharded", marks=pytest.mark.slow),
                                      pytest.param("pmap", marks=pytest.mark.slow)])
def test_deep_bsde_on_four_devices_matches_one(parallel):
    """Paths sharded over 4 CPU devices give the estimate of one device."""
    problem = pde.make_problem("hjb", 5, lam=1)
    method = pde.DeepBSDE(time_steps=5, batch_size=128, width=16, learning_rate=1e-2)
    # sharded: the same numbers, so a short run shows it; pmap: a trained estimate to compare
    steps = 40 if parallel == "sharded" else 300
    one = pde.solve(problem, method, key=jax.random.key(5), steps=steps, progress=False)
    four = pde.solve(problem, method, key=jax.random.key(5), steps=steps, progress=False,
                     parallel=parallel)
    if parallel == "sharded":  # the same program on a sharded batch: same numbers to rounding
        np.testing.assert_allclose(four.value, one.value, rtol=1e-4)
        np.testing.assert_allclose(four.history.loss, one.history.loss, rtol=1e-3)
    else:  # per-device keys: other paths, the same estimate within Monte Carlo noise
        assert abs(four.value - one.value) / abs(one.value) < 0.01, (four.value, one.value)
        assert four.rel_error < 0.02 and not four.stats["z_collapsed"]


def test_z_collapse_is_reported():
    problem = pde.make_problem("hjb", 5)
    method = pde.DeepBSDE(time_steps=5)
    sol = pde.solve(problem, method, key=jax.random.key(4), steps=200, progress=False)
    assert not sol.stats["z_collapsed"] and sol.stats["z_energy_ratio"] > 0.2
    dead = _BSDEModel(sol.model.y0, sol.model.net, jnp.zeros_like(sol.model.scale),
                      sol.model.spread, sol.model.sde, sol.model.z_from)
    stats = _z_diagnostics(problem, dead, method._grid(problem), jax.random.key(0))
    assert stats["z_collapsed"] and stats["z_energy_ratio"] == 0.0
    assert stats["f_uses_z"]  # HJB's f = -lam |z|^2 / 2
    assert not _z_diagnostics(pde.make_problem("allen-cahn", 5), dead, method._grid(problem),
                              jax.random.key(0))["f_uses_z"]


def test_multilevel_picard_method_reaction_diffusion():
    problem = pde.make_problem("reaction-diffusion", 10)
    sol = pde.solve(problem, pde.MultilevelPicard(level=4, repeats=8), key=jax.random.key(5))
    assert sol.model is None and sol.history is None and sol.n_params == 0
    assert sol.rel_error < 0.05  # one level-4 estimate spreads ~8%; 8 repeats ~3%
    assert np.isfinite(sol.stats["stderr"]) and sol.stats["stderr"] > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="DeepKolmogorov solves linear problems"):
        pde.solve(pde.make_problem("hjb", 3), pde.DeepKolmogorov(), key=jax.random.key(0), steps=1)
    with pytest.raises(TypeError, match="`problem` must be a pde.AbstractProblem"):
        pde.solve("hjb", pde.DeepBSDE(), key=jax.random.key(0))
    with pytest.raises(TypeError, match="`method` must be a pde method object"):
        pde.solve(pde.make_problem("hjb", 3), "deep-bsde", key=jax.random.key(0))
    with pytest.raises(ValueError, match="`time_steps` must be a positive int"):
        pde.DeepBSDE(time_steps=0)
    with pytest.raises(ValueError, match="`steps` must be a positive int"):
        pde.solve(pde.make_problem("hjb", 3), pde.DeepBSDE(), key=jax.random.key(0), steps=0)
    with pytest.raises(ValueError, match="`learning_rate` must be > 0"):
        pde.DeepKolmogorov(learning_rate=0.0)
    with pytest.raises(ValueError, match="`theta` must be a float in"):
        pde.DeepBSDE(theta=1.5)


def test_divergence_stops_with_the_step():
    from sciml.train import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match="at step"):
        pde.solve(pde.make_problem("heat-paraboloid", 3), pde.DeepKolmogorov(learning_rate=1e6),
                  key=jax.random.key(0), steps=300, progress=False)


def test_custom_network_dimension_is_checked():
    import sciml

    problem = pde.make_problem("heat-paraboloid", 4)
    wrong = sciml.nn.MLP(3, "scalar", 8, 1, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"`network` must accept inputs of shape \(4,\)"):
        pde.solve(problem, pde.DeepKolmogorov(network=wrong), key=jax.random.key(0), steps=2)
    vector_out = sciml.nn.MLP(4, 2, 8, 1, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"must map shape \(4,\) to shape \(\)"):
        pde.solve(problem, pde.DeepKolmogorov(network=vector_out), key=jax.random.key(0), steps=2)
    ok = sciml.nn.MLP(4, "scalar", 16, 2, "softplus", key=jax.random.key(0))
    sol = pde.solve(problem, pde.DeepKolmogorov(network=ok, batch_size=128), key=jax.random.key(0),
                    steps=50, progress=False)
    # the network's parameters plus the standardisation constants (x shift/scale, y shift/scale)
    assert sol.n_params == sum(x.size for x in jax.tree_util.tree_leaves(ok)) + 2 * 4 + 2


@pytest.mark.parametrize("theta", [0.0, 0.5, 1.0])
def test_deep_bsde_roll_theta_weights(theta):
    """With Z = 0 the discrete BSDE is a deterministic recursion along each path: check _roll's
    weights and time arguments against it, for f = -r u + t |x|^2 / d (depends on t, x and u)."""
    from tests.pde.test_deep_splitting import DiscountedQuadratic

    d, N, r = 3, 4, 0.7
    problem = DiscountedQuadratic(d, rate=r)
    net = sciml.nn.MLP(d + 1, "scalar", 8, 1, "tanh", key=jax.random.key(0))
    model = _BSDEModel(jnp.float32(0.3), net, jnp.float32(0.0), jnp.ones(d, jnp.float32), problem.sde,
                       "gradient")
    ts = jnp.linspace(0.0, 1.0, N + 1)
    xs, dws = forward_paths(problem.sde, problem.x0, ts, jax.random.key(1), 5)
    y, energy = _roll(problem, model, ts, xs, dws, theta)
    np.testing.assert_array_equal(energy, 0.0)
    xs, ts = np.asarray(xs, np.float64), np.asarray(ts, np.float64)
    f = lambda n, u: -r * u + ts[n] * np.sum(xs[:, n] ** 2, -1) / d
    want = np.full(5, 0.3)
    for n in range(N):
        dt = ts[n + 1] - ts[n]
        pred = want - f(n, want) * dt
        want = want - ((1 - theta) * f(n, want) + theta * f(n + 1, pred)) * dt
    np.testing.assert_allclose(y, want, rtol=1e-5)


@pytest.mark.parametrize("z_from", ["gradient", "network"])
def test_deep_bsde_linear_skip_adds_a_diagonal_linear_z(z_from):
    """The skip adds sigma^T scale q y / spread (gradient form: the gradient of scale/2 sum q_i y_i^2
    with y = x / spread) or scale q y (network form) to Z."""
    d = 4
    problem = pde.make_problem("hjb", d)  # sigma = sqrt(2) I
    out = "scalar" if z_from == "gradient" else d
    net = sciml.nn.MLP(d + 1, out, 8, 1, "tanh", key=jax.random.key(0))
    q = jnp.array([0.5, -1.0, 2.0, 0.25])
    scale, spread = jnp.float32(0.3), jnp.array([1.0, 2.0, 0.5, 1.5])
    with_skip = _BSDEModel(jnp.float32(0.0), net, scale, spread, problem.sde, z_from, linear=q)
    without = _BSDEModel(jnp.float32(0.0), net, scale, spread, problem.sde, z_from)
    t, x = jnp.float32(0.4), jnp.array([0.3, -1.0, 0.7, 2.0])
    extra = scale * q * x / spread
    want = np.sqrt(2.0) * extra / spread if z_from == "gradient" else extra
    np.testing.assert_allclose(with_skip.z(t, x) - without.z(t, x), want, rtol=1e-5, atol=1e-6)


class _CosineMonteCarlo(pde.AbstractLinearProblem):
    """u_t + 1/2 Delta u = 0, g = cos(sum x) on [-1, 1]^d, with a Monte Carlo reference (needs a key)."""

    sde: pde.BrownianMotion
    horizon: jax.Array
    x0: jax.Array
    box: pde.Box
    discount_rate: jax.Array
    name = "cosine-monte-carlo"

    def terminal(self, x):
        return jnp.cos(jnp.sum(x))

    def reference(self, x=None, *, key=None):
        from pde.reference import monte_carlo

        return monte_carlo(self, x, key=key, n_paths=256)


def test_deep_kolmogorov_box_error_skips_a_monte_carlo_reference():
    """solve evaluates the reference at x0 with its key; the box error called it at thousands of
    points without one (a TypeError after training): it is None, as for DeepSplitting."""
    d = 2
    problem = _CosineMonteCarlo(pde.BrownianMotion(d), jnp.ones(()), jnp.zeros(d),
                                pde.Box(-jnp.ones(d), jnp.ones(d)), jnp.zeros(()))
    assert problem.reference(key=jax.random.key(0)).method == "monte carlo"
    model = lambda x: jnp.cos(jnp.sum(x))
    assert pde.DeepKolmogorov().box_error(problem, model, key=jax.random.key(1)) is None
    # A closed-form reference is still evaluated on the box (the exact u as the model: error 0).
    heat = pde.make_problem("heat-paraboloid", d)
    exact = lambda x: heat.exact(jnp.zeros(()), x)
    assert pde.DeepKolmogorov(eval_points=64).box_error(heat, exact, key=jax.random.key(1)) < 1e-6


def test_zero_reference_gives_an_infinite_relative_error():
    """u(0, 0) = 1 + kappa = 0 for kappa = -1: the relative error is inf, not a ZeroDivisionError
    after the solve."""
    problem = pde.make_problem("reaction-diffusion", 2, kappa=-1.0)
    assert float(problem.reference().value) == 0.0
    sol = pde.solve(problem, pde.MultilevelPicard(level=1), key=jax.random.key(0))
    assert sol.value != 0.0 and sol.rel_error == float("inf")


def test_deep_kolmogorov_rejects_x0_outside_the_box():
    """The network is trained on the box: at x0 = 2 * 1 outside [0, 1]^d its value was an
    extrapolation (27% off at d = 5) while the box error looked fine."""
    problem = pde.make_problem("heat-paraboloid", 3, x0=2.0)
    with pytest.raises(ValueError, match="x0 lies outside HeatParaboloid's box"):
        pde.solve(problem, pde.DeepKolmogorov(), key=jax.random.key(0), steps=1)
    inside = pde.make_problem("max-call", 2, x0=90.0)  # on the boundary of [90, 110]^d: fine
    from pde.solvers._base import x0_in_box

    assert x0_in_box(inside)


def test_deep_kolmogorov_rejects_odd_antithetic_paths():
    with pytest.raises(ValueError, match="paths_per_point=3; it must be 1 or even"):
        pde.DeepKolmogorov(paths_per_point=3)
