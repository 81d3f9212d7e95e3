"""Postfix programs and the jitted stack machine that evaluates many candidates in one kernel.

An expression compiles to a postfix program of fixed length ``max_len``: three integer/float token
arrays (opcode, index, literal), padded at the end with no-ops. The evaluator is a ``lax.scan`` over
tokens of a small stack machine whose slots hold one row-vector each; each token runs only its own
operator (``lax.switch`` on an opcode that does not depend on the data), applied with ``jax.vmap`` over
the rows. Candidates go through ``lax.map`` inside the same compiled kernel rather than ``vmap``: a
``vmap`` over candidates batches the opcode and turns the switch into "compute every operator, select
one", which measured 30x slower (0.50 s vs 0.015 s for 2048 candidates x 200 rows on 2 CPU cores).
Since the compiled kernel only sees arrays of shape ``(K, max_len)``, new candidates of the same
``max_len`` (and the same grammar, ``K``, data shape and number of constants) reuse it.

**Pointwise by construction.** Every operator is applied as ``jax.vmap(jax_fn)`` over the rows: it
receives scalars and cannot see other rows, so ``f(X)[perm] == f(X[perm])`` for every
program, and operators that mix rows (``np.gradient`` over a column, cumulative sums, normalisation by
column statistics) cannot be expressed.

Opcodes: 0 = no-op (identity on the top of the stack), 1 = variable ``x[index]``, 2 = constant
``c[index]``, 3 = literal, ``4 + k`` = operator ``k`` of the grammar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._expr import AbstractExpr, Call, Const, Literal, Var, _check_expr
from ._grammar import Grammar, default_grammar
from ._types import BatchConstants, BatchValues, Constants, Data, Values

__all__ = ["Program", "compile_programs", "evaluate", "evaluate_batch"]

NOOP, VAR, CONST, LIT = 0, 1, 2, 3
N_SPECIAL = 4


class Program(eqx.Module):
    """Postfix token arrays of one program (shape ``(max_len,)``) or a batch (``(K, max_len)``).

    Attributes:
        opcodes: int32 opcodes (see the module docstring).
        index: int32 variable or constant index of leaf tokens (0 elsewhere).
        literal: float64 values of literal tokens (0 elsewhere).
        grammar: the operator set (static: same grammar, same compiled kernel).
    """

    opcodes: Any
    index: Any
    literal: Any
    grammar: Grammar = eqx.field(static=True)

    def __check_init__(self):
        shapes = {np.shape(self.opcodes), np.shape(self.index), np.shape(self.literal)}
        if len(shapes) != 1 or len(np.shape(self.opcodes)) not in (1, 2):
            raise ValueError(
                "`opcodes`, `index`, `literal` must share a shape (max_len,) or (K, max_len), got "
                f"{[np.shape(self.opcodes), np.shape(self.index), np.shape(self.literal)]}"
            )

    @property
    def max_len(self) -> int:
        return int(np.shape(self.opcodes)[-1])


def _postfix(expr: AbstractExpr, ops: dict[str, int], arity: dict[str, int]) -> list[tuple[int, int, float]]:
    out: list[tuple[int, int, float]] = []

    def go(e: AbstractExpr) -> None:
        if isinstance(e, Var):
            out.append((VAR, e.index, 0.0))
        elif isinstance(e, Const):
            out.append((CONST, e.index, 0.0))
        elif isinstance(e, Literal):
            out.append((LIT, 0, float(e.value)))
        else:
            assert isinstance(e, Call)
            if e.op not in ops:
                raise ValueError(f"expression uses operator {e.op!r}, not in the grammar {list(ops)}")
            if len(e.args) != arity[e.op]:
                raise ValueError(f"operator {e.op!r} has arity {arity[e.op]} but got {len(e.args)} arguments")
            for a in e.args:
                go(a)
            out.append((N_SPECIAL + ops[e.op], 0, 0.0))

    go(expr)
    return out


def stack_size(max_len: int) -> int:
    # A postfix program reaching depth d has at least d leaves and d - 1 binary operators.
    return (max_len + 1) // 2 + 1


def compile_programs(
    exprs: AbstractExpr | Sequence[AbstractExpr],
    grammar: Grammar | None = None,
    *,
    max_len: int | None = None,
) -> Program:
    """Compile one expression (to shape ``(max_len,)``) or a sequence (to ``(K, max_len)``).

    Args:
        exprs: an expression or a non-empty sequence of them.
        grammar: the operator set (default: :func:`default_grammar`).
        max_len: program length; default the longest program. Fix it to reuse compiled kernels.

    Raises:
        ValueError: a program longer than ``max_len``, or an operator not in ``grammar``.

    Example:
        >>> from symbolic.discovery import Var, Call
        >>> p = compile_programs([Var(0), Call("exp", (Var(1),))], max_len=8)
        >>> p.opcodes.shape
        (2, 8)
    """
    grammar = default_grammar() if grammar is None else grammar
    if not isinstance(grammar, Grammar):
        raise TypeError(f"`grammar` must be a Grammar, got {type(grammar).__name__}")
    single = isinstance(exprs, AbstractExpr)
    items = [exprs] if single else list(exprs)
    if not items:
        raise ValueError("`exprs` must hold at least one expression")
    for i, e in enumerate(items):
        _check_expr(e, f"exprs[{i}]")
    ops = {n: i for i, n in enumerate(grammar.names)}
    arity = {op.name: op.arity for op in grammar.operators}
    progs = [_postfix(e, ops, arity) for e in items]
    longest = max(len(p) for p in progs)
    if max_len is None:
        max_len = longest
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"`max_len` must be a positive int, got {max_len!r}")
    if longest > max_len:
        raise ValueError(f"a program has {longest} tokens, more than `max_len`={max_len}; raise `max_len`")
    k = len(progs)
    opc = np.zeros((k, max_len), np.int32)
    idx = np.zeros((k, max_len), np.int32)
    lit = np.zeros((k, max_len), np.float64)
    for j, p in enumerate(progs):
        for t, (o, i, v) in enumerate(p):
            opc[j, t], idx[j, t], lit[j, t] = o, i, v
    if single:
        opc, idx, lit = opc[0], idx[0], lit[0]
    return Program(opc, idx, lit, grammar)


def _run(program: Program, X, c):
    """One program (``(max_len,)`` tokens) on all rows of ``X``: the stack holds one row-vector per slot.

    Each token runs only its own operator (``lax.switch`` on an opcode that does not depend on the data),
    applied as ``jax.vmap(jax_fn)`` over the rows: operators see scalars, never a column.
    """
    n, d = X.shape
    dt = X.dtype
    c = jnp.concatenate([c.astype(dt), jnp.zeros((1,), dt)])  # never index an empty array
    n_c = c.shape[0]
    depth = stack_size(program.opcodes.shape[0])
    ops = program.grammar.operators
    arity_table = jnp.asarray([1, 0, 0, 0] + [op.arity for op in ops], jnp.int32)

    def lift(op):
        f = jax.vmap(op.jax_fn)
        if op.arity == 1:
            return lambda i, lit, a, b: f(b).astype(dt)
        return lambda i, lit, a, b: f(a, b).astype(dt)

    # Leaf indices only matter for leaf tokens; clamping keeps every slice in range.
    branches = [
        lambda i, lit, a, b: b,
        lambda i, lit, a, b: jax.lax.dynamic_index_in_dim(X, jnp.minimum(i, d - 1), 1, keepdims=False),
        lambda i, lit, a, b: jnp.broadcast_to(c[jnp.minimum(i, n_c - 1)], (n,)),
        lambda i, lit, a, b: jnp.broadcast_to(lit, (n,)),
    ] + [lift(op) for op in ops]

    def step(carry, tok):
        stack, sp = carry
        op, i, lit = tok
        a = jax.lax.dynamic_index_in_dim(stack, jnp.maximum(sp - 2, 0), 0, keepdims=False)
        b = jax.lax.dynamic_index_in_dim(stack, jnp.maximum(sp - 1, 0), 0, keepdims=False)
        value = jax.lax.switch(op, branches, i, lit, a, b)
        pos = sp - arity_table[op]
        stack = jax.lax.dynamic_update_index_in_dim(stack, value, pos, 0)
        return (stack, pos + 1), None

    init = (jnp.zeros((depth, n), dt), jnp.zeros((), jnp.int32))
    toks = (program.opcodes, program.index, program.literal.astype(dt))
    (stack, _), _ = jax.lax.scan(step, init, toks)
    return stack[0]


def _check_inputs(program: Any, X: Any, constants: Any, batched: bool):
    if not isinstance(program, Program):
        raise TypeError(f"`program` must be a Program (see compile_programs), got {type(program).__name__}")
    want = 2 if batched else 1
    if np.ndim(program.opcodes) != want:
        raise ValueError(
            f"`program` must have {want} axis/axes ({'(K, max_len)' if batched else '(max_len,)'}), got "
            f"opcodes of shape {np.shape(program.opcodes)}; use "
            f"{'evaluate' if batched else 'evaluate_batch'} instead"
        )
    X = jnp.asarray(X)
    if X.ndim != 2 or not jnp.issubdtype(X.dtype, jnp.floating):
        raise ValueError(f"`X` must be a float array of shape (n_rows, n_vars), got {X.dtype}{X.shape}")
    constants = jnp.asarray(constants, X.dtype) if not isinstance(constants, jax.Array) else constants
    if constants.ndim != want or not jnp.issubdtype(constants.dtype, jnp.floating):
        shape = "(K, n_constants)" if batched else "(n_constants,)"
        raise ValueError(
            f"`constants` must be a float array of shape {shape}, got {constants.dtype}{constants.shape}"
        )
    if batched and constants.shape[0] != np.shape(program.opcodes)[0]:
        raise ValueError(
            f"`constants` has {constants.shape[0]} rows but `program` holds {np.shape(program.opcodes)[0]} "
            "programs; pass one constant vector per program"
        )
    if isinstance(program.opcodes, np.ndarray):  # concrete programs: check the leaf indices now
        ops, idx = program.opcodes, program.index
        if np.any((ops == VAR) & (idx >= X.shape[1])):
            raise ValueError(
                f"a program reads variable {int(idx[ops == VAR].max())} but `X` has {X.shape[1]} columns"
            )
        if np.any((ops == CONST) & (idx >= constants.shape[-1])):
            raise ValueError(
                f"a program reads constant c{int(idx[ops == CONST].max())} but `constants` has "
                f"{constants.shape[-1]} entries"
            )
        if np.any(ops >= N_SPECIAL + len(program.grammar.operators)) or np.any(ops < 0):
            raise ValueError("`program` has opcodes outside its grammar")
    return X, constants.astype(X.dtype)


@eqx.filter_jit
def _evaluate(program: Program, X, constants):
    return _run(program, X, constants)


@eqx.filter_jit
def _evaluate_batch(program: Program, X, constants):
    # lax.map (not vmap) over candidates keeps each token's opcode unbatched, so lax.switch runs only
    # that token's operator; a vmap would evaluate every operator of the grammar at every token.
    return jax.lax.map(
        lambda t: _run(Program(t[0], t[1], t[2], program.grammar), X, t[3]),
        (program.opcodes, program.index, program.literal, constants),
    )


def evaluate(program: Program, X: Data, constants: Constants) -> Values:
    """Evaluate one program on every row of ``X`` (jitted; NaN/inf are returned as computed).

    Args:
        program: from :func:`compile_programs` (one expression).
        X: data, one row per sample, one column per variable.
        constants: values of ``c0, c1, ...`` (may be longer than needed; length 0 if none).

    Returns:
        the value on each row, dtype of ``X``.

    Raises:
        TypeError / ValueError: a wrong program, shapes or dtypes, or an index out of range.

    Example:
        >>> from symbolic.discovery import parse, from_sympy
        >>> e = from_sympy(parse("c0*exp(-x)", ["x"]), ["x"])
        >>> evaluate(compile_programs(e), jnp.zeros((3, 1)), jnp.array([2.0]))
        Array([2., 2., 2.], dtype=float32)
    """
    X, constants = _check_inputs(program, X, constants, batched=False)
    return _evaluate(program, X, constants)


def evaluate_batch(programs: Program, X: Data, constants: BatchConstants) -> BatchValues:
    """Evaluate ``K`` programs on every row of ``X`` in one compiled kernel (the stack machine).

    Programs of the same ``max_len`` (and ``K``, ``X`` shape, number of constants, grammar) reuse the
    compiled kernel: new candidates do not recompile.

    Args:
        programs: from :func:`compile_programs` on a sequence of expressions.
        X: data ``(n_rows, n_vars)``.
        constants: one constant vector per program, ``(K, n_constants)``.

    Returns:
        ``(K, n_rows)`` values.

    Example:
        >>> from symbolic.discovery import Var, Call
        >>> p = compile_programs([Var(0), Call("mul", (Var(0), Var(0)))], max_len=4)
        >>> evaluate_batch(p, jnp.array([[3.0]]), jnp.zeros((2, 0)))
        Array([[3.],
               [9.]], dtype=float32)
    """
    X, constants = _check_inputs(programs, X, constants, batched=True)
    return _evaluate_batch(programs, X, constants)
