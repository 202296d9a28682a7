"""Replies into results: a server's reply body checked, redacted and turned into a ChatResult
and its cache row; a cached row turned back into a ChatResult."""

from __future__ import annotations

import json
from typing import Any

from bpo import redact
from bpo.llm.breaker import short
from bpo.llm.cache_rows import result_row
from bpo.llm.request import ChatRequest, ChatResult


def answered(req: ChatRequest, data: dict, latency: float, attempts: int, *, source: str, stage: str, backend: str):
    """``(ChatResult, cache row, attempts)`` for a reply ``data`` that :func:`parse` accepted."""
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
        error = f"refused: {short(refusal)}" if refusal else "refused: finish_reason content_filter"
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
    row = result_row(
        key=req.key,
        backend=source,
        stage=stage,
        model=req.model,
        request=req.body_json,
        status=status,
        text=text,
        choices=texts,
        finish_reason=finish,
        prompt_tokens=pt,
        completion_tokens=ct,
        error=error,
        response_model=model,
        latency_s=round(latency, 4),
        attempts=attempts,
    )
    res = ChatResult(
        key=req.key,
        status=status,
        text=text,
        prompt_tokens=pt,
        completion_tokens=ct,
        cached=False,
        error=error,
        backend=backend,
        model=model,
        finish_reason=finish,
        choices=texts,
    )
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


def parse(content: bytes) -> dict | str:
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


def from_row(row: dict, backend: str) -> ChatResult:
    """A cached answer as the ChatResult a call would have given (``cached=True``)."""
    # rows are redacted when written; this also masks rows of a cache written before that
    # (or keys configured since), so no artifact built from a cached reply holds a key
    text = redact.redact(row["text"])
    texts: tuple = (text,)
    if row.get("choices"):
        texts = tuple(redact.redact(t) for t in json.loads(row["choices"]))
    return ChatResult(
        key=row["key"],
        status=row["status"],
        text=text,
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cached=True,
        error=redact.redact(row["error"]),
        backend=backend,
        model=redact.redact(row["response_model"]),
        finish_reason=row["finish_reason"],
        choices=texts,
    )
