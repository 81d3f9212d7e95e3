"""The pde acceptance benchmarks (issue #3), each with its wall time, on whatever machine runs it.

Every case solves one benchmark problem at d=100 and compares with its reference; ``target`` is the
acceptance bound and ``ok`` says whether this run met it. Run one case with
``python -m benchmarks pde`` and ``SCIML_BENCH_CASES=heat,hjb1`` to pick cases.
"""

from __future__ import annotations

import os
import time

import jax

import pde

D = 100

# name: (problem, params, method, steps (None: the method's default), metric, target,
#        time limit in s (None: none stated))
CASES = {
    "heat": ("heat-paraboloid", {}, lambda: pde.DeepKolmogorov(), 3000, "box", 5e-3, 180),
    "maxcall": ("max-call", {}, lambda: pde.DeepKolmogorov(), 3000, "box", 5e-3, 300),
    "hjb1": ("hjb", {"lam": 1.0}, lambda: pde.DeepBSDE(), 2000, "point", 1e-3, None),
    "hjb10": ("hjb", {"lam": 10.0}, lambda: pde.DeepBSDE(), 2000, "point", 5e-3, None),
    "allen_cahn": ("allen-cahn", {}, lambda: pde.DeepSplitting(theta=0.5), None, "point", 5e-3, None),
    "allen_cahn_bsde": ("allen-cahn", {}, lambda: pde.DeepBSDE(), 2000, "point", 5e-3, None),
    "allen_cahn_mlp": ("allen-cahn", {}, lambda: pde.MultilevelPicard(level=5), None, "point", 1e-2,
                       None),
    "reaction_diffusion": ("reaction-diffusion", {}, lambda: pde.DeepSplitting(on_box=False), None,
                           "point", 1e-3, None),
    "default_risk": ("default-risk", {}, lambda: pde.DeepBSDE(), 2000, "point", 5e-3, None),
}


def run_case(name: str) -> dict:
    problem_name, params, method, steps, metric, target, limit = CASES[name]
    problem = pde.make_problem(problem_name, D, **params)
    t0 = time.perf_counter()
    sol = pde.solve(problem, method(), key=jax.random.key(0), steps=steps, progress=False)
    seconds = time.perf_counter() - t0
    err = sol.box_rel_l1 if metric == "box" else sol.rel_error
    extra = {}
    if problem_name == "heat-paraboloid":
        # u = |x|^2 + 2Td: the constant hides errors in the x-dependent part (benchmark K1 asks for
        # both), so also report sum |(u_hat - 2Td) - |x|^2| / sum |x|^2 on fresh box points.
        x = problem.box.sample(jax.random.key(1), 8192)
        shift = 2 * problem.horizon * D
        pred = jax.jit(jax.vmap(sol.model))(x) - shift
        sq = jax.numpy.sum(x**2, axis=-1)
        extra["rel_l1_without_2Td"] = float(jax.numpy.sum(abs(pred - sq)) / jax.numpy.sum(sq))
    ok = err <= target and (limit is None or seconds <= limit)
    return {
        "problem": problem_name, "params": params, "dim": D, "method": type(method()).__name__,
        "steps": None if sol.history is None else int(len(sol.history.loss)),
        "value": sol.value, "reference": float(sol.reference.value),
        "error_metric": "rel L1 over box" if metric == "box" else "rel error at x0",
        "error": err, "target": target, "seconds": seconds, "time_limit": limit, "ok": ok,
        "n_params": sol.n_params, "stats": {k: v for k, v in sol.stats.items()}, **extra,
    }


def main() -> dict:
    chosen = os.environ.get("SCIML_BENCH_CASES")
    names = chosen.split(",") if chosen else list(CASES)
    results = {}
    for name in names:
        results[name] = run_case(name)
        r = results[name]
        print(f"{name:<20} err={r['error']:.2e} (target {r['target']:.0e}) {r['seconds']:.0f}s "
              f"{'OK' if r['ok'] else 'MISS'}", flush=True)
    return results
