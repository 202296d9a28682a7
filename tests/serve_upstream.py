"""Loopback upstreams for the proxy tests and benchmark (the network boundary only).

:class:`ChatUpstream` is tests/loopback_server.py's server plus what a proxy in front of a chat
API also meets: streamed replies (Server-Sent Events, ``"stream": true``) and ``GET /v1/models``.
It also answers ``POST /v1/completions`` as a served optimizer would (``vllm serve
<optimizer>``): each prompt in the optimizer's input format gets a rewrite of the prompt inside
it, ``"Please answer step by step: <prompt>"``, or degenerate repetition when the prompt contains
``REPEAT``; it records each request's batch size and can answer after a delay.

Misbehaviour beyond the loopback server's: :meth:`ChatUpstream.raw` answers a matching chat
request with bytes as given (HTML, a chunked or close-delimited body, no HTTP at all), and
``echo_key = True`` quotes the API key the request carried in every reply it makes: in the 200
body's text and an extra field, in a header, in streamed events (spread over several events'
text, and whole in one more event and a field), in the model list.
"""

from __future__ import annotations

import json
import time

from loopback_server import LoopbackServer, Recorded

REWRITE_PREFIX = "Please answer step by step: "


def original_from_template(text: str) -> str:
    return text.split("[Original prompt]\n", 1)[1].rsplit("\n\n[Improved prompt]", 1)[0]


def fake_rewrite(prompt: str) -> str:
    return "la la la " * 20 if "REPEAT" in prompt else REWRITE_PREFIX + prompt


class ChatUpstream(LoopbackServer):
    def __init__(self, *args, completions_latency_s: float = 0.0, **kw):
        kw.setdefault("responder", "echo")
        super().__init__(*args, **kw)
        self.completions_latency_s = completions_latency_s
        self.completion_batches: list[int] = []
        self.echo_key = False
        self.models_html = False
        self._raw: list[tuple[str, bytes, bool]] = []

    def raw(self, match: str, reply: bytes, close: bool = False) -> None:
        """Answer chat requests whose last message contains ``match`` with ``reply`` (then close
        the connection when ``close``)."""
        self._raw.append((match, reply, close))

    def _record(self, path: str, headers: dict, body: bytes, content: str) -> None:
        with self._lock:
            self.total += 1
            self.counts[content] = self.counts.get(content, 0) + 1
            if self.record:
                self.requests.append(Recorded("POST", path, headers, body, time.time()))

    def _handle(self, proto, method, path, headers, body):
        p = path.rstrip("/")
        key = headers.get("authorization", "").removeprefix("Bearer ")
        if method == "GET" and p.endswith("/v1/models") and self.models_html:
            proto._send(200, b"<html>maintenance</html>", None, "text/html")
            return
        if method == "GET" and p.endswith("/v1/models"):
            models = {
                "object": "list",
                "data": [
                    {
                        "id": "loopback-chat",
                        "object": "model",
                        "created": 0,
                        "owned_by": f"loopback, called with {key}" if self.echo_key else "loopback",
                    }
                ],
            }
            proto._send(200, json.dumps(models).encode(), {"x-upstream": "models", **self._key_header(key)})
            return
        if method == "POST" and p.endswith("/v1/completions"):
            req = json.loads(body)
            prompts = req["prompt"] if isinstance(req["prompt"], list) else [req["prompt"]]
            with self._lock:
                self.completion_batches.append(len(prompts))
            choices = [
                {"index": i, "text": " " + fake_rewrite(original_from_template(t)), "finish_reason": "stop"}
                for i, t in enumerate(prompts)
            ]
            reply = json.dumps({"id": "cmpl-loopback", "object": "text_completion", "choices": choices}).encode()
            self._loop.call_later(self.completions_latency_s, proto._send, 200, reply)
            return
        if method == "POST" and p.endswith("/chat/completions"):
            try:
                req = json.loads(body)
            except ValueError:
                req = None
            last = str(req["messages"][-1].get("content")) if isinstance(req, dict) and req.get("messages") else ""
            for match, reply, close in self._raw:
                if match in last:
                    self._record(path, headers, body, last)
                    proto.transport.write(reply)
                    if close:
                        proto.transport.close()
                    return
            ruled = any(r.times > 0 and (r.match is None or r.match in last) for r in self._rules)
            if isinstance(req, dict) and req.get("stream") is True and not ruled:
                text, _ = self.responder(req)
                self._record(path, headers, body, last)
                extra = None
                if self.echo_key:  # in the text, which goes out 16 characters an event: the key split
                    text = f"{text} (called with {key})"
                    extra = self._key_header(key)
                self._loop.call_later(
                    self.latency_s,
                    proto._send,
                    200,
                    sse_body(req, text, key if self.echo_key else None),
                    extra,
                    "text/event-stream",
                )
                return
            if self.echo_key and isinstance(req, dict) and not ruled:
                self._record(path, headers, body, last)
                text, _ = self.responder(req)
                reply = {
                    "id": "chatcmpl-echo",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": f"{text} (called with {key})"},
                        }
                    ],
                    "debug": {"authorization": headers.get("authorization")},
                }
                proto._send(200, json.dumps(reply).encode(), self._key_header(key))
                return
        super()._handle(proto, method, path, headers, body)

    def _key_header(self, key: str) -> dict:
        return {"x-echo-key": key, "www-authenticate": f"Bearer realm=loopback, key={key}"} if self.echo_key else {}


def sse_body(req: dict, text: str, key: str | None = None) -> bytes:
    """The reply as OpenAI streams it: a role chunk, content in pieces, a finish chunk, [DONE];
    with ``key``, one more content chunk quoting it whole and an extra field holding it."""
    base = {
        "id": "chatcmpl-loopback-stream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": req.get("model", "unknown"),
    }
    deltas = [{"role": "assistant", "content": ""}] + [{"content": text[i : i + 16]} for i in range(0, len(text), 16)]
    if key is not None:
        deltas.append({"content": f" [key {key}]"})
        base["system_fingerprint"] = f"fp-{key}"
    events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
