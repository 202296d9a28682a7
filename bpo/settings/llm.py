"""LLM endpoint settings, split by what they change.

:class:`EndpointSettings` changes answers (backend, base URL, key variable name, headers): a stage's
result settings embed it, so an edit reruns the stage. :class:`LLMRuntime` changes throughput, cost
accounting or whether a run may finish, never what a finished run writes (limits, cache path,
prices, budget, error tolerance): scripts read it from the config at run time, so editing it reruns
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import Settings, SettingsError


def endpoint_section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    endpoints = config["llm"]["endpoints"]
    if name not in endpoints:
        raise SettingsError(f"config: LLM endpoint '{name}' is not defined under llm.endpoints (defined: {sorted(endpoints)})")
    return endpoints[name]


@dataclass(frozen=True)
class EndpointSettings(Settings):
    name: str
    backend: str
    base_url: str | None
    api_key_env: str | None
    default_headers: Mapping[str, str]

    @classmethod
    def from_config(cls, config: Mapping[str, Any], name: str) -> Self:
        ep = endpoint_section(config, name)
        return cls(name=name, backend=ep["backend"], base_url=ep.get("base_url"),
                   # the schema's default; endpoints sit under additionalProperties, where
                   # validation fills no defaults
                   api_key_env=ep.get("api_key_env", "OPENAI_API_KEY"),
                   default_headers=dict(ep.get("default_headers") or {}))

    def as_endpoint(self, limits: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``llm.endpoints.<name>`` mapping the LLM client takes, with runtime ``limits``."""
        return {"backend": self.backend, "base_url": self.base_url, "api_key_env": self.api_key_env,
                "default_headers": dict(self.default_headers), "limits": dict(limits or {})}


@dataclass(frozen=True)
class LLMRuntime(Settings):
    cache_path: str
    limits: Mapping[str, Any]  # of the endpoint this stage calls
    prices: Mapping[str, Any]
    budget_usd: float | None
    max_error_fraction: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any], endpoint: str | None, *, budget_usd: float | None = None,
                    max_error_fraction: float = 0.0) -> Self:
        llm = config["llm"]
        limits = dict(endpoint_section(config, endpoint).get("limits") or {}) if endpoint else {}
        return cls(cache_path=llm["cache"], limits=limits, prices=dict(llm.get("prices") or {}),
                   budget_usd=budget_usd, max_error_fraction=max_error_fraction)
