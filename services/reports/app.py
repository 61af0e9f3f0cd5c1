"""Builds the reports service's aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
from aiohttp import web

from services.reports import consumers
from services.reports.badges import Badges
from services.reports.comparing import Comparisons
from services.reports.config import ReportsConfig
from services.reports.handlers import (
    BADGES,
    COMPARISONS,
    CONFIG,
    IGNORED_DIFFS,
    JOBS,
    NOTICES,
    RENDER_REQUESTS,
    REVIEWS,
    SUBMISSIONS,
    SUBSCRIPTIONS,
)
from services.reports.ignoring import IgnoredDiffs
from services.reports.jobs import Jobs
from services.reports.mail import open_mailer
from services.reports.notices import Notices
from services.reports.outbound import DeliveryLoop, Sender
from services.reports.pages import PAGES, create_pages
from services.reports.render_requests import RenderRequests
from services.reports.reviewing import Reviews
from services.reports.routes import setup_routes
from services.reports.statuses import domain as statuses_domain
from services.reports.statuses.delivery import StatusDelivery
from services.reports.submissions import Submissions
from services.reports.subscriptions import Subscriptions
from services.reports.webhooks import domain as webhooks_domain
from services.reports.webhooks.delivery import WebhookDelivery
from shared import metrics, runtime
from shared.http import health_routes, service_middlewares
from shared.logging import get_logger
from shared.sealing import SecretBox

SCHEMA = "reports"
HERE = Path(__file__).parent
log = get_logger("darkroom.reports")
#: The commit-status sender of a reports app (tests swap its sender's allowed networks).
STATUS_DELIVERY = web.AppKey("reports.status_delivery", StatusDelivery)
#: The webhook sender of a reports app (tests swap its sender and schedule).
WEBHOOK_DELIVERY = web.AppKey("reports.webhook_delivery", WebhookDelivery)


def reporting(config: ReportsConfig) -> runtime.CleanupContext:
    """The use cases over the pool: writing and reading reports, snap requests to render,
    running and reviewing comparisons, jobs, ignored diffs, subscriptions, badges, sending
    notices. The signers of the badge and unsubscribe links are the configuration's (built
    once)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        pool = app[runtime.POOL]
        submissions = Submissions(
            pool, app[runtime.INTERNAL], config.service_url("ingest"), config.public_url
        )
        app[SUBMISSIONS] = submissions
        app[RENDER_REQUESTS] = RenderRequests(pool, submissions)
        comparisons = Comparisons(pool, app[runtime.BROKER], config)
        mailer = open_mailer(config.smtp_url, Path(config.mail_dir), config.smtp_timeout)
        app[COMPARISONS] = comparisons
        app[REVIEWS] = Reviews(pool, config.public_url)
        app[NOTICES] = Notices(pool, mailer, config)
        app[JOBS] = Jobs(pool, config.public_url)
        app[IGNORED_DIFFS] = IgnoredDiffs(pool, config.public_url)
        app[SUBSCRIPTIONS] = Subscriptions(pool, config.unsubscribe_signer)
        app[BADGES] = Badges(pool, config.badge_signer, app[PAGES].env, config.public_url)
        await comparisons.start()
        try:
            yield
        finally:
            await comparisons.stop()
            await mailer.close()

    return context


def render_deadlines(config: ReportsConfig) -> runtime.CleanupContext:
    """Fail snap requests past the render deadline, checked a few times per deadline."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        interval = min(60.0, config.render_deadline_seconds / 4)

        async def expire() -> None:
            await app[RENDER_REQUESTS].expire_stale(config.render_deadline_seconds)

        async with runtime.repeating(interval, expire, "reports.render_deadline"):
            yield

    return context


def outbound_delivery(
    config: ReportsConfig,
    key: web.AppKey,
    build: Callable[[asyncpg.Pool, SecretBox, Sender], StatusDelivery | WebhookDelivery],
    channel: str,
    poll_seconds: float,
    what: str,
) -> runtime.CleanupContext:
    """Send what ``build``'s delivery finds recorded (commit statuses, webhooks) for as long
    as the app runs, through one guarded sender: woken by the recording transaction's NOTIFY
    on ``channel``, by the next retry falling due, and by a slow poll."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        sender = Sender(config.remote_allow_networks, config.remote_timeout_seconds)
        delivery = build(app[runtime.POOL], SecretBox(config.secrets_key), sender)
        app[key] = delivery
        loop = DeliveryLoop(
            app[runtime.POOL],
            config.database_url,
            channel,
            delivery.deliver_due,
            poll_seconds,
            what,
        )
        await loop.start()
        try:
            yield
        finally:
            await loop.stop()
            await delivery.sender.close()

    return context


def create_app(config: ReportsConfig) -> web.Application:
    """The reports app: pool on schema ``reports``, broker, outbox relay, blob store (diff
    images), internal client (asks ingest about images), the use cases, consumers, routes."""
    app = web.Application(middlewares=service_middlewares(config.internal_key))
    metrics.install(app, SCHEMA)
    app[CONFIG] = config
    app[PAGES] = create_pages(config.public_url, config.signing_key)
    database, broker, relay, consuming = runtime.service_contexts(
        config, SCHEMA, HERE / "migrations", consumers.subscriptions(app)
    )
    app.cleanup_ctx.extend(
        [
            database,
            broker,
            relay,
            runtime.blob_store(config),
            runtime.internal_client(config),
            reporting(config),
            render_deadlines(config),
            outbound_delivery(
                config,
                STATUS_DELIVERY,
                StatusDelivery,
                statuses_domain.CHANNEL,
                statuses_domain.POLL_SECONDS,
                "reports.status_delivery",
            ),
            outbound_delivery(
                config,
                WEBHOOK_DELIVERY,
                lambda pool, box, sender: WebhookDelivery(
                    pool, box, sender, config.webhook_retry_schedule
                ),
                webhooks_domain.CHANNEL,
                webhooks_domain.POLL_SECONDS,
                "reports.webhook_delivery",
            ),
            consuming,
        ]
    )
    app.router.add_routes(health_routes(lambda: runtime.dependency_checks(app)))
    setup_routes(app)
    return app
