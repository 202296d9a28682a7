"""Settings of the refinement loop (``refine``): the optimizer samples k rewrites per pool prompt,
the target answers them, the judge ranks them, and DPO trains the optimizer to prefer the winners.

One class per rule, each the rule's one ``settings`` param: :class:`CandidateSettings` (rule
candidates), :class:`CandidateAnswerSettings` (candidate_answers), :class:`CandidateJudgeSettings`
(candidate_judgments), :class:`PreferenceSettings` (preferences) and :class:`RefineTrainSettings`
(train_refined). Each holds the settings of the rules before it that change its input only through
their files (Snakemake reruns it when those files change), so it names only its own values.
Defaults live only in ``bpo/resources/schema.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import Settings, SettingsError
from bpo.settings.evaluate import EndpointTargetSettings, JudgeSettings
from bpo.settings.generation import GenerationSettings
from bpo.settings.testsets import TestsetSettings
from bpo.settings.train import TrainSettings

COMPARE_MODES = ("vs_original", "round_robin")


@dataclass(frozen=True)
class CandidateSettings(Settings):
    """k sampled rewrites per prompt of the pool (``refine.pool_size`` prompts of the pairs, none in
    the SFT validation set or any active test set); the round's seed is ``seed + round``."""

    pool_size: int
    pool_seed: int
    k: int
    generation: GenerationSettings
    excluded_testsets: tuple[TestsetSettings, ...]  # their questions never enter the pool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        from bpo.settings.plan import Plan

        r = config["refine"]
        generation = GenerationSettings(
            engine=r["engine"],
            temperature=r["temperature"],
            top_p=r["top_p"],
            max_new_tokens=r["max_tokens"],
            batch_size=r["batch_size"],
            seed=r["seed"],
            greedy=False,
        )
        return cls(
            pool_size=r["pool_size"],
            pool_seed=r["seed"],
            k=r["k"],
            generation=generation,
            excluded_testsets=tuple(TestsetSettings.from_config(config, t) for t in Plan.from_config(config).testsets),
        )


@dataclass(frozen=True)
class CandidateAnswerSettings(Settings):
    """The endpoint target (``refine.target``) that answers every candidate and original prompt."""

    target: EndpointTargetSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(target=EndpointTargetSettings.from_config(config, config["refine"]["target"]))


@dataclass(frozen=True)
class CandidateJudgeSettings(Settings):
    """The evaluation's judge (``eval.judge``, both orders always) and what it compares."""

    judge: JudgeSettings
    compare: str  # vs_original | round_robin

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        compare = config["refine"]["compare"]
        if compare not in COMPARE_MODES:
            raise SettingsError(f"config refine.compare: {compare!r} is not one of {', '.join(COMPARE_MODES)}")
        return cls(judge=JudgeSettings.from_config(config), compare=compare)


@dataclass(frozen=True)
class PreferenceSettings(Settings):
    """Chosen/rejected pairs: candidates whose judged scores differ by at least ``margin``, at most
    ``pairs_per_prompt`` per prompt (largest gaps first)."""

    margin: float
    pairs_per_prompt: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        r = config["refine"]
        return cls(margin=r["margin"], pairs_per_prompt=r["pairs_per_prompt"])


@dataclass(frozen=True)
class DPOSettings(Settings):
    """``refine.train``: TRL's DPOTrainer; everything else (LoRA, precision, DeepSpeed, seed,
    max_length, prompt format) is the SFT run's ``train`` section."""

    beta: float
    loss_type: str
    learning_rate: float
    epochs: float
    max_steps: int
    global_batch_size: int
    per_device_batch_size: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls.from_mapping(config["refine"]["train"], "refine.train")


@dataclass(frozen=True)
class RefineTrainSettings(Settings):
    """Rule train_refined: the DPO values and the SFT run's training settings they extend."""

    dpo: DPOSettings
    train: TrainSettings

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls(dpo=DPOSettings.from_config(config), train=TrainSettings.from_config(config))

    def trainer_settings(self, start_model: str) -> TrainSettings:
        """The SFT settings with the DPO batch, schedule and the round's start model as base (the
        runner reuses the SFT stage's TrainingArguments, checkpointing and saving)."""
        d = self.dpo
        return self.train.replace(
            base_model=start_model,
            learning_rate=d.learning_rate,
            epochs=d.epochs,
            max_steps=d.max_steps,
            global_batch_size=d.global_batch_size,
            per_device_batch_size=d.per_device_batch_size,
            packing=False,
            eval_steps=0,
        )


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
