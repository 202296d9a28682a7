"""Settings of a local Hugging Face target (``eval.targets.<name>`` with ``kind: hf``): rule answer_hf."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import Settings, target_section
from bpo.settings.generation import GenerationSettings
from bpo.settings.testsets import TestsetSettings


@dataclass(frozen=True)
class HFTargetSettings(Settings):
    name: str  # the target's name (the ``target`` column of its answers)
    model: str  # folder or hub id
    dtype: str  # auto: bf16 on a GPU that supports it, else float32
    system_prompt: str | None
    generation: GenerationSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any], name: str) -> Self:
        cfg = target_section(config, name, "hf")
        return cls(
            name=name,
            model=cfg["model"],
            dtype=cfg["dtype"],
            system_prompt=cfg["system_prompt"],
            generation=GenerationSettings.from_config(config, f"eval.targets.{name}"),
        )


@dataclass(frozen=True)
class HFOriginalAnswerSettings(Settings):
    """A local HF target answers the original questions of one test set (rule answer_original_hf)."""

    testset: TestsetSettings
    target: HFTargetSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any], testset: str, target: str) -> Self:
        return cls(
            testset=TestsetSettings.from_config(config, testset), target=HFTargetSettings.from_config(config, target)
        )
