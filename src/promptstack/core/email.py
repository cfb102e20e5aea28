"""Outgoing email through one of three backends chosen by `EMAIL_BACKEND`.

Every message has a plain-text part and, when the sender wrote one, an HTML
alternative; both carry `Date` and `Message-ID`. Parts are written 7- or 8-bit where
that is safe (a Maildir file, or an ASCII part), base64 otherwise: never
quoted-printable, whose soft line breaks split a link's token in the raw file.
"""

from __future__ import annotations

import asyncio
import html
import mailbox
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTPUTF8, default
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol

import aiosmtplib

from promptstack.core.logging import get_logger
from promptstack.core.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    body: str  # the plain-text part
    html: str | None = None  # an alternative for mail readers that show HTML


@dataclass(frozen=True, slots=True)
class Link:
    """A call to action: a button in HTML, the bare address on a line of its own in text."""

    label: str
    url: str


def compose(to: str, subject: str, parts: Sequence[str | Link], *, footer: str = "") -> Email:
    """An email from paragraphs and links, written once for both parts.

    Paragraphs are plain text (line breaks kept); nothing in them is taken as markup.
    """
    text = "\n\n".join(f"  {part.url}" if isinstance(part, Link) else part for part in parts)
    blocks = "\n".join(_html_block(part) for part in parts)
    if footer:
        text += f"\n\n-- \n{footer}"
        blocks += f'\n<p style="color:#666;font-size:13px">{_html_text(footer)}</p>'
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head>\n"
        '<body style="font-family:sans-serif;line-height:1.5;max-width:36em">\n'
        f"{blocks}\n</body></html>\n"
    )
    return Email(to=to, subject=subject, body=text + "\n", html=page)


def _html_text(text: str) -> str:
    return html.escape(text).replace("\n", "<br>\n")


def _html_block(part: str | Link) -> str:
    if isinstance(part, Link):
        url = html.escape(part.url, quote=True)
        return (
            f'<p><a href="{url}" style="display:inline-block;padding:8px 16px;'
            'background:#2563eb;color:#fff;text-decoration:none;border-radius:4px">'
            f"{html.escape(part.label)}</a></p>\n"
            f'<p style="font-size:13px;color:#666">Or open {url}</p>'
        )
    return f"<p>{_html_text(part)}</p>"


# In a file, headers can be UTF-8 too (RFC 6532) and lines end as the system's do.
_IN_A_FILE = SMTPUTF8.clone(linesep="\n")


class Mailer(Protocol):
    async def send(self, email: Email) -> None: ...


def build_message(email: Email, sender: str, *, eight_bit: bool) -> EmailMessage:
    """The message as it goes out: headers, the text part, and its HTML alternative.

    `eight_bit` says the transport keeps 8-bit bytes (a Maildir file does); over SMTP a
    part that is not ASCII is base64 and a header RFC 2047-encoded, which every server
    carries."""
    message = EmailMessage(policy=_IN_A_FILE if eight_bit else default)
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=_domain(sender))
    message.set_content(email.body, cte=_transfer_encoding(email.body, eight_bit))
    if email.html is not None:
        message.add_alternative(
            email.html, subtype="html", cte=_transfer_encoding(email.html, eight_bit)
        )
    return message


def _domain(sender: str) -> str:
    """The sender's domain names the message ids (`make_msgid` would ask DNS otherwise)."""
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"


def _transfer_encoding(text: str, eight_bit: bool) -> str:
    if max((len(line) for line in text.splitlines()), default=0) > 900:
        return "base64"  # SMTP's line limit is 998 octets
    if text.isascii():
        return "7bit"
    return "8bit" if eight_bit else "base64"


class MaildirMailer:
    """Delivers into a Maildir folder, so any mail reader can open what was sent."""

    def __init__(self, path: Path, sender: str) -> None:
        self.path = path
        self.sender = sender

    async def send(self, email: Email) -> None:
        message = build_message(email, self.sender, eight_bit=True)
        await asyncio.to_thread(self._deliver, message)

    def _deliver(self, message: EmailMessage) -> None:
        # Made here rather than by Maildir(create=True), which skips the sub-folders when
        # the top folder exists and so races with a concurrent first delivery.
        for folder in ("tmp", "new", "cur"):
            (self.path / folder).mkdir(parents=True, exist_ok=True)
        box = mailbox.Maildir(self.path, create=False)
        try:
            box.add(message)
        finally:
            box.close()


class ConsoleMailer:
    """Writes each email to the log instead of sending it."""

    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, email: Email) -> None:
        log.info("email", to=email.to, subject=email.subject, body=email.body)


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, email: Email) -> None:
        s = self.settings
        await aiosmtplib.send(
            build_message(email, s.email_from, eight_bit=False),
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_use_tls,
            start_tls=s.smtp_starttls if not s.smtp_use_tls else False,
            timeout=s.smtp_timeout,
        )


def build_mailer(settings: Settings) -> Mailer:
    if settings.email_backend == "smtp":
        return SmtpMailer(settings)
    if settings.email_backend == "console":
        return ConsoleMailer(settings.email_from)
    return MaildirMailer(settings.maildir_path, settings.email_from)
