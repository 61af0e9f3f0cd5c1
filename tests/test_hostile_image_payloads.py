"""Valid images that carry something hostile: huge or malformed EXIF/APP segments, and
polyglots (an image that is also a ZIP, a page or a script).

They are images, so they are accepted; what these tests check through the public API is what
becomes of the payload: the hash host keeps the bytes exactly and serves them as ``image/*``
with nosniff, Progimage re-encodes variants without metadata or payload, a segment that runs
past the file is a refusal that leaves nothing, and bytes that start as HTML are never an
image. Each family writes its RESILIENCE.md row from the real answers.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Iterable

import pyvips

from tests.hostile_images_support import (
    METADATA_FIELDS,
    Answer,
    Hostile,
    fives,
    footprint,
    forget_hashhost_file,
    gif,
    noise,
    progimage_variants,
    refusal,
    via_happo,
    via_hashhost,
    via_progimage,
)

# --- hostile metadata --------------------------------------------------------------------------


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
