"""The agent interface of the MCI collective: what agents see, what they return.

Na & Park (2026), "Machine Collective Intelligence": every round each agent proposes equation
*skeletons* (expressions whose free constants ``c0, c1, ...`` are still to be fitted); the collective
fits their constants (:func:`~symbolic.discovery.fit_constants`), scores them, keeps each agent's
personal best and the global best, and broadcasts a critique of the global best with the hint whether
it over- or under-estimates. Agents never fit data themselves unless it is their method (a sparse
regression picks terms by fitting); whatever they return is refitted and judged the same way.

An agent is an immutable configuration (an equinox Module with static fields) with explicit state:
``init(context, key=...) -> state`` once (and again when the collective resets a stuck agent), then
``propose(context, state, key=...) -> (candidates, state)`` every round. The state is any Python
object the agent needs between rounds (a GP population, an enumeration cursor); the collective only
stores and passes it back.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import numpy as np

from ._expr import AbstractExpr
from ._grammar import Grammar

__all__ = ["AbstractAgent", "Context", "Hypothesis"]


class Hypothesis(eqx.Module):
    """A fitted, scored candidate (host values).

    Attributes:
        expr: the skeleton, snapped constants replaced by exact literals (``FitResult.expr``).
        constants: ``(n_constants,)`` float64 values of the remaining ``c0, c1, ...``.
        loss: mean squared error on the training rows (``inf`` if invalid).
        nmse: ``loss / var(y)`` (0 is exact, 1 is the constant predictor).
        complexity: node count of ``expr`` (:func:`~symbolic.discovery.complexity`).
        agent: name of the agent that proposed it.
        extrapolation_nmse: NMSE on the critic's internal extrapolation split, refitted on the
            interior rows only (``nan`` until the critic has judged it).
    """

    expr: AbstractExpr = eqx.field(static=True)
    constants: np.ndarray
    loss: float = eqx.field(static=True)
    nmse: float = eqx.field(static=True)
    complexity: int = eqx.field(static=True)
    agent: str = eqx.field(static=True)
    extrapolation_nmse: float = eqx.field(static=True, default=float("nan"))


class Context(eqx.Module):
    """What an agent sees in a round (host NumPy data; read-only).

    Attributes:
        X: ``(n_rows, n_vars)`` float64 training inputs.
        y: ``(n_rows,)`` float64 targets.
        variables: column names of ``X`` (expressions print with them).
        grammar: the operator set candidates may use.
        units: per variable its dimension exponents (e.g. ``(1, 0, -1)`` for m/s over (m, kg, s)),
            with the target's last; ``None`` when no units are declared.
        iteration: the round number, from 0.
        global_best: the collective's best hypothesis so far (``None`` in round 0).
        personal_best: this agent's best (``None`` until it has proposed a valid one).
        archive: the Pareto front (lowest loss for each complexity), by complexity.
        critique: the analyst's critique of the global best, broadcast to all agents ("" in round 0).
        hint: ``"over"`` if the global best over-estimates the targets where it errs most (mean
            residual ``y - f`` negative on the rows of largest error), ``"under"`` if it
            under-estimates, ``""`` if unknown.
        residual: ``y - f_best(X)`` on the training rows (``None`` in round 0).
    """

    X: np.ndarray
    y: np.ndarray
    variables: tuple[str, ...] = eqx.field(static=True)
    grammar: Grammar = eqx.field(static=True)
    units: tuple[tuple[float, ...], ...] | None = eqx.field(static=True, default=None)
    iteration: int = eqx.field(static=True, default=0)
    global_best: Hypothesis | None = None
    personal_best: Hypothesis | None = None
    archive: tuple[Hypothesis, ...] = ()
    critique: str = eqx.field(static=True, default="")
    hint: str = eqx.field(static=True, default="")
    residual: np.ndarray | None = None


class AbstractAgent(eqx.Module):
    """An equation-proposing agent (see the module docstring for the protocol).

    Subclasses are final Modules with static configuration fields and a ``name``.
    """

    name: eqx.AbstractVar[str]

    @abc.abstractmethod
    def init(self, context: Context, *, key: Any) -> Any:
        """The agent's initial state (also called to reset an agent that stopped improving)."""

    @abc.abstractmethod
    def propose(self, context: Context, state: Any, *, key: Any) -> tuple[list[AbstractExpr], Any]:
        """Candidate skeletons for this round and the new state.

        Candidates must use only ``context.grammar``'s operators and variables ``0 ..
        n_vars - 1``; their free constants are numbered ``c0, c1, ...`` from 0. The collective
        de-duplicates, fits and scores them; an invalid candidate is dropped, never an error.
        """
