"""Ingest's pure rules: sniffing, image validation, keys, upload tokens, hashes, ranges."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
import pyvips

from services.ingest import content_checks
from services.ingest.happo import domain as happo
from services.ingest.hashhost import domain as hashhost
from shared import delivery, errors, image_urls, store_keys

LIMITS = content_checks.Limits(max_bytes=1_000_000, max_pixels=10_000, max_frames=3)


def test_sniff_reads_the_bytes_not_the_name():
    png = pyvips.Image.black(4, 4).write_to_buffer(".png")
    assert content_checks.sniff(png) is content_checks.PNG
    assert content_checks.sniff(b"\xff\xd8\xff\xe0rest") is content_checks.JPEG
    assert content_checks.sniff(b"GIF89a...") is content_checks.GIF
    assert content_checks.sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") is content_checks.WEBP
    assert content_checks.sniff(b"%PDF-1.7") is content_checks.PDF
    assert content_checks.sniff(b"\xef\xbb\xbf  <!DocType HTML><p>") is content_checks.HTML
    assert content_checks.sniff(b'<?xml version="1.0"?><svg onload="x">') is content_checks.HTML
    assert content_checks.sniff("plain text, é".encode()) is content_checks.TEXT
    assert content_checks.sniff(b"\x00\x01\x02") is content_checks.BINARY


def test_examine_refuses_bombs_from_the_header_and_fakes_on_decode():
    ok = content_checks.examine(pyvips.Image.black(100, 100).write_to_buffer(".png"), LIMITS)
    assert (ok.format, ok.width, ok.height, ok.frames) == ("png", 100, 100, 1)
    with pytest.raises(errors.InvalidRequest, match="pixels"):
        content_checks.examine(pyvips.Image.black(101, 100).write_to_buffer(".png"), LIMITS)
    frames = pyvips.Image.new_from_memory(os.urandom(4 * 16 * 3), 4, 16, 3, "uchar").copy()
    frames.set_type(pyvips.GValue.gint_type, "page-height", 4)  # four distinct 4x4 frames
    gif = frames.write_to_buffer(".gif")
    assert content_checks.examine(gif, content_checks.Limits(10**6, 10**6, 4)).frames == 4
    with pytest.raises(errors.InvalidRequest, match="frames"):
        content_checks.examine(gif, LIMITS)
    with pytest.raises(errors.InvalidRequest):
        content_checks.examine(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, LIMITS)
    with pytest.raises(errors.UnsupportedMediaType):
        content_checks.examine(b"hello", LIMITS, accept=frozenset({content_checks.PNG}))
    with pytest.raises(errors.BadRequest):
        content_checks.examine(b"", LIMITS)
    assert content_checks.examine(b"hello", LIMITS).media_type == "text/plain"


def test_a_jpeg_must_end_its_last_scan():
    """About one JPEG of random pixels in ten decodes without a single warning once its end
    marker is cut off (the decoder never reads past the last block): such a file is refused by
    the scan check, while nothing a whole JPEG may carry is."""
    limits = content_checks.Limits(10**8, 10**6, 4)

    def decodes_clean(data: bytes) -> bool:
        try:
            pyvips.Image.new_from_buffer(data, "", access="sequential", fail=True).avg()
        except pyvips.Error:
            return False
        return True

    clean_cuts = 0
    for attempt in range(300):
        noise = pyvips.Image.new_from_memory(os.urandom(64 * 64 * 3), 64, 64, 3, "uchar")
        jpeg = noise.jpegsave_buffer(Q=90, interlace=attempt % 2 == 1)  # baseline, progressive
        assert content_checks.examine(jpeg, limits).width == 64
        # Bytes after the end marker (camera padding, appended data) are no reason to refuse.
        assert content_checks.examine(jpeg + b"\x00" * 16, limits).width == 64
        cut = jpeg[:-2]
        clean_cuts += decodes_clean(cut)
        with pytest.raises(errors.InvalidRequest, match="not a valid JPEG"):
            content_checks.examine(cut, limits)
        if clean_cuts >= 3:
            break
    # The case the decode alone lets through was met (and refused) several times.
    assert clean_cuts >= 3


def test_blob_keys_round_trip():
    sha = hashlib.sha256(b"x").hexdigest()
    key = store_keys.blob_key(sha)
    assert key == f"sha256/{sha[:2]}/{sha[2:4]}/{sha}"
    assert store_keys.sha256_of_blob_key(key) == sha
    assert store_keys.sha256_of_blob_key(f"sha256/00/00/{sha}") is None
    with pytest.raises(ValueError):
        store_keys.blob_key("../etc/passwd")


def test_file_paths_name_one_hash():
    sha = "a" * 64
    for tail in (sha, f"{sha}.png", f"{sha}.tar.gz", f"{sha}/any name.jpg", sha.upper()):
        assert image_urls.file_hash_of_path(tail) == sha
    for tail in ("a" * 63, f"{sha}x", "../" + sha):
        assert image_urls.file_hash_of_path(tail) is None


def test_upload_tokens_verify_expire_and_resist_tampering():
    token = happo.sign_upload_token("key", "acc", "h", int(time.time()) + 60)
    grant = happo.verify_upload_token("key", token, time.time())
    assert (grant.account_id, grant.hash) == ("acc", "h")
    with pytest.raises(errors.Forbidden, match="not valid"):
        happo.verify_upload_token("other key", token, time.time())
    with pytest.raises(errors.Forbidden, match="not valid"):
        happo.verify_upload_token("key", "x" + token, time.time())
    with pytest.raises(errors.Forbidden, match="expired"):
        happo.verify_upload_token("key", token, time.time() + 61)
    assert happo.sign_upload_token("key", "acc", "h", 1) != happo.sign_upload_token(
        "key", "acc", "h", 1
    )  # each URL has its own jti


def test_client_hashes_are_checked_when_recognisable():
    data = b"png bytes"
    happo.check_client_hash(hashlib.md5(data).hexdigest(), data)  # noqa: S324
    happo.check_client_hash(hashlib.sha256(data).hexdigest().upper(), data)
    happo.check_client_hash("my-screenshot-1", data)
    with pytest.raises(errors.InvalidRequest):
        happo.check_client_hash("0" * 32, data)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 10)),
        ("bytes=5-", (5, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=90-500", (90, 100)),
        ("bytes=-500", (0, 100)),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=9-3", None),
        ("bytes=x-y", None),
        # Digits outside ASCII ("²", Arabic-Indic) are not numbers in HTTP: the whole body.
        ("bytes=\u00b2-", None),
        ("bytes=0-\u0661", None),
    ],
)
def test_ranges(header, expected):
    assert delivery.parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0", "bytes=150-200"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(delivery.RangeNotSatisfiable):
        delivery.parse_range(header, 100)


def test_filenames_are_cleaned():
    assert hashhost.clean_filename("C:\\Users\\x\\photo.png") == "photo.png"
    assert hashhost.clean_filename("../../etc/passwd") == "passwd"
    assert hashhost.clean_filename("a\x00b\nc.txt") == "abc.txt"
    assert hashhost.clean_filename("") == "file"
    assert hashhost.extension_for("archive.TAR", "bin") == "tar"
    assert hashhost.extension_for("noext", "png") == "png"
