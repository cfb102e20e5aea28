"""Token counts offline: OpenAI's own encoding from a package, estimates flagged."""

from __future__ import annotations

import subprocess
import sys

import pytest

from promptstack.ai.llm.tokens import ENCODING, TokenCounter

COUNTER = TokenCounter()


def test_the_encoding_is_openais_cl100k_base() -> None:
    # The ids tiktoken's documentation gives for this text under cl100k_base.
    assert COUNTER.encode("hello world") == [15339, 1917]
    assert COUNTER.decode([15339, 1917]) == "hello world"


@pytest.mark.parametrize("model", ["demo", "gpt-4", "gpt-4-turbo", "gpt-3.5-turbo-0125"])
def test_counts_are_exact_for_the_models_of_that_encoding(model: str) -> None:
    count = COUNTER.count("Tokens, counted here.", model)

    assert (count.tokens, count.exact, count.encoding) == (5, True, ENCODING)


@pytest.mark.parametrize("model", ["gpt-4o", "o3-mini", "claude-sonnet-4", "gemini-2.5-pro"])
def test_other_models_get_an_estimate_flagged_as_one(model: str) -> None:
    count = COUNTER.count("Tokens, counted here.", model)

    assert (count.tokens, count.exact) == (5, False)


def test_special_token_markers_in_text_are_counted_as_text() -> None:
    # A prompt may contain the marker; it must not end the text or raise.
    assert COUNTER.count("<|endoftext|>", "demo").tokens > 1


def test_starting_the_app_loads_no_tokenizer_and_no_sdk() -> None:
    script = (
        "import sys\n"
        "from promptstack.main import create_app\n"
        "create_app()\n"
        "heavy = ('tiktoken', 'requests', 'regex', 'openai', 'anthropic', 'google.genai',\n"
        "         'onnxruntime', 'tokenizers')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(  # noqa: S603 -- our own fixed command
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={
            "DATABASE_URL": "sqlite+aiosqlite:///:memory:",
            "ENVIRONMENT": "test",
            # Configured providers too: their SDKs wait for the first call.
            "OPENAI_API_KEY": "sk-unused",
            "ANTHROPIC_API_KEY": "sk-ant-unused",
            "GEMINI_API_KEY": "unused",
            "OPENAI_COMPATIBLE_BASE_URL": "http://127.0.0.1:9/v1",
            "OPENAI_COMPATIBLE_MODELS": "llama3.1:8b",
        },
        timeout=60,
    )

    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr
