"""Commit statuses posted to recording stand-ins of the GitHub and GitLab APIs on loopback:
exactly what each receives (method, path, headers, body) when a job starts, its comparison
completes, a person's review flips it, a sha is skipped, a job is cancelled, an orchestration
over two projects settles; a 429 with Retry-After retried after it; a refused token marking
the integration failing and stopping. The start-job + compare flow runs through the real
happo.io 13 CLI with a pull-request ``--link``. The stand-ins are reached the way an operator
allows a partner network (DARKROOM_REMOTE_ALLOW_NETWORKS): the reports app's sender is swapped
for one that also reaches 127.0.0.0/8."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import pytest
from aiohttp import web

from services.reports.app import STATUS_DELIVERY
from services.reports.outbound import Answer, Sender
from services.reports.statuses import domain as status_domain
from tests import happo_clients_support as clients
from tests.conftest import free_port
from tests.happo_clients_support import happo, write_config
from tests.reports_support import call, jwt_auth, post_report, screenshot, sha, snap, upload
from tests.test_reports_pages import page, review, signed_in

pytestmark = pytest.mark.timeout(300)
happo_modules = clients.happo_modules


# --- the stand-ins -------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: dict
    at: float


@dataclass
class Provider:
    """A recording stand-in of a provider's API: answers 201 unless a path has scripted
    answers (status, headers), taken in turn."""

    port: int
    received: list[Received] = field(default_factory=list)
    scripted: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        raw = request.rel_url.raw_path  # as sent: GitLab's project path stays %2F-encoded
        self.received.append(
            Received(request.method, raw, dict(request.headers), body, time.monotonic())
        )
        queue = self.scripted.get(raw)
        status, headers = queue.pop(0) if queue else (201, {})
        if status >= 400:
            return web.json_response(
                {"message": f"stand-in says {status}"}, status=status, headers=headers
            )
        return web.json_response({"id": len(self.received), **body}, status=201)

    def to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, path: str, count: int, within: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.to(path)) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        got = self.to(path)
        assert len(got) >= count, f"{path}: {len(got)} of {count} statuses arrived: {got}"
        return got


@pytest.fixture(scope="module")
async def providers(stack) -> AsyncIterator[dict[str, Provider]]:
    """A GitHub and a GitLab stand-in; the reports app allowed to reach loopback meanwhile."""
    made: dict[str, Provider] = {}
    runners = []
    for name in ("github", "gitlab"):
        provider = Provider(free_port())
        app = web.Application()
        app.router.add_post("/{tail:.*}", provider.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", provider.port).start()
        runners.append(runner)
        made[name] = provider
    delivery = stack.apps["reports"][STATUS_DELIVERY]
    default = delivery.sender
    delivery.sender = Sender((ipaddress.ip_network("127.0.0.0/8"),), 5.0)
    try:
        yield made
    finally:
        swapped, delivery.sender = delivery.sender, default
        await swapped.close()
        for runner in runners:
            await runner.cleanup()


def integration(stack, account: dict, provider: str, base_url: str, *extra: str) -> dict:
    done = stack.cli(
        "integration", "create", "--account", account["account_id"], "--provider", provider,
        "--base-url", base_url, "--token", f"tok-{provider}-secret", *extra,
    )  # fmt: skip
    return json.loads(done.stdout)


async def reports(client, stack, account, before: str, after: str, *, changed: bool, **extra):
    """Two reports of one Button; the after one differs when ``changed``."""
    colour = (random.randrange(256), random.randrange(256), random.randrange(256))
    plain = await upload(client, stack, account, screenshot(20, 20, colour=colour))
    other = plain
    if changed:
        other = await upload(
            client, stack, account, screenshot(20, 20, colour=colour, patch=(2, 2, 5, 5))
        )
    await post_report(client, stack, account, before, [snap(plain, "Button")], **extra)
    await post_report(client, stack, account, after, [snap(other, "Button")], **extra)


def github_headers(received: Received) -> dict[str, str]:
    return {k: received.headers[k] for k in ("Authorization", "Accept", "X-GitHub-Api-Version")}


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# --- the CLI contract --------------------------------------------------------------------------


async def test_integration_cli_prints_json_never_the_token(stack, database_url):
    account = stack.create_account()
    made = integration(stack, account, "github", "https://github.com", "--project", "web")
    assert made["provider"] == "github" and made["base_url"] == "https://github.com"
    assert made["name"] == "Happo (web)" and made["project"] == "web"
    assert made["failing"] is None and "token" not in json.dumps(made)
    listed = json.loads(stack.cli("integration", "list", "--account", account["account_id"]).stdout)
    assert [i["id"] for i in listed["integrations"]] == [made["id"]]
    assert "tok-github-secret" not in json.dumps(listed)
    conn = await asyncpg.connect(database_url)
    try:
        sealed = await conn.fetchval(
            "SELECT token_sealed FROM reports.status_integrations WHERE id = $1", made["id"]
        )
    finally:
        await conn.close()
    assert b"tok-github-secret" not in bytes(sealed)
    # bad values: a clear one-line error, nothing stored
    for bad in (
        ("--provider", "bitbucket", "--base-url", "https://x.example", "--token", "t"),
        ("--provider", "gitlab", "--base-url", "ftp://x.example", "--token", "t"),
        ("--provider", "gitlab", "--base-url", "https://u:p@x.example", "--token", "t"),
        ("--provider", "gitlab", "--base-url", "https://x.example", "--token", "a b"),
    ):
        refused = stack.cli(
            "integration", "create", "--account", account["account_id"], *bad, check=False
        )
        assert refused.returncode != 0 and refused.stderr.strip(), refused
    stranger = stack.create_account("Grace Hopper")
    gone = stack.cli(
        "integration", "delete", "--account", stranger["account_id"], "--id", str(made["id"]),
        check=False,
    )  # fmt: skip
    assert gone.returncode == 1 and f"No integration {made['id']}" in gone.stderr
    stack.cli("integration", "delete", "--account", account["account_id"], "--id", str(made["id"]))
    listed = json.loads(stack.cli("integration", "list", "--account", account["account_id"]).stdout)
    assert listed == {"integrations": []}


# --- the transitions -----------------------------------------------------------------------------


async def test_real_client_job_and_compare_then_a_review_flip_on_github(
    happo_modules, stack, client, providers, tmp_path
):
    github = providers["github"]
    account = stack.create_account()
    integration(stack, account, "github", github.base)
    repo = f"octo/{uuid.uuid4().hex[:8]}"
    link = f"{github.base}/{repo}/pull/7"
    before, after = sha(), sha()
    cwd = write_config(tmp_path, stack, account)
    path = f"/api/v3/repos/{repo}/statuses/{after}"

    started = await happo(happo_modules, cwd, "start-job", before, after, "--link", link)
    assert started.returncode == 0, str(started)
    job_id = int(started.stdout.strip().splitlines()[-1])
    [pending] = await github.wait_for(path, 1)
    assert pending.method == "POST"
    assert github_headers(pending) == {
        "Authorization": "Bearer tok-github-secret",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    assert pending.body == {
        "state": "pending",
        "target_url": f"{stack.url}/jobs/{job_id}",
        "description": "Waiting for the reports to compare",
        "context": "Happo",
    }

    await reports(client, stack, account, before, after, changed=True)
    compared = await happo(happo_modules, cwd, "compare", before, after, "--link", link)
    assert compared.returncode == 113, str(compared)
    _, failed = await github.wait_for(path, 2)
    comparison = await call(
        client, stack, "GET", f"/api/reports/{before}/compare/{after}/status", jwt_auth(account)
    )
    compare_url = f"{stack.url}/comparisons/{comparison['id']}"
    assert failed.body == {
        "state": "failure",
        "target_url": compare_url,
        "description": "1 diff — awaiting review",
        "context": "Happo",
    }

    person = await signed_in(stack, account)
    try:
        html = await page(person, stack, path_of(compare_url))
        accept = html.review_forms()["accept"]["fields"]
        assert (await review(person, stack, comparison["id"], accept)).status == 303
    finally:
        await person.close()
    *_, flipped = await github.wait_for(path, 3)
    assert flipped.body == {
        "state": "success",
        "target_url": compare_url,
        "description": "1 diff — accepted",
        "context": "Happo",
    }
    await asyncio.sleep(0.5)
    assert len(github.to(path)) == 3  # each change posted once
    # the comparison page shows what was posted for its commit, newest first, and how it went
    person = await signed_in(stack, account)
    try:
        shown = (await page(person, stack, path_of(compare_url))).text
    finally:
        await person.close()
    log = shown[shown.index("Commit statuses") :]
    assert log.count(f"github · {repo} · Happo") == 3
    assert log.index("success — 1 diff — accepted") < log.index("failure — 1 diff — awaiting")
    assert log.count("delivered") == 3 and "last answered 201" in log


async def test_skip_and_cancel_on_gitlab(stack, client, providers):
    gitlab = providers["gitlab"]
    account = stack.create_account()
    integration(stack, account, "gitlab", gitlab.base + "/", "--name", "Visual review")
    group = f"group/sub-{uuid.uuid4().hex[:6]}/app"
    link = f"{gitlab.base}/{group}/-/merge_requests/3"
    encoded = group.replace("/", "%2F")
    auth = jwt_auth(account)

    skipped_before, skipped_after = sha(), sha()
    await call(
        client, stack, "POST", f"/api/jobs/{skipped_before}/{skipped_after}", auth, {"link": link}
    )
    skip_path = f"/api/v4/projects/{encoded}/statuses/{skipped_after}"
    [pending] = await gitlab.wait_for(skip_path, 1)
    assert pending.headers["PRIVATE-TOKEN"] == "tok-gitlab-secret"
    assert "Authorization" not in pending.headers
    assert pending.body["state"] == "pending" and pending.body["name"] == "Visual review"
    await call(client, stack, "POST", f"/api/skip/{skipped_after}", auth, {"label": "Docs only"})
    _, skipped = await gitlab.wait_for(skip_path, 2)
    assert skipped.method == "POST"
    assert skipped.body == {
        "state": "success",
        "name": "Visual review",
        "target_url": pending.body["target_url"],
        "description": "Docs only",
    }

    cancel_before, cancel_after = sha(), sha()
    job = await call(
        client, stack, "POST", f"/api/jobs/{cancel_before}/{cancel_after}", auth, {"link": link}
    )
    cancel_path = f"/api/v4/projects/{encoded}/statuses/{cancel_after}"
    await gitlab.wait_for(cancel_path, 1)
    await call(
        client, stack, "POST", f"/api/jobs/{cancel_before}/{cancel_after}/cancel", auth,
        {"status": "failure", "message": "Storybook build broke"},
    )  # fmt: skip
    _, cancelled = await gitlab.wait_for(cancel_path, 2)
    assert cancelled.body == {
        "state": "failed",  # GitLab's word for failure
        "name": "Visual review",
        "target_url": job["url"],
        "description": "Storybook build broke",
    }


async def test_an_orchestration_posts_one_combined_status(stack, client, providers):
    github = providers["github"]
    account = stack.create_account()
    integration(stack, account, "github", github.base)
    repo = f"octo/{uuid.uuid4().hex[:8]}"
    link = f"{github.base}/{repo}/pull/12"
    before, after = sha(), sha()
    auth = jwt_auth(account)
    job = await call(
        client, stack, "POST", f"/api/jobs/{before}/{after}/orchestrate", auth,
        {"projects": ["web", "mobile"], "link": link},
    )  # fmt: skip
    path = f"/api/v3/repos/{repo}/statuses/{after}"
    [first] = await github.wait_for(path, 1)
    assert first.body == {
        "state": "pending",
        "target_url": job["url"],
        "description": "0 of 2 projects compared",
        "context": "Happo",
    }
    await reports(client, stack, account, before, after, changed=False, project="web")
    await call(
        client, stack, "POST", f"/api/reports/{before}/compare/{after}", auth, {"project": "web"}
    )
    _, second = await github.wait_for(path, 2)
    assert (second.body["state"], second.body["description"]) == (
        "pending",
        "1 of 2 projects compared",
    )
    await reports(client, stack, account, before, after, changed=True, project="mobile")
    await call(
        client, stack, "POST", f"/api/reports/{before}/compare/{after}", auth, {"project": "mobile"}
    )
    *_, last = await github.wait_for(path, 3)
    assert last.body == {
        "state": "failure",
        "target_url": job["url"],
        "description": "1 of 2 projects failing",
        "context": "Happo",
    }
    await asyncio.sleep(0.5)
    # one combined status only: no per-project context was ever posted
    assert {r.body["context"] for r in github.to(path)} == {"Happo"} and len(github.to(path)) == 3


# --- faults --------------------------------------------------------------------------------------


async def attempts_of(
    database_url: str, integration_id: int
) -> list[tuple[int | None, str | None]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT a.http_status, s.outcome FROM reports.commit_status_attempts a"
            " JOIN reports.commit_statuses s ON s.id = a.status_id"
            " WHERE s.integration_id = $1 ORDER BY a.id",
            integration_id,
        )
    finally:
        await conn.close()
    return [(r["http_status"], r["outcome"]) for r in rows]


async def test_a_rate_limited_status_is_retried_after_retry_after(
    stack, client, providers, database_url, resilience
):
    github = providers["github"]
    account = stack.create_account()
    made = integration(stack, account, "github", github.base)
    repo = f"octo/{uuid.uuid4().hex[:8]}"
    before, after = sha(), sha()
    path = f"/api/v3/repos/{repo}/statuses/{after}"
    github.scripted[path] = [(429, {"Retry-After": "2"})]
    link = f"{github.base}/{repo}/pull/1"
    await call(
        client, stack, "POST", f"/api/jobs/{before}/{after}", jwt_auth(account), {"link": link}
    )
    first, second = await github.wait_for(path, 2, within=30)
    waited = second.at - first.at
    assert 1.9 <= waited < 10, waited
    assert first.body == second.body and second.body["state"] == "pending"
    assert await attempts_of(database_url, made["id"]) == [(429, "delivered"), (201, "delivered")]
    await asyncio.sleep(0.5)
    assert len(github.to(path)) == 2
    resilience.row(
        "commit statuses",
        "provider answers 429 with Retry-After",
        injected="the GitHub stand-in answers the first status post 429 Retry-After: 2",
        observed=f"posted again {waited:.1f} s later, then 201; both attempts kept",
        accepted=1,
        effects=1,
        duplicates=0,
        errors_5xx=0,
    )


async def test_a_refused_token_marks_the_integration_failing_and_stops(
    stack, client, providers, database_url, resilience
):
    gitlab = providers["gitlab"]
    account = stack.create_account()
    made = integration(stack, account, "gitlab", gitlab.base)
    group = f"team/{uuid.uuid4().hex[:8]}"
    encoded = group.replace("/", "%2F")
    link = f"{gitlab.base}/{group}/-/merge_requests/5"
    auth = jwt_auth(account)
    before, after = sha(), sha()
    path = f"/api/v4/projects/{encoded}/statuses/{after}"
    gitlab.scripted[path] = [(401, {})] * 5
    await call(client, stack, "POST", f"/api/jobs/{before}/{after}", auth, {"link": link})
    await gitlab.wait_for(path, 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = json.loads(
            stack.cli("integration", "list", "--account", account["account_id"]).stdout
        )
        if listed["integrations"][0]["failing"]:
            break
        await asyncio.sleep(0.2)
    failing = listed["integrations"][0]["failing"]
    assert failing == "401: stand-in says 401", listed
    # a later change is recorded but not posted while the token is refused
    await call(
        client, stack, "POST", f"/api/jobs/{before}/{after}/cancel", auth, {"status": "success"}
    )
    await asyncio.sleep(2 * 1.5)
    assert len(gitlab.to(path)) == 1
    assert await attempts_of(database_url, made["id"]) == [(401, "refused")]
    resilience.row(
        "commit statuses",
        "provider refuses the token (401)",
        injected="the GitLab stand-in answers 401 to a status post, then a cancel records another",
        observed="one post; integration listed as failing with the provider's message; the"
        " later status kept unsent, no retries",
        accepted=1,
        effects=1,
        duplicates=0,
        errors_5xx=0,
    )


# --- plain values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "base", "link", "repository"),
    [
        ("github", "https://github.com", "https://github.com/octo/app/pull/7", "octo/app"),
        ("github", "https://api.github.com", "https://github.com/octo/app.git", "octo/app"),
        ("github", "https://ghe.corp", "https://GHE.corp/o/r/commit/abc", "o/r"),
        ("github", "https://github.com", "https://evil.example/octo/app/pull/7", None),
        ("github", "https://github.com", "https://github.com/octo", None),
        ("github", "https://github.com", "https://github.com/oc%20to/app/pull/1", None),
        ("github", "https://github.com", None, None),
        ("github", "https://github.com", "javascript:alert(1)", None),
        ("gitlab", "https://gitlab.com", "https://gitlab.com/g/s/p/-/merge_requests/3", "g/s/p"),
        (
            "gitlab",
            "https://corp.example/gitlab",
            "https://corp.example/gitlab/g/p/-/merge_requests/1",
            "g/p",
        ),
        (
            "gitlab",
            "https://corp.example/gitlab",
            "https://corp.example/g/p/-/merge_requests/1",
            None,
        ),
        ("gitlab", "https://gitlab.com", "https://gitlab.com/solo/-/merge_requests/3", None),
        (
            "gitea",
            "https://codeberg.org",
            "https://codeberg.org/forgejo/forgejo/pulls/9",
            "forgejo/forgejo",
        ),
        ("gitea", "http://127.0.0.1:3000", "http://127.0.0.1:3001/o/r/pulls/9", None),
    ],
)
def test_the_link_names_the_repository_on_the_integrations_host(provider, base, link, repository):
    assert status_domain.repository_of(provider, base, link) == repository


def test_answers_are_read_per_provider() -> None:
    now = datetime.now(UTC)
    judge = status_domain.judge
    assert judge("github", Answer(201), 1, now) == status_domain.Verdict("delivered")
    limited = Answer(
        403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now.timestamp()) + 30)}
    )
    verdict = judge("github", limited, 1, now)
    assert verdict.outcome == "retry" and 29 <= verdict.wait <= 30
    assert judge("github", Answer(403, body=b'{"message": "Resource not accessible"}'), 1, now) == (
        status_domain.Verdict("refused", "403: Resource not accessible")
    )
    assert judge("gitlab", Answer(429, {"Retry-After": "7"}), 1, now).wait == 7
    # a 500 carrying the window's reset time is backed off, not held for the window
    busy = judge(
        "github", Answer(500, {"x-ratelimit-reset": str(int(now.timestamp()) + 3000)}), 1, now
    )
    assert busy.outcome == "retry" and busy.wait <= status_domain.FIRST_RETRY_SECONDS
    assert judge("gitlab", Answer(400, body=b"nope"), 1, now).outcome == "rejected"
    assert (
        judge("gitea", Answer(None, error="x", address_refused=True), 1, now).outcome == "refused"
    )
    assert judge("gitea", Answer(None, error="timeout"), 1, now).outcome == "retry"
    assert len(status_domain.shorten("x" * 500)) == status_domain.MAX_DESCRIPTION
    assert status_domain.comparison_text(3, 1, 0, None) == "3 diffs, 1 added — awaiting review"
    assert status_domain.comparison_text(0, 0, 0, None) == "No differences"
