r"""Fuzzy connectives: negations, t-norms, t-conorms, implications and equivalence.

Every operator is a pure elementwise function of truth values in [0, 1] (``x`` and ``y`` broadcast
against each other) that works under ``jit``, ``vmap`` and ``grad`` and keeps the input dtype (float32
in, float32 out; float64 in, float64 out; a Python number follows the array it meets).

**Semantics** are LTNtorch's (``ltn.fuzzy_ops``, v1.0.2) exactly, values and gradients, including the
gradient conventions at kinks: ``minimum``/``maximum`` split the gradient 0.5/0.5 on ties and a
``where`` passes the gradient of the selected branch only. One deliberate difference: the unselected
branch of :func:`implies_goguen` is evaluated on a safe denominator, so ``x = 0`` gives a zero gradient
where torch gives NaN.

**Stability.** ``stable=True`` applies LTN's projections (``eps = 1e-4``)

.. math::

    \pi_0(x) = (1 - \epsilon)\, x + \epsilon \in [\epsilon, 1], \qquad
    \pi_1(x) = (1 - \epsilon)\, x \in [0, 1 - \epsilon]

where LTN does (product t-norm, probabilistic sum, Reichenbach and Goguen implications), which keeps
gradients away from 0 and finite at the corners of the unit square. The piecewise-linear operators
(Goedel and Lukasiewicz families, Kleene-Dienes) have bounded gradients already: for them ``stable`` is
accepted and has no effect, as in LTN.

**Checks.** Inputs must be real floating arrays (or Python numbers). Concrete values outside [0, 1]
(beyond a few ulps of rounding) raise ``ValueError`` naming the argument; ``clip=True`` clips instead.
Inside ``jit`` nothing is checked.

References: S. Badreddine, A. d'Avila Garcez, L. Serafini, M. Spranger, "Logic Tensor Networks",
Artificial Intelligence 303 (2022); E. van Krieken, E. Acar, F. van Harmelen, "Analyzing differentiable
fuzzy logic operators", Artificial Intelligence 302 (2022).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ._checks import check_flag, one_minus_pi_1, pi_0, scalar, truths
from ._types import Truth

__all__ = [
    "and_luk",
    "and_min",
    "and_prod",
    "equiv",
    "implies_godel",
    "implies_goguen",
    "implies_kleene_dienes",
    "implies_luk",
    "implies_reichenbach",
    "implies_sigmoidal",
    "not_godel",
    "not_std",
    "or_luk",
    "or_max",
    "or_prob_sum",
]


def _unary(x: Any, stable: Any, clip: bool) -> jax.Array:
    check_flag(stable, "stable")
    (x,) = truths(clip=clip, x=x)
    return x


def _binary(x: Any, y: Any, stable: Any, clip: bool) -> tuple[jax.Array, jax.Array]:
    check_flag(stable, "stable")
    x, y = truths(clip=clip, x=x, y=y)
    try:
        jnp.broadcast_shapes(x.shape, y.shape)
    except ValueError as e:
        raise ValueError(
            f"`x` and `y` must broadcast against each other, got x.shape={x.shape} and y.shape={y.shape}; "
            f"for operands over different variables use symbolic.fuzzy.connective"
        ) from e
    return x, y


# --------------------------------------------------------------------------------------------------
# Negations
# --------------------------------------------------------------------------------------------------


def not_std(x: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Standard (Lukasiewicz) negation, :math:`N(x) = 1 - x`.

    Args:
        x: truth values in [0, 1], any shape.
        stable: accepted for a uniform interface; no effect.
        clip: clip ``x`` to [0, 1] instead of rejecting values outside it.

    Returns:
        An array of the shape and dtype of ``x``.

    Raises:
        TypeError: ``x`` is not a real floating array.
        ValueError: concrete ``x`` outside [0, 1] (and ``clip=False``).

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.not_std(jnp.array([0.0, 0.25, 1.0]))
        Array([1.  , 0.75, 0.  ], dtype=float32)
    """
    x = _unary(x, stable, clip)
    return 1 - x


def not_godel(x: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Goedel (intuitionistic) negation, :math:`N(x) = 1` if :math:`x = 0` else 0; zero gradient.

    Args:
        x: truth values in [0, 1], any shape.
        stable: accepted for a uniform interface; no effect.
        clip: clip ``x`` to [0, 1] instead of rejecting values outside it.

    Returns:
        An array of the shape and dtype of ``x``.

    Raises:
        TypeError: ``x`` is not a real floating array.
        ValueError: concrete ``x`` outside [0, 1] (and ``clip=False``).

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.not_godel(jnp.array([0.0, 0.25, 1.0]))
        Array([1., 0., 0.], dtype=float32)
    """
    x = _unary(x, stable, clip)
    return (x == 0).astype(x.dtype)


# --------------------------------------------------------------------------------------------------
# t-norms (conjunctions) and t-conorms (disjunctions)
# --------------------------------------------------------------------------------------------------


def and_min(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Goedel t-norm, :math:`T(x, y) = \min(x, y)` (ties split the gradient 0.5/0.5).

    Args:
        x: truth values in [0, 1].
        y: truth values in [0, 1], broadcastable against ``x``.
        stable: accepted for a uniform interface; no effect.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.and_min(jnp.array([0.2, 0.9]), jnp.array([0.5, 0.5]))
        Array([0.2, 0.5], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    return jnp.minimum(x, y)


def and_prod(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Product (Goguen) t-norm, :math:`T(x, y) = x y`; stable: :math:`\pi_0(x)\, \pi_0(y)`.

    Args:
        x: truth values in [0, 1].
        y: truth values in [0, 1], broadcastable against ``x``.
        stable: project both inputs with :math:`\pi_0` (no vanishing gradient at 0).
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.and_prod(jnp.array([0.2, 0.9]), jnp.array([0.5, 0.5]))
        Array([0.1 , 0.45], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    if stable:
        x, y = pi_0(x), pi_0(y)
    return x * y


def and_luk(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Lukasiewicz t-norm, :math:`T(x, y) = \max(x + y - 1, 0)`.

    Args:
        x: truth values in [0, 1].
        y: truth values in [0, 1], broadcastable against ``x``.
        stable: accepted for a uniform interface; no effect.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.and_luk(jnp.array([0.25, 0.75]), jnp.array([0.5, 0.5]))
        Array([0.  , 0.25], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    return jnp.maximum(x + y - 1, 0)


def or_max(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Goedel t-conorm, :math:`S(x, y) = \max(x, y)` (ties split the gradient 0.5/0.5).

    Args:
        x: truth values in [0, 1].
        y: truth values in [0, 1], broadcastable against ``x``.
        stable: accepted for a uniform interface; no effect.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.or_max(jnp.array([0.2, 0.9]), jnp.array([0.5, 0.5]))
        Array([0.5, 0.9], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    return jnp.maximum(x, y)


def or_prob_sum(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Probabilistic sum (product t-conorm), :math:`S(x, y) = x + y - x y`; stable: on
    :math:`\pi_1(x), \pi_1(y)`.

    Args:
        x: truth values in [0, 1].
        y: truth values in [0, 1], broadcastable against ``x``.
        stable: project both inputs with :math:`\pi_1` (no vanishing gradient at 1).
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.or_prob_sum(jnp.array([0.5, 1.0]), jnp.array([0.5, 0.5]))
        Array([0.75, 1.  ], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    if stable:
        # = pi_1(x) + pi_1(y) - pi_1(x) pi_1(y), in the form that keeps float32 accurate near 1
        return 1 - one_minus_pi_1(x) * one_minus_pi_1(y)
    return x + y - x * y


def or_luk(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Lukasiewicz t-conorm, :math:`S(x, y) = \min(x + y, 1)`.

    Args:
        x: truth values in [0, 1].
        y: truth values in [0, 1], broadcastable against ``x``.
        stable: accepted for a uniform interface; no effect.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.or_luk(jnp.array([0.25, 0.75]), jnp.array([0.5, 0.5]))
        Array([0.75, 1.  ], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    return jnp.minimum(x + y, 1)


# --------------------------------------------------------------------------------------------------
# Implications
# --------------------------------------------------------------------------------------------------


def implies_kleene_dienes(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Kleene-Dienes implication (S-implication of max), :math:`I(x, y) = \max(1 - x, y)`.

    Args:
        x: antecedent truth values in [0, 1].
        y: consequent truth values in [0, 1], broadcastable against ``x``.
        stable: accepted for a uniform interface; no effect.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.implies_kleene_dienes(jnp.array([0.25, 0.75]), jnp.array([0.5, 0.5]))
        Array([0.75, 0.5 ], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    return jnp.maximum(1 - x, y)


def implies_godel(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Goedel implication (R-implication of min), :math:`I(x, y) = 1` if :math:`x \le y` else :math:`y`.

    Args:
        x: antecedent truth values in [0, 1].
        y: consequent truth values in [0, 1], broadcastable against ``x``.
        stable: accepted for a uniform interface; no effect.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.implies_godel(jnp.array([0.25, 0.75]), jnp.array([0.5, 0.5]))
        Array([1. , 0.5], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    return jnp.where(x <= y, 1, y)


def implies_reichenbach(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Reichenbach implication (S-implication of the product), :math:`I(x, y) = 1 - x + x y`;
    stable: with :math:`x \leftarrow \pi_0(x)`, :math:`y \leftarrow \pi_1(y)`.

    Args:
        x: antecedent truth values in [0, 1].
        y: consequent truth values in [0, 1], broadcastable against ``x``.
        stable: project ``x`` with :math:`\pi_0` and ``y`` with :math:`\pi_1`.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.implies_reichenbach(jnp.array([0.5, 1.0]), jnp.array([0.5, 0.5]))
        Array([0.75, 0.5 ], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    return _reichenbach(x, y, stable)


def _reichenbach(x: jax.Array, y: jax.Array, stable: bool) -> jax.Array:
    if stable:
        # = 1 - pi_0(x) + pi_0(x) pi_1(y), in the form that keeps float32 accurate near y = 1
        return 1 - pi_0(x) * one_minus_pi_1(y)
    return 1 - x + x * y


def implies_goguen(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Goguen implication (R-implication of the product), :math:`I(x, y) = 1` if :math:`x \le y` else
    :math:`y / x`; stable: with :math:`x \leftarrow \pi_0(x)`, compared after the projection.

    Args:
        x: antecedent truth values in [0, 1].
        y: consequent truth values in [0, 1], broadcastable against ``x``.
        stable: project ``x`` with :math:`\pi_0`.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.implies_goguen(jnp.array([0.25, 1.0]), jnp.array([0.5, 0.5]))
        Array([1. , 0.5], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    if stable:
        x = pi_0(x)
    holds = x <= y
    # The division is evaluated everywhere: a safe denominator where it is not selected keeps x = 0
    # from sending 0 * inf = NaN into the gradient.
    return jnp.where(holds, 1, y / jnp.where(holds, 1, x))


def implies_luk(x: Truth, y: Truth, *, stable: bool = False, clip: bool = False) -> Truth:
    r"""Lukasiewicz implication (R- and S-implication), :math:`I(x, y) = \min(1 - x + y, 1)`.

    Args:
        x: antecedent truth values in [0, 1].
        y: consequent truth values in [0, 1], broadcastable against ``x``.
        stable: accepted for a uniform interface; no effect.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], or shapes that do not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.implies_luk(jnp.array([0.25, 0.75]), jnp.array([0.5, 0.5]))
        Array([1.  , 0.75], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    return jnp.minimum(1 - x + y, 1)


def implies_sigmoidal(
    x: Truth, y: Truth, *, s: Any = 9.0, b0: Any = -0.5, stable: bool = False, clip: bool = False
) -> Truth:
    r"""Sigmoidal Reichenbach implication of van Krieken et al. (2022), a sharpened Reichenbach.

    .. math::

        I_s(x, y) = C \big(y_2\, \sigma(s\, (I_{RC}(x, y) + b_0)) - 1\big), \quad
        I_{RC} = 1 - x + x y, \quad y_1 = 1 + e^{-s (1 + b_0)}, \quad y_2 = 1 + e^{-s b_0}, \quad
        C = \frac{y_1}{y_2 - y_1},

    rescaled so that :math:`I_{RC} = 0 \mapsto 0` and :math:`I_{RC} = 1 \mapsto 1`.

    Args:
        x: antecedent truth values in [0, 1].
        y: consequent truth values in [0, 1], broadcastable against ``x``.
        s: the steepness ``s > 0`` (a scalar, may be a traced array: new values do not recompile).
        b0: the offset (a scalar, may be traced); ``-0.5`` centres the sigmoid.
        stable: use the stable Reichenbach implication inside.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array, or ``s``/``b0`` is not a real number.
        ValueError: concrete inputs outside [0, 1], shapes that do not broadcast, or ``s <= 0`` (a
            traced ``s``: ``eqx.error_if``).

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.implies_sigmoidal(jnp.array([0.0, 0.5, 1.0]), jnp.array([0.0, 0.0, 0.0])).round(6)
        Array([1. , 0.5, 0. ], dtype=float32)
    """
    x, y = _binary(x, y, stable, clip)
    s = scalar(s, "s", x.dtype, positive=True)
    b0 = scalar(b0, "b0", x.dtype)
    i_rc = _reichenbach(x, y, stable)
    y1 = 1 + jnp.exp(-s * (1 + b0))
    y2 = 1 + jnp.exp(-s * b0)
    return y1 / (y2 - y1) * (y2 * jax.nn.sigmoid(s * (i_rc + b0)) - 1)


def equiv(
    x: Truth,
    y: Truth,
    *,
    and_op: Callable[..., Any] | str = and_prod,
    implies_op: Callable[..., Any] | str = implies_reichenbach,
    stable: bool = False,
    clip: bool = False,
) -> Truth:
    r"""Fuzzy equivalence, :math:`x \leftrightarrow y = T(I(x, y), I(y, x))`.

    Args:
        x: truth values in [0, 1].
        y: truth values in [0, 1], broadcastable against ``x``.
        and_op: the t-norm ``T``: one of this package's binary operators or its name (e.g. ``"and_min"``),
            or any callable ``(a, b, *, stable) -> truth``.
        implies_op: the implication ``I``, given the same way.
        stable: passed to both operators.
        clip: clip the inputs to [0, 1] instead of rejecting values outside it.

    Returns:
        The broadcast shape, in the common dtype of ``x`` and ``y``.

    Raises:
        TypeError: an input is not a real floating array.
        ValueError: concrete inputs outside [0, 1], shapes that do not broadcast, or an unknown
            operator name (the message lists the valid ones).

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.equiv(jnp.array([0.25, 0.5]), jnp.array([0.5, 0.5]), and_op="and_min",
        ...             implies_op="implies_godel")
        Array([0.25, 1.  ], dtype=float32)
    """
    from ._registry import resolve  # the registry imports this module

    and_fn = resolve(and_op, "and_op")
    implies_fn = resolve(implies_op, "implies_op")
    x, y = _binary(x, y, stable, clip)
    return and_fn(implies_fn(x, y, stable=stable), implies_fn(y, x, stable=stable), stable=stable)
