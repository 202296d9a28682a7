"""LLM endpoint settings, split by what they change.

:class:`EndpointSettings` changes answers (backend, base URL, key variable name, headers): a stage's
result settings embed it, so an edit reruns the stage. :class:`LLMRuntime` changes throughput, cost
accounting or whether a run may finish, never what a finished run writes (limits, cache path,
prices, budget, error tolerance): scripts read it from the config at run time, so editing it reruns
nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import Settings, SettingsError


def endpoint_section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    endpoints = config["llm"]["endpoints"]
    if name not in endpoints:
        raise SettingsError(
            f"config: LLM endpoint '{name}' is not defined under llm.endpoints (defined: {sorted(endpoints)})"
        )
    return endpoints[name]


# The endpoint keys only ``backend: local`` uses (LocalModelSettings' fields).
LOCAL_KEYS = ("model", "dtype", "engine", "default_max_tokens")


@dataclass(frozen=True)
class LocalModelSettings(Settings):
    """What a ``backend: local`` endpoint generates with (bpo.llm.local)."""

    model: str  # HF folder or hub id
    dtype: str  # auto: bf16 on a GPU that supports it, else float32
    engine: str  # auto | lean | hf-generate | vllm (bpo.generation)
    default_max_tokens: int  # reply limit of a request without max_tokens


@dataclass(frozen=True)
class EndpointSettings(Settings):
    name: str
    backend: str
    base_url: str | None
    api_key_env: str | None
    default_headers: Mapping[str, str]
    local: LocalModelSettings | None  # backend local only

    @classmethod
    def from_config(cls, config: Mapping[str, Any], name: str) -> Self:
        ep = endpoint_section(config, name)
        local = None
        if ep["backend"] == "local":
            if not ep.get("model"):
                raise SettingsError(
                    f"config llm.endpoints.{name}.model is required for backend local (an HF model folder or hub id)"
                )
            local = LocalModelSettings.from_mapping({k: ep[k] for k in LOCAL_KEYS}, f"llm.endpoints.{name}")
        elif ep.get("model") is not None:
            raise SettingsError(
                f"config llm.endpoints.{name}.model is only for backend local; backend "
                f"{ep['backend']} takes the model name from each stage's own `model` key"
            )
        return cls(
            name=name,
            backend=ep["backend"],
            base_url=ep["base_url"],
            api_key_env=ep["api_key_env"],
            default_headers=dict(ep["default_headers"]),
            local=local,
        )

    # A remote endpoint's canonical form has no `local` entry, so the params of stages on remote
    # endpoints are what they were before backend local existed (nothing reruns for it).
    def canonical(self) -> dict[str, Any]:
        out = super().canonical()
        if self.local is None:
            del out["local"]
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "") -> Self:
        if isinstance(data, Mapping) and "local" not in data:
            data = {**data, "local": None}
        return super().from_mapping(data, where)


@dataclass(frozen=True)
class LLMCall(Settings):
    """How a stage calls its LLM: the endpoint, the model name sent, the sampling and the system
    prompt (``top_p``, ``max_tokens``, ``seed``, ``system_prompt`` None are not sent). Its keys sit
    flat in the stage's config section, and flat in the stage's canonical form (``inline``), so a
    sampling field is declared here once; bpo.llm.request.call_request turns it into requests."""

    endpoint: EndpointSettings
    model: str
    temperature: float
    top_p: float | None
    max_tokens: int | None
    seed: int | None
    system_prompt: str | None

    @classmethod
    def from_section(cls, config: Mapping[str, Any], section: Mapping[str, Any], key: str, needs: str) -> Self:
        """From ``section`` (config key ``key``, for errors); ``needs`` names the caller in the error
        of a missing endpoint or model (e.g. ``kind llm_rewrite``)."""
        for name, what in (("endpoint", "a name under llm.endpoints"), ("model", "a model name")):
            if not section.get(name):
                raise SettingsError(f"config {key}.{name}: {needs} needs {what}")
        values = {f.name: section[f.name] for f in dataclasses.fields(cls) if f.name != "endpoint"}
        return cls.from_mapping({**values, "endpoint": EndpointSettings.from_config(config, section["endpoint"])}, key)


@dataclass(frozen=True)
class EndpointLimits(Settings):
    """``llm.endpoints.<name>.limits``: throughput, timeouts, retries, the circuit breaker and local
    batching (bpo.llm.limits). They never change an answer, so no rule passes them as params."""

    max_concurrency: int
    rpm: int | None
    tpm: int | None
    timeout_s: float
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    transport: str  # lean | httpx
    circuit_breaker_s: float
    max_batch_size: int
    batch_wait_s: float


@dataclass(frozen=True)
class LLMRuntime(Settings):
    cache_path: str
    limits: EndpointLimits  # of the endpoint this stage calls
    prices: Mapping[str, Any]
    budget_usd: float | None
    max_error_fraction: float

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        endpoint: str,
        *,
        budget_usd: float | None = None,
        max_error_fraction: float = 0.0,
    ) -> Self:
        llm = config["llm"]
        limits = EndpointLimits.from_mapping(
            endpoint_section(config, endpoint)["limits"], f"llm.endpoints.{endpoint}.limits"
        )
        return cls(
            cache_path=llm["cache"],
            limits=limits,
            prices=dict(llm["prices"]),
            budget_usd=budget_usd,
            max_error_fraction=max_error_fraction,
        )


def endpoint_config(name: str, endpoint: Mapping[str, Any], **llm: Any) -> dict[str, Any]:
    """A config holding one ``llm.endpoints.<name>`` entry written in code (tests, benchmarks, a
    client built from a mapping), validated by the schema with its defaults filled: the one place
    those defaults live. ``llm``: further ``llm.*`` keys (cache, prices)."""
    import copy

    from bpo.settings.config import validate_config

    return validate_config({"llm": {**copy.deepcopy(llm), "endpoints": {name: copy.deepcopy(dict(endpoint))}}})
