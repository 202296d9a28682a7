"""The lean HTTP/1.1 transport under AsyncOpenAI: response framing, keep-alive, errors."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading

import httpx2
import pytest
from openai import AsyncOpenAI

from bpo.llm.http1 import Response as _Response
from bpo.llm.transport import (
    LeanAsyncTransport,
    NoStatusLine,
    ReplyCut,
    ReplyStalled,
    no_answer,
    probe,
    proxy_configured,
)

REPLY = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hello"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def parse(*chunks: bytes) -> _Response:
    r = _Response()
    for c in chunks:
        r.feed(c)
    return r


def test_content_length_split_across_reads():
    r = parse(b"HTTP/1.1 200 OK\r\nContent-Len", b"gth: 5\r\nX-A: b\r\n\r\nhel", b"lo")
    assert r.done and r.status == 200 and bytes(r.body) == b"hello" and r.keep_alive
    assert (b"X-A", b"b") in r.headers


def test_chunked_with_extensions_and_trailers():
    r = parse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5;ext=1\r\nhello\r\n",
        b"6\r\n world\r\n0\r\nX-Trailer: t\r\n",
        b"\r\n",
    )
    assert r.done and bytes(r.body) == b"hello world"


def test_interim_response_close_and_http10():
    r = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    assert r.done and bytes(r.body) == b"ok" and not r.keep_alive
    r = parse(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
    assert not r.done and not r.keep_alive
    assert r.eof() and bytes(r.body) == b"until close"
    r = parse(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert r.done and bytes(r.body) == b""


def test_bad_responses_raise_protocol_errors():
    with pytest.raises(httpx2.RemoteProtocolError):
        parse(b"SMTP ready\r\n\r\n")
    with pytest.raises(httpx2.RemoteProtocolError):
        parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")


class RawServer:
    """Answers each request with the next scripted raw response; ``close_after`` closes the socket."""

    def __init__(self, script, tls=None):
        self.tls = tls
        self.script = list(script)
        self.requests = []
        self.conns = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.script:
            try:
                conn, _ = self.sock.accept()
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                return
            self.connections += 1
            self.conns.append(conn)  # kept open until close(): a silent server must stay silent
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn):
        buf = b""
        while self.script:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    conn.close()
                    return
                buf += data
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = int(
                ([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")] or [b"0"])[
                    0
                ]
            )  # a GET has no body
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests.append(head)
            buf = rest[length:]
            raw, close_after = self.script.pop(0)
            conn.sendall(raw)
            if close_after:
                conn.close()
                return

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def _call(port, n=1, timeout=5.0, scheme="http", ssl_context=None):
    async def go():
        transport = LeanAsyncTransport(4, ssl_context=ssl_context)
        client = AsyncOpenAI(
            base_url=f"{scheme}://localhost:{port}/v1",
            api_key="sk-t",
            max_retries=0,
            timeout=timeout,
            http_client=httpx2.AsyncClient(transport=transport),
        )
        out = []
        for _ in range(n):
            resp = await client.post("/chat/completions", body={"model": "m", "messages": []}, cast_to=httpx2.Response)
            out.append(json.loads(resp.content))
        await client.close()
        await transport.aclose()
        return out

    return asyncio.run(go())


def test_gzip_chunked_reply_and_a_silently_closed_keepalive_connection():
    body = gzip.compress(json.dumps(REPLY).encode())
    chunked = b"".join(
        [
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            f"{len(body[:10]):x}\r\n".encode(),
            body[:10],
            b"\r\n",
            f"{len(body[10:]):x}\r\n".encode(),
            body[10:],
            b"\r\n0\r\n\r\n",
        ]
    )
    plain = json.dumps(REPLY).encode()
    clen = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(plain), plain)
    # first reply, then the server drops the idle keep-alive connection; the next call reconnects
    srv = RawServer([(chunked, True), (clen, False)])
    try:
        out = _call(srv.port, n=2)
    finally:
        srv.close()
    assert [o["choices"][0]["message"]["content"] for o in out] == ["hello", "hello"]
    assert srv.connections == 2 and len(srv.requests) == 2
    assert srv.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1")
    assert b"authorization: bearer sk-t" in srv.requests[0].lower()


def test_keepalive_connection_is_reused():
    plain = json.dumps(REPLY).encode()
    clen = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(plain), plain)
    srv = RawServer([(clen, False)] * 3)
    try:
        _call(srv.port, n=3)
    finally:
        srv.close()
    assert srv.connections == 1 and len(srv.requests) == 3


def test_errors_map_to_the_sdk_exceptions():
    import openai

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(openai.APIConnectionError):
        _call(port)
    srv = RawServer([(b"", False)])  # accepts, never answers
    try:
        with pytest.raises(openai.APITimeoutError):
            _call(srv.port, timeout=0.3)
    finally:
        srv.close()
    err = b'{"error": {"message": "slow down"}}'
    srv = RawServer(
        [(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: %d\r\n\r\n%s" % (len(err), err), False)]
    )
    try:
        with pytest.raises(openai.RateLimitError) as e:
            _call(srv.port)
        assert e.value.response.headers["retry-after"] == "2"
    finally:
        srv.close()


def test_non_http_bytes_fail_at_the_first_bytes():
    for first in (b"S", b"SSH-2.0-x", b"\x15\x03\x01", b"HTTP/1.1 200 OK\r\n"[:4] + b"X"):
        with pytest.raises(NoStatusLine, match="not an HTTP reply"):
            parse(first)
    r = parse(b"HT", b"TP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # a prefix of HTTP/ is fine
    assert r.done and r.status == 200


def _seen(port, timeout=5.0):
    """What no_answer makes of one call to ``port`` (None: an HTTP answer came) and how long it took."""
    import time

    import openai

    t0 = time.monotonic()
    try:
        _call(port, timeout=timeout)
    except (openai.APITimeoutError, openai.APIConnectionError) as exc:
        return no_answer(exc.__cause__), exc.__cause__, time.monotonic() - t0
    return None, None, time.monotonic() - t0


@pytest.mark.parametrize(
    "script, kind, cls, detail",
    [
        ([(b"", True)], "closed before a status line", NoStatusLine, "without a response"),
        ([(b"HTTP/1.1 20", True)], "closed before a status line", NoStatusLine, "before a complete status line"),
        ([(b"\x15\x03\x01\x00\x02\x02\x46", False)], "not HTTP", NoStatusLine, "first bytes"),
        ([(b"", False)], "no reply in time", httpx2.ReadTimeout, "no HTTP status line within 1 s"),
    ],
)
def test_what_came_instead_of_an_http_answer(script, kind, cls, detail):
    srv = RawServer(script)
    try:
        seen, cause, took = _seen(srv.port, timeout=1.0)
    finally:
        srv.close()
    assert isinstance(cause, cls) and seen is not None and seen[0] == kind and detail in seen[1], (seen, cause)
    if kind == "not HTTP":
        assert took < 0.5, "garbage must fail at once, not at the read timeout"


@pytest.mark.parametrize(
    "script, cls",
    [
        ([(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{", True)], ReplyCut),
        ([(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{", False)], ReplyStalled),
    ],
)
def test_a_status_line_then_a_broken_body_is_an_http_answer(script, cls):
    srv = RawServer(script)
    try:
        seen, cause, _ = _seen(srv.port, timeout=0.5)
    finally:
        srv.close()
    assert isinstance(cause, cls) and seen is None


def test_a_banner_sent_before_the_request_is_not_http():
    """An SSH-like service speaks first; the request then fails at once, naming the banner."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    conns = []

    def serve():
        while True:
            try:
                c, _ = lst.accept()
            except OSError:
                return
            conns.append(c)
            c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        seen, cause, took = _seen(lst.getsockname()[1], timeout=2.0)
    finally:
        lst.close()
        for c in conns:
            c.close()
    assert seen[0] == "not HTTP" and "SSH-2.0" in seen[1], seen
    assert took < 1.0


def test_probe_counts_any_http_status_as_alive():
    async def go(port, timeout):
        async with httpx2.AsyncClient(transport=LeanAsyncTransport(1)) as http:
            return await probe(http, f"http://127.0.0.1:{port}/v1/models", timeout)

    srv = RawServer([(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", True)])
    try:
        assert asyncio.run(go(srv.port, 1.0)) is None
    finally:
        srv.close()
    srv = RawServer([(b"", False)])  # hung
    try:
        kind, detail = asyncio.run(go(srv.port, 0.3))
    finally:
        srv.close()
    assert kind == "no reply in time" and detail.startswith(f"probe GET http://127.0.0.1:{srv.port}/v1/models")


def test_proxy_detection(monkeypatch):
    for var in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    assert not proxy_configured("https://api.openai.com/v1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert proxy_configured("https://api.openai.com/v1")
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert not proxy_configured("https://api.openai.com/v1")


def test_https_with_certificate_verification(tmp_path):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    plain = json.dumps(REPLY).encode()
    clen = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(plain), plain)
    srv = RawServer([(clen, False)] * 2, tls=server_ctx)
    try:
        out = _call(srv.port, n=2, scheme="https", ssl_context=ssl.create_default_context(cafile=str(cert)))
        assert [o["choices"][0]["message"]["content"] for o in out] == ["hello", "hello"]
        assert srv.connections == 1
    finally:
        srv.close()
    # an untrusted certificate is refused
    srv = RawServer([(clen, False)], tls=server_ctx)
    try:
        import openai

        with pytest.raises(openai.APIConnectionError):
            _call(srv.port, scheme="https", ssl_context=ssl.create_default_context())
    finally:
        srv.close()
