"""What a run does, decided once: the active sources, test sets, optimizers (by kind) and targets
(by kind), whether the optimizer is trained, and each optimizer's model input. rules/common.smk,
the critique estimate, the report's models table and the input check (bpo.config_inputs) ask it
instead of reading ``activate`` and ``kind`` themselves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import SettingsError
from bpo.settings.optimize import OPTIMIZER_KINDS, OptimizerKind, optimizer_kind
from bpo.vocab import MULTI_TURN_FORMATS

# The sft_data students (bpo.settings.sft_data imports these; plan stays below it).
STUDENTS = ("student_original", "student_bpo")
STUDENT_B, STUDENT_A = "student_bpo", "student_original"  # B vs A: the rewrite's student vs the baseline


def _active(section: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(name for name, cfg in section.items() if cfg["activate"])


@dataclass(frozen=True)
class Plan:
    sources: tuple[str, ...]  # config order, as every name tuple here
    testsets: tuple[str, ...]  # single-turn: optimize -> answer -> judge
    optimizers: Mapping[str, str]  # active optimizer -> kind
    targets: Mapping[str, str]  # active target -> kind (endpoint | hf)
    sft_rewrite: bool  # eval.sft_rewrite.activate
    multi_turn_testsets: tuple[str, ...] = ()  # conversations (MT-bench): converse -> judge_turns
    sft_data: bool = False  # sft_data.activate: the two students and their comparison

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        ev = config["eval"]
        optimizers = {name: ev["optimizers"][name]["kind"] for name in _active(ev["optimizers"])}
        for name in optimizers:
            optimizer_kind(config, name)  # an unknown kind is an error naming the key
        active = _active(ev["testsets"])
        multi = tuple(n for n in active if ev["testsets"][n]["format"] in MULTI_TURN_FORMATS)
        return cls(
            sources=_active(config["sources"]),
            testsets=tuple(n for n in active if n not in multi),
            optimizers=optimizers,
            targets={name: ev["targets"][name]["kind"] for name in _active(ev["targets"])},
            sft_rewrite=ev["sft_rewrite"]["activate"],
            multi_turn_testsets=multi,
            sft_data=_sft_data(config),
        )

    def optimizers_of(self, *kinds: str) -> list[str]:
        """Active optimizers, of ``kinds`` when given."""
        return [name for name, kind in self.optimizers.items() if not kinds or kind in kinds]

    def targets_of(self, kind: str | None = None) -> list[str]:
        """Active targets, of ``kind`` when given."""
        return [name for name, k in self.targets.items() if kind is None or k == kind]

    def kind(self, optimizer: str) -> OptimizerKind:
        return OPTIMIZER_KINDS[self.optimizers[optimizer]]

    @property
    def trains_optimizer(self) -> bool:
        """Whether an active optimizer is the one this workflow trains."""
        return any(OPTIMIZER_KINDS[kind].model_input in ("trained", "refined") for kind in self.optimizers.values())

    def model_comparisons(self) -> list[tuple[str, str, str]]:
        """(test set, model B, model A) of the "model B vs model A on the same prompt" rows:
        the sft_data students on every active test set."""
        if not self.sft_data:
            return []
        return [(ts, STUDENT_B, STUDENT_A) for ts in self.testsets]

    def triples(self) -> list[tuple[str, str, str]]:
        """(test set, optimizer, target) triples that are evaluated and reported."""
        return [(ts, opt, tg) for ts in self.testsets for opt in self.optimizers for tg in self.targets]

    def turn_triples(self) -> list[tuple[str, str, str]]:
        """(multi-turn test set, optimizer, target) triples, judged and reported per turn."""
        return [(ts, opt, tg) for ts in self.multi_turn_testsets for opt in self.optimizers for tg in self.targets]


def _sft_data(config: Mapping[str, Any]) -> bool:
    """sft_data.activate, checked: the students learn from eval.sft_rewrite's data, and their
    names must not be taken by an optimizer or target (they share the eval/ paths)."""
    if not config.get("sft_data", {}).get("activate", False):
        return False
    if not config["eval"]["sft_rewrite"]["activate"]:
        raise SettingsError("config sft_data.activate: needs eval.sft_rewrite.activate (the students' data)")
    for section in ("optimizers", "targets"):
        taken = sorted(set(config["eval"][section]) & set(STUDENTS))
        if taken:
            raise SettingsError(f"config eval.{section}.{taken[0]}: the name is the sft_data student's; rename it")
    return True


def optimizer_model(config: Mapping[str, Any], name: str) -> str | None:
    """Where optimizer ``name`` (active or not: eval.sft_rewrite names one) takes its model from:
    ``"trained"`` for the optimizer this workflow trains, ``"refined"`` for a round of its refinement
    loop (bpo.settings.refine.refined_round), the ``model`` folder or hub id, or None."""
    kind = optimizer_kind(config, name)
    if kind.model_input in ("trained", "refined"):
        return kind.model_input
    if kind.model_input == "model":
        return config["eval"]["optimizers"][name]["model"] or None
    return None
