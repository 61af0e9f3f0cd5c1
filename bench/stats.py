# ruff: noqa: RUF001, RUF003  (a bench runs its own tools; figures use ×)
"""Figures of a run: percentiles, one row per contender, ratios to a baseline, a table."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of ``values`` by linear interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Row:
    """One contender under one load: its latencies (seconds) and what else was measured."""

    name: str
    latencies: list[float]
    wall: float | None = None  # seconds the whole batch took (for req/s), when batched
    peak_rss_mb: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.5) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000

    @property
    def rps(self) -> float | None:
        if self.wall:
            return len(self.latencies) / self.wall
        return None

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(p50_ms=self.p50_ms, p99_ms=self.p99_ms, rps=self.rps, n=len(self.latencies))
        return data


@dataclass
class Table:
    """One printed table of a scenario: its rows, the row the ratios are against, and what
    else goes into its ``var/bench/<name>.json``."""

    name: str
    title: str
    rows: list[Row]
    baseline: str
    extra: dict = field(default_factory=dict)
    #: Other rows to print throughput ratios against (a reference beside the ceiling).
    versus: tuple[str, ...] = ()


def ratios(rows: list[Row], baseline: str) -> dict[str, dict[str, float]]:
    """Per row, ``p50`` = its p50 over the baseline's (lower is better) and ``rps`` = its
    throughput over the baseline's (higher is better), when both are known."""
    base = next(row for row in rows if row.name == baseline)
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        entry: dict[str, float] = {}
        if base.p50_ms > 0:
            entry["p50"] = row.p50_ms / base.p50_ms
        if row.rps is not None and base.rps:
            entry["rps"] = row.rps / base.rps
        out[row.name] = entry
    return out


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def table(title: str, rows: list[Row], baseline: str, versus: tuple[str, ...] = ()) -> str:
    """A plain-text table of ``rows`` with ratios to the row named ``baseline`` (p50 and
    throughput) and throughput ratios to each row named in ``versus``."""
    rel = ratios(rows, baseline)
    others = [name for name in versus if any(row.name == name for row in rows)]
    header = ["", "n", "req/s", "p50 ms", "p99 ms", "peak RSS MB", "p50 ratio"]
    throughput = any(row.rps is not None for row in rows)
    if throughput:
        header.append("req/s ratio")
        header += [f"req/s vs {name}" for name in others]
    against = {name: ratios(rows, name) for name in others}
    lines = [header]
    for row in rows:
        line = [
            row.name,
            str(len(row.latencies)),
            _fmt(row.rps, ".1f"),
            _fmt(row.p50_ms, ".1f"),
            _fmt(row.p99_ms, ".1f"),
            _fmt(row.peak_rss_mb, ".0f"),
            _fmt(rel[row.name].get("p50"), ".2f") + "×",
        ]
        if throughput:
            for source in (rel, *against.values()):
                rps = source[row.name].get("rps")
                line.append(_fmt(rps, ".2f") + "×" if rps is not None else "-")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [title, f"(ratios against {baseline})"]
    for index, line in enumerate(lines):
        text.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(line)
            )
        )
        if index == 0:
            text.append("  ".join("-" * width for width in widths))
    notes = [f"  {row.name}: {row.note}" for row in rows if row.note]
    return "\n".join(text + notes)
