"""The one adapter from flax ``nnx`` models to sciml's callable pytrees (equinox Modules)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
from flax import nnx

__all__ = ["FlaxModel", "from_flax", "to_flax"]


def _freeze(state: nnx.State) -> nnx.State:
    return jax.tree_util.tree_map(jax.lax.stop_gradient, state)


class FlaxModel(eqx.Module):
    """A flax ``nnx`` model as an equinox Module: a pure, callable pytree.

    Built by :func:`from_flax`, which splits the model once into

    * ``graphdef``, its structure (a static field: hashable, so jit caches on it),
    * ``params``, the ``nnx.Param`` variables (array leaves: these are trained), and
    * ``rest``, every other variable (batch statistics, RNG state, custom ``nnx.Variable``\\ s):
      array leaves too, but ``__call__`` wraps them in ``jax.lax.stop_gradient``, so a gradient
      with respect to the whole Module is zero there and training never moves them.

    ``model(*args, **kwargs)`` merges the three and calls the nnx model. It is pure: whatever the
    nnx model writes to its state during the call (BatchNorm running averages in training mode, RNG
    counters) is dropped. :meth:`apply` returns it instead.

    Example:
        >>> from flax import nnx
        >>> model = from_flax(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
        >>> eqx.filter_jit(model)(jnp.ones(3)).shape
        (2,)
    """

    graphdef: nnx.GraphDef = eqx.field(static=True)
    params: nnx.State
    rest: nnx.State

    def _merge(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.params, _freeze(self.rest))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped nnx model (pure: state updates made by the call are discarded)."""
        return self._merge()(*args, **kwargs)

    def apply(self, *args: Any, **kwargs: Any) -> tuple[Any, FlaxModel]:
        """Call the wrapped model and also return the Module with its updated non-param state.

        Returns:
            ``(output, updated)``, where ``updated.rest`` holds the state the call wrote (e.g.
            BatchNorm running averages) and ``updated.params`` equals ``self.params``.

        Example:
            >>> bn = from_flax(nnx.BatchNorm(2, rngs=nnx.Rngs(0)))
            >>> y, bn = bn.apply(jnp.ones((4, 2)))
        """
        module = self._merge()
        out = module(*args, **kwargs)
        _, _, rest = nnx.split(module, nnx.Param, ...)
        return out, eqx.tree_at(lambda m: m.rest, self, rest)


def from_flax(model: nnx.Module) -> FlaxModel:
    """Wrap a flax ``nnx`` model as a :class:`FlaxModel` (an equinox Module).

    Splits once, ``graphdef, params, rest = nnx.split(model, nnx.Param, ...)``; the nnx model itself
    is not kept (later changes to it do not reach the wrapper).

    Args:
        model: a ``flax.nnx.Module``.

    Returns:
        A :class:`FlaxModel` computing what ``model`` computes, usable under ``jax.jit``,
        ``jax.grad`` and ``jax.vmap`` like any equinox Module.

    Raises:
        TypeError: ``model`` is not a ``flax.nnx.Module``.

    Example:
        >>> from flax import nnx
        >>> wrapped = from_flax(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
        >>> grads = eqx.filter_grad(lambda m: m(jnp.ones(3)).sum())(wrapped)
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(
            f"`model` must be a flax.nnx.Module, got {type(model).__module__}."
            f"{type(model).__qualname__}; a flax.linen Module can be converted with "
            "flax.nnx.bridge.ToNNX, and an equinox Module needs no wrapper"
        )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return FlaxModel(graphdef, params, rest)


def to_flax(wrapped: FlaxModel) -> nnx.Module:
    """Rebuild the flax ``nnx`` model from a (possibly trained) :class:`FlaxModel`.

    Args:
        wrapped: a :class:`FlaxModel`, e.g. the result of training one made by :func:`from_flax`.

    Returns:
        A new ``nnx.Module`` with ``wrapped``'s params and other state.

    Raises:
        TypeError: ``wrapped`` is not a :class:`FlaxModel`.

    Example:
        >>> from flax import nnx
        >>> lin = to_flax(from_flax(nnx.Linear(3, 2, rngs=nnx.Rngs(0))))
        >>> isinstance(lin, nnx.Linear)
        True
    """
    if not isinstance(wrapped, FlaxModel):
        raise TypeError(
            "`wrapped` must be a sciml.nn.FlaxModel (from `from_flax`), got "
            f"{type(wrapped).__name__}"
        )
    return nnx.merge(wrapped.graphdef, wrapped.params, wrapped.rest)
