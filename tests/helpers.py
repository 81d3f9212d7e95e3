"""Shared test helpers (import as `from tests.helpers import ...`)."""

import jax
import numpy as np


def tree_allclose(x, y, *, rtol=1e-5, atol=1e-8) -> bool:
    """True when two pytrees have the same structure and all leaves are close."""
    xs, xdef = jax.tree_util.tree_flatten(x)
    ys, ydef = jax.tree_util.tree_flatten(y)
    if xdef != ydef:
        return False
    return all(
        np.shape(a) == np.shape(b) and np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)
        for a, b in zip(xs, ys)
    )


def tree_equal_bits(x, y) -> bool:
    """True when two pytrees are identical bit for bit."""
    xs, xdef = jax.tree_util.tree_flatten(x)
    ys, ydef = jax.tree_util.tree_flatten(y)
    return xdef == ydef and all(
        np.asarray(a).dtype == np.asarray(b).dtype
        and np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
        for a, b in zip(xs, ys)
    )
