"""Affine layer and multilayer perceptron, computed through the shared ``sciml.backend.matmul``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..backend import float_dtype, matmul, split_key
from ._activations import AbstractActivation
from ._activations import activation as _activation

__all__ = ["MLP", "Linear"]


def _check_int(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"got {name}={value!r}; `{name}` must be {kind}")
    return int(value)


def _check_size(value: Any, name: str) -> int | Literal["scalar"]:
    if isinstance(value, str) and value == "scalar":
        return "scalar"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f'got {name}={value!r}; `{name}` must be a positive int or "scalar"')
    return int(value)


def _check_key(key: Any) -> None:
    if key is None:
        raise TypeError("`key` is required (a PRNG key, e.g. `sciml.backend.key(0)`), got None")


class Linear(eqx.Module):
    r"""Affine map :math:`y = x W + b` on one example; ``W`` is ``(in_features, out_features)``.

    The product is ``sciml.backend.matmul`` (shape-checked, full float precision). Initialisation
    follows equinox/PyTorch: every entry of ``W`` and ``b`` is drawn from
    :math:`\mathcal{U}(-1/\sqrt{n_{in}},\, 1/\sqrt{n_{in}})`.

    Args:
        in_features: input size, a positive int.
        out_features: output size, a positive int.
        key: PRNG key (keyword-only).
        use_bias: add the bias ``b``.
        dtype: parameter dtype; ``None`` takes ``sciml.backend``'s default.

    Raises:
        ValueError: a size is not a positive int, or an unknown dtype.
        TypeError: ``key`` is missing or not a PRNG key.

    Example:
        >>> lin = Linear(3, 2, key=jax.random.key(0))
        >>> lin(jnp.ones(3)).shape
        (2,)

    Paper: He et al. (2015), "Delving deep into rectifiers" (fan-in scaled uniform init).
    """

    weight: Float[Array, "in_features out_features"]
    bias: Float[Array, " out_features"] | None
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        key: PRNGKeyArray,
        use_bias: bool = True,
        dtype: Any = None,
    ):
        self.in_features = _check_int(in_features, "in_features", minimum=1)
        self.out_features = _check_int(out_features, "out_features", minimum=1)
        self.use_bias = bool(use_bias)
        dtype = float_dtype(dtype)
        _check_key(key)
        wkey, bkey = split_key(key, 2)
        lim = 1 / math.sqrt(self.in_features)
        self.weight = jax.random.uniform(
            wkey, (self.in_features, self.out_features), dtype, minval=-lim, maxval=lim
        )
        self.bias = (
            jax.random.uniform(bkey, (self.out_features,), dtype, minval=-lim, maxval=lim)
            if self.use_bias
            else None
        )

    def __call__(
        self, x: Float[Array, " in_features"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " out_features"]:
        """Apply the map to one example of shape ``(in_features,)``; ``key`` is unused."""
        if jnp.shape(x) != (self.in_features,):
            raise ValueError(
                f"Linear expected input of shape ({self.in_features},), got {jnp.shape(x)}; for a "
                "batch use jax.vmap(layer)"
            )
        y = matmul(x, self.weight)
        return y if self.bias is None else y + self.bias.astype(y.dtype)


class MLP(eqx.Module):
    r"""Multilayer perceptron: ``depth`` hidden layers of ``width`` units, one example at a time.

    .. math::
        h_0 = x,\quad h_{i} = \sigma(h_{i-1} W_i + b_i)\ (i = 1..\mathrm{depth}),\quad
        y = \sigma_{\mathrm{final}}(h_{\mathrm{depth}} W_{\mathrm{depth}+1} + b_{\mathrm{depth}+1})

    ``depth=0`` is a single affine map. The hidden activation :math:`\sigma` is one Module shared by
    all hidden layers; :math:`\sigma_{\mathrm{final}}` is the identity unless ``final_activation``
    is given. Layers are :class:`Linear` (``sciml.backend.matmul``; uniform
    :math:`\pm 1/\sqrt{\text{fan-in}}` init, as in equinox). Written for one example; batch with
    ``jax.vmap(model)``.

    Args:
        in_size: input size, a positive int, or ``"scalar"`` for input shape ``()``.
        out_size: output size, a positive int, or ``"scalar"`` for output shape ``()``.
        width: units per hidden layer, a positive int.
        depth: number of hidden layers, an int >= 0.
        activation: hidden activation: a name (see :func:`sciml.nn.activation`), an
            :class:`AbstractActivation`, or a function.
        key: PRNG key (keyword-only).
        dtype: parameter dtype; ``None`` takes ``sciml.backend``'s default.
        final_activation: activation after the last layer (``None``: identity).
        use_bias: give every layer a bias.

    Raises:
        ValueError: a size/width/depth of the wrong kind, an unknown activation name or dtype.
        TypeError: ``key`` is missing or not a PRNG key, or an activation of the wrong type.

    Example:
        >>> model = MLP(3, 1, width=16, depth=2, activation="gem", key=jax.random.key(0))
        >>> jax.vmap(model)(jnp.ones((5, 3))).shape
        (5, 1)

    Paper: the universal-approximation setting of Beck, Jentzen et al. (2021), "Solving the
    Kolmogorov PDE by means of deep learning", J. Sci. Comput.
    """

    layers: tuple[Linear, ...]
    activation: AbstractActivation
    final_activation: AbstractActivation | None
    in_size: int | Literal["scalar"] = eqx.field(static=True)
    out_size: int | Literal["scalar"] = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int | Literal["scalar"],
        out_size: int | Literal["scalar"],
        width: int,
        depth: int,
        activation: str | AbstractActivation | Callable[[Array], Array] = "relu",
        *,
        key: PRNGKeyArray,
        dtype: Any = None,
        final_activation: str | AbstractActivation | Callable[[Array], Array] | None = None,
        use_bias: bool = True,
    ):
        self.in_size = _check_size(in_size, "in_size")
        self.out_size = _check_size(out_size, "out_size")
        self.width = _check_int(width, "width", minimum=1)
        self.depth = _check_int(depth, "depth", minimum=0)
        self.activation = _activation(activation)
        self.final_activation = None if final_activation is None else _activation(final_activation)
        dtype = float_dtype(dtype)
        _check_key(key)
        n_in = 1 if self.in_size == "scalar" else self.in_size
        n_out = 1 if self.out_size == "scalar" else self.out_size
        sizes = [n_in] + [self.width] * self.depth + [n_out]
        keys = split_key(key, self.depth + 1)
        self.layers = tuple(
            Linear(a, b, key=k, use_bias=use_bias, dtype=dtype)
            for a, b, k in zip(sizes[:-1], sizes[1:], keys)
        )

    def __call__(
        self, x: Float[Array, " in_size"] | Float[Array, ""], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " out_size"] | Float[Array, ""]:
        """Evaluate on one example (shape ``(in_size,)``, or ``()`` for ``"scalar"``).

        ``key`` is accepted for equinox compatibility and unused (the network is deterministic).

        Raises:
            ValueError: ``x`` has the wrong shape (e.g. a batch: use ``jax.vmap(model)``).
        """
        expected = () if self.in_size == "scalar" else (self.in_size,)
        if jnp.shape(x) != expected:
            raise ValueError(
                f"MLP expected input of shape {expected} (in_size={self.in_size!r}), got "
                f"{jnp.shape(x)}; for a batch use jax.vmap(model)"
            )
        h = jnp.reshape(x, (-1,))
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        h = self.layers[-1](h)
        if self.final_activation is not None:
            h = self.final_activation(h)
        return h[0] if self.out_size == "scalar" else h
