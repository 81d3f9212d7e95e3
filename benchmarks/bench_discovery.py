"""Candidate-evaluation throughput of the equation-discovery stack machine (issue 7: >= 2e4 candidate
evaluations per second on 1000-row data).

Random expression trees (depth <= 4, the default grammar's operators, 3 variables, up to 4 free
constants; drawn with a fixed NumPy seed) are compiled to postfix programs of one ``max_len`` and
evaluated by ``symbolic.discovery.evaluate_batch`` on 1000 rows: K candidates per call, the compile
(first call) reported apart, then the median of later calls on *new* candidates of the same shape
(no recompilation, as in a search round). Also checked: the values equal SymPy's ``lambdify`` of
the same expressions (NumPy, float64) where both are finite. Run with
``python -m benchmarks discovery``.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import sympy

import sciml.backend as B
from symbolic import discovery as d

ROWS = 1000
N_VARS = 3
MAX_LEN = 32
BATCHES = (256, 1024, 4096)
REPEATS = 5
MIN_RATE = 2e4  # the floor, candidate evaluations per second on 1000 rows

_UNARY = ("exp", "log", "sqrt", "sin", "cos", "tanh", "abs")
_BINARY = ("add", "sub", "mul", "div")


def _tree(rng, depth):
    r = rng.random()
    if depth == 0 or r < 0.25:
        if rng.random() < 0.7:
            return d.Var(int(rng.integers(N_VARS)))
        return d.Const(int(rng.integers(4)))
    if r < 0.45:
        return d.Call(str(rng.choice(_UNARY)), (_tree(rng, depth - 1),))
    return d.Call(str(rng.choice(_BINARY)), (_tree(rng, depth - 1), _tree(rng, depth - 1)))


def _candidates(rng, k):
    out = []
    while len(out) < k:
        e = _tree(rng, 4)
        if len(d.compile_programs(e).opcodes) <= MAX_LEN:
            out.append(e)
    return out


def _rate(k, rng, X, dtype):
    def batch():
        exprs = _candidates(rng, k)
        progs = d.compile_programs(exprs, max_len=MAX_LEN)
        c = jnp.asarray(rng.uniform(0.5, 2.0, (k, 4)), dtype)
        return exprs, progs, c

    exprs, progs, c = batch()
    t = time.perf_counter()
    first = jax.block_until_ready(d.evaluate_batch(progs, X, c))
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(REPEATS):
        _, progs, c2 = batch()  # new candidates, same shapes: the compiled kernel is reused
        t = time.perf_counter()
        jax.block_until_ready(d.evaluate_batch(progs, X, c2))
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"candidates": k, "first_call_s": compile_s, "median_s": med, "evals_per_s": k / med}, \
        (exprs, np.asarray(first), np.asarray(c))


def _check_against_sympy(exprs, values, consts, X) -> float:
    """Largest relative difference to SymPy's lambdify (NumPy float64) over finite entries."""
    xs = sympy.symbols(f"x0:{N_VARS}")
    cs = sympy.symbols("c0:4")
    worst = 0.0
    Xn = np.asarray(X, np.float64)
    for e, v, c in zip(exprs[:64], values[:64], consts[:64]):
        s = d.to_sympy(e, [str(x) for x in xs])
        if s.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):  # SymPy folded it to a non-finite constant
            continue
        f = sympy.lambdify((*xs, *cs), s, "numpy")
        with np.errstate(all="ignore"):
            ref = np.broadcast_to(np.asarray(f(*Xn.T, *c), np.float64), v.shape)
        ok = np.isfinite(ref) & np.isfinite(v) & (np.abs(ref) < 1e6)
        if ok.any():
            worst = max(worst, float(np.max(np.abs(v[ok] - ref[ok]) / (1 + np.abs(ref[ok])))))
    return worst


def main() -> dict:
    out = {"rows": ROWS, "max_len": MAX_LEN, "n_vars": N_VARS, "floor_evals_per_s": MIN_RATE}
    for dtype in (jnp.float32, jnp.float64):
        with B.precision(jnp.dtype(dtype).name):
            rng = np.random.default_rng(0)
            X = jnp.asarray(rng.uniform(0.1, 3.0, (ROWS, N_VARS)), dtype)
            rows = []
            for k in BATCHES:
                r, sample = _rate(k, rng, X, dtype)
                rows.append(r)
                print(f"  {jnp.dtype(dtype).name} K={k}: {r['evals_per_s']:.3g} evals/s "
                      f"(first call {r['first_call_s']:.2f}s)", flush=True)
            name = jnp.dtype(dtype).name
            out[name] = rows
            out[f"{name}_max_rel_diff_vs_sympy"] = _check_against_sympy(*sample, X)
            out[f"{name}_best_evals_per_s"] = max(r["evals_per_s"] for r in rows)
            out[f"{name}_ok"] = out[f"{name}_best_evals_per_s"] >= MIN_RATE
    return out
