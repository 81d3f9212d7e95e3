"""Agents that work on the collective's current answers: the residual refiner and the simplifier.

* :class:`ResidualAgent` (MCI's "over/under-estimation" feedback): extends the global best by the
  library terms that its residual follows most, additively (``f + c*t``) and multiplicatively
  (``f*(1 + c*t)``, and ``f/(1 + c*t)`` when the best over-estimates).
* :class:`SimplifierAgent`: proposes simpler relatives of the global best and of the archive's best
  members: SymPy's ``simplify``/``expand`` of the fitted form (re-skeletonised), and every form with one
  additive term or one multiplicative factor removed. The collective keeps them if they fit as well.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import numpy as np
import sympy

from ._agent import AbstractAgent, Context, Hypothesis
from ._expr import (
    AbstractExpr,
    Call,
    Const,
    Literal,
    Var,
    _walk,
    free_constants,
    from_sympy,
    n_constants,
    to_sympy,
)

__all__ = ["ResidualAgent", "SimplifierAgent", "skeleton"]


def skeleton(expr: AbstractExpr) -> AbstractExpr:
    """``expr`` with its non-integer literals made free and its constants renumbered ``c0, c1, ...``.

    Example:
        >>> from symbolic.discovery import Call, Const, Var
        >>> skeleton(Call("mul", (Const(3), Var(0))))
        Call(op='mul', args=(Const(index=0), Var(index=0)))
    """
    e = free_constants(expr)
    order: dict[int, int] = {}
    for node in _walk(e):
        if isinstance(node, Const) and node.index not in order:
            order[node.index] = len(order)

    def conv(n: AbstractExpr) -> AbstractExpr:
        if isinstance(n, Const):
            return Const(order[n.index])
        if isinstance(n, Call):
            return Call(n.op, tuple(conv(a) for a in n.args))
        return n

    return conv(e)


def _library(X: np.ndarray, names: set[str]) -> list[tuple[AbstractExpr, np.ndarray]]:
    """Simple terms of the variables with their values on the data (only where they are finite)."""
    terms: list[tuple[AbstractExpr, np.ndarray]] = []
    d = X.shape[1]
    one = Literal(sympy.Integer(1))
    for j in range(d):
        x = X[:, j]
        v = Var(j)
        terms.append((v, x))
        terms.append((Call("mul", (v, v)), x * x))
        if np.all(x != 0):
            terms.append((Call("div", (one, v)), 1 / x))
        if np.all(x > 0):
            if "log" in names:
                terms.append((Call("log", (v,)), np.log(x)))
            if "sqrt" in names:
                terms.append((Call("sqrt", (v,)), np.sqrt(x)))
        for op, fn in (("sin", np.sin), ("cos", np.cos)):
            if op in names:
                terms.append((Call(op, (v,)), fn(x)))
        if "exp" in names and np.max(np.abs(x)) < 50:
            terms.append((Call("exp", (v,)), np.exp(x)))
        for k in range(j + 1, d):
            terms.append((Call("mul", (v, Var(k))), x * X[:, k]))
            if np.all(X[:, k] != 0):
                terms.append((Call("div", (v, Var(k))), x / X[:, k]))
    return terms


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = np.std(a), np.std(b)
    if sa == 0 or sb == 0 or not np.all(np.isfinite(b)):
        return 0.0
    return abs(float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb)))


class ResidualAgent(AbstractAgent):
    """Extend the global best by the terms its residual follows (MCI's over/under-estimation signal).

    Attributes:
        name: agent name.
        n_terms: library terms used per round (those most correlated with the residual, or with the
            residual relative to the best's prediction for the multiplicative forms).
    """

    name: str = eqx.field(static=True, default="residual")
    n_terms: int = eqx.field(static=True, default=4)

    def __check_init__(self):
        if isinstance(self.n_terms, bool) or not isinstance(self.n_terms, int) or self.n_terms < 1:
            raise ValueError(f"`n_terms` must be a positive int, got {self.n_terms!r}")

    def init(self, context: Context, *, key: Any) -> Any:
        return None

    def propose(self, context: Context, state: Any, *, key: Any) -> tuple[list[AbstractExpr], Any]:
        best, r = context.global_best, context.residual
        if best is None or r is None or not np.all(np.isfinite(r)) or np.std(r) == 0:
            return [], state
        base = skeleton(best.expr)
        k = n_constants(base)
        f = context.y - r
        lib = _library(context.X, set(context.grammar.names))
        add = sorted(lib, key=lambda t: -_corr(r, t[1]))[: self.n_terms]
        rel = r / np.where(f == 0, 1.0, f)
        mul = sorted(lib, key=lambda t: -_corr(rel, t[1]))[: self.n_terms]
        one = Literal(sympy.Integer(1))
        out: list[AbstractExpr] = []
        for t, _ in add:
            out.append(Call("add", (base, Call("mul", (Const(k), t)))))
        for t, _ in mul:
            factor = Call("add", (one, Call("mul", (Const(k), t))))
            out.append(Call("mul", (base, factor)))
            if context.hint == "over":
                out.append(Call("div", (base, factor)))
        return out, state


def _terms(e: sympy.Expr) -> list[sympy.Expr]:
    return list(sympy.Add.make_args(e))


def _factors(e: sympy.Expr) -> list[sympy.Expr]:
    return list(sympy.Mul.make_args(e))


class SimplifierAgent(AbstractAgent):
    """Simpler relatives of the best hypotheses: simplified forms and one-term / one-factor prunings.

    Attributes:
        name: agent name.
        n_sources: how many hypotheses to simplify per round (the global best, then the archive's
            lowest-loss members).
    """

    name: str = eqx.field(static=True, default="simplifier")
    n_sources: int = eqx.field(static=True, default=3)

    def __check_init__(self):
        if isinstance(self.n_sources, bool) or not isinstance(self.n_sources, int) or self.n_sources < 1:
            raise ValueError(f"`n_sources` must be a positive int, got {self.n_sources!r}")

    def init(self, context: Context, *, key: Any) -> Any:
        return frozenset()

    def propose(self, context: Context, state: Any, *, key: Any) -> tuple[list[AbstractExpr], Any]:
        sources: list[Hypothesis] = []
        if context.global_best is not None:
            sources.append(context.global_best)
        for h in sorted(context.archive, key=lambda h: h.loss):
            if len(sources) >= self.n_sources:
                break
            if all(h.expr != s.expr for s in sources):
                sources.append(h)
        names, grammar = context.variables, context.grammar
        out: list[AbstractExpr] = []
        seen = set(state)
        for h in sources:
            if h.expr in seen:
                continue
            seen.add(h.expr)
            try:
                e = to_sympy(skeleton(h.expr), names, grammar)
            except ValueError:
                continue
            forms = []
            for simp in (sympy.simplify, sympy.expand, sympy.factor):
                try:
                    forms.append(simp(e))
                except Exception:  # noqa: BLE001 - SymPy may fail on unusual forms; skip them
                    continue
            for g in (e, sympy.expand(e)):
                ts = _terms(g)
                if len(ts) > 1:
                    forms += [sympy.Add(*(ts[:i] + ts[i + 1:])) for i in range(len(ts))]
                fs = _factors(g)
                if len(fs) > 1:
                    forms += [sympy.Mul(*(fs[:i] + fs[i + 1:])) for i in range(len(fs))]
            for g in forms:
                if not g.free_symbols & {sympy.Symbol(n) for n in names}:
                    continue
                try:
                    out.append(skeleton(from_sympy(g, names, grammar)))
                except (ValueError, TypeError):
                    continue
        return out, frozenset(seen)
