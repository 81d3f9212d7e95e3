"""Boundary checks shared by the backend and the packages built on it (re-exported by backend)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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


def check_real_scalar(value: Any, name: str, dtype: Any) -> jax.Array:
    """A real scalar parameter (Python/NumPy number or 0-d array, int or float) as a 0-d array of
    ``dtype``: a traced leaf, so new values do not recompile. Sign checks are the caller's."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.ndarray, np.number, jax.Array)):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__} {value!r}")
    arr = jnp.asarray(value)
    if arr.shape != () or not (
        jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)
    ):
        raise ValueError(
            f"`{name}` must be a real scalar, got an array of shape {arr.shape} and dtype {arr.dtype}; "
            f"for a batch of values use jax.vmap"
        )
    return arr.astype(dtype)
