"""What the reports e-mail tests share: a diff notice with representative values and its
two bodies, aiosmtpd servers on loopback that record what they accept (the ``smtp_server``
fixture), a self-signed certificate for them (the ``tls`` fixture), and an SmtpMailer that
gives up fast."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.reports.mail import SmtpMailer
from services.reports.mail_messages import compose_diff_notice, make_message_id
from tests.conftest import free_port

SENDER = "Darkroom <darkroom@localhost>"
COMPARE_URL = "http://127.0.0.1:8080/a/7/p/web/compare/abc1234def/def5678abc?view=diffs&page=1"
UNSUBSCRIBE_URL = "http://127.0.0.1:8080/subscriptions/unsubscribe?token=t0k&id=9"


def notice(recipient: str = "ada@example.com", **overrides: Any) -> EmailMessage:
    """A diff notice with representative values; ``overrides`` replace any argument."""
    args: dict[str, Any] = {
        "sender": SENDER,
        "recipient": recipient,
        "account_name": "Acme",
        "project": "web",
        "sha1": "abc1234def0000",
        "sha2": "def5678abc1111",
        "components": ["Button", "Modal"],
        "summary": "3 diffs in 2 components.",
        "compare_url": COMPARE_URL,
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "message_id": make_message_id("comparison-42", recipient, domain="darkroom.test"),
    }
    args.update(overrides)
    return compose_diff_notice(**args)


def parts(message: email.message.Message) -> tuple[str, str]:
    """The plain-text and HTML bodies of a notice, with the wire's CRLF made LF again."""
    assert isinstance(message, EmailMessage)
    text = message.get_body(("plain",))
    page = message.get_body(("html",))
    assert text is not None and page is not None
    return (
        text.get_content().replace("\r\n", "\n"),
        page.get_content().replace("\r\n", "\n"),
    )


# --- an SMTP server on loopback -------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


class Recorder:
    """aiosmtpd handler: keeps every accepted message; answers ``refuse[address]`` to RCPT.

    ``delay`` holds back the replies to RCPT and DATA, like a slow or overloaded server.
    """

    def __init__(self, refuse: dict[str, str] | None = None, delay: float = 0.0) -> None:
        self.refuse = refuse or {}
        self.delay = delay
        self.received: list[Received] = []
        self.rcpt_attempts: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        self.rcpt_attempts.append(address)
        await asyncio.sleep(self.delay)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(self.delay)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data else None
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=parsed,
                # Covers STARTTLS too: aiosmtpd swaps the transport for the TLS one.
                tls=server.transport.get_extra_info("sslcontext") is not None,
                login=login,
            )
        )
        return "250 Message accepted"


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1; the client context trusts only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return Tls(server=server, client=client)


ServerFactory = Callable[..., tuple[Recorder, int]]


@pytest.fixture
def smtp_server() -> Iterator[ServerFactory]:
    """Starts aiosmtpd servers on loopback: ``start(handler=…, **SMTP options)`` → port."""
    controllers: list[Controller] = []

    def start(handler: Recorder | None = None, **options: Any) -> tuple[Recorder, int]:
        handler = handler or Recorder()
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return handler, port

    yield start
    for controller in controllers:
        controller.stop()


def mailer(url: str, **options: Any) -> SmtpMailer:
    """An SmtpMailer with a short timeout, so a failing test fails fast."""
    options.setdefault("timeout", 5.0)
    return SmtpMailer.from_url(url, local_hostname="tests.darkroom.test", **options)
