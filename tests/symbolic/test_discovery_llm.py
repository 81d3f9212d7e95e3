"""symbolic.discovery LLM agent: prompts, reply parsing, OpenAI/Ollama backends, replay cache.

A loopback HTTP server in the test process plays the model (canned MCI-style replies), so nothing here
needs a real model or the network.
"""

import http.server
import json
import socket
import threading

import jax
import numpy as np
import pytest
import sympy

from symbolic import discovery as d
from symbolic.discovery._agent import Context, Hypothesis
from symbolic.discovery._llm import (
    BackendError,
    LLMAgent,
    LLMState,
    OllamaBackend,
    OpenAIBackend,
    ReplayBackend,
    ReplayMissError,
    message_hash,
    parse_reply,
)

VARS = ("x", "v")

# An OpenAI-style answer: prose, then a numbered list in a code block; the true law is the 2nd line,
# written with numbers (they become free constants).
REPLY_LIST = """Considering a nonlinear oscillator, the acceleration should combine a restoring force and
damping. Here are my candidates:

```text
1. y = c0*x + c1*v + c2
2. y = -1.3*x + 0.8*x^3 - 0.4*v
3. y = c0*np.sin(x) + c1*x*v
4. y = c0*x + c1*x**2 + c2*v
```
These differ in how the restoring force grows with x.
"""

# An Ollama/MCI-style answer: a Python function with params[i], locals and a docstring.
REPLY_FUNCTION = '''```python
import numpy as np


def equation(params: np.ndarray, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """ Mathematical function for the acceleration.

    Args:
        params: constants (to be optimized).
    """
    restoring = params[0] * x + params[1] * x**3
    damping = params[2] * v
    return (restoring
            + damping)
```'''

REPLY_DATA_DEPENDENT = """```text
y = c0*np.gradient(x) + c1*v
y = c0*x - np.mean(x)
y = c0*x + c1*v
```"""


def _truth(X):
    return -1.3 * X[:, 0] + 0.8 * X[:, 0] ** 3 - 0.4 * X[:, 1]


def _context(**kw):
    X = np.random.default_rng(0).uniform(-2.0, 2.0, (64, 2))
    return Context(X=X, y=_truth(X), variables=VARS, grammar=d.default_grammar(), **kw)


class _Model:
    """What the loopback server answers: a text reply in either protocol, or a failure."""

    def __init__(self):
        self.text = ""
        self.mode = "ok"  # ok | 500 | notjson | nochoices
        self.requests = []


def _handler(model):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            model.requests.append((self.path, body, dict(self.headers)))
            status = 200
            if model.mode == "500":
                status, payload = 500, {"error": "model crashed"}
            elif model.mode == "nochoices":
                payload = {"object": "error"}
            elif self.path == "/v1/chat/completions":
                msg = {"role": "assistant", "content": model.text}
                payload = {"object": "chat.completion", "choices": [{"index": 0, "message": msg}]}
            elif self.path == "/api/chat":
                payload = {
                    "model": body["model"],
                    "message": {"role": "assistant", "content": model.text},
                    "done": True,
                }
            else:
                status, payload = 404, {"error": "no such endpoint"}
            data = b"<html>oops</html>" if model.mode == "notjson" else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep the test output clean
            pass

    return Handler


@pytest.fixture
def server():
    model = _Model()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(model))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    model.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield model
    srv.shutdown()
    srv.server_close()
    thread.join()


def _propose(agent, ctx):
    key = jax.random.key(0)
    return agent.propose(ctx, agent.init(ctx, key=key), key=key)


def _fit_and_rank(cands, ctx):
    # The canned candidates are all linear in their constants with 9 to 16 tokens: one compiled fitting
    # kernel for the whole file (snap=False: no refits; the collective test below snaps).
    fits = [d.fit_constants(c, ctx.X, ctx.y, key=jax.random.key(1), snap=False) for c in cands]
    order = sorted(range(len(cands)), key=lambda i: fits[i].loss)
    return order, fits


def test_openai_round_parses_fits_and_ranks(server, monkeypatch):
    server.text = REPLY_LIST
    monkeypatch.setenv("SCIML_TEST_KEY", "sk-test")
    backend = OpenAIBackend(server.url, "canned-model", api_key_env="SCIML_TEST_KEY", temperature=0.8)
    ctx = _context()
    cands, state = _propose(LLMAgent(name="a1", backend=backend, n_candidates=4), ctx)
    ((path, body, headers),) = server.requests
    assert path == "/v1/chat/completions"
    assert body["model"] == "canned-model" and body["temperature"] == 0.8
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert headers["Authorization"] == "Bearer sk-test"
    assert state.error == "" and state.rejected == () and state.rounds == 1
    assert len(cands) == 4
    assert [str(d.to_sympy(c, VARS)) for c in cands][1] == "c0*x**3 - c1*v - c2*x"
    order, fits = _fit_and_rank(cands, ctx)
    assert order[0] == 1  # the true law ranks first
    best = fits[1]
    assert best.loss < 1e-20 * np.var(ctx.y)
    np.testing.assert_allclose(best.constants, [0.8, 0.4, 1.3], rtol=1e-9)
    assert min(fits[i].loss for i in order[1:]) > 1e-3 * np.var(ctx.y)


@pytest.mark.slow  # 11 s; test_openai_round_parses_fits_and_ranks runs the parse-fit-rank round
def test_one_collective_round_with_the_llm_agent(server):
    """The LLM agent inside `discover`: one round parses, fits (with snapping) and ranks the replies."""
    server.text = REPLY_LIST
    ctx = _context()
    agent = LLMAgent(name="llm", backend=OpenAIBackend(server.url, "canned-model"), n_candidates=4)
    r = d.discover(ctx.X, ctx.y, key=jax.random.key(0), variables=VARS, agents=[agent], iterations=1)
    assert len(server.requests) == 1 and r.history[0].candidates == 4
    assert r.best.agent == "llm" and r.best.nmse < 1e-20
    assert sympy.simplify(r.equation() - sympy.sympify("-13*x/10 + 4*x**3/5 - 2*v/5")) == 0
    assert len(r.archive) >= 2  # the other replies are kept on the Pareto front when they are simpler


def test_ollama_round_reads_mci_function(server):
    server.text = REPLY_FUNCTION
    backend = OllamaBackend(model="canned-model", url=server.url, temperature=1.0)
    ctx = _context()
    cands, state = _propose(LLMAgent(backend=backend), ctx)
    ((path, body, _),) = server.requests
    assert path == "/api/chat" and body["stream"] is False and body["options"] == {"temperature": 1.0}
    assert len(cands) == 1 and state.rejected == ()
    x, v = sympy.symbols("x v")
    c0, c1, c2 = sympy.symbols("c0:3")
    assert sympy.expand(d.to_sympy(cands[0], VARS) - (c0 * x + c1 * x**3 + c2 * v)) == 0
    ((_, fit),) = [_fit_and_rank(cands, ctx)]
    assert fit[0].loss < 1e-20 * np.var(ctx.y)
    np.testing.assert_allclose(fit[0].constants, [-1.3, 0.8, -0.4], rtol=1e-9)


def test_data_dependent_reply_is_rejected(server):
    server.text = REPLY_DATA_DEPENDENT
    cands, state = _propose(LLMAgent(backend=OpenAIBackend(server.url, "m")), _context())
    assert [str(d.to_sympy(c, VARS)) for c in cands] == ["c0*x + c1*v"]
    reasons = dict(state.rejected)
    assert (
        "gradient" in reasons["c0*gradient(x) + c1*v"]
        and "data-dependent" in reasons["c0*gradient(x) + c1*v"]
    )
    assert "data-dependent" in reasons["c0*x - mean(x)"]


@pytest.mark.parametrize(
    ("formula", "reason"),
    [
        ("np.gradient(x)", "data-dependent"),
        ("c0*np.cumsum(v)", "data-dependent"),
        ("x - x.mean()", "data-dependent"),
        ("max(x, v)", "data-dependent"),
        ("sum(x)*c0", "data-dependent"),
        ("x[1:] - x[:-1]", "indexing"),
        ("tan(x)", "not a whitelisted operator"),
        ("__import__('os').system('echo hacked')", "not a whitelisted operator"),
        ("x if v > 0 else v", "conditionals"),
        ("9**9**9**9*x", "overflows"),
        ("(((x**50)**50)**50)", "exponents multiply"),
        ("sqrt(-1)*x", "not a finite real number"),
        ("c0*x + z", "unknown name 'z'"),
        ("exp(x, v)", "takes 1 argument"),
    ],
)
def test_invalid_formulas_rejected_with_reason(formula, reason):
    cands, rejected = parse_reply(f"```\ny = {formula}\n```", VARS)
    assert cands == []
    ((_, why),) = rejected
    assert reason in why, why


def test_reply_formats():
    reply = """Some thoughts (an unclosed bracket; the loss = 0.3 here is prose.
# Candidates

1. **Candidate 1:** y = 2.5*x/(0.8 + x)
2. Equation 2: f(x, v) = c1*x^2 + c3*ln(v**2 + 1)  (where c1 = 2)
- y = c0*exp(-c1*x)
* dv/dt = 2.5*x/(0.8 + x)
"""
    cands, rejected = parse_reply(reply, VARS)
    got = [str(d.to_sympy(c, VARS)) for c in cands]
    # numbers became constants (integers kept), gaps c1, c3 renumbered, the repeated law dropped
    assert got == ["c0*x/(c1 + x)", "c0*x**2 + c1*log(v**2 + 1)", "c0*exp(-c1*x)"]
    assert rejected == []
    # a function with control flow is not a single expression
    fn = "```python\ndef f(params, x, v):\n    if x > 0:\n        return params[0]*x\n    return v\n```"
    cands, rejected = parse_reply(fn, VARS)
    assert cands == [] and all("control flow" in r for _, r in rejected)
    # limits
    cands, rejected = parse_reply("y = c0*x + c1*v + c2", VARS, max_constants=2)
    assert cands == [] and "max_constants" in rejected[0][1]


@pytest.mark.parametrize("mode", ["500", "notjson", "nochoices", "refused"])
def test_failures_give_no_candidates(server, mode):
    if mode == "refused":
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}"
    else:
        server.mode, url = mode, server.url
    backend = OpenAIBackend(url, "m", timeout=5.0)
    with pytest.raises(BackendError, match=url):
        backend.complete([{"role": "user", "content": "hi"}])
    cands, state = _propose(LLMAgent(backend=backend), _context())
    assert cands == [] and url in state.error


def test_garbage_reply_gives_no_candidates(server):
    server.text = "I am sorry, I cannot help with that. ¯\\_(ツ)_/¯"
    cands, state = _propose(LLMAgent(backend=OllamaBackend("m", url=server.url)), _context())
    assert cands == [] and state.error == ""


def test_record_then_replay(server, tmp_path):
    server.text = REPLY_LIST
    path = tmp_path / "replies.json"
    ctx = _context()
    recorder = LLMAgent(backend=ReplayBackend(path, OpenAIBackend(server.url, "m")), n_candidates=4)
    first, _ = _propose(recorder, ctx)
    again, _ = _propose(recorder, ctx)  # answered from the cache
    assert len(server.requests) == 1 and again == first
    server.mode = "500"  # the model is gone: replay-only needs none
    replayed, state = _propose(LLMAgent(backend=ReplayBackend(path), n_candidates=4), ctx)
    assert replayed == first and state.reply == REPLY_LIST
    assert len(server.requests) == 1  # the model was never asked again
    entries = json.loads(path.read_text())["entries"]
    ((key, entry),) = entries.items()
    assert key == message_hash(entry["messages"]) and entry["reply"] == REPLY_LIST


def test_replay_miss_is_a_clear_error(tmp_path):
    path = tmp_path / "replies.json"
    with pytest.raises(ReplayMissError, match="no reply for this prompt"):
        ReplayBackend(path).complete([{"role": "user", "content": "hi"}])
    with pytest.raises(ReplayMissError, match=str(path)):  # not swallowed by the agent
        _propose(LLMAgent(backend=ReplayBackend(path)), _context())
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable replay cache"):
        ReplayBackend(path).complete([{"role": "user", "content": "hi"}])


def _hyp(formula, constants, loss, agent="a"):
    e = d.from_sympy(d.parse(formula, VARS), VARS)
    return Hypothesis(
        expr=e,
        constants=np.asarray(constants, np.float64),
        loss=loss,
        nmse=loss / 2.0,
        complexity=d.complexity(e),
        agent=agent,
    )


def test_prompt_follows_mci():
    agent = LLMAgent(
        name="a7", n_candidates=3, task="Acceleration of a nonlinear oscillator.", domain="mechanics"
    )
    first = agent.messages(_context(), LLMState())
    system, user = first[0]["content"], first[1]["content"]
    assert "expert in mechanics" in system
    for part in (
        "<role>",
        "<context>",
        "<task>",
        "'a7'",
        "Acceleration of a nonlinear oscillator.",
        "x: from",
        "v: from",
        "x | v | y",
        "Round 0.",
        "Propose 3 different",
        "c0, c1",
        "```text",
    ):
        assert part in user, part
    assert "<prior_knowledge>" not in user
    best = _hyp("c0*x + c1*v", [-1.123456789, -0.4], 0.25)
    mine = _hyp("c0*x", [-1.0], 0.5)
    ctx = _context(
        iteration=3,
        global_best=best,
        personal_best=mine,
        archive=(mine, best),
        critique="The cubic stiffening at large |x| is missing.",
        hint="over",
    )
    state = LLMState(rounds=3, previous=("c0*sin(x)",))
    user = agent.messages(ctx, state)[1]["content"]
    for part in (
        "<prior_knowledge>",
        "y = -0.4*v - 1.12346*x",
        "MSE 0.25",
        "complexity 7",
        "<analysis>\nThe cubic stiffening",
        "fix the overestimation",
        "<your_best>\ny = -1.0*x",
        "<your_last_proposals>\ny = c0*sin(x)",
        "<pareto_front>",
        "Round 3.",
    ):
        assert part in user, part


def test_no_backend_and_bad_configuration():
    cands, state = _propose(LLMAgent(), _context())
    assert cands == [] and "no backend" in state.error
    with pytest.raises(ValueError, match="`url`"):
        OpenAIBackend("ftp://example.org", "m")
    with pytest.raises(ValueError, match="`model`"):
        OllamaBackend("")
    with pytest.raises(ValueError, match="`timeout`"):
        OllamaBackend("m", timeout=0)
    with pytest.raises(ValueError, match="`n_candidates`"):
        LLMAgent(n_candidates=0)
    with pytest.raises(TypeError, match="`backend`"):
        LLMAgent(backend="http://127.0.0.1:8000")
    with pytest.raises(TypeError, match="`messages`"):
        OllamaBackend("m").complete("hi")
    with pytest.raises(ValueError, match="role"):
        OllamaBackend("m").complete([{"role": "robot", "content": "hi"}])
    with pytest.raises(TypeError, match="`path`"):
        ReplayBackend(3)
    assert OpenAIBackend("http://h:1/v1", "m").endpoint == "http://h:1/v1/chat/completions"
    assert OpenAIBackend("http://h:1/v1/chat/completions", "m").endpoint == "http://h:1/v1/chat/completions"
