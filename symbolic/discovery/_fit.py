"""Fitting the constants of a skeleton: variable projection, multi-start Levenberg-Marquardt, snapping.

MCI's lesson (Na & Park 2026): quasi-Newton from all-ones starts fails on skeletons such as
``A*exp(-E/(R*T))`` or ``sin(w*t)`` with a large ``w``, whose constants span orders of magnitude and
whose losses are multimodal. The fitter here therefore

1. **projects out the linear constants** (variable projection, Golub & Pereyra 1973): a constant that
   multiplies a whole top-level term and occurs nowhere else enters linearly, ``f = r0(x; theta) +
   sum_j c_j phi_j(x; theta)``, and is solved for by least squares for every value of the nonlinear
   constants ``theta`` (:func:`linear_constants` finds them structurally);
2. **screens** a Latin-hypercube sample over sign and log-magnitude of ``theta`` (``10**-3 ..
   10**6`` by default), i.e. ``theta = s * exp(u)``, evaluated in one batched kernel, and keeps the best
   ``n_starts`` points;
3. runs **Levenberg-Marquardt** (Marquardt's diagonal scaling, forward-mode Jacobians) on ``u`` from
   each of them, vmapped, in float64, then polishes the best one by LM on all constants jointly;
4. **snaps** constants to simple rationals ``p/q`` (``q <= max_denominator``) or rational multiples of
   ``pi`` within a relative tolerance, refits the others, and keeps a snap only if the fit does not
   get measurably worse.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy

import sciml.backend as B

from ._expr import AbstractExpr, Call, Const, Literal, Var, _check_expr, _walk, n_constants
from ._grammar import Grammar, default_grammar
from ._program import Program, _run, compile_programs

__all__ = ["FitResult", "fit_constants", "linear_constants", "snap_value"]


class FitResult(eqx.Module):
    """The fitted constants of a skeleton (host values: NumPy float64 and Python scalars).

    Attributes:
        constants: ``(n_constants,)`` float64 values of ``c0, c1, ...`` (snapped ones exact).
        loss: mean squared error on the data (``inf`` when the candidate is invalid).
        snapped: per constant, whether it was snapped to a simple value.
        exact: per constant, the SymPy value it was snapped to (``None`` if not snapped).
        expr: the skeleton with snapped constants replaced by their exact literals.
        valid: the prediction is finite on every row.
    """

    constants: np.ndarray
    loss: float = eqx.field(static=True)
    snapped: tuple[bool, ...] = eqx.field(static=True)
    exact: tuple[Any, ...] = eqx.field(static=True)
    expr: AbstractExpr = eqx.field(static=True)
    valid: bool = eqx.field(static=True)


# --------------------------------------------------------------------------------------------------
# Structure: which constants enter linearly
# --------------------------------------------------------------------------------------------------


def _terms(e: AbstractExpr, sign: int, out: list[tuple[int, AbstractExpr]]) -> None:
    if isinstance(e, Call) and e.op == "add":
        _terms(e.args[0], sign, out)
        _terms(e.args[1], sign, out)
    elif isinstance(e, Call) and e.op == "sub":
        _terms(e.args[0], sign, out)
        _terms(e.args[1], -sign, out)
    else:
        out.append((sign, e))


def _numerator_consts(e: AbstractExpr) -> list[int]:
    """Constants that are multiplicative factors of ``e`` (through ``mul`` and numerators of ``div``)."""
    if isinstance(e, Const):
        return [e.index]
    if isinstance(e, Call) and e.op == "mul":
        return _numerator_consts(e.args[0]) + _numerator_consts(e.args[1])
    if isinstance(e, Call) and e.op == "div":
        return _numerator_consts(e.args[0])
    return []


def _replace_const(e: AbstractExpr, index: int, value: Any) -> AbstractExpr:
    if isinstance(e, Const) and e.index == index:
        return Literal(sympy.sympify(value))
    if isinstance(e, Call):
        return Call(e.op, tuple(_replace_const(a, index, value) for a in e.args))
    return e


def linear_constants(expr: AbstractExpr) -> tuple[AbstractExpr | None, tuple[tuple[int, AbstractExpr], ...]]:
    """Split ``expr`` as ``offset + sum_j c_j * basis_j`` over the constants that enter linearly.

    A constant is linear when the top-level expression is a sum/difference of terms, it is a
    multiplicative factor of one term (through products and numerators of quotients) and it occurs
    nowhere else. This is structural: ``c0*x + c1*exp(c2*x)`` gives ``c0, c1``; ``c0*(x + c1*y)`` gives
    only ``c0``.

    Returns:
        ``(offset, ((index, basis), ...))``; ``offset`` is ``None`` when every term has a linear
        constant.

    Example:
        >>> from symbolic.discovery import parse, from_sympy, to_sympy
        >>> off, lin = linear_constants(from_sympy(parse("c0*x + c1*exp(c2*x) + x**2", ["x"]), ["x"]))
        >>> [i for i, _ in lin], to_sympy(off, ["x"])
        ([0, 1], x**2)
    """
    _check_expr(expr, "expr")
    counts: dict[int, int] = {}
    for node in _walk(expr):
        if isinstance(node, Const):
            counts[node.index] = counts.get(node.index, 0) + 1
    terms: list[tuple[int, AbstractExpr]] = []
    _terms(expr, 1, terms)
    offset: AbstractExpr | None = None
    lin: list[tuple[int, AbstractExpr]] = []
    for sign, t in terms:
        cands = [i for i in _numerator_consts(t) if counts[i] == 1]
        if cands:
            lin.append((cands[0], _replace_const(t, cands[0], sign)))
        else:
            piece = t if sign > 0 else Call("mul", (Literal(sympy.Integer(-1)), t))
            offset = piece if offset is None else Call("add", (offset, piece))
    return offset, tuple(lin)


# --------------------------------------------------------------------------------------------------
# Snapping
# --------------------------------------------------------------------------------------------------


def snap_value(value: float, *, rtol: float = 1e-4, max_denominator: int = 12) -> Any:
    """The simplest ``p/q`` or ``(p/q)*pi`` (``q <= max_denominator``) within ``rtol`` of ``value``.

    Rationals are tried before multiples of pi, small denominators first. Returns ``None`` when
    nothing is close enough (and for 0 or non-finite values).

    Example:
        >>> snap_value(0.3333333), snap_value(6.2831853), snap_value(0.1234567)
        (1/3, 2*pi, None)
    """
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
        raise TypeError(f"`value` must be a real number, got {type(value).__name__}")
    if not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise ValueError(f"`rtol` must be in (0, 1), got {rtol!r}")
    if isinstance(max_denominator, bool) or not isinstance(max_denominator, int) or max_denominator < 1:
        raise ValueError(f"`max_denominator` must be a positive int, got {max_denominator!r}")
    v = float(value)
    if not math.isfinite(v) or v == 0.0:
        return None
    for unit, sym in ((1.0, sympy.Integer(1)), (math.pi, sympy.pi)):
        w = v / unit
        for q in range(1, max_denominator + 1):
            p = round(w * q)
            if p != 0 and abs(p / q - w) <= rtol * abs(w):
                return sympy.Rational(p, q) * sym
    return None


# --------------------------------------------------------------------------------------------------
# Levenberg-Marquardt (jitted, float64)
# --------------------------------------------------------------------------------------------------


def _sq(r):
    r = jnp.where(jnp.isfinite(r), r, jnp.inf)
    return jnp.sum(r * r)


def _lm(fun, x0, *, iters: int):
    """Levenberg-Marquardt with Marquardt's scaling: minimise ``sum(r(x)**2)`` where ``r, aux = fun(x)``.

    Steps solve ``(J^T J + lam * diag(J^T J)) dx = -J^T r``. A trial point is accepted only if it lowers
    the sum of squares (non-finite counts as infinite), then ``lam /= 3``, else ``lam *= 8``. Residual
    and Jacobian come from one forward-mode pass (``jvp`` vmapped over the basis), evaluated once per
    iteration at the trial point, so the model appears once in the compiled loop. The first trial is
    ``x0`` itself. Stops after ``iters`` iterations, when ``lam`` exceeds ``1e16`` or the gradient is 0.

    Returns:
        ``(x, sum of squares, aux)`` at the best point (``inf`` if ``x0`` was not finite).
    """
    n = x0.shape[0]
    dt = x0.dtype
    tiny = jnp.finfo(dt).tiny ** 0.5
    basis = jnp.eye(n, dtype=dt)

    def value_and_jac(x):
        (r, aux), (jr, _) = jax.vmap(lambda t: jax.jvp(fun, (x,), (t,)), out_axes=(None, 0))(basis)
        return r, jr.T, aux

    r0, _, aux0 = jax.eval_shape(value_and_jac, x0)
    init = dict(
        x=x0,
        f=jnp.asarray(jnp.inf, dt),
        r=jnp.zeros(r0.shape, dt),
        J=jnp.zeros((r0.shape[0], n), dt),
        aux=jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), aux0),
        lam=jnp.asarray(1e-3, dt),
        x_try=x0,
        k=jnp.asarray(0, jnp.int32),
        done=jnp.asarray(False),
    )

    def cond(s):
        return (s["k"] < iters) & ~s["done"]

    def body(s):
        r_t, J_t, aux_t = value_and_jac(s["x_try"])
        f_t = _sq(r_t)
        accept = jnp.isfinite(f_t) & (f_t < s["f"]) & jnp.all(jnp.isfinite(J_t))
        pick = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, old)
        x, f, r, J, aux = pick((s["x_try"], f_t, r_t, J_t, aux_t), (s["x"], s["f"], s["r"], s["J"], s["aux"]))
        lam = jnp.where(accept, jnp.maximum(s["lam"] / 3.0, 1e-12), s["lam"] * 8.0)
        g = J.T @ r
        H = J.T @ J
        d = jnp.maximum(jnp.diag(H), tiny)
        dx = jnp.linalg.solve(H + lam * jnp.diag(d), -g)
        done = (lam > 1e16) | jnp.all(g == 0) | ~jnp.all(jnp.isfinite(dx))
        return dict(x=x, f=f, r=r, J=J, aux=aux, lam=lam, x_try=x + dx, k=s["k"] + 1, done=done)

    out = jax.lax.while_loop(cond, body, init)
    return out["x"], out["f"], out["aux"]


# --------------------------------------------------------------------------------------------------
# The jitted core: one compiled kernel per (data shape, padded program length, padded #constants)
# --------------------------------------------------------------------------------------------------


def _projected(parts: Program, X, y, sw, lin_index, nl_index, n_pad: int):
    """``theta -> (residual, full constants)`` with the linear constants solved by least squares.

    ``parts`` holds ``1 + L`` programs: the offset ``r0`` and one basis ``phi_j`` per linear constant
    ``lin_index[j]`` (padding entries hold ``n_pad`` and a zero literal). ``theta`` holds the nonlinear
    constants ``nl_index`` (padding: ``n_pad``, ignored). Only the programs of linear constants run and
    the Jacobian is taken over the nonlinear constants only, so a skeleton costs what its own structure
    needs, not what the padded constant count would. Columns of padding get a unit ridge, so their
    coefficient is exactly 0; active columns are scaled to unit norm and get a relative ridge of 1e-13
    (a guard against exactly collinear bases, far below float64 fitting accuracy).
    """
    lin_valid = lin_index < n_pad

    def run(theta):
        c = jnp.zeros(n_pad, theta.dtype).at[nl_index].set(theta, mode="drop")
        V = jax.lax.map(
            lambda t: _run(Program(t[0], t[1], t[2], parts.grammar), X, c),
            (parts.opcodes, parts.index, parts.literal),
        )
        b = sw * (y - V[0])
        A = jnp.where(lin_valid, sw[:, None] * V[1:].T, 0.0)
        norm = jnp.sqrt(jnp.sum(A * A, axis=0))
        active = lin_valid & (norm > 0)
        safe = jnp.where(active, norm, 1.0)
        As = A / safe
        G = As.T @ As + jnp.diag(jnp.where(active, 1e-13, 1.0))
        lin = jnp.where(active, jnp.linalg.solve(G, As.T @ b) / safe, 0.0)
        return A @ lin - b, c.at[lin_index].set(lin, mode="drop")

    return run


_LOG_LO, _LOG_HI = math.log(1e-3), math.log(1e6)


@eqx.filter_jit
def _fit_core(parts, X, y, sw, lin_index, nl_index, u, sign, *, n_pad: int, n_starts: int, iters: int):
    """Screen all starts ``theta = sign * exp(u)`` (rows), LM from the best ``n_starts``, best result."""
    run = _projected(parts, X, y, sw, lin_index, nl_index, n_pad)
    nl_valid = nl_index < n_pad
    param = lambda u_, s_: jnp.where(nl_valid, s_ * jnp.exp(u_), 0.0)
    losses = jax.vmap(lambda u_, s_: _sq(run(param(u_, s_))[0]))(u, sign)
    losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
    _, best = jax.lax.top_k(-losses, n_starts)

    def solve(u0, s0):
        _, f, c = _lm(lambda u_: run(param(u_, s0)), u0, iters=iters)
        return c, f

    cs, fs = jax.vmap(solve)(u[best], sign[best])
    i = jnp.argmin(jnp.where(jnp.isfinite(fs), fs, jnp.inf))
    return cs[i], fs[i]


@eqx.filter_jit
def _starts(key, n: int, m: int, dtype_probe):
    """Quasi-random starts over sign and log-magnitude: ``(u, sign)``, each ``(n, m)``.

    Coordinates ``v`` in ``[0, 2)`` follow a randomly shifted Kronecker (additive recurrence) sequence,
    whose every one-dimensional projection has gaps of order ``1/n``: ``[0, 1)`` is negative, ``[1, 2)``
    positive, the fractional part sets ``log|theta|`` in ``[log 1e-3, log 1e6]``; so both signs and every
    decade are covered evenly in every dimension. (No sorting: cheap to compile.)
    """
    dt = dtype_probe.dtype
    # generalised golden ratios (Roberts 2018): alpha_j = phi_m**-(j+1), phi_m**(m+1) = phi_m + 1
    phi = 2.0
    for _ in range(60):
        phi = (1.0 + phi) ** (1.0 / (m + 1))
    alpha = jnp.asarray([phi ** -(j + 1) for j in range(m)], dt)
    shift = jax.random.uniform(key, (m,), dtype=dt)
    v = jnp.arange(n, dtype=dt)[:, None] * alpha + shift
    v = 2.0 * (v - jnp.floor(v))
    sign = jnp.where(v >= 1.0, 1.0, -1.0).astype(dt)
    return _LOG_LO + (_LOG_HI - _LOG_LO) * (v - jnp.floor(v)), sign


def _check_data(X: Any, y: Any):
    try:
        Xn = np.asarray(X, dtype=np.float64)
        yn = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`X` and `y` must be real numeric arrays: {e}") from e
    if Xn.ndim != 2 or Xn.shape[0] < 1:
        raise ValueError(f"`X` must have shape (n_rows, n_vars) with n_rows >= 1, got {Xn.shape}")
    if yn.shape != (Xn.shape[0],):
        raise ValueError(f"`y` must have shape (n_rows,) = ({Xn.shape[0]},), got {yn.shape}")
    if not (np.all(np.isfinite(Xn)) and np.all(np.isfinite(yn))):
        raise ValueError("`X` and `y` must be finite (drop or impute rows with NaN/inf first)")
    return Xn, yn


def _check_int(v: Any, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"`{name}` must be an int >= {lo}, got {v!r}")
    return int(v)


def _bucket(n: int, lo: int, base: int = 2) -> int:
    """The smallest power of ``base`` that is >= n, and at least ``lo``: few distinct padded shapes,
    hence few compiled kernels."""
    b = 1
    while b < n:
        b *= base
    return max(lo, b)


class _Problem(eqx.Module):
    """Host-side setup shared by the first fit and the refits after snapping (not part of the API)."""

    grammar: Grammar
    X: Any
    y: Any
    sw: Any  # square roots of the row weights
    n_c: int  # constants of the original skeleton
    n_pad: int  # padded constant count (power of two >= 16): same kernel for different skeletons
    len_pad: int  # padded program length (power of two >= 16)
    n_screen: int
    n_starts: int
    iters: int

    def solve(self, expr: AbstractExpr, key, start: np.ndarray | None):
        present = sorted({e.index for e in _walk(expr) if isinstance(e, Const)})
        offset, lin = linear_constants(expr)
        lin_idx = [i for i, _ in lin]
        nl_idx = sorted(set(present) - set(lin_idx))
        zero = Literal(sympy.Integer(0))
        n_lin = _bucket(len(lin), 1, base=4)  # linear-basis counts 1, 4, 16, ...
        parts_exprs = [offset if offset is not None else zero] + [b for _, b in lin]
        parts_exprs += [zero] * (1 + n_lin - len(parts_exprs))
        # snapping can lengthen a part (a snapped constant of a subtracted term becomes a (-1)* factor):
        # such a part gets the next padded length rather than an error
        longest = max(sum(1 for _ in _walk(p)) for p in parts_exprs)
        parts = compile_programs(parts_exprs, self.grammar, max_len=max(self.len_pad, _bucket(longest, 16)))
        lin_index = np.full(n_lin, self.n_pad, np.int32)
        lin_index[: len(lin_idx)] = lin_idx
        # the work follows the number of nonlinear constants: none -> one least-squares solve; one or
        # two -> 512 screened points (one: 0.035 decades apart over 1e-3..1e6 and both signs); more ->
        # 2048 (two classes only: every class is another compiled kernel)
        n_nl = len(nl_idx)
        m = _bucket(n_nl, 1)
        nl_index = np.full(m, self.n_pad, np.int32)
        nl_index[:n_nl] = nl_idx
        n_starts = 1 if n_nl == 0 else self.n_starts
        n_screen = 1 if n_nl == 0 else min(self.n_screen, max(n_starts, 512 if n_nl <= 2 else 2048))
        iters = 1 if n_nl == 0 else self.iters
        u, sign = _starts(key, n_screen, m, jnp.zeros((), jnp.float64))
        if start is not None and n_nl:  # the previous solution is the first screened point
            s0 = np.ones(m)
            s0[:n_nl] = np.asarray(start, np.float64)[nl_idx]
            s0 = np.where(s0 == 0, 1.0, s0)
            u = u.at[0].set(jnp.log(jnp.abs(jnp.asarray(s0))))
            sign = sign.at[0].set(jnp.where(jnp.asarray(s0) < 0, -1.0, 1.0))
        c, f = _fit_core(
            parts,
            self.X,
            self.y,
            self.sw,
            jnp.asarray(lin_index),
            jnp.asarray(nl_index),
            u,
            sign,
            n_pad=self.n_pad,
            n_starts=n_starts,
            iters=iters,
        )
        return np.array(c, np.float64)[: self.n_c], float(f) / float(jnp.sum(self.sw * self.sw))


def fit_constants(
    expr: AbstractExpr,
    X: Any,
    y: Any,
    *,
    key: jax.Array,
    grammar: Grammar | None = None,
    n_starts: int = 8,
    n_screen: int = 2048,
    iters: int = 100,
    snap: bool = True,
    snap_rtol: float = 1e-4,
    max_denominator: int = 12,
    weights: Any = None,
) -> FitResult:
    """Fit the constants ``c0, c1, ...`` of ``expr`` to ``y ~ expr(X)`` by least squares, in float64.

    Minimises the mean squared error ``mean((f(X; c) - y)**2)``. Linear constants are eliminated by
    variable projection; the nonlinear ones, parameterised as ``sign * exp(u)``, are screened over
    ``n_screen`` Latin-hypercube points of sign and log-magnitude (``1e-3 .. 1e6``) in one batched
    kernel and the best ``n_starts`` refined by Levenberg-Marquardt (vmapped). With ``snap``, constants
    within ``snap_rtol`` of a simple rational or rational multiple of pi (:func:`snap_value`) are fixed
    there and the rest refitted (the previous solution seeds the refit); a snap is kept only if the MSE
    stays within 1% (plus ``1e-18 * var(y)``) of the unsnapped fit.

    The computation runs under ``sciml.backend.precision("float64")``; results are host values.
    Program length and constant count are padded (to powers of two, at least 16), and so are the
    numbers of linear (powers of four) and nonlinear (powers of two) constants, so skeletons of similar
    size on the same data share one compiled kernel; the work follows the linear and nonlinear counts.

    Args:
        expr: the skeleton.
        X: ``(n_rows, n_vars)`` data.
        y: ``(n_rows,)`` targets.
        key: PRNG key for the multi-start sample.
        grammar: operator set (default :func:`default_grammar`).
        n_starts: LM starts kept after screening.
        n_screen: screened points at most (>= n_starts): 512 are used for one or two nonlinear
            constants, 2048 for more, up to ``n_screen``; a skeleton whose constants are all linear is
            one least-squares solve (no screening, no LM).
        iters: LM iteration cap.
        snap: snap constants to simple values and refit.
        snap_rtol: relative tolerance of snapping.
        max_denominator: largest denominator ``q`` of snapped rationals.
        weights: optional ``(n_rows,)`` non-negative row weights (the loss is the weighted mean of the
            squared errors). A 0/1 mask fits on a subset of the rows with the compiled kernel of the
            whole data (the collective's critic refits on its interior rows this way).

    Returns:
        a :class:`FitResult`.

    Raises:
        TypeError / ValueError: bad expression, data, key or options (named).

    Example:
        >>> from symbolic import discovery as d
        >>> x = np.linspace(0.0, 1.0, 50)[:, None]
        >>> e = d.from_sympy(d.parse("c0*exp(c1*x)", ["x"]), ["x"])
        >>> r = d.fit_constants(e, x, 1.5 * np.exp(-2.0 * x[:, 0]), key=jax.random.key(0))  # doctest: +SKIP
        >>> [str(v) for v in r.exact], r.snapped  # doctest: +SKIP
        (['3/2', '-2'], (True, True))
    """
    _check_expr(expr, "expr")
    grammar = default_grammar() if grammar is None else grammar
    if not isinstance(grammar, Grammar):
        raise TypeError(f"`grammar` must be a Grammar, got {type(grammar).__name__}")
    B._check_key(key, "key")
    n_starts = _check_int(n_starts, "n_starts", 1)
    n_screen = _check_int(n_screen, "n_screen", n_starts)
    iters = _check_int(iters, "iters", 1)
    Xn, yn = _check_data(X, y)
    if weights is None:
        wn = np.ones_like(yn)
    else:
        wn = np.asarray(weights, np.float64)
        if wn.shape != yn.shape or not np.all(np.isfinite(wn)) or np.any(wn < 0) or not np.any(wn > 0):
            raise ValueError(f"`weights` must be (n_rows,) = ({yn.shape[0]},), finite, >= 0 and not all "
                             f"zero; got shape {wn.shape}")
    for e in _walk(expr):
        if isinstance(e, Call) and e.op not in grammar.names:
            raise ValueError(f"`expr` uses operator {e.op!r}, not in the grammar {list(grammar.names)}")
        if isinstance(e, Var) and e.index >= Xn.shape[1]:
            raise ValueError(f"`expr` reads variable {e.index} but `X` has {Xn.shape[1]} columns")
    n_c = n_constants(expr)
    var_y = float(np.var(yn)) if yn.size > 1 else float(yn[0] ** 2)
    with B.precision("float64"):
        problem = _Problem(
            grammar=grammar,
            X=jnp.asarray(Xn),
            y=jnp.asarray(yn),
            sw=jnp.sqrt(jnp.asarray(wn)),
            n_c=n_c,
            n_pad=_bucket(n_c, 16),  # the constant vector: its size costs nothing, fewer kernels
            len_pad=_bucket(sum(1 for _ in _walk(expr)), 16),
            n_screen=n_screen,
            n_starts=n_starts,
            iters=iters,
        )
        k_fit, k_snap = jax.random.split(key)
        c, mse = problem.solve(expr, k_fit, None)
        exact: list[Any] = [None] * n_c
        current = expr
        if snap and math.isfinite(mse):
            c, mse, exact, current = _snap_all(
                problem, expr, c, mse, k_snap, 1e-18 * var_y, snap_rtol, max_denominator
            )
    valid = math.isfinite(mse)
    return FitResult(
        constants=c,
        loss=mse if valid else math.inf,
        snapped=tuple(v is not None for v in exact),
        exact=tuple(exact),
        expr=current,
        valid=valid,
    )


def _snap_all(problem: _Problem, expr, c, mse, key, tol, rtol, max_den):
    """Snap constants (jointly, else one by one, closest first) and refit the rest; keep what holds."""

    def attempt(fixed: dict[int, Any], c_start):
        e = expr
        for i, v in fixed.items():
            e = _replace_const(e, i, v)
        cf, f = problem.solve(e, key, c_start)
        for i, v in fixed.items():
            cf[i] = float(v)
        return cf, f, e

    def ok(new_mse: float) -> bool:
        return math.isfinite(new_mse) and new_mse <= mse * 1.01 + tol

    proposals = {}
    for i in sorted({t.index for t in _walk(expr) if isinstance(t, Const)}):
        s = snap_value(float(c[i]), rtol=rtol, max_denominator=max_den)
        if s is not None:
            proposals[i] = s
    exact: list[Any] = [None] * len(c)
    if not proposals:
        return c, mse, exact, expr
    c_new, mse_new, e_new = attempt(proposals, c)
    if ok(mse_new):
        for i, v in proposals.items():
            exact[i] = v
        return c_new, mse_new, exact, e_new
    kept: dict[int, Any] = {}
    best = (c, mse, expr)
    order = sorted(proposals, key=lambda i: abs(float(proposals[i]) - c[i]) / abs(c[i]))
    for i in order:
        trial = {**kept, i: proposals[i]}
        c_t, mse_t, e_t = attempt(trial, best[0])
        if ok(mse_t):
            kept = trial
            best = (c_t, mse_t, e_t)
    for i, v in kept.items():
        exact[i] = v
    return best[0], best[1], exact, best[2]
