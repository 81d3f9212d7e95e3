"""Fixtures for tests/ (the device count and dtype promotion are set in the root conftest.py)."""

import jax
import jax.numpy as jnp
import pytest

N_DEVICES = 4

# A script run in subprocesses (it sets XLA_FLAGS at import): not a module for doctest collection.
collect_ignore = ["sciml/distributed_worker.py"]


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
    assert jax.device_count() >= N_DEVICES, "tests expect several CPU devices (see conftest.py)"
    assert jnp.zeros(()).dtype == jnp.float32
