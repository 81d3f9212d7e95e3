"""Training-loop overhead: ``sciml.train.fit`` against a hand-written jitted optax loop, on the same
model, data and optimiser, in the same process. Reports the ratio (fit / baseline, lower is better)
and absolute steps/s; compile time apart from run time (the second call of the baseline)."""

import os
import time

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import sciml

STEPS = 2000


def _problem():
    model = sciml.nn.MLP(8, 1, 64, 3, "gelu", key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (512, 8))
    y = jnp.sum(jnp.sin(x), axis=1, keepdims=True)
    return model, (x, y)


def loss_fn(model, batch, key):
    x, y = batch
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def baseline(model, batch, opt, steps):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = opt.init(params)

    @jax.jit
    def step(params, state, batch):
        loss, g = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), batch, None))(params)
        upd, state = opt.update(g, state, params)
        return optax.apply_updates(params, upd), state, loss

    step(params, state, batch)  # compile
    t = time.perf_counter()
    for _ in range(steps):
        params, state, loss = step(params, state, batch)
    jax.block_until_ready(loss)
    return steps / (time.perf_counter() - t)


def main() -> dict:
    model, batch = _problem()
    opt = optax.adam(1e-3)
    base = baseline(model, batch, opt, STEPS)
    out = {"steps": STEPS, "baseline_steps_per_s": base}
    for parallel in (None, "pmap", "sharded"):
        _, hist = sciml.train.fit(model, loss_fn, batch, opt, steps=STEPS, key=jax.random.key(0),
                                  parallel=parallel, progress=False)
        name = parallel or "single"
        out[f"fit_{name}_steps_per_s"] = hist.steps_per_second
        out[f"fit_{name}_compile_s"] = hist.compile_seconds
        out[f"fit_{name}_vs_baseline_time_ratio"] = base / hist.steps_per_second
    return out
