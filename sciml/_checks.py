"""Boundary checks shared by the backend and the packages built on it (re-exported by backend)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def check_float_array(x: Any, *, name: str = "x") -> jax.Array:
    """``x`` as a JAX array that must already be real floating; no dtype is chosen or changed.

    Raises:
        TypeError: ``x`` is not array-like or not of a real floating dtype (names ``name``).
    """
    try:
        arr = jnp.asarray(x)
    except TypeError as e:
        raise TypeError(f"`{name}` must be a real floating array, got {type(x).__name__}") from e
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(
            f"`{name}` must be a real floating array, got dtype {arr.dtype}; cast it first, e.g. "
            f"`{name}.astype(jnp.float32)` or `sciml.backend.as_array({name})`"
        )
    return arr
