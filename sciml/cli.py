"""The ``sciml`` command: ``sciml info``, ``sciml demo``, and one subcommand per system.

Each system adds itself with :func:`register_command` (a subcommand) and :func:`register_demo` (its
part of ``sciml demo``); printing and saving happen here, never inside the solvers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class DemoRow:
    """One line of the ``sciml demo`` results table."""

    system: str
    task: str
    metric: str
    value: float
    seconds: float
    artifact: str = ""


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    out: pathlib.Path
    seed: int
    steps: int | None
    progress: bool | None


_DEMOS: list[tuple[str, Callable[[DemoOptions], list[DemoRow]]]] = []
_COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = []


def register_demo(name: str, fn: Callable[[DemoOptions], list[DemoRow]]) -> None:
    """Add a system's demo (``fn(options) -> rows``) to ``sciml demo``."""
    if name not in [n for n, _ in _DEMOS]:
        _DEMOS.append((name, fn))


def register_command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add a subcommand ``sciml NAME``; ``configure(parser)`` adds arguments and sets ``func``."""
    if name not in [n for n, _, _ in _COMMANDS]:
        _COMMANDS.append((name, help, configure))


def _load_systems() -> None:
    # Importing a system registers its demo and subcommand.
    import hwsim._cli  # noqa: F401
    import pde._cli  # noqa: F401
    import symbolic._discover_cli  # noqa: F401
    import symbolic._klue_cli  # noqa: F401

    from . import _ct_cli, _demo  # noqa: F401


# --- info ------------------------------------------------------------------------------------------


def info() -> dict[str, Any]:
    """Versions, devices and the precision policy, as a dict."""
    from importlib.metadata import PackageNotFoundError, version

    import jax

    from . import backend

    versions = {}
    for pkg in ("sciml", "jax", "jaxlib", "equinox", "optax", "diffrax", "flax", "jaxtyping", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "precision": str(backend.default_dtype()),
        "x64_enabled": bool(jax.config.jax_enable_x64),
    }


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts (steps, restarts, ...): a positive int, or a usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def _cmd_info(args: argparse.Namespace) -> int:
    data = info()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"python     {data['python']} ({data['platform']})")
    for pkg, v in data["versions"].items():
        print(f"{pkg:<10} {v}")
    print(f"backend    {data['backend']}, {len(data['devices'])} device(s): {', '.join(data['devices'])}")
    print(f"processes  {data['process_count']}")
    print(f"precision  {data['precision']} (x64 {'on' if data['x64_enabled'] else 'off'})")
    return 0


# --- demo ------------------------------------------------------------------------------------------


def format_table(rows: Sequence[DemoRow]) -> str:
    """A plain-text table of demo rows."""
    header = ("system", "task", "metric", "value", "seconds", "artifact")
    cells = [header] + [
        (r.system, r.task, r.metric, f"{r.value:.4g}", f"{r.seconds:.2f}", r.artifact) for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(header))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    _load_systems()
    opts = DemoOptions(
        out=pathlib.Path(args.out).absolute(),
        seed=args.seed,
        steps=args.steps,
        progress=False if args.no_progress else None,
    )
    opts.out.mkdir(parents=True, exist_ok=True)
    rows: list[DemoRow] = []
    chosen = [(n, fn) for n, fn in _DEMOS if not args.only or n in args.only]
    if args.only and len(chosen) != len(set(args.only)):
        names = [n for n, _ in _DEMOS]
        raise SystemExit(f"sciml demo: --only must name systems among {names}, got {args.only}")
    for name, fn in chosen:
        t0 = time.perf_counter()
        print(f"[demo] {name} ...", file=sys.stderr, flush=True)
        rows.extend(fn(opts))
        print(f"[demo] {name} done in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    (opts.out / "results.json").write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        print(format_table(rows))
        print(f"\nresults and plots in {opts.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    _load_systems()
    parser = argparse.ArgumentParser(
        prog="sciml",
        description="sciml: JAX scientific machine learning (PDE solvers, neuro-symbolic discovery, "
        "CT reconstruction, hardware simulators).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_info = sub.add_parser("info", help="versions, devices and precision")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    p_info.set_defaults(func=_cmd_info)

    p_demo = sub.add_parser("demo", help="run every system on a small default and print a table")
    p_demo.add_argument("--out", default="sciml-demo", help="directory for plots and results.json")
    p_demo.add_argument("--seed", type=int, default=0, help="PRNG seed")
    p_demo.add_argument("--steps", type=positive_int, default=None,
                        help="training steps (default per system)")
    p_demo.add_argument("--only", nargs="*", default=None, help="run only these systems")
    p_demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p_demo.add_argument("--json", action="store_true", help="print the table as JSON")
    p_demo.set_defaults(func=_cmd_demo)

    for name, help_, configure in _COMMANDS:
        configure(sub.add_parser(name, help=help_))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sciml`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
