"""Builders and probes shared by the hostile-image and remote-fetch tests.

Hostile files (random pixels, hand-made GIFs), the upload dialects as a client sends them (the
hash host's JSON and ``curl``'s plain-text answer, Progimage base64, the Happo Image API), the
refusal shape each dialect documents, what an upload leaves behind (blob-store keys and row
counts), and the peak RSS of this pytest process, which is also the ingest and processing
process.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import resource
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
import pyvips

from services.auth.domain import sign_jwt
from shared.runtime import POOL, STORE

#: The documented error code of each 4xx a refused upload may answer.
CODES = {
    400: "bad_request",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}
INGEST_TABLES = (
    "blobs",
    "files",
    "happo_images",
    "used_upload_urls",
    "progimage_images",
    "haut_images",
    "outbox",
)
#: Metadata that must never survive into a Progimage variant.
METADATA_FIELDS = ("exif-data", "xmp-data", "icc-profile-data", "iptc-data")
#: The peak-RSS growth allowed while the whole bomb set is refused. The cheapest bomb here
#: decoded would need ~500 MB (2048x2048 RGBA x 30 GIF frames), the PNG 900 MB, the WebP 1 GB,
#: the JPEG 12.9 GB; what refusing them legitimately costs is a few copies of bodies of at most
#: 1.7 MB (multipart buffer, bytes, base64 JSON) and allocator noise: tens of MB. 200 MB sits
#: far below any real decode and well above the noise.
RSS_BOUND_MB = 200


# --- hostile files ---------------------------------------------------------------------------


def noise(width: int, height: int) -> pyvips.Image:
    """Random RGB pixels: incompressible, so cutting the file always cuts pixel data."""
    return pyvips.Image.new_from_memory(os.urandom(width * height * 3), width, height, 3, "uchar")


def _lzw_zeros(pixels: int) -> bytes:
    """GIF image data for ``pixels`` pixels of colour 0 (min code size 2). A clear code before
    every pair keeps every code at 3 bits, so no encoder table is needed."""
    codes: list[int] = []
    for n in range(pixels):
        if n % 2 == 0:
            codes.append(4)  # clear
        codes.append(0)
    codes.append(5)  # end of information
    bits = count = 0
    packed = bytearray()
    for code in codes:
        bits |= code << count
        count += 3
        while count >= 8:
            packed.append(bits & 0xFF)
            bits >>= 8
            count -= 8
    if count:
        packed.append(bits)
    blocks = b"".join(
        bytes([len(packed[i : i + 255])]) + packed[i : i + 255] for i in range(0, len(packed), 255)
    )
    return b"\x02" + blocks + b"\x00"


def gif(screen: tuple[int, int], frames: Iterable[tuple[int, int, int, int]]) -> bytes:
    """A GIF89a with a two-colour table, the logical ``screen`` and one image per ``(left, top,
    width, height)`` frame. At most 64 pixels of data are written per frame: libvips checks the
    declared geometry first, which is the point of every bomb here."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff")
    out += b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for left, top, width, height in frames:
        out += b"!\xf9\x04\x04\x01\x00\x00\x00"  # graphic control: 10 ms a frame
        out += b"," + struct.pack("<HHHHB", left, top, width, height, 0)
        out += _lzw_zeros(min(width * height, 64))
    return bytes(out + b";")


@dataclass(frozen=True)
class Hostile:
    """One hostile file: what it is, its bytes, and whether it starts with PNG's signature (the
    Happo Image API only takes PNG; anything else is a 415 there before any decoding)."""

    name: str
    data: bytes

    @property
    def png(self) -> bool:
        return self.data.startswith(b"\x89PNG\r\n\x1a\n")


# --- the dialects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one dialect answered for one file."""

    dialect: str
    case: str
    status: int
    body: dict | str

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


def bearer(account: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['token']}"}


def file_form(data: bytes, filename: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return form


async def read_body(response: aiohttp.ClientResponse) -> dict | str:
    if response.content_type == "application/json":
        return await response.json()
    if response.content_type.startswith("text/"):
        return await response.text()
    return f"<{len(await response.read())} bytes of {response.content_type}>"


async def via_hashhost(http, stack, account, case: Hostile) -> Answer:
    """``curl -F file=@x -H 'Authorization: Bearer …' /api/upload`` (the JSON answer)."""
    async with http.post(
        f"{stack.url}/api/upload", data=file_form(case.data, "upload.png"), headers=bearer(account)
    ) as response:
        return Answer("hash host", case.name, response.status, await read_body(response))


async def via_hashhost_text(http, stack, account, case: Hostile) -> Answer:
    """``curl -F file=@x '/upload?api=1'``: ``OK <hash>`` / ``ERROR <message>`` in text."""
    async with http.post(
        f"{stack.url}/upload?api=1",
        data=file_form(case.data, "upload.png"),
        headers=bearer(account),
    ) as response:
        return Answer("hash host text", case.name, response.status, await read_body(response))


async def via_progimage(http, stack, account, case: Hostile, **options: object) -> Answer:
    """``POST /user/images {"process": {"file": base64, …}}``."""
    process = {"file": base64.b64encode(case.data).decode(), **options}
    async with http.post(
        f"{stack.url}/user/images", json={"process": process}, headers=bearer(account)
    ) as response:
        return Answer("progimage", case.name, response.status, await read_body(response))


async def via_happo(http, stack, account, case: Hostile) -> Answer:
    """The Happo Image API's two steps with the clients' JWT: ask for an upload URL under the
    file's md5, then post the file to it."""
    auth = {"Authorization": f"Bearer {sign_jwt(account['api_key'], account['api_secret'])}"}
    md5 = hashlib.md5(case.data).hexdigest()  # noqa: S324 - the hash Happo clients send
    async with http.get(f"{stack.url}/api/images/{md5}/upload-url", headers=auth) as response:
        assert response.status == 200, await response.text()
        upload_url = (await response.json())["uploadUrl"]
    assert upload_url, f"{case.name}: this account already holds md5 {md5}"
    form = aiohttp.FormData()
    form.add_field("file", case.data, filename="image.png", content_type="image/png")
    async with http.post(upload_url, data=form, headers=auth) as response:
        return Answer("happo", case.name, response.status, await read_body(response))


def refusal(answer: Answer, *statuses: int) -> str:
    """Assert ``answer`` is a refusal with one of ``statuses`` in its dialect's documented
    shape — ``{"error": {"code", "message"}}``, or ``ERROR <message>`` for the text dialect —
    and return the message."""
    assert answer.status in statuses, answer
    if answer.dialect == "hash host text":
        assert isinstance(answer.body, str) and answer.body.startswith("ERROR "), answer
        return answer.body.removeprefix("ERROR ")
    assert isinstance(answer.body, dict), answer
    assert set(answer.body) == {"error"}, answer
    error = answer.body["error"]
    assert set(error) == {"code", "message"}, answer
    assert error["code"] == CODES[answer.status], answer
    assert isinstance(error["message"], str) and error["message"], answer
    return error["message"]


def fives(answers: Iterable[Answer]) -> int:
    return sum(answer.status >= 500 for answer in answers)


# --- what is left behind -----------------------------------------------------------------------


@dataclass(frozen=True)
class Footprint:
    """Every key in the blob store and the row count of every table an upload can touch."""

    keys: frozenset[str]
    rows: tuple[int, ...]


async def footprint(stack) -> Footprint:
    keys = frozenset([key async for key in stack.apps["ingest"][STORE].keys("")])
    ingest, processing = stack.apps["ingest"][POOL], stack.apps["processing"][POOL]
    rows = [await ingest.fetchval(f"SELECT count(*) FROM {table}") for table in INGEST_TABLES]
    rows.append(await processing.fetchval("SELECT count(*) FROM derivatives"))
    return Footprint(keys, tuple(rows))


def records(seen: Footprint) -> tuple:
    """The part of a footprint that is records and originals: what a refusal must never
    change, while the outbox and the derivative cache may hold requests that were tried."""
    originals = frozenset(key for key in seen.keys if key.startswith("sha256/"))
    return originals, seen.rows[: INGEST_TABLES.index("outbox")]


async def events_of(stack, sha256: str) -> set[str]:
    """The types of the ingest events written about the content ``sha256``."""
    rows = await stack.apps["ingest"][POOL].fetch(
        "SELECT DISTINCT type FROM outbox WHERE envelope->'data'->>'hash' = $1", sha256
    )
    return {row["type"] for row in rows}


async def forget_hashhost_file(http, stack, account, sha256: str) -> None:
    """Delete an accepted hash-host file again, so the store holds only what other tests put."""
    async with http.delete(f"{stack.url}/api/files/{sha256}", headers=bearer(account)) as response:
        assert response.status == 200, await response.text()


async def progimage_variants(http, answer: Answer) -> dict[str, tuple[pyvips.Image, bytes]]:
    """The three variants of an accepted single Progimage upload, decoded, with their bytes."""
    file = answer.body["data"]["file"]
    urls = {"file": file["url"], "thumb": file["thumb"]["url"], "mini": file["mini"]["url"]}
    variants = {}
    for name, url in urls.items():
        async with http.get(url) as response:
            assert response.status == 200, (url, response.status)
            data = await response.read()
        variants[name] = (pyvips.Image.new_from_buffer(data, ""), data)
    return variants


# --- memory ----------------------------------------------------------------------------------


def vm_kb(field_name: str) -> int:
    """A ``/proc/self/status`` figure (VmRSS, VmHWM) in kB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/self/status")


@dataclass
class PeakRss:
    """Peak-RSS growth of this process over a block. The high-water mark is reset first
    (``/proc/self/clear_refs`` 5, Linux ≥ 4.0), so the peak measured is this block's own and
    not left over from the stack starting or a file being built; where the reset is refused the
    growth of the old peak is all that can be said, and ``reset`` records that."""

    reset: bool = False
    rss_before_kb: int = 0
    hwm_before_kb: int = 0
    maxrss_before_kb: int = 0
    hwm_after_kb: int = 0
    maxrss_after_kb: int = 0

    def __enter__(self) -> PeakRss:
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        self.rss_before_kb, self.hwm_before_kb = vm_kb("VmRSS"), vm_kb("VmHWM")
        # Judged by its effect: a kernel may take the write and keep the old peak.
        self.reset = self.hwm_before_kb <= self.rss_before_kb + 1024
        self.maxrss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.hwm_after_kb = vm_kb("VmHWM")
        self.maxrss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @property
    def growth_mb(self) -> float:
        """How far the peak rose above where the block started, in MB."""
        start = self.rss_before_kb if self.reset else self.hwm_before_kb
        return max(0, self.hwm_after_kb - start) / 1024

    @property
    def maxrss_growth_mb(self) -> float:
        return max(0, self.maxrss_after_kb - self.maxrss_before_kb) / 1024

    def describe(self) -> str:
        how = "HWM reset first" if self.reset else "HWM not resettable: growth of the old peak"
        return (
            f"peak RSS +{self.growth_mb:.1f} MB (VmHWM {self.hwm_after_kb // 1024} MB, {how};"
            f" ru_maxrss +{self.maxrss_growth_mb:.1f} MB)"
        )
