"""What a finished run leaves behind: the model folder (weights, tokenizer and
``bpo_train_config.json``, read by bpo.optimizer), the TRAIN_METRICS Parquet and the loss-curve PNG.
Rank 0 writes them (``trainer.args.should_save``), every file atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bpo.atomic import save_figure, write_json
from bpo.prompt_format import TEMPLATE_VERSION, write_format_record
from bpo.schemas import TRAIN_METRICS, write_table
from bpo.train.spec import TrainSpec

TRAIN_CONFIG_NAME = "bpo_train_config.json"
_METRIC_KEYS = ("epoch", "loss", "eval_loss", "learning_rate", "grad_norm", "tokens_per_second")


def metrics_rows(log_history: list[dict]) -> list[dict]:
    """One TRAIN_METRICS row per logged step; eval losses join the row of their step."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None or not ("loss" in entry or "eval_loss" in entry):
            continue
        row = rows.setdefault(int(step), {"step": int(step), **dict.fromkeys(_METRIC_KEYS)})
        for key in _METRIC_KEYS:
            if entry.get(key) is not None:
                row[key] = float(entry[key])
    return [rows[s] for s in sorted(rows)]


def plot_loss_curve(rows: list[dict], path: str | os.PathLike, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    tr = [(r["step"], r["loss"]) for r in rows if r["loss"] is not None]
    ev = [(r["step"], r["eval_loss"]) for r in rows if r["eval_loss"] is not None]
    if tr:
        ax.plot(*zip(*tr), label="train loss", lw=1.2)
    if ev:
        ax.plot(*zip(*ev), "o-", label="validation loss", ms=4)
    handles = ax.get_legend_handles_labels()[0]
    lr = [(r["step"], r["learning_rate"]) for r in rows if r["learning_rate"] is not None]
    if lr:
        ax2 = ax.twinx()
        handles += ax2.plot(*zip(*lr), color="grey", ls=":", lw=1, label="learning rate")
        ax2.set_ylabel("learning rate", color="grey")
        ax2.tick_params(axis="y", colors="grey")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (optimized prompt + EOS tokens)")
    ax.set_title(title, fontsize=9)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def zero_stage(ds_config: Mapping | None) -> int:
    return int((ds_config or {}).get("zero_optimization", {}).get("stage", 0) or 0)


def save_model(
    trainer, tokenizer, spec: TrainSpec, base_desc: Mapping, ds_config: Mapping | None, summary: Mapping[str, Any]
) -> None:
    """Weights + tokenizer + training record in ``model_dir`` (a full model even for LoRA, so
    inference loads one folder with no base-model lookup). Every rank calls it (ZeRO-3 gathers)."""
    model_dir = Path(spec.model_dir)
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    lora = spec.settings.lora.enabled
    if lora and zero_stage(ds_config) == 3:
        # ZeRO-3 shards the base weights: gather the adapter, then merge it on rank 0 into
        # a fresh copy of the base.
        adapter_dir = Path(spec.checkpoint.dir) / "final_adapter"
        trainer.save_model(str(adapter_dir))
        if trainer.args.should_save:
            from peft import PeftModel
            from transformers import AutoModelForCausalLM
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()  # training is over: load whole, not ZeRO-3-partitioned
            fresh = AutoModelForCausalLM.from_pretrained(base_desc["path"])
            merged = PeftModel.from_pretrained(fresh, str(adapter_dir)).merge_and_unload()
            merged.config.use_cache = True
            merged.save_pretrained(model_dir)
    elif lora:
        if trainer.args.should_save:
            merged = unwrapped.merge_and_unload()  # full weights are local below ZeRO-3
            merged.config.use_cache = True
            merged.save_pretrained(model_dir)
    else:
        unwrapped.config.use_cache = True  # Trainer turned it off for training
        trainer.save_model(str(model_dir))
    if trainer.args.should_save:
        tokenizer.save_pretrained(model_dir)
        write_format_record(model_dir, spec.settings.prompt_format)  # inference reads it back
        record = {
            "bpo_template_version": TEMPLATE_VERSION,
            "base": {k: v for k, v in base_desc.items() if k != "path"},
            "hparams": spec.settings.canonical(),
            **summary,
        }
        write_json(record, model_dir / TRAIN_CONFIG_NAME, indent=1, sort_keys=True, ensure_ascii=True)


def write_metrics(log_history: list[dict], spec: TrainSpec, title: str) -> None:
    """The metrics Parquet and the loss curve (rank 0)."""
    rows = metrics_rows(log_history)
    write_table(rows, spec.metrics, TRAIN_METRICS)
    plot_loss_curve(rows, spec.loss_curve, title)
