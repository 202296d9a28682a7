"""What one training run needs: the result settings, the checkpoint runtime and the file paths.

The launcher writes a :class:`TrainSpec` to a JSON file that every torchrun rank reads back
(``python -m bpo.train.run --spec FILE``), so the ranks rebuild exactly the settings objects the
workflow script built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpo.atomic import write_json
from bpo.settings.train import CheckpointRuntime, TrackingRuntime, TrainSettings


@dataclass(frozen=True)
class TrainSpec:
    settings: TrainSettings
    checkpoint: CheckpointRuntime
    train: str  # SFT pairs (Parquet)
    val: str | None
    model_dir: str
    metrics: str  # TRAIN_METRICS Parquet
    loss_curve: str  # PNG
    tracking: TrackingRuntime | None = None  # None: report to no tracker
    # The function every rank runs (``module:function``, called with the spec and resume_from)
    # and its extra options: SFT by default; DPO refinement names bpo.refine.dpo:run.
    runner: str = "bpo.train.run:run"
    runner_options: Mapping[str, Any] | None = None

    def run_function(self):
        import importlib

        module, function = self.runner.split(":")
        return getattr(importlib.import_module(module), function)

    def as_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.canonical(),
            "checkpoint": self.checkpoint.canonical(),
            "train": str(self.train),
            "val": str(self.val) if self.val else None,
            "model_dir": str(self.model_dir),
            "metrics": str(self.metrics),
            "loss_curve": str(self.loss_curve),
            "tracking": self.tracking.canonical() if self.tracking else None,
            "runner": self.runner,
            "runner_options": dict(self.runner_options or {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSpec:
        return cls(
            settings=TrainSettings.from_params(data["settings"]),
            checkpoint=CheckpointRuntime.from_params(data["checkpoint"]),
            train=data["train"],
            val=data["val"],
            model_dir=data["model_dir"],
            metrics=data["metrics"],
            loss_curve=data["loss_curve"],
            tracking=TrackingRuntime.from_params(data["tracking"]) if data.get("tracking") else None,
            runner=data.get("runner", "bpo.train.run:run"),
            runner_options=data.get("runner_options") or None,
        )

    def write(self, path: str | Path) -> None:
        write_json(self.as_dict(), path, indent=1)

    @classmethod
    def read(cls, path: str | Path) -> TrainSpec:
        return cls.from_dict(json.loads(Path(path).read_text()))
