"""E-mail of the reports service: the diff notice, its recipients, and delivery.

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
import html
import os
import re
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import aiosmtplib

from shared.config import ConfigError
from shared.errors import InvalidRequest
from shared.logging import get_logger

log = get_logger(__name__)

#: Most addresses one ``notify`` value may name.
MAX_ADDRESSES = 100
#: RFC 5321's limit on a forward path (256 octets) less its angle brackets.
MAX_ADDRESS_LENGTH = 254
#: Components named in a subject; the rest are counted ("and 3 more").
SUBJECT_COMPONENTS = 3
#: Components listed in a notice's body; a huge report must not make a huge e-mail.
BODY_COMPONENTS = 50


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


# --- composing ---------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")
_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")


def _one_line(value: str, limit: int = 120) -> str:
    """``value`` on one line: no CR/LF reaches a header, and no name makes a subject huge."""
    text = _SPACES.sub(" ", _CONTROL.sub(" ", str(value))).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _http_url(url: str, what: str) -> str:
    """``url`` if it is an absolute http(s) URL; only such a link goes into a notice."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or _SPACES.search(url):
        raise ValueError(f"{what} must be an absolute http(s) URL")
    if _CONTROL.search(url):
        raise ValueError(f"{what} must not contain control characters")
    return url


def _short_sha(sha: str) -> str:
    return _one_line(sha, 40)[:7]


def make_message_id(*parts: str, domain: str) -> str:
    """A deterministic ``Message-ID`` from ``parts`` (e.g. comparison id and recipient).

    The same parts give the same id, so a notice sent again after a crash is recognisable as
    the same message; the parts are hashed, so no address shows in the header.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"<{digest}@{_one_line(domain, 253).replace(' ', '')}>"


def compose_diff_notice(
    *,
    sender: str,
    recipient: str,
    account_name: str | None,
    project: str,
    sha1: str,
    sha2: str,
    components: list[str],
    summary: str,
    compare_url: str,
    unsubscribe_url: str | None,
    message_id: str,
) -> EmailMessage:
    """The e-mail telling ``recipient`` which components changed between two reports.

    Plain text and a simple HTML alternative (no external assets; every value escaped),
    the comparison link in both, an unsubscribe link, ``List-Unsubscribe`` and RFC 8058's
    ``List-Unsubscribe-Post`` (one-click) when ``unsubscribe_url`` is given. ``message_id`` is
    used as given (``<id@domain>``, angle brackets added when missing) so that a re-send is
    recognisable. Raises ``ValueError`` for a URL that is not absolute http(s) or a malformed
    ``message_id`` (caller bugs).
    """
    compare_url = _http_url(compare_url, "compare_url")
    if unsubscribe_url is not None:
        unsubscribe_url = _http_url(unsubscribe_url, "unsubscribe_url")
    message_id = message_id.strip()
    if not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError("message_id must look like <unique@domain>")

    names = [name for name in (_one_line(c, 80) for c in components) if name]
    project_name = _one_line(project, 120) or "your project"
    account = _one_line(account_name, 120) if account_name else ""
    short1, short2 = _short_sha(sha1), _short_sha(sha2)
    full1, full2 = _one_line(sha1, 80), _one_line(sha2, 80)

    subject = "Happo diffs"
    if names:
        shown = ", ".join(names[:SUBJECT_COMPONENTS])
        more = len(names) - SUBJECT_COMPONENTS
        subject += f" in {shown}" + (f" and {more} more" if more > 0 else "")
    subject += f" — {short1} → {short2}"

    where = f"{project_name} ({account})" if account else project_name
    if names:
        count = f"{len(names)} component" + ("" if len(names) == 1 else "s")
        lead = f"Happo found differences in {count} of {where},"
    else:
        lead = f"Happo found differences in {where},"
    lead_end = f"comparing {full1} with {full2}"
    listed = names[:BODY_COMPONENTS]
    hidden = len(names) - len(listed)
    summary_text = "\n".join(line.rstrip() for line in summary.replace("\r\n", "\n").split("\n"))
    summary_text = _CONTROL.sub(lambda m: m.group() if m.group() == "\n" else " ", summary_text)
    summary_text = summary_text.strip()

    text = [f"{lead}\n{lead_end}" + (":" if listed else "."), ""]
    if listed:
        text += [f"  - {name}" for name in listed]
        if hidden:
            text.append(f"  … and {hidden} more")
        text.append("")
    if summary_text:
        text += [summary_text, ""]
    text += ["Review the comparison:", compare_url]
    if unsubscribe_url:
        text += [
            "",
            "-- ",
            f"You get this e-mail because you subscribed to Happo diffs of {project_name}.",
            f"Unsubscribe: {unsubscribe_url}",
        ]

    def esc(value: str) -> str:
        return html.escape(value, quote=True)

    body = [f"<p>{esc(lead)} {esc(lead_end)}{':' if listed else '.'}</p>"]
    if listed:
        items = "".join(f"<li>{esc(name)}</li>" for name in listed)
        if hidden:
            items += f"<li>… and {hidden} more</li>"
        body.append(f"<ul>{items}</ul>")
    if summary_text:
        body.append(f"<p>{esc(summary_text).replace(chr(10), '<br>')}</p>")
    body.append(f'<p><a href="{esc(compare_url)}">Review the comparison</a></p>')
    if unsubscribe_url:
        body.append(
            '<p style="color:#666;font-size:smaller">You get this e-mail because you subscribed'
            f" to Happo diffs of {esc(project_name)}."
            f' <a href="{esc(unsubscribe_url)}">Unsubscribe</a></p>'
        )
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{esc(subject)}</title></head>\n"
        '<body style="font-family:sans-serif;line-height:1.4;color:#222">\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )

    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id
    # RFC 3834: vacation responders and the like must not answer a robot.
    message["Auto-Submitted"] = "auto-generated"
    if unsubscribe_url:
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        # RFC 8058 one-click: the mail client POSTs "List-Unsubscribe=One-Click" to the URL
        # itself, so a link scanner's GET (which only shows a confirm page) unsubscribes nobody.
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Quoted-printable keeps the bytes 7-bit whatever the names hold: no server needs 8BITMIME.
    message.set_content("\n".join(text) + "\n", cte="quoted-printable")
    message.add_alternative(page, subtype="html", cte="quoted-printable")
    return message


# --- recipients ---------------------------------------------------------------------------

# RFC 5322 dot-atom: what real mailboxes use; quoted local parts are valid but not plausible.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _shown(value: str) -> str:
    """``value`` quoted for an error message: escaped, and cut when long."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


def _address(item: object, field: str) -> str:
    """One plausible address, domain lower-cased (IDNA-encoded when not ASCII), or 422."""
    if not isinstance(item, str):
        raise InvalidRequest(f"{field}: every address must be a string")
    bad = InvalidRequest(f"{field}: {_shown(item)} is not a valid e-mail address")
    # Checked before trimming: a CR/LF anywhere is an injection attempt, not whitespace.
    if _CONTROL.search(item):
        raise bad
    text = item.strip()
    if not text or len(text) > MAX_ADDRESS_LENGTH or "," in text:
        raise bad
    try:
        parsed = Address(addr_spec=text)
    except (ValueError, IndexError, TypeError, HeaderParseError):
        # email's parser raises a zoo of errors on garbage; all mean "not an address".
        raise bad from None
    # The parser tolerates comments and spaces ("a (x) @b.com"): only a round trip is plain.
    if parsed.display_name or parsed.addr_spec != text:
        raise bad
    local, domain = parsed.username, parsed.domain.lower()
    if len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise bad
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise bad from None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise bad
    if labels[-1].isdigit():  # an IP address is not a mail domain here
        raise bad
    address = f"{local}@{domain}"
    if len(address) > MAX_ADDRESS_LENGTH:
        raise bad
    return address


def parse_addresses(
    value: object, *, field: str = "notify", limit: int = MAX_ADDRESSES
) -> list[str]:
    """Validate the e-mail addresses of a Happo ``notify`` value.

    ``value`` is a list of strings or one comma-separated string (``None`` or blank: none).
    Each address is trimmed and must be a single plain ``local@domain`` (no display name, no
    comment, no CR/LF, at most 254 characters, a dotted domain); the domain is lower-cased,
    the local part kept as given. Duplicates are dropped, the first kept; more than ``limit``
    distinct addresses is refused. Raises :class:`InvalidRequest` naming the bad value.
    """
    if value is None:
        return []
    if isinstance(value, str):
        # In a comma-separated string an empty piece is a stray separator ("a@x.io, ").
        items: list[object] = [piece for piece in value.split(",") if piece.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise InvalidRequest(
            f"{field} must be a list of e-mail addresses or a comma-separated string"
        )
    addresses: list[str] = []
    seen: set[str] = set()
    for item in items:
        address = _address(item, field)
        if address in seen:
            continue
        if len(addresses) >= limit:
            raise InvalidRequest(f"{field}: at most {limit} addresses")
        seen.add(address)
        addresses.append(address)
    return addresses
