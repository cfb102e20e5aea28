"""A provider that needs no network: deterministic answers with real token counts.

Every flow of the gateway (credits, quotas, usage, streaming, cancelling, answers with
citations) runs on it offline and gives the same result every time, so tests can assert
exact figures. Its answers are built from the request: the question echoed back, or,
given sources, the sentence of each source that shares most words with the question,
each followed by its citation number.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from promptstack.ai.llm.providers.base import (
    Chunk,
    Completion,
    CompletionRequest,
    FinishReason,
    ModelInfo,
    Source,
    TokenCount,
    Usage,
)
from promptstack.ai.llm.tokens import TokenCounter

MODEL = ModelInfo(id="demo", context_window=16_384, max_output_tokens=4_096)
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_PIECE = re.compile(r"\s*\S+")


def _words(text: str) -> set[str]:
    return {word.lower() for word in _WORD.findall(text)}


def _best_sentence(question: set[str], source: Source) -> tuple[int, str]:
    sentences = [s.strip() for s in _SENTENCE.findall(source.text) if s.strip()]
    if not sentences:
        return 0, ""
    return max(((len(question & _words(s)), s) for s in sentences), key=lambda found: found[0])


def answer(request: CompletionRequest) -> str:
    question = next((m.content for m in reversed(request.messages) if m.role == "user"), "").strip()
    if not request.sources:
        return f"Demo answer to: {question}" if question else "Demo answer."
    asked = _words(question)
    cited = []
    for number, source in enumerate(request.sources, start=1):
        overlap, sentence = _best_sentence(asked, source)
        if sentence and (overlap or number == 1):
            cited.append(f"{sentence.rstrip('.!?')} [{number}].")
    return " ".join(cited) if cited else "The sources do not say."


class DemoProvider:
    name = "demo"

    def __init__(self, tokens: TokenCounter) -> None:
        self._tokens = tokens

    def is_available(self) -> bool:
        return True

    def models(self) -> tuple[ModelInfo, ...]:
        return (MODEL,)

    @property
    def default_model(self) -> str:
        return MODEL.id

    def count_tokens(self, text: str, model: str) -> TokenCount:
        return self._tokens.count(text, MODEL.id)

    def _prompt_tokens(self, request: CompletionRequest) -> int:
        parts = [m.content for m in request.messages] + [s.text for s in request.sources]
        return sum(len(self._tokens.encode(part)) for part in parts)

    def _capped(self, request: CompletionRequest) -> tuple[str, int, FinishReason]:
        """The answer cut to `max_tokens`, its token count, and whether it was cut."""
        tokens = self._tokens.encode(answer(request))
        if len(tokens) <= request.max_tokens:
            return self._tokens.decode(tokens), len(tokens), "stop"
        kept = tokens[: request.max_tokens]
        return self._tokens.decode(kept), len(kept), "length"

    async def generate(self, request: CompletionRequest) -> Completion:
        text, produced, finish = self._capped(request)
        usage = Usage(self._prompt_tokens(request), produced)
        return Completion(text=text, model=MODEL.id, usage=usage, finish_reason=finish)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        text, produced, finish = self._capped(request)
        for piece in _PIECE.findall(text):
            # A turn of the loop between pieces: a cancel lands here, as it would
            # between a real provider's chunks.
            await asyncio.sleep(0)
            yield Chunk(text=piece)
        yield Chunk(usage=Usage(self._prompt_tokens(request), produced), finish_reason=finish)
