"""Reports's event consumers: comparisons moved on by ``report.completed`` and processing's
``comparison.diffed``; e-mails sent on ``comparison.completed``; snap requests finished by
rendering's ``render.completed`` / ``render.failed``; webhook deliveries recorded for every
event an endpoint may subscribe to (:data:`services.reports.webhooks.domain.EVENT_TYPES`)."""

from __future__ import annotations

from aiohttp import web

from services.reports import events
from services.reports.handlers import COMPARISONS, NOTICES, SUBMISSIONS
from services.reports.webhooks import domain as webhooks_domain
from services.reports.webhooks import posting as webhooks_posting
from shared.events import Envelope, Subscription
from shared.rendering import RENDER_COMPLETED, RENDER_FAILED

#: Comparisons waiting for a report.
SCHEDULED_CONSUMER = "reports.scheduled"
#: Processing's pixel diffs.
DIFFS_CONSUMER = "reports.diffs"
#: Notification e-mails (a slow SMTP server holds up nothing else).
MAIL_CONSUMER = "reports.mail"
#: Rendering's outcomes of snap requests.
RENDERED_CONSUMER = "reports.rendered"
#: Webhook deliveries (recorded only; the delivery loop sends them).
WEBHOOKS_CONSUMER = "reports.webhooks"


def subscriptions(app: web.Application) -> tuple[Subscription, ...]:
    """The consumers of ``app`` (their handlers reach its comparisons and notices)."""

    async def scheduled(conn, envelope: Envelope) -> None:
        await app[COMPARISONS].report_completed(conn, envelope)

    async def diffed(conn, envelope: Envelope) -> None:
        await app[COMPARISONS].diffed(conn, envelope)

    async def completed(conn, envelope: Envelope) -> None:
        await app[NOTICES].comparison_completed(conn, envelope)

    async def rendered(conn, envelope: Envelope) -> None:
        data = envelope.data
        await app[SUBMISSIONS].rendered(
            conn,
            str(data["account_id"]),
            int(data["request_id"]),
            data.get("snaps") if envelope.type == RENDER_COMPLETED else None,
            str(data.get("reason") or "Rendering failed")
            if envelope.type == RENDER_FAILED
            else None,
        )

    async def webhooks(conn, envelope: Envelope) -> None:
        await webhooks_posting.record(conn, envelope)

    return (
        Subscription(WEBHOOKS_CONSUMER, webhooks_domain.EVENT_TYPES, webhooks),
        Subscription(RENDERED_CONSUMER, (RENDER_COMPLETED, RENDER_FAILED), rendered),
        Subscription(SCHEDULED_CONSUMER, (events.REPORT_COMPLETED,), scheduled),
        Subscription(DIFFS_CONSUMER, (events.COMPARISON_DIFFED,), diffed),
        Subscription(MAIL_CONSUMER, (events.COMPARISON_COMPLETED,), completed, prefetch=4),
    )
