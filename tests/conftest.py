"""Strict test setup (STYLE.md #10): several CPU devices, strict dtype promotion, warnings as errors.

The device count must be fixed before jax initialises its backends, so it is set here, at import.
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")

N_DEVICES = 4


@pytest.fixture
def getkey():
    """A fresh, distinct PRNG key on every call, deterministic per test."""
    state = {"key": jax.random.key(0)}

    def _getkey():
        state["key"], sub = jax.random.split(state["key"])
        return sub

    return _getkey


@pytest.fixture(scope="session", autouse=True)
def _check_devices():
    assert jax.device_count() >= N_DEVICES, "tests expect several CPU devices (see conftest)"
    assert jnp.zeros(()).dtype == jnp.float32
