"""The LLM agent of the MCI collective and its chat backends (OpenAI-compatible, Ollama, replay cache).

Na & Park (2026), "Machine Collective Intelligence" (arXiv 2604.27297): each agent is a language model
that writes equation skeletons. In round 0 it sees the task (variables, data); later it sees the best
equation of the collective with an expert's analysis of it, its own best, and whether the best equation
over- or under-estimates the data, and is asked to update the equation to fix that. Its replies are code
whose constants are left free (``params[i]``); the collective fits and scores them.

Here an :class:`LLMAgent` builds that prompt from the :class:`~symbolic.discovery.Context` (structured
in role / context / task sections as in MCI's prompts), sends it to a backend, and turns the reply into
skeletons: it reads fenced code blocks, ``y = ...`` lines, numbered lists and MCI-style Python functions
(``def equation(params, x, v): ... return ...``), checks every formula against a whitelist *before*
SymPy sees it (SymPy's parser evaluates Python, so an unchecked reply could run code), parses it with
:func:`~symbolic.discovery.parse` + :func:`~symbolic.discovery.from_sympy` and replaces numeric literals
by free constants. Anything invalid, not whitelisted or data-dependent (``np.gradient(x)``,
``mean(x)``, ``x[1:]``, ``max``, ``sum`` ...) is dropped with a reason kept in the agent's state.

Backends are small final classes with one method, ``complete(messages) -> str``, using only the
standard library for HTTP. Transport failures raise :class:`BackendError` (naming the URL), which the
agent turns into "no candidates this round". :class:`ReplayBackend` records prompt -> reply pairs in a
JSON file and replays them, so a search with an LLM can be re-run exactly, without the model.
"""

from __future__ import annotations

import abc
import ast
import hashlib
import http.client
import json
import math
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, NamedTuple

import equinox as eqx
import numpy as np
import sympy

from ._agent import AbstractAgent, Context, Hypothesis
from ._export import to_sympy_expr
from ._expr import (
    AbstractExpr,
    Call,
    Const,
    _check_names,
    _walk,
    complexity,
    free_constants,
    from_sympy,
    n_constants,
    parse,
    to_sympy,
)
from ._grammar import Grammar, default_grammar

__all__ = [
    "AbstractBackend",
    "BackendError",
    "LLMAgent",
    "LLMState",
    "OllamaBackend",
    "OpenAIBackend",
    "ReplayBackend",
    "ReplayMissError",
    "message_hash",
    "parse_reply",
]


# --------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------


class BackendError(RuntimeError):
    """A backend could not produce a reply (network, HTTP status, malformed answer); names the URL."""


class ReplayMissError(LookupError):
    """A replay-only :class:`ReplayBackend` has no recorded reply for a prompt.

    Not a :class:`BackendError`: a replayed run that asks a new question is no longer the run that
    was recorded, so the agent lets this propagate instead of proposing nothing.
    """


_ROLES = ("system", "user", "assistant")


def _check_messages(messages: Any) -> list[dict[str, str]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise TypeError(
            "`messages` must be a non-empty list of {'role': ..., 'content': ...} dicts, got "
            f"{type(messages).__name__}"
        )
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise TypeError(
                f"`messages[{i}]` must be a dict with exactly the keys 'role' and 'content', got {m!r}"
            )
        if m["role"] not in _ROLES:
            raise ValueError(f"`messages[{i}]['role']` must be one of {list(_ROLES)}, got {m['role']!r}")
        if not isinstance(m["content"], str):
            raise TypeError(f"`messages[{i}]['content']` must be a str, got {type(m['content']).__name__}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def message_hash(messages: Sequence[dict[str, str]]) -> str:
    """SHA-256 (hex) of a chat: the key of a :class:`ReplayBackend` cache entry.

    Example:
        >>> message_hash([{"role": "user", "content": "hi"}])[:12]
        '4e79873118cd'
    """
    msgs = _check_messages(messages)
    blob = json.dumps(msgs, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class AbstractBackend(eqx.Module):
    """A chat model: ``complete(messages) -> reply text``.

    ``messages`` is a list of ``{"role": "system" | "user" | "assistant", "content": str}``. A backend
    raises :class:`BackendError` when it cannot answer (the agent then proposes nothing this round).
    """

    @abc.abstractmethod
    def complete(self, messages: list[dict[str, str]]) -> str:
        """The model's reply to ``messages``."""


def _check_url(url: Any) -> str:
    if not isinstance(url, str):
        raise TypeError(f"`url` must be a str such as 'http://127.0.0.1:8000', got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"`url` must be an http(s) URL such as 'http://127.0.0.1:8000', got {url!r}")
    return url.rstrip("/")


def _check_positive(value: Any, name: str, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        want = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"`{name}` must be {want} finite number, got {value!r}")


def _opener(url: str) -> urllib.request.OpenerDirector:
    # A model server on this machine is never behind a proxy; remote ones follow the environment.
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _post_json(url: str, body: dict, headers: dict[str, str], timeout: float) -> dict:
    """POST ``body`` as JSON, return the decoded JSON object; every failure is a BackendError."""
    data = json.dumps(body).encode("utf-8")
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with _opener(url).open(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        try:
            detail = e.read(300).decode("utf-8", "replace")
        except Exception:  # the error body is only a courtesy
            detail = ""
        finally:
            e.close()
        raise BackendError(f"{url} answered HTTP {e.code} {e.reason}: {detail}".rstrip(": ")) from e
    except urllib.error.URLError as e:
        raise BackendError(f"could not reach {url}: {e.reason}") from e
    except (OSError, http.client.HTTPException) as e:  # timeouts, resets, truncated answers
        raise BackendError(f"request to {url} failed: {type(e).__name__}: {e}") from e
    try:
        out = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BackendError(f"{url} did not answer JSON ({e}); the answer began {raw[:120]!r}") from e
    if not isinstance(out, dict):
        raise BackendError(f"{url} answered JSON that is not an object: {str(out)[:120]}")
    return out


def _field(obj: Any, path: tuple[Any, ...], url: str) -> str:
    cur = obj
    for p in path:
        try:
            cur = cur[p]
        except (KeyError, IndexError, TypeError):
            where = "".join(f"[{p!r}]" for p in path)
            raise BackendError(
                f"{url} answered JSON without {where} (not a chat completion): {json.dumps(obj)[:200]}"
            ) from None
    if not isinstance(cur, str):
        raise BackendError(f"{url} answered a non-text message content: {cur!r}")
    return cur


class OpenAIBackend(AbstractBackend):
    """An OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, LM Studio ...).

    Sends ``POST {url}/v1/chat/completions`` with ``{"model", "messages", "temperature"}`` and reads
    ``choices[0].message.content``. ``url`` may be the server root (``http://host:8000``), the API base
    (``.../v1``) or the full endpoint. The API key is read from the environment variable
    ``api_key_env`` at each call (never stored); without it no ``Authorization`` header is sent, as
    local servers expect.

    Args:
        url: the server.
        model: the model name the server knows.
        api_key_env: name of the environment variable holding the key.
        timeout: seconds per request.
        temperature: sampling temperature (MCI samples at 0.8; 1.0 for fresh starts).
        max_tokens: reply length cap (``None``: the server's default).

    Raises:
        TypeError / ValueError: a malformed ``url``, empty ``model`` or bad numbers.

    Example:
        >>> b = OpenAIBackend("http://127.0.0.1:8000", "qwen2.5-7b-instruct")
        >>> b.endpoint
        'http://127.0.0.1:8000/v1/chat/completions'
    """

    url: str = eqx.field(static=True)
    model: str = eqx.field(static=True)
    api_key_env: str = eqx.field(static=True, default="OPENAI_API_KEY")
    timeout: float = eqx.field(static=True, default=120.0)
    temperature: float = eqx.field(static=True, default=0.8)
    max_tokens: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        _check_url(self.url)
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"`model` must be a non-empty model name, got {self.model!r}")
        if not isinstance(self.api_key_env, str) or not self.api_key_env:
            raise ValueError(f"`api_key_env` must name an environment variable, got {self.api_key_env!r}")
        _check_positive(self.timeout, "timeout")
        _check_positive(self.temperature, "temperature", allow_zero=True)
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1
        ):
            raise ValueError(f"`max_tokens` must be a positive int or None, got {self.max_tokens!r}")

    @property
    def endpoint(self) -> str:
        base = _check_url(self.url)
        if base.endswith("/chat/completions"):
            return base
        return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant's reply (raises :class:`BackendError` on any transport or format failure)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": _check_messages(messages),
            "temperature": self.temperature,
        }
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        headers = {}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = self.endpoint
        out = _post_json(url, body, headers, self.timeout)
        return _field(out, ("choices", 0, "message", "content"), url)


class OllamaBackend(AbstractBackend):
    """An Ollama server's chat API (``POST {url}/api/chat``, ``stream: false``), as MCI uses.

    Args:
        model: the Ollama model tag, e.g. ``"llama3.1:8b"`` (MCI: llama3.1 8B, mixtral 8x7B, gemma3).
        url: the server (default the local Ollama port).
        timeout: seconds per request.
        temperature: sampling temperature (``options.temperature``).

    Raises:
        TypeError / ValueError: a malformed ``url``, empty ``model`` or bad numbers.

    Example:
        >>> OllamaBackend("llama3.1:8b").endpoint
        'http://127.0.0.1:11434/api/chat'
    """

    model: str = eqx.field(static=True)
    url: str = eqx.field(static=True, default="http://127.0.0.1:11434")
    timeout: float = eqx.field(static=True, default=300.0)
    temperature: float = eqx.field(static=True, default=0.8)

    def __check_init__(self):
        _check_url(self.url)
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(
                f"`model` must be a non-empty model tag such as 'llama3.1:8b', got {self.model!r}"
            )
        _check_positive(self.timeout, "timeout")
        _check_positive(self.temperature, "temperature", allow_zero=True)

    @property
    def endpoint(self) -> str:
        return _check_url(self.url) + "/api/chat"

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant's reply (raises :class:`BackendError` on any transport or format failure)."""
        body = {
            "model": self.model,
            "messages": _check_messages(messages),
            "stream": False,
            "options": {"temperature": self.temperature},
        }
        url = self.endpoint
        return _field(_post_json(url, body, {}, self.timeout), ("message", "content"), url)


_REPLAY_FORMAT = "sciml.symbolic.discovery.replay"


class ReplayBackend(AbstractBackend):
    """A prompt -> reply cache in a JSON file: records a live backend's replies, or replays them.

    Entries are keyed by :func:`message_hash` of the whole chat. With ``backend`` (record mode) a
    cached prompt is answered from the file and a new one is sent to ``backend`` and its reply saved;
    without it (replay-only) a prompt not in the file raises :class:`ReplayMissError`. Backend errors
    are not recorded. The file is rewritten atomically on every new entry (one writer at a time).

    Args:
        path: the JSON file (created on the first recorded reply).
        backend: the live backend to record from, or ``None`` to replay only.

    Raises:
        TypeError: ``path`` is not a path, or ``backend`` not a backend.

    Example:
        >>> replay = ReplayBackend("no-such-folder/replies.json")  # replay-only, nothing recorded
        >>> replay.complete([{"role": "user", "content": "hi"}])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        symbolic.discovery._llm.ReplayMissError: ...
    """

    path: str = eqx.field(static=True)
    backend: AbstractBackend | None = eqx.field(static=True, default=None)

    def __init__(self, path: str | os.PathLike, backend: AbstractBackend | None = None):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a file path (str or os.PathLike), got {type(path).__name__}")
        if backend is not None and not isinstance(backend, AbstractBackend):
            raise TypeError(
                f"`backend` must be a backend (OpenAIBackend, OllamaBackend, ...) or None, got "
                f"{type(backend).__name__}"
            )
        self.path = os.fspath(path)
        self.backend = backend

    def entries(self) -> dict[str, dict[str, Any]]:
        """The cache: ``{hash: {"messages": [...], "reply": str}}`` (empty if the file does not exist).

        Raises:
            ValueError: the file is not a replay cache.
        """
        if not os.path.exists(self.path):
            return {}
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"`path` {self.path!r} is not a readable replay cache: {e}") from e
        if (
            not isinstance(data, dict)
            or data.get("format") != _REPLAY_FORMAT
            or not isinstance(data.get("entries"), dict)
        ):
            raise ValueError(
                f"`path` {self.path!r} is not a replay cache (expected a JSON object with "
                f"format={_REPLAY_FORMAT!r} and 'entries')"
            )
        return data["entries"]

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The recorded reply, else (record mode) the live backend's reply, saved.

        Raises:
            ReplayMissError: replay-only and the prompt is not in the cache.
            BackendError: the live backend failed (nothing is recorded).
        """
        msgs = _check_messages(messages)
        key = message_hash(msgs)
        entries = self.entries()
        if key in entries:
            return entries[key]["reply"]
        if self.backend is None:
            raise ReplayMissError(
                f"the replay cache {self.path!r} ({len(entries)} entries) has no reply for this prompt "
                f"(hash {key[:16]}); the prompt differs from the recorded run. Record it by wrapping a "
                "live backend: ReplayBackend(path, backend=OpenAIBackend(...))"
            )
        reply = self.backend.complete(msgs)
        entries = self.entries()  # re-read: keep what another agent recorded meanwhile
        entries[key] = {"messages": msgs, "reply": reply}
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".replay-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"format": _REPLAY_FORMAT, "version": 1, "entries": entries}, f, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return reply


# --------------------------------------------------------------------------------------------------
# Reading replies: extraction, a whitelist check before SymPy, skeletons
# --------------------------------------------------------------------------------------------------

#: Names that aggregate over or mix data rows: never pointwise, so never part of an equation.
_DATA_DEPENDENT = frozenset(
    "gradient diff ediff1d cumsum cumprod sum nansum prod mean nanmean average median std var min max "
    "amin amax nanmin nanmax argmin argmax sort argsort roll convolve correlate trapz trapezoid "
    "integrate interp percentile quantile norm len shape size cov corrcoef histogram unique where "
    "clip dot matmul einsum fft".split()
)
_MAX_CHARS = 1000
_MAX_NODES = 300
_MAX_POWER_GROWTH = 1e4  # product of nested numeric exponents: bounds SymPy's exact integer powers

_UNICODE = {"\u2212": "-", "\u00d7": "*", "\u00b7": "*", "\u22c5": "*", "\u00b2": "**2", "\u00b3": "**3"}
_PREFIX = re.compile(
    r"\b(?:np|numpy|jnp|jax\.numpy|math|sympy|sp|torch|scipy\.special|special|scipy)\.(?=[A-Za-z_])"
)
_PARAM = re.compile(r"\b(?:params|param|p|c|theta)\s*\[\s*(\d+)\s*\]")
_ALIASES = (
    (re.compile(r"\bln\s*\("), "log("),
    (re.compile(r"\b(?:Abs|fabs|absolute)\s*\("), "abs("),
    (re.compile(r"\b(?:power|pow)\s*\("), "pow("),
)


class _Reject(Exception):
    """A formula is not acceptable; the message is the reason."""


def _normalize(s: str) -> str:
    for a, b in _UNICODE.items():
        s = s.replace(a, b)
    s = _PREFIX.sub("", s)
    s = _PARAM.sub(r"c\1", s)
    for pat, rep in _ALIASES:
        s = pat.sub(rep, s)
    return s.replace("^", "**").strip()


def _fn_names(grammar: Grammar) -> dict[str, int]:
    """Function names a formula may call (-> arity): grammar operators SymPy's parser knows by name."""
    out = {}
    for op in grammar.operators:
        if isinstance(op.sympy_fn, type) and issubclass(op.sympy_fn, sympy.Function):
            out[op.name] = op.arity
    if "sqrt" in grammar.names:
        out["sqrt"] = 1
    out["pow"] = 2  # Python's pow(a, b) is a**b
    return out


def _numeric(node: ast.AST) -> float | None:
    """The float value of a purely numeric subtree (``None`` if it has names or calls)."""
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        try:
            return float(node.value)
        except OverflowError:
            return math.inf
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _numeric(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp):
        a, b = _numeric(node.left), _numeric(node.right)
        if a is None or b is None:
            return None
        try:
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if isinstance(node.op, ast.Div):
                return a / b
            if isinstance(node.op, ast.Pow):
                return abs(a) ** b  # the magnitude is what matters here
        except (OverflowError, ZeroDivisionError):
            return math.inf
    return None


def _growth(node: ast.AST) -> float:
    """Product of the magnitudes of nested numeric exponents (``(x**10)**10`` -> 100)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        e = _numeric(node.right)
        g = _growth(node.left) * (max(1.0, abs(e)) if e is not None else 1.0)
        return max(g, _growth(node.right))
    return max((_growth(c) for c in ast.iter_child_nodes(node)), default=1.0)


def _check_formula(formula: str, variables: tuple[str, ...], fns: dict[str, int]) -> None:
    """Raise :class:`_Reject` unless ``formula`` is a safe, pointwise arithmetic expression.

    Only numbers, the variables, constants ``c0, c1, ...``, ``pi``, ``E``, the arithmetic operators
    and calls of whitelisted functions by name pass; so the string SymPy evaluates next cannot reach
    Python (attributes, subscripts, imports) and cannot ask for astronomically large exact numbers.
    """
    if len(formula) > _MAX_CHARS:
        raise _Reject(f"longer than {_MAX_CHARS} characters")
    try:
        tree = ast.parse(formula, mode="eval")
    except SyntaxError as e:
        raise _Reject(f"not a Python expression ({e.msg})") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > _MAX_NODES:
        raise _Reject(f"more than {_MAX_NODES} syntax nodes")
    names = set(variables) | {"pi", "E"}
    for n in nodes:
        if isinstance(n, (ast.Expression, ast.Load)) or isinstance(
            n, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)
        ):
            continue
        if isinstance(n, ast.BinOp):
            if not isinstance(n.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
                raise _Reject(f"operator {type(n.op).__name__} is not allowed (only + - * / **)")
        elif isinstance(n, ast.UnaryOp):
            if not isinstance(n.op, (ast.USub, ast.UAdd)):
                raise _Reject(f"operator {type(n.op).__name__} is not allowed")
        elif isinstance(n, ast.Constant):
            v = n.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _Reject(f"the literal {v!r} is not a real number")
            if isinstance(v, int) and abs(v) >= 10**30 or isinstance(v, float) and not math.isfinite(v):
                raise _Reject(f"the number {v!r} is out of range")
        elif isinstance(n, ast.Name):
            if n.id in names or re.fullmatch(r"c\d+", n.id) or n.id in fns:
                continue
            if n.id in _DATA_DEPENDENT:
                raise _Reject(f"data-dependent: {n.id!r} aggregates or mixes rows; only pointwise operators")
            raise _Reject(f"unknown name {n.id!r}: inputs are {list(variables)}, constants c0, c1, ...")
        elif isinstance(n, ast.Call):
            f = n.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if fname in _DATA_DEPENDENT:
                raise _Reject(
                    f"data-dependent: {fname}(...) aggregates or mixes rows; only pointwise operators allowed"
                )
            if not isinstance(f, ast.Name) or fname not in fns or fname in variables:
                raise _Reject(f"{fname or 'this call'}(...) is not a whitelisted operator {sorted(fns)}")
            if n.keywords or any(isinstance(a, ast.Starred) for a in n.args):
                raise _Reject(f"{fname}(...) with keyword or starred arguments is not allowed")
            if len(n.args) != fns[fname]:
                raise _Reject(f"{fname} takes {fns[fname]} argument(s), got {len(n.args)}")
        elif isinstance(n, ast.Subscript):
            raise _Reject("indexing (x[...]) reads other rows or columns; only pointwise operators")
        elif isinstance(n, ast.Attribute):
            if n.attr in _DATA_DEPENDENT:
                raise _Reject(f"data-dependent: .{n.attr} aggregates or mixes rows")
            raise _Reject(f"attribute access .{n.attr} is not allowed")
        elif isinstance(n, (ast.Compare, ast.BoolOp, ast.IfExp)):
            raise _Reject("comparisons and conditionals are not allowed")
        else:
            raise _Reject(f"{type(n).__name__} is not allowed in an equation")
    for n in nodes:
        if isinstance(n, ast.BinOp):
            v = _numeric(n)
            if v is not None and (math.isinf(v) or abs(v) > 1e300):
                raise _Reject("a numeric sub-expression overflows or divides by zero")
    if _growth(tree.body) > _MAX_POWER_GROWTH:
        raise _Reject(f"exponents multiply to more than {_MAX_POWER_GROWTH:g}")


def _renumber(e: AbstractExpr) -> AbstractExpr:
    """Constants renumbered ``c0, c1, ...`` in order of their indices (no gaps)."""
    order = {i: k for k, i in enumerate(sorted({n.index for n in _walk(e) if isinstance(n, Const)}))}

    def go(x: AbstractExpr) -> AbstractExpr:
        if isinstance(x, Const):
            return Const(order[x.index])
        if isinstance(x, Call):
            return Call(x.op, tuple(go(a) for a in x.args))
        return x

    return go(e)


def _logical_lines(text: str, max_join: int = 20) -> list[str]:
    """Lines with bracket and backslash continuations joined (at most ``max_join`` lines each)."""
    out: list[str] = []
    buf = ""
    depth = joined = 0
    for line in text.splitlines():
        joined += 1
        code = line.split("#")[0]
        if buf:
            buf += " " + code.strip()
        else:
            buf = code.rstrip()
        depth += code.count("(") + code.count("[") - code.count(")") - code.count("]")
        if joined < max_join and buf.endswith("\\"):
            buf = buf[:-1]
            continue
        if joined < max_join and depth > 0:
            continue
        out.append(buf)
        buf, depth, joined = "", 0, 0
    if buf:
        out.append(buf)
    return out


_LIST = re.compile(r"^(?:\d+\s*[.):]|\(\d+\)|[-*\u2022+])\s+")
_BOLD = re.compile(r"^\*\*[^*]{0,60}\*\*\s*:?\s*")
_LABEL = re.compile(
    r"^(?:equation|candidate|eq|formula|option|model|hypothesis|proposal)\s*\(?\d*\)?\s*[:.)-]\s*", re.I
)
_LHS = re.compile(r"^(?:[A-Za-z_]\w*(?:\s*\([^()=]*\))?|d\w*\s*/\s*d\w+)$")
_TRAIL = re.compile(r"(?:,|\s)\s*\(?\s*(?:where|with|for|here)\b.*$", re.I)
_ASSIGN = re.compile(r"(?<![<>=!])=(?!=)")


def _line_formula(line: str, code: bool, variables: tuple[str, ...]) -> str | None:
    s = line.split("#")[0].strip() if not line.lstrip().startswith("#") else ""
    if not s or s.startswith(("#", "//")):
        return None
    s = _LIST.sub("", s)
    s = _BOLD.sub("", s)
    s = _LABEL.sub("", s)
    s = s.strip().strip("`$").strip().rstrip(".,;").strip().strip("`$").strip()
    if not s or s.endswith(":"):
        return None
    m = re.match(r"return\s+(.+)$", s)
    if m:
        return m.group(1)
    parts = _ASSIGN.split(s)
    if len(parts) > 1:
        lhs, rhs = parts[0].strip().strip("`$* "), parts[1].strip()
        if not _LHS.match(lhs):
            return None
        name = lhs.split("(")[0].strip()
        if re.fullmatch(r"c\d+", name) or name in ("params", "MAX_NPARAMS") or name in variables:
            return None  # a constant's value or a data column, not an equation
        return _TRAIL.sub("", rhs).strip().rstrip(".,;") or None
    return s if code else None


_PARAMS_UNPACK = re.compile(
    r"^([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*,?\s*=\s*params\s*(?:\[\s*:\s*\d*\s*\])?$"
)
_DOCSTRING = re.compile(r"(\"\"\"|''').*?(?:\1|\Z)", re.S)
_STATEMENT = re.compile(r"^([A-Za-z_]\w*)\s*([-+*/]?)=(?!=)\s*(.+)$")


def _function_formulas(text: str) -> list[tuple[str, str | None]]:
    """Return expressions of Python functions, local assignments substituted: ``(formula, reason)``."""
    out: list[tuple[str, str | None]] = []
    local: dict[str, str] = {}
    control = False
    text = _DOCSTRING.sub("", text)

    def subst(expr: str) -> str:
        if not local:
            return expr
        pat = re.compile(r"\b(" + "|".join(map(re.escape, sorted(local, key=len, reverse=True))) + r")\b")
        return pat.sub(lambda m: f"({local[m.group(1)]})", expr)

    for line in _logical_lines(text):
        s = line.strip()
        if not s:
            continue
        if s.startswith("def "):
            local, control = {}, False
            continue
        if s.startswith(("import ", "from ", "@", "class ", "print(")):
            continue
        if re.match(r"(?:if|elif|else|for|while|try|except|with)\b", s):
            control = True
            continue
        m = re.match(r"return\s+(.+)$", s)
        if m:
            formula = subst(_normalize(m.group(1)))
            out.append(
                (
                    formula,
                    "the function has control flow (if/for/while); write one expression" if control else None,
                )
            )
            continue
        m = _PARAMS_UNPACK.match(s)
        if m:
            for i, n in enumerate(x.strip() for x in m.group(1).split(",")):
                local[n] = f"c{i}"
            continue
        m = _STATEMENT.match(s)
        if m:
            name, op, rhs = m.groups()
            if name in ("params", "MAX_NPARAMS"):
                continue
            rhs = subst(_normalize(rhs))
            local[name] = f"({local.get(name, name)}) {op} ({rhs})" if op else rhs
    return out


def _extract(reply: str, variables: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """Formula strings in a reply, in order, each with a rejection reason or ``None``.

    Fenced code blocks come first: a block with ``def``/``return`` is read as Python functions, any
    other block line by line. Text outside blocks is read (``lhs = rhs`` lines only) when no block gave
    a formula.
    """
    found: list[tuple[str, str | None]] = []
    prose = []
    last = 0
    for m in re.finditer(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:```|\Z)", reply, re.S):
        prose.append(reply[last : m.start()])
        last = m.end()
        body = m.group(2)
        if re.search(r"^\s*(?:def\s|return\b)", body, re.M):
            found += _function_formulas(body)
        else:
            for line in _logical_lines(body):
                f = _line_formula(line, True, variables)
                if f is not None:
                    found.append((_normalize(f), None))
    prose.append(reply[last:])
    if not found:  # prose: one line at a time (an unclosed bracket in a sentence must not join lines)
        for line in "\n".join(prose).splitlines():
            f = _line_formula(line, False, variables)
            if f is not None:
                found.append((_normalize(f), None))
    return found


def parse_reply(
    reply: str,
    variables: Sequence[str],
    grammar: Grammar | None = None,
    *,
    max_constants: int = 10,
    max_complexity: int = 60,
) -> tuple[list[AbstractExpr], list[tuple[str, str]]]:
    """Skeletons in an LLM reply, and the formulas rejected with the reason.

    Reads fenced code blocks (``y = ...`` lines, bare expressions, or Python functions whose
    ``return`` is expanded through their local assignments, with MCI's ``params[i]`` as ``c_i``),
    else ``lhs = rhs`` lines of the text (numbered or bulleted lists, ``**Candidate 1:**`` labels).
    ``np.``/``math.`` prefixes, ``^`` for powers and ``ln`` are accepted. Each formula is checked
    against a whitelist (numbers, ``variables``, ``c0, c1, ...``, ``pi``, ``E``, ``+ - * / **`` and
    the grammar's functions) before :func:`~symbolic.discovery.parse` and
    :func:`~symbolic.discovery.from_sympy`; numeric literals other than integers become free constants
    (:func:`~symbolic.discovery.free_constants`) and constants are renumbered ``c0, c1, ...``.
    Duplicates are dropped.

    Args:
        reply: the model's text.
        variables: the input names.
        grammar: the operator set (default :func:`~symbolic.discovery.default_grammar`).
        max_constants: skeletons with more free constants are rejected.
        max_complexity: skeletons with more nodes are rejected.

    Returns:
        ``(skeletons, rejected)`` with ``rejected`` a list of ``(formula, reason)``.

    Raises:
        TypeError: ``reply`` is not a str.
        ValueError: bad ``variables`` or limits.

    Example:
        >>> ok, bad = parse_reply("```\\ny = 2.5*x/(0.8 + x)\\ny = mean(x)*x\\n```", ["x"])
        >>> [str(to_sympy(e, ["x"])) for e in ok], bad[0][1][:15]
        (['c0*x/(c1 + x)'], 'data-dependent:')
    """
    if not isinstance(reply, str):
        raise TypeError(f"`reply` must be a str, got {type(reply).__name__}")
    names = _check_names(variables)
    grammar = default_grammar() if grammar is None else grammar
    if not isinstance(grammar, Grammar):
        raise TypeError(f"`grammar` must be a Grammar, got {type(grammar).__name__}")
    for v, nm in ((max_constants, "max_constants"), (max_complexity, "max_complexity")):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{nm}` must be a positive int, got {v!r}")
    fns = _fn_names(grammar)
    out: list[AbstractExpr] = []
    rejected: list[tuple[str, str]] = []
    for formula, reason in _extract(reply, names):
        shown = formula if len(formula) <= 200 else formula[:197] + "..."
        try:
            if reason is not None:
                raise _Reject(reason)
            _check_formula(formula, names, fns)
            try:
                e = from_sympy(parse(formula, names, grammar), names, grammar)
            except (ValueError, TypeError) as err:
                raise _Reject(str(err)) from None
            e = _renumber(free_constants(e))
            if n_constants(e) > max_constants:
                raise _Reject(f"{n_constants(e)} free constants, more than max_constants={max_constants}")
            if complexity(e) > max_complexity:
                raise _Reject(f"complexity {complexity(e)}, more than max_complexity={max_complexity}")
        except _Reject as r:
            rejected.append((shown, str(r)))
            continue
        if e in out:
            continue
        out.append(e)
    return out, rejected


# --------------------------------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------------------------------


class LLMState(NamedTuple):
    """What an :class:`LLMAgent` keeps between rounds (and the log of its last round).

    Attributes:
        rounds: rounds proposed so far.
        previous: the skeletons it proposed last round, as text (shown to it in the next prompt).
        rejected: last round's rejected formulas with the reasons.
        error: last round's backend error (``""`` if none).
        reply: last round's raw reply.
    """

    rounds: int = 0
    previous: tuple[str, ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()
    error: str = ""
    reply: str = ""


_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _show(h: Hypothesis, variables: tuple[str, ...], grammar: Grammar, target: str) -> str:
    """``target = formula`` with the constants at 6 significant digits, and its scores."""
    try:
        s = to_sympy_expr(h, variables, grammar=grammar)
        s = s.xreplace({f: sympy.Float(f, 6) for f in s.atoms(sympy.Float)})
    except ValueError:  # non-finite constants: show the skeleton
        s = to_sympy(h.expr, variables, grammar)
    text = sympy.sstr(s, full_prec=False)
    return f"{target} = {text}    (MSE {_fmt(h.loss)}, NMSE {_fmt(h.nmse)}, complexity {h.complexity})"


class LLMAgent(AbstractAgent):
    """An agent whose proposals come from a language model, prompted as in MCI (Na & Park 2026).

    Every round it sends one chat to ``backend``: the task, the variables with their ranges, a few
    data rows spread over the range of the target, the allowed operators, and from round 1 the
    collective's best equation (fitted constants, loss, complexity) with the analyst's critique, the
    hint whether that equation over- or under-estimates where it errs most (MCI's update prompt asks
    to fix exactly that), this agent's own best and its previous proposals, and a few points of the
    Pareto front. It asks for ``n_candidates`` equations ``y = ...`` with constants ``c0, c1, ...``
    in one code block and reads the reply with :func:`parse_reply`.

    Without a backend (the default) it proposes nothing: the default engine uses no LLM. A
    :class:`BackendError` (server down, HTTP 500, malformed answer) gives no candidates for the round
    and is kept in the state; so are the rejected formulas. The ``key`` is not used: the model samples
    by itself; wrap the backend in a :class:`ReplayBackend` to make a run repeatable.

    Args:
        name: the agent's name (also shown to the model, so agents' prompts differ).
        backend: the chat model, or ``None``.
        n_candidates: equations asked for per round (more in a reply are dropped).
        task: what the data is, e.g. "acceleration of a damped driven oscillator from time, position
            and velocity" (MCI's per-problem instruction); may be empty.
        domain: the field the model is told it is an expert in.
        target: the target's name in the prompt.
        n_rows: data rows shown.
        max_constants: skeletons with more free constants are rejected (MCI: 10).
        max_complexity: skeletons with more nodes are rejected.

    Raises:
        TypeError / ValueError: a bad field.

    Example:
        >>> agent = LLMAgent(name="llm0")  # no backend: proposes nothing
        >>> agent = LLMAgent(name="llm1", backend=OllamaBackend("llama3.1:8b"), n_candidates=6)
        >>> agent.backend.endpoint
        'http://127.0.0.1:11434/api/chat'
    """

    name: str = eqx.field(static=True, default="llm")
    backend: AbstractBackend | None = eqx.field(static=True, default=None)
    n_candidates: int = eqx.field(static=True, default=4)
    task: str = eqx.field(static=True, default="")
    domain: str = eqx.field(static=True, default="physics")
    target: str = eqx.field(static=True, default="y")
    n_rows: int = eqx.field(static=True, default=10)
    max_constants: int = eqx.field(static=True, default=10)
    max_complexity: int = eqx.field(static=True, default=60)

    def __check_init__(self):
        if self.backend is not None and not isinstance(self.backend, AbstractBackend):
            raise TypeError(
                f"`backend` must be a backend (OpenAIBackend, OllamaBackend, ReplayBackend) or None, got "
                f"{type(self.backend).__name__}"
            )
        for f in ("name", "task", "domain", "target"):
            if not isinstance(getattr(self, f), str):
                raise TypeError(f"`{f}` must be a str, got {type(getattr(self, f)).__name__}")
        if not self.name:
            raise ValueError("`name` must be a non-empty str")
        if not self.target.isidentifier():
            raise ValueError(f"`target` must be an identifier such as 'y', got {self.target!r}")
        for f in ("n_candidates", "n_rows", "max_constants", "max_complexity"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{f}` must be a positive int, got {v!r}")

    def init(self, context: Context, *, key: Any) -> LLMState:
        """A fresh state (no previous proposals)."""
        del context, key
        return LLMState()

    def messages(self, context: Context, state: LLMState) -> list[dict[str, str]]:
        """The chat sent this round: a system persona and one user message in MCI's sections.

        Example:
            >>> from symbolic.discovery import Context, default_grammar
            >>> ctx = Context(X=np.ones((3, 1)), y=np.ones(3), variables=("x",), grammar=default_grammar())
            >>> "c0, c1" in LLMAgent().messages(ctx, LLMState())[1]["content"]
            True
        """
        names, g, t = context.variables, context.grammar, self.target
        X, y = np.asarray(context.X, np.float64), np.asarray(context.y, np.float64)
        ops = [_SYMBOLS.get(n, n) for n in g.names if n in _SYMBOLS or n in _fn_names(g)]
        k = min(self.n_rows, y.shape[0])
        rows = np.argsort(y, kind="stable")[np.unique(np.linspace(0, y.shape[0] - 1, k).round().astype(int))]
        table = [" | ".join((*names, t))] + [" | ".join(_fmt(v) for v in (*X[i], y[i])) for i in rows]
        ranges = [f"{n}: from {_fmt(X[:, j].min())} to {_fmt(X[:, j].max())}" for j, n in enumerate(names)]
        ctx = []
        if self.task:
            ctx.append(f"<description>\n{self.task}\n</description>")
        ctx.append(
            "<variables>\ninputs:\n"
            + "\n".join(ranges)
            + f"\ntarget:\n{t}: from {_fmt(y.min())} to {_fmt(y.max())}\n</variables>"
        )
        if context.units is not None:
            units = [f"{n}: {u}" for n, u in zip((*names, t), context.units)]
            ctx.append("<units>\ndimension exponents per base unit:\n" + "\n".join(units) + "\n</units>")
        ctx.append(f"<data>\n{k} of {y.shape[0]} rows, sorted by {t}:\n" + "\n".join(table) + "\n</data>")
        ctx.append("<operators>\n" + " ".join(ops) + "\n</operators>")
        best = context.global_best
        if best is not None:
            block = (
                "<prior_knowledge>\nThe best equation the collective has found so far, with an expert "
                "analysis of it. Build on it when you update your equations.\n"
                f"<function>\n{_show(best, names, g, t)}\n</function>\n"
            )
            if context.critique:
                block += f"<analysis>\n{context.critique}\n</analysis>\n"
            ctx.append(block + "</prior_knowledge>")
        if context.personal_best is not None:
            ctx.append(f"<your_best>\n{_show(context.personal_best, names, g, t)}\n</your_best>")
        if state.previous:
            prev = "\n".join(f"{t} = {p}" for p in state.previous)
            ctx.append(f"<your_last_proposals>\n{prev}\n</your_last_proposals>")
        front = sorted(context.archive, key=lambda h: h.complexity)[:6]
        if front:
            ctx.append(
                "<pareto_front>\n" + "\n".join(_show(h, names, g, t) for h in front) + "\n</pareto_front>"
            )

        n = self.n_candidates
        if best is None:
            ask = (
                f"Propose {n} different candidate equations for {t}, considering the physical meaning of "
                "the variables and the relationships between them."
            )
        elif context.hint in ("over", "under"):
            ask = (
                f"The best equation {context.hint}-estimates {t} where its error is largest. Update it "
                f"(or your own best) to fix the {context.hint}estimation: propose {n} different candidate "
                "equations."
            )
        else:
            ask = f"Improve on the equations above: propose {n} different candidate equations for {t}."
        rules = (
            f"- Write each equation as `{t} = <expression>` in Python syntax over the inputs "
            f"{', '.join(names)}, with ** for powers.\n"
            f"- Write unknown numeric constants as c0, c1, c2, ... (at most {self.max_constants} per "
            "equation); they are fitted to the data afterwards, so their values do not matter.\n"
            "- Use only the operators listed above, applied element-wise. No derivatives, sums, means, "
            "minima or maxima over the data rows, no indexing, no conditionals.\n"
            "- Prefer simple equations, and make the candidates differ in structure."
        )
        fmt = f"Answer with the {n} equations, one per line, in a single ```text code block."
        role = (
            f"You are agent {self.name!r} in a collective of agents that discover together the equation "
            f"{t} = f({', '.join(names)}) behind a data set."
        )
        if best is not None and context.hint in ("over", "under"):
            role += f" Your goal is to fix the {context.hint}estimation of the current best equation."
        user = (
            f"<prompt>\n<role>\n{role}\n</role>\n<context>\n" + "\n".join(ctx) + "\n</context>\n"
            f"<task>\nRound {context.iteration}. {ask}\n{rules}\n{fmt}\n</task>\n</prompt>"
        )
        system = (
            "You are a helpful scientist who discovers the mathematical structure of equations from data."
        )
        if self.domain:
            system += f" You are an expert in {self.domain}."
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def propose(self, context: Context, state: LLMState, *, key: Any) -> tuple[list[AbstractExpr], LLMState]:
        """Ask the model, read its reply; no candidates if there is no backend or it failed.

        Raises:
            TypeError: ``context`` is not a Context or ``state`` not an LLMState.
            ReplayMissError: a replay-only backend has no reply recorded for this prompt.
        """
        del key
        if not isinstance(context, Context):
            raise TypeError(f"`context` must be a Context, got {type(context).__name__}")
        if not isinstance(state, LLMState):
            raise TypeError(f"`state` must be an LLMState (from init), got {type(state).__name__}")
        rounds = state.rounds + 1
        if self.backend is None:
            return [], LLMState(rounds, (), (), "no backend: the LLM agent proposes nothing", "")
        try:
            reply = self.backend.complete(self.messages(context, state))
        except BackendError as e:
            return [], LLMState(rounds, state.previous, (), str(e), "")
        cands, rejected = parse_reply(
            reply,
            context.variables,
            context.grammar,
            max_constants=self.max_constants,
            max_complexity=self.max_complexity,
        )
        for extra in cands[self.n_candidates :]:
            rejected.append((str(to_sympy(extra, context.variables, context.grammar)), "beyond n_candidates"))
        cands = cands[: self.n_candidates]
        previous = tuple(str(to_sympy(c, context.variables, context.grammar)) for c in cands)
        return cands, LLMState(rounds, previous, tuple(rejected), "", reply)
