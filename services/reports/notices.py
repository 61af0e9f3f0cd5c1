"""Notification e-mails: when a comparison finds changes in a component, its subscribers and
the addresses the compare call named get one e-mail each, with a link to the comparison.

Each delivery is recorded in its own transaction right after the server took it, so a retry
after a crash or a refused connection sends only what was not sent yet; the ``Message-ID`` is
derived from the event and the address, so a duplicate (killed between send and record) is
recognisable as the same message.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg

from services.reports import domain, repo
from services.reports.config import ReportsConfig
from services.reports.mail import Mailer, MailRefused
from services.reports.mail_messages import compose_diff_notice, make_message_id
from shared.events import Envelope
from shared.logging import get_logger

log = get_logger("darkroom.reports.notices")


class Notices:
    """Sends the e-mails of completed comparisons."""

    def __init__(self, pool: asyncpg.Pool, mailer: Mailer, config: ReportsConfig) -> None:
        self.pool = pool
        self.mailer = mailer
        self.config = config

    async def comparison_completed(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """``comparison.completed``: mail every subscriber of a changed component and every
        ``notify`` address that has not been mailed for this event yet."""
        data = envelope.data
        components = [c for c in data.get("diff_components") or [] if isinstance(c, str)]
        notify = [a for a in data.get("notify") or [] if isinstance(a, str)]
        account_id = data.get("account_id")
        if not isinstance(account_id, str) or not isinstance(data.get("compare_url"), str):
            log.warning("comparison.completed_malformed", event_id=envelope.id)
            return
        if not components and not notify:
            return
        if not components:
            # Addresses named in the call are told about every outcome, even "no diffs".
            recipients = {address: [] for address in notify}
        else:
            subscribed = await repo.subscriptions.subscriptions_of(
                conn,
                account_id,
                await repo.subscriptions.subscribers(conn, account_id, components),
                components,
            )
            recipients = {address: components for address in notify}
            for address, theirs in subscribed.items():
                recipients.setdefault(address, theirs)
        done = await repo.subscriptions.delivered(conn, envelope.id)
        for address, theirs in recipients.items():
            if address in done:
                continue
            await self._send(
                envelope, account_id, address, theirs, unsubscribe=address not in notify
            )

    async def _send(
        self,
        envelope: Envelope,
        account_id: str,
        address: str,
        components: list[str],
        *,
        unsubscribe: bool,
    ) -> None:
        data = envelope.data
        config = self.config
        unsubscribe_url = None
        if unsubscribe and components:
            token = domain.unsubscribe_token(
                config.unsubscribe_signer, account_id, components, address
            )
            unsubscribe_url = config.public(f"/unsubscribe/{token}")
        message = compose_diff_notice(
            sender=config.mail_from,
            recipient=address,
            account_name=None,
            project=str(data.get("project") or ""),
            sha1=str(data.get("sha1")),
            sha2=str(data.get("sha2")),
            components=components,
            summary=str(data.get("summary") or ""),
            compare_url=str(data.get("compare_url")),
            unsubscribe_url=unsubscribe_url,
            message_id=make_message_id(
                envelope.id, address, domain=urlsplit(config.public_url).hostname or "darkroom"
            ),
        )
        comparison_id = int(data.get("comparison_id") or 0)
        try:
            await self.mailer.send(message)
            outcome = "sent"
        except MailRefused as exc:
            # A permanent refusal: retrying cannot help, so it is recorded and not retried.
            log.warning("mail.refused", recipient_domain=address.rsplit("@", 1)[-1], error=str(exc))
            outcome = "refused"
        async with self.pool.acquire() as own:
            await repo.subscriptions.record_delivery(
                own, comparison_id, envelope.id, address, outcome
            )
