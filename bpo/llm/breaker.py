"""The liveness breaker: stops a stage once its endpoint has given no HTTP answer for too long.

The breaker itself, how its probes are timed and the progress-bar note shown while the endpoint
is silent; the retry policy (bpo.llm.retry) reports to it, the dispatcher (bpo.llm.dispatch) runs its watch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bpo import redact
from bpo.llm.limits import Limits

log = logging.getLogger("bpo.llm")

_ERROR_TEXT_MAX = 300
# Liveness (see Breaker): silence with calls in flight before the endpoint is probed, how long a
# probe waits for a status line, and the least time between probes while the endpoint is silent.
PROBE_AFTER_S = 5.0
PROBE_TIMEOUT_S = 10.0
PROBE_GAP_S = 1.0


class Breaker:
    """Stops the stage once the endpoint has given no HTTP answer for ``limit_s``.

    Evidence of no answer: a call that failed to connect, timed out before a status line, saw
    the connection closed before one or got bytes that are not HTTP; and a failed liveness probe.
    Any HTTP answer, from a call or a probe and whatever its status, closes the streak. A call
    can wait ``timeout_s`` (120 s by default) for its reply, so silence alone proves nothing: after
    ``probe_after_s`` without an answer while calls are in flight, :meth:`watch` sends a short
    ``GET <base_url>/models`` (``probe_timeout_s``), again and again while the streak is open. A
    slow but live server answers the probe and is left alone; a hung or non-HTTP one fails it.
    """

    def __init__(self, limit_s: float, probe_after_s: float = PROBE_AFTER_S, probe_timeout_s: float = PROBE_TIMEOUT_S):
        self.limit_s = limit_s
        self.probe_after_s = probe_after_s
        self.probe_timeout_s = probe_timeout_s
        self.since: float | None = None  # first evidence of no answer since the last answer
        self.heard_at = time.monotonic()  # last HTTP answer, or when calls started waiting
        self.in_flight = 0
        self.failures = 0
        self.probes = 0
        self.seen: dict[str, int] = {}  # what came instead of an HTTP answer, by kind (this streak)
        self.last_error = ""
        self.waiting = 0  # calls in flight when the breaker tripped (they are cancelled)
        self.tripped = asyncio.Event()
        self.on_stall: Any = None  # called with the seconds of silence (0: an answer came)
        self._stall_shown = False

    def sending(self) -> None:
        if not self.in_flight:
            self.heard_at = time.monotonic()  # silence counts while something waits for a reply
        self.in_flight += 1

    def settled(self) -> None:
        self.in_flight -= 1

    def reachable(self) -> None:
        """An HTTP answer (any status) came back."""
        self.heard_at = time.monotonic()
        if self.since is not None:
            self.since = None
            self.failures = 0
            self.seen = {}
        if self._stall_shown:
            self._stall_shown = False
            self.on_stall(0.0)

    def unreachable(self, kind: str, error: str, name: str, base_url: str, at: float | None = None) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now if at is None else at
            log.warning(
                "endpoint '%s' (%s) gives no HTTP answer (%s); probing it and retrying for up to %g s "
                "(limits.circuit_breaker_s)",
                name,
                base_url,
                error,
                self.limit_s,
            )
        self.failures += 1
        self.seen[kind] = self.seen.get(kind, 0) + 1
        self.last_error = error
        if now - self.since >= self.limit_s and not self.tripped.is_set():
            self.waiting = self.in_flight
            self.tripped.set()

    def silent_s(self) -> float:
        return time.monotonic() - self.heard_at if self.in_flight or self.since is not None else 0.0

    def time_left(self) -> float:
        return self.limit_s if self.since is None else self.limit_s - (time.monotonic() - self.since)

    def describe(self) -> str:
        """What was seen instead of an HTTP answer, for the error that stops the stage."""
        kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(self.seen.items(), key=lambda kv: -kv[1]))
        waiting = f"; {self.waiting} calls in flight, ended" if self.waiting else ""
        return (
            f"no HTTP answer for {time.monotonic() - self.since:.0f} s: {self.failures} failures "
            f"({kinds}; {self.probes} liveness probes sent{waiting}); last: {self.last_error}"
        )

    async def watch(self, probe, name: str, base_url: str) -> None:
        """Probe the endpoint while it is silent; returns when the breaker trips."""
        while not self.tripped.is_set():
            if self.since is None:
                wait = self.probe_after_s - self.silent_s() if self.in_flight else self.probe_after_s
                if wait > 0:
                    await self.sleep(max(wait, 0.05))
                    continue
            t = time.monotonic()
            self.probes += 1
            seen = await probe(self.probe_timeout_s)
            if seen is None:
                self.reachable()
                continue
            self.unreachable(seen[0], short(seen[1]), name, base_url, at=t)
            if self.on_stall is not None:
                self._stall_shown = True
                self.on_stall(self.silent_s())
            await self.sleep(PROBE_GAP_S - (time.monotonic() - t))

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the breaker trips."""
        if seconds <= 0 or self.tripped.is_set():
            return
        try:
            await asyncio.wait_for(self.tripped.wait(), seconds)
        except TimeoutError:
            pass


def probe_timing(limits: Limits) -> tuple[float, float]:
    """(probe_after_s, probe_timeout_s): scaled down with a short breaker window, so that several
    probes fit in it; never longer than a call's own timeout."""
    after = min(PROBE_AFTER_S, limits.circuit_breaker_s / 6, limits.timeout_s)
    return after, min(PROBE_TIMEOUT_S, limits.circuit_breaker_s / 3, limits.timeout_s)


class StallNote:
    """While the endpoint is silent the progress bar says so, with no ETA (a rate measured
    before the stall would promise hours)."""

    FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA unknown{postfix}]"

    def __init__(self, bar, probe_url: str):
        self.bar = bar
        self.probe_url = probe_url
        self.postfix = ""

    def __call__(self, silent_s: float) -> None:
        if silent_s:
            if self.bar.bar_format != self.FORMAT:
                self.postfix = self.bar.postfix or ""
                self.bar.bar_format = self.FORMAT
            self.bar.set_postfix_str(f"no HTTP answer for {silent_s:.0f} s, probing {self.probe_url}")
        else:
            self.bar.bar_format = None
            self.bar.set_postfix_str(self.postfix, refresh=False)


def short(text: Any, limit: int = _ERROR_TEXT_MAX) -> str:
    """Error text as it may be logged or stored: redacted, cut at ``limit`` characters."""
    s = redact.redact(str(text))
    return s if len(s) <= limit else s[:limit] + "..."
