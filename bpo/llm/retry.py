"""The retry policy: one request sent until it is answered, refused for good or out of attempts.

Retries with exponential backoff + jitter on 429/5xx/408/409, timeouts, connection errors and
malformed bodies (Retry-After honoured, a 429 pauses the rate limiter); a 401/403/404 ends the
stage (:class:`Fatal`); a failure to get any HTTP answer is reported to the liveness breaker and
retried only within its window.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time

import httpx2
import openai
from openai import AsyncOpenAI

from bpo import redact
from bpo.llm.breaker import Breaker, short
from bpo.llm.limits import Limits, RateLimiter
from bpo.llm.reply import answered, parse
from bpo.llm.request import ChatRequest, ChatResult
from bpo.llm.transport import no_answer

log = logging.getLogger("bpo.llm")


class Fatal(Exception):
    """A reply that makes every further call pointless (bad key, unknown model/endpoint)."""


class Stopped(Exception):
    """The circuit breaker tripped while this call waited to be retried."""


def retry_after(headers: httpx2.Headers | None) -> float | None:
    """The wait a server asked for (Retry-After-Ms or Retry-After, seconds or a date), if usable."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            try:
                seconds = email.utils.mktime_tz(email.utils.parsedate_tz(value)) - time.time()
            except (TypeError, ValueError, OverflowError):
                continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


class Caller:
    """Sends one run's requests through ``client`` with the retry policy above."""

    def __init__(
        self,
        client: AsyncOpenAI,
        limits: Limits,
        limiter: RateLimiter,
        breaker: Breaker,
        stats: dict,
        *,
        name: str,
        base_url: str,
        stage: str,
        backend: str,
        source: str,
    ):
        self.client, self.limits, self.limiter, self.breaker, self.stats = client, limits, limiter, breaker, stats
        self.name, self.base_url, self.stage, self.backend, self.source = name, base_url, stage, backend, source
        self.n_failed = 0

    async def call(self, req: ChatRequest):
        """One request with retries: (ChatResult, cache row or None when failed, attempts)."""
        # the canonical JSON the key was computed from, sent as is (no second serialisation)
        content = req.body_json.encode("utf-8")
        lim, client, limiter, stats, breaker = self.limits, self.client, self.limiter, self.stats, self.breaker
        last_error = "no attempt made"
        attempt = 0
        for attempt in range(lim.max_retries + 1):
            if breaker.tripped.is_set():
                raise Stopped
            if attempt:
                stats["retries"] += 1
            t = time.perf_counter()
            delay = None
            breaker.sending()
            try:
                resp = await client.post("/chat/completions", content=content, cast_to=httpx2.Response)
            except openai.APIStatusError as exc:
                breaker.reachable()
                code = exc.status_code
                detail = short(getattr(exc, "message", "") or exc)
                if code in (401, 403):
                    raise Fatal(f"the endpoint refused the API key (HTTP {code}): {detail}") from None
                if code == 404:
                    raise Fatal(f"HTTP 404 (unknown model {req.model!r} or wrong base_url): {detail}") from None
                if code == 429 or code >= 500 or code in (408, 409):
                    last_error = f"HTTP {code}: {detail}"
                    delay = retry_after(exc.response.headers)
                    if code == 429:
                        limiter.pause(delay if delay is not None else lim.backoff(attempt))
                else:  # 400, 422, ...: the request itself is wrong; retrying cannot help
                    return self.failed(req, f"HTTP {code}: {detail}", attempt + 1)
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                seen = no_answer(exc.__cause__ or exc)
                if isinstance(exc, openai.APITimeoutError) and (seen is None or seen[0] == "no reply in time"):
                    last_error = f"timed out after {lim.timeout_s:g} s"
                else:
                    last_error = f"connection error: {short(exc.__cause__ or exc)}"
                if seen is None:  # a status line came, then the reply broke: the server is alive
                    breaker.reachable()
                else:
                    breaker.unreachable(seen[0], short(seen[1]), self.name, self.base_url)
                    if breaker.tripped.is_set():
                        raise Stopped from None
                    # retry within the breaker's window only, not with the full backoff
                    delay = min(lim.backoff(attempt), max(breaker.time_left(), 0.05))
            else:
                breaker.reachable()
                parsed = parse(resp.content)
                if isinstance(parsed, str):
                    last_error = f"malformed response body: {parsed}"
                else:
                    return answered(
                        req,
                        parsed,
                        time.perf_counter() - t,
                        attempt + 1,
                        source=self.source,
                        stage=self.stage,
                        backend=self.backend,
                    )
            finally:
                breaker.settled()
            if attempt < lim.max_retries:
                await breaker.sleep(delay if delay is not None else lim.backoff(attempt))
        return self.failed(req, f"gave up after {attempt + 1} attempts: {last_error}", attempt + 1)

    def failed(self, req: ChatRequest, error: str, attempts: int):
        error = redact.redact(error)
        self.n_failed += 1
        if self.n_failed <= 20:  # a dead endpoint must not flood the log; the summary counts all
            log.warning(
                "stage '%s': call %s (model %s) failed: %s%s",
                self.stage,
                req.key[:12],
                req.model,
                error,
                " (further failures are only counted)" if self.n_failed == 20 else "",
            )
        res = ChatResult(
            key=req.key, status="error", text=None, error=error, backend=self.backend, model=None, cached=False
        )
        return res, None, attempts
