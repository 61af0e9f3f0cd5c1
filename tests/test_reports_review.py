"""Reviewing a comparison change by change, through the gateway as the page's forms and its
script post: each diff, added or deleted snapshot accepted, rejected, ignored or taken back on
its own; "accept all remaining" deciding only what nobody decided; the comparison's status (API,
badge, jobs) derived from the decisions, with a ``comparison.reviewed`` fact in the outbox each
time it changes; and every refused decision changing nothing."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from tests.reports_support import call, jwt_auth, post_report, screenshot, sha, snap, upload
from tests.test_reports_pages import (
    api_status,
    compare,
    page,
    path_of,
    review,
    review_change,
    signed_in,
)


@pytest.fixture(scope="module")
async def person(stack, account) -> AsyncIterator[aiohttp.ClientSession]:
    """The account's person, signed in through the real form."""
    session = await signed_in(stack, account)
    yield session
    await session.close()


#: Changes on the first page of a comparison (services.reports.pages.DIFFS_PER_PAGE).
PER_PAGE = 20


async def a_two_page_comparison(client, stack, account) -> dict:
    """21 diffs and one added snapshot: 22 changes, the last two on page 2. The colours are
    this module's own (ignored diffs hold for the whole account)."""
    base = random.randrange(0, 200)
    befores, afters = [], []
    for i in range(21):
        colour = (base, 40 + i * 9, 77)
        plain = await upload(client, stack, account, screenshot(10, 10, colour=colour))
        changed = await upload(
            client, stack, account, screenshot(10, 10, colour=colour, patch=(2, 3, 4, 2))
        )
        target = "firefox" if i % 2 else "chrome"  # one component on two targets
        befores.append(snap(plain, f"Row{i:02}", target=target))
        afters.append(snap(changed, f"Row{i:02}", target=target))
    fresh = await upload(client, stack, account, screenshot(10, 10, colour=(base, 1, 250)))
    before, after = sha(), sha()
    await post_report(client, stack, account, before, befores)
    await post_report(client, stack, account, after, [*afters, snap(fresh, "Zfresh")])
    result = await compare(client, stack, account, before, after)
    assert result["summary"] == "21 diffs, 1 added, 0 deleted, 0 unchanged"
    return result


async def reviewed_facts(database_url: str, comparison_id: int) -> list[tuple[str, str]]:
    """The ``comparison.reviewed`` events of a comparison in the outbox: (previous, status)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT envelope FROM reports.outbox WHERE type = 'comparison.reviewed' ORDER BY seq"
        )
    finally:
        await conn.close()
    found = []
    for row in rows:
        envelope = row["envelope"]
        data = (json.loads(envelope) if isinstance(envelope, str) else envelope)["data"]
        if data["comparison_id"] == comparison_id:
            found.append((data["previous_status"], data["status"]))
    return found


async def test_each_change_is_decided_on_its_own(client, stack, account, person, database_url):
    result = await a_two_page_comparison(client, stack, account)
    path, comparison_id = path_of(result["compareUrl"]), result["id"]
    first = await page(person, stack, path)
    second = await page(person, stack, f"{path}?page=2")
    page_one, page_two = first.change_forms(), second.change_forms()
    assert len(page_one) == PER_PAGE and len(page_two) == 2
    # only diffs can be ignored
    assert [set(d) for d in page_two.values()] == [
        {"accept", "reject", "ignore", "undo"},
        {"accept", "reject", "undo"},
    ]

    # a decision on page 2 leaves page 1 undecided, and the comparison awaiting review
    position, forms = next(iter(page_two.items()))
    r = await review_change(person, stack, forms["accept"])
    assert r.status == 303 and r.headers["Location"] == f"{path}?page=2#entry-{position}"
    assert await api_status(client, stack, account, result) == "awaiting review"
    again = await page(person, stack, path)
    assert "21 of 22 changes wait for a review." in again.text
    assert again.text.count("Not reviewed yet") == PER_PAGE
    assert "accepted" in (await page(person, stack, f"{path}?page=2")).text

    # review.js asks for JSON: one rejection fails the build, undoing it waits again
    one, one_forms = next(iter(page_one.items()))
    verdict = await posted_json(person, stack, one_forms["reject"])
    assert verdict == {
        "comparisonId": comparison_id,
        "position": one,
        "decision": "rejected",
        "status": "failure",
        "undecided": 20,
        "accepted": 1,
        "rejected": 1,
        "ignored": 0,
    }
    assert await api_status(client, stack, account, result) == "failure"
    verdict = await posted_json(person, stack, one_forms["undo"])
    assert (verdict["decision"], verdict["status"], verdict["undecided"]) == (
        None,
        "awaiting review",
        21,
    )

    # "accept all remaining" decides the 21 nobody decided, on both pages
    r = await review(person, stack, comparison_id, first.review_forms()["accept"]["fields"])
    assert r.status == 303
    assert await api_status(client, stack, account, result) == "success"
    done = await page(person, stack, path)
    assert done.review_forms() == {}  # nothing left to decide at once
    assert done.text.count("Accepted") >= PER_PAGE and "Not reviewed yet" not in done.text
    job = await call(
        client, stack, "POST", f"/api/jobs/{result['sha1']}/{result['sha2']}", jwt_auth(account)
    )
    assert job["status"] == "success"
    # each change of the review's status is one fact; a decision that changes none is none
    assert await reviewed_facts(database_url, comparison_id) == [
        ("awaiting review", "failure"),
        ("failure", "awaiting review"),
        ("awaiting review", "success"),
    ]


def snap_of(snapshot: dict) -> dict:
    """A report's snap of a snapshot the API answered (same image, component and keys)."""
    return {k: snapshot[k] for k in ("component", "variant", "target", "url", "width", "height")}


async def posted_json(session, stack, form: dict) -> dict:
    async with session.post(
        f"{stack.url}{form['action']}",
        data=form["fields"],
        headers={"Origin": stack.url, "Accept": "application/json"},
        allow_redirects=False,
    ) as r:
        assert r.status == 200 and r.content_type == "application/json", await r.text()
        return await r.json()


async def test_ignoring_a_diff_counts_it_unchanged_from_now_on(client, stack, account, person):
    result = await a_two_page_comparison(client, stack, account)
    path = path_of(result["compareUrl"])
    forms = (await page(person, stack, path)).change_forms()
    [diff_forms, *_] = forms.values()
    verdict = await posted_json(person, stack, diff_forms["ignore"])
    assert verdict["decision"] == "ignored" and verdict["status"] == "awaiting review"
    # the pair is an ignored diff of the account now, as if ignored through the API
    flaky = await call(
        client, stack, "GET", "/api/flake?component=Row00&limit=100", jwt_auth(account)
    )
    assert [(f["component"], f["target"]) for f in flaky][:1] == [("Row00", "chrome")]
    # the same comparison asked again (a client's retry) is the same one, the decision kept
    again = await compare(client, stack, account, result["sha1"], result["sha2"])
    assert again["id"] == result["id"] and again["summary"] == result["summary"]
    assert "21 of 22 changes wait for a review." in (await page(person, stack, path)).text
    # another comparison of the same images counts the ignored pair as unchanged
    before, after = sha(), sha()
    row = result["diffs"][0]
    await post_report(client, stack, account, before, [snap_of(row[0])])
    await post_report(client, stack, account, after, [snap_of(row[1])])
    later = await compare(client, stack, account, before, after)
    assert later["equal"] is True and later["status"] == "success"


async def test_refused_decisions_change_nothing(
    client, stack, account, other_account, person, resilience
):
    result = await a_two_page_comparison(client, stack, account)
    path, comparison_id = path_of(result["compareUrl"]), result["id"]
    second = (await page(person, stack, f"{path}?page=2")).change_forms()
    added_position = max(second)  # the added snapshot is listed last
    added = second[added_position]
    token = added["accept"]["fields"]["csrf"]
    stranger = await signed_in(stack, other_account)
    # the stranger's own valid token, from the sign-out form of the page they are refused
    refused = await page(stranger, stack, path, status=404)
    [their_token] = {f["fields"]["csrf"] for f in refused.forms if "csrf" in f["fields"]}
    try:
        cases = [
            # an added snapshot has no pair of images to ignore
            (person, added["accept"]["action"], {"decision": "ignore", "csrf": token}, 422),
            (person, added["accept"]["action"], {"decision": "maybe", "csrf": token}, 422),
            (person, added["accept"]["action"], {"decision": "accept"}, 403),
            *(
                (person, f"/comparisons/{comparison_id}/changes/{bad}", accept, 404)
                for bad in ("999", "x", "-1", "%C2%B2")
                for accept in [{"decision": "accept", "csrf": token}]
            ),
            # another account's person, with their own session's token, finds no comparison
            (stranger, added["accept"]["action"], {"decision": "accept", "csrf": their_token}, 404),
        ]
        seen: list[int] = []
        for session, action, fields, status in cases:
            async with session.post(
                f"{stack.url}{action}",
                data=fields,
                headers={"Origin": stack.url},
                allow_redirects=False,
            ) as r:
                seen.append(r.status)
                assert r.status == status, (action, fields, r.status, await r.text())
        # API credentials are no person on a page
        async with client.post(
            f"{stack.url}{added['accept']['action']}",
            data=added["accept"]["fields"],
            headers=jwt_auth(account),
            allow_redirects=False,
        ) as r:
            seen.append(r.status)
            assert r.status == 403
    finally:
        await stranger.close()
    html = await page(person, stack, path)
    assert "22 of 22 changes wait for a review." in html.text
    assert await api_status(client, stack, account, result) == "awaiting review"
    resilience.row(
        "reviews",
        "refused decisions on one change of a comparison",
        injected=f"{len(seen)} posts to /comparisons/{{id}}/changes/{{position}}: ignore on an"
        " added snapshot, an unknown decision, no form token, positions 999, x, -1 and a"
        " superscript digit, another account's person with their own valid token, API"
        " credentials instead of a session",
        observed=f"answers {sorted(set(seen))} (422 for the decisions, 403 without a token or a"
        " session, 404 for no such change or another account's); all 22 changes still"
        " undecided and the comparison still awaiting review",
        accepted=sum(status < 400 for status in seen),
        effects=0,
        errors_5xx=sum(status >= 500 for status in seen),
    )


async def test_the_badge_counts_what_the_page_counts(client, stack, account, person):
    result = await a_two_page_comparison(client, stack, account)
    html = await page(person, stack, path_of(result["compareUrl"]))
    assert "22 changes: 21 diffs 1 added 0 deleted" in html.text
    async with client.get(result["statusImageUrl"]) as r:
        assert "22 changes" in await r.text()
