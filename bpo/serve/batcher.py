"""Micro-batching of concurrent rewrites, with a bounded queue and per-request timeouts.

Requests that arrive while the rewriter is busy (or within ``max_wait_ms`` of the first one)
form one batch of up to ``max_batch_size`` prompts: one ``rewrite_batch`` call, which the
optimizer's generation loop batches again (continuous batching). Identical prompts in flight
share one rewrite; cached ones never reach the queue. A full queue raises :class:`QueueFull`
(the app answers 429 with Retry-After). A request not answered within ``timeout_s`` gets its
original prompt back (reason ``timeout``); if nobody waits for a queued prompt any more, it
leaves the queue.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from bpo.serve.cache import RewriteCache, cache_key
from bpo.serve.metrics import ServeMetrics
from bpo.serve.rewriter import ERROR, TIMEOUT, Rewrite, Rewriter
from bpo.settings.serve import BatchingSettings

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"rewrite queue full; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Entry:
    key: str
    prompt: str
    future: asyncio.Future
    history: list | None = None
    waiters: int = 1
    queued: bool = True


@dataclass
class Outcome:
    rewrite: Rewrite
    source: str  # optimizer | cache | inline
    seconds: float = 0.0


@dataclass
class RewriteBatcher:
    rewriter: Rewriter
    settings: BatchingSettings
    metrics: ServeMetrics
    cache: RewriteCache | None = None
    _pending: dict = field(default_factory=dict)  # key -> _Entry, queued (insertion order = arrival)
    _inflight: dict = field(default_factory=dict)  # key -> _Entry, queued or in a running batch
    _batch_s: float = 1.0  # moving average of a batch's duration, for Retry-After

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(self.settings.max_concurrent_batches)
        self._batches: set[asyncio.Task] = set()
        self._task = asyncio.create_task(self._loop(), name="bpo-rewrite-batcher")

    async def close(self) -> None:
        self._task.cancel()
        for t in list(self._batches):
            t.cancel()
        for e in self._inflight.values():
            if not e.future.done():
                e.future.cancel()

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def rewrite(self, prompt: str, history: list | None = None) -> Outcome:
        """``history``: the earlier turns the rewrite is conditioned on (None/[]: single-turn)."""
        t0 = time.perf_counter()
        if not self.rewriter.batched:
            (r,) = await (
                self.rewriter.rewrite_batch([prompt], [history]) if history else self.rewriter.rewrite_batch([prompt])
            )
            return Outcome(r, "inline", time.perf_counter() - t0)
        key = cache_key(self.rewriter.identity, prompt, history)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return Outcome(hit, "cache", time.perf_counter() - t0)
        entry = self._inflight.get(key)
        if entry is None:
            if len(self._pending) >= self.settings.max_queue:
                self.metrics.rejected.inc()
                raise QueueFull(self._retry_after())
            entry = _Entry(key, prompt, asyncio.get_running_loop().create_future(), history or None)
            self._inflight[key] = self._pending[key] = entry
            self.metrics.queue_depth.set(len(self._pending))
            self._arrived.set()
        else:
            entry.waiters += 1
        try:
            r = await asyncio.wait_for(asyncio.shield(entry.future), self.settings.timeout_s)
            return Outcome(r, "optimizer", time.perf_counter() - t0)
        except TimeoutError:
            return Outcome(Rewrite(prompt, TIMEOUT), "optimizer", time.perf_counter() - t0)
        finally:
            entry.waiters -= 1
            if entry.waiters == 0 and entry.queued:  # nobody wants it any more: do not generate it
                self._pending.pop(key, None)
                self._inflight.pop(key, None)
                entry.future.cancel()
                self.metrics.queue_depth.set(len(self._pending))

    def _retry_after(self) -> int:
        batches_ahead = math.ceil(len(self._pending) / self.settings.max_batch_size)
        return max(1, math.ceil(batches_ahead * self._batch_s / self.settings.max_concurrent_batches))

    async def _loop(self) -> None:
        s = self.settings
        while True:
            await self._arrived.wait()
            await self._slots.acquire()
            # The first prompt waits up to max_wait_ms for company; a full batch goes at once.
            deadline = time.perf_counter() + s.max_wait_ms / 1000
            while len(self._pending) < s.max_batch_size and (left := deadline - time.perf_counter()) > 0:
                await asyncio.sleep(min(left, 0.001))
            batch = []
            for key in list(self._pending)[: s.max_batch_size]:
                entry = self._pending.pop(key)
                entry.queued = False
                batch.append(entry)
            self.metrics.queue_depth.set(len(self._pending))
            if not self._pending:
                self._arrived.clear()
            if not batch:  # every waiter gave up meanwhile
                self._slots.release()
                continue
            task = asyncio.create_task(self._run_batch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _run_batch(self, batch: list[_Entry]) -> None:
        t0 = time.perf_counter()
        prompts = [e.prompt for e in batch]
        histories = [e.history for e in batch]
        try:
            try:
                # single-turn batches call as before (rewriters written for one argument keep working)
                results = await (
                    self.rewriter.rewrite_batch(prompts, histories)
                    if any(histories)
                    else self.rewriter.rewrite_batch(prompts)
                )
                if len(results) != len(prompts):
                    raise RuntimeError(f"rewriter returned {len(results)} results for {len(prompts)} prompts")
                answered = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the original prompts go through; the reason is counted
                log.error("rewriter failed on a batch of %d prompts: %s", len(prompts), exc)
                results, answered = [Rewrite(p, ERROR) for p in prompts], False
            self.metrics.batch_size.observe(len(batch))
            self._batch_s = 0.8 * self._batch_s + 0.2 * (time.perf_counter() - t0)
            if answered and self.cache is not None:
                rows = [(e.key, self.rewriter.identity, e.prompt, r) for e, r in zip(batch, results)]
                try:
                    await asyncio.to_thread(self.cache.put_many, rows)
                except Exception as exc:  # a cache that cannot be written costs reuse, not answers
                    log.error("rewrite cache write failed: %s", exc)
            for e, r in zip(batch, results):
                if not e.future.done():
                    e.future.set_result(r)
        finally:
            for e in batch:
                self._inflight.pop(e.key, None)
                if not e.future.done():
                    e.future.cancel()
            self._slots.release()
