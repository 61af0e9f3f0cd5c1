"""What the reports service's e-mails say: the diff notice, its subject, plain text and HTML
from the templates in ``templates/mail/`` (how it travels is :mod:`mail`'s).

The HTML templates are autoescaped; the text templates are not (their values are shown as
given). Every value is made one line before it reaches a template, so no name can start a
header or make a subject huge.
"""

from __future__ import annotations

import hashlib
import html
import re
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup

from services.reports.domain import MAIL_CONTROL

#: Components named in a subject; the rest are counted ("and 3 more").
SUBJECT_COMPONENTS = 3
#: Components listed in a notice's body; a huge report must not make a huge e-mail.
BODY_COMPONENTS = 50

_TEMPLATES = Path(__file__).with_name("templates") / "mail"
_SPACES = re.compile(r"\s+")
_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")


@jinja2.pass_eval_context
def _escape(eval_context: jinja2.nodes.EvalContext, value: Any) -> Any:
    """In HTML, escape as the standard library does (``&quot;``, ``&#x27;``), as the notices
    always have; markupsafe's own (``&#34;``) would be as safe but another spelling."""
    if eval_context.autoescape and not isinstance(value, Markup):
        return Markup(html.escape(str(value), quote=True))  # noqa: S704 - escaped right here
    return value


_TEMPLATES_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_TEMPLATES),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
    finalize=_escape,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _one_line(value: str, limit: int = 120) -> str:
    """``value`` on one line: no CR/LF reaches a header, and no name makes a subject huge."""
    text = _SPACES.sub(" ", MAIL_CONTROL.sub(" ", str(value))).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _http_url(url: str, what: str) -> str:
    """``url`` if it is an absolute http(s) URL; only such a link goes into a notice."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or _SPACES.search(url):
        raise ValueError(f"{what} must be an absolute http(s) URL")
    if MAIL_CONTROL.search(url):
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
    listed = names[:BODY_COMPONENTS]
    summary_text = "\n".join(line.rstrip() for line in summary.replace("\r\n", "\n").split("\n"))
    summary_text = MAIL_CONTROL.sub(
        lambda m: m.group() if m.group() == "\n" else " ", summary_text
    ).strip()
    values = {
        "names": names,
        "listed": listed,
        "hidden": len(names) - len(listed),
        "project": _one_line(project, 120) or "your project",
        "account": _one_line(account_name, 120) if account_name else "",
        "sha1": _one_line(sha1, 80),
        "sha2": _one_line(sha2, 80),
        "summary": summary_text,
        "summary_lines": summary_text.split("\n") if summary_text else [],
        "compare_url": compare_url,
        "unsubscribe_url": unsubscribe_url,
    }
    # A header is one line: the template file's own final newline is not part of it.
    subject = (
        _TEMPLATES_ENV.get_template("diff_notice_subject.txt")
        .render(
            names=names,
            named=names[:SUBJECT_COMPONENTS],
            more=len(names) - SUBJECT_COMPONENTS,
            short1=_short_sha(sha1),
            short2=_short_sha(sha2),
        )
        .rstrip("\n")
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
    message.set_content(
        _TEMPLATES_ENV.get_template("diff_notice.txt").render(values), cte="quoted-printable"
    )
    message.add_alternative(
        _TEMPLATES_ENV.get_template("diff_notice.html").render(values, subject=subject),
        subtype="html",
        cte="quoted-printable",
    )
    return message
