"""Ingest's pure rules: sniffing, image validation, keys, upload tokens, hashes, ranges."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
import pyvips

from services.ingest import domain
from shared import errors

LIMITS = domain.Limits(max_bytes=1_000_000, max_pixels=10_000, max_frames=3)


def test_sniff_reads_the_bytes_not_the_name():
    png = pyvips.Image.black(4, 4).write_to_buffer(".png")
    assert domain.sniff(png) is domain.PNG
    assert domain.sniff(b"\xff\xd8\xff\xe0rest") is domain.JPEG
    assert domain.sniff(b"GIF89a...") is domain.GIF
    assert domain.sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") is domain.WEBP
    assert domain.sniff(b"%PDF-1.7") is domain.PDF
    assert domain.sniff(b"\xef\xbb\xbf  <!DocType HTML><p>") is domain.HTML
    assert domain.sniff(b'<?xml version="1.0"?><svg onload="x">') is domain.HTML
    assert domain.sniff("plain text, é".encode()) is domain.TEXT
    assert domain.sniff(b"\x00\x01\x02") is domain.BINARY


def test_examine_refuses_bombs_from_the_header_and_fakes_on_decode():
    ok = domain.examine(pyvips.Image.black(100, 100).write_to_buffer(".png"), LIMITS)
    assert (ok.format, ok.width, ok.height, ok.frames) == ("png", 100, 100, 1)
    with pytest.raises(errors.InvalidRequest, match="pixels"):
        domain.examine(pyvips.Image.black(101, 100).write_to_buffer(".png"), LIMITS)
    frames = pyvips.Image.new_from_memory(os.urandom(4 * 16 * 3), 4, 16, 3, "uchar").copy()
    frames.set_type(pyvips.GValue.gint_type, "page-height", 4)  # four distinct 4x4 frames
    gif = frames.write_to_buffer(".gif")
    assert domain.examine(gif, domain.Limits(10**6, 10**6, 4)).frames == 4
    with pytest.raises(errors.InvalidRequest, match="frames"):
        domain.examine(gif, LIMITS)
    with pytest.raises(errors.InvalidRequest):
        domain.examine(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, LIMITS)
    with pytest.raises(errors.UnsupportedMediaType):
        domain.examine(b"hello", LIMITS, accept=frozenset({domain.PNG}))
    with pytest.raises(errors.BadRequest):
        domain.examine(b"", LIMITS)
    assert domain.examine(b"hello", LIMITS).media_type == "text/plain"


def test_blob_keys_round_trip():
    sha = hashlib.sha256(b"x").hexdigest()
    key = domain.blob_key(sha)
    assert key == f"sha256/{sha[:2]}/{sha[2:4]}/{sha}"
    assert domain.sha256_of_key(key) == sha
    assert domain.sha256_of_key(f"sha256/00/00/{sha}") is None
    with pytest.raises(ValueError):
        domain.blob_key("../etc/passwd")


def test_file_paths_name_one_hash():
    sha = "a" * 64
    for tail in (sha, f"{sha}.png", f"{sha}.tar.gz", f"{sha}/any name.jpg", sha.upper()):
        assert domain.file_hash_of_path(tail) == sha
    for tail in ("a" * 63, f"{sha}x", "../" + sha):
        assert domain.file_hash_of_path(tail) is None


def test_upload_tokens_verify_expire_and_resist_tampering():
    token = domain.sign_upload_token("key", "acc", "h", int(time.time()) + 60)
    grant = domain.verify_upload_token("key", token, time.time())
    assert (grant.account_id, grant.hash) == ("acc", "h")
    with pytest.raises(errors.Forbidden, match="not valid"):
        domain.verify_upload_token("other key", token, time.time())
    with pytest.raises(errors.Forbidden, match="not valid"):
        domain.verify_upload_token("key", "x" + token, time.time())
    with pytest.raises(errors.Forbidden, match="expired"):
        domain.verify_upload_token("key", token, time.time() + 61)
    assert domain.sign_upload_token("key", "acc", "h", 1) != domain.sign_upload_token(
        "key", "acc", "h", 1
    )  # each URL has its own jti


def test_client_hashes_are_checked_when_recognisable():
    data = b"png bytes"
    domain.check_client_hash(hashlib.md5(data).hexdigest(), data)  # noqa: S324
    domain.check_client_hash(hashlib.sha256(data).hexdigest().upper(), data)
    domain.check_client_hash("my-screenshot-1", data)
    with pytest.raises(errors.InvalidRequest):
        domain.check_client_hash("0" * 32, data)


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
    assert domain.parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0", "bytes=150-200"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(domain.RangeNotSatisfiable):
        domain.parse_range(header, 100)


def test_filenames_are_cleaned():
    assert domain.clean_filename("C:\\Users\\x\\photo.png") == "photo.png"
    assert domain.clean_filename("../../etc/passwd") == "passwd"
    assert domain.clean_filename("a\x00b\nc.txt") == "abc.txt"
    assert domain.clean_filename("") == "file"
    assert domain.extension_for("archive.TAR", "bin") == "tar"
    assert domain.extension_for("noext", "png") == "png"
