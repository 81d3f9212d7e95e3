"""Lookup of the fuzzy operators by name (for configs and command lines)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _aggregators, _ops

_OPERATORS: dict[str, Callable[..., Any]] = {
    **{name: getattr(_ops, name) for name in _ops.__all__},
    **{name: getattr(_aggregators, name) for name in _aggregators.__all__},
}


def names() -> tuple[str, ...]:
    """The names :func:`get` accepts, sorted.

    Example:
        >>> from symbolic import fuzzy
        >>> "and_prod" in fuzzy.names()
        True
    """
    return tuple(sorted(_OPERATORS))


def get(name: str) -> Callable[..., Any]:
    """The operator or aggregator called ``name`` (the name of its function in this package).

    Args:
        name: e.g. ``"and_prod"``, ``"implies_reichenbach"``, ``"pmean_error"``.

    Returns:
        The function, e.g. ``get("and_prod") is symbolic.fuzzy.and_prod``.

    Raises:
        ValueError: ``name`` is not an operator; the message lists the valid names.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.get("and_prod")(jnp.array(0.5), jnp.array(0.5))
        Array(0.25, dtype=float32)
    """
    if not isinstance(name, str) or name not in _OPERATORS:
        raise ValueError(f"`name` must be one of {list(names())}, got {name!r}")
    return _OPERATORS[name]


# The binary connectives (t-norms, t-conorms, implications, equivalence): what an argument such as
# `and_op` or `tconorm` may name. A negation or an aggregator there would fail deep inside the caller.
_BINARY = tuple(sorted(n for n in _ops.__all__ if not n.startswith("not_")))


def resolve(op: Any, arg: str) -> Callable[..., Any]:
    """A binary connective given as a callable or by name; errors name the argument ``arg``."""
    if isinstance(op, str):
        if op not in _BINARY:
            raise ValueError(f"`{arg}` must be a callable or a binary connective, one of {list(_BINARY)}, "
                             f"got {op!r}")
        return _OPERATORS[op]
    if not callable(op):
        raise TypeError(f"`{arg}` must be a callable or an operator name, got {type(op).__name__}")
    return op
