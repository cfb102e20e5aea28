"""The demo provider: deterministic answers from the prompt or the sources, real counts."""

from __future__ import annotations

from promptstack.ai.llm.providers.base import CompletionRequest, Message, Source
from promptstack.ai.llm.providers.demo import DemoProvider
from promptstack.ai.llm.tokens import TokenCounter

TOKENS = TokenCounter()
DEMO = DemoProvider(TOKENS)


def request(
    prompt: str, *, max_tokens: int = 100, sources: tuple[Source, ...] = ()
) -> CompletionRequest:
    return CompletionRequest(
        model="demo",
        messages=(Message("system", "Be brief."), Message("user", prompt)),
        max_tokens=max_tokens,
        sources=sources,
    )


async def test_an_answer_echoes_the_question_with_exact_usage() -> None:
    asked = request("What is a saga?")

    completion = await DEMO.generate(asked)

    assert completion.text == "Demo answer to: What is a saga?"
    assert completion.finish_reason == "stop"
    assert completion.usage.exact
    assert completion.usage.completion_tokens == len(TOKENS.encode(completion.text))
    assert completion.usage.prompt_tokens == len(TOKENS.encode("Be brief.")) + len(
        TOKENS.encode("What is a saga?")
    )
    assert await DEMO.generate(asked) == completion


async def test_with_sources_it_answers_from_them_and_cites_them() -> None:
    sources = (
        Source("Weather", "Grass is green. The sky is blue on a clear day."),
        Source("Cooking", "Bread needs flour, water and time."),
        Source("Oceans", "The sea looks blue because water absorbs red light."),
    )

    completion = await DEMO.generate(request("Why is the sky blue?", sources=sources))

    assert completion.text == (
        "The sky is blue on a clear day [1]. "
        "The sea looks blue because water absorbs red light [3]."
    )


async def test_max_tokens_cuts_the_answer_and_says_so() -> None:
    completion = await DEMO.generate(
        request("Tell me everything about event sourcing", max_tokens=3)
    )

    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 3
    assert TOKENS.encode(completion.text) == TOKENS.encode("Demo answer to: ...")[:3]


async def test_a_stream_gives_the_same_answer_in_pieces_then_the_usage() -> None:
    asked = request("How are orders settled?")
    whole = await DEMO.generate(asked)

    chunks = [chunk async for chunk in DEMO.stream(asked)]

    assert len(chunks) > 2
    assert "".join(chunk.text for chunk in chunks) == whole.text
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert (chunks[-1].usage, chunks[-1].finish_reason) == (whole.usage, "stop")
