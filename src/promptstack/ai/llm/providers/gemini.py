"""Google's Gemini API through the official `google-genai` SDK.

The SDK is imported on the first call. Left to itself it would decide much from the
environment: a key from GOOGLE_API_KEY or GEMINI_API_KEY, Vertex AI (and with it
Google Cloud credentials) from GOOGLE_GENAI_USE_VERTEXAI, the API version, even a
replay mode for its own tests. Each of those is given here instead, so our settings
decide them. Its retries are off, and so are the two loops it runs on its own: the
continuation that reconnects a dropped stream, and automatic function calling; the
gateway retries inside the provider's breaker, and an answer is one request.

System messages go to `system_instruction`, an assistant is "model" on the wire, and
every chunk of a stream carries the running usage, so the last one seen is the count.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NoReturn

from promptstack.ai.llm.providers import failures
from promptstack.ai.llm.providers.base import (
    Chunk,
    Completion,
    CompletionRequest,
    FinishReason,
    ModelInfo,
    Usage,
    with_sources,
)
from promptstack.ai.llm.providers.hosted import HostedProvider
from promptstack.ai.llm.tokens import TokenCounter

if TYPE_CHECKING:
    from google.genai import Client
    from google.genai.types import Content, GenerateContentConfig, GenerateContentResponse

MODELS = (
    ModelInfo(id="gemini-2.5-flash", context_window=1_048_576, max_output_tokens=65_536),
    ModelInfo(id="gemini-2.5-pro", context_window=1_048_576, max_output_tokens=65_536),
)
# Pinned, not the SDK's default (v1 in this release), nor GOOGLE_GENAI_API_VERSION's.
API_VERSION = "v1beta"
_ROLES = {"user": "user", "assistant": "model"}


class GeminiContent(HostedProvider):
    name = "gemini"

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        tokens: TokenCounter,
        timeout_seconds: float,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            models=MODELS,
            tokens=tokens,
            timeout_seconds=timeout_seconds,
        )
        self._client: Client | None = None

    def _sdk(self) -> Client:
        if self._client is None:
            # On first use, not at start.
            from google.genai import Client, types  # noqa: PLC0415
            from google.genai.client import DebugConfig  # noqa: PLC0415

            self._client = Client(
                vertexai=False,
                api_key=self._api_key,
                debug_config=DebugConfig(client_mode=None, replays_directory=None, replay_id=None),
                http_options=types.HttpOptions(
                    base_url=self._base_url,
                    api_version=API_VERSION,
                    timeout=max(1, round(self._timeout * 1000)),
                    retry_options=types.HttpRetryOptions(attempts=1),
                ),
            )
        return self._client

    @staticmethod
    def _config(request: CompletionRequest) -> GenerateContentConfig:
        from google.genai import types  # noqa: PLC0415 - loaded already by _sdk()

        system = "\n\n".join(m.content for m in with_sources(request) if m.role == "system")
        return types.GenerateContentConfig(
            system_instruction=system or None,
            max_output_tokens=request.max_tokens,
            temperature=request.temperature,
            automatic_continuation=False,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )

    @staticmethod
    def _contents(request: CompletionRequest) -> list[Content]:
        from google.genai import types  # noqa: PLC0415 - loaded already by _sdk()

        return [
            types.Content(role=_ROLES[m.role], parts=[types.Part(text=m.content)])
            for m in with_sources(request)
            if m.role != "system"
        ]

    async def generate(self, request: CompletionRequest) -> Completion:
        client = self._sdk()
        try:
            response = await client.aio.models.generate_content(
                model=request.model, contents=self._contents(request), config=self._config(request)
            )
        except Exception as error:
            self._fail(error)
        if not response.candidates:
            raise failures.malformed(self.name)
        text, reason, reported = self._read(response)
        usage = reported if reported is not None else self._tokens.estimated_usage(request, text)
        return Completion(text, request.model, usage, finish_reason=reason or "stop")

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        """The SDK's stream is a chain of async generators, and closing it closes only
        the outermost: the ones holding the HTTP response are left to the garbage
        collector, whose closing of them races and leaves the connection open. So the
        stream is read by a task of its own, ahead of our caller; cancelling that task
        while it waits on the socket unwinds the whole chain, response and all."""
        client = self._sdk()
        read: asyncio.Queue[GenerateContentResponse | Exception | None] = asyncio.Queue()

        async def reader() -> None:
            try:
                chunks = await client.aio.models.generate_content_stream(
                    model=request.model,
                    contents=self._contents(request),
                    config=self._config(request),
                )
                async for chunk in chunks:
                    read.put_nowait(chunk)
            except Exception as error:
                read.put_nowait(error)
            else:
                read.put_nowait(None)

        reading = asyncio.create_task(reader())
        usage: Usage | None = None
        finish: FinishReason = "stop"
        try:
            while (item := await read.get()) is not None:
                if isinstance(item, Exception):
                    self._fail(item)
                text, reason, reported = self._read(item)
                if reported is not None:
                    usage = reported
                if reason is not None:
                    finish = reason
                if text:
                    yield Chunk(text=text)
        finally:
            # Stopping the reader is what closes the response, and so stops the
            # upstream generation, when our caller has gone away.
            reading.cancel()
            await asyncio.wait({reading})
        yield Chunk(usage=usage, finish_reason=finish)

    @staticmethod
    def _read(
        response: GenerateContentResponse,
    ) -> tuple[str, FinishReason | None, Usage | None]:
        from google.genai import types  # noqa: PLC0415 - loaded already by _sdk()

        usage = None
        meta = response.usage_metadata
        if meta is not None and meta.prompt_token_count is not None:
            # A 2.5 model's thinking is billed as output; the API leaves out a count of 0.
            produced = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
            usage = Usage(meta.prompt_token_count, produced)
        if not response.candidates:
            return "", None, usage
        candidate = response.candidates[0]
        parts = candidate.content.parts if candidate.content is not None else None
        text = "".join(p.text for p in parts or () if p.text and not p.thought)
        reason: FinishReason | None = None
        if candidate.finish_reason is not None:
            cut = candidate.finish_reason == types.FinishReason.MAX_TOKENS
            reason = "length" if cut else "stop"
        return text, reason, usage

    def _fail(self, error: Exception) -> NoReturn:
        # Loaded already by the call that failed; the SDK's own dependency.
        import httpx2  # noqa: PLC0415
        from google.genai import errors  # noqa: PLC0415

        if isinstance(error, errors.APIError):
            # An error sent as a chunk of a stream has a code, but no status line.
            status = error.code if isinstance(error.code, int) and error.code >= 400 else 500
            headers = dict(getattr(error.response, "headers", None) or {})
            delay = _retry_delay(error.details)
            if delay is not None and "retry-after" not in {name.lower() for name in headers}:
                headers["retry-after"] = delay
            raise failures.of_status(self.name, status, headers) from error
        if isinstance(error, httpx2.TimeoutException):
            raise failures.timed_out(self.name) from error
        if isinstance(error, httpx2.TransportError):
            raise failures.broken_off(self.name) from error
        if isinstance(error, ValueError):
            raise failures.malformed(self.name) from error
        raise failures.broken_off(self.name) from error


def _retry_delay(details: object) -> str | None:
    """The seconds of a `google.rpc.RetryInfo` in an error's body ("23s" is "23"), which
    Gemini sends where other APIs send a Retry-After header."""
    error = details.get("error") if isinstance(details, dict) else None
    found = error.get("details") if isinstance(error, dict) else None
    for detail in found if isinstance(found, list) else ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = str(detail.get("retryDelay", ""))
            if delay.endswith("s") and delay[:-1].replace(".", "", 1).isdigit():
                return delay[:-1]
    return None
