"""The cache row: its columns, its Parquet form (``bpo cache export``), how it is built and redacted."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import pyarrow as pa

from bpo.redact import redact

COLUMNS = (
    "key",
    "backend",
    "stage",
    "model",
    "response_model",
    "status",
    "text",
    "choices",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "error",
    "request",
    "created",
    "latency_s",
    "attempts",
)
# Text that may quote a server or the data: redacted on every write. key and backend are the
# row's identity (a hash and a source label): changing them would orphan the row.
REDACTED = frozenset(
    ("stage", "model", "response_model", "status", "text", "choices", "finish_reason", "error", "request")
)

# The Parquet form of the cache (`bpo cache export`), one row per answered call.
CACHE_EXPORT_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("backend", pa.string(), nullable=False),  # openai | standin | local:<hash> (who answered)
        pa.field("stage", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),  # requested model
        pa.field("response_model", pa.string()),  # model the server reported
        pa.field("status", pa.string(), nullable=False),  # ok | truncated | refused
        pa.field("text", pa.string()),
        pa.field("choices", pa.string()),  # JSON list of all choice texts when n > 1
        pa.field("finish_reason", pa.string()),
        pa.field("prompt_tokens", pa.int64()),
        pa.field("completion_tokens", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("request", pa.string(), nullable=False),  # JSON request body (no auth)
        pa.field("created", pa.float64(), nullable=False),
        pa.field("latency_s", pa.float64()),
        pa.field("attempts", pa.int64()),
    ]
)


def call_values(row: dict) -> tuple:
    """A row's values in COLUMNS order, its text redacted."""
    # a reply, an error text or a model name may quote a server that echoes a key
    return tuple(redact(row.get(c)) if c in REDACTED else row.get(c) for c in COLUMNS)


def result_row(
    *,
    key: str,
    backend: str,
    stage: str,
    model: str,
    request: dict | str,
    status: str,
    text: str | None,
    choices: Sequence | None,
    finish_reason: str | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    error: str | None,
    response_model: str | None,
    latency_s: float | None,
    attempts: int,
) -> dict:
    """A row of ``calls`` for an answered call (``choices`` kept only when there are several)."""
    return {
        "key": key,
        "backend": backend,
        "stage": stage,
        "model": model,
        "response_model": response_model,
        "status": status,
        "text": text,
        "choices": json.dumps(list(choices), ensure_ascii=False) if choices and len(choices) > 1 else None,
        "finish_reason": finish_reason,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "error": error,
        "request": request if isinstance(request, str) else json.dumps(request, ensure_ascii=False, sort_keys=True),
        "created": time.time(),
        "latency_s": latency_s,
        "attempts": attempts,
    }
