"""Operators and the grammar (operator set) that expressions are built from.

An :class:`Operator` is given once, with its JAX definition (used by the evaluator) and its SymPy
definition (used to print and parse); a :class:`Grammar` is an explicit, immutable tuple of them. There
is no global registry: whoever builds expressions passes the grammar along.

**Semantics of the built-in operators (not protected).** They are the plain IEEE functions:
``log`` of a negative number is NaN, ``x/0`` is +-inf, ``sqrt`` of a negative number is NaN,
``pow(a, b)`` with ``a < 0`` and non-integral ``b`` is NaN. Nothing is clipped or "protected", so the
evaluated function is exactly the SymPy expression that is printed (protected operators would silently
change the formula, in particular outside the training box, which is where extrapolation is judged).
A candidate whose prediction is not finite on the data is marked invalid by the fitter (infinite loss).
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Iterable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
import sympy

__all__ = ["BUILTIN_OPERATORS", "Grammar", "Operator", "default_grammar"]


class Operator(eqx.Module):
    """One operator of a grammar: a name, an arity and its JAX and SymPy definitions.

    ``jax_fn`` maps ``arity`` scalars to a scalar. The evaluator calls it *per data row* (it is vmapped
    over rows), so an operator cannot mix rows: functions such as ``jnp.gradient`` or ``jnp.cumsum``
    over a column fail when the grammar is built (see :class:`Grammar`).

    ``sympy_fn`` maps ``arity`` SymPy expressions to one. If it is a SymPy ``Function`` class (e.g.
    ``sympy.Function("softplus")`` or ``sympy.exp``) the operator is also recognised when parsing; if it
    is any other callable (e.g. ``lambda x: sympy.log(1 + sympy.exp(x))``) printing expands it and
    parsing sees the expansion, which is built from the other operators.

    Args:
        name: an identifier, unique within a grammar.
        arity: 1 or 2.
        jax_fn: the JAX definition.
        sympy_fn: the SymPy definition.

    Raises:
        ValueError: a bad ``name`` or ``arity``.
        TypeError: ``jax_fn`` or ``sympy_fn`` is not callable.

    Example:
        >>> import sympy
        >>> softplus = Operator("softplus", 1, jax.nn.softplus, lambda x: sympy.log(1 + sympy.exp(x)))
        >>> softplus.arity
        1
    """

    name: str = eqx.field(static=True)
    arity: int = eqx.field(static=True)
    jax_fn: Callable[..., Any] = eqx.field(static=True)
    sympy_fn: Callable[..., Any] = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier() or keyword.iskeyword(self.name):
            raise ValueError(f"`name` must be a Python identifier such as 'softplus', got {self.name!r}")
        if isinstance(self.arity, bool) or self.arity not in (1, 2):
            raise ValueError(f"`arity` of operator {self.name!r} must be 1 or 2, got {self.arity!r}")
        for field in ("jax_fn", "sympy_fn"):
            if not callable(getattr(self, field)):
                raise TypeError(
                    f"`{field}` of operator {self.name!r} must be callable, got "
                    f"{type(getattr(self, field)).__name__}"
                )


def _add(a, b):
    return a + b


def _sub(a, b):
    return a - b


def _mul(a, b):
    return a * b


def _div(a, b):
    return a / b


def _pow(a, b):
    return a**b


def _jax_pow(a, b):
    """``a**b`` with C ``pow`` semantics (negative base: integral exponents only, else NaN).

    Written through ``|a|`` so that the forward-mode derivative in ``b`` (``a**b * log|a|``) stays
    finite for a negative base: ``jnp.power``'s rule takes ``log(a)``, NaN for ``a < 0``, which poisons
    Jacobians of e.g. ``x**2`` even though the exponent is a constant.
    """
    integral = b == jnp.round(b)
    odd = integral & (jnp.mod(jnp.abs(b), 2.0) == 1.0)
    mag = jnp.power(jnp.abs(a), b)
    val = jnp.where((a < 0) & odd, -mag, mag)
    return jnp.where((a < 0) & ~integral, jnp.nan, val)


#: The whitelisted operators every default grammar holds, in opcode order.
BUILTIN_OPERATORS: tuple[Operator, ...] = (
    Operator("add", 2, jnp.add, _add),
    Operator("sub", 2, jnp.subtract, _sub),
    Operator("mul", 2, jnp.multiply, _mul),
    Operator("div", 2, jnp.divide, _div),
    Operator("pow", 2, _jax_pow, _pow),
    Operator("exp", 1, jnp.exp, sympy.exp),
    Operator("log", 1, jnp.log, sympy.log),
    Operator("sqrt", 1, jnp.sqrt, sympy.sqrt),
    Operator("sin", 1, jnp.sin, sympy.sin),
    Operator("cos", 1, jnp.cos, sympy.cos),
    Operator("tanh", 1, jnp.tanh, sympy.tanh),
    Operator("abs", 1, jnp.abs, sympy.Abs),
    Operator("gamma", 1, jsp.gamma, sympy.gamma),
    Operator("erf", 1, jsp.erf, sympy.erf),
)
_REQUIRED = ("add", "sub", "mul", "div", "pow")


def _check_pointwise(op: Operator) -> None:
    """Trace ``op.jax_fn`` on scalars (no computation): it must give one scalar of the same dtype."""
    args = [jax.ShapeDtypeStruct((), np.dtype(np.float32))] * op.arity
    try:
        out = jax.eval_shape(op.jax_fn, *args)
    except Exception as e:  # any failure on scalars means the op is not a pointwise map
        raise ValueError(
            f"operator {op.name!r} is not pointwise: its `jax_fn` must map {op.arity} scalar(s) to a "
            f"scalar (the evaluator applies it row by row), but tracing it on scalars failed with "
            f"{type(e).__name__}: {e}"
        ) from e
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != () or out.dtype != np.float32:
        raise ValueError(
            f"operator {op.name!r} is not pointwise: its `jax_fn` must return one float scalar of the "
            f"input dtype for scalar inputs, got {out}"
        )


class Grammar(eqx.Module):
    """An explicit, immutable operator set; opcodes are positions in :attr:`operators`.

    The arithmetic operators ``add sub mul div pow`` must be present (SymPy expressions are made of
    them). Every operator is checked to be pointwise (scalars in, scalar out) when the grammar is built.

    Args:
        operators: the operators, names unique.

    Raises:
        TypeError: an element is not an :class:`Operator`.
        ValueError: duplicate names, a missing arithmetic operator, or a non-pointwise ``jax_fn``.

    Example:
        >>> g = default_grammar()
        >>> g.names[:5]
        ('add', 'sub', 'mul', 'div', 'pow')
        >>> "softplus" in g.with_operators(
        ...     Operator("softplus", 1, jax.nn.softplus, lambda x: sympy.log(1 + sympy.exp(x)))).names
        True
    """

    operators: tuple[Operator, ...] = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.operators, tuple) or not self.operators:
            raise TypeError(f"`operators` must be a non-empty tuple of Operator, got {self.operators!r}")
        for op in self.operators:
            if not isinstance(op, Operator):
                raise TypeError(f"`operators` must hold Operator instances, got {type(op).__name__}")
        names = [op.name for op in self.operators]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"`operators` has duplicate names {dup}; operator names must be unique")
        missing = [n for n in _REQUIRED if n not in names]
        if missing:
            raise ValueError(
                f"`operators` must include the arithmetic operators {list(_REQUIRED)}; missing {missing}"
            )
        for op in self.operators:
            if op not in BUILTIN_OPERATORS:
                _check_pointwise(op)

    @property
    def names(self) -> tuple[str, ...]:
        """Operator names in opcode order."""
        return tuple(op.name for op in self.operators)

    def index(self, name: str) -> int:
        """Position (opcode offset) of the operator ``name``.

        Raises:
            ValueError: no such operator.
        """
        for i, op in enumerate(self.operators):
            if op.name == name:
                return i
        raise ValueError(f"operator {name!r} is not in the grammar; available: {list(self.names)}")

    def get(self, name: str) -> Operator:
        """The operator called ``name`` (raises ``ValueError`` listing the names if absent)."""
        return self.operators[self.index(name)]

    def with_operators(self, *ops: Operator) -> Grammar:
        """A new grammar with ``ops`` appended (this one is unchanged)."""
        return Grammar(self.operators + tuple(ops))


def default_grammar(extra: Iterable[Operator] = ()) -> Grammar:
    """The whitelisted grammar ``+ - * / pow exp log sqrt sin cos tanh abs gamma erf``, plus ``extra``.

    Example:
        >>> len(default_grammar().operators)
        14
    """
    return Grammar(BUILTIN_OPERATORS + tuple(extra))
