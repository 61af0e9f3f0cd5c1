"""Progimage images through the gateway, the way a client drives them: ``POST /user/images``
(single and bulk, base64, remote URL, an existing image), ``GET /user/images``, the public
``/uploads/…`` URLs, and the refusals of the seed's error table. The pixels are checked."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
import pyvips
from aiohttp import web

from services.ingest.progimage.handlers import PROGIMAGE
from shared.remote import RemoteFetcher, RemotePolicy
from shared.runtime import POOL, STORE
from tests.conftest import free_port
from tests.images_support import photo
from tests.progimage_support import b64, bearer, fetch_image


async def post_images(http, stack, account, process) -> aiohttp.ClientResponse:
    return await http.post(
        f"{stack.url}/user/images", json={"process": process}, headers=bearer(account)
    )


async def stored_keys(stack) -> set[str]:
    return {key async for key in stack.apps["ingest"][STORE].keys("")}


async def test_single_upload_answers_the_seed_shape_and_every_url_serves(stack, http, account):
    response = await post_images(http, stack, account, {"file": b64(photo(seed=1))})
    assert response.status == 201, await response.text()
    data = (await response.json())["data"]
    assert data["user_id"] == account["user_id"]
    uuid.UUID(data["id"])
    assert data["created_at"].endswith("Z") and len(data["created_at"]) == 24
    file = data["file"]
    assert file["url"].startswith(stack.url + f"/uploads/image/file/{data['id']}/")
    assert file["thumb"]["url"].rsplit("/", 1)[1].startswith("thumb_")
    assert file["mini"]["url"].rsplit("/", 1)[1].startswith("mini_")
    image, raw, served = await fetch_image(http, file["url"])
    assert (image.width, image.height) == (320, 200)
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Cache-Control"].startswith("public")
    thumb, _, _ = await fetch_image(http, file["thumb"]["url"])
    assert max(thumb.width, thumb.height) <= 300
    mini, _, _ = await fetch_image(http, file["mini"]["url"])
    assert (mini.width, mini.height) == (64, 40)
    async with http.get(file["url"], headers={"If-None-Match": served.headers["ETag"]}) as again:
        assert again.status == 304
    # Metadata is stripped: no EXIF, ICC or XMP in what we serve.
    assert not any(name in image.get_fields() for name in ("exif-data", "icc-profile-data"))
    assert len(raw) > 0


async def test_bulk_upload_answers_the_array_shape_and_lists_newest_first(
    stack, http, other_account
):
    account = stack.create_account("Bulk Uploader")
    response = await post_images(
        http,
        stack,
        account,
        [{"file": b64(photo(seed=10)), "thumb_w": "50"}, {"file": b64(photo(seed=11))}],
    )
    assert response.status == 201, await response.text()
    data = (await response.json())["data"]
    assert [sorted(item) for item in data] == [
        ["created_at", "id", "secure_thumbnail_url", "secure_url", "thumbnail_url", "url"]
    ] * 2
    thumb, _, _ = await fetch_image(http, data[0]["thumbnail_url"])
    assert thumb.width == 50
    for item in data:
        await fetch_image(http, item["secure_url"])
    async with http.get(f"{stack.url}/user/images", headers=bearer(account)) as listed:
        assert listed.status == 200
        body = await listed.json()
    assert [item["id"] for item in body["data"]] == [data[1]["id"], data[0]["id"]]
    assert body["data"][0] == data[1]
    async with http.get(
        f"{stack.url}/user/images?offset=1&limit=1", headers=bearer(account)
    ) as page:
        assert [item["id"] for item in (await page.json())["data"]] == [data[0]["id"]]
    async with http.get(f"{stack.url}/user/images?limit=x", headers=bearer(account)) as bad:
        assert bad.status == 400
        assert (await bad.json())["error"]["code"] == "bad_request"
    async with http.get(f"{stack.url}/user/images", headers=bearer(other_account)) as theirs:
        assert all(
            item["id"] not in {d["id"] for d in data} for item in (await theirs.json())["data"]
        )


async def test_each_option_changes_the_pixels(stack, http, account):
    source = photo(400, 200, seed=20)
    plain = await post_images(http, stack, account, {"file": b64(source)})
    assert plain.status == 201
    plain_url = (await plain.json())["data"]["file"]["url"]
    base, _, _ = await fetch_image(http, plain_url)

    rotated = await post_images(http, stack, account, {"file": b64(source), "rotation": 90})
    image, _, _ = await fetch_image(http, (await rotated.json())["data"]["file"]["url"])
    assert (image.width, image.height) == (200, 400)
    # Clockwise: the original's top-left corner is now at the top-right.
    assert image(199, 0)[:3] == base(0, 0)[:3]

    boxed = await post_images(
        http, stack, account, {"file": b64(source), "thumb_w": "100", "thumb_h": 300}
    )
    thumb, _, _ = await fetch_image(http, (await boxed.json())["data"]["file"]["thumb"]["url"])
    assert (thumb.width, thumb.height) == (100, 50)

    rounded = await post_images(http, stack, account, {"file": b64(source), "round_corners": 30})
    image, _, _ = await fetch_image(http, (await rounded.json())["data"]["file"]["url"])
    assert image.hasalpha()
    assert image(0, 0)[3] == 0 and image(399, 199)[3] == 0
    assert image(200, 100)[3] == 255

    jpeg = photo(400, 200, ".jpg", seed=21)
    sizes = []
    for quality in (95, 30):
        response = await post_images(http, stack, account, {"file": b64(jpeg), "quality": quality})
        _, raw, served = await fetch_image(http, (await response.json())["data"]["file"]["url"])
        assert served.headers["Content-Type"] == "image/jpeg"
        sizes.append(len(raw))
    assert sizes[1] < sizes[0] * 0.7

    filtered = await post_images(http, stack, account, {"file": b64(source), "filter": "kelvin"})
    image, _, _ = await fetch_image(http, (await filtered.json())["data"]["file"]["url"])
    # kelvin warms: more red, less blue than the unfiltered image.
    assert image[0].avg() > base[0].avg()
    assert image[2].avg() < base[2].avg()


async def test_existing_image_reprocessed_by_id_shares_the_original(stack, http, account):
    first = await post_images(http, stack, account, {"file": b64(photo(seed=30))})
    image_id = (await first.json())["data"]["id"]
    again = await post_images(http, stack, account, {"image_id": image_id, "rotation": "270"})
    assert again.status == 201, await again.text()
    data = (await again.json())["data"]
    assert data["id"] != image_id
    image, _, _ = await fetch_image(http, data["file"]["url"])
    assert (image.width, image.height) == (200, 320)
    async with stack.apps["ingest"][POOL].acquire() as conn:
        shas = await conn.fetch(
            "SELECT DISTINCT sha256 FROM progimage_images WHERE id = ANY($1::uuid[])",
            [image_id, data["id"]],
        )
    assert len(shas) == 1


async def test_the_same_request_is_computed_once(stack, http, account):
    item = {"file": b64(photo(seed=40)), "filter": "lomo", "quality": 70}
    first = await post_images(http, stack, account, item)
    second = await post_images(http, stack, account, item)
    assert first.status == second.status == 201
    urls = [(await r.json())["data"]["file"]["url"] for r in (first, second)]
    assert urls[0] != urls[1]  # two images…
    bodies = [(await fetch_image(http, url))[1] for url in urls]
    assert bodies[0] == bodies[1]  # …one derivative
    async with stack.apps["processing"][POOL].acquire() as conn:
        counts = await conn.fetch(
            "SELECT key, count(*) AS n FROM derivatives GROUP BY key HAVING count(*) > 1"
        )
    assert counts == []


async def derived(http, stack, account, image_id: str, query: str, **kwargs):
    return await http.get(
        f"{stack.url}/user/images/{image_id}/derived?{query}",
        headers={**bearer(account), **kwargs.pop("headers", {})},
        **kwargs,
    )


async def derivative_rows(stack) -> int:
    async with stack.apps["processing"][POOL].acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM derivatives")


async def test_a_derived_image_is_made_on_first_request_then_served_from_the_store(
    stack, http, account
):
    first = await post_images(http, stack, account, {"file": b64(photo(640, 400, ".jpg", 80))})
    image_id = (await first.json())["data"]["id"]
    rows = await derivative_rows(stack)
    query = "thumb_w=300&quality=80&rotation=90"
    cold = await derived(http, stack, account, image_id, query)
    assert cold.status == 200, await cold.text()
    body = await cold.read()
    image = pyvips.Image.new_from_buffer(body, "")
    # Turned a quarter, then fitted 300 wide: 400x640 → 300x480.
    assert (image.width, image.height) == (300, 480)
    assert cold.headers["Content-Type"] == "image/jpeg"
    assert cold.headers["Cache-Control"].startswith("private")
    assert await derivative_rows(stack) == rows + 1
    # The same options spelled otherwise name the same derivative: computed once.
    warm = await derived(http, stack, account, image_id, "rotation=90.0&thumb_w=300&quality=80")
    assert warm.status == 200 and await warm.read() == body
    assert warm.headers["ETag"] == cold.headers["ETag"]
    assert await derivative_rows(stack) == rows + 1
    again = await derived(
        http, stack, account, image_id, query, headers={"If-None-Match": cold.headers["ETag"]}
    )
    assert again.status == 304
    part = await derived(http, stack, account, image_id, query, headers={"Range": "bytes=0-9"})
    assert part.status == 206 and await part.read() == body[:10]
    png = await derived(http, stack, account, image_id, "thumb_h=50&format=png")
    assert png.status == 200 and png.headers["Content-Type"] == "image/png"
    assert pyvips.Image.new_from_buffer(await png.read(), "").height == 50


async def test_a_derived_image_whose_client_went_away_is_not_made(stack, http, account):
    """Clients that give up (here: a 0.3 s timeout) while processing is busy withdraw their
    requests: processing skips them instead of leaving a queue of images nobody reads, and
    the same request asked again later is made as usual."""
    from tests.metrics_support import scrape, value

    smooth = pyvips.Image.xyz(4000, 3000)
    big = (smooth[0] / 16).bandjoin([smooth[1] / 12, smooth[0] / 32]).cast("uchar")
    first = await post_images(http, stack, account, {"file": b64(big.jpegsave_buffer(Q=70))})
    assert first.status == 201, await first.text()
    image_id = (await first.json())["data"]["id"]
    metrics_url = stack.service_urls["processing"]

    async def skipped() -> float:
        return value(await scrape(http, metrics_url), "darkroom_processing_skipped_total")

    before = await skipped()
    # Full-size work that keeps both workers busy for a while, queued first.
    heavy = [
        asyncio.ensure_future(derived(http, stack, account, image_id, f"rotation={d}&quality=95"))
        for d in (90, 180, 270, 45, 135, 225, 315, 30)
    ]
    await asyncio.sleep(0.2)
    light = [f"thumb_w={10 + n}" for n in range(3)]
    # Two clients want this one; the first to give up must not withdraw the other's.
    shared = "thumb_w=20"
    patient = asyncio.ensure_future(derived(http, stack, account, image_id, shared))
    given_up = await asyncio.gather(
        *(
            derived(http, stack, account, image_id, query, timeout=aiohttp.ClientTimeout(total=0.3))
            for query in (*light, shared)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, TimeoutError) for outcome in given_up), given_up
    for answer in await asyncio.gather(*heavy, patient):
        assert answer.status == 200, await answer.text()
    deadline = asyncio.get_running_loop().time() + 15
    while await skipped() < before + len(light):
        assert asyncio.get_running_loop().time() < deadline, "the requests were not skipped"
        await asyncio.sleep(0.1)
    rows = await derivative_rows(stack)
    again = await derived(http, stack, account, image_id, light[0])
    assert again.status == 200, await again.text()
    assert pyvips.Image.new_from_buffer(await again.read(), "").width == 10
    assert await derivative_rows(stack) == rows + 1


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("thumb_w=0", "thumb_w"),
        ("quality=101", "quality"),
        ("filter=sepia", "filter"),
        ("format=tiff", "format"),
        ("width=300", "Unknown parameter: width"),
        ("thumb_w=10&thumb_w=20", "more than once"),
        ("rotation=NaN", "rotation"),
    ],
)
async def test_bad_derived_options_are_refused_and_nothing_is_made(
    stack, http, account, query, fragment
):
    first = await post_images(http, stack, account, {"file": b64(photo(seed=81))})
    image_id = (await first.json())["data"]["id"]
    rows, before = await derivative_rows(stack), await stored_keys(stack)
    response = await derived(http, stack, account, image_id, query)
    assert response.status == 422, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "invalid_request" and fragment in error["message"]
    assert await derivative_rows(stack) == rows
    assert await stored_keys(stack) == before


async def test_derived_images_are_the_owners_only(stack, http, account, other_account):
    first = await post_images(http, stack, account, {"file": b64(photo(seed=82))})
    image_id = (await first.json())["data"]["id"]
    for who, path_id in ((other_account, image_id), (account, str(uuid.uuid4())), (account, "x")):
        response = await derived(http, stack, who, path_id, "thumb_w=10")
        assert response.status == 404, (path_id, await response.text())
        assert (await response.json())["error"]["code"] == "not_found"
    async with http.get(f"{stack.url}/user/images/{image_id}/derived?thumb_w=10") as anonymous:
        assert anonymous.status == 401


@pytest.mark.parametrize(
    ("process", "label", "fragment"),
    [
        ([{"file": "@@not base64@@"}], "process[0]", "base64"),
        ([{"file": b64(b"definitely not an image" * 10)}], "process[0]", ""),
        ({"file": b64(photo(seed=50)), "filter": "sepia"}, "process", "filter"),
        (
            {"file": b64(photo(seed=51)), "remote_file_url": "http://example.com/x.png"},
            "process",
            "exactly one",
        ),
        ({"rotation": 90}, "process", "exactly one"),
        ({"file": b64(photo(seed=52)), "quality": 101}, "process", "quality"),
        ({"file": b64(photo(seed=53)), "rotation": "ninety"}, "process", "rotation"),
        ({"file": b64(photo(seed=54)), "thumb_w": True}, "process", "thumb_w"),
        ({"file": b64(photo(seed=55)), "round_corners": 0}, "process", "round_corners"),
        ({"file": b64(photo(seed=56)), "colour": "red"}, "process", "unknown field"),
        ({"image_id": "not-a-uuid"}, "process", "no such image"),
    ],
)
async def test_bad_items_are_refused_with_422_naming_them(
    stack, http, account, process, label, fragment
):
    before = await stored_keys(stack)
    response = await post_images(http, stack, account, process)
    assert response.status == 422, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(label)
    assert fragment in error["message"]
    assert await stored_keys(stack) == before


async def test_one_bad_item_fails_the_bulk_and_nothing_is_kept(stack, http, account):
    account = stack.create_account("All Or Nothing")
    good = [{"file": b64(photo(seed=60 + n))} for n in range(3)]
    before = await stored_keys(stack)
    response = await post_images(
        http, stack, account, [*good[:2], {"file": b64(b"GIF89a" + b"\0" * 64)}, good[2]]
    )
    assert response.status == 422
    assert (await response.json())["error"]["message"].startswith("process[2]")
    assert await stored_keys(stack) == before
    async with http.get(f"{stack.url}/user/images", headers=bearer(account)) as listed:
        assert (await listed.json())["data"] == []


async def test_another_users_image_id_is_not_found(stack, http, account, other_account):
    mine = await post_images(http, stack, account, {"file": b64(photo(seed=70))})
    image_id = (await mine.json())["data"]["id"]
    response = await post_images(http, stack, other_account, {"image_id": image_id})
    assert response.status == 422
    assert "no such image" in (await response.json())["error"]["message"]


async def test_request_shape_and_credentials_are_checked(stack, http, account):
    url = f"{stack.url}/user/images"
    async with http.post(url, json={"process": {"file": "x"}}) as anonymous:
        assert anonymous.status == 401
        assert (await anonymous.json())["error"]["code"] == "bad_credentials"
    async with http.post(url, data=b"{nope", headers=bearer(account)) as broken:
        assert broken.status == 400
        assert (await broken.json())["error"]["code"] == "bad_request"
    for body in ({}, {"process": "x"}, {"process": []}, {"process": {}, "extra": 1}):
        async with http.post(url, json=body, headers=bearer(account)) as refused:
            assert refused.status == 422, body
            assert (await refused.json())["error"]["code"] == "invalid_request"
    async with http.get(f"{stack.url}/uploads/image/file/{uuid.uuid4()}/x.png") as missing:
        assert missing.status == 404
        assert (await missing.json())["error"]["code"] == "not_found"


@asynccontextmanager
async def image_server(body: bytes) -> AsyncIterator[tuple[str, list[str]]]:
    """A web server on loopback that serves ``body`` at /pigeon.png and counts its hits."""
    hits: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=body, content_type="image/png")

    app = web.Application()
    app.router.add_get("/pigeon.png", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/pigeon.png", hits
    finally:
        await runner.cleanup()


async def test_remote_url_on_loopback_is_refused_by_default_and_works_when_allowed(
    stack, http, account
):
    uploads = stack.apps["ingest"][PROGIMAGE]
    async with image_server(photo(seed=80)) as (url, hits):
        refused = await post_images(http, stack, account, {"remote_file_url": url})
        assert refused.status == 422
        assert "not allowed" in (await refused.json())["error"]["message"]
        assert hits == []
        default = uploads.fetcher
        policy = RemotePolicy.from_config(uploads.config)
        loopback = (ipaddress.ip_network("127.0.0.0/8"),)
        allowing = RemoteFetcher(dataclasses.replace(policy, allowed_networks=loopback))
        uploads.fetcher = allowing
        try:
            accepted = await post_images(
                http, stack, account, {"remote_file_url": url, "thumb_w": 80}
            )
        finally:
            uploads.fetcher = default
            await allowing.close()
        assert accepted.status == 201, await accepted.text()
        assert hits == ["/pigeon.png"]
        thumb, _, _ = await fetch_image(
            http, (await accepted.json())["data"]["file"]["thumb"]["url"]
        )
        assert thumb.width == 80
