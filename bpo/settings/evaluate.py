"""Result settings of the LLM evaluation stages: an endpoint target answering (rule ``answer``),
the pairwise judge (``judge``), the win-rate report (``report``) and the SFT rewrite's answers
(``sft_rewrite_answer``). Each is built by one ``from_config`` from the validated config; what a
stage's LLM calls need at run time (limits, cache, prices) is :class:`bpo.settings.LLMRuntime`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import Settings, SettingsError, file_sha256, target_section
from bpo.settings.llm import EndpointSettings
from bpo.settings.optimize import TestsetSettings


@dataclass(frozen=True)
class EndpointTargetSettings(Settings):
    """A target LLM reached through a named endpoint (``eval.targets.<name>`` of kind endpoint)."""

    name: str  # the {target} wildcard; written into every answer row
    endpoint: EndpointSettings
    model: str
    temperature: float
    top_p: float | None  # None: not sent
    max_tokens: int | None  # None: not sent
    seed: int | None
    system_prompt: str | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], name: str) -> Self:
        t = target_section(config, name, "endpoint")
        if not t["endpoint"]:
            raise SettingsError(f"config eval.targets.{name}.endpoint: kind endpoint needs a name under llm.endpoints")
        return cls(name=name, endpoint=EndpointSettings.from_config(config, t["endpoint"]), model=t["model"],
                   temperature=t["temperature"], top_p=t["top_p"], max_tokens=t["max_tokens"], seed=t["seed"],
                   system_prompt=t["system_prompt"])


@dataclass(frozen=True)
class OriginalAnswerSettings(Settings):
    """An endpoint target answers the original questions of one test set (rule answer_original):
    once per (test set, target), shared by every optimizer's comparison."""

    testset: TestsetSettings
    target: EndpointTargetSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any], testset: str, target: str) -> Self:
        return cls(testset=TestsetSettings.from_config(config, testset),
                   target=EndpointTargetSettings.from_config(config, target))


@dataclass(frozen=True)
class JudgeSettings(Settings):
    """``eval.judge``; the template by path and content hash (an edit reruns, a touch does not)."""

    endpoint: EndpointSettings
    model: str
    temperature: float
    top_p: float | None  # None: not sent
    max_tokens: int | None  # None: not sent
    seed: int | None
    system_prompt: str | None
    identical_as_tie: bool
    template: str
    template_sha256: str
    protocol: str  # both_orders | single_random
    order_seed: int  # of the single_random order
    lenient_verdicts: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        j = config["eval"]["judge"]
        return cls(endpoint=EndpointSettings.from_config(config, j["endpoint"]), model=j["model"],
                   temperature=j["temperature"], top_p=j["top_p"], max_tokens=j["max_tokens"], seed=j["seed"],
                   system_prompt=j["system_prompt"], identical_as_tie=j["identical_as_tie"], template=j["template"],
                   template_sha256=file_sha256(j["template"], "eval.judge.template"), protocol=j["protocol"],
                   order_seed=j["order_seed"], lenient_verdicts=j["lenient_verdicts"])


@dataclass(frozen=True)
class ReportSettings(Settings):
    """``eval.report``: the bootstrap intervals of ΔWR and LC ΔWR; the fewest valid pairs a
    length-controlled fit is attempted on (per row, categories included)."""

    bootstrap_samples: int
    seed: int
    confidence: float
    lc_min_pairs: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls.from_mapping(config["eval"]["report"], "eval.report")


@dataclass(frozen=True)
class SFTRewriteSettings(Settings):
    """The target that answers the optimized SFT instructions (``eval.sft_rewrite.target``). The
    source file is the rule's input; ``path`` and ``sample`` belong to the optimize step."""

    target: EndpointTargetSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        name = config["eval"]["sft_rewrite"]["target"]
        try:
            return cls(target=EndpointTargetSettings.from_config(config, name))
        except SettingsError as exc:
            raise SettingsError(f"config eval.sft_rewrite.target ('{name}'): {exc}") from None
