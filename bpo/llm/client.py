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
checked by liveness probes, or at the first 401/403/404. Everything a server sends back is
redacted (bpo.redact) before it is logged, stored or raised.

This module holds the client's configuration, its estimate and the run's outcome (results,
summary, the errors that stop a stage); the work is done by bpo.llm.session (key, headers, HTTP
stack), bpo.llm.dispatch (claims, workers, budget, progress), bpo.llm.retry (the retry policy),
bpo.llm.breaker (liveness) and bpo.llm.reply (reply bodies into results and cache rows).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bpo import redact
from bpo.llm.cache import Cache
from bpo.llm.dispatch import Dispatcher
from bpo.llm.errors import BudgetExceeded, EndpointUnreachable, LLMError, ReplayMiss
from bpo.llm.limits import Limits
from bpo.llm.local import LOCAL_BASE_URL, local_source
from bpo.llm.reply import from_row
from bpo.llm.request import ChatRequest, ChatResult, cost_usd, price_for
from bpo.llm.session import FREE, Session
from bpo.llm.standin import STANDIN_MODEL
from bpo.settings import EndpointSettings, LLMRuntime

log = logging.getLogger("bpo.llm")

BACKENDS = ("openai", "replay", "standin", "local")
DEFAULT_BASE_URL = "https://api.openai.com/v1"


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
        return (
            f"{self.requests} requests ({self.unique} distinct): {self.cached} cached, {self.calls} to send, "
            f"~{self.prompt_tokens} prompt + <= {self.completion_tokens} completion tokens, cost {cost} "
            f"[backend {self.backend}]"
        )


class LLMClient:
    """Chat completions for one stage through one endpoint, cached in ``cache_path``.

    ``endpoint`` (what changes answers) and ``runtime`` (limits, cache, prices, budget) are the
    typed settings of bpo.settings, built once from the validated config (:func:`make_client`, or
    :func:`client_from_mapping` for an entry written in code). For ``backend: openai`` the API key
    is read from the environment variable ``api_key_env`` here, before anything else happens
    (``check_key=False`` defers that to ``run``, e.g. for a dry-run estimate without a key).
    """

    def __init__(
        self,
        endpoint: EndpointSettings,
        runtime: LLMRuntime,
        stage: str,
        *,
        progress: bool | None = None,
        check_key: bool = True,
    ):
        if not stage or not isinstance(stage, str):
            raise LLMError("LLMClient: stage must be a non-empty string (it labels cache rows and usage)")
        self.name, self.backend, self.stage = endpoint.name, endpoint.backend, stage
        where = f"llm.endpoints.{self.name}"
        self.limits = Limits.from_mapping(runtime.limits.canonical(), f"{where}.limits")
        self.local: dict[str, Any] | None = dict(endpoint.local.canonical()) if endpoint.local else None
        self.base_url = LOCAL_BASE_URL if self.local else endpoint.base_url or DEFAULT_BASE_URL
        self.api_key_env = endpoint.api_key_env
        self._where = where
        self.session = Session(
            self.backend, self.base_url, self.api_key_env, endpoint.default_headers, self.limits, self.local, where
        )
        self.cache_path = os.fspath(runtime.cache_path)
        self.prices = dict(runtime.prices)
        self.default_budget_usd = runtime.budget_usd
        self.progress = progress
        # where answers come from in the cache: the stand-in's rows are never served as real
        # ones; a local model's are labelled with its weights (resolved on first use)
        self._source: str | None = None if self.local else "standin" if self.backend == "standin" else "openai"
        self.last_stats: dict[str, Any] = {}
        # whatever a server echoes of this endpoint's key or headers is masked everywhere
        redact.register_env(endpoint.api_key_env, *redact.header_env_names(endpoint.default_headers))
        if self.backend == "openai" and check_key:
            self.session.api_key()
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
            log.info(
                "endpoint '%s': backend local, model %s: cache source %s", self.name, self.local["model"], self._source
            )
        return self._source

    def price_of(self, model: str) -> Mapping[str, float] | None:
        """USD per million tokens for ``model``; None for a free backend or an unpriced model."""
        return None if self.backend in FREE else price_for(self.prices, model)

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
            if self.backend in FREE:
                continue
            price = self.price_of(req.model)
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
            self.session.api_key()  # before anything: a missing key sends nothing
            self.session.headers()
        budget = self.default_budget_usd if budget_usd is None else budget_usd
        if budget is not None and self.backend not in FREE:  # stand-in and local are free
            unpriced = sorted({r.model for r in requests if price_for(self.prices, r.model) is None})
            if unpriced:
                raise LLMError(
                    f"stage '{self.stage}': a budget of ${budget} is set but llm.prices has no price "
                    f"for model(s) {unpriced}; add {{input, output}} USD per million tokens"
                )
        t0 = time.perf_counter()
        results: list[ChatResult | None] = [None] * len(requests)
        first: dict[str, int] = {}
        for i, r in enumerate(requests):
            first.setdefault(r.key, i)
        cache = Cache(self.cache_path)
        try:
            hits = cache.get_many(list(first), self.source)
            result_backend = self.backend
            for key, row in hits.items():
                results[first[key]] = from_row(row, result_backend)
            todo = [(key, requests[i]) for key, i in first.items() if key not in hits]
            if self.backend == "replay" and todo:
                models = sorted({r.model for _, r in todo})
                raise ReplayMiss(
                    f"stage '{self.stage}': backend replay has no cached answer for {len(todo)} of {len(first)} "
                    f"distinct requests (models {models}; first missing key {todo[0][0][:16]}) in {self.cache_path}. "
                    f"Import a shared cache (`bpo cache import FILE.parquet --cache {self.cache_path}`) or use "
                    f"backend openai to make the calls.",
                    missing=len(todo),
                    total=len(first),
                )
            if self.backend == "standin":
                log.warning(
                    "stage '%s': backend standin: answers come from the offline stand-in (%s), NOT a real model",
                    self.stage,
                    STANDIN_MODEL,
                )
            stats = await self._dispatch(todo, results, first, cache, len(hits), budget)
        finally:
            cache.close()
        # duplicates of a key share its answer; they never reached the endpoint
        for i, r in enumerate(requests):
            if results[i] is None:
                j = first[r.key]
                if results[j] is not None and j != i:
                    results[i] = dataclasses.replace(results[j], cached=True)
        stats.update(
            requests=len(requests), distinct=len(first), cached=len(hits), seconds=round(time.perf_counter() - t0, 3)
        )
        self.last_stats = stats
        log.info(
            "stage '%s' [%s %s]: %d requests, %d distinct, %d cached, %d answered by another run, %d sent "
            "(%d ok, %d truncated, %d refused, %d failed), %d retries, %d prompt + %d completion tokens, ~$%.4f, "
            "%.1f s",
            self.stage,
            self.backend,
            self.name,
            len(requests),
            len(first),
            len(hits),
            stats["awaited"],
            stats["sent"],
            stats["ok"],
            stats["truncated"],
            stats["refused"],
            stats["error"],
            stats["retries"],
            stats["prompt_tokens"],
            stats["completion_tokens"],
            stats["spent_usd"],
            stats["seconds"],
        )
        if stats.get("engines"):
            log.info(
                "stage '%s': local model %s (cache source %s) generated with engine %s",
                self.stage,
                self.local["model"],
                self.source,
                ", ".join(stats["engines"]),
            )
        if stats.get("cache_error"):
            raise LLMError(
                f"stage '{self.stage}': cannot write answers to the LLM cache {self.cache_path} "
                f"(config llm.cache): {stats['cache_error']}; {stats.get('unstored', 0)} answered "
                f"calls could not be stored, the run stopped"
            )
        if stats.get("fatal"):
            raise EndpointUnreachable(
                f"stage '{self.stage}': endpoint '{self.name}' ({self._where}, base_url {self.base_url}): "
                f"{stats['fatal']}; stopped after {stats['sent']} calls (answered ones are cached)",
                endpoint=self.name,
                base_url=self.base_url,
            )
        if stats.get("unreachable"):
            raise EndpointUnreachable(
                f"stage '{self.stage}': endpoint '{self.name}' ({self._where}) at base_url {self.base_url} is "
                f"unreachable: {stats['unreachable']}; stopped after {stats['sent']} calls, answers received "
                f"before are cached. Check that base_url points at a live OpenAI-compatible HTTP server and the "
                f"network (DNS, TLS, proxy), then rerun; the wait is "
                f"{self._where}.limits.circuit_breaker_s.",
                endpoint=self.name,
                base_url=self.base_url,
            )
        if stats.get("budget_stop"):
            answered = sum(r is not None for r in results)
            remaining = len(requests) - answered
            raise BudgetExceeded(
                f"stage '{self.stage}': budget cap of ${budget:.4f} reached: spent ~${stats['spent_usd']:.4f} on "
                f"{stats['sent']} new calls this run (estimated from llm.prices); {remaining} of {len(requests)} "
                f"requests not sent. Everything answered is cached: rerun to continue (each run may spend up to "
                f"the budget), or raise the budget.",
                spent_usd=stats["spent_usd"],
                budget_usd=budget,
                answered=answered,
                remaining=remaining,
                results=results,
            )
        return results  # type: ignore[return-value]

    # ---- internals -------------------------------------------------------------------------
    @staticmethod
    def _check(requests: Iterable[ChatRequest]) -> list[ChatRequest]:
        requests = list(requests)
        for i, r in enumerate(requests):
            if not isinstance(r, ChatRequest):
                raise LLMError(f"request {i} is a {type(r).__name__}, not a bpo.llm.ChatRequest")
        return requests

    def show_progress(self) -> bool:
        if self.progress is not None:
            return self.progress
        return os.environ.get("BPO_PROGRESS", "1") != "0"

    async def _dispatch(self, todo, results, first, cache: Cache, n_cached: int, budget: float | None) -> dict:
        return await Dispatcher(self, todo, results, first, cache, n_cached, budget).run()


def make_client(
    endpoint: EndpointSettings, runtime: LLMRuntime, stage: str, *, check_key: bool = True, progress: bool | None = None
) -> LLMClient:
    """The one way to build an LLM client: ``endpoint`` (what changes answers) plus ``runtime``
    (limits, cache path, prices, budget: what never does), both from :mod:`bpo.settings`."""
    return LLMClient(endpoint, runtime, stage, check_key=check_key, progress=progress)


def client_from_mapping(
    endpoint: Mapping[str, Any],
    cache_path: str | os.PathLike,
    stage: str,
    prices: Mapping[str, Mapping[str, float]] | None = None,
    *,
    name: str | None = None,
    budget_usd: float | None = None,
    progress: bool | None = None,
    check_key: bool = True,
) -> LLMClient:
    """A client for an ``llm.endpoints.<name>`` entry written in code (tests, benchmarks): the
    schema validates it and fills its defaults, then it is built like any stage's."""
    from bpo.settings import ConfigError, SettingsError, endpoint_config

    name = name or str(endpoint.get("backend", "endpoint"))  # what error messages call it
    try:
        config = endpoint_config(name, endpoint, cache=os.fspath(cache_path), prices=dict(prices or {}))
        settings = EndpointSettings.from_config(config, name)
    except (ConfigError, SettingsError) as exc:
        raise LLMError(str(exc)) from None
    return make_client(
        settings,
        LLMRuntime.from_config(config, name, budget_usd=budget_usd),
        stage,
        check_key=check_key,
        progress=progress,
    )
