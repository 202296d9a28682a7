"""Settings of the critique stage (rules critique, critique_estimate).

The critique template is tracked by path AND content hash, so editing the file reruns the
critiques while a touch does not. Budget and error tolerance decide whether a run may finish,
never what it writes: they are runtime settings (:func:`critique_runtime`), read at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from bpo.settings.base import Settings, file_sha256
from bpo.settings.llm import LLMCall, LLMRuntime
from bpo.settings.plan import Plan


@dataclass(frozen=True)
class CritiqueSettings(Settings):
    call: LLMCall
    template: str  # path, for messages
    template_sha256: str  # content: what reruns the stage
    # The template of pairs with a history; None while no active source is multi-turn, so a
    # single-turn run's params (and reruns) are what they were before multi-turn existed.
    multi_turn_template: str | None
    multi_turn_template_sha256: str | None

    inline: ClassVar = ("call",)
    # added later: unset, the params are as before
    omit_none: ClassVar = ("system_prompt", "multi_turn_template", "multi_turn_template_sha256")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        cfg = config["critique"]
        mt = cfg.get("multi_turn_template") if multi_turn_active(config) else None
        return cls(
            call=LLMCall.from_section(config, cfg, "critique", "the critique stage"),
            template=cfg["template"],
            template_sha256=file_sha256(cfg["template"], "critique.template"),
            multi_turn_template=mt,
            multi_turn_template_sha256=file_sha256(mt, "critique.multi_turn_template") if mt else None,
        )


def multi_turn_active(config: Mapping[str, Any]) -> bool:
    """Whether an active source keeps multi-turn dialogues (its pairs may have a history)."""
    sources = config.get("sources") or {}
    return any(sources.get(name, {}).get("multi_turn") for name in Plan.from_config(config).sources)


@dataclass(frozen=True)
class CritiqueEstimateSettings(Settings):
    """The critique settings plus the active sources whose calls are estimated."""

    critique: CritiqueSettings
    sources: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(critique=CritiqueSettings.from_config(config), sources=Plan.from_config(config).sources)


def critique_runtime(config: Mapping[str, Any]) -> LLMRuntime:
    """Limits, cache, prices, ``critique.budget_usd`` and ``critique.max_error_fraction``."""
    cfg = config["critique"]
    return LLMRuntime.from_config(
        config, cfg["endpoint"], budget_usd=cfg["budget_usd"], max_error_fraction=cfg["max_error_fraction"]
    )
