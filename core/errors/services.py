"""What the farm itself lacks: a service that did not answer, a setting missing or wrong."""

from __future__ import annotations

from typing import Any

from core.errors.base import JobyardError
from core.errors.requests import Conflict, TooManyRequests

# -- services --------------------------------------------------------------------------------------


class Unavailable(JobyardError):
    """A service Jobyard depends on did not answer."""

    code = "unavailable"


class QueryNotEmbedded(Unavailable):
    """A search's query could not be embedded; ``code`` says why (`embeddings_unavailable` on a
    timeout). The two subclasses below are the answers that are not an outage."""

    code = "embeddings_unavailable"


class ModelNotServed(Conflict, QueryNotEmbedded):
    """The collection's model is not the one this farm serves."""

    code = "model_not_served"


class QueryRateLimited(TooManyRequests, QueryNotEmbedded):
    """The embedding provider asked to slow down."""

    code = "rate_limited"


class ServicesNotReady(Unavailable):
    """Postgres or Redis was not usable within the wait; the message says which and why."""

    code = "services_not_ready"


class EmbeddedServiceError(Unavailable):
    """An embedded Postgres or Redis could not be started."""

    code = "embedded_service_failed"


class ProviderBusy(Unavailable):
    """A provider answered 502, 503 or 504: tried again a few times within the call."""

    code = "provider_busy"

    def __init__(self, response: Any) -> None:
        super().__init__(f"HTTP {response.status_code}")
        #: The provider's httpx.Response.
        self.response = response


# -- configuration ---------------------------------------------------------------------------------


class NotConfigured(JobyardError):
    """A setting is missing or holds a value it cannot take."""

    code = "not_configured"


class SettingsError(NotConfigured):
    """An environment variable holds a value its setting cannot take."""

    code = "invalid_setting"


class DatabaseNotConfigured(NotConfigured):
    """DATABASE_URL is not set and no embedded Postgres was started."""

    code = "database_not_configured"


class RedisNotConfigured(NotConfigured):
    """REDIS_URL is not set and no embedded Redis was started."""

    code = "redis_not_configured"


class WebhookNotConfigured(NotConfigured):
    """The WhatsApp webhook's secret or verify token is not set, so the webhook is off."""

    code = "webhook_not_configured"


class DataKeyError(NotConfigured):
    """The data key is missing or malformed."""

    code = "data_key_error"


class SealedValueError(DataKeyError):
    """A sealed value cannot be opened: its key is not in this process's ring, or it is damaged, or
    it was sealed for another field or job type."""

    code = "sealed_value_unopenable"

    def __init__(self, message: str, key_id: str | None, *, key_held: bool) -> None:
        super().__init__(message)
        #: The key id the value names (None when even that cannot be read).
        self.key_id = key_id
        #: Whether this process holds that key (False: a key is missing; True: the value is bad).
        self.key_held = key_held
