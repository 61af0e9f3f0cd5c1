"""Every blob-store key format of the platform, built and parsed here and nowhere else.

The store holds four kinds of object, each under its own prefix so a sweep of one kind never
touches another:

- ``sha256/<aa>/<bb>/<sha256>``: bytes stored once by content (originals, rendered images,
  hash-host files), fanned out on two levels so no directory of a local store grows huge;
- ``derived/<aa>/<bb>/<original sha256>/<transform digest>.<ext>``: a derivative, under its
  original's prefix so every derivative goes when the original goes;
- ``diffs/<aa>/<bb>/<before>-<after>-<options digest>.png``: a diff image, never under an
  original's prefix, because it belongs to two originals and to the reports that compared them;
- ``packages/<sha256>``: a Happo package archive, stored once by content.
"""

from __future__ import annotations

import re

BLOB_PREFIX = "sha256/"
DERIVATIVE_PREFIX = "derived/"
DIFF_PREFIX = "diffs/"
PACKAGE_PREFIX = "packages/"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLOB_KEY = re.compile(r"^sha256/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})$")
_DERIVATIVE_KEY = re.compile(r"^derived/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})/[^/]+$")


def is_sha256(value: str) -> bool:
    """True when ``value`` is a lower-case SHA-256 hex digest."""
    return bool(_SHA256.match(value))


def _fan_out(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def blob_key(sha256: str) -> str:
    """The store key of the bytes whose SHA-256 is ``sha256``; ValueError for anything that is
    not a digest (a key is never built from unchecked input)."""
    if not is_sha256(sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return f"{BLOB_PREFIX}{_fan_out(sha256)}"


def sha256_of_blob_key(key: str) -> str | None:
    """The digest a well-formed content key names, or ``None`` for any other key (including one
    whose fan-out directories disagree with its digest)."""
    match = _BLOB_KEY.match(key)
    if match is None or match[3][:2] != match[1] or match[3][2:4] != match[2]:
        return None
    return match[3]


def derivatives_prefix(original_sha256: str) -> str:
    """The key prefix under which every derivative of ``original_sha256`` lives (so they can
    go when the original goes)."""
    return f"{DERIVATIVE_PREFIX}{_fan_out(original_sha256)}/"


def derivative_key(original_sha256: str, transform_digest: str, extension: str) -> str:
    """The store key of the derivative of ``original_sha256`` made by the transform whose
    canonical digest is ``transform_digest``, encoded as ``extension``."""
    return f"{derivatives_prefix(original_sha256)}{transform_digest}.{extension}"


def sha256_of_derivative_key(key: str) -> str | None:
    """The original's digest in a derivative's store key, or ``None`` for any other key."""
    match = _DERIVATIVE_KEY.match(key)
    if match is None or match[3][:2] != match[1] or match[3][2:4] != match[2]:
        return None
    return match[3]


def entity_tag(key: str) -> str:
    """The entity tag (ETag) of the immutable object under a derived or diff ``key``: the digest
    its name carries (the transform's, or the pair's and options'), without the extension. Its
    URL names the original or the comparison, not these bytes, so the key says what they are."""
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


def diff_key(before_sha256: str, after_sha256: str, options_digest: str) -> str:
    """The store key of the diff PNG of ``before`` → ``after`` under the options whose digest
    is ``options_digest``."""
    return (
        f"{DIFF_PREFIX}{before_sha256[:2]}/{before_sha256[2:4]}/"
        f"{before_sha256}-{after_sha256}-{options_digest}.png"
    )


def package_key(sha256: str) -> str:
    """The store key of a package archive's bytes."""
    return f"{PACKAGE_PREFIX}{sha256}"


def sha256_of_package_key(key: str) -> str | None:
    """The digest a package key names, or ``None`` for any other key."""
    if not key.startswith(PACKAGE_PREFIX):
        return None
    digest = key[len(PACKAGE_PREFIX) :]
    return digest if is_sha256(digest) else None
