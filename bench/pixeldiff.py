# ruff: noqa: S603, RUF001, RUF002, RUF003  (a bench runs its own tools; figures use ×)
"""Scenario 4: pixel diff of the 1280×2000 screenshot pair, decode + diff + diff image written.

Darkroom's ``diff_images`` in-process (files read, diff PNG written) against the odiff binary
and pixelmatch's CLI (node), all at threshold 0.1 with anti-aliased pixels forgiven, run
interleaved (A, B, C, A, B, C …) so machine drift cancels."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.references import References
from bench.stats import Row, Table

BASELINE = "darkroom diff_images"


def contenders(refs: References, before: Path, after: Path, out: Path) -> dict[str, Callable]:
    """Name → a call that does one whole diff and returns its changed-pixel count (or None)."""
    from services.processing.diffs import DiffOptions, Limits, diff_images

    options = DiffOptions(threshold=0.1, include_anti_aliasing=False)
    limits = Limits(max_pixels=100_000_000)

    def darkroom() -> int:
        result = diff_images(before.read_bytes(), after.read_bytes(), options, limits)
        (out / "darkroom.png").write_bytes(result.diff_png)
        return result.changed_pixels

    found: dict[str, Callable] = {BASELINE: darkroom}
    if refs.odiff is not None:

        def odiff() -> int | None:
            done = subprocess.run(
                [
                    str(refs.odiff),
                    str(before),
                    str(after),
                    str(out / "odiff.png"),
                    "--threshold",
                    "0.1",
                    "--antialiasing",
                    "--parsable-stdout",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode not in (0, 22):
                raise RuntimeError(f"odiff failed ({done.returncode}): {done.stderr.strip()}")
            match = re.match(r"(\d+)", done.stdout.strip())
            return int(match.group(1)) if match else None

        found["odiff CLI (binary)"] = odiff
    if refs.pixelmatch is not None and refs.node is not None:

        def pixelmatch() -> int | None:
            done = subprocess.run(
                [
                    refs.node,
                    str(refs.pixelmatch),
                    str(before),
                    str(after),
                    str(out / "pixelmatch.png"),
                    "0.1",
                    "false",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode not in (0, 66):
                raise RuntimeError(f"pixelmatch failed ({done.returncode}): {done.stderr}")
            match = re.search(r"different pixels: (\d+)", done.stdout)
            return int(match.group(1)) if match else None

        found["pixelmatch CLI (node)"] = pixelmatch
    return found


def run(settings) -> list[Table]:
    """``settings.rounds`` interleaved rounds after one warm-up round; rows in contender
    order."""
    rounds, inputs = settings.rounds, settings.inputs
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-diff-") as scratch:
        calls = contenders(settings.refs, inputs["before"], inputs["after"], Path(scratch))
        changed: dict[str, int | None] = {}
        for name, call in calls.items():  # warm-up: page cache, node's start, libvips init
            changed[name] = call()
        latencies: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                latencies[name].append(time.perf_counter() - start)
    rows = [Row(name, latencies[name], note=f"changed pixels: {changed[name]}") for name in calls]
    title = f"4. Pixel diff 1280×2000, decode + diff + diff image ({rounds} interleaved rounds)"
    extra = {"changed_pixels": changed, "rounds": rounds}
    return [Table("diff", title, rows, BASELINE, extra)]
