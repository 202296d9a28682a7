"""Settings of ``bpo serve`` (the rewriting proxy), from a config file validated against
``bpo/resources/serve.schema.yaml`` (its defaults) with command-line overrides merged over it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import yaml

from bpo.settings.base import Settings
from bpo.settings.config import RESOURCES, ConfigError, load_schema, merge, validate_config

SERVE_SCHEMA_PATH = RESOURCES / "serve.schema.yaml"


@dataclass(frozen=True)
class UpstreamSettings(Settings):
    base_url: str | None
    api_key_env: str | None
    timeout_s: float
    max_connections: int


@dataclass(frozen=True)
class RewriterSettings(Settings):
    kind: str  # local | remote | identity
    optimizer: str | None
    remote_base_url: str | None
    remote_api_key_env: str | None
    engine: str
    temperature: float
    top_p: float
    max_new_tokens: int
    greedy: bool
    seed: int
    history: bool  # condition the rewrite on the earlier turns
    include_system: bool  # the system message counts as an earlier turn
    max_history_tokens: int  # bpo.history.fit_history's budget


@dataclass(frozen=True)
class BatchingSettings(Settings):
    max_batch_size: int
    max_wait_ms: float
    max_queue: int
    timeout_s: float
    max_concurrent_batches: int


@dataclass(frozen=True)
class ServeSettings(Settings):
    host: str
    port: int
    workers: int
    api_keys_env: str | None
    max_request_bytes: int
    cache: str | None
    upstream: UpstreamSettings
    rewriter: RewriterSettings
    batching: BatchingSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """From a serve config (validated here: defaults filled, errors name the key)."""
        config = validate_config(merge({}, config), load_schema(SERVE_SCHEMA_PATH))
        return cls.from_mapping(config, "serve")


def load_serve_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> ServeSettings:
    """The file at ``path`` (or nothing) with ``overrides`` merged over it."""
    data: dict = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a serve config must be a mapping, got {type(data).__name__}")
    return ServeSettings.from_config(merge(data, overrides or {}))
