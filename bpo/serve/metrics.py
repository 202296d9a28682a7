"""The proxy's Prometheus metrics (``GET /metrics``), in a registry of its own per app.

Under ``bpo serve --workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before it starts
the workers: prometheus_client then keeps every value in a file there, and a scrape answered by
any worker adds up all of them (the queue depth too: live processes only)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

# Rewrites take ms (cache) to seconds (a model on CPU); upstream LLM calls up to minutes.
_REWRITE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "bpo_serve_requests", "HTTP requests by endpoint and status code", ["endpoint", "code"], registry=r
        )
        self.rewrites = Counter(
            "bpo_serve_rewrites",
            "prompts handled by the rewriter, by outcome "
            "(rewritten, fallback, skipped) and source (optimizer, cache, inline, none)",
            ["outcome", "source"],
            registry=r,
        )
        self.fallbacks = Counter(
            "bpo_serve_fallbacks", "original prompt sent instead of a rewrite, by reason", ["reason"], registry=r
        )
        self.skipped = Counter(
            "bpo_serve_rewrites_skipped",
            "requests not rewritten, by reason (opt_out, no_user_text)",
            ["reason"],
            registry=r,
        )
        self.rejected = Counter("bpo_serve_queue_rejected", "rewrites refused with 429: queue full", registry=r)
        self.queue_depth = Gauge(
            "bpo_serve_queue_depth", "rewrites waiting for a batch", registry=r, multiprocess_mode="livesum"
        )
        self.batch_size = Histogram(
            "bpo_serve_rewrite_batch_size",
            "prompts per optimizer batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.rewrite_seconds = Histogram(
            "bpo_serve_rewrite_seconds",
            "time to the rewrite of one request (queue, batch and cache included)",
            buckets=_REWRITE_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "bpo_serve_upstream_seconds",
            "upstream call time (to the last byte)",
            ["endpoint"],
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "bpo_serve_upstream_errors",
            "upstream calls that got no HTTP response (timeout, connection) or an invalid one (invalid_reply)",
            ["kind"],
            registry=r,
        )

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # every worker's values
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
