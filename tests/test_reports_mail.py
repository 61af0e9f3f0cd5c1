"""Reports' e-mail: delivery to a real SMTP server on loopback (aiosmtpd), the .eml fallback,
the diff notice's content, and the validation of ``notify`` addresses."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import time
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.reports.domain import parse_addresses
from services.reports.mail import (
    FileMailer,
    Mailer,
    MailNotSent,
    MailRefused,
    SmtpMailer,
    open_mailer,
)
from services.reports.mail_messages import make_message_id
from shared.config import ConfigError
from shared.errors import InvalidRequest
from tests import reports_mail_support as mail_support
from tests.conftest import free_port
from tests.reports_mail_support import (
    COMPARE_URL,
    SENDER,
    UNSUBSCRIBE_URL,
    Recorder,
    ServerFactory,
    Tls,
    mailer,
    notice,
    parts,
)

#: The fixtures these tests use: a certificate (one per module) and SMTP servers on loopback.
tls = mail_support.tls
smtp_server = mail_support.smtp_server


# --- SMTP delivery --------------------------------------------------------------------------


async def test_smtp_delivers_the_notice_and_does_not_upgrade_a_plain_url(
    smtp_server: ServerFactory, tls: Tls
) -> None:
    # The server offers STARTTLS; a plain smtp:// URL must not take it (aiosmtplib would).
    recorder, port = smtp_server(tls_context=tls.server)
    sent = notice("ada@example.com")
    smtp = mailer(f"smtp://127.0.0.1:{port}", tls_context=tls.client)
    assert isinstance(smtp, Mailer)
    await smtp.send(sent)
    await smtp.close()

    assert len(recorder.received) == 1
    got = recorder.received[0]
    assert got.tls is False
    assert got.mail_from == "darkroom@localhost"
    assert got.rcpt_tos == ["ada@example.com"]
    message = got.message
    assert message["To"] == "ada@example.com"
    assert message["From"] == SENDER
    assert message["Subject"] == "Happo diffs in Button, Modal — abc1234 → def5678"
    assert message["Message-ID"] == sent["Message-ID"]
    assert re.fullmatch(r"<[0-9a-f]{32}@darkroom\.test>", message["Message-ID"])
    # The long header is folded right after its colon; Python's parser keeps that space.
    assert message["List-Unsubscribe"].strip() == f"<{UNSUBSCRIBE_URL}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] is not None
    text, page = parts(message)
    assert COMPARE_URL in text
    assert f'href="{COMPARE_URL.replace("&", "&amp;")}"' in page
    assert UNSUBSCRIBE_URL in text
    assert f'href="{UNSUBSCRIBE_URL.replace("&", "&amp;")}"' in page
    for name in ("Button", "Modal"):
        assert f"  - {name}" in text
        assert f"<li>{name}</li>" in page


async def test_starttls_when_the_url_asks(smtp_server: ServerFactory, tls: Tls) -> None:
    recorder, port = smtp_server(tls_context=tls.server, require_starttls=True)
    await mailer(f"smtp://127.0.0.1:{port}?starttls=1", tls_context=tls.client).send(notice())
    assert [r.tls for r in recorder.received] == [True]


async def test_a_server_requiring_starttls_is_not_a_refused_recipient(
    smtp_server: ServerFactory, tls: Tls
) -> None:
    # 530 "STARTTLS first" is the configuration's fault: retry-worthy, not the recipient's.
    recorder, port = smtp_server(tls_context=tls.server, require_starttls=True)
    with pytest.raises(MailNotSent) as caught:
        await mailer(f"smtp://127.0.0.1:{port}").send(notice())
    assert not isinstance(caught.value, MailRefused)
    assert caught.value.code == 530
    assert recorder.received == []


async def test_starttls_asked_but_not_offered_fails(smtp_server: ServerFactory) -> None:
    recorder, port = smtp_server()
    with pytest.raises(MailNotSent) as caught:
        await mailer(f"smtp://127.0.0.1:{port}?starttls=1").send(notice())
    assert "STARTTLS" in caught.value.reason.upper()
    assert recorder.received == []


async def test_smtps_is_tls_from_the_first_byte(smtp_server: ServerFactory, tls: Tls) -> None:
    recorder, port = smtp_server(ssl_context=tls.server)
    await mailer(f"smtps://127.0.0.1:{port}", tls_context=tls.client).send(notice())
    assert [r.tls for r in recorder.received] == [True]
    # The same server with the system's trust store: the self-signed certificate is refused.
    with pytest.raises(MailNotSent):
        await mailer(f"smtps://127.0.0.1:{port}").send(notice())
    assert len(recorder.received) == 1


async def test_credentials_from_the_url_are_percent_decoded(smtp_server: ServerFactory) -> None:
    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"ada@example.com",
            b"p:ss/w@rd",
        )
        # handled=False: aiosmtpd answers 535 itself on a failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    recorder, port = smtp_server(authenticator=authenticator, auth_require_tls=False)
    good = f"smtp://ada%40example.com:p%3Ass%2Fw%40rd@127.0.0.1:{port}"
    await mailer(good).send(notice())
    assert [r.login for r in recorder.received] == ["ada@example.com"]

    bad = f"smtp://ada%40example.com:wrong@127.0.0.1:{port}"
    with pytest.raises(MailNotSent) as caught:
        await mailer(bad).send(notice())
    assert not isinstance(caught.value, MailRefused)
    assert caught.value.code == 535
    assert "wrong" not in caught.value.reason
    assert len(recorder.received) == 1


async def test_a_permanently_refused_recipient_is_mail_refused(
    smtp_server: ServerFactory,
) -> None:
    recorder, port = smtp_server(Recorder(refuse={"gone@example.com": "550 5.1.1 No such user"}))
    with pytest.raises(MailRefused) as caught:
        await mailer(f"smtp://127.0.0.1:{port}").send(notice("gone@example.com"))
    assert caught.value.code == 550
    assert caught.value.refused == {"gone@example.com": (550, "5.1.1 No such user")}
    assert caught.value.accepted == ()
    assert "gone@example.com" in caught.value.reason
    assert recorder.rcpt_attempts == ["gone@example.com"]
    assert recorder.received == []


async def test_a_temporary_refusal_is_worth_a_retry(smtp_server: ServerFactory) -> None:
    recorder, port = smtp_server(
        Recorder(refuse={"busy@example.com": "450 4.2.1 Mailbox busy, try later"})
    )
    with pytest.raises(MailNotSent) as caught:
        await mailer(f"smtp://127.0.0.1:{port}").send(notice("busy@example.com"))
    assert not isinstance(caught.value, MailRefused)
    assert caught.value.code == 450
    assert recorder.received == []


async def test_a_partial_refusal_names_who_got_the_message(smtp_server: ServerFactory) -> None:
    recorder, port = smtp_server(Recorder(refuse={"gone@example.com": "550 No such user"}))
    message = notice("ada@example.com")
    message["Cc"] = "gone@example.com"
    with pytest.raises(MailRefused) as caught:
        await mailer(f"smtp://127.0.0.1:{port}").send(message)
    assert caught.value.accepted == ("ada@example.com",)
    assert set(caught.value.refused) == {"gone@example.com"}
    assert [r.rcpt_tos for r in recorder.received] == [["ada@example.com"]]


async def test_a_server_that_never_speaks_times_out() -> None:
    # Listening, so the kernel completes the handshake, but nobody ever sends a greeting.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(MailNotSent) as caught:
            await mailer(f"smtp://127.0.0.1:{port}", timeout=0.5).send(notice())
        elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5
    assert not isinstance(caught.value, MailRefused)
    assert caught.value.code is None


async def test_a_server_that_trickles_times_out_in_all(smtp_server: ServerFactory) -> None:
    # Each reply comes within the timeout, but together they exceed it: one deadline for all.
    recorder, port = smtp_server(Recorder(delay=0.3))
    started = time.monotonic()
    with pytest.raises(MailNotSent) as caught:
        await mailer(f"smtp://127.0.0.1:{port}", timeout=0.5).send(notice())
    assert time.monotonic() - started < 1.0
    assert "0.5 s" in caught.value.reason
    assert recorder.rcpt_attempts == ["ada@example.com"], "it got past RCPT"
    assert recorder.received == []


async def test_nothing_listening_is_mail_not_sent() -> None:
    port = free_port()  # bound and released: nothing listens there
    started = time.monotonic()
    with pytest.raises(MailNotSent) as caught:
        await mailer(f"smtp://127.0.0.1:{port}", timeout=2.0).send(notice())
    assert time.monotonic() - started < 2.0
    assert f"127.0.0.1:{port}" in caught.value.reason


async def test_a_message_without_recipients_is_a_bug_not_a_retry() -> None:
    message = notice()
    del message["To"]
    with pytest.raises(ValueError, match="recipient"):
        await mailer(f"smtp://127.0.0.1:{free_port()}").send(message)
    with pytest.raises(ValueError, match="recipient"):
        await FileMailer(Path("/nonexistent")).send(message)


# --- the URL and the choice of mailer -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", ("mail.example.com", 25, False, False, None, None)),
        ("smtp://MAIL.example.com:2525/", ("mail.example.com", 2525, False, False, None, None)),
        ("smtp://mail.example.com?starttls=1", ("mail.example.com", 587, False, True, None, None)),
        ("smtp://h:26?starttls=0", ("h", 26, False, False, None, None)),
        ("smtps://u:p%40ss@mail.example.com", ("mail.example.com", 465, True, False, "u", "p@ss")),
        ("smtps://[::1]:4650", ("::1", 4650, True, False, None, None)),
        ("  smtp://relay  ", ("relay", 25, False, False, None, None)),
    ],
)
def test_smtp_urls(url: str, expected: tuple) -> None:
    m = SmtpMailer.from_url(url)
    assert (m.host, m.port, m.implicit_tls, m.starttls, m.username, m.password) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.com",
        "smtp://",
        "smtp://u:secretpw@mail.example.com:notaport",
        "smtp://mail.example.com/path",
        "smtp://mail.example.com?starttls=maybe",
        "smtp://mail.example.com?tls=1",
        "smtps://mail.example.com?starttls=1",
        "smtp://:secretpw@mail.example.com",
    ],
)
def test_bad_smtp_urls_are_config_errors_that_hide_the_password(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^SMTP_URL: ") as caught:
        SmtpMailer.from_url(url)
    assert "secretpw" not in str(caught.value)


def test_the_password_stays_out_of_repr() -> None:
    m = SmtpMailer.from_url("smtp://ada%40x.io:secretpw@mail.example.com?starttls=1")
    assert "secretpw" not in repr(m)
    assert m.describe() == "smtp://ada%40x.io@mail.example.com:587?starttls=1"


def test_open_mailer_picks_smtp_only_when_a_url_is_set(tmp_path: Path) -> None:
    for unset in (None, "", "  "):
        chosen = open_mailer(unset, tmp_path / "mail", 3.0)
        assert isinstance(chosen, FileMailer)
        assert chosen.directory == tmp_path / "mail"
    chosen = open_mailer("smtps://mail.example.com", tmp_path, 3.0)
    assert isinstance(chosen, SmtpMailer)
    assert (chosen.port, chosen.timeout) == (465, 3.0)
    with pytest.raises(ConfigError):
        open_mailer("smtp://mail.example.com?bogus=1", tmp_path, 3.0)


# --- the .eml fallback ----------------------------------------------------------------------


async def test_file_mailer_writes_a_parseable_eml(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "mail"  # does not exist yet
    sent = notice("ada@example.com")
    files = FileMailer(folder)
    await files.send(sent)
    await files.send(notice("bob@example.com"))
    await files.close()

    written = sorted(folder.iterdir())
    assert len(written) == 2, "no temporary file left behind, one file per message"
    assert all(re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{16}\.eml", p.name) for p in written)
    by_to = {}
    for path in written:
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        by_to[parsed["To"]] = parsed
    message = by_to["ada@example.com"]
    assert message["Subject"] == "Happo diffs in Button, Modal — abc1234 → def5678"
    assert message["Message-ID"] == sent["Message-ID"]
    assert message["List-Unsubscribe"].strip() == f"<{UNSUBSCRIBE_URL}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, page = parts(message)
    assert COMPARE_URL in text
    assert f'href="{COMPARE_URL.replace("&", "&amp;")}"' in page
    assert (text, page) == parts(sent)
    assert by_to["bob@example.com"]["Message-ID"] != sent["Message-ID"]


async def test_file_mailer_that_cannot_write_is_mail_not_sent(tmp_path: Path) -> None:
    blocker = tmp_path / "mail"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(MailNotSent):
        await FileMailer(blocker).send(notice())


# --- composing ------------------------------------------------------------------------------


def test_every_value_is_escaped_and_nothing_is_fetched() -> None:
    message = notice(
        account_name='<b>Evil</b> & "Co"',
        project="<img src=x onerror=alert(1)>",
        components=["<script>alert(1)</script>", "Été & Co"],
        summary="line one\n<iframe src=//evil>",
    )
    text, page = parts(message)
    assert "<script>" not in page and "<iframe" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; &quot;Co&quot;" in page
    assert "Été &amp; Co" in page
    assert "line one<br>&lt;iframe src=//evil&gt;" in page
    # The only URLs in the page are the two links: no images, styles or scripts to load.
    assert "src=" not in page.replace("src=x", "").replace("src=//evil", "")
    assert re.findall(r'href="([^"]*)"', page) == [
        COMPARE_URL.replace("&", "&amp;"),
        UNSUBSCRIBE_URL.replace("&", "&amp;"),
    ]
    # Plain text stays plain: the values as given.
    assert "  - <script>alert(1)</script>" in text
    assert message["Subject"] == (
        "Happo diffs in <script>alert(1)</script>, Été & Co — abc1234 → def5678"
    )


def test_header_injection_through_names_stays_in_the_subject() -> None:
    message = notice(
        components=["Button\r\nBcc: victim@example.com", "Modal\nX-Evil: 1"],
        sha1="abc1234\r\nX-Sha: 1",
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None and parsed["X-Sha"] is None
    assert "Bcc: victim@example.com" in parsed["Subject"]
    assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]


def test_many_components_are_counted_not_all_named() -> None:
    names = [f"Component{i}" for i in range(60)]
    message = notice(components=names)
    assert message["Subject"] == (
        "Happo diffs in Component0, Component1, Component2 and 57 more — abc1234 → def5678"
    )
    text, page = parts(message)
    assert "  - Component49" in text and "Component50" not in text
    assert "… and 10 more" in text and "<li>… and 10 more</li>" in page
    assert "60 components of web (Acme)" in text


def test_without_unsubscribe_or_components() -> None:
    message = notice(unsubscribe_url=None, components=[], account_name=None)
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None
    assert message["Subject"] == "Happo diffs — abc1234 → def5678"
    text, page = parts(message)
    assert "nsubscribe" not in text and "nsubscribe" not in page
    assert "differences in web," in text
    assert COMPARE_URL in text


def test_message_id_is_used_as_given() -> None:
    assert notice(message_id="cmp-42.ada@darkroom.test")["Message-ID"] == (
        "<cmp-42.ada@darkroom.test>"
    )
    with pytest.raises(ValueError):
        notice(message_id="<no at sign>")
    with pytest.raises(ValueError):
        notice(message_id="<a@b>\r\nBcc: x@y.z")
    first = make_message_id("comparison-42", "ada@example.com", domain="darkroom.test")
    assert first == make_message_id("comparison-42", "ada@example.com", domain="darkroom.test")
    assert first != make_message_id("comparison-42", "bob@example.com", domain="darkroom.test")
    assert "ada" not in first


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "/relative/path", "ftp://host/x", "http://h/a b", "http://h/\n"]
)
def test_only_absolute_http_links(url: str) -> None:
    with pytest.raises(ValueError):
        notice(compare_url=url)
    with pytest.raises(ValueError):
        notice(unsubscribe_url=url)


# --- notify addresses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        ("", []),
        ("ada@example.com", ["ada@example.com"]),
        ("  Ada.Lovelace@Example.COM ", ["Ada.Lovelace@example.com"]),
        ("a@x.io, b@y.io,c@z.io", ["a@x.io", "b@y.io", "c@z.io"]),
        ("a@x.io, ", ["a@x.io"]),
        (["a@x.io", "b+tag@sub.y.io"], ["a@x.io", "b+tag@sub.y.io"]),
        (("a@x.io",), ["a@x.io"]),
        (["a@X.io", "a@x.IO", "b@x.io", "a@x.io"], ["a@x.io", "b@x.io"]),
        (["A@x.io", "a@x.io"], ["A@x.io", "a@x.io"]),
        ("o'brien@example.co.uk", ["o'brien@example.co.uk"]),
        ("ada@bücher.de", ["ada@xn--bcher-kva.de"]),
        (
            [f"user{i}@example.com" for i in range(100)],
            [f"user{i}@example.com" for i in range(100)],
        ),
        (["dup@example.com"] * 150, ["dup@example.com"]),
    ],
)
def test_parse_addresses_accepts(value: object, expected: list[str]) -> None:
    assert parse_addresses(value) == expected


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("ada@example.com\r\nBcc: victim@example.com", "Bcc"),
        (["ada@example.com\nBcc: victim@example.com"], "Bcc"),
        (["ada@example.com\r\n"], "ada@example.com"),
        ("ada@example.com%0d%0aBcc:x@y.io", "%0d%0a"),
        (["a@x.io, b@y.io"], "a@x.io, b@y.io"),
        ("Ada <ada@example.com>", "Ada <ada@example.com>"),
        (['"Ada" <ada@example.com>'], "Ada"),
        ("ada (work) @example.com", "(work)"),
        ('"ada lovelace"@example.com', "lovelace"),
        ("ada@example", "ada@example"),
        ("ada@[127.0.0.1]", "127.0.0.1"),
        ("ada@1.2.3.4", "1.2.3.4"),
        ("ada@-example.com", "-example.com"),
        ("ada@exa_mple.com", "exa_mple"),
        ("ada..l@example.com", "ada..l"),
        (".ada@example.com", ".ada"),
        ("ada@", "ada@"),
        ("@example.com", "@example.com"),
        ("ada", "ada"),
        ("adä@example.com", "adä"),
        ("a b@example.com", "a b"),
        ("=?utf-8?q?x?=@example.com", "utf-8"),
        ("a@x.io\x00", "a@x.io"),
        ("x" * 250 + "@example.com", "xxxx"),
        ("x" * 65 + "@example.com", "xxxx"),
        ([""], "''"),
        ([None], "string"),
        ([["a@x.io"]], "string"),
        (42, "list of e-mail addresses"),
        ({"a@x.io": 1}, "list of e-mail addresses"),
        ([f"user{i}@example.com" for i in range(101)], "at most 100"),
    ],
)
def test_parse_addresses_rejects(value: object, named: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_addresses(value)
    assert caught.value.status == 422
    assert caught.value.message.startswith("notify")
    assert named in caught.value.message
    assert "\n" not in caught.value.message and "\r" not in caught.value.message


def test_parse_addresses_limit_and_field_are_settable() -> None:
    assert parse_addresses("a@x.io, b@x.io", limit=2) == ["a@x.io", "b@x.io"]
    with pytest.raises(InvalidRequest, match=r"^cc: at most 1 addresses"):
        parse_addresses("a@x.io, b@x.io", field="cc", limit=1)
