"""HTTP/1.1 responses read incrementally, and the errors that say how far a reply got (status line or not).

Used by the lean transport (bpo.llm.transport); the error kinds decide whether the endpoint
counts as alive for the liveness breaker (bpo.llm.breaker).
"""

from __future__ import annotations

import httpx2

_MAX_HEAD = 64 * 1024
_HTTP = b"HTTP/"


# What came back instead of an HTTP answer decides whether the endpoint is alive (the liveness
# breaker): these two say a status line arrived, so the server speaks HTTP even if the reply broke.
class ReplyCut(httpx2.RemoteProtocolError):
    """The status line arrived, then the connection closed before the response was complete."""


class ReplyStalled(httpx2.ReadTimeout):
    """The status line arrived, the rest of the response did not within the read timeout."""


class NoStatusLine(httpx2.RemoteProtocolError):
    """The connection closed, or sent bytes that are not HTTP, before a status line."""


class Response:
    """Incremental HTTP/1.1 response parser (status, headers, Content-Length/chunked/close)."""

    __slots__ = (
        "status",
        "reason",
        "headers",
        "body",
        "keep_alive",
        "_mode",
        "_remaining",
        "_buf",
        "done",
        "head_request",
        "_got_bytes",
    )

    def __init__(self, head_request: bool = False):
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.keep_alive = True
        self._mode = "head"  # head | length | chunk_size | chunk_data | chunk_crlf | trailer | close
        self._remaining = 0
        self._buf = bytearray()
        self.done = False
        self.head_request = head_request
        self._got_bytes = False

    @property
    def got_bytes(self) -> bool:
        return self._got_bytes

    def feed(self, data: bytes) -> None:
        self._got_bytes = True
        buf = self._buf
        buf += data
        while not self.done:
            mode = self._mode
            if mode == "head":
                if buf[:5] != _HTTP[: len(buf)]:  # an SSH banner, TLS alert, garbage: fail now, not at the timeout
                    raise NoStatusLine(f"not an HTTP reply (first bytes {bytes(buf[:24])!r})")
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise httpx2.RemoteProtocolError("response head too large")
                    return
                self._parse_head(bytes(buf[:end]))
                del buf[: end + 4]
            elif mode == "length":
                take = min(self._remaining, len(buf))
                self.body += buf[:take]
                del buf[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self.done = True
                else:
                    return
            elif mode == "chunk_size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise httpx2.RemoteProtocolError(f"bad chunk size {line[:20]!r}") from None
                if size == 0:
                    self._mode = "trailer"
                else:
                    self._remaining = size
                    self._mode = "chunk_data"
            elif mode == "chunk_data":
                take = min(self._remaining, len(buf))
                self.body += buf[:take]
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    return
                self._mode = "chunk_crlf"
            elif mode == "chunk_crlf":
                if len(buf) < 2:
                    return
                del buf[:2]
                self._mode = "chunk_size"
            elif mode == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:  # blank line ends the trailers
                    self.done = True
            else:  # "close": body runs to EOF
                self.body += buf
                buf.clear()
                return
        if buf:  # bytes after a complete response: the connection is out of sync
            self.keep_alive = False

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise httpx2.RemoteProtocolError(f"bad status line {lines[0][:60]!r}")
        status = int(parts[1])
        if 100 <= status < 200:  # interim response (100 Continue): wait for the real one
            return
        self.status = status
        self.reason = parts[2] if len(parts) > 2 else b""
        headers = []
        length = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip()
            value = value.strip()
            headers.append((name, value))
            low = name.lower()
            if low == b"content-length":
                length = int(value)
            elif low == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif low == b"connection" and value.lower() == b"close":
                self.keep_alive = False
        if parts[0] == b"HTTP/1.0":
            self.keep_alive = False
        self.headers = headers
        if self.head_request or status in (204, 304):
            self.done = True
        elif chunked:
            self._mode = "chunk_size"
        elif length is not None:
            self._remaining = length
            self._mode = "length"
            self.done = length == 0
        else:
            self._mode = "close"
            self.keep_alive = False

    def eof(self) -> bool:
        """Connection closed: True when that completes the response."""
        if self._mode == "close" and self.status:
            self.done = True
        return self.done
