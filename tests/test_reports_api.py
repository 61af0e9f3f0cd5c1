"""The Happo reports API through the gateway, endpoint by endpoint, with Basic and JWT auth:
reports (whole, partial, clone), compare (sync, async, fallbacks), comparison statuses, ignored
diffs, jobs and orchestration, skip, subscriptions and the latest snapshot; and every misuse
answered with a clear 4xx that changes nothing."""

from __future__ import annotations

import asyncio

import pytest
import pyvips

from shared.runtime import POOL
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
async def images(stack, account):
    """Four screenshots of this account: a, a changed in a 10x10 region, b and c."""
    import aiohttp

    async with aiohttp.ClientSession() as client:
        a = await upload(client, stack, account, screenshot())
        a2 = await upload(client, stack, account, screenshot(patch=(20, 10, 10, 10)))
        b = await upload(client, stack, account, screenshot(colour=(200, 10, 10)))
        c = await upload(client, stack, account, screenshot(32, 32, colour=(10, 200, 10)))
    return {"a": a, "a2": a2, "b": b, "c": c}


async def table_counts(stack) -> dict[str, int]:
    pool = stack.apps["reports"][POOL]
    async with pool.acquire() as conn:
        return {
            name: await conn.fetchval(f"SELECT count(*) FROM {name}")
            for name in ("reports", "snapshots", "comparisons", "jobs", "subscriptions")
        }


async def test_report_create_get_status_with_basic_and_jwt(client, stack, account, images):
    first = sha()
    snaps = [snap(images["a"], "Button"), snap(images["b"], "Modal", "open", "firefox")]
    created = await post_report(
        client, stack, account, first, snaps, auth=basic_auth(account), link="https://x/pr/1"
    )
    assert created["url"] == f"{stack.url}/reports/{created['id']}"
    assert created["snapshotCount"] == 2
    assert created["completedAt"] and created["createdAt"]
    got = await call(client, stack, "GET", f"/api/reports/{first}", jwt_auth(account))
    assert [(s["component"], s["variant"], s["target"]) for s in got] == [
        ("Button", "default", "chrome"),
        ("Modal", "open", "firefox"),
    ]
    assert got[0]["url"] == images["a"].url and got[0]["width"] == 64
    assert all(isinstance(s["id"], int) for s in got)
    status = await call(client, stack, "GET", f"/api/reports/{first}/status", basic_auth(account))
    assert status["snapshotCount"] == 2 and status["url"] == created["url"]
    # overwriting replaces the snapshots, keeps the creation time
    again = await post_report(client, stack, account, first, [snap(images["c"], "Card")])
    assert again["snapshotCount"] == 1 and again["createdAt"] == created["createdAt"]
    got = await call(client, stack, "GET", f"/api/reports/{first}", jwt_auth(account))
    assert [s["component"] for s in got] == ["Card"]
    # projects are separate namespaces
    await call(
        client, stack, "GET", f"/api/reports/{first}?project=web", jwt_auth(account), status=404
    )


async def test_partial_reports_then_complete(client, stack, account, images):
    report_sha = sha()
    one = await post_report(
        client, stack, account, report_sha, [snap(images["a"], "Button")], partial=True
    )
    assert one["completedAt"] is None
    two = await post_report(
        client, stack, account, report_sha, [snap(images["b"], "Modal")], partial=True
    )
    assert two["completedAt"] is None and two["snapshotCount"] == 2
    # a comparison cannot use an incomplete report
    other = sha()
    await post_report(client, stack, account, other, [snap(images["a"], "Button")])
    await call(
        client,
        stack,
        "POST",
        f"/api/reports/{other}/compare/{report_sha}",
        jwt_auth(account),
        {},
        status=409,
    )
    done = await call(
        client, stack, "POST", f"/api/reports/{report_sha}/complete", jwt_auth(account), {}
    )
    assert done["completedAt"] and done["snapshotCount"] == 2
    # completing a report posted whole is a conflict
    await call(
        client,
        stack,
        "POST",
        f"/api/reports/{other}/complete",
        jwt_auth(account),
        None,
        status=409,
    )


async def test_compare_equal_added_deleted_and_statuses(client, stack, account, images):
    before, after = sha(), sha()
    await post_report(
        client,
        stack,
        account,
        before,
        [snap(images["a"], "Button"), snap(images["b"], "Modal")],
    )
    await post_report(
        client,
        stack,
        account,
        after,
        [snap(images["a"], "Button"), snap(images["c"], "Card")],
    )
    result = await call(
        client,
        stack,
        "POST",
        f"/api/reports/{before}/compare/{after}",
        basic_auth(account),
        {"link": "https://x/pr/2", "message": "Add card"},
    )
    assert result["equal"] is False and result["status"] == "failure"
    assert [s["component"] for s in result["added"]] == ["Card"]
    assert [s["component"] for s in result["deleted"]] == ["Modal"]
    assert [s["component"] for s in result["unchanged"]] == ["Button"]
    assert result["diffs"] == []
    assert result["summary"] == "0 diffs, 1 added, 1 deleted, 1 unchanged"
    assert result["compareUrl"] == f"{stack.url}/comparisons/{result['id']}"
    async with client.get(result["statusImageUrl"]) as r:  # public, for pull requests
        assert r.status == 200 and r.content_type == "image/svg+xml"
        assert "2 changes" in await r.text()  # as the page counts: 0 diffs, 1 added, 1 deleted
    async with client.get(result["statusImageUrl"].replace(".svg", "0.svg")) as r:
        assert r.status == 404
    status = await call(
        client, stack, "GET", f"/api/reports/{before}/compare/{after}/status", jwt_auth(account)
    )
    assert status == {
        "id": result["id"],
        "sha1": before,
        "sha2": after,
        "project": "",
        "status": "awaiting review",
        "url": result["compareUrl"],
        "createdAt": result["createdAt"],
    }
    for report_sha in (before, after):
        statuses = await call(
            client,
            stack,
            "GET",
            f"/api/reports/{report_sha}/comparison-statuses",
            jwt_auth(account),
        )
        assert [s["id"] for s in statuses] == [result["id"]]
    # equal reports are a success
    same = sha()
    await post_report(
        client,
        stack,
        account,
        same,
        [snap(images["a"], "Button"), snap(images["c"], "Card")],
    )
    equal = await call(
        client, stack, "POST", f"/api/reports/{after}/compare/{same}", jwt_auth(account), {}
    )
    assert equal["equal"] is True and equal["status"] == "success"
    assert equal["summary"] == "No differences (2 unchanged snapshots)"


async def test_bad_input_changes_nothing(client, stack, account, other_account, images):
    auth = jwt_auth(account)
    target = sha()
    before = await table_counts(stack)
    good = snap(images["a"], "Button")
    cases = [
        ({"snaps": [{**good, "component": ""}]}, 422, "component"),
        ({"snaps": [{k: v for k, v in good.items() if k != "target"}]}, 422, "target"),
        ({"snaps": [{**good, "width": 65}]}, 422, "64x48"),
        ({"snaps": [{**good, "height": "48"}]}, 422, "height"),
        ({"snaps": [{**good, "url": "https://evil.example/x.png"}]}, 422, "url"),
        ({"snaps": [{**good, "url": good["url"][:-4] + "0000"}]}, 422, "url"),
        ({"snaps": [good], "colour": "red"}, 422, "colour"),
        ({"snaps": "nope"}, 422, "snaps"),
        ({}, 422, "snaps"),
        ({"snaps": [good], "partial": "yes"}, 422, "partial"),
    ]
    for body, status, word in cases:
        answer = await call(client, stack, "POST", f"/api/reports/{target}", auth, body, status)
        assert word in answer["error"]["message"], (body, answer)
    # another account's image url is not this account's image
    theirs = await upload(client, stack, other_account, screenshot(colour=(1, 2, 3)))
    wrong = {"snaps": [{**good, "url": theirs.url}]}
    await call(client, stack, "POST", f"/api/reports/{target}", auth, wrong, 422)
    async with client.post(
        f"{stack.url}/api/reports/{target}", data=b"{not json", headers=auth
    ) as r:
        assert r.status == 400
    assert await table_counts(stack) == before
    await call(client, stack, "GET", f"/api/reports/{target}", auth, status=404)
    # unknown shas, a report against itself, bad sha characters
    known = sha()
    await post_report(client, stack, account, known, [good])
    await call(client, stack, "POST", f"/api/reports/{known}/compare/{sha()}", auth, {}, 404)
    await call(client, stack, "POST", f"/api/reports/{sha()}/compare/{known}", auth, {}, 404)
    await call(client, stack, "POST", f"/api/reports/{known}/compare/{known}", auth, {}, 422)
    await call(client, stack, "GET", "/api/reports/a%20b", auth, status=400)
    # another account's report does not exist for this one
    await call(client, stack, "GET", f"/api/reports/{known}", jwt_auth(other_account), status=404)
    await call(
        client,
        stack,
        "POST",
        f"/api/reports/{known}/clone/{sha()}",
        jwt_auth(other_account),
        {},
        404,
    )
    # no credentials, wrong credentials
    await call(client, stack, "GET", f"/api/reports/{known}", {}, status=401)
    bad = {**account, "api_secret": "x" * 40}
    await call(client, stack, "GET", f"/api/reports/{known}", basic_auth(bad), status=401)


async def test_clone_and_skip(client, stack, account, images):
    source, copy = sha(), sha()
    created = await post_report(
        client, stack, account, source, [snap(images["a"], "Button")], message="first"
    )
    cloned = await call(
        client, stack, "POST", f"/api/reports/{source}/clone/{copy}", jwt_auth(account), {}
    )
    assert cloned["snapshotCount"] == 1 and cloned["id"] != created["id"]
    got = await call(client, stack, "GET", f"/api/reports/{copy}", jwt_auth(account))
    assert [s["url"] for s in got] == [images["a"].url]
    pool = stack.apps["reports"][POOL]
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT cloned_from, message FROM reports WHERE id = $1", cloned["id"]
        )
    assert row["cloned_from"] == created["id"] and row["message"] == "first"
    skipped = await call(
        client, stack, "POST", f"/api/skip/{copy}", basic_auth(account), {"label": "No UI"}
    )
    assert skipped["status"] == "success" and skipped["label"] == "No UI"


async def test_jobs_orchestration_and_cancel(client, stack, account, images):
    sha1, sha2 = sha(), sha()
    auth = jwt_auth(account)
    job = await call(client, stack, "POST", f"/api/jobs/{sha1}/{sha2}", auth, {"project": "web"})
    assert isinstance(job["id"], int) and job["url"] == f"{stack.url}/jobs/{job['id']}"
    assert job["status"] == "pending"
    again = await call(client, stack, "POST", f"/api/jobs/{sha1}/{sha2}", auth, {"project": "web"})
    assert again["id"] == job["id"]
    # orchestration: a job spanning two projects; a project's job reuses it
    o1, o2 = sha(), sha()
    orchestration = await call(
        client,
        stack,
        "POST",
        f"/api/jobs/{o1}/{o2}/orchestrate",
        auth,
        {"projects": ["web", "mobile"], "message": "PR 3"},
    )
    assert orchestration["projects"] == ["web", "mobile"]
    reused = await call(client, stack, "POST", f"/api/jobs/{o1}/{o2}", auth, {"project": "web"})
    assert reused["id"] == orchestration["id"] and reused["status"] == "pending"
    # web compares equal; mobile still pending → pending; mobile cancelled success → success
    for report_sha in (o1, o2):
        await post_report(
            client, stack, account, report_sha, [snap(images["a"], "Button")], project="web"
        )
    await call(client, stack, "POST", f"/api/reports/{o1}/compare/{o2}", auth, {"project": "web"})
    still = await call(client, stack, "POST", f"/api/jobs/{o1}/{o2}", auth, {"project": "web"})
    assert still["status"] == "pending"
    cancelled = await call(
        client,
        stack,
        "POST",
        f"/api/jobs/{o1}/{o2}/cancel",
        auth,
        {"project": "mobile", "status": "success", "message": "no mobile changes"},
    )
    assert cancelled["id"] == orchestration["id"] and cancelled["status"] == "success"
    # the deprecated alias, and an unknown job
    failed = await call(
        client, stack, "POST", f"/api/jobs/{sha1}/{sha2}/fail", auth, {"project": "web"}
    )
    assert failed["status"] == "failure" and failed["cancelled"] is True
    missing = await call(client, stack, "POST", f"/api/jobs/{sha()}/{sha()}/cancel", auth, {}, 404)
    assert "No job found" in missing["error"]["message"]
    await call(
        client, stack, "POST", f"/api/jobs/{sha1}/{sha2}/cancel", auth, {"status": "maybe"}, 422
    )


async def test_subscriptions_and_latest_snapshot(client, stack, account, images):
    auth = basic_auth(account)
    added = await call(
        client,
        stack,
        "POST",
        "/api/subscriptions/Button",
        auth,
        {"emailAddresses": ["ada@example.com", "bob@Example.COM"]},
    )
    assert added["emailAddresses"] == ["ada@example.com", "bob@example.com"]
    removed = await call(
        client,
        stack,
        "DELETE",
        "/api/subscriptions/Button",
        auth,
        {"emailAddresses": ["bob@example.com"]},
    )
    assert removed["emailAddresses"] == ["ada@example.com"]
    await call(
        client,
        stack,
        "POST",
        "/api/subscriptions/Button",
        auth,
        {"emailAddresses": ["not an address"]},
        422,
    )
    await call(client, stack, "POST", "/api/subscriptions/Button", auth, {}, 422)
    # the latest snapshot of a component variant
    project = f"p{sha()}"
    await post_report(client, stack, account, sha(), [snap(images["a"], "Chip")], project=project)
    await asyncio.sleep(0.01)
    await post_report(client, stack, account, sha(), [snap(images["b"], "Chip")], project=project)
    latest = await call(
        client, stack, "GET", f"/api/components/Chip/default/chrome?project={project}", auth
    )
    assert latest["url"] == images["b"].url
    await call(
        client,
        stack,
        "GET",
        f"/api/components/Chip/other/chrome?project={project}",
        auth,
        status=404,
    )


async def test_async_compare_waits_for_reports_and_falls_back(client, stack, account, images):
    auth = jwt_auth(account)
    base, head = sha(), sha()
    # scheduled before either report exists
    scheduled = await call(
        client,
        stack,
        "POST",
        f"/api/reports/{sha()}/compare/{head}",
        auth,
        {"isAsync": True, "fallbackShas": [base]},
    )
    assert isinstance(scheduled["id"], int) and scheduled["status"] == "pending"
    assert scheduled["compareUrl"].endswith(f"/comparisons/{scheduled['id']}")
    await post_report(client, stack, account, base, [snap(images["a"], "Button")])
    await post_report(client, stack, account, head, [snap(images["a"], "Button")])
    for _ in range(100):
        status = await call(client, stack, "GET", f"/api/reports/{head}/comparison-statuses", auth)
        if status and status[0]["status"] != "pending":
            break
        await asyncio.sleep(0.1)
    assert status[0]["status"] == "success"
    async with stack.apps["reports"][POOL].acquire() as conn:
        used = await conn.fetchval(
            "SELECT before_sha FROM comparisons WHERE id = $1", scheduled["id"]
        )
    assert used == base


async def test_pixel_diff_in_a_10x10_region(client, stack, account, images):
    before, after = sha(), sha()
    await post_report(client, stack, account, before, [snap(images["a"], "Button")])
    await post_report(client, stack, account, after, [snap(images["a2"], "Button")])
    result = await call(
        client, stack, "POST", f"/api/reports/{before}/compare/{after}", jwt_auth(account), {}
    )
    assert result["equal"] is False
    [[old, new]] = result["diffs"]
    assert old["url"] == images["a"].url and new["url"] == images["a2"].url
    [detail] = result["diffImages"]
    assert detail["changedPixels"] == 100 and detail["bbox"] == [20, 10, 10, 10]
    async with client.get(detail["url"], headers=jwt_auth(account)) as r:
        assert r.status == 200 and r.content_type == "image/png"
        diff = pyvips.Image.new_from_buffer(await r.read(), "")
    red = (diff[0] > 200) & (diff[1] < 80) & (diff[2] < 80)
    assert red.avg() * diff.width * diff.height / 255 == 100
    assert red.crop(20, 10, 10, 10).min() == 255
    # an ignored diff makes the same pair equal in later comparisons
    await call(
        client,
        stack,
        "POST",
        "/api/ignored-diffs",
        basic_auth(account),
        {"snapshot1Id": old["id"], "snapshot2Id": str(new["id"])},
        201,
    )
    again_after = sha()
    await post_report(client, stack, account, again_after, [snap(images["a2"], "Button")])
    again = await call(
        client,
        stack,
        "POST",
        f"/api/reports/{before}/compare/{again_after}",
        jwt_auth(account),
        {},
    )
    assert again["equal"] is True
    flakes = await call(client, stack, "GET", "/api/flake?component=Button", jwt_auth(account))
    assert [(f["snapshot1Id"], f["snapshot2Id"]) for f in flakes][:1] == [(old["id"], new["id"])]
