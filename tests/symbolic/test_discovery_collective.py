"""The MCI collective (`symbolic.discover`): protocol, critic, choice, determinism, errors, CLI."""

from __future__ import annotations

import json
import math
from typing import Any

import equinox as eqx
import jax
import numpy as np
import pytest
import sympy

import symbolic
from symbolic import discovery as d
from symbolic.discovery._collective import _choose


class FixedAgent(d.AbstractAgent):
    """Proposes the given formulas (constants c0, c1, ...) in round ``start`` and nothing else."""

    formulas: tuple[str, ...] = eqx.field(static=True, default=())
    name: str = eqx.field(static=True, default="fixed")
    start: int = eqx.field(static=True, default=0)

    def init(self, context, *, key):
        return 0  # number of init calls is observable through the state

    def propose(self, context, state, *, key):
        if context.iteration != self.start:
            return [], state
        return [d.from_sympy(d.parse(f, context.variables), context.variables) for f in self.formulas], state


def fixed(formulas, start=0):
    return FixedAgent(formulas=formulas, start=start)


class CountingAgent(d.AbstractAgent):
    """Never improves; its state counts rounds since the last (re)initialisation."""

    name: str = eqx.field(static=True, default="counting")

    def init(self, context, *, key):
        return {"since_init": 0}

    def propose(self, context, state, *, key):
        return [], {"since_init": state["since_init"] + 1}


class FailingAgent(d.AbstractAgent):
    name: str = eqx.field(static=True, default="failing")

    def init(self, context, *, key):
        return None

    def propose(self, context, state, *, key):
        raise RuntimeError("backend unavailable")


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(1.0, 3.0, n)
    z = rng.uniform(-1.0, 1.0, n)
    return np.stack([x, z], 1), x, z


def _same(expr: sympy.Expr, truth: str, names) -> bool:
    syms = {n: sympy.Symbol(n) for n in names}
    return sympy.simplify(expr - sympy.sympify(truth, locals=syms)) == 0


def test_recovers_and_stops_at_tol():
    X, x, z = _data()
    y = 2.5 * x**2 - 0.5 * z
    agent = fixed(("c0*x + c1*z", "c0*x**2 + c1*z", "c0*exp(c1*x) + c2*z"))
    rounds = []
    r = d.discover(X, y, key=jax.random.key(0), variables=["x", "z"], agents=[agent], iterations=5,
                   callback=rounds.append)
    assert r.stopped == "tol"
    assert len(r.history) == 2 and rounds == list(r.history)  # one round after the exact fit
    assert _same(r.equation(), "5*x**2/2 - z/2", ["x", "z"])
    assert r.best.nmse < 1e-20 and r.best.extrapolation_nmse < 1e-20
    # the archive is a Pareto front: complexity up, loss down
    comp = [h.complexity for h in r.archive]
    loss = [h.loss for h in r.archive]
    assert comp == sorted(comp) and all(a > b for a, b in zip(loss, loss[1:]))
    np.testing.assert_allclose(r.predict(X), y, rtol=1e-12)
    assert "current best equation" in r.history[0].critique


def test_same_key_same_equation():
    X, x, z = _data()
    y = 1.5 * x * z + 0.3 * x
    agents = [fixed(("c0*x*z", "c0*x + c1*z")), d.ResidualAgent(), d.SimplifierAgent()]
    runs = [d.discover(X, y, key=jax.random.key(3), variables=["x", "z"], agents=agents, iterations=2,
                       max_fits=6) for _ in range(2)]
    assert str(runs[0].equation()) == str(runs[1].equation())
    assert [h.equation for h in runs[0].history] == [h.equation for h in runs[1].history]


def test_residual_agent_uses_the_hint_to_extend_the_best():
    """Only a partial skeleton is proposed; the residual refiner adds the missing term."""
    X, x, z = _data()
    y = 2.0 * x + 0.5 * x * z
    agents = [fixed(("c0*x",)), d.ResidualAgent()]
    r = d.discover(X, y, key=jax.random.key(1), variables=["x", "z"], agents=agents, iterations=4,
                   max_fits=8)
    assert _same(r.equation(), "2*x + x*z/2", ["x", "z"]), r.equation()
    assert r.best.agent == "residual"
    assert r.history[0].nmse > 1e-3 and r.history[-1].nmse < 1e-20


def test_simplifier_prunes_redundant_terms():
    X, x, z = _data()
    y = 3.0 * x
    # a noisy-looking over-complete fit: the simplifier drops the useless z term
    agents = [fixed(("c0*x + c1*z**3",)), d.SimplifierAgent()]
    r = d.discover(X, y, key=jax.random.key(2), variables=["x", "z"], agents=agents, iterations=3)
    assert _same(r.equation(), "3*x", ["x", "z"])
    assert r.best.complexity == 3


def test_reset_after_patience_and_failing_agent_is_contained():
    X, x, z = _data()
    y = x + z
    states = []

    class Spy(d.AbstractAgent):
        name: str = eqx.field(static=True, default="spy")

        def init(self, context, *, key):
            return 0

        def propose(self, context, state, *, key):
            states.append(state)
            return [], state + 1

    agents = [fixed(("c0*x + c1*z",), start=5), Spy(), FailingAgent()]
    r = d.discover(X, y, key=jax.random.key(0), variables=["x", "z"], agents=agents, iterations=8,
                   patience=3)
    # rounds 0..2 count up, the reset after the third non-improving round starts again at 0
    assert states[:7] == [0, 1, 2, 0, 1, 2, 0]
    assert all("failing failed: RuntimeError: backend unavailable" in h.notes[0] for h in r.history)
    assert _same(r.equation(), "x + z", ["x", "z"])


def test_internal_extrapolation_split_is_the_outer_shell():
    X = np.stack(np.meshgrid(np.linspace(0, 1, 11), np.linspace(0, 1, 11)), -1).reshape(-1, 2)
    inner, shell = d.internal_extrapolation_split(X, 0.2)
    assert len(inner) + len(shell) == len(X) and len(shell) == round(0.2 * len(X))
    dist = np.max(np.abs(X - 0.5), 1)
    assert dist[shell].min() >= dist[inner].max()


def test_choice_prefers_simplest_that_extrapolates():
    def h(c, ext, loss=1e-3):
        return d.Hypothesis(d.Var(0), np.zeros(0), loss, loss, c, "t", ext)

    front = [h(3, 1e-1), h(7, 1e-5), h(9, 0.8e-5, 1e-4), h(15, 2e-3, 1e-5)]
    assert _choose(front, 1e-12).complexity == 7  # within 2x of the best extrapolation, simpler
    assert _choose([h(3, math.inf), h(5, math.inf, 1e-6)], 1e-12).complexity == 5


def test_predict_checks_the_columns():
    # y = 2*x1 over three variables: an X with a column missing or one too many must not be read
    h = d.Hypothesis(d.Call("mul", (d.Const(0), d.Var(1))), np.array([2.0]), 0.0, 0.0, 3, "t", 0.0)
    res = d.Discovery(best=h, archive=(h,), history=(), variables=("a", "b", "c"),
                      grammar=d.default_grammar(), seconds=0.0, stopped="tol")
    X = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(res.predict(X), 2 * X[:, 1])
    for bad in (X[:, :2], np.c_[X, X[:, :1]], X[:, 0]):
        with pytest.raises(ValueError, match=r"`X` must have shape \(n_rows, 3\)"):
            res.predict(bad)
    g = d.Hypothesis(d.Call("mul", (d.Const(0), d.Var(0))), np.array([2.0]), 0.0, 0.0, 3, "t", 0.0)
    one = d.Discovery(best=g, archive=(g,), history=(), variables=("a",), grammar=d.default_grammar(),
                      seconds=0.0, stopped="tol")
    np.testing.assert_array_equal(one.predict(X[:, 0]), 2 * X[:, 0])  # 1-D: one variable, as in discover


def test_top_level_name_and_default_agents():
    assert symbolic.discover is d.discover
    agents = d.default_agents()
    assert len({a.name for a in agents}) == len(agents)
    assert all(isinstance(a, d.AbstractAgent) for a in agents)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"y": np.full(20, 1.0)}, "constant"),
        ({"y": np.r_[np.nan, np.ones(19)]}, "NaN"),
        ({"X": np.ones((20, 2, 1))}, "X"),
        ({"y": np.ones(5)}, "y"),
        ({"variables": ["a"]}, "variables"),
        ({"variables": ["x", "c0"]}, "variables"),
        ({"agents": []}, "agents"),
        ({"iterations": 0}, "iterations"),
        ({"budget_s": -1.0}, "budget_s"),
        ({"fit_options": {"steps": 3}}, "fit_options"),
    ],
)
def test_bad_input(kwargs: dict[str, Any], match):
    rng = np.random.default_rng(0)
    args = {"X": rng.uniform(1, 2, (20, 2)), "y": rng.uniform(1, 2, 20), "variables": ["x", "z"],
            "agents": [fixed(("c0*x",))]}
    args.update(kwargs)
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(ValueError, match=match):
        d.discover(X, y, key=jax.random.key(0), **args)


def test_no_valid_candidate_is_a_clear_error():
    X, x, z = _data(50)
    with pytest.raises(ValueError, match="no agent proposed"):
        d.discover(X, x, key=jax.random.key(0), agents=[CountingAgent()], iterations=2)


# --- CLI ---------------------------------------------------------------------------------------------


def _csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


def test_cli_json(tmp_path, capsys, monkeypatch):
    from sciml import cli
    from symbolic import _discover_cli

    rng = np.random.default_rng(0)
    T = rng.uniform(1.0, 4.0, 120)
    P = rng.uniform(0.5, 2.0, 120)
    path = _csv(tmp_path / "gas.csv", ["T", "P", "V"], [(t, p, 0.5 * t / p) for t, p in zip(T, P)])
    # a small collective keeps the test quick; the command's default engine is the full one
    monkeypatch.setattr(d, "discover", _with_agents(d.discover, [fixed(("c0*T/P", "c0*T + c1*P"))]))
    assert cli.main(["discover", str(path), "--target", "V", "--json", "--quiet", "--budget", "60"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"equation", "constants", "r2_train", "complexity", "seconds"}
    assert _same(sympy.sympify(out["equation"], locals={"T": sympy.Symbol("T"), "P": sympy.Symbol("P")}),
                 "T/(2*P)", ["T", "P"])
    assert out["r2_train"] > 1 - 1e-12
    assert _discover_cli  # imported through the CLI registry


def _with_agents(fn, agents):
    def run(*args, **kwargs):
        kwargs["agents"] = agents
        return fn(*args, **kwargs)

    return run


@pytest.mark.parametrize(
    "rows, target, match",
    [
        ([(1, 2), (2, "")], "y", "empty"),
        ([(1, 2), (2, "abc")], "y", "not a number"),
        ([(1, 2), (2, 3)], "w", "not a column"),
    ],
)
def test_cli_bad_csv(tmp_path, capsys, rows, target, match):
    from sciml import cli

    path = _csv(tmp_path / "d.csv", ["x", "y"], rows)
    assert cli.main(["discover", str(path), "--target", target, "--json"]) == 2
    assert match in capsys.readouterr().err


def test_cli_target_among_columns(tmp_path, capsys):
    from sciml import cli

    path = _csv(tmp_path / "d.csv", ["x", "y"], [(1, 2), (2, 3)])
    assert cli.main(["discover", str(path), "--target", "y", "--columns", "x,y", "--json"]) == 2
    assert "must not include the target 'y'" in capsys.readouterr().err


def test_cli_missing_file(tmp_path, capsys):
    from sciml import cli

    assert cli.main(["discover", str(tmp_path / "nope.csv"), "--target", "y"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_residual_structure_separates_noise_from_structure():
    """White noise scores about 1 (tolerance 0.3 at 1000 rows, k = 16); a smooth residual about k;
    noise plus structure follows (s2 + k var(g)) / (s2 + var(g)) (within 15%)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.0, 1.0, (1000, 2))
    rows, nbrs = d._collective._neighbour_rows(X)
    assert rows.shape == (1000,) and nbrs.shape == (1000, 16)
    assert not np.any(nbrs == np.arange(1000)[:, None])  # a row is not its own neighbour
    noise = rng.normal(size=1000)
    assert abs(d.residual_structure(noise, nbrs) - 1.0) < 0.3
    g = np.sin(3 * X[:, 0]) + X[:, 1] ** 2
    g = (g - g.mean()) / g.std()
    assert d.residual_structure(g, nbrs) > 14.0
    a = 0.5  # var(g) = 0.25 s2
    expected = (1 + 16 * a**2) / (1 + a**2)
    assert d.residual_structure(noise + a * g, nbrs) == pytest.approx(expected, rel=0.15)
    assert d.residual_structure(np.full(1000, np.nan), nbrs) == math.inf
    assert d.residual_structure(np.ones(1000), nbrs) == 1.0
    # big data: at most max_rows rows take part
    rows, nbrs = d._collective._neighbour_rows(rng.uniform(size=(5000, 3)), max_rows=700)
    assert rows.shape == (700,) and nbrs.max() < 700


def test_noisy_data_stop_at_the_noise_level_and_keep_the_simple_form():
    """1% noise: the true form fits to the noise level, the search stops one round later ('noise'),
    and the critic chooses it over an over-fitted form of lower training loss."""
    X, x, z = _data()
    clean = 2.5 * x / (0.8 + x) - 0.5 * z
    y = clean + np.random.default_rng(1).normal(0.0, 0.01 * clean.std(), clean.shape)
    over = "c0*x/(c1 + x) + c2*z + c3*x**2*z"  # the truth plus a term that fits noise
    agents = [fixed(("c0*x + c1*z", "c0*x/(c1 + x) + c2*z", over))]
    r = d.discover(X, y, key=jax.random.key(0), variables=["x", "z"], agents=agents, iterations=6)
    assert r.stopped == "noise" and len(r.history) == 2
    assert any("fits to the noise level" in n for n in r.history[0].notes)
    front = {h.complexity: h for h in r.archive}
    assert max(front) == r.history[0].complexity and front[max(front)].loss < r.best.loss  # the over-fit
    assert r.best.complexity < max(front)
    assert _same(sympy.nsimplify(r.equation(digits=2), rational=True), "5*x/(2*(x + 4/5)) - z/2", ["x", "z"])
