"""LLM calls of the evaluation stages through the shared LLM layer (cached, rate-limited)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


class EvalCallError(RuntimeError):
    """Every call of a stage failed: nothing to evaluate, and no point writing an artifact."""


def run_unique(client, requests: Sequence, *, what: str) -> list:
    """Run ``requests`` with each distinct request sent once (an unchanged prompt and its
    original are the same call); results come back in request order."""
    unique: dict[str, Any] = {}
    for req in requests:
        unique.setdefault(req.key, req)
    results = client.run(list(unique.values()))
    by_key = {req_key: res for req_key, res in zip(unique, results)}
    out = [by_key[req.key] for req in requests]
    statuses = Counter(r.status for r in results)
    cached = sum(1 for r in results if r.cached)
    log.info(
        "%s: %d requests, %d distinct, %d from cache, statuses %s",
        what,
        len(requests),
        len(unique),
        cached,
        dict(statuses),
    )
    if results and statuses.get("error", 0) == len(results):
        first = next((r.error for r in results if r.error), "no error message")
        raise EvalCallError(f"{what}: all {len(results)} calls failed (first error: {first})")
    return out
