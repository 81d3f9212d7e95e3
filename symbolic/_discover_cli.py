"""``sciml discover DATA.csv --target COLUMN``: equation discovery (MCI) from the command line.

Reads a CSV with a header row (every column numeric), discovers ``COLUMN = f(other columns)`` with
:func:`symbolic.discovery.discover` and prints the progress per round (best equation, loss, complexity)
on stderr and the result on stdout; with ``--json`` stdout is one JSON object with the keys
``equation`` (a SymPy-parsable string over the CSV's column names), ``constants``, ``r2_train``,
``complexity``, ``seconds`` (and a few more: ``nmse_train``, ``extrapolation_nmse``, ``rounds``,
``stopped``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
import sys
import time

import numpy as np

from sciml.cli import register_command


def read_csv(path: str | pathlib.Path, target: str, columns: list[str] | None = None):
    """``(X, y, names)`` from a CSV with a header; every used column must be numeric and complete.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no header/rows, the target column absent or among ``columns``, a missing or
            non-numeric value (named by row and column), or fewer than two columns.
    """
    p = pathlib.Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"DATA: no such file {str(p)!r}")
    with p.open(newline="") as fh:
        rows = list(csv.reader(fh))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise ValueError(f"{p}: need a header row and at least one data row, got {len(rows)} rows")
    header = [h.strip() for h in rows[0]]
    if target not in header:
        raise ValueError(f"--target {target!r} is not a column of {p}; columns: {header}")
    use = [h for h in header if h != target] if columns is None else list(columns)
    missing = [c for c in use if c not in header]
    if missing:
        raise ValueError(f"--columns {missing} not in {p}; columns: {header}")
    if target in use:  # the target as an input: discovery would return `target = target`
        raise ValueError(f"--columns must not include the target {target!r}; got {use}")
    if not use:
        raise ValueError(f"{p} has no input column besides the target {target!r}")
    idx = [header.index(c) for c in use] + [header.index(target)]
    data = np.empty((len(rows) - 1, len(idx)))
    for i, r in enumerate(rows[1:], start=2):
        for j, k in enumerate(idx):
            cell = r[k].strip() if k < len(r) else ""
            if cell == "":
                raise ValueError(f"{p}: line {i}, column {header[k]!r} is empty; fill or drop that row")
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(f"{p}: line {i}, column {header[k]!r} is not a number: {cell!r}") from None
            if not math.isfinite(v):
                raise ValueError(f"{p}: line {i}, column {header[k]!r} is {cell!r}; values must be finite")
            data[i - 2, j] = v
    return data[:, :-1], data[:, -1], use


def _cmd_discover(args) -> int:
    import jax

    from symbolic import discovery as d

    try:
        X, y, names = read_csv(args.data, args.target, args.columns.split(",") if args.columns else None)
    except (OSError, ValueError) as err:
        print(f"sciml discover: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()

    def show(r):
        if not args.quiet:
            print(f"round {r.iteration:3d}  {r.seconds:7.1f}s  nmse {r.nmse:.3e}  "
                  f"extrap {r.extrapolation_nmse:.3e}  complexity {r.complexity:3d}  {r.equation}",
                  file=sys.stderr, flush=True)

    try:
        res = d.discover(X, y, key=jax.random.key(args.seed), variables=names, iterations=args.iterations,
                         budget_s=args.budget, callback=show)
    except ValueError as err:
        print(f"sciml discover: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    pred = res.predict(X)
    r2 = 1.0 - float(np.sum((y - pred) ** 2) / np.sum((y - np.mean(y)) ** 2))
    h = res.best
    free = sorted({int(s.name[1:]) for s in d.to_sympy(h.expr, names, res.grammar).free_symbols
                   if s.name.startswith("c") and s.name[1:].isdigit() and s.name not in names})
    out = {
        "equation": str(res.equation()),
        "constants": {f"c{i}": float(h.constants[i]) for i in free},
        "skeleton": str(d.to_sympy(h.expr, names, res.grammar)),
        "r2_train": r2,
        "nmse_train": h.nmse,
        "extrapolation_nmse": h.extrapolation_nmse,
        "complexity": h.complexity,
        "seconds": seconds,
        "rounds": len(res.history),
        "stopped": res.stopped,
        "agent": h.agent,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.target} = {res.equation(digits=8)}")
        print(f"R^2 (train) {r2:.9f}, complexity {h.complexity}, internal-extrapolation NMSE "
              f"{h.extrapolation_nmse:.3g}, {len(res.history)} rounds ({res.stopped}) in {seconds:.1f} s")
    return 0


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="CSV file with a header row")
    parser.add_argument("--target", required=True, help="the column to explain")
    parser.add_argument("--columns", default=None, help="comma-separated input columns (default: all others)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (same seed, same equation)")
    parser.add_argument("--budget", type=float, default=300.0, help="wall-time budget in seconds")
    parser.add_argument("--iterations", type=int, default=30, help="maximum number of rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no per-round progress on stderr")
    parser.set_defaults(func=_cmd_discover)


register_command("discover", "equation discovery (MCI): DATA.csv --target COLUMN", _configure)
