"""The OpenAI-compatible API, called by the official `openai` client over a real socket,
authenticated with a personal API key: models, chat, streams, and errors in OpenAI's
shape that the client turns into its own exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import openai
import pytest
import uvicorn

from promptstack.ai.documents.embeddings import MiniLM
from promptstack.ai.llm.models import Outcome
from promptstack.ai.llm.providers.base import ProviderRejected
from promptstack.bootstrap import Container, bootstrap
from promptstack.core.clock import FrozenClock
from promptstack.core.settings import Settings
from promptstack.main import create_app
from tests.ai.test_llm_fallback import FREE, Unwell
from tests.ai.test_llm_generate import account_state, calls_of, funded
from tests.fixtures.documents import WordHashEmbedder
from tests.fixtures.redis_server import free_port
from tests.fixtures.support import Account, Api, eventually

QUESTION = "What is a saga?"
# The API's own behaviour is the same on either database; the credits (TestCredits) are
# checked on both.


@pytest.fixture
async def base_url(container: Container) -> AsyncIterator[str]:
    """The app served on a port of its own, in the test's event loop (so it shares the
    test's database connections)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(container=container),
        host="127.0.0.1",
        port=port,
        log_level="critical",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, within=10, what="the app to listen")
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    await task


async def api_key(api: Api, user: Account) -> str:
    made = await api.client.post("/api/v1/api-keys", json={"name": "sdk"}, headers=user.headers)
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


def sdk(base_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=30)


async def keyed(api: Api, base_url: str, credits: int = 0) -> tuple[Account, openai.AsyncOpenAI]:
    user = await funded(api, credits)
    return user, sdk(base_url, await api_key(api, user))


@pytest.mark.adapter_only
async def test_the_models_are_listed_by_the_ids_model_takes(api: Api, base_url: str) -> None:
    _, client = await keyed(api, base_url)

    models = [model async for model in client.models.list()]
    demo = await client.models.retrieve("demo")

    # Only providers that can be called, and the embedding model.
    assert [m.id for m in models] == ["demo", WordHashEmbedder.name]
    assert (demo.id, demo.owned_by) == ("demo", "demo")
    embedder = await client.models.retrieve(WordHashEmbedder.name)
    assert embedder.owned_by == "promptstack"


@pytest.mark.adapter_only
async def test_a_chat_completion_is_answered_and_recorded(api: Api, base_url: str) -> None:
    user, client = await keyed(api, base_url)

    completion = await client.chat.completions.create(
        model="demo",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=50,
    )

    assert completion.object == "chat.completion"
    assert completion.model == "demo"
    [choice] = completion.choices
    assert choice.message.content == f"Demo answer to: {QUESTION}"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    [call] = await calls_of(api, user)
    assert completion.id == f"chatcmpl-{call.id.hex}"
    assert (call.outcome, call.prompt_tokens, call.completion_tokens) == (
        Outcome.SUCCESS,
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )


@pytest.mark.adapter_only
async def test_an_access_token_serves_as_well(api: Api, base_url: str) -> None:
    user = await api.user()
    client = sdk(base_url, user.access_token)

    completion = await client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": QUESTION}]
    )

    assert completion.choices[0].message.content == f"Demo answer to: {QUESTION}"


@pytest.mark.adapter_only
async def test_a_stream_sends_chunks_then_its_usage(api: Api, base_url: str) -> None:
    user, client = await keyed(api, base_url)
    asked: dict[str, Any] = {
        "model": "demo",
        "messages": [{"role": "user", "content": QUESTION}],
    }
    whole = await client.chat.completions.create(**asked)

    stream = await client.chat.completions.create(
        **asked, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len(chunks) > 3
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage
    calls = await calls_of(api, user)
    assert [c.streamed for c in calls] == [False, True]


@pytest.mark.adapter_only
async def test_a_stream_without_include_usage_sends_none(api: Api, base_url: str) -> None:
    _, client = await keyed(api, base_url)

    stream = await client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = [chunk async for chunk in stream]

    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


@pytest.mark.adapter_only
class TestErrors:
    async def test_a_bad_key_is_an_authentication_error(self, base_url: str) -> None:
        client = sdk(base_url, "psk_" + "A" * 43)

        with pytest.raises(openai.AuthenticationError) as raised:
            await client.models.list()

        assert raised.value.status_code == 401
        assert isinstance(raised.value.body, dict)
        assert raised.value.body["type"] == "authentication_error"

    async def test_an_unknown_model_is_not_found(self, api: Api, base_url: str) -> None:
        _, client = await keyed(api, base_url)

        for model in ("gpt-5-turbo", "skynet/t-800", "demo/bigger"):
            with pytest.raises(openai.NotFoundError) as raised:
                await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "Hi"}]
                )
            assert raised.value.code == "model_not_found", model

    async def test_a_provider_without_its_key_is_not_found(self, api: Api, base_url: str) -> None:
        _, client = await keyed(api, base_url)

        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )

    @pytest.mark.parametrize(
        ("extra", "param"),
        [
            ({"temperature": 5}, "temperature"),
            ({"n": 2}, "n"),
            ({"max_tokens": 0}, "max_tokens"),
            ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
            ({"messages": []}, "messages"),
            ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
            ({"messages": [{"role": "assistant", "content": "Hi"}]}, "messages"),
            ({"max_tokens": 100_000}, "max_tokens"),
            ({"max_tokens": 10**30}, "max_tokens"),
            ({"model": 5}, "model"),
            ({"model": "m" * 200}, "model"),
            ({"messages": "Hi"}, "messages"),
            ({"messages": [{"role": "user"}]}, "messages.0.content"),
            ({"messages": [{"role": "user", "content": "x" * 1_000_001}]}, "messages.0.content"),
            ({"messages": [{"role": "user", "content": "nul\x00"}]}, "messages.0.content"),
            ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ],
    )
    async def test_a_request_the_gateway_cannot_honour_is_a_bad_request(
        self, api: Api, base_url: str, extra: dict[str, Any], param: str
    ) -> None:
        user, client = await keyed(api, base_url)
        asked: dict[str, Any] = {
            "model": "demo",
            "messages": [{"role": "user", "content": "Hi"}],
            **extra,
        }

        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(**asked)

        assert raised.value.param is not None
        assert raised.value.param.startswith(param), raised.value.param
        assert raised.value.type == "invalid_request_error"
        assert await calls_of(api, user) == []

    @pytest.mark.parametrize(
        ("headers", "content"),
        [
            ({}, b'{"model": "demo", "messages": [{"role": "user", "content": "Hi"}]}'),
            ({"Authorization": "Bearer"}, b"{}"),
            ({"Authorization": "Basic abc"}, b"{}"),
            ({"Authorization": "Bearer psk_"}, b"{}"),
            ({"Authorization": "Bearer " + "x" * 10_240}, b"{}"),
        ],
    )
    async def test_no_usable_credentials_is_a_401_in_openais_shape(
        self, api: Api, headers: dict[str, str], content: bytes
    ) -> None:
        sent = {"Content-Type": "application/json", **headers}

        response = await api.client.post("/v1/chat/completions", content=content, headers=sent)

        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("authentication_error", "not_authenticated")

    @pytest.mark.parametrize(
        "content", [b"{not json", b"[]", b'"text"', b"", b"\xff\xfe"], ids=repr
    )
    @pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
    async def test_a_body_that_is_not_a_json_object_is_a_400(
        self, api: Api, content: bytes, path: str
    ) -> None:
        user = await api.user()
        sent = {"Content-Type": "application/json", **user.headers}

        response = await api.client.post(path, content=content, headers=sent)

        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert await calls_of(api, user) == []

    @pytest.mark.parametrize(
        ("model_id", "status"),
        [("demo/demo", 404), ("openai/gpt-4o-mini", 404), ("m" * 200, 400), ("%00", 404)],
        ids=["unlisted", "unconfigured", "too-long", "nul"],
    )
    async def test_a_model_id_that_names_nothing_is_refused_in_openais_shape(
        self, api: Api, model_id: str, status: int
    ) -> None:
        user = await api.user()

        response = await api.client.get(f"/v1/models/{model_id}", headers=user.headers)

        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")

    @pytest.mark.parametrize("path", ["/v1/models", "/v1/models/demo", "/v1/embeddings"])
    async def test_every_route_needs_credentials(self, api: Api, path: str) -> None:
        method = "POST" if path == "/v1/embeddings" else "GET"

        response = await api.client.request(method, path, json={"input": "x"})

        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"


EMBEDDER = WordHashEmbedder.name


class TestEmbeddings:
    async def test_texts_are_embedded_by_the_document_model(self, api: Api, base_url: str) -> None:
        _, client = await keyed(api, base_url)
        texts = ["Refunds reach the card.", "Parcels leave at noon."]

        # The client asks for base64 unless told otherwise, and decodes it.
        packed = await client.embeddings.create(model=WordHashEmbedder.name, input=texts)
        plain = await client.embeddings.create(
            model=WordHashEmbedder.name, input=texts[0], encoding_format="float"
        )

        expected = WordHashEmbedder().embed(texts)
        assert [item.index for item in packed.data] == [0, 1]
        assert np.allclose([item.embedding for item in packed.data], expected, atol=1e-7)
        assert np.allclose(plain.data[0].embedding, expected[0], atol=1e-7)
        assert packed.model == WordHashEmbedder.name
        assert (
            packed.usage.prompt_tokens
            == packed.usage.total_tokens
            == sum(WordHashEmbedder().count_tokens(text) for text in texts)
        )

    async def test_what_the_model_cannot_do_is_refused(self, api: Api, base_url: str) -> None:
        _, client = await keyed(api, base_url)
        model = WordHashEmbedder.name

        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model="text-embedding-3-small", input="Hi")
        with pytest.raises(openai.BadRequestError) as wrong_size:
            await client.embeddings.create(model=model, input="Hi", dimensions=1536)
        with pytest.raises(openai.BadRequestError) as too_long:
            await client.embeddings.create(model=model, input=["Hi", "word " * 600])
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model=model, input=[])

        assert wrong_size.value.param == "dimensions"
        assert too_long.value.param == "input.1"

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"input": "Hi"}, "model"),
            ({"model": EMBEDDER, "input": 12345}, "input"),
            ({"model": EMBEDDER, "input": [1, 2, 3]}, "input"),
            ({"model": EMBEDDER, "input": [[1, 2]]}, "input"),
            ({"model": EMBEDDER, "input": None}, "input"),
            ({"model": EMBEDDER, "input": ""}, "input"),
            ({"model": EMBEDDER, "input": ["x"] * 257}, "input"),
            ({"model": EMBEDDER, "input": "nul\x00"}, "input"),
            ({"model": EMBEDDER, "input": "x" * 1_000_001}, "input"),
            ({"model": EMBEDDER, "input": "Hi", "encoding_format": "binary"}, "encoding_format"),
            ({"model": EMBEDDER, "input": "Hi", "dimensions": "256"}, "dimensions"),
            ({"model": EMBEDDER, "input": "Hi", "dimensions": 0}, "dimensions"),
            ({"model": "m" * 200, "input": "Hi"}, "model"),
            ({"model": EMBEDDER, "input": "Hi", "extra": 1}, "extra"),
        ],
        ids=lambda value: str(value)[:40] if not isinstance(value, str) else value,
    )
    async def test_a_malformed_embeddings_request_is_a_bad_request(
        self, api: Api, body: dict[str, Any], param: str
    ) -> None:
        user = await api.user()

        response = await api.client.post("/v1/embeddings", json=body, headers=user.headers)

        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"].startswith(param), error["param"]


@pytest.mark.adapter_only
class TestTheShippedModel:
    @pytest.fixture
    async def container(self, settings: Settings, clock: FrozenClock) -> AsyncIterator[Container]:
        built = bootstrap(settings, clock=clock)  # the default embedder: MiniLM
        yield built
        await built.aclose()

    async def test_the_default_model_serves_embeddings(self, api: Api, base_url: str) -> None:
        _, client = await keyed(api, base_url)

        answer = await client.embeddings.create(model=MiniLM.name, input="How do refunds work?")

        vector = np.array(answer.data[0].embedding)
        assert vector.shape == (MiniLM.dimension,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        assert np.allclose(vector, MiniLM().embed(["How do refunds work?"])[0], atol=1e-6)


class TestCredits:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        # Priced: a million micro-credits a token, so every token is a credit.
        return {"llm_prices": {"demo/demo": {"prompt": 1_000_000, "completion": 1_000_000}}}

    async def test_a_call_the_balance_cannot_cover_is_refused(
        self, api: Api, base_url: str
    ) -> None:
        user, client = await keyed(api, base_url, credits=3)

        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": QUESTION}], max_tokens=50
            )

        assert raised.value.status_code == 402
        assert raised.value.type == "insufficient_quota"
        assert await account_state(api, user) == (3, 0, 3)

    async def test_a_call_is_charged_what_it_cost(self, api: Api, base_url: str) -> None:
        user, client = await keyed(api, base_url, credits=100)

        completion = await client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": QUESTION}], max_tokens=50
        )

        assert completion.usage is not None
        spent = completion.usage.total_tokens
        assert await account_state(api, user) == (100 - spent, 0, 100 - spent)


@pytest.mark.adapter_only
class TestLimits:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"llm_requests_per_minute": 1}

    async def test_a_rate_limit_is_a_rate_limit_error_with_retry_after(
        self, api: Api, base_url: str
    ) -> None:
        _, client = await keyed(api, base_url)
        asked: dict[str, Any] = {"model": "demo", "messages": [{"role": "user", "content": "Hi"}]}
        await client.chat.completions.create(**asked)

        with pytest.raises(openai.RateLimitError) as raised:
            await client.chat.completions.create(**asked)

        assert raised.value.code == "rate_limited"
        assert int(raised.value.response.headers["retry-after"]) >= 1


@pytest.mark.adapter_only
class TestFeatureOff:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"feature_flags": {"ai_chat": {"enabled": False}}}

    async def test_the_flag_off_is_a_permission_error(self, api: Api, base_url: str) -> None:
        _, client = await keyed(api, base_url)

        with pytest.raises(openai.PermissionDeniedError) as raised:
            await client.models.list()

        assert raised.value.code == "feature_disabled"


@pytest.mark.adapter_only
class TestMidStreamFailure:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return FREE

    async def test_a_provider_failing_mid_stream_raises_in_the_client(
        self, api: Api, base_url: str
    ) -> None:
        failing = Unwell()
        failing.after_first_chunk = True
        failing.failure = ProviderRejected(failing.name, "the answer was cut off upstream")
        api.container.llm.registry.register(failing)
        user, client = await keyed(api, base_url)
        stream = await client.chat.completions.create(
            model="unwell/unwell-1", messages=[{"role": "user", "content": "Hi"}], stream=True
        )

        received: list[str] = []

        async def read() -> None:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

        with pytest.raises(openai.APIError) as raised:
            await read()

        assert "".join(received) == "Half"
        assert "cut off" in raised.value.message
        [call] = await calls_of(api, user)
        assert (call.outcome, call.error) == (Outcome.ERROR, "provider_error")
