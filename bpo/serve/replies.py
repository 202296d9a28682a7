"""Upstream replies on their way to a client: decoded, checked, redacted, with the rewrite's audit added.

A reply a client would be misled by (not JSON, not an event stream, an encoding the proxy
cannot check) is an OpenAI-style 502; every byte a client gets is redacted (bpo.redact, streams
through :class:`bpo.serve.sse.StreamRedactor`).
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import AsyncIterator
from urllib.parse import quote

from bpo.redact import redact
from bpo.serve.batcher import Outcome
from bpo.serve.inbound import ApiError
from bpo.serve.metrics import ServeMetrics
from bpo.serve.rewriter import Rewrite
from bpo.serve.sse import MAX_EVENT, StreamRedactor, event_data, event_end, inject_first_event, redact_bytes
from bpo.serve.upstream import UpstreamResponse

log = logging.getLogger("bpo.serve.app")  # the proxy's one logger name (what operators filter on)

PROMPT_HEADER_MAX = 4096  # longer prompts only in the body's `bpo` field (clients cap header sizes)
# Hop-by-hop and framing headers: the proxy's server sets its own.
DROP_RESPONSE_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "date",
    "server",
    "set-cookie",
}


def passthrough_headers(headers: list[tuple[str, str]]) -> dict:
    """The upstream's reply headers a client gets (framing ones dropped), not yet redacted."""
    return {k: v for k, v in headers if k not in DROP_RESPONSE_HEADERS}


def redacted(content: bytes, headers: dict) -> tuple[bytes, dict]:
    """A reply's body and header values with every secret masked: one redaction pass over them
    all, then part by part only when it found something (most replies hold no secret)."""
    text = content.decode("utf-8", "surrogateescape")
    joined = "\n".join((text, *headers.values()))
    if redact(joined) == joined:
        return content, headers
    return redact_bytes(content), {k: redact(v) for k, v in headers.items()}


def invalid_reply(message: str) -> ApiError:
    return ApiError(502, message, "server_error", "upstream_invalid_reply")


MAX_DECODED = 64 << 20


def decoded(content: bytes, headers: list[tuple[str, str]]) -> tuple[bytes, list[tuple[str, str]]]:
    """The reply's bytes without a content-encoding (identity is asked for; gzip or deflate sent
    anyway is decoded): the JSON check and redaction need the text. Other encodings: 502."""
    encoding = next((v.strip().lower() for k, v in headers if k == "content-encoding"), "identity")
    if encoding == "identity":
        return content, headers
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise invalid_reply(f"upstream reply has content-encoding {encoding!r}, which the proxy cannot check")
    try:
        d = zlib.decompressobj(47)  # 32 + 15: a gzip or zlib header, detected
        content = d.decompress(content, MAX_DECODED)
        if d.unconsumed_tail:
            raise invalid_reply(f"upstream reply over {MAX_DECODED} bytes once decoded")
    except zlib.error:
        raise invalid_reply(f"upstream reply is not valid {encoding}") from None
    return content, [(k, v) for k, v in headers if k != "content-encoding"]


def json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def content_type(headers: list[tuple[str, str]]) -> str:
    return next((v for k, v in headers if k == "content-type"), "")


def audit_record(sent: str, status: str, outcome: Outcome | None) -> dict:
    r: Rewrite | None = outcome.rewrite if outcome else None
    return {
        "prompt": sent,
        "rewrite": status,
        "fallback_reason": r.fallback_reason if r else None,
        "cached": bool(outcome and outcome.source == "cache"),
    }


def rewrite_status(outcome: Outcome, original: str) -> str:
    if outcome.rewrite.fallback_reason:
        return "fallback"
    return "rewritten" if outcome.rewrite.text != original else "unchanged"


def audit_headers(audit: dict) -> dict:
    headers = {"x-bpo-rewrite": audit["rewrite"]}
    if audit["fallback_reason"]:
        headers["x-bpo-fallback-reason"] = audit["fallback_reason"]
    if audit["rewrite"] == "rewritten":  # otherwise the client has the prompt already
        encoded = quote(redact(audit["prompt"]), safe="")  # redacted before encoding hides a key's bytes
        if len(encoded) <= PROMPT_HEADER_MAX:
            headers["x-bpo-prompt"] = encoded
    return headers


async def open_stream(resp: UpstreamResponse, audit: bytes) -> tuple[bytes, bytes, AsyncIterator[bytes]]:
    """Read the upstream's stream up to its first data event, before the client's reply starts:
    (those bytes with the audit field added, the bytes read after them, the rest of the stream).
    A reply that is not an event stream of JSON data is :class:`ApiError` 502."""
    ctype = content_type(resp.headers)
    if not ctype.lower().startswith("text/event-stream"):
        raise invalid_reply(
            f"upstream answered a streaming request with content-type {ctype or 'none'!r}, not an event stream"
        )
    if any(k == "content-encoding" and v.strip().lower() != "identity" for k, v in resp.headers):
        raise invalid_reply("upstream event stream has a content-encoding, which the proxy cannot check")
    chunks = resp.iter_bytes()
    buf, start = b"", 0
    while True:
        end, sep = event_end(buf, start)
        if end < 0:
            if len(buf) - start > MAX_EVENT:
                raise invalid_reply(f"upstream event stream: no event end in its first {MAX_EVENT} bytes")
            chunk = await anext(chunks, None)
            if chunk is None:
                raise invalid_reply("upstream event stream ended before its first data event")
            buf += chunk
            continue
        data = event_data(buf[start:end])
        if data is None:  # a comment or keep-alive before the data: passed on as it came
            start = end + sep
            continue
        if data != b"[DONE]" and not json_object(data):
            raise invalid_reply("upstream event stream: its first data event is not a JSON object")
        return buf[:start] + inject_first_event(buf[start:end], audit) + buf[end : end + sep], buf[end + sep :], chunks


async def stream_redacted(
    resp: UpstreamResponse, head: bytes, buf: bytes, chunks: AsyncIterator[bytes], metrics: ServeMetrics, t0: float
):
    """The stream to the client, whole events at a time, redacted by :class:`StreamRedactor`
    (a key spread over several events too). When the upstream breaks off, the whole events read
    still go out, then the held text; the client sees no ``[DONE]``."""
    redactor = StreamRedactor()
    try:
        out, _ = redactor.events(head)
        more, buf = redactor.events(buf)
        yield out + more  # at once: the client's first event does not wait for the next
        try:
            async for chunk in chunks:
                buf += chunk
                out, buf = redactor.events(buf)
                if len(buf) > MAX_EVENT:  # no event end in sight: forward it in pieces
                    out, buf = out + redact_bytes(buf), b""
                if out:
                    yield out
            tail = redact_bytes(buf) if buf else b""  # a last event without its blank line
        except Exception as exc:  # the stream broke upstream: end ours
            log.warning("upstream stream ended early: %s", type(exc).__name__)
            tail = b""
        tail = redactor.flush() + tail
        if tail:
            yield tail
    finally:  # also when the client went away mid-stream: the upstream connection goes back
        await resp.aclose()
        metrics.upstream_seconds.labels("chat").observe(time.perf_counter() - t0)
