"""Answers from the caller's documents: the passages a retriever finds, handed to the
provider as numbered sources, and the citations the answer comes back with.

The gateway knows retrieval only by this Protocol; the document pipeline implements it
(ai/documents), and the composition root hands it in. A citation is every source the
provider was given, by the number the answer refers to it by (`[2]`), and whether the
answer does refer to it: a reader can check each claim against its passage.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from promptstack.accounts.models import UserSnapshot
from promptstack.ai.llm.providers.base import Source

# Passages an answer from documents is given.
SOURCES = 5
_MARKER = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True, slots=True)
class Passage:
    document_id: uuid.UUID
    title: str
    chunk_index: int
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class Citation:
    number: int
    document_id: uuid.UUID
    title: str
    chunk_index: int
    score: float
    cited: bool


class Retriever(Protocol):
    async def passages(self, user: UserSnapshot, query: str, top_k: int) -> Sequence[Passage]:
        """The caller's own passages that best answer `query`, best first."""
        ...


def sources(passages: Sequence[Passage]) -> tuple[Source, ...]:
    return tuple(Source(passage.title, passage.text) for passage in passages)


def citations(answer: str, passages: Sequence[Passage]) -> tuple[Citation, ...]:
    named = {int(number) for number in _MARKER.findall(answer)}
    return tuple(
        Citation(n, p.document_id, p.title, p.chunk_index, p.score, cited=n in named)
        for n, p in enumerate(passages, start=1)
    )
