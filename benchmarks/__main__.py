"""Run every ``benchmarks/bench_*.py`` (``make bench``); each writes ``out/bench/<name>.json``.

Usage: python -m benchmarks [NAME ...]
"""

import importlib
import json
import pathlib
import platform
import sys

import jax

HERE = pathlib.Path(__file__).parent
OUT = HERE.parent / "out" / "bench"


def machine() -> str:
    import os

    return (f"{platform.machine()} {os.cpu_count()} cores, jax {jax.__version__} "
            f"{jax.default_backend()} x{jax.device_count()}")


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        mod = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"== {name} ({machine()})", flush=True)
        result = mod.main()
        result["machine"] = machine()
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2), flush=True)
    print(f"results in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
