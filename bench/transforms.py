# ruff: noqa: RUF001, RUF002, RUF003  (figures use ×)
"""Scenarios 1-3: image transforms of a 4000×3000 photo-like JPEG (q90), at concurrency 1, 4
and 16, three contenders measured in interleaved chunks (A, B, C, A, B, C …):

* **darkroom**: ``GET /user/images/{id}/derived?…`` through the gateway of the platform started
  as ``make run`` does, with a real credential (a bearer API token): ingest asks processing
  over the event stream, a worker decodes, transforms and stores the derivative, ingest serves
  it. Each original was uploaded beforehand (``POST /user/images``, not timed), as thumbor's
  originals sit in its loader's folder.
* **thumbor** 7.8 (``/unsafe/…``), one process per core, file loader, file result storage.
* **pyvips in-process** (the ceiling): processing's own ``derive`` (the same libvips work) on
  2 threads with one libvips thread per job, as processing runs it, with nothing around it
  but reading the file.

1. Thumbnail → fit 300 px wide, q80, first time: every request a new original (the same
   pixels behind a unique JPEG comment, so its content hash is new and no cache can answer).
2. Rotate 90 + q90 at full size, first time, on the same originals.
3. Cached: scenario 1's requests again, now answered from storage (darkroom's derivative,
   thumbor's result storage), against darkroom's own cold figure of scenario 1.

Scenarios 1 and 2 also say what each contender's answer is worth (columns ``out kB`` and
``SSIM``): for one original, the bytes of its answer and the SSIM of its luma against the
ideal output made from the same original without loss: fully decoded and resized with lanczos3
to the answer's size (scenario 1), or turned (scenario 2). Outputs are deterministic, so one
original says it for every request; it is measured untimed, after the warm-up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pyvips

from bench import platform as darkroom
from bench import thumbor as thumbor_server
from bench.inputs import unique_jpeg
from bench.load import interleave
from bench.stats import Row, Table, luma, ssim
from shared.derivatives import Transform

CONCURRENCIES = (1, 4, 16)
DARKROOM = "darkroom gateway"
THUMBOR = "thumbor 7.8"
CEILING = "pyvips in-process (ceiling)"


def _ceiling(transform: Transform) -> Callable[[bytes], bytes]:
    """Processing's own pixel work for ``transform`` (libvips via pyvips), with nothing
    around it: no broker, database, store or HTTP."""
    from services.processing.transforms import Limits, derive

    limits = Limits(max_pixels=100_000_000)
    return lambda data: derive(data, transform, limits).data


def _resized(contender: str, original: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """The ideal thumbnail: the fully decoded original resized to ``width`` x ``height`` with
    lanczos3 in one step, never encoded."""
    return original.resize(
        width / original.width, vscale=height / original.height, kernel="lanczos3"
    )


def _turned(contender: str, original: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """The ideal turn: the fully decoded original turned a quarter, never encoded; clockwise
    as darkroom's ``rotation=90``, counter-clockwise for thumbor, whose ``rotate(90)`` is
    PIL's (the same work, the other way)."""
    return original.rot("d270" if contender == THUMBOR else "d90")


@dataclass(frozen=True)
class Spec:
    """One transform scenario: the same work spelled for each contender."""

    name: str
    title: str
    darkroom_query: str
    thumbor_path: str
    ceiling: Callable[[bytes], bytes]
    #: The lossless ideal of a contender's answer of the given size, from the decoded original.
    reference: Callable[[str, pyvips.Image, int, int], pyvips.Image]


SPECS = {
    "thumbnail": Spec(
        "thumbnail",
        "1. Thumbnail 4000×3000 JPEG → fit 300 px q80, cache cold",
        "thumb_w=300&quality=80",
        "300x0",
        _ceiling(Transform(thumb_w=300, quality=80)),
        _resized,
    ),
    "rotate": Spec(
        "rotate",
        "2. Rotate 90 + q90 full size, cache cold",
        "rotation=90&quality=90",
        "filters:rotate(90):quality(90)",
        _ceiling(Transform(rotation=90, quality=90)),
        _turned,
    ),
}


class Bench:
    """The running contenders and what they share."""

    def __init__(self, platform: darkroom.Platform, thumbor: thumbor_server.Thumbor | None):
        self.platform = platform
        self.thumbor = thumbor
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench-vips")
        self.errors: dict[str, list[str]] = {}
        self.http: aiohttp.ClientSession | None = None
        self.headers: dict[str, str] = {}
        self.images: list[str] = []  # darkroom image ids, one per original
        self.files: list[Path] = []  # the same originals, as files

    async def prepare(self, source: bytes, count: int, folder: Path) -> None:
        """``count`` unique originals: uploaded to darkroom, written for thumbor and the
        ceiling."""
        account = await asyncio.to_thread(self.platform.create_account)
        self.headers = {"Authorization": f"Bearer {account['token']}"}
        originals = [unique_jpeg(source, secrets.randbelow(10**12)) for _ in range(count)]
        for index, data in enumerate(originals):
            path = folder / f"{index}.jpg"
            path.write_bytes(data)
            self.files.append(path)
            if self.thumbor is not None:
                (self.thumbor.originals / f"{index}.jpg").write_bytes(data)
        uploading = asyncio.Semaphore(4)

        async def upload(data: bytes) -> str:
            body = json.dumps({"process": {"file": base64.b64encode(data).decode()}})
            async with (
                uploading,
                self.http.post(
                    self.platform.url + "/user/images",
                    data=body,
                    headers={**self.headers, "Content-Type": "application/json"},
                ) as answer,
            ):
                if answer.status != 201:
                    raise RuntimeError(f"upload failed: {answer.status} {await answer.text()}")
                return (await answer.json())["data"]["id"]

        self.images = list(await asyncio.gather(*(upload(data) for data in originals)))

    def _note_error(self, name: str, what: str) -> None:
        self.errors.setdefault(name, []).append(what)

    async def _get(self, name: str, url: str, headers: dict[str, str] | None = None) -> None:
        async with self.http.get(url, headers=headers) as answer:
            await answer.read()
            if answer.status != 200:
                self._note_error(name, str(answer.status))

    def contenders(
        self, spec: Spec, indexes: list[int]
    ) -> dict[str, Callable[[], Awaitable[None]]]:
        """Each contender's call for ``spec``, walking ``indexes`` (its own copy of them)."""
        loop = asyncio.get_running_loop()
        darkroom_next, thumbor_next, ceiling_next = iter(indexes), iter(indexes), iter(indexes)

        async def darkroom_call() -> None:
            image_id = self.images[next(darkroom_next)]
            url = f"{self.platform.url}/user/images/{image_id}/derived?{spec.darkroom_query}"
            await self._get(DARKROOM, url, self.headers)

        async def thumbor_call() -> None:
            index = next(thumbor_next)
            await self._get(THUMBOR, f"{self.thumbor.url}/unsafe/{spec.thumbor_path}/{index}.jpg")

        async def ceiling_call() -> None:
            path = self.files[next(ceiling_next)]
            await loop.run_in_executor(self.pool, lambda: spec.ceiling(path.read_bytes()))

        calls = {DARKROOM: darkroom_call}
        if self.thumbor is not None:
            calls[THUMBOR] = thumbor_call
        calls[CEILING] = ceiling_call
        return calls

    async def answers(self, spec: Spec, index: int) -> dict[str, bytes]:
        """Each contender's answer for ``spec`` on original ``index`` (already warmed, so
        darkroom's and thumbor's come from their stores: the bytes they first answered)."""
        darkroom_url = (
            f"{self.platform.url}/user/images/{self.images[index]}/derived?{spec.darkroom_query}"
        )
        found = {DARKROOM: await self._fetch(darkroom_url, self.headers)}
        if self.thumbor is not None:
            thumbor_url = f"{self.thumbor.url}/unsafe/{spec.thumbor_path}/{index}.jpg"
            found[THUMBOR] = await self._fetch(thumbor_url)
        original = self.files[index].read_bytes()
        found[CEILING] = await asyncio.to_thread(spec.ceiling, original)
        return found

    async def _fetch(self, url: str, headers: dict[str, str] | None = None) -> bytes:
        async with self.http.get(url, headers=headers) as answer:
            if answer.status != 200:
                raise RuntimeError(f"GET {url}: {answer.status} {await answer.text()}")
            return await answer.read()

    def reset_peaks(self, name: str) -> None:
        if name == DARKROOM:
            darkroom.reset_peak_rss(self.platform.pid("processing"))
        elif name == THUMBOR and self.thumbor is not None:
            self.thumbor.reset_peak_rss()
        else:
            darkroom.reset_peak_rss("self")

    def read_peak(self, name: str) -> float | None:
        if name == DARKROOM:
            return darkroom.peak_rss_mb(self.platform.pid("processing"))
        if name == THUMBOR and self.thumbor is not None:
            return self.thumbor.peak_rss_mb()
        return darkroom.peak_rss_mb("self")


_NOTES = {
    DARKROOM: "GET /user/images/{id}/derived, bearer token; RSS of processing",
    THUMBOR: "/unsafe/…, file loader, one process per core; RSS of all its processes",
    CEILING: "processing's derive() alone, 2 threads, 1 libvips thread per job; RSS of the"
    " bench process",
}


def _rows(
    tallies, notes: dict[str, str], quality: dict[str, tuple[int, float]] | None = None
) -> list[Row]:
    rows = [
        Row(name, t.latencies, wall=t.wall, peak_rss_mb=t.peak_rss_mb, note=notes.get(name, ""))
        for name, t in tallies.items()
    ]
    for row in rows:
        if quality and row.name in quality:
            row.output_bytes, row.ssim = quality[row.name]
    return rows


def _quality(
    spec: Spec, original: bytes, answers: dict[str, bytes]
) -> dict[str, tuple[int, float]]:
    """Per contender, the bytes of its answer and the SSIM of its luma against the lossless
    ideal (``spec.reference``) of the same size."""
    decoded = pyvips.Image.new_from_buffer(original, "").copy_memory()
    scores = {}
    for name, data in answers.items():
        answer = pyvips.Image.new_from_buffer(data, "")
        ideal = spec.reference(name, decoded, answer.width, answer.height)
        if (ideal.width, ideal.height) != (answer.width, answer.height):
            raise RuntimeError(
                f"{name} answered {answer.width}x{answer.height}; the reference is"
                f" {ideal.width}x{ideal.height}"
            )
        scores[name] = (len(data), ssim(luma(ideal), luma(answer)))
    return scores


async def _run(settings) -> list[Table]:
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    requests = settings.requests
    wanted = [name for name in ("thumbnail", "rotate", "cached") if name in settings.chosen]
    cold_specs = [SPECS[name] for name in wanted if name in SPECS]
    if "cached" in wanted and SPECS["thumbnail"] not in cold_specs:
        cold_specs.insert(0, SPECS["thumbnail"])  # the cached scenario repeats scenario 1
    results: list[Table] = []
    platform = await asyncio.to_thread(darkroom.start)
    thumbor = None
    bench: Bench | None = None
    try:
        if settings.refs.thumbor is not None:
            thumbor = await asyncio.to_thread(thumbor_server.start, settings.refs.thumbor)
        bench = Bench(platform, thumbor)
        connector = aiohttp.TCPConnector(limit=64)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            bench.http = http
            folder = Path(platform.scratch.name) / "originals"
            folder.mkdir()
            count = requests * len(CONCURRENCIES) + 1
            print(f"bench: uploading {count} unique originals (not timed)", flush=True)
            await bench.prepare(settings.inputs["photo"].read_bytes(), count, folder)
            warm = [count - 1]  # warm-up: connections, credential cache, libvips, workers
            qualities: dict[str, dict[str, tuple[int, float]]] = {}
            for spec in cold_specs:
                for call in bench.contenders(spec, warm * 2).values():
                    await call()
                answers = await bench.answers(spec, warm[0])
                original = bench.files[warm[0]].read_bytes()
                qualities[spec.name] = await asyncio.to_thread(_quality, spec, original, answers)
            cold_rows: dict[int, Row] = {}
            for spec in cold_specs:
                for number, concurrency in enumerate(CONCURRENCIES):
                    indexes = list(range(number * requests, (number + 1) * requests))
                    tallies = await interleave(
                        bench.contenders(spec, indexes),
                        requests,
                        concurrency,
                        before_chunk=bench.reset_peaks,
                        after_chunk=bench.read_peak,
                    )
                    rows = _rows(tallies, _NOTES, qualities[spec.name])
                    if spec.name == "thumbnail":
                        cold_rows[concurrency] = rows[0]
                    if spec.name in wanted:
                        results.append(
                            Table(
                                f"{spec.name}-c{concurrency}",
                                f"{spec.title}, concurrency {concurrency}, {requests} requests"
                                " each",
                                rows,
                                CEILING,
                                {
                                    "concurrency": concurrency,
                                    "errors": dict(bench.errors),
                                    "versus": THUMBOR if thumbor else None,
                                },
                                versus=(THUMBOR,) if thumbor else (),
                            )
                        )
                    bench.errors.clear()
            if "cached" in wanted:
                results += await _cached(bench, cold_rows, requests)
    finally:
        if bench is not None:
            bench.pool.shutdown()
        if thumbor is not None:
            await asyncio.to_thread(thumbor.stop)
        await asyncio.to_thread(platform.stop)
    return results


async def _cached(bench: Bench, cold_rows: dict[int, Row], requests: int) -> list[Table]:
    """Scenario 1's requests again (every one a stored derivative now), ten times as many."""
    spec = SPECS["thumbnail"]
    results = []
    repeats = requests * 10
    notes = {
        DARKROOM: "the same derived URLs again; RSS of ingest",
        THUMBOR: "the same URLs again, from its result storage",
    }
    for number, concurrency in enumerate(CONCURRENCIES):
        warm = list(range(number * requests, (number + 1) * requests))
        indexes = (warm * (repeats // len(warm) + 1))[:repeats]
        calls = bench.contenders(spec, indexes)
        calls.pop(CEILING)
        ingest = bench.platform.pid("ingest")

        def reset(name: str, ingest: int = ingest) -> None:
            if name == DARKROOM:
                darkroom.reset_peak_rss(ingest)
            else:
                bench.reset_peaks(name)

        def read(name: str, ingest: int = ingest) -> float | None:
            return darkroom.peak_rss_mb(ingest) if name == DARKROOM else bench.read_peak(name)

        tallies = await interleave(
            calls, repeats, concurrency, before_chunk=reset, after_chunk=read
        )
        rows = _rows(tallies, notes)
        rows[0].name = "darkroom cached"
        if THUMBOR in tallies:
            rows[1].name = "thumbor cached"
        cold = cold_rows[concurrency]
        rows.append(Row("darkroom cold (scenario 1)", cold.latencies, wall=cold.wall))
        results.append(
            Table(
                f"cached-c{concurrency}",
                f"3. Cached derivative (300 px q80 again), concurrency {concurrency},"
                f" {repeats} requests each",
                rows,
                "darkroom cold (scenario 1)",
                {"concurrency": concurrency, "errors": dict(bench.errors)},
            )
        )
        bench.errors.clear()
    return results


def run(settings) -> list[Table]:
    """The chosen transform scenarios' tables, one per scenario and concurrency."""
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    return asyncio.run(_run(settings))
