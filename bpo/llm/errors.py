"""Errors of the LLM layer. Messages name the config key or the number of calls concerned and
never contain an API key or request headers: whatever a server echoed into them is redacted."""

from __future__ import annotations

from bpo.redact import redact


class LLMError(RuntimeError):
    """A stage cannot get its LLM answers (bad config, missing key, replay miss, fatal reply,
    unreachable endpoint)."""

    def __init__(self, message: str = "", *args):
        super().__init__(redact(str(message)), *args)

    def __str__(self) -> str:  # a key registered after the error was raised is masked too
        return redact(super().__str__())


class EndpointUnreachable(LLMError):
    """The circuit breaker stopped the stage: the endpoint gave no HTTP answer for
    ``limits.circuit_breaker_s`` (connection refused, DNS or TLS failure, hung, closed connections,
    non-HTTP bytes; liveness probes failing too) or refused a call (HTTP 401/403/404). Answers
    received before are cached."""

    def __init__(self, message: str, *, endpoint: str, base_url: str):
        super().__init__(message)
        self.endpoint = endpoint
        self.base_url = base_url


class MissingAPIKey(LLMError):
    """The environment variable named by ``api_key_env`` is unset or empty (nothing was sent)."""


class ReplayMiss(LLMError):
    """``backend: replay`` was asked for answers the cache does not hold."""

    def __init__(self, message: str, missing: int, total: int):
        super().__init__(message)
        self.missing = missing
        self.total = total


class BudgetExceeded(LLMError):
    """The run reached its budget cap: new calls stopped, answered ones are cached.

    ``results`` holds what was answered (None where nothing was sent), in request order.
    """

    def __init__(
        self,
        message: str,
        *,
        spent_usd: float,
        budget_usd: float,
        answered: int,
        remaining: int,
        results: list | None = None,
    ):
        super().__init__(message)
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd
        self.answered = answered
        self.remaining = remaining
        self.results = results
