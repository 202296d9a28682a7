"""Settings of the SFT dataset (rule sft): the filters, the split and, in ``bpo_dataset`` mode, the
ready-made dataset it starts from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import Settings


@dataclass(frozen=True)
class BPODatasetSettings(Settings):
    """``sft.bpo_dataset``: a ready-made BPO-format dataset as the SFT source."""

    hub_id: str | None
    path: str | None
    split: str
    apply_filters: bool


@dataclass(frozen=True)
class SFTLanguageSettings(Settings):
    """``sft.languages``: per-language cap and balance of the SFT records (seeded)."""

    cap: int | None
    balance: bool


@dataclass(frozen=True)
class SFTSettings(Settings):
    """``sft.*``; ``bpo_dataset`` is None unless ``source`` is ``bpo_dataset`` (so editing it in
    critiques mode reruns nothing)."""

    source: str
    seed: int
    val_fraction: float
    max_original_to_optimized: float | None
    max_optimized_to_original: float | None
    protected_markers: tuple[str, ...]
    length_rules_with_context: bool
    context_formats: tuple[str, ...]
    language_mismatch: bool
    languages: SFTLanguageSettings
    bpo_dataset: BPODatasetSettings | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        cfg = dict(config["sft"])
        if cfg["source"] != "bpo_dataset":
            cfg["bpo_dataset"] = None
        return cls.from_mapping(cfg, "sft")
