"""The gateway: which provider serves a caller, what a call may cost, and the call itself.

Every call is billed through the usage ledger (`usage.py`): opened with a hold of the
most it can cost before the provider is asked, closed with what it really cost. What
goes wrong upstream becomes a problem document that says whether to try again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from functools import partial

from promptstack.accounts.models import UserSnapshot
from promptstack.ai.llm.guards import ProviderGuards
from promptstack.ai.llm.models import Outcome
from promptstack.ai.llm.prices import Price, PriceBook, credits_to_hold
from promptstack.ai.llm.providers.base import (
    Chunk,
    Completion,
    CompletionRequest,
    FinishReason,
    Message,
    ModelInfo,
    Provider,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    TokenCount,
    Usage,
    with_sources,
)
from promptstack.ai.llm.quotas import CallLimits, Refusal
from promptstack.ai.llm.registry import ProviderRegistry
from promptstack.ai.llm.retrieval import SOURCES, Citation, Passage, Retriever, citations, sources
from promptstack.ai.llm.usage import ClosedCall, OpenCall, Served, UsageLedger
from promptstack.core.errors import (
    AppError,
    Forbidden,
    ServiceUnavailable,
    TooManyRequests,
    ValidationFailed,
)
from promptstack.core.logging import get_logger
from promptstack.core.resilience import CircuitOpen
from promptstack.features.service import FeatureFlags

log = get_logger(__name__)

FEATURE = "ai_chat"
DEFAULT_MAX_TOKENS = 512
# A prompt counted with another model's tokenizer is held for this much more (and 16
# tokens), so an estimate that falls short rarely leaves a call costing past its hold.
ESTIMATE_MARGIN = 1.25


class FeatureDisabled(Forbidden):
    code = "feature_disabled"
    title = "This feature is not enabled for you"


class UnknownModel(ValidationFailed):
    code = "unknown_model"
    title = "No provider here offers this model"


class ProviderRateLimit(TooManyRequests):
    code = "provider_rate_limited"
    title = "The provider is refusing calls for now"


class CallsRateLimited(TooManyRequests):
    code = "rate_limited"
    title = "Too many calls or tokens this minute"


class QuotaExceeded(TooManyRequests):
    code = "quota_exceeded"
    title = "The day's tokens are spent"


class ProviderFailed(AppError):
    status = 502
    code = "provider_error"
    title = "The provider failed to answer"


class ProviderTimedOut(AppError):
    status = 504
    code = "provider_timeout"
    title = "The provider did not answer in time"


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str
    available: bool
    default: bool
    models: tuple[ModelInfo, ...]


@dataclass(frozen=True, slots=True)
class Ask:
    """One prompt, as a caller asks it, after the conversation so far (`history`: the
    system's instructions and earlier turns, as a chat API sends them)."""

    prompt: str
    provider: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    history: tuple[Message, ...] = ()
    # Answer from the caller's documents: the passages found for the prompt become the
    # provider's numbered sources, and the answer carries its citations.
    use_documents: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    completion: Completion
    provider: str
    call: ClosedCall
    citations: tuple[Citation, ...] | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of a streamed answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Failed:
    """A stream that broke off: the problem, after the pieces already sent."""

    problem: AppError


StreamEvent = Delta | Answer | Failed


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One provider of a call's chain, with the request as that provider gets it."""

    provider: Provider
    request: CompletionRequest
    prompt_tokens: int  # what the hold counts: as counted here, padded when an estimate
    counted_prompt_tokens: int  # as counted here, unpadded: what an estimate bills
    price: Price


@dataclass(frozen=True, slots=True)
class _Prepared:
    chain: tuple[_Attempt, ...]  # the provider chosen, then its fallbacks
    call: OpenCall
    user: str
    day: date  # the day the call's tokens count on
    tokens: int  # taken from the caller's limits
    passages: tuple[Passage, ...] | None  # the sources given, when answering from documents

    def answer(self, completion: Completion, attempt: _Attempt, call: ClosedCall) -> Answer:
        found = None if self.passages is None else citations(completion.text, self.passages)
        return Answer(completion, attempt.provider.name, call, citations=found)


class LlmGateway:
    def __init__(
        self,
        registry: ProviderRegistry,
        flags: FeatureFlags,
        usage: UsageLedger,
        prices: PriceBook,
        limits: CallLimits,
        guards: ProviderGuards,
        *,
        default: str,
        retriever: Retriever,
        fallbacks: tuple[str, ...] = (),
    ) -> None:
        self.registry = registry
        self.retriever = retriever
        self.usage = usage
        self.limits = limits
        self.guards = guards
        self._fallbacks = fallbacks
        self._flags = flags
        self._prices = prices
        self._default = default

    def admit(self, user: UserSnapshot) -> None:
        """The `ai_chat` flag gates every AI endpoint."""
        if not self._flags.is_enabled(FEATURE, user):
            raise FeatureDisabled(f"the {FEATURE} feature is off for this account")

    def providers(self) -> tuple[ProviderInfo, ...]:
        return tuple(
            ProviderInfo(p.name, p.is_available(), p.name == self._default, p.models())
            for p in self.registry.all()
        )

    def choose(self, user: UserSnapshot, requested: str | None) -> Provider:
        """The request's provider, else the caller's preference, else the default. A
        preference that cannot be served is refused like a request's, rather than
        quietly answered by another provider's model."""
        if requested is not None:
            return self.registry.usable(requested, loc=("body", "provider"))
        if user.preferred_provider is not None:
            return self.registry.usable(user.preferred_provider, loc=("user", "preferred_provider"))
        return self.registry.usable(self._default, loc=("settings", "DEFAULT_LLM_PROVIDER"))

    def count_tokens(
        self, user: UserSnapshot, text: str, model: str | None
    ) -> tuple[str, TokenCount]:
        """The count for `model` (by default the chosen provider's default model), with
        whether it is exact for that model."""
        if model is None:
            provider = self.choose(user, None)
            model = provider.default_model
        else:
            provider = self._offering(model)
        return model, provider.count_tokens(text, model)

    async def generate(self, user: UserSnapshot, ask: Ask) -> Answer:
        """Hold the most the call can cost, ask the provider (and, if it cannot answer
        for now, each fallback in turn), charge what the answer cost."""
        prepared = await self._prepare(user, ask, streamed=False)
        attempt = prepared.chain[0]
        try:
            for n, attempt in enumerate(prepared.chain):
                try:
                    completion = await self.guards.guarded(
                        attempt.provider.name, partial(attempt.provider.generate, attempt.request)
                    )
                    break
                except (ProviderError, CircuitOpen) as error:
                    if n + 1 == len(prepared.chain) or not _falls_back(error):
                        raise
                    log.warning("llm_fallback", failed=attempt.provider.name, error=str(error))
        except (ProviderError, CircuitOpen) as error:
            problem = _problem_of(error)
            await self._close(prepared, attempt, Outcome.ERROR, Usage(0, 0), error=problem.code)
            raise problem from error
        except asyncio.CancelledError:
            # The client went away: nothing was produced that it will see.
            await self._close(prepared, attempt, Outcome.CANCELLED, Usage(0, 0, exact=False))
            raise
        closed = await self._close(prepared, attempt, Outcome.SUCCESS, completion.usage)
        return prepared.answer(completion, attempt, closed)

    async def stream(self, user: UserSnapshot, ask: Ask) -> AsyncIterator[StreamEvent]:
        """Hold the credits now, so a call that cannot be made is refused before any
        event is sent; then the answer's pieces, and last the answer with its usage
        (or the problem that broke it off)."""
        prepared = await self._prepare(user, ask, streamed=True)
        return self._streaming(prepared)

    async def _first_chunk(self, attempt: _Attempt) -> tuple[AsyncIterator[Chunk], Chunk | None]:
        """A stream of `attempt` and its first chunk: a fallback is only possible before
        it, so this is the part the breaker and the retries guard."""

        async def opened() -> tuple[AsyncIterator[Chunk], Chunk | None]:
            chunks = aiter(attempt.provider.stream(attempt.request))
            try:
                return chunks, await anext(chunks)
            except StopAsyncIteration:
                return chunks, None

        return await self.guards.guarded(attempt.provider.name, opened)

    async def _streaming(self, prepared: _Prepared) -> AsyncIterator[StreamEvent]:
        attempt = prepared.chain[0]
        pieces: list[str] = []
        usage: Usage | None = None
        finish: FinishReason = "stop"
        try:
            for n, attempt in enumerate(prepared.chain):
                try:
                    chunks, first = await self._first_chunk(attempt)
                    break
                except (ProviderError, CircuitOpen) as error:
                    if n + 1 == len(prepared.chain) or not _falls_back(error):
                        raise
                    log.warning("llm_fallback", failed=attempt.provider.name, error=str(error))
            pending = [first] if first is not None else []
            async for chunk in _chained(pending, chunks):
                if chunk.text:
                    pieces.append(chunk.text)
                    yield Delta(chunk.text)
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.finish_reason is not None:
                    finish = chunk.finish_reason
        except (ProviderError, CircuitOpen) as error:
            problem = _problem_of(error)
            produced = self._produced(attempt, pieces)
            await self._close(prepared, attempt, Outcome.ERROR, produced, error=problem.code)
            yield Failed(problem)
            return
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away: what was produced up to here is what it cost.
            produced = self._produced(attempt, pieces)
            await self._close(prepared, attempt, Outcome.CANCELLED, produced)
            raise
        usage = usage or self._produced(attempt, pieces)
        closed = await self._close(prepared, attempt, Outcome.SUCCESS, usage)
        text = "".join(pieces)
        completion = Completion(text, attempt.request.model, usage, finish_reason=finish)
        yield prepared.answer(completion, attempt, closed)

    def _produced(self, attempt: _Attempt, pieces: list[str]) -> Usage:
        """What a stream that reported no usage cost, counted here: never exact."""
        text = "".join(pieces)
        completion = attempt.provider.count_tokens(text, attempt.request.model).tokens
        return Usage(attempt.counted_prompt_tokens, completion, exact=False)

    def _attempt(
        self,
        provider: Provider,
        model: ModelInfo,
        ask: Ask,
        max_tokens: int,
        passages: tuple[Passage, ...],
    ) -> _Attempt:
        request = CompletionRequest(
            model=model.id,
            messages=(*ask.history, Message("user", ask.prompt)),
            max_tokens=min(max_tokens, model.max_output_tokens),
            temperature=ask.temperature,
            sources=sources(passages),
        )
        counts = [provider.count_tokens(m.content, model.id) for m in with_sources(request)]
        counted = sum(count.tokens for count in counts)
        held = counted
        if not all(count.exact for count in counts):
            held = int(counted * ESTIMATE_MARGIN) + 16
        price = self._prices.of(provider.name, model.id)
        return _Attempt(provider, request, held, counted, price)

    def _chain(self, first: Provider) -> list[Provider]:
        """The provider chosen, then the configured fallbacks that can serve, in order."""
        chain = [first]
        for name in self._fallbacks:
            provider = self.registry.get(name)
            if provider is not None and provider.is_available() and provider not in chain:
                chain.append(provider)
        return chain

    async def _prepare(self, user: UserSnapshot, ask: Ask, *, streamed: bool) -> _Prepared:
        """Choose the provider and model, check the request, and open the call with its
        hold (`InsufficientCredits` when the balance is short): the most any provider of
        the chain could charge for it."""
        provider = self.choose(user, ask.provider)
        model = _model_of(provider, ask.model)
        max_tokens = _max_tokens(model, ask.max_tokens)
        passages = await self._passages(user, ask)
        chain = tuple(
            self._attempt(
                candidate,
                model if candidate is provider else _model_of(candidate, None),
                ask,
                max_tokens,
                passages or (),
            )
            for candidate in self._chain(provider)
        )
        tokens = max(a.prompt_tokens + a.request.max_tokens for a in chain)
        if tokens > self.limits.limits.tokens_per_minute:
            raise ValidationFailed(
                f"this call may use {tokens} tokens, more than the "
                f"{self.limits.limits.tokens_per_minute} a minute allows: ask for fewer",
                loc=("body", "max_tokens"),
            )
        day, refusal = await self.limits.take(str(user.id), user.tier.value, tokens)
        if refusal is not None:
            raise _refused(refusal)
        most = max(a.price.most(a.prompt_tokens, a.request.max_tokens) for a in chain)
        try:
            call = await self.usage.open(
                user.id,
                provider.name,
                model.id,
                held=credits_to_hold(most),
                streamed=streamed,
            )
        except BaseException:
            await asyncio.shield(self.limits.give_back(str(user.id), day, tokens))
            raise
        return _Prepared(chain, call, str(user.id), day, tokens, passages)

    async def _passages(self, user: UserSnapshot, ask: Ask) -> tuple[Passage, ...] | None:
        if not ask.use_documents:
            return None
        return tuple(await self.retriever.passages(user, ask.prompt, SOURCES))

    async def _close(
        self,
        prepared: _Prepared,
        attempt: _Attempt,
        outcome: Outcome,
        usage: Usage,
        *,
        error: str | None = None,
    ) -> ClosedCall:
        """Charge the call as `attempt` served it and give back the tokens it did not
        use, even while the request's task is being cancelled: a hold left open would
        wait for the sweep."""
        served = Served(attempt.provider.name, attempt.request.model, attempt.price)

        async def close() -> ClosedCall:
            closed = await self.usage.close(prepared.call, served, outcome, usage, error=error)
            unused = prepared.tokens - usage.total_tokens
            await self.limits.give_back(prepared.user, prepared.day, unused)
            return closed

        return await asyncio.shield(close())

    def _offering(self, model: str) -> Provider:
        for provider in self.registry.all():
            if any(info.id == model for info in provider.models()):
                return provider
        raise UnknownModel(
            "no provider here offers this model; GET /api/v1/llm/providers lists them",
            loc=("body", "model"),
        )


def _model_of(provider: Provider, model: str | None) -> ModelInfo:
    wanted = model or provider.default_model
    for info in provider.models():
        if info.id == wanted:
            return info
    offered = ", ".join(info.id for info in provider.models())
    raise UnknownModel(
        f"{provider.name} offers no such model; it offers {offered}", loc=("body", "model")
    )


def _max_tokens(model: ModelInfo, asked: int | None) -> int:
    if asked is None:
        return min(DEFAULT_MAX_TOKENS, model.max_output_tokens)
    if asked > model.max_output_tokens:
        raise ValidationFailed(
            f"{model.id} produces at most {model.max_output_tokens} tokens",
            loc=("body", "max_tokens"),
        )
    return asked


def _refused(refusal: Refusal) -> AppError:
    if refusal.verdict == "quota_exceeded":
        return QuotaExceeded(
            "your tokens for today are spent; the quota starts again at midnight UTC",
            retry_after=refusal.retry_after,
        )
    return CallsRateLimited(
        "too many calls or tokens in the last minute", retry_after=refusal.retry_after
    )


class ProviderUnavailable(ServiceUnavailable):
    code = "provider_unavailable"
    title = "The provider is not taking calls for now"


def _falls_back(error: Exception) -> bool:
    """A provider that cannot answer for now (down, slow, busy, its circuit open) is
    passed over for the next; one that refused the request would refuse it anywhere."""
    return isinstance(error, CircuitOpen) or (isinstance(error, ProviderError) and error.transient)


async def _chained(first: list[Chunk], rest: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    for chunk in first:
        yield chunk
    async for chunk in rest:
        yield chunk


def _problem_of(error: ProviderError | CircuitOpen) -> AppError:
    if isinstance(error, CircuitOpen):
        return ProviderUnavailable(
            f"{error.breaker} failed repeatedly; calls to it are suspended for now",
            headers={"Retry-After": str(max(1, math.ceil(error.retry_after)))},
        )
    if isinstance(error, ProviderRateLimited):
        retry_after = round(error.retry_after) if error.retry_after else 1
        return ProviderRateLimit(str(error), retry_after=retry_after)
    if isinstance(error, ProviderTimeout):
        return ProviderTimedOut(str(error))
    return ProviderFailed(str(error))
