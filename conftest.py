"""Test setup for the whole tree (tests/ and the doctests in the packages), STYLE.md #10:
several CPU devices and strict dtype promotion. The device count must be fixed before jax
initialises its backends, so it is set here, at import, before anything imports jax."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    """Names every docstring example may use without importing them."""
    import sciml

    doctest_namespace.update(jax=jax, jnp=jnp, np=np, eqx=eqx, optax=optax, sciml=sciml)
