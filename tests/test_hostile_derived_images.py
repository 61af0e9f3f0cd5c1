"""Derived-image bombs: sizes, corners and turns asked of the processing service that would
make an enormous image from a small one.

Through ``GET /user/images/{id}/derived`` and Progimage's ``POST /user/images`` options, these
tests check that every oversize option is a 422 naming it with no derivative made, that the
largest box allowed never enlarges a small image, and that a turn whose result would outgrow
DARKROOM_MAX_PIXELS is refused from its lazily known size in bounded memory (this pytest
process is also the processing process). Each writes its RESILIENCE.md row.
"""

from __future__ import annotations

import hashlib

import pyvips

from shared.store_keys import derivatives_prefix
from tests.hostile_images_support import (
    RSS_BOUND_MB,
    Answer,
    Hostile,
    PeakRss,
    bearer,
    fives,
    footprint,
    noise,
    read_body,
    records,
    refusal,
    via_progimage,
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
