"""Settings of the reports service."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from services.reports.domain import BADGE_DIGITS, UNSUBSCRIBE_DIGITS
from services.reports.webhooks.domain import DEFAULT_SCHEDULE, parse_schedule
from shared.config import RemoteFetchConfig, SecretsConfig, SigningConfig, setting
from shared.signing import BADGE, UNSUBSCRIBE, Signer


@dataclass(frozen=True)
class ReportsConfig(RemoteFetchConfig, SigningConfig, SecretsConfig):
    """Reports's settings: storage (it serves diff images), diffing, waiting and e-mail; the
    remote-fetch policy and the secrets key are for commit statuses and webhooks (providers'
    base URLs and webhook URLs go through the SSRF guard; tokens and secrets are sealed at
    rest)."""

    diff_threshold: float = setting(
        "DARKROOM_DIFF_THRESHOLD",
        0.1,
        "Per-pixel colour distance (0..1, pixelmatch's scale) a change must exceed to count in a"
        " comparison; 0 counts every changed value exactly.",
    )
    diff_include_anti_aliasing: bool = setting(
        "DARKROOM_DIFF_INCLUDE_AA",
        False,
        "Count pixels that look like anti-aliasing as changes too (false forgives text jitter).",
    )
    compare_wait_seconds: float = setting(
        "DARKROOM_COMPARE_WAIT",
        50.0,
        "How long a synchronous compare waits for the pixel diffs before answering 503 with"
        " Retry-After (the work goes on; a retry picks it up). Below the clients' 60 s timeout.",
    )
    max_snapshots: int = setting("DARKROOM_MAX_SNAPSHOTS", 20_000, "Snapshots one report may hold.")
    max_report_bytes: int = setting(
        "DARKROOM_MAX_REPORT_BYTES",
        16 * 1024 * 1024,
        "Largest JSON body of a report or snap request.",
    )
    max_snap_request_bytes: int = setting(
        "DARKROOM_MAX_SNAP_REQUEST_BYTES",
        64 * 1024 * 1024,
        "Largest body of a snap request to render: one payload, or a bulk of up to 50 (DOM"
        " snapshots carry whole pages of HTML).",
    )
    render_deadline_seconds: float = setting(
        "DARKROOM_RENDER_DEADLINE_SECONDS",
        3600.0,
        "A snap request no renderer finished within this many seconds fails (with the reports"
        " waiting for it), so nothing waits forever on a request that crashed every renderer.",
    )
    webhook_retry_schedule: tuple[float, ...] = setting(
        "DARKROOM_WEBHOOK_RETRY_SCHEDULE",
        DEFAULT_SCHEDULE,
        "Seconds before each retry of a webhook delivery that failed, comma-separated (the"
        " Standard Webhooks schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, about 27 h);"
        " past the last the delivery fails and its endpoint is disabled.",
        parse=parse_schedule,
    )
    smtp_url: str | None = setting(
        "SMTP_URL",
        None,
        "Where e-mail goes: smtp://[user:pass@]host[:port][?starttls=1] or smtps://…; unset"
        " writes .eml files to DARKROOM_MAIL_DIR instead.",
    )
    mail_dir: str = setting(
        "DARKROOM_MAIL_DIR", "var/mail", "Folder of .eml files when SMTP_URL is unset."
    )
    mail_from: str = setting(
        "DARKROOM_MAIL_FROM", "Darkroom <darkroom@localhost>", "Sender of notification e-mails."
    )
    smtp_timeout: float = setting(
        "DARKROOM_SMTP_TIMEOUT", 10.0, "Seconds to deliver one e-mail (connect to the end of DATA)."
    )

    # The signers of reports' links, built once per configuration (a frozen dataclass still
    # caches: cached_property writes the instance's __dict__, not through __setattr__). Both
    # are permanent: a badge URL lives in READMEs, an unsubscribe link in sent e-mails.

    @cached_property
    def badge_signer(self) -> Signer:
        """Signs the comparison id in a status-badge URL."""
        return Signer(BADGE, self.signing_key, None, BADGE_DIGITS)

    @cached_property
    def unsubscribe_signer(self) -> Signer:
        """Signs the unsubscribe link of a notification e-mail."""
        return Signer(UNSUBSCRIBE, self.signing_key, None, UNSUBSCRIBE_DIGITS)
