"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

It is the network boundary only: the code under test talks to it with the real `openai`
client over real sockets. It serves ``POST /v1/chat/completions`` (HTTP/1.1, keep-alive),
answers after a configurable latency, counts requests per content (the last message's text),
records every request's headers and body (so tests can assert what was, and was not, sent) and
can be scripted to misbehave: 429 with Retry-After, 500, hangs, malformed bodies, truncated
(finish_reason "length") and refused replies, dropped connections.

Use in a test (thread mode)::

    with LoopbackServer(latency_s=0.01) as srv:
        srv.fail("429", times=2, retry_after=0.1, match="prompt 3")
        ... AsyncOpenAI(base_url=srv.base_url) ...
        assert srv.count("prompt 3") == 3

Use as a separate process (benchmarks, multi-process tests)::

    python tests/loopback_server.py --latency 0.5 --port-file port.txt
    # GET /stats -> {"total": n, "counts": {...}}, POST /control {"fail": [...], "latency_s": x,
    # "reset": true}

Replies are well-formed for each BPO stage: by default the server answers with the offline
stand-in's deterministic text generator (critique prompts get a critique-format reply, judge
prompts a verdict), so stage tests can run their parsers on what comes back over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A responder maps the parsed request body to (content, finish_reason).
Responder = Callable[[dict], "tuple[str, str]"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    411: "Length Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

FAILURE_KINDS = (
    "429",
    "500",
    "503",
    "400",
    "401",
    "404",
    "hang",
    "malformed",
    "nochoices",
    "length",
    "refusal",
    "content_filter",
    "drop",
)


def standin_responder(body: dict) -> tuple[str, str]:
    from bpo.llm.standin import reply_text

    return reply_text(body), "stop"


def echo_responder(body: dict) -> tuple[str, str]:
    return f"loopback reply to: {_last_content(body)[:200]}", "stop"


def _last_content(body: dict) -> str:
    msgs = body.get("messages") or []
    if not msgs:
        return ""
    content = msgs[-1].get("content")
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    t: float
    answered: float | None = None  # when the reply was written (None: never, e.g. dropped)


@dataclass
class _Rule:
    kind: str
    times: int
    match: str | None
    retry_after: float | None
    seconds: float
    spec: dict = field(default_factory=dict)


class _Protocol(asyncio.Protocol):
    """Minimal HTTP/1.1 with Content-Length bodies and keep-alive; no task per request."""

    def __init__(self, server: LoopbackServer):
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport
        self.server._conns.add(transport)

    def connection_lost(self, exc):
        self.server._conns.discard(self.transport)

    def data_received(self, data):
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1").split("\r\n")
            method, path, _ = (head[0].split(" ", 2) + ["", ""])[:3]
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", ""):
                self._send(411, b'{"error": {"message": "chunked bodies not supported"}}')
                self.buf = b""
                return
            length = int(headers.get("content-length") or 0)
            if len(self.buf) < head_end + 4 + length:
                return
            body = self.buf[head_end + 4 : head_end + 4 + length]
            self.buf = self.buf[head_end + 4 + length :]
            self.server._handle(self, method, path, headers, body)

    def _send(
        self, status: int, body: bytes, extra: dict[str, str] | None = None, content_type: str = "application/json"
    ):
        if self.transport is None or self.transport.is_closing():
            return
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
            f"content-type: {content_type}",
            f"content-length: {len(body)}",
        ]
        for k, v in (extra or {}).items():
            lines.append(f"{k}: {v}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


class LoopbackServer:
    """OpenAI-compatible chat server on 127.0.0.1 (thread mode: ``start()``/``stop()``)."""

    def __init__(
        self, latency_s: float = 0.0, responder: Responder | str = "standin", record: bool = True, port: int = 0
    ):
        self.latency_s = float(latency_s)
        if responder == "standin":
            responder = standin_responder
        elif responder == "echo":
            responder = echo_responder
        self.responder: Responder = responder  # type: ignore[assignment]
        self.record = record
        self.port = port
        self.requests: list[Recorded] = []
        self.counts: dict[str, int] = {}
        self.total = 0
        self.inflight = 0
        self.max_inflight = 0
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._conns: set = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._aserver = None
        self._seq = 0

    # ---- scripting ---------------------------------------------------------------------
    def fail(
        self,
        kind: str,
        times: int = 1,
        match: str | None = None,
        retry_after: float | None = None,
        seconds: float = 3600.0,
        **spec: Any,
    ) -> None:
        """Misbehave on the next ``times`` requests whose last message contains ``match``.

        kinds: 429 / 500 / 503 / 400 / 401 / 404 (error status; ``retry_after`` sets Retry-After;
        ``echo_key=True`` quotes the request's API key in the error text, as some servers do), hang
        (answer only after ``seconds``), malformed (200 with a non-JSON body), nochoices (200
        JSON without choices), length (truncated reply), refusal (``refusal`` field set),
        content_filter (finish_reason content_filter), drop (close the connection).
        """
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; choose from {FAILURE_KINDS}")
        with self._lock:
            self._rules.append(_Rule(kind, int(times), match, retry_after, float(seconds), spec))

    def count(self, match: str) -> int:
        """Requests whose last message is exactly ``match``."""
        with self._lock:
            return self.counts.get(match, 0)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.counts.clear()
            self.total = 0
            self.max_inflight = self.inflight
            self._rules.clear()

    def stats(self) -> dict:
        with self._lock:
            return {"total": self.total, "counts": dict(self.counts), "max_inflight": self.max_inflight}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- request handling (event-loop thread) -------------------------------------------
    def _handle(self, proto: _Protocol, method: str, path: str, headers: dict, body: bytes) -> None:
        if method == "GET" and path.rstrip("/").endswith("/stats"):
            proto._send(200, json.dumps(self.stats()).encode())
            return
        if method == "POST" and path.rstrip("/").endswith("/control"):
            self._control(json.loads(body or b"{}"))
            proto._send(200, b'{"ok": true}')
            return
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            proto._send(404, b'{"error": {"message": "not found", "type": "invalid_request_error"}}')
            return
        try:
            req = json.loads(body)
        except ValueError:
            proto._send(400, b'{"error": {"message": "body is not JSON", "type": "invalid_request_error"}}')
            return
        content = _last_content(req)
        with self._lock:
            self.total += 1
            self.counts[content] = self.counts.get(content, 0) + 1
            rec = Recorded(method, path, headers, body, time.time())
            if self.record:
                self.requests.append(rec)
            rule = None
            for r in self._rules:
                if r.times > 0 and (r.match is None or r.match in content):
                    r.times -= 1
                    rule = r
                    break
            self._seq += 1
            seq = self._seq
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        delay = self.latency_s
        if rule is not None and rule.kind == "hang":
            delay = rule.seconds
        if rule is not None and rule.kind == "drop":
            self._done()
            proto.transport.close()
            return
        self._loop.call_later(delay, self._respond, proto, req, rule, seq, rec)

    def _done(self) -> None:
        with self._lock:
            self.inflight -= 1

    def _respond(self, proto: _Protocol, req: dict, rule: _Rule | None, seq: int, rec: Recorded) -> None:
        self._done()
        if not (proto.transport is None or proto.transport.is_closing()):
            rec.answered = time.time()
        kind = rule.kind if rule else None
        if kind in ("429", "500", "503", "400", "401", "404"):
            status = int(kind)
            extra = {}
            if rule.retry_after is not None:
                extra["retry-after"] = f"{rule.retry_after:g}"
            message = f"scripted {status}"
            if rule.spec.get("echo_key"):
                key = rec.headers.get("authorization", "").removeprefix("Bearer ")
                message = f"Incorrect API key provided: {key}. Check it at https://example.invalid/keys."
            err = {"error": {"message": message, "type": "loopback", "code": None}}
            proto._send(status, json.dumps(err).encode(), extra)
            return
        if kind == "malformed":
            proto._send(200, b'{"id": "chatcmpl-broken", "choices": [{"message": ')
            return
        if kind == "nochoices":
            proto._send(200, b'{"id": "chatcmpl-empty", "object": "chat.completion"}')
            return
        text, finish = self.responder(req)
        refusal = None
        if kind == "length":
            text, finish = text[: max(1, len(text) // 3)], "length"
        elif kind == "refusal":
            text, refusal, finish = None, "I can't help with that.", "stop"
        elif kind == "content_filter":
            text, finish = "", "content_filter"
        n = int(req.get("n") or 1)
        prompt_tokens = sum(len(str(m.get("content") or "")) for m in req.get("messages") or []) // 4 + 8
        completion_tokens = (len(text or refusal or "") // 4 + 1) * n
        reply = {
            "id": f"chatcmpl-loopback-{seq}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model", "unknown"),
            "choices": [
                {
                    "index": i,
                    "finish_reason": finish,
                    "logprobs": None,
                    "message": {"role": "assistant", "content": text, "refusal": refusal},
                }
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        proto._send(200, json.dumps(reply).encode())

    def _control(self, spec: dict) -> None:
        if spec.get("reset"):
            self.reset()
        if "latency_s" in spec:
            self.latency_s = float(spec["latency_s"])
        if "record" in spec:
            self.record = bool(spec["record"])
        for f in spec.get("fail", []):
            self.fail(**f)

    # ---- lifecycle -----------------------------------------------------------------------
    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._aserver = await self._loop.create_server(lambda: _Protocol(self), "127.0.0.1", self.port, backlog=4096)
        self.port = self._aserver.sockets[0].getsockname()[1]

    def start(self) -> LoopbackServer:
        ready = threading.Event()

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            # Ready only once run_forever() runs: a stop() sent while run_until_complete() was
            # still winding down had its loop.stop() swallowed there, and the thread never ended.
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="loopback-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("loopback server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        def shutdown():
            self._aserver.close()
            for t in list(self._conns):
                t.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    ap.add_argument("--responder", choices=["standin", "echo"], default="standin")
    ap.add_argument("--no-record", action="store_true", help="do not keep request headers/bodies")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    args = ap.parse_args(argv)
    srv = LoopbackServer(latency_s=args.latency, responder=args.responder, record=not args.no_record, port=args.port)

    async def run():
        await srv._serve()
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(str(srv.port))
            os.replace(tmp, args.port_file)
        print(f"loopback OpenAI server on {srv.base_url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
