"""symbolic.discovery search agents: enumeration with semantic de-duplication, genetic programming.

Synthetic targets only (not the benchmark's formulas): the true skeleton must appear among the
proposals within a few rounds and fit back with ``fit_constants``.
"""

import itertools

import jax
import numpy as np
import pytest
import sympy

from symbolic import discovery as d
from symbolic.discovery._agent import Context, Hypothesis
from symbolic.discovery._agents_search import EnumerationAgent, GeneticAgent, SeparabilityAgent

N = 300


def _ctx(X, y, names, grammar=None, **kw):
    return Context(
        X=np.asarray(X, np.float64),
        y=np.asarray(y, np.float64),
        variables=tuple(names),
        grammar=grammar or d.default_grammar(),
        **kw,
    )


def _run(agent, ctx, rounds, seed=0):
    keys = jax.random.split(jax.random.key(seed), rounds + 1)
    state = agent.init(ctx, key=keys[0])
    out = []
    for r in range(rounds):
        props, state = agent.propose(ctx, state, key=keys[r + 1])
        out.append(props)
    return out, state


def _strings(rounds, names, grammar=None):
    return [str(d.to_sympy(e, names, grammar)) for props in rounds for e in props]


def _is_const(s):
    return isinstance(s, sympy.Symbol) and s.name[0] == "c" and s.name[1:].isdigit()


def _same_family(e, target, names):
    """``e`` equals the skeleton ``target`` up to renaming its constants (checked at random points)."""
    got = d.to_sympy(e, names)
    want = d.parse(target, names)
    cs = sorted((s for s in got.free_symbols if _is_const(s)), key=lambda s: s.name)
    ws = sorted((s for s in want.free_symbols if _is_const(s)), key=lambda s: s.name)
    if len(cs) != len(ws):
        return False
    xs = [sympy.Symbol(n) for n in names]
    rng = np.random.default_rng(0)
    pts = rng.uniform(0.6, 1.7, (5, len(names)))
    vals = rng.uniform(0.3, 1.9, len(ws))
    f_got = sympy.lambdify(xs + cs, got, "math")
    f_want = sympy.lambdify(xs + ws, want, "math")
    try:
        w = np.asarray([f_want(*p, *vals) for p in pts], float)
        for perm in itertools.permutations(range(len(ws))):
            g = np.asarray([f_got(*p, *vals[list(perm)]) for p in pts], float)
            if np.allclose(g, w, rtol=1e-9, atol=1e-12):
                return True
    except (ValueError, OverflowError, ZeroDivisionError, TypeError, NameError):
        return False  # undefined at the test points: not the target
    return False


def _first_match(rounds, target, names):
    for r, props in enumerate(rounds):
        for e in props:
            if _same_family(e, target, names):
                return r, e
    return None, None


# --------------------------------------------------------------------------------------------------
# EnumerationAgent
# --------------------------------------------------------------------------------------------------


def _rate_law():
    x = np.random.default_rng(0).uniform(0.5, 3.0, (N, 1))
    return x, 3.0 * np.exp(-2.0 / x[:, 0]), ["x"], "c0*exp(c1/x)", "3*exp(-2/x)"


def _saturation():
    X = np.random.default_rng(1).uniform(0.2, 4.0, (N, 2))
    return X, X[:, 0] * X[:, 1] / (1.0 + X[:, 0]), ["x", "y"], "c0*x*y/(x + c1)", "x*y/(1 + x)"


def _enumerated(problem, rounds):
    X, y, names, skeleton, _ = problem()
    props, _ = _run(EnumerationAgent(max_complexity=7, batch_size=16), _ctx(X, y, names), rounds)
    return _first_match(props, skeleton, names)


def test_enumeration_finds_rate_law():
    r, _ = _enumerated(_rate_law, 2)
    assert r == 0


def test_enumeration_finds_saturation_in_two_variables():
    r, _ = _enumerated(_saturation, 2)
    assert r == 0


@pytest.mark.slow
@pytest.mark.parametrize("problem", [_rate_law, _saturation])
def test_enumerated_skeleton_fits_back(problem):
    """The proposed skeleton recovers the law exactly (constants snapped) with ``fit_constants``."""
    X, y, names, _, truth = problem()
    _, e = _enumerated(problem, 2)
    fit = d.fit_constants(e, X, y, key=jax.random.key(0))
    assert fit.valid and fit.loss < 1e-20 * np.var(y)
    assert sympy.simplify(d.to_sympy(fit.expr, names) - d.parse(truth, names)) == 0


def test_enumeration_corrects_global_best_with_residual():
    """y = 2 sin(3x) + z: with c0*sin(c1*x) as the global best, ``best + c*z`` is proposed."""
    X = np.random.default_rng(2).uniform(-2.0, 2.0, (N, 2))
    y = 2.0 * np.sin(3.0 * X[:, 0]) + X[:, 1]
    names = ["x", "z"]
    best_e = d.from_sympy(d.parse("c0*sin(c1*x)", names), names)
    f = 2.0 * np.sin(3.0 * X[:, 0])  # (nearly) the best fit of this skeleton: the sine part
    loss = float(np.mean((y - f) ** 2))
    best = Hypothesis(best_e, np.array([2.0, 3.0]), loss, loss / float(np.var(y)), 5, "test")
    ctx = _ctx(X, y, names, global_best=best, residual=y - f, iteration=1)
    rounds, _ = _run(EnumerationAgent(max_complexity=5, batch_size=8), ctx, 1)
    r, e = _first_match(rounds, "c0*sin(c1*x) + c2*z", names)
    assert r == 0


def test_enumeration_semantic_dedup():
    """Commuted and constant-redundant forms are proposed once (x*y = y*x, c0*c1*x = c0*x)."""
    X = np.random.default_rng(3).uniform(0.5, 2.0, (N, 2))
    y = X[:, 0] + X[:, 1] ** 2
    names = ["x", "y"]
    agent = EnumerationAgent(max_complexity=5, batch_size=150, use_best=False)
    rounds, _ = _run(agent, _ctx(X, y, names), 2)
    exprs = [e for props in rounds for e in props]
    strs = [str(d.to_sympy(e, names)) for e in exprs]
    assert len(strs) == len(set(strs)) and len(strs) > 50
    for e in exprs:
        s = d.to_sympy(e, names)
        cs = [c for c in s.free_symbols if _is_const(c)]
        # never two constants multiplying each other
        for m in sympy.preorder_traversal(s):
            if isinstance(m, sympy.Mul):
                assert sum(1 for a in m.args if a in cs) <= 1, s
    # the product x*y (either order) appears once as c0*x*y and at most once more with an offset
    prods = [s for s in strs if s.replace(" ", "") in ("c0*x*y", "c0*y*x", "c0*x*y+c1", "c0*y*x+c1")]
    assert 1 <= len(prods) <= 2
    # x, c*x, x + c, 2*x, x*1 ... are one model family: c0*x (and c0*x + c1)
    xs_only = [s for s in strs if s.replace(" ", "") in ("c0*x", "c0*x+c1")]
    assert 1 <= len(xs_only) <= 2


def test_enumeration_respects_grammar_and_variables():
    X = np.random.default_rng(4).uniform(0.5, 2.0, (N, 3))
    y = np.exp(X[:, 0]) * X[:, 2]
    g = d.Grammar(tuple(op for op in d.default_grammar().operators if op.name in ("add", "sub", "mul",
                                                                                 "div", "pow", "exp")))
    agent = EnumerationAgent(max_complexity=5, batch_size=64)
    rounds, _ = _run(agent, _ctx(X, y, ["a", "b", "c"], grammar=g), 2)
    exprs = [e for props in rounds for e in props]
    assert exprs
    for e in exprs:
        for node in sympy.preorder_traversal(d.to_sympy(e, ["a", "b", "c"], g)):
            assert not isinstance(node, (sympy.sin, sympy.log, sympy.cos))
        nodes = list(_nodes(e))
        assert all(n.op in g.names for n in nodes if isinstance(n, d.Call))
        assert all(n.index < 3 for n in nodes if isinstance(n, d.Var))
        consts = sorted({n.index for n in nodes if isinstance(n, d.Const)})
        assert consts == list(range(len(consts)))  # numbered from 0, no gaps
    assert any(_same_family(e, "c0*c*exp(a)", ["a", "b", "c"]) for e in exprs)


def test_enumeration_custom_operator():
    import jax.numpy as jnp

    g = d.default_grammar().with_operators(d.Operator("sinc", 1, jnp.sinc, sympy.Function("sinc")))
    x = np.random.default_rng(5).uniform(0.1, 2.0, (N, 1))
    y = 2.0 * np.sinc(x[:, 0])
    rounds, _ = _run(EnumerationAgent(max_complexity=3, batch_size=64), _ctx(x, y, ["x"], grammar=g), 1)
    strs = _strings(rounds, ["x"], g)
    assert "c0*sinc(x)" in strs


def test_enumeration_same_key_same_proposals():
    X = np.random.default_rng(6).uniform(0.5, 2.0, (N, 2))
    y = X[:, 0] / (X[:, 1] + 0.5)
    ctx = _ctx(X, y, ["x", "y"])
    a = EnumerationAgent(max_complexity=5, batch_size=16)
    r1, _ = _run(a, ctx, 2, seed=3)
    r2, _ = _run(a, ctx, 2, seed=3)
    assert _strings(r1, ["x", "y"]) == _strings(r2, ["x", "y"])


# --------------------------------------------------------------------------------------------------
# GeneticAgent
# --------------------------------------------------------------------------------------------------


GP = dict(population_size=64, generations=3, batch_size=8)  # one compiled kernel for all GP tests


def _genetic_product():
    X = np.random.default_rng(7).uniform(-2.0, 2.0, (N, 3))
    y = 2.5 * X[:, 0] * X[:, 1] + 0.5
    names = ["x", "y", "z"]
    rounds, _ = _run(GeneticAgent(**GP), _ctx(X, y, names), 3)
    return X, y, names, _first_match(rounds, "c0*x*y + c1", names)


def test_genetic_finds_product():
    _, _, _, (r, _) = _genetic_product()
    assert r is not None


@pytest.mark.slow
def test_genetic_skeleton_fits_back():
    X, y, names, (_, e) = _genetic_product()
    fit = d.fit_constants(e, X, y, key=jax.random.key(0))
    assert fit.valid and fit.loss < 1e-20 * np.var(y)
    assert sympy.simplify(d.to_sympy(fit.expr, names) - d.parse("5*x*y/2 + 1/2", names)) == 0


def test_genetic_seeds_global_best_and_stays_in_grammar():
    X = np.random.default_rng(8).uniform(0.5, 2.0, (N, 2))
    y = np.sqrt(X[:, 0]) * X[:, 1]
    names = ["u", "v"]
    best_e = d.from_sympy(d.parse("c0*sqrt(u)*v", names), names)
    best = Hypothesis(best_e, np.array([1.0]), 0.0, 0.0, 6, "test")
    ctx = _ctx(X, y, names, global_best=best, residual=np.zeros(N), iteration=1)
    agent = GeneticAgent(**GP)
    rounds, state = _run(agent, ctx, 1)
    assert any(_same_family(e, "c0*sqrt(u)*v", names) for e in rounds[0])
    for e in rounds[0]:
        nodes = list(_nodes(e))
        assert all(n.op in ctx.grammar.names for n in nodes if isinstance(n, d.Call))
        assert all(n.index < 2 for n in nodes if isinstance(n, d.Var))
        consts = sorted({n.index for n in nodes if isinstance(n, d.Const)})
        assert consts == list(range(len(consts)))
        assert d.complexity(e) <= agent.max_complexity + 4
        # constants folded: never two constants multiplying each other, no constant-only subtree
        s = d.to_sympy(e, names)
        for m in sympy.preorder_traversal(s):
            if isinstance(m, (sympy.Mul, sympy.Add)):
                assert sum(1 for a in m.args if _is_const(a)) <= 1, s
    # proposals are not repeated in the next round
    props2, _ = agent.propose(ctx, state, key=jax.random.key(9))
    s1 = set(_strings(rounds, names))
    assert not (s1 & set(_strings([props2], names)))


def test_genetic_same_key_same_proposals():
    X = np.random.default_rng(10).uniform(0.5, 2.0, (N, 2))
    y = X[:, 0] ** 2 - X[:, 1]
    ctx = _ctx(X, y, ["x", "y"])
    a = GeneticAgent(**GP)
    r1, _ = _run(a, ctx, 2, seed=4)
    r2, _ = _run(a, ctx, 2, seed=4)
    assert _strings(r1, ["x", "y"]) == _strings(r2, ["x", "y"])


# --------------------------------------------------------------------------------------------------
# SeparabilityAgent
# --------------------------------------------------------------------------------------------------


def _sep_data(f):
    X = np.random.default_rng(11).uniform(0.5, 2.0, (1000, 3))
    return _ctx(X, f(X[:, 0], X[:, 1], X[:, 2]), ["x", "y", "z"])


def test_separability_additive():
    ctx = _sep_data(lambda x, y, z: np.exp(-2.0 * x) + y * z)
    state = SeparabilityAgent().init(ctx, key=jax.random.key(0))
    assert [(k, a, b) for k, a, b, _ in state.found][0] == ("add", (0,), (1, 2))
    props, state = SeparabilityAgent().propose(ctx, state, key=jax.random.key(1))
    targets = ("c0*exp(c1*x) + c2*y*z", "c0*exp(-c1*x) + c2*y*z")  # constants are named, not signed
    assert any(_same_family(e, t, ["x", "y", "z"]) for e in props for t in targets)


@pytest.mark.slow
def test_separability_multiplicative():
    ctx = _sep_data(lambda x, y, z: x * y**2 * np.exp(-z / 2))
    agent = SeparabilityAgent()
    state = agent.init(ctx, key=jax.random.key(0))
    assert all(k == "mul" for k, *_ in state.found) and state.found
    props, _ = agent.propose(ctx, state, key=jax.random.key(1))
    targets = ("c0*x*y**2*exp(c1*z)", "c0*x*y**2*exp(-c1*z)")
    assert any(_same_family(e, t, ["x", "y", "z"]) for e in props for t in targets)


def test_separability_none_found_proposes_nothing():
    ctx = _sep_data(lambda x, y, z: np.exp(-x * y * z))
    agent = SeparabilityAgent(n_rows=200)
    state = agent.init(ctx, key=jax.random.key(0))
    assert state.found == ()
    assert agent.propose(ctx, state, key=jax.random.key(1))[0] == []


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (EnumerationAgent, "max_complexity", 0),
        (EnumerationAgent, "batch_size", 0),
        (EnumerationAgent, "max_constants", -1),
        (EnumerationAgent, "n_probe", 2.5),
        (EnumerationAgent, "parsimony", -1.0),
        (EnumerationAgent, "name", ""),
        (EnumerationAgent, "use_best", 1),
        (GeneticAgent, "population_size", 2),
        (GeneticAgent, "generations", 0),
        (GeneticAgent, "p_crossover", 1.5),
        (GeneticAgent, "tournament_size", True),
        (GeneticAgent, "max_complexity", 1),
        (SeparabilityAgent, "tolerance", 2.0),
        (SeparabilityAgent, "n_parts", 0),
        (SeparabilityAgent, "n_rows", "400"),
    ],
)
def test_bad_config(cls, field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        cls(**{field: value})


def test_probabilities_must_sum_to_at_most_one():
    with pytest.raises(ValueError, match="p_crossover \\+ p_subtree \\+ p_point"):
        GeneticAgent(p_crossover=0.6, p_subtree=0.3, p_point=0.3)


def test_bad_key_and_context():
    x = np.linspace(1.0, 2.0, 20)[:, None]
    ctx = _ctx(x, x[:, 0], ["x"])
    with pytest.raises(TypeError, match="`key`"):
        EnumerationAgent().init(ctx, key=0)
    with pytest.raises(TypeError, match="`context`"):
        GeneticAgent().init(None, key=jax.random.key(0))


def _nodes(e):
    yield e
    if isinstance(e, d.Call):
        for a in e.args:
            yield from _nodes(a)
