"""What a message looks like: headers a mail system expects, a text part and its HTML
alternative, and a Maildir file a person can read (and copy a link out of)."""

from __future__ import annotations

import mailbox
from email.utils import parsedate_to_datetime
from pathlib import Path

from promptstack.core.email import Email, Link, MaildirMailer, build_message, compose

SENDER = "Prompt Stack <no-reply@promptstack.local>"
LINK = "http://127.0.0.1:8000/reset-password?token=" + "Zz9_-" * 9


def test_a_message_carries_date_and_a_unique_message_id() -> None:
    email = Email("ann@example.com", "Hello", "Hi Ann.\n")
    first = build_message(email, SENDER, eight_bit=True)
    second = build_message(email, SENDER, eight_bit=True)

    assert parsedate_to_datetime(first["Date"]).tzinfo is not None
    assert first["Message-ID"].startswith("<")
    assert first["Message-ID"].endswith("@promptstack.local>")
    assert first["Message-ID"] != second["Message-ID"]


def test_a_composed_email_has_text_and_an_html_alternative() -> None:
    email = compose("bob@example.com", "Reset", ["Choose a new password:", Link("Choose", LINK)])
    message = build_message(email, SENDER, eight_bit=True)

    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    page = message.get_body(preferencelist=("html",))
    assert text is not None
    assert page is not None
    assert f"\n  {LINK}\n" in text.get_content()
    assert f'href="{LINK}"' in page.get_content()


def test_text_from_a_sender_is_never_markup() -> None:
    email = compose("cy@example.com", "<b>News</b>", ['<script>alert("x")</script>\nline two'])
    assert email.html is not None
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert "<title>&lt;b&gt;News&lt;/b&gt;</title>" in email.html
    assert "line two" in email.html
    assert '<script>alert("x")</script>\nline two' in email.body


def test_a_link_is_escaped_in_its_attribute() -> None:
    email = compose("di@example.com", "s", [Link("Go", 'http://x.test/?a=1&b="2"')])
    assert email.html is not None
    assert 'href="http://x.test/?a=1&amp;b=&quot;2&quot;"' in email.html


async def test_the_maildir_file_reads_as_written(tmp_path: Path) -> None:
    """8-bit parts in the file: the greeting and the link read as they were written."""
    mailer = MaildirMailer(tmp_path / "box", SENDER)
    await mailer.send(compose("eve@example.com", "Grüße", ["Grüße, Eve ✓", Link("Open", LINK)]))

    [name] = (tmp_path / "box" / "new").iterdir()
    raw = name.read_bytes()
    assert b"quoted-printable" not in raw
    assert b"base64" not in raw
    assert "Grüße, Eve ✓".encode() in raw
    assert f"  {LINK}\n".encode() in raw  # one line, whole: it can be copied from the file
    assert "Subject: Grüße\n".encode() in raw
    box = mailbox.Maildir(tmp_path / "box", create=False)
    try:
        [message] = list(box)
    finally:
        box.close()
    assert message["To"] == "eve@example.com"


async def test_a_very_long_line_is_base64_rather_than_broken(tmp_path: Path) -> None:
    mailer = MaildirMailer(tmp_path / "box", SENDER)
    await mailer.send(Email("fay@example.com", "Long", "x" * 2000 + "\n"))
    [name] = (tmp_path / "box" / "new").iterdir()
    assert b"Content-Transfer-Encoding: base64" in name.read_bytes()
