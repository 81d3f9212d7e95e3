"""One conformance suite for every agent of the default engine (and the LLM agent without a backend):
the protocol of `symbolic.discovery.AbstractAgent` on small problems of 1 and 3 variables."""

from __future__ import annotations

import functools
import time

import jax
import numpy as np
import pytest

from symbolic import discovery as d
from symbolic.discovery._collective import predict
from symbolic.discovery._expr import _walk

AGENTS = [*d.default_agents(), d.LLMAgent(name="llm")]


def _contexts():
    rng = np.random.default_rng(0)
    g = d.default_grammar()
    x1 = rng.uniform(0.5, 2.0, (300, 1))
    one = d.Context(X=x1, y=1.5 * np.exp(-x1[:, 0]) + 0.2, variables=("t",), grammar=g)
    x3 = rng.uniform(0.5, 2.0, (300, 3))
    y3 = x3[:, 0] * x3[:, 1] / x3[:, 2] + 0.5 * x3[:, 0]
    three = d.Context(X=x3, y=y3, variables=("a", "b", "c"), grammar=g,
                      units=((1, 0), (0, 1), (0, 1), (1, 0)))
    # a later round: a (poor) global best with its residual, critique and hint
    e = d.from_sympy(d.parse("c0*a*b", ["a", "b", "c"]), ["a", "b", "c"])
    r = d.fit_constants(e, x3, y3, key=jax.random.key(0), snap=False)
    best = d.Hypothesis(expr=r.expr, constants=np.asarray(r.constants), loss=float(r.loss),
                        nmse=float(r.loss / np.var(y3)), complexity=d.complexity(r.expr), agent="x")
    f = predict(best, x3)
    later = d.Context(X=x3, y=y3, variables=("a", "b", "c"), grammar=g, iteration=3, global_best=best,
                      personal_best=best, archive=(best,), critique="It under-estimates.", hint="under",
                      residual=y3 - f)
    return {"one": one, "three": three, "later": later}


@functools.lru_cache(maxsize=1)
def contexts():
    return _contexts()


def _check(cands, ctx):
    assert isinstance(cands, list)
    names = set(ctx.grammar.names)
    for c in cands:
        assert isinstance(c, d.AbstractExpr)
        for node in _walk(c):
            if isinstance(node, d.Var):
                assert node.index < ctx.X.shape[1]
            if isinstance(node, d.Call):
                assert node.op in names
            if isinstance(node, d.Const):
                assert node.index < 64


SLOW = pytest.mark.slow


@pytest.mark.parametrize("agent", AGENTS, ids=[a.name for a in AGENTS])
# the later-round context (3 variables, a global best, residual and hint) runs by default
@pytest.mark.parametrize("which", [pytest.param(w, marks=SLOW) for w in ("one", "three")] + ["later"])
def test_agent_protocol(agent, which):
    ctx = contexts()[which]
    key = jax.random.key(7)
    state = agent.init(ctx, key=key)
    t = time.perf_counter()
    cands, state2 = agent.propose(ctx, state, key=key)
    seconds = time.perf_counter() - t
    _check(cands, ctx)
    # the same key and state give the same proposals (reproducible searches)
    again, _ = agent.propose(ctx, agent.init(ctx, key=key), key=key)
    assert [str(d.to_sympy(c, ctx.variables)) for c in cands] == \
        [str(d.to_sympy(c, ctx.variables)) for c in again]
    # a second round from the returned state works too
    more, _ = agent.propose(ctx, state2, key=jax.random.fold_in(key, 1))
    _check(more, ctx)
    assert seconds < 60.0  # generous: compile included, the machine may be shared


def test_agents_have_unique_names_and_are_pytrees():
    names = [a.name for a in AGENTS]
    assert len(set(names)) == len(names)
    for a in AGENTS:
        assert jax.tree_util.tree_structure(a) is not None
