"""OpenAI-compatible chat completions through an ordered chain of providers, each behind a breaker.

Any server that speaks the chat-completions protocol works: OpenAI, Groq, a local Ollama, vLLM or
llama.cpp. By default the chain is one provider built from the SDK's own OPENAI_API_KEY and
OPENAI_BASE_URL with JOBYARD_LLM_MODEL; JOBYARD_LLM_PROVIDERS replaces it with a JSON list.

A provider whose calls keep failing (timeouts, 5xx, refused connections) opens its breaker and the
next provider in the chain takes the calls; after a cool-down one trial call is let through, and a
success closes the breaker again. Breakers are per worker process: each process learns on its own,
which costs at most ``failures`` calls per process and needs no shared state.

A tenant may have a chain of its own (core/chats/tenant_llm.py builds it from its stored row). Its
base URLs are addresses a caller chose, so its clients connect only to addresses the guard accepts
(core/providers/guarded_http.py); a refused address counts as that provider's failure
(``address_refused``) and the next provider takes the call. The farm's own chain is trusted.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, cast

import msgspec
import structlog
from opentelemetry.trace import SpanKind

from core.errors import (
    AddressRefused,
    JobFailure,
    LlmNotConfigured,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from core.platform import cancellation
from core.platform.netguard import AllowList
from core.platform.settings import Settings
from core.platform.tracing import tracer
from core.providers.retry_after import parse_retry_after

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

# The openai SDK (some 700 modules and 35 MiB with pydantic and its HTTP stacks) and the HTTP clients
# are imported when a chain first builds a client, not with this module: every process loads the
# job types, and only the workers that run an LLM job make a call (docs/performance.md#memory).

log = structlog.get_logger(__name__)


#: Where a tenant's provider without a base URL is asked: OpenAI's API, named here so that the SDK's
#: OPENAI_BASE_URL (the farm's own server) never receives a tenant's calls.
OPENAI_BASE_URL = "https://api.openai.com/v1"


def tenant_headers() -> dict[str, Any]:
    """Headers a tenant's provider never gets from the farm's environment (Omit drops them)."""
    import openai

    return {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}


class ProviderConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None


def provider_chain(settings: Settings) -> tuple[ProviderConfig, ...]:
    """The configured providers, in the order they are tried."""
    if settings.llm_providers:
        try:
            return tuple(msgspec.json.decode(settings.llm_providers, type=list[ProviderConfig]))
        except msgspec.DecodeError as exc:
            raise LlmNotConfigured(f"JOBYARD_LLM_PROVIDERS is not a valid provider list: {exc}") from None
    if settings.openai_api_key or settings.openai_base_url:
        return (
            ProviderConfig(
                name="openai" if not settings.openai_base_url else "default",
                base_url=settings.openai_base_url,
                api_key=settings.openai_api_key,
            ),
        )
    return ()


@dataclass
class Breaker:
    """Opens after ``failures`` failures in a row; lets one trial call through after ``cooldown_s``."""

    failures: int
    cooldown_s: float
    _count: int = 0
    _opened_at: float | None = None
    _trial_running: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if time.monotonic() - self._opened_at >= self.cooldown_s and not self._trial_running:
                self._trial_running = True  # half-open: one call decides
                return True
            return False

    def succeeded(self) -> None:
        with self._lock:
            self._count, self._opened_at, self._trial_running = 0, None, False

    def failed(self) -> bool:
        """Record a failure; True if this failure opened (or re-opened) the breaker."""
        with self._lock:
            self._count += 1
            self._trial_running = False
            if self._opened_at is not None or self._count >= self.failures:
                self._opened_at = time.monotonic()
                return True
            return False

    @property
    def open(self) -> bool:
        return self._opened_at is not None


@dataclass(frozen=True)
class Completion:
    content: str
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int


class LlmChain:
    """The providers tried in order, with a breaker and a client each. ``providers`` None: the farm's
    own (its settings). ``allow`` set: a tenant's chain, whose every connection the address guard
    checks against that allow list (JOBYARD_LLM_ALLOW_HOSTS)."""

    def __init__(
        self,
        settings: Settings,
        providers: tuple[ProviderConfig, ...] | None = None,
        *,
        allow: AllowList | None = None,
        tenant: str | None = None,
    ) -> None:
        self.settings = settings
        self.providers = provider_chain(settings) if providers is None else providers
        self.allow = allow
        #: The tenant whose own chain this is, for log lines; None for the farm's.
        self.tenant = tenant
        self.breakers = {
            p.name: Breaker(settings.llm_breaker_failures, settings.llm_breaker_cooldown_s)
            for p in self.providers
        }
        self._clients: dict[str, openai.OpenAI] = {}

    def _client(self, p: ProviderConfig) -> openai.OpenAI:
        if p.name not in self._clients:
            import openai

            from core.providers.guarded_http import abortable_client, guarded_client

            if self.allow is None:
                self._clients[p.name] = openai.OpenAI(
                    api_key=p.api_key or "not-needed",  # local servers (Ollama, llama.cpp) take any key
                    base_url=p.base_url,
                    timeout=self.settings.llm_timeout_s,
                    max_retries=0,  # retries are the job's business, across attempts
                    # A cancelled job's call is aborted (its socket shut down), not waited out.
                    http_client=abortable_client(timeout=self.settings.llm_timeout_s),
                )
            else:
                self._clients[p.name] = openai.OpenAI(
                    api_key=p.api_key or "not-needed",
                    base_url=p.base_url or OPENAI_BASE_URL,
                    timeout=self.settings.llm_timeout_s,
                    max_retries=0,
                    http_client=guarded_client(self.allow, timeout=self.settings.llm_timeout_s),
                    # The SDK would fill these from the farm's OPENAI_ORG_ID / OPENAI_PROJECT_ID:
                    # the farm's account is none of a tenant's provider's business.
                    default_headers=tenant_headers(),
                )
        return self._clients[p.name]

    def _create(
        self, p: ProviderConfig, model: str, messages: list[dict[str, str]], options: dict[str, Any]
    ) -> ChatCompletion:
        """One provider's answer, in a span of the job's trace (OpenTelemetry's GenAI attribute
        names; no prompt or answer text). A no-op span with tracing off."""
        with tracer.start_as_current_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": p.name,
                "gen_ai.request.model": model,
            },
        ) as span:
            response: ChatCompletion = self._client(p).chat.completions.create(
                model=model, messages=cast("list[ChatCompletionMessageParam]", messages), **options
            )
            span.set_attribute("gen_ai.response.model", response.model)
            if response.usage:
                span.set_attribute("gen_ai.usage.input_tokens", response.usage.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", response.usage.completion_tokens)
            return response

    def _failed(self, p: ProviderConfig, breaker: Breaker) -> None:
        if breaker.failed():
            log.warning(
                "llm_breaker_open", provider=p.name, tenant=self.tenant, cooldown_s=breaker.cooldown_s
            )

    def complete(
        self, messages: list[dict[str, str]], *, model: str | None = None, **options: Any
    ) -> Completion:
        """Ask the first provider whose breaker is closed; fall through the chain on provider failures."""
        if not self.providers:
            raise LlmNotConfigured()
        import openai

        last_error: JobFailure | None = None
        for p in self.providers:
            cancellation.stop_if_cancelled()
            breaker = self.breakers[p.name]
            if not breaker.allow():
                continue
            try:
                response = self._create(p, model or p.model or self.settings.llm_model, messages, options)
            except AddressRefused as exc:
                # A tenant's base URL that resolves (now) to a loopback, private or metadata address:
                # nothing was sent. The provider is failing, as one that does not answer.
                log.warning(
                    "llm_address_refused",
                    provider=p.name,
                    tenant=self.tenant,
                    host=exc.host,
                    address=exc.address,
                    reason=exc.reason,
                )
                self._failed(p, breaker)
                last_error = RetryableError(f"{p.name}: {exc}", code="address_refused")
                continue
            except openai.APIError as exc:
                # The job's cancel aborted the call: not the provider's failure, and no other
                # provider is asked.
                cancellation.stop_if_cancelled()
                error = map_error(exc, p.name)
                if not error.retryable:
                    raise error from exc  # the request itself is wrong: another provider will not help
                if not isinstance(error, RateLimitedError):
                    self._failed(p, breaker)
                last_error = error
                continue
            breaker.succeeded()
            choice = response.choices[0]
            usage = response.usage
            return Completion(
                content=choice.message.content or "",
                model=response.model,
                provider=p.name,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
            )
        if last_error is None:
            raise RetryableError("every LLM provider's breaker is open", code="llm_unavailable")
        raise last_error


def map_error(exc: openai.APIError, provider: str) -> JobFailure:
    """An SDK error as a Jobyard error: timeouts and 5xx retry, 429 waits, other 4xx are permanent."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return RetryableError(f"{provider} timed out", code="provider_timeout")
    if isinstance(exc, openai.APIConnectionError):
        return RetryableError(f"{provider} is unreachable: {exc}", code="provider_unreachable")
    if isinstance(exc, openai.RateLimitError):
        retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
        return RateLimitedError(f"{provider} rate-limited the request", retry_after=retry_after)
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return RetryableError(f"{provider} answered {exc.status_code}", code="provider_unavailable")
        if exc.status_code in (401, 403):
            # A bad key is this provider's problem; the next one in the chain may work.
            return RetryableError(
                f"{provider} refused our credentials ({exc.status_code})", code="provider_auth"
            )
        return PermanentError(
            f"{provider} rejected the request ({exc.status_code}): {exc.message}", code="provider_rejected"
        )
    return RetryableError(f"{provider} failed: {exc}", code="provider_error")


@functools.cache
def chain_for(settings: Settings) -> LlmChain:
    """One chain (clients and breakers) per worker process and settings."""
    return LlmChain(settings)
