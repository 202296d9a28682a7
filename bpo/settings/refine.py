"""Settings of the refinement loop (``refine``): the optimizer samples k rewrites per pool prompt,
the target answers them, the judge ranks them, and DPO trains the optimizer to prefer the winners.

One class per rule, each the rule's one ``settings`` param: :class:`CandidateSettings` (rule
candidates), ``CandidateAnswerSettings`` (candidate_answers) and ``CandidateJudgeSettings``
(candidate_judgments) beside the evaluation's target and judge in :mod:`bpo.settings.evaluate`,
:class:`PreferenceSettings` (preferences) and :class:`RefineTrainSettings` (train_refined). Each
names only its own values: what the rules before it change reaches it through their files.
Defaults live only in ``bpo/resources/schema.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import Settings
from bpo.settings.evaluate import CandidateAnswerSettings, CandidateJudgeSettings
from bpo.settings.generation import GenerationSettings
from bpo.settings.testsets import TestsetSettings
from bpo.settings.train import TrainSettings


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
class RefineEstimateSettings(Settings):
    """Rule refine_estimate: what round 1's LLM stages would cost, from the pool alone. The SFT
    split (``sft.seed``, ``sft.val_fraction``; ``val_fraction`` None when ``sft.source`` is a
    ready-made dataset, whose ids are not the pairs') stands in for the SFT validation set, and
    the prices of the two models are here so that a price edit re-estimates."""

    candidates: CandidateSettings
    answers: CandidateAnswerSettings
    judgments: CandidateJudgeSettings
    sft_seed: int
    sft_val_fraction: float | None
    prices: Mapping[str, Any]  # llm.prices of the target's and the judge's model (absent: unpriced)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        answers = CandidateAnswerSettings.from_config(config)
        judgments = CandidateJudgeSettings.from_config(config)
        prices = config["llm"]["prices"] or {}
        models = {answers.target.call.model, judgments.judge.call.model}
        sft = config["sft"]
        return cls(
            candidates=CandidateSettings.from_config(config),
            answers=answers,
            judgments=judgments,
            sft_seed=sft["seed"],
            sft_val_fraction=sft["val_fraction"] if sft["source"] == "critiques" else None,
            prices={m: dict(prices[m]) for m in sorted(models) if m in prices},
        )


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
