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

    inline: ClassVar = ("call",)
    omit_none: ClassVar = ("system_prompt",)  # added later: unset, the params are as before

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        cfg = config["critique"]
        return cls(
            call=LLMCall.from_section(config, cfg, "critique", "the critique stage"),
            template=cfg["template"],
            template_sha256=file_sha256(cfg["template"], "critique.template"),
        )


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
