"""Coverage-guided fuzz targets (atheris) for the parsers that read untrusted bytes first: the
``Authorization`` header (Basic and Bearer/JWT), JWT verification, upload sniffing and
examination (libvips headers), base64 images, byte ranges, Progimage process requests and
signed upload tokens.

Run one as ``python -m tests.fuzz_targets TARGET -max_total_time=SECONDS``; tests/test_fuzz.py
runs each, bounded. A target fails only on an exception outside the platform's error hierarchy
(each parser's documented refusal is a :class:`shared.errors.DarkroomError`) or a crash.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import aiohttp  # noqa: F401  (imported uninstrumented: only Darkroom's own code is measured)
import atheris
import authlib.jose  # noqa: F401
import pyvips  # noqa: F401

with atheris.instrument_imports(include=["services", "shared"]):
    from services.auth import domain as auth
    from services.ingest import content_checks
    from services.ingest.happo import domain as happo
    from services.ingest.progimage import domain as progimage
    from shared import delivery, errors
    from shared.imaging import refuse_untrusted_loaders

SECRET = "s" * 32
KEY = "k" * 20
LIMITS = content_checks.Limits(max_bytes=1 << 20, max_pixels=4_000_000, max_frames=20)


def _text(data: bytes) -> str:
    return atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))


def authorization(data: bytes) -> None:
    auth.parse_authorization(_text(data))


def jwt(data: bytes) -> None:
    token = _text(data)
    auth.jwt_key_id(token)
    auth.verify_jwt(token, KEY, SECRET)


def upload(data: bytes) -> None:
    content_checks.sniff(data[:64])
    content_checks.examine(data, LIMITS)


def base64_image(data: bytes) -> None:
    progimage.decode_base64_image(_text(data), 1 << 20)


def byte_range(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    size = provider.ConsumeIntInRange(0, 1 << 40)
    header = provider.ConsumeUnicodeNoSurrogates(200)
    answer = delivery.parse_range(header, size)
    if answer is not None:
        start, end = answer
        assert 0 <= start < end <= size, (header, size, answer)  # [start, end)


def process_request(data: bytes) -> None:
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return
    if isinstance(body, dict):
        progimage.parse_process_request(body, 10)


def upload_token(data: bytes) -> None:
    happo.verify_upload_token(SECRET, _text(data), 0.0)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "authorization": authorization,
    "jwt": jwt,
    "upload": upload,
    "base64_image": base64_image,
    "byte_range": byte_range,
    "process_request": process_request,
    "upload_token": upload_token,
}


def main() -> None:
    """``python -m tests.fuzz_targets TARGET [libFuzzer flags]``."""
    target = TARGETS[sys.argv[1]]
    refuse_untrusted_loaders()

    def one_input(data: bytes) -> None:
        try:
            target(data)
        except errors.DarkroomError:
            pass

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
