"""The MCI collective: agents propose, the collective fits, scores, critiques and chooses.

Na & Park (2026), "Machine Collective Intelligence" (arXiv 2604.27297), run with algorithmic agents by
default (an LLM agent is optional). One round:

1. every agent proposes skeletons from its :class:`~symbolic.discovery.Context` (its personal best, the
   global best, the Pareto archive, the analyst's critique of the global best and whether the global
   best over- or under-estimates where it errs most);
2. the collective de-duplicates them (canonical SymPy form; a cache remembers every skeleton ever
   fitted), fits their constants (:func:`~symbolic.discovery.fit_constants`: variable projection,
   multi-start Levenberg-Marquardt in float64, snapping) and scores them by training NMSE; the
   agents take turns, and the round's fitting ends after ``max_fits`` new fits or as soon as a new
   fit reaches ``tol`` on the training rows (the rest of the queue waits for the next round, so a
   simpler equivalent form is still fitted then, in the round that follows the first exact fit);
3. personal bests, the global best and the Pareto archive (lowest loss for each complexity) are
   updated; an agent whose personal best has not improved for ``patience`` rounds is reset
   (``agent.init``);
4. the **critic** judges the global best: it refits it on the interior rows and measures the NMSE on
   the outer shell of the data (the rows farthest from the median in range-normalised max-norm, an
   *internal extrapolation split*), checks that it stays finite beyond the data box, that its constants
   are identifiable (the Jacobian of the predictions by the constants is well conditioned) and which
   variable the residual follows; the critique text and the over/under hint go to every agent.

The search stops after ``iterations`` rounds, when its share of ``budget_s`` (``SEARCH_SHARE``, 80%)
is spent, one round after the global best first fits to ``tol`` both on the training rows and on the
internal extrapolation split, or one round after some Pareto member first fits **to the noise level**
(that last round lets the simplifier offer simpler equivalent forms). Noisy data never reach ``tol``;
a member fits to the noise level when its training MSE is within 10% of the global best's, its
residual has no smooth structure left (:func:`residual_structure`: the residual averaged over each
row's 16 nearest rows varies no more than independent noise would) and its MSE on the outer shell,
refitted on the interior, is at most twice its training MSE.

The answer is chosen from the archive by the critic: the simplest hypothesis whose
internal-extrapolation NMSE is within a factor ``2`` (plus ``tol``) of the best one. The archive is
scored simplest first, with ``budget_s``, until ``FINAL_SHARE`` (90%) of it is spent; members left
unscored are not chosen, so the rounds leave the critic 10% of the budget and a refit that has started
may run past it (by up to ~16 s on the public benchmark). Once the search share is
spent, agents that have not yet proposed in the current round skip it; a fit or a critique that has
started finishes, so a run can end a few seconds past its share.

Compiled kernels: the fits and evaluations compile one kernel per data shape and padded skeleton
class (a few dozen to a hundred per dataset, reused across rounds). A process that runs
:func:`discover` on many datasets of different shapes accumulates them; call ``jax.clear_caches()``
between datasets (on Linux, thousands of CPU executables exhaust the memory-map limit,
``vm.max_map_count``, and LLVM then fails with "Cannot allocate memory").

Determinism: agents and fits draw their randomness from ``key`` only, so the same key and data give the
same equation whenever the run ends by ``iterations``, ``tol`` or ``noise`` (a ``budget_s`` stop
depends on the machine's speed).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy

import sciml.backend as B

from ._agent import AbstractAgent, Context, Hypothesis
from ._expr import AbstractExpr, Call, Const, Var, _walk, complexity, from_sympy, to_sympy
from ._fit import fit_constants
from ._grammar import Grammar, default_grammar
from ._program import compile_programs, evaluate

#: Share of ``budget_s`` for the rounds; the critic scores the Pareto front until ``FINAL_SHARE``.
SEARCH_SHARE = 0.8
FINAL_SHARE = 0.9

__all__ = ["Discovery", "Round", "critique", "default_agents", "discover", "equation",
           "internal_extrapolation_split", "predict", "residual_structure"]


class Round(eqx.Module):
    """Progress of one round (what the CLI prints).

    Attributes:
        iteration: round number from 0.
        equation: the global best as a string (constants substituted, 6 significant digits).
        nmse: its training NMSE.
        extrapolation_nmse: its internal-extrapolation NMSE (the critic's).
        complexity: its node count.
        candidates: skeletons proposed this round (all agents, before de-duplication).
        fitted: new skeletons fitted this round.
        seconds: wall time since the start.
        critique: the critique broadcast after this round.
        notes: agents that failed this round (their error messages; the search goes on without them).
    """

    iteration: int = eqx.field(static=True)
    equation: str = eqx.field(static=True)
    nmse: float = eqx.field(static=True)
    extrapolation_nmse: float = eqx.field(static=True)
    complexity: int = eqx.field(static=True)
    candidates: int = eqx.field(static=True)
    fitted: int = eqx.field(static=True)
    seconds: float = eqx.field(static=True)
    critique: str = eqx.field(static=True)
    notes: tuple[str, ...] = eqx.field(static=True, default=())


class Discovery(eqx.Module):
    """The result of :func:`discover`.

    Attributes:
        best: the chosen hypothesis (by the critic's internal-extrapolation error, then simplicity).
        archive: the Pareto front (lowest training loss for each complexity), by complexity, each with
            its internal-extrapolation NMSE.
        history: one :class:`Round` per round.
        variables: the variable names.
        grammar: the operator set.
        seconds: wall time of the search.
        stopped: why the search ended: ``"tol"`` (exact fit), ``"noise"`` (a fit to the noise level),
            ``"iterations"`` or ``"budget"``.
    """

    best: Hypothesis
    archive: tuple[Hypothesis, ...]
    history: tuple[Round, ...] = eqx.field(static=True)
    variables: tuple[str, ...] = eqx.field(static=True)
    grammar: Grammar = eqx.field(static=True)
    seconds: float = eqx.field(static=True)
    stopped: str = eqx.field(static=True)

    def equation(self, digits: int | None = None) -> sympy.Expr:
        """The chosen equation over the variable names, fitted constants substituted.

        Args:
            digits: round the (non-snapped) constants to this many significant digits (default: full).
        """
        return equation(self.best, self.variables, self.grammar, digits=digits)

    def predict(self, X: Any) -> np.ndarray:
        """The chosen equation on new rows ``X`` (``(n_rows, n_vars)``; 1-D for one variable), float64.

        Raises:
            ValueError: ``X`` does not have one column per variable (an equation that reads only some
                columns would otherwise read misaligned ones without notice).
        """
        Xn = np.asarray(X, np.float64)
        if Xn.ndim == 1 and len(self.variables) == 1:
            Xn = Xn[:, None]
        if Xn.ndim != 2 or Xn.shape[1] != len(self.variables):
            raise ValueError(f"`X` must have shape (n_rows, {len(self.variables)}), one column per variable "
                             f"{list(self.variables)} in that order, got shape {Xn.shape}")
        return predict(self.best, Xn, self.grammar)


# --------------------------------------------------------------------------------------------------
# Hypothesis helpers
# --------------------------------------------------------------------------------------------------


def equation(h: Hypothesis, variables: Sequence[str], grammar: Grammar | None = None,
             digits: int | None = None) -> sympy.Expr:
    """A hypothesis as a SymPy expression over ``variables`` with its constants substituted."""
    e = to_sympy(h.expr, variables, grammar)
    subs = {}
    for s in e.free_symbols:
        name = str(s)
        if name.startswith("c") and name[1:].isdigit() and name not in variables:
            v = float(h.constants[int(name[1:])])
            subs[s] = sympy.Float(v, digits) if digits else sympy.Float(v, 17)
    return e.xreplace(subs)


def predict(h: Hypothesis, X: Any, grammar: Grammar | None = None) -> np.ndarray:
    """Evaluate a hypothesis on rows ``X`` in float64 (host NumPy result)."""
    grammar = default_grammar() if grammar is None else grammar
    Xn = np.asarray(X, np.float64)
    if Xn.ndim != 2:
        raise ValueError(f"`X` must be 2-D (n_rows, n_vars), got shape {Xn.shape}")
    with B.precision("float64"):
        out = evaluate(compile_programs(h.expr, grammar), jnp.asarray(Xn),
                       jnp.asarray(np.asarray(h.constants, np.float64).reshape(-1)))
        return np.asarray(out, np.float64)


def _nmse(y: np.ndarray, f: np.ndarray) -> float:
    var = float(np.var(y))
    if not np.all(np.isfinite(f)):
        return math.inf
    mse = float(np.mean((y - f) ** 2))
    return mse / var if var > 0 else mse


def internal_extrapolation_split(X: Any, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Interior and outer-shell row indices of ``X``: the critic's internal extrapolation split.

    Columns are normalised to ``[0, 1]`` by their range; the ``fraction`` of rows farthest from the
    column-wise median in the max-norm form the shell (ties broken by row order).

    Returns:
        ``(interior, shell)`` index arrays.
    """
    Xn = np.asarray(X, np.float64)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"`fraction` must be in (0, 1), got {fraction!r}")
    lo, hi = Xn.min(0), Xn.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    z = (Xn - lo) / span
    d = np.max(np.abs(z - np.median(z, axis=0)), axis=1)
    order = np.argsort(-d, kind="stable")
    n_shell = max(1, int(round(fraction * Xn.shape[0])))
    return np.sort(order[n_shell:]), np.sort(order[:n_shell])


def _neighbour_rows(X: np.ndarray, k: int = 16, max_rows: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Rows for the residual whiteness test and, for each, its ``k`` nearest other rows.

    Distances are Euclidean in range-normalised columns; at most ``max_rows`` rows (evenly spaced
    indices) are used, so the cost stays ``O(max_rows^2)`` on big data.

    Returns:
        ``(rows, neighbours)``: ``(n,)`` row indices and ``(n, k)`` indices into ``rows``.
    """
    n = X.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, max_rows)).astype(np.int64))
    lo, hi = X.min(0), X.max(0)
    z = (X[rows] - lo) / np.where(hi > lo, hi - lo, 1.0)
    k = min(k, len(rows) - 1)
    nbrs = np.empty((len(rows), k), np.int64)
    sq = np.sum(z * z, axis=1)
    for s in range(0, len(rows), 512):  # blocks of 512 rows keep the distance matrix small
        d = sq[s:s + 512, None] + sq[None, :] - 2.0 * z[s:s + 512] @ z.T
        d[np.arange(d.shape[0]), np.arange(s, s + d.shape[0])] = np.inf  # not itself
        nbrs[s:s + 512] = np.argpartition(d, k, axis=1)[:, :k]
    return rows, nbrs


def residual_structure(r: Any, neighbours: np.ndarray) -> float:
    """How much of a residual is smooth structure rather than noise: ``k var(local mean) / var(r)``.

    The local mean of each residual is taken over its ``k`` nearest rows (``neighbours``, ``(n, k)``
    indices into ``r``, itself excluded). For independent noise the local means have variance
    ``var(r) / k``, so the statistic is about 1; for a residual that varies smoothly with the inputs it
    approaches ``k``. With residual ``noise + g`` it is ``(s2 + k var(g)) / (s2 + var(g))``: below 1.5
    (the collective's noise-level test, ``k = 16``) only when ``var(g)`` is under ~1/29 of the noise
    variance ``s2``.

    Returns:
        the statistic (``inf`` for non-finite residuals; 1.0 for a residual that is exactly constant).
    """
    r = np.asarray(r, np.float64)
    if not np.all(np.isfinite(r)):
        return math.inf
    rc = r - r.mean()
    var = float(np.mean(rc * rc))
    if var == 0.0:
        return 1.0
    local = rc[neighbours].mean(axis=1)
    return float(neighbours.shape[1] * np.mean(local * local) / var)


# --------------------------------------------------------------------------------------------------
# The critic
# --------------------------------------------------------------------------------------------------


class _Data(eqx.Module):
    X: np.ndarray
    y: np.ndarray
    interior: np.ndarray
    shell: np.ndarray
    probe: np.ndarray  # rows beyond the data box (asymptotics)
    rows: np.ndarray  # rows of the residual whiteness test ...
    neighbours: np.ndarray  # ... and their nearest rows (see _neighbour_rows)
    variables: tuple[str, ...] = eqx.field(static=True)
    grammar: Grammar = eqx.field(static=True)


def _probe_rows(X: np.ndarray, key) -> np.ndarray:
    """Rows up to 50% of the range beyond the data box, keeping each column's sign."""
    lo, hi = X.min(0), X.max(0)
    span = hi - lo
    a = np.where(lo > 0, np.maximum(lo - 0.5 * span, lo / 2), lo - 0.5 * span)
    b = np.where(hi < 0, np.minimum(hi + 0.5 * span, hi / 2), hi + 0.5 * span)
    u = np.asarray(jax.random.uniform(key, (256, X.shape[1]), dtype=jnp.float32), np.float64)
    return a + (b - a) * u


def _extrapolation_nmse(h: Hypothesis, data: _Data, key, fit_options: dict) -> float:
    """Refit ``h``'s skeleton on the interior rows; NMSE on the shell."""
    Xs, ys = data.X[data.shell], data.y[data.shell]
    mask = np.zeros(data.y.shape[0])
    mask[data.interior] = 1.0
    try:  # a 0/1 weight mask: the compiled kernels of the whole data are reused
        r = fit_constants(h.expr, data.X, data.y, key=key, grammar=data.grammar, snap=False, weights=mask,
                          **fit_options)
    except ValueError:
        return math.inf
    if not r.valid:
        return math.inf
    f = predict(Hypothesis(r.expr, r.constants, r.loss, math.nan, 0, h.agent), Xs, data.grammar)
    return _nmse(ys, f)


def _identifiability(h: Hypothesis, data: _Data) -> float:
    """Condition number of the Jacobian of the predictions by the free constants (1 if none)."""
    c = np.asarray(h.constants, np.float64).reshape(-1)
    free = sorted({e.index for e in _walk(h.expr) if isinstance(e, Const)})
    if not free:
        return 1.0
    with B.precision("float64"):
        prog = compile_programs(h.expr, data.grammar)
        X = jnp.asarray(data.X)

        def f(cf):
            full = jnp.asarray(c).at[jnp.asarray(free)].set(cf)
            return evaluate(prog, X, full)

        J = np.asarray(jax.jacfwd(f)(jnp.asarray(c[free])), np.float64)
    if not np.all(np.isfinite(J)):
        return math.inf
    J = J / np.maximum(np.linalg.norm(J, axis=0), 1e-300)
    s = np.linalg.svd(J, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else math.inf


def _hint(y: np.ndarray, f: np.ndarray) -> str:
    r = y - f
    if not np.all(np.isfinite(r)) or np.all(r == 0):
        return ""
    top = np.argsort(-np.abs(r))[: max(1, len(r) // 10)]
    m = float(np.mean(r[top]))
    return "over" if m < 0 else "under" if m > 0 else ""


def critique(h: Hypothesis, data: _Data, key, fit_options: dict) -> tuple[Hypothesis, str, str]:
    """The analyst's judgement of a hypothesis: (h with its extrapolation NMSE, critique text, hint)."""
    f = predict(h, data.X, data.grammar)
    ext = h.extrapolation_nmse
    if math.isnan(ext):
        ext = _extrapolation_nmse(h, data, key, fit_options)
        h = dataclasses.replace(h, extrapolation_nmse=ext)
    hint = _hint(data.y, f)
    eq = str(equation(h, data.variables, data.grammar, digits=6))
    parts = [f"The current best equation is y = {eq} (complexity {h.complexity}, proposed by {h.agent}); "
             f"training NMSE {h.nmse:.3g}, internal-extrapolation NMSE {ext:.3g} "
             "(refitted on the interior 80% of the rows, scored on the outer shell)."]
    if math.isfinite(ext) and ext > 10 * max(h.nmse, 1e-12):
        parts.append("It extrapolates much worse than it fits: its structure is probably wrong or "
                     "over-fitted; prefer forms with the right asymptotic behaviour.")
    if hint:
        word = "over-estimates" if hint == "over" else "under-estimates"
        parts.append(f"Where its error is largest it {word} the target.")
    r = data.y - f
    if np.all(np.isfinite(r)) and np.std(r) > 0:
        corr = [abs(float(np.corrcoef(r, data.X[:, j])[0, 1])) if np.std(data.X[:, j]) > 0 else 0.0
                for j in range(data.X.shape[1])]
        j = int(np.argmax(corr))
        if corr[j] > 0.2:
            parts.append(f"The residual follows {data.variables[j]} (|corr| {corr[j]:.2f}).")
    fp = predict(h, data.probe, data.grammar)
    bad = float(np.mean(~np.isfinite(fp)))
    if bad > 0:
        parts.append(f"It is not finite on {100 * bad:.0f}% of points just beyond the data box.")
    cond = _identifiability(h, data)
    if cond > 1e8:
        parts.append(f"Its constants are not all identifiable (Jacobian condition {cond:.2g}): "
                     "remove redundant constants.")
    return h, " ".join(parts), hint


# --------------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------------


def _canonical(expr: AbstractExpr, variables: Sequence[str], grammar: Grammar) -> str | None:
    try:
        return sympy.srepr(to_sympy(expr, variables, grammar))
    except (ValueError, TypeError, ZeroDivisionError):
        return None


def _tidy(expr: AbstractExpr, variables: Sequence[str], grammar: Grammar) -> AbstractExpr:
    """SymPy's automatic simplification of a fitted form (``0*z**3`` from a constant snapped to 0
    vanishes, ``3/2*2*x`` folds); kept only if it is no larger. Constants keep their indices."""
    try:
        e = from_sympy(to_sympy(expr, variables, grammar), variables, grammar)
    except (ValueError, TypeError):
        return expr
    return e if complexity(e) <= complexity(expr) else expr


def _valid_skeleton(expr: Any, n_vars: int, grammar: Grammar) -> bool:
    if not isinstance(expr, AbstractExpr):
        return False
    names = set(grammar.names)
    consts = []
    for e in _walk(expr):
        if isinstance(e, Var) and e.index >= n_vars:
            return False
        if isinstance(e, Call) and e.op not in names:
            return False
        if isinstance(e, Const):
            consts.append(e.index)
    return not consts or max(consts) < 64


def _round_robin(queues: Sequence[Sequence[Any]]) -> list[tuple[int, Any]]:
    """(queue index, item) taking one item from each non-empty queue in turn."""
    out: list[tuple[int, Any]] = []
    for j in range(max((len(q) for q in queues), default=0)):
        out.extend((i, q[j]) for i, q in enumerate(queues) if j < len(q))
    return out


def _update_archive(archive: dict[int, Hypothesis], h: Hypothesis) -> None:
    old = archive.get(h.complexity)
    if old is None or h.loss < old.loss:
        archive[h.complexity] = h


def _pareto(archive: dict[int, Hypothesis]) -> tuple[Hypothesis, ...]:
    front, best = [], math.inf
    for c in sorted(archive):
        h = archive[c]
        if h.loss < best:
            front.append(h)
            best = h.loss
    return tuple(front)


def _check_data(X: Any, y: Any, variables: Any) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        Xn = np.asarray(X, np.float64)
        yn = np.asarray(y, np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`X` and `y` must be numeric arrays: {err}") from None
    if Xn.ndim == 1:
        Xn = Xn[:, None]
    if Xn.ndim != 2:
        raise ValueError(f"`X` must be (n_rows, n_vars), got shape {Xn.shape}")
    if yn.ndim != 1 or yn.shape[0] != Xn.shape[0]:
        raise ValueError(f"`y` must be (n_rows,) = ({Xn.shape[0]},), got shape {yn.shape}")
    if not np.all(np.isfinite(Xn)):
        raise ValueError("`X` contains NaN or inf; drop or impute those rows first")
    if not np.all(np.isfinite(yn)):
        raise ValueError("`y` contains NaN or inf; drop those rows first")
    if Xn.shape[0] < 8:
        raise ValueError(f"`X` has {Xn.shape[0]} rows; discovery needs at least 8")
    if float(np.ptp(yn)) == 0.0:
        raise ValueError("`y` is constant; there is no relation to discover (the answer is y = "
                         f"{float(yn[0])!r})")
    if variables is None:
        names = tuple(f"x{i}" for i in range(Xn.shape[1]))
    else:
        names = tuple(str(v) for v in variables)
        if len(names) != Xn.shape[1]:
            raise ValueError(f"`variables` has {len(names)} names but `X` has {Xn.shape[1]} columns")
        if len(set(names)) != len(names):
            raise ValueError(f"`variables` must be unique, got {list(names)}")
        bad = [n for n in names if not n.isidentifier() or (n.startswith("c") and n[1:].isdigit())]
        if bad:
            raise ValueError(f"`variables` {bad} are not valid names (identifiers, not c0, c1, ...)")
    return Xn, yn, names


def default_agents() -> tuple[AbstractAgent, ...]:
    """The default (no-LLM) engine: every algorithmic agent with its default configuration."""
    from ._agents_refine import ResidualAgent, SimplifierAgent
    from ._agents_regression import DimensionalAgent, PowerLawAgent, SparseRegressionAgent
    from ._agents_search import EnumerationAgent, GeneticAgent, SeparabilityAgent

    return (SparseRegressionAgent(), PowerLawAgent(), DimensionalAgent(), EnumerationAgent(),
            GeneticAgent(), SeparabilityAgent(), ResidualAgent(), SimplifierAgent())


def discover(
    X: Any,
    y: Any,
    *,
    key: jax.Array,
    variables: Sequence[str] | None = None,
    agents: Sequence[AbstractAgent] | None = None,
    iterations: int = 20,
    budget_s: float | None = None,
    grammar: Grammar | None = None,
    units: Sequence[Sequence[float]] | None = None,
    patience: int = 3,
    max_fits: int = 96,
    tol: float = 1e-12,
    extrapolation_fraction: float = 0.2,
    fit_options: dict | None = None,
    callback: Callable[[Round], None] | None = None,
) -> Discovery:
    """Discover an equation ``y = f(X)`` with a collective of agents (MCI's protocol).

    See the module docstring for the round structure, the critic and the final choice.

    Args:
        X: ``(n_rows, n_vars)`` inputs (a 1-D array is one variable).
        y: ``(n_rows,)`` targets.
        key: PRNG key (agents, fits and the critic split it).
        variables: column names (default ``x0, x1, ...``).
        agents: the collective (default :func:`default_agents`, no LLM).
        iterations: maximum number of rounds.
        budget_s: wall-time budget in seconds (``None``: no limit).
        grammar: operator set (default :func:`default_grammar`).
        units: optional dimension exponents per variable, the target's last (for dimensional agents).
        patience: rounds without a personal improvement before an agent is reset.
        max_fits: new skeletons fitted per round at most (the rest wait for later rounds; agents take
            turns so that every agent gets fits).
        tol: stop when the global best's training and internal-extrapolation NMSE are both below it.
        extrapolation_fraction: share of rows in the critic's outer shell.
        fit_options: extra keyword arguments of :func:`fit_constants` (``n_starts``, ``n_screen``,
            ``iters``, ...).
        callback: called with a :class:`Round` after each round (progress display).

    Returns:
        a :class:`Discovery`.

    Raises:
        TypeError / ValueError: bad data, names, agents or options (named).

    Example:
        >>> import numpy as np, jax
        >>> from symbolic import discovery as d
        >>> x = np.linspace(1.0, 3.0, 50)
        >>> r = d.discover(x[:, None], 2.5 * x**2, key=jax.random.key(0), variables=["x"],
        ...                agents=[d.PowerLawAgent()], iterations=3)  # doctest: +SKIP
        >>> r.equation(), r.stopped  # doctest: +SKIP
        (5*x**2/2, 'tol')
    """
    t0 = time.perf_counter()
    Xn, yn, names = _check_data(X, y, variables)
    B._check_key(key, "key")
    grammar = default_grammar() if grammar is None else grammar
    if not isinstance(grammar, Grammar):
        raise TypeError(f"`grammar` must be a Grammar, got {type(grammar).__name__}")
    agents = default_agents() if agents is None else tuple(agents)
    if not agents:
        raise ValueError("`agents` must hold at least one agent")
    for i, a in enumerate(agents):
        if not isinstance(a, AbstractAgent):
            raise TypeError(f"`agents[{i}]` must be an AbstractAgent, got {type(a).__name__}")
    agent_names = [a.name for a in agents]
    if len(set(agent_names)) != len(agent_names):
        raise ValueError(f"agent names must be unique, got {agent_names}")
    for name, v, lo in (("iterations", iterations, 1), ("patience", patience, 1), ("max_fits", max_fits, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"`{name}` must be an int >= {lo}, got {v!r}")
    if budget_s is not None and not (isinstance(budget_s, (int, float)) and budget_s > 0):
        raise ValueError(f"`budget_s` must be a positive number of seconds or None, got {budget_s!r}")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"`tol` must be a non-negative number, got {tol!r}")
    units_t = None
    if units is not None:
        units_t = tuple(tuple(float(u) for u in row) for row in units)
        if len(units_t) != Xn.shape[1] + 1 or len({len(r) for r in units_t}) != 1:
            raise ValueError(f"`units` must give one exponent vector per variable and one for the target "
                             f"({Xn.shape[1] + 1} rows of equal length), got {len(units_t)} rows")
    fit_options = dict(fit_options or {})
    unknown = set(fit_options) - {"n_starts", "n_screen", "iters", "snap_rtol", "max_denominator"}
    if unknown:
        raise ValueError(f"`fit_options` has unknown keys {sorted(unknown)}")

    interior, shell = internal_extrapolation_split(Xn, extrapolation_fraction)
    key, k_probe = jax.random.split(key)
    data = _Data(Xn, yn, interior, shell, _probe_rows(Xn, k_probe), *_neighbour_rows(Xn), names, grammar)
    var_y = float(np.var(yn))

    base = Context(X=Xn, y=yn, variables=names, grammar=grammar, units=units_t)
    states: list[Any] = []
    for i, a in enumerate(agents):
        states.append(a.init(base, key=jax.random.fold_in(key, 1_000_000 + i)))
    personal: list[Hypothesis | None] = [None] * len(agents)
    stale = [0] * len(agents)
    cache: dict[str, Hypothesis | None] = {}
    pending: list[list[AbstractExpr]] = [[] for _ in agents]
    archive: dict[int, Hypothesis] = {}
    best: Hypothesis | None = None
    text, hint, residual = "", "", None
    history: list[Round] = []
    stopped = "iterations"
    tol_round: int | None = None
    noise_round: int | None = None
    tested: set[tuple[int, float]] = set()

    def out_of_time(share: float = SEARCH_SHARE) -> bool:
        return budget_s is not None and time.perf_counter() - t0 > share * budget_s

    for it in range(iterations):
        k_round = jax.random.fold_in(key, it)
        n_proposed = 0
        notes: list[str] = []
        for i, a in enumerate(agents):
            if best is not None and out_of_time():  # the rest of the agents skip this last round
                break
            ctx = Context(
                X=Xn, y=yn, variables=names, grammar=grammar, units=units_t, iteration=it,
                global_best=best, personal_best=personal[i], archive=_pareto(archive), critique=text,
                hint=hint, residual=residual)
            try:
                cands, states[i] = a.propose(ctx, states[i], key=jax.random.fold_in(k_round, i))
            except Exception as err:  # noqa: BLE001 - one agent's failure must not end the search
                cands = []
                notes.append(f"agent {a.name} failed: {type(err).__name__}: {err}")
            n_proposed += len(cands)
            for c in cands:
                if _valid_skeleton(c, Xn.shape[1], grammar):
                    pending[i].append(c)
        # fit new skeletons: agents take turns (round robin over their queues); in the round after
        # the first exact fit, simplest skeletons first. Fitting ends at max_fits new fits, at the
        # budget, or at the first new fit that reaches tol; the rest waits for the next round.
        fitted = 0
        improved = [False] * len(agents)
        order = _round_robin(pending)
        if tol_round is not None:
            order.sort(key=lambda item: complexity(item[1]))
        exact = False
        done = 0
        for i, e in order:
            if fitted >= max_fits or exact or out_of_time():
                break
            done += 1
            canon = _canonical(e, names, grammar)
            if canon is None:
                continue
            if canon in cache:
                h = cache[canon]
            else:
                try:
                    r = fit_constants(e, Xn, yn, key=jax.random.fold_in(k_round, 7919 + fitted),
                                      grammar=grammar, **fit_options)
                except (ValueError, TypeError):
                    r = None
                fitted += 1
                h = None
                if r is not None and r.valid:
                    fitted_expr = _tidy(r.expr, names, grammar)
                    h = Hypothesis(expr=fitted_expr, constants=np.asarray(r.constants, np.float64),
                                   loss=float(r.loss), nmse=float(r.loss) / var_y,
                                   complexity=complexity(fitted_expr), agent=agents[i].name)
                    _update_archive(archive, h)
                    exact = h.nmse <= tol
                cache[canon] = h
            if h is not None and (personal[i] is None or h.loss < personal[i].loss):
                personal[i] = h
                improved[i] = True
            if h is not None and (best is None or h.loss < best.loss):
                best = h
        pending = [[] for _ in agents]
        for i, e in order[done:]:  # what did not fit this round waits for the next
            if len(pending[i]) < max_fits:
                pending[i].append(e)
        for i, a in enumerate(agents):
            stale[i] = 0 if improved[i] else stale[i] + 1
            if stale[i] >= patience:
                states[i] = a.init(base, key=jax.random.fold_in(k_round, 2_000_000 + i))
                stale[i] = 0
        if best is None:
            history.append(Round(it, "", math.inf, math.inf, 0, n_proposed, fitted,
                                 time.perf_counter() - t0, "", tuple(notes)))
            if callback is not None:
                callback(history[-1])
            if out_of_time():
                stopped = "budget"
                break
            continue
        best, text, hint = critique(best, data, jax.random.fold_in(k_round, 3), fit_options)
        if archive.get(best.complexity) is not None and archive[best.complexity].expr == best.expr:
            archive[best.complexity] = best
        residual = yn - predict(best, Xn, grammar)
        at_tol = best.nmse <= tol and best.extrapolation_nmse <= tol
        if not at_tol and noise_round is None and not out_of_time():
            h_noise = _noise_level_fit(archive, best, data, jax.random.fold_in(k_round, 4), fit_options,
                                       tested)
            if h_noise is not None:
                noise_round = it
                notes.append(f"y = {equation(h_noise, names, grammar, digits=6)} fits to the noise level")
        history.append(Round(it, str(equation(best, names, grammar, digits=6)), best.nmse,
                             best.extrapolation_nmse, best.complexity, n_proposed, fitted,
                             time.perf_counter() - t0, text, tuple(notes)))
        if callback is not None:
            callback(history[-1])
        # one more round after the first exact fit (or fit to the noise level), so that the simplifier
        # (and every agent) can offer simpler equivalent forms
        if at_tol:
            if tol_round is not None and it > tol_round:
                stopped = "tol"
                break
            tol_round = it if tol_round is None else tol_round
        elif noise_round is not None and it > noise_round:
            stopped = "noise"
            break
        if out_of_time():
            stopped = "budget"
            break
    if best is None:
        raise ValueError("no agent proposed a valid candidate; check the agents and the grammar")
    # The critic scores the rest of the Pareto front, simplest first, within the budget (a refit of a
    # long skeleton can take many seconds); a member left unscored counts as not extrapolating (inf),
    # so the critiqued global best always has a score.
    front = []
    for j, h in enumerate(_pareto(archive)):  # ascending complexity
        if math.isnan(h.extrapolation_nmse):
            late = out_of_time(FINAL_SHARE)
            e = math.inf if late else _extrapolation_nmse(h, data, jax.random.fold_in(key, 5_000_000 + j),
                                                          fit_options)
            h = dataclasses.replace(h, extrapolation_nmse=e)
        front.append(h)
    chosen = _choose(front, tol)
    return Discovery(best=chosen, archive=tuple(front), history=tuple(history), variables=names,
                     grammar=grammar, seconds=time.perf_counter() - t0, stopped=stopped)


def _noise_level_fit(archive: dict[int, Hypothesis], best: Hypothesis, data: _Data, key, fit_options: dict,
                     tested: set[tuple[int, float]], max_refits: int = 3) -> Hypothesis | None:
    """The simplest Pareto member that fits to the noise level, or None.

    It must fit about as well as the global best (training MSE within 10%), leave a residual without
    smooth structure (:func:`residual_structure` below 1.5) and extrapolate to the critic's outer shell
    as well as it fits (shell MSE, refitted on the interior, at most twice its training MSE). Members
    are tested once each (``tested``), at most ``max_refits`` refits per call; scores found go into
    ``archive``.
    """
    var_shell = float(np.var(data.y[data.shell]))
    refits = 0
    for h in _pareto(archive):
        tag = (h.complexity, h.loss)
        if tag in tested or not h.loss <= 1.1 * best.loss:
            continue
        if math.isnan(h.extrapolation_nmse) and refits >= max_refits:
            return None
        tested.add(tag)
        f = predict(h, data.X[data.rows], data.grammar)
        if residual_structure(data.y[data.rows] - f, data.neighbours) >= 1.5:
            continue
        if math.isnan(h.extrapolation_nmse):
            refits += 1
            h = dataclasses.replace(h, extrapolation_nmse=_extrapolation_nmse(h, data, key, fit_options))
            archive[h.complexity] = h
        if h.extrapolation_nmse * var_shell <= 2.0 * h.loss:
            return h
    return None


def _choose(front: Sequence[Hypothesis], tol: float) -> Hypothesis:
    """The simplest hypothesis within a factor 2 (plus ``tol``) of the best extrapolation NMSE."""
    scores = [h.extrapolation_nmse if math.isfinite(h.extrapolation_nmse) else math.inf for h in front]
    best = min(scores)
    if not math.isfinite(best):
        return min(front, key=lambda h: h.loss)
    ok = [h for h, s in zip(front, scores) if s <= 2.0 * best + tol]
    return min(ok, key=lambda h: (h.complexity, h.loss))
