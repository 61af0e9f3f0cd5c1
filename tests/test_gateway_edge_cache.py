"""The gateway's edge cache: a derived image and a Happo image's "already uploaded" are
replayed by the gateway to the caller who got them, as ingest gave them, never to anyone else;
nothing a service did not mark is kept."""

from __future__ import annotations

import hashlib

from gateway.domain import EDGE_MAX_ANSWER, EdgeCache, KeptAnswer
from gateway.handlers import EDGE
from shared.http import EDGE_CACHE_HEADER, Principal
from tests.clients_support import bearer as token
from tests.clients_support import happo, post_image, upload, upload_url
from tests.images_support import photo, random_png
from tests.metrics_support import scrape, value
from tests.progimage_support import b64, bearer

#: Headers that differ between any two answers, whoever gives them.
_PER_ANSWER = {"date", "x-request-id", "server"}


async def ingest_gets(http, stack) -> float:
    """How many GET and HEAD requests ingest has answered so far (its /metrics aside)."""
    samples = await scrape(http, stack.service_urls["ingest"])
    return sum(
        value(samples, "darkroom_http_requests_total", method=method)
        - value(samples, "darkroom_http_requests_total", method=method, route="/metrics")
        for method in ("GET", "HEAD")
    )


async def upload_photo(http, stack, account) -> str:
    async with http.post(
        f"{stack.url}/user/images",
        json={"process": {"file": b64(photo(480, 320, ".jpg", 85))}},
        headers=bearer(account),
    ) as response:
        assert response.status == 201, await response.text()
        return (await response.json())["data"]["id"]


def headers_of(response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower() not in _PER_ANSWER}


async def test_a_derived_image_is_replayed_by_the_gateway_to_its_owner_only(
    stack, http, account, other_account
):
    image_id = await upload_photo(http, stack, account)
    url = f"{stack.url}/user/images/{image_id}/derived?thumb_w=120&quality=70"
    kept_before = len(stack.apps["gateway"][EDGE])

    async with http.get(url, headers=bearer(account)) as first:
        assert first.status == 200, await first.text()
        body = await first.read()
        first_headers = headers_of(first)
    assert EDGE_CACHE_HEADER.lower() not in first_headers  # internal: never shown to a client
    assert len(stack.apps["gateway"][EDGE]) == kept_before + 1

    asked = await ingest_gets(http, stack)
    async with http.get(url, headers={**bearer(account), "Origin": "https://app.example"}) as hit:
        assert hit.status == 200
        assert await hit.read() == body
        replayed = headers_of(hit)
    # The same answer, CORS added as for any answer to a cross-origin caller.
    assert replayed.pop("access-control-allow-origin") == "*"
    for cors in ("access-control-expose-headers", "vary"):
        replayed.pop(cors)
    assert replayed == first_headers
    async with http.head(url, headers=bearer(account)) as head:
        assert head.status == 200
        assert int(head.headers["Content-Length"]) == len(body)
        assert head.headers["ETag"] == first.headers["ETag"]
    # Two answers, neither asked of ingest.
    assert await ingest_gets(http, stack) == asked
    # A conditional or partial request goes to ingest, which answers it.
    async with http.get(
        url, headers={**bearer(account), "If-None-Match": first.headers["ETag"]}
    ) as unchanged:
        assert unchanged.status == 304
    async with http.get(url, headers={**bearer(account), "Range": "bytes=2-11"}) as part:
        assert part.status == 206
        assert await part.read() == body[2:12]
    assert await ingest_gets(http, stack) == asked + 2
    asked += 2

    # Someone else asking for the same URL is asked about by ingest, and refused.
    async with http.get(url, headers=bearer(other_account)) as stranger:
        assert stranger.status == 404
        assert await stranger.read() != body
    async with http.get(url) as anonymous:
        assert anonymous.status == 401
    assert await ingest_gets(http, stack) == asked + 1


async def test_a_deleted_hash_host_file_is_gone_at_once_through_the_gateway(stack, http, account):
    # Hash-host files can be deleted, so ingest never marks them: every GET reaches ingest,
    # and the one after the deletion is a 404, not a replay.
    sha256 = (await upload(http, stack, random_png(), headers=token(account["token"])))["hash"]
    kept_before = len(stack.apps["gateway"][EDGE])
    url = f"{stack.url}/f/{sha256}"
    asked = await ingest_gets(http, stack)
    for _ in range(2):
        async with http.get(url, headers=token(account["token"])) as response:
            assert response.status == 200
    assert await ingest_gets(http, stack) == asked + 2
    assert len(stack.apps["gateway"][EDGE]) == kept_before
    async with http.delete(
        f"{stack.url}/api/files/{sha256}", headers=token(account["token"])
    ) as response:
        assert response.status == 200
    async with http.get(url, headers=token(account["token"])) as response:
        assert response.status == 404


async def test_an_image_already_uploaded_is_answered_by_the_gateway_to_that_account(
    stack, http, account, other_account
):
    data = random_png()
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - what the Happo clients send
    url = f"{stack.url}/api/images/{md5}/upload-url"
    status, grant = await upload_url(http, stack, account, md5)
    assert status == 200 and grant["uploadUrl"] is not None  # new: never kept
    status, _ = await post_image(http, grant["uploadUrl"], account, data)
    assert status == 200
    async with http.get(url, headers=happo(account)) as first:
        assert first.status == 200
        answer = await first.json()
    assert answer["uploadUrl"] is None
    asked = await ingest_gets(http, stack)
    for _ in range(3):
        async with http.get(url, headers=happo(account)) as again:
            assert again.status == 200
            assert await again.json() == answer
            assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert await ingest_gets(http, stack) == asked
    # Another account holds no such image: ingest is asked and offers it an upload.
    status, theirs = await upload_url(http, stack, other_account, md5)
    assert status == 200 and theirs["uploadUrl"] is not None
    assert await ingest_gets(http, stack) == asked + 1


def kept(size: int) -> KeptAnswer:
    return KeptAnswer((("Content-Type", "image/jpeg"),), b"x" * size)


def test_the_edge_cache_holds_to_its_byte_budget_least_recently_used_out_first():
    cache = EdgeCache(max_bytes=3 * (100_000 + 2048))  # three entries and their bookkeeping
    keys = [("token", "a", "u", "c", f"/p{i}") for i in range(4)]
    for key in keys[:3]:
        assert cache.keep(key, kept(100_000))
    assert cache.get(keys[0]) is not None  # used: the second is now the oldest
    assert cache.keep(keys[3], kept(100_000))
    assert cache.get(keys[1]) is None
    assert [cache.get(k) is not None for k in (keys[0], keys[2], keys[3])] == [True] * 3
    # Larger than an entry may be (a full-size image): streamed every time, never kept.
    assert not cache.keep(("token", "a", "u", "c", "/big"), kept(EDGE_MAX_ANSWER + 1))
    assert not EdgeCache(max_bytes=1000).keep(keys[0], kept(1000))
    assert len(cache) == 3


def test_an_edge_cache_entry_is_the_callers_whatever_address_they_call_from():
    ada = Principal("token", "acct", "ada", "cred-1", client_address="10.0.0.1")
    moved = Principal("token", "acct", "ada", "cred-1", client_address="10.0.0.2")
    other = Principal("token", "acct", "bob", "cred-2", client_address="10.0.0.1")
    path = "/user/images/1/derived?thumb_w=10"
    assert EdgeCache.key(ada, path) == EdgeCache.key(moved, path)
    assert EdgeCache.key(ada, path) != EdgeCache.key(other, path)
    assert EdgeCache.key(ada, path) != EdgeCache.key(ada, path + "0")
