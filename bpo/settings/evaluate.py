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
class ModelRole(Settings):
    """One model the report's numbers come from, and whether it is a real model: the report's
    first page says which are real and which are the offline stand-in."""

    role: str  # optimizer | critic | target | judge
    name: str  # the optimizer's or target's name; the role again for critic and judge
    model: str  # model name, folder or hub id
    source: str  # where it runs, in words
    real: bool | None  # None: no model at all (identity) or not known (replay from the cache)


def _endpoint_role(role: str, name: str, model: str, ep: EndpointSettings) -> ModelRole:
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
    ev = config["eval"]
    out: list[ModelRole] = []
    trained = False
    for name, opt in ev["optimizers"].items():
        if not opt["activate"]:
            continue
        kind = opt["kind"]
        if kind == "trained":
            trained, base = True, config["train"]["base_model"]
            out.append(ModelRole("optimizer", name, "trained by this workflow (rule train_optimizer)",
                                 f"fine-tuned from {base}" if base else
                                 "tiny model trained from scratch (exercises the code, NOT a useful optimizer)",
                                 bool(base)))
        elif kind == "model":
            out.append(ModelRole("optimizer", name, opt["model"], "local folder or hub id", True))
        elif kind == "identity":
            out.append(ModelRole("optimizer", name, "none", "no rewrite (the original prompt)", None))
        else:
            out.append(_endpoint_role("optimizer", name, opt["model"],
                                      EndpointSettings.from_config(config, opt["endpoint"])))
    if trained:
        if config["sft"]["source"] == "critiques":
            c = config["critique"]
            out.append(_endpoint_role("critic", "critic", c["model"], EndpointSettings.from_config(config, c["endpoint"])))
        else:
            d = config["sft"]["bpo_dataset"]
            out.append(ModelRole("critic", "critic", d["hub_id"] or d["path"] or "?", "a ready-made BPO dataset", None))
    for name, t in ev["targets"].items():
        if not t["activate"]:
            continue
        if t["kind"] == "hf":
            out.append(ModelRole("target", name, t["model"], "local model (kind hf)", True))
        else:
            out.append(_endpoint_role("target", name, t["model"], EndpointSettings.from_config(config, t["endpoint"])))
    j = ev["judge"]
    out.append(_endpoint_role("judge", "judge", j["model"], EndpointSettings.from_config(config, j["endpoint"])))
    return tuple(out)


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

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls.from_mapping({**config["eval"]["report"], "models": model_roles(config)}, "eval.report")


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
