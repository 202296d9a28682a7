"""Settings of the training stage (rule train_optimizer), split by what they change.

:class:`TrainSettings` is every ``train.*`` key that changes the trained model: the rule passes its
canonical form as ``params.settings``, so an edit retrains. :class:`CheckpointRuntime` is
``train.checkpoint``: where and how often to checkpoint for a resume, never what the model is, so
the script reads it from the config at run time and an edit reruns nothing. :class:`TrackingRuntime`
(``train.report_to``) is runtime for the same reason: a tracker watches a run, it does not change it.
Defaults live only in ``bpo/resources/schema.yaml``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from bpo.settings.base import Settings, SettingsError
from bpo.settings.config import validate_config


@dataclass(frozen=True)
class TinySettings(Settings):
    """Size of the from-scratch Llama trained when ``base_model`` is null (``train.tiny``)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    max_position_embeddings: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        return cls.from_mapping(config["train"]["tiny"], "train.tiny")

    @classmethod
    def sized(cls, sizes: Mapping[str, Any]) -> Self:
        """A tiny model sized by hand (tests, benchmarks): ``sizes`` over the schema's defaults."""
        return cls.from_config(validate_config({"train": {"tiny": dict(sizes)}}))


@dataclass(frozen=True)
class LoraSettings(Settings):
    """Low-rank adapters instead of a full fine-tune (``train.lora``)."""

    enabled: bool
    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Every result-relevant ``train`` key (all of them but the runtime ones, RUNTIME_KEYS)."""

    base_model: str | None
    tiny: TinySettings
    attn_implementation: str
    prompt_format: str  # bpo.prompt_format.FORMATS; recorded in the trained folder
    max_length: int
    epochs: float
    max_steps: int
    global_batch_size: int
    per_device_batch_size: int
    learning_rate: float
    warmup_ratio: float
    lr_scheduler: str
    weight_decay: float
    adam_beta1: float
    adam_beta2: float
    adam_epsilon: float
    max_grad_norm: float
    precision: str
    seed: int
    deepspeed: str | None  # the JSON file is also a rule input: editing its content retrains
    packing: bool
    gradient_checkpointing: bool
    lora: LoraSettings
    logging_steps: int
    eval_steps: int
    cpu_ranks: int
    # bpo.history.HISTORY_TOKENS while an active source is multi-turn (its SFT inputs carry a
    # history, fitted to this budget as inference fits it); None, and left out of the params,
    # otherwise, so single-turn runs keep their params.
    history_tokens: int | None

    omit_none: ClassVar = ("history_tokens",)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        from bpo.history import HISTORY_TOKENS
        from bpo.settings.critique import multi_turn_active

        # The rule builds its params from this at parse time: a tracker that is not installed
        # fails there, not after the job has queued and trained.
        check_tracker(config["train"]["report_to"])
        section = {k: v for k, v in config["train"].items() if k not in RUNTIME_KEYS}
        section["history_tokens"] = HISTORY_TOKENS if multi_turn_active(config) else None
        return cls.from_mapping(section, "train")


RUNTIME_KEYS = ("checkpoint", "report_to")
# train.report_to -> the module the Trainer's integration imports
TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_tracker(report_to: str) -> None:
    """A clear error naming the key when the tracker's package is not installed."""
    module = TRACKER_MODULES.get(report_to)
    if module is not None and importlib.util.find_spec(module) is None:
        raise SettingsError(
            f"config train.report_to: {report_to!r} needs the {module} package, which is not installed: "
            f"pip install '.[tracking]' (or pip install {module}), or set train.report_to: none"
        )


@dataclass(frozen=True)
class TrackingRuntime(Settings):
    """Where training reports: ``train.report_to``, the tracker's run name and TensorBoard's folder."""

    report_to: str
    run_name: str  # <run_name>/train: the run and stage
    logging_dir: str | None  # TensorBoard event files; None: under the checkpoint folder

    @classmethod
    def from_config(cls, config: Mapping[str, Any], logging_dir: str | None = None) -> Self:
        report_to = config["train"]["report_to"]
        check_tracker(report_to)
        return cls.from_mapping(
            {"report_to": report_to, "run_name": f"{config['run_name']}/train", "logging_dir": logging_dir},
            "train.report_to",
        )


@dataclass(frozen=True)
class CheckpointRuntime(Settings):
    """``train.checkpoint``: checkpoints for resuming a requeued job; never changes the model."""

    dir: str
    save_steps: int
    save_total_limit: int
    keep: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any], model_dir: str | None = None) -> Self:
        """``dir: null`` means ``<model>_checkpoints`` beside ``model_dir`` (``optimizer_checkpoints``
        in the run's results root). Every other model trained by this code (the sft_data students,
        trained side by side) keeps its own subfolder of a given ``dir``: checkpoints of other
        settings or data are wiped, so two models must never share one."""
        section = dict(config["train"]["checkpoint"])
        name = Path(model_dir).name if model_dir is not None else None
        if section.get("dir") is None:
            if model_dir is None:
                raise ValueError("train.checkpoint.dir is null: pass the model folder it sits beside")
            section["dir"] = str(Path(model_dir).parent / f"{name}_checkpoints")
        elif name is not None and name != "optimizer":
            section["dir"] = str(Path(section["dir"]) / name)
        return cls.from_mapping(section, "train.checkpoint")
