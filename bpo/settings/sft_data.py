"""Settings of the SFT-data experiment (``sft_data``): two students, one recipe, judged head to head.

:func:`student_train_settings` is the recipe: the ``train`` section with ``sft_data.student`` over
it, as a :class:`~bpo.settings.train.TrainSettings` (the training stage's own class, so both
students train through the same code as the optimizer). :class:`StudentDataSettings` is what
makes the two data sets; :func:`student_answer_settings` makes a student a local hf target.
Defaults live only in ``bpo/resources/schema.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import Settings, SettingsError
from bpo.settings.config import ConfigError, merge, validate_config
from bpo.settings.evaluate import EndpointTargetSettings
from bpo.settings.generation import STUDENT_ANSWER_KEY, GenerationSettings
from bpo.settings.hf_target import HFOriginalAnswerSettings, HFTargetSettings
from bpo.settings.plan import STUDENTS
from bpo.settings.testsets import TestsetSettings
from bpo.settings.train import TrainSettings

KEEP, REGENERATE = "keep", "regenerate"


def student_train_config(config: Mapping[str, Any]) -> dict:
    """The students' ``train`` section: ``train`` with ``sft_data.student`` over it, schema-checked
    (a bad key is named under sft_data.student.train)."""
    student = config["sft_data"]["student"]
    over = {**student["train"], "base_model": student["base_model"], "prompt_format": student["prompt_format"]}
    try:
        return validate_config({"train": merge(config["train"], over)})
    except ConfigError as exc:
        raise SettingsError(str(exc).replace("config train.", "config sft_data.student.train.")) from None


def student_train_settings(config: Mapping[str, Any]) -> TrainSettings:
    """The one recipe of both students (rule train_student's settings param)."""
    return TrainSettings.from_config(student_train_config(config))


@dataclass(frozen=True)
class StudentDataSettings(Settings):
    """``sft_data.answer_original`` and, to regenerate, the target that answers the original
    instructions (eval.sft_rewrite.target, the one that answered the rewritten ones)."""

    answer_original: str  # keep | regenerate
    target: EndpointTargetSettings | None  # regenerate only

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        mode = config["sft_data"]["answer_original"]
        target = None
        if mode == REGENERATE:
            name = config["eval"]["sft_rewrite"]["target"]
            try:
                target = EndpointTargetSettings.from_config(config, name)
            except SettingsError as exc:
                raise SettingsError(f"config sft_data.answer_original regenerate (target '{name}'): {exc}") from None
        return cls(answer_original=mode, target=target)


def student_model_dir(results_root: str, student: str) -> str:
    """Where rule train_student writes ``student``: results/<run>/models/<student>."""
    return f"{results_root}/models/{student}"


def student_answer_settings(
    config: Mapping[str, Any], testset: str, student: str, model_dir: str
) -> HFOriginalAnswerSettings:
    """Student ``student`` (in ``model_dir``) as a local hf target answering test set ``testset``."""
    if student not in STUDENTS:
        raise SettingsError(f"unknown student {student!r} (known: {', '.join(STUDENTS)})")
    answer = config["sft_data"]["student"]["answer"]
    target = HFTargetSettings(
        name=student,
        model=model_dir,
        dtype=answer["dtype"],
        system_prompt=None,  # trained without one: the instruction format has no system turn
        generation=GenerationSettings.from_config(config, STUDENT_ANSWER_KEY),
    )
    return HFOriginalAnswerSettings(testset=TestsetSettings.from_config(config, testset), target=target)
