"""Exporting discovered equations: SymPy with the fitted constants, LaTeX, JAX callables, ODE fields.

A :class:`~symbolic.discovery.Hypothesis` is a skeleton (free constants ``c0, c1, ...``) plus the fitted
values of those constants. The exports here substitute the values and hand the equation to the tools
downstream: SymPy (:func:`to_sympy_expr`), a paper (:func:`to_latex`), JAX code
(:func:`to_callable`: jitted, differentiable, usable on a batch or on one row) and diffrax
(:func:`to_vector_field`: discovered right-hand sides ``dy_i/dt = f_i(t, y)`` as one vector field).

The JAX functions evaluate the tree with the grammar's own ``jax_fn`` of every operator, applied to
scalars (per row, as the discovery evaluator does), so the exported function computes exactly what
was fitted and scored; the fitted constants are array leaves of the returned modules, so new values
do not recompile and gradients with respect to them are available.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy

from sciml._checks import check_float_array

from ._agent import Hypothesis
from ._expr import (
    AbstractExpr,
    Call,
    Const,
    Literal,
    Var,
    _check_expr,
    _check_names,
    _walk,
    n_constants,
    to_sympy,
)
from ._grammar import Grammar, default_grammar

__all__ = ["ExprFunction", "VectorField", "to_callable", "to_latex", "to_sympy_expr", "to_vector_field"]


def _resolve(hypothesis: Any, constants: Any, name: str = "hypothesis") -> tuple[AbstractExpr, np.ndarray]:
    """The expression and its float64 constants from a Hypothesis, or from an expression + constants."""
    if isinstance(hypothesis, Hypothesis):
        if constants is not None:
            raise TypeError(
                f"`constants` must be None when `{name}` is a Hypothesis (it carries its own constants); "
                "pass the bare expression `hypothesis.expr` to use other values"
            )
        expr, constants = hypothesis.expr, hypothesis.constants
    elif isinstance(hypothesis, AbstractExpr):
        expr = hypothesis
        constants = () if constants is None else constants
    else:
        raise TypeError(
            f"`{name}` must be a Hypothesis or an expression (Var/Const/Literal/Call), got "
            f"{type(hypothesis).__name__}"
        )
    _check_expr(expr, name)
    try:
        c = np.asarray(constants, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`constants` must be a 1-D array of real numbers, got {constants!r}") from e
    if c.ndim != 1:
        raise ValueError(f"`constants` must be 1-D (n_constants,), got shape {c.shape}")
    need = n_constants(expr)
    # A Hypothesis keeps one value per constant of the *original* skeleton; snapped ones are already
    # literals in its expression, so there may be more values than the expression still reads.
    if c.shape[0] < need:
        raise ValueError(
            f"`constants` has {c.shape[0]} values but the expression reads c0 .. c{need - 1}; pass "
            f"{need} values"
        )
    used = sorted({e.index for e in _walk(expr) if isinstance(e, Const)})
    bad = [i for i in used if not np.isfinite(c[i])]
    if bad:
        raise ValueError(
            f"`constants` must be finite where the expression reads them; c{bad[0]} = {c[bad[0]]} "
            "(an invalid fit has no equation to export)"
        )
    return expr, c


def _grammar(grammar: Any) -> Grammar:
    grammar = default_grammar() if grammar is None else grammar
    if not isinstance(grammar, Grammar):
        raise TypeError(f"`grammar` must be a Grammar, got {type(grammar).__name__}")
    return grammar


def to_sympy_expr(
    hypothesis: Hypothesis | AbstractExpr,
    variables: Sequence[str],
    *,
    constants: Any = None,
    grammar: Grammar | None = None,
) -> sympy.Expr:
    """The SymPy expression of a hypothesis with its fitted constants substituted.

    Every ``c_i`` becomes the SymPy ``Float`` holding exactly the float64 value (53 bits), so that
    ``lambdify`` of the result reproduces the fitted function to rounding; snapped constants are
    already exact literals (``1/3``, ``2*pi``) in the hypothesis' expression.

    Args:
        hypothesis: a :class:`~symbolic.discovery.Hypothesis`, or an expression with ``constants``.
        variables: names of the data columns (``Var(i)`` prints as ``variables[i]``).
        constants: values of ``c0, c1, ...`` when ``hypothesis`` is an expression (``None``: no
            constants); must be ``None`` for a Hypothesis.
        grammar: the operator set (default :func:`~symbolic.discovery.default_grammar`).

    Returns:
        a SymPy expression in the symbols ``variables``.

    Raises:
        TypeError: ``hypothesis`` is neither a Hypothesis nor an expression, or ``constants`` is given
            with a Hypothesis.
        ValueError: too few or non-finite constants, or a variable index beyond ``variables``.

    Example:
        >>> from symbolic import discovery as d
        >>> e = d.from_sympy(d.parse("c0*exp(-c1*t)", ["t"]), ["t"])
        >>> to_sympy_expr(e, ["t"], constants=[2.5, 0.5])
        2.5*exp(-0.5*t)
    """
    expr, c = _resolve(hypothesis, constants)
    s = to_sympy(expr, variables, _grammar(grammar))
    used = {e.index for e in _walk(expr) if isinstance(e, Const)}
    return s.xreplace({sympy.Symbol(f"c{i}"): sympy.Float(float(c[i])) for i in used})


def to_latex(
    hypothesis: Hypothesis | AbstractExpr,
    variables: Sequence[str],
    *,
    constants: Any = None,
    grammar: Grammar | None = None,
    digits: int | None = 6,
    target: str | None = None,
    symbol_names: Mapping[str, str] | None = None,
) -> str:
    """LaTeX of a hypothesis with its fitted constants (rounded to ``digits`` significant digits).

    Args:
        hypothesis: a Hypothesis, or an expression with ``constants`` (see :func:`to_sympy_expr`).
        variables: names of the data columns.
        constants: values of ``c0, c1, ...`` for a bare expression.
        grammar: the operator set.
        digits: significant digits of fitted constants (``None``: the shortest decimal that reads back
            as the same float64).
        target: left-hand side, e.g. ``r"\\dot{x}"``; gives ``"target = ..."``.
        symbol_names: LaTeX for variable names, e.g. ``{"theta": r"\\vartheta"}`` (SymPy already
            typesets Greek names and subscripts such as ``x_1``).

    Returns:
        the LaTeX string (no surrounding ``$``).

    Raises:
        TypeError / ValueError: as :func:`to_sympy_expr`; ``digits`` not a positive int.

    Example:
        >>> from symbolic import discovery as d
        >>> e = d.from_sympy(d.parse("c0*x/(c1 + x)", ["x"]), ["x"])
        >>> to_latex(e, ["x"], constants=[2.5, 0.8], target="v")
        'v = \\\\frac{2.5 x}{x + 0.8}'
    """
    if digits is not None and (isinstance(digits, bool) or not isinstance(digits, int) or digits < 1):
        raise ValueError(f"`digits` must be a positive int or None, got {digits!r}")
    if target is not None and not isinstance(target, str):
        raise TypeError(f"`target` must be a str or None, got {type(target).__name__}")
    s = to_sympy_expr(hypothesis, variables, constants=constants, grammar=grammar)
    # Floats print at their own precision: re-create them with `digits` significant digits, or from
    # the shortest decimal that reads back as the same float64 (Python's repr).
    if digits is None:
        s = s.xreplace({f: sympy.Float(repr(float(f)), "") for f in s.atoms(sympy.Float)})
    else:
        s = s.xreplace({f: sympy.Float(f, digits) for f in s.atoms(sympy.Float)})
    names = None
    if symbol_names is not None:
        if not isinstance(symbol_names, Mapping):
            raise TypeError(
                f"`symbol_names` must be a mapping name -> LaTeX, got {type(symbol_names).__name__}"
            )
        names = {sympy.Symbol(k): v for k, v in symbol_names.items()}
    body = sympy.latex(s, symbol_names=names) if names else sympy.latex(s)
    return body if target is None else f"{target} = {body}"


def _emit(e: AbstractExpr, x, c, ops: dict, dt):
    """Trace the tree on one row ``x`` (shape ``(n_vars,)``) with constants ``c``: a scalar."""
    if isinstance(e, Var):
        return x[e.index]
    if isinstance(e, Const):
        return c[e.index]
    if isinstance(e, Literal):
        return jnp.asarray(float(e.value), dt)
    assert isinstance(e, Call)
    out = ops[e.op].jax_fn(*(_emit(a, x, c, ops, dt) for a in e.args))
    return jnp.asarray(out).astype(dt)


class ExprFunction(eqx.Module):
    """A discovered equation as a JAX function ``X -> f(X)`` (from :func:`to_callable`).

    Attributes:
        expr: the expression tree (static).
        constants: float64 values of ``c0, c1, ...`` (an array leaf: new values do not recompile).
        grammar: the operator set (static).
        n_vars: number of columns ``X`` must have.
    """

    expr: AbstractExpr = eqx.field(static=True)
    constants: np.ndarray
    grammar: Grammar = eqx.field(static=True)
    n_vars: int = eqx.field(static=True)

    def __hash__(self):
        # By value, so that `jax.jit(f)` (which hashes the function) works as for a plain function.
        c = self.constants
        values = c.tobytes() if isinstance(c, np.ndarray) else None  # None: arrays filtered out by jit
        return hash((self.expr, self.grammar, self.n_vars, values))

    def row(self, x):
        """The value on one row ``x`` of shape ``(n_vars,)`` (no checks, not jitted: for tracing)."""
        dt = x.dtype
        c = jnp.asarray(self.constants).astype(dt)
        ops = {op.name: op for op in self.grammar.operators}
        return _emit(self.expr, x, c, ops, dt)

    def __call__(self, X):
        """``f`` on every row of ``X`` ``(n_rows, n_vars)`` -> ``(n_rows,)``, or on one row -> ``()``.

        Raises:
            TypeError: ``X`` is not a real floating array.
            ValueError: ``X`` is not 1-D or 2-D with ``n_vars`` columns.
        """
        X = check_float_array(X, name="X")
        if X.ndim not in (1, 2) or X.shape[-1] != self.n_vars:
            raise ValueError(
                f"`X` must have shape (n_rows, {self.n_vars}) or ({self.n_vars},) (one row), got {X.shape}"
            )
        return _call(self, X)


@eqx.filter_jit
def _call(fn: ExprFunction, X):
    # The operators get scalars (vmapped over rows), as in the discovery evaluator: custom operators
    # are only guaranteed pointwise on scalars.
    return fn.row(X) if X.ndim == 1 else jax.vmap(fn.row)(X)


def to_callable(
    hypothesis: Hypothesis | AbstractExpr,
    *,
    constants: Any = None,
    grammar: Grammar | None = None,
    n_vars: int | None = None,
) -> ExprFunction:
    """A jitted, differentiable JAX function of the data for a hypothesis.

    ``f = to_callable(h)`` maps ``X`` of shape ``(n_rows, n_vars)`` to ``(n_rows,)`` and one row of
    shape ``(n_vars,)`` to a scalar, in the dtype of ``X`` (float64 under
    ``sciml.backend.precision("float64")``). It works under ``jax.jit``, ``jax.vmap`` (over rows or
    over batches of data) and ``jax.grad`` (in ``X``; in the constants via ``eqx.filter_grad`` on
    ``f``), and calling it again with new data of the same shape, or a function from the same
    expression with other constants, reuses the compiled code.

    Args:
        hypothesis: a Hypothesis, or an expression with ``constants``.
        constants: values of ``c0, c1, ...`` for a bare expression.
        grammar: the operator set (default :func:`~symbolic.discovery.default_grammar`).
        n_vars: number of data columns (default: one past the largest variable index used).

    Returns:
        an :class:`ExprFunction`.

    Raises:
        TypeError / ValueError: as :func:`to_sympy_expr`; an operator not in ``grammar``; ``n_vars``
            smaller than the variables the expression reads.

    Example:
        >>> from symbolic import discovery as d
        >>> e = d.from_sympy(d.parse("c0*x*y + c1", ["x", "y"]), ["x", "y"])
        >>> f = to_callable(e, constants=[2.0, 1.0])
        >>> f(jnp.array([[1.0, 3.0], [2.0, 0.5]]))
        Array([7., 3.], dtype=float32)
        >>> float(jax.grad(f)(jnp.array([1.0, 3.0]))[1])
        2.0
    """
    expr, c = _resolve(hypothesis, constants)
    grammar = _grammar(grammar)
    known = set(grammar.names)
    arity = {op.name: op.arity for op in grammar.operators}
    for e in _walk(expr):
        if isinstance(e, Call):
            if e.op not in known:
                raise ValueError(f"`hypothesis` uses operator {e.op!r}, not in the grammar {sorted(known)}")
            if len(e.args) != arity[e.op]:
                raise ValueError(
                    f"`hypothesis` calls {e.op!r} with {len(e.args)} arguments (arity {arity[e.op]})"
                )
    need = 1 + max((e.index for e in _walk(expr) if isinstance(e, Var)), default=-1)
    if n_vars is None:
        n_vars = max(need, 1)
    elif isinstance(n_vars, bool) or not isinstance(n_vars, int) or n_vars < max(need, 1):
        raise ValueError(
            f"`n_vars` must be an int >= {max(need, 1)} (the expression reads x{need - 1}), got {n_vars!r}"
        )
    return ExprFunction(expr=expr, constants=c, grammar=grammar, n_vars=n_vars)


class VectorField(eqx.Module):
    """``f(t, y, args)``: discovered right-hand sides ``dy_i/dt`` stacked (from :func:`to_vector_field`).

    Attributes:
        functions: one :class:`ExprFunction` per state variable.
        sources: per data column, where its value comes from: ``("t",)``, ``("y", i)`` or
            ``("args", name)`` (static).
        state_variables: names of the state components, in the order of ``y`` (static).
    """

    functions: tuple[ExprFunction, ...]
    sources: tuple[tuple[Any, ...], ...] = eqx.field(static=True)
    state_variables: tuple[str, ...] = eqx.field(static=True)

    def __hash__(self):
        return hash((self.functions, self.sources, self.state_variables))

    def __call__(self, t, y, args=None):
        """``dy/dt`` at time ``t`` and state ``y`` (shape ``(n_state,)``); ``args`` supplies extra columns.

        Raises:
            ValueError: ``y`` has the wrong shape, or ``args`` lacks a column read from it.
        """
        y = check_float_array(y, name="y")
        n = len(self.state_variables)
        if y.shape != (n,):
            raise ValueError(
                f"`y` must have shape ({n},) (state {list(self.state_variables)}), got {y.shape}"
            )
        dt = y.dtype
        cols = []
        for src in self.sources:
            if src[0] == "t":
                cols.append(jnp.asarray(t).astype(dt))
            elif src[0] == "y":
                cols.append(y[src[1]])
            else:
                if not isinstance(args, Mapping) or src[1] not in args:
                    raise ValueError(
                        f"the column {src[1]!r} is neither the time nor a state variable, so `args` must "
                        f"be a mapping holding it (diffeqsolve(..., args={{{src[1]!r}: v}})), got {args!r}"
                    )
                cols.append(jnp.asarray(args[src[1]]).astype(dt))
        row = jnp.stack(cols)
        return jnp.stack([fn.row(row) for fn in self.functions])


def to_vector_field(
    hypotheses: Sequence[Hypothesis | AbstractExpr],
    state_variables: Sequence[str],
    *,
    variables: Sequence[str] | None = None,
    time: str = "t",
    constants: Sequence[Any] | None = None,
    grammar: Grammar | None = None,
) -> VectorField:
    """A diffrax-compatible vector field ``f(t, y, args)`` from one discovered right-hand side per state.

    For states ``y = (y_0, ..., y_{n-1})`` named ``state_variables``, ``hypotheses[i]`` is
    ``dy_i/dt = f_i(columns)``, discovered on data whose columns were named ``variables``. Each column
    is the time (the name ``time``), a state variable, or any other name, which is then read from
    ``args[name]`` (a mapping: forcing amplitudes, parameters). Use it as
    ``diffrax.ODETerm(to_vector_field(...))``.

    Args:
        hypotheses: one Hypothesis (or expression, with ``constants``) per state variable.
        state_variables: names of the state components, in the order of ``y``.
        variables: column names the hypotheses read (default ``state_variables``).
        time: the name of the time column in ``variables`` (if it has one).
        constants: for bare expressions, one constant vector per hypothesis (``None`` entries for
            Hypothesis items or expressions without constants).
        grammar: the operator set.

    Returns:
        a :class:`VectorField` (an equinox Module; constants are array leaves).

    Raises:
        TypeError / ValueError: a count mismatch, bad or duplicate names, the time named as a state,
            or the errors of :func:`to_callable`.

    Example:
        >>> import diffrax
        >>> from symbolic import discovery as d
        >>> names = ["x"]
        >>> decay = d.from_sympy(d.parse("-c0*x", names), names)
        >>> f = to_vector_field([decay], names, constants=[[0.5]])
        >>> sol = diffrax.diffeqsolve(diffrax.ODETerm(f), diffrax.Tsit5(), 0.0, 2.0, 0.1, jnp.array([1.0]),
        ...                           stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6))
        >>> round(float(sol.ys[-1, 0]), 4)  # exp(-1)
        0.3679
    """
    if isinstance(hypotheses, (Hypothesis, AbstractExpr)) or not isinstance(hypotheses, Sequence):
        raise TypeError(
            f"`hypotheses` must be a sequence (one per state variable), got {type(hypotheses).__name__}"
        )
    states = _check_names(state_variables)
    if not isinstance(time, str) or not time.isidentifier():
        raise ValueError(f"`time` must be an identifier such as 't', got {time!r}")
    if time in states:
        raise ValueError(f"`time` {time!r} is also a state variable {list(states)}; rename one of them")
    cols = states if variables is None else _check_names(variables)
    if len(hypotheses) != len(states):
        raise ValueError(
            f"`hypotheses` has {len(hypotheses)} items but `state_variables` names {len(states)} states "
            f"{list(states)}; give one right-hand side per state"
        )
    if constants is None:
        constants = [None] * len(states)
    elif isinstance(constants, (str, bytes)) or len(constants) != len(states):
        raise ValueError(f"`constants` must hold one entry per state ({len(states)}), got {constants!r}")
    grammar = _grammar(grammar)
    sources = tuple(
        ("t",) if n == time else ("y", states.index(n)) if n in states else ("args", n) for n in cols
    )
    fns = tuple(
        to_callable(h, constants=c, grammar=grammar, n_vars=len(cols)) for h, c in zip(hypotheses, constants)
    )
    return VectorField(functions=fns, sources=sources, state_variables=states)
