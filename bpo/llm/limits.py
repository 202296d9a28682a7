"""Runtime limits of an endpoint: concurrency, request and token rates, timeouts, retries.

These change throughput, never answers: Snakemake scripts read them from the config at run
time (not as rule params), so editing them reruns nothing.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, fields
from typing import Mapping

from bpo.llm.errors import LLMError

# Seconds of traffic a bucket may burst (rate limits are per minute, enforced in slices).
BURST_SECONDS = 6.0


@dataclass(frozen=True)
class Limits:
    max_concurrency: int = 16
    rpm: int | None = None
    tpm: int | None = None
    timeout_s: float = 120.0
    max_retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    transport: str = "lean"  # lean | httpx (see bpo.llm.transport)
    circuit_breaker_s: float = 30.0  # stop after this long with no HTTP answer (calls and liveness probes)
    max_batch_size: int = 16  # backend local: conversations generated together
    batch_wait_s: float = 0.05  # backend local: how long a batch waits for more requests

    @classmethod
    def from_config(cls, cfg: Mapping | None, where: str = "limits") -> "Limits":
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise LLMError(f"config {where}: unknown key(s) {unknown}; known: {sorted(known)}")
        cfg = {k: v for k, v in cfg.items() if v is not None or k in ("rpm", "tpm")}
        lim = cls(**cfg)
        if int(lim.max_concurrency) < 1:
            raise LLMError(f"config {where}.max_concurrency must be >= 1, got {lim.max_concurrency}")
        for name in ("rpm", "tpm"):
            v = getattr(lim, name)
            if v is not None and v <= 0:
                raise LLMError(f"config {where}.{name} must be > 0 or null, got {v}")
        if lim.timeout_s <= 0:
            raise LLMError(f"config {where}.timeout_s must be > 0, got {lim.timeout_s}")
        if int(lim.max_retries) < 0:
            raise LLMError(f"config {where}.max_retries must be >= 0, got {lim.max_retries}")
        if lim.circuit_breaker_s <= 0:
            raise LLMError(f"config {where}.circuit_breaker_s must be > 0, got {lim.circuit_breaker_s}")
        if int(lim.max_batch_size) < 1:
            raise LLMError(f"config {where}.max_batch_size must be >= 1, got {lim.max_batch_size}")
        if lim.batch_wait_s < 0:
            raise LLMError(f"config {where}.batch_wait_s must be >= 0, got {lim.batch_wait_s}")
        if lim.transport not in ("lean", "httpx"):
            raise LLMError(f"config {where}.transport must be 'lean' or 'httpx', got {lim.transport!r}")
        return lim

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [base*2^attempt / 2, base*2^attempt]."""
        cap = min(self.backoff_max_s, self.backoff_base_s * (2.0 ** attempt))
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
