"""Runtime limits of an endpoint: concurrency, request and token rates, timeouts, retries.

These change throughput, never answers: Snakemake scripts read them from the config at run
time (not as rule params), so editing them reruns nothing.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from bpo.settings import EndpointLimits

# Seconds of traffic a bucket may burst (rate limits are per minute, enforced in slices).
BURST_SECONDS = 6.0


@dataclass(frozen=True)
class Limits(EndpointLimits):
    """An endpoint's limits (fields and defaults: bpo.settings.EndpointLimits and the schema) and
    the backoff they imply."""

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [base*2^attempt / 2, base*2^attempt]."""
        cap = min(self.backoff_max_s, self.backoff_base_s * (2.0**attempt))
        return cap * (0.5 + 0.5 * random.random())


class TokenBucket:
    """``rate`` units per second, bursting up to ``capacity``; waiters are served in order.

    A request larger than the capacity still goes through once the bucket is full (taking it
    negative), so an oversized prompt is slowed down, never deadlocked.
    """

    def __init__(self, rate_per_s: float, capacity: float):
        self.rate = float(rate_per_s)
        self.capacity = max(1.0, float(capacity))
        self.tokens = self.capacity
        self.t = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.t) * self.rate)
        self.t = now

    async def acquire(self, amount: float = 1.0) -> None:
        async with self._lock:
            need = min(float(amount), self.capacity)
            while True:
                self._refill()
                if self.tokens >= need:
                    self.tokens -= amount
                    return
                await asyncio.sleep((need - self.tokens) / self.rate)


class RateLimiter:
    """RPM and TPM buckets plus a shared pause after a 429 (Retry-After applies to everyone)."""

    def __init__(self, limits: Limits):
        self.rpm = TokenBucket(limits.rpm / 60.0, limits.rpm / 60.0 * BURST_SECONDS) if limits.rpm else None
        self.tpm = TokenBucket(limits.tpm / 60.0, limits.tpm / 60.0 * BURST_SECONDS) if limits.tpm else None
        self.paused_until = 0.0
        self.active = bool(self.rpm or self.tpm)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)
        self.active = True

    async def acquire(self, tokens: int) -> None:
        wait = self.paused_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self.rpm is not None:
            await self.rpm.acquire(1)
        if self.tpm is not None:
            await self.tpm.acquire(tokens)
