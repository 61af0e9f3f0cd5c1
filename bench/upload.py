# ruff: noqa: RUF002, RUF003  (figures use ×)
"""Scenario 6: uploads of ~1 MB PNGs (600×600 RGB noise, so deflate cannot shrink them) to
the hash file host, ``POST /api/upload`` through the gateway with the file in the multipart
``file`` field (what ``curl -F file=@x.png`` sends) and a bearer API token, at concurrency 4,
four contenders measured in interleaved chunks (A, B, C, D, A, B, C, D …):

* **hash host new** (the baseline): every request a file the platform has never seen (the
  same pixels behind a unique PNG ``tEXt`` chunk): the gateway streams the body to ingest,
  which sniffs, decodes the PNG once (the bomb and truncation check), hashes, writes the blob
  (temp file, fsync, rename), then records it and its ``image.stored`` event in one
  transaction. Each answer must be 2xx and carry the file's SHA-256.
* **hash host duplicate**: the same file every time (uploaded once beforehand): the same
  reading, decoding and hashing, but the bytes are already stored; each answer must carry the
  same hash.
* **ingest examine + write in-process**: ingest's own ``examine`` (sniff, header, full decode,
  SHA-256) and a blob write as its local store does it (temp file, fsync, rename), on 4
  threads in this process: the work the platform cannot skip, without HTTP, gateway, Postgres
  or broker.
* **sha256 + disk write in-process (ceiling)**: SHA-256 of the bytes and the same write, on
  4 threads: what storing bytes by content costs at the least.

Every row says req/s, p50/p99 and MB/s of upload bodies. Requests per contender:
``BENCH_UPLOAD_REQUESTS``, or twice ``--requests``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import struct
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pyvips

from bench import platform as darkroom
from bench.floor import Meter, check, cpu_note
from bench.load import Tally, interleave, load
from bench.stats import Row, Table

if TYPE_CHECKING:
    from bench.__main__ import Settings

CONCURRENCY = 4
SIDE = 600  # 600×600 RGB noise: about 1.08 MB as PNG

NEW = "hash host new"
DUPLICATE = "hash host duplicate"
EXAMINE = "ingest examine + write in-process"
CEILING = "sha256 + disk write in-process (ceiling)"


def noise_png() -> bytes:
    """A 600×600 RGB PNG of gaussian noise (about 1 MB: deflate finds nothing to shrink)."""
    bands = [
        pyvips.Image.gaussnoise(SIDE, SIDE, sigma=64, mean=128, seed=seed) for seed in (1, 2, 3)
    ]
    image = bands[0].bandjoin(bands[1:]).cast("uchar").copy(interpretation="srgb")
    return image.pngsave_buffer(strip=True)


def unique_png(png: bytes, label: str) -> bytes:
    """``png`` with a ``tEXt`` chunk saying ``label`` right after its IHDR: the same pixels,
    a new SHA-256."""
    header_end = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes, CRC
    body = b"tEXt" + b"bench\x00" + label.encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return png[:header_end] + chunk + png[header_end:]


def store_like_ingest(folder: Path, sha256: str, data: bytes) -> None:
    """Write ``data`` as the local blob store does: a temp file, fsync, rename over the key."""
    final = folder / sha256
    temporary = folder / f".{sha256}.{secrets.token_hex(4)}.tmp"
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, final)


class Bench:
    """The running platform, the files and what the contenders share."""

    def __init__(self, platform: darkroom.Platform, files: list[bytes], duplicate: bytes):
        from services.ingest.content_checks import Limits

        self.platform = platform
        self.files = files
        self.hashes = [hashlib.sha256(data).hexdigest() for data in files]
        self.duplicate = duplicate
        self.duplicate_hash = hashlib.sha256(duplicate).hexdigest()
        self.limits = Limits(30 * 1024 * 1024, 100_000_000, 500)  # ingest's defaults
        self.pool = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="bench-up")
        self.folder = Path(platform.scratch.name) / "ceiling"
        self.folder.mkdir()
        self.errors: dict[str, Counter] = {}
        self.http: aiohttp.ClientSession | None = None
        self.headers: dict[str, str] = {}

    async def _post(self, name: str, data: bytes, sha256: str) -> None:
        form = aiohttp.FormData()
        form.add_field("file", data, filename="x.png", content_type="image/png")
        async with self.http.post(
            self.platform.url + "/api/upload", data=form, headers=self.headers
        ) as answer:
            body = await check(self.errors, name, answer, range(200, 300))
            if 200 <= answer.status < 300 and json.loads(body).get("hash") != sha256:
                self.errors.setdefault(name, Counter())["wrong hash"] += 1

    def _examine(self, data: bytes) -> None:
        from services.ingest.content_checks import examine

        content = examine(data, self.limits)
        store_like_ingest(self.folder, content.sha256, data)

    def _ceiling(self, data: bytes) -> None:
        store_like_ingest(self.folder, hashlib.sha256(data).hexdigest(), data)

    def contenders(self, indexes: list[int]) -> dict[str, Callable[[], Awaitable[object]]]:
        """Each contender's call, the new-file ones walking ``indexes`` (each its own copy)."""
        loop = asyncio.get_running_loop()
        new_next, examine_next, ceiling_next = iter(indexes), iter(indexes), iter(indexes)

        async def new_call() -> None:
            index = next(new_next)
            await self._post(NEW, self.files[index], self.hashes[index])

        async def duplicate_call() -> None:
            await self._post(DUPLICATE, self.duplicate, self.duplicate_hash)

        async def examine_call() -> None:
            await loop.run_in_executor(self.pool, self._examine, self.files[next(examine_next)])

        async def ceiling_call() -> None:
            await loop.run_in_executor(self.pool, self._ceiling, self.files[next(ceiling_next)])

        return {
            NEW: new_call,
            DUPLICATE: duplicate_call,
            EXAMINE: examine_call,
            CEILING: ceiling_call,
        }


_NOTES = {
    NEW: "POST /api/upload, a new file each time, bearer token; RSS of ingest",
    DUPLICATE: "POST /api/upload, the same file each time; RSS of ingest",
    EXAMINE: "examine() + temp/fsync/rename, 4 threads; RSS of the bench process",
    CEILING: "sha256 + temp/fsync/rename, 4 threads; RSS of the bench process",
}


def _rows(tallies: dict[str, Tally], meter: Meter, size: int) -> list[Row]:
    rows = []
    for name, tally in tallies.items():
        shares = meter.shares(name, tally.wall)
        mb_s = len(tally.latencies) * size / tally.wall / 1e6 if tally.wall else None
        rows.append(
            Row(
                name,
                tally.latencies,
                wall=tally.wall,
                peak_rss_mb=tally.peak_rss_mb,
                note=f"{mb_s:.1f} MB/s; {_NOTES[name]}; {cpu_note(shares)}",
                extra={"mb_per_s": mb_s, "cpu": shares},
            )
        )
    return rows


async def _run(settings: Settings) -> list[Table]:
    requests = int(os.environ.get("BENCH_UPLOAD_REQUESTS", settings.requests * 2))
    png = noise_png()
    run_id = secrets.token_hex(4)
    warm = 2
    files = [unique_png(png, f"{run_id}-{index}") for index in range(requests + warm)]
    duplicate = unique_png(png, f"{run_id}-duplicate")
    size = len(files[0])
    platform = await asyncio.to_thread(darkroom.start)
    bench: Bench | None = None
    try:
        bench = Bench(platform, files, duplicate)
        account = await asyncio.to_thread(platform.create_account)
        bench.headers = {"Authorization": f"Bearer {account['token']}"}
        connector = aiohttp.TCPConnector(limit=CONCURRENCY, keepalive_timeout=60)
        async with aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=120),
        ) as http:
            bench.http = http
            # Warm-up, not timed: connections, credential cache, libvips; the duplicate stored.
            for call in bench.contenders(list(range(requests, requests + warm))).values():
                await load(call, warm, 1)
            if bench.errors:
                raise RuntimeError(f"the warm-up uploads failed: {bench.errors}")
            pids = {name: platform.pid(name) for name in ("gateway", "ingest", "processing")}
            meter = Meter(
                rss={NEW: pids["ingest"], DUPLICATE: pids["ingest"], EXAMINE: "self"}
                | {CEILING: "self"},
                cpu={NEW: pids, DUPLICATE: pids},
            )
            tallies = await interleave(
                bench.contenders(list(range(requests))),
                requests,
                CONCURRENCY,
                chunk=max(CONCURRENCY * 2, requests // 4),
                before_chunk=meter.before,
                after_chunk=meter.after,
            )
        rows = _rows(tallies, meter, size)
        return [
            Table(
                "upload",
                f"6. Upload of {size / 1e6:.2f} MB PNGs via the hash host (POST /api/upload),"
                f" concurrency {CONCURRENCY}, {requests} requests each",
                rows,
                NEW,
                {
                    "concurrency": CONCURRENCY,
                    "requests": requests,
                    "file_bytes": size,
                    "mb_per_s": {row.name: row.extra["mb_per_s"] for row in rows},
                    "cpu": {row.name: row.extra["cpu"] for row in rows},
                    "errors": {name: dict(counts) for name, counts in bench.errors.items()},
                },
                versus=(CEILING,),
            )
        ]
    finally:
        if bench is not None:
            bench.pool.shutdown()
        await asyncio.to_thread(platform.stop)


def run(settings: Settings) -> list[Table]:
    """The upload scenario's one table."""
    return asyncio.run(_run(settings))
