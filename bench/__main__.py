# ruff: noqa: RUF001, RUF003  (a bench runs its own tools; figures use ×)
"""``make bench``: install the references, generate the inputs, run each scenario, print one
table per scenario and write ``var/bench/<scenario>.json``.

    python -m bench                 # every scenario built so far
    python -m bench diff thumbnail  # some of them
    BENCH_THUMBOR=1 python -m bench # also install thumbor 7.8 (its scenarios are not built yet)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench import inputs, references
from bench.stats import Row, ratios, table

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"

#: Every scenario of issue 9, in order; the ones not built yet say so.
SCENARIOS = {
    "thumbnail": "1. Thumbnail 4000×3000 JPEG → fit 300 px q80, cache cold",
    "rotate": "2. Rotate 90 + q90 full size",
    "cached": "3. Cached derivative",
    "diff": "4. Pixel diff 1280×2000, decode + diff + diff image",
    "gateway": "5. Gateway floor",
    "upload": "6. Upload of 1 MB PNGs via the hash host",
}


def report(name: str, title: str, rows: list[Row], baseline: str, extra: dict) -> None:
    """Print the table and write ``var/bench/<name>.json``."""
    print(table(title, rows, baseline), flush=True)
    print(flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    document = {
        "scenario": title,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "baseline": baseline,
        "rows": [row.as_dict() for row in rows],
        "ratios": ratios(rows, baseline),
        **extra,
    }
    (OUT / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=[])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 30)))
    parser.add_argument(
        "--requests",
        type=int,
        default=int(os.environ.get("BENCH_REQUESTS", 24)),
        help="requests per contender and concurrency in the load scenarios",
    )
    args = parser.parse_args(argv)
    chosen = args.scenarios or list(SCENARIOS)

    refs = references.ensure(thumbor=os.environ.get("BENCH_THUMBOR") == "1")
    for name, why in refs.missing.items():
        print(f"bench: {name} is missing: {why}", flush=True)
    paths = inputs.ensure()

    for name in chosen:
        title = SCENARIOS[name]
        if name == "diff":
            from bench import pixeldiff

            rows, extra = pixeldiff.run(refs, paths, args.rounds)
            extra["rounds"] = args.rounds
            report(
                name, f"{title} ({args.rounds} interleaved rounds)", rows, pixeldiff.BASELINE, extra
            )
        elif name == "thumbnail" and importlib.util.find_spec("bench.thumbnail"):
            from bench import thumbnail

            for concurrency, rows, extra in thumbnail.run(refs, paths, args.requests):
                report(
                    f"{name}-c{concurrency}",
                    f"{title}, concurrency {concurrency}, {args.requests} requests each",
                    rows,
                    thumbnail.BASELINE,
                    extra,
                )
        else:
            print(f"{title}: not built yet\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
