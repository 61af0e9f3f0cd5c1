"""Webhooks sent to a recording receiver on loopback that verifies every delivery with the
``standardwebhooks`` library's own verifier (a receiver no one here wrote): a completed
comparison, a review on the page and a cancelled job each deliver one signed webhook of the
right type and data; a tampered body and a replayed old timestamp are refused by that
verifier; a receiver answering 500 (then 503 with Retry-After) is retried until its 200, in
order; an endpoint failing for the whole schedule is disabled, enabled again by its owner and
a delivery redelivered; a redelivered broker event sends nothing twice; another account's
endpoint receives nothing; internal addresses are refused at create time (literal) and at
send time (a name resolving to one). The receiver is reached the way an operator allows a
partner network (DARKROOM_REMOTE_ALLOW_NETWORKS, for the CLI and the reports app's sender)."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.reports.app import WEBHOOK_DELIVERY
from services.reports.outbound import Sender
from services.reports.webhooks import domain as webhook_domain
from shared import runtime
from shared.events import Envelope
from tests.conftest import ROOT, free_port
from tests.reports_support import call, compare, jwt_auth, post_report, screenshot, sha, snap
from tests.reports_support import upload as upload_image
from tests.test_reports_pages import page, review, signed_in

pytestmark = pytest.mark.timeout(300)

ALLOW_LOOPBACK = {"DARKROOM_REMOTE_ALLOW_NETWORKS": "127.0.0.0/8"}


# --- the receiver --------------------------------------------------------------------------------


@dataclass
class Delivered:
    path: str
    headers: dict[str, str]
    body: bytes
    payload: dict | None  # what the verifier returned; None when it refused
    refusal: str | None
    at: float


@dataclass
class Receiver:
    """Records every POST; verifies it with ``standardwebhooks`` against the secret of its
    path; answers 200 unless a path has scripted answers (status, headers), taken in turn."""

    port: int
    secrets: dict[str, str] = field(default_factory=dict)
    received: list[Delivered] = field(default_factory=list)
    scripted: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        payload, refusal = None, None
        try:
            payload = Webhook(self.secrets[request.path]).verify(body, headers)
        except (WebhookVerificationError, KeyError) as exc:
            refusal = str(exc)
        self.received.append(
            Delivered(request.path, headers, body, payload, refusal, time.monotonic())
        )
        queue = self.scripted.get(request.path)
        status, extra = queue.pop(0) if queue else (200, {})
        return web.json_response({"ok": status < 300}, status=status, headers=extra)

    def to(self, path: str) -> list[Delivered]:
        return [d for d in self.received if d.path == path]

    async def wait_for(self, path: str, count: int, within: float = 30.0) -> list[Delivered]:
        deadline = time.monotonic() + within
        while len(self.to(path)) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        got = self.to(path)
        assert len(got) >= count, f"{path}: {len(got)} of {count} webhooks arrived: {got}"
        return got


@pytest.fixture(scope="module")
async def receiver(stack) -> AsyncIterator[Receiver]:
    """The recording receiver; the reports app's webhook sender allowed to reach loopback."""
    made = Receiver(free_port())
    app = web.Application()
    app.router.add_post("/{tail:.*}", made.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", made.port).start()
    delivery = stack.apps["reports"][WEBHOOK_DELIVERY]
    default = delivery.sender
    delivery.sender = Sender((ipaddress.ip_network("127.0.0.0/8"),), 5.0)
    try:
        yield made
    finally:
        swapped, delivery.sender = delivery.sender, default
        await swapped.close()
        await runner.cleanup()


def cli(stack, *args: str, env: dict[str, str] | None = None, check: bool = True):
    """The operator CLI with extra settings (the stack's own ``cli`` takes none)."""
    return subprocess.run(
        [sys.executable, "-c", "from services.cli import main; main()", *args],
        env={**os.environ, **stack.env, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def create_webhook(stack, receiver: Receiver, account: dict, events: str) -> tuple[dict, str]:
    """An endpoint of ``account`` at a fresh path of the receiver; (its JSON, the path)."""
    path = f"/hook/{uuid.uuid4().hex[:10]}"
    done = cli(
        stack, "webhook", "create", "--account", account["account_id"],
        "--url", receiver.url(path), "--events", events, env=ALLOW_LOOPBACK,
    )  # fmt: skip
    made = json.loads(done.stdout)
    receiver.secrets[path] = made["secret"]
    return made, path


def listed(stack, account: dict) -> list[dict]:
    return json.loads(cli(stack, "webhook", "list", "--account", account["account_id"]).stdout)[
        "webhooks"
    ]


async def cancel_job(client, stack, account: dict, message: str) -> tuple[str, str]:
    before, after = sha(), sha()
    auth = jwt_auth(account)
    await call(client, stack, "POST", f"/api/jobs/{before}/{after}", auth, {})
    await call(
        client, stack, "POST", f"/api/jobs/{before}/{after}/cancel", auth,
        {"status": "failure", "message": message},
    )  # fmt: skip
    return before, after


async def attempts_of(database_url: str, endpoint_id: int) -> list[tuple[int | None, str | None]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT a.http_status, d.outcome FROM reports.webhook_attempts a"
            " JOIN reports.webhook_deliveries d ON d.id = a.delivery_id"
            " WHERE d.endpoint_id = $1 ORDER BY a.id",
            endpoint_id,
        )
    finally:
        await conn.close()
    return [(r["http_status"], r["outcome"]) for r in rows]


@pytest.fixture
def short_schedule(stack):
    """Retries within a second (the setting DARKROOM_WEBHOOK_RETRY_SCHEDULE, swapped in the
    running app for one test)."""
    delivery = stack.apps["reports"][WEBHOOK_DELIVERY]
    default = delivery.schedule

    def use(*steps: float) -> None:
        delivery.schedule = steps

    try:
        yield use
    finally:
        delivery.schedule = default


# --- the CLI contract ----------------------------------------------------------------------------


async def test_webhook_cli_prints_the_secret_once(stack, receiver, database_url):
    account = stack.create_account()
    made, _path = create_webhook(stack, receiver, account, "job.cancelled, comparison.completed")
    assert made["secret"].startswith("whsec_")
    assert len(base64.b64decode(made["secret"].removeprefix("whsec_"))) == 32
    assert made["events"] == ["comparison.completed", "job.cancelled"]  # documented order
    assert made["enabled"] is True and made["disabled"] is None
    [shown] = listed(stack, account)
    assert shown["id"] == made["id"] and shown["last_attempt"] is None and shown["waiting"] == 0
    assert made["secret"] not in json.dumps(shown) and "secret" not in shown
    conn = await asyncpg.connect(database_url)
    try:
        sealed = await conn.fetchval(
            "SELECT secret_sealed FROM reports.webhook_endpoints WHERE id = $1", made["id"]
        )
    finally:
        await conn.close()
    assert made["secret"].encode() not in bytes(sealed)
    for bad in (
        ("--url", "ftp://x.example/hook", "--events", "job.cancelled"),
        ("--url", "https://u:p@x.example/hook", "--events", "job.cancelled"),
        ("--url", "https://x.example/hook", "--events", "image.stored"),
        ("--url", "https://x.example/hook", "--events", ","),
    ):
        refused = cli(stack, "webhook", "create", "--account", account["account_id"], *bad,
                      check=False)  # fmt: skip
        assert refused.returncode == 1 and refused.stderr.startswith("darkroom: "), refused
    stranger = stack.create_account("Grace Hopper")
    for action in ("delete", "enable", "deliveries"):
        gone = cli(stack, "webhook", action, "--account", stranger["account_id"],
                   "--id", str(made["id"]), check=False)  # fmt: skip
        assert gone.returncode == 1 and f"No webhook {made['id']}" in gone.stderr, gone
    cli(stack, "webhook", "delete", "--account", account["account_id"], "--id", str(made["id"]))
    assert listed(stack, account) == []


async def test_internal_addresses_are_refused(stack, receiver, client, database_url, resilience):
    account = stack.create_account()
    for url, address in (
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://10.0.0.7:8080/hook", "10.0.0.7"),
        (receiver.url("/hook/no-allow"), "127.0.0.1"),  # loopback unless the operator allows it
        ("http://[::1]/hook", "::1"),
    ):
        refused = cli(stack, "webhook", "create", "--account", account["account_id"],
                      "--url", url, "--events", "job.cancelled", check=False)  # fmt: skip
        assert refused.returncode == 1, refused
        assert f"address {address} is not allowed" in refused.stderr, refused.stderr
    assert listed(stack, account) == []

    # A name is looked up at every send, by the guard's resolver: "localhost" passes create
    # time and is refused at connect time under the platform's own policy (no allowed
    # networks); retrying cannot help, so the endpoint is disabled with the reason.
    path = f"/hook/{uuid.uuid4().hex[:10]}"
    made = json.loads(
        cli(stack, "webhook", "create", "--account", account["account_id"],
            "--url", f"http://localhost:{receiver.port}{path}", "--events", "job.cancelled").stdout
    )  # fmt: skip
    delivery = stack.apps["reports"][WEBHOOK_DELIVERY]
    allowed, delivery.sender = delivery.sender, Sender((), 5.0)
    try:
        await cancel_job(client, stack, account, "to an internal name")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and listed(stack, account)[0]["enabled"]:
            await asyncio.sleep(0.2)
    finally:
        refusing, delivery.sender = delivery.sender, allowed
        await refusing.close()
    [shown] = listed(stack, account)
    assert shown["enabled"] is False and shown["disabled_since"], shown
    assert "of localhost is not allowed" in shown["disabled"], shown
    assert shown["last_attempt"]["http_status"] is None
    assert receiver.to(path) == []
    assert await attempts_of(database_url, made["id"]) == [(None, "failed")]
    resilience.row(
        "webhooks",
        "webhook URL pointing at an internal address",
        injected="webhook create with 169.254.169.254, 10.0.0.7, 127.0.0.1, [::1]; an endpoint"
        " at http://localhost:<port>/… sent an event under the default policy",
        observed="literal addresses refused at create (exit 1, nothing stored); the name refused"
        " at connect time: no request reached it, the endpoint disabled with the reason",
        accepted=0,
        effects=0,
        duplicates=0,
        errors_5xx=0,
    )


# --- what is delivered ---------------------------------------------------------------------------


async def test_a_comparison_and_its_review_deliver_signed_webhooks(
    stack, client, receiver, database_url
):
    account = stack.create_account()
    events = "comparison.completed,comparison.reviewed,job.cancelled"
    made, path = create_webhook(stack, receiver, account, events)
    other = stack.create_account("Katherine Johnson")
    _theirs, their_path = create_webhook(stack, receiver, other, events + ",report.completed")

    colour = (random.randrange(256), random.randrange(256), random.randrange(256))
    plain = await upload_image(client, stack, account, screenshot(20, 20, colour=colour))
    changed = await upload_image(
        client, stack, account, screenshot(20, 20, colour=colour, patch=(2, 2, 5, 5))
    )
    before, after = sha(), sha()
    await post_report(client, stack, account, before, [snap(plain, "Button")])
    await post_report(client, stack, account, after, [snap(changed, "Button")])
    await compare(
        client, stack.url, jwt_auth(account), before, after
    )  # notify is internal: never sent
    [completed] = await receiver.wait_for(path, 1)
    assert completed.refusal is None, completed.refusal
    assert completed.headers["Content-Type"] == "application/json"
    assert completed.headers["webhook-signature"].startswith("v1,")
    assert abs(int(completed.headers["webhook-timestamp"]) - time.time()) < 30
    payload = completed.payload
    assert payload["type"] == "comparison.completed"
    data = payload["data"]
    comparison_id = data["comparison_id"]
    assert data == {
        "comparison_id": comparison_id,
        "account_id": account["account_id"],
        "project": "",
        "sha1": before,
        "sha2": after,
        "status": data["status"],
        "equal": False,
        "summary": data["summary"],
        "compare_url": f"{stack.url}/comparisons/{comparison_id}",
        "diff_components": ["Button"],
    }
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT id, envelope FROM reports.outbox WHERE type = 'comparison.completed'"
            " AND (envelope->'data'->>'comparison_id')::bigint = $1",
            comparison_id,
        )
    finally:
        await conn.close()
    envelope = Envelope.from_dict(
        json.loads(row["envelope"]) if isinstance(row["envelope"], str) else row["envelope"]
    )
    assert completed.headers["webhook-id"] == envelope.id  # receivers deduplicate on it
    assert payload["timestamp"] == envelope.occurred_at

    person = await signed_in(stack, account)
    try:
        html = await page(person, stack, f"/comparisons/{comparison_id}")
        accept = html.review_forms()["accept"]["fields"]
        assert (await review(person, stack, comparison_id, accept)).status == 303
    finally:
        await person.close()
    _, reviewed = await receiver.wait_for(path, 2)
    assert reviewed.refusal is None and reviewed.payload["type"] == "comparison.reviewed"
    assert reviewed.payload["data"]["review"] == "accepted"
    assert reviewed.payload["data"]["comparison_id"] == comparison_id
    assert reviewed.payload["data"]["previous_status"] == data["status"]
    assert reviewed.headers["webhook-id"] != completed.headers["webhook-id"]

    job_before, job_after = await cancel_job(client, stack, account, "Storybook broke")
    *_, cancelled = await receiver.wait_for(path, 3)
    assert cancelled.refusal is None and cancelled.payload["type"] == "job.cancelled"
    assert {k: v for k, v in cancelled.payload["data"].items() if k != "job_id"} == {
        "account_id": account["account_id"],
        "project": "",
        "sha1": job_before,
        "sha2": job_after,
        "status": "failure",
        "message": "Storybook broke",
        "job_url": f"{stack.url}/jobs/{cancelled.payload['data']['job_id']}",
    }

    # The broker delivers the comparison's event again: nothing is sent twice.
    await stack.apps["reports"][runtime.BROKER].publish(envelope)
    await asyncio.sleep(2)
    assert len(receiver.to(path)) == 3
    assert [d.payload["type"] for d in receiver.to(path)] == [
        "comparison.completed",
        "comparison.reviewed",
        "job.cancelled",
    ]
    assert receiver.to(their_path) == []  # another account's endpoint hears nothing
    assert await attempts_of(database_url, made["id"]) == [(200, "delivered")] * 3


async def test_a_tampered_body_and_a_replayed_timestamp_are_refused(
    stack, client, receiver, resilience
):
    account = stack.create_account()
    _made, path = create_webhook(stack, receiver, account, "job.cancelled")
    await cancel_job(client, stack, account, "for a forger")
    [real] = await receiver.wait_for(path, 1)
    assert real.refusal is None
    verifier = Webhook(receiver.secrets[path])
    tampered = real.body.replace(b"for a forger", b"for a FORGER")
    assert tampered != real.body
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(tampered, real.headers)
    # The captured message sent again ten minutes on: its timestamp is too old.
    old = int(real.headers["webhook-timestamp"]) - 600
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(real.body, {**real.headers, "webhook-timestamp": str(old)})
    # Even correctly signed for that old time (as a captured message would be), it is refused
    # for its age alone; the same signature for now verifies.
    secret, message_id = receiver.secrets[path], real.headers["webhook-id"]
    body = real.body.decode()
    signed_then = webhook_domain.headers_of(secret, message_id, old, body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(real.body, signed_then)
    now = int(time.time())
    assert verifier.verify(real.body, webhook_domain.headers_of(secret, message_id, now, body))
    resilience.row(
        "webhooks",
        "tampered webhook body; replayed old timestamp",
        injected="a delivered webhook's body changed by one word; its headers resent with a"
        " timestamp 10 min old (and re-signed for that time)",
        observed="the standardwebhooks library's verifier refuses both (no matching signature;"
        " timestamp too old)",
        accepted=0,
        effects=0,
        duplicates=0,
        errors_5xx=0,
    )


# --- retries, disabling, redelivery --------------------------------------------------------------


async def test_a_failing_receiver_is_retried_in_order(
    stack, client, receiver, database_url, short_schedule, resilience
):
    short_schedule(0.5, 0.5, 0.5, 0.5)
    account = stack.create_account()
    made, path = create_webhook(stack, receiver, account, "job.cancelled")
    receiver.scripted[path] = [(500, {}), (503, {"Retry-After": "2"})]
    await cancel_job(client, stack, account, "first")
    await cancel_job(client, stack, account, "second")
    got = await receiver.wait_for(path, 4)
    assert all(d.refusal is None for d in got)
    messages = [d.payload["data"]["message"] for d in got]
    assert messages == ["first", "first", "first", "second"]  # the second waits its turn
    assert len({d.headers["webhook-id"] for d in got[:3]}) == 1
    assert got[0].body == got[1].body == got[2].body
    waited = got[2].at - got[1].at
    assert 1.8 <= waited < 10, waited  # Retry-After: 2 honoured over the 0.5 s step
    await asyncio.sleep(1)
    assert len(receiver.to(path)) == 4
    assert await attempts_of(database_url, made["id"]) == [
        (500, "delivered"),
        (503, "delivered"),
        (200, "delivered"),
        (200, "delivered"),
    ]
    [shown] = listed(stack, account)
    assert shown["enabled"] and shown["last_attempt"]["http_status"] == 200
    resilience.row(
        "webhooks",
        "receiver down for a while (500, then 503 Retry-After), then back",
        injected="the receiver answers 500, then 503 Retry-After: 2, then 200; a second event"
        " is recorded meanwhile",
        observed=f"retried on the schedule, then {waited:.1f} s later as asked; each event"
        " delivered once, in order, same webhook-id and body on every attempt; every attempt kept",
        accepted=2,
        effects=2,
        duplicates=0,
        errors_5xx=0,
    )


async def test_an_endpoint_failing_for_the_whole_schedule_is_disabled_then_enabled(
    stack, client, receiver, database_url, short_schedule
):
    short_schedule(0.2, 0.2)
    account = stack.create_account()
    made, path = create_webhook(stack, receiver, account, "job.cancelled,report.completed")
    receiver.scripted[path] = [(500, {})] * 3
    await cancel_job(client, stack, account, "lost")
    await receiver.wait_for(path, 3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and listed(stack, account)[0]["enabled"]:
        await asyncio.sleep(0.2)
    [shown] = listed(stack, account)
    assert shown["enabled"] is False and "(after 3 attempts)" in shown["disabled"], shown
    assert shown["last_attempt"]["http_status"] == 500
    # While disabled, an event records nothing for it.
    await cancel_job(client, stack, account, "while disabled")
    await asyncio.sleep(1.5)
    assert len(receiver.to(path)) == 3
    deliveries = json.loads(
        cli(stack, "webhook", "deliveries", "--account", account["account_id"],
            "--id", str(made["id"])).stdout
    )["deliveries"]  # fmt: skip
    [failed] = deliveries
    assert (
        failed["outcome"] == "failed" and [t["http_status"] for t in failed["tries"]] == [500] * 3
    )
    refused = cli(stack, "webhook", "redeliver", "--account", account["account_id"],
                  "--delivery", str(failed["id"]), check=False)  # fmt: skip
    assert refused.returncode == 1 and "enable it first" in refused.stderr

    enabled = json.loads(
        cli(stack, "webhook", "enable", "--account", account["account_id"],
            "--id", str(made["id"])).stdout
    )  # fmt: skip
    assert enabled["enabled"] is True and enabled["disabled"] is None
    stranger = stack.create_account("Grace Hopper")
    other = cli(stack, "webhook", "redeliver", "--account", stranger["account_id"],
                "--delivery", str(failed["id"]), check=False)  # fmt: skip
    assert other.returncode == 1 and f"No webhook delivery {failed['id']}" in other.stderr
    cli(stack, "webhook", "redeliver", "--account", account["account_id"],
        "--delivery", str(failed["id"]))  # fmt: skip
    *_, again = await receiver.wait_for(path, 4)
    assert again.refusal is None and again.payload["data"]["message"] == "lost"
    assert again.headers["webhook-id"] == failed["event_id"]
    assert await attempts_of(database_url, made["id"]) == [(500, "delivered")] * 3 + [
        (200, "delivered")
    ]


async def test_the_integrations_page_shows_where_things_go_and_how_they_went(
    stack, client, receiver
):
    account = stack.create_account()
    _made, path = create_webhook(stack, receiver, account, "job.cancelled")
    cli(
        stack, "integration", "create", "--account", account["account_id"], "--provider",
        "gitlab", "--base-url", "https://gitlab.example.org", "--token", "glpat-secret",
        "--project", "web",
    )  # fmt: skip
    await cancel_job(client, stack, account, "shown on the page")
    await receiver.wait_for(path, 1)
    deadline = time.monotonic() + 10
    person = await signed_in(stack, account)
    stranger = await signed_in(stack, stack.create_account("Grace Hopper"))
    try:
        while True:
            shown = (await page(person, stack, "/integrations")).text
            if "delivered" in shown or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        theirs = (await page(stranger, stack, "/integrations")).text
    finally:
        await person.close()
        await stranger.close()
    assert "gitlab · https://gitlab.example.org web Happo (web) working" in shown, shown
    assert receiver.url(path) in shown and "enabled · events: job.cancelled" in shown
    assert "job.cancelled delivered" in shown and "1: 200" in shown
    assert "glpat-secret" not in shown and "whsec_" not in shown  # never shown again
    assert receiver.url(path) not in theirs and "gitlab.example.org" not in theirs
    assert "None: no status is posted anywhere." in theirs


# --- plain values --------------------------------------------------------------------------------


def test_the_signature_is_the_libraries():
    secret = webhook_domain.new_secret()
    body = '{"type":"job.cancelled","timestamp":"2024-01-01T00:00:00+00:00","data":{}}'
    now = int(time.time())
    headers = webhook_domain.headers_of(secret, "msg_1", now, body)
    from datetime import UTC, datetime

    expected = Webhook(secret).sign("msg_1", datetime.fromtimestamp(now, UTC), body)
    assert headers["webhook-signature"] == expected


def test_the_payload_leaves_internal_fields_out():
    envelope = Envelope(
        id=str(uuid.uuid4()),
        type="comparison.completed",
        occurred_at="2024-05-01T10:00:00+00:00",
        request_id="r1",
        data={"comparison_id": 3, "notify": ["ops@example.com"], "account_id": "a"},
    )
    assert json.loads(webhook_domain.body_of(envelope)) == {
        "type": "comparison.completed",
        "timestamp": "2024-05-01T10:00:00+00:00",
        "data": {"comparison_id": 3, "account_id": "a"},
    }
