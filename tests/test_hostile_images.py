"""Hostile image files uploaded through the gateway, the way an attacker would send them.

Why this file exists: every upload dialect funnels into one validator (``domain.examine``) and
one libvips allow-list, so a regression in either is a platform-wide hole. These tests send
decompression bombs, truncated files and formats outside the allow-list through the public
API — the hash host (JSON and ``curl``'s plain-text answer), Progimage base64 and the Happo
Image API — and check the answer each dialect documents, that a refusal leaves no record and
no blob, and, because this pytest process *is* the ingest and processing process, that
refusing the bomb set costs almost no memory. Every family writes its RESILIENCE.md row from
the real answers. Hostile metadata and polyglots are tested in test_hostile_image_payloads.py,
derived-image bombs in test_hostile_derived_images.py, remote-fetch SSRF in
test_hostile_remote_urls.py; the builders and dialects they share are hostile_images_support.py.
"""

from __future__ import annotations

import base64
import struct
import time
import zlib

import pytest
import pyvips

from tests.hostile_images_support import (
    METADATA_FIELDS,
    RSS_BOUND_MB,
    Answer,
    Hostile,
    PeakRss,
    events_of,
    fives,
    footprint,
    forget_hashhost_file,
    gif,
    noise,
    progimage_variants,
    refusal,
    via_happo,
    via_hashhost,
    via_hashhost_text,
    via_progimage,
)

# --- hostile files ---------------------------------------------------------------------------


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
        # The header reads fine; the full decode ingest forces once is what fails (and, for
        # the JPEG without its end marker, which sometimes decodes clean, the scan check).
        assert "is not a valid" in refusal(answer, 422), answer
    resilience.row(
        "images",
        "truncated images",
        injected=f"{len(cases)} files (PNG, JPEG, WebP, GIF of random pixels cut at half; a JPEG"
        " without its end marker) x 4 dialects",
        observed=f"all {len(answers)} refused: 422 'not a valid <format> image' from the full"
        " decode at upload, or the JPEG's missing end marker (Happo: 415 for non-PNG); no"
        " record, no blob",
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
