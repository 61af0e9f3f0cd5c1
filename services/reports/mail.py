"""How the reports service's e-mail travels (what it says is :mod:`mail_messages`'s).

Delivery goes through a :class:`Mailer`. :class:`SmtpMailer` speaks SMTP (aiosmtplib) to the
server named by ``SMTP_URL``; :class:`FileMailer` writes ``.eml`` files under ``var/mail/`` so
the local platform works without a mail server. :func:`open_mailer` picks one.

Failures are typed for an event consumer: :class:`MailNotSent` is worth a retry (the consumer's
back-off and delivery limit bound it); its subclass :class:`MailRefused` means the server
refused a recipient for good (5xx), which is to be recorded, not retried.
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import os
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import aiosmtplib

from shared.config import ConfigError
from shared.logging import get_logger

log = get_logger(__name__)


class MailNotSent(Exception):
    """The message was not delivered; worth trying again later.

    ``reason`` says why (never a password). ``code`` is the SMTP reply code when the server
    answered one. With several recipients, ``refused`` maps each refused address to its
    ``(code, message)`` and ``accepted`` names those that did get the message (a retry would
    send it to them again).
    """

    def __init__(
        self,
        reason: str,
        *,
        code: int | None = None,
        refused: Mapping[str, tuple[int, str]] | None = None,
        accepted: Sequence[str] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.refused = dict(refused or {})
        self.accepted = tuple(accepted)


class MailRefused(MailNotSent):
    """The server refused recipients permanently (5xx): record it, do not retry."""


@runtime_checkable
class Mailer(Protocol):
    """Something that delivers e-mail; the reports service holds one for its lifetime."""

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to its To/Cc/Bcc recipients or raise :class:`MailNotSent`."""
        ...

    async def close(self) -> None:
        """Release what the mailer holds; called once when the service stops."""
        ...


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """Sender and recipients of ``message`` from its headers, as SMTP would take them.

    A message without them is a bug in the caller, not a delivery failure: ``ValueError``, so
    that it surfaces the same way with either mailer instead of being retried.
    """
    senders = [addr for _, addr in getaddresses(message.get_all("From", [])) if addr]
    if not senders:
        raise ValueError("the message has no From address")
    recipients = [
        addr
        for _, addr in getaddresses(
            [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
        )
        if addr
    ]
    if not recipients:
        raise ValueError("the message has no recipient (To, Cc or Bcc)")
    return senders[0], recipients


def _refusal(refused: Mapping[str, tuple[int, str]], accepted: Sequence[str]) -> MailNotSent:
    """The error for refused recipients: permanent only if every refusal was a 5xx."""
    listed = "; ".join(f"{addr}: {code} {text}" for addr, (code, text) in refused.items())
    codes = [code for code, _ in refused.values()]
    cls = MailRefused if all(500 <= code < 600 for code in codes) else MailNotSent
    return cls(
        f"the server refused {listed}",
        code=max(codes) if codes else None,
        refused=refused,
        accepted=accepted,
    )


class SmtpMailer:
    """Delivers through an SMTP server, one connection per message.

    A connection per message keeps nothing to go stale between notices (servers drop idle
    sessions after a minute or so) and lets sends run concurrently; notices are rare enough
    that the handshake costs nothing worth saving.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool = False,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        """Deliver to ``host:port``; ``timeout`` bounds one whole delivery, connect to DATA.

        ``tls_context`` replaces the system's trust store (a private CA); ``local_hostname``
        is the name given in EHLO (default: this machine's FQDN).
        """
        if implicit_tls and starttls:
            raise ValueError("implicit TLS and STARTTLS exclude each other")
        if timeout <= 0:
            raise ValueError("the SMTP timeout must be positive")
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout
        self._tls_context = tls_context
        self._local_hostname = local_hostname
        if username and not (implicit_tls or starttls):
            log.warning("mail.smtp_credentials_in_clear", server=self.describe())

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> SmtpMailer:
        """Parse ``smtp://[user:pass@]host[:port][?starttls=1]`` or ``smtps://…``.

        ``smtp`` is plain on port 25 (587 with ``starttls=1``, the submission port where
        STARTTLS is expected); ``smtps`` is TLS from the first byte, port 465. User and
        password are percent-decoded. Raises :class:`ConfigError` naming ``SMTP_URL``; the
        message never repeats the URL, which may hold a password.
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"SMTP_URL: not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in {"smtp", "smtps"}:
            raise ConfigError("SMTP_URL: the scheme must be smtp or smtps")
        if not parts.hostname:
            raise ConfigError("SMTP_URL: no host")
        if parts.path not in {"", "/"} or parts.fragment:
            raise ConfigError("SMTP_URL: only smtp[s]://[user:pass@]host[:port][?starttls=1]")
        starttls = False
        try:
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise ConfigError("SMTP_URL: the query does not parse") from None
        for key, value in query:
            if key != "starttls":
                raise ConfigError(f"SMTP_URL: unknown option {key!r} (only starttls)")
            if value.lower() in {"1", "true", "yes", "on"}:
                starttls = True
            elif value.lower() in {"0", "false", "no", "off"}:
                starttls = False
            else:
                raise ConfigError(f"SMTP_URL: starttls must be 1 or 0, not {value!r}")
        implicit_tls = scheme == "smtps"
        if implicit_tls and starttls:
            raise ConfigError("SMTP_URL: smtps is TLS already; starttls=1 goes with smtp://")
        if port is None:
            port = 465 if implicit_tls else 587 if starttls else 25
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None and not username:
            raise ConfigError("SMTP_URL: a password without a user")
        return cls(
            parts.hostname,
            port,
            implicit_tls=implicit_tls,
            starttls=starttls,
            username=username or None,
            password=password,
            timeout=timeout,
            tls_context=tls_context,
            local_hostname=local_hostname,
        )

    def describe(self) -> str:
        """The server as a URL without the password, for logs."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "?starttls=1" if self.starttls else ""
        return f"{scheme}://{user}{host}:{self.port}{query}"

    def __repr__(self) -> str:
        return f"SmtpMailer({self.describe()!r}, timeout={self.timeout})"

    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` or raise :class:`MailNotSent` / :class:`MailRefused`."""
        sender, recipients = _envelope(message)
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.implicit_tls,
            # aiosmtplib upgrades opportunistically when left to itself (None); the URL decides.
            start_tls=self.starttls,
            timeout=self.timeout,
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
        )
        server = f"{self.host}:{self.port}"
        try:
            try:
                # aiosmtplib's timeout is per step; this one bounds a server that trickles.
                async with asyncio.timeout(self.timeout):
                    await smtp.connect()
                    self._local_hostname = smtp.local_hostname
                    refused, _ = await smtp.send_message(
                        message, sender=sender, recipients=recipients
                    )
            except aiosmtplib.SMTPRecipientsRefused as exc:
                raise _refusal(
                    {err.recipient: (err.code, err.message) for err in exc.recipients}, ()
                ) from exc
            except aiosmtplib.SMTPResponseException as exc:
                raise MailNotSent(
                    f"{server} answered {exc.code} {exc.message}", code=exc.code
                ) from exc
            except TimeoutError as exc:
                # Before the generic OSError: aiosmtplib's timeouts are also ConnectionErrors.
                raise MailNotSent(f"{server} did not answer within {self.timeout:g} s") from exc
            except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
                raise MailNotSent(f"{server}: {exc}") from exc
            try:
                async with asyncio.timeout(self.timeout):
                    await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass  # the server took the message; how it says goodbye changes nothing
        except MailNotSent as exc:
            log.warning(
                "mail.not_sent",
                server=self.describe(),
                to=recipients,
                message_id=message.get("Message-ID"),
                reason=exc.reason,
            )
            raise
        finally:
            smtp.close()
        if refused:
            error = _refusal(
                {addr: (resp.code, resp.message) for addr, resp in refused.items()},
                [addr for addr in recipients if addr not in refused],
            )
            log.warning("mail.partly_refused", server=self.describe(), reason=error.reason)
            raise error
        log.info(
            "mail.sent",
            server=self.describe(),
            to=recipients,
            message_id=message.get("Message-ID"),
        )

    async def close(self) -> None:
        """Nothing to release: every delivery opens and closes its own connection."""


class FileMailer:
    """Writes each message to ``directory`` as an ``.eml`` file and logs it (no server)."""

    def __init__(self, directory: Path) -> None:
        """Write into ``directory``, created on the first message."""
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"FileMailer({str(self.directory)!r})"

    async def send(self, message: EmailMessage) -> None:
        """Write ``message`` as ``<UTC timestamp>-<digest of Message-ID>.eml``, atomically.

        A reader globbing ``*.eml`` never sees half a file: the bytes go to a hidden temporary
        file in the same folder, which is renamed once complete. Raises :class:`MailNotSent`
        when the folder cannot be written, like a server that is down.
        """
        sender, recipients = _envelope(message)
        # The bytes an SMTP server would receive (CRLF line ends), Bcc included.
        data = message.as_bytes(policy=email.policy.SMTP)
        message_id = message.get("Message-ID")
        digest = hashlib.sha256(str(message_id).encode() if message_id else data).hexdigest()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{digest[:16]}.eml"
        try:
            path = await asyncio.to_thread(self._write, name, data)
        except OSError as exc:
            raise MailNotSent(f"cannot write to {self.directory}: {exc}") from exc
        log.info(
            "mail.written",
            path=str(path),
            sender=sender,
            to=recipients,
            subject=str(message.get("Subject", "")),
            message_id=message_id,
        )

    def _write(self, name: str, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / name
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".eml.tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target

    async def close(self) -> None:
        """Nothing to release."""


def open_mailer(smtp_url: str | None, mail_dir: Path, timeout: float) -> Mailer:
    """The mailer the configuration asks for: SMTP when ``smtp_url`` is set, else files.

    Raises :class:`ConfigError` when ``smtp_url`` is set but unusable, so a service refuses to
    start rather than failing at its first notice.
    """
    if smtp_url and smtp_url.strip():
        mailer = SmtpMailer.from_url(smtp_url, timeout=timeout)
        log.info("mail.smtp", server=mailer.describe(), timeout=timeout)
        return mailer
    log.info("mail.files", directory=str(mail_dir))
    return FileMailer(Path(mail_dir))
