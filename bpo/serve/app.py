"""The proxy as an ASGI app (Starlette): OpenAI-compatible endpoints that rewrite the last user
message with the optimizer before forwarding the request to the upstream API.

Endpoints: ``POST /v1/chat/completions`` (streaming or not), ``GET /v1/models``,
``POST /v1/rewrite`` (the rewrite only), ``GET /health``, ``GET /metrics`` (Prometheus), and
``GET /``, the playground page (:mod:`bpo.serve.playground`).
:func:`routes` lists them; a page that extends the server (a playground) adds its own routes.

Rewriting rules: only the last ``user`` message's text (a string content, or the first text part
of a list content; later parts, e.g. attached documents, and every other message stay as sent).
A client opts out with the header ``X-BPO-Rewrite: off`` or the body field
``"bpo": {"rewrite": false}`` (removed before forwarding). What was sent comes back in the
``bpo`` field of the reply (non-streaming: the body; streaming: the first chunk) and, when it
differs from the client's and is short, in the ``X-BPO-Prompt`` header (percent-encoded UTF-8);
``X-BPO-Rewrite`` says rewritten, unchanged, fallback (with ``X-BPO-Fallback-Reason``), off or
none (no user text).

Security: clients authenticate with the proxy's own keys (``api_keys_env``); the upstream key is
added here, never taken from or shown to a client, never logged. Upstream replies (fields,
errors, 429/5xx with Retry-After) pass through, redacted: every byte returned to a client (body,
header values, streamed events: :class:`bpo.serve.sse.StreamRedactor`, also for a key spread over
several events) goes through :func:`bpo.redact.redact`, which masks the upstream's and the remote
rewriter's key values whatever their shape, and credential shapes.

Edges: a malformed client body (not JSON, not UTF-8, nested too deep, fields of the wrong type)
is an OpenAI-style 400; an upstream 200 that is not JSON, or not an event stream when one was
asked for, is an OpenAI-style 502 for streaming clients too (the first event is read before the
reply starts); a client that leaves mid-body is one log line.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import time
import zlib
from dataclasses import dataclass
from typing import Any, AsyncIterator
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bpo.redact import redact, register_env, register_value
from bpo.serve.batcher import Outcome, QueueFull, RewriteBatcher
from bpo.serve.cache import RewriteCache
from bpo.conversation import earlier_turns, last_user_text, replace_text
from bpo.serve.metrics import ServeMetrics
from bpo.serve.playground import playground_routes
from bpo.serve.rewriter import Rewrite, Rewriter, make_rewriter
from bpo.serve.sse import (MAX_EVENT, StreamRedactor, add_field, event_data, event_end, inject_first_event,
                           redact_bytes)
from bpo.serve.upstream import Upstream, UpstreamError, UpstreamResponse
from bpo.settings.serve import ServeSettings

log = logging.getLogger(__name__)

OPT_OUT_HEADER = "x-bpo-rewrite"
PROMPT_HEADER_MAX = 4096  # longer prompts only in the body's `bpo` field (clients cap header sizes)

# Hop-by-hop and framing headers: the proxy's server sets its own.
_DROP_RESPONSE_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length",
                          "date", "server", "set-cookie"}
# What a client may pass on to the upstream besides the body (never its Authorization).
_FORWARD_REQUEST_HEADERS = ("accept", "openai-beta", "x-request-id")


class ApiError(Exception):
    """An OpenAI-style error reply of the proxy's own."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers
        self.param = param

    def response(self) -> JSONResponse:
        body = {"error": {"message": redact(self.message), "type": self.type, "param": self.param,
                          "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class ClientGone(Exception):
    """The client closed its connection before its request body was complete."""


def client_keys(settings: ServeSettings, environ=os.environ) -> list[str]:
    """The clients' keys; refuses setups that would expose the server or the upstream key."""
    keys: list[str] = []
    if settings.api_keys_env:
        raw = environ.get(settings.api_keys_env, "")
        keys = [k.strip() for k in raw.split(",") if k.strip()]
        if not keys:
            raise ValueError(f"api_keys_env: environment variable {settings.api_keys_env} is empty or not set")
    elif settings.host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"host {settings.host}: a server reachable from other machines needs client keys "
                         "(--api-keys-env NAME)")
    upstream_key = upstream_api_key(settings, environ)
    if upstream_key and upstream_key in keys:
        raise ValueError("a client key equals the upstream key: give clients keys of their own")
    return keys


def upstream_api_key(settings: ServeSettings, environ=os.environ) -> str | None:
    name = settings.upstream.api_key_env
    if not name:
        return None
    key = environ.get(name)
    if not key:
        raise ValueError(f"upstream.api_key_env: environment variable {name} is not set")
    return key


def _register_secrets(settings: ServeSettings, environ) -> None:
    """Mask the upstream's and the remote rewriter's keys in everything returned or logged: by
    variable name (read from os.environ when redacting) and by value (``environ`` may be a
    mapping of its own, e.g. in tests)."""
    names = [settings.upstream.api_key_env, settings.rewriter.remote_api_key_env]
    register_env(*names)
    register_value(*(environ.get(n) for n in names if n))


@dataclass
class Located:
    """Where the text to rewrite sits: messages[index], its whole content or content[part]."""

    index: int
    part: int | None
    text: str


def locate_prompt(messages: Any) -> Located | None:
    """The last user message's text, or None when there is none to rewrite."""
    if not isinstance(messages, list):
        return None
    found = last_user_text(messages)
    return Located(*found) if found else None


def replace_prompt(messages: list, where: Located, text: str) -> list:
    """A copy of ``messages`` with the located text replaced (nothing else changes)."""
    return replace_text(messages, where.index, where.part, text)


class ServeState:
    """Everything a request handler needs; built at app creation, started by the lifespan."""

    def __init__(self, settings: ServeSettings, rewriter: Rewriter | None = None, environ=os.environ):
        self.settings = settings
        self.keys = client_keys(settings, environ)
        _register_secrets(settings, environ)
        self.metrics = ServeMetrics()
        up = settings.upstream
        self.upstream_url = up.base_url.rstrip("/") if up.base_url else None
        self.upstream: Upstream | None = None
        if self.upstream_url:
            headers = {"content-type": "application/json"}
            key = upstream_api_key(settings, environ)
            if key:
                headers["authorization"] = f"Bearer {key}"
            self.upstream = Upstream(self.upstream_url, headers, timeout_s=up.timeout_s,
                                     max_connections=up.max_connections)
        self.rewriter = rewriter or make_rewriter(settings.rewriter, batch_size=settings.batching.max_batch_size,
                                                  environ=environ)
        self.cache = RewriteCache(settings.cache) if settings.cache and self.rewriter.batched else None
        self.batcher = RewriteBatcher(self.rewriter, settings.batching, self.metrics, self.cache)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        await self.rewriter.start()
        await self.batcher.start()
        log.info("bpo serve: rewriter %s, upstream %s", self.rewriter.kind, self.upstream_url or "none")
        try:
            yield
        finally:
            await self.batcher.close()
            await self.rewriter.close()
            if self.upstream is not None:
                await self.upstream.aclose()
            if self.cache is not None:
                self.cache.close()

    # ---- request helpers ---------------------------------------------------------------
    def authorize(self, request: Request) -> None:
        if not self.keys:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        ok = scheme.lower() == "bearer" and any(hmac.compare_digest(given.strip().encode(), k.encode())
                                               for k in self.keys)
        if not ok:
            raise ApiError(401, "invalid or missing API key: use one of this proxy's client keys "
                                "(Authorization: Bearer KEY)", code="invalid_api_key")

    async def read_json(self, request: Request) -> tuple[dict, bytes]:
        """The request's JSON object and its raw bytes (size-limited; OpenAI-style 400/413)."""
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body over the limit of {limit} bytes", code="request_too_large")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"request body over the limit of {limit} bytes", code="request_too_large")
                chunks.append(chunk)
        except ClientDisconnect:
            raise ClientGone() from None
        raw = b"".join(chunks)
        try:  # UTF-8 only (RFC 8259): json.loads would also take UTF-16/32, forwarded as the bytes they are
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"request body is not UTF-8: {exc}", code="invalid_json") from None
        except ValueError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
        except RecursionError:
            raise ApiError(400, "request body is not valid JSON: nested too deeply", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, f"request body must be a JSON object, got {type(body).__name__}", code="invalid_json")
        return body, raw

    async def rewrite(self, prompt: str, history: list | None = None) -> Outcome:
        try:
            outcome = await self.batcher.rewrite(prompt, history)
        except QueueFull as exc:
            raise ApiError(429, str(exc), type_="rate_limit_error", code="rewrite_queue_full",
                           headers={"retry-after": str(exc.retry_after_s)}) from None
        r = outcome.rewrite
        self.metrics.rewrite_seconds.observe(outcome.seconds)
        self.metrics.rewrites.labels("fallback" if r.fallback_reason else "rewritten", outcome.source).inc()
        if r.fallback_reason:
            self.metrics.fallbacks.labels(r.fallback_reason).inc()
        return outcome

    async def call_upstream(self, request: Request, method: str, path: str, content: bytes = b"") -> UpstreamResponse:
        """Send to the upstream (the proxy's own key; a few of the client's headers, never its key)."""
        if self.upstream is None:
            raise ApiError(503, "this proxy has no upstream (--upstream): only /v1/rewrite is served",
                           type_="server_error", code="no_upstream")
        headers = {name: request.headers[name] for name in _FORWARD_REQUEST_HEADERS if name in request.headers}
        try:
            return await self.upstream.send(method, path, content, headers)
        except UpstreamError as exc:
            raise self.upstream_failure(exc) from None

    async def read_upstream(self, resp: UpstreamResponse) -> bytes:
        try:
            return await resp.read()
        except UpstreamError as exc:
            raise self.upstream_failure(exc) from None

    def checked(self, content: bytes, headers: list[tuple[str, str]]) -> tuple[bytes, list[tuple[str, str]]]:
        try:
            return _decoded(content, headers)
        except ApiError:
            self.metrics.upstream_errors.labels("invalid_reply").inc()
            raise

    def json_reply(self, content: bytes, headers: list[tuple[str, str]]) -> None:
        """A 200's body must be a JSON object: anything else (an HTML page, a cut-off body) is 502."""
        if not _json_object(content):
            self.metrics.upstream_errors.labels("invalid_reply").inc()
            raise _invalid_reply(f"upstream answered 200 with a body that is not a JSON object "
                                 f"(content-type {_content_type(headers) or 'none'!r})")

    def upstream_failure(self, exc: UpstreamError) -> ApiError:
        self.metrics.upstream_errors.labels(exc.kind).inc()
        if exc.kind == "timeout":
            return ApiError(504, f"upstream did not answer in time ({exc})", "server_error", "upstream_timeout")
        return ApiError(502, f"upstream unreachable ({exc})", "server_error", "upstream_unreachable")


def _passthrough_headers(headers: list[tuple[str, str]]) -> dict:
    """The upstream's reply headers a client gets (framing ones dropped), not yet redacted."""
    return {k: v for k, v in headers if k not in _DROP_RESPONSE_HEADERS}


def _redacted(content: bytes, headers: dict) -> tuple[bytes, dict]:
    """A reply's body and header values with every secret masked: one redaction pass over them
    all, then part by part only when it found something (most replies hold no secret)."""
    text = content.decode("utf-8", "surrogateescape")
    joined = "\n".join((text, *headers.values()))
    if redact(joined) == joined:
        return content, headers
    return redact_bytes(content), {k: redact(v) for k, v in headers.items()}


def _invalid_reply(message: str) -> ApiError:
    return ApiError(502, message, "server_error", "upstream_invalid_reply")


_MAX_DECODED = 64 << 20


def _decoded(content: bytes, headers: list[tuple[str, str]]) -> tuple[bytes, list[tuple[str, str]]]:
    """The reply's bytes without a content-encoding (identity is asked for; gzip or deflate sent
    anyway is decoded): the JSON check and redaction need the text. Other encodings: 502."""
    encoding = next((v.strip().lower() for k, v in headers if k == "content-encoding"), "identity")
    if encoding == "identity":
        return content, headers
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise _invalid_reply(f"upstream reply has content-encoding {encoding!r}, which the proxy cannot check")
    try:
        d = zlib.decompressobj(47)  # 32 + 15: a gzip or zlib header, detected
        content = d.decompress(content, _MAX_DECODED)
        if d.unconsumed_tail:
            raise _invalid_reply(f"upstream reply over {_MAX_DECODED} bytes once decoded")
    except zlib.error:
        raise _invalid_reply(f"upstream reply is not valid {encoding}") from None
    return content, [(k, v) for k, v in headers if k != "content-encoding"]


def _json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def _content_type(headers: list[tuple[str, str]]) -> str:
    return next((v for k, v in headers if k == "content-type"), "")


def _audit(sent: str, status: str, outcome: Outcome | None) -> dict:
    r: Rewrite | None = outcome.rewrite if outcome else None
    return {"prompt": sent, "rewrite": status, "fallback_reason": r.fallback_reason if r else None,
            "cached": bool(outcome and outcome.source == "cache")}


def _status(outcome: Outcome, original: str) -> str:
    if outcome.rewrite.fallback_reason:
        return "fallback"
    return "rewritten" if outcome.rewrite.text != original else "unchanged"


def _audit_headers(audit: dict) -> dict:
    headers = {"x-bpo-rewrite": audit["rewrite"]}
    if audit["fallback_reason"]:
        headers["x-bpo-fallback-reason"] = audit["fallback_reason"]
    if audit["rewrite"] == "rewritten":  # otherwise the client has the prompt already
        encoded = quote(redact(audit["prompt"]), safe="")  # redacted before encoding hides a key's bytes
        if len(encoded) <= PROMPT_HEADER_MAX:
            headers["x-bpo-prompt"] = encoded
    return headers


def _opted_out(request: Request, bpo_field: Any) -> bool:
    if request.headers.get(OPT_OUT_HEADER, "").strip().lower() in ("off", "0", "false", "no"):
        return True
    return isinstance(bpo_field, dict) and bpo_field.get("rewrite") is False


async def _open_stream(resp: UpstreamResponse, audit: bytes) -> tuple[bytes, bytes, AsyncIterator[bytes]]:
    """Read the upstream's stream up to its first data event, before the client's reply starts:
    (those bytes with the audit field added, the bytes read after them, the rest of the stream).
    A reply that is not an event stream of JSON data is :class:`ApiError` 502."""
    ctype = _content_type(resp.headers)
    if not ctype.lower().startswith("text/event-stream"):
        raise _invalid_reply(f"upstream answered a streaming request with content-type {ctype or 'none'!r}, "
                             "not an event stream")
    if any(k == "content-encoding" and v.strip().lower() != "identity" for k, v in resp.headers):
        raise _invalid_reply("upstream event stream has a content-encoding, which the proxy cannot check")
    chunks = resp.iter_bytes()
    buf, start = b"", 0
    while True:
        end, sep = event_end(buf, start)
        if end < 0:
            if len(buf) - start > MAX_EVENT:
                raise _invalid_reply(f"upstream event stream: no event end in its first {MAX_EVENT} bytes")
            chunk = await anext(chunks, None)
            if chunk is None:
                raise _invalid_reply("upstream event stream ended before its first data event")
            buf += chunk
            continue
        data = event_data(buf[start:end])
        if data is None:  # a comment or keep-alive before the data: passed on as it came
            start = end + sep
            continue
        if data != b"[DONE]" and not _json_object(data):
            raise _invalid_reply("upstream event stream: its first data event is not a JSON object")
        return buf[:start] + inject_first_event(buf[start:end], audit) + buf[end : end + sep], buf[end + sep :], chunks


async def _stream_redacted(resp: UpstreamResponse, head: bytes, buf: bytes, chunks: AsyncIterator[bytes],
                           metrics: ServeMetrics, t0: float):
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


# ---- handlers ----------------------------------------------------------------------------
def _endpoint(name: str):
    """Count every reply by endpoint and status; ApiError -> its OpenAI-style reply."""

    def wrap(fn):
        async def handler(request: Request) -> Response:
            state: ServeState = request.app.state.serve
            try:
                resp = await fn(state, request)
            except ApiError as exc:
                resp = exc.response()
            except ClientGone:  # nobody to answer: one line, no traceback
                log.info("%s: the client closed its connection before its request body was complete", name)
                resp = Response(status_code=499)
            state.metrics.requests.labels(name, str(resp.status_code)).inc()
            return resp

        handler.__name__ = fn.__name__
        return handler

    return wrap


@_endpoint("chat")
async def chat_completions(state: ServeState, request: Request) -> Response:
    state.authorize(request)
    body, raw = await state.read_json(request)
    if state.upstream is None:
        await state.call_upstream(request, "POST", "/chat/completions")  # the 503, before any rewriting
    changed = "bpo" in body
    bpo_field = body.pop("bpo", None)
    if bpo_field is not None and not isinstance(bpo_field, dict):
        raise ApiError(400, 'body field "bpo" must be an object, e.g. {"rewrite": false}', code="invalid_bpo_field",
                       param="bpo")
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, 'body field "messages" must be an array of message objects', code="invalid_messages",
                       param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ApiError(400, 'body field "stream" must be true or false', code="invalid_stream", param="stream")
    where = locate_prompt(messages)
    outcome = None
    if _opted_out(request, bpo_field):
        status = "off"
        state.metrics.skipped.labels("opt_out").inc()
    elif where is None:
        status = "none"
        state.metrics.skipped.labels("no_user_text").inc()
    else:
        rw = state.settings.rewriter
        history = earlier_turns(messages, where.index, rw.include_system) if rw.history else None
        outcome = await state.rewrite(where.text, history)  # earlier turns: context only, never changed
        status = _status(outcome, where.text)
        if outcome.rewrite.text != where.text:
            body["messages"] = replace_prompt(messages, where, outcome.rewrite.text)
            changed = True
    sent = None if where is None else (outcome.rewrite.text if outcome else where.text)
    audit = _audit(sent, status, outcome)
    try:
        payload = json.dumps(body, ensure_ascii=False).encode() if changed else raw  # unchanged: the bytes as sent
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply", code="invalid_json") from None
    audit_bytes = json.dumps(audit, ensure_ascii=False).encode()
    t0 = time.perf_counter()
    resp = await state.call_upstream(request, "POST", "/chat/completions", payload)
    if stream and resp.status == 200:
        try:
            head, rest, chunks = await _open_stream(resp, audit_bytes)
        except UpstreamError as exc:
            await resp.aclose()
            raise state.upstream_failure(exc) from None
        except ApiError:
            await resp.aclose()
            state.metrics.upstream_errors.labels("invalid_reply").inc()
            raise
        _, out_headers = _redacted(b"", {**_passthrough_headers(resp.headers), **_audit_headers(audit)})
        # background: closes the upstream reply also when the client left before the stream began
        return StreamingResponse(_stream_redacted(resp, head, rest, chunks, state.metrics, t0), status_code=200,
                                 headers=out_headers, background=BackgroundTask(resp.aclose))
    content = await state.read_upstream(resp)
    state.metrics.upstream_seconds.labels("chat").observe(time.perf_counter() - t0)
    content, headers = state.checked(content, resp.headers)
    if resp.status == 200:
        state.json_reply(content, headers)
        content = add_field(content, audit_bytes)
    content, out_headers = _redacted(content, {**_passthrough_headers(headers), **_audit_headers(audit)})
    return Response(content, resp.status, headers=out_headers)


@_endpoint("models")
async def list_models(state: ServeState, request: Request) -> Response:
    state.authorize(request)
    t0 = time.perf_counter()
    resp = await state.call_upstream(request, "GET", "/models")
    content = await state.read_upstream(resp)
    state.metrics.upstream_seconds.labels("models").observe(time.perf_counter() - t0)
    content, headers = state.checked(content, resp.headers)
    if resp.status == 200:
        state.json_reply(content, headers)
    content, out_headers = _redacted(content, _passthrough_headers(headers))
    return Response(content, resp.status, headers=out_headers)


@_endpoint("rewrite")
async def rewrite(state: ServeState, request: Request) -> Response:
    """``{"prompt": "..."}`` -> ``{"object": "bpo.rewrite", "prompt": <sent>, "original", "rewrite",
    "fallback_reason", "cached"}``; nothing goes upstream."""
    state.authorize(request)
    body, _ = await state.read_json(request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise ApiError(400, "body field 'prompt' must be a string", code="invalid_prompt")
    if prompt.strip():
        outcome = await state.rewrite(prompt)
        audit = _audit(outcome.rewrite.text, _status(outcome, prompt), outcome)
    else:
        state.metrics.skipped.labels("no_user_text").inc()
        audit = _audit(prompt, "none", None)
    return JSONResponse({"object": "bpo.rewrite", "original": prompt, **audit}, headers=_audit_headers(audit))


@_endpoint("health")
async def health(state: ServeState, request: Request) -> Response:
    return JSONResponse({"status": "ok", "rewriter": state.rewriter.kind, "queue_depth": state.batcher.depth,
                         "upstream": bool(state.upstream_url)})


@_endpoint("metrics")
async def metrics(state: ServeState, request: Request) -> Response:
    state.authorize(request)
    return Response(state.metrics.render(), headers={"content-type": state.metrics.content_type})


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Unknown paths and methods get OpenAI-style errors too."""
    return ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None,
                    headers=exc.headers).response()


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/rewrite", rewrite, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ] + playground_routes()  # GET /: a static page calling the endpoints above like any client


def create_app(settings: ServeSettings, *, rewriter: Rewriter | None = None, environ=os.environ,
               extra_routes: list[Route] | None = None) -> Starlette:
    """The proxy app; ``rewriter`` replaces the one the settings describe, ``extra_routes`` add pages."""
    state = ServeState(settings, rewriter, environ)
    app = Starlette(routes=routes() + list(extra_routes or []), lifespan=state.lifespan,
                    exception_handlers={HTTPException: _http_error})
    app.state.serve = state
    return app
