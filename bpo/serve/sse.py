"""Server-sent events as the proxy forwards them: where events end, their data, the audit field
spliced into a JSON object, and :class:`StreamRedactor`, which redacts a streamed reply.

Redacting each event alone would miss a key the upstream spreads over several events' text
(``"sk-upstre"`` in one delta, ``"am-secret"`` in the next). The redactor holds back, per choice
and text field, the text that could be the start of a secret (the trailing run of the ASCII
characters credential shapes are made of, with a ``Bearer``/``Basic`` before it; and any ending
that begins a known secret value, whatever its characters) and prepends it to that field's next
delta; the rest of the event goes out redacted. Held text goes out with the choice's finishing
event, or in an event of its own before ``[DONE]`` or the end of the stream. The client sees the
same text, an English word later at most (text in scripts without such runs, e.g. Chinese, is
not held).
"""

from __future__ import annotations

import json

from bpo.redact import redact, secrets

MAX_EVENT = 1 << 20  # an event longer than this is forwarded in pieces (redacted piece by piece)
_HOLD_MAX = 256  # a run longer than this is not a credential (the longest shapes are ~170): its head goes out
_CREDENTIAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+/=")
_TEXT_FIELDS = ("content", "reasoning_content", "refusal")
_SCHEMES = ("bearer", "basic")


def add_field(obj: bytes, audit: bytes) -> bytes:
    """``obj`` (a JSON object's bytes) with ``"bpo": audit`` added before its closing brace; every
    upstream byte before it stays as it was. Anything but an object passes through unchanged."""
    body = obj.rstrip()
    if not (body.startswith(b"{") and body.endswith(b"}")):
        return obj
    inner = body[:-1].rstrip()
    sep = b"" if inner.endswith(b"{") else b", "
    return inner + sep + b'"bpo": ' + audit + b"}"


def inject_first_event(buf: bytes, audit: bytes) -> bytes:
    """The first SSE event with the ``bpo`` field added to its JSON data (other bytes unchanged)."""
    lines = buf.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"data:"):
            try:
                obj = json.loads(line[5:])
            except (ValueError, RecursionError):
                return buf
            if isinstance(obj, dict):
                lines[i] = line[:5] + b" " + add_field(line[5:].strip(), audit)
            return b"\n".join(lines)
    return buf


def event_end(buf: bytes, start: int) -> tuple[int, int]:
    """(index, length) of the first blank line ending an event at or after ``start``; (-1, 0) if none."""
    a, b = buf.find(b"\n\n", start), buf.find(b"\r\n\r\n", start)
    if b >= 0 and (a < 0 or b < a):
        return b, 4
    return (a, 2) if a >= 0 else (-1, 0)


def event_data(event: bytes) -> bytes | None:
    """An event's data (its ``data:`` lines joined), or None for a comment or keep-alive."""
    lines = [line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def redact_bytes(data: bytes) -> bytes:
    """``data`` with every secret masked; bytes that are not UTF-8 stay as they were."""
    text = data.decode("utf-8", "surrogateescape")
    out = redact(text)
    return data if out == text else out.encode("utf-8", "surrogateescape")


def _hold_from(text: str, values: list[str]) -> int:
    """Where the end of ``text`` that could begin a secret starts (``len(text)``: nothing to hold)."""
    i = len(text)
    while i > 0 and text[i - 1] in _CREDENTIAL_CHARS:
        i -= 1
    cut = j = i
    while j > 0 and text[j - 1].isspace():  # "Bearer <token", "Bearer ": the scheme goes with its token
        j -= 1
    k = j
    while k > 0 and not text[k - 1].isspace():
        k -= 1
    if text[k:j].lower() in _SCHEMES:
        cut = k
    last = text[-1:]
    for value in values if last else ():  # a value with a blank inside: its longest beginning ending the text
        p = value.rfind(last, 0, min(len(value) - 1, len(text)))
        while p >= 0:  # only beginnings whose last character is the text's
            if text.endswith(value[: p + 1]):
                cut = min(cut, len(text) - p - 1)
                break
            p = value.rfind(last, 0, p)
    moved = True
    while moved:  # a whole value across the cut goes out whole (redacted), not half held
        moved = False
        for value in values:
            p = text.find(value, max(0, cut - len(value) + 1))
            if 0 <= p < cut < p + len(value):
                cut, moved = p + len(value), True
    return max(cut, len(text) - _HOLD_MAX)


class StreamRedactor:
    """Redacts one streamed reply, event by event (see the module docstring)."""

    def __init__(self) -> None:
        self._values = secrets()  # once per stream: what to mask does not change mid-reply
        self._held: dict[tuple, str] = {}  # (choice index, field, tool call index) -> text not yet sent
        self._base: dict = {}  # the last chunk's id, object, created, model: for an event of held text

    def events(self, buf: bytes) -> tuple[bytes, bytes]:
        """(the whole events at the start of ``buf``, redacted; the bytes after them)."""
        out, start = [], 0
        while (found := event_end(buf, start))[0] >= 0:
            end, sep = found
            out.append(self._event(buf[start : end + sep]))
            start = end + sep
        return redact_bytes(b"".join(out)), buf[start:]  # one pass: no key spans events once held back

    def flush(self) -> bytes:
        """An event with every choice's held text, redacted (nothing when none is held)."""
        return redact_bytes(self._flush())

    def _event(self, event: bytes) -> bytes:
        """One whole event (its blank line included), held text taken out or put back."""
        data = event_data(event)
        if data is None:
            return event
        if data == b"[DONE]":
            return self._flush() + event
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return event
        if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
            return event
        self._base = {k: obj[k] for k in ("id", "object", "created", "model") if k in obj}
        changed = False
        for choice in obj["choices"]:
            if isinstance(choice, dict):
                changed |= self._choice(choice)
        if not changed:
            return event
        lines = [line for line in event.rstrip(b"\r\n").splitlines() if not line.startswith(b"data:")]
        lines.append(b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())
        return b"\n".join(lines) + b"\n\n"

    def _flush(self) -> bytes:
        if not self._held:
            return b""
        choices: dict[int, dict] = {}
        for key in list(self._held):
            self._put_back(choices.setdefault(key[0], {}), key)
        obj = {**self._base, "choices": [{"index": i, "delta": d, "finish_reason": None} for i, d in choices.items()]}
        return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

    def _choice(self, choice: dict) -> bool:
        index, delta = choice.get("index", 0), choice.get("delta")
        final = choice.get("finish_reason") is not None
        changed = False
        if isinstance(delta, dict):
            for field in _TEXT_FIELDS:
                changed |= self._text(delta, field, (index, field, None), final)
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    changed |= self._text(fn, "arguments", (index, "tool_calls", call.get("index", 0)), final)
        if final:  # the choice ends: what it still holds goes out with this event
            keys = [k for k in self._held if k[0] == index]
            if keys:
                if not isinstance(delta, dict):
                    delta = choice["delta"] = {}
                for key in keys:
                    self._put_back(delta, key)
                changed = True
        return changed

    def _text(self, container: dict, field: str, key: tuple, final: bool) -> bool:
        piece = container.get(field)
        if not isinstance(piece, str):
            return False
        text = self._held.pop(key, "") + piece
        cut = len(text) if final else _hold_from(text, self._values)
        if cut < len(text):
            self._held[key] = text[cut:]
        if text[:cut] == piece:
            return False
        container[field] = text[:cut]
        return True

    def _put_back(self, delta: dict, key: tuple) -> None:
        text = self._held.pop(key)
        _, field, call = key
        if call is None:  # the held text came before anything this delta has
            delta[field] = text + (delta.get(field) or "")
        else:
            delta.setdefault("tool_calls", []).append({"index": call, "function": {"arguments": text}})
