"""Text out of an upload: what the bytes are, not what the client says they are.

A PDF is known by its `%PDF-` signature and read with pypdf (an encrypted one opens if
its user password is empty, as PDFs locked only against editing are); anything else is
taken as text if it is UTF-8 (a byte-order mark allowed) with no control characters but
line breaks and tabs, and as Markdown if it reads like Markdown. Everything else, an
image or an archive renamed `.txt` among them, is refused. Pure: bytes in, text out.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["pdf", "markdown", "text"]

PDF_SIGNATURE = b"%PDF-"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MARKDOWN = re.compile(r"^(#{1,6} \S|[-*+] \S|\d+\. \S|```|> \S)|\[[^\]]+\]\([^)]+\)", re.M)


class UnsupportedDocument(ValueError):
    """Neither a PDF nor UTF-8 text."""


class NoText(ValueError):
    """Readable, but with no text in it (a blank file, a PDF of scanned images)."""


@dataclass(frozen=True, slots=True)
class Parsed:
    kind: Kind
    text: str


def parse(data: bytes) -> Parsed:
    """The text of an upload's bytes, and what kind of document they hold."""
    if data.startswith(PDF_SIGNATURE):
        return Parsed("pdf", _checked(_pdf_text(data)))
    return read_text(_as_text(data))


def read_text(text: str) -> Parsed:
    """Text given as text (a JSON upload's `content`): Markdown or plain."""
    kind: Kind = "markdown" if _MARKDOWN.search(text) else "text"
    return Parsed(kind, _checked(text))


def _checked(text: str) -> str:
    cleaned = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not cleaned:
        raise NoText("the document holds no text")
    return cleaned


def _as_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsupportedDocument("this is neither a PDF nor UTF-8 text") from None
    if _CONTROL.search(text):
        raise UnsupportedDocument("this is not text: it holds control characters")
    return text


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader  # noqa: PLC0415 - only uploads of PDFs need it
    from pypdf.errors import PdfReadError  # noqa: PLC0415

    try:
        reader = PdfReader(io.BytesIO(data))
        opened = not reader.is_encrypted or bool(reader.decrypt(""))
        pages = [page.extract_text() or "" for page in reader.pages] if opened else []
    except (PdfReadError, ValueError, KeyError, TypeError) as error:
        raise UnsupportedDocument("this PDF cannot be read") from error
    if not opened:
        raise UnsupportedDocument("this PDF is locked with a password")
    # Text extraction can yield what no column should hold (NUL among them).
    return _CONTROL.sub(" ", "\n\n".join(page.strip() for page in pages))
