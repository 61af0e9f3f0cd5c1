"""Rendering through the public API, as a Happo client drives it: packages through the assets
endpoints (multipart and the signed-URL PUT), snap requests (multipart, bulk), polling, async
reports that wait for their renders, and what a bad package or payload gets: a clear 4xx and
nothing kept.

The renders run in the stack's own rendering service, in Debian's Chromium; the screenshots come
back as Happo images of the account (``/img/<account>/<md5>``) and are checked pixel by pixel.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import time
import uuid
import zipfile
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import zstandard

from services.rendering.packages import PackageSweeper
from services.reports.handlers import RENDER_REQUESTS
from shared.runtime import POOL, STORE
from tests.happo_packages import EXPECTED, colours, pixel, write_static_package, zip_folder
from tests.metrics_support import scrape, value
from tests.rendering_support import needs_chromium
from tests.reports_support import jwt_auth

pytestmark = pytest.mark.timeout(300)

VIEWPORT = (640, 480)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the Happo clients' names


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> bytes:
    return zip_folder(write_static_package(tmp_path_factory.mktemp("package") / "site"))


@pytest.fixture(scope="module")
def tenant(stack) -> dict:
    """An account of this module's own (its packages and requests are all it has)."""
    return stack.create_account("Render Tester")


async def _rows(stack, sql: str, *args) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(stack.env["DATABASE_URL"])
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _upload(client, stack, account, data: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("payload", data, filename="payload.zip", content_type="application/zip")
    async with client.post(
        f"{stack.url}/api/snap-requests/assets/{md5(data)}", data=form, headers=jwt_auth(account)
    ) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["path"]


async def _wait_done(client, stack, account, request_id: int, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with client.get(
            f"{stack.url}/api/snap-requests/{request_id}", headers=jwt_auth(account)
        ) as r:
            body = await r.json()
            if r.status != 200 or body["status"] == "done":
                return {"status_code": r.status, **body}
        await asyncio.sleep(0.2)
    raise AssertionError(f"snap request {request_id} still pending after {seconds} s")


async def _image(client, url: str, account) -> bytes:
    async with client.get(url, headers=jwt_auth(account)) as r:
        assert r.status == 200
        assert r.content_type == "image/png"
        return await r.read()


def _payload(path: str, **extra) -> str:
    return json.dumps(
        {
            "viewport": f"{VIEWPORT[0]}x{VIEWPORT[1]}",
            "freezeAnimations": "last-frame",
            "prefersReducedMotion": True,
            "allowPointerEvents": True,
            "staticPackage": path,
            **extra,
        }
    )


# --- packages ----------------------------------------------------------------------------------


async def test_package_by_multipart_is_stored_once_and_found(client, stack, tenant, package):
    headers = jwt_auth(tenant)
    name = md5(package)
    async with client.get(
        f"{stack.url}/api/snap-requests/assets-data/{name}", headers=headers
    ) as r:
        assert r.status == 404
    path = await _upload(client, stack, tenant, package)
    assert path == f"packages/{name}"
    assert await _upload(client, stack, tenant, package) == path  # the same again: same path
    async with client.get(
        f"{stack.url}/api/snap-requests/assets-data/{name}", headers=headers
    ) as r:
        found = await r.json()
    assert r.status == 200 and found["path"] == path and found["uploadedAt"].endswith("Z")
    rows = await _rows(
        stack,
        "SELECT sha256, entries FROM rendering.packages WHERE account_id = $1",
        uuid.UUID(tenant["account_id"]),
    )
    assert len(rows) == 1 and rows[0]["entries"] == 4
    stored = Path(stack.env["DARKROOM_BLOB_DIR"]) / "packages" / rows[0]["sha256"]
    assert stored.read_bytes() == package


async def test_package_by_signed_url_put_answers_the_md5_etag(client, stack, account, tmp_path):
    site = write_static_package(tmp_path / "signed")
    (site / "extra.txt").write_text("signed-url upload")  # other bytes than the module's package
    data = zip_folder(site)
    name = md5(data)
    headers = jwt_auth(account)
    base = f"{stack.url}/api/snap-requests/assets/{name}/signed-url"
    async with client.get(base, headers=headers) as r:
        grant = await r.json()
    assert r.status == 200 and grant["signedUrl"].startswith(f"{stack.url}/api/package-uploads/")
    # the PUT carries no Authorization, like happo 6's
    async with client.put(
        grant["signedUrl"], data=data, headers={"Content-Type": "application/zip"}
    ) as r:
        assert r.status == 200, await r.text()
        assert name in r.headers["ETag"]
    async with client.put(grant["signedUrl"], data=data) as r:
        assert r.status == 409  # single use
    async with client.post(f"{base}/finalize", headers=headers) as r:
        assert r.status == 200 and (await r.json())["path"] == f"packages/{name}"
    async with client.get(base, headers=headers) as r:
        assert (await r.json()) == {"path": f"packages/{name}"}


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo("link")
            info.external_attr = (0o120777 << 16) | 0
            archive.writestr(info, symlink)
    return buffer.getvalue()


def _tar_zst(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo("link")
            info.type = tarfile.SYMTYPE
            info.linkname = symlink
            archive.addfile(info)
    return zstandard.ZstdCompressor().compress(raw.getvalue())


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("bomb.bin", "w", force_zip64=True) as entry:
            block = b"\0" * (1024 * 1024)
            for _ in range(1100):  # 1.1 GB of zeros: over the 1 GiB unpacked limit
                entry.write(block)
    return buffer.getvalue()


HOSTILE = {
    "zip-slip ../": (_zip({"../escape.js": b"x"}), 422),
    "zip-slip nested": (_zip({"a/../../escape.js": b"x"}), 422),
    "absolute path": (_zip({"/etc/cron.d/x": b"x"}), 422),
    "zip symlink": (_zip({"iframe.html": b"<p>"}, symlink="/etc/passwd"), 422),
    "tar.zst symlink": (_tar_zst({"iframe.html": b"<p>"}, symlink="/etc/passwd"), 422),
    "tar.zst ../": (_tar_zst({"../escape.js": b"x"}), 422),
    "corrupt zip": (_zip({"iframe.html": b"<p>" * 1000})[:-40] + b"\0" * 40, 422),
    "not an archive": (b"GIF89a" + b"\0" * 100, 415),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_package_is_refused_and_nothing_kept(client, stack, tenant, case):
    data, status = HOSTILE[case]
    packages = Path(stack.env["DARKROOM_BLOB_DIR"]) / "packages"
    before = sorted(p.name for p in packages.rglob("*"))
    form = aiohttp.FormData()
    form.add_field("payload", data, filename="payload.zip", content_type="application/zip")
    async with client.post(
        f"{stack.url}/api/snap-requests/assets/{md5(data)}", data=form, headers=jwt_auth(tenant)
    ) as r:
        body = await r.json()
    assert r.status == status, body
    assert body["error"]["message"]
    rows = await _rows(
        stack,
        "SELECT 1 FROM rendering.packages WHERE account_id = $1 AND md5 = $2",
        uuid.UUID(tenant["account_id"]),
        md5(data),
    )
    assert rows == []
    assert sorted(p.name for p in packages.rglob("*")) == before


async def test_zip_bomb_is_refused_as_too_large(client, stack, tenant):
    data = await asyncio.to_thread(_bomb)
    assert len(data) < 3 * 1024 * 1024  # it fits the test stack's body limit
    grant_url = f"{stack.url}/api/snap-requests/assets/{md5(data)}/signed-url"
    async with client.get(grant_url, headers=jwt_auth(tenant)) as r:
        grant = await r.json()
    async with client.put(grant["signedUrl"], data=data) as r:
        body = await r.json()
    assert r.status == 413, body
    assert "unpack" in body["error"]["message"] or "bytes" in body["error"]["message"]
    async with client.post(f"{grant_url}/finalize", headers=jwt_auth(tenant)) as r:
        assert r.status == 404


async def test_package_whose_md5_is_not_its_name_is_refused(client, stack, tenant, package):
    form = aiohttp.FormData()
    form.add_field("payload", package, filename="payload.zip", content_type="application/zip")
    wrong = "0" * 32
    async with client.post(
        f"{stack.url}/api/snap-requests/assets/{wrong}", data=form, headers=jwt_auth(tenant)
    ) as r:
        assert r.status == 422
        assert "md5" in (await r.json())["error"]["message"]


# --- snap requests -----------------------------------------------------------------------------


async def test_bad_payloads_get_errors_in_their_place(client, stack, tenant):
    items = [
        {"type": "browser-chrome", "targetName": "chrome", "payloadString": "{", "payloadHash": ""},
        {
            "type": "browser-chrome",
            "targetName": "chrome",
            "payloadString": json.dumps({"viewport": "huge", "staticPackage": "packages/x"}),
            "payloadHash": "",
        },
        {"type": "not-a-type", "targetName": "chrome", "payloadString": "{}", "payloadHash": ""},
    ]
    async with client.post(
        f"{stack.url}/api/snap-requests/bulk", json={"items": items}, headers=jwt_auth(tenant)
    ) as r:
        body = await r.json()
    assert r.status == 200
    errors = [result["error"] for result in body["results"]]
    assert "JSON" in errors[0] and "viewport" in errors[1] and "browser-" in errors[2]
    too_many = [items[0]] * 51
    async with client.post(
        f"{stack.url}/api/snap-requests/bulk", json={"items": too_many}, headers=jwt_auth(tenant)
    ) as r:
        assert r.status == 422


async def _one_request(client, stack, account, request_type: str, target: str, path: str) -> int:
    """A bulk of one snap request rendering ``path``; its id."""
    item = {
        "type": request_type,
        "targetName": target,
        "payloadString": _payload(path),
        "payloadHash": "x",
    }
    async with client.post(
        f"{stack.url}/api/snap-requests/bulk", json={"items": [item]}, headers=jwt_auth(account)
    ) as r:
        (result,) = (await r.json())["results"]
    return result["requestId"]


async def test_firefox_target_fails_with_a_message_naming_it(client, stack, tenant):
    request_id = await _one_request(
        client, stack, tenant, "browser-firefox", "firefox-desktop", "packages/" + "0" * 32
    )
    done = await _wait_done(client, stack, tenant, request_id, seconds=5)
    assert done["status_code"] == 422
    assert "firefox" in done["error"]["message"]


@needs_chromium
async def test_static_package_rendered_into_a_waiting_async_report(client, stack, tenant, package):
    headers = jwt_auth(tenant)
    path = await _upload(client, stack, tenant, package)
    items = [
        {
            "type": "browser-chrome",
            "targetName": target,
            "payloadString": _payload(path),
            "payloadHash": "h",
        }
        for target in ("chrome-desktop", "edge-desktop")
    ]
    items[1]["type"] = "browser-edge"
    async with client.post(
        f"{stack.url}/api/snap-requests/bulk", json={"items": items}, headers=headers
    ) as r:
        results = (await r.json())["results"]
    ids = [result["requestId"] for result in results]
    assert all(isinstance(i, int) for i in ids)
    sha = uuid.uuid4().hex
    async with client.post(
        f"{stack.url}/api/async-reports/{sha}", json={"requestIds": ids}, headers=headers
    ) as r:
        report = await r.json()
    assert r.status == 200 and isinstance(report["id"], int)
    # readiness of a report is its completedAt, as happo 6 leaves it
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        async with client.get(f"{stack.url}/api/reports/{sha}/status", headers=headers) as r:
            status = await r.json()
        if status["completedAt"]:
            break
        await asyncio.sleep(0.3)
    assert status["completedAt"], status
    assert status["snapshotCount"] == 2 * len(EXPECTED)
    async with client.get(f"{stack.url}/api/reports/{sha}", headers=headers) as r:
        snaps = await r.json()
    by_key = {(s["component"], s["variant"], s["target"]): s for s in snaps}
    for (component, variant), want in EXPECTED.items():
        for target in ("chrome-desktop", "edge-desktop"):
            snap = by_key[(component, variant, target)]
            png = await _image(client, snap["url"], tenant)
            await asyncio.to_thread(_check_example, component, variant, want, snap, png)
    # the renderer counted both requests and their examples (the ops' view of it)
    samples = await scrape(client, stack.service_urls["rendering"])
    assert value(samples, "darkroom_renders_total", outcome="completed") >= 2
    assert value(samples, "darkroom_render_example_seconds_count") >= 2 * len(EXPECTED)
    assert "darkroom_browser_restarts_total" in samples  # 0 here: nothing crashed
    queue = f"{stack.env['DARKROOM_EXCHANGE']}.rendering.renders"
    assert value(samples, "darkroom_event_queue_depth", queue=queue) == 0
    # the same request again reuses the rendered one
    async with client.post(
        f"{stack.url}/api/snap-requests/bulk", json={"items": items}, headers=headers
    ) as r:
        again = [result["requestId"] for result in (await r.json())["results"]]
    assert again == ids
    done = await _wait_done(client, stack, tenant, ids[0], seconds=5)
    assert done["status"] == "done" and len(done["result"]) == len(EXPECTED)


def _check_example(component: str, variant: str, want: dict, snap: dict, png: bytes) -> None:
    where = f"{component}/{variant}"
    if "size" in want:
        assert (snap["width"], snap["height"]) == want["size"], where
    if want.get("width") == "viewport":
        assert snap["width"] == VIEWPORT[0], where
        assert snap["height"] == want["height"], where
    if want.get("colour") is not None:
        centre = pixel(png, snap["width"] // 2, snap["height"] // 2)
        assert centre == want["colour"], (where, centre)
    if "absent" in want:
        assert want["absent"] not in colours(png), where
    if component == "Text":
        assert snap["width"] > 100 and 20 <= snap["height"] <= 40, (where, snap)


@needs_chromium
async def test_missing_package_fails_the_request_with_its_reason(client, stack, tenant):
    request_id = await _one_request(
        client, stack, tenant, "browser-chrome", "chrome", "packages/" + "f" * 32
    )
    done = await _wait_done(client, stack, tenant, request_id, seconds=60)
    assert done["status_code"] == 422
    assert "No package" in done["error"]["message"]


async def test_a_request_no_renderer_finished_fails_at_its_deadline(client, stack, tenant):
    """A request that crashed every renderer (dead-lettered) or whose renderers are gone must
    not keep a client polling, or a report waiting, forever."""
    headers = jwt_auth(tenant)
    (row,) = await _rows(
        stack,
        "INSERT INTO reports.snap_requests (account_id, snaps, state, request_type, target_name,"
        " payload_md5, payload, created_at) VALUES ($1, '[]', 'pending', 'browser-chrome',"
        " 'chrome', 'stale', '{}', now() - interval '2 hours') RETURNING id",
        uuid.UUID(tenant["account_id"]),
    )
    request_id = row["id"]
    sha = uuid.uuid4().hex
    async with client.post(
        f"{stack.url}/api/async-reports/{sha}", json={"requestIds": [request_id]}, headers=headers
    ) as r:
        assert r.status == 200
    async with client.get(f"{stack.url}/api/reports/{sha}/status", headers=headers) as r:
        assert (await r.json())["completedAt"] is None
    expired = await stack.apps["reports"][RENDER_REQUESTS].expire_stale(3600)
    assert expired == 1
    done = await _wait_done(client, stack, tenant, request_id, seconds=5)
    assert done["status_code"] == 422 and "Not rendered within 3600 s" in done["error"]["message"]
    async with client.get(f"{stack.url}/api/reports/{sha}/status", headers=headers) as r:
        status = await r.json()
    assert status["completedAt"] and status["snapshotCount"] == 0
    (report,) = await _rows(stack, "SELECT render_errors FROM reports.reports WHERE sha = $1", sha)
    assert json.loads(report["render_errors"])[0]["requestId"] == request_id


async def test_package_bytes_a_crash_left_unrecorded_are_swept(client, stack, tenant, package):
    """Bytes written before a crash kept their record from committing go after the grace;
    recorded packages stay."""
    await _upload(client, stack, tenant, package)
    store = stack.apps["rendering"][STORE]
    orphan = hashlib.sha256(b"a crash between put and commit").hexdigest()
    await store.put(f"packages/{orphan}", b"PK\x05\x06" + b"\0" * 18)
    sweeper = PackageSweeper(stack.apps["rendering"][POOL], store, grace_seconds=3600)
    assert await sweeper.sweep_once() == 0  # first seen now: inside the grace
    assert await store.exists(f"packages/{orphan}")
    sweeper.grace_seconds = 0
    assert await sweeper.sweep_once() == 1
    assert not await store.exists(f"packages/{orphan}")
    recorded = await _rows(
        stack,
        "SELECT sha256 FROM rendering.packages WHERE account_id = $1",
        uuid.UUID(tenant["account_id"]),
    )
    for row in recorded:
        assert await store.exists(f"packages/{row['sha256']}")
