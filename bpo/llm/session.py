"""Session set-up: the API key, the headers and the HTTP stack through which one endpoint is reached.

The stand-in and local backends get in-process transports, ``transport: lean`` the lean HTTP/1.1
pool (bpo.llm.transport) unless a proxy applies, anything else httpx's default stack; the
liveness probes get a connection of their own.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

import httpx2
from openai import AsyncOpenAI

from bpo import redact
from bpo.llm.errors import MissingAPIKey
from bpo.llm.limits import Limits
from bpo.llm.local import LOCAL_BASE_URL, LocalTransport, local_worker
from bpo.llm.standin import STANDIN_BASE_URL, StandinTransport
from bpo.llm.transport import LeanAsyncTransport, default_ssl_context, probe, proxy_configured

# Backends that cost nothing per call: no price is looked up, a budget needs none.
FREE = ("standin", "local")


class Session:
    """How one endpoint is reached; ``where`` (``llm.endpoints.<name>``) names it in errors."""

    def __init__(
        self,
        backend: str,
        base_url: str,
        api_key_env: str | None,
        header_templates: Mapping[str, Any],
        limits: Limits,
        local: dict[str, Any] | None,
        where: str,
    ):
        self.backend, self.base_url, self.api_key_env = backend, base_url, api_key_env
        self.limits, self.local, self._where = limits, local, where
        self._header_templates = dict(header_templates)
        self._ssl: ssl.SSLContext | None = None

    def api_key(self) -> str:
        """The key to send (read from ``api_key_env`` now; registered for redaction)."""
        if self.backend in FREE:
            return f"{self.backend}-no-key"
        env = self.api_key_env
        if env is None:  # a local server without auth: the SDK still wants a non-empty key
            return "no-key"
        value = os.environ.get(env, "")
        redact.register_value(value.strip())
        if not value.strip():
            raise MissingAPIKey(
                f"{self._where}: the API key environment variable {env} (api_key_env) is not set or empty; "
                f"nothing was sent. Export it, or set api_key_env: null for a server without auth."
            )
        return value.strip()

    def headers(self) -> dict[str, str]:
        # ${VAR} in a header value is read from the environment, so secrets stay out of config
        out = {}
        for k, v in self._header_templates.items():
            v = str(v)
            if v.startswith("${") and v.endswith("}"):
                var = v[2:-1]
                if var not in os.environ:
                    raise MissingAPIKey(f"{self._where}.default_headers.{k}: environment variable {var} is not set")
                v = os.environ[var]
                redact.register_value(v)
            out[str(k)] = v
        return out

    def open(self, source: str) -> tuple[AsyncOpenAI, Any]:
        """``(AsyncOpenAI client, transport or None)`` for one run; ``source`` labels a local model's rows."""
        conc = self.limits.max_concurrency
        if self.backend == "standin":
            transport: httpx2.AsyncBaseTransport = StandinTransport()
            http_client = httpx2.AsyncClient(transport=transport, trust_env=False)
            base_url = STANDIN_BASE_URL
        elif self.local is not None:
            worker = local_worker(self.local["model"], self.local["dtype"])
            worker.max_batch_size = self.limits.max_batch_size
            worker.batch_wait_s = self.limits.batch_wait_s
            transport = LocalTransport(worker, self.local["engine"], source, self.local["default_max_tokens"])
            http_client = httpx2.AsyncClient(transport=transport, trust_env=False)
            base_url = LOCAL_BASE_URL
        elif self.limits.transport == "lean" and not proxy_configured(self.base_url):
            if self._ssl is None and self.base_url.startswith("https"):
                self._ssl = default_ssl_context()
            transport = LeanAsyncTransport(conc, ssl_context=self._ssl)
            http_client = httpx2.AsyncClient(transport=transport, trust_env=False)
            base_url = self.base_url
        else:
            transport = None
            http_client = httpx2.AsyncClient(
                limits=httpx2.Limits(max_connections=conc, max_keepalive_connections=conc), trust_env=True
            )
            base_url = self.base_url
        client = AsyncOpenAI(
            api_key=self.api_key(),
            base_url=base_url,
            http_client=http_client,
            max_retries=0,
            timeout=httpx2.Timeout(self.limits.timeout_s, connect=min(10.0, self.limits.timeout_s)),
            default_headers=self.headers() or None,
        )
        # The SDK detects the platform (for its user-agent headers) in a worker thread on a
        # client's first request; with N workers starting at once that is N thread hops before
        # anything is sent. Detect it once here (a few ms; skipped if the SDK changes).
        if getattr(client, "_platform", False) is None:
            try:
                from openai._base_client import get_platform

                client._platform = get_platform()
            except Exception:  # noqa: BLE001 - an optimisation only
                pass
        return client, transport

    def prober(self):
        """``(probe, http client)`` for the breaker's liveness probes, or None for backends that
        cannot hang (stand-in, local). The probe has its own connection (a pool full of hung calls
        must not hold it up) and sends no credentials; it goes through the proxy the calls use."""
        if self.backend != "openai":
            return None
        if self.limits.transport == "lean" and not proxy_configured(self.base_url):
            if self._ssl is None and self.base_url.startswith("https"):
                self._ssl = default_ssl_context()
            http = httpx2.AsyncClient(transport=LeanAsyncTransport(1, ssl_context=self._ssl), trust_env=False)
        else:
            http = httpx2.AsyncClient(trust_env=True)
        url = f"{self.base_url.rstrip('/')}/models"

        async def probe_once(timeout: float):
            return await probe(http, url, timeout)

        return probe_once, http
