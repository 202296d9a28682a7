"""Settings of the optimize stage: one class per optimizer kind (``eval.optimizers.<name>``); rules
optimize_testset, optimize_identity, optimize_llm_rewrite and sft_rewrite_optimize."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from bpo.settings.base import Settings, SettingsError, file_sha256
from bpo.settings.generation import GenerationSettings
from bpo.settings.llm import LLMCall
from bpo.settings.testsets import TestsetSettings

# eval.optimizers.<name>.kind: trained and model generate with a local model (rule
# optimize_testset), identity copies the prompts (optimize_identity), llm_rewrite asks an
# endpoint (optimize_llm_rewrite).
GENERATING_KINDS = ("trained", "model")
OPTIMIZER_KINDS = (*GENERATING_KINDS, "identity", "llm_rewrite")


def optimizer_section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    optimizers = config["eval"]["optimizers"]
    if name not in optimizers:
        raise SettingsError(f"config: eval.optimizers has no optimizer '{name}' (defined: {sorted(optimizers)})")
    return optimizers[name]


def _check_kind(config: Mapping[str, Any], name: str, kinds: tuple[str, ...]) -> Mapping[str, Any]:
    section = optimizer_section(config, name)
    if section["kind"] not in kinds:
        raise SettingsError(f"config eval.optimizers.{name}: kind '{section['kind']}' is not one of {', '.join(kinds)}")
    return section


@dataclass(frozen=True)
class OptimizeSettings(Settings):
    """A generating optimizer rewrites one test set (kinds trained and model). ``model`` None is
    the optimizer trained by this workflow (the rule passes its folder as an input)."""

    name: str  # the {optimizer} wildcard; written into every row
    testset: TestsetSettings
    model: str | None
    context_mode: str
    prompt_format: str | None  # used where the model folder records none (e.g. a hub id)
    generation: GenerationSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any], testset: str, optimizer: str) -> Self:
        opt = _check_kind(config, optimizer, GENERATING_KINDS)
        key = f"eval.optimizers.{optimizer}"
        if opt["kind"] == "model" and not opt["model"]:
            raise SettingsError(f"config {key}.model: kind model needs a local folder or hub id")
        return cls(name=optimizer, testset=TestsetSettings.from_config(config, testset),
                   model=opt["model"] if opt["kind"] == "model" else None, prompt_format=opt["prompt_format"],
                   context_mode=opt["context_mode"], generation=GenerationSettings.from_config(config, key))


@dataclass(frozen=True)
class IdentitySettings(Settings):
    """No rewrite: every optimized prompt is the original (kind identity)."""

    name: str
    testset: TestsetSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any], testset: str, optimizer: str) -> Self:
        _check_kind(config, optimizer, ("identity",))
        return cls(name=optimizer, testset=TestsetSettings.from_config(config, testset))


@dataclass(frozen=True)
class LLMRewriteSettings(Settings):
    """An endpoint asked to improve each instruction with ``template`` (kind llm_rewrite); the
    template by path and content hash."""

    name: str
    testset: TestsetSettings
    call: LLMCall
    template: str
    template_sha256: str

    inline: ClassVar = ("call",)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], testset: str, optimizer: str) -> Self:
        opt = _check_kind(config, optimizer, ("llm_rewrite",))
        key = f"eval.optimizers.{optimizer}"
        return cls(name=optimizer, testset=TestsetSettings.from_config(config, testset),
                   call=LLMCall.from_section(config, opt, key, "kind llm_rewrite"),
                   template=opt["template"], template_sha256=file_sha256(opt["template"], f"{key}.template"))


OPTIMIZER_SETTINGS: dict[str, type[Settings]] = {
    "trained": OptimizeSettings, "model": OptimizeSettings, "identity": IdentitySettings,
    "llm_rewrite": LLMRewriteSettings,
}


def optimizer_settings(config: Mapping[str, Any], testset: str, optimizer: str) -> Settings:
    """The settings of ``optimizer`` (by its kind) rewriting ``testset``."""
    return OPTIMIZER_SETTINGS[optimizer_section(config, optimizer)["kind"]].from_config(config, testset, optimizer)
