"""`bpo serve`: the real openai client (sync, async, streaming) against the proxy under uvicorn on
a loopback port, with a loopback upstream (tests/serve_upstream.py) as the LLM API and as the
served optimizer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from urllib.parse import unquote

import httpx
import openai
import pytest
from serve_upstream import REWRITE_PREFIX, ChatUpstream

from bpo.serve.app import create_app
from bpo.serve.server import ServerThread
from bpo.settings.serve import load_serve_config

CLIENT_KEY = "client-key-123"
UPSTREAM_KEY = "sk-upstream-secret-XYZ"
ENV = {"BPO_TEST_CLIENT_KEYS": f"{CLIENT_KEY},second-client-key", "BPO_TEST_UPSTREAM_KEY": UPSTREAM_KEY}


@pytest.fixture(scope="module")
def tiny_optimizer(tmp_path_factory):
    """An optimizer folder as the trainer writes it, random tiny weights (nothing trained)."""
    from eval_helpers import save_tiny_optimizer
    from sft_fixture import sft_rows

    pairs = [(r["prompt"], r["optimized_prompt"]) for r in sft_rows(32)]
    return save_tiny_optimizer(tmp_path_factory.mktemp("optimizer"), pairs)


@pytest.fixture
def upstream():
    with ChatUpstream() as srv:
        yield srv


def settings(srv, tmp_path, **over):
    base = {
        "api_keys_env": "BPO_TEST_CLIENT_KEYS",
        "cache": str(tmp_path / "rewrites.sqlite"),
        "upstream": {"base_url": srv.base_url, "api_key_env": "BPO_TEST_UPSTREAM_KEY"},
        "rewriter": {"kind": "remote", "optimizer": "optimizer", "remote_base_url": srv.base_url},
        "batching": {"max_wait_ms": 20},
    }
    for k, v in over.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return load_serve_config(None, base)


@pytest.fixture
def proxy(upstream, tmp_path):
    with ServerThread(create_app(settings(upstream, tmp_path), environ=ENV)) as srv:
        yield srv


def client(proxy, key=CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key=key, max_retries=0)


def upstream_bodies(upstream, path="/chat/completions"):
    return [json.loads(r.body) for r in upstream.requests if r.path.endswith(path)]


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "tell me about tides"},
]


def test_sync_client_gets_reply_to_rewritten_prompt(upstream, proxy):
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="loopback-chat", messages=MESSAGES, temperature=0.3, max_tokens=50, extra_body={"top_k": 5}
    )
    reply = raw.parse()
    rewritten = REWRITE_PREFIX + "tell me about tides"
    assert reply.choices[0].message.content == f"loopback reply to: {rewritten}"
    assert reply.id.startswith("chatcmpl-loopback") and reply.usage.total_tokens > 0  # upstream fields kept
    assert reply.bpo == {"prompt": rewritten, "rewrite": "rewritten", "fallback_reason": None, "cached": False}
    assert unquote(raw.headers["x-bpo-prompt"]) == rewritten and raw.headers["x-bpo-rewrite"] == "rewritten"
    (sent,) = upstream_bodies(upstream)
    assert sent["messages"][:3] == MESSAGES[:3]  # system and earlier turns untouched
    assert sent["messages"][3] == {"role": "user", "content": rewritten}
    assert (sent["temperature"], sent["max_tokens"], sent["top_k"]) == (0.3, 50, 5)  # every field passes
    (rec,) = [r for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in json.dumps(rec.headers)
    assert UPSTREAM_KEY not in raw.http_response.text and UPSTREAM_KEY not in str(raw.headers)


def test_streaming_and_content_parts(upstream, proxy):
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "summarize this"}, {"type": "text", "text": "ATTACHED DOCUMENT"}],
        }
    ]
    chunks = list(client(proxy).chat.completions.create(model="m", messages=messages, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"loopback reply to: {REWRITE_PREFIX}summarize thisATTACHED DOCUMENT"
    assert chunks[0].bpo["prompt"] == REWRITE_PREFIX + "summarize this"
    assert chunks[-1].choices[0].finish_reason == "stop"
    (sent,) = upstream_bodies(upstream)
    assert sent["messages"][0]["content"][1] == {"type": "text", "text": "ATTACHED DOCUMENT"}  # context kept
    assert sent["stream"] is True


def test_async_concurrency_each_reply_to_its_own_request(upstream, proxy):
    async def run():
        aclient = openai.AsyncOpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0)

        async def one(i):
            if i % 3 == 0:  # streaming and not, interleaved
                stream = await aclient.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": f"question number {i}"}], stream=True
                )
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            r = await aclient.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"question number {i}"}]
            )
            return r.choices[0].message.content

        out = await asyncio.gather(*(one(i) for i in range(96)))
        await aclient.close()
        return out

    upstream.latency_s = 0.02
    upstream.completions_latency_s = 0.05
    replies = asyncio.run(run())
    assert replies == [f"loopback reply to: {REWRITE_PREFIX}question number {i}" for i in range(96)]
    assert max(upstream.completion_batches) > 1  # concurrent rewrites were batched
    assert sum(upstream.completion_batches) == 96  # each distinct prompt rewritten once


def test_opt_out_by_header_and_body_field(upstream, proxy):
    c = client(proxy)
    r1 = c.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "keep me"}], extra_headers={"X-BPO-Rewrite": "off"}
    )
    r2 = c.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "keep me too"}], extra_body={"bpo": {"rewrite": False}}
    )
    assert r1.choices[0].message.content == "loopback reply to: keep me" and r1.bpo["rewrite"] == "off"
    assert r2.choices[0].message.content == "loopback reply to: keep me too"
    assert all("bpo" not in b for b in upstream_bodies(upstream))  # the extension field is not forwarded
    assert upstream.completion_batches == []


def test_auth_failures(upstream, proxy):
    for key in ("wrong-key", UPSTREAM_KEY):
        with pytest.raises(openai.AuthenticationError) as exc:
            client(proxy, key).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert exc.value.status_code == 401 and exc.value.body["code"] == "invalid_api_key"
        assert key not in exc.value.response.text
    with pytest.raises(openai.AuthenticationError):
        client(proxy, key="wrong").models.list()
    assert httpx.get(proxy.url + "/metrics").status_code == 401
    assert httpx.post(proxy.base_url + "/rewrite", json={"prompt": "x"}).status_code == 401
    assert httpx.get(proxy.url + "/health").json()["status"] == "ok"  # liveness needs no key
    assert upstream.total == 0 and upstream.completion_batches == []
    assert client(proxy, "second-client-key").models.list().data[0].id == "loopback-chat"


def test_bad_inputs_get_openai_style_errors(upstream, proxy, tmp_path):
    h = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
    r = httpx.post(proxy.base_url + "/chat/completions", content=b'{"model": "m", "messages": [', headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(proxy.base_url + "/chat/completions", content=b'["a list"]', headers=h)
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 2_000_000}]})
    r = httpx.post(proxy.base_url + "/chat/completions", content=big, headers=h)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = httpx.post(proxy.base_url + "/rewrite", json={"prompt": 3}, headers=h)
    assert r.status_code == 400 and "prompt" in r.json()["error"]["message"]
    r = httpx.post(proxy.base_url + "/chat/completions", json={"messages": [], "bpo": "off"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_bpo_field"
    r = httpx.get(proxy.base_url + "/nowhere", headers=h)
    assert r.status_code == 404 and "error" in r.json()
    # No user text: forwarded unchanged, the upstream's own validation answers.
    reply = client(proxy).chat.completions.create(model="m", messages=[{"role": "system", "content": "s"}])
    assert reply.bpo["rewrite"] == "none"
    assert upstream.total == 1


def test_upstream_errors_pass_through_with_retry_after(upstream, proxy):
    upstream.fail("429", retry_after=7, match="limited")
    upstream.fail("503", retry_after=3, match="down")
    h = {"authorization": f"Bearer {CLIENT_KEY}"}
    body = {"model": "m", "messages": [{"role": "user", "content": "limited"}], "bpo": {"rewrite": False}}
    r = httpx.post(proxy.base_url + "/chat/completions", json=body, headers=h)
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json() == {"error": {"message": "scripted 429", "type": "loopback", "code": None}}
    with pytest.raises(openai.InternalServerError) as exc:
        client(proxy).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "down"}], extra_headers={"x-bpo-rewrite": "off"}
        )
    assert exc.value.status_code == 503 and exc.value.response.headers["retry-after"] == "3"


def test_dead_upstream_is_502(upstream, tmp_path):
    s = settings(upstream, tmp_path, upstream={"base_url": "http://127.0.0.1:9/v1"}, rewriter={"kind": "identity"})
    with ServerThread(create_app(s, environ=ENV)) as proxy:
        with pytest.raises(openai.APIStatusError) as exc:
            client(proxy).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert exc.value.status_code == 502 and exc.value.body["code"] == "upstream_unreachable"
        m = httpx.get(proxy.url + "/metrics", headers={"authorization": f"Bearer {CLIENT_KEY}"}).text
        assert 'bpo_serve_upstream_errors_total{kind="connection"} 1.0' in m
        assert 'bpo_serve_requests_total{code="502",endpoint="chat"} 1.0' in m


def test_degenerate_rewrite_falls_back_and_is_counted(upstream, proxy):
    reply = client(proxy).chat.completions.create(model="m", messages=[{"role": "user", "content": "REPEAT after me"}])
    assert reply.choices[0].message.content == "loopback reply to: REPEAT after me"
    assert reply.bpo == {
        "prompt": "REPEAT after me",
        "rewrite": "fallback",
        "fallback_reason": "repetition",
        "cached": False,
    }
    m = httpx.get(proxy.url + "/metrics", headers={"authorization": f"Bearer {CLIENT_KEY}"}).text
    assert 'bpo_serve_fallbacks_total{reason="repetition"} 1.0' in m
    assert "bpo_serve_queue_depth 0.0" in m and "bpo_serve_rewrite_seconds_bucket" in m
    assert 'bpo_serve_upstream_seconds_count{endpoint="chat"} 1.0' in m


def test_rewrite_endpoint_and_cache_across_restarts(upstream, tmp_path):
    h = {"authorization": f"Bearer {CLIENT_KEY}"}
    for run in range(2):
        with ServerThread(create_app(settings(upstream, tmp_path), environ=ENV)) as proxy:
            r = httpx.post(proxy.base_url + "/rewrite", json={"prompt": "what is a tide"}, headers=h).json()
            assert r["prompt"] == REWRITE_PREFIX + "what is a tide" and r["original"] == "what is a tide"
            assert r["cached"] is (run == 1)
    assert upstream.completion_batches == [1]  # paid once
    assert upstream.total == 0  # /v1/rewrite never calls the chat upstream
    rows = sqlite3.connect(tmp_path / "rewrites.sqlite").execute("SELECT prompt, text FROM rewrites").fetchall()
    assert rows == [("what is a tide", REWRITE_PREFIX + "what is a tide")]


def test_full_queue_is_429_and_timeout_falls_back(upstream, tmp_path):
    upstream.completions_latency_s = 1.0
    s = settings(upstream, tmp_path, batching={"max_queue": 2, "max_batch_size": 1, "timeout_s": 0.5, "max_wait_ms": 0})
    h = {"authorization": f"Bearer {CLIENT_KEY}"}

    async def run(proxy):
        async with httpx.AsyncClient(base_url=proxy.base_url, headers=h, timeout=10) as c:
            return await asyncio.gather(*(c.post("/rewrite", json={"prompt": f"p{i}"}) for i in range(6)))

    with ServerThread(create_app(s, environ=ENV)) as proxy:
        replies = asyncio.run(run(proxy))
        codes = sorted(r.status_code for r in replies)
        # 2 wait in the queue, 1 more when the batcher took one into a batch before the rest arrived
        assert codes.count(200) in (2, 3) and codes.count(429) == 6 - codes.count(200), codes
        for r in replies:
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["code"] == "rewrite_queue_full"
            else:  # 0.5 s timeout < 1 s optimizer: the original goes through, counted
                assert r.json()["prompt"] == r.json()["original"] and r.json()["fallback_reason"] == "timeout"
        m = httpx.get(proxy.url + "/metrics", headers=h).text
        assert 'bpo_serve_fallbacks_total{reason="timeout"}' in m and "bpo_serve_queue_rejected_total" in m


def test_upstream_key_never_logged(upstream, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    s = settings(upstream, tmp_path, upstream={"base_url": "http://127.0.0.1:9/v1"})
    with ServerThread(create_app(s, environ=ENV), log_level="debug") as proxy:
        with pytest.raises(openai.APIStatusError):
            client(proxy).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caplog.records and UPSTREAM_KEY not in caplog.text


def test_local_optimizer_rewrites(upstream, tmp_path, tiny_optimizer):
    s = settings(
        upstream,
        tmp_path,
        rewriter={"kind": "local", "optimizer": tiny_optimizer, "max_new_tokens": 24, "greedy": True},
    )
    with ServerThread(create_app(s, environ=ENV)) as proxy:

        async def run():
            async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key=CLIENT_KEY, max_retries=0) as c:
                return await asyncio.gather(
                    *(
                        c.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": f"explain topic {i}"}]
                        )
                        for i in range(8)
                    )
                )

        replies = asyncio.run(run())
        for i, r in enumerate(replies):  # a rewrite, or the original with the optimizer's reason
            assert (
                r.choices[0].message.content
                == f"loopback reply to: {r.bpo['prompt']}"[: len("loopback reply to: ") + 200]
            )
            assert (r.bpo["fallback_reason"] is None) != (r.bpo["prompt"] == f"explain topic {i}")
        m = httpx.get(proxy.url + "/metrics", headers={"authorization": f"Bearer {CLIENT_KEY}"}).text
        assert "bpo_serve_rewrite_batch_size_count" in m and 'source="optimizer"' in m


def test_config_errors_and_refusals(upstream, tmp_path, capsys):
    from bpo.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--rewriter", "identity", "--cache", str(tmp_path / "c")]) == 2
    assert "needs client keys" in capsys.readouterr().err
    bad = tmp_path / "serve.yaml"
    bad.write_text("batching: {max_queue: 0}\n")
    assert main(["serve", "--config", str(bad), "--rewriter", "identity"]) == 2
    assert "batching.max_queue" in capsys.readouterr().err
    assert main(["serve", "--workers", "0", "--rewriter", "identity", "--cache", str(tmp_path / "c")]) == 2
    assert "workers" in capsys.readouterr().err
    assert main(["serve", "--optimizer", str(tmp_path / "no-such-optimizer"), "--cache", str(tmp_path / "c")]) == 2
    assert f"{tmp_path / 'no-such-optimizer'} does not exist" in capsys.readouterr().err  # as bpo optimize says
    with pytest.raises(ValueError, match="BPO_TEST_UPSTREAM_KEY"):
        create_app(settings(upstream, tmp_path), environ={"BPO_TEST_CLIENT_KEYS": "k"})
    with pytest.raises(ValueError, match="keys of their own"):
        create_app(settings(upstream, tmp_path), environ={**ENV, "BPO_TEST_CLIENT_KEYS": UPSTREAM_KEY})


def test_identity_forwards_the_bytes_as_sent(upstream, tmp_path):
    s = settings(upstream, tmp_path, rewriter={"kind": "identity"})
    raw = b'{"model": "m",  "messages": [{"role": "user", "content": "caf\\u00e9 \xe2\x98\x95"}], "n": 2}'
    with ServerThread(create_app(s, environ=ENV)) as proxy:
        r = httpx.post(
            proxy.base_url + "/chat/completions",
            content=raw,
            headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"},
        )
    assert r.status_code == 200 and len(r.json()["choices"]) == 2
    assert r.json()["bpo"] == {"prompt": "café ☕", "rewrite": "unchanged", "fallback_reason": None, "cached": False}
    assert r.headers["x-bpo-rewrite"] == "unchanged" and "x-bpo-prompt" not in r.headers
    (rec,) = upstream.requests
    assert rec.body == raw


def test_audit_field_is_spliced_into_json_objects_only():
    from bpo.serve.sse import add_field as _add_field
    from bpo.serve.sse import inject_first_event as _inject_first_event

    assert json.loads(_add_field(b'{"id": "x", "choices": []}\n', b'{"a": 1}')) == {
        "id": "x",
        "choices": [],
        "bpo": {"a": 1},
    }
    assert json.loads(_add_field(b"{ }", b"1")) == {"bpo": 1}
    assert _add_field(b"[1, 2]", b"1") == b"[1, 2]" and _add_field(b"not json", b"1") == b"not json"
    event = b'event: x\ndata: {"id": 1}'
    assert _inject_first_event(event, b"2") == b'event: x\ndata: {"id": 1, "bpo": 2}'
    assert _inject_first_event(b"data: [DONE]", b"2") == b"data: [DONE]"


def test_example_config_lists_the_schema_defaults():
    from pathlib import Path

    import yaml

    example = Path(__file__).resolve().parents[1] / "config" / "serve.yaml"
    assert load_serve_config(example) == load_serve_config(None)
    data = yaml.safe_load(example.read_text())
    assert load_serve_config(None).canonical() == {k: data[k] for k in sorted(data)}  # every key shown


def test_rewrite_cache_first_answer_wins_across_connections(tmp_path):
    from bpo.serve.cache import RewriteCache, cache_key
    from bpo.serve.rewriter import Rewrite

    a, b = RewriteCache(tmp_path / "c.sqlite"), RewriteCache(tmp_path / "c.sqlite")  # two processes' worth
    key = cache_key("optimizer-x", "p")
    assert a.get(key) is None and key != cache_key("optimizer-y", "p")
    a.put_many([(key, "optimizer-x", "p", Rewrite("first"))])
    b.put_many(
        [
            (key, "optimizer-x", "p", Rewrite("second")),
            (cache_key("optimizer-x", "q"), "optimizer-x", "q", Rewrite("q", "repetition")),
        ]
    )
    assert b.get(key) == Rewrite("first") and a.get(cache_key("optimizer-x", "q")) == Rewrite("q", "repetition")
    assert a.count() == b.count() == 2
    a.close()
    b.close()


# ---- the bad-input corpus: the proxy ---------------------------------------------------------
# Every malformed client body gets a 4xx with an OpenAI-style error on both body-reading
# endpoints, never a 500 or a traceback in the log.
_DEEP = 40_000  # ~200 KB of nesting: far past the JSON parser's recursion limit
PROXY_BAD_BODIES = {
    "truncated JSON": b'{"model": "m", "messages": [',
    "not UTF-8": b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe\xfa"}]}',
    "UTF-16 bytes": '{"prompt": "x"}'.encode("utf-16"),
    "deeply nested object": b'{"a": ' * _DEEP + b"1" + b"}" * _DEEP,
    "deeply nested array": b'{"messages": ' + b"[" * _DEEP + b"]" * _DEEP + b"}",
    "empty body": b"",
    "JSON array": b'["a list"]',
    "JSON string": b'"text"',
    "NaN literal only": b"NaN",
    "wrong types: messages a string": b'{"model": "m", "messages": "hello", "prompt": ["x"]}',
    "wrong types: messages of numbers": b'{"model": "m", "messages": [1, 2], "prompt": 3}',
    "wrong types: stream a string": b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes", '
    b'"prompt": {"text": "x"}}',
    "wrong types: bpo field": b'{"messages": [], "bpo": "off", "prompt": null}',
}


@pytest.mark.parametrize("path", ["/chat/completions", "/rewrite"])
def test_proxy_bad_bodies_are_openai_style_4xx(upstream, proxy, path, capfd, caplog):
    h = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
    assert all(len(b) < 1_048_576 for b in PROXY_BAD_BODIES.values())  # under the 413 limit: parsed
    assert len(PROXY_BAD_BODIES["deeply nested object"]) > 200_000
    with httpx.Client(base_url=proxy.base_url, headers=h) as c:
        for name, body in PROXY_BAD_BODIES.items():
            r = c.post(path, content=body)
            assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:200])
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, name
            assert error["type"] == "invalid_request_error" and error["message"], name
    assert upstream.total == 0 and upstream.completion_batches == []  # nothing malformed went on
    logged = capfd.readouterr().err + caplog.text
    assert "Traceback" not in logged and "Exception in ASGI" not in logged


def test_wrong_types_name_the_field(upstream, proxy):
    h = {"authorization": f"Bearer {CLIENT_KEY}"}
    for body, param in (
        ({"messages": "hello"}, "messages"),
        ({"model": "m"}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "stream": 1}, "stream"),
        ({"messages": [], "bpo": "off"}, "bpo"),
    ):
        error = httpx.post(proxy.base_url + "/chat/completions", json=body, headers=h).json()["error"]
        assert error["param"] == param and param in error["message"]


def test_client_leaving_mid_body_is_one_log_line(upstream, proxy, capfd, caplog):
    import socket

    caplog.set_level(logging.INFO, logger="bpo.serve.app")
    for path in ("/v1/chat/completions", "/v1/rewrite"):
        with socket.create_connection((proxy.host, proxy.port)) as s:
            s.sendall(
                f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\n"
                "content-type: application/json\r\ncontent-length: 5000\r\n\r\n".encode()
                + b'{"messages": ['
            )
            time.sleep(0.2)  # the handler is reading the body
    for _ in range(100):  # the disconnect reaches the handler asynchronously
        if len([r for r in caplog.records if "before its request body was complete" in r.getMessage()]) == 2:
            break
        time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if "before its request body was complete" in r.getMessage()]
    assert len(lines) == 2 and lines[0].startswith("chat:") and lines[1].startswith("rewrite:")
    logged = capfd.readouterr().err + caplog.text
    assert "Traceback" not in logged and "Exception in ASGI" not in logged
    assert httpx.get(proxy.url + "/health").status_code == 200 and upstream.total == 0


# ---- upstream replies the proxy cannot vouch for ----------------------------------------------
_HTML = b"<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"


def _reply(status: str, body: bytes, ctype: str = "application/json", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n{extra}\r\n").encode() + body


def test_upstream_200_not_json_or_not_a_stream_is_502_for_every_client(upstream, proxy):
    upstream.raw("html page", _reply("200 OK", _HTML, "text/html"))
    upstream.raw("cut json", _reply("200 OK", b'{"id": "chatcmpl-broken", "choices": [{"message": '))
    upstream.raw("json for a stream", _reply("200 OK", b'{"id": "x", "choices": []}'))
    upstream.raw("html as a stream", _reply("200 OK", _HTML, "text/event-stream"))
    upstream.raw("stream cut", _reply("200 OK", b'data: {"id": "x"', "text/event-stream"))
    upstream.raw("not http", b"SSH-2.0-OpenSSH_9.6\r\n", close=True)
    c = client(proxy)
    for prompt, stream in (
        ("html page", False),
        ("html page", True),
        ("cut json", False),
        ("json for a stream", True),
        ("html as a stream", True),
        ("stream cut", True),
        ("not http", False),
        ("not http", True),
    ):
        with pytest.raises(openai.APIStatusError) as exc:
            reply = c.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": prompt}],
                stream=stream,
                extra_headers={"x-bpo-rewrite": "off"},
            )
            list(reply) if stream else None
        assert exc.value.status_code == 502, (prompt, stream)
        assert set(exc.value.body) == {"message", "type", "param", "code"}
        assert exc.value.body["code"] == ("upstream_unreachable" if prompt == "not http" else "upstream_invalid_reply")
        assert "Welcome" not in exc.value.response.text
    upstream.models_html = True
    with pytest.raises(openai.APIStatusError) as exc:
        c.models.list()
    assert exc.value.status_code == 502 and exc.value.body["code"] == "upstream_invalid_reply"
    m = httpx.get(proxy.url + "/metrics", headers={"authorization": f"Bearer {CLIENT_KEY}"}).text
    assert 'bpo_serve_upstream_errors_total{kind="invalid_reply"} 7.0' in m


def test_upstream_framings_chunked_close_delimited_gzip_and_keepalive(upstream, tmp_path):
    import gzip

    reply = b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": []}'
    chunked = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    chunked += b"".join(b"%x\r\n%s\r\n" % (len(reply[i : i + 7]), reply[i : i + 7]) for i in range(0, len(reply), 7))
    upstream.raw("chunked", chunked + b"0\r\n\r\n")
    upstream.raw("until close", b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n" + reply, close=True)
    upstream.raw("gzipped", _reply("200 OK", gzip.compress(reply), extra="content-encoding: gzip\r\n"))
    upstream.raw("brotli", _reply("200 OK", b"\x0b\x02\x80", extra="content-encoding: br\r\n"))
    upstream.raw("short body", _reply("200 OK", reply)[:-10], close=True)
    s = settings(upstream, tmp_path, rewriter={"kind": "identity"})
    app = create_app(s, environ=ENV)
    with (
        ServerThread(app) as proxy,
        httpx.Client(base_url=proxy.base_url, headers={"authorization": f"Bearer {CLIENT_KEY}"}) as c,
    ):
        for prompt in ("chunked", "until close", "gzipped"):
            r = c.post("/chat/completions", json={"messages": [{"role": "user", "content": prompt}]})
            assert r.status_code == 200 and r.json()["id"] == "chatcmpl-x" and r.json()["bpo"]["rewrite"] == "unchanged"
            assert "content-encoding" not in r.headers
        r = c.post("/chat/completions", json={"messages": [{"role": "user", "content": "brotli"}]})
        assert r.status_code == 502 and "content-encoding 'br'" in r.json()["error"]["message"]
        r = c.post("/chat/completions", json={"messages": [{"role": "user", "content": "short body"}]})
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unreachable"
        for i in range(5):  # keep-alive: one connection serves requests one after the other
            assert (
                c.post("/chat/completions", json={"messages": [{"role": "user", "content": f"q{i}"}]}).status_code
                == 200
            )
        assert len(app.state.serve.upstream._idle) == 1


# ---- no key returned through any channel --------------------------------------------------------
SHAPELESS_KEY = "Zq7tLm2Pw9Xr4Kd8Vb3N"  # no recognisable shape, in a variable whose name says nothing


@pytest.mark.parametrize("key_env,key", [("BPO_TEST_UPSTREAM_KEY", UPSTREAM_KEY), ("MY_LLM_GATE", SHAPELESS_KEY)])
def test_upstream_key_never_reaches_clients(upstream, tmp_path, key_env, key):
    """An upstream that quotes the key it got everywhere it can: 200 bodies (text and an extra
    field), error bodies, headers, streamed events, the model list. Every byte a client gets back,
    through the openai client and raw httpx, holds no trace of it."""
    upstream.echo_key = True
    upstream.fail("401", times=2, match="wrong key", echo_key=True)
    environ = {**ENV, key_env: key}
    s = settings(upstream, tmp_path, upstream={"api_key_env": key_env})
    returned: list[bytes] = []
    with ServerThread(create_app(s, environ=environ)) as proxy:
        c = client(proxy)
        raw = c.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "hi"}])
        returned.append(raw.http_response.read() + str(raw.headers).encode())
        assert "called with [REDACTED]" in raw.parse().choices[0].message.content
        with c.chat.completions.with_streaming_response.create(
            model="m", messages=[{"role": "user", "content": "stream me"}], stream=True
        ) as sr:
            returned.append(b"".join(sr.http_response.iter_bytes()) + str(sr.headers).encode())
        assert b"[REDACTED]" in returned[-1]
        chunks = list(
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "stream me"}], stream=True)
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == (f"loopback reply to: {REWRITE_PREFIX}stream me (called with [REDACTED]) [key [REDACTED]]")
        assert chunks[-1].choices[0].finish_reason == "stop" and key not in str([ch.model_dump() for ch in chunks])
        with pytest.raises(openai.AuthenticationError) as exc:
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "wrong key"}])
        returned.append(exc.value.response.content + str(exc.value.response.headers).encode())
        assert "Incorrect API key provided: [REDACTED]" in exc.value.message
        models = c.models.with_raw_response.list()
        returned.append(models.http_response.read() + str(models.headers).encode())
        h = {"authorization": f"Bearer {CLIENT_KEY}"}
        for r in (
            httpx.post(
                proxy.base_url + "/chat/completions",
                headers=h,
                json={"messages": [{"role": "user", "content": "wrong key"}]},
            ),
            httpx.post(
                proxy.base_url + "/chat/completions",
                headers=h,
                json={"messages": [{"role": "user", "content": "raw"}], "stream": True},
            ),
            httpx.get(proxy.base_url + "/models", headers=h),
        ):
            returned.append(r.content + b"".join(k + b": " + v for k, v in r.headers.raw))
    assert len(upstream.requests) >= 5
    assert all(rec.headers["authorization"] == f"Bearer {key}" for rec in upstream.requests)  # it was echoed
    everything = b"\n".join(returned)
    assert key.encode() not in everything and key[3:15].encode() not in everything
    assert everything.count(b"[REDACTED]") >= 10


def test_workers_share_one_port_and_the_rewrite_cache(upstream, tmp_path):
    """`bpo serve --workers 2`: two server processes on one port; a rewrite one of them paid for
    is a cache hit for both (connections land on either process)."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[1]
    log = tmp_path / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "bpo.cli",
        "serve",
        "--workers",
        "2",
        "--port",
        str(port),
        "--api-keys-env",
        "BPO_TEST_CLIENT_KEYS",
        "--upstream",
        upstream.base_url,
        "--upstream-key-env",
        "BPO_TEST_UPSTREAM_KEY",
        "--rewriter",
        "remote",
        "--rewriter-url",
        upstream.base_url,
        "--optimizer",
        "optimizer",
        "--cache",
        str(tmp_path / "rewrites.sqlite"),
        "--log-level",
        "info",
    ]
    env = {**os.environ, **ENV, "PYTHONPATH": str(repo)}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        workers = [c for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
        assert len(workers) == 2
        h = {"authorization": f"Bearer {CLIENT_KEY}"}
        cached = [
            httpx.post(url + "/v1/rewrite", json={"prompt": "what is a tide"}, headers=h).json()["cached"]
            for _ in range(8)
        ]  # a new connection each: either worker may take it
        assert cached == [False] + [True] * 7 and upstream.completion_batches == [1]  # paid once
        c = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        replies = [
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "what is a tide"}])
            for _ in range(4)
        ]
        assert all(
            r.bpo["cached"] and r.choices[0].message.content.endswith(REWRITE_PREFIX + "what is a tide")
            for r in replies
        )
        assert upstream.completion_batches == [1]
        for _ in range(4):  # whichever worker answers the scrape, it counts every worker's requests
            m = httpx.get(url + "/metrics", headers=h).text
            assert 'bpo_serve_requests_total{code="200",endpoint="rewrite"} 8.0' in m
            assert 'bpo_serve_requests_total{code="200",endpoint="chat"} 4.0' in m and "bpo_serve_queue_depth" in m
        environ = dict(kv.split("=", 1) for kv in Path(f"/proc/{workers[0]}/environ").read_text().split("\0") if kv)
        files = " ".join(f.name for f in Path(environ["PROMETHEUS_MULTIPROC_DIR"]).iterdir())
        assert all(f"_{pid}.db" in files for pid in workers)  # both keep their values there
        upstream.echo_key = True  # the key from the real environment, through a worker process: never returned
        raw = c.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "echo"}])
        assert "called with [REDACTED]" in raw.parse().choices[0].message.content
        streamed = httpx.post(
            url + "/v1/chat/completions",
            headers=h,
            json={"messages": [{"role": "user", "content": "echo"}], "stream": True},
        )
        models = httpx.get(url + "/v1/models", headers=h)
        for r in (raw.http_response, streamed, models):
            assert UPSTREAM_KEY.encode() not in r.content + str(r.headers.raw).encode()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    text = log.read_text()
    assert proc.returncode == 0 and text.count("Application startup complete") == 2, text
    assert "Traceback" not in text and UPSTREAM_KEY not in text


def test_upstream_that_does_not_answer_is_504_sync_and_streaming(upstream, tmp_path):
    upstream.fail("hang", times=2, match="slow", seconds=30)
    s = settings(upstream, tmp_path, rewriter={"kind": "identity"}, upstream={"timeout_s": 0.5})
    with ServerThread(create_app(s, environ=ENV)) as proxy:
        for stream in (False, True):
            t0 = time.time()
            with pytest.raises(openai.APIStatusError) as exc:
                client(proxy).chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "slow"}], stream=stream
                )
            assert exc.value.status_code == 504 and exc.value.body["code"] == "upstream_timeout"
            assert time.time() - t0 < 5
        assert client(proxy).chat.completions.create(model="m", messages=[{"role": "user", "content": "ok"}]).choices


def test_upstream_connections_closed_between_requests_large_replies_and_broken_streams(upstream, tmp_path, caplog):
    """Idle keep-alive connections the upstream closes (as uvicorn-based servers do after 5 s)
    are not reused; a 3 MB reply arrives whole (reading pauses and resumes); a stream the
    upstream breaks mid-way ends the client's stream with one warning."""
    big = json.dumps(
        {
            "id": "chatcmpl-big",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "y" * 3_000_000}}],
        }
    ).encode()
    upstream.raw("big reply", _reply("200 OK", big))
    events = b'data: {"id": "s", "choices": [{"index": 0, "delta": {"content": "part"}}]}\n\n'
    upstream.raw(
        "broken stream",
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 5000\r\n\r\n" + events * 3,
        close=True,
    )
    s = settings(upstream, tmp_path, rewriter={"kind": "identity"})
    with ServerThread(create_app(s, environ=ENV)) as proxy:
        c = client(proxy)
        assert c.chat.completions.create(model="m", messages=[{"role": "user", "content": "one"}]).choices
        upstream._loop.call_soon_threadsafe(lambda: [t.close() for t in list(upstream._conns)])
        time.sleep(0.3)
        for i in range(3):
            assert c.chat.completions.create(model="m", messages=[{"role": "user", "content": f"again {i}"}]).choices
        r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "big reply"}])
        assert len(r.choices[0].message.content) == 3_000_000 and r.bpo["rewrite"] == "unchanged"
        chunks = list(
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "broken stream"}], stream=True)
        )
        assert "".join(ch.choices[0].delta.content for ch in chunks) == "part" * 3  # held runs flushed at the end
    assert len([r for r in caplog.records if "upstream stream ended early" in r.getMessage()]) == 1


def _sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _redacted_stream(pieces: list[str], field_path=("content",)) -> tuple[list[dict], str]:
    """Stream ``pieces`` as deltas through a StreamRedactor: (the chunks out, their text joined)."""
    from bpo.serve.sse import StreamRedactor

    def delta(text):
        if field_path == ("content",):
            return {"content": text}
        return {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}

    events = [_sse({"id": "c", "choices": [{"index": 0, "delta": delta(p), "finish_reason": None}]}) for p in pieces]
    events.append(_sse({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    events.append(b"data: [DONE]\n\n")
    r = StreamRedactor()
    out, rest = r.events(b"".join(events[:2]))
    for e in events[2:]:
        more, rest = r.events(rest + e)
        out += more
    assert rest == b""
    chunks = [json.loads(line[6:]) for line in out.split(b"\n\n") if line.startswith(b"data: {")]
    assert out.endswith(b"data: [DONE]\n\n") and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = ""
    for ch in chunks:
        d = ch["choices"][0]["delta"]
        text += d.get("content") or "".join(t["function"]["arguments"] for t in d.get("tool_calls") or [])
    return chunks, text


def test_stream_redactor_catches_a_key_split_anywhere():
    """Break it: the key split at every position, over two and three events, in content and in
    tool-call arguments, shaped and shapeless (with a blank inside); the text otherwise intact."""
    from bpo.redact import redact, register_value

    shapeless = "Qm4 vT8x Lp2Zr9"  # no shape, blanks inside: caught by value only
    register_value(shapeless)
    for key in (UPSTREAM_KEY, shapeless):
        full = f"Here it is: {key}, as sent. 好的，谢谢"
        expected = redact(full)
        assert key not in expected and "[REDACTED]" in expected
        start = full.index(key)
        for i in range(start, start + len(key) + 1):
            for j in (i, min(i + 5, len(full))):
                pieces = [p for p in (full[:i], full[i:j], full[j:]) if p]
                for path in (("content",), ("tool_calls",)):
                    _, text = _redacted_stream(pieces, path)
                    assert text == expected, (key, i, j, path)
        assert _redacted_stream(list(full))[1] == expected  # one character an event
    for full in ("send Authorization: Bearer abcdefgh12345678 then", "hf_abcdefghijk12 and ghp_" + "x" * 24 + "."):
        assert _redacted_stream(list(full))[1] == redact(full) != full


def test_stream_redactor_passes_ordinary_events_as_they_came():
    from bpo.serve.sse import StreamRedactor

    r = StreamRedactor()
    events = [
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"\xe5\xa5\xbd\xe7\x9a\x84 "},'
        b'"finish_reason":null}]}\n\n',
        b": keep-alive\n\n",
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"\xe8\xb0\xa2"},"finish_reason":null}]}\n\n',
        b'data: {"id":"c","choices":[],"usage":{"total_tokens":3}}\n\n',
    ]
    out, rest = r.events(b"".join(events))
    assert out == b"".join(events) and rest == b""  # text ending in blanks or CJK: nothing held, bytes kept
    chunks, text = _redacted_stream(["an ordinary ", "answer with words ", "split", "ting", " across"])
    assert text == "an ordinary answer with words splitting across"


def test_client_leaving_mid_stream_frees_the_upstream_connection(upstream, tmp_path, capfd, caplog):
    import socket

    first = b'data: {"id": "s", "choices": [{"index": 0, "delta": {"content": "first words "}}]}\n\n'
    upstream.raw(
        "never ends", b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 99999\r\n\r\n" + first
    )
    s = settings(upstream, tmp_path, rewriter={"kind": "identity"})
    app = create_app(s, environ=ENV)
    with ServerThread(app) as proxy:
        body = json.dumps({"messages": [{"role": "user", "content": "never ends"}], "stream": True}).encode()
        with socket.create_connection((proxy.host, proxy.port)) as sock:
            sock.sendall(
                f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            got = b""
            while b"first words" not in got:
                got += sock.recv(65536)
        for _ in range(100):  # the proxy notices, and drops the upstream connection mid-reply
            if not app.state.serve.upstream._busy:
                break
            time.sleep(0.05)
        assert not app.state.serve.upstream._busy and not app.state.serve.upstream._idle
        assert client(proxy).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).choices
    logged = capfd.readouterr().err + caplog.text
    assert "Traceback" not in logged and "Exception in ASGI" not in logged
