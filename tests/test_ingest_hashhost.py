"""The hash file host through the gateway, as curl and a browser see it: upload, the four URLs,
dedupe across accounts, HTTP caching and ranges, attachments, every bad input (nothing
stored), deletion and the orphan sweeper."""

from __future__ import annotations

import hashlib
import json
import os
import re

import pytest

from services.ingest.blobs import OrphanSweeper
from shared.runtime import FAULTS, POOL, STORE
from shared.store_keys import blob_key
from tests.clients_support import LIMIT, bearer, form, snapshot, upload
from tests.images_support import png_bomb, random_png


async def fetch(client, url: str, headers=None) -> tuple[int, bytes, dict]:
    async with client.get(url, headers=headers or {}) as response:
        return response.status, await response.read(), response.headers


async def test_upload_answers_hash_and_urls_that_all_serve_the_bytes(client, stack):
    data = random_png()
    sha256 = hashlib.sha256(data).hexdigest()
    before = await snapshot(stack)
    # Sent like curl does (raw filename; aiohttp's FormData would percent-encode it).
    async with client.post(
        f"{stack.url}/api/upload", **_multipart([("file", "holiday photo.png", data)])
    ) as response:
        assert response.status == 200
        answer = await response.json()
    base = f"{stack.url}/f/"
    assert answer["hash"] == sha256 and answer["status"] is True
    assert answer["urls"] == {
        "base": base,
        "full": f"{base}{sha256}/holiday%20photo.png",
        "ext": f"{base}{sha256}.png",
        "hash": f"{base}{sha256}",
    }
    assert answer["delete_token"]  # anonymous upload
    for url in (*answer["urls"].values(), f"{base}{sha256}.anything", f"{base}{sha256}/x.jpg"):
        if url == base:
            continue
        status, body, headers = await fetch(client, url)
        assert (status, body) == (200, data), url
        assert headers["Content-Type"] == "image/png"
        assert headers["ETag"] == f'"{sha256}"'
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Accept-Ranges"] == "bytes"
        assert "Content-Disposition" not in headers
    after = await snapshot(stack)
    assert after[0] == sorted([*before[0], blob_key(sha256)])
    assert after[1][:2] == (before[1][0] + 1, before[1][1] + 1)
    status, _, _ = await fetch(client, f"{base}{'0' * 64}")
    assert status == 404


async def test_api_1_answers_plain_ok_hash(client, stack):
    data = random_png()
    async with client.post(f"{stack.url}/upload?api=1", data=form(data)) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        assert await response.text() == f"OK {hashlib.sha256(data).hexdigest()}"
    other = random_png()
    async with client.post(f"{stack.url}/upload", data=form(other, api="1")) as response:
        assert await response.text() == f"OK {hashlib.sha256(other).hexdigest()}"


async def test_same_bytes_from_two_accounts_occupy_one_blob(client, stack, account, other_account):
    data = random_png()
    sha256 = hashlib.sha256(data).hexdigest()
    before = await snapshot(stack)
    first = await upload(client, stack, data, headers=bearer(account["token"]))
    second = await upload(client, stack, data, headers=bearer(other_account["token"]))
    again = await upload(client, stack, data, headers=bearer(account["token"]))
    assert first["hash"] == second["hash"] == again["hash"] == sha256
    assert "delete_token" not in first  # registered to the account
    after = await snapshot(stack)
    assert len(after[0]) == len(before[0]) + 1
    blobs, files = after[1][0] - before[1][0], after[1][1] - before[1][1]
    assert (blobs, files) == (1, 2)  # one blob, one record per account


async def test_image_stored_event_is_recorded_with_the_upload(client, stack, account):
    data = random_png(20, 10)
    sha256 = hashlib.sha256(data).hexdigest()
    await upload(client, stack, data, headers=bearer(account["token"]))
    envelope = await stack.apps["ingest"][POOL].fetchval(
        "SELECT envelope FROM outbox WHERE type = 'image.stored'"
        " AND envelope->'data'->>'hash' = $1",
        sha256,
    )
    assert envelope["data"] == {
        "hash": sha256,
        "account_id": account["account_id"],
        "bytes": len(data),
        "media_type": "image/png",
        "source": "hashhost",
        "format": "png",
        "width": 20,
        "height": 10,
        "frames": 1,
    }


async def test_conditional_and_range_requests(client, stack):
    data = random_png(64, 64)
    answer = await upload(client, stack, data)
    url, etag = answer["urls"]["hash"], f'"{answer["hash"]}"'
    status, body, headers = await fetch(client, url, {"If-None-Match": etag})
    assert (status, body) == (304, b"")
    assert headers["ETag"] == etag
    status, body, _ = await fetch(client, url, {"If-None-Match": '"other"'})
    assert (status, body) == (200, data)
    status, body, headers = await fetch(client, url, {"Range": "bytes=10-19"})
    assert (status, body) == (206, data[10:20])
    assert headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    status, body, _ = await fetch(client, url, {"Range": "bytes=-5"})
    assert (status, body) == (206, data[-5:])
    status, body, _ = await fetch(client, url, {"Range": "bytes=5-"})
    assert (status, body) == (206, data[5:])
    status, body, headers = await fetch(client, url, {"Range": f"bytes={len(data)}-"})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(data)}"
    assert (await _json(body))["error"]["code"] == "range_not_satisfiable"
    # A stale If-Range means the whole (new) body.
    status, body, _ = await fetch(client, url, {"Range": "bytes=0-1", "If-Range": '"x"'})
    assert (status, body) == (200, data)
    async with client.head(url) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(data))
        assert await response.read() == b""


async def _json(body: bytes) -> dict:
    return json.loads(body)


async def test_html_is_served_as_a_sandboxed_attachment(client, stack):
    html = b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>"
    answer = await upload(client, stack, html, filename="page.html")
    for url in (answer["urls"]["hash"], answer["urls"]["full"], answer["urls"]["ext"]):
        status, body, headers = await fetch(client, url, {"Origin": "https://example.org"})
        assert (status, body) == (200, html)
        assert headers["Content-Type"].startswith("text/html")
        assert headers["Content-Disposition"] == "attachment"
        assert headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Access-Control-Allow-Origin"] == "*"
    assert answer["urls"]["ext"].endswith(".html")


async def test_any_file_type_is_accepted(client, stack):
    blob = os.urandom(2000)
    answer = await upload(client, stack, blob, filename="data.bin")
    status, body, headers = await fetch(client, answer["urls"]["ext"])
    assert (status, body) == (200, blob)
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == "attachment"


def _raw(body: bytes, content_type: str | None) -> dict:
    headers = {"Content-Type": content_type} if content_type else {}
    return {"data": body, "headers": headers}


def _multipart(parts: list[tuple[str, str | None, bytes]]) -> dict:
    boundary = "darkroomtestboundary"
    chunks = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
        )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return _raw(body, f"multipart/form-data; boundary={boundary}")


BAD_INPUTS = {
    "empty body": (lambda: _raw(b"", None), 400, "bad_request"),
    "not multipart": (
        lambda: _raw(b'{"file": "x"}', "application/json"),
        415,
        "unsupported_media_type",
    ),
    "garbage multipart": (
        lambda: _raw(b"no boundary here", "multipart/form-data; boundary=zzz"),
        400,
        "bad_request",
    ),
    "missing file field": (lambda: _multipart([("name", None, b"x")]), 400, "bad_request"),
    "wrong field name": (
        lambda: _multipart([("upload", "x.png", random_png())]),
        400,
        "bad_request",
    ),
    "empty file": (lambda: _multipart([("file", "x.png", b"")]), 400, "bad_request"),
    "png header on garbage": (
        lambda: _multipart([("file", "x.png", random_png()[:33] + os.urandom(500))]),
        422,
        "invalid_request",
    ),
    "truncated png": (
        lambda: _multipart([("file", "x.png", random_png(64, 64)[:-40])]),
        422,
        "invalid_request",
    ),
    "decompression bomb": (
        lambda: _multipart([("file", "bomb.png", png_bomb())]),
        422,
        "invalid_request",
    ),
    "over the limit": (
        lambda: _multipart([("file", "big.bin", os.urandom(LIMIT + 1))]),
        413,
        "payload_too_large",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
async def test_bad_input_is_refused_and_changes_nothing(client, stack, account, case):
    make, status, code = BAD_INPUTS[case]
    before = await snapshot(stack)
    async with client.post(
        f"{stack.url}/api/upload", **_with_auth(make(), account["token"])
    ) as response:
        assert response.status == status, await response.text()
        body = await response.json()
        assert body["error"]["code"] == code
        assert body["error"]["message"]
    async with client.post(f"{stack.url}/upload?api=1", **make()) as response:
        assert response.status == status
        text = await response.text()
        assert text.startswith("ERROR "), text
        assert response.content_type == "text/plain"
    async with client.post(f"{stack.url}/upload", **make()) as response:
        assert response.status == status
        assert response.content_type == "text/html"
    assert await snapshot(stack) == before


def _with_auth(request: dict, token: str) -> dict:
    return {**request, "headers": {**request["headers"], **bearer(token)}}


async def test_owner_deletes_and_the_blob_goes_when_unreferenced(
    client, stack, account, other_account
):
    data = random_png()
    sha256 = hashlib.sha256(data).hexdigest()
    before = await snapshot(stack)
    await upload(client, stack, data, headers=bearer(account["token"]))
    await upload(client, stack, data, headers=bearer(other_account["token"]))
    url = f"{stack.url}/api/files/{sha256}"
    async with client.delete(url, headers=bearer(account["token"])) as response:
        assert response.status == 200
        assert await response.json() == {"hash": sha256, "deleted": True}
    async with client.delete(url, headers=bearer(account["token"])) as response:
        assert response.status == 404  # not this account's any more
    # Still referenced by the other account: bytes and URL stay.
    assert blob_key(sha256) in (await snapshot(stack))[0]
    assert (await fetch(client, f"{stack.url}/f/{sha256}"))[0] == 200
    async with client.delete(url, headers=bearer(other_account["token"])) as response:
        assert response.status == 200
    after = await snapshot(stack)
    assert after[0] == before[0]
    assert after[1][:2] == before[1][:2]
    assert (await fetch(client, f"{stack.url}/f/{sha256}"))[0] == 404


async def test_anonymous_upload_is_deleted_with_its_token(client, stack, account):
    data = random_png()
    before = await snapshot(stack)
    first = await upload(client, stack, data)
    second = await upload(client, stack, data)
    assert first["delete_token"] != second["delete_token"]
    url = f"{stack.url}/api/files/{first['hash']}"
    async with client.delete(url) as response:
        assert response.status == 401
    async with client.delete(url, params={"delete_token": "wrong"}) as response:
        assert response.status == 404
    async with client.delete(url, headers=bearer(account["token"])) as response:
        assert response.status == 404  # the account holds no record of it
    async with client.delete(url, params={"delete_token": first["delete_token"]}) as response:
        assert response.status == 200
    assert blob_key(first["hash"]) in (await snapshot(stack))[0]  # second still holds it
    async with client.delete(url, params={"delete_token": first["delete_token"]}) as response:
        assert response.status == 404  # spent
    async with client.delete(url, params={"delete_token": second["delete_token"]}) as response:
        assert response.status == 200
    after = await snapshot(stack)
    assert (after[0], after[1][:2]) == (before[0], before[1][:2])


async def test_sweeper_removes_orphaned_bytes_only(client, stack):
    store = stack.apps["ingest"][STORE]
    kept = await upload(client, stack, random_png())
    orphan = os.urandom(100)
    orphan_key = blob_key(hashlib.sha256(orphan).hexdigest())
    await store.put(orphan_key, orphan)  # as if the process died before its commit
    patient = OrphanSweeper(stack.apps["ingest"][POOL], store, grace_seconds=3600)
    assert await patient.sweep_once() == 0
    assert await store.exists(orphan_key)
    sweeper = OrphanSweeper(stack.apps["ingest"][POOL], store, grace_seconds=0)
    assert await sweeper.sweep_once() >= 1
    assert not await store.exists(orphan_key)
    assert await store.exists(blob_key(kept["hash"]))


async def _sign_in(client, stack, account) -> dict[str, str]:
    async with client.post(
        f"{stack.url}/signin",
        data={"email": account["email"], "password": "hunter2hunter2", "next": "/files"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        cookie = response.cookies["darkroom_session"].value
    return {"Cookie": f"darkroom_session={cookie}", "Origin": stack.url}


async def test_pages_upload_and_my_files_with_delete(client, stack, other_account):
    async with client.get(f"{stack.url}/upload") as response:
        assert response.status == 200
        page = await response.text()
        assert 'enctype="multipart/form-data"' in page and 'name="file"' in page
    async with client.get(f"{stack.url}/files", allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/signin?next=/files"
    session = await _sign_in(client, stack, other_account)
    async with client.get(f"{stack.url}/upload", headers=session) as response:
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', await response.text())[1]
    data = random_png()
    sha256 = hashlib.sha256(data).hexdigest()
    # A signed-in upload without the page's token is a forged one: refused, nothing stored.
    for token in (b"", b"0" * 64):
        request = _multipart([("csrf", None, token), ("file", "forged.png", data)])
        async with client.post(
            f"{stack.url}/upload", data=request["data"], headers={**request["headers"], **session}
        ) as response:
            assert response.status == 403, await response.text()
        assert (await fetch(client, f"{stack.url}/f/{sha256}"))[0] == 404
    request = _multipart([("csrf", None, csrf.encode()), ("file", "a<script>b.png", data)])
    async with client.post(
        f"{stack.url}/upload", data=request["data"], headers={**request["headers"], **session}
    ) as response:
        assert response.status == 201
        page = await response.text()
        assert sha256 in page and "a<script>" not in page
        assert "Delete token" not in page  # registered to the signed-in account
    async with client.get(f"{stack.url}/files", headers=session) as response:
        page = await response.text()
        assert sha256 in page and "a&lt;script&gt;b.png" in page
        assert 'href="/keys"' in page and other_account["email"] in page
        assert f'name="csrf" value="{csrf}"' in page
    async with client.post(
        f"{stack.url}/files/{sha256}/delete", headers=session, allow_redirects=False
    ) as response:
        assert response.status == 403  # no token: the file stays
    async with client.post(
        f"{stack.url}/files/{sha256}/delete",
        data={"csrf": csrf},
        headers=session,
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/files"
    async with client.get(f"{stack.url}/files", headers=session) as response:
        assert sha256 not in await response.text()
    assert (await fetch(client, f"{stack.url}/f/{sha256}"))[0] == 404


# --- several files per request (pomf's files[]), paging, confirmation, ShareX ------------------


async def _post(client, url: str, request: dict) -> tuple[int, dict | str]:
    async with client.post(url, **request) as response:
        json_body = response.content_type == "application/json"
        return response.status, await (response.json() if json_body else response.text())


async def test_pomf_files_field_stores_every_file_and_answers_in_pomf_shape(client, stack, account):
    png, text = random_png(), b"plain words\n" * 10
    before = await snapshot(stack)
    request = _multipart([("files[]", "a.png", png), ("files[]", "notes.txt", text)])
    status, answer = await _post(client, f"{stack.url}/api/upload", request)
    assert status == 200, answer
    assert answer["success"] is True and len(answer["files"]) == 2
    for entry, data, name, ext in ((0, png, "a.png", "png"), (1, text, "notes.txt", "txt")):
        got, sha256 = answer["files"][entry], hashlib.sha256(data).hexdigest()
        assert (got["hash"], got["name"], got["size"]) == (sha256, name, len(data))
        assert got["url"] == f"{stack.url}/f/{sha256}.{ext}" == got["urls"]["ext"]
        assert got["delete_token"]  # anonymous: one token per file
        assert (await fetch(client, got["url"]))[:2] == (200, data)
    after = await snapshot(stack)
    assert after[1][:2] == (before[1][0] + 2, before[1][1] + 2)  # two blobs, two records
    # Repeated `file` fields (curl -F file=@a -F file=@b) with a token: registered, same shape.
    others = [random_png(), random_png()]
    request = _multipart([("file", f"{i}.png", data) for i, data in enumerate(others)])
    status, answer = await _post(
        client, f"{stack.url}/api/upload", _with_auth(request, account["token"])
    )
    assert status == 200, answer
    assert [f["hash"] for f in answer["files"]] == [hashlib.sha256(d).hexdigest() for d in others]
    assert all("delete_token" not in f for f in answer["files"])
    # One file in files[] is still pomf's shape; one in `file` is still ours, unchanged.
    status, answer = await _post(
        client, f"{stack.url}/api/upload", _multipart([("files[]", "one.png", random_png())])
    )
    assert (status, answer["success"], len(answer["files"])) == (200, True, 1)
    status, answer = await _post(
        client, f"{stack.url}/api/upload", _multipart([("file", "one.png", random_png())])
    )
    assert status == 200 and set(answer) == {"hash", "status", "urls", "delete_token"}


async def test_api_1_answers_a_line_per_file(client, stack):
    datas = [random_png(), random_png()]
    request = _multipart([("api", None, b"1"), *[("files[]", "x.png", d) for d in datas]])
    status, text = await _post(client, f"{stack.url}/upload", request)
    assert status == 200
    assert text == "\n".join(f"OK {hashlib.sha256(d).hexdigest()}" for d in datas)


#: A request whose second (or last) file is refused: nothing of it may be kept.
REFUSED_BATCHES = {
    "a decompression bomb": (lambda: [random_png(), png_bomb()], 422, "invalid_request"),
    "a truncated png": (lambda: [random_png(), random_png(64, 64)[:-40]], 422, "invalid_request"),
    "an empty file": (lambda: [random_png(), b""], 400, "bad_request"),
    "too big together": (
        lambda: [os.urandom(LIMIT // 2), os.urandom(LIMIT // 2 + 10)],
        413,
        "payload_too_large",
    ),
    "too many files": (lambda: [random_png(8, 8) for _ in range(11)], 400, "bad_request"),
}


@pytest.mark.parametrize("case", REFUSED_BATCHES)
async def test_one_refused_file_refuses_the_whole_request(client, stack, account, case, resilience):
    make, status, code = REFUSED_BATCHES[case]
    datas = make()
    before = await snapshot(stack)
    answers: list[int] = []
    for field in ("files[]", "file"):
        request = _multipart([(field, f"{i}.bin", d) for i, d in enumerate(datas)])
        got, answer = await _post(
            client, f"{stack.url}/api/upload", _with_auth(request, account["token"])
        )
        answers.append(got)
        assert got == status, answer
        assert answer["success"] is False and answer["errorcode"] == status
        assert answer["description"] == answer["error"]["message"]
        assert answer["error"]["code"] == code
        got, text = await _post(client, f"{stack.url}/upload?api=1", request)
        answers.append(got)
        assert (got, text.startswith("ERROR ")) == (status, True), text
    assert await snapshot(stack) == before
    resilience.row(
        "hash host",
        f"several files in one upload, one of them {case}",
        injected=f"{len(datas)} files in files[] and in repeated file fields, to /api/upload"
        " (pomf JSON) and /upload?api=1 (text)",
        observed=f"{status} {code} to all {len(answers)} requests, in pomf's error shape with"
        " the house error beside it; no record, no blob, no bytes kept of the good files",
        accepted=sum(a < 400 for a in answers),
        effects=0,
        errors_5xx=sum(a >= 500 for a in answers),
    )
    status, answer = await _post(
        client,
        f"{stack.url}/api/upload",
        _multipart([("files[]", "a.png", random_png()), ("other", "b.png", random_png())]),
    )
    assert status == 400 and "files[]" in answer["description"]
    assert await snapshot(stack) == before


async def test_a_write_failing_part_way_takes_back_the_files_before_it(client, stack, account):
    """The second file's write fails (as if the database went away): the first file's record
    and bytes, already committed, are removed again and the client gets the error."""
    faults = stack.apps["ingest"][FAULTS]
    calls = []

    def fail_second(point: str) -> None:
        calls.append(point)
        if len(calls) == 2:
            raise ConnectionResetError("the database went away")

    before = await snapshot(stack)
    faults.reach = fail_second  # an injected failure in the real write path, not a mock
    try:
        request = _multipart([("files[]", f"{i}.png", random_png()) for i in range(3)])
        for auth in ({}, bearer(account["token"])):
            calls.clear()
            async with client.post(
                f"{stack.url}/api/upload",
                data=request["data"],
                headers={**request["headers"], **auth},
            ) as response:
                assert response.status == 503  # a dependency failed: retry later
    finally:
        del faults.reach
    after = await snapshot(stack)
    assert after[1][:2] == before[1][:2]  # no blob row, no record
    # The failed file's bytes were put before its commit failed: the orphan the sweeper takes,
    # as after a crash at that point. The first file's were removed with its record.
    assert len(after[0]) == len(before[0]) + 1  # the same second file both times
    await OrphanSweeper(stack.apps["ingest"][POOL], stack.apps["ingest"][STORE], 0).sweep_once()
    assert (await snapshot(stack))[0] == before[0]


async def test_an_images_thumbnail_is_made_once_for_its_owner(
    client, stack, account, other_account
):
    import pyvips

    data = random_png(300, 200)
    sha256 = (await upload(client, stack, data, headers=bearer(account["token"])))["hash"]
    url = f"{stack.url}/files/{sha256}/thumbnail"
    status, body, headers = await fetch(client, url, bearer(account["token"]))
    assert status == 200 and headers["Content-Type"] == "image/webp", body[:200]
    thumb = pyvips.Image.new_from_buffer(body, "")
    assert (thumb.width, thumb.height) == (128, 85)  # fits the 128 px box, aspect kept
    assert headers["Cache-Control"] == "private, max-age=31536000, immutable"
    # asked again: the stored bytes, the same tag, and 304 for a client that has them
    again, body_again, headers_again = await fetch(client, url, bearer(account["token"]))
    assert (again, body_again, headers_again["ETag"]) == (200, body, headers["ETag"])
    status, _, _ = await fetch(
        client, url, {**bearer(account["token"]), "If-None-Match": headers["ETag"]}
    )
    assert status == 304
    # nobody else's, no file that is no web image, and nobody signed out
    text = await upload(client, stack, b"plain words\n", headers=bearer(account["token"]))
    for path, auth, expected in [
        (url, bearer(other_account["token"]), 404),
        (f"{stack.url}/files/{text['hash']}/thumbnail", bearer(account["token"]), 404),
        (f"{stack.url}/files/{'0' * 64}/thumbnail", bearer(account["token"]), 404),
        (f"{stack.url}/files/not-a-hash/thumbnail", bearer(account["token"]), 404),
        (url, {}, 401),
    ]:
        status, body, _ = await fetch(client, path, auth)
        assert status == expected, (path, status, body[:200])


async def test_files_are_listed_a_page_at_a_time(client, stack):
    account = stack.create_account("Grace Pager")  # a fresh account: it holds only these files
    token = bearer(account["token"])
    hashes = []
    for _ in range(6):  # 53 files, ten to a request
        datas = [random_png(8, 8) for _ in range(10 if len(hashes) < 50 else 3)]
        request = _multipart([("files[]", "p.png", d) for d in datas])
        status, answer = await _post(
            client, f"{stack.url}/api/upload", _with_auth(request, account["token"])
        )
        assert status == 200, answer
        hashes += [f["hash"] for f in answer["files"]]
    assert len(hashes) == 53
    async with client.get(f"{stack.url}/api/files", headers=token) as response:
        first = await response.json()
    assert (first["count"], len(first["results"]), first["previous"]) == (53, 50, None)
    assert first["next"] == f"{stack.url}/api/files?page=2"
    async with client.get(first["next"], headers=token) as response:
        second = await response.json()
    assert len(second["results"]) == 3 and second["next"] is None
    listed = [f["hash"] for f in first["results"] + second["results"]]
    assert sorted(listed) == sorted(hashes)  # every file once, none twice
    entry = second["results"][0]
    assert entry["url"] == f"{stack.url}/f/{entry['hash']}.png" and entry["size"] > 0
    for query, status in (("page=3", 404), ("page=x", 400), ("page=0", 400)):
        async with client.get(f"{stack.url}/api/files?{query}", headers=token) as response:
            assert response.status == status
    async with client.get(f"{stack.url}/api/files") as response:
        assert response.status == 401
    session = await _sign_in(client, stack, account)
    async with client.get(f"{stack.url}/files", headers=session) as response:
        page = await response.text()
    assert page.count('class="delete"') == 50 and 'href="/files?page=2"' in page
    assert "page 1 of 2" in page and "53 files" in page
    async with client.get(f"{stack.url}/files?page=2", headers=session) as response:
        page = await response.text()
    assert page.count('class="delete"') == 3 and 'rel="prev" href="/files"' in page
    assert 'loading="lazy"' in page and 'width="64" height="64"' in page
    async with client.get(
        f"{stack.url}/files?page=7", headers=session, allow_redirects=False
    ) as response:
        assert (response.status, response.headers["Location"]) == (303, "/files?page=2")


async def test_delete_from_the_page_asks_first(client, stack, account):
    answer = await upload(client, stack, random_png(), headers=bearer(account["token"]))
    sha256 = answer["hash"]
    session = await _sign_in(client, stack, account)
    async with client.get(f"{stack.url}/files/{sha256}/delete?page=2", headers=session) as response:
        assert response.status == 200
        page = await response.text()
    assert "Delete this file?" in page and f'action="/files/{sha256}/delete"' in page
    assert 'name="page" value="2"' in page and 'href="/files?page=2"' in page
    assert (await fetch(client, f"{stack.url}/f/{sha256}"))[0] == 200  # asking changed nothing
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)[1]
    async with client.post(
        f"{stack.url}/files/{sha256}/delete",
        data={"csrf": csrf, "page": "2"},
        headers=session,
        allow_redirects=False,
    ) as response:
        assert (response.status, response.headers["Location"]) == (303, "/files?page=2")
    assert (await fetch(client, f"{stack.url}/f/{sha256}"))[0] == 404
    async with client.get(f"{stack.url}/files/{sha256}/delete", headers=session) as response:
        assert response.status == 404


async def test_sharex_uploader_config_uploads_as_sharex_would(client, stack, account):
    async with client.get(f"{stack.url}/files/sharex.sxcu") as response:
        assert response.status == 200
        assert response.headers["Content-Disposition"] == 'attachment; filename="darkroom.sxcu"'
        config = json.loads(await response.read())
    assert config["RequestMethod"] == "POST" and config["Body"] == "MultipartFormData"
    assert config["RequestURL"] == f"{stack.url}/api/upload"
    assert config["FileFormName"] == "files[]" and config["URL"] == "{json:files[0].url}"
    authorization = config["Headers"]["Authorization"]
    assert authorization == "Bearer PASTE_YOUR_API_TOKEN_HERE"
    # What ShareX sends once the user has pasted a token, and the URL it reads back.
    data = random_png()
    request = _multipart([(config["FileFormName"], "Screenshot.png", data)])
    headers = {**request["headers"], "Authorization": f"Bearer {account['token']}"}
    async with client.post(config["RequestURL"], data=request["data"], headers=headers) as response:
        url = (await response.json())["files"][0]["url"]
    assert (await fetch(client, url))[:2] == (200, data)
    async with client.get(f"{stack.url}/files/assets/hashhost.js") as response:
        assert response.status == 200
        assert response.content_type == "application/javascript"
    async with client.get(f"{stack.url}/files/assets/other.js") as response:
        assert response.status == 404
