"""Hostile images and remote-fetch SSRF through the gateway, the way an attacker would send them.

Why this file exists: every upload dialect funnels into one validator (``domain.examine``) and
one libvips allow-list, and every remote URL into one fetcher, so a regression in either is a
platform-wide hole. These tests send real hostile files through the public API — the hash host
(JSON and ``curl``'s plain-text answer), Progimage base64 and the Happo Image API — and check
the answer each dialect documents, that a refusal leaves no record and no blob, and, because
this pytest process *is* the ingest and processing process, that refusing the bomb set costs
almost no memory. Then the Progimage ``remote_file_url`` (the platform's only outbound fetch)
is aimed at every spelling of an internal address while a loopback server counts the TCP
connections that reach it. Every family writes its RESILIENCE.md row from the real answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import io
import ipaddress
import os
import resource
import socket
import struct
import time
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp
import pytest
import pyvips
from aiohttp import web

from services.auth.domain import sign_jwt
from services.ingest.progimage.handlers import PROGIMAGE
from shared.remote import RemoteFetcher, RemotePolicy
from shared.runtime import POOL, STORE
from shared.store_keys import derivatives_prefix
from tests.conftest import free_port
from tests.test_ingest_remote import Server, ipv6_loopback, make_app

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


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real 64x64 JPEG whose frame header (SOF) is rewritten to claim ``width`` x ``height``:
    a few hundred bytes that would be gigabytes once decoded."""
    jpeg = pyvips.Image.black(64, 64).jpegsave_buffer()
    i = 2
    while i < len(jpeg):
        marker = jpeg[i + 1]
        (length,) = struct.unpack(">H", jpeg[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            return jpeg[: i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9 :]
        i += 2 + length
    raise AssertionError("no SOF marker in libvips' JPEG")


#: ``pyvips.Image.black(16383, 16383).webpsave_buffer(lossless=True, effort=0, keep="none")``:
#: a real, complete lossless WebP of the format's largest size. Frozen because encoding it takes
#: 6 s and 2.4 GB here, which would also swamp the peak-RSS measurement; the test re-reads its
#: header to show it is what it claims.
WEBP_16383 = base64.b64decode("UklGRhoAAABXRUJQVlA4TA4AAAAv/r//DwcQEf0PRET/Aw==")


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


def zlib_of_zeros(megabytes: int) -> bytes:
    """A valid zlib stream of ``megabytes`` MiB of zeros, about a thousandth of that long.
    Each MiB is compressed after a full flush, which resets the window, so every MiB's block
    is the same bytes and the stream is built by repetition instead of 7 s of deflate."""
    step = bytes(1 << 20)
    deflate = zlib.compressobj(9)
    first = deflate.compress(step) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(step) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert first[2:] == block  # the same block after the 2-byte zlib header
    adler = (((megabytes << 20) % 65521) << 16) | 1  # Adler-32 of zeros: a = 1, b = n
    return first + block * (megabytes - 1) + b"\x03\x00" + struct.pack(">I", adler)


#: 1 GiB of zeros as 1 MB of zlib: what a text or ICC chunk of a PNG may inflate to.
GIGABYTE = zlib_of_zeros(1024)


def png_with_chunk(kind: bytes, payload: bytes) -> bytes:
    """An 8x8 PNG with one more chunk of ``kind`` right after IHDR."""
    png = pyvips.Image.black(8, 8).pngsave_buffer()
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return png[:33] + struct.pack(">I", len(payload)) + kind + payload + crc + png[33:]


def with_segments(jpeg: bytes, *segments: bytes) -> bytes:
    """``jpeg`` with ``segments`` inserted right after SOI, where EXIF (APP1) lives."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def exif(
    entries: Iterable[tuple[int, int, int, int]], first_ifd: int = 8, tail: bytes = b""
) -> bytes:
    """An APP1 EXIF payload: little-endian TIFF header, one IFD of ``(tag, type, count,
    value)`` entries, then ``tail``."""
    listed = list(entries)
    ifd = struct.pack("<H", len(listed)) + b"".join(struct.pack("<HHII", *e) for e in listed)
    return b"Exif\0\0II*\0" + struct.pack("<I", first_ifd) + ifd + b"\0\0\0\0" + tail


@dataclass(frozen=True)
class Hostile:
    """One hostile file: what it is, its bytes, and whether it starts with PNG's signature (the
    Happo Image API only takes PNG; anything else is a 415 there before any decoding)."""

    name: str
    data: bytes

    @property
    def png(self) -> bool:
        return self.data.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.fixture(scope="module")
def bombs() -> list[Hostile]:
    """Files small on the wire whose declared geometry is far past DARKROOM_MAX_PIXELS
    (100 M width x height x frames) or DARKROOM_MAX_FRAMES (500). Built before any measurement,
    since building the PNG streams 900 M pixels through zlib."""
    return [
        Hostile(
            "PNG 30000x30000 one colour",
            pyvips.Image.black(30000, 30000).pngsave_buffer(compression=9, bitdepth=1),
        ),
        Hostile("JPEG declaring 65500x65500", jpeg_declaring(65500, 65500)),
        Hostile("JPEG 12000x12000 real", pyvips.Image.black(12000, 12000).jpegsave_buffer(Q=10)),
        Hostile("WebP 16383x16383 real", WEBP_16383),
        Hostile("GIF 600 frames", gif((1, 1), [(0, 0, 1, 1)] * 600)),
        Hostile("GIF 2048x2048 x 30 frames", gif((2048, 2048), [(0, 0, 1, 1)] * 30)),
        Hostile("GIF frame 65535x65535", gif((65535, 65535), [(0, 0, 65535, 65535)])),
        Hostile("GIF frame at 65000,65000", gif((65535, 65535), [(65000, 65000, 1, 1)])),
    ]


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


# --- images: bombs ---------------------------------------------------------------------------


async def test_decompression_bombs_are_refused_from_their_header(
    stack, http, account, bombs, resilience
):
    header = pyvips.Image.new_from_buffer(WEBP_16383, "")
    assert (header.width, header.height, header.get("vips-loader")) == (
        16383,
        16383,
        "webpload_buffer",
    )
    answers: list[Answer] = []
    before = await footprint(stack)
    started = time.monotonic()
    with PeakRss() as peak:
        for bomb in bombs:
            answers.append(await via_hashhost(http, stack, account, bomb))
            answers.append(await via_hashhost_text(http, stack, account, bomb))
            answers.append(await via_progimage(http, stack, account, bomb))
            answers.append(await via_happo(http, stack, account, bomb))
    elapsed = time.monotonic() - started
    assert await footprint(stack) == before
    for answer in answers:
        bomb = next(b for b in bombs if b.name == answer.case)
        if answer.dialect == "happo" and not bomb.png:
            refusal(answer, 415)  # Happo takes PNG only: refused on the signature alone
            continue
        message = refusal(answer, 422)
        # Refused from the header's geometry, before a pixel is decoded.
        assert "pixels" in message or "frames" in message, answer
    assert peak.growth_mb < RSS_BOUND_MB, peak.describe()

    # Lookalikes that are no bomb, and accepting them is right. A giant logical screen over a
    # 1x1 frame: libnsgif sizes an implausible screen from the frames, so it is a 1x1 GIF.
    # 1 GB of zlib in a text or ICC chunk: libvips never inflates those chunks.
    lookalikes = [
        Hostile("GIF screen 65535x65535 over a 1x1 frame", gif((65535, 65535), [(0, 0, 1, 1)])),
        Hostile("PNG 8x8 with a 1 GB zTXt", png_with_chunk(b"zTXt", b"Comment\0\0" + GIGABYTE)),
        Hostile("PNG 8x8 with a 1 GB iCCP", png_with_chunk(b"iCCP", b"icc\0\0" + GIGABYTE)),
    ]
    kept: list[Answer] = []
    with PeakRss() as lookalike_peak:
        for case in lookalikes:
            stored = await via_hashhost(http, stack, account, case)
            drawn = await via_progimage(http, stack, account, case)
            kept += [stored, drawn]
            assert stored.status == 200 and drawn.status == 201, (stored, drawn)
            assert await events_of(stack, stored.body["hash"]) == {"image.stored"}
            for image, _ in (await progimage_variants(http, drawn)).values():
                assert image.width <= 8 and image.height <= 8, case.name
                assert not set(METADATA_FIELDS) & set(image.get_fields()), case.name
            await forget_hashhost_file(http, stack, account, stored.body["hash"])
    assert lookalike_peak.growth_mb < RSS_BOUND_MB, lookalike_peak.describe()

    refused = sum(not a.accepted for a in answers)
    resilience.row(
        "images",
        "decompression bombs",
        injected=f"{len(bombs)} bombs ({', '.join(b.name for b in bombs)}; largest body"
        f" {max(len(b.data) for b in bombs) // 1024} kB) x 4 dialects (hash host JSON and"
        " text, Progimage base64, Happo); plus lookalikes to the hash host and Progimage:"
        f" {', '.join(c.name for c in lookalikes)}",
        observed=f"{refused} of {len(answers)} bomb uploads refused: 422 naming the"
        " pixels/frames from the header (Happo: 415, PNG only, for non-PNG); no record, no"
        f" blob; {elapsed:.2f} s for the set; {peak.describe()}. The {len(kept)} lookalike"
        " uploads are accepted, correctly: libnsgif decodes the huge screen as 1x1, libvips"
        " never inflates zTXt/iCCP, the variants are <= 8x8 without metadata;"
        f" {lookalike_peak.describe()}",
        accepted=sum(a.accepted for a in [*answers, *kept]),
        effects=0,
        errors_5xx=fives([*answers, *kept]),
    )
    resilience.row(
        "images",
        "peak RSS while refusing the bomb set",
        injected=f"the {len(answers)} bomb uploads above, in this process (gateway, ingest and"
        " processing in-process)",
        observed=f"{peak.describe()}; bound {RSS_BOUND_MB} MB (the smallest bomb decoded would"
        f" need ~500 MB, the WebP ~1 GB); the lookalikes, processed: {lookalike_peak.describe()}",
        accepted=sum(a.accepted for a in answers),
        errors_5xx=fives(answers),
    )


# --- images: truncated -----------------------------------------------------------------------


async def test_truncated_images_are_refused(stack, http, account, resilience):
    intact = {
        "PNG": noise(256, 256).pngsave_buffer(),
        "JPEG": noise(256, 256).jpegsave_buffer(Q=90),
        "WebP": noise(256, 256).webpsave_buffer(Q=90),
        "GIF": noise(256, 256).gifsave_buffer(),
    }
    cases = [
        Hostile(f"{kind} cut at half", data[: len(data) // 2]) for kind, data in intact.items()
    ]
    cases.append(Hostile("JPEG without its EOI", intact["JPEG"][:-2]))
    answers: list[Answer] = []
    before = await footprint(stack)
    for case in cases:
        answers.append(await via_hashhost(http, stack, account, case))
        answers.append(await via_hashhost_text(http, stack, account, case))
        answers.append(await via_progimage(http, stack, account, case))
        answers.append(await via_happo(http, stack, account, case))
    assert await footprint(stack) == before
    for answer in answers:
        case = next(c for c in cases if c.name == answer.case)
        if answer.dialect == "happo" and not case.png:
            refusal(answer, 415)
            continue
        # The header reads fine; the full decode ingest forces once is what fails.
        assert "is not a valid" in refusal(answer, 422), answer
    resilience.row(
        "images",
        "truncated images",
        injected=f"{len(cases)} files (PNG, JPEG, WebP, GIF of random pixels cut at half; a JPEG"
        " without its end marker) x 4 dialects",
        observed=f"all {len(answers)} refused: 422 'not a valid <format> image' from the full"
        " decode at upload (Happo: 415 for non-PNG); no record, no blob",
        accepted=sum(a.accepted for a in answers),
        effects=0,
        errors_5xx=fives(answers),
    )


# --- images: loaders outside the allow-list ------------------------------------------------------


async def test_formats_outside_the_allow_list_never_become_images(stack, http, account, resilience):
    tiny = pyvips.Image.black(8, 8)
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000">'
        b"<script>alert(document.domain)</script></svg>"
    )
    cases = [
        Hostile("SVG (100000x100000, script)", svg),
        Hostile("SVG with an XML prolog", b'<?xml version="1.0"?>\n' + svg),
        Hostile("PDF", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"),
        Hostile("TIFF", tiny.tiffsave_buffer()),
        Hostile("HEIF (AVIF)", tiny.bandjoin([0, 0]).write_to_buffer(".avif")),
        Hostile("PPM", b"P6\n4 4\n255\n" + b"\0" * 48),
        Hostile("libvips matrix (.mat)", b"2 2\n1 2\n3 4\n"),
        Hostile("libvips native (.v header)", b"\x08\xf2\xa6\xb6" + b"\0" * 60),
        Hostile("BMP", b"BM" + b"\0" * 60),
    ]
    # This process is also the processing service: the block list it runs under must refuse
    # these formats even if one ever got past ingest's sniffing.
    decodable_elsewhere = [c for c in cases if c.name.startswith(("TIFF", "HEIF", "SVG ("))]
    for case in decodable_elsewhere:
        with pytest.raises(pyvips.Error):
            pyvips.Image.new_from_buffer(case.data, "")

    before = await footprint(stack)
    image_answers: list[Answer] = []
    for case in cases:
        image_answers.append(await via_progimage(http, stack, account, case))
        image_answers.append(await via_happo(http, stack, account, case))
    assert await footprint(stack) == before
    for answer in image_answers:
        if answer.dialect == "progimage":
            assert "Only GIF, JPG, PNG, WEBP" in refusal(answer, 422), answer
        else:
            refusal(answer, 415)

    # The hash host stores any file (it is a file host), but only the four web formats as
    # images: the rest are opaque bytes, never decoded, served as a sandboxed attachment.
    stored: list[Answer] = []
    for case in cases:
        answer = await via_hashhost(http, stack, account, case)
        stored.append(answer)
        assert answer.status == 200, answer
        sha256 = answer.body["hash"]
        assert await events_of(stack, sha256) == {"file.stored"}, case.name
        # Uploaded as upload.png, so its ext URL ends in .png: the served type still comes
        # from the bytes, never from the name.
        assert answer.body["urls"]["ext"].endswith(".png")
        async with http.get(answer.body["urls"]["ext"]) as served:
            assert served.status == 200
            assert not served.headers["Content-Type"].startswith("image/"), case.name
            assert served.headers["Content-Disposition"] == "attachment"
            assert served.headers["Content-Security-Policy"].startswith("sandbox")
            assert served.headers["X-Content-Type-Options"] == "nosniff"
            assert await served.read() == case.data
        await forget_hashhost_file(http, stack, account, sha256)
    assert (await footprint(stack)).keys == before.keys
    resilience.row(
        "images",
        "loaders outside the allow-list",
        injected=f"{len(cases)} files ({', '.join(c.name for c in cases)}) to Progimage, Happo"
        " and the hash host; the same bytes straight into libvips in the processing process",
        observed="Progimage 422 'Only GIF, JPG, PNG, WEBP', Happo 415, nothing kept; libvips"
        " refuses TIFF, HEIF and SVG in-process (loader block list); the hash host stores"
        f" all {len(stored)} as opaque files by design (file.stored, never decoded) served as"
        " attachment + CSP sandbox + nosniff, whatever the name",
        accepted=sum(a.accepted for a in image_answers) + len(stored),
        effects=0,
        errors_5xx=fives([*image_answers, *stored]),
    )


# --- images: EXIF ------------------------------------------------------------------------------


async def test_hostile_exif_is_stripped_from_variants_and_never_a_5xx(
    stack, http, account, resilience
):
    base = noise(64, 48).jpegsave_buffer(Q=90)
    accepted = [
        Hostile(
            "2 MB of APP1 (32 x 64 kB random EXIF)",
            with_segments(
                base, *(segment(0xE1, b"Exif\0\0" + os.urandom(65000)) for _ in range(32))
            ),
        ),
        Hostile(
            "1 MB of XMP (16 x 64 kB)",
            with_segments(
                base,
                *(
                    segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0" + b"<" * 65000)
                    for _ in range(16)
                ),
            ),
        ),
        Hostile(
            "Orientation 65535", with_segments(base, segment(0xE1, exif([(0x112, 3, 1, 65535)])))
        ),
        Hostile(
            "IFD with 65535 entries in 16 bytes",
            with_segments(
                base, segment(0xE1, b"Exif\0\0II*\0\x08\0\0\0\xff\xff" + b"\x12\x01\x03\0" * 4)
            ),
        ),
        Hostile("IFD offset 0xFFFFFFF0", with_segments(base, segment(0xE1, exif([], 0xFFFFFFF0)))),
        Hostile(
            "Make of 4 GB declared",
            with_segments(base, segment(0xE1, exif([(0x10F, 2, 0xFFFFFFFF, 26)]))),
        ),
        Hostile(
            "EXIF and GPS IFDs pointing at themselves",
            with_segments(base, segment(0xE1, exif([(0x8769, 4, 1, 8), (0x8825, 4, 1, 8)]))),
        ),
        Hostile(
            "APP1 'Exif' with no TIFF inside", with_segments(base, segment(0xE1, b"Exif\0\0junk"))
        ),
        Hostile(
            "ICC profile of 40 broken 64 kB chunks",
            with_segments(
                base,
                *(
                    segment(0xE2, b"ICC_PROFILE\0" + bytes([n + 1, 40]) + os.urandom(65000))
                    for n in range(40)
                ),
            ),
        ),
    ]
    # A segment whose length runs past the end of the file is a broken JPEG, not odd metadata.
    broken = Hostile(
        "APP1 length past the end", base[:2] + b"\xff\xe1\xff\xffExif\0\0" + b"x" * 100
    )

    answers: list[Answer] = []
    for case in accepted:
        stored = await via_hashhost(http, stack, account, case)
        drawn = await via_progimage(http, stack, account, case)
        answers += [stored, drawn]
        assert stored.status == 200 and drawn.status == 201, (stored, drawn)
        # The file host keeps bytes exactly (content-addressed originals): EXIF and all.
        async with http.get(stored.body["urls"]["hash"]) as served:
            assert await served.read() == case.data
            assert served.headers["Content-Type"] == "image/jpeg"
        # Progimage serves re-encoded variants: no metadata survives, the pixels do.
        variants = await progimage_variants(http, drawn)
        for name, (image, _) in variants.items():
            assert not set(METADATA_FIELDS) & set(image.get_fields()), (case.name, name)
        assert (variants["file"][0].width, variants["file"][0].height) == (64, 48), case.name
        await forget_hashhost_file(http, stack, account, stored.body["hash"])

    before = await footprint(stack)
    refused = [
        await via_hashhost(http, stack, account, broken),
        await via_progimage(http, stack, account, broken),
    ]
    assert await footprint(stack) == before
    for answer in refused:
        assert "not a valid JPEG" in refusal(answer, 422)
    resilience.row(
        "images",
        "EXIF / APP segments huge or malformed",
        injected=f"{len(accepted)} JPEGs with hostile metadata (2 MB of APP1, 1 MB of XMP,"
        " orientation 65535, overlong and self-referencing IFDs, 4 GB counts, 2.6 MB of broken"
        " ICC) plus one APP1 whose length runs past the file, to the hash host and Progimage",
        observed=f"the {len(accepted)} are images with odd metadata: accepted; the hash host"
        " keeps the bytes exactly (by design), Progimage's file/thumb/mini carry no EXIF, XMP,"
        " ICC or IPTC and keep 64x48; the overrunning segment is a 422 'not a valid JPEG' with"
        " nothing kept",
        accepted=sum(a.accepted for a in [*answers, *refused]),
        effects=0,
        errors_5xx=fives([*answers, *refused]),
    )


# --- images: polyglots -------------------------------------------------------------------------


def gif_js_polyglot() -> bytes:
    """``GIF89a/*<gif>*/=alert(…)``: a valid GIF and a valid script. Its width bytes are
    ``/*`` (10799); libnsgif takes a screen that large from the frame, 1x1."""
    body = gif((0x2A2F, 1), [(0, 0, 1, 1)])
    assert body[6:8] == b"/*" and b"*/" not in body
    return body + b"*/=alert(document.domain);//"


async def test_polyglots_are_served_as_their_image_with_nosniff(stack, http, account, resilience):
    png = noise(32, 32).pngsave_buffer()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("evil.js", "alert(document.cookie)")
    script = b"<html><script>alert(document.domain)</script></html>"
    images = [
        Hostile("PNG + ZIP", png + archive.getvalue()),
        Hostile("PNG + HTML/JS", png + script),
        Hostile("JPEG + HTML/JS", pyvips.Image.black(8, 8).jpegsave_buffer() + script),
        Hostile("GIF/JS polyglot", gif_js_polyglot()),
    ]
    html_first = Hostile("HTML/JS + PNG", script + png)
    payloads = (b"alert(", b"PK\x03\x04", b"<script")

    answers: list[Answer] = []
    for case in images:
        stored = await via_hashhost(http, stack, account, case)
        drawn = await via_progimage(http, stack, account, case)
        answers += [stored, drawn]
        assert stored.status == 200 and drawn.status == 201, (stored, drawn)
        # Stored as-is under the image's own type, inline, but never sniffed into a script or
        # a page: nosniff makes a browser refuse image/* as script or document.
        async with http.get(stored.body["urls"]["hash"]) as served:
            assert await served.read() == case.data
            assert served.headers["Content-Type"].startswith("image/")
            assert served.headers["X-Content-Type-Options"] == "nosniff"
            assert "Content-Disposition" not in served.headers
        # Progimage re-encodes: the appended payload does not survive into any variant.
        for name, (_, data) in (await progimage_variants(http, drawn)).items():
            assert not any(p in data for p in payloads), (case.name, name)
        await forget_hashhost_file(http, stack, account, stored.body["hash"])
    for case in images[:2]:
        answer = await via_happo(http, stack, account, case)
        answers.append(answer)
        assert answer.status == 200, answer
        async with http.get(answer.body["url"]) as served:
            assert served.headers["Content-Type"] == "image/png"
            assert served.headers["X-Content-Type-Options"] == "nosniff"

    # Bytes that start as HTML are HTML, whatever follows: not an image anywhere.
    before = await footprint(stack)
    refused = await via_progimage(http, stack, account, html_first)
    assert "Only GIF, JPG, PNG, WEBP" in refusal(refused, 422)
    assert await footprint(stack) == before
    page = await via_hashhost(http, stack, account, html_first)
    async with http.get(page.body["urls"]["hash"]) as served:
        assert served.headers["Content-Type"].startswith("text/html")
        assert served.headers["Content-Disposition"] == "attachment"
        assert served.headers["Content-Security-Policy"].startswith("sandbox")
    await forget_hashhost_file(http, stack, account, page.body["hash"])
    resilience.row(
        "images",
        "polyglots",
        injected="PNG + ZIP, PNG + HTML/JS, JPEG + HTML/JS, a GIF/JS polyglot (hash host,"
        " Progimage; the PNGs to Happo too) and HTML/JS + PNG",
        observed=f"the {len(images)} image-first files are valid images: accepted"
        f" ({sum(a.accepted for a in answers)} acceptances), the hash host and Happo serve the"
        " bytes as-is as image/* with nosniff (no attachment needed), Progimage's variants are"
        " re-encoded without the payload; HTML-first is HTML: Progimage 422, the hash host a"
        " sandboxed text/html attachment",
        accepted=sum(a.accepted for a in answers) + 1,
        effects=0,
        errors_5xx=fives([*answers, refused, page]),
    )


# --- images: derived-image bombs -----------------------------------------------------------------


async def test_enormous_derived_sizes_are_refused_or_never_enlarge(
    stack, http, account, resilience
):
    original = Hostile("64x48 photo", noise(64, 48).pngsave_buffer())
    uploaded = await via_progimage(http, stack, account, original)
    assert uploaded.status == 201, uploaded
    image_id = uploaded.body["data"]["id"]
    url = f"{stack.url}/user/images/{image_id}/derived"
    too_large = [
        "thumb_w=10001",
        "thumb_h=4294967297",
        "thumb_w=99999999999999999999999",
        "thumb_w=1e400",
        "thumb_w=10000&thumb_h=-1",
        "round_corners=1000000",
    ]
    answers: list[Answer] = []
    before = await footprint(stack)
    with PeakRss() as peak:
        for query in too_large:
            async with http.get(f"{url}?{query}", headers=bearer(account)) as response:
                answers.append(Answer("derived", query, response.status, await read_body(response)))
        for thumb_w in (10**9, "1e9", 2**63):
            answers.append(await via_progimage(http, stack, account, original, thumb_w=thumb_w))
    assert await footprint(stack) == before
    for answer in answers:
        message = refusal(answer, 422)
        assert any(name in message for name in ("thumb_w", "thumb_h", "round_corners")), answer

    # The largest box allowed fits a small image without enlarging it: no bomb to be had there.
    fitted: list[Answer] = []
    for query, size in (
        ("thumb_w=10000&thumb_h=10000", (64, 48)),
        ("thumb_w=10000&round_corners=10000&format=png", (64, 48)),
        ("thumb_w=10000&thumb_h=10000&rotation=45", (79, 79)),
    ):
        async with http.get(f"{url}?{query}", headers=bearer(account)) as response:
            data = await response.read()
            fitted.append(Answer("derived", query, response.status, ""))
        assert response.status == 200, (query, data[:200])
        image = pyvips.Image.new_from_buffer(data, "")
        assert (image.width, image.height) == size, query
    resilience.row(
        "images",
        "derived-image bombs",
        injected=f"GET /user/images/{{id}}/derived with {', '.join(too_large)}; POST /user/images"
        " with thumb_w 10^9, '1e9', 2^63; and the largest boxes allowed (10000) on a 64x48 image",
        observed="every oversize option 422 naming it (box and corners capped at 10000) with no"
        " derivative made; the 10000 boxes answer the image at its own size (never enlarged),"
        f" a 45° turn its 79x79 bounding box; {peak.describe()}",
        accepted=sum(a.accepted for a in answers),
        effects=0,
        errors_5xx=fives([*answers, *fitted]),
    )


async def test_a_turn_that_would_outgrow_the_pixel_limit_is_refused(
    stack, http, account, resilience
):
    # An original exactly at DARKROOM_MAX_PIXELS is allowed, and as a one-colour 1-bit PNG it
    # is 12 kB. Turned 45° without a box its canvas is 14142x14142, twice the limit; encoding
    # that as JPEG (optimised Huffman tables buffer every coefficient) took 1.25 GB here.
    at_limit = Hostile(
        "10000x10000 one colour",
        pyvips.Image.black(10000, 10000).pngsave_buffer(compression=9, bitdepth=1),
    )
    uploaded = await via_progimage(http, stack, account, at_limit, thumb_w=100)
    assert uploaded.status == 201, uploaded
    url = f"{stack.url}/user/images/{uploaded.body['data']['id']}/derived"
    answers: list[Answer] = []
    before = await footprint(stack)
    with PeakRss() as peak:
        for query in ("rotation=45&format=jpeg", "rotation=30&format=png"):
            async with http.get(f"{url}?{query}", headers=bearer(account)) as response:
                answers.append(Answer("derived", query, response.status, await read_body(response)))
        answers.append(await via_progimage(http, stack, account, at_limit, rotation=45))
    after = await footprint(stack)
    assert records(after) == records(before)
    # The POST's thumb and mini are boxed, so within the limit: they were made and stay in the
    # derivative cache of this (recorded) original, as any derivative does. The refused
    # full-size turns exist nowhere.
    made = after.keys - before.keys
    prefix = derivatives_prefix(hashlib.sha256(at_limit.data).hexdigest())
    assert len(made) == 2 and all(key.startswith(prefix) for key in made), made
    for answer in answers:
        assert "at most 100000000 pixels" in refusal(answer, 422), answer
    assert peak.growth_mb < RSS_BOUND_MB, peak.describe()
    # With a box the turn is made on the image shrunk at load: that stays allowed.
    async with http.get(f"{url}?rotation=45&thumb_w=500", headers=bearer(account)) as response:
        boxed = Answer("derived", "rotation=45&thumb_w=500", response.status, "")
        turned = pyvips.Image.new_from_buffer(await response.read(), "")
    assert boxed.status == 200 and 490 <= max(turned.width, turned.height) <= 500
    # The image itself at full size, as a JPEG: allowed, and in bounded memory too (optimised
    # Huffman tables would buffer its 100 MP of coefficients, ~600 MB).
    with PeakRss() as full:
        async with http.get(f"{url}?format=jpeg", headers=bearer(account)) as response:
            whole = Answer("derived", "format=jpeg", response.status, "")
            encoded = pyvips.Image.new_from_buffer(await response.read(), "")
    assert whole.status == 200 and (encoded.width, encoded.height) == (10000, 10000)
    assert full.growth_mb < RSS_BOUND_MB, full.describe()
    resilience.row(
        "images",
        "derived image turned past the pixel limit",
        injected="a 10000x10000 PNG (12 kB, at DARKROOM_MAX_PIXELS) then GET …/derived"
        "?rotation=45&format=jpeg, ?rotation=30&format=png and POST /user/images rotation 45"
        " (results of 14142x14142 and 13660x13660 pixels)",
        observed="422 'the result would be …; at most 100000000 pixels' from the lazily known"
        " output size: no record, no original, no full-size turn stored (the POST's boxed"
        f" thumb and mini stay cached); {peak.describe()} (before the fix in"
        " services/processing/transforms.py: 200, and 1.25 GB for the JPEG); with thumb_w=500"
        f" the same turn is a 200; the unturned image as a full-size JPEG is a 200 with"
        f" {full.describe()}",
        accepted=sum(a.accepted for a in answers),
        effects=0,
        errors_5xx=fives([*answers, boxed, whole]),
    )


# --- SSRF through the public API -----------------------------------------------------------------

PIXEL_PNG = noise(8, 8).pngsave_buffer()


@dataclass
class Internal:
    """A TCP server on loopback (IPv4 and, when there is one, IPv6) standing for everything
    inside the deployment. It counts connections, not requests: a refusal made after connect
    would still show. It answers a valid PNG, so that reaching it would make an upload work."""

    port: int
    connections: int = 0
    servers: list[asyncio.Server] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n"
                + f"Content-Length: {len(PIXEL_PNG)}\r\n\r\n".encode()
                + PIXEL_PNG
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def internal_server() -> AsyncIterator[Internal]:
    internal = Internal(free_port())
    hosts = ["127.0.0.1", *(["::1"] if ipv6_loopback() else [])]
    try:
        for host in hosts:
            internal.servers.append(
                await asyncio.start_server(internal.handle, host, internal.port)
            )
        yield internal
    finally:
        for server in internal.servers:
            server.close()
            await server.wait_closed()


def loopback_hostname() -> str | None:
    """A name other than ``localhost`` that this machine resolves to loopback (from
    /etc/hosts, or the host name): what an attacker's DNS record pointing inside looks like."""
    candidates: list[str] = []
    with contextlib.suppress(OSError), open("/etc/hosts") as hosts:
        for line in hosts:
            parts = line.split("#", 1)[0].split()
            if len(parts) > 1 and parts[0].startswith(("127.", "::1")):
                candidates += [name for name in parts[1:] if not name.startswith("localhost")]
    candidates.append(socket.gethostname())
    for name in candidates:
        try:
            answers = socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)
        except OSError:
            continue
        if answers and all(ipaddress.ip_address(a[4][0]).is_loopback for a in answers):
            return name
    return None


async def remote(http, stack, account, url: str) -> Answer:
    async with http.post(
        f"{stack.url}/user/images",
        json={"process": {"remote_file_url": url}},
        headers=bearer(account),
    ) as response:
        return Answer("progimage", url, response.status, await read_body(response))


@contextlib.asynccontextmanager
async def fetcher_allowing(stack, *networks: str, **limits: float) -> AsyncIterator[None]:
    """Progimage's fetcher swapped, for the block, for one that also reaches ``networks`` (the
    stack allows only public addresses, and a test has no public server): the way an operator
    allows a partner network with DARKROOM_REMOTE_ALLOW_NETWORKS."""
    uploads = stack.apps["ingest"][PROGIMAGE]
    default = uploads.fetcher
    policy = dataclasses.replace(
        RemotePolicy.from_config(uploads.config),
        allowed_networks=tuple(ipaddress.ip_network(n) for n in networks),
        **limits,
    )
    uploads.fetcher = RemoteFetcher(policy)
    try:
        yield
    finally:
        swapped, uploads.fetcher = uploads.fetcher, default
        await swapped.close()


async def test_remote_urls_to_internal_addresses_never_connect(stack, http, account, resilience):
    named = loopback_hostname()
    async with internal_server() as internal:
        port = internal.port
        urls = [
            f"http://127.0.0.1:{port}/",
            f"http://2130706433:{port}/",
            f"http://0x7f.1:{port}/",
            f"http://0177.0.0.1:{port}/",
            f"http://[::ffff:127.0.0.1]:{port}/",
            f"http://[::1]:{port}/",
            f"http://0.0.0.0:{port}/",
            f"http://10.0.0.1:{port}/",
            f"http://192.168.1.1:{port}/",
            f"http://100.64.0.1:{port}/",
            f"http://169.254.169.254:{port}/latest/meta-data/",
            "http://169.254.169.254/latest/meta-data/",
            f"http://[fe80::1]:{port}/",
            f"http://[2002:7f00:1::]:{port}/",
            f"http://[64:ff9b::7f00:1]:{port}/",
            f"http://localhost:{port}/",
            f"http://localhost.:{port}/",
            *([f"http://{named}:{port}/"] if named else []),
        ]
        before = await footprint(stack)
        answers = [await remote(http, stack, account, url) for url in urls]
        reached = internal.connections
        assert await footprint(stack) == before
        for answer in answers:
            message = refusal(answer, 422)
            assert message.startswith("process: remote_file_url: "), answer
            # Refused for where it leads; only the rooted "localhost." may simply not resolve.
            reasons = ["not allowed", "not a dotted-quad"]
            if "//localhost.:" in answer.case:
                reasons.append("cannot be resolved")
            assert any(reason in message for reason in reasons), answer
        assert reached == 0

        # The control: the same server is reachable, so zero above means refused, not missed.
        async with fetcher_allowing(stack, "127.0.0.0/8", "::1/128"):
            control = await remote(http, stack, account, f"http://127.0.0.1:{port}/x.png")
        assert control.status == 201, control
        assert internal.connections == 1
    resilience.row(
        "ssrf",
        "remote_file_url to internal addresses",
        injected=f"Progimage POST /user/images remote_file_url to {len(urls)} internal URLs on"
        " a counting loopback server's port (127.0.0.1, decimal/hex/octal spellings,"
        " ::ffff:127.0.0.1, ::1, 0.0.0.0, 10/8, 192.168/16, 100.64/10, 169.254.169.254, fe80::1,"
        " 6to4 and NAT64 of loopback, localhost, localhost., "
        f"{named or 'no other loopback name here'}). The only remote fetch: Happo, Haut.ai"
        " and the hash host take bytes only",
        observed=f"all {len(answers)} 422 'remote_file_url: … not allowed / not a dotted-quad /"
        f" cannot be resolved', {reached} TCP connections reached the server, nothing kept;"
        " control: with loopback allowed the same server serves the upload (1 connection)",
        accepted=sum(a.accepted for a in answers),
        effects=reached,
        errors_5xx=fives([*answers, control]),
    )


async def test_redirects_drips_and_endless_bodies_from_an_allowed_server(
    stack, http, account, resilience
):
    # 127.0.0.2 stands for a public server the fetcher may reach; 127.0.0.1 (the counting
    # server) stays internal. Both are real servers, so every refusal is the fetcher's.
    stand_in = Server("127.0.0.2", free_port())
    runner = web.AppRunner(make_app(stand_in), access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, stand_in.host, stand_in.port).start()
    try:
        async with internal_server() as internal:
            port = internal.port
            targets = [
                f"http://127.0.0.1:{port}/x.png",
                f"http://localhost:{port}/x.png",
                f"http://2130706433:{port}/x.png",
                f"http://[::1]:{port}/x.png",
                "http://169.254.169.254/latest/meta-data/",
                "file:///etc/passwd",
            ]
            before = await footprint(stack)
            async with fetcher_allowing(
                stack, "127.0.0.2/32", timeout_seconds=1.5, max_bytes=100_000
            ):
                redirected = [
                    await remote(
                        http, stack, account, stand_in.url("/redirect?to=" + quote(target, safe=""))
                    )
                    for target in targets
                ]
                hops = len(stand_in.hits)
                started = time.monotonic()
                drip = await remote(http, stack, account, stand_in.url("/drip"))
                drip_seconds = time.monotonic() - started
                endless = await remote(http, stack, account, stand_in.url("/endless"))
                huge = await remote(http, stack, account, stand_in.url("/huge-length"))
            reached = internal.connections
    finally:
        stand_in.stop.set()
        await runner.cleanup()
    # Every first hop reached the allowed server, so each refusal is about where it pointed.
    assert hops == len(targets)
    for answer in redirected:
        message = refusal(answer, 422)
        assert "(redirected to " in message or "not file:" in message, answer
    assert reached == 0
    assert "timed out after 1.5 s" in refusal(drip, 422)
    assert drip_seconds < 4.0
    assert "larger than 100000 bytes" in refusal(endless, 422)
    assert "larger than 100000 bytes" in refusal(huge, 422)
    assert await footprint(stack) == before
    resilience.row(
        "ssrf",
        "redirect from an allowed server to internal addresses",
        injected=f"remote_file_url on an allowed stand-in (127.0.0.2) redirecting to {len(targets)}"
        " internal targets (127.0.0.1, localhost, 2130706433, ::1 on the counting server;"
        " 169.254.169.254; file:)",
        observed=f"all {len(redirected)} 422 '… not allowed (redirected to …)', the stand-in"
        f" saw {hops} first hops, {reached} connections reached the internal server",
        accepted=sum(a.accepted for a in redirected),
        effects=reached,
        errors_5xx=fives(redirected),
    )
    resilience.row(
        "ssrf",
        "slow drip, endless body, huge Content-Length",
        injected="remote_file_url on the allowed stand-in: 1 byte/s, an endless body, and a 1 GB"
        " Content-Length that stalls (fetch timeout 1.5 s, cap 100 kB)",
        observed=f"422 'timed out after 1.5 s' in {drip_seconds:.1f} s; 422 'larger than 100000"
        " bytes' for the endless body (cut while streaming) and the announced gigabyte (from"
        " the header); nothing kept",
        accepted=sum(a.accepted for a in (drip, endless, huge)),
        effects=0,
        errors_5xx=fives([drip, endless, huge]),
    )
