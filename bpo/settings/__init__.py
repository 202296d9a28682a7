"""Typed, frozen settings: one class per stage, built from the validated config by one function
each (``<Stage>Settings.from_config``), plus the runtime settings that never change a result.

Contract: this package imports nothing else from ``bpo``; every other package may import it.
"""

from bpo.settings.base import Settings, SettingsError
from bpo.settings.config import ConfigError, load_config, validate_config
from bpo.settings.critique import CritiqueEstimateSettings, CritiqueSettings, critique_runtime
from bpo.settings.data import CleaningSettings, MergeSettings, PairsSourceSettings, SourceSettings
from bpo.settings.llm import EndpointLimits, EndpointSettings, LLMCall, LLMRuntime, LocalModelSettings, endpoint_config
from bpo.settings.sft import BPODatasetSettings, SFTSettings

__all__ = [
    "BPODatasetSettings",
    "CleaningSettings",
    "CritiqueEstimateSettings",
    "CritiqueSettings",
    "MergeSettings",
    "PairsSourceSettings",
    "SFTSettings",
    "SourceSettings",
    "critique_runtime",
    "ConfigError",
    "EndpointLimits",
    "EndpointSettings",
    "endpoint_config",
    "LocalModelSettings",
    "LLMCall",
    "LLMRuntime",
    "Settings",
    "SettingsError",
    "load_config",
    "validate_config",
]
