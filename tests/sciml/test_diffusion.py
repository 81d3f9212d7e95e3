"""sciml.diffusion: schedules (closed forms), the EDM-preconditioned denoiser and its loss (the exact
Gaussian posterior mean gives loss exactly 1), and the samplers against exact denoisers of known
distributions (Gaussian: the samples' mean and std; two points: the split and where samples land)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sciml import diffusion as dm
from sciml import nn

SCHEDULES = [dm.VP(), dm.VE(sigma_min=0.01, sigma_max=20.0)]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["VP", "VE"])
def test_schedule_closed_forms(schedule):
    t = jnp.linspace(0.01, 1.0, 50)
    a, s = jax.vmap(schedule.alpha)(t), jax.vmap(schedule.sigma)(t)
    assert bool(jnp.all(jnp.diff(s / a) > 0))  # the noise-to-signal ratio increases
    if isinstance(schedule, dm.VP):
        np.testing.assert_allclose(a**2 + s**2, 1.0, atol=1e-6)
        beta = 0.1 + t * 19.9
        da, _ = jax.vmap(schedule.derivatives)(t)
        np.testing.assert_allclose(da, -0.5 * beta * a, rtol=1e-5)  # d alpha/dt = -beta alpha / 2
        assert float(schedule.sigma(0.0)) == 0.0 and float(schedule.sigma(1e-6)) > 0
    else:
        np.testing.assert_allclose(s, 0.01 * 2000.0**t, rtol=1e-5)
        _, ds = jax.vmap(schedule.derivatives)(t)
        np.testing.assert_allclose(ds, s * np.log(2000.0), rtol=1e-5)


class _Gaussian(eqx.Module):
    """Exact E[x0 | x_t] for x0 ~ N(mu, s^2) per pixel."""

    schedule: dm.AbstractSchedule
    mu: float = 0.7
    s: float = 0.3

    def __call__(self, x, t):
        a, sig = self.schedule.alpha(t), self.schedule.sigma(t)
        return self.mu + a * self.s**2 * (x - a * self.mu) / (a**2 * self.s**2 + sig**2)


class _TwoPoints(eqx.Module):
    """Exact E[x0 | x_t] for x0 = +-1 with probability 1/2 each."""

    schedule: dm.AbstractSchedule

    def __call__(self, x, t):
        a, sig = self.schedule.alpha(t), self.schedule.sigma(t)
        return jnp.tanh(a * x / sig**2)


SAMPLERS = [dm.DDIM(steps=200), dm.DDIM(steps=200, eta=0.5), dm.DDPM(steps=400), dm.ProbabilityFlow(steps=50),
            dm.ProbabilityFlow(steps=None)]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=["ddim", "ddim-eta", "ddpm", "pf-fixed", "pf-adaptive"])
@pytest.mark.parametrize("schedule", SCHEDULES, ids=["VP", "VE"])
def test_samplers_reproduce_a_gaussian(sampler, schedule):
    # 4000 independent pixels: sample mean within 5 standard errors, sample std within 5%
    model = _Gaussian(schedule)
    x = jax.jit(lambda k: dm.sample(model, (1, 40, 100), key=k, sampler=sampler))(jax.random.key(0))
    assert abs(float(x.mean()) - model.mu) < 5 * model.s / np.sqrt(x.size)
    assert float(x.std()) == pytest.approx(model.s, rel=0.05)


@pytest.mark.parametrize("sampler", SAMPLERS[:3] + SAMPLERS[4:], ids=["ddim", "ddim-eta", "ddpm", "pf"])
def test_samplers_split_two_points(sampler):
    schedule = dm.VP()
    x = dm.sample(_TwoPoints(schedule), (1, 40, 100), key=jax.random.key(1), sampler=sampler)
    assert float(jnp.mean(jnp.abs(jnp.abs(x) - 1.0) < 0.05)) > 0.97  # samples land on the points
    assert float(jnp.mean(x > 0)) == pytest.approx(0.5, abs=5 * 0.5 / np.sqrt(x.size))


def _exact_net(mu, s):
    """A 'network' whose denoiser output is the exact Gaussian posterior mean (EDM parametrisation)."""

    def net(inp, log_sigma):
        sv = jnp.exp(log_sigma)
        sd2 = s**2
        c_in = 1.0 / jnp.sqrt(sv**2 + sd2)
        xv = inp[:1] / c_in
        d = mu + s**2 / (s**2 + sv**2) * (xv - mu)
        c_skip, c_out = sd2 / (sv**2 + sd2), sv * s / jnp.sqrt(sv**2 + sd2)
        return (d - c_skip * xv) / c_out

    return net


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["VP", "VE"])
def test_loss_of_the_exact_denoiser_is_one(schedule):
    # with sigma_data = s the irreducible EDM-weighted loss is exactly 1 at every noise level
    mu, s = 0.0, 0.5
    model = dm.Denoiser(_exact_net(mu, s), schedule, channels=1, sigma_data=s)
    x0 = mu + s * jax.random.normal(jax.random.key(2), (256, 1, 16, 16))
    loss = float(dm.denoising_loss(model, x0, jax.random.key(3)))
    assert loss == pytest.approx(1.0, abs=0.02)  # MC error of 65536 squared normals ~ 0.006
    worse = dm.Denoiser(lambda i, n: _exact_net(mu, s)(i, n) + 0.3, schedule, channels=1, sigma_data=s)
    assert float(dm.denoising_loss(worse, x0, jax.random.key(3))) == pytest.approx(loss + 0.09, abs=0.01)


@pytest.mark.slow  # 28 s; the denoiser also runs in every diffusion-CT test
def test_denoiser_preconditioning_and_condition_mask(getkey):
    net = nn.UNet(3, 1, channels=(8, 16), groups=4, key=getkey())
    # perturb every weight (the U-Net's last convolution starts at zero: output independent of input)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(getkey(), len(leaves))
    leaves = [p + 0.1 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
    net = eqx.combine(jax.tree_util.tree_unflatten(tree, leaves), static)
    model = dm.Denoiser(net, dm.VP(), channels=1, cond_channels=1)
    assert model.in_channels == 3
    x, c = jax.random.normal(getkey(), (1, 16, 16)), jax.random.normal(getkey(), (1, 16, 16))
    t = jnp.asarray(0.5)
    # a dropped condition (mask 0) is exactly the unconditional call
    np.testing.assert_array_equal(model._inputs(x, c, False), model._inputs(x, None))
    assert not np.allclose(model(x, t, c), model(x, t))
    # at vanishing noise the denoiser returns its input (c_skip -> 1, c_out -> 0)
    np.testing.assert_allclose(model(x, jnp.asarray(1e-5), c), x, atol=1e-2)  # c_out = 1e-3 here


@pytest.mark.slow
def test_denoiser_under_jit_vmap_grad(getkey):
    model = dm.Denoiser(nn.UNet(3, 1, channels=(8, 16), groups=4, key=getkey()), dm.VP(), channels=1,
                        cond_channels=1)
    x, c = jax.random.normal(getkey(), (1, 16, 16)), jax.random.normal(getkey(), (1, 16, 16))
    t = jnp.asarray(0.5)
    f = eqx.filter_jit(eqx.filter_vmap(lambda m, a, b: m(a, t, b), in_axes=(None, 0, 0)))
    assert f(model, jnp.stack([x, x]), jnp.stack([c, c])).shape == (2, 1, 16, 16)
    g = eqx.filter_grad(lambda m: dm.denoising_loss(m, x[None], jax.random.key(0), cond=c[None],
                                                    p_uncond=0.5))(model)
    leaves = jax.tree_util.tree_leaves(eqx.filter(g, eqx.is_array))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)


def test_bad_input_is_named(getkey):
    net = nn.UNet(1, 1, channels=(8, 16), groups=4, key=getkey())
    model = dm.Denoiser(net, dm.VP(), channels=1)
    with pytest.raises(ValueError, match="`beta_max`"):
        dm.VP(beta_min=1.0, beta_max=0.5)
    with pytest.raises(ValueError, match="`sigma_min`"):
        dm.VE(sigma_min=-1.0)
    with pytest.raises(ValueError, match="`steps`"):
        dm.DDIM(steps=0)
    with pytest.raises(ValueError, match="`eta`"):
        dm.DDIM(eta=2.0)
    with pytest.raises(TypeError, match="`schedule`"):
        dm.Denoiser(net, "vp", channels=1)
    with pytest.raises(ValueError, match="`x` must have shape"):
        model(jnp.zeros((2, 16, 16)), jnp.asarray(0.5))
    with pytest.raises(ValueError, match="unconditional"):
        model(jnp.zeros((1, 16, 16)), jnp.asarray(0.5), jnp.zeros((1, 16, 16)))
    with pytest.raises(ValueError, match="`x0`"):
        dm.denoising_loss(model, jnp.zeros((16, 16)), getkey())
    with pytest.raises(ValueError, match="`p_uncond`"):
        dm.denoising_loss(model, jnp.zeros((2, 1, 16, 16)), getkey(), p_uncond=1.5)
    with pytest.raises(TypeError, match="`sampler`"):
        dm.sample(model, (1, 16, 16), key=getkey(), sampler="ddim")


def test_sample_runs_in_the_models_precision():
    """The initial noise takes the denoiser's dtype (it was float64 whenever 64-bit mode was on,
    even for a float32 model); a denoiser without weights gets the backend's default."""
    import sciml

    class Scaled(eqx.Module):
        w: jax.Array
        schedule: dm.AbstractSchedule

        def __call__(self, x, t):
            return self.w * x

    model32 = Scaled(jnp.asarray(0.5, jnp.float32), dm.VP())
    run = lambda m: dm.sample(m, (1, 4, 4), key=jax.random.key(0), schedule=dm.VP(),  # noqa: E731
                              sampler=dm.DDIM(steps=3))
    with sciml.backend.precision("float64"):
        assert run(model32).dtype == jnp.float32
        assert run(lambda x, t: 0.5 * x).dtype == jnp.float64
    assert run(lambda x, t: 0.5 * x).dtype == jnp.float32
