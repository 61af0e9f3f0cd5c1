# ruff: noqa: RUF001, RUF003  (a bench runs its own tools; figures use ×)
"""Figures of a run: percentiles, one row per contender, ratios to a baseline, a table, and the
quality of an image a contender made (SSIM)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pyvips


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
    #: Bytes of the image the contender answered with, when the scenario makes one.
    output_bytes: int | None = None
    #: :func:`ssim` of that image's luma against the scenario's reference.
    ssim: float | None = None

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
    quality = any(row.output_bytes is not None or row.ssim is not None for row in rows)
    if quality:
        header += ["out kB", "SSIM"]
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
        if quality:
            size = None if row.output_bytes is None else row.output_bytes / 1000
            line += [_fmt(size, ".1f"), _fmt(row.ssim, ".5f")]
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


#: Rec. 601 luma weights (JPEG's Y).
_LUMA = [0.299, 0.587, 0.114]


def luma(image: pyvips.Image) -> np.ndarray:
    """The Rec. 601 luma (JPEG's Y, 0..255) of an 8-bit sRGB image, as a float32 array for
    :func:`ssim`."""
    y = image[0:3].recomb([_LUMA]).cast("float")
    return np.ndarray(
        buffer=y.write_to_memory(), dtype=np.float32, shape=(image.height, image.width)
    )


#: SSIM's window (Wang, Bovik, Sheikh and Simoncelli 2004): an 11-tap Gaussian, sigma 1.5.
_SSIM_WINDOW = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
_SSIM_WINDOW /= _SSIM_WINDOW.sum()


def ssim(x: np.ndarray, y: np.ndarray, peak: float = 255.0, strip: int = 256) -> float:
    """The mean structural similarity of two same-sized 2-D images (e.g. luma, 0..``peak``):
    Wang et al.'s SSIM with its Gaussian window and K1 = 0.01, K2 = 0.03, averaged over every
    window that fits inside the image. 1.0 means identical; a few thousandths is a visible
    difference at thumbnail size. Computed ``strip`` rows at a time, so a 12 MP image needs
    a few tens of MB rather than a gigabyte."""
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim needs two 2-D images of one size, not {x.shape} and {y.shape}")
    taps = len(_SSIM_WINDOW)
    height = x.shape[0]
    if height < taps or x.shape[1] < taps:
        raise ValueError(f"ssim needs images of at least {taps}x{taps} pixels")
    total, count = 0.0, 0
    for top in range(0, height - taps + 1, strip):
        rows = slice(top, min(top + strip + taps - 1, height))
        ssim_map = _ssim_map(x[rows].astype(np.float64), y[rows].astype(np.float64), peak)
        total += float(ssim_map.sum())
        count += ssim_map.size
    return total / count


def _ssim_map(x: np.ndarray, y: np.ndarray, peak: float) -> np.ndarray:
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mean_x, mean_y = _window(x), _window(y)
    var_x = _window(x * x) - mean_x * mean_x
    var_y = _window(y * y) - mean_y * mean_y
    covariance = _window(x * y) - mean_x * mean_y
    return ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
        (mean_x * mean_x + mean_y * mean_y + c1) * (var_x + var_y + c2)
    )


def _window(image: np.ndarray) -> np.ndarray:
    """``image`` weighted by the SSIM window around each pixel where the whole window fits
    (a separable "valid" convolution)."""
    taps = len(_SSIM_WINDOW)
    height, width = image.shape
    across = sum(w * image[:, i : width - taps + 1 + i] for i, w in enumerate(_SSIM_WINDOW))
    return sum(w * across[i : height - taps + 1 + i, :] for i, w in enumerate(_SSIM_WINDOW))
