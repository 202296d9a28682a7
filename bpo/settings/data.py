"""Settings of the data stage: one source's pairs (rule pairs_source) and the merge (rule pairs_merge).

Sources differ in their keys, so :class:`SourceSettings` holds the keys every source has plus
``options``, the source's own keys (``multi_turn``, ``languages``, ``bad_path``, ...) as that
source's options class (:data:`SOURCE_OPTIONS`), with the defaults ``bpo/resources/schema.yaml`` declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.language import LanguageConfigError, wanted_languages
from bpo.settings.base import Settings, SettingsError
from bpo.settings.config import load_schema

COMMON_SOURCE_KEYS = ("path", "hub_id", "split", "sample")


@dataclass(frozen=True)
class HHRLHFOptions(Settings):
    hub_data_dir: str | None
    languages: tuple[str, ...] | str  # a list of ISO 639-1 codes, or "all" (bpo.sources.languages)
    multi_turn: bool
    max_history_turns: int | None  # earlier user turns at most (more: dropped, counted); None = any


@dataclass(frozen=True)
class OASST1Options(Settings):
    languages: tuple[str, ...] | str
    multi_turn: bool
    max_history_turns: int | None
    test_trees: float


@dataclass(frozen=True)
class ChatbotArenaOptions(Settings):
    languages: tuple[str, ...] | str
    multi_turn: bool
    max_history_turns: int | None
    drop_flagged: bool


@dataclass(frozen=True)
class AlpacaGPT4Options(Settings):
    format: str  # pair | comparison
    bad_path: str | None
    bad_hub_id: str | None
    languages: tuple[str, ...] | str


# The own keys of each source (sources.<name> in the schema, besides COMMON_SOURCE_KEYS and activate).
SOURCE_OPTIONS: dict[str, type[Settings]] = {
    "hh_rlhf": HHRLHFOptions,
    "oasst1": OASST1Options,
    "chatbot_arena": ChatbotArenaOptions,
    "alpaca_gpt4": AlpacaGPT4Options,
}


@dataclass(frozen=True)
class SourceSettings(Settings):
    """``sources.<name>`` without ``activate`` (which selects the source, it changes no pairs)."""

    name: str
    path: str | None
    hub_id: str | None
    split: str
    sample: int
    options: Settings  # the source's own keys: an instance of SOURCE_OPTIONS[name]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "") -> Self:
        if isinstance(data, Mapping) and isinstance(data.get("options"), Mapping):
            name = data.get("name")
            if name not in SOURCE_OPTIONS:
                raise SettingsError(f"config: unknown source 'sources.{name}' (known: {sorted(SOURCE_OPTIONS)})")
            data = {**data, "options": SOURCE_OPTIONS[name].from_mapping(data["options"], where or f"sources.{name}")}
        return super().from_mapping(data, where)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], name: str) -> Self:
        sources = config["sources"]
        if name not in sources:
            raise SettingsError(f"config: unknown source 'sources.{name}' (defined: {sorted(sources)})")
        section = {k: v for k, v in sources[name].items() if k != "activate"}
        if "languages" in section:  # a language no code matches fails here, naming the key
            try:
                wanted_languages(section["languages"], f"sources.{name}.languages")
            except LanguageConfigError as e:
                raise SettingsError(str(e)) from None
        common = {k: section.pop(k) for k in COMMON_SOURCE_KEYS}
        return cls.from_mapping({"name": name, **common, "options": section}, f"sources.{name}")

    def section(self) -> dict[str, Any]:
        """The config section as the source loaders (``bpo.sources``) read it, keys in the order
        the schema documents them (so the stats JSON does not depend on how a config is laid out)."""
        values = {
            "path": self.path,
            "hub_id": self.hub_id,
            "split": self.split,
            "sample": self.sample,
            **self.options.canonical(),
        }
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
