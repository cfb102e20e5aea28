"""The shipped embedding model: real sentence embeddings, offline, checked at load."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from promptstack.ai.documents import embeddings
from promptstack.ai.documents.embeddings import MiniLM, ModelFileMismatch

MODEL = MiniLM()

# Each question shares no word with the passage that answers it.
PAIRS = [
    ("How do I get my money back?", "Refunds are paid to the original card within five days."),
    ("When will my parcel arrive?", "Deliveries reach most addresses two working days later."),
    ("I forgot my login secret", "Reset your password from the link we email you."),
    ("Which animals purr?", "Cats make a low vibrating sound when content."),
]


def test_vectors_are_unit_length_float32_of_the_model_dimension() -> None:
    vectors = MODEL.embed(["one sentence", "and another, somewhat longer, sentence"])

    assert vectors.shape == (2, MODEL.dimension) == (2, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_text_embeds_the_same_alone_or_in_a_batch() -> None:
    texts = ["short", "a much longer text that pads every other row of its batch"]

    together = MODEL.embed(texts)
    alone = np.vstack([MODEL.embed([text]) for text in texts])

    assert np.allclose(together, alone, atol=1e-5)
    assert np.array_equal(MODEL.embed(texts), together)


def test_a_question_finds_its_answer_with_no_word_in_common() -> None:
    questions = MODEL.embed([q for q, _ in PAIRS])
    passages = MODEL.embed([p for _, p in PAIRS])

    similarity = questions @ passages.T

    assert list(similarity.argmax(axis=1)) == list(range(len(PAIRS)))
    for n, (question, passage) in enumerate(PAIRS):
        assert not set(question.lower().split()) & set(passage.lower().split())
        others = np.delete(similarity[n], n)
        assert similarity[n, n] > others.max() + 0.1, question


def test_tokens_are_the_models_own_without_its_markers() -> None:
    assert MODEL.count_tokens("") == 0
    assert MODEL.count_tokens("Hello world") == 2
    assert MODEL.count_tokens("unaffordable") > 1  # word pieces


def test_text_past_the_models_reach_still_embeds() -> None:
    long = " ".join(["word"] * 2000)

    [vector] = MODEL.embed([long])

    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)


def test_no_text_is_no_rows() -> None:
    assert MODEL.embed([]).shape == (0, 384)


def test_a_changed_tokenizer_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = tmp_path / "tokenizer.json"
    shutil.copy(embeddings.TOKENIZER, changed)
    with changed.open("a") as file:
        file.write(" ")
    monkeypatch.setattr(embeddings, "TOKENIZER", changed)

    with pytest.raises(ModelFileMismatch, match="SHA-256"):
        MiniLM().embed(["anything"])
