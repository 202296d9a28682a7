"""Settings of the data stage: one source's pairs (rule pairs_source) and the merge (rule pairs_merge).

Sources differ in their keys, so :class:`SourceSettings` holds the keys every source has plus a
typed ``options`` mapping with the rest (``multi_turn``, ``languages``, ``bad_path``, ...), exactly
as ``bpo/resources/schema.yaml`` declares them for that source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import Settings, SettingsError
from bpo.settings.config import load_schema

COMMON_SOURCE_KEYS = ("path", "hub_id", "split", "sample")


@dataclass(frozen=True)
class SourceSettings(Settings):
    """``sources.<name>`` without ``activate`` (which selects the source, it changes no pairs)."""

    name: str
    path: str | None
    hub_id: str | None
    split: str
    sample: int
    options: Mapping[str, Any]  # the source's own keys

    @classmethod
    def from_config(cls, config: Mapping[str, Any], name: str) -> Self:
        sources = config["sources"]
        if name not in sources:
            raise SettingsError(f"config: unknown source 'sources.{name}' (defined: {sorted(sources)})")
        section = {k: v for k, v in sources[name].items() if k != "activate"}
        common = {k: section.pop(k) for k in COMMON_SOURCE_KEYS}
        return cls.from_mapping({"name": name, **common, "options": section}, f"sources.{name}")

    def section(self) -> dict[str, Any]:
        """The config section as the source loaders (``bpo.sources``) read it, keys in the order
        the schema documents them (so the stats JSON does not depend on how a config is laid out)."""
        values = {"path": self.path, "hub_id": self.hub_id, "split": self.split, "sample": self.sample,
                  **{k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()}}
        documented = load_schema()["properties"]["sources"]["properties"].get(self.name, {}).get("properties", {})
        order = [k for k in documented if k in values] + sorted(k for k in values if k not in documented)
        return {k: values[k] for k in order}


@dataclass(frozen=True)
class CleaningSettings(Settings):
    """``pairs.*`` except ``dedup``: cleaning limits and the sampling seed, applied per source."""

    seed: int
    min_chars: int
    max_instruction_chars: int
    max_context_chars: int
    max_response_chars: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls.from_mapping({k: v for k, v in config["pairs"].items() if k != "dedup"}, "pairs")


@dataclass(frozen=True)
class PairsSourceSettings(Settings):
    """Everything that changes ``results/pairs/{source}.parquet``."""

    source: SourceSettings
    cleaning: CleaningSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any], name: str) -> Self:
        return cls(source=SourceSettings.from_config(config, name), cleaning=CleaningSettings.from_config(config))


@dataclass(frozen=True)
class MergeSettings(Settings):
    """What changes ``results/pairs/all.parquet`` beyond its inputs (their order is the rule's)."""

    dedup: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(dedup=config["pairs"]["dedup"])
