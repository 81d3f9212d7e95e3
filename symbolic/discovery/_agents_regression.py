"""Regression-family agents of the MCI collective: sparse regression, power laws, dimensional analysis.

Na & Park (2026), "Machine Collective Intelligence": besides agents that search expression space, the
collective holds agents that *regress*: they turn the data into skeletons by linear algebra, cheaply and
deterministically, and leave the final constants to :func:`~symbolic.discovery.fit_constants`.

* :class:`SparseRegressionAgent` (SINDy, Brunton, Proctor & Kutz 2016): a library of candidate terms
  (monomials with negative powers where the data allow, unary functions of the variables and of simple
  combinations of them, their products with low-degree monomials) and a forward beam search over
  supports (an approximation of best-subset selection) followed by backward elimination, on unit-norm
  columns. Besides ``y`` it regresses ``1/y``, ``y**2`` and ``log|y|`` (giving ``1/(...)``,
  ``sqrt(...)`` and ``c*exp(...)`` skeletons), rational functions ``P/(1 + Q)`` of monomials by
  linearisation, and, from round 1, the global best's residual (``best + terms``) and ratio (``best *
  (1 + terms)``). The library widens round by round.
* :class:`PowerLawAgent`: ``log|y|`` regressed on ``log|x_i|`` (and on ``x_i``, ``1/x_i``,
  ``x_i**2`` for exponential factors), exponents rounded to simple rationals; proposes
  ``c0*prod(x_i**p_i)*exp(...)``, with an offset, with free exponents, and later perturbed exponents and
  power-law corrections of the global best.
* :class:`DimensionalAgent` (Buckingham 1914): with units, the target is ``m(x) * g(pi)`` for a
  dimensionally consistent monomial ``m`` and dimensionless groups ``pi``; proposes ``c0*m``,
  ``c0*m*g(c1*pi)`` for simple ``g`` and sparse regressions of ``y/m`` on a library over the ``pi``.

Every agent is deterministic given its PRNG key (row and library subsamples are drawn from it).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy

import sciml.backend as B

from ._agent import AbstractAgent, Context, Hypothesis
from ._expr import AbstractExpr, Call, Const, _walk, from_sympy, n_constants, to_sympy

__all__ = ["DimensionalAgent", "PowerLawAgent", "SparseRegressionAgent"]


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------

#: Unary functions the libraries can use (when the grammar has them): NumPy definition, SymPy one.
_FUNCTIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[Any], Any]]] = {
    "sin": (np.sin, sympy.sin),
    "cos": (np.cos, sympy.cos),
    "exp": (np.exp, sympy.exp),
    "log": (np.log, sympy.log),
    "sqrt": (np.sqrt, sympy.sqrt),
    "tanh": (np.tanh, sympy.tanh),
}
_DEFAULT_FUNCTIONS = ("sin", "cos", "exp", "log", "sqrt", "tanh")
_MAX_EXPONENT = 4  # largest |exponent| of a rounded power law


def _check_pos_int(v: Any, name: str, lo: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"`{name}` must be an int >= {lo}, got {v!r}")


def _check_functions(functions: Any) -> None:
    if not isinstance(functions, tuple) or not all(isinstance(f, str) for f in functions):
        raise ValueError(f"`functions` must be a tuple of function names, got {functions!r}")
    bad = [f for f in functions if f not in _FUNCTIONS]
    if bad:
        raise ValueError(f"`functions` has unknown names {bad}; valid choices are {sorted(_FUNCTIONS)}")


def _rng(key: Any) -> np.random.Generator:
    """A NumPy generator seeded by the bits of a JAX key (same key, same stream)."""
    k = B._check_key(key, "key")
    if jnp.issubdtype(k.dtype, jax.dtypes.prng_key):
        k = jax.random.key_data(k)
    return np.random.default_rng(np.asarray(k, dtype=np.uint32).ravel().tolist())


def _away_from_zero(x: np.ndarray) -> bool:
    """No sign change and ``min|x| > 1e-3 max|x|``: ``1/x`` and ``log|x|`` are tame on the data."""
    a = np.abs(x)
    return bool((np.all(x > 0) or np.all(x < 0)) and a.min() > 1e-3 * a.max())


def _renumber(expr: AbstractExpr, start: int = 0) -> AbstractExpr:
    """Constants renumbered ``c{start}, c{start+1}, ...`` in order of first appearance."""
    order: dict[int, int] = {}
    for node in _walk(expr):
        if isinstance(node, Const) and node.index not in order:
            order[node.index] = start + len(order)

    def conv(e: AbstractExpr) -> AbstractExpr:
        if isinstance(e, Const):
            return Const(order[e.index])
        if isinstance(e, Call):
            return Call(e.op, tuple(conv(a) for a in e.args))
        return e

    return conv(expr)


def _constants(n: int, start: int = 0) -> list[sympy.Symbol]:
    return [sympy.Symbol(f"c{start + i}") for i in range(n)]


def _convert(e: sympy.Expr, names: Sequence[str], grammar) -> AbstractExpr | None:
    """``from_sympy`` that answers ``None`` for what the grammar cannot express."""
    if e.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I):
        return None
    try:
        return from_sympy(e, names, grammar)
    except (ValueError, TypeError):
        return None


def _best_skeleton(best: Hypothesis) -> AbstractExpr:
    """The global best with its free constants renumbered from 0 (its snapped literals are kept)."""
    return _renumber(best.expr)


class _Var(NamedTuple):
    """A (pseudo-)variable of a library: its SymPy form, its values and its node count."""

    sym: Any
    col: np.ndarray
    cost: int


class _Term(NamedTuple):
    """A library column: a key (for de-duplication), its values, a thunk giving its SymPy form (built
    only for the selected terms: SymPy arithmetic would dominate the cost of a wide library) and
    its node count."""

    key: str
    col: np.ndarray
    sym: Callable[[], Any]
    cost: int


def _lazy(v: Any) -> Callable[[], Any]:
    return lambda: v


def _lazy_mul(a: Callable[[], Any], b: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: a() * b()


def _lazy_call(f: Callable[[Any], Any], a: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: f(a())


# --------------------------------------------------------------------------------------------------
# The candidate-term library
# --------------------------------------------------------------------------------------------------


def _exponents(n: int, max_l1: int, neg: Sequence[bool], max_neg: int = 2) -> list[tuple[int, ...]]:
    """Integer exponent vectors with ``sum|p| <= max_l1``; ``p_i < 0`` only where ``neg[i]``."""
    out: list[tuple[int, ...]] = []

    def go(i: int, left: int, acc: tuple[int, ...]) -> None:
        if i == n:
            out.append(acc)
            return
        lo = -min(max_neg, left) if neg[i] else 0
        for p in range(lo, left + 1):
            go(i + 1, left - abs(p), acc + (p,))

    go(0, max_l1, ())
    out.sort(key=lambda p: (sum(abs(q) for q in p), sum(q < 0 for q in p)))
    return out


def _monomial(vs: Sequence[_Var], p: Sequence[int]) -> tuple[str, np.ndarray, Callable[[], Any], int]:
    col = np.ones_like(vs[0].col)
    cost, parts = 0, []
    for v, q in zip(vs, p):
        if q == 0:
            continue
        col = col * v.col ** float(q)
        cost += v.cost + (0 if abs(q) == 1 else 2) + 1
        parts.append(f"{v.sym}^{q}")
    factors = [(v.sym, q) for v, q in zip(vs, p) if q != 0]
    return "*".join(parts) or "1", col, lambda: sympy.Mul(*[s**q for s, q in factors]), max(cost, 1)


def _arg_ok(f: str, a: np.ndarray) -> bool:
    lo, hi = float(a.min()), float(a.max())
    if f == "log":
        return lo > 0
    if f == "sqrt":
        return lo >= 0 and hi > 0
    if f == "exp":
        return hi - lo <= 40 and max(abs(lo), abs(hi)) <= 300
    if f in ("sin", "cos"):
        return hi - lo <= 60  # beyond ~10 periods a unit-frequency column looks like noise
    if f == "tanh":
        return lo < 4 and hi > -4  # not saturated on the whole data
    return True


class _Library:
    """Collects library terms, dropping non-finite, constant and duplicate columns."""

    def __init__(self, n_rows: int, rng_rows: np.ndarray):
        self.terms: list[_Term] = []
        self._keys: set[str] = set()
        self._prints: set[tuple] = set()
        self._rows = rng_rows
        self.n_rows = n_rows

    def add(self, key: str, col: np.ndarray, sym: Any, cost: int) -> None:
        if key in self._keys or col.shape != (self.n_rows,) or not np.all(np.isfinite(col)):
            return
        scale = float(np.max(np.abs(col)))
        if scale == 0.0 or scale > 1e150:
            return
        if key != "1" and float(np.ptp(col)) <= 1e-10 * scale:
            return
        s = col[self._rows] / scale
        nz = s[np.abs(s) > 1e-6]
        sign = 1.0 if nz.size == 0 or nz[0] > 0 else -1.0
        fp = tuple(np.round(sign * s, 9).tolist())
        if fp in self._prints:
            return
        self._keys.add(key)
        self._prints.add(fp)
        self.terms.append(_Term(key, col, sym, cost))


def _build_library(
    vs: Sequence[_Var], *, level: int, max_degree: int, functions: Sequence[str], max_terms: int,
    rng: np.random.Generator,
) -> list[_Term]:
    """Candidate terms over the (pseudo-)variables ``vs``, widening with ``level`` (0, 1, 2).

    Level 0: monomials with ``sum|p| <= max_degree`` (negative powers of variables bounded away from
    0), ``f(x_i)`` (``exp`` of both signs) and ``f(x_i) * m`` for monomials ``m`` with ``sum|p| = 1``.
    Level 1 adds ``f(u)`` of one-variable arguments ``x**2``, ``1/x``, ``1 - x`` (for ``0 < x < 1``)
    alone and times ``m``, ``f(x_i)`` times monomials with ``sum|p| = 2``, and ``f(u)`` of pairwise
    products, ratios, sums and differences. Level 2 adds monomials of degree ``max_degree + 1``,
    ``f(u) * m`` for the pairwise arguments and products of two trigonometric terms. Beyond
    ``max_terms`` the widest terms are subsampled with ``rng`` (whole levels kept while they fit).
    """
    n = len(vs)
    n_rows = vs[0].col.shape[0]
    probe = np.linspace(0, n_rows - 1, min(n_rows, 24)).astype(int)
    lib = _Library(n_rows, probe)
    neg = [_away_from_zero(v.col) for v in vs]
    funcs = [f for f in functions if f in _FUNCTIONS]

    monos = _exponents(n, max_degree + (1 if level >= 2 else 0), neg)
    for p in monos:
        if sum(abs(q) for q in p) <= max_degree:
            lib.add(*_monomial(vs, p))
    mult1 = [_monomial(vs, p) for p in monos if sum(abs(q) for q in p) == 1]
    mult2 = [_monomial(vs, p) for p in monos if sum(abs(q) for q in p) == 2]

    def apply(f: str, key: str, a: np.ndarray, s: Any, cost: int) -> list[tuple[str, np.ndarray, Any, int]]:
        out = []
        fn, sf = _FUNCTIONS[f]
        if _arg_ok(f, a):
            with np.errstate(all="ignore"):
                out.append((f"{f}({key})", fn(a), _lazy_call(sf, _lazy(s)), cost + 1))
                if f == "exp":
                    out.append((f"exp(-{key})", fn(-a), _lazy_call(sf, _lazy(-s)), cost + 3))
        return out

    def unary_of(args):
        return [t for f in funcs for arg in args for t in apply(f, *arg)]

    def times(us, ms):
        for k, c, s, cost in us:
            for mk, mc, msym, mcost in ms:
                lib.add(f"{k}*{mk}", c * mc, _lazy_mul(s, msym), cost + mcost + 1)

    unary = unary_of([(str(v.sym), v.col, v.sym, v.cost) for v in vs])
    for t in unary:
        lib.add(*t)
    times(unary, mult1)
    tiers = [len(lib.terms)]  # terms before a boundary are kept whole when they fit in `max_terms`
    if level >= 1:
        single, pair = [], []
        for i, a in enumerate(vs):
            ka = str(a.sym)
            single.append((f"{ka}^2", a.col * a.col, a.sym**2, a.cost + 2))
            if neg[i]:
                single.append((f"1/{ka}", 1.0 / a.col, 1 / a.sym, a.cost + 2))
            if np.all(a.col > 0) and np.all(a.col < 1):
                single.append((f"1-{ka}", 1.0 - a.col, 1 - a.sym, a.cost + 2))
            for j in range(i + 1, n):
                b = vs[j]
                kb = str(b.sym)
                cost = a.cost + b.cost + 1
                pair.append((f"{ka}*{kb}", a.col * b.col, a.sym * b.sym, cost))
                pair.append((f"{ka}-{kb}", a.col - b.col, a.sym - b.sym, cost))
                pair.append((f"{ka}+{kb}", a.col + b.col, a.sym + b.sym, cost))
                if neg[j]:
                    pair.append((f"{ka}/{kb}", a.col / b.col, a.sym / b.sym, cost))
                if neg[i]:
                    pair.append((f"{kb}/{ka}", b.col / a.col, b.sym / a.sym, cost))
        unary1, unary2 = unary_of(single), unary_of(pair)
        for t in unary1 + unary2:
            lib.add(*t)
        tiers.append(len(lib.terms))
        times(unary1, mult1)
        times(unary, mult2)
        tiers.append(len(lib.terms))
        if level >= 2:
            for p in monos:
                if sum(abs(q) for q in p) == max_degree + 1:
                    lib.add(*_monomial(vs, p))
            times(unary2, mult1)
            trig = [u for u in unary + unary1 if u[0].startswith(("sin(", "cos("))]
            for (k1, c1, s1, o1), (k2, c2, s2, o2) in itertools.combinations(trig, 2):
                lib.add(f"{k1}*{k2}", c1 * c2, _lazy_mul(s1, s2), o1 + o2 + 1)
    terms = lib.terms
    if len(terms) > max_terms:
        keep = max([b for b in tiers if b <= max_terms], default=max_terms)
        rest = terms[keep:]
        pick = np.sort(rng.choice(len(rest), size=max_terms - keep, replace=False))
        terms = terms[:keep] + [rest[i] for i in pick]
    return terms


# --------------------------------------------------------------------------------------------------
# Subset selection
# --------------------------------------------------------------------------------------------------


def _beam_select(
    A: np.ndarray, b: np.ndarray, *, k_max: int, beam: int, branch: int, forced: Sequence[int] = ()
) -> dict[tuple[int, ...], float]:
    """Forward beam search over supports of the unit-norm columns of ``A`` (best-subset surrogate).

    From each of the ``beam`` best supports of size ``k`` it tries the ``branch`` columns whose
    addition lowers the residual sum of squares most (``(r . a_j)^2 / (1 - |Q^T a_j|^2)`` with ``Q`` an
    orthonormal basis of the support), keeps the ``beam`` best supports of size ``k + 1``, and so on
    up to ``k_max``. ``Q``, ``|Q^T a_j|^2`` and the residual are extended by one Gram-Schmidt step per
    kept support (one pass over ``A`` each). Returns every support kept with its residual sum of squares.
    """
    n, L = A.shape
    out: dict[tuple[int, ...], float] = {}
    # a kept support: (orthonormal basis Q, |Q^T a_j|^2 for every column, residual)
    frontier: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {
        (): (np.zeros((n, 0)), np.zeros(L), b.copy())}
    for j in sorted(forced):
        S, (Q, proj2, r) = next(iter(frontier.items()))
        frontier = {tuple(sorted(S + (j,))): _extend(A, Q, proj2, r, j)}
    m = min(branch, L)
    while frontier:
        cands: dict[tuple[int, ...], tuple[float, tuple[int, ...], int]] = {}
        for S, (_, proj2, r) in frontier.items():
            rss = float(r @ r)
            out[S] = rss
            if len(S) >= k_max:
                continue
            c = r @ A
            denom = 1.0 - proj2
            gain = np.where(denom > 1e-10, c * c / np.maximum(denom, 1e-300), -np.inf)
            if S:
                gain[list(S)] = -np.inf
            for j in np.argpartition(-gain, m - 1)[:m]:
                if not np.isfinite(gain[j]):
                    continue
                T = tuple(sorted(S + (int(j),)))
                new = max(rss - float(gain[j]), 0.0)
                if T not in cands or new < cands[T][0]:
                    cands[T] = (new, S, int(j))
        kept = sorted(cands, key=lambda T: cands[T][0])[:beam]
        frontier = {T: _extend(A, *frontier[cands[T][1]], cands[T][2]) for T in kept}
    return out


def _extend(A: np.ndarray, Q: np.ndarray, proj2: np.ndarray, r: np.ndarray, j: int):
    """One Gram-Schmidt step: add column ``j`` to the basis ``Q`` (re-orthogonalised once)."""
    w = A[:, j] - Q @ (Q.T @ A[:, j])
    w = w - Q @ (Q.T @ w)
    q = w / max(float(np.linalg.norm(w)), 1e-300)
    row = q @ A
    return np.column_stack([Q, q]), proj2 + row * row, r - q * float(q @ r)


def _lstsq(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    r = b - A @ coef
    return coef, float(r @ r)


def _backward(
    A: np.ndarray, b: np.ndarray, S: tuple[int, ...], forced: Sequence[int] = ()
) -> list[tuple[int, ...]]:
    """Backward elimination from ``S``: drop the column whose removal raises the residual least."""
    out = []
    S = tuple(S)
    while len(S) > max(1, len(forced)):
        best = None
        for i in S:
            if i in forced:
                continue
            T = tuple(j for j in S if j != i)
            rss = _lstsq(A[:, list(T)], b)[1]
            if best is None or rss < best[1]:
                best = (T, rss)
        if best is None:
            break
        S = best[0]
        out.append(S)
    return out


def _supports(
    A: np.ndarray, b: np.ndarray, *, k_max: int, beam: int, branch: int, forced: Sequence[int] = (),
    backward: bool = True,
) -> list[tuple[int, ...]]:
    """Beam-search supports plus the backward-elimination path from the largest best one."""
    visited = _beam_select(A, b, k_max=k_max, beam=beam, branch=branch, forced=forced)
    supports = [S for S in visited if len(S) > len(forced) or (S and not forced)]
    largest = [S for S in visited if len(S) == max(len(T) for T in visited)]
    if largest and backward:
        top = min(largest, key=visited.__getitem__)
        supports += _backward(A, b, top, forced)
    return list(dict.fromkeys(supports))


# --------------------------------------------------------------------------------------------------
# Sparse regression of a target (shared by the sparse-regression and dimensional agents)
# --------------------------------------------------------------------------------------------------


class _Candidate(NamedTuple):
    score: float
    key: str
    expr: AbstractExpr


class _Source(NamedTuple):
    """A regression problem: target ``z`` and how a fitted linear form maps back to ``y``.

    ``predict(lin)`` gives the prediction of ``y`` from the linear form's values ``lin``;
    ``wrap(terms, coefs, names, grammar)`` gives the skeleton (or ``None``); ``weight`` (rows) makes
    least squares on ``z`` approximate least squares on ``y`` (``|dy/dz|``, first order), so that
    noise amplified by the transform does not favour spurious terms.
    """

    name: str
    z: np.ndarray
    predict: Callable[[np.ndarray], np.ndarray]
    wrap: Callable[..., AbstractExpr | None]
    weight: np.ndarray | None = None
    predict_terms: Callable[..., np.ndarray] | None = None  # (columns, coefs, terms) -> y, if not linear


def _order(terms: Sequence[_Term], coefs: np.ndarray) -> list[int]:
    return sorted(range(len(terms)), key=lambda i: -abs(float(coefs[i])))


def _wrap_sum(start: int = 0) -> Callable[..., tuple[Any, int]]:
    def make(terms: Sequence[_Term], coefs: np.ndarray) -> tuple[Any, int]:
        order = _order(terms, coefs)
        cs = _constants(len(terms), start)
        return sympy.Add(*[c * terms[i].sym() for c, i in zip(cs, order)]), len(terms)

    return make


def _pivot_form(terms: Sequence[_Term], coefs: np.ndarray) -> tuple[Any, float] | None:
    """``sign*t_m + sum c_i t_i`` over the other terms (the pivot ``t_m``: the intercept if it is in
    the support, else the largest term), with the pivot's sign; ``None`` for an empty support."""
    if not terms:
        return None
    ones = [i for i, t in enumerate(terms) if t.key == "1"]
    mags = np.abs(coefs)
    m = ones[0] if ones and mags[ones[0]] > 1e-6 * mags.max() else int(np.argmax(mags))
    sign = 1 if coefs[m] > 0 else -1
    rest = [i for i in _order(terms, coefs) if i != m]
    cs = _constants(len(rest), 1)
    inner = sign * terms[m].sym() + sympy.Add(*[c * terms[i].sym() for c, i in zip(cs, rest)])
    return inner, float(sign)


def _simplest(forms: Sequence[Any], names: Sequence[str], grammar) -> AbstractExpr | None:
    best = None
    for f in forms:
        e = _convert(f, names, grammar)
        if e is not None and (best is None or sum(1 for _ in _walk(e)) < sum(1 for _ in _walk(best))):
            best = e
    return best


def _target_sources(y: np.ndarray, m_sym: Any = 1, m_col: np.ndarray | None = None) -> list[_Source]:
    """Regress ``y/m`` (``m`` a known factor, 1 by default) and its transforms ``1/.``, ``.**2``,
    ``log|.|``; each maps its linear form back to a skeleton ``m * g^{-1}(form)``."""
    mc = np.ones_like(y) if m_col is None else m_col
    z = y / mc
    out: list[_Source] = []

    def skel(make_inner: Callable[[Sequence[_Term], np.ndarray], Any]) -> Callable[..., AbstractExpr | None]:
        def wrap(terms, coefs, names, grammar):
            forms = make_inner(terms, coefs)
            if forms is None:
                return None
            forms = [sympy.expand(m_sym * f, deep=False) if m_sym != 1 else f for f in forms]
            return _simplest(forms, names, grammar)

        return wrap

    def ident(terms, coefs):
        return [_wrap_sum()(terms, coefs)[0]]

    am = np.abs(mc)
    out.append(_Source("identity", z, lambda lin: mc * lin, skel(ident), am))
    pos, negs = bool(np.all(z > 0)), bool(np.all(z < 0))
    away = (pos or negs) and float(np.min(np.abs(z))) > 1e-8 * float(np.max(np.abs(z)))
    c0 = sympy.Symbol("c0")
    if away:

        def inverse(terms, coefs):
            pv = _pivot_form(terms, coefs)
            if pv is None:
                return None
            f = c0 / pv[0]
            return [sympy.together(f), f]  # c0*x/(x + c1) before c0/(1 + c1/x) when equally simple

        with np.errstate(all="ignore"):
            out.append(_Source("inverse", 1.0 / z, lambda lin: mc / lin, skel(inverse), am * z * z))
    if pos or negs:
        sgn = 1.0 if pos else -1.0

        def square(terms, coefs):
            pv = _pivot_form(terms, coefs)
            return None if pv is None else [c0 * sympy.sqrt(pv[0])]

        with np.errstate(all="ignore"):
            w_sq = np.nan_to_num(am / np.abs(z), posinf=0.0)
        out.append(_Source("square", z * z, lambda lin: mc * sgn * np.sqrt(np.maximum(lin, 0.0)),
                           skel(square), w_sq))
    if away:

        def logarithm(terms, coefs):
            keep = [i for i, t in enumerate(terms) if t.key != "1"]
            if not keep:
                return None
            inner, _ = _wrap_sum(1)([terms[i] for i in keep], coefs[keep])
            return [c0 * sympy.exp(inner)]

        sgn_l = 1.0 if pos else -1.0
        out.append(_Source("log", np.log(np.abs(z)), lambda lin: mc * sgn_l * np.exp(np.minimum(lin, 700.0)),
                           skel(logarithm), np.abs(y)))
    return out


def _nmse(y: np.ndarray, pred: np.ndarray, var: float | None = None) -> float:
    if pred.shape != y.shape:
        return math.inf
    r = y - pred
    mse = float(r @ r) / y.shape[0]
    if not math.isfinite(mse):
        return math.inf
    return mse / ((float(np.var(y)) if var is None else var) or 1.0)


_DEN = "den:"  # key prefix of the y * q(x) columns of the rational source


def _rational_source(
    y: np.ndarray, terms: Sequence[_Term], max_l1: int = 2
) -> tuple[_Source, list[_Term]] | None:
    """Rational functions ``P(x)/(1 + Q(x))`` by linearisation (Levy 1959): ``y = P(x) - y*Q(x)`` is
    linear in the coefficients, with columns the library's monomials (``P``) and ``y`` times them (``Q``).
    Returns the source and its columns (``None`` when there are too few monomials)."""
    monos = [t for t in terms if "(" not in t.key and "." not in t.key
             and sum(abs(int(p.split("^")[1])) for p in t.key.split("*") if "^" in p) <= max_l1]
    if len(monos) < 2:
        return None
    cols = monos + [_Term(_DEN + t.key, y * t.col, t.sym, t.cost + 1) for t in monos if t.key != "1"]

    def split(sub):
        num = [i for i, t in enumerate(sub) if not t.key.startswith(_DEN)]
        den = [i for i, t in enumerate(sub) if t.key.startswith(_DEN)]
        return num, den

    def predict_terms(A, coef, sub):
        num, den = split(sub)
        with np.errstate(all="ignore"):
            return (A[:, num] @ coef[num]) / (1.0 - (A[:, den] / y[:, None]) @ coef[den])

    def wrap(sub, coef, names, grammar):
        num, den = split(sub)
        if not num or not den:
            return None  # a plain sum is the identity source's
        if np.min(np.abs(coef[den])) <= 1e-8 * np.max(np.abs(coef)):
            return None  # a vanishing denominator term: the polynomial is exact already
        p, _ = _wrap_sum(0)([sub[i] for i in num], coef[num])
        q, _ = _wrap_sum(len(num))([sub[i] for i in den], coef[den])
        f = p / (1 + q)
        return _simplest([sympy.together(f), f], names, grammar)

    return _Source("rational", y, lambda lin: lin, wrap, None, predict_terms), cols


def _score(n: int, nmse: float, k: int, cost: int, n_library: int = 1) -> float:
    """Extended BIC (Chen & Chen 2008): ``n log(NMSE + 1e-14) + k (log n + 2 log L)`` for ``k`` terms
    chosen among ``L``, plus a small complexity term (lower is better). The ``2 log L`` accounts for
    the selection: the best of ``L`` noise directions lowers the error by about that much."""
    if not math.isfinite(nmse):
        return math.inf
    return n * math.log(nmse + 1e-14) + k * (math.log(n) + 2 * math.log(max(n_library, 1))) + 0.5 * cost


class _Group(NamedTuple):
    """Candidates of one source, best first: the lead score and a lazy iterator (SymPy conversion is
    the expensive part, so only what the merge takes is converted)."""

    score: float
    items: Iterator[_Candidate]


def _regress(
    y: np.ndarray,
    sources: Sequence[_Source],
    terms: Sequence[_Term],
    *,
    rows: np.ndarray,
    names: Sequence[str],
    grammar,
    k_max: int,
    beam: int,
    branch: int,
    seen: frozenset[str] = frozenset(),
    forced: Sequence[tuple[int, ...]] = ((),),
) -> list[_Group]:
    """For each source, its skeletons not in ``seen``, best first (supports grown from each of the
    ``forced`` column sets)."""
    if not terms:
        return []
    A_full = np.stack([t.col for t in terms], axis=1)
    A_full = A_full / np.linalg.norm(A_full, axis=0)
    A_sel = A_full[rows]
    A_sel = A_sel / np.maximum(np.linalg.norm(A_sel, axis=0), 1e-300)
    var_y = float(np.var(y))
    out = []
    for src in sources:
        if not np.all(np.isfinite(src.z)) or float(np.ptp(src.z)) == 0.0:
            continue
        supports = list(dict.fromkeys(
            S for fs in forced for S in _supports(A_sel, src.z[rows], k_max=k_max, beam=beam, branch=branch,
                                                  forced=fs, backward=len(fs) <= 1)))
        w = np.ones_like(src.z) if src.weight is None else src.weight
        scored = []
        for S in supports:
            # weighted refit: least squares on y to first order (the support search is unweighted)
            coef, _ = _lstsq(A_full[:, list(S)] * w[:, None], src.z * w)
            with np.errstate(all="ignore"):
                if src.predict_terms is not None:
                    pred = src.predict_terms(A_full[:, list(S)], coef, [terms[i] for i in S])
                else:
                    pred = src.predict(A_full[:, list(S)] @ coef)
            cost = sum(terms[i].cost for i in S)
            nmse = _nmse(y, pred, var_y)
            if src.predict_terms is not None:  # rational: the denominator must halve the numerator's error
                num = [i for i in S if not terms[i].key.startswith(_DEN)]
                plain = _nmse(y, A_full[:, num] @ _lstsq(A_full[:, num], y)[0], var_y) if num else math.inf
                if nmse > 0.5 * plain or plain < 1e-20:
                    continue
            scored.append((_score(y.shape[0], nmse, len(S), cost, len(terms)), S, coef, nmse))
        scored.sort(key=lambda t: t[0])
        if scored and math.isfinite(scored[0][0]):
            out.append(_Group(scored[0][0], _skeletons(scored, src, terms, names, grammar, seen)))
    return out


def _skeletons(scored, src: _Source, terms, names, grammar, seen) -> Iterator[_Candidate]:
    taken: set[str] = set(seen)
    covered: list[tuple[set[int], float]] = []
    for score, S, coef, nmse in scored:
        if not math.isfinite(score):
            return
        # a superset of a proposed support that does not fit clearly better adds nothing
        if any(T < set(S) and (nmse > 0.5 * e or e < 1e-20) for T, e in covered):
            continue
        # unit-norm coefficients: their signs and sizes (the terms' contributions) order the terms
        expr = src.wrap([terms[i] for i in S], coef, names, grammar)
        if expr is None:
            continue
        key = _key(expr, names, grammar)
        if key is None:
            continue
        covered.append((set(S), nmse))
        if key in taken:
            continue
        taken.add(key)
        yield _Candidate(score, key, expr)


_ANY_CONSTANT = sympy.Dummy("C")


def _key(expr: AbstractExpr, names: Sequence[str], grammar) -> str | None:
    """A de-duplication key that ignores how the constants are numbered."""
    try:
        e = to_sympy(expr, names, grammar)
    except (ValueError, TypeError, ZeroDivisionError):
        return None
    consts = {s: _ANY_CONSTANT for s in e.free_symbols if s.name not in names}
    return sympy.srepr(e.xreplace(consts))


def _group(cands: Sequence[_Candidate]) -> list[_Group]:
    return [_Group(cands[0].score, iter(cands))] if cands else []


def _merge(groups: Sequence[_Group], seen: frozenset[str], n: int) -> list[_Candidate]:
    """Round-robin over the groups (ordered by their lead score), skipping already proposed keys."""
    its = [g.items for g in sorted(groups, key=lambda g: g.score)]
    out: list[_Candidate] = []
    keys = set(seen)
    live = [True] * len(its)
    while len(out) < n and any(live):
        for gi, it in enumerate(its):
            if len(out) >= n:
                break
            for c in it:
                if c.key not in keys:
                    keys.add(c.key)
                    out.append(c)
                    break
            else:
                live[gi] = False
    return out


def _rows(n_rows: int, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    if n_rows <= max_rows:
        return np.arange(n_rows)
    return np.sort(rng.choice(n_rows, size=max_rows, replace=False))


class _RoundState(NamedTuple):
    """State of the regression agents: the agent's round counter and the skeletons it proposed."""

    round: int
    seen: frozenset[str]


def _grammar_functions(functions: Sequence[str], grammar) -> tuple[str, ...]:
    return tuple(f for f in functions if f in grammar.names)


def _variables(context: Context) -> list[_Var]:
    return [_Var(sympy.Symbol(n), context.X[:, i], 1) for i, n in enumerate(context.variables)]


# --------------------------------------------------------------------------------------------------
# SparseRegressionAgent
# --------------------------------------------------------------------------------------------------


class SparseRegressionAgent(AbstractAgent):
    """Sparse regression on a library of candidate terms (SINDy-style), the library widening by round.

    In round ``r`` the library has level ``min(r, max_level)`` (see below). For the target ``y`` and its
    transforms ``1/y``, ``y**2``, ``log|y|`` (where defined) a forward beam search over supports of the
    unit-norm library columns, up to ``max_terms`` terms, plus backward elimination from the largest
    support, gives candidate supports; each is refitted by least squares on all rows (weighted by
    ``|dy/dz|`` for a transform ``z`` of ``y``) and scored in the original space by the extended BIC
    ``n log(NMSE) + k (log n + 2 log L)`` (``k`` of ``L`` library terms); supersets of a proposed
    support that do not halve its error are skipped. A support ``S`` becomes the skeleton
    ``c0*t0 + c1*t1 + ...`` (``c0/(t0 + c1*t1 + ...)``, ``c0*sqrt(t0 + c1*t1 + ...)``,
    ``c0*exp(c1*t1 + ...)`` for the transforms).

    Rational functions ``(c0*p0 + ...)/(1 + c_k*q0 + ...)`` over monomials of degree <= 2 come from
    the linearised regression ``y = P - y*Q`` (Levy 1959) on the monomials and ``y`` times them (grown
    from each of the 12 simplest denominator terms; kept only if the denominator halves the
    numerator's error).

    From round 1 the global best's residual ``y - f`` is regressed as well (skeleton
    ``f + c_k*t0 + ...``) and, where ``f`` is bounded away from 0, the ratio ``y/f``
    (``f*(1 + c_k*t0 + ...)``). (The over/under hint is implied by the residual, which is used
    directly.) The sources take turns in the returned list, best scores first; skeletons proposed in
    earlier rounds are not repeated.

    Library levels: 0: monomials with ``sum|p_i| <= max_degree`` (negative powers of variables bounded
    away from 0), ``f(x_i)`` for the grammar's ``functions`` where valid on the data (``log`` and
    ``sqrt`` of positive columns, ``exp`` of both signs), and ``f(x_i)`` times ``x_j`` or ``1/x_j``;
    1: also ``f(u)`` of ``x**2``, ``1/x``, ``1 - x`` (``0 < x < 1``), alone and times ``x_j`` or
    ``1/x_j``, ``f(x_i)`` times degree-2 monomials, and ``f(u)`` of pairwise products, ratios, sums and
    differences; 2: also degree ``max_degree + 1`` monomials, the pairwise ``f(u)`` times ``x_j`` or
    ``1/x_j`` and products of two trigonometric terms. Beyond ``max_library`` columns the widest terms
    are subsampled with the round's key.

    Attributes:
        name: agent name.
        n_candidates: skeletons per round at most.
        max_degree: largest ``sum|p_i|`` of a level-0 monomial.
        max_terms: largest support size.
        beam: supports kept per size in the beam search.
        branch: extensions tried per kept support.
        max_level: widest library level (0, 1 or 2).
        max_library: library columns at most.
        max_rows: rows used for the support search (a key-drawn subsample beyond it; the refits use all).
        functions: unary functions the library may use (those also in the grammar).

    Example:
        >>> import numpy as np, jax
        >>> from symbolic import discovery as d
        >>> from symbolic.discovery._agent import Context
        >>> from symbolic.discovery._agents_regression import SparseRegressionAgent
        >>> x = np.linspace(-2.0, 2.0, 200)[:, None]
        >>> ctx = Context(X=x, y=3.0 * x[:, 0] ** 2 - 1.0, variables=("x",), grammar=d.default_grammar())
        >>> agent = SparseRegressionAgent()
        >>> cands, _ = agent.propose(ctx, agent.init(ctx, key=jax.random.key(0)), key=jax.random.key(1))
        >>> d.to_sympy(cands[0], ["x"])
        c0*x**2 + c1

    Reference: Brunton, Proctor & Kutz (2016), "Discovering governing equations from data by sparse
    identification of nonlinear dynamical systems", PNAS 113(15).
    """

    name: str = eqx.field(static=True, default="sparse_regression")
    n_candidates: int = eqx.field(static=True, default=16)
    max_degree: int = eqx.field(static=True, default=3)
    max_terms: int = eqx.field(static=True, default=6)
    beam: int = eqx.field(static=True, default=24)
    branch: int = eqx.field(static=True, default=6)
    max_level: int = eqx.field(static=True, default=2)
    max_library: int = eqx.field(static=True, default=1000)
    max_rows: int = eqx.field(static=True, default=400)
    functions: tuple[str, ...] = eqx.field(static=True, default=_DEFAULT_FUNCTIONS)

    def __check_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty str, got {self.name!r}")
        for field in ("n_candidates", "max_degree", "max_terms", "beam", "branch", "max_library"):
            _check_pos_int(getattr(self, field), field)
        _check_pos_int(self.max_rows, "max_rows", 8)
        if isinstance(self.max_level, bool) or self.max_level not in (0, 1, 2):
            raise ValueError(f"`max_level` must be 0, 1 or 2, got {self.max_level!r}")
        _check_functions(self.functions)

    def init(self, context: Context, *, key: Any) -> _RoundState:
        return _RoundState(0, frozenset())

    def propose(
        self, context: Context, state: _RoundState, *, key: Any
    ) -> tuple[list[AbstractExpr], _RoundState]:
        rng = _rng(key)
        X, y = context.X, context.y
        names, grammar = context.variables, context.grammar
        level = min(state.round, self.max_level)
        vs = _variables(context)
        if not vs or y.shape[0] < 3:
            return [], state._replace(round=state.round + 1)
        terms = _build_library(vs, level=level, max_degree=self.max_degree,
                               functions=_grammar_functions(self.functions, grammar),
                               max_terms=self.max_library, rng=rng)
        rows = _rows(X.shape[0], self.max_rows, rng)
        sources = _target_sources(y)
        sources += _best_sources(context)
        opts = dict(rows=rows, names=names, grammar=grammar, k_max=self.max_terms, beam=self.beam,
                    branch=self.branch, seen=state.seen)
        groups = _regress(y, sources, terms, **opts)
        rational = _rational_source(y, terms)
        if rational is not None:
            # y*q columns all resemble y, so a greedy search picks them badly: grow the numerator from
            # each of the simplest denominator terms and from pairs of the simplest ones
            den = [i for i, t in enumerate(rational[1]) if t.key.startswith(_DEN)]
            forced = [(i,) for i in den[:12]] + list(itertools.combinations(den[:4], 2))
            groups += _regress(y, [rational[0]], rational[1], forced=forced,
                               **{**opts, "beam": min(self.beam, 6)})
        picked = _merge(groups, state.seen, self.n_candidates)
        seen = state.seen | {c.key for c in picked}
        return [c.expr for c in picked], _RoundState(state.round + 1, seen)


def _best_sources(context: Context) -> list[_Source]:
    """Residual and ratio sources built on the global best (round >= 1)."""
    best, r = context.global_best, context.residual
    if best is None or r is None or r.shape != context.y.shape or not np.all(np.isfinite(r)):
        return []
    y = context.y
    if float(np.var(r)) <= 1e-28 * max(float(np.var(y)), 1e-300):
        return []
    base = _best_skeleton(best)
    f = y - r
    k = n_constants(base)
    out = []

    def additive(terms, coefs, names, grammar):
        inner, _ = _wrap_sum(k)(terms, coefs)
        e = _convert(inner, names, grammar)
        return None if e is None else Call("add", (base, e))

    out.append(_Source("residual", r, lambda lin: f + lin, additive))
    if _away_from_zero(f):

        def ratio(terms, coefs, names, grammar):
            keep = [i for i, t in enumerate(terms) if t.key != "1"]
            if not keep:
                return None
            inner, _ = _wrap_sum(k)([terms[i] for i in keep], coefs[keep])
            e = _convert(1 + inner, names, grammar)
            return None if e is None else Call("mul", (base, e))

        out.append(_Source("ratio", y / f, lambda lin: f * lin, ratio, np.abs(f)))
    return out


# --------------------------------------------------------------------------------------------------
# PowerLawAgent
# --------------------------------------------------------------------------------------------------


def _round_exponent(p: float, max_den: int) -> Fraction:
    """The closest ``a/q`` with ``q <= max_den`` (smaller ``q`` wins ties within 1e-9)."""
    best = Fraction(round(p))
    for q in range(2, max_den + 1):
        f = Fraction(round(p * q), q)
        if abs(float(f) - p) < abs(float(best) - p) - 1e-9:
            best = f
    return best


class _PowerFeature(NamedTuple):
    var: int
    kind: str  # "log" (power), "lin" (exp(c*x)), "inv" (exp(c/x)), "sq" (exp(c*x^2))
    col: np.ndarray


def _power_features(X: np.ndarray, kinds: Sequence[str]) -> list[_PowerFeature]:
    out = []
    for j in range(X.shape[1]):
        x = X[:, j]
        a = np.abs(x)
        if float(np.ptp(x)) == 0.0:
            continue
        nonzero = float(a.min()) > 1e-6 * float(a.max())
        for kind in kinds:
            if kind == "log" and nonzero:
                out.append(_PowerFeature(j, kind, np.log(a)))
            elif kind == "lin":
                out.append(_PowerFeature(j, kind, x))
            elif kind == "inv" and _away_from_zero(x):
                out.append(_PowerFeature(j, kind, 1.0 / x))
            elif kind == "sq":
                out.append(_PowerFeature(j, kind, x * x))
    return out


def _power_skeletons(
    feats: Sequence[_PowerFeature], coefs: np.ndarray, X: np.ndarray, syms: Sequence[Any], max_den: int,
    *, c_start: int, offset: bool, free: bool,
) -> Any:
    """``c*prod|x_j|**p_j*exp(sum c_k e_k)`` (SymPy) from log-space coefficients; ``None`` if trivial."""
    c = _constants(32, c_start)
    ci = 1
    power: Any = sympy.Integer(1)
    arg: Any = sympy.Integer(0)
    for f, b in zip(feats, coefs):
        x = syms[f.var]
        if f.kind == "log":
            if free:
                power = power * x ** c[ci]
                ci += 1
                continue
            integer_only = not bool(np.all(X[:, f.var] > 0))
            p = Fraction(round(float(b))) if integer_only else _round_exponent(float(b), max_den)
            if abs(p) > _MAX_EXPONENT:
                return None  # not a physical power law; the free-exponent variant covers the rest
            if p != 0:
                power = power * x ** sympy.Rational(p.numerator, p.denominator)
        else:
            e = {"lin": x, "inv": 1 / x, "sq": x**2}[f.kind]
            arg = arg + c[ci] * e
            ci += 1
    if power == 1 and arg == 0:
        return None
    out = c[0] * power * (sympy.exp(arg) if arg != 0 else 1)
    if offset:
        out = out + c[ci]
    return out


def _log_mse(
    feats: Sequence[_PowerFeature], coefs: np.ndarray, X: np.ndarray, t: np.ndarray, max_den: int
) -> float:
    """Log-space MSE with the power exponents rounded and the intercept and exp-coefficients refitted."""
    fixed = np.zeros_like(t)
    cols = [np.ones_like(t)]
    for f, b in zip(feats, coefs):
        if f.kind == "log":
            integer_only = not bool(np.all(X[:, f.var] > 0))
            p = round(float(b)) if integer_only else float(_round_exponent(float(b), max_den))
            fixed = fixed + p * f.col
        else:
            cols.append(f.col)
    _, rss = _lstsq(np.stack(cols, axis=1), t - fixed)
    return rss / t.shape[0]


def _power_law(
    X: np.ndarray, z: np.ndarray, syms: Sequence[Any], names: Sequence[str], grammar, *, kinds: Sequence[str],
    k_max: int, beam: int, max_den: int, wrap: Callable[[Any], AbstractExpr | None], per_source: int,
    c_start: int = 0, free: bool = True, offsets: int = 2, perturb: int = 0,
    rng: np.random.Generator | None = None, seen: frozenset[str] = frozenset(),
) -> list[_Candidate]:
    """Power-law skeletons for ``z`` (log-linear regression of ``log|z|``) not in ``seen``, best first."""
    nz = np.abs(z) > 1e-12 * float(np.max(np.abs(z))) if z.size else np.zeros(0, bool)
    if nz.sum() < max(8, X.shape[1] + 2) or not np.all(np.isfinite(z)):
        return []
    Xr, t = X[nz], np.log(np.abs(z[nz]))
    feats = _power_features(Xr, kinds)
    if not feats:
        return []
    F = np.stack([f.col for f in feats], axis=1)
    Fc = F - F.mean(axis=0)
    norms = np.linalg.norm(Fc, axis=0)
    ok = norms > 1e-12 * max(float(norms.max()), 1e-300)
    feats = [f for f, o in zip(feats, ok) if o]
    F, Fc, norms = F[:, ok], Fc[:, ok] / norms[ok], norms[ok]
    tc = t - t.mean()
    supports = _supports(Fc, tc, k_max=min(k_max, len(feats)), beam=beam, branch=beam)
    ones = np.ones_like(t)
    scored = []
    for S in supports:
        sub = [feats[i] for i in S]
        coef, _ = _lstsq(np.stack([ones] + [f.col for f in sub], axis=1), t)
        for den in sorted({1, max_den}):
            mse = _log_mse(sub, coef[1:], Xr, t, den)
            cost = sum(3 if f.kind == "log" else 4 for f in sub)
            scored.append((t.shape[0] * math.log(mse / max(float(np.var(t)), 1e-300) + 1e-14)
                           + len(S) * math.log(t.shape[0]) + 0.5 * cost, sub, coef[1:], den))
    scored.sort(key=lambda s: s[0])
    if perturb and rng is not None and scored:
        _, sub, coef, den = scored[0]
        logs = [i for i, f in enumerate(sub) if f.kind == "log"]
        for _ in range(perturb if logs else 0):
            i = int(rng.choice(logs))
            new = coef.copy()
            new[i] = float(_round_exponent(float(coef[i]), den)) + float(rng.choice([-1.0, -0.5, 0.5, 1.0]))
            scored.append((scored[-1][0] + 1.0, sub, new, den))
    out: list[_Candidate] = []
    taken: set[str] = set(seen)
    n_off = n_free = 0
    for score, sub, coef, den in scored:
        if len(out) >= per_source:
            break
        variants = [(False, False)]
        if n_off < offsets:
            variants.append((True, False))
        if free and n_free < 1 and any(f.kind == "log" for f in sub):
            variants.append((False, True))
        for off, fr in variants:
            e = _power_skeletons(sub, coef, Xr, syms, den, c_start=c_start, offset=off, free=fr)
            if e is None:
                continue
            expr = wrap(e)
            if expr is None:
                continue
            key = _key(expr, names, grammar)
            if key is None or key in taken:
                continue
            taken.add(key)
            n_off += off
            n_free += fr
            out.append(_Candidate(score + (1.0 if off or fr else 0.0), key, expr))
    return sorted(out, key=lambda c: c.score)


class PowerLawAgent(AbstractAgent):
    """Power laws from log-linear regression: ``y = c0 * prod x_i**p_i * exp(...)``.

    ``log|y|`` is regressed on ``log|x_i|`` (the power part) and on ``x_i``, ``1/x_i`` and ``x_i**2``
    (exponential factors ``exp(c*x)``, ``exp(c/x)``, ``exp(c*x**2)``) with the beam search of
    :class:`SparseRegressionAgent` over centred features (the intercept is ``log|c0|``). Exponents are
    rounded to the closest ``a/q`` with ``q <= max_denominator`` and to integers (two rounding
    variants), the log-space error refitted with them fixed, and the supports ranked by BIC. Each gives
    ``c0*prod x_i**p_i*exp(c1*e_1 + ...)``; the best ones also with an offset (``... + c_k``) and with
    free exponents (``c0*prod x_i**c_i``, for the fitter). Rows with ``y == 0`` are ignored; variables
    that change sign get integer exponents only. From round 1: perturbed exponents of the best power
    law (key-drawn), and power-law corrections of the global best, ``f * c_k*prod x_i**p_i`` (from
    ``y/f``) and ``f + c_k*prod x_i**p_i`` (from the residual).

    Attributes:
        name: agent name.
        n_candidates: skeletons per round at most.
        max_denominator: largest denominator of a rounded exponent.
        max_factors: largest number of features in a power law.
        beam: supports kept per size in the beam search.

    Example:
        >>> import numpy as np, jax
        >>> from symbolic import discovery as d
        >>> from symbolic.discovery._agent import Context
        >>> from symbolic.discovery._agents_regression import PowerLawAgent
        >>> X = np.random.default_rng(0).uniform(1.0, 3.0, (100, 2))
        >>> ctx = Context(X=X, y=2.0 * X[:, 0] ** 1.5 / X[:, 1], variables=("a", "b"),
        ...               grammar=d.default_grammar())
        >>> agent = PowerLawAgent()
        >>> cands, _ = agent.propose(ctx, agent.init(ctx, key=jax.random.key(0)), key=jax.random.key(1))
        >>> d.to_sympy(cands[0], ["a", "b"])
        a**(3/2)*c0/b
    """

    name: str = eqx.field(static=True, default="power_law")
    n_candidates: int = eqx.field(static=True, default=12)
    max_denominator: int = eqx.field(static=True, default=3)
    max_factors: int = eqx.field(static=True, default=6)
    beam: int = eqx.field(static=True, default=6)

    def __check_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty str, got {self.name!r}")
        for field in ("n_candidates", "max_denominator", "max_factors", "beam"):
            _check_pos_int(getattr(self, field), field)

    def init(self, context: Context, *, key: Any) -> _RoundState:
        return _RoundState(0, frozenset())

    def propose(
        self, context: Context, state: _RoundState, *, key: Any
    ) -> tuple[list[AbstractExpr], _RoundState]:
        rng = _rng(key)
        X, y = context.X, context.y
        names, grammar = context.variables, context.grammar
        syms = [sympy.Symbol(n) for n in names]
        kinds = ["log", "lin", "inv", "sq"] if "exp" in grammar.names else ["log"]
        opts = dict(kinds=kinds, k_max=self.max_factors, beam=self.beam, max_den=self.max_denominator,
                    per_source=self.n_candidates, seen=state.seen)

        def direct(e):
            return _convert(e, names, grammar)

        groups = _group(_power_law(X, y, syms, names, grammar, wrap=direct,
                                   perturb=4 if state.round > 0 else 0, rng=rng, **opts))
        best, r = context.global_best, context.residual
        if best is not None and r is not None and r.shape == y.shape and np.all(np.isfinite(r)):
            base = _best_skeleton(best)
            k = n_constants(base)
            f = y - r

            def times(e):
                g = _convert(e, names, grammar)
                return None if g is None else Call("mul", (base, g))

            def plus(e):
                g = _convert(e, names, grammar)
                return None if g is None else Call("add", (base, g))

            if _away_from_zero(f):
                groups += _group(_power_law(X, y / f, syms, names, grammar, wrap=times, c_start=k,
                                            free=False, offsets=0, **opts))
            if float(np.var(r)) > 1e-28 * float(np.var(y)):
                groups += _group(_power_law(X, r, syms, names, grammar, wrap=plus, c_start=k,
                                            free=False, offsets=0, **opts))
        picked = _merge(groups, state.seen, self.n_candidates)
        return [c.expr for c in picked], _RoundState(state.round + 1, state.seen | {c.key for c in picked})


# --------------------------------------------------------------------------------------------------
# DimensionalAgent
# --------------------------------------------------------------------------------------------------


def _rational(v: float) -> sympy.Rational:
    f = Fraction(v).limit_denominator(12)
    return sympy.Rational(f.numerator, f.denominator)


def _integer_vector(v: Sequence[Any]) -> tuple[int, ...]:
    """Scale a rational vector to coprime integers with a positive first non-zero entry."""
    den = math.lcm(*[int(sympy.Rational(x).q) for x in v])
    ints = [int(sympy.Rational(x) * den) for x in v]
    g = math.gcd(*ints) or 1
    ints = [i // g for i in ints]
    first = next((i for i in ints if i != 0), 1)
    return tuple(-i for i in ints) if first < 0 else tuple(ints)


def _reduce_basis(basis: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Shorten a lattice basis greedily (replace ``b_i`` by ``b_i +- b_j`` while the L1 norm drops)."""
    basis = [list(b) for b in basis]
    changed = True
    while changed:
        changed = False
        for i, j in itertools.permutations(range(len(basis)), 2):
            for s in (1, -1):
                cand = [a + s * b for a, b in zip(basis[i], basis[j])]
                if 0 < sum(map(abs, cand)) < sum(map(abs, basis[i])):
                    basis[i] = cand
                    changed = True
    return [_integer_vector([sympy.Integer(x) for x in b]) for b in basis]


def _dimensional_analysis(
    units: Sequence[Sequence[float]], n_vars: int
) -> tuple[list[tuple], list[tuple[int, ...]]] | None:
    """Monomials with the target's dimension (``p0 + N k`` for small integer ``k``) and a short integer
    basis of the dimensionless groups; ``None`` when no monomial has the target's dimension."""
    D = sympy.Matrix([[_rational(units[i][b]) for i in range(n_vars)] for b in range(len(units[0]))])
    u = sympy.Matrix([_rational(units[n_vars][b]) for b in range(len(units[0]))])
    try:
        sol, params = D.gauss_jordan_solve(u)
    except ValueError:
        return None
    p0 = sol.subs({s: 0 for s in params})
    null = [_integer_vector(list(v)) for v in D.nullspace()]
    basis = _reduce_basis(null) if null else []
    span = 2 if len(basis) <= 3 else (1 if len(basis) <= 6 else 0)
    monos = []
    for ks in itertools.product(range(-span, span + 1), repeat=len(basis)):
        p = [p0[i] + sum(k * b[i] for k, b in zip(ks, basis)) for i in range(n_vars)]
        if all(sympy.Rational(x).q <= 2 for x in p):
            monos.append(tuple(sympy.Rational(x) for x in p))
    return monos, basis


def _mono_col(X: np.ndarray, p: Sequence[Any]) -> np.ndarray | None:
    col = np.ones(X.shape[0])
    for j, q in enumerate(p):
        if q == 0:
            continue
        x = X[:, j]
        if sympy.Rational(q).q != 1 and np.any(x < 0):
            return None
        with np.errstate(all="ignore"):
            col = col * x ** float(q)
    return col if np.all(np.isfinite(col)) and np.all(col != 0) else None


class DimensionalAgent(AbstractAgent):
    """Dimensional analysis (Buckingham pi): ``y = c0 * m(x) * g(pi_1, ..., pi_k)``.

    With ``context.units`` (dimension exponents per variable, the target's last) it solves ``D p =
    u_y`` for monomials ``m = prod x_i**p_i`` with the target's dimension (half-integer exponents at
    most; among ``p0 + N k`` the ``n_monomials`` simplest, ranked by how constant ``log|y/m|`` is) and
    takes a short integer basis ``N`` of the dimensionless groups ``pi_j``. It proposes ``c0*m``; for
    each ``pi_j`` and each unary ``g`` of the grammar in ``exp, sin, cos, tanh``: ``c0*m*g(c1*pi_j)``,
    and ``c0*m*pi_j**c1``, ``c0*m/(1 + c1*pi_j)``; and the sparse regressions of ``y/m`` (and its
    transforms) on a library over the ``pi_j`` (as :class:`SparseRegressionAgent`, level by round),
    multiplied back by ``m``. Proposes nothing when ``units`` is ``None`` or no monomial has the
    target's dimension (a dimensional constant is missing).

    Attributes:
        name: agent name.
        n_candidates: skeletons per round at most.
        n_monomials: dimensionally consistent monomials used.
        max_terms: largest support size of the regressions over the groups.
        max_degree: largest ``sum|p_i|`` of the groups' monomials.
        functions: unary functions the group library may use.

    Example:
        >>> import numpy as np, jax
        >>> from symbolic import discovery as d
        >>> from symbolic.discovery._agent import Context
        >>> from symbolic.discovery._agents_regression import DimensionalAgent
        >>> X = np.random.default_rng(0).uniform(1.0, 3.0, (100, 3))  # m [kg], v [m/s], r [m]
        >>> units = ((1, 0, 0), (0, 1, -1), (0, 1, 0), (1, 1, -2))  # (kg, m, s); force last
        >>> ctx = Context(X=X, y=X[:, 0] * X[:, 1] ** 2 / X[:, 2], variables=("m", "v", "r"),
        ...               grammar=d.default_grammar(), units=units)
        >>> agent = DimensionalAgent()
        >>> cands, _ = agent.propose(ctx, agent.init(ctx, key=jax.random.key(0)), key=jax.random.key(1))
        >>> d.to_sympy(cands[0], ["m", "v", "r"])
        c0*m*v**2/r
    """

    name: str = eqx.field(static=True, default="dimensional")
    n_candidates: int = eqx.field(static=True, default=12)
    n_monomials: int = eqx.field(static=True, default=2)
    max_terms: int = eqx.field(static=True, default=4)
    max_degree: int = eqx.field(static=True, default=2)
    functions: tuple[str, ...] = eqx.field(static=True, default=_DEFAULT_FUNCTIONS)

    def __check_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty str, got {self.name!r}")
        for field in ("n_candidates", "n_monomials", "max_terms", "max_degree"):
            _check_pos_int(getattr(self, field), field)
        _check_functions(self.functions)

    def init(self, context: Context, *, key: Any) -> _RoundState:
        return _RoundState(0, frozenset())

    def propose(
        self, context: Context, state: _RoundState, *, key: Any
    ) -> tuple[list[AbstractExpr], _RoundState]:
        nxt = state._replace(round=state.round + 1)
        units = context.units
        X, y = context.X, context.y
        n_vars = X.shape[1]
        if units is None or len(units) != n_vars + 1 or len({len(u) for u in units}) != 1:
            return [], nxt
        rng = _rng(key)
        names, grammar = context.variables, context.grammar
        syms = [sympy.Symbol(n) for n in names]
        found = _dimensional_analysis(units, n_vars)
        if found is None:
            return [], nxt
        monos, basis = found
        ranked = []
        for p in monos:
            col = _mono_col(X, p)
            if col is None:
                continue
            z = y / col
            spread = float(np.var(np.log(np.abs(z)))) if np.all(z != 0) else math.inf
            ranked.append((spread + 1e-3 * sum(abs(float(q)) for q in p), p, col))
        ranked.sort(key=lambda t: t[0])
        pis = []
        for b in basis:
            col = _mono_col(X, b)
            if col is not None and float(np.ptp(col)) > 1e-12 * float(np.max(np.abs(col))):
                pis.append((sympy.Mul(*[s**q for s, q in zip(syms, b)]), col))
        c0, c1 = sympy.symbols("c0 c1")
        groups: list[_Group] = []
        fixed: list[_Candidate] = []
        for rank, (_, p, col) in enumerate(ranked[: self.n_monomials]):
            m = sympy.Mul(*[s**q for s, q in zip(syms, p)])
            forms = [c0 * m]
            for pi, _ in pis:
                forms += [c0 * m * pi**c1, c0 * m / (1 + c1 * pi)]
                forms += [c0 * m * _FUNCTIONS[g][1](c1 * pi) for g in ("exp", "sin", "cos", "tanh")
                          if g in grammar.names]
            for i, fm in enumerate(forms):
                e = _convert(fm, names, grammar)
                k = _key(e, names, grammar) if e is not None else None
                if k is not None and k not in state.seen:
                    fixed.append(_Candidate(i + 0.1 * rank, k, e))
            if pis:
                vs = [_Var(pi, pc, 3) for pi, pc in pis]
                terms = _build_library(vs, level=min(state.round, 1), max_degree=self.max_degree,
                                       functions=_grammar_functions(self.functions, grammar),
                                       max_terms=300, rng=rng)
                sources = _target_sources(y, m, col)
                groups += _regress(y, sources, terms, rows=_rows(X.shape[0], 400, rng), names=names,
                                   grammar=grammar, k_max=self.max_terms, beam=4, branch=4, seen=state.seen)
        # the fixed forms first (plain monomials lead), then the regressions, taking turns
        fixed.sort(key=lambda c: c.score)
        n_fixed = min(len(fixed), max(1, self.n_candidates // 2)) if groups else len(fixed)
        picked = _merge(_group(fixed[:n_fixed]), state.seen, self.n_candidates)
        picked += _merge(groups, state.seen | {c.key for c in picked}, self.n_candidates - len(picked))
        return [c.expr for c in picked], _RoundState(state.round + 1, state.seen | {c.key for c in picked})
