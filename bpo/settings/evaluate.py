"""Result settings of the LLM evaluation stages: an endpoint target answering (rule ``answer``),
the pairwise judge (``judge``), the win-rate report (``report``) and the SFT rewrite's answers
(``sft_rewrite_answer``). Each is built by one ``from_config`` from the validated config; what a
stage's LLM calls need at run time (limits, cache, prices) is :class:`bpo.settings.LLMRuntime`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from bpo.settings.base import Settings, SettingsError, file_sha256, target_section
from bpo.settings.critique import CritiqueSettings
from bpo.settings.llm import LLMCall
from bpo.settings.plan import Plan
from bpo.settings.testsets import TestsetSettings


@dataclass(frozen=True)
class EndpointTargetSettings(Settings):
    """A target LLM reached through a named endpoint (``eval.targets.<name>`` of kind endpoint)."""

    name: str  # the {target} wildcard; written into every answer row
    call: LLMCall

    inline: ClassVar = ("call",)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], name: str) -> Self:
        section = target_section(config, name, "endpoint")
        return cls(name=name, call=LLMCall.from_section(config, section, f"eval.targets.{name}", "kind endpoint"))


@dataclass(frozen=True)
class OriginalAnswerSettings(Settings):
    """An endpoint target answers the original questions of one test set (rule answer_original):
    once per (test set, target), shared by every optimizer's comparison."""

    testset: TestsetSettings
    target: EndpointTargetSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any], testset: str, target: str) -> Self:
        return cls(
            testset=TestsetSettings.from_config(config, testset),
            target=EndpointTargetSettings.from_config(config, target),
        )


@dataclass(frozen=True)
class JudgeSettings(Settings):
    """``eval.judge``; the template by path and content hash (an edit reruns, a touch does not)."""

    call: LLMCall
    identical_as_tie: bool
    template: str
    template_sha256: str
    protocol: str  # both_orders | single_random
    order_seed: int  # of the single_random order
    lenient_verdicts: bool

    inline: ClassVar = ("call",)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, multi_turn: bool = False) -> Self:
        """``multi_turn``: the per-turn judge of multi-turn test sets (its own template)."""
        j = config["eval"]["judge"]
        key = "multi_turn_template" if multi_turn else "template"
        return cls(
            call=LLMCall.from_section(config, j, "eval.judge", "the judge"),
            identical_as_tie=j["identical_as_tie"],
            template=j[key],
            template_sha256=file_sha256(j[key], f"eval.judge.{key}"),
            protocol=j["protocol"],
            order_seed=j["order_seed"],
            lenient_verdicts=j["lenient_verdicts"],
        )


@dataclass(frozen=True)
class ModelRole(Settings):
    """One model the report's numbers come from, and whether it is a real model: the report's
    first page says which are real and which are the offline stand-in."""

    role: str  # optimizer | critic | target | judge
    name: str  # the optimizer's or target's name; the role again for critic and judge
    model: str  # model name, folder or hub id
    source: str  # where it runs, in words
    real: bool | None  # None: no model at all (identity) or not known (replay from the cache)


def _endpoint_role(role: str, name: str, call: LLMCall) -> ModelRole:
    model, ep = call.model, call.endpoint
    if ep.backend == "standin":
        return ModelRole(role, name, model, "offline stand-in: deterministic text, NOT a model", False)
    if ep.backend == "local":
        return ModelRole(role, name, ep.local.model, f"local model (endpoint {ep.name}, backend local)", True)
    if ep.backend == "replay":
        return ModelRole(role, name, model, f"replayed from the LLM cache (endpoint {ep.name})", None)
    return ModelRole(role, name, model, f"API endpoint {ep.name} ({ep.base_url or 'the OpenAI default URL'})", True)


def model_roles(config: Mapping[str, Any]) -> tuple[ModelRole, ...]:
    """Every model behind an active optimizer, target and the judge, and the critic whose
    rewrites trained a ``trained`` optimizer."""
    ev, plan = config["eval"], Plan.from_config(config)
    out: list[ModelRole] = []
    for name, kind_name in plan.optimizers.items():
        opt, kind = ev["optimizers"][name], plan.kind(name)
        if kind.model_input in ("trained", "refined"):
            base = config["train"]["base_model"]
            out.append(
                ModelRole(
                    "optimizer",
                    name,
                    "trained by this workflow (rule train_optimizer)"
                    + (", then DPO-refined (rule train_refined)" if kind.model_input == "refined" else ""),
                    f"fine-tuned from {base}"
                    if base
                    else "tiny model trained from scratch (exercises the code, NOT a useful optimizer)",
                    bool(base),
                )
            )
        elif kind.model_input == "model":
            out.append(ModelRole("optimizer", name, opt["model"], "local folder or hub id", True))
        elif kind.no_model:
            out.append(ModelRole("optimizer", name, "none", kind.no_model, None))
        else:  # the kind calls an LLM
            out.append(
                _endpoint_role(
                    "optimizer", name, LLMCall.from_section(config, opt, f"eval.optimizers.{name}", f"kind {kind_name}")
                )
            )
    if plan.trains_optimizer:
        if config["sft"]["source"] == "critiques":
            out.append(_endpoint_role("critic", "critic", CritiqueSettings.from_config(config).call))
        else:
            d = config["sft"]["bpo_dataset"]
            out.append(ModelRole("critic", "critic", d["hub_id"] or d["path"] or "?", "a ready-made BPO dataset", None))
    for name, target_kind in plan.targets.items():
        if target_kind == "hf":
            out.append(ModelRole("target", name, ev["targets"][name]["model"], "local model (kind hf)", True))
        else:
            out.append(_endpoint_role("target", name, EndpointTargetSettings.from_config(config, name).call))
    if plan.sft_data:
        out += student_roles(config)
    out.append(_endpoint_role("judge", "judge", JudgeSettings.from_config(config).call))
    return tuple(out)


def student_roles(config: Mapping[str, Any]) -> list[ModelRole]:
    """The two sft_data students: their one base model and the data each learned from."""
    sd, rw = config["sft_data"], config["eval"]["sft_rewrite"]
    base = sd["student"]["base_model"]
    trained = f"fine-tuned from {base}" if base else "tiny model trained from scratch (exercises the code only)"
    data = f"{rw['path']} ({rw['sample'] or 'all'} records)"
    original = (
        "their own outputs" if sd["answer_original"] == "keep" else f"answers of target {rw['target']} (regenerated)"
    )
    return [
        ModelRole(
            "student (B)",
            "student_bpo",
            "trained by this workflow (rule train_student)",
            f"{trained} on {data}: instructions rewritten by optimizer {rw['optimizer']}, answered by target "
            f"{rw['target']} (sft_rewrite/train.json)",
            bool(base),
        ),
        ModelRole(
            "student (A)",
            "student_original",
            "trained by this workflow (rule train_student)",
            f"{trained} on the same records of {data} with {original}",
            bool(base),
        ),
    ]


@dataclass(frozen=True)
class LCSettings(Settings):
    """``eval.report.lc``: which GLM gives the LC ΔWR (:mod:`bpo.eval.length_control`) and, for
    ``alpacaeval``, where the item difficulty comes from: ``joint`` or a CSV file, by path and
    content hash (checked here, so a missing file fails at parse time)."""

    method: str  # length_only | alpacaeval
    difficulty: str  # joint | path of a CSV (item_id, difficulty[, testset])
    difficulty_sha256: str | None  # None for joint

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "") -> Self:
        if isinstance(data, Mapping) and "difficulty_sha256" not in data:
            d = data.get("difficulty", "joint")
            path_given = data.get("method") == "alpacaeval" and d != "joint"
            data = {**data, "difficulty_sha256": file_sha256(d, f"{where}.difficulty") if path_given else None}
        return super().from_mapping(data, where)


@dataclass(frozen=True)
class ReportSettings(Settings):
    """``eval.report``: the bootstrap intervals of ΔWR and LC ΔWR; the fewest valid pairs a
    length-controlled fit is attempted on (per row, categories included); the models behind
    the numbers (named on the first page)."""

    bootstrap_samples: int
    seed: int
    confidence: float
    lc_min_pairs: int
    lc: LCSettings
    models: tuple[ModelRole, ...]
    # (model B, model A) of the "model B vs model A on the same prompt" cells (the sft_data
    # students); None (left out of the params) when there are none
    model_comparisons: tuple[tuple[str, str], ...] | None

    omit_none: ClassVar = ("model_comparisons",)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        pairs = sorted({(b, a) for _, b, a in Plan.from_config(config).model_comparisons()})
        return cls.from_mapping(
            {**config["eval"]["report"], "models": model_roles(config), "model_comparisons": pairs or None},
            "eval.report",
        )

    @property
    def model_pairs(self) -> set[tuple[str, str]]:
        return {tuple(p) for p in self.model_comparisons or ()}


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


# The refinement loop's target and judge (rules candidate_answers, candidate_judgments; bpo.refine).
REFINE_COMPARE_MODES = ("vs_original", "round_robin")


@dataclass(frozen=True)
class CandidateAnswerSettings(Settings):
    """The endpoint target (``refine.target``) that answers every candidate and original prompt."""

    target: EndpointTargetSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        try:
            return cls(target=EndpointTargetSettings.from_config(config, config["refine"]["target"]))
        except SettingsError as e:  # name the key that chose the target, not only eval.targets
            raise SettingsError(f"config refine.target: {e}") from e


@dataclass(frozen=True)
class CandidateJudgeSettings(Settings):
    """The evaluation's judge (``eval.judge``, both orders always) and what it compares."""

    judge: JudgeSettings
    compare: str  # vs_original | round_robin

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        compare = config["refine"]["compare"]
        if compare not in REFINE_COMPARE_MODES:
            raise SettingsError(f"config refine.compare: {compare!r} is not one of {', '.join(REFINE_COMPARE_MODES)}")
        return cls(judge=JudgeSettings.from_config(config), compare=compare)
