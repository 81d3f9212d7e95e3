"""The regression problem shared by the multi-process test and its single-process reference."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

N_STEPS = 20


def make_data():
    x = jax.random.normal(jax.random.key(1), (64, 3))
    y = jnp.sin(x[:, :1]) + x[:, 1:2] * x[:, 2:3]
    return x, y


def make_model():
    return eqx.nn.MLP(3, 1, 16, 2, key=jax.random.key(2))


def loss_fn(model, batch, key):
    x, y = batch
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def optimizer():
    return optax.adam(1e-2)
