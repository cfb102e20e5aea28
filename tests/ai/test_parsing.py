"""Uploads are read by what their bytes are: PDFs (encrypted ones too, with an empty
password), UTF-8 text and Markdown; anything else is refused, and so is no text."""

from __future__ import annotations

import pytest

from promptstack.ai.documents.parsing import NoText, UnsupportedDocument, parse
from tests.fixtures.documents import encrypted, pdf


def test_a_pdfs_text_is_read_page_by_page() -> None:
    parsed = parse(pdf("Sagas compensate.", "Outboxes relay."))

    assert parsed.kind == "pdf"
    assert parsed.text == "Sagas compensate.\n\nOutboxes relay."


def test_a_pdf_locked_only_against_editing_opens() -> None:
    parsed = parse(encrypted(pdf("Locked against editing."), user_password=""))

    assert parsed.text == "Locked against editing."


def test_a_pdf_that_needs_a_password_is_refused() -> None:
    with pytest.raises(UnsupportedDocument, match="password"):
        parse(encrypted(pdf("Secret."), user_password="hunter2"))


def test_a_pdf_with_no_text_is_no_text() -> None:
    with pytest.raises(NoText):
        parse(pdf(""))


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\nnot really a pdf",
        b"%PDF-" + bytes(range(256)),
    ],
    ids=["truncated", "garbage"],
)
def test_a_broken_pdf_is_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedDocument, match="cannot be read"):
        parse(data)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"Plain words.\r\nOn two lines.", "text"),
        ("\ufeffA byte-order mark, then UTF-8: caf\u00e9.".encode(), "text"),
        (b"# Title\n\nA paragraph.", "markdown"),
        (b"Intro\n\n- one\n- two", "markdown"),
        (b"See [the docs](https://example.com).", "markdown"),
    ],
)
def test_text_and_markdown_are_told_apart_by_content(data: bytes, kind: str) -> None:
    parsed = parse(data)

    assert parsed.kind == kind
    assert "\r" not in parsed.text
    assert not parsed.text.startswith("\ufeff")


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # an image named .txt
        b"PK\x03\x04\x14\x00\x00\x00",  # a zip
        "latin-1: caf\u00e9".encode("latin-1"),
        b"text with a NUL\x00 inside",
        b"\x1b[31mterminal colours\x1b[0m",
    ],
    ids=["png", "zip", "latin-1", "nul", "escape"],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedDocument):
        parse(data)


@pytest.mark.parametrize(
    "data", [b"", b"   \n\t\n  ", b"\xef\xbb\xbf"], ids=["empty", "blank", "bom"]
)
def test_no_text_is_refused(data: bytes) -> None:
    with pytest.raises(NoText):
        parse(data)
