"""A lean HTTP/1.1 transport for `httpx2` (the HTTP stack of the `openai` package).

Why: at hundreds of concurrent calls the default stack (httpcore2 + anyio + h11) costs about
1 ms of CPU per call and scans the whole connection pool on every request, so a single Python
process cannot keep 256 slow calls in flight. This transport speaks plain HTTP/1.1 over
asyncio protocols (one request per connection at a time, keep-alive, LIFO idle pool, TLS via
`ssl`), about 0.1 ms per call. Everything above it is unchanged: `AsyncOpenAI` builds the
request, adds auth and maps errors; `httpx2.Response` decodes gzip/deflate bodies.

Scope: chat-completions style request/response (bodies read whole; no streaming, no
HTTP/2, no proxies; :func:`proxy_configured` tells the caller to fall back to the default
transport when a proxy environment variable applies). The response parser and the error
kinds are in bpo.llm.http1.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.request
from typing import Any

import httpx2

from bpo.llm.http1 import NoStatusLine, ReplyCut, ReplyStalled, Response

__all__ = [
    "LeanAsyncTransport",
    "NoStatusLine",
    "ReplyCut",
    "ReplyStalled",
    "default_ssl_context",
    "no_answer",
    "probe",
    "proxy_configured",
]


def proxy_configured(url: str) -> bool:
    """True when HTTP(S)_PROXY / ALL_PROXY applies to ``url`` (NO_PROXY respected)."""
    proxies = urllib.request.getproxies_environment()
    scheme = url.split(":", 1)[0].lower()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    host = httpx2.URL(url).host
    return not urllib.request.proxy_bypass_environment(host, proxies)


class _Expired(Exception):
    pass


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


class _Connection(asyncio.Protocol):
    __slots__ = ("transport", "closed", "response", "waiter", "key", "reused", "early")

    def __init__(self, key):
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.response: Response | None = None
        self.waiter: asyncio.Future | None = None
        self.reused = False
        self.early = b""  # bytes the server sent before any request (a non-HTTP service's banner)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        resp = self.response
        if resp is None:  # unsolicited bytes: never reuse this connection
            self.early = self.early or bytes(data[:24])
            self.closed = True
            self.transport.close()
            return
        try:
            resp.feed(data)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            self._finish(exc)
            return
        if resp.done:
            self._finish(None)

    def eof_received(self):
        return False  # close our side too

    def connection_lost(self, exc):
        self.closed = True
        resp = self.response
        if resp is not None and self.waiter is not None and not self.waiter.done():
            if resp.eof():
                self._finish(None)
            elif resp.status:
                self._finish(ReplyCut("server closed the connection before the response was complete"))
            else:
                self._finish(
                    NoStatusLine(
                        "server closed the connection before a complete status line"
                        if resp.got_bytes
                        else "server closed the connection without a response"
                    )
                )

    def _finish(self, exc):
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(self.response)
            else:
                waiter.set_exception(exc)


class LeanAsyncTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 keep-alive connection pool on asyncio; at most ``max_connections`` open."""

    def __init__(self, max_connections: int = 100, ssl_context: ssl.SSLContext | None = None):
        self.max_connections = max(1, int(max_connections))
        self._ssl_context = ssl_context
        self._idle: dict[Any, list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._slots: asyncio.Semaphore | None = None

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def _connect(self, key, timeout: float | None) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        kwargs = {}
        if scheme == "https":
            kwargs = {"ssl": self._ssl(), "server_hostname": host}
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(key), host, port, **kwargs), timeout
            )
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"connect to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpx2.ConnectError(f"connect to {host}:{port} failed: {exc}") from None
        self._all.add(conn)
        return conn

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        port = url.port or (443 if scheme == "https" else 80)
        key = (scheme, url.host, port)
        timeouts = request.extensions.get("timeout") or {}
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_connections)
        if self._slots.locked():  # wait_for costs a task: only pay it when we must wait
            try:
                await asyncio.wait_for(self._slots.acquire(), timeouts.get("pool"))
            except TimeoutError:
                raise httpx2.PoolTimeout("no free connection in the pool") from None
        else:
            await self._slots.acquire()
        try:
            body = await request.aread()
            target = url.raw_path
            head = [request.method.encode(), b" ", target, b" HTTP/1.1\r\n"]
            for name, value in request.headers.raw:
                head += [name, b": ", value, b"\r\n"]
            head.append(b"\r\n")
            payload = b"".join(head) + body
            # a pooled connection the server has silently dropped gets one fresh retry
            for attempt in (0, 1):
                conn = self._checkout(key)
                if conn is None:
                    conn = await self._connect(key, timeouts.get("connect"))
                try:
                    resp = await self._roundtrip(conn, payload, request, timeouts.get("read"))
                except httpx2.RemoteProtocolError as exc:
                    if conn.reused and attempt == 0 and "without a response" in str(exc):
                        continue
                    raise
                break
            if resp.keep_alive and not conn.closed:
                self._idle.setdefault(key, []).append(conn)
            else:
                self._close(conn)
        finally:
            self._slots.release()
        return httpx2.Response(
            resp.status,
            headers=resp.headers,
            stream=httpx2.ByteStream(bytes(resp.body)),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": resp.reason},
        )

    def _checkout(self, key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                conn.reused = True
                return conn
            self._all.discard(conn)
        return None

    async def _roundtrip(self, conn: _Connection, payload: bytes, request, read_timeout) -> Response:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if conn.closed:  # closed between connect and now, e.g. after a banner a non-HTTP service sent
            self._close(conn)
            raise NoStatusLine(
                f"not an HTTP reply (the server spoke first: {conn.early!r})"
                if conn.early
                else "server closed the connection without a response"
            )
        resp = conn.response = Response(head_request=request.method == "HEAD")
        conn.waiter = waiter
        # a timer on the waiter itself (cheaper than asyncio.wait_for's extra future and hop)
        timer = None
        if read_timeout is not None:
            timer = loop.call_later(read_timeout, _expire, waiter)
        try:
            conn.transport.write(payload)
            return await waiter
        except _Expired:
            self._close(conn)
            if resp.status:
                raise ReplyStalled(
                    f"HTTP {resp.status} but no complete response within {read_timeout:g} s", request=request
                ) from None
            raise httpx2.ReadTimeout(f"no HTTP status line within {read_timeout:g} s", request=request) from None
        except BaseException:
            self._close(conn)  # state unknown (cancelled, protocol error): never reuse
            raise
        finally:
            if timer is not None:
                timer.cancel()
            conn.response = None
            conn.waiter = None

    def _close(self, conn: _Connection) -> None:
        conn.closed = True
        self._all.discard(conn)
        if conn.transport is not None:
            conn.transport.close()

    async def aclose(self) -> None:
        for conn in list(self._all):
            self._close(conn)
        self._idle.clear()
        await asyncio.sleep(0)  # let transports run their close callbacks


def no_answer(exc: BaseException) -> tuple[str, str] | None:
    """``(kind, detail)`` when ``exc`` (a transport error) means no HTTP answer came back; None
    when a status line did arrive (:class:`ReplyCut`, :class:`ReplyStalled`: the server is alive).
    The default httpx transport does not tell a stalled or cut body from silence: there they
    count as no answer, and the breaker's liveness probes tell a live server apart."""
    if isinstance(exc, (ReplyCut, ReplyStalled)):
        return None
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout, ssl.SSLError)):
        return "connection failed", detail
    if isinstance(exc, httpx2.TimeoutException):
        return "no reply in time", detail
    if isinstance(exc, httpx2.RemoteProtocolError):
        return (
            "not HTTP"
            if "not an HTTP reply" in detail or "illegal" in detail.lower()
            else "closed before a status line"
        ), detail
    if isinstance(exc, (httpx2.NetworkError, OSError)):
        return "connection broken", detail
    return "connection error", f"{type(exc).__name__}: {detail}"


async def probe(client: httpx2.AsyncClient, url: str, timeout: float) -> tuple[str, str] | None:
    """GET ``url`` without credentials: None when any HTTP status comes back (401 and 404 too:
    something that speaks HTTP answered), else ``(kind, detail)`` as :func:`no_answer` gives."""
    try:
        await client.get(url, timeout=timeout)
    except httpx2.TransportError as exc:
        seen = no_answer(exc)
        return None if seen is None else (seen[0], f"probe GET {url}: {seen[1]}")
    return None


def default_ssl_context() -> ssl.SSLContext:
    """CA certificates as httpx uses them: SSL_CERT_FILE when set, else certifi's bundle, else
    the system store."""
    cafile = os.environ.get("SSL_CERT_FILE")
    if not (cafile and os.path.isfile(cafile)):
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:
            cafile = None
    return ssl.create_default_context(cafile=cafile)
