r"""LTN-style first-order semantics: labelled groundings, connectives over named variables, quantifiers.

A :class:`Labelled` array knows which named variables its leading axes range over: a variable ``x``
with ``n`` individuals is a ``Labelled`` of shape ``(n, *features)`` labelled ``("x",)``; a predicate
``R(x, y)`` grounded on it is a ``Labelled`` of shape ``(n_x, n_y)`` labelled ``("x", "y")``.
:func:`connective` broadcasts its operands over the union of their variables (in order of first
appearance), :func:`forall` / :func:`exists` aggregate over some of them and return a ``Labelled`` over
the rest, and :func:`sat_agg` turns the truth values of a knowledge base's closed formulas into one
number. This is LTN's grounding (Badreddine et al. 2022, sec. 2-3) with its default "stable product
configuration" for the quantifiers: ``forall`` is :func:`pmean_error` and ``exists`` is :func:`pmean`,
``p = 2``, ``stable=True``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._aggregators import pmean, pmean_error
from ._checks import check_name

__all__ = ["Labelled", "connective", "diag", "exists", "forall", "predicate", "sat_agg", "variable"]


class Labelled(eqx.Module):
    """An array whose leading axes range over named variables (LTN's ``LTNObject``).

    ``value.shape[:len(variables)]`` are the domain sizes of ``variables``; any further axes are
    features of the individuals (for a variable) or of the truth values. A label ``"x|y"`` is a diagonal
    (zipped) axis shared by ``x`` and ``y`` (see :func:`diag`).

    Attributes:
        value: the array.
        variables: one label per leading axis, distinct (static).

    Example:
        >>> from symbolic import fuzzy
        >>> r = fuzzy.Labelled(jnp.zeros((4, 3)), ("x", "y"))
        >>> r.sizes
        {'x': 4, 'y': 3}
    """

    value: Any
    variables: tuple[str, ...] = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.variables, tuple) or not all(isinstance(v, str) and v for v in self.variables):
            raise TypeError(f"`variables` must be a tuple of non-empty str, got {self.variables!r}")
        if len(set(self.variables)) != len(self.variables):
            raise ValueError(f"`variables` must be distinct, got {self.variables!r}")
        if jnp.ndim(self.value) < len(self.variables):
            raise ValueError(
                f"`value` must have a leading axis per variable, got shape {jnp.shape(self.value)} for "
                f"variables {self.variables!r}"
            )

    @property
    def sizes(self) -> dict[str, int]:
        """The domain size of each variable."""
        return dict(zip(self.variables, jnp.shape(self.value)))


def variable(name: str, individuals: Any) -> Labelled:
    """A named variable ranging over ``individuals`` (one per row of the leading axis).

    Args:
        name: the variable's name, a non-empty str without ``"|"``.
        individuals: an array of shape ``(n, *features)``, ``n >= 0``.

    Returns:
        ``Labelled(individuals, (name,))``.

    Raises:
        ValueError: a bad ``name``, or ``individuals`` without a leading axis.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.variable("x", jnp.zeros((5, 2))).sizes
        {'x': 5}
    """
    check_name(name, "name")
    arr = jnp.asarray(individuals)
    if arr.ndim < 1:
        raise ValueError(
            f"`individuals` must have a leading axis (one row per individual), got shape {arr.shape}; "
            f"for a single individual use individuals[None]"
        )
    return Labelled(arr, (name,))


def _as_labelled(x: Any, name: str) -> Labelled:
    if isinstance(x, Labelled):
        return x
    try:
        return Labelled(jnp.asarray(x), ())
    except TypeError as e:
        raise TypeError(f"`{name}` must be a Labelled or an array, got {type(x).__name__}") from e


def _broadcast(operands: Sequence[Labelled], names: Sequence[str]) -> tuple[tuple[str, ...], list]:
    """The union of the operands' variables, and each value moved and broadcast to it."""
    sizes: dict[str, int] = {}
    for op, name in zip(operands, names):
        for var, n in op.sizes.items():
            if sizes.setdefault(var, n) != n:
                raise ValueError(
                    f"variable {var!r} has {sizes[var]} individuals in one operand and {n} in `{name}`; "
                    f"a variable must range over the same domain everywhere"
                )
    union = tuple(sizes)
    values = []
    for op in operands:
        v = jnp.asarray(op.value)
        k = len(op.variables)
        present = [op.variables.index(u) for u in union if u in op.variables]
        v = jnp.transpose(v, present + list(range(k, v.ndim)))
        v = v.reshape(tuple(sizes[u] if u in op.variables else 1 for u in union) + v.shape[k:])
        values.append(jnp.broadcast_to(v, tuple(sizes.values()) + v.shape[len(union) :]))
    return union, values


def predicate(fn: Callable[..., Any], *args: Any) -> Labelled:
    """Ground a function of individuals on the product of its arguments' variables.

    ``fn`` is written for one individual of each argument (batching is by ``jax.vmap``): for variables
    ``x`` (``n_x`` individuals) and ``y`` (``n_y``), ``predicate(fn, x, y)`` has shape
    ``(n_x, n_y, *out)`` and is labelled ``("x", "y")``. Arguments sharing a variable share its axis.

    Args:
        fn: ``(*individuals) -> array``, e.g. a network with a sigmoid output (a truth value) or a
            condition returning a bool (a guard mask for :func:`forall`).
        *args: :class:`Labelled` values (variables, or other groundings); plain arrays are constants.

    Returns:
        A :class:`Labelled` over the union of the arguments' variables.

    Raises:
        ValueError: a variable has different domain sizes in two arguments.

    Example:
        >>> from symbolic import fuzzy
        >>> x = fuzzy.variable("x", jnp.array([[0.0], [1.0]]))
        >>> y = fuzzy.variable("y", jnp.array([[0.0], [2.0], [4.0]]))
        >>> near = fuzzy.predicate(lambda a, b: jnp.exp(-jnp.sum((a - b) ** 2)), x, y)
        >>> near.variables, near.value.shape
        (('x', 'y'), (2, 3))
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}")
    operands = [_as_labelled(a, f"args[{i}]") for i, a in enumerate(args)]
    union, values = _broadcast(operands, [f"args[{i}]" for i in range(len(args))])
    if not union:
        return Labelled(jnp.asarray(fn(*values)), ())
    shape = values[0].shape[: len(union)]
    flat = [v.reshape((math.prod(shape),) + v.shape[len(union) :]) for v in values]
    out = jax.vmap(fn)(*flat)
    return Labelled(out.reshape(shape + out.shape[1:]), union)


def connective(op: Callable[..., Any], *operands: Any, **kwargs: Any) -> Labelled:
    """Apply a fuzzy operator to operands over named variables, broadcasting over their union.

    Args:
        op: an elementwise operator, e.g. :func:`and_prod` or :func:`not_std` (or any callable).
        *operands: :class:`Labelled` truth values; plain arrays are constants (no variables).
        **kwargs: passed to ``op``, e.g. ``stable=True``.

    Returns:
        ``op(*values, **kwargs)`` as a :class:`Labelled` over the union of the operands' variables.

    Raises:
        ValueError: a variable has different domain sizes in two operands; and what ``op`` raises.

    Example:
        >>> from symbolic import fuzzy
        >>> a = fuzzy.Labelled(jnp.array([0.5, 1.0]), ("x",))
        >>> b = fuzzy.Labelled(jnp.array([0.5, 0.0, 1.0]), ("y",))
        >>> fuzzy.connective(fuzzy.and_prod, a, b).value
        Array([[0.25, 0.  , 0.5 ],
               [0.5 , 0.  , 1.  ]], dtype=float32)
    """
    if not callable(op):
        raise TypeError(f"`op` must be callable (e.g. symbolic.fuzzy.and_prod), got {type(op).__name__}")
    labelled = [_as_labelled(a, f"operands[{i}]") for i, a in enumerate(operands)]
    union, values = _broadcast(labelled, [f"operands[{i}]" for i in range(len(labelled))])
    return Labelled(op(*values, **kwargs), union)


def diag(*variables: Labelled) -> tuple[Labelled, ...]:
    """Zip variables: their i-th individuals go together (LTN's ``diag``), instead of the product.

    The returned variables share one axis, labelled ``"x|y"``; quantifying over ``"x"`` (or ``"y"``)
    aggregates over that shared axis.

    Args:
        *variables: two or more variables (from :func:`variable`) with equal numbers of individuals.

    Returns:
        The variables relabelled onto the shared axis, in the order given.

    Raises:
        ValueError: fewer than two variables, not single variables, repeated names, or unequal sizes.

    Example:
        >>> from symbolic import fuzzy
        >>> x, y = fuzzy.diag(fuzzy.variable("x", jnp.zeros(3)), fuzzy.variable("y", jnp.ones(3)))
        >>> fuzzy.connective(fuzzy.and_min, x, y).variables
        ('x|y',)
    """
    if len(variables) < 2:
        raise ValueError(f"`variables` must be at least two variables to zip, got {len(variables)}")
    for i, v in enumerate(variables):
        if not isinstance(v, Labelled) or len(v.variables) != 1:
            raise ValueError(
                f"`variables[{i}]` must be a single variable (symbolic.fuzzy.variable), got "
                f"{v.variables if isinstance(v, Labelled) else type(v).__name__!r}"
            )
    names = [n for v in variables for n in v.variables[0].split("|")]
    if len(set(names)) != len(names):
        raise ValueError(f"`variables` must have distinct names, got {names}")
    sizes = [jnp.shape(v.value)[0] for v in variables]
    if len(set(sizes)) != 1:
        raise ValueError(f"`variables` must have equal numbers of individuals to be zipped, got {sizes}")
    label = "|".join(names)
    return tuple(Labelled(v.value, (label,)) for v in variables)


def _resolve(variables: Any, labels: tuple[str, ...]) -> list[str]:
    items = variables if isinstance(variables, (list, tuple)) else [variables]
    if not items:
        raise ValueError("`variables` must name at least one variable to quantify over")
    out: list[str] = []
    for item in items:
        if isinstance(item, Labelled):
            wanted = list(item.variables)
        elif isinstance(item, str):
            wanted = [item]
        else:
            raise TypeError(f"`variables` must hold names or variables, got {type(item).__name__}")
        for name in wanted:
            parts = set(name.split("|"))
            hits = [lab for lab in labels if parts <= set(lab.split("|"))]
            if len(hits) != 1:
                why = "is not a free variable" if not hits else "names several axes"
                raise ValueError(
                    f"`variables`: {name!r} {why} of the formula; its free variables are {list(labels)}"
                )
            if hits[0] not in out:
                out.append(hits[0])
    return out


def _quantify(variables, formula, mask, p, stable, aggregator, default, empty, what) -> Labelled:
    formula = _as_labelled(formula, "formula")
    operands, names = [formula], ["formula"]
    if mask is not None:
        mask = _as_labelled(mask, "mask")
        if jnp.asarray(mask.value).dtype != jnp.bool_:
            raise TypeError(
                f"`mask` must hold booleans (True = the individual takes part), got dtype "
                f"{jnp.asarray(mask.value).dtype}; build it with a condition, e.g. "
                f"fuzzy.predicate(lambda y: y[0] < 2, y)"
            )
        operands.append(mask)
        names.append("mask")
    union, values = _broadcast(operands, names)
    quantified = _resolve(variables, union)
    axis = tuple(union.index(lab) for lab in quantified)
    m = values[1] if mask is not None else None
    if aggregator is None:
        agg = functools.partial(default, p=2.0 if p is None else p, stable=True if stable is None else stable)
    elif p is not None or stable is not None:
        raise TypeError(
            f"`p` and `stable` configure the default aggregator of `{what}`; with `aggregator=` bind "
            f"them to it, e.g. aggregator=functools.partial(fuzzy.pmean, p=6.0, stable=True)"
        )
    else:
        agg = aggregator
    out = agg(values[0], axis=axis, mask=m, empty=empty)
    return Labelled(out, tuple(lab for lab in union if lab not in quantified))


def forall(
    variables: Any,
    formula: Labelled,
    *,
    mask: Labelled | None = None,
    p: Any = None,
    stable: bool | None = None,
    aggregator: Callable[..., Any] | None = None,
) -> Labelled:
    r"""Universal quantification of ``formula`` over ``variables``:
    :math:`\forall x\, \phi(x) = 1 - \big(\frac{1}{n} \sum_i (1 - \phi(x_i))^p\big)^{1/p}` by default.

    Several variables are aggregated jointly (one mean over their product domain), as in LTN.

    Args:
        variables: a variable name, a variable from :func:`variable`/:func:`diag`, or a list of them.
        formula: a :class:`Labelled` truth value over (at least) those variables.
        mask: a guard, a :class:`Labelled` of booleans (e.g. from :func:`predicate`): only individuals
            where it is True count. The formula is broadcast over the mask's variables too.
        p: the exponent of the default aggregator :func:`pmean_error` (default 2; may be traced).
        stable: LTN's projection in the default aggregator (default True, as in LTN).
        aggregator: instead of the default, any aggregator of this package or a callable
            ``(x, *, axis, mask, empty) -> array``; bind its options with ``functools.partial``.

    Returns:
        A :class:`Labelled` over the remaining variables (``variables == ()`` when closed). A domain with
        no individual, or a guard that admits none, gives 1.

    Raises:
        ValueError: a variable that is not free in the formula (the message lists those that are).
        TypeError: a non-boolean mask, or ``p``/``stable`` given together with ``aggregator``.

    Example:
        >>> from symbolic import fuzzy
        >>> r = fuzzy.Labelled(jnp.array([[1.0, 0.0], [1.0, 1.0]]), ("x", "y"))
        >>> fuzzy.forall("y", r, stable=False).value
        Array([0.29289323, 1.        ], dtype=float32)

    Reference: S. Badreddine et al., "Logic Tensor Networks", Artificial Intelligence 303 (2022).
    """
    return _quantify(variables, formula, mask, p, stable, aggregator, pmean_error, 1.0, "forall")


def exists(
    variables: Any,
    formula: Labelled,
    *,
    mask: Labelled | None = None,
    p: Any = None,
    stable: bool | None = None,
    aggregator: Callable[..., Any] | None = None,
) -> Labelled:
    r"""Existential quantification of ``formula`` over ``variables``:
    :math:`\exists x\, \phi(x) = \big(\frac{1}{n} \sum_i \phi(x_i)^p\big)^{1/p}` by default.

    Args:
        variables: a variable name, a variable from :func:`variable`/:func:`diag`, or a list of them.
        formula: a :class:`Labelled` truth value over (at least) those variables.
        mask: a guard, a :class:`Labelled` of booleans: only individuals where it is True count.
        p: the exponent of the default aggregator :func:`pmean` (default 2; may be traced).
        stable: LTN's projection in the default aggregator (default True, as in LTN).
        aggregator: instead of the default, any aggregator of this package or a callable
            ``(x, *, axis, mask, empty) -> array``; bind its options with ``functools.partial``.

    Returns:
        A :class:`Labelled` over the remaining variables. A domain with no individual, or a guard that
        admits none, gives 0.

    Raises:
        ValueError: a variable that is not free in the formula (the message lists those that are).
        TypeError: a non-boolean mask, or ``p``/``stable`` given together with ``aggregator``.

    Example:
        >>> from symbolic import fuzzy
        >>> r = fuzzy.Labelled(jnp.array([[1.0, 0.0], [0.0, 0.0]]), ("x", "y"))
        >>> fuzzy.exists("y", r, aggregator=fuzzy.max).value
        Array([1., 0.], dtype=float32)

    Reference: S. Badreddine et al., "Logic Tensor Networks", Artificial Intelligence 303 (2022).
    """
    return _quantify(variables, formula, mask, p, stable, aggregator, pmean, 0.0, "exists")


def sat_agg(
    formulas: Sequence[Any],
    *,
    p: Any = None,
    stable: bool | None = None,
    aggregator: Callable[..., Any] | None = None,
) -> Float[Array, ""]:
    r"""Satisfaction of a knowledge base: its closed formulas' truth values aggregated into one.

    LTN's ``SatAgg``: by default :func:`pmean_error` with ``p = 2``, ``stable=True`` over the stacked
    truth values. ``1 - sat_agg(...)`` is the usual training loss.

    Args:
        formulas: closed formulas (``Labelled`` with no variables, or scalar arrays), at least one.
        p: the exponent of the default aggregator (default 2; may be traced).
        stable: LTN's projection in the default aggregator (default True).
        aggregator: instead of the default, a callable ``(x, *, axis, mask, empty) -> array``.

    Returns:
        A scalar truth value.

    Raises:
        ValueError: no formula, or a formula with free variables (the message names it).
        TypeError: ``p``/``stable`` given together with ``aggregator``.

    Example:
        >>> from symbolic import fuzzy
        >>> fuzzy.sat_agg([jnp.array(1.0), jnp.array(0.0)], stable=False)  # 1 - sqrt(1/2)
        Array(0.29289323, dtype=float32)
    """
    if isinstance(formulas, (Labelled, jax.Array)) or not isinstance(formulas, Sequence) or not formulas:
        raise ValueError("`formulas` must be a non-empty list of closed formulas")
    values = []
    for i, f in enumerate(formulas):
        f = _as_labelled(f, f"formulas[{i}]")
        if f.variables or jnp.shape(f.value) != ():
            raise ValueError(
                f"`formulas[{i}]` must be closed (a scalar with no free variables), got variables "
                f"{list(f.variables)} and shape {jnp.shape(f.value)}; quantify them with forall/exists"
            )
        values.append(f.value)
    stacked = jnp.stack(values)
    return _quantify(
        "kb", Labelled(stacked, ("kb",)), None, p, stable, aggregator, pmean_error, 1.0, "sat_agg"
    ).value
