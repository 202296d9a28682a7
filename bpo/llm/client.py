"""LLMClient: cached, concurrent, rate-limited, budgeted chat completions.

One client per stage run. ``run(requests)`` answers every request (same order): cache hits
first, then the missing calls through `AsyncOpenAI` with at most ``max_concurrency`` in flight,
RPM/TPM buckets, retries with exponential backoff + jitter on 429/5xx/timeouts/connection
errors/malformed bodies (Retry-After honoured), each answer committed to the cache the moment
it arrives. Truncated and refused replies are answers (cached, with their status); failures
after the last retry come back with status ``error`` and are retried by the next run.

Shared across processes: each key is claimed in the cache before it is sent, so a key another
run has in flight is awaited, not paid twice (see bpo.llm.cache). A circuit breaker stops the
stage once the endpoint has given no HTTP answer for ``limits.circuit_breaker_s``, silence being
checked by liveness probes (see _Breaker), or at the first 401/403/404. Everything a server
sends back is redacted (bpo.redact) before it is logged, stored or raised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import ssl
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Iterable, Mapping

import httpx2
import openai
from openai import AsyncOpenAI

from bpo import redact
from bpo.llm.cache import CLAIM_LEASE_S, Cache, new_owner, result_row, retire_owner
from bpo.llm.errors import BudgetExceeded, EndpointUnreachable, LLMError, MissingAPIKey, ReplayMiss
from bpo.llm.limits import Limits, RateLimiter
from bpo.llm.local import LOCAL_BASE_URL, LocalTransport, local_source, local_worker
from bpo.llm.request import ChatRequest, ChatResult, cost_usd, price_for
from bpo.llm.standin import STANDIN_BASE_URL, STANDIN_MODEL, StandinTransport
from bpo.llm.transport import LeanAsyncTransport, default_ssl_context, no_answer, probe, proxy_configured
from bpo.settings import EndpointSettings, LLMRuntime

log = logging.getLogger("bpo.llm")

BACKENDS = ("openai", "replay", "standin", "local")
# Backends that cost nothing per call: no price is looked up, a budget needs none.
_FREE = ("standin", "local")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_ERROR_TEXT_MAX = 300
# How often a run looks for the answers of keys another process has in flight.
CLAIM_POLL_S = 0.1
# Liveness (see _Breaker): silence with calls in flight before the endpoint is probed, how long a
# probe waits for a status line, and the least time between probes while the endpoint is silent.
PROBE_AFTER_S = 5.0
PROBE_TIMEOUT_S = 10.0
PROBE_GAP_S = 1.0


@dataclass
class Estimate:
    """What a run would do, before anything is sent (``LLMClient.estimate``)."""

    requests: int = 0
    unique: int = 0  # distinct request keys
    cached: int = 0  # distinct keys already answered
    calls: int = 0  # distinct keys that would be sent
    prompt_tokens: int = 0  # of the calls to send (estimated)
    completion_tokens: int = 0  # upper bound: max_tokens, else an assumed 512 per choice
    usd: float | None = 0.0  # None when a model of the calls has no price in llm.prices
    unpriced_models: list = field(default_factory=list)
    backend: str = ""

    def __str__(self) -> str:
        cost = f"~${self.usd:.4f}" if self.usd is not None else f"unknown (no price for {self.unpriced_models})"
        return (f"{self.requests} requests ({self.unique} distinct): {self.cached} cached, {self.calls} to send, "
                f"~{self.prompt_tokens} prompt + <= {self.completion_tokens} completion tokens, cost {cost} "
                f"[backend {self.backend}]")


class _Fatal(Exception):
    """A reply that makes every further call pointless (bad key, unknown model/endpoint)."""


class _Stopped(Exception):
    """The circuit breaker tripped while this call waited to be retried."""


class _Breaker:
    """Stops the stage once the endpoint has given no HTTP answer for ``limit_s``.

    Evidence of no answer: a call that failed to connect, timed out before a status line, saw
    the connection closed before one or got bytes that are not HTTP; and a failed liveness probe.
    Any HTTP answer, from a call or a probe and whatever its status, closes the streak. A call
    can wait ``timeout_s`` (120 s by default) for its reply, so silence alone proves nothing: after
    ``probe_after_s`` without an answer while calls are in flight, :meth:`watch` sends a short
    ``GET <base_url>/models`` (``probe_timeout_s``), again and again while the streak is open. A
    slow but live server answers the probe and is left alone; a hung or non-HTTP one fails it.
    """

    def __init__(self, limit_s: float, probe_after_s: float = PROBE_AFTER_S,
                 probe_timeout_s: float = PROBE_TIMEOUT_S):
        self.limit_s = limit_s
        self.probe_after_s = probe_after_s
        self.probe_timeout_s = probe_timeout_s
        self.since: float | None = None  # first evidence of no answer since the last answer
        self.heard_at = time.monotonic()  # last HTTP answer, or when calls started waiting
        self.in_flight = 0
        self.failures = 0
        self.probes = 0
        self.seen: dict[str, int] = {}  # what came instead of an HTTP answer, by kind (this streak)
        self.last_error = ""
        self.waiting = 0  # calls in flight when the breaker tripped (they are cancelled)
        self.tripped = asyncio.Event()
        self.on_stall: Any = None  # called with the seconds of silence (0: an answer came)
        self._stall_shown = False

    def sending(self) -> None:
        if not self.in_flight:
            self.heard_at = time.monotonic()  # silence counts while something waits for a reply
        self.in_flight += 1

    def settled(self) -> None:
        self.in_flight -= 1

    def reachable(self) -> None:
        """An HTTP answer (any status) came back."""
        self.heard_at = time.monotonic()
        if self.since is not None:
            self.since = None
            self.failures = 0
            self.seen = {}
        if self._stall_shown:
            self._stall_shown = False
            self.on_stall(0.0)

    def unreachable(self, kind: str, error: str, name: str, base_url: str, at: float | None = None) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now if at is None else at
            log.warning("endpoint '%s' (%s) gives no HTTP answer (%s); probing it and retrying for up to %g s "
                        "(limits.circuit_breaker_s)", name, base_url, error, self.limit_s)
        self.failures += 1
        self.seen[kind] = self.seen.get(kind, 0) + 1
        self.last_error = error
        if now - self.since >= self.limit_s and not self.tripped.is_set():
            self.waiting = self.in_flight
            self.tripped.set()

    def silent_s(self) -> float:
        return time.monotonic() - self.heard_at if self.in_flight or self.since is not None else 0.0

    def time_left(self) -> float:
        return self.limit_s if self.since is None else self.limit_s - (time.monotonic() - self.since)

    def describe(self) -> str:
        """What was seen instead of an HTTP answer, for the error that stops the stage."""
        kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(self.seen.items(), key=lambda kv: -kv[1]))
        waiting = f"; {self.waiting} calls in flight, ended" if self.waiting else ""
        return (f"no HTTP answer for {time.monotonic() - self.since:.0f} s: {self.failures} failures "
                f"({kinds}; {self.probes} liveness probes sent{waiting}); last: {self.last_error}")

    async def watch(self, probe, name: str, base_url: str) -> None:
        """Probe the endpoint while it is silent; returns when the breaker trips."""
        while not self.tripped.is_set():
            if self.since is None:
                wait = self.probe_after_s - self.silent_s() if self.in_flight else self.probe_after_s
                if wait > 0:
                    await self.sleep(max(wait, 0.05))
                    continue
            t = time.monotonic()
            self.probes += 1
            seen = await probe(self.probe_timeout_s)
            if seen is None:
                self.reachable()
                continue
            self.unreachable(seen[0], _short(seen[1]), name, base_url, at=t)
            if self.on_stall is not None:
                self._stall_shown = True
                self.on_stall(self.silent_s())
            await self.sleep(PROBE_GAP_S - (time.monotonic() - t))

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the breaker trips."""
        if seconds <= 0 or self.tripped.is_set():
            return
        try:
            await asyncio.wait_for(self.tripped.wait(), seconds)
        except asyncio.TimeoutError:
            pass


def _probe_timing(limits: Limits) -> tuple[float, float]:
    """(probe_after_s, probe_timeout_s): scaled down with a short breaker window, so that several
    probes fit in it; never longer than a call's own timeout."""
    after = min(PROBE_AFTER_S, limits.circuit_breaker_s / 6, limits.timeout_s)
    return after, min(PROBE_TIMEOUT_S, limits.circuit_breaker_s / 3, limits.timeout_s)


class _StallNote:
    """While the endpoint is silent the progress bar says so, with no ETA (a rate measured
    before the stall would promise hours)."""

    FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA unknown{postfix}]"

    def __init__(self, bar, probe_url: str):
        self.bar = bar
        self.probe_url = probe_url
        self.postfix = ""

    def __call__(self, silent_s: float) -> None:
        if silent_s:
            if self.bar.bar_format != self.FORMAT:
                self.postfix = self.bar.postfix or ""
                self.bar.bar_format = self.FORMAT
            self.bar.set_postfix_str(f"no HTTP answer for {silent_s:.0f} s, probing {self.probe_url}")
        else:
            self.bar.bar_format = None
            self.bar.set_postfix_str(self.postfix, refresh=False)


def _short(text: Any, limit: int = _ERROR_TEXT_MAX) -> str:
    s = redact.redact(str(text))
    return s if len(s) <= limit else s[:limit] + "..."


def _retry_after(headers: httpx2.Headers | None) -> float | None:
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            import email.utils

            try:
                seconds = email.utils.mktime_tz(email.utils.parsedate_tz(value)) - time.time()
            except (TypeError, ValueError, OverflowError):
                continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


class LLMClient:
    """Chat completions for one stage through one endpoint, cached in ``cache_path``.

    ``endpoint`` (what changes answers) and ``runtime`` (limits, cache, prices, budget) are the
    typed settings of bpo.settings, built once from the validated config (:func:`make_client`, or
    :func:`client_from_mapping` for an entry written in code). For ``backend: openai`` the API key
    is read from the environment variable ``api_key_env`` here, before anything else happens
    (``check_key=False`` defers that to ``run``, e.g. for a dry-run estimate without a key).
    """

    def __init__(self, endpoint: EndpointSettings, runtime: LLMRuntime, stage: str, *, progress: bool | None = None,
                 check_key: bool = True):
        if not stage or not isinstance(stage, str):
            raise LLMError("LLMClient: stage must be a non-empty string (it labels cache rows and usage)")
        self.name, self.backend, self.stage = endpoint.name, endpoint.backend, stage
        where = f"llm.endpoints.{self.name}"
        self.limits = Limits.from_mapping(runtime.limits.canonical(), f"{where}.limits")
        self.local: dict[str, Any] | None = dict(endpoint.local.canonical()) if endpoint.local else None
        self.base_url = LOCAL_BASE_URL if self.local else endpoint.base_url or DEFAULT_BASE_URL
        self.api_key_env = endpoint.api_key_env
        self._where = where
        self._header_templates = dict(endpoint.default_headers)
        self.cache_path = os.fspath(runtime.cache_path)
        self.prices = dict(runtime.prices)
        self.default_budget_usd = runtime.budget_usd
        self.progress = progress
        self._ssl: ssl.SSLContext | None = None
        # where answers come from in the cache: the stand-in's rows are never served as real
        # ones; a local model's are labelled with its weights (resolved on first use)
        self._source: str | None = None if self.local else "standin" if self.backend == "standin" else "openai"
        self.last_stats: dict[str, Any] = {}
        self._n_failed = 0
        # whatever a server echoes of this endpoint's key or headers is masked everywhere
        redact.register_env(endpoint.api_key_env, *redact.header_env_names(endpoint.default_headers))
        if self.backend == "openai" and check_key:
            self._api_key()
        for noisy in ("httpx2", "httpx"):  # one INFO line per HTTP request would drown the stage log
            if logging.getLogger(noisy).level == logging.NOTSET:
                logging.getLogger(noisy).setLevel(logging.WARNING)

    # ---- configuration ---------------------------------------------------------------------
    @property
    def source(self) -> str:
        """The cache rows this client reads and writes: ``openai``, ``standin`` or, for backend
        local, ``local:<hash of the weights, dtype and engine>`` (bpo.llm.local)."""
        if self._source is None:
            assert self.local is not None
            try:
                self._source = local_source(self.local["model"], self.local["dtype"], self.local["engine"])
            except (OSError, ValueError) as exc:
                raise LLMError(f"config {self._where}.model: {exc}") from exc
            log.info("endpoint '%s': backend local, model %s: cache source %s", self.name, self.local["model"],
                     self._source)
        return self._source

    def _price(self, model: str) -> Mapping[str, float] | None:
        return None if self.backend in _FREE else price_for(self.prices, model)

    def _api_key(self) -> str:
        if self.backend in _FREE:
            return f"{self.backend}-no-key"
        env = self.api_key_env
        if env is None:  # a local server without auth: the SDK still wants a non-empty key
            return "no-key"
        value = os.environ.get(env, "")
        redact.register_value(value.strip())
        if not value.strip():
            raise MissingAPIKey(
                f"{self._where}: the API key environment variable {env} (api_key_env) is not set or empty; "
                f"nothing was sent. Export it, or set api_key_env: null for a server without auth."
            )
        return value.strip()

    def _headers(self) -> dict[str, str]:
        # ${VAR} in a header value is read from the environment, so secrets stay out of config
        out = {}
        for k, v in self._header_templates.items():
            v = str(v)
            if v.startswith("${") and v.endswith("}"):
                var = v[2:-1]
                if var not in os.environ:
                    raise MissingAPIKey(f"{self._where}.default_headers.{k}: environment variable {var} is not set")
                v = os.environ[var]
                redact.register_value(v)
            out[str(k)] = v
        return out

    def _session(self) -> tuple[AsyncOpenAI, Any]:
        conc = self.limits.max_concurrency
        if self.backend == "standin":
            transport: httpx2.AsyncBaseTransport = StandinTransport()
            http_client = httpx2.AsyncClient(transport=transport, trust_env=False)
            base_url = STANDIN_BASE_URL
        elif self.local is not None:
            worker = local_worker(self.local["model"], self.local["dtype"])
            worker.max_batch_size = self.limits.max_batch_size
            worker.batch_wait_s = self.limits.batch_wait_s
            transport = LocalTransport(worker, self.local["engine"], self.source, self.local["default_max_tokens"])
            http_client = httpx2.AsyncClient(transport=transport, trust_env=False)
            base_url = LOCAL_BASE_URL
        elif self.limits.transport == "lean" and not proxy_configured(self.base_url):
            if self._ssl is None and self.base_url.startswith("https"):
                self._ssl = default_ssl_context()
            transport = LeanAsyncTransport(conc, ssl_context=self._ssl)
            http_client = httpx2.AsyncClient(transport=transport, trust_env=False)
            base_url = self.base_url
        else:
            transport = None
            http_client = httpx2.AsyncClient(
                limits=httpx2.Limits(max_connections=conc, max_keepalive_connections=conc), trust_env=True)
            base_url = self.base_url
        client = AsyncOpenAI(
            api_key=self._api_key(), base_url=base_url, http_client=http_client, max_retries=0,
            timeout=httpx2.Timeout(self.limits.timeout_s, connect=min(10.0, self.limits.timeout_s)),
            default_headers=self._headers() or None,
        )
        # The SDK detects the platform (for its user-agent headers) in a worker thread on a
        # client's first request; with N workers starting at once that is N thread hops before
        # anything is sent. Detect it once here (a few ms; skipped if the SDK changes).
        if getattr(client, "_platform", False) is None:
            try:
                from openai._base_client import get_platform

                client._platform = get_platform()
            except Exception:  # noqa: BLE001 - an optimisation only
                pass
        return client, transport

    def _prober(self):
        """``(probe, http client)`` for the breaker's liveness probes, or None for backends that
        cannot hang (stand-in, local). The probe has its own connection (a pool full of hung calls
        must not hold it up) and sends no credentials; it goes through the proxy the calls use."""
        if self.backend != "openai":
            return None
        if self.limits.transport == "lean" and not proxy_configured(self.base_url):
            if self._ssl is None and self.base_url.startswith("https"):
                self._ssl = default_ssl_context()
            http = httpx2.AsyncClient(transport=LeanAsyncTransport(1, ssl_context=self._ssl), trust_env=False)
        else:
            http = httpx2.AsyncClient(trust_env=True)
        url = f"{self.base_url.rstrip('/')}/models"

        async def probe_once(timeout: float):
            return await probe(http, url, timeout)

        return probe_once, http

    # ---- public API ------------------------------------------------------------------------
    def estimate(self, requests: Iterable[ChatRequest]) -> Estimate:
        """Calls, cache hits, tokens and cost a run would make. Sends nothing."""
        requests = self._check(requests)
        unique = {r.key: r for r in requests}
        est = Estimate(requests=len(requests), unique=len(unique), backend=self.backend)
        if not unique:
            return est
        with Cache(self.cache_path) as cache:
            hit = cache.has_many(list(unique), self.source)
        est.cached = len(hit)
        unpriced = set()
        usd = 0.0
        for key, req in unique.items():
            if key in hit:
                continue
            est.calls += 1
            pt, ct = req.estimated_prompt_tokens(), req.estimated_completion_tokens()
            est.prompt_tokens += pt
            est.completion_tokens += ct
            if self.backend in _FREE:
                continue
            price = self._price(req.model)
            if price is None:
                unpriced.add(req.model)
            else:
                usd += cost_usd(price, pt, ct)
        est.unpriced_models = sorted(unpriced)
        est.usd = None if unpriced else round(usd, 6)
        return est

    def run(self, requests: Iterable[ChatRequest], budget_usd: float | None = None) -> list[ChatResult]:
        """Answer ``requests`` (same order). Blocks; see :meth:`arun` inside an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(requests, budget_usd))
        raise LLMError("LLMClient.run() was called inside a running event loop; use `await client.arun(...)`")

    async def arun(self, requests: Iterable[ChatRequest], budget_usd: float | None = None) -> list[ChatResult]:
        requests = self._check(requests)
        if self.backend == "openai":
            self._api_key()  # before anything: a missing key sends nothing
            self._headers()
        budget = self.default_budget_usd if budget_usd is None else budget_usd
        if budget is not None and self.backend not in _FREE:  # stand-in and local are free
            unpriced = sorted({r.model for r in requests if price_for(self.prices, r.model) is None})
            if unpriced:
                raise LLMError(f"stage '{self.stage}': a budget of ${budget} is set but llm.prices has no price "
                               f"for model(s) {unpriced}; add {{input, output}} USD per million tokens")
        t0 = time.perf_counter()
        self._n_failed = 0
        results: list[ChatResult | None] = [None] * len(requests)
        first: dict[str, int] = {}
        for i, r in enumerate(requests):
            first.setdefault(r.key, i)
        cache = Cache(self.cache_path)
        try:
            hits = cache.get_many(list(first), self.source)
            result_backend = self.backend
            for key, row in hits.items():
                results[first[key]] = _from_row(row, result_backend)
            todo = [(key, requests[i]) for key, i in first.items() if key not in hits]
            if self.backend == "replay" and todo:
                models = sorted({r.model for _, r in todo})
                raise ReplayMiss(
                    f"stage '{self.stage}': backend replay has no cached answer for {len(todo)} of {len(first)} "
                    f"distinct requests (models {models}; first missing key {todo[0][0][:16]}) in {self.cache_path}. "
                    f"Import a shared cache (`bpo cache import FILE.parquet --cache {self.cache_path}`) or use "
                    f"backend openai to make the calls.", missing=len(todo), total=len(first))
            if self.backend == "standin":
                log.warning("stage '%s': backend standin: answers come from the offline stand-in (%s), NOT a real model",
                            self.stage, STANDIN_MODEL)
            stats = await self._dispatch(todo, results, first, cache, len(hits), budget)
        finally:
            cache.close()
        # duplicates of a key share its answer; they never reached the endpoint
        for i, r in enumerate(requests):
            if results[i] is None:
                j = first[r.key]
                if results[j] is not None and j != i:
                    results[i] = dataclasses.replace(results[j], cached=True)
        stats.update(requests=len(requests), distinct=len(first), cached=len(hits), seconds=round(time.perf_counter() - t0, 3))
        self.last_stats = stats
        log.info("stage '%s' [%s %s]: %d requests, %d distinct, %d cached, %d answered by another run, %d sent "
                 "(%d ok, %d truncated, %d refused, %d failed), %d retries, %d prompt + %d completion tokens, ~$%.4f, "
                 "%.1f s", self.stage, self.backend, self.name, len(requests), len(first), len(hits),
                 stats["awaited"], stats["sent"],
                 stats["ok"], stats["truncated"], stats["refused"], stats["error"], stats["retries"],
                 stats["prompt_tokens"], stats["completion_tokens"], stats["spent_usd"], stats["seconds"])
        if stats.get("engines"):
            log.info("stage '%s': local model %s (cache source %s) generated with engine %s", self.stage,
                     self.local["model"], self.source, ", ".join(stats["engines"]))
        if stats.get("cache_error"):
            raise LLMError(f"stage '{self.stage}': cannot write answers to the LLM cache {self.cache_path} "
                           f"(config llm.cache): {stats['cache_error']}; {stats.get('unstored', 0)} answered "
                           f"calls could not be stored, the run stopped")
        if stats.get("fatal"):
            raise EndpointUnreachable(
                f"stage '{self.stage}': endpoint '{self.name}' ({self._where}, base_url {self.base_url}): "
                f"{stats['fatal']}; stopped after {stats['sent']} calls (answered ones are cached)",
                endpoint=self.name, base_url=self.base_url)
        if stats.get("unreachable"):
            raise EndpointUnreachable(
                f"stage '{self.stage}': endpoint '{self.name}' ({self._where}) at base_url {self.base_url} is "
                f"unreachable: {stats['unreachable']}; stopped after {stats['sent']} calls, answers received "
                f"before are cached. Check that base_url points at a live OpenAI-compatible HTTP server and the "
                f"network (DNS, TLS, proxy), then rerun; the wait is "
                f"{self._where}.limits.circuit_breaker_s.", endpoint=self.name, base_url=self.base_url)
        if stats.get("budget_stop"):
            answered = sum(r is not None for r in results)
            remaining = len(requests) - answered
            raise BudgetExceeded(
                f"stage '{self.stage}': budget cap of ${budget:.4f} reached: spent ~${stats['spent_usd']:.4f} on "
                f"{stats['sent']} new calls this run (estimated from llm.prices); {remaining} of {len(requests)} "
                f"requests not sent. Everything answered is cached: rerun to continue (each run may spend up to "
                f"the budget), or raise the budget.",
                spent_usd=stats["spent_usd"], budget_usd=budget, answered=answered, remaining=remaining,
                results=results)
        return results  # type: ignore[return-value]

    # ---- internals -------------------------------------------------------------------------
    @staticmethod
    def _check(requests: Iterable[ChatRequest]) -> list[ChatRequest]:
        requests = list(requests)
        for i, r in enumerate(requests):
            if not isinstance(r, ChatRequest):
                raise LLMError(f"request {i} is a {type(r).__name__}, not a bpo.llm.ChatRequest")
        return requests

    def _show_progress(self) -> bool:
        if self.progress is not None:
            return self.progress
        return os.environ.get("BPO_PROGRESS", "1") != "0"

    async def _dispatch(self, todo, results, first, cache: Cache, n_cached: int, budget: float | None) -> dict:
        stats = {"sent": 0, "ok": 0, "truncated": 0, "refused": 0, "error": 0, "retries": 0,
                 "prompt_tokens": 0, "completion_tokens": 0, "spent_usd": 0.0, "awaited": 0}
        if not todo:
            return stats
        from tqdm import tqdm

        bar = tqdm(total=len(first), initial=n_cached, desc=f"{self.stage} [{self.backend}]", unit="call",
                   file=sys.stderr, disable=not self._show_progress(), dynamic_ncols=True,
                   mininterval=1.0 if sys.stderr.isatty() else 15.0, postfix=f"cached={n_cached}")
        loop = asyncio.get_running_loop()
        pending: list[dict] = []
        failures: list[dict] = []
        flush_scheduled = False
        state: dict[str, Any] = {"reserved": 0.0, "stop": None}
        # the stand-in is free and instant: nothing to share with other processes (a local
        # model's generations are worth not repeating, so they are claimed like paid calls)
        owner = new_owner() if self.source != "standin" else None

        def cache_failed(exc: Exception, unstored: int = 0) -> None:
            state["stop"] = "cache"
            stats["cache_error"] = f"{type(exc).__name__}: {exc}"
            stats["unstored"] = stats.get("unstored", 0) + unstored

        def flush() -> None:
            # one transaction for every answer that arrived in this loop iteration (it also
            # releases their claims, so a process waiting for them finds them at once)
            nonlocal flush_scheduled
            flush_scheduled = False
            batch, pending[:] = list(pending), []
            fails, failures[:] = list(failures), []
            try:
                cache.store(batch, fails, owner)
            except Exception as exc:  # noqa: BLE001 - an answer we cannot store must stop the run
                cache_failed(exc, len(batch))

        def store(row: dict, failed: bool = False) -> None:
            nonlocal flush_scheduled
            (failures if failed else pending).append(row)
            if not flush_scheduled:
                flush_scheduled = True
                loop.call_soon(flush)

        limiter = RateLimiter(self.limits)
        breaker = _Breaker(self.limits.circuit_breaker_s, *_probe_timing(self.limits))
        n_workers = min(self.limits.max_concurrency, len(todo))
        requests_by_key = dict(todo)
        it = iter(todo)
        ready: deque = deque()  # (key, request) claimed by this run, not sent yet
        waiting: set[str] = set()  # keys another live process has in flight
        poll_lock = asyncio.Lock()
        claim_batch = max(1, min(64, n_workers))
        source = self.source

        def claim(keys: list[str]) -> set[str]:
            """Claim ``keys``; answers found are settled, claimed keys queued. Returns the held ones."""
            try:
                claimed, answered, held = cache.claim(keys, source, owner)
            except Exception as exc:  # noqa: BLE001 - without claims we could pay twice: stop
                cache_failed(exc)
                return set()
            for key, row in answered.items():  # answered by another process meanwhile
                results[first[key]] = _from_row(row, self.backend)
                stats["awaited"] += 1
                bar.update(1)
            ready.extend((k, requests_by_key[k]) for k in claimed)
            return set(held)

        async def next_item():
            while not state["stop"]:
                if ready:
                    return ready.popleft()
                if owner is None:
                    return next(it, None)
                chunk = [k for k, _ in islice(it, claim_batch)]
                if chunk:
                    waiting.update(claim(chunk))
                    continue
                if not waiting:
                    return None
                if poll_lock.locked():  # another worker polls: wait for it, then look again
                    async with poll_lock:
                        continue
                async with poll_lock:
                    await breaker.sleep(CLAIM_POLL_S)
                    if not state["stop"]:
                        waiting.intersection_update(claim(sorted(waiting)))
            return None

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(CLAIM_LEASE_S / 4)
                try:
                    cache.renew_claims(owner)
                except Exception as exc:  # noqa: BLE001 - the next beat may succeed; the lease is long
                    log.warning("stage '%s': could not renew in-flight claims: %s", self.stage, exc)

        client, transport = self._session()

        async def worker() -> None:
            while True:
                item = await next_item()
                if item is None:
                    return
                key, req = item
                price = self._price(req.model)
                reserve = 0.0
                if budget is not None:
                    reserve = cost_usd(price, req.estimated_prompt_tokens(), req.estimated_completion_tokens()) or 0.0
                    if stats["spent_usd"] + state["reserved"] + reserve > budget:
                        state["stop"] = "budget"
                        return
                    state["reserved"] += reserve
                if limiter.active:
                    await limiter.acquire(req.estimated_prompt_tokens() + req.estimated_completion_tokens())
                stats["sent"] += 1
                try:
                    res, row, attempts = await self._call(client, req, limiter, stats, breaker)
                except _Fatal as exc:
                    state["stop"] = "fatal"
                    stats["fatal"] = str(exc)
                    return
                except _Stopped:
                    state["stop"] = "unreachable"
                    return
                finally:
                    state["reserved"] -= reserve
                spent = cost_usd(price, res.prompt_tokens, res.completion_tokens)
                if spent:
                    stats["spent_usd"] += spent
                stats[res.status] += 1
                stats["prompt_tokens"] += res.prompt_tokens or 0
                stats["completion_tokens"] += res.completion_tokens or 0
                results[first[key]] = res
                if row is not None:
                    store(row)
                else:
                    store({"key": key, "backend": source, "stage": self.stage, "model": req.model,
                           "error": res.error, "attempts": attempts}, failed=True)
                    bar.set_postfix_str(f"cached={n_cached} failed={stats['error']}", refresh=False)
                bar.update(1)
                # yield once: the flush queued above runs before this worker sends again, so an
                # answer is committed before its worker's next call (kill -9 loses in-flight only)
                await asyncio.sleep(0)

        beat = asyncio.ensure_future(heartbeat()) if owner is not None else None
        prober = self._prober()
        watch = None
        if prober is not None:
            if not bar.disable:
                breaker.on_stall = _StallNote(bar, f"{self.base_url.rstrip('/')}/models")
            watch = asyncio.ensure_future(breaker.watch(prober[0], self.name, self.base_url))
        # Wait for every worker, a worker's error or a trip, whichever comes first (a trip ends the
        # calls still waiting on a hung server too). Done-callbacks, not asyncio.wait in a loop: that
        # costs O(workers) per finished worker.
        settled = asyncio.Event()
        left = [n_workers]

        def worker_done(task: asyncio.Future) -> None:
            left[0] -= 1
            if not left[0] or (not task.cancelled() and task.exception() is not None):
                settled.set()

        tasks = [asyncio.ensure_future(worker()) for _ in range(n_workers)]
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
                state["stop"] = state["stop"] or "unreachable"
        finally:
            for task in (*tasks, stopper):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if watch is not None:
                if watch.done() and not watch.cancelled() and watch.exception() is not None:
                    log.error("endpoint '%s': the liveness watch failed: %r", self.name, watch.exception())
                watch.cancel()
            if prober is not None:
                await prober[1].aclose()
            if beat is not None:
                beat.cancel()
            if pending or failures:
                flush()
            if owner is not None:
                try:
                    cache.release_claims(owner)  # claimed but never sent (a stop): free for others
                except Exception as exc:  # noqa: BLE001 - they expire with the lease anyway
                    log.warning("stage '%s': could not release in-flight claims: %s", self.stage, exc)
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
        if state["stop"] == "budget":
            stats["budget_stop"] = True
        return stats

    async def _call(self, client: AsyncOpenAI, req: ChatRequest, limiter: RateLimiter, stats: dict,
                    breaker: _Breaker):
        """One request with retries: (ChatResult, cache row or None when failed, attempts)."""
        # the canonical JSON the key was computed from, sent as is (no second serialisation)
        content = req.body_json.encode("utf-8")
        lim = self.limits
        last_error = "no attempt made"
        attempt = 0
        for attempt in range(lim.max_retries + 1):
            if breaker.tripped.is_set():
                raise _Stopped
            if attempt:
                stats["retries"] += 1
            t = time.perf_counter()
            delay = None
            breaker.sending()
            try:
                resp = await client.post("/chat/completions", content=content, cast_to=httpx2.Response)
            except openai.APIStatusError as exc:
                breaker.reachable()
                code = exc.status_code
                detail = _short(getattr(exc, "message", "") or exc)
                if code in (401, 403):
                    raise _Fatal(f"the endpoint refused the API key (HTTP {code}): {detail}") from None
                if code == 404:
                    raise _Fatal(f"HTTP 404 (unknown model {req.model!r} or wrong base_url): {detail}") from None
                if code == 429 or code >= 500 or code in (408, 409):
                    last_error = f"HTTP {code}: {detail}"
                    delay = _retry_after(exc.response.headers)
                    if code == 429:
                        limiter.pause(delay if delay is not None else lim.backoff(attempt))
                else:  # 400, 422, ...: the request itself is wrong; retrying cannot help
                    return self._failed(req, f"HTTP {code}: {detail}", attempt + 1)
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                seen = no_answer(exc.__cause__ or exc)
                if isinstance(exc, openai.APITimeoutError) and (seen is None or seen[0] == "no reply in time"):
                    last_error = f"timed out after {lim.timeout_s:g} s"
                else:
                    last_error = f"connection error: {_short(exc.__cause__ or exc)}"
                if seen is None:  # a status line came, then the reply broke: the server is alive
                    breaker.reachable()
                else:
                    breaker.unreachable(seen[0], _short(seen[1]), self.name, self.base_url)
                    if breaker.tripped.is_set():
                        raise _Stopped from None
                    # retry within the breaker's window only, not with the full backoff
                    delay = min(lim.backoff(attempt), max(breaker.time_left(), 0.05))
            else:
                breaker.reachable()
                parsed = _parse(resp.content)
                if isinstance(parsed, str):
                    last_error = f"malformed response body: {parsed}"
                else:
                    return self._answered(req, parsed, time.perf_counter() - t, attempt + 1)
            finally:
                breaker.settled()
            if attempt < lim.max_retries:
                await breaker.sleep(delay if delay is not None else lim.backoff(attempt))
        return self._failed(req, f"gave up after {attempt + 1} attempts: {last_error}", attempt + 1)

    def _failed(self, req: ChatRequest, error: str, attempts: int):
        error = redact.redact(error)
        self._n_failed += 1
        if self._n_failed <= 20:  # a dead endpoint must not flood the log; the summary counts all
            log.warning("stage '%s': call %s (model %s) failed: %s%s", self.stage, req.key[:12], req.model, error,
                        " (further failures are only counted)" if self._n_failed == 20 else "")
        res = ChatResult(key=req.key, status="error", text=None, error=error, backend=self.backend,
                         model=None, cached=False)
        return res, None, attempts

    def _answered(self, req: ChatRequest, data: dict, latency: float, attempts: int):
        choices = data["choices"]
        first = choices[0]
        msg = first.get("message") or {}
        # Redacted here, once: the cache row, the result and every artifact column built from it
        # (critiques, answers, verdicts, rewrites) never hold a key the server echoed. The cache
        # key is the request's, so a redacted reply is still the cached answer to its request.
        # Fields of the wrong type are dropped or written as text, never stored as they came (a
        # dict cannot be stored, a string in a token count would break the Parquet export).
        finish = _text(first.get("finish_reason"), keep=False)
        refusal = _text(msg.get("refusal"))
        text = redact.redact(msg.get("content"))
        texts = tuple(redact.redact((c.get("message") or {}).get("content")) for c in choices)
        error = None
        if refusal or finish == "content_filter":
            status = "refused"
            error = f"refused: {_short(refusal)}" if refusal else "refused: finish_reason content_filter"
            if not text:
                text = refusal
        elif finish == "length":
            status = "truncated"
            error = "truncated: finish_reason length (max_tokens reached)"
        else:
            status = "ok"
        usage = data.get("usage") or {}
        pt = _count(usage.get("prompt_tokens"))
        ct = _count(usage.get("completion_tokens"))
        if pt is None:  # servers that omit usage: fall back to the estimate so costs stay visible
            pt = req.estimated_prompt_tokens()
        if ct is None:
            ct = sum((len(t or "") + 3) // 4 for t in texts)
        model = _text(data.get("model"), keep=False) or req.model
        row = result_row(key=req.key, backend=self.source, stage=self.stage, model=req.model, request=req.body_json,
                         status=status, text=text, choices=texts, finish_reason=finish, prompt_tokens=pt,
                         completion_tokens=ct, error=error, response_model=model, latency_s=round(latency, 4),
                         attempts=attempts)
        res = ChatResult(key=req.key, status=status, text=text, prompt_tokens=pt, completion_tokens=ct,
                         cached=False, error=error, backend=self.backend, model=model, finish_reason=finish,
                         choices=texts)
        return res, row, attempts


def _text(value: Any, keep: bool = True) -> str | None:
    """A reply field as redacted text: a non-string is written as JSON (``keep``) or dropped."""
    if value is None or isinstance(value, str):
        return redact.redact(value)
    return redact.redact(json.dumps(value, ensure_ascii=False, default=str)) if keep else None


def _count(value: Any) -> int | None:
    """A token count, or None when the server sent something else (the estimate is used)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**53:
        return None  # NaN fails the range check too
    return int(value) if float(value).is_integer() else None


def _parse(content: bytes) -> dict | str:
    """The reply as a dict with a usable first choice, or a short reason why not."""
    try:
        data = json.loads(content)
    except ValueError as exc:
        return f"not JSON ({exc.msg} at {exc.pos}; {len(content)} bytes)"
    if not isinstance(data, dict):
        return f"JSON {type(data).__name__}, not an object"
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        return "no choices"
    for c in choices:
        if not isinstance(c, dict) or not isinstance(c.get("message"), dict):
            return "a choice without a message"
        content_ = c["message"].get("content")
        if content_ is not None and not isinstance(content_, str):
            return "message content is not a string"
    usage = data.get("usage")
    if usage is not None and not isinstance(usage, dict):
        return "usage is not an object"
    return data


def _from_row(row: dict, backend: str) -> ChatResult:
    # rows are redacted when written; this also masks rows of a cache written before that
    # (or keys configured since), so no artifact built from a cached reply holds a key
    text = redact.redact(row["text"])
    texts: tuple = (text,)
    if row.get("choices"):
        texts = tuple(redact.redact(t) for t in json.loads(row["choices"]))
    return ChatResult(key=row["key"], status=row["status"], text=text, prompt_tokens=row["prompt_tokens"],
                      completion_tokens=row["completion_tokens"], cached=True, error=redact.redact(row["error"]),
                      backend=backend, model=redact.redact(row["response_model"]), finish_reason=row["finish_reason"],
                      choices=texts)


def make_client(endpoint: EndpointSettings, runtime: LLMRuntime, stage: str, *, check_key: bool = True,
                progress: bool | None = None) -> LLMClient:
    """The one way to build an LLM client: ``endpoint`` (what changes answers) plus ``runtime``
    (limits, cache path, prices, budget: what never does), both from :mod:`bpo.settings`."""
    return LLMClient(endpoint, runtime, stage, check_key=check_key, progress=progress)


def client_from_mapping(endpoint: Mapping[str, Any], cache_path: str | os.PathLike, stage: str,
                        prices: Mapping[str, Mapping[str, float]] | None = None, *, name: str | None = None,
                        budget_usd: float | None = None, progress: bool | None = None,
                        check_key: bool = True) -> LLMClient:
    """A client for an ``llm.endpoints.<name>`` entry written in code (tests, benchmarks): the
    schema validates it and fills its defaults, then it is built like any stage's."""
    from bpo.settings import ConfigError, SettingsError, endpoint_config

    name = name or str(endpoint.get("backend", "endpoint"))  # what error messages call it
    try:
        config = endpoint_config(name, endpoint, cache=os.fspath(cache_path), prices=dict(prices or {}))
        settings = EndpointSettings.from_config(config, name)
    except (ConfigError, SettingsError) as exc:
        raise LLMError(str(exc)) from None
    return make_client(settings, LLMRuntime.from_config(config, name, budget_usd=budget_usd), stage,
                       check_key=check_key, progress=progress)

