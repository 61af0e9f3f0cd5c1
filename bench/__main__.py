# ruff: noqa: RUF003  (a bench runs its own tools; figures use ×)
"""``make bench``: install the references, generate the inputs, run each scenario, print one
table per scenario and load, and write ``var/bench/<table>.json``.

    python -m bench                 # every scenario
    python -m bench diff thumbnail  # some of them
    make bench BENCH_ARGS=rendering # the same through make
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import inputs, references
from bench.stats import Table, ratios, table

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"

#: Every scenario of issue 9, in order: its name on the command line → its module.
SCENARIOS = {
    "thumbnail": "bench.transforms",
    "rotate": "bench.transforms",
    "cached": "bench.transforms",
    "diff": "bench.pixeldiff",
    "compare": "bench.compare",
    "gateway": "bench.floor",
    "upload": "bench.upload",
    "overload": "bench.overload",
    "rendering": "bench.rendering",
}


@dataclass(frozen=True)
class Settings:
    """What every scenario is told: the references, the inputs and the run's sizes."""

    refs: references.References
    inputs: dict[str, Path]
    rounds: int
    requests: int
    chosen: tuple[str, ...]


def report(result: Table) -> None:
    """Print the table and write ``var/bench/<name>.json``."""
    print(table(result.title, result.rows, result.baseline, result.versus), flush=True)
    print(flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    document = {
        "scenario": result.title,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "baseline": result.baseline,
        "rows": [row.as_dict() for row in result.rows],
        "ratios": ratios(result.rows, result.baseline),
        "ratios_versus": {name: ratios(result.rows, name) for name in result.versus},
        **result.extra,
    }
    (OUT / f"{result.name}.json").write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=[])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 30)))
    parser.add_argument(
        "--requests",
        type=int,
        default=int(os.environ.get("BENCH_REQUESTS", 48)),
        help="requests per contender and concurrency in the image scenarios",
    )
    args = parser.parse_args(argv)
    chosen = tuple(args.scenarios or SCENARIOS)

    refs = references.ensure(thumbor=os.environ.get("BENCH_THUMBOR", "1") == "1")
    for name, why in refs.missing.items():
        print(f"bench: {name} is missing: {why}", flush=True)
    settings = Settings(refs, inputs.ensure(), args.rounds, args.requests, chosen)

    done: set[str] = set()
    for name in chosen:
        module_name = SCENARIOS[name]
        if module_name in done:  # one module runs all of its scenarios that were chosen
            continue
        done.add(module_name)
        module = importlib.import_module(module_name)
        for result in module.run(settings):
            report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
