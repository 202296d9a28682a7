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

This module holds the server's state and its routes; what clients send (keys, errors, the
prompt) is checked in bpo.serve.inbound, upstream replies in bpo.serve.replies.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import time

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bpo.serve.batcher import Outcome, QueueFull, RewriteBatcher
from bpo.serve.cache import RewriteCache
from bpo.serve.inbound import (
    ApiError,
    ClientGone,
    client_keys,
    endpoint,
    http_error,
    locate_prompt,
    opted_out,
    register_secrets,
    replace_prompt,
    upstream_api_key,
)
from bpo.serve.metrics import ServeMetrics
from bpo.serve.playground import playground_routes
from bpo.serve.replies import (
    audit_headers,
    audit_record,
    content_type,
    decoded,
    invalid_reply,
    json_object,
    open_stream,
    passthrough_headers,
    redacted,
    rewrite_status,
    stream_redacted,
)
from bpo.serve.rewriter import Rewriter, make_rewriter
from bpo.serve.sse import add_field
from bpo.serve.upstream import Upstream, UpstreamError, UpstreamResponse
from bpo.settings.serve import ServeSettings

log = logging.getLogger(__name__)

# What a client may pass on to the upstream besides the body (never its Authorization).
_FORWARD_REQUEST_HEADERS = ("accept", "openai-beta", "x-request-id")


class ServeState:
    """Everything a request handler needs; built at app creation, started by the lifespan."""

    def __init__(self, settings: ServeSettings, rewriter: Rewriter | None = None, environ=os.environ):
        self.settings = settings
        self.keys = client_keys(settings, environ)
        register_secrets(settings, environ)
        self.metrics = ServeMetrics()
        up = settings.upstream
        self.upstream_url = up.base_url.rstrip("/") if up.base_url else None
        self.upstream: Upstream | None = None
        if self.upstream_url:
            headers = {"content-type": "application/json"}
            key = upstream_api_key(settings, environ)
            if key:
                headers["authorization"] = f"Bearer {key}"
            self.upstream = Upstream(
                self.upstream_url, headers, timeout_s=up.timeout_s, max_connections=up.max_connections
            )
        self.rewriter = rewriter or make_rewriter(
            settings.rewriter, batch_size=settings.batching.max_batch_size, environ=environ
        )
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
        ok = scheme.lower() == "bearer" and any(
            hmac.compare_digest(given.strip().encode(), k.encode()) for k in self.keys
        )
        if not ok:
            raise ApiError(
                401,
                "invalid or missing API key: use one of this proxy's client keys (Authorization: Bearer KEY)",
                code="invalid_api_key",
            )

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

    async def rewrite(self, prompt: str) -> Outcome:
        try:
            outcome = await self.batcher.rewrite(prompt)
        except QueueFull as exc:
            raise ApiError(
                429,
                str(exc),
                type_="rate_limit_error",
                code="rewrite_queue_full",
                headers={"retry-after": str(exc.retry_after_s)},
            ) from None
        r = outcome.rewrite
        self.metrics.rewrite_seconds.observe(outcome.seconds)
        self.metrics.rewrites.labels("fallback" if r.fallback_reason else "rewritten", outcome.source).inc()
        if r.fallback_reason:
            self.metrics.fallbacks.labels(r.fallback_reason).inc()
        return outcome

    async def call_upstream(self, request: Request, method: str, path: str, content: bytes = b"") -> UpstreamResponse:
        """Send to the upstream (the proxy's own key; a few of the client's headers, never its key)."""
        if self.upstream is None:
            raise ApiError(
                503,
                "this proxy has no upstream (--upstream): only /v1/rewrite is served",
                type_="server_error",
                code="no_upstream",
            )
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
            return decoded(content, headers)
        except ApiError:
            self.metrics.upstream_errors.labels("invalid_reply").inc()
            raise

    def json_reply(self, content: bytes, headers: list[tuple[str, str]]) -> None:
        """A 200's body must be a JSON object: anything else (an HTML page, a cut-off body) is 502."""
        if not json_object(content):
            self.metrics.upstream_errors.labels("invalid_reply").inc()
            raise invalid_reply(
                f"upstream answered 200 with a body that is not a JSON object "
                f"(content-type {content_type(headers) or 'none'!r})"
            )

    def upstream_failure(self, exc: UpstreamError) -> ApiError:
        self.metrics.upstream_errors.labels(exc.kind).inc()
        if exc.kind == "timeout":
            return ApiError(504, f"upstream did not answer in time ({exc})", "server_error", "upstream_timeout")
        return ApiError(502, f"upstream unreachable ({exc})", "server_error", "upstream_unreachable")


# ---- handlers ----------------------------------------------------------------------------
@endpoint("chat")
async def chat_completions(state: ServeState, request: Request) -> Response:
    state.authorize(request)
    body, raw = await state.read_json(request)
    if state.upstream is None:
        await state.call_upstream(request, "POST", "/chat/completions")  # the 503, before any rewriting
    changed = "bpo" in body
    bpo_field = body.pop("bpo", None)
    if bpo_field is not None and not isinstance(bpo_field, dict):
        raise ApiError(
            400, 'body field "bpo" must be an object, e.g. {"rewrite": false}', code="invalid_bpo_field", param="bpo"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ApiError(
            400, 'body field "messages" must be an array of message objects', code="invalid_messages", param="messages"
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ApiError(400, 'body field "stream" must be true or false', code="invalid_stream", param="stream")
    where = locate_prompt(messages)
    outcome = None
    if opted_out(request, bpo_field):
        status = "off"
        state.metrics.skipped.labels("opt_out").inc()
    elif where is None:
        status = "none"
        state.metrics.skipped.labels("no_user_text").inc()
    else:
        outcome = await state.rewrite(where.text)
        status = rewrite_status(outcome, where.text)
        if outcome.rewrite.text != where.text:
            body["messages"] = replace_prompt(messages, where, outcome.rewrite.text)
            changed = True
    sent = None if where is None else (outcome.rewrite.text if outcome else where.text)
    audit = audit_record(sent, status, outcome)
    try:
        payload = json.dumps(body, ensure_ascii=False).encode() if changed else raw  # unchanged: the bytes as sent
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply", code="invalid_json") from None
    audit_bytes = json.dumps(audit, ensure_ascii=False).encode()
    t0 = time.perf_counter()
    resp = await state.call_upstream(request, "POST", "/chat/completions", payload)
    if stream and resp.status == 200:
        try:
            head, rest, chunks = await open_stream(resp, audit_bytes)
        except UpstreamError as exc:
            await resp.aclose()
            raise state.upstream_failure(exc) from None
        except ApiError:
            await resp.aclose()
            state.metrics.upstream_errors.labels("invalid_reply").inc()
            raise
        _, out_headers = redacted(b"", {**passthrough_headers(resp.headers), **audit_headers(audit)})
        # background: closes the upstream reply also when the client left before the stream began
        return StreamingResponse(
            stream_redacted(resp, head, rest, chunks, state.metrics, t0),
            status_code=200,
            headers=out_headers,
            background=BackgroundTask(resp.aclose),
        )
    content = await state.read_upstream(resp)
    state.metrics.upstream_seconds.labels("chat").observe(time.perf_counter() - t0)
    content, headers = state.checked(content, resp.headers)
    if resp.status == 200:
        state.json_reply(content, headers)
        content = add_field(content, audit_bytes)
    content, out_headers = redacted(content, {**passthrough_headers(headers), **audit_headers(audit)})
    return Response(content, resp.status, headers=out_headers)


@endpoint("models")
async def list_models(state: ServeState, request: Request) -> Response:
    state.authorize(request)
    t0 = time.perf_counter()
    resp = await state.call_upstream(request, "GET", "/models")
    content = await state.read_upstream(resp)
    state.metrics.upstream_seconds.labels("models").observe(time.perf_counter() - t0)
    content, headers = state.checked(content, resp.headers)
    if resp.status == 200:
        state.json_reply(content, headers)
    content, out_headers = redacted(content, passthrough_headers(headers))
    return Response(content, resp.status, headers=out_headers)


@endpoint("rewrite")
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
        audit = audit_record(outcome.rewrite.text, rewrite_status(outcome, prompt), outcome)
    else:
        state.metrics.skipped.labels("no_user_text").inc()
        audit = audit_record(prompt, "none", None)
    return JSONResponse({"object": "bpo.rewrite", "original": prompt, **audit}, headers=audit_headers(audit))


@endpoint("health")
async def health(state: ServeState, request: Request) -> Response:
    return JSONResponse(
        {
            "status": "ok",
            "rewriter": state.rewriter.kind,
            "queue_depth": state.batcher.depth,
            "upstream": bool(state.upstream_url),
        }
    )


@endpoint("metrics")
async def metrics(state: ServeState, request: Request) -> Response:
    state.authorize(request)
    return Response(state.metrics.render(), headers={"content-type": state.metrics.content_type})


def routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/rewrite", rewrite, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ] + playground_routes()  # GET /: a static page calling the endpoints above like any client


def create_app(
    settings: ServeSettings,
    *,
    rewriter: Rewriter | None = None,
    environ=os.environ,
    extra_routes: list[Route] | None = None,
) -> Starlette:
    """The proxy app; ``rewriter`` replaces the one the settings describe, ``extra_routes`` add pages."""
    state = ServeState(settings, rewriter, environ)
    app = Starlette(
        routes=routes() + list(extra_routes or []),
        lifespan=state.lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.serve = state
    return app
