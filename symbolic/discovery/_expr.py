"""Expression trees over a grammar: SymPy in and out, complexity, constants.

An expression is a tree of four final node types: :class:`Var` (a variable by column index),
:class:`Const` (a free, numbered constant ``c0, c1, ...`` to be fitted), :class:`Literal` (an exact
number: an integer, a rational, a float, ``pi`` or ``E``, kept as a SymPy number) and :class:`Call`
(an operator of the grammar applied to sub-expressions). Nodes are immutable and hashable.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import sympy
from sympy.parsing.sympy_parser import parse_expr

from ._grammar import Grammar, default_grammar

__all__ = [
    "AbstractExpr",
    "Call",
    "Const",
    "Literal",
    "Var",
    "complexity",
    "free_constants",
    "from_sympy",
    "n_constants",
    "parse",
    "to_sympy",
]

_CONST_RE = re.compile(r"c(\d+)$")


class AbstractExpr(eqx.Module):
    """A node of an expression tree."""

    @abc.abstractmethod
    def children(self) -> tuple[AbstractExpr, ...]:
        """Sub-expressions (empty for leaves)."""


class Var(AbstractExpr):
    """The variable in column ``index`` of the data."""

    index: int = eqx.field(static=True)

    def __check_init__(self):
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"`index` of Var must be a non-negative int, got {self.index!r}")

    def children(self) -> tuple[AbstractExpr, ...]:
        return ()


class Const(AbstractExpr):
    """The free constant ``c{index}`` (fitted to data)."""

    index: int = eqx.field(static=True)

    def __check_init__(self):
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"`index` of Const must be a non-negative int, got {self.index!r}")

    def children(self) -> tuple[AbstractExpr, ...]:
        return ()


class Literal(AbstractExpr):
    """An exact real number, kept as a SymPy number (``Integer``, ``Rational``, ``Float``, ``pi``, ...)."""

    value: Any = eqx.field(static=True)

    def __check_init__(self):
        v = self.value
        if not isinstance(v, sympy.Expr) or not v.is_number or v.free_symbols or not v.is_real:
            raise ValueError(f"`value` of Literal must be a real SymPy number, got {v!r}")
        if not v.is_finite:
            raise ValueError(f"`value` of Literal must be finite, got {v!r}")

    def children(self) -> tuple[AbstractExpr, ...]:
        return ()


class Call(AbstractExpr):
    """The operator ``op`` (a name in the grammar) applied to ``args``."""

    op: str = eqx.field(static=True)
    args: tuple[AbstractExpr, ...]

    def __check_init__(self):
        if not isinstance(self.op, str):
            raise TypeError(f"`op` of Call must be an operator name (str), got {type(self.op).__name__}")
        if not isinstance(self.args, tuple) or not all(isinstance(a, AbstractExpr) for a in self.args):
            raise TypeError(f"`args` of Call must be a tuple of expressions, got {self.args!r}")

    def children(self) -> tuple[AbstractExpr, ...]:
        return self.args


def _lit(v) -> Literal:
    return Literal(sympy.sympify(v))


def _walk(e: AbstractExpr):
    yield e
    for c in e.children():
        yield from _walk(c)


def complexity(expr: AbstractExpr) -> int:
    """Number of nodes of the expression tree (leaves and operators each count one).

    Example:
        >>> complexity(Call("mul", (Const(0), Call("exp", (Var(0),)))))
        4
    """
    _check_expr(expr, "expr")
    return sum(1 for _ in _walk(expr))


def shift_constants(expr: AbstractExpr, by: int) -> AbstractExpr:
    """``expr`` with every constant index raised by ``by`` (to append it to another skeleton)."""
    if isinstance(expr, Const):
        return Const(expr.index + by)
    if isinstance(expr, Call):
        return Call(expr.op, tuple(shift_constants(a, by) for a in expr.args))
    return expr


def n_constants(expr: AbstractExpr) -> int:
    """``1 + `` the largest constant index in ``expr`` (0 when it has no constant).

    Example:
        >>> n_constants(Call("add", (Const(0), Const(2))))
        3
    """
    _check_expr(expr, "expr")
    return 1 + max((e.index for e in _walk(expr) if isinstance(e, Const)), default=-1)


def _check_expr(expr: Any, name: str) -> None:
    if not isinstance(expr, AbstractExpr):
        raise TypeError(
            f"`{name}` must be an expression (Var/Const/Literal/Call; build one with `parse` or "
            f"`from_sympy`), got {type(expr).__name__}"
        )


def _check_names(variables: Any) -> tuple[str, ...]:
    if isinstance(variables, str) or not isinstance(variables, Sequence):
        raise TypeError(f"`variables` must be a sequence of names, e.g. ['x', 'y'], got {variables!r}")
    names = tuple(str(v) for v in variables)
    for n in names:
        if not n.isidentifier():
            raise ValueError(f"`variables` must hold identifiers, got {n!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"`variables` has duplicate names: {list(names)}")
    return names


def parse(formula: str, variables: Sequence[str], grammar: Grammar | None = None) -> sympy.Expr:
    """Parse a formula string to SymPy with ``variables`` as plain symbols.

    Variable names win over SymPy's own names (``S``, ``N``, ``E``, ``gamma`` ... as variables are
    symbols, not SymPy objects); ``c0, c1, ...`` are constants; custom operators of ``grammar`` whose
    ``sympy_fn`` is a SymPy function class are available by name.

    Raises:
        TypeError: ``formula`` is not a str.
        ValueError: it does not parse.

    Example:
        >>> parse("2.5*S/(0.8 + S)", ["S"])
        2.5*S/(S + 0.8)
    """
    if not isinstance(formula, str):
        raise TypeError(f"`formula` must be a str, got {type(formula).__name__}")
    names = _check_names(variables)
    grammar = default_grammar() if grammar is None else grammar
    local: dict[str, Any] = {}
    for op in grammar.operators:
        if isinstance(op.sympy_fn, type) and issubclass(op.sympy_fn, sympy.Function):
            local[op.name] = op.sympy_fn
    for n in names:
        local[n] = sympy.Symbol(n)
    for m in re.finditer(r"\bc\d+\b", formula):
        local.setdefault(m.group(0), sympy.Symbol(m.group(0)))
    try:
        return parse_expr(formula, local_dict=local)
    except Exception as e:  # SymPy raises several types (SyntaxError, TokenError, TypeError)
        raise ValueError(f"`formula` {formula!r} does not parse as a SymPy expression: {e}") from e


def _is_class_fn(fn) -> bool:
    return isinstance(fn, type) and issubclass(fn, sympy.Basic)


def from_sympy(expr: Any, variables: Sequence[str], grammar: Grammar | None = None) -> AbstractExpr:
    """Convert a SymPy expression to an expression tree, rejecting anything not in the grammar.

    Symbols named in ``variables`` become :class:`Var` (by position), symbols ``c0, c1, ...`` become
    :class:`Const`, numbers become :class:`Literal`. ``Add``/``Mul``/``Pow`` become ``add``/``sub``/
    ``mul``/``div``/``pow``/``sqrt`` (negative terms are subtracted, negative powers divide). Only
    functions of the grammar are accepted: anything else (``tan``, an undefined function, a
    ``Derivative``, an integral ...) raises, since it is either not whitelisted or not pointwise.

    Raises:
        TypeError: ``expr`` is not a SymPy expression.
        ValueError: an unknown symbol, a non-whitelisted function, or a non-real number.

    Example:
        >>> import sympy
        >>> x, c0 = sympy.symbols("x c0")
        >>> e = from_sympy(c0 * sympy.exp(-x), ["x"])
        >>> to_sympy(e, ["x"])
        c0*exp(-x)
    """
    names = _check_names(variables)
    grammar = default_grammar() if grammar is None else grammar
    if not isinstance(grammar, Grammar):
        raise TypeError(f"`grammar` must be a Grammar, got {type(grammar).__name__}")
    if not isinstance(expr, sympy.Basic):
        try:
            expr = sympy.sympify(expr, strict=True)
        except (sympy.SympifyError, TypeError) as e:
            raise TypeError(f"`expr` must be a SymPy expression, got {type(expr).__name__}") from e
    class_ops = {op.sympy_fn: op for op in grammar.operators if _is_class_fn(op.sympy_fn)}
    has = set(grammar.names)

    def need(name: str, what: sympy.Basic) -> None:
        if name not in has:
            raise ValueError(f"`expr` uses {name!r} (in {what}) which is not in the grammar {list(has)}")

    def binary(op: str, a: AbstractExpr, b: AbstractExpr, what) -> AbstractExpr:
        need(op, what)
        return Call(op, (a, b))

    def fold(op: str, items: list[AbstractExpr], what) -> AbstractExpr:
        out = items[0]
        for it in items[1:]:
            out = binary(op, out, it, what)
        return out

    def conv(e: sympy.Basic) -> AbstractExpr:
        if isinstance(e, sympy.Symbol):
            if e.name in names:
                return Var(names.index(e.name))
            m = _CONST_RE.match(e.name)
            if m:
                return Const(int(m.group(1)))
            raise ValueError(
                f"`expr` has the symbol {e.name!r}, which is neither a variable {list(names)} nor a "
                "constant c0, c1, ...; add it to `variables`"
            )
        if e.is_number and not e.free_symbols and not isinstance(e, (sympy.Add, sympy.Mul, sympy.Pow)):
            if isinstance(e, (sympy.Number, sympy.NumberSymbol)) and e.is_real and e.is_finite:
                return Literal(e)
            if not isinstance(e, sympy.Function):
                raise ValueError(f"`expr` has the number {e!r}, which is not a finite real number")
        if isinstance(e, sympy.Add):
            pos, neg = [], []
            for t in e.args:
                if t.could_extract_minus_sign():
                    neg.append(conv(-t))
                else:
                    pos.append(conv(t))
            if not pos:
                out = Call("mul", (_lit(-1), neg[0]))
                need("mul", e)
                neg = neg[1:]
            else:
                out = fold("add", pos, e)
            for n in neg:
                out = binary("sub", out, n, e)
            return out
        if isinstance(e, sympy.Mul):
            num, den = [], []
            for f in e.args:
                if isinstance(f, sympy.Rational) and not isinstance(f, sympy.Integer):
                    if f.p != 1:
                        num.append(_lit(f.p))
                    den.append(_lit(f.q))
                elif isinstance(f, sympy.Pow) and f.exp.is_number and f.exp.is_negative:
                    den.append(conv(sympy.Pow(f.base, -f.exp)))
                else:
                    num.append(conv(f))
            out = fold("mul", num, e) if num else _lit(1)
            if den:
                out = binary("div", out, fold("mul", den, e), e)
            return out
        if isinstance(e, sympy.Pow):
            b, x = e.base, e.exp
            if x == sympy.Rational(1, 2) and "sqrt" in has:
                return Call("sqrt", (conv(b),))
            if x.is_number and x.is_negative:
                return binary("div", _lit(1), conv(sympy.Pow(b, -x)), e)
            return binary("pow", conv(b), conv(x), e)
        if e.func in class_ops:
            op = class_ops[e.func]
            if len(e.args) != op.arity:
                raise ValueError(
                    f"`expr` calls {op.name!r} with {len(e.args)} arguments; its arity is {op.arity}"
                )
            return Call(op.name, tuple(conv(a) for a in e.args))
        kind = type(e).__name__
        raise ValueError(
            f"`expr` contains {kind} ({e}), which is not a whitelisted operator of the grammar "
            f"{list(grammar.names)}; expressions must be pointwise compositions of these operators "
            "(no derivatives, integrals, sums over data or undefined functions)"
        )

    return conv(expr)


def to_sympy(expr: AbstractExpr, variables: Sequence[str], grammar: Grammar | None = None) -> sympy.Expr:
    """The SymPy expression of a tree (constants print as symbols ``c0, c1, ...``).

    Raises:
        ValueError: a variable index beyond ``variables``, or an operator not in ``grammar``.

    Example:
        >>> to_sympy(Call("sin", (Call("mul", (Const(0), Var(0))),)), ["t"])
        sin(c0*t)
    """
    _check_expr(expr, "expr")
    names = _check_names(variables)
    grammar = default_grammar() if grammar is None else grammar
    ops = {op.name: op for op in grammar.operators}

    def conv(e: AbstractExpr):
        if isinstance(e, Var):
            if e.index >= len(names):
                raise ValueError(f"`expr` uses variable {e.index} but `variables` has {len(names)} names")
            return sympy.Symbol(names[e.index])
        if isinstance(e, Const):
            return sympy.Symbol(f"c{e.index}")
        if isinstance(e, Literal):
            return e.value
        assert isinstance(e, Call)
        if e.op not in ops:
            raise ValueError(f"`expr` uses operator {e.op!r}, not in the grammar {list(ops)}")
        op = ops[e.op]
        if len(e.args) != op.arity:
            raise ValueError(f"`expr` calls {e.op!r} with {len(e.args)} arguments; its arity is {op.arity}")
        return op.sympy_fn(*(conv(a) for a in e.args))

    return conv(expr)


def free_constants(expr: AbstractExpr, *, keep_integers: bool = True) -> AbstractExpr:
    """Replace numeric literals by free constants ``c0, c1, ...`` (left to right), giving a skeleton.

    With ``keep_integers`` (default) integer literals (exponents, small factors) and ``pi``/``E`` stay;
    ``1`` and ``-1`` (units and the signs of negated terms) always stay.

    Example:
        >>> x = sympy.Symbol("x")
        >>> to_sympy(free_constants(from_sympy(2.5 * x**2 + 0.3, ["x"])), ["x"])
        c0 + c1*x**2
    """
    _check_expr(expr, "expr")
    counter = [n_constants(expr)]

    def conv(e: AbstractExpr) -> AbstractExpr:
        if isinstance(e, Literal):
            v = e.value
            if abs(v) == 1 or (keep_integers and (v.is_integer or isinstance(v, sympy.NumberSymbol))):
                return e
            counter[0] += 1
            return Const(counter[0] - 1)
        if isinstance(e, Call):
            return Call(e.op, tuple(conv(a) for a in e.args))
        return e

    return conv(expr)
