"""The dispatcher: sends one run's uncached requests, shared with other processes through claims.

Workers take keys from a queue filled by claiming them in the cache (a key another live process
has in flight is polled for, not sent), keep within the RPM/TPM buckets and the budget, send
through the retry policy (bpo.llm.retry), commit each answer the moment it arrives, renew their
claims while the run lasts and advance the progress bar. The liveness breaker (bpo.llm.breaker)
stops them all.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from itertools import islice
from typing import Any

from bpo.llm.breaker import Breaker, StallNote, probe_timing
from bpo.llm.cache import Cache
from bpo.llm.claims import CLAIM_LEASE_S, new_owner, retire_owner
from bpo.llm.limits import RateLimiter
from bpo.llm.local import LocalTransport
from bpo.llm.reply import from_row
from bpo.llm.request import cost_usd
from bpo.llm.retry import Caller, Fatal, Stopped

log = logging.getLogger("bpo.llm")

# How often a run looks for the answers of keys another process has in flight.
CLAIM_POLL_S = 0.1


class Dispatcher:
    """One run of ``owner`` (an LLMClient): ``todo`` is ``[(key, request)]`` not in the cache;
    answers land in ``results`` at ``first[key]``. :meth:`run` returns the run's stats."""

    def __init__(self, owner, todo, results, first, cache: Cache, n_cached: int, budget: float | None):
        self.c, self.todo, self.results, self.first, self.cache = owner, todo, results, first, cache
        self.n_cached, self.budget = n_cached, budget
        self.stats: dict[str, Any] = {
            "sent": 0,
            "ok": 0,
            "truncated": 0,
            "refused": 0,
            "error": 0,
            "retries": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "spent_usd": 0.0,
            "awaited": 0,
        }
        self.pending: list[dict] = []
        self.failures: list[dict] = []
        self.flush_scheduled = False
        self.reserved = 0.0
        self.stop: str | None = None

    async def run(self) -> dict:
        c, stats = self.c, self.stats
        if not self.todo:
            return stats
        from tqdm import tqdm

        self.bar = bar = tqdm(
            total=len(self.first),
            initial=self.n_cached,
            desc=f"{c.stage} [{c.backend}]",
            unit="call",
            file=sys.stderr,
            disable=not c.show_progress(),
            dynamic_ncols=True,
            mininterval=1.0 if sys.stderr.isatty() else 15.0,
            postfix=f"cached={self.n_cached}",
        )
        self.loop = asyncio.get_running_loop()
        # the stand-in is free and instant: nothing to share with other processes (a local
        # model's generations are worth not repeating, so they are claimed like paid calls)
        self.source = c.source
        self.owner = owner = new_owner() if self.source != "standin" else None
        self.limiter = RateLimiter(c.limits)
        self.breaker = breaker = Breaker(c.limits.circuit_breaker_s, *probe_timing(c.limits))
        n_workers = min(c.limits.max_concurrency, len(self.todo))
        self.requests_by_key = dict(self.todo)
        self.it = iter(self.todo)
        self.ready: deque = deque()  # (key, request) claimed by this run, not sent yet
        self.waiting: set[str] = set()  # keys another live process has in flight
        self.poll_lock = asyncio.Lock()
        self.claim_batch = max(1, min(64, n_workers))

        client, transport = c.session.open(self.source)
        self.caller = Caller(
            client,
            c.limits,
            self.limiter,
            breaker,
            stats,
            name=c.name,
            base_url=c.base_url,
            stage=c.stage,
            backend=c.backend,
            source=self.source,
        )
        beat = asyncio.ensure_future(self.heartbeat()) if owner is not None else None
        prober = c.session.prober()
        watch = None
        if prober is not None:
            if not bar.disable:
                breaker.on_stall = StallNote(bar, f"{c.base_url.rstrip('/')}/models")
            watch = asyncio.ensure_future(breaker.watch(prober[0], c.name, c.base_url))
        # Wait for every worker, a worker's error or a trip, whichever comes first (a trip ends the
        # calls still waiting on a hung server too). Done-callbacks, not asyncio.wait in a loop: that
        # costs O(workers) per finished worker.
        settled = asyncio.Event()
        left = [n_workers]

        def worker_done(task: asyncio.Future) -> None:
            left[0] -= 1
            if not left[0] or (not task.cancelled() and task.exception() is not None):
                settled.set()

        tasks = [asyncio.ensure_future(self.worker()) for _ in range(n_workers)]
        for task in tasks:
            task.add_done_callback(worker_done)
        stopper = asyncio.ensure_future(breaker.tripped.wait())
        stopper.add_done_callback(lambda _: settled.set())
        try:
            await settled.wait()
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            if breaker.tripped.is_set():
                self.stop = self.stop or "unreachable"
        finally:
            for task in (*tasks, stopper):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if watch is not None:
                if watch.done() and not watch.cancelled() and watch.exception() is not None:
                    log.error("endpoint '%s': the liveness watch failed: %r", c.name, watch.exception())
                watch.cancel()
            if prober is not None:
                await prober[1].aclose()
            if beat is not None:
                beat.cancel()
            if self.pending or self.failures:
                self.flush()
            if owner is not None:
                try:
                    self.cache.release_claims(owner)  # claimed but never sent (a stop): free for others
                except Exception as exc:  # noqa: BLE001 - they expire with the lease anyway
                    log.warning("stage '%s': could not release in-flight claims: %s", c.stage, exc)
                retire_owner(owner)
            bar.close()
            await client.close()
            if transport is not None:
                await transport.aclose()
        if isinstance(transport, LocalTransport):
            stats["engines"] = sorted(transport.engines)
        stats["probes"] = breaker.probes
        if breaker.tripped.is_set():
            stats["unreachable"] = breaker.describe()
        if self.stop == "budget":
            stats["budget_stop"] = True
        return stats

    # ---- the cache: answers committed as they arrive, claims --------------------------------
    def cache_failed(self, exc: Exception, unstored: int = 0) -> None:
        self.stop = "cache"
        self.stats["cache_error"] = f"{type(exc).__name__}: {exc}"
        self.stats["unstored"] = self.stats.get("unstored", 0) + unstored

    def flush(self) -> None:
        # one transaction for every answer that arrived in this loop iteration (it also
        # releases their claims, so a process waiting for them finds them at once)
        self.flush_scheduled = False
        batch, self.pending[:] = list(self.pending), []
        fails, self.failures[:] = list(self.failures), []
        try:
            self.cache.store(batch, fails, self.owner)
        except Exception as exc:  # noqa: BLE001 - an answer we cannot store must stop the run
            self.cache_failed(exc, len(batch))

    def store(self, row: dict, failed: bool = False) -> None:
        (self.failures if failed else self.pending).append(row)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def claim(self, keys: list[str]) -> set[str]:
        """Claim ``keys``; answers found are settled, claimed keys queued. Returns the held ones."""
        try:
            claimed, answered, held = self.cache.claim(keys, self.source, self.owner)
        except Exception as exc:  # noqa: BLE001 - without claims we could pay twice: stop
            self.cache_failed(exc)
            return set()
        for key, row in answered.items():  # answered by another process meanwhile
            self.results[self.first[key]] = from_row(row, self.c.backend)
            self.stats["awaited"] += 1
            self.bar.update(1)
        self.ready.extend((k, self.requests_by_key[k]) for k in claimed)
        return set(held)

    async def next_item(self):
        while not self.stop:
            if self.ready:
                return self.ready.popleft()
            if self.owner is None:
                return next(self.it, None)
            chunk = [k for k, _ in islice(self.it, self.claim_batch)]
            if chunk:
                self.waiting.update(self.claim(chunk))
                continue
            if not self.waiting:
                return None
            if self.poll_lock.locked():  # another worker polls: wait for it, then look again
                async with self.poll_lock:
                    continue
            async with self.poll_lock:
                await self.breaker.sleep(CLAIM_POLL_S)
                if not self.stop:
                    self.waiting.intersection_update(self.claim(sorted(self.waiting)))
        return None

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(CLAIM_LEASE_S / 4)
            try:
                self.cache.renew_claims(self.owner)
            except Exception as exc:  # noqa: BLE001 - the next beat may succeed; the lease is long
                log.warning("stage '%s': could not renew in-flight claims: %s", self.c.stage, exc)

    # ---- the workers: budget, rate limits, the call, the bookkeeping ------------------------
    async def worker(self) -> None:
        c, stats, budget, limiter = self.c, self.stats, self.budget, self.limiter
        while True:
            item = await self.next_item()
            if item is None:
                return
            key, req = item
            price = c.price_of(req.model)
            reserve = 0.0
            if budget is not None:
                reserve = cost_usd(price, req.estimated_prompt_tokens(), req.estimated_completion_tokens()) or 0.0
                if stats["spent_usd"] + self.reserved + reserve > budget:
                    self.stop = "budget"
                    return
                self.reserved += reserve
            if limiter.active:
                await limiter.acquire(req.estimated_prompt_tokens() + req.estimated_completion_tokens())
            stats["sent"] += 1
            try:
                res, row, attempts = await self.caller.call(req)
            except Fatal as exc:
                self.stop = "fatal"
                stats["fatal"] = str(exc)
                return
            except Stopped:
                self.stop = "unreachable"
                return
            finally:
                self.reserved -= reserve
            spent = cost_usd(price, res.prompt_tokens, res.completion_tokens)
            if spent:
                stats["spent_usd"] += spent
            stats[res.status] += 1
            stats["prompt_tokens"] += res.prompt_tokens or 0
            stats["completion_tokens"] += res.completion_tokens or 0
            self.results[self.first[key]] = res
            if row is not None:
                self.store(row)
            else:
                self.store(
                    {
                        "key": key,
                        "backend": self.source,
                        "stage": c.stage,
                        "model": req.model,
                        "error": res.error,
                        "attempts": attempts,
                    },
                    failed=True,
                )
                self.bar.set_postfix_str(f"cached={self.n_cached} failed={stats['error']}", refresh=False)
            self.bar.update(1)
            # yield once: the flush queued above runs before this worker sends again, so an
            # answer is committed before its worker's next call (kill -9 loses in-flight only)
            await asyncio.sleep(0)
