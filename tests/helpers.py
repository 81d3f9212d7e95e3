"""Shared test helpers (import as `from tests.helpers import ...`)."""

import jax
import jax.numpy as jnp
import numpy as np


def _host(x):
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.atleast_1d(np.asarray(x))


def tree_allclose(x, y, *, rtol=1e-5, atol=1e-8) -> bool:
    """True when two pytrees have the same structure and all leaves are close."""
    xs, xdef = jax.tree_util.tree_flatten(x)
    ys, ydef = jax.tree_util.tree_flatten(y)
    if xdef != ydef:
        return False
    return all(
        np.shape(a) == np.shape(b) and np.allclose(_host(a), _host(b), rtol=rtol, atol=atol)
        for a, b in zip(xs, ys)
    )


def tree_equal_bits(x, y) -> bool:
    """True when two pytrees are identical bit for bit (typed PRNG keys compared by key data)."""
    xs, xdef = jax.tree_util.tree_flatten(x)
    ys, ydef = jax.tree_util.tree_flatten(y)
    return xdef == ydef and all(
        _host(a).dtype == _host(b).dtype
        and np.array_equal(_host(a).view(np.uint8), _host(b).view(np.uint8))
        for a, b in zip(xs, ys)
    )


def pde_residual(problem, u, t, x):
    """u_t + 1/2 Tr(sigma sigma^T Hess u) + mu . grad u + f(t, x, u, sigma^T grad u) of a function
    ``u(t, x)`` at one point (t, x), for a ``pde.AbstractProblem`` (the package's convention)."""
    u_t = jax.grad(u, argnums=0)(t, x)
    grad = jax.grad(u, argnums=1)(t, x)
    hess = jax.hessian(u, argnums=1)(t, x)
    sigma = problem.sde.diffusion(t, x)
    s = sigma.as_matrix()
    z = sigma.transpose().mv(grad)
    f = problem.nonlinearity(t, x, u(t, x), z)
    return u_t + 0.5 * jnp.trace(s @ s.T @ hess) + problem.sde.drift(t, x) @ grad + f
