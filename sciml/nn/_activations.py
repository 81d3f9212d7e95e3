"""Activation functions: pure functions and the equivalent equinox Modules.

Two forms of each activation:

* a pure function (``relu(x)``, ``gem(x, n=2)``), for use inside your own code, and
* a Module (``ReLU()``, ``GEM(n=2)``), a pytree that a network stores as a field.

Numbers that may change between runs (the leaky slope, the E-GEM ``eps``, the SE-GEM ``alpha``) are
array leaves of the Module, so a new value does not recompile a jitted function. They are *not*
trained by default: ``__call__`` wraps them in ``jax.lax.stop_gradient`` unless the Module was built
with ``trainable=True``. Integers that change the computation's structure (the GEM order ``n``) are
static fields.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..backend import check_float_array, float_dtype

__all__ = [
    "EGEM",
    "GELU",
    "GEM",
    "SEGEM",
    "AbstractActivation",
    "Lambda",
    "LeakyReLU",
    "ReLU",
    "Softplus",
    "SiLU",
    "Tanh",
    "activation",
    "egem",
    "gelu",
    "gem",
    "leaky_relu",
    "relu",
    "segem",
    "silu",
    "softplus",
    "tanh",
]

# --------------------------------------------------------------------------------------------------
# Argument checks (at the boundary; traced values cannot be checked and are let through)
# --------------------------------------------------------------------------------------------------


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(
            f"got n={n!r}; `n` (the GEM order, gate exponent 2n) must be a positive int, e.g. n=1"
        )
    return int(n)


def _is_concrete(v: Any) -> bool:
    return not isinstance(v, jax.core.Tracer)


def _check_param(value: Any, name: str, *, positive: bool = False, nonneg: bool = False) -> Any:
    """Check a real numeric parameter; the sign check runs only on concrete values."""
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.ndarray, np.number, jax.Array)
    ):
        raise TypeError(f"`{name}` must be a real number or array, got {type(value).__name__}")
    if not _is_concrete(value):
        return value
    arr = np.asarray(value)
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"`{name}` must be real numeric, got dtype {arr.dtype}")
    if positive and not np.all(arr > 0):
        raise ValueError(f"got {name}={value!r}; `{name}` must be > 0")
    if nonneg and not np.all(arr >= 0):
        raise ValueError(f"got {name}={value!r}; `{name}` must be >= 0")
    return value


def _to_leaf(value: Any, name: str, **check: bool) -> Array:
    """A parameter as an array leaf: floating arrays keep their dtype, numbers take the policy's."""
    _check_param(value, name, **check)
    if isinstance(value, (np.ndarray, np.number, jax.Array)) and jnp.issubdtype(
        value.dtype, jnp.floating
    ):
        return jnp.asarray(value)
    return jnp.asarray(value, dtype=float_dtype())


def _like(p: Any, x: Array) -> Array:
    # Follow the input's dtype (no dtype is picked here), so a float32 slope also serves a float64
    # network under strict promotion.
    return jnp.asarray(p).astype(x.dtype)


# --------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------


def relu(x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    r"""Rectified linear unit, :math:`\max(x, 0)`.

    It satisfies :math:`a(x) - a(-x) = x` (the class used by the Kolmogorov-PDE approximation
    proofs).
    The derivative at 0 is taken as 0 (as in ``jax.nn.relu``).

    Args:
        x: real floating array.

    Returns:
        ``max(x, 0)`` elementwise, same shape and dtype.

    Raises:
        TypeError: ``x`` is not a floating array.

    Example:
        >>> relu(jnp.array([-1.0, 2.0]))
        Array([0., 2.], dtype=float32)

    Paper: Nair & Hinton (2010), "Rectified linear units improve restricted Boltzmann machines".
    """
    return jax.nn.relu(check_float_array(x))


def leaky_relu(
    x: Float[ArrayLike, "*shape"], negative_slope: float | Array = 0.01
) -> Float[Array, "*shape"]:
    r"""Leaky ReLU, :math:`x` for :math:`x \ge 0` and :math:`s x` for :math:`x < 0`.

    It satisfies :math:`a(x) - a(-x) = (1 + s)\,x` for every real :math:`x` (for :math:`x \ge 0`:
    :math:`x - s(-x)`; for :math:`x < 0`: :math:`s x - (-x)`), the property used by the
    Kolmogorov-PDE approximation proofs.

    Args:
        x: real floating array.
        negative_slope: the slope :math:`s` for negative inputs (a number or an array that
            broadcasts with ``x``; cast to ``x``'s dtype).

    Returns:
        The activation, same shape and dtype as ``x``.

    Raises:
        TypeError: ``x`` is not floating, or ``negative_slope`` is not numeric.

    Example:
        >>> leaky_relu(jnp.array([-1.0, 2.0]), 0.1)
        Array([-0.1,  2. ], dtype=float32)

    Paper: Maas, Hannun & Ng (2013), "Rectifier nonlinearities improve neural network acoustic
    models".
    """
    x = check_float_array(x)
    s = _like(_check_param(negative_slope, "negative_slope"), x)
    return jnp.where(x >= 0, x, s * x)


def softplus(x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    r"""Softplus, :math:`\log(1 + e^x)`, computed stably (``jax.nn.softplus``).

    It satisfies :math:`a(x) - a(-x) = \log\frac{1+e^x}{1+e^{-x}} = x`.

    Args:
        x: real floating array.

    Returns:
        The activation, same shape and dtype.

    Raises:
        TypeError: ``x`` is not floating.

    Example:
        >>> softplus(jnp.float32(0.0))
        Array(0.6931472, dtype=float32)

    Paper: Dugas et al. (2001), "Incorporating second-order functional knowledge for better option
    pricing".
    """
    return jax.nn.softplus(check_float_array(x))


def gelu(x: Float[ArrayLike, "*shape"], approximate: bool = False) -> Float[Array, "*shape"]:
    r"""Gaussian error linear unit, :math:`x\,\Phi(x)` with :math:`\Phi` the standard normal CDF.

    ``approximate=True`` uses the tanh form
    :math:`\tfrac12 x (1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))`. Note the default here is the
    exact form (``jax.nn.gelu`` defaults to the approximation).

    Args:
        x: real floating array.
        approximate: use the tanh approximation.

    Returns:
        The activation, same shape and dtype.

    Raises:
        TypeError: ``x`` is not floating.

    Example:
        >>> gelu(jnp.float32(1.0))
        Array(0.8413447, dtype=float32)

    Paper: Hendrycks & Gimpel (2016), "Gaussian Error Linear Units (GELUs)", arXiv:1606.08415.
    """
    return jax.nn.gelu(check_float_array(x), approximate=approximate)


def tanh(x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    r"""Hyperbolic tangent, :math:`\tanh x`.

    Args:
        x: real floating array.

    Returns:
        ``tanh(x)``, same shape and dtype.

    Raises:
        TypeError: ``x`` is not floating.

    Example:
        >>> tanh(jnp.float32(0.0))
        Array(0., dtype=float32)
    """
    return jnp.tanh(check_float_array(x))


def silu(x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    r"""SiLU (swish), :math:`x \, \sigma(x)` (Elfwing, Uchibe, Doya 2018; Ramachandran et al. 2017).

    Args:
        x: real floating array.

    Returns:
        ``x * sigmoid(x)``, same shape and dtype.

    Raises:
        TypeError: ``x`` is not floating.

    Example:
        >>> silu(jnp.float32(0.0))
        Array(0., dtype=float32)
    """
    return jax.nn.silu(check_float_array(x))


def _loglogistic(u: Array, k: int, *, closed: bool, scale: Array | None = None) -> Array:
    r"""The gate :math:`r^k / (1 + r^k)`, :math:`r = u/s`, for :math:`u > 0`; 0 for :math:`u \le 0`.

    Evaluated stably: above the knee :math:`u > s` as :math:`1 / (1 + (s/u)^k)`, below it with
    :math:`u/s \le 1`, so nothing overflows (the plain form gives inf/inf = NaN in float32 once
    :math:`u^k > 3.4 \cdot 10^{38}`). Each branch gets an input that is safe for it (the
    double-``where`` trick): a ``where`` after an unsafe branch still back-propagates its NaN/inf
    derivative times zero, which is NaN.

    ``closed=True`` lets :math:`u = 0` take the polynomial branch, so derivatives of every order at
    0 are the right-hand ones; ``closed=False`` makes them exactly 0 there (the left-hand ones).
    ``scale=None`` means :math:`s = 1`.
    """
    s = 1 if scale is None else scale
    big = u > s
    u_lo = jnp.where(big, s, jnp.where((u >= 0) if closed else (u > 0), u, 0))
    u_hi = jnp.where(big, u, s)
    p = (u_lo if scale is None else u_lo / s) ** k
    lo = p / (1 + p)
    hi = 1 / (1 + (s / u_hi) ** k)
    return jnp.where(big, hi, lo)


def _gem(x: Array, n: int, scale: Array | None = None) -> Array:
    # `x < 0` is False for NaN, so NaN propagates (as it does through relu). At x = 0 exactly the
    # polynomial branch is taken, so derivatives there are the right-hand ones: 0 up to order 2N.
    return jnp.where(x < 0, 0, x * _loglogistic(x, 2 * n, closed=True, scale=scale))


def gem(x: Float[ArrayLike, "*shape"], n: int = 1) -> Float[Array, "*shape"]:
    r"""Geometric-monomial activation GEM_N (Krause 2026).

    .. math::
        \mathrm{GEM}_N(x) = \frac{x^{2N+1}}{1 + x^{2N}} = x\,g(x),\quad
        g(x) = \frac{x^{2N}}{1 + x^{2N}} \quad (x > 0), \qquad
        \mathrm{GEM}_N(x) = 0 \quad (x \le 0).

    The gate :math:`g` is a log-logistic CDF of shape :math:`2N`. GEM is :math:`C^{2N}` at 0 (its
    derivatives of order :math:`\le 2N` vanish from both sides; the one of order :math:`2N+1` jumps
    from 0 to :math:`(2N+1)!`), behaves like :math:`x - x^{1-2N}` for large :math:`x`, and uses
    rational arithmetic only. It does **not** satisfy :math:`a(x) - a(-x) = c x`
    (:math:`\mathrm{GEM}(x) - \mathrm{GEM}(-x) = x\,g(x)`), so the Kolmogorov-PDE approximation
    theory does not cover it.

    Computed without overflow: for :math:`x > 1` the gate is :math:`1/(1 + x^{-2N})`; gradients of
    every order are finite at :math:`x = 0`, for :math:`x < 0` and for large :math:`x`.

    Args:
        x: real floating array.
        n: the order :math:`N`, a positive int (the paper finds N=1 best for deep CNNs and N=2 for
            transformers).

    Returns:
        The activation, same shape and dtype as ``x``.

    Raises:
        ValueError: ``n`` is not a positive int.
        TypeError: ``x`` is not floating.

    Example:
        >>> gem(jnp.array([-1.0, 1.0, 2.0]))
        Array([0. , 0.5, 1.6], dtype=float32)

    Paper: Krause (2026), "Geometric Monomial activations", arXiv:2604.21677.
    """
    return _gem(check_float_array(x), _check_n(n))


def _egem(x: Array, n: int, eps: Array) -> Array:
    # x^(2N)/(eps + x^(2N)) is the GEM gate at x/t with t = eps^(1/(2N)): the stable GEM gate with
    # its branch switch moved to the knee x = t (x itself is never rescaled, so nothing overflows).
    return _gem(x, n, scale=eps ** (1 / (2 * n)))


def egem(
    x: Float[ArrayLike, "*shape"], n: int = 1, eps: float | Array = 1.0
) -> Float[Array, "*shape"]:
    r"""Epsilon-gated GEM (E-GEM), which tends to ReLU as :math:`\varepsilon \to 0`.

    .. math::
        \mathrm{EGEM}_{N,\varepsilon}(x) = \frac{x^{2N+1}}{\varepsilon + x^{2N}}
        = x\,g(x / t),\quad t = \varepsilon^{1/(2N)} \quad (x > 0),
        \qquad 0 \quad (x \le 0).

    :math:`\varepsilon = 1` recovers GEM; as :math:`\varepsilon \to 0` it converges to ReLU in
    :math:`L^p` (the GEM gate :math:`g` becomes a step at :math:`x = t \to 0`). The paper reports
    :math:`\varepsilon \in [10^{-6}, 10^{-4}]` best for deep CNNs and :math:`\varepsilon = 10` for
    BERT-small. Evaluated with GEM's stable gate (switching branches at :math:`x = t`), so it shares
    GEM's overflow-free, NaN-free gradients.

    Args:
        x: real floating array.
        n: the order :math:`N`, a positive int.
        eps: :math:`\varepsilon > 0` (a number or an array broadcasting with ``x``; cast to ``x``'s
            dtype). Its sign is checked when it is concrete (not under ``jit``).

    Returns:
        The activation, same shape and dtype as ``x``.

    Raises:
        ValueError: ``n`` is not a positive int, or ``eps <= 0``.
        TypeError: ``x`` is not floating.

    Example:
        >>> egem(jnp.array([-1.0, 1.0]), n=1, eps=1.0)
        Array([0. , 0.5], dtype=float32)

    Paper: Krause (2026), "Geometric Monomial activations", arXiv:2604.21677 (the E-GEM form here is
    our reading of it; see ``shared/reference/gem.md``).
    """
    x = check_float_array(x)
    eps = _like(_check_param(eps, "eps", positive=True), x)
    return _egem(x, _check_n(n), eps)


def _segem(x: Array, n: int, alpha: Array) -> Array:
    # The negative branch is open at 0 so that only GEM's branch differentiates there.
    return _gem(x, n) - alpha * _loglogistic(-x, 2 * n + 1, closed=False)


def segem(
    x: Float[ArrayLike, "*shape"], n: int = 1, alpha: float | Array = 1.0
) -> Float[Array, "*shape"]:
    r"""Smooth-negative GEM (SE-GEM): GEM for :math:`x > 0`, a bounded non-zero branch for
    :math:`x \le 0`.

    .. math::
        \mathrm{SEGEM}_{N,\alpha}(x) = \begin{cases}
            \dfrac{x^{2N+1}}{1 + x^{2N}} & x > 0, \\[1ex]
            \alpha\,\dfrac{x^{2N+1}}{1 + |x|^{2N+1}} & x \le 0.
        \end{cases}

    The paper's exact negative branch was not available to us; this one was chosen because

    * it is non-zero for every :math:`x < 0` (no dead neurons: the gradient
      :math:`\alpha (2N+1)|x|^{2N}/(1+|x|^{2N+1})^2` is positive there),
    * it is bounded and monotone, saturating at :math:`-\alpha` as :math:`x \to -\infty` (like
      ELU), so large negative pre-activations cannot blow up,
    * it starts as :math:`\alpha x^{2N+1}` at 0, so all derivatives of order :math:`\le 2N` vanish
      from both sides, matching GEM's: the junction is :math:`C^{2N}`, GEM's own smoothness. With
      :math:`\alpha = 1` the order-:math:`(2N+1)` derivatives also agree (both
      :math:`(2N+1)!`) and the junction is :math:`C^{4N}`,
    * it is rational (a log-logistic CDF of shape :math:`2N+1`), like GEM: no exponentials.

    Args:
        x: real floating array.
        n: the order :math:`N`, a positive int.
        alpha: :math:`\alpha \ge 0`, the negative saturation level (a number or an array
            broadcasting with ``x``; cast to ``x``'s dtype). ``alpha=0`` is GEM.

    Returns:
        The activation, same shape and dtype as ``x``.

    Raises:
        ValueError: ``n`` is not a positive int, or ``alpha < 0``.
        TypeError: ``x`` is not floating.

    Example:
        >>> segem(jnp.array([-1.0, 1.0]))
        Array([-0.5,  0.5], dtype=float32)

    Paper: Krause (2026), "Geometric Monomial activations", arXiv:2604.21677 (SE-GEM; negative
    branch ours, as stated above).
    """
    x = check_float_array(x)
    alpha = _like(_check_param(alpha, "alpha", nonneg=True), x)
    return _segem(x, _check_n(n), alpha)


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


class AbstractActivation(eqx.Module):
    """An elementwise activation as a pytree: ``act(x)`` maps an array to one of the same shape.

    Subclass it (and implement ``__call__``) for a new activation; :func:`activation` accepts the
    instance anywhere a name is accepted.
    """

    @abc.abstractmethod
    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """Apply the activation elementwise."""
        raise NotImplementedError


def _frozen(p: Array, trainable: bool) -> Array:
    # An array leaf (so a new value does not recompile) that training leaves alone unless asked.
    return p if trainable else jax.lax.stop_gradient(p)


class ReLU(AbstractActivation):
    """Module form of :func:`relu`.

    Example:
        >>> ReLU()(jnp.float32(-1.0))
        Array(0., dtype=float32)
    """

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return relu(x)


class LeakyReLU(AbstractActivation):
    """Module form of :func:`leaky_relu`; ``negative_slope`` is an array leaf.

    The slope is not trained (``stop_gradient``) unless ``trainable=True``; changing it does not
    recompile a jitted function.

    Args:
        negative_slope: slope for negative inputs (default 0.01).
        trainable: let gradients reach ``negative_slope``.

    Raises:
        TypeError: ``negative_slope`` is not numeric.

    Example:
        >>> LeakyReLU(0.1)(jnp.float32(-1.0))
        Array(-0.1, dtype=float32)
    """

    negative_slope: Array
    trainable: bool = eqx.field(static=True)

    def __init__(self, negative_slope: float | Array = 0.01, *, trainable: bool = False):
        self.negative_slope = _to_leaf(negative_slope, "negative_slope")
        self.trainable = bool(trainable)

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return leaky_relu(x, _frozen(self.negative_slope, self.trainable))


class Softplus(AbstractActivation):
    """Module form of :func:`softplus`.

    Example:
        >>> Softplus()(jnp.float32(0.0))
        Array(0.6931472, dtype=float32)
    """

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return softplus(x)


class GELU(AbstractActivation):
    """Module form of :func:`gelu` (exact unless ``approximate=True``, a static field).

    Example:
        >>> GELU()(jnp.float32(1.0))
        Array(0.8413447, dtype=float32)
    """

    approximate: bool = eqx.field(static=True, default=False)

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return gelu(x, self.approximate)


class Tanh(AbstractActivation):
    """Module form of :func:`tanh`.

    Example:
        >>> Tanh()(jnp.float32(0.0))
        Array(0., dtype=float32)
    """

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return tanh(x)


class SiLU(AbstractActivation):
    """Module form of :func:`silu`.

    Example:
        >>> SiLU()(jnp.float32(0.0))
        Array(0., dtype=float32)
    """

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return silu(x)


class GEM(AbstractActivation):
    """Module form of :func:`gem`; the order ``n`` is static (it fixes the computation).

    Raises:
        ValueError: ``n`` is not a positive int.

    Example:
        >>> GEM(n=2)(jnp.float32(1.0))
        Array(0.5, dtype=float32)
    """

    n: int = eqx.field(static=True)

    def __init__(self, n: int = 1):
        self.n = _check_n(n)

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return _gem(check_float_array(x), self.n)


class EGEM(AbstractActivation):
    """Module form of :func:`egem`; ``n`` static, ``eps`` an array leaf (frozen unless
    ``trainable``).

    Raises:
        ValueError: ``n`` is not a positive int, or ``eps <= 0``.

    Example:
        >>> EGEM(n=1, eps=1e-4)(jnp.float32(1.0))
        Array(0.9999, dtype=float32)
    """

    n: int = eqx.field(static=True)
    eps: Array
    trainable: bool = eqx.field(static=True)

    def __init__(self, n: int = 1, eps: float | Array = 1.0, *, trainable: bool = False):
        self.n = _check_n(n)
        self.eps = _to_leaf(eps, "eps", positive=True)
        self.trainable = bool(trainable)

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        x = check_float_array(x)
        return _egem(x, self.n, _like(_frozen(self.eps, self.trainable), x))


class SEGEM(AbstractActivation):
    """Module form of :func:`segem`; ``n`` static, ``alpha`` an array leaf (frozen unless
    ``trainable``).

    Raises:
        ValueError: ``n`` is not a positive int, or ``alpha < 0``.

    Example:
        >>> SEGEM(n=1, alpha=1.0)(jnp.float32(-1.0))
        Array(-0.5, dtype=float32)
    """

    n: int = eqx.field(static=True)
    alpha: Array
    trainable: bool = eqx.field(static=True)

    def __init__(self, n: int = 1, alpha: float | Array = 1.0, *, trainable: bool = False):
        self.n = _check_n(n)
        self.alpha = _to_leaf(alpha, "alpha", nonneg=True)
        self.trainable = bool(trainable)

    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        x = check_float_array(x)
        return _segem(x, self.n, _like(_frozen(self.alpha, self.trainable), x))


class Lambda(AbstractActivation):
    """Wrap a plain function ``fn(x) -> array`` as an activation.

    ``fn`` is a static field (hashed by jit), so it must hold no arrays; for an activation with
    parameters, subclass :class:`AbstractActivation` and store them as array fields.

    Raises:
        TypeError: ``fn`` is not callable, or is a pytree holding arrays.

    Example:
        >>> Lambda(jnp.sin)(jnp.float32(0.0))
        Array(0., dtype=float32)
    """

    fn: Callable[[Array], Array] = eqx.field(static=True)

    def __init__(self, fn: Callable[[Array], Array]):
        if not callable(fn):
            raise TypeError(f"`fn` must be callable, got {type(fn).__name__}")
        if jax.tree_util.tree_leaves(eqx.filter(fn, eqx.is_array)):
            raise TypeError(
                f"`fn` ({type(fn).__name__}) holds arrays, which a static field would hide from "
                "jit and grad; subclass `sciml.nn.AbstractActivation` instead"
            )
        self.fn = fn

    def __call__(self, x: Array) -> Array:
        return self.fn(x)


_REGISTRY: dict[str, type[AbstractActivation]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "softplus": Softplus,
    "gelu": GELU,
    "tanh": Tanh,
    "silu": SiLU,
    "gem": GEM,
    "egem": EGEM,
    "segem": SEGEM,
}


def activation(
    name_or_module: str | AbstractActivation | Callable[[Array], Array], **kwargs: Any
) -> AbstractActivation:
    """Select an activation Module by name, pass a Module through, or wrap a plain function.

    Args:
        name_or_module: one of ``"relu"``, ``"leaky_relu"``, ``"softplus"``, ``"gelu"``,
            ``"tanh"``, ``"silu"``, ``"gem"``, ``"egem"``, ``"segem"``; an :class:`AbstractActivation`
            (returned as is); or a callable ``fn(x)`` (wrapped in :class:`Lambda`).
        **kwargs: constructor arguments for a named activation, e.g.
            ``activation("egem", n=1, eps=1e-4)``.

    Returns:
        An :class:`AbstractActivation`.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
        TypeError: kwargs given with a Module or a function, or something that is neither a name
            nor callable.

    Example:
        >>> activation("leaky_relu", negative_slope=0.2)(jnp.float32(-1.0))
        Array(-0.2, dtype=float32)
    """
    if isinstance(name_or_module, str):
        cls = _REGISTRY.get(name_or_module)
        if cls is None:
            raise ValueError(
                f"unknown activation {name_or_module!r}; valid names are {sorted(_REGISTRY)}, "
                "or pass an AbstractActivation or a function"
            )
        return cls(**kwargs)
    if kwargs:
        raise TypeError(
            f"keyword arguments {sorted(kwargs)} apply only to an activation given by name, not to "
            f"a {type(name_or_module).__name__}"
        )
    if isinstance(name_or_module, AbstractActivation):
        return name_or_module
    if callable(name_or_module):
        return Lambda(name_or_module)
    raise TypeError(
        "`activation` must be a name, an AbstractActivation or a function, got "
        f"{type(name_or_module).__name__}; valid names are {sorted(_REGISTRY)}"
    )
