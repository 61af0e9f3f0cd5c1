"""Reports end to end through the gateway: the endpoints the real clients call outside the API
reference (snap requests, async reports with a nonce, finalize, find-baseline, extends-report),
notification e-mails received by a real SMTP server, anti-aliasing jitter forgiven, a
comparison of a thousand snapshots, and nothing lost when the diff work is redelivered."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import aiohttp
import pytest

from services.ingest.blobs import SWEEPER
from services.reports.handlers import CONFIG, NOTICES
from services.reports.mail import MailNotSent, SmtpMailer
from services.reports.notices import Notices
from shared.events import new_event
from shared.runtime import POOL, STORE
from shared.store_keys import blob_key
from tests.clients_support import bearer
from tests.clients_support import upload as hashhost_upload
from tests.conftest import free_port
from tests.images_support import heading
from tests.reports_support import (
    basic_auth,
    call,
    jwt_auth,
    post_report,
    screenshot,
    sha,
    snap,
    upload,
)


@pytest.fixture(scope="module")
async def shots(stack, account):
    async with aiohttp.ClientSession() as client:
        return {
            "plain": await upload(client, stack, account, screenshot(40, 30)),
            "changed": await upload(client, stack, account, screenshot(40, 30, patch=(5, 5, 4, 4))),
            "other": await upload(client, stack, account, screenshot(40, 30, colour=(9, 9, 9))),
        }


async def test_snap_requests_and_async_reports_with_a_nonce(client, stack, account, shots):
    auth = jwt_auth(account)
    first = await call(
        client,
        stack,
        "POST",
        "/api/snap-requests/with-results",
        auth,
        {"snaps": [snap(shots["plain"], "Button")]},
    )
    second = await call(
        client,
        stack,
        "POST",
        "/api/snap-requests/with-results",
        auth,
        {"snaps": [snap(shots["other"], "Modal"), snap(shots["changed"], "Chip")]},
    )
    assert isinstance(first["requestId"], int)
    polled = await call(client, stack, "GET", f"/api/snap-requests/{first['requestId']}", auth)
    assert polled["status"] == "done"
    assert [s["url"] for s in polled["result"]] == [shots["plain"].url]
    report_sha, nonce = sha(), uuid.uuid4().hex
    one = await call(
        client,
        stack,
        "POST",
        f"/api/async-reports/{report_sha}",
        auth,
        {"requestIds": [first["requestId"]], "nonce": nonce},
    )
    assert isinstance(one["id"], int) and one["completedAt"] is None
    # the other parallel run, and a retry re-posting the same ids
    for ids in ([second["requestId"]], [first["requestId"], second["requestId"]]):
        answer = await call(
            client,
            stack,
            "POST",
            f"/api/async-reports/{report_sha}",
            auth,
            {"requestIds": ids, "nonce": nonce},
        )
        assert answer["id"] == one["id"] and answer["snapshotCount"] == 3
    await call(
        client,
        stack,
        "POST",
        f"/api/async-reports/{report_sha}/finalize",
        auth,
        {"nonce": "wrong"},
        409,
    )
    done = await call(
        client,
        stack,
        "POST",
        f"/api/async-reports/{report_sha}/finalize",
        auth,
        {"nonce": nonce, "skippedExamples": [{"component": "Old"}]},
    )
    assert done["completedAt"] is not None and done["snapshotCount"] == 3
    # without a nonce an async report is complete at once
    plain = await call(
        client,
        stack,
        "POST",
        f"/api/async-reports/{sha()}",
        auth,
        {"requestIds": [first["requestId"]]},
    )
    assert plain["completedAt"] is not None
    # another account cannot use these request ids
    theirs = stack.create_account("Grace Hopper")
    await call(
        client,
        stack,
        "POST",
        f"/api/async-reports/{sha()}",
        jwt_auth(theirs),
        {"requestIds": [first["requestId"]]},
        422,
    )
    await call(
        client,
        stack,
        "GET",
        f"/api/snap-requests/{first['requestId']}",
        jwt_auth(theirs),
        status=404,
    )
    # find-baseline and extends-report
    baseline = await call(
        client,
        stack,
        "POST",
        f"/api/reports/{sha()}/find-baseline",
        auth,
        {"shas": [sha(), report_sha]},
    )
    assert baseline["sha"] == report_sha
    await call(
        client, stack, "POST", f"/api/reports/{sha()}/find-baseline", auth, {"shas": [sha()]}, 404
    )
    extended = await call(
        client,
        stack,
        "POST",
        "/api/snap-requests/extends-report",
        auth,
        {"extendsSha": report_sha, "extendedSnaps": [{"component": "Modal"}]},
    )
    got = await call(client, stack, "GET", f"/api/snap-requests/{extended['requestId']}", auth)
    assert [s["component"] for s in got["result"]] == ["Modal"]
    # a bulk of snap requests to render needs its items
    refused = await call(client, stack, "POST", "/api/snap-requests/bulk", auth, {}, 422)
    assert "items" in refused["error"]["message"]


async def test_subscribers_and_notify_addresses_get_an_email(client, stack, account, shots, inbox):
    auth = basic_auth(account)
    watcher, left = f"w{sha()}@example.com", f"l{sha()}@example.com"
    await call(
        client,
        stack,
        "POST",
        "/api/subscriptions/Toolbar",
        auth,
        {"emailAddresses": [watcher, left]},
    )
    await call(
        client, stack, "DELETE", "/api/subscriptions/Toolbar", auth, {"emailAddresses": [left]}
    )
    before, after = sha(), sha()
    await post_report(client, stack, account, before, [snap(shots["plain"], "Toolbar")])
    await post_report(client, stack, account, after, [snap(shots["changed"], "Toolbar")])
    told = f"t{sha()}@example.com"
    result = await call(
        client, stack, "POST", f"/api/reports/{before}/compare/{after}", auth, {"notify": told}
    )
    assert result["equal"] is False
    for _ in range(100):
        if inbox.to(watcher) and inbox.to(told):
            break
        await asyncio.sleep(0.1)
    [mail] = inbox.to(watcher)
    assert "Toolbar" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    assert result["compareUrl"] in text
    assert mail["List-Unsubscribe"].strip().startswith(f"<{stack.url}/unsubscribe/")
    assert len(inbox.to(told)) == 1
    assert inbox.to(left) == []
    # the event redelivered (a consumer that died after sending) mails nobody twice
    pool = stack.apps["reports"][POOL]
    async with pool.acquire() as conn:
        sent = await conn.fetchval(
            "SELECT count(*) FROM mail_deliveries WHERE comparison_id = $1", result["id"]
        )
    assert sent == 2


async def test_anti_aliased_jitter_is_not_a_diff(client, stack, account):
    a, b = heading(0), heading(1)  # the same heading a quarter pixel apart
    assert a != b
    before_img = await upload(client, stack, account, a)
    after_img = await upload(client, stack, account, b)
    before, after = sha(), sha()
    await post_report(client, stack, account, before, [snap(before_img, "Label")])
    await post_report(client, stack, account, after, [snap(after_img, "Label")])
    result = await call(
        client, stack, "POST", f"/api/reports/{before}/compare/{after}", jwt_auth(account), {}
    )
    assert result["equal"] is True, result["summary"]
    async with stack.apps["reports"][POOL].acquire() as conn:
        row = await conn.fetchrow(
            "SELECT kind, changed_pixels FROM comparison_entries WHERE comparison_id = $1",
            result["id"],
        )
    # the images really differ, and were really diffed: the pixels were forgiven
    assert row["kind"] == "unchanged" and row["changed_pixels"] == 0


async def test_a_thousand_snapshot_comparison_is_fast(client, stack, account, shots):
    auth = jwt_auth(account)
    many = [snap(shots["plain"], f"C{i:04d}", "v", "chrome") for i in range(1000)]
    changed = list(many)
    for i in (3, 500, 997):
        changed[i] = snap(shots["changed"], f"C{i:04d}", "v", "chrome")
    before, after = sha(), sha()
    await post_report(client, stack, account, before, many)
    await post_report(client, stack, account, after, changed)
    started = time.perf_counter()
    result = await call(client, stack, "POST", f"/api/reports/{before}/compare/{after}", auth, {})
    elapsed = time.perf_counter() - started
    assert [pair[1]["component"] for pair in result["diffs"]] == ["C0003", "C0500", "C0997"]
    assert len(result["unchanged"]) == 997
    print(f"1000-snapshot compare with 3 changes: {elapsed * 1000:.0f} ms")


async def test_a_blob_in_a_report_outlives_every_other_reference(client, stack, account):
    """The same bytes uploaded to the hash host and deleted there, and the orphan sweeper run:
    the report's image still serves, and its comparison still shows it."""
    data = screenshot(24, 24, colour=(77, 66, 55))
    image = await upload(client, stack, account, data)
    report_sha = sha()
    await post_report(client, stack, account, report_sha, [snap(image, "Avatar")])
    digest = hashlib.sha256(data).hexdigest()
    await hashhost_upload(client, stack, data, headers=bearer(account["token"]))
    async with client.delete(
        f"{stack.url}/api/files/{digest}", headers=bearer(account["token"])
    ) as response:
        assert response.status == 200
    await stack.apps["ingest"][SWEEPER].sweep_once()
    async with client.get(image.url) as response:
        assert response.status == 200 and await response.read() == data
    assert await stack.apps["ingest"][STORE].exists(blob_key(digest))


async def test_mail_waits_out_an_smtp_outage_and_sends_each_address_once(stack, inbox):
    """A ``comparison.completed`` handled while the SMTP server is down fails (so the consumer
    retries it); handled again once the server is back, every address gets exactly one mail,
    and a third delivery of the same event sends nothing."""
    app = stack.apps["reports"]
    config = app[CONFIG]
    pool = app[POOL]
    address = f"n{sha()}@example.com"
    envelope = new_event(
        "comparison.completed",
        {
            "comparison_id": 0,
            "account_id": str(uuid.uuid4()),
            "project": "",
            "sha1": "a" * 8,
            "sha2": "b" * 8,
            "status": "awaiting review",
            "equal": False,
            "summary": "1 diff, 0 added, 0 deleted, 0 unchanged",
            "compare_url": f"{stack.url}/comparisons/0",
            "diff_components": ["Button"],
            "notify": [address],
        },
    )
    dead = Notices(pool, SmtpMailer("127.0.0.1", free_port(), timeout=2), config)
    async with pool.acquire() as conn:
        with pytest.raises(MailNotSent):
            await dead.comparison_completed(conn, envelope)
    assert inbox.to(address) == []
    live = app[NOTICES]
    for _ in range(2):
        async with pool.acquire() as conn:
            await live.comparison_completed(conn, envelope)
    assert len(inbox.to(address)) == 1
