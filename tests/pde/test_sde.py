"""pde.sde: path sampling against closed forms, convergence orders, transformations, errors.

Compiling a diffrax solve costs ~2 s on CPU and is cached per (SDE type, scheme, shapes, dtype), so
the diffrax tests share a few shapes: GBM in d=1 on ts=[0, 1] with _N_PATHS paths in float64.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from jax.scipy.stats import norm

import pde
import pde.sde as S
from sciml import backend
from tests.helpers import tree_allclose

_N_PATHS = 2000  # the paths of the shared float64 diffrax runs
_LEVELS = (8, 32, 128)  # steps on [0, 1] for the convergence orders


def _within(estimate, expected, stderr, k=4.0):
    estimate, expected, stderr = (np.asarray(a, np.float64) for a in (estimate, expected, stderr))
    assert np.all(np.abs(estimate - expected) <= k * stderr), (estimate, expected, stderr)


def _gbm_levels(mu, sigma, scheme, key):
    """EM/Milstein X_1 and the exact X_1 driven by the same Brownian increments, per level."""
    gbm = S.GeometricBrownianMotion(1, mu=mu, sigma=sigma)
    ts = jnp.array([0.0, 1.0])
    out = []
    for steps, k in zip(_LEVELS, jax.random.split(key, len(_LEVELS))):
        path = S.sample_paths(gbm, jnp.ones(1), ts, _N_PATHS, key=k, scheme=scheme, substeps=steps)
        w1 = path.dws[:, :, 0].sum(axis=1)
        exact = jnp.exp(mu - 0.5 * sigma**2 + sigma * w1)
        out.append((np.asarray(path.xs[:, -1, 0]), np.asarray(exact)))
    return out


def _slope(hs, errors):
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


# ----------------------------------------------------------------------------- exact marginals


def test_exact_brownian_motion_marginals(getkey):
    b, s, t1, m = jnp.array([0.5, -1.0, 0.0]), jnp.array([1.0, 0.5, 2.0]), 2.0, 20000
    sde = S.BrownianMotion(3, scale=s, drift_vector=b)
    x0 = jnp.array([1.0, 2.0, -3.0])
    paths = S.sample_paths(sde, x0, jnp.linspace(0.0, t1, 5), m, key=getkey())
    assert paths.xs.shape == (m, 5, 3) and paths.dws.shape == (m, 4, 3)
    xt = np.asarray(paths.xs[:, -1], np.float64)
    var = np.asarray(s**2 * t1, np.float64)
    _within(xt.mean(0), x0 + b * t1, np.sqrt(var / m))
    _within(xt.var(0), var, var * np.sqrt(2.0 / (m - 1)))


def test_exact_gbm_marginals_and_increments(getkey):
    mu, sigma, t1, x, m = jnp.array([0.1, -0.2]), jnp.array([0.4, 0.3]), 1.5, 2.0, 20000
    sde = S.GeometricBrownianMotion(2, mu=mu, sigma=sigma)
    ts = jnp.array([0.0, 0.5, t1])
    paths = S.sample_paths(sde, jnp.full(2, x), ts, m, key=getkey())
    # the path is the closed form driven by its own increments
    w = jnp.concatenate([jnp.zeros((m, 1, 2)), jnp.cumsum(paths.dws, axis=1)], axis=1)
    rebuilt = x * jnp.exp((mu - 0.5 * sigma**2) * ts[:, None] + sigma * w)
    np.testing.assert_allclose(paths.xs, rebuilt, rtol=1e-5)
    np.testing.assert_array_equal(paths.ts[0], ts)
    xt = np.asarray(paths.xs[:, -1], np.float64)
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    mean = x * np.exp(mu * t1)
    var = x**2 * np.exp(2 * mu * t1) * (np.exp(sigma**2 * t1) - 1)
    _within(xt.mean(0), mean, xt.std(0) / np.sqrt(m))
    m4 = ((xt - xt.mean(0)) ** 4).mean(0)
    _within(xt.var(0), var, np.sqrt((m4 - xt.var(0) ** 2) / m))


def test_sample_terminal(getkey):
    sde = S.GeometricBrownianMotion(1, mu=0.2, sigma=0.3)
    key = getkey()
    xt = S.sample_terminal(sde, jnp.ones(1), 0.5, 1.5, key=key)
    # Exact: one transition with dw ~ N(0, (t1 - t0) I) drawn from `key`
    dw = jax.random.normal(key, (1, 1))[0] * jnp.sqrt(1.0)
    np.testing.assert_allclose(xt, sde.transition(0.5, 1.5, jnp.ones(1), dw), rtol=1e-6)
    assert xt.shape == (1,) and xt.dtype == jnp.float32


# ----------------------------------------------------------------------------- convergence


@pytest.mark.slow  # 13 s; the strong-order regressions below cover both schemes
def test_euler_maruyama_weak_error_gbm(getkey):
    """E[X_1^EM] - E[X_1] = (1 + mu h)^N - e^mu = O(h), estimated against the exact X_1 on the
    same Brownian paths (common random numbers make the difference's variance O(h))."""
    mu, sigma = 1.0, 0.5
    with backend.precision("float64"):
        levels = _gbm_levels(mu, sigma, S.EulerMaruyama(), getkey())
    hs = 1.0 / np.asarray(_LEVELS)
    errors, stderrs = [], []
    for (em, exact), n in zip(levels, _LEVELS):
        diff = em - exact
        errors.append(diff.mean())
        stderrs.append(diff.std() / np.sqrt(diff.size))
        _within(diff.mean(), (1 + mu / n) ** n - np.exp(mu), stderrs[-1])
    assert 0.8 < _slope(hs, np.abs(errors)) < 1.2


# Euler-Maruyama's order regression is slow (12 s); Milstein's stays in the default suite
@pytest.mark.parametrize("scheme, low, high",
                         [pytest.param(S.EulerMaruyama(), 0.4, 0.7, marks=pytest.mark.slow),
                          (S.Milstein(), 0.85, 1.2)])
def test_strong_order_gbm(scheme, low, high, getkey):
    """E|X_1^h - X_1| ~ h^p, with the exact X_1 built from the increments that drove the scheme."""
    with backend.precision("float64"):
        levels = _gbm_levels(0.5, 0.8, scheme, getkey())
    errors = [np.abs(x - exact).mean() for x, exact in levels]
    order = _slope(1.0 / np.asarray(_LEVELS), errors)
    assert low < order < high, (order, errors)


# ----------------------------------------------------------------------------- increments


def test_dws_drive_the_euler_maruyama_path(getkey):
    scale, substeps = jnp.array([0.7, 1.3]), 4
    sde = S.BrownianMotion(2, scale=scale)
    ts = jnp.array([0.0, 0.1, 0.35, 0.5, 1.0])
    paths = S.sample_paths(
        sde, jnp.ones(2), ts, 4000, key=getkey(), scheme=S.EulerMaruyama(), substeps=substeps
    )
    np.testing.assert_array_equal(paths.xs[:, 0], jnp.ones((4000, 2)))
    np.testing.assert_allclose(paths.xs[:, -1] - paths.xs[:, 0], scale * paths.dws.sum(1), atol=1e-5)
    np.testing.assert_allclose(jnp.diff(paths.xs, axis=1), scale * paths.dws, atol=1e-5)
    # the sums of the sub-step increments are N(0, dt I)
    dt = np.asarray(jnp.diff(ts), np.float64)
    var = np.asarray(paths.dws, np.float64).var(0)
    _within(var, np.broadcast_to(dt[:, None], var.shape), dt[:, None] * np.sqrt(2 / 3999))


def _ou_drift(t, x, args):
    return -args["theta"].astype(x.dtype) * x


def _ou_diffusion(t, x, args):
    return lx.MatrixLinearOperator(args["s"].astype(x.dtype))


def _ou(theta=1.0):
    s = jnp.array([[0.8, 0.0], [0.5, 0.6]])
    return S.ItoSDE(2, _ou_drift, _ou_diffusion, {"theta": jnp.asarray(theta), "s": s}), s


def test_ornstein_uhlenbeck_euler_maruyama(getkey):
    """dX = -theta X dt + S dW (non-diagonal noise): X_T ~ N(x0 e^{-theta T},
    (1 - e^{-2 theta T}) / (2 theta) S S^T); the EM bias at h = 1/100 is in the tolerance."""
    theta, n, m = 1.0, 100, 10000
    sde, s = _ou(theta)
    x0 = jnp.array([1.0, -2.0])
    paths = S.sample_paths(sde, x0, jnp.array([0.0, 1.0]), m, key=getkey(), substeps=n)
    xt = np.asarray(paths.xs[:, -1], np.float64)
    ss = np.asarray(s @ s.T, np.float64)
    mean, cov = np.asarray(x0) * np.exp(-theta), (1 - np.exp(-2 * theta)) / (2 * theta) * ss
    q = 1 - theta / n  # EM: mean x0 q^n, covariance S S^T h sum_k q^{2k}
    em_mean, em_cov = np.asarray(x0) * q**n, ss / n * (1 - q ** (2 * n)) / (1 - q**2)
    se_mean = np.sqrt(np.diag(cov) / m)
    assert np.all(np.abs(xt.mean(0) - mean) <= 4 * se_mean + np.abs(em_mean - mean))
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / m)
    assert np.all(np.abs(np.cov(xt.T) - cov) <= 4 * se_cov + np.abs(em_cov - cov))


# ----------------------------------------------------------------------------- transformations


def test_jit_and_grad_through_diffrax(getkey):
    """One jitted value_and_grad: no retrace for new keys, parameters, x0 or ts; the pathwise
    derivative is exact (EM for GBM is linear in x0: d mean(X_1)/dx0 = mean(X_1)/x0); a
    non-increasing traced ts is caught by eqx.error_if."""

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(sde, x0, ts, key):
        def mean_xt(x):
            path = S.sample_paths(sde, x, ts, 64, key=key, scheme=S.EulerMaruyama(), substeps=2)
            return path.xs[:, -1, 0].mean()

        return jax.value_and_grad(mean_xt)(x0)

    ts = jnp.linspace(0.0, 1.0, 4)
    for mu, sigma, x0, t_scale in [(0.1, 0.2, 1.0, 1.0), (0.3, 0.4, 2.0, 2.0)]:
        sde = S.GeometricBrownianMotion(1, mu=mu, sigma=sigma)
        value, grad = run(sde, x0 * jnp.ones(1), t_scale * ts, getkey())
        np.testing.assert_allclose(grad[0], value / x0, rtol=1e-5)
    with pytest.raises(Exception, match="strictly increasing"):
        jax.block_until_ready(run(sde, jnp.ones(1), ts[::-1], getkey()))


def test_sample_paths_is_vmap_of_sample_path(getkey):
    sde, key = S.GeometricBrownianMotion(2, mu=0.1, sigma=0.3), getkey()
    x0 = jnp.arange(1.0, 7.0).reshape(3, 2)
    ts = jnp.linspace(0.0, 1.0, 3)
    batched = S.sample_paths(sde, x0, ts, 3, key=key)
    one_by_one = jax.vmap(lambda x, k: S.sample_path(sde, x, ts, key=k))(x0, jax.random.split(key, 3))
    assert tree_allclose(batched, one_by_one, rtol=1e-6)
    assert batched.ts.shape == (3, 3)


def test_pathwise_delta_gbm(getkey):
    """d/dx E[(X_T - K)^+] = e^{mu T} N(d1) (Black-Scholes delta with rate mu), pathwise."""
    mu, sigma, t1, strike, x, m = 0.05, 0.2, 1.0, 1.0, 1.1, 20000
    sde = S.GeometricBrownianMotion(1, mu=mu, sigma=sigma)
    key = getkey()

    def price(x0):
        xt = S.sample_paths(sde, x0, jnp.array([0.0, t1]), m, key=key).xs[:, -1, 0]
        return jnp.maximum(xt - strike, 0.0).mean(), xt

    delta, xt = jax.grad(price, has_aux=True)(jnp.full(1, x))
    per_path = np.where(np.asarray(xt) > strike, np.asarray(xt) / x, 0.0)
    np.testing.assert_allclose(delta[0], per_path.mean(), rtol=1e-4)
    d1 = (np.log(x / strike) + (mu + 0.5 * sigma**2) * t1) / (sigma * np.sqrt(t1))
    _within(delta[0], np.exp(mu * t1) * norm.cdf(d1), per_path.std() / np.sqrt(m))


# ----------------------------------------------------------------------------- dtypes


def test_dtype_follows_x0(getkey):
    ts = [0.0, 1.0]
    sde = S.GeometricBrownianMotion(1, mu=0.5, sigma=0.8)
    assert S.sample_path(sde, jnp.ones(1), ts, key=getkey()).xs.dtype == jnp.float32
    with backend.precision("float64"):
        sde = S.GeometricBrownianMotion(1, mu=0.5, sigma=0.8)  # float64 leaves, as in _gbm_levels
        for scheme in (S.Exact(), S.EulerMaruyama(), S.Milstein()):
            # the shapes of the convergence tests: their compiled solves are reused
            path = S.sample_paths(
                sde, jnp.ones(1), ts, _N_PATHS, key=getkey(), scheme=scheme, substeps=_LEVELS[0]
            )
            assert path.xs.dtype == path.dws.dtype == path.ts.dtype == jnp.float64
        # float32 x0 in 64-bit mode stays float32
        path = S.sample_path(sde, jnp.ones(1, jnp.float32), ts, key=getkey())
        assert path.xs.dtype == path.ts.dtype == jnp.float32


def test_reexports():
    assert S.BrownianMotion is pde.BrownianMotion
    assert pde.sample_paths is S.sample_paths and pde.Path is S.Path
    assert issubclass(S.Milstein, S.AbstractScheme)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda k: S.sample_path(S.BrownianMotion(2), jnp.zeros(3), [0.0, 1.0], key=k),
            r"`x0` must have shape \(2,\).*got shape \(3,\)",
        ),
        (
            lambda k: S.sample_paths(S.BrownianMotion(2), jnp.zeros((4, 2)), [0.0, 1.0], 3, key=k),
            r"\(2,\) or \(3, 2\).*got shape \(4, 2\)",
        ),
        (
            lambda k: S.sample_path(S.BrownianMotion(1), jnp.zeros(1), [0.0, 1.0, 1.0], key=k),
            "strictly increasing",
        ),
        (lambda k: S.sample_path(S.BrownianMotion(1), jnp.zeros(1), [1.0], key=k), "at least 2 times"),
        (lambda k: S.sample_path(S.BrownianMotion(1), jnp.zeros(1), jnp.zeros((2, 2)), key=k), "1-D"),
        (
            lambda k: S.sample_terminal(S.BrownianMotion(1), jnp.zeros(1), 1.0, 0.5, key=k),
            "strictly increasing",
        ),
        (
            lambda k: S.sample_path(_ou()[0], jnp.zeros(2), [0.0, 1.0], key=k, scheme=S.Exact()),
            "AbstractExactSDE.*ItoSDE.*EulerMaruyama",
        ),
        (
            lambda k: S.sample_path(_ou()[0], jnp.zeros(2), [0.0, 1.0], key=k, scheme=S.Milstein()),
            "diagonal noise.*MatrixLinearOperator.*EulerMaruyama",
        ),
        (
            lambda k: S.sample_path(S.BrownianMotion(1), jnp.zeros(1), [0.0, 1.0], key=k, substeps=0),
            "substeps",
        ),
        (lambda k: S.sample_paths(S.BrownianMotion(1), jnp.zeros(1), [0.0, 1.0], 0, key=k), "n_paths"),
    ],
)
def test_bad_input(call, match, getkey):
    with pytest.raises(ValueError, match=match):
        call(getkey())


def test_bad_types_and_milstein_dtype(getkey):
    with pytest.raises(TypeError, match="scheme"):
        S.sample_path(S.BrownianMotion(1), jnp.zeros(1), [0.0, 1.0], key=getkey(), scheme="euler")
    with pytest.raises(TypeError, match="sde"):
        S.sample_path("bm", jnp.zeros(1), [0.0, 1.0], key=getkey())
    with backend.precision("float64"), pytest.raises(ValueError, match="float64.*float32"):
        S.sample_path(
            S.GeometricBrownianMotion(1, 0.1, 0.2),
            jnp.ones(1, jnp.float32),
            [0.0, 1.0],
            key=getkey(),
            scheme=S.Milstein(),
        )
