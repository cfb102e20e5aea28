"""Chunking: every chunk within the token limit, nothing lost or reordered, headings kept
with their text, and each chunk beginning with the end of the one before."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptstack.ai.documents.chunking import Chunk, chunk
from promptstack.ai.llm.tokens import TokenCounter

TOKENS = TokenCounter()


def words(text: str) -> list[str]:
    return text.split()


def count_words(text: str) -> int:
    return len(text.split())


def count_tokens(text: str) -> int:
    return len(TOKENS.encode(text))


def fresh_words(chunks: list[Chunk]) -> list[str]:
    """The chunks' words, without what each repeats from the one before."""
    return [word for c in chunks for word in words(c.text[c.carried :])]


WORD = st.text(alphabet="abcdefghij", min_size=1, max_size=8)
SENTENCE = st.lists(WORD, min_size=1, max_size=30).map(lambda w: " ".join(w) + ".")
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=6).map(" ".join)
HEADING = st.sampled_from(["# Title", "## Section", "### Part"])
BLOCK = st.one_of(PARAGRAPH, PARAGRAPH, HEADING)
DOCUMENT = st.lists(BLOCK, min_size=1, max_size=12).map("\n\n".join)


@settings(max_examples=150, deadline=None)
@given(
    text=DOCUMENT,
    max_tokens=st.integers(min_value=2, max_value=60),
    overlap=st.integers(min_value=0, max_value=30),
)
def test_chunks_keep_every_word_in_order_within_the_limit(
    text: str, max_tokens: int, overlap: int
) -> None:
    overlap = min(overlap, max_tokens - 1)

    chunks = chunk(text, max_tokens=max_tokens, overlap_tokens=overlap, count=count_words)

    assert fresh_words(chunks) == words(text)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.tokens == count_words(c.text) <= max_tokens
        assert count_words(c.text[: c.carried]) <= overlap
        assert c.text == c.text.strip()


@settings(max_examples=100, deadline=None)
@given(text=DOCUMENT, max_tokens=st.integers(min_value=8, max_value=60))
def test_a_heading_never_ends_a_chunk_with_text_after_it(text: str, max_tokens: int) -> None:
    chunks = chunk(text, max_tokens=max_tokens, overlap_tokens=0, count=count_words)

    for c in chunks[:-1]:
        lines = [line for line in c.text.splitlines() if line]
        headings = [bool(re.fullmatch(r"#{1,6} \w+", line)) for line in lines]
        # Only a run of headings longer than a chunk can end one, having nothing else.
        assert not headings[-1] or all(headings), c.text


def test_paragraphs_stay_whole_when_they_fit() -> None:
    text = "# Sagas\n\nOne two three.\n\nFour five six.\n\nSeven eight nine."

    chunks = chunk(text, max_tokens=7, overlap_tokens=0, count=count_words)

    assert [c.text for c in chunks] == [
        "# Sagas\n\nOne two three.",
        "Four five six.\n\nSeven eight nine.",
    ]


def test_each_chunk_begins_with_the_last_sentences_of_the_one_before() -> None:
    text = "Alpha one. Beta two. Gamma three. Delta four. Epsilon five. Zeta six."

    chunks = chunk(text, max_tokens=6, overlap_tokens=2, count=count_words)

    assert [c.text for c in chunks] == [
        "Alpha one. Beta two. Gamma three.",
        "Gamma three. Delta four. Epsilon five.",
        "Epsilon five. Zeta six.",
    ]
    assert [c.text[: c.carried] for c in chunks] == ["", "Gamma three. ", "Epsilon five. "]


def test_a_sentence_longer_than_a_chunk_is_cut_between_words() -> None:
    text = " ".join(f"w{n}" for n in range(25)) + "."

    chunks = chunk(text, max_tokens=10, overlap_tokens=0, count=count_words)

    assert [c.tokens for c in chunks] == [10, 10, 5]
    assert fresh_words(chunks) == words(text)


def test_a_word_longer_than_a_chunk_is_cut_by_characters_with_real_tokens() -> None:
    text = "x" * 5000  # cl100k reads this as hundreds of tokens

    chunks = chunk(text, max_tokens=64, overlap_tokens=0, count=count_tokens)

    assert "".join(c.text for c in chunks) == text
    assert all(c.tokens <= 64 for c in chunks)


def test_nothing_in_nothing_out() -> None:
    assert chunk(" \n\n \t", max_tokens=10, overlap_tokens=2, count=count_words) == []


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_sizes_that_cannot_work_are_refused(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="at least one token"):
        chunk("text", max_tokens=max_tokens, overlap_tokens=overlap, count=count_words)
