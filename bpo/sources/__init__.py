"""Raw preference datasets, one module per source, each with ``load(settings) -> ParseResult``.

``settings`` is the source's section of ``config["sources"]``.
"""

from __future__ import annotations

from types import ModuleType

from bpo.sources import alpaca_gpt4, chatbot_arena, hh_rlhf, oasst1
from bpo.sources.base import CANDIDATE_FIELDS, ParseResult

SOURCES: dict[str, ModuleType] = {m.NAME: m for m in (hh_rlhf, oasst1, chatbot_arena, alpaca_gpt4)}


class ConfigError(ValueError):
    """A source's settings cannot work (the message names the config key)."""


def get_source(name: str) -> ModuleType:
    try:
        return SOURCES[name]
    except KeyError:
        raise ConfigError(f"sources: unknown source {name!r} (known: {', '.join(SOURCES)})") from None


def local_inputs(name: str, settings: dict) -> dict[str, str]:
    """The local paths a source reads, by role ("data", "bad"), for rule inputs: a path is
    only read when no hub id replaces it. Raises ConfigError when a needed side has neither."""
    get_source(name)
    sides = [("data", "path", "hub_id")]
    if name == "alpaca_gpt4" and settings.get("format", "pair") == "pair":
        sides.append(("bad", "bad_path", "bad_hub_id"))
    out = {}
    for role, path_key, hub_key in sides:
        if settings.get(hub_key):
            continue
        if not settings.get(path_key):
            raise ConfigError(f"sources.{name}: set {path_key} or {hub_key}")
        out[role] = settings[path_key]
    return out


def load_source(name: str, settings: dict) -> ParseResult:
    local_inputs(name, settings)  # a clear config error before any reading
    return get_source(name).load(settings)


__all__ = ["SOURCES", "CANDIDATE_FIELDS", "ConfigError", "ParseResult", "get_source", "load_source", "local_inputs"]
