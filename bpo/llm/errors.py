"""Errors of the LLM layer. Messages name the config key or the number of calls concerned and
never contain an API key or request headers."""

from __future__ import annotations


class LLMError(RuntimeError):
    """A stage cannot get its LLM answers (bad config, missing key, replay miss, fatal reply)."""


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

    def __init__(self, message: str, *, spent_usd: float, budget_usd: float, answered: int,
                 remaining: int, results: list | None = None):
        super().__init__(message)
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd
        self.answered = answered
        self.remaining = remaining
        self.results = results
