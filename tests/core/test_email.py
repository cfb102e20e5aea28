"""The three email backends, each delivering for real: a Maildir, the log, an SMTP server."""

from __future__ import annotations

import asyncio
import contextlib
import mailbox
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import structlog
from aiosmtpd.controller import Controller

import promptstack.core.email as email_module
from promptstack.core.email import (
    ConsoleMailer,
    Email,
    Link,
    MaildirMailer,
    SmtpMailer,
    build_mailer,
    compose,
)
from promptstack.core.settings import Settings
from tests.fixtures.support import Api, plain_text

SENDER = "Prompt Stack <no-reply@promptstack.local>"
SENDER_ADDRESS = "no-reply@promptstack.local"
# Bounds a send that should fail fast; far above smtp_timeout, so only a hang reaches it.
HANG_GUARD_SECONDS = 30


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, environment="test", **values)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- Maildir -----------------------------------------------------------------------------


def _read_maildir(path: Path) -> list[mailbox.MaildirMessage]:
    box = mailbox.Maildir(path, create=False)
    try:
        return list(box)
    finally:
        box.close()


async def test_maildir_concurrent_first_deliveries_create_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there"
    mailer = build_mailer(_settings(email_backend="maildir", maildir_path=path))
    assert isinstance(mailer, MaildirMailer)
    emails = [
        Email(to="ann@example.com", subject="First", body="Hello Ann,\n\nline two.\n"),
        Email(to="bob@example.com", subject="Zweite Nachricht", body="Grüße, Bob ✓\n"),
    ]
    await asyncio.gather(*(mailer.send(email) for email in emails))

    assert {p.name for p in path.iterdir()} == {"tmp", "new", "cur"}
    messages = _read_maildir(path)
    assert len(messages) == 2
    received = {m["To"]: (m["From"], m["Subject"], plain_text(m)) for m in messages}
    assert received == {email.to: (SENDER, email.subject, email.body) for email in emails}
    assert not list((path / "tmp").iterdir())  # every delivery completed


async def test_maildir_many_concurrent_deliveries_all_arrive(tmp_path: Path) -> None:
    mailer = MaildirMailer(tmp_path / "box", SENDER)
    await asyncio.gather(
        *(mailer.send(Email(f"u{n}@example.com", f"Number {n}", f"body {n}\n")) for n in range(20))
    )
    subjects = sorted(m["Subject"] for m in _read_maildir(tmp_path / "box"))
    assert subjects == sorted(f"Number {n}" for n in range(20))


async def test_maildir_delivers_into_an_existing_maildir(tmp_path: Path) -> None:
    path = tmp_path / "existing"
    mailbox.Maildir(path, create=True).close()
    mailer = MaildirMailer(path, SENDER)
    await mailer.send(Email("a@example.com", "One", "1\n"))
    await mailer.send(Email("a@example.com", "Two", "2\n"))
    assert sorted(m["Subject"] for m in _read_maildir(path)) == ["One", "Two"]


# --- Console -----------------------------------------------------------------------------


async def test_console_logs_the_email(monkeypatch: pytest.MonkeyPatch) -> None:
    # A logger used before under another configuration stays bound to it
    # (cache_logger_on_first_use); a fresh one sees the capturing configuration.
    monkeypatch.setattr(email_module, "log", structlog.stdlib.get_logger(email_module.__name__))
    mailer = build_mailer(_settings(email_backend="console"))
    assert isinstance(mailer, ConsoleMailer)
    with structlog.testing.capture_logs() as logs:
        await mailer.send(Email("carol@example.com", "Hi there", "Line one\nLine two\n"))
    assert logs == [
        {
            "event": "email",
            "log_level": "info",
            "to": "carol@example.com",
            "subject": "Hi there",
            "body": "Line one\nLine two\n",
        }
    ]


# --- SMTP --------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    raw: bytes

    @property
    def body(self) -> str:
        """The text, with the CRLF line ends of the wire turned back into newlines."""
        return plain_text(self.message).replace("\r\n", "\n")


@dataclass
class Collector:
    """An aiosmtpd handler that keeps every message it accepts."""

    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        received = Received(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            message_from_bytes(envelope.original_content, policy=default_policy),
            envelope.original_content,
        )
        with self.lock:
            self.messages.append(received)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_tos]


@dataclass
class SmtpServer:
    host: str
    port: int
    collector: Collector

    def settings(self, **values: Any) -> dict[str, Any]:
        return {
            "email_backend": "smtp",
            "smtp_host": self.host,
            "smtp_port": self.port,
            "smtp_starttls": False,
            "smtp_timeout": 5.0,
            **values,
        }


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    collector = Collector()
    for attempt in range(5):  # the free port may be taken between finding and binding it
        controller = Controller(collector, hostname="127.0.0.1", port=_free_port())
        try:
            controller.start()
            break
        except (OSError, RuntimeError):
            if attempt == 4:
                raise
    try:
        yield SmtpServer("127.0.0.1", controller.port, collector)
    finally:
        controller.stop()


async def test_smtp_delivers_to_a_real_server(smtp_server: SmtpServer) -> None:
    mailer = build_mailer(_settings(**smtp_server.settings()))
    assert isinstance(mailer, SmtpMailer)
    await mailer.send(Email("dave@example.com", "Über SMTP", "Hello Dave,\n\näöü ✓\n"))

    [received] = smtp_server.collector.messages
    assert received.mail_from == SENDER_ADDRESS
    assert received.rcpt_tos == ["dave@example.com"]
    assert received.message["From"] == SENDER
    assert received.message["To"] == "dave@example.com"
    assert received.message["Subject"] == "Über SMTP"
    assert received.body == "Hello Dave,\n\näöü ✓\n"


async def test_smtp_parts_are_7bit_or_base64_never_quoted_printable(
    smtp_server: SmtpServer,
) -> None:
    link = "http://127.0.0.1:8000/reset-password?token=" + "A" * 43
    email = compose("fay@example.com", "Links", ["Grüße, Fay. Your link:", Link("Open", link)])
    await build_mailer(_settings(**smtp_server.settings())).send(email)

    [received] = smtp_server.collector.messages
    encodings = {
        part.get_content_type(): part["Content-Transfer-Encoding"]
        for part in received.message.walk()
        if not part.is_multipart()
    }
    # A server may lack 8BITMIME, so text that is not ASCII goes as base64.
    assert encodings == {"text/plain": "base64", "text/html": "base64"}
    assert b"quoted-printable" not in received.raw
    assert link in plain_text(received.message)


async def test_an_ascii_email_goes_as_readable_7bit(smtp_server: SmtpServer) -> None:
    link = "http://127.0.0.1:8000/verify-email?token=" + "b" * 43
    await build_mailer(_settings(**smtp_server.settings())).send(
        compose("gil@example.com", "Confirm", ["Hello Gil.", Link("Confirm", link)])
    )
    [received] = smtp_server.collector.messages
    assert {part["Content-Transfer-Encoding"] for part in received.message.walk()} == {
        None,
        "7bit",
    }
    assert link.encode() in received.raw  # whole, on one line, in the bytes sent


async def test_smtp_uses_the_configured_sender(smtp_server: SmtpServer) -> None:
    settings = _settings(**smtp_server.settings(email_from="Ops <ops@example.org>"))
    await build_mailer(settings).send(Email("erin@example.com", "s", "b\n"))
    [received] = smtp_server.collector.messages
    assert received.mail_from == "ops@example.org"
    assert received.message["From"] == "Ops <ops@example.org>"


async def test_smtp_concurrent_sends_all_arrive(smtp_server: SmtpServer) -> None:
    mailer = build_mailer(_settings(**smtp_server.settings()))
    await asyncio.gather(
        *(mailer.send(Email(f"r{n}@example.com", f"n{n}", "b\n")) for n in range(10))
    )
    assert sorted(m.message["Subject"] for m in smtp_server.collector.messages) == sorted(
        f"n{n}" for n in range(10)
    )


async def _send_failing(settings: Settings) -> aiosmtplib.SMTPException:
    """Send through a server that cannot take it; the error, which must come without hanging."""
    mailer = build_mailer(settings)
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        with pytest.raises(aiosmtplib.SMTPException) as caught:
            await mailer.send(Email("nobody@example.com", "s", "b\n"))
    return caught.value


async def test_smtp_server_down_raises_a_connection_error() -> None:
    port = _free_port()  # nothing listens there
    settings = _settings(
        email_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_timeout=1.0,
    )
    error = await _send_failing(settings)
    assert isinstance(error, aiosmtplib.SMTPConnectError)
    assert isinstance(error, OSError)
    assert str(port) in str(error)


@contextlib.asynccontextmanager
async def _silent_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word, like a firewalled or wedged server."""

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_smtp_server_that_never_answers_times_out() -> None:
    async with _silent_server() as port:
        settings = _settings(
            email_backend="smtp",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            smtp_timeout=0.5,
        )
        error = await _send_failing(settings)
    assert isinstance(error, aiosmtplib.SMTPTimeoutError)
    assert isinstance(error, TimeoutError)


# --- Through the API ---------------------------------------------------------------------


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, Any]:
    """Every test of this module that builds the app sends through the local SMTP server."""
    return smtp_server.settings()


async def test_registration_delivers_through_smtp(
    api: Api, settings: Settings, smtp_server: SmtpServer
) -> None:
    assert settings.email_backend == "smtp"
    account = await api.register(email="smtp.user@example.com", username="smtpuser")
    await api.container.events.relay.drain()

    received = smtp_server.collector.to("smtp.user@example.com")
    assert sorted(m.message["Subject"] for m in received) == [
        "Confirm your email address",
        "Welcome to Prompt Stack",
    ]
    assert all(m.mail_from == SENDER_ADDRESS for m in received)
    assert not (settings.maildir_path).exists()  # nothing went to the Maildir instead

    [verification] = [m for m in received if m.message["Subject"].startswith("Confirm")]
    token = verification.body.split("verify-email instead:\n", 1)[1].split()[0]
    response = await api.client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 204
    await api.login(account)
    me = await api.client.get("/api/v1/users/me", headers=account.headers)
    assert me.json()["is_verified"] is True
