"""The proxy's HTTP/1.1 client for the upstream API: asyncio protocol connections whose replies
are parsed by httptools (uvicorn's parser, already pinned), kept in a last-in-first-out list of
idle keep-alive connections.

Why not a client library: profiled at 64 concurrent clients (cProfile of ``bpo serve`` under
``benchmarks/bench_serve.py``, 0 ms upstream), httpcore2's pool took about 80% of a forwarded
request's time. Each request scans every pooled connection and asks each idle one whether its
socket is readable (``has_expired``: a ``poll`` call through anyio's attribute lookups), so the
cost grows with the number of connections. Here the event loop tells a connection when the
server closes it (``connection_lost``), and taking an idle one is a list pop. The proxy needs
nothing else a client library offers: it forwards bytes. ``bpo.llm.transport`` (the LLM client's
lean transport, same idea) does not fit here: it reads bodies whole (the proxy streams) and
answers with ``httpx2.Response`` objects, the model layer the proxy skips.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

_BUFFER_LIMIT = 1 << 20  # reply bytes held before reading pauses (a slow client, a fast upstream)


class UpstreamError(Exception):
    """No (complete) reply from the upstream; ``kind`` is timeout or connection (the message
    names the cause by class only: nothing of the request, its headers or key)."""

    def __init__(self, kind: str, cause: BaseException | str):
        super().__init__(f"{kind}: {cause if isinstance(cause, str) else type(cause).__name__}")
        self.kind = kind


def _wrap(exc: BaseException) -> UpstreamError:
    return UpstreamError("timeout" if isinstance(exc, TimeoutError) else "connection", exc)


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0

    def begin(self) -> None:
        """Ready for the next reply."""
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[str, str]] = []
        self.head: asyncio.Future = self.loop.create_future()
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.done = False
        self.until_close = False  # no content-length and not chunked: the body ends with the connection
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None

    # ---- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, AttributeError) as exc:  # AttributeError: bytes between replies
            self._fail(exc)
            self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if hasattr(self, "head") and self.head.done() and self.until_close and not self.done:
            self.on_message_complete()
        elif hasattr(self, "head") and not self.done:
            self._fail(exc or ConnectionResetError("upstream closed the connection"))

    def pause_writing(self) -> None:  # request bodies are small: the transport buffers them
        pass

    def resume_writing(self) -> None:
        pass

    # ---- httptools callbacks -------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim reply: the real one follows
            self.headers = []
            return
        names = {k for k, _ in self.headers}
        chunked = any(k == "transfer-encoding" and "chunked" in v.lower() for k, v in self.headers)
        self.until_close = "content-length" not in names and not chunked
        self.status = status
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _BUFFER_LIMIT:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head.done():  # an interim reply's end
            return
        self.keep_alive = not self.closed and self.parser.should_keep_alive()  # False once parsing moved on
        self.done = True
        self._wake()

    # ---- helpers ---------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        if not self.head.done():
            self.head.set_exception(exc)
            self.head.exception()  # retrieved: no "never retrieved" warning when nobody waits
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next_chunk(self, timeout_s: float) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self.chunks:
            if self.done:
                return None
            if self.error is not None:
                raise self.error
            self.waiter = self.loop.create_future()
            async with asyncio.timeout(timeout_s):
                await self.waiter
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.buffered <= _BUFFER_LIMIT // 2 and not self.closed:
            self.transport.resume_reading()
        return chunk


class UpstreamResponse:
    """A reply whose head has arrived; read or iterate its body once, then it is released
    (``aclose`` releases it early: the connection is dropped, not reused)."""

    def __init__(self, upstream: Upstream, conn: _Connection):
        self._upstream, self._conn = upstream, conn
        self.status: int = conn.status
        self.headers: list[tuple[str, str]] = conn.headers
        self._released = False

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_bytes()])

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            while (chunk := await self._conn.next_chunk(self._upstream.read_timeout_s)) is not None:
                yield chunk
        except (TimeoutError, OSError, httptools.HttpParserError) as exc:
            await self.aclose()
            raise _wrap(exc) from None
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._upstream._release(self._conn)

    async def aclose(self) -> None:
        self._release()


class Upstream:
    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        timeout_s: float,
        max_connections: int,
        keepalive_expiry_s: float = 30.0,
    ):
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream.base_url (--upstream): not an http(s) URL: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = _ssl_context() if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        self._query = "?" + parts.query if parts.query else ""
        # identity: the reply's bytes are checked, redacted and forwarded as they came
        host = parts.netloc.rpartition("@")[2]  # never user:password@ of the URL
        fixed = {"host": host, "accept-encoding": "identity", **{k.lower(): v for k, v in headers.items()}}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self.connect_timeout_s = min(10.0, timeout_s)
        self.read_timeout_s = timeout_s
        self._keepalive_s = keepalive_expiry_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()

    async def send(
        self, method: str, path: str, content: bytes = b"", headers: dict[str, str] | None = None
    ) -> UpstreamResponse:
        """The upstream's reply (head read, body not yet); :class:`UpstreamError` when none came."""
        head = f"{method} {self._prefix}{path}{self._query} HTTP/1.1\r\n".encode("latin-1") + self._fixed
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n".encode("latin-1")
        if method != "GET":
            head += b"content-length: %d\r\n" % len(content)
        request = head + b"\r\n" + (content if method != "GET" else b"")
        if self._slots.locked():  # all connections busy: wait for one, within the timeout
            try:
                async with asyncio.timeout(self.read_timeout_s):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise _wrap(exc) from None
        else:
            await self._slots.acquire()  # returns at once
        conn = None
        try:
            conn = await self._connection()
            conn.begin()
            self._busy.add(conn)
            conn.transport.write(request)
            async with asyncio.timeout(self.read_timeout_s):
                await conn.head
        except (TimeoutError, OSError, httptools.HttpParserError) as exc:
            if conn is not None:
                self._drop(conn)
            self._slots.release()
            raise _wrap(exc) from None
        except BaseException:  # cancelled (the client left): the connection is mid-request
            if conn is not None:
                self._drop(conn)
            self._slots.release()
            raise
        return UpstreamResponse(self, conn)

    async def _connection(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive_s:
                return conn
            conn.transport.close()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout_s):
            _, conn = await loop.create_connection(
                lambda: _Connection(loop),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
        return conn

    def _release(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if conn.done and conn.keep_alive and not conn.closed and conn.error is None:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.closed = True
            conn.transport.close()
        self._slots.release()

    def _drop(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        conn.closed = True
        if conn.transport is not None:
            conn.transport.close()

    async def aclose(self) -> None:
        for conn in [*self._idle, *self._busy]:
            conn.closed = True
            conn.transport.close()
        self._idle.clear()
        self._busy.clear()


def _ssl_context() -> ssl.SSLContext:
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # the system's CA store
        return ssl.create_default_context()
