# ruff: noqa: RUF002
"""Scenario 1: 4000×3000 JPEG → fit 300 px, q80, cache cold (every request a new original:
the same pixels behind a unique JPEG comment, so its content hash is new).

Darkroom: Progimage ``POST /user/images`` through the gateway of the platform started as
``make run`` does (one process per service), with a real credential (an API token). That
request stores the original and makes its three variants (file at full size q80, thumb fitted
in 300 px, mini 64 px). Ceilings: raw pyvips in this process on 2 threads (libvips 1 thread per
job, as processing runs), the thumbnail alone and the same three variants. Contenders run in
interleaved chunks (A, B, C, A, B, C …) at each concurrency; a bounded aiohttp load generator
sends a fixed number of requests."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pyvips

from bench import platform as darkroom
from bench.inputs import unique_jpeg
from bench.references import References
from bench.stats import Row

BASELINE = "pyvips thumb (ceiling)"
GATEWAY = "darkroom gateway"
VARIANTS = "pyvips file+thumb+mini"
CONCURRENCIES = (1, 4)
_counter = iter(range(10**9))


def _thumb(data: bytes) -> bytes:
    image = pyvips.Image.thumbnail_buffer(data, 300, height=300, size="down")
    return image.jpegsave_buffer(Q=80, strip=True)


def _variants(data: bytes) -> bytes:
    whole = pyvips.Image.new_from_buffer(data, "", access="sequential")
    whole.jpegsave_buffer(Q=80, strip=True)
    pyvips.Image.thumbnail_buffer(data, 64, height=64, size="down").jpegsave_buffer(Q=80)
    return _thumb(data)


async def _load(
    call: Callable[[], Awaitable[None]], requests: int, concurrency: int
) -> tuple[list[float], float]:
    """``requests`` calls, at most ``concurrency`` at once; latencies and wall time."""
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


async def _run(source: bytes, requests: int) -> list[tuple[int, list[Row], dict]]:
    pyvips.cache_set_max(0)
    pyvips.vips_lib.vips_concurrency_set(1)
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench-vips")
    loop = asyncio.get_running_loop()
    platform = await asyncio.to_thread(darkroom.start)
    errors: list[str] = []
    try:
        account = await asyncio.to_thread(platform.create_account)
        headers = {
            "Authorization": f"Bearer {account['token']}",
            "Content-Type": "application/json",
        }
        processing_pid = platform.pid("processing")
        async with aiohttp.ClientSession() as http:

            def body() -> bytes:
                data = base64.b64encode(unique_jpeg(source, next(_counter))).decode()
                process = {"file": data, "thumb_w": 300, "thumb_h": 300, "quality": 80}
                return json.dumps({"process": process}).encode()

            async def gateway(payload: bytes) -> None:
                async with http.post(
                    platform.url + "/user/images", data=payload, headers=headers
                ) as response:
                    await response.read()
                    if response.status != 201:
                        errors.append(f"{response.status}")

            async def ceiling(work: Callable[[bytes], bytes]) -> None:
                data = unique_jpeg(source, next(_counter))
                await loop.run_in_executor(pool, work, data)

            # Warm-up: connections, the credential cache, libvips and the processing workers.
            await gateway(body())
            await ceiling(_thumb)

            results = []
            for concurrency in CONCURRENCIES:
                names = (GATEWAY, BASELINE, VARIANTS)
                latencies: dict[str, list[float]] = {name: [] for name in names}
                walls = dict.fromkeys(names, 0.0)
                peaks: dict[str, float] = {}
                chunk = max(concurrency * 2, requests // 3)
                done = 0
                while done < requests:
                    size = min(chunk, requests - done)
                    for name in names:
                        if name == GATEWAY:
                            payloads = iter([body() for _ in range(size)])

                            async def call(payloads=payloads) -> None:
                                await gateway(next(payloads))

                            pid: int | str = processing_pid
                        else:
                            work = _thumb if name == BASELINE else _variants

                            async def call(work=work) -> None:
                                await ceiling(work)

                            pid = "self"
                        darkroom.reset_peak_rss(pid)
                        lat, wall = await _load(call, size, concurrency)
                        latencies[name] += lat
                        walls[name] += wall
                        peak = darkroom.peak_rss_mb(pid)
                        if peak is not None:
                            peaks[name] = max(peaks.get(name, 0.0), peak)
                    done += size
                rows = [
                    Row(
                        name,
                        latencies[name],
                        wall=walls[name],
                        peak_rss_mb=peaks.get(name),
                        note=(
                            "POST /user/images; RSS of processing; stores the original, makes"
                            " file (full size q80) + thumb + mini"
                            if name == GATEWAY
                            else "in-process, 2 threads; RSS of the bench process"
                        ),
                    )
                    for name in names
                ]
                results.append(
                    (concurrency, rows, {"concurrency": concurrency, "errors": list(errors)})
                )
                errors.clear()
            return results
    finally:
        pool.shutdown()
        await asyncio.to_thread(platform.stop)


def run(refs: References, inputs: dict[str, Path], requests: int):
    """One ``(concurrency, rows, extra)`` per concurrency. thumbor is not measured yet."""
    del refs  # thumbor's row is not built yet
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    return asyncio.run(_run(inputs["photo"].read_bytes(), requests))
