"""Settings of the optimize stage: one class per optimizer kind (``eval.optimizers.<name>``) and the
registry of kinds (:data:`OPTIMIZER_KINDS`); rules optimize_testset, optimize_identity,
optimize_llm_rewrite and sft_rewrite_optimize."""

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
# endpoint (optimize_llm_rewrite); refined generates with a round's model of the refinement loop.
GENERATING_KINDS = ("trained", "model", "refined")


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
    round: int | None  # kind refined: the refinement round whose model rewrites

    omit_none: ClassVar = ("round",)  # added later: unset, the params are as before

    @classmethod
    def from_config(cls, config: Mapping[str, Any], testset: str, optimizer: str) -> Self:
        opt = _check_kind(config, optimizer, GENERATING_KINDS)
        key = f"eval.optimizers.{optimizer}"
        if opt["kind"] == "model" and not opt["model"]:
            raise SettingsError(f"config {key}.model: kind model needs a local folder or hub id")
        return cls(
            name=optimizer,
            testset=TestsetSettings.from_config(config, testset),
            model=opt["model"] if opt["kind"] == "model" else None,
            prompt_format=opt["prompt_format"],
            context_mode=opt["context_mode"],
            generation=GenerationSettings.from_config(config, key),
            round=refined_round(config, optimizer) if opt["kind"] == "refined" else None,
        )


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
    omit_none: ClassVar = ("system_prompt",)  # added later: unset, the params are as before

    @classmethod
    def from_config(cls, config: Mapping[str, Any], testset: str, optimizer: str) -> Self:
        opt = _check_kind(config, optimizer, ("llm_rewrite",))
        key = f"eval.optimizers.{optimizer}"
        return cls(
            name=optimizer,
            testset=TestsetSettings.from_config(config, testset),
            call=LLMCall.from_section(config, opt, key, "kind llm_rewrite"),
            template=opt["template"],
            template_sha256=file_sha256(opt["template"], f"{key}.template"),
        )


@dataclass(frozen=True)
class OptimizerKind:
    """What the workflow needs to know of one optimizer kind (eval.optimizers.<name>.kind).

    ``settings`` is built by ``from_config(config, testset, optimizer)``; ``run`` names the library
    function (``module:function``) that workflow_scripts/optimize.py calls with the output path and
    the settings, plus ``model`` (the model folder or hub id) when ``model_input`` is set and
    ``runtime`` (bpo.settings.LLMRuntime) when the settings have an LLM ``call``. ``model_input``:
    ``trained`` = the optimizer this workflow trains, ``refined`` = a round of its refinement
    loop, ``model`` = the folder or hub id in ``model``.
    ``no_model``: for a kind without any model, what it does (the report's models table).
    ``turn``: the library function that rewrites one turn of many conversations (multi-turn test
    sets, bpo.eval.conversation): called with the turn's items, one history each and the settings
    (plus ``model``/``runtime`` as ``run``), it returns ``(optimized, fallback reason)`` per item
    and the engine."""

    settings: type[Settings]
    run: str
    model_input: str | None = None
    no_model: str | None = None
    turn: str | None = None


# A new kind: its settings class and an entry here, its library function, its rule (rules/evaluate.smk,
# script workflow_scripts/optimize.py) and its name and keys in bpo/resources/schema.yaml.
OPTIMIZER_KINDS: dict[str, OptimizerKind] = {
    "trained": OptimizerKind(
        OptimizeSettings,
        "bpo.eval.optimize:optimize_testset",
        model_input="trained",
        turn="bpo.eval.optimize:optimize_turn",
    ),
    "model": OptimizerKind(
        OptimizeSettings,
        "bpo.eval.optimize:optimize_testset",
        model_input="model",
        turn="bpo.eval.optimize:optimize_turn",
    ),
    "refined": OptimizerKind(
        OptimizeSettings,
        "bpo.eval.optimize:optimize_testset",
        model_input="refined",
        turn="bpo.eval.optimize:optimize_turn",
    ),
    "identity": OptimizerKind(
        IdentitySettings,
        "bpo.eval.optimize:identity_testset",
        no_model="no rewrite (the original prompt)",
        turn="bpo.eval.optimize:identity_turn",
    ),
    "llm_rewrite": OptimizerKind(
        LLMRewriteSettings, "bpo.eval.optimize:llm_rewrite_testset", turn="bpo.eval.optimize:llm_rewrite_turn"
    ),
}


def optimizer_kind(config: Mapping[str, Any], name: str) -> OptimizerKind:
    """The registered kind of optimizer ``name``."""
    kind = optimizer_section(config, name)["kind"]
    if kind not in OPTIMIZER_KINDS:
        raise SettingsError(f"config eval.optimizers.{name}.kind: '{kind}' is not one of {', '.join(OPTIMIZER_KINDS)}")
    return OPTIMIZER_KINDS[kind]


def refine_rounds(config: Mapping[str, Any]) -> int:
    """Rounds the workflow runs: 0 when ``refine.activate`` is off."""
    r = config["refine"]
    return r["rounds"] if r["activate"] else 0


def refined_round(config: Mapping[str, Any], name: str) -> int:
    """The round of optimizer ``name`` (kind refined): its ``round``, null = the last; it must be run."""
    section = config["eval"]["optimizers"][name]
    rounds = refine_rounds(config)
    if rounds == 0:
        raise SettingsError(f"config eval.optimizers.{name}: kind refined needs refine.activate: true")
    r = section["round"] if section["round"] is not None else rounds
    if not 1 <= r <= rounds:
        raise SettingsError(f"config eval.optimizers.{name}.round: {r} is not a round of refine.rounds ({rounds})")
    return r


def optimizer_settings(config: Mapping[str, Any], testset: str, optimizer: str) -> Settings:
    """The settings of ``optimizer`` (by its kind) rewriting ``testset``."""
    return optimizer_kind(config, optimizer).settings.from_config(config, testset, optimizer)
