"""``sciml pde ...``: solve a benchmark problem from the command line, and pde's part of the demo."""

from __future__ import annotations

import argparse
import json
import time

import jax

from sciml import backend
from sciml.cli import DemoOptions, DemoRow, register_command, register_demo

METHOD_NAMES = ("deep-kolmogorov", "deep-bsde", "deep-splitting", "mlp")


def method_from_name(name: str):
    """The default-configured method object for a CLI method name."""
    from . import solvers

    table = {
        "deep-kolmogorov": lambda: solvers.DeepKolmogorov(),
        "deep-bsde": lambda: solvers.DeepBSDE(),
        "deep-splitting": lambda: solvers.DeepSplitting(),
        "mlp": lambda: solvers.MultilevelPicard(),
    }
    if name not in table:
        raise ValueError(f"unknown method {name!r}; `--method` must be one of {list(METHOD_NAMES)}")
    return table[name]()


def _parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"`--param` must look like NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _cmd_list(args: argparse.Namespace) -> int:
    from .problems import PROBLEMS

    for name, cls in PROBLEMS.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{name:<20} {doc[0] if doc else ''}")
    return 0


def _cmd_solve(args: argparse.Namespace) -> int:
    from . import solvers
    from .problems import make_problem

    try:
        params = _parse_params(args.param)
        problem = make_problem(args.problem, args.dim, x0=args.x0, **params)
        method = method_from_name(args.method)
    except ValueError as e:
        raise SystemExit(f"sciml pde solve: {e}") from None
    t0 = time.perf_counter()
    try:  # a configuration the method rejects (x0 outside its box, ...)
        sol = solvers.solve(problem, method, key=backend.key(args.seed), steps=args.steps,
                            progress=False if args.json or args.no_progress else None)
    except ValueError as e:
        raise SystemExit(f"sciml pde solve: {e}") from None
    seconds = time.perf_counter() - t0
    ref = None if sol.reference is None else float(sol.reference.value)
    rel = sol.box_rel_l1 if sol.box_rel_l1 is not None else sol.rel_error
    out = {
        "problem": args.problem,
        "dim": args.dim,
        "method": args.method,
        "value": sol.value,
        "reference": ref,
        "rel_error": rel,
        "seconds": seconds,
        "params": sol.n_params,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"problem     {args.problem} (d={args.dim})")
    print(f"method      {args.method}")
    print(f"u(0, x0)    {sol.value:.6g}")
    if ref is not None:
        print(f"reference   {ref:.6g} ({sol.reference.method})")
        print(f"rel. error  {sol.rel_error:.3e} at x0")
    if sol.box_rel_l1 is not None:
        print(f"rel. L1     {sol.box_rel_l1:.3e} over the box")
    for k, v in sol.stats.items():
        print(f"{k:<11} {v}")
    print(f"seconds     {seconds:.1f}")
    print(f"parameters  {sol.n_params}")
    return 0


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pde_command", metavar="VERB", required=True)
    p_list = sub.add_parser("list", help="list the benchmark problems")
    p_list.set_defaults(func=_cmd_list)
    p = sub.add_parser("solve", help="solve a benchmark problem")
    p.add_argument("--problem", required=True, help="problem name (see `sciml pde list`)")
    p.add_argument("--dim", type=int, required=True, help="dimension d")
    p.add_argument("--method", required=True, choices=METHOD_NAMES)
    p.add_argument("--steps", type=int, default=None, help="training steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--x0", type=float, default=None, help="x0 = VALUE * (1, ..., 1)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set a problem parameter (repeatable), e.g. --param lam=10")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_solve)


def pde_demo(opts: DemoOptions) -> list[DemoRow]:
    """Heat equation d=10 by deep Kolmogorov, Allen-Cahn-free HJB d=10 by deep BSDE (small, fast)."""
    from . import solvers
    from .problems import make_problem

    rows = []
    key = backend.key(opts.seed)
    for name, dim, method, steps in (
        ("heat-paraboloid", 10, solvers.DeepKolmogorov(batch_size=512), opts.steps or 600),
        ("hjb", 10, solvers.DeepBSDE(time_steps=10), opts.steps or 600),
    ):
        key, sub = jax.random.split(key)
        sol = solvers.solve(make_problem(name, dim), method, key=sub, steps=steps, progress=opts.progress)
        metric, value = (("rel L1 over box", sol.box_rel_l1) if sol.box_rel_l1 is not None
                         else ("rel error at x0", sol.rel_error))
        rows.append(DemoRow("pde", f"{name} d={dim}, {type(method).__name__}", metric, value,
                            sol.seconds))
    return rows


register_command("pde", "Kolmogorov / semilinear PDE solvers", _configure)
register_demo("pde", pde_demo)
