"""Search-family agents of the MCI collective: bottom-up enumeration with semantic de-duplication,
genetic programming, and separability tests.

Na & Park (2026), "Machine Collective Intelligence": some agents of the collective *search* expression
space rather than regress. The agents here return skeletons (constants ``c0, c1, ...`` free) and leave
the final constants to :func:`~symbolic.discovery.fit_constants`; what they compute themselves is only
cheap and approximate, to decide which skeletons are worth the collective's fitting time.

* :class:`EnumerationAgent`: all small *terms* ``g`` over the grammar's operators, the variables and
  constants placed where they are not redundant (one scale ``c*t`` or ``c/t``, one shift ``t + c``,
  an exponent ``t**c``; never ``c1*c2*t``, ``exp(t + c)``, ``sqrt(c*t)``, ``log(c*t)``), built bottom-up
  by increasing complexity with *observational equivalence* (Udupa et al. 2013; Albarghouthi et al.
  2013): each new term is evaluated on probe rows of the data (constants at deterministic generic
  values derived from the meaning of their argument, so that ``c*(x*y)`` and ``c*(y*x)`` get the same
  value) and kept only if its values are new. Models are ``c0*g`` or ``c0*g + c1`` and are
  de-duplicated once more *modulo affine maps*, so ``x``, ``c*x``, ``x + c`` and ``2*x`` give one
  model. Models are ranked by a cheap screen (least squares for the scale and offset; inner constants
  from the best of a stratified sample over sign and log-magnitude, then a few Levenberg-Marquardt
  steps, all terms batched in one jitted kernel) and proposed best-first; the cursor over
  constant-bearing terms advances every round. With a global best, part of each round goes to
  ``best + c*g`` and ``best * g`` screened on the residual. Rarely physical functions (``tanh``,
  ``erf``, ``gamma``, ``abs``) count one node more while enumerating; nesting, the number of
  functions per term and the pool size are capped (tractable with 4+ variables).
* :class:`GeneticAgent`: genetic programming (Koza 1992) on the expression trees with constant
  placeholders: subtree, point and constant mutation, subtree crossover, tournament selection,
  (mu + lambda) replacement with semantic de-duplication, and linear scaling (Keijzer 2003: the
  fitness of ``g`` is that of the best ``a*g + b``, a closed-form least-squares fit) plus parsimony.
  The population is evaluated in one jitted kernel per generation; a few Levenberg-Marquardt steps on
  the best individuals' constants stand in for constant optimisation. The population starts from
  small physical building blocks (``f(x)``, ``f(c*x)``, ``f(c*x**2)``, ``f(c/x)``, ``x*y``, ``x/y``)
  and random trees, and is seeded with the collective's archive and global best. Each round proposes
  its best distinct individuals, constants folded and the top-level scale and offset made explicit.
* :class:`SeparabilityAgent` (AI Feynman, Udrescu & Tegmark 2020, one level deep): additive and
  multiplicative separability tests on a kernel-ridge surrogate of the data; for each separable split
  the part functions are read off the surrogate, small skeletons for each are ranked with the
  enumeration's pool and screen, and the best are combined (``c0*g + c1*h``, ``c0*g*h``). It trusts
  the surrogate only when its validation error is small, and otherwise proposes nothing.

Every agent is deterministic given its PRNG key: probe rows, samples and the genetic operators are
drawn from a NumPy generator seeded from the key. Internally the genetic agent and the screens work
on light tuple trees compiled straight to the evaluator's postfix tokens (building and walking
equinox Modules is ~100x slower and dominated a generation); skeletons are returned as expressions.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy

import sciml.backend as B

from ._agent import AbstractAgent, Context, Hypothesis
from ._expr import AbstractExpr, Call, Const, Literal, Var, shift_constants
from ._grammar import BUILTIN_OPERATORS, Grammar, Operator
from ._program import CONST, LIT, N_SPECIAL, VAR, Program, evaluate_batch

__all__ = ["EnumerationAgent", "GeneticAgent", "SeparabilityAgent"]

# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------

_NP_FUNCS = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "pow": np.power,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "abs": np.abs,
}
_COMMUTATIVE = ("add", "mul")
_APPLY_BLOCK = 1 << 14
_NMSE_FLOOR = 1e-15


def _rng(key: Any) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key (all randomness of the agents comes from it)."""
    B._check_key(key, "key")
    bits = np.asarray(jax.random.bits(key, (4,), jnp.uint32))
    return np.random.default_rng([int(b) for b in bits])


@eqx.filter_jit
def _jax_apply(op: Operator, *xs):
    return jax.vmap(op.jax_fn)(*xs)


def _apply(op: Operator, *xs: np.ndarray) -> np.ndarray:
    """``op`` elementwise on float64 arrays: NumPy for the built-ins, the JAX definition otherwise.

    JAX calls are flattened and padded to a power of two, so a handful of shapes is compiled.
    """
    fn = _NP_FUNCS.get(op.name) if op in BUILTIN_OPERATORS else None
    if fn is not None:
        with np.errstate(all="ignore"):
            return fn(*xs)
    shape = np.broadcast_shapes(*(np.shape(x) for x in xs))
    flat = [np.broadcast_to(x, shape).ravel() for x in xs]
    n = flat[0].size
    block = _APPLY_BLOCK  # one shape: one compilation per operator
    out = np.empty(n)
    with B.precision("float64"):
        for s in range(0, n, block):
            args = [jnp.asarray(np.pad(f[s : s + block], (0, max(0, s + block - n)), constant_values=1.0))
                    for f in flat]
            out[s : s + block] = np.asarray(_jax_apply(op, *args), np.float64)[: min(block, n - s)]
    return out.reshape(shape)


def _unit_hashes(keys: list[bytes]) -> np.ndarray:
    """Two deterministic numbers in ``[0, 1)`` per key (hashlib: stable across processes)."""
    out = np.empty((len(keys), 2))
    for i, k in enumerate(keys):
        d = hashlib.blake2b(k, digest_size=16).digest()
        out[i, 0] = int.from_bytes(d[:8], "little") / 2.0**64
        out[i, 1] = int.from_bytes(d[8:], "little") / 2.0**64
    return out


def _exact_keys(V: np.ndarray) -> list[bytes]:
    """Values rounded to 9 significant digits (relative to each row's largest magnitude), as bytes."""
    s = np.max(np.abs(V), axis=1)
    e = np.floor(np.log10(np.where(s > 0, s, 1.0)))
    q = np.rint(V / 10.0 ** e[:, None] * 1e9).astype(np.int64)
    return [bytes([int(ei) & 0xFF]) + row.tobytes() for ei, row in zip(e, q)]


def _affine_keys(V: np.ndarray) -> list[bytes]:
    """Keys equal for rows equal up to ``a*v + b`` (standardised, sign fixed by the largest entry)."""
    with np.errstate(all="ignore"):
        Z = V - V.mean(axis=1, keepdims=True)
        sd = np.sqrt(np.mean(Z * Z, axis=1, keepdims=True))
        Z = Z / np.where(sd > 0, sd, 1.0)
        Z = np.where(np.isfinite(Z), Z, 0.0)
        pick = np.argmax(np.abs(Z) - 1e-7 * np.arange(Z.shape[1]), axis=1)
        Z = Z * np.sign(Z[np.arange(Z.shape[0]), pick])[:, None]
        q = np.rint(Z * 1e6).astype(np.int64)
    return [row.tobytes() for row in q]


def _ls_nmse(V: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NMSE of the best ``a*v + b`` and of the best ``a*v`` for each row ``v`` of ``V`` (inf if invalid).

    Residuals are formed explicitly (not as ``|y|**2 - (v.y)**2/|v|**2``), so exact fits score near
    1e-30 rather than at the 1e-16 cancellation floor.
    """
    vy = float(np.var(y)) if np.var(y) > 0 else float(np.mean(y * y)) + 1e-300
    with np.errstate(all="ignore"):
        off = np.mean(_project(V, y) ** 2, axis=-1) / vy
        s0 = np.sum(V * V, axis=-1, keepdims=True)
        a0 = np.where(s0 > 0, (V @ y)[..., None] / np.where(s0 > 0, s0, 1.0), 0.0)
        no = np.mean((y - a0 * V) ** 2, axis=-1) / vy
    bad = ~np.all(np.isfinite(V), axis=-1)
    off = np.where(bad | ~np.isfinite(off), np.inf, off)
    no = np.where(bad | ~np.isfinite(no), np.inf, no)
    return off, no


def _renumber(expr: AbstractExpr) -> AbstractExpr:
    """Constants renumbered ``c0, c1, ...`` in pre-order, each occurrence its own constant."""
    counter = [0]

    def go(e: AbstractExpr) -> AbstractExpr:
        if isinstance(e, Const):
            counter[0] += 1
            return Const(counter[0] - 1)
        if isinstance(e, Call):
            return Call(e.op, tuple(go(a) for a in e.args))
        return e

    return go(expr)


def _skey(e: AbstractExpr) -> str:
    """A structural key (constants by index, literals by value)."""
    if isinstance(e, Var):
        return f"x{e.index}"
    if isinstance(e, Const):
        return f"c{e.index}"
    if isinstance(e, Literal):
        return f"<{e.value}>"
    assert isinstance(e, Call)
    return f"{e.op}(" + ",".join(_skey(a) for a in e.args) + ")"


def _check_int(self: Any, name: str, lo: int, hi: int | None = None) -> None:
    v = getattr(self, name)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"`{name}` must be an int {rng}, got {v!r}")


def _check_float(self: Any, name: str, lo: float, hi: float) -> None:
    v = getattr(self, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
        raise ValueError(f"`{name}` must be a number in [{lo}, {hi}], got {v!r}")


def _check_name(self: Any) -> None:
    if not isinstance(self.name, str) or not self.name:
        raise ValueError(f"`name` must be a non-empty str, got {self.name!r}")


def _probe_rows(rng: np.random.Generator, n_rows: int, n: int) -> np.ndarray:
    return np.sort(rng.choice(n_rows, size=min(n, n_rows), replace=False))


def _check_context(context: Any) -> None:
    if not isinstance(context, Context):
        raise TypeError(f"`context` must be a symbolic.discovery Context, got {type(context).__name__}")


# --------------------------------------------------------------------------------------------------
# Enumeration: the term pool (bottom-up, observational equivalence)
# --------------------------------------------------------------------------------------------------

# term kinds
_VAR, _LIT, _UN, _BIN, _SCALE, _RSCALE, _SHIFT, _POWC = range(8)
# unary operators under which a top-level scale (sqrt, log, abs) or shift (exp) is redundant
_SCALE_FREE = ("sqrt", "log", "abs")
_SHIFT_FREE = ("exp",)
# functions rarely seen in physical laws: enumerated one complexity level later
_RARE = ("tanh", "erf", "gamma", "abs")
_MAX_BLOCK = 1 << 19  # candidate values computed at once (rows x probe points <= 2**19 * 64 floats)


class _Pool(NamedTuple):
    """Terms by increasing (complexity, number of constants); children precede parents.

    ``a``/``b`` are child term ids (``a`` is the column for variables); ``cval`` is the probe value of
    the constant a scale/shift/exponent node introduces; ``values`` are the terms on the probe rows.
    """

    kind: np.ndarray
    op: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    size: np.ndarray
    nconst: np.ndarray
    cval: np.ndarray
    values: np.ndarray
    truncated: bool


class _PoolBuilder:
    """Grows a :class:`_Pool` level by level (private, used once per ``init``)."""

    def __init__(self, Xp, grammar: Grammar, max_constants, max_nesting, max_functions, cap: int):
        self.Xp = Xp
        self.P = Xp.shape[0]
        self.grammar = grammar
        self.max_c = max_constants
        self.max_nest = max_nesting
        self.max_fun = max_functions
        self.cap = cap
        self.kind: list[int] = []
        self.op: list[str] = []
        self.a: list[int] = []
        self.b: list[int] = []
        self.size: list[int] = []
        self.nconst: list[int] = []
        self.cval: list[float] = []
        self.nest: list[int] = []
        self.nfun: list[int] = []
        self.u_all = np.zeros((cap + Xp.shape[1] + 1, 2))
        self.v_all = np.zeros((cap + Xp.shape[1] + 1, Xp.shape[0]))
        self.seen: set[bytes] = set()
        self.levels: dict[tuple[int, int], list[int]] = {}
        self.truncated = False
        self.limit = cap  # the share of the cap of the current (level, number of constants) block

    def full(self) -> bool:
        return len(self.kind) >= min(self.cap, self.limit)

    def ids(self, size: int, nc: int) -> np.ndarray:
        return np.asarray(self.levels.get((size, nc), []), np.int64)

    def add_block(self, V, kind, op, a, b, size, nc, cval, nest, nfun) -> None:
        """Admit the new, valid, non-constant rows of ``V`` (metadata arrays align with its rows)."""
        if V.shape[0] == 0 or self.full():
            return
        with np.errstate(all="ignore"):
            amax = np.max(np.abs(V), axis=1)
            ok = np.all(np.isfinite(V), axis=1) & (amax < 1e100)
            ok &= (np.max(V, axis=1) - np.min(V, axis=1)) > 1e-9 * amax
        idx = np.nonzero(ok)[0]
        if idx.size == 0:
            return
        keys = _exact_keys(V[idx])
        new = []
        for j, k in zip(idx, keys):
            if k not in self.seen:
                self.seen.add(k)
                new.append((j, k))
                if len(self.kind) + len(new) >= min(self.cap, self.limit):
                    self.truncated = True
                    break
        if not new:
            return
        rows = np.asarray([j for j, _ in new])
        u = _unit_hashes([k for _, k in new])
        start = len(self.kind)
        n = rows.size
        self.kind += [kind] * n
        self.op += [op] * n
        self.a += np.broadcast_to(a, V.shape[:1])[rows].tolist()
        self.b += np.broadcast_to(b, V.shape[:1])[rows].tolist()
        self.size += [size] * n
        self.nconst += [nc] * n
        self.cval += np.broadcast_to(cval, V.shape[:1])[rows].tolist()
        self.nest += np.broadcast_to(nest, V.shape[:1])[rows].tolist()
        self.nfun += np.broadcast_to(nfun, V.shape[:1])[rows].tolist()
        self.u_all[start : start + n] = u
        self.v_all[start : start + n] = V[rows]
        self.levels.setdefault((size, nc), []).extend(range(start, start + n))

    def finish(self) -> _Pool:
        return _Pool(
            kind=np.asarray(self.kind, np.int8),
            op=tuple(self.op),
            a=np.asarray(self.a, np.int64),
            b=np.asarray(self.b, np.int64),
            size=np.asarray(self.size, np.int64),
            nconst=np.asarray(self.nconst, np.int64),
            cval=np.asarray(self.cval, np.float64),
            values=self.v_all[: len(self.kind)].copy(),
            truncated=self.truncated,
        )

    # -- value access (the pool so far) ---------------------------------------------------------
    def V(self, ids: np.ndarray) -> np.ndarray:
        return self.v_all[ids]

    def U(self, ids: np.ndarray) -> np.ndarray:
        return self.u_all[ids]

    # -- levels ------------------------------------------------------------------------------------
    def leaves(self) -> None:
        for i in range(self.Xp.shape[1]):
            self.add_block(self.Xp[:, i][None], _VAR, "", i, -1, 1, 0, np.nan, 0, 0)
        # the literal 1 (numerator of reciprocals only); added by hand since it is constant
        start = len(self.kind)
        self.kind.append(_LIT)
        self.op.append("")
        self.a.append(-1)
        self.b.append(-1)
        self.size.append(1)
        self.nconst.append(0)
        self.cval.append(np.nan)
        self.nest.append(0)
        self.nfun.append(0)
        self.v_all[start] = 1.0
        self.levels.setdefault((1, 0), []).append(start)
        self.lit = start

    def level(self, k: int) -> None:
        kinds = np.asarray(self.kind)
        nest = np.asarray(self.nest)
        nfun = np.asarray(self.nfun)
        unary = [op for op in self.grammar.operators if op.arity == 1]
        binary = [op for op in self.grammar.operators if op.arity == 2 and op.name != "pow"]
        # products and quotients first: when a level is truncated, they are the likelier laws
        binary.sort(key=lambda op: {"mul": 0, "div": 1, "add": 2, "sub": 3}.get(op.name, 4))
        for nc in range(self.max_c + 1):
            # each number of constants gets its share of what is left of the cap
            self.limit = len(self.kind) + max(1, (self.cap - len(self.kind)) // (self.max_c + 1 - nc))
            # binary operators of two smaller terms
            for op in binary:
                self._binary(op, k, nc, kinds, nest, nfun)
            # unary operators of smaller terms (rarely used functions cost one node more)
            for op in unary:
                t = self.ids(k - (2 if op.name in _RARE and op in BUILTIN_OPERATORS else 1), nc)
                if self.full():
                    break
                if t.size == 0:
                    continue
                c = t[(kinds[t] != _LIT) & (nest[t] < self.max_nest) & (nfun[t] < self.max_fun)]
                if op.name in _SCALE_FREE:
                    c = c[(kinds[c] != _SCALE) & (kinds[c] != _RSCALE)]
                if op.name in _SHIFT_FREE:
                    c = c[kinds[c] != _SHIFT]
                if op.name == "abs" and c.size:
                    v = self.V(c)
                    c = c[(v.min(axis=1) < 0) & (v.max(axis=1) > 0)]
                for s in range(0, c.size, max(1, _MAX_BLOCK // self.P)):
                    cc = c[s : s + max(1, _MAX_BLOCK // self.P)]
                    V = _apply(op, self.V(cc))
                    self.add_block(V, _UN, op.name, cc, -1, k, nc, np.nan, nest[cc] + 1, nfun[cc] + 1)
            if nc >= 1:
                self._constant_forms(k, nc, kinds, nest, nfun)
        self.limit = self.cap

    def _binary(self, op: Operator, k: int, nc: int, kinds, nest, nfun) -> None:
        comm = op.name in _COMMUTATIVE
        for i in range(1, k - 1):
            j = k - 1 - i
            for nca in range(nc + 1):
                ncb = nc - nca
                if comm and (i, nca) > (j, ncb):
                    continue
                A, Bi = self.ids(i, nca), self.ids(j, ncb)
                if A.size == 0 or Bi.size == 0 or self.full():
                    continue
                # the literal 1 only as the numerator of a quotient
                if op.name == "div":
                    Bi = Bi[kinds[Bi] != _LIT]
                else:
                    A, Bi = A[kinds[A] != _LIT], Bi[kinds[Bi] != _LIT]
                scaled = (_SCALE, _RSCALE)
                if op.name in ("mul", "div") or op not in BUILTIN_OPERATORS:
                    # c*a*b is the scale form of a*b; a scale inside a product is redundant
                    A = A[~np.isin(kinds[A], scaled)]
                    Bi = Bi[~np.isin(kinds[Bi], scaled)]
                if op.name in ("add", "sub"):
                    # (a + c) + b is (a + b) + c
                    A = A[kinds[A] != _SHIFT]
                    Bi = Bi[kinds[Bi] != _SHIFT]
                if A.size == 0 or Bi.size == 0:
                    continue
                VB = self.V(Bi)
                step = max(1, _MAX_BLOCK // (Bi.size * self.P))
                for s in range(0, A.size, step):
                    if self.full():
                        return
                    As = A[s : s + step]
                    aa = np.repeat(As, Bi.size)
                    bb = np.tile(Bi, As.size)
                    keep = np.ones(aa.size, bool)
                    if comm and (i, nca) == (j, ncb):
                        keep = aa < bb if op.name == "add" else aa <= bb
                    if not keep.any():
                        continue
                    V = _apply(op, self.V(As)[:, None, :], VB[None, :, :]).reshape(-1, self.P)
                    keep &= nfun[aa] + nfun[bb] <= self.max_fun
                    aa, bb, V = aa[keep], bb[keep], V[keep]
                    nest_ab, nfun_ab = np.maximum(nest[aa], nest[bb]), nfun[aa] + nfun[bb]
                    self.add_block(V, _BIN, op.name, aa, bb, k, nc, np.nan, nest_ab, nfun_ab)

    def _constant_forms(self, k: int, nc: int, kinds, nest, nfun) -> None:
        t = self.ids(k - 2, nc - 1)
        if t.size == 0 or self.full():
            return
        t = t[(kinds[t] != _LIT)]
        plain = t[~np.isin(kinds[t], (_SCALE, _RSCALE, _SHIFT))]
        if plain.size == 0:
            return
        V = self.V(plain)
        U = self.U(plain)
        rms = np.sqrt(np.mean(V * V, axis=1))
        # c*t: the probe constant depends on the meaning of t only (generic, scale-free)
        kap = (0.5 + U[:, 0]) / rms
        self.add_block(kap[:, None] * V, _SCALE, "mul", plain, -1, k, nc, kap, nest[plain], nfun[plain])
        # c/t: the same constant as c*(1/t) would get, so the two are merged
        with np.errstate(all="ignore"):
            R = 1.0 / V
        okr = np.all(np.isfinite(R), axis=1)
        if okr.any():
            pr, R = plain[okr], R[okr]
            ur = _unit_hashes(_exact_keys(R))
            kr = (0.5 + ur[:, 0]) / np.sqrt(np.mean(R * R, axis=1))
            self.add_block(kr[:, None] * R, _RSCALE, "div", pr, -1, k, nc, kr, nest[pr], nfun[pr])
        # t + c: a shift that keeps t + c positive on the probes
        sig = np.maximum(0.0, -V.min(axis=1)) + (0.25 + U[:, 1]) * rms
        self.add_block(V + sig[:, None], _SHIFT, "add", plain, -1, k, nc, sig, nest[plain], nfun[plain])
        # t**c for positive, constant-free t (power laws with a free exponent)
        if "pow" in self.grammar.names:
            # variables only: x**c*y**c' are the power-law family; (1/x)**c or (x*y)**c repeat it
            ok = (kinds[plain] == _VAR) & (V.min(axis=1) > 0) & (nest[plain] < self.max_nest)
            ok &= nfun[plain] < self.max_fun
            pw = plain[ok]
            if pw.size:
                p = 0.5 + self.U(pw)[:, 1]
                with np.errstate(all="ignore"):
                    W = self.V(pw) ** p[:, None]
                self.add_block(W, _POWC, "pow", pw, -1, k, nc, p, nest[pw] + 1, nfun[pw] + 1)


def _build_pool(Xp, grammar, max_complexity, max_constants, max_nesting, max_functions, max_terms) -> _Pool:
    b = _PoolBuilder(Xp, grammar, max_constants, max_nesting, max_functions, max_terms)
    with np.errstate(all="ignore"):  # overflowing or undefined candidates are filtered out
        b.leaves()
        for k in range(2, max_complexity + 1):
            if b.full():
                break
            b.level(k)
    return b.finish()


_ONE = ("l", 1.0, sympy.Integer(1))


def _term_tree(pool: _Pool, t: int) -> tuple[tuple, list[float]]:
    """Pool term ``t`` as a light tree (constants in pre-order) and its probe constant values."""
    vals: list[float] = []

    def go(i: int) -> tuple:
        kd = pool.kind[i]
        if kd == _VAR:
            return ("x", int(pool.a[i]))
        if kd == _LIT:
            return _ONE
        if kd == _UN:
            return (pool.op[i], go(int(pool.a[i])))
        if kd == _BIN:
            left = go(int(pool.a[i]))
            return (pool.op[i], left, go(int(pool.b[i])))
        if kd in (_SCALE, _RSCALE):
            vals.append(float(pool.cval[i]))
            c = ("c", len(vals) - 1)
            return (pool.op[i], c, go(int(pool.a[i])))
        # shift and exponent: the constant follows its argument
        inner = go(int(pool.a[i]))
        vals.append(float(pool.cval[i]))
        return (pool.op[i], inner, ("c", len(vals) - 1))

    return go(t), vals


def _term_expr(pool: _Pool, t: int) -> tuple[AbstractExpr, list[float]]:
    """Pool term ``t`` as an expression and its probe constant values."""
    tree, vals = _term_tree(pool, t)
    return _t_to_expr(tree), vals


def _model(pool: _Pool, t: int, offset: bool) -> AbstractExpr:
    """``c0*g`` (or ``g`` itself when it is a scaled reciprocal ``c/t``), plus ``c_k`` with ``offset``."""
    g, _ = _term_expr(pool, t)
    e = g if pool.kind[t] in (_SCALE, _RSCALE) else Call("mul", (Const(0), g))
    if offset:
        e = Call("add", (e, Const(0)))
    return _renumber(e)


def _model_size(pool: _Pool, t: int, offset: bool) -> int:
    s = int(pool.size[t]) + (0 if pool.kind[t] in (_SCALE, _RSCALE) else 2)
    return s + (2 if offset else 0)


# --------------------------------------------------------------------------------------------------
# Enumeration: screening constant-bearing terms in the jitted evaluator
# --------------------------------------------------------------------------------------------------


def _sample_factors(rng: np.random.Generator, S: int, m: int) -> np.ndarray:
    """``(S, m)`` multipliers ``sign * 10**u`` (``u`` stratified in ``[-2, 2]``); the first row is 1."""
    u = (rng.permuted(np.tile(np.arange(S), (m, 1)), axis=1).T + rng.uniform(size=(S, m))) / S
    sign = np.where(rng.uniform(size=(S, m)) < 0.5, -1.0, 1.0)
    # the first half of the samples positive, the second negative, in the first coordinate
    sign[:, 0] = np.where(np.arange(S) < S // 2, 1.0, -1.0)
    u = (2.0 * u - 1.0) * 2.0
    f = sign * 10.0**u
    f[0] = 1.0
    return f


def _project(V: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Residuals ``y - (a*v + b)`` of the least-squares scale and offset, for every ``v`` (last axis)."""
    with np.errstate(all="ignore"):
        yc = y - y.mean()
        Vc = V - V.mean(axis=-1, keepdims=True)
        sxx = np.sum(Vc * Vc, axis=-1, keepdims=True)
        a = np.where(sxx > 0, (Vc @ yc)[..., None] / np.where(sxx > 0, sxx, 1.0), 0.0)
        return yc - a * Vc


def _screen_terms(pool, terms, Xp, yp, grammar, rng, S, n_c, max_len, chunk, iters=10):
    """Best NMSE of each term's model with and without an offset, its inner constants fitted cheaply.

    The inner constants start from the best of ``S`` samples stratified over sign and log-magnitude
    around their probe values, then ``iters`` Levenberg-Marquardt steps (finite-difference Jacobians
    of the residual after the least-squares scale and offset) run for all terms at once, every
    evaluation batched through the jitted evaluator.
    """
    trees, bases = zip(*(_term_tree(pool, int(t)) for t in terms))
    prog = _t_program(list(trees), grammar, max_len)
    T = len(terms)
    m = np.asarray([len(b) for b in bases])
    active = np.arange(n_c)[None, :] < m[:, None]  # (T, n_c)

    def run(C):  # (T, R, n_c) -> values (T, R, P)
        R = C.shape[1]
        opc, idx, lit = (np.repeat(a, R, axis=0) for a in (prog.opcodes, prog.index, prog.literal))
        C = C.reshape(-1, n_c)
        K = C.shape[0]
        out = np.empty((K, Xp.shape[0]))
        with B.precision("float64"):
            Xj = jnp.asarray(Xp)
            for s in range(0, K, chunk):
                e = min(s + chunk, K)
                rows = np.concatenate([np.arange(s, e), np.full(chunk - (e - s), s)])
                p = Program(opc[rows], idx[rows], lit[rows], grammar)
                out[s:e] = np.asarray(evaluate_batch(p, Xj, jnp.asarray(C[rows])))[: e - s]
        return out.reshape(T, R, -1)

    # stage 1: samples
    C = np.zeros((T, S, n_c))
    for j, base in enumerate(bases):
        C[j, :, : len(base)] = np.asarray(base) * _sample_factors(rng, S, len(base))
    V = run(C)
    with np.errstate(all="ignore"):
        f1 = np.sum(_project(V, yp) ** 2, axis=-1)
    pick = np.argmin(np.where(np.isfinite(f1), f1, np.inf), axis=1)
    # stage 2: Levenberg-Marquardt from the best sample
    _, v_best = _lm_constants(run, C[np.arange(T), pick], V[np.arange(T), pick], active, yp, iters)
    return _ls_nmse(v_best, yp)


def _lm_constants(run, c, v, active, y, iters: int):
    """Levenberg-Marquardt on the constants of ``T`` candidates at once (NumPy, finite differences).

    Minimises ``|y - (a*f(c) + b)|**2`` with ``a, b`` projected out (least squares). ``run(C)`` maps
    ``(T, R, n_c)`` constants to ``(T, R, n_rows)`` values (one jitted batch); each iteration evaluates
    the trial point and its ``n_c`` forward differences. ``c``/``v``: the start and its values;
    ``active``: ``(T, n_c)``, the constants each candidate has. A trial is accepted only if it lowers
    the residual (the first trial is the start itself), as in :func:`~symbolic.discovery.fit_constants`.

    Returns:
        ``(c, v)``: the best constants and their values.
    """
    T, n_c = c.shape
    f = np.full(T, np.inf)
    J = np.zeros((T, y.shape[0], n_c))
    r = _project(v, y)
    lam = np.full(T, 1e-3)
    c_try = c.copy()
    eye = np.eye(n_c)
    for it in range(iters + 1):
        if it > 0:
            h = 1e-6 * np.maximum(np.abs(c_try), 1e-6)
            Ct = np.repeat(c_try[:, None, :], n_c + 1, axis=1)
            Ct[:, 1:, :] += h[:, None, :] * eye[None]
            Vt = run(Ct)
            Rt = _project(Vt, y)
            with np.errstate(all="ignore"):
                ft = np.sum(Rt[:, 0] ** 2, axis=-1)
                Jt = (Rt[:, 1:] - Rt[:, :1]).transpose(0, 2, 1) / h[:, None, :]
            Jt = np.where(active[:, None, :], Jt, 0.0)
            ok = np.isfinite(ft) & (ft < f) & np.all(np.isfinite(Jt), axis=(1, 2))
            c = np.where(ok[:, None], c_try, c)
            f = np.where(ok, ft, f)
            r = np.where(ok[:, None], Rt[:, 0], r)
            J = np.where(ok[:, None, None], Jt, J)
            v = np.where(ok[:, None], Vt[:, 0], v)
            lam = np.where(ok, np.maximum(lam / 3.0, 1e-12), lam * 8.0)
        if it == iters:
            break
        with np.errstate(all="ignore"):
            H = np.einsum("tpi,tpj->tij", J, J)
            g = np.einsum("tpi,tp->ti", J, r)
            d = np.maximum(np.einsum("tii->ti", H), 1e-300)
            A = H + (lam[:, None] * d)[:, :, None] * eye + (~active)[:, :, None] * eye
            step = np.linalg.solve(A, -g[..., None])[..., 0]
        step = np.where(np.isfinite(step) & active, step, 0.0)
        c_try = c + step
    return c, v


def _choose_offset(off: np.ndarray, no: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add an offset only where it clearly helps; the NMSE of the chosen model."""
    use = no > 1.5 * off + 1e-12
    return use, np.where(use, off, no)


def _score(nmse: np.ndarray, size: np.ndarray, parsimony: float) -> np.ndarray:
    return np.log10(np.maximum(nmse, 0.0) + _NMSE_FLOOR) + parsimony * size


# --------------------------------------------------------------------------------------------------
# EnumerationAgent
# --------------------------------------------------------------------------------------------------


class _EnumState(NamedTuple):
    """The enumeration's state: the term pool, the ranked queues and the cursor."""

    pool: _Pool
    rows: np.ndarray  # probe rows (indices into the data)
    free: np.ndarray  # constant-free model terms, best first
    free_off: np.ndarray
    n_free_used: int
    const_terms: np.ndarray  # constant-bearing model terms in enumeration order
    pre_order: np.ndarray  # positions in const_terms by their fit at the probe constants
    cursors: tuple[int, int]  # over const_terms (enumeration order) and pre_order
    screened: np.ndarray  # per position in const_terms
    queue: tuple[np.ndarray, np.ndarray, np.ndarray]  # screened, not yet proposed: (term, offset, score)
    proposed: frozenset[str]


class EnumerationAgent(AbstractAgent):
    """Enumerates small skeletons by increasing complexity, de-duplicated by their values.

    Terms ``g`` are built bottom-up over the grammar (observational equivalence: a term whose values
    on the probe rows equal an earlier term's is dropped, so ``x*y``/``y*x`` or ``x/(x + c)``/
    ``1/(1 + c/x)`` are kept once); models ``c0*g`` and ``c0*g + c1`` are de-duplicated modulo affine
    maps. Constant-free models are ranked at once by the least-squares NMSE of their scale and offset
    on the probe rows. Constant-bearing ones are screened ``screen_per_round`` a round (the cursor:
    half in enumeration order, half in the order of their fit at the probe constants): their inner
    constants start from the best of ``n_samples`` stratified samples and take ``screen_iters``
    Levenberg-Marquardt steps, all terms at once in the jitted evaluator. Models are scored by
    ``log10(NMSE + 1e-15) + parsimony * complexity``. Each round proposes the best unproposed models,
    alternating the two queues, and with a global best also ``best + c*g`` and ``best*g`` for the
    terms that best explain its residual (a quarter of the batch). An offset ``c1`` is added only
    where it lowers the NMSE by a third or more.

    Args:
        name: the agent's name.
        max_complexity: largest term (node count, before the model's scale and offset).
        max_constants: largest number of constants inside a term.
        max_nesting: largest number of nested unary functions (1: ``exp(-x**2)`` but not
            ``exp(sin(x))``).
        max_functions: largest number of unary functions (and free exponents) in a term.
        max_terms: cap on the number of terms (keeps the pool tractable with many variables).
        batch_size: skeletons proposed per round.
        n_probe: probe rows (de-duplication and screening).
        n_samples: samples of the inner constants per screened term.
        screen_per_round: constant-bearing terms screened per round.
        screen_iters: Levenberg-Marquardt steps of the screen's inner-constant fit.
        parsimony: score penalty per node, in decades of NMSE.
        use_best: propose corrections of the global best.

    Raises:
        ValueError: a field out of range (named).

    Example:
        >>> import numpy as np
        >>> from symbolic import discovery as d
        >>> from symbolic.discovery._agents_search import EnumerationAgent
        >>> x = np.linspace(1.0, 3.0, 50)[:, None]
        >>> ctx = d.Context(X=x, y=2.0 * np.exp(-3.0 / x[:, 0]), variables=("x",),
        ...                 grammar=d.default_grammar())
        >>> agent = EnumerationAgent(max_complexity=4, batch_size=4)
        >>> state = agent.init(ctx, key=jax.random.key(0))
        >>> skeletons, state = agent.propose(ctx, state, key=jax.random.key(1))
        >>> "c0*exp(c1/x)" in [str(d.to_sympy(s, ["x"])) for s in skeletons]
        True

    Reference: Na & Park (2026), "Machine Collective Intelligence"; Udupa et al. (2013), TRANSIT.
    """

    name: str = eqx.field(static=True, default="enumeration")
    max_complexity: int = eqx.field(static=True, default=9)
    max_constants: int = eqx.field(static=True, default=2)
    max_nesting: int = eqx.field(static=True, default=1)
    max_functions: int = eqx.field(static=True, default=2)
    max_terms: int = eqx.field(static=True, default=20000)
    batch_size: int = eqx.field(static=True, default=32)
    n_probe: int = eqx.field(static=True, default=64)
    n_samples: int = eqx.field(static=True, default=16)
    screen_per_round: int = eqx.field(static=True, default=256)
    screen_iters: int = eqx.field(static=True, default=10)
    parsimony: float = eqx.field(static=True, default=0.1)
    use_best: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        _check_name(self)
        _check_int(self, "max_complexity", 1, 24)
        _check_int(self, "max_constants", 0, 4)
        _check_int(self, "max_nesting", 0)
        _check_int(self, "max_functions", 0)
        _check_int(self, "max_terms", 1)
        _check_int(self, "batch_size", 1)
        _check_int(self, "n_probe", 4)
        _check_int(self, "n_samples", 2)
        _check_int(self, "screen_per_round", 1)
        _check_int(self, "screen_iters", 0)
        _check_float(self, "parsimony", 0.0, 10.0)
        if not isinstance(self.use_best, bool):
            raise ValueError(f"`use_best` must be a bool, got {self.use_best!r}")

    # the jitted screen: fixed shapes, one compiled kernel per data set
    @property
    def _chunk(self) -> int:
        return 1024

    @property
    def _max_len(self) -> int:
        return max(8, -(-self.max_complexity // 8) * 8)

    def init(self, context: Context, *, key: Any) -> _EnumState:
        _check_context(context)
        rng = _rng(key)
        rows = _probe_rows(rng, context.X.shape[0], self.n_probe)
        Xp = np.asarray(context.X, np.float64)[rows]
        yp = np.asarray(context.y, np.float64)[rows]
        pool = _build_pool(
            Xp, context.grammar, self.max_complexity, self.max_constants, self.max_nesting,
            self.max_functions, self.max_terms,
        )
        # model terms: first of each affine class, in enumeration order
        cand = np.nonzero(pool.kind != _LIT)[0]
        firsts = []
        seen: set[bytes] = set()
        for t, k in zip(cand, _affine_keys(pool.values[cand])):
            if k not in seen:
                seen.add(k)
                firsts.append(t)
        firsts = np.asarray(firsts, np.int64)
        free = firsts[pool.nconst[firsts] == 0]
        const_terms = firsts[pool.nconst[firsts] > 0]
        # a free pre-screen: the fit of each constant-bearing term at its probe constants
        off0, no0 = _ls_nmse(pool.values[const_terms], yp)
        pre = _score(np.minimum(off0, no0), pool.size[const_terms], self.parsimony)
        pre_order = np.argsort(pre, kind="stable")
        off, no = _ls_nmse(pool.values[free], yp)
        use, nmse = _choose_offset(off, no)
        sizes = np.asarray([_model_size(pool, int(t), bool(o)) for t, o in zip(free, use)], np.int64)
        order = np.argsort(_score(nmse, sizes, self.parsimony), kind="stable")
        empty = (np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0))
        screened = np.zeros(const_terms.size, bool)
        return _EnumState(
            pool, rows, free[order], use[order], 0, const_terms, pre_order, (0, 0), screened, empty,
            frozenset(),
        )

    def propose(
        self, context: Context, state: _EnumState, *, key: Any
    ) -> tuple[list[AbstractExpr], _EnumState]:
        _check_context(context)
        rng = _rng(key)
        pool = state.pool
        Xp = np.asarray(context.X, np.float64)[state.rows]
        yp = np.asarray(context.y, np.float64)[state.rows]
        # advance the cursors: screen the next constant-bearing terms, half in enumeration order
        # (small first), half in the order of their fit at the probe constants
        q_t, q_o, q_s = state.queue
        screened = state.screened.copy()
        picks: list[int] = []
        cur = list(state.cursors)
        n_c = state.const_terms.size
        for which, quota in ((0, (self.screen_per_round + 1) // 2), (1, self.screen_per_round)):
            while len(picks) < quota and cur[which] < n_c:
                pos = cur[which] if which == 0 else int(state.pre_order[cur[which]])
                cur[which] += 1
                if not screened[pos]:
                    screened[pos] = True
                    picks.append(pos)
        if picks:
            new = state.const_terms[np.asarray(picks)]
            off, no = _screen_terms(
                pool, new, Xp, yp, context.grammar, rng, self.n_samples, max(1, self.max_constants),
                self._max_len, self._chunk, self.screen_iters,
            )
            use, nmse = _choose_offset(off, no)
            sizes = np.asarray([_model_size(pool, int(t), bool(o)) for t, o in zip(new, use)], np.int64)
            q_t = np.concatenate([q_t, new])
            q_o = np.concatenate([q_o, use])
            q_s = np.concatenate([q_s, _score(nmse, sizes, self.parsimony)])
        order = np.argsort(q_s, kind="stable")
        q_t, q_o, q_s = q_t[order], q_o[order], q_s[order]

        out: list[AbstractExpr] = []
        proposed = set(state.proposed)

        def take(e: AbstractExpr) -> bool:
            k = _skey(e)
            if k in proposed:
                return False
            proposed.add(k)
            out.append(e)
            return True

        # corrections of the global best (a quarter of the batch)
        if self.use_best and context.global_best is not None and context.residual is not None:
            for e in self._best_corrections(context, state, max(1, self.batch_size // 4)):
                if len(out) >= self.batch_size:
                    break
                take(e)
        # alternate the constant-bearing queue (screened) and the constant-free one
        nf, nq = state.n_free_used, 0
        while len(out) < self.batch_size and (nq < q_t.size or nf < state.free.size):
            if nq < q_t.size and (len(out) % 2 == 0 or nf >= state.free.size):
                take(_model(pool, int(q_t[nq]), bool(q_o[nq])))
                nq += 1
            else:
                take(_model(pool, int(state.free[nf]), bool(state.free_off[nf])))
                nf += 1
        queue = (q_t[nq:], q_o[nq:], q_s[nq:])
        state = state._replace(
            n_free_used=nf, cursors=tuple(cur), screened=screened, queue=queue, proposed=frozenset(proposed)
        )
        return out, state

    def _best_corrections(self, context: Context, state: _EnumState, n: int) -> list[AbstractExpr]:
        """``best + c*g`` and ``best * g`` for the constant-free terms that best explain the residual."""
        best: Hypothesis = context.global_best
        pool = state.pool
        r = np.asarray(context.residual, np.float64)[state.rows]
        yp = np.asarray(context.y, np.float64)[state.rows]
        f = yp - r
        terms = state.free
        if terms.size == 0 or not np.all(np.isfinite(r)):
            return []
        V = pool.values[terms]
        vy = float(np.var(yp)) or 1.0
        _, add = _ls_nmse(V, r)  # r ~ a*g
        _, mul = _ls_nmse(V * f, yp)  # y ~ a*f*g
        scale = float(np.var(r)) / vy if np.var(r) > 0 else 1.0
        add = add * scale  # relative to var(y), not var(r)
        size = pool.size[terms]
        sa = _score(np.where(np.isfinite(add), add, np.inf), size, self.parsimony)
        sm = _score(np.where(np.isfinite(mul), mul, np.inf), size, self.parsimony)
        k0 = int(max((e.index for e in _consts(best.expr)), default=-1)) + 1
        out = []
        for t in np.argsort(sa, kind="stable")[: n - n // 2]:
            g, _ = _term_expr(pool, int(terms[t]))
            out.append(Call("add", (best.expr, shift_constants(_renumber(Call("mul", (Const(0), g))), k0))))
        for t in np.argsort(sm, kind="stable")[: n // 2]:
            g, _ = _term_expr(pool, int(terms[t]))
            out.append(Call("mul", (best.expr, g)))
        return out


def _consts(e: AbstractExpr):
    if isinstance(e, Const):
        yield e
    elif isinstance(e, Call):
        for a in e.args:
            yield from _consts(a)


# --------------------------------------------------------------------------------------------------
# Genetic programming: light trees
# --------------------------------------------------------------------------------------------------
# Individuals are nested tuples, not expression Modules (building and walking equinox Modules costs
# ~100x more, and a generation builds thousands of trees): ("x", i) a variable, ("c", i) a constant
# placeholder, ("l", float, sympy number) a literal, (op, child[, child]) an operator call.


def _t_paths(t: tuple, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out = [prefix]
    if t[0] not in ("x", "c", "l"):
        for i, a in enumerate(t[1:]):
            out += _t_paths(a, prefix + (i,))
    return out


def _t_get(t: tuple, path: tuple[int, ...]) -> tuple:
    for i in path:
        t = t[1 + i]
    return t


def _t_set(t: tuple, path: tuple[int, ...], new: tuple) -> tuple:
    if not path:
        return new
    args = list(t[1:])
    args[path[0]] = _t_set(args[path[0]], path[1:], new)
    return (t[0], *args)


def _t_size(t: tuple) -> int:
    if t[0] in ("x", "c", "l"):
        return 1
    return 1 + sum(_t_size(a) for a in t[1:])


def _t_has_var(t: tuple) -> bool:
    if t[0] == "x":
        return True
    return t[0] not in ("c", "l") and any(_t_has_var(a) for a in t[1:])


def _t_compact(t: tuple, values) -> tuple[tuple, np.ndarray]:
    """Constants renumbered in pre-order (one per occurrence), their values carried along."""
    vals: list[float] = []

    def go(x: tuple) -> tuple:
        if x[0] == "c":
            vals.append(float(values[x[1]]))
            return ("c", len(vals) - 1)
        if x[0] in ("x", "l"):
            return x
        return (x[0], *(go(a) for a in x[1:]))

    return go(t), np.asarray(vals, np.float64)


def _t_shift(t: tuple, by: int) -> tuple:
    if t[0] == "c":
        return ("c", t[1] + by)
    if t[0] in ("x", "l"):
        return t
    return (t[0], *(_t_shift(a, by) for a in t[1:]))


def _t_to_expr(t: tuple) -> AbstractExpr:
    if t[0] == "x":
        return Var(t[1])
    if t[0] == "c":
        return Const(t[1])
    if t[0] == "l":
        return Literal(t[2])
    return Call(t[0], tuple(_t_to_expr(a) for a in t[1:]))


def _t_from_expr(e: AbstractExpr) -> tuple:
    if isinstance(e, Var):
        return ("x", e.index)
    if isinstance(e, Const):
        return ("c", e.index)
    if isinstance(e, Literal):
        return ("l", float(e.value), e.value)
    assert isinstance(e, Call)
    return (e.op, *(_t_from_expr(a) for a in e.args))


def _t_postfix(x: tuple, ops: dict[str, int], out: list[tuple[int, int, float]]) -> None:
    if x[0] == "x":
        out.append((VAR, x[1], 0.0))
    elif x[0] == "c":
        out.append((CONST, x[1], 0.0))
    elif x[0] == "l":
        out.append((LIT, 0, x[1]))
    else:
        for a in x[1:]:
            _t_postfix(a, ops, out)
        out.append((ops[x[0]], 0, 0.0))


def _t_program(trees: list[tuple], grammar: Grammar, max_len: int) -> Program:
    """Postfix programs of the trees (the evaluator's token format), built without expression Modules."""
    ops = {n: N_SPECIAL + i for i, n in enumerate(grammar.names)}
    K = len(trees)
    opc = np.zeros((K, max_len), np.int32)
    idx = np.zeros((K, max_len), np.int32)
    lit = np.zeros((K, max_len), np.float64)
    for j, t in enumerate(trees):
        toks: list[tuple[int, int, float]] = []
        _t_postfix(t, ops, toks)
        o, ix, lv = zip(*toks)
        n = len(o)
        opc[j, :n], idx[j, :n], lit[j, :n] = o, ix, lv
    return Program(opc, idx, lit, grammar)


def _t_fold(t: tuple, values, grammar: Grammar) -> tuple[tuple, np.ndarray]:
    """Simplify constants: variable-free subtrees holding a constant become one constant, and the
    constant factors of a product/quotient chain (terms of a sum chain) merge into one."""
    ops = {op.name: op for op in grammar.operators}
    new: list[float] = []

    def const(v: float) -> tuple:
        new.append(v)
        return ("c", len(new) - 1)

    def terms(x: tuple, neg: bool, out: list) -> None:
        if x[0] == "add":
            terms(x[1], neg, out), terms(x[2], neg, out)
        elif x[0] == "sub":
            terms(x[1], neg, out), terms(x[2], not neg, out)
        else:
            out.append((x, neg))

    def go(x: tuple) -> tuple[tuple, float | None, bool]:
        """(folded tree, value if variable-free, whether it holds a constant)."""
        if x[0] == "x":
            return x, None, False
        if x[0] == "c":
            v = float(values[x[1]])
            return const(v), v, True
        if x[0] == "l":
            return x, x[1], False
        parts = [go(a) for a in x[1:]]
        if all(p[1] is not None for p in parts):
            v = float(_apply(ops[x[0]], *(np.asarray([p[1]]) for p in parts))[0])
            if any(p[2] for p in parts):
                return const(v), v, True
            return (x[0], *(p[0] for p in parts)), v, False
        y = (x[0], *(p[0] for p in parts))
        has_c = any(p[2] for p in parts)
        if x[0] in ("mul", "div") and has_c:
            fs: list = []
            _t_factors(y, False, fs)
            cs = [(f, inv) for f, inv in fs if f[0] == "c"]
            if len(cs) >= 2:
                v = 1.0
                for f, inv in cs:
                    v = v / new[f[1]] if inv else v * new[f[1]]
                out = const(v)
                for f, inv in fs:
                    if f[0] != "c":
                        out = ("div" if inv else "mul", out, f)
                return out, None, True
        if x[0] in ("add", "sub") and has_c:
            ts: list = []
            terms(y, False, ts)
            cs = [(f, neg) for f, neg in ts if f[0] == "c"]
            if len(cs) >= 2:
                v = sum(-new[f[1]] if neg else new[f[1]] for f, neg in cs)
                rest = [(f, neg) for f, neg in ts if f[0] != "c"]
                out = rest[0][0] if not rest[0][1] else ("mul", ("l", -1.0, sympy.Integer(-1)), rest[0][0])
                for f, neg in rest[1:]:
                    out = ("sub" if neg else "add", out, f)
                return ("add", out, const(v)), None, True
        return y, None, has_c

    out, _, _ = go(t)
    return _t_compact(out, np.asarray(new, np.float64))


def _t_peel(t: tuple) -> tuple:
    """Strip the top-level scale and shift constants (the model adds its own): ``c1*g/c2 + c3`` -> ``g``.

    A product chain whose only factors left are in the denominator becomes ``c/den`` (a scaled
    reciprocal, used as the model itself).
    """
    leaf = ("c", "l")
    while True:
        if t[0] in ("add", "sub"):
            if t[1][0] in leaf:
                t = t[2]
                continue
            if t[2][0] in leaf:
                t = t[1]
                continue
            return t
        if t[0] in ("mul", "div"):
            fs: list[tuple[tuple, bool]] = []
            _t_factors(t, False, fs)
            keep = [(f, inv) for f, inv in fs if f[0] not in leaf]
            if len(keep) == len(fs):
                return t
            num = [f for f, inv in keep if not inv]
            den = [f for f, inv in keep if inv]
            out = num[0] if num else ("c", 0)
            for f in num[1:]:
                out = ("mul", out, f)
            if den:
                d = den[0]
                for f in den[1:]:
                    d = ("mul", d, f)
                out = ("div", out, d)
            return out
        return t


def _t_factors(x: tuple, inv: bool, out: list) -> None:
    """The factors of a product/quotient chain, each with whether it divides."""
    if x[0] == "mul":
        _t_factors(x[1], inv, out), _t_factors(x[2], inv, out)
    elif x[0] == "div":
        _t_factors(x[1], inv, out), _t_factors(x[2], not inv, out)
    else:
        out.append((x, inv))


def _from_hypothesis(h: Hypothesis) -> tuple[tuple, np.ndarray]:
    c = np.asarray(h.constants, np.float64).reshape(-1)
    n = max((x.index for x in _consts(h.expr)), default=-1) + 1
    if c.size < n:
        c = np.concatenate([c, np.ones(n - c.size)])
    return _t_compact(_t_from_expr(h.expr), c)


# --------------------------------------------------------------------------------------------------
# GeneticAgent
# --------------------------------------------------------------------------------------------------


class _GPState(NamedTuple):
    """The population (trees with constant placeholders and their values) and bookkeeping."""

    rows: np.ndarray  # fitness rows (indices into the data)
    trees: tuple[tuple, ...]
    consts: tuple[np.ndarray, ...]
    fitness: np.ndarray
    keys: tuple[bytes, ...]  # affine-invariant value keys (semantic de-duplication)
    proposed: frozenset[tuple]
    front: tuple[tuple[int, float], ...]  # (complexity, NMSE) of the proposals so far
    seeded: frozenset[tuple]


class GeneticAgent(AbstractAgent):
    """Genetic programming on expression trees with linear scaling and parsimony.

    Fitness of an individual ``g`` (constants at their current values) is
    ``log10(NMSE(a*g + b) + 1e-15) + parsimony * complexity(g)`` on ``n_rows`` training rows, with
    ``a, b`` the closed-form least-squares scale and offset (Keijzer 2003). Each generation draws
    ``population_size`` offspring by tournament selection and subtree crossover or subtree, point or
    constant mutation (plus an eighth of random immigrants), evaluates them in one jitted kernel, and
    keeps the best ``population_size`` of parents and offspring that differ modulo affine maps. Every
    other generation the constants of the best ``population_size / (max_constants + 1)`` individuals
    take a few Levenberg-Marquardt steps (finite differences, batched in the same kernel). The
    collective's archive and global best are injected when they are new. Each round proposes up to
    ``batch_size`` of the best unproposed individuals as skeletons (constants folded, the top-level
    scale and offset replaced by the model's ``c0*g (+ c1)``), only those that improve on the NMSE of
    every simpler skeleton it proposed before (but at least one per round).

    Args:
        name: the agent's name.
        population_size: individuals (and offspring per generation).
        generations: generations per round.
        max_complexity: largest individual (nodes).
        max_constants: largest number of constants of an individual.
        init_depth: depth of random trees.
        batch_size: skeletons proposed per round (at most).
        n_rows: training rows the fitness is computed on.
        tournament_size: individuals per tournament.
        p_crossover: probability of crossover (the rest: subtree, point, constant mutation in the
            proportions ``p_subtree : p_point : 1 - p_crossover - p_subtree - p_point``).
        p_subtree: probability of subtree mutation.
        p_point: probability of point mutation.
        parsimony: fitness penalty per node (decades of NMSE).

    Raises:
        ValueError: a field out of range (named).

    Example:
        >>> import numpy as np
        >>> from symbolic import discovery as d
        >>> from symbolic.discovery._agents_search import GeneticAgent
        >>> x = np.linspace(1.0, 3.0, 50)[:, None]
        >>> ctx = d.Context(X=x, y=x[:, 0] ** 2, variables=("x",), grammar=d.default_grammar())
        >>> agent = GeneticAgent(population_size=64, generations=2, batch_size=4)
        >>> state = agent.init(ctx, key=jax.random.key(0))
        >>> skeletons, state = agent.propose(ctx, state, key=jax.random.key(1))
        >>> 1 <= len(skeletons) <= 4
        True

    Reference: Koza (1992), *Genetic Programming*; Keijzer (2003), "Improving symbolic regression
    with interval arithmetic and linear scaling"; Na & Park (2026), "Machine Collective Intelligence".
    """

    name: str = eqx.field(static=True, default="genetic")
    population_size: int = eqx.field(static=True, default=256)
    generations: int = eqx.field(static=True, default=4)
    max_complexity: int = eqx.field(static=True, default=25)
    max_constants: int = eqx.field(static=True, default=6)
    init_depth: int = eqx.field(static=True, default=3)
    batch_size: int = eqx.field(static=True, default=16)
    n_rows: int = eqx.field(static=True, default=256)
    tournament_size: int = eqx.field(static=True, default=4)
    p_crossover: float = eqx.field(static=True, default=0.4)
    p_subtree: float = eqx.field(static=True, default=0.2)
    p_point: float = eqx.field(static=True, default=0.2)
    parsimony: float = eqx.field(static=True, default=0.02)

    def __check_init__(self):
        _check_name(self)
        _check_int(self, "population_size", 8)
        _check_int(self, "generations", 1)
        _check_int(self, "max_complexity", 3)
        _check_int(self, "max_constants", 0)
        _check_int(self, "init_depth", 1, 8)
        _check_int(self, "batch_size", 1)
        _check_int(self, "n_rows", 4)
        _check_int(self, "tournament_size", 1)
        for f in ("p_crossover", "p_subtree", "p_point"):
            _check_float(self, f, 0.0, 1.0)
        if self.p_crossover + self.p_subtree + self.p_point > 1.0:
            raise ValueError(
                "`p_crossover + p_subtree + p_point` must be <= 1 (the rest is constant mutation), got "
                f"{self.p_crossover + self.p_subtree + self.p_point}"
            )
        _check_float(self, "parsimony", 0.0, 10.0)

    @property
    def _max_len(self) -> int:
        return max(8, -(-self.max_complexity // 8) * 8)

    # -- random material -------------------------------------------------------------------------
    def _rand_const(self, rng: np.random.Generator) -> float:
        return float((1.0 if rng.random() < 0.5 else -1.0) * 10.0 ** rng.uniform(-1.0, 1.0))

    def _tree(self, rng, depth: int, n_vars: int, ops, vals: list[float], full: bool) -> tuple:
        unary, binary = ops
        if depth <= 0 or (not full and rng.random() < 0.3):
            if rng.random() < 0.7:
                return ("x", int(rng.integers(n_vars)))
            vals.append(self._rand_const(rng))
            return ("c", len(vals) - 1)
        if unary and rng.random() < 0.3:
            return (unary[int(rng.integers(len(unary)))], self._tree(rng, depth - 1, n_vars, ops, vals, full))
        common = [b for b in ("add", "sub", "mul", "div") if b in binary]
        pick = common if rng.random() < 0.85 else binary
        op = pick[int(rng.integers(len(pick)))]
        left = self._tree(rng, depth - 1, n_vars, ops, vals, full)
        if op == "pow":  # integer powers, or a free exponent
            if rng.random() < 0.6:
                k = int(rng.choice([2, 3, -1]))
                return ("pow", left, ("l", float(k), sympy.Integer(k)))
            vals.append(float(rng.choice([0.5, 1.5, 2.0, -0.5])))
            return ("pow", left, ("c", len(vals) - 1))
        return (op, left, self._tree(rng, depth - 1, n_vars, ops, vals, full))

    def _simple_individuals(self, rng, n_vars: int, ops) -> list[tuple[tuple, np.ndarray]]:
        """Small physical building blocks: ``u(x)``, ``u(c*x)``, ``u(c*x*x)``, ``u(c/x)`` for each unary
        ``u``, and ``x*y``, ``x/y`` (at most half the population, a random subset if more)."""
        unary, binary = ops
        out = []
        for i in range(n_vars):
            x = ("x", i)
            args = [(x, []), (("mul", ("c", 0), x), [1.0]), (("mul", ("c", 0), ("mul", x, x)), [-1.0])]
            if "div" in binary:
                args.append((("div", ("c", 0), x), [1.0]))
            for u in unary:
                for a, c in args:
                    out.append(((u, a), np.asarray(c, np.float64)))
            for j in range(n_vars):
                for op in ("mul", "div"):
                    if op in binary and (op == "div" or j > i) and j != i:
                        out.append(((op, x, ("x", j)), np.zeros(0)))
        cap = self.population_size // 2
        if len(out) > cap:
            out = [out[k] for k in sorted(rng.choice(len(out), cap, replace=False))]
        return out

    def _random_individual(self, rng, n_vars: int, ops) -> tuple[tuple, np.ndarray]:
        vals: list[float] = []
        depth = int(rng.integers(1, self.init_depth + 1))
        t = self._tree(rng, depth, n_vars, ops, vals, full=bool(rng.random() < 0.5))
        return _t_compact(t, np.asarray(vals))

    # -- variation ---------------------------------------------------------------------------------
    def _mutate_constants(self, rng, t, c):
        if c.size == 0:
            return None
        c = c.copy()
        r = rng.random()
        if r < 0.6:
            c *= np.exp(rng.normal(0.0, float(rng.choice([0.05, 0.3, 1.0])), c.size))
        elif r < 0.8:
            i = int(rng.integers(c.size))
            c[i] = self._rand_const(rng) * (np.abs(c[i]) if rng.random() < 0.5 else 1.0)
        else:
            c[int(rng.integers(c.size))] *= -1.0
        return t, c

    def _point(self, rng, t, c, n_vars, ops):
        unary, binary = ops
        paths = _t_paths(t)
        p = paths[int(rng.integers(len(paths)))]
        node = _t_get(t, p)
        c = c.copy()
        if node[0] == "x":
            new = ("x", int(rng.integers(n_vars)))
        elif node[0] == "c":
            if rng.random() < 0.5:
                new = ("x", int(rng.integers(n_vars)))
            else:
                c[node[1]] = self._rand_const(rng)
                new = node
        elif node[0] == "l":
            c = np.concatenate([c, [node[1]]])
            new = ("c", c.size - 1)
        elif node[0] == "pow":
            return None
        elif len(node) == 2:
            new = (unary[int(rng.integers(len(unary)))], node[1])
        else:
            choices = [b for b in binary if b != "pow"]
            new = (choices[int(rng.integers(len(choices)))], node[1], node[2])
        return _t_compact(_t_set(t, p, new), c)

    def _subtree(self, rng, t, c, n_vars, ops):
        paths = _t_paths(t)
        p = paths[int(rng.integers(len(paths)))]
        vals = list(c)
        sub = self._tree(rng, int(rng.integers(0, 3)), n_vars, ops, vals, full=False)
        return _t_compact(_t_set(t, p, sub), np.asarray(vals))

    def _crossover(self, rng, t, c, d, dc):
        pt, pd = _t_paths(t), _t_paths(d)
        p = pt[int(rng.integers(len(pt)))]
        sub = _t_shift(_t_get(d, pd[int(rng.integers(len(pd)))]), c.size)
        return _t_compact(_t_set(t, p, sub), np.concatenate([c, dc]))

    def _offspring(self, rng, pop, n_vars, ops) -> list[tuple[tuple, np.ndarray]]:
        trees, consts, fit = pop
        n = len(trees)

        def tournament() -> int:
            cand = rng.integers(n, size=self.tournament_size)
            return int(cand[np.argmin(fit[cand])])

        out = []
        n_imm = max(1, self.population_size // 8)
        tries = 0
        while len(out) < self.population_size - n_imm and tries < 20 * self.population_size:
            tries += 1
            i = tournament()
            t, c = trees[i], consts[i]
            r = rng.random()
            if r < self.p_crossover:
                j = tournament()
                child = self._crossover(rng, t, c, trees[j], consts[j])
            elif r < self.p_crossover + self.p_subtree:
                child = self._subtree(rng, t, c, n_vars, ops)
            elif r < self.p_crossover + self.p_subtree + self.p_point:
                child = self._point(rng, t, c, n_vars, ops)
            else:
                child = self._mutate_constants(rng, t, c) or self._point(rng, t, c, n_vars, ops)
            if child is None or child[1].size > self.max_constants or not _t_has_var(child[0]):
                continue
            if _t_size(child[0]) > self.max_complexity:
                continue
            out.append(child)
        while len(out) < self.population_size:
            child = self._random_individual(rng, n_vars, ops)
            if _t_has_var(child[0]) and child[1].size <= self.max_constants:
                out.append(child)
        return out

    # -- evaluation --------------------------------------------------------------------------------
    def _values(self, trees, consts, Xj, grammar) -> np.ndarray:
        """``(len(trees), n_rows)`` values; padded to ``population_size`` programs (one kernel)."""
        K = self.population_size
        n = len(trees)
        out = np.empty((n, Xj.shape[0]))
        m = max(1, self.max_constants)
        for s in range(0, n, K):
            tr = list(trees[s : s + K])
            cs = list(consts[s : s + K])
            k = len(tr)
            tr += [tr[0]] * (K - k)
            cs += [cs[0]] * (K - k)
            prog = _t_program(tr, grammar, self._max_len)
            C = np.zeros((K, m))
            for j, c in enumerate(cs):
                C[j, : c.size] = c
            with B.precision("float64"):
                out[s : s + k] = np.asarray(evaluate_batch(prog, Xj, jnp.asarray(C)))[:k]
        return out

    def _fitness(self, V, yf, trees) -> tuple[np.ndarray, tuple[bytes, ...]]:
        off, _ = _ls_nmse(V, yf)
        size = np.asarray([_t_size(t) for t in trees])
        fit = np.log10(off + _NMSE_FLOOR) + self.parsimony * size
        fit = np.where(np.isfinite(fit), fit, np.inf)
        keys = tuple(_affine_keys(np.where(np.isfinite(V), V, 0.0)))
        return fit, keys

    def _select(self, trees, consts, fit, keys):
        """The best ``population_size`` distinct (modulo affine maps) valid individuals."""
        order = np.argsort(fit, kind="stable")
        seen: set[bytes] = set()
        keep = []
        for i in order:
            if not np.isfinite(fit[i]) or keys[i] in seen:
                continue
            seen.add(keys[i])
            keep.append(int(i))
            if len(keep) >= self.population_size:
                break
        return (
            tuple(trees[i] for i in keep),
            tuple(consts[i] for i in keep),
            fit[keep] if keep else np.zeros(0),
            tuple(keys[i] for i in keep),
        )

    def _tune(self, trees, consts, fit, Xj, yf, grammar, iters: int = 5, idx=None):
        """Levenberg-Marquardt on the constants of the best individuals (scale and offset projected).

        ``idx``: the individuals to tune (default: the best that fit in one batch of the kernel).
        """
        if idx is None:
            idx = [int(i) for i in np.argsort(fit, kind="stable") if consts[i].size]
        else:
            idx = [int(i) for i in idx if consts[i].size]
        if not idx:
            return consts
        m = max(consts[i].size for i in idx[: self.population_size])
        top = idx[: max(1, self.population_size // (m + 1))]
        tt = [trees[i] for i in top]
        C0 = np.zeros((len(top), m))
        for j, i in enumerate(top):
            C0[j, : consts[i].size] = consts[i]
        active = np.arange(m)[None, :] < np.asarray([consts[i].size for i in top])[:, None]

        def run(C):  # (T, R, m) -> (T, R, rows)
            R = C.shape[1]
            flat_t = [t for t in tt for _ in range(R)]
            flat_c = list(C.reshape(-1, m))
            return self._values(flat_t, flat_c, Xj, grammar).reshape(len(tt), R, -1)

        v0 = run(C0[:, None, :])[:, 0]
        c, _ = _lm_constants(run, C0, v0, active, yf, iters)
        consts = list(consts)
        for j, i in enumerate(top):
            consts[i] = c[j, : consts[i].size].copy()
        return tuple(consts)

    # -- protocol ------------------------------------------------------------------------------------
    def _seeds(self, context: Context, seeded: frozenset):
        out, keys = [], set(seeded)
        for h in (context.global_best, context.personal_best, *context.archive):
            if h is None:
                continue
            t, c = _from_hypothesis(h)
            if t in keys or _t_size(t) > self.max_complexity or c.size > self.max_constants:
                continue
            if any(x[0] not in ("x", "c", "l") and x[0] not in context.grammar.names
                   for x in (_t_get(t, p) for p in _t_paths(t))):
                continue
            keys.add(t)
            out.append((t, c))
        return out, frozenset(keys)

    def _setup(self, context: Context, rows):
        ops = (
            [op.name for op in context.grammar.operators if op.arity == 1],
            [op.name for op in context.grammar.operators if op.arity == 2],
        )
        with B.precision("float64"):
            Xj = jnp.asarray(np.asarray(context.X, np.float64)[rows])
        return ops, Xj, np.asarray(context.y, np.float64)[rows], context.X.shape[1]

    def init(self, context: Context, *, key: Any) -> _GPState:
        _check_context(context)
        rng = _rng(key)
        rows = _probe_rows(rng, context.X.shape[0], self.n_rows)
        ops, Xj, yf, n_vars = self._setup(context, rows)
        seeds, seeded = self._seeds(context, frozenset())
        simple = self._simple_individuals(rng, n_vars, ops)
        inds = (seeds + simple)[: self.population_size]
        while len(inds) < self.population_size:
            ind = self._random_individual(rng, n_vars, ops)
            if _t_has_var(ind[0]) and ind[1].size <= self.max_constants:
                inds.append(ind)
        trees = tuple(t for t, _ in inds)
        consts = tuple(c for _, c in inds)
        # fit the building blocks' single constants first, or their structure is judged at c = +-1
        one = [i for i in range(len(inds)) if consts[i].size == 1]
        half = max(1, self.population_size // 2)
        for s in range(0, len(one), half):
            consts = self._tune(trees, consts, None, Xj, yf, context.grammar, idx=one[s : s + half])
        fit, keys = self._fitness(self._values(trees, consts, Xj, context.grammar), yf, trees)
        trees, consts, fit, keys = self._select(trees, consts, fit, keys)
        return _GPState(rows, trees, consts, fit, keys, frozenset(), (), seeded)

    def propose(
        self, context: Context, state: _GPState, *, key: Any
    ) -> tuple[list[AbstractExpr], _GPState]:
        _check_context(context)
        rng = _rng(key)
        g = context.grammar
        ops, Xj, yf, n_vars = self._setup(context, state.rows)
        trees, consts, fit, keys = state.trees, state.consts, state.fitness, state.keys
        seeds, seeded = self._seeds(context, state.seeded)
        for gen in range(self.generations):
            if len(trees) == 0:  # every individual invalid: start again from random ones
                inds = [self._random_individual(rng, n_vars, ops) for _ in range(self.population_size)]
                trees, consts = tuple(t for t, _ in inds), tuple(c for _, c in inds)
                fit, keys = np.full(len(inds), 1e300), tuple(b"%d" % j for j in range(len(inds)))
            kids = self._offspring(rng, (trees, consts, fit), n_vars, ops)
            if gen == 0 and seeds:
                kids = seeds[: self.population_size] + kids[: max(0, self.population_size - len(seeds))]
            kt = tuple(t for t, _ in kids)
            kc = tuple(c for _, c in kids)
            kf, kk = self._fitness(self._values(kt, kc, Xj, g), yf, kt)
            trees, consts, fit, keys = self._select(
                trees + kt, consts + kc, np.concatenate([fit, kf]), keys + kk
            )
            if gen % 2 == 1 and len(trees):
                consts = self._tune(trees, consts, fit, Xj, yf, g)
                fit, keys = self._fitness(self._values(trees, consts, Xj, g), yf, trees)
                trees, consts, fit, keys = self._select(trees, consts, fit, keys)
        out, proposed, front = self._proposals(trees, consts, fit, Xj, yf, g, state.proposed, state.front)
        return out, _GPState(state.rows, trees, consts, fit, keys, proposed, front, seeded)

    def _proposals(self, trees, consts, fit, Xj, yf, grammar, proposed, front):
        """The best distinct individuals as skeletons ``c0*core (+ c1)``, not proposed before."""
        cores, cvals, seen = [], [], set()
        for i in np.argsort(fit, kind="stable"):
            if not np.isfinite(fit[i]):
                break
            t, c = _t_fold(trees[i], consts[i], grammar)
            core = _t_peel(t)
            if not _t_has_var(core):
                continue
            core, c = _t_compact(core, c)  # the core's constants index t's vector
            if core in seen:
                continue
            seen.add(core)
            cores.append(core)
            cvals.append(c)
            if len(cores) >= 4 * self.batch_size:
                break
        if not cores:
            return [], proposed, front
        off, no = _ls_nmse(self._values(cores, cvals, Xj, grammar), yf)
        use, nmse = _choose_offset(off, no)
        out, new, fr = [], set(proposed), list(front)
        for core, o, err in zip(cores, use, nmse):
            scaled = core[0] == "div" and core[1][0] == "c"
            m = core if scaled else ("mul", ("c", 0), core)
            if o:
                m = ("add", m, ("c", 0))
            m, _ = _t_compact(m, np.zeros(self.max_constants + 2))
            if m in new:
                continue
            size = _t_size(m)
            # only skeletons that beat every simpler one proposed before (at least one per round)
            if out and any(s <= size and f <= 0.9 * err for s, f in fr):
                continue
            new.add(m)
            fr.append((size, float(err)))
            out.append(_t_to_expr(m))
            if len(out) >= self.batch_size:
                break
        return out, frozenset(new), tuple(fr)


# --------------------------------------------------------------------------------------------------
# SeparabilityAgent
# --------------------------------------------------------------------------------------------------


def _krr_fit(Xs: np.ndarray, ys: np.ndarray, Xv: np.ndarray, yv: np.ndarray):
    """Gaussian-kernel ridge regression on standardised inputs; bandwidth and ridge by validation.

    Returns ``(predict, relative validation RMSE)``.
    """
    mu, sd = Xs.mean(axis=0), Xs.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    ym, ysd = ys.mean(), ys.std() or 1.0
    Z, Zv = (Xs - mu) / sd, (Xv - mu) / sd
    t = (ys - ym) / ysd

    def kern(A, Bm, ell):
        d2 = np.sum(A * A, 1)[:, None] + np.sum(Bm * Bm, 1)[None, :] - 2.0 * A @ Bm.T
        return np.exp(-np.maximum(d2, 0.0) / (2.0 * ell * ell))

    best = None
    dim = Xs.shape[1]
    for ell in (0.4 * math.sqrt(dim), 0.8 * math.sqrt(dim), 1.6 * math.sqrt(dim)):
        K = kern(Z, Z, ell)
        Kv = kern(Zv, Z, ell)
        for lam in (1e-9, 1e-6, 1e-3):
            with np.errstate(all="ignore"):
                try:
                    alpha = np.linalg.solve(K + lam * np.eye(K.shape[0]), t)
                except np.linalg.LinAlgError:
                    continue
                pv = Kv @ alpha * ysd + ym
                err = float(np.sqrt(np.mean((pv - yv) ** 2)) / (np.std(yv) or 1.0))
            if np.isfinite(err) and (best is None or err < best[0]):
                best = (err, ell, alpha)
    if best is None:
        return None, math.inf
    err, ell, alpha = best

    def predict(Xq: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return kern((Xq - mu) / sd, Z, ell) @ alpha * ysd + ym

    return predict, err


def _partitions(n: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Bipartitions of the variables (all of them up to 5 variables; one against the rest beyond)."""
    if n <= 5:
        out = []
        for mask in range(1, 2 ** (n - 1)):
            A = tuple(i for i in range(n) if (mask >> i) & 1)
            B_ = tuple(i for i in range(n) if not (mask >> i) & 1)
            out.append((A, B_))
        return out
    return [((i,), tuple(j for j in range(n) if j != i)) for i in range(n)]


class _SepState(NamedTuple):
    """The skeletons found from the separability tests, proposed ``batch_size`` at a time."""

    queue: tuple[AbstractExpr, ...]
    cursor: int
    found: tuple[tuple[str, tuple[int, ...], tuple[int, ...], float], ...]  # (kind, A, B, score)


class SeparabilityAgent(AbstractAgent):
    """Tests additive and multiplicative separability on a surrogate and composes sub-skeletons.

    AI Feynman's recursive idea (Udrescu & Tegmark 2020), one level deep: a smooth surrogate ``s``
    (Gaussian-kernel ridge regression, bandwidth and ridge chosen on held-out rows) is fitted to
    ``y``, and one to ``log|y|`` when ``y`` has one sign; a split of the variables into ``A | B`` is
    *additive* when ``s(a1, b1) + s(a2, b2) - s(a1, b2) - s(a2, b1)`` vanishes on pairs of data rows
    (relative to ``std(y)``), *multiplicative* when the same holds for the surrogate of ``log|y|``.
    The test passes when the statistic is below ``tolerance`` plus four times the surrogate's
    validation error. For each passing split the part functions are read off the surrogate
    (``g(a) = mean_b s(a, b)``, or ``exp`` of that for ``log|y|``), small skeletons for each are
    ranked by the enumeration's pool and screen (:class:`EnumerationAgent`'s machinery, on the part's
    variables), and the ``n_parts`` best of each part are combined into ``c0*g + c1*h (+ c2)`` or
    ``c0*g*h``. All skeletons are computed in ``init``; rounds hand them out ``batch_size`` at a time.
    A surrogate that is too inaccurate (relative validation error above ``max_surrogate_error``) is
    not used; with neither, the agent proposes nothing.

    Args:
        name: the agent's name.
        n_rows: rows the surrogate is fitted on.
        n_pairs: row pairs per separability test.
        tolerance: the separability statistic's threshold (added to the surrogate's error).
        max_surrogate_error: relative validation RMSE above which no test is trusted.
        max_complexity: largest part skeleton (nodes).
        n_parts: skeletons kept per part.
        max_splits: separable splits used (best statistic first).
        batch_size: skeletons proposed per round.

    Raises:
        ValueError: a field out of range (named).

    Example:
        >>> import numpy as np
        >>> from symbolic import discovery as d
        >>> from symbolic.discovery._agents_search import SeparabilityAgent
        >>> X = np.random.default_rng(0).uniform(0.5, 2.0, (300, 2))
        >>> ctx = d.Context(X=X, y=np.exp(-X[:, 0]) + X[:, 1] ** 2, variables=("x", "y"),
        ...                 grammar=d.default_grammar())
        >>> state = SeparabilityAgent(n_rows=200).init(ctx, key=jax.random.key(0))
        >>> [(kind, a, b) for kind, a, b, _ in state.found]
        [('add', (0,), (1,))]

    Reference: Udrescu & Tegmark (2020), "AI Feynman: a physics-inspired method for symbolic
    regression"; Na & Park (2026), "Machine Collective Intelligence".
    """

    name: str = eqx.field(static=True, default="separability")
    n_rows: int = eqx.field(static=True, default=300)
    n_pairs: int = eqx.field(static=True, default=256)
    tolerance: float = eqx.field(static=True, default=1e-3)
    max_surrogate_error: float = eqx.field(static=True, default=0.02)
    max_complexity: int = eqx.field(static=True, default=6)
    n_parts: int = eqx.field(static=True, default=3)
    max_splits: int = eqx.field(static=True, default=2)
    batch_size: int = eqx.field(static=True, default=16)

    def __check_init__(self):
        _check_name(self)
        _check_int(self, "n_rows", 16)
        _check_int(self, "n_pairs", 8)
        _check_float(self, "tolerance", 0.0, 1.0)
        _check_float(self, "max_surrogate_error", 0.0, 1.0)
        _check_int(self, "max_complexity", 1, 12)
        _check_int(self, "n_parts", 1)
        _check_int(self, "max_splits", 1)
        _check_int(self, "batch_size", 1)

    def init(self, context: Context, *, key: Any) -> _SepState:
        _check_context(context)
        rng = _rng(key)
        X = np.asarray(context.X, np.float64)
        y = np.asarray(context.y, np.float64)
        n, d = X.shape
        empty = _SepState((), 0, ())
        if d < 2 or n < 32:
            return empty
        perm = rng.permutation(n)
        tr = perm[: min(self.n_rows, n * 2 // 3)]
        va = perm[tr.size : tr.size + max(16, min(self.n_rows // 2, n - tr.size))]
        # two surrogates: of y (additive splits) and, for y of one sign, of log|y| (multiplicative
        # splits are additive in log|y|, and laws such as q1*q2/r**2 are far smoother there)
        sur = {}
        predict, err = _krr_fit(X[tr], y[tr], X[va], y[va])
        if predict is not None and err <= self.max_surrogate_error:
            sur["add"] = (predict, err, float(np.std(y)) or 1.0)
        if np.all(y > 0) or np.all(y < 0):
            ly = np.log(np.abs(y))
            predict, err = _krr_fit(X[tr], ly[tr], X[va], ly[va])
            if predict is not None and err <= self.max_surrogate_error:
                sur["mul"] = (predict, err, float(np.std(ly)) or 1.0)
        if not sur:
            return empty
        # separability statistics on pairs of data rows
        i, j = rng.integers(n, size=self.n_pairs), rng.integers(n, size=self.n_pairs)
        found = []
        for A, Bp in _partitions(d):
            P = np.stack([X[i], X[j], X[i], X[j]])  # (4, pairs, d)
            P[2][:, list(Bp)] = X[j][:, list(Bp)]
            P[3][:, list(Bp)] = X[i][:, list(Bp)]
            for kind, (predict, err, scale) in sur.items():
                s = predict(P.reshape(-1, d)).reshape(4, -1)
                stat = float(np.mean(np.abs(s[0] + s[1] - s[2] - s[3]))) / scale
                if stat < self.tolerance + 4.0 * err:
                    found.append((kind, A, Bp, stat))
        found.sort(key=lambda f: f[3])
        found = found[: self.max_splits]
        queue: list[AbstractExpr] = []
        seen: set[str] = set()
        refs = rng.integers(n, size=16)
        probe = _probe_rows(rng, n, 64)
        for kind, A, Bp, _ in found:
            predict = sur[kind][0]
            parts = []
            for S_, O_ in ((A, Bp), (Bp, A)):
                # the part function on the probe rows: the surrogate averaged over the other variables
                Q = np.repeat(X[probe][:, None, :], refs.size, axis=1)
                Q[:, :, list(O_)] = X[refs][None, :, list(O_)]
                s = predict(Q.reshape(-1, d)).reshape(probe.size, refs.size).mean(axis=1)
                with np.errstate(all="ignore"):
                    target = s if kind == "add" else np.exp(s)
                parts.append(self._best_parts(X[probe][:, list(S_)], target, S_, context.grammar, rng))
            for g in parts[0]:
                for h in parts[1]:
                    if kind == "add":
                        for off in (False, True):
                            e = ("add", ("mul", ("c", 0), g), ("mul", ("c", 0), h))
                            e = ("add", e, ("c", 0)) if off else e
                            queue.append(_renumber(_t_to_expr(e)))
                    else:
                        queue.append(_renumber(_t_to_expr(("mul", ("c", 0), ("mul", g, h)))))
        out = []
        for e in queue:
            k = _skey(e)
            if k not in seen:
                seen.add(k)
                out.append(e)
        return _SepState(tuple(out), 0, tuple(found))

    def _best_parts(self, Xp, target, cols, grammar, rng) -> list[tuple]:
        """The ``n_parts`` best small skeletons (light trees, variables renumbered to ``cols``)."""
        if not np.all(np.isfinite(target)):
            return []
        pool = _build_pool(Xp, grammar, self.max_complexity, 1, 1, 2, 3000)
        cand = np.nonzero(pool.kind != _LIT)[0]
        firsts, seen = [], set()
        for t, k in zip(cand, _affine_keys(pool.values[cand])):
            if k not in seen and pool.kind[t] not in (_SCALE, _SHIFT):
                seen.add(k)
                firsts.append(t)
        firsts = np.asarray(firsts, np.int64)
        off, no = _ls_nmse(pool.values[firsts], target)
        score = _score(np.minimum(off, no), pool.size[firsts], 0.1)
        const = firsts[pool.nconst[firsts] > 0]
        # the constant-bearing terms: the best 64 at their probe constants, screened properly
        if const.size:
            o0, n0 = _ls_nmse(pool.values[const], target)
            top = const[np.argsort(_score(np.minimum(o0, n0), pool.size[const], 0.1), kind="stable")[:64]]
            o1, n1 = _screen_terms(pool, top, Xp, target, grammar, rng, 8, 2, 8, 1024, 6)  # shared kernel
            pos = {int(t): k for k, t in enumerate(firsts)}
            for k, t in enumerate(top):
                score[pos[int(t)]] = _score(np.minimum(o1[k], n1[k]), pool.size[t], 0.1)
        best = firsts[np.argsort(score, kind="stable")[: self.n_parts]]
        out = []
        for t in best:
            tree, _ = _term_tree(pool, int(t))
            out.append(_t_remap(tree, cols))
        return out

    def propose(
        self, context: Context, state: _SepState, *, key: Any
    ) -> tuple[list[AbstractExpr], _SepState]:
        _check_context(context)
        B._check_key(key, "key")
        out = list(state.queue[state.cursor : state.cursor + self.batch_size])
        return out, state._replace(cursor=state.cursor + len(out))


def _t_remap(t: tuple, cols) -> tuple:
    if t[0] == "x":
        return ("x", int(cols[t[1]]))
    if t[0] in ("c", "l"):
        return t
    return (t[0], *(_t_remap(a, cols) for a in t[1:]))
