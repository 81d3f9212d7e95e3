"""The foundation's part of ``sciml demo``: fit an MLP to a known function and plot the fit."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import backend, nn, train
from .cli import DemoOptions, DemoRow, register_demo


def target(x: jax.Array) -> jax.Array:
    """The function the demo learns: u(x) = sin(3x) exp(-x^2/4) + x/2 on [-3, 3]."""
    return jnp.sin(3.0 * x) * jnp.exp(-(x**2) / 4.0) + 0.5 * x


def fit_demo(opts: DemoOptions) -> list[DemoRow]:
    """Train a 3x64 GELU MLP on fresh samples of :func:`target` each step; report the test error."""
    steps = opts.steps or 2000
    k_model, k_fit, k_test = backend.split_key(backend.key(opts.seed), 3)
    model = nn.MLP("scalar", "scalar", width=64, depth=3, activation="gelu", key=k_model)

    def sample(key):
        x = jax.random.uniform(key, (256,), minval=-3.0, maxval=3.0)
        return x, target(x)

    def loss_fn(m, batch, key):
        x, y = batch
        return jnp.mean((jax.vmap(m)(x) - y) ** 2)

    t0 = time.perf_counter()
    schedule = optax.cosine_decay_schedule(3e-3, steps, alpha=0.05)
    model, hist = train.fit(
        model, loss_fn, sample, optax.adam(schedule), steps=steps, key=k_fit, progress=opts.progress
    )
    seconds = time.perf_counter() - t0

    xt = jnp.linspace(-3.0, 3.0, 1001)
    pred, exact = jax.vmap(model)(xt), target(xt)
    rel_l2 = float(jnp.linalg.norm(pred - exact) / jnp.linalg.norm(exact))
    png = opts.out / "fit_mlp.png"
    _plot(np.asarray(xt), np.asarray(exact), np.asarray(pred), hist.loss, png)
    return [
        DemoRow("sciml", f"MLP fit, {steps} Adam steps", "relative L2 error", rel_l2, seconds, png.name),
        DemoRow("sciml", "MLP fit", "steps/s (compile excluded)", hist.steps_per_second,
                hist.run_seconds, ""),
    ]


def _plot(x, exact, pred, loss, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(x, exact, "k-", lw=2, label="target")
    a.plot(x, pred, "C1--", lw=2, label="MLP")
    a.set_xlabel("x")
    a.set_title("fit")
    a.legend()
    b.semilogy(np.arange(1, len(loss) + 1), loss)
    b.set_xlabel("step")
    b.set_ylabel("training loss (MSE)")
    b.set_title("training")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


register_demo("sciml", fit_demo)
