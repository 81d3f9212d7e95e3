r"""Fuzzy aggregators: the semantics of quantifiers, reducing truth values over axes.

Every aggregator takes truth values ``x`` in [0, 1], reduces them over ``axis`` (None: all axes) and
works under ``jit``, ``vmap`` and ``grad``, keeping the dtype of ``x``. Semantics (values and gradients)
are LTNtorch's ``AggregMin``, ``AggregMean``, ``AggregPMean`` and ``AggregPMeanError``; :func:`max`,
:func:`product` and :func:`log_product` are TF-LTN's ``Aggreg_Max``, ``Aggreg_Prod``, ``Aggreg_LogProd``.

**Guards.** ``mask=`` (boolean, broadcast to ``x``) restricts the domain: only elements where the mask
is True count, as in LTN's guarded quantifiers (masked-out elements are also cut out of the gradient).

**Empty domains.** A slice with no element (a zero-size axis, or a mask that selects nothing) gets the
value ``empty``. The defaults are the neutral elements: 1 for the universal aggregators (:func:`min`,
:func:`pmean_error`, :func:`product`: "for all x in nothing" holds), 0 for the existential ones
(:func:`max`, :func:`pmean`) and for :func:`log_product` (log 1). :func:`mean` has no natural value and
defaults to ``empty=None``: an empty domain is an error there (``ValueError`` on concrete inputs,
``eqx.error_if`` inside ``jit``). LTN returns NaN from the aggregator and replaces it in the quantifier;
here the replacement happens in the aggregator, and its gradient is zero rather than NaN.

**p** of the generalised means is a traced scalar: new values of ``p`` do not recompile a jitted caller.
"""

from __future__ import annotations

import builtins
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._checks import (
    axes,
    check_flag,
    empty_domain,
    guard_empty,
    mask_for,
    one_minus_pi_1,
    pi_0,
    safe_count,
    scalar,
    truths,
)
from ._types import Mask, Truth

__all__ = ["log_product", "max", "mean", "min", "pmean", "pmean_error", "product"]


def _setup(x, axis, mask, stable, keepdims, clip):
    check_flag(stable, "stable")
    check_flag(keepdims, "keepdims")
    (x,) = truths(clip=clip, x=x)
    ax = axes(axis, x.ndim)
    return x, ax, mask_for(mask, x.shape), builtins.any(x.shape[a] == 0 for a in ax)


def _count(mask, ax, keepdims):
    return jnp.sum(mask, axis=ax, keepdims=keepdims)


def _power_mean(v, p, ax, mask, keepdims):
    r""":math:`\big(\frac{1}{n} \sum_i v_i^p\big)^{1/p}` of ``v >= 0`` over ``ax`` (the masked-in elements
    only), computed as :math:`M \big(\frac{1}{n} \sum_i (v_i / M)^p\big)^{1/p}` with :math:`M` the largest
    ``v_i``. Written directly, ``v**p`` underflows to 0 for large ``p`` (float32: ``0.001**20``), which
    gives 0 instead of about ``max(v)`` and a NaN gradient. ``M`` is a constant for autodiff: the form is
    the same function of ``v`` for every ``M > 0``, so values and gradients are those of the formula."""
    selected = v if mask is None else jnp.where(mask, v, 0)
    m = jax.lax.stop_gradient(jnp.max(selected, axis=ax, keepdims=True))
    m = jnp.where(m > 0, m, 1)
    if mask is None:
        mean = jnp.mean(jnp.power(v / m, p), axis=ax, keepdims=True)
    else:
        # Masked-out elements are replaced before the power, so they cannot send NaN into the gradient.
        powers = jnp.where(mask, jnp.power(jnp.where(mask, v / m, 1), p), 0)
        count = jnp.sum(mask, axis=ax, keepdims=True)
        mean = jnp.sum(powers, axis=ax, keepdims=True) / safe_count(count, v.dtype)
    out = m * jnp.power(mean, 1 / p)
    return out if keepdims else jnp.squeeze(out, axis=ax)


def min(
    x: Truth,
    axis: Any = None,
    *,
    mask: Mask | None = None,
    empty: Any = 1.0,
    stable: bool = False,
    keepdims: bool = False,
    clip: bool = False,
) -> Truth:
    r"""Minimum aggregator (Goedel universal quantifier), :math:`\min_i x_i`.

    Ties split the gradient evenly between the minimal elements (as ``torch.amin``).

    Args:
        x: truth values in [0, 1].
        axis: the axes to reduce (None: all).
        mask: boolean, broadcastable to ``x``: only True elements count.
        empty: the value of a slice with no element (default 1).
        stable: accepted for a uniform interface; no effect.
        keepdims: keep the reduced axes with size 1.
        clip: clip ``x`` to [0, 1] instead of rejecting values outside it.

    Returns:
        ``x`` reduced over ``axis``, in the dtype of ``x``.

    Raises:
        TypeError: ``x`` is not a real floating array, or ``mask`` is not boolean.
        ValueError: concrete ``x`` outside [0, 1], a bad ``axis``, or a ``mask`` that does not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.min(jnp.array([[0.1, 0.8], [0.9, 0.7]]), axis=1)
        Array([0.1, 0.7], dtype=float32)
    """
    x, ax, mask, is_empty = _setup(x, axis, mask, stable, keepdims, clip)
    if is_empty:
        return empty_domain(x, ax, empty, keepdims, "the minimum")
    if mask is None:
        return jnp.min(x, axis=ax, keepdims=keepdims)
    out = jnp.min(jnp.where(mask, x, 1), axis=ax, keepdims=keepdims)
    return guard_empty(out, _count(mask, ax, keepdims), empty, "the minimum")


def max(
    x: Truth,
    axis: Any = None,
    *,
    mask: Mask | None = None,
    empty: Any = 0.0,
    stable: bool = False,
    keepdims: bool = False,
    clip: bool = False,
) -> Truth:
    r"""Maximum aggregator (Goedel existential quantifier), :math:`\max_i x_i`.

    Ties split the gradient evenly between the maximal elements.

    Args:
        x: truth values in [0, 1].
        axis: the axes to reduce (None: all).
        mask: boolean, broadcastable to ``x``: only True elements count.
        empty: the value of a slice with no element (default 0).
        stable: accepted for a uniform interface; no effect.
        keepdims: keep the reduced axes with size 1.
        clip: clip ``x`` to [0, 1] instead of rejecting values outside it.

    Returns:
        ``x`` reduced over ``axis``, in the dtype of ``x``.

    Raises:
        TypeError: ``x`` is not a real floating array, or ``mask`` is not boolean.
        ValueError: concrete ``x`` outside [0, 1], a bad ``axis``, or a ``mask`` that does not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.max(jnp.array([[0.1, 0.8], [0.9, 0.7]]), axis=1)
        Array([0.8, 0.9], dtype=float32)
    """
    x, ax, mask, is_empty = _setup(x, axis, mask, stable, keepdims, clip)
    if is_empty:
        return empty_domain(x, ax, empty, keepdims, "the maximum")
    if mask is None:
        return jnp.max(x, axis=ax, keepdims=keepdims)
    out = jnp.max(jnp.where(mask, x, 0), axis=ax, keepdims=keepdims)
    return guard_empty(out, _count(mask, ax, keepdims), empty, "the maximum")


def mean(
    x: Truth,
    axis: Any = None,
    *,
    mask: Mask | None = None,
    empty: Any = None,
    stable: bool = False,
    keepdims: bool = False,
    clip: bool = False,
) -> Truth:
    r"""Arithmetic-mean aggregator, :math:`\frac{1}{n} \sum_i x_i` (over the masked-in elements).

    Args:
        x: truth values in [0, 1].
        axis: the axes to reduce (None: all).
        mask: boolean, broadcastable to ``x``: only True elements count.
        empty: the value of a slice with no element; the default None makes an empty domain an error.
        stable: accepted for a uniform interface; no effect.
        keepdims: keep the reduced axes with size 1.
        clip: clip ``x`` to [0, 1] instead of rejecting values outside it.

    Returns:
        ``x`` reduced over ``axis``, in the dtype of ``x``.

    Raises:
        TypeError: ``x`` is not a real floating array, or ``mask`` is not boolean.
        ValueError: concrete ``x`` outside [0, 1], a bad ``axis``, a ``mask`` that does not broadcast,
            or an empty domain with ``empty=None`` (inside jit: ``eqx.error_if``).

    Example:
        >>> from symbolic import fuzzy
        >>> x = jnp.array([[0.1, 0.8, 0.4], [0.9, 0.95, 0.7]])
        >>> fuzzy.mean(x, axis=1, mask=jnp.array([[True, False, True], [False, False, False]]), empty=0.0)
        Array([0.25, 0.  ], dtype=float32)
    """
    x, ax, mask, is_empty = _setup(x, axis, mask, stable, keepdims, clip)
    if is_empty:
        return empty_domain(x, ax, empty, keepdims, "the mean")
    if mask is None:
        return jnp.mean(x, axis=ax, keepdims=keepdims)
    count = _count(mask, ax, keepdims)
    out = jnp.sum(jnp.where(mask, x, 0), axis=ax, keepdims=keepdims) / safe_count(count, x.dtype)
    return guard_empty(out, count, empty, "the mean")


def pmean(
    x: Truth,
    p: Any = 2.0,
    axis: Any = None,
    *,
    mask: Mask | None = None,
    empty: Any = 0.0,
    stable: bool = False,
    keepdims: bool = False,
    clip: bool = False,
) -> Truth:
    r"""Generalised mean (LTN's existential quantifier), :math:`\big(\frac{1}{n} \sum_i x_i^p\big)^{1/p}`.

    Larger ``p`` moves it from the mean (``p = 1``) towards the maximum (``p -> inf``). Stable: on
    :math:`\pi_0(x_i)`, which keeps the gradient finite when every :math:`x_i = 0`.

    Args:
        x: truth values in [0, 1].
        p: the exponent ``p > 0`` (a scalar, may be a traced array: new values do not recompile).
        axis: the axes to reduce (None: all).
        mask: boolean, broadcastable to ``x``: only True elements count.
        empty: the value of a slice with no element (default 0).
        stable: project ``x`` with :math:`\pi_0` first.
        keepdims: keep the reduced axes with size 1.
        clip: clip ``x`` to [0, 1] instead of rejecting values outside it.

    Returns:
        ``x`` reduced over ``axis``, in the dtype of ``x``.

    Raises:
        TypeError: ``x`` is not a real floating array, ``p`` is not a real number, or ``mask`` is not
            boolean.
        ValueError: concrete ``x`` outside [0, 1], ``p <= 0`` (a traced ``p``: ``eqx.error_if``), a
            bad ``axis``, or a ``mask`` that does not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.pmean(jnp.array([0.0, 1.0]), 2.0)  # sqrt(1/2)
        Array(0.70710677, dtype=float32)
    """
    x, ax, mask, is_empty = _setup(x, axis, mask, stable, keepdims, clip)
    p = scalar(p, "p", x.dtype, positive=True)
    if is_empty:
        return empty_domain(x, ax, empty, keepdims, "the p-mean")
    if stable:
        x = pi_0(x)
    out = _power_mean(x, p, ax, mask, keepdims)
    if mask is None:
        return out
    return guard_empty(out, _count(mask, ax, keepdims), empty, "the p-mean")


def pmean_error(
    x: Truth,
    p: Any = 2.0,
    axis: Any = None,
    *,
    mask: Mask | None = None,
    empty: Any = 1.0,
    stable: bool = False,
    keepdims: bool = False,
    clip: bool = False,
) -> Truth:
    r"""Generalised mean of the errors (LTN's universal quantifier),
    :math:`1 - \big(\frac{1}{n} \sum_i (1 - x_i)^p\big)^{1/p}`.

    Larger ``p`` moves it from the mean (``p = 1``) towards the minimum (``p -> inf``). Stable: on
    :math:`\pi_1(x_i)`, which keeps the gradient finite when every :math:`x_i = 1`.

    Args:
        x: truth values in [0, 1].
        p: the exponent ``p > 0`` (a scalar, may be a traced array: new values do not recompile).
        axis: the axes to reduce (None: all).
        mask: boolean, broadcastable to ``x``: only True elements count.
        empty: the value of a slice with no element (default 1).
        stable: project ``x`` with :math:`\pi_1` first.
        keepdims: keep the reduced axes with size 1.
        clip: clip ``x`` to [0, 1] instead of rejecting values outside it.

    Returns:
        ``x`` reduced over ``axis``, in the dtype of ``x``.

    Raises:
        TypeError: ``x`` is not a real floating array, ``p`` is not a real number, or ``mask`` is not
            boolean.
        ValueError: concrete ``x`` outside [0, 1], ``p <= 0`` (a traced ``p``: ``eqx.error_if``), a
            bad ``axis``, or a ``mask`` that does not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.pmean_error(jnp.array([0.0, 1.0]), 2.0)  # 1 - sqrt(1/2)
        Array(0.29289323, dtype=float32)
    """
    x, ax, mask, is_empty = _setup(x, axis, mask, stable, keepdims, clip)
    p = scalar(p, "p", x.dtype, positive=True)
    if is_empty:
        return empty_domain(x, ax, empty, keepdims, "the p-mean error")
    # The errors 1 - pi_1(x), computed without cancellation (see one_minus_pi_1).
    errors = one_minus_pi_1(x) if stable else 1 - x
    out = 1 - _power_mean(errors, p, ax, mask, keepdims)
    if mask is None:
        return out
    return guard_empty(out, _count(mask, ax, keepdims), empty, "the p-mean error")


def product(
    x: Truth,
    axis: Any = None,
    *,
    mask: Mask | None = None,
    empty: Any = 1.0,
    stable: bool = False,
    keepdims: bool = False,
    clip: bool = False,
) -> Truth:
    r"""Product aggregator (the product t-norm over a domain), :math:`\prod_i x_i`.

    Stable: on :math:`\pi_0(x_i)`, so that ``log(product(x, stable=True)) == log_product(x, stable=True)``.

    Args:
        x: truth values in [0, 1].
        axis: the axes to reduce (None: all).
        mask: boolean, broadcastable to ``x``: only True elements count.
        empty: the value of a slice with no element (default 1).
        stable: project ``x`` with :math:`\pi_0` first.
        keepdims: keep the reduced axes with size 1.
        clip: clip ``x`` to [0, 1] instead of rejecting values outside it.

    Returns:
        ``x`` reduced over ``axis``, in the dtype of ``x``.

    Raises:
        TypeError: ``x`` is not a real floating array, or ``mask`` is not boolean.
        ValueError: concrete ``x`` outside [0, 1], a bad ``axis``, or a ``mask`` that does not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.product(jnp.array([0.5, 0.5, 0.8]))
        Array(0.2, dtype=float32)
    """
    x, ax, mask, is_empty = _setup(x, axis, mask, stable, keepdims, clip)
    if is_empty:
        return empty_domain(x, ax, empty, keepdims, "the product")
    if stable:
        x = pi_0(x)
    if mask is None:
        return jnp.prod(x, axis=ax, keepdims=keepdims)
    out = jnp.prod(jnp.where(mask, x, 1), axis=ax, keepdims=keepdims)
    return guard_empty(out, _count(mask, ax, keepdims), empty, "the product")


def log_product(
    x: Truth,
    axis: Any = None,
    *,
    mask: Mask | None = None,
    empty: Any = 0.0,
    stable: bool = False,
    keepdims: bool = False,
    clip: bool = False,
) -> Float[Array, "*reduced"]:
    r"""Log-product aggregator, :math:`\sum_i \log x_i` (stable: :math:`\sum_i \log \pi_0(x_i)`).

    Not a truth value (it lies in :math:`(-\infty, 0]`): a loss term, the log-likelihood of a
    conjunction. Without ``stable`` a zero gives ``-inf``.

    Args:
        x: truth values in [0, 1].
        axis: the axes to reduce (None: all).
        mask: boolean, broadcastable to ``x``: only True elements count.
        empty: the value of a slice with no element (default 0 = log 1).
        stable: project ``x`` with :math:`\pi_0` first.
        keepdims: keep the reduced axes with size 1.
        clip: clip ``x`` to [0, 1] instead of rejecting values outside it.

    Returns:
        ``x`` reduced over ``axis``, in the dtype of ``x``.

    Raises:
        TypeError: ``x`` is not a real floating array, or ``mask`` is not boolean.
        ValueError: concrete ``x`` outside [0, 1], a bad ``axis``, or a ``mask`` that does not broadcast.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.log_product(jnp.array([0.0, 1.0]), stable=True)  # log(1e-4)
        Array(-9.2103405, dtype=float32)
    """
    x, ax, mask, is_empty = _setup(x, axis, mask, stable, keepdims, clip)
    if is_empty:
        return empty_domain(x, ax, empty, keepdims, "the log-product")
    if stable:
        x = pi_0(x)
    if mask is None:
        return jnp.sum(jnp.log(x), axis=ax, keepdims=keepdims)
    out = jnp.sum(jnp.log(jnp.where(mask, x, 1)), axis=ax, keepdims=keepdims)
    return guard_empty(out, _count(mask, ax, keepdims), empty, "the log-product")
