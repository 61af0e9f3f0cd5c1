"""The reports pages through the gateway, in a browser's shoes (a cookie jar, a session from the
real sign-in form): a report grouped by component, a comparison with its diffs, added and
deleted snapshots (unchanged ones hidden, counted) a page at a time, accept and reject with
their anti-forgery token, a job, the unsubscribe link of the e-mails; and who may see what."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urlsplit

import aiohttp
import pytest

from services.reports import domain
from services.reports.pages import windows
from shared.signing import UNSUBSCRIBE, Signer
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


class Html(HTMLParser):
    """What a test looks at in a page: images, links, forms, articles and the visible text."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.imgs: list[dict] = []
        self.links: list[str] = []
        self.forms: list[dict] = []
        self.articles: list[str] = []
        self.headings: list[str] = []
        self._form: dict | None = None
        self._hidden = 0
        self._heading: list[str] | None = None
        self._text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("style", "script"):
            self._hidden += 1
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "form":
            self._form = {
                "action": a.get("action"),
                "method": a.get("method"),
                "fields": {},
                "buttons": {},
            }
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            self._form["fields"][a["name"]] = a.get("value", "")
        elif tag == "button" and self._form is not None and a.get("name"):
            self._form["buttons"][a.get("value", "")] = a
        elif tag == "article":
            self.articles.append(a.get("id", ""))
        elif tag in ("h1", "h2"):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._hidden -= 1
        elif tag == "form":
            self._form = None
        elif tag in ("h1", "h2") and self._heading is not None:
            self.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._text.append(data)
            if self._heading is not None:
                self._heading.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._text).split())

    def srcs(self, cls: str) -> list[str]:
        """The ``src`` of every image with class ``cls``."""
        return [i["src"] for i in self.imgs if cls in i.get("class", "").split()]

    def review_forms(self) -> dict[str, dict]:
        """The "… all remaining" form, by the decision of each of its buttons (enabled ones)."""
        return {
            value: {"action": f["action"], "fields": {**f["fields"], "decision": value}}
            for f in self.forms
            if f["action"].endswith("/review")
            for value, button in f["buttons"].items()
            if "disabled" not in button
        }

    def change_forms(self) -> dict[int, dict[str, dict]]:
        """Each change's decision form, by position, then by the decision of each button."""
        found: dict[int, dict[str, dict]] = {}
        for f in self.forms:
            if "/changes/" in f["action"]:
                position = int(f["action"].rsplit("/", 1)[1])
                found[position] = {
                    value: {"action": f["action"], "fields": {**f["fields"], "decision": value}}
                    for value in f["buttons"]
                }
        return found


def path_of(url: str) -> str:
    return urlsplit(url).path


def loopback_connector() -> aiohttp.TCPConnector:
    # Each browser its own loopback address, so the anonymous rate bucket is fresh.
    address = f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    return aiohttp.TCPConnector(local_addr=(address, 0))


async def signed_in(stack, account: dict) -> aiohttp.ClientSession:
    """A cookie-keeping client signed in through the real sign-in form."""
    session = aiohttp.ClientSession(
        connector=loopback_connector(), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    form = {"email": account["email"], "password": "hunter2hunter2", "next": "/"}
    async with session.post(f"{stack.url}/signin", data=form, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
        assert "darkroom_session" in r.cookies
    return session


@pytest.fixture(scope="module")
async def person(stack, account) -> AsyncIterator[aiohttp.ClientSession]:
    """The account's person, signed in."""
    session = await signed_in(stack, account)
    yield session
    await session.close()


@pytest.fixture(scope="module")
async def stranger(stack, other_account) -> AsyncIterator[aiohttp.ClientSession]:
    """A person of another account, signed in."""
    session = await signed_in(stack, other_account)
    yield session
    await session.close()


@pytest.fixture(scope="module")
async def images(stack, account):
    """Screenshots of this module's own: the account is the session's, and another module
    ignores the diff between its own a and a2 (ignored diffs hold for the whole account)."""
    grey = (228, 228, 228)
    async with aiohttp.ClientSession() as client:
        return {
            "a": await upload(client, stack, account, screenshot(colour=grey)),
            "a2": await upload(
                client, stack, account, screenshot(colour=grey, patch=(20, 10, 10, 10))
            ),
            "b": await upload(client, stack, account, screenshot(colour=(190, 20, 20))),
            "c": await upload(client, stack, account, screenshot(32, 32, colour=(20, 190, 20))),
        }


async def page(session, stack, path: str, status: int = 200, **kwargs) -> Html:
    async with session.get(f"{stack.url}{path}", allow_redirects=False, **kwargs) as r:
        body = await r.text()
        assert r.status == status, (path, r.status, body[:500])
        if status == 200:
            assert r.content_type == "text/html"
            assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
            assert r.headers["Cache-Control"] == "no-store"
        return Html(body)


async def compare(client, stack, account, before: str, after: str, **body) -> dict:
    return await call(
        client, stack, "POST", f"/api/reports/{before}/compare/{after}", jwt_auth(account), body
    )


async def api_status(client, stack, account, comparison: dict) -> str:
    answer = await call(
        client,
        stack,
        "GET",
        f"/api/reports/{comparison['sha1']}/compare/{comparison['sha2']}/status",
        jwt_auth(account),
    )
    return answer["status"]


async def review(session, stack, comparison_id: int, fields: dict) -> aiohttp.ClientResponse:
    async with session.post(
        f"{stack.url}/comparisons/{comparison_id}/review",
        data=fields,
        headers={"Origin": stack.url},
        allow_redirects=False,
    ) as r:
        await r.read()
        return r


async def review_change(session, stack, form: dict, **headers: str) -> aiohttp.ClientResponse:
    """Post one change's decision form as the page's button would."""
    async with session.post(
        f"{stack.url}{form['action']}",
        data=form["fields"],
        headers={"Origin": stack.url, **headers},
        allow_redirects=False,
    ) as r:
        await r.read()
        return r


def text_of_h1(result: dict) -> str:
    return f"Comparison {result['sha1']} → {result['sha2']}"


async def a_comparison_with_a_diff(client, stack, account, images) -> dict:
    """Button changed, Modal deleted, Chip added, Card unchanged."""
    before, after = sha(), sha()
    await post_report(
        client,
        stack,
        account,
        before,
        [snap(images["a"], "Button"), snap(images["b"], "Modal"), snap(images["c"], "Card")],
    )
    await post_report(
        client,
        stack,
        account,
        after,
        [snap(images["a2"], "Button"), snap(images["c"], "Card"), snap(images["b"], "Chip")],
    )
    result = await compare(
        client, stack, account, before, after, link="https://x/pr/9", message="Tweak <buttons>"
    )
    assert result["equal"] is False
    return result


# --- the pages ----------------------------------------------------------------------------------


def test_a_page_of_changes_is_read_kind_by_kind() -> None:
    counts = {"diff": 3, "added": 2, "deleted": 4, "unchanged": 50}
    kinds = ("diff", "added", "deleted")
    assert windows(counts, kinds, 0, 2) == [("diff", 0, 2)]
    assert windows(counts, kinds, 2, 2) == [("diff", 2, 1), ("added", 0, 1)]
    assert windows(counts, kinds, 4, 20) == [("added", 1, 1), ("deleted", 0, 4)]
    assert windows(counts, kinds, 9, 20) == []
    assert windows({"deleted": 1}, kinds, 0, 20) == [("deleted", 0, 1)]


async def test_report_page_groups_snapshots_by_component(client, stack, account, images, person):
    report_sha = sha()
    snaps = [
        snap(images["a"], "Button"),
        snap(images["b"], "Modal", "open", "firefox"),
        snap(images["c"], "Button", "hover", "edge"),
    ]
    created = await post_report(
        client, stack, account, report_sha, snaps, link="https://x/pr/7", message="Fix <b>ugly</b>"
    )
    html = await page(person, stack, path_of(created["url"]))
    assert f"Report {report_sha}" in html.headings
    # grouped: both Button snapshots under one heading, before Modal
    assert [h for h in html.headings if h in ("Button", "Modal")] == ["Button", "Modal"]
    shots = html.srcs("shot")
    assert shots == [path_of(images["a"].url), path_of(images["c"].url), path_of(images["b"].url)]
    text = html.text
    times = "\N{MULTIPLICATION SIGN}"
    for words in (
        "default project",
        f"hover · edge · 32{times}32",
        f"open · firefox · 64{times}48",
    ):
        assert words in text, words
    assert "Fix <b>ugly</b>" in text  # shown as text, not markup
    assert "https://x/pr/7" in html.links
    assert "Snapshots 3" in text
    await page(person, stack, f"{path_of(created['url'])}?page=2", status=404)  # one page only
    # the same page for API credentials (curl with the Happo key)
    html = await page(client, stack, path_of(created["url"]), headers=basic_auth(account))
    assert len(html.srcs("shot")) == 3
    # a link that is not http(s) is shown, never made clickable
    other = await post_report(
        client, stack, account, sha(), snaps[:1], link="javascript:alert(document.cookie)"
    )
    html = await page(person, stack, path_of(other["url"]))
    assert "javascript:alert(document.cookie)" in html.text
    assert not any(link.startswith("javascript:") for link in html.links)


async def test_comparison_page_shows_changes_and_hides_unchanged(
    client, stack, account, images, person
):
    result = await a_comparison_with_a_diff(client, stack, account, images)
    html = await page(person, stack, path_of(result["compareUrl"]))
    text = html.text
    assert "awaiting review" in text and "3 of 3 changes wait for a review." in text
    assert "1 diff, 1 added, 1 deleted, 1 unchanged" in text  # the summary
    assert "Tweak <buttons>" in text and "https://x/pr/9" in html.links
    assert "3 changes: 1 diff 1 added 1 deleted 1 unchanged ( show )" in text
    assert "Card" not in text  # the unchanged snapshot is hidden, until asked for
    assert html.headings == [text_of_h1(result), "Diffs", "Added", "Deleted", "Changes"]
    [diff] = result["diffImages"]
    assert html.srcs("diffimg") == [path_of(diff["url"])]
    a, a2 = path_of(images["a"].url), path_of(images["a2"].url)
    # side by side, then the overlay and the swipe stack the same two images
    assert html.srcs("before") == [a, a, a] and html.srcs("after") == [a2, a2, a2]
    assert "100 of 3072 pixels changed" in text
    added = [i["alt"] for i in html.imgs if i["src"] == path_of(images["b"].url)]
    assert added == ["Chip: default on chrome (added)", "Modal: default on chrome (deleted)"]
    # the before and after reports are linked
    before_report = await call(
        client, stack, "GET", f"/api/reports/{result['sha1']}/status", jwt_auth(account)
    )
    assert f"/reports/{before_report['id']}" in html.links
    # no inline script: the one script is the workspace's own file, which the policy allows
    async with person.get(result["compareUrl"]) as r:
        body = await r.text()
    assert body.count("<script") == 1
    assert '<script src="/comparisons/review.js" defer></script>' in body
    async with person.get(f"{stack.url}/comparisons/review.js") as r:
        assert r.status == 200 and r.content_type == "application/javascript"
        assert "keydown" in await r.text()
    # the unchanged snapshot on demand
    shown = await page(person, stack, path_of(result["compareUrl"]) + "?unchanged=1")
    assert "Card" in shown.text and shown.headings[-2] == "Unchanged"
    # the diff image loads for the signed-in person
    async with person.get(f"{stack.url}{html.srcs('diffimg')[0]}") as r:
        assert r.status == 200 and r.content_type == "image/png"
    # review forms for the person; none for API credentials
    forms = html.review_forms()
    assert set(forms) == {"accept", "reject"} and len(forms["accept"]["fields"]["csrf"]) == 64
    changes = html.change_forms()
    assert sorted(len(by_decision) for by_decision in changes.values()) == [3, 3, 4]
    html = await page(client, stack, path_of(result["compareUrl"]), headers=basic_auth(account))
    assert html.review_forms() == {} and html.change_forms() == {}
    assert html.srcs("diffimg") == [path_of(diff["url"])]


async def test_the_diffs_list_paginates(client, stack, account, person):
    auth_account = account
    befores, afters = [], []
    for i in range(25):
        plain = screenshot(8, 8, colour=(i * 10, 60, 60))
        changed = screenshot(8, 8, colour=(i * 10, 60, 60), patch=(1, 1, 2, 2))
        befores.append(snap(await upload(client, stack, auth_account, plain), f"Item{i:02}"))
        afters.append(snap(await upload(client, stack, auth_account, changed), f"Item{i:02}"))
    same = await upload(client, stack, account, screenshot(8, 8, colour=(1, 1, 1)))
    gone = await upload(client, stack, account, screenshot(8, 8, colour=(2, 2, 2)))
    new = await upload(client, stack, account, screenshot(8, 8, colour=(3, 3, 3)))
    before, after = sha(), sha()
    await post_report(
        client,
        stack,
        account,
        before,
        [*befores, snap(same, "Same1"), snap(same, "Same2"), snap(gone, "Gone")],
    )
    await post_report(
        client,
        stack,
        account,
        after,
        [snap(new, "Fresh"), *afters, snap(same, "Same1"), snap(same, "Same2")],
    )
    result = await compare(client, stack, account, before, after)
    assert result["summary"] == "25 diffs, 1 added, 1 deleted, 2 unchanged"
    path = path_of(result["compareUrl"])
    first = await page(person, stack, path)
    assert len(first.articles) == 20 and first.headings[1:] == ["Diffs", "Changes"]
    assert "Items 1\N{EN DASH}20 of 27, page 1 of 2." in first.text
    assert f"{path}?page=2" in first.links
    second = await page(person, stack, f"{path}?page=2")
    assert len(second.articles) == 7  # 5 diffs, then the added and the deleted snapshot
    assert second.headings[1:] == ["Diffs", "Added", "Deleted", "Changes"]
    alts = {name: {i.get("alt") for i in html.imgs} for name, html in (("1", first), ("2", second))}
    assert {"Fresh: default on chrome (added)", "Gone: default on chrome (deleted)"} <= alts["2"]
    assert "Fresh: default on chrome (added)" not in alts["1"]
    # the list beside the viewer names every change on every page, each linked to its page
    assert f"{path}?page=2#entry-0" in first.links and f"{path}#entry-1" in second.links
    assert path in second.links  # back to page 1
    assert "Same1" not in first.text + second.text and "2 unchanged ( show )" in second.text
    # the pages together show every diff image the API lists, each once, in order
    shown = first.srcs("diffimg") + second.srcs("diffimg")
    assert shown == [path_of(d["url"]) for d in result["diffImages"]]
    assert [a.split("-")[1] for a in (first.articles + second.articles)[:25]] == [
        s.rsplit("/", 1)[1].removesuffix(".png") for s in shown
    ]
    # a review from page 2 comes back to page 2
    forms = second.review_forms()
    assert forms["accept"]["fields"]["page"] == "2"
    r = await review(person, stack, result["id"], forms["accept"]["fields"])
    assert r.status == 303 and r.headers["Location"] == f"{path}?page=2"
    # past the last page, and pages that are no number
    await page(person, stack, f"{path}?page=3", status=404)
    for bad in ("0", "x", "-1", "1.5", "%C2%B2"):
        await page(person, stack, f"{path}?page={bad}", status=400)


async def test_accept_then_reject_sets_the_api_status(client, stack, account, images, person):
    result = await a_comparison_with_a_diff(client, stack, account, images)
    path = path_of(result["compareUrl"])
    assert await api_status(client, stack, account, result) == "awaiting review"
    forms = (await page(person, stack, path)).review_forms()
    r = await review(person, stack, result["id"], forms["accept"]["fields"])
    assert r.status == 303 and r.headers["Location"] == path
    assert await api_status(client, stack, account, result) == "success"
    html = await page(person, stack, path)
    assert "Accepted; the last decision by you on" in html.text
    # the Comparison object and the badge agree
    job = await call(
        client,
        stack,
        "POST",
        f"/api/jobs/{result['sha1']}/{result['sha2']}",
        jwt_auth(account),
        {},
    )
    assert job["status"] == "success"
    # nothing is left to decide at once; a second look rejects one change after all
    assert html.review_forms() == {}
    [first, *_] = html.change_forms().values()
    r = await review_change(person, stack, first["reject"])
    assert r.status == 303
    assert await api_status(client, stack, account, result) == "failure"
    assert "Rejected; the last decision by you on" in (await page(person, stack, path)).text


async def test_refused_reviews_change_nothing(
    client, stack, account, other_account, images, person, stranger
):
    result = await a_comparison_with_a_diff(client, stack, account, images)
    comparison_id = result["id"]
    good = (await page(person, stack, path_of(result["compareUrl"]))).review_forms()["accept"]
    token = good["fields"]["csrf"]
    # the stranger's own, valid token on their own (another) comparison page
    theirs = await upload(client, stack, other_account, screenshot(colour=(5, 6, 7)))
    changed = await upload(
        client, stack, other_account, screenshot(colour=(5, 6, 7), patch=(1, 1, 4, 4))
    )
    s1, s2 = sha(), sha()
    await post_report(client, stack, other_account, s1, [snap(theirs, "X")])
    await post_report(client, stack, other_account, s2, [snap(changed, "X")])
    other = await compare(client, stack, other_account, s1, s2)
    their_token = (
        (await page(stranger, stack, path_of(other["compareUrl"]))).review_forms()["accept"]
    )["fields"]["csrf"]
    assert their_token != token
    # another session of the same person has another token
    again = await signed_in(stack, account)
    try:
        forms = (await page(again, stack, path_of(result["compareUrl"]))).review_forms()
        assert forms["accept"]["fields"]["csrf"] != token
    finally:
        await again.close()
    refused = [
        (person, {"decision": "accept"}, 403),
        (person, {"decision": "accept", "csrf": ""}, 403),
        # the last character changed (a token may end in "0" already)
        (
            person,
            {"decision": "accept", "csrf": token[:-1] + ("1" if token[-1] == "0" else "0")},
            403,
        ),
        (person, {"decision": "accept", "csrf": their_token}, 403),
        (person, {"decision": "accept", "csrf": forms["accept"]["fields"]["csrf"]}, 403),
        (person, {"decision": "maybe", "csrf": token}, 422),
        (stranger, {"decision": "accept", "csrf": their_token}, 404),
    ]
    for session, fields, status in refused:
        r = await review(session, stack, comparison_id, fields)
        assert r.status == status, (fields, r.status)
    # API credentials are no person on a page; nobody signed in is sent to sign in
    async with client.post(
        f"{stack.url}/comparisons/{comparison_id}/review",
        data={"decision": "accept", "csrf": token},
        headers=basic_auth(account),
        allow_redirects=False,
    ) as r:
        assert r.status == 403
    async with client.post(
        f"{stack.url}/comparisons/{comparison_id}/review",
        data={"decision": "accept", "csrf": token},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        assert r.headers["Location"] == f"/signin?next=/comparisons/{comparison_id}"
    # a cross-site post with the cookie is stopped at the gateway
    async with person.post(
        f"{stack.url}/comparisons/{comparison_id}/review",
        data={"decision": "accept", "csrf": token},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    ) as r:
        assert r.status == 403
    r = await review(person, stack, "abc", {"decision": "accept", "csrf": token})
    assert r.status == 404
    assert await api_status(client, stack, account, result) == "awaiting review"
    assert await api_status(client, stack, other_account, other) == "awaiting review"


async def test_a_pending_comparison_cannot_be_reviewed(client, stack, account, images, person):
    done = await a_comparison_with_a_diff(client, stack, account, images)
    forms = (await page(person, stack, path_of(done["compareUrl"]))).review_forms()
    pending = await compare(client, stack, account, sha(), sha(), isAsync=True)
    html = await page(person, stack, path_of(pending["compareUrl"]))
    assert "pending" in html.text and "Waiting for both reports to be complete." in html.text
    assert html.review_forms() == {} and html.articles == []
    r = await review(person, stack, pending["id"], forms["accept"]["fields"])
    assert r.status == 409
    assert await api_status(client, stack, account, pending) == "pending"


async def test_job_page_combines_its_projects(client, stack, account, images, person):
    auth = jwt_auth(account)
    o1, o2 = sha(), sha()
    web_project, mobile = f"web-{sha()}", f"mobile-{sha()}"
    job = await call(
        client,
        stack,
        "POST",
        f"/api/jobs/{o1}/{o2}/orchestrate",
        auth,
        {"projects": [web_project, mobile], "message": "PR 12"},
    )
    path = path_of(job["url"])
    html = await page(person, stack, path)
    assert "pending" in html.text and "combined over 2 projects" in html.text
    assert html.text.count("not compared yet") == 2
    for report_sha in (o1, o2):
        await post_report(
            client, stack, account, report_sha, [snap(images["a"], "Button")], project=web_project
        )
    compared = await compare(client, stack, account, o1, o2, project=web_project)
    await call(
        client,
        stack,
        "POST",
        f"/api/jobs/{o1}/{o2}/cancel",
        auth,
        {"project": mobile, "status": "success", "message": "no mobile changes"},
    )
    html = await page(person, stack, path)
    text = html.text
    assert f"{web_project} success" in text and f"{mobile} success" in text
    assert "cancelled: no mobile changes" in text and "PR 12" in text
    assert f"/comparisons/{compared['id']}" in html.links
    assert text.count("not compared yet") == 1
    # the header names the signed-in person (auth told the reports service who it is)
    assert f"Sign out {account['email']}" in html.text and "Sign in" not in html.text
    # a single project's job
    solo = await call(client, stack, "POST", f"/api/jobs/{sha()}/{sha()}", auth, {"project": "s"})
    html = await page(person, stack, path_of(solo["url"]))
    assert "s pending" in html.text and "combined" not in html.text


async def test_who_may_see_the_pages(
    client, stack, account, other_account, images, person, stranger
):
    result = await a_comparison_with_a_diff(client, stack, account, images)
    report = await call(
        client, stack, "GET", f"/api/reports/{result['sha2']}/status", jwt_auth(account)
    )
    job = await call(
        client, stack, "POST", f"/api/jobs/{sha()}/{sha()}", jwt_auth(account), {"project": "p"}
    )
    paths = [path_of(report["url"]), path_of(result["compareUrl"]), path_of(job["url"])]
    for path in paths:
        await page(person, stack, path)
        # nobody signed in: off to sign in, and back here afterwards
        async with client.get(f"{stack.url}{path}?page=1", allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == f"/signin?next={path}%3Fpage%3D1"
        # another account's id does not exist for it, signed in or with its API key
        await page(stranger, stack, path, status=404)
        await page(client, stack, path, status=404, headers=basic_auth(other_account))
    # the sign-in page takes the person back
    async with client.get(f"{stack.url}/signin?next={paths[1]}") as r:
        assert f'name="next" value="{paths[1]}"' in await r.text()
    for kind in ("reports", "comparisons", "jobs"):
        for bad in ("abc", "%C2%B2", "1e3", "99999999999999999999", "0"):
            html = await page(person, stack, f"/{kind}/{bad}", status=404)
            assert "Not found" in html.headings
        await page(person, stack, f"/{kind}/999999999", status=404)


# --- unsubscribe ----------------------------------------------------------------------------


async def subscribers(client, stack, account, component: str, keep: str) -> list[str]:
    answer = await call(
        client,
        stack,
        "POST",
        f"/api/subscriptions/{component}",
        basic_auth(account),
        {"emailAddresses": [keep]},
    )
    return answer["emailAddresses"]


async def test_unsubscribe_from_the_email_link(client, stack, account, images, inbox):
    component = f"Pane{sha()}"
    leaver, keeper = f"l{sha()}@example.com", f"k{sha()}@example.com"
    assert await subscribers(client, stack, account, component, leaver) == [leaver]
    assert sorted(await subscribers(client, stack, account, component, keeper)) == sorted(
        [leaver, keeper]
    )
    before, after = sha(), sha()
    await post_report(client, stack, account, before, [snap(images["a"], component)])
    await post_report(client, stack, account, after, [snap(images["a2"], component)])
    await compare(client, stack, account, before, after)
    for _ in range(100):
        if inbox.to(leaver):
            break
        await asyncio.sleep(0.1)
    [mail] = inbox.to(leaver)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = mail["List-Unsubscribe"].strip().removeprefix("<").removesuffix(">")
    assert url.startswith(f"{stack.url}/unsubscribe/")
    # looking at the link (a scanner, a preview) changes nothing
    html = await page(client, stack, path_of(url))
    assert leaver in html.text and component in html.text
    [form] = html.forms
    assert form["action"] == path_of(url) and form["method"] == "post"
    assert leaver in await subscribers(client, stack, account, component, keeper)
    # RFC 8058 one-click, as a mail client sends it
    async with client.post(
        url,
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as r:
        assert r.status == 200 and "Unsubscribed" in await r.text()
    assert await subscribers(client, stack, account, component, keeper) == [keeper]
    # the address stays unsubscribed when the API adds it again
    assert await subscribers(client, stack, account, component, leaver) == [keeper]
    # the page's button: the same, again
    async with client.post(url, data=form["fields"]) as r:
        assert r.status == 200 and leaver in await r.text()
    # links that are not ours do nothing
    token = path_of(url).rsplit("/", 1)[1]
    other_key = Signer(UNSUBSCRIBE, "not-the-key", None, domain.UNSUBSCRIBE_DIGITS)
    forged = domain.unsubscribe_token(other_key, account["account_id"], [component], keeper)
    for bad in ("garbage", token[:-1] + ("0" if token[-1] != "0" else "1"), forged, "a.b"):
        await page(client, stack, f"/unsubscribe/{bad}", status=404)
        async with client.post(
            f"{stack.url}/unsubscribe/{bad}", data=b"List-Unsubscribe=One-Click"
        ) as r:
            assert r.status == 404
    assert await subscribers(client, stack, account, component, keeper) == [keeper]
