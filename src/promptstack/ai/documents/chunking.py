"""Cutting a document's text into chunks an embedding model can take whole.

A chunk holds at most `max_tokens` tokens of the embedder's own tokenizer (a model reads
only so many; what it cannot read it ignores, silently). Chunks are cut between
paragraphs where they can be, between sentences where a paragraph is too long, and
between words only where a sentence is; a heading stays with the text after it, never
ending a chunk on its own. Each chunk after the first begins with the last sentences of
the one before, up to `overlap_tokens`, so a passage cut in two is still found whole in
one of them. Pure: text in, chunks out, tokens counted by the function it is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Count = Callable[[str], int]

_BLANK_LINES = re.compile(r"\n\s*\n")
_ATX_HEADING = re.compile(r"#{1,6}\s+\S.*")
_SETEXT_RULE = re.compile(r"(=+|-+)\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    tokens: int
    # How many of the first characters repeat the end of the chunk before.
    carried: int = 0


def _is_heading(block: str) -> bool:
    """A Markdown heading alone: `# Title`, or a title underlined with = or -."""
    lines = block.splitlines()
    if len(lines) == 1:
        return bool(_ATX_HEADING.fullmatch(lines[0]))
    return len(lines) == 2 and bool(_SETEXT_RULE.fullmatch(lines[1]))


def _blocks(text: str) -> list[str]:
    """Paragraphs, each heading joined to the paragraph after it."""
    paragraphs = [p.strip() for p in _BLANK_LINES.split(text) if p.strip()]
    joined: list[str] = []
    for paragraph in paragraphs:
        if joined and _is_heading(joined[-1].rsplit("\n\n", 1)[-1]):
            joined[-1] = f"{joined[-1]}\n\n{paragraph}"
        else:
            joined.append(paragraph)
    return joined


def _pieces(block: str, max_tokens: int, count: Count) -> Iterator[str]:
    """The block, or its sentences, or its words: pieces of at most `max_tokens` (but
    for a single word longer than that, which is cut by characters)."""
    if count(block) <= max_tokens:
        yield block
        return
    sentences = [s for s in _SENTENCE_END.split(block) if s.strip()]
    if len(sentences) > 1:
        for sentence in sentences:
            yield from _pieces(sentence, max_tokens, count)
        return
    words = _WORD.findall(block)
    if len(words) > 1:
        yield from _packed(words, max_tokens, count, separator="")
        return
    # One "word" with more tokens than a chunk holds: by characters, as a last resort.
    step = max(1, len(block) * max_tokens // max(count(block), 1))
    for start in range(0, len(block), step):
        yield block[start : start + step]


def _packed(parts: list[str], max_tokens: int, count: Count, *, separator: str) -> Iterator[str]:
    current = ""
    for part in parts:
        candidate = f"{current}{separator}{part}" if current else part
        if current and count(candidate) > max_tokens:
            yield current.strip()
            current = part
        else:
            current = candidate
    if current.strip():
        yield current.strip()


def _tail(text: str, overlap_tokens: int, count: Count) -> str:
    """The last whole sentences of `text` that fit in `overlap_tokens`."""
    if overlap_tokens <= 0:
        return ""
    kept: list[str] = []
    for sentence in reversed([s for s in _SENTENCE_END.split(text) if s.strip()]):
        if count(" ".join([sentence, *kept])) > overlap_tokens:
            break
        kept.insert(0, sentence)
    return " ".join(kept)


def chunk(text: str, *, max_tokens: int, overlap_tokens: int, count: Count) -> list[Chunk]:
    if max_tokens < 1 or not 0 <= overlap_tokens < max_tokens:
        raise ValueError("a chunk holds at least one token, and more than its overlap")
    pieces = [
        (n, piece)
        for n, block in enumerate(_blocks(text))
        for piece in _pieces(block, max_tokens, count)
    ]
    chunks: list[Chunk] = []
    current, carried, last_block = "", 0, -1
    for block, piece in pieces:
        # Pieces of one paragraph are rejoined as a paragraph; paragraphs apart.
        gap = " " if block == last_block else "\n\n"
        candidate = f"{current}{gap}{piece}" if current else piece
        if current and count(candidate) > max_tokens:
            chunks.append(Chunk(len(chunks), current, count(current), carried))
            tail = _tail(current, overlap_tokens, count)
            with_tail = f"{tail}{gap}{piece}" if tail else piece
            if tail and count(with_tail) <= max_tokens:
                current, carried = with_tail, len(tail) + len(gap)
            else:
                current, carried = piece, 0
        else:
            current = candidate
        last_block = block
    if current:
        chunks.append(Chunk(len(chunks), current, count(current), carried))
    return chunks
