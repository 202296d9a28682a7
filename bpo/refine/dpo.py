"""Rule train_refined: DPO on the preference pairs with TRL's DPOTrainer (its loss, its reference
model handling), one rank of a :class:`~bpo.train.spec.TrainSpec` run like the SFT stage's.

The policy starts from the round's start model (the SFT optimizer in round 1, round r-1's model
after), which is also the reference: TRL loads a frozen copy of it, or with LoRA disables the
adapters. Examples are tokenized by :func:`bpo.prompt_format.encode_training_pair`, the function
SFT training uses, so DPO sees the same input ids the optimizer was trained and is run on. LoRA,
DeepSpeed, precision, checkpoint/resume, saving (merged, with the format record) and the loss
plot are the SFT stage's (:mod:`bpo.train`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections import Counter
from pathlib import Path

from bpo.schemas import PREFERENCES, read_table
from bpo.settings.refine import DPOSettings
from bpo.train.spec import TrainSpec

log = logging.getLogger(__name__)


def encode_preferences(rows: list[dict], tokenizer, fmt: str, max_length: int) -> tuple[dict, Counter]:
    """Columns prompt_ids/chosen_ids/rejected_ids for DPOTrainer; pairs longer than
    ``max_length`` are dropped and counted (never truncated, as in SFT)."""
    from bpo.prompt_format import encode_training_pair

    cols: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    dropped: Counter = Counter()
    for r in rows:
        prompt_ids, chosen = encode_training_pair(r["prompt"], r["chosen"], fmt, tokenizer)
        _, rejected = encode_training_pair(r["prompt"], r["rejected"], fmt, tokenizer)
        if len(prompt_ids) + max(len(chosen), len(rejected)) > max_length:
            dropped["too_long"] += 1
            continue
        cols["prompt_ids"].append(prompt_ids)
        cols["chosen_ids"].append(chosen)
        cols["rejected_ids"].append(rejected)
    return cols, dropped


def _trainer_class():
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer on examples already tokenized the SFT way (see the module docstring)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    return PretokenizedDPOTrainer


def run(spec: TrainSpec, resume_from: str | None = None) -> dict:
    """DPO as one rank of ``spec`` (``runner_options``: the DPO settings and whether the SFT base
    was pretrained). Returns a summary; rank 0 writes the model, metrics and loss curve."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig

    from bpo.prompt_format import resolve_prompt_format
    from bpo.train.artifacts import save_model, write_metrics
    from bpo.train.data import prepare_tokenizer
    from bpo.train.model import apply_lora
    from bpo.train.run import grad_accumulation, load_deepspeed_config, resolve_precision, training_arguments

    hp, options = spec.settings, dict(spec.runner_options or {})
    dpo = DPOSettings.from_params(options["dpo"])
    start = hp.base_model
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    set_seed(hp.seed)
    rows = read_table(spec.train, PREFERENCES).to_pylist()
    if not rows:
        raise ValueError(
            f"{spec.train}: no preference pairs to train on (the preferences report beside it says why); "
            "change the judge, refine.k or refine.margin, or set refine.activate: false"
        )
    precision, why = resolve_precision(hp.precision, pretrained=bool(options.get("pretrained")))
    accum = grad_accumulation(hp.global_batch_size, hp.per_device_batch_size, world_size)
    ds_config = load_deepspeed_config(hp.deepspeed)
    fmt, fmt_source = resolve_prompt_format(start, configured=hp.prompt_format)
    # the start model's format is the one it was trained in: the refined model records it too
    hp = hp.replace(prompt_format=fmt)
    spec = dataclasses.replace(spec, settings=hp)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(start))
    cols, dropped = encode_preferences(rows, tokenizer, fmt, hp.max_length)
    if not cols["prompt_ids"]:
        raise ValueError(f"{spec.train}: every pair is longer than train.max_length {hp.max_length}")
    if dropped:
        log.warning("%s: dropped %s of %d pairs", spec.train, dict(dropped), len(rows))
    dtype = torch.bfloat16 if ds_config is not None and precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(start, dtype=dtype)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if hp.lora.enabled:
        model = apply_lora(model, hp.lora, hp.gradient_checkpointing)
    args = training_arguments(
        hp,
        spec,
        accum=accum,
        precision=precision,
        has_eval=False,
        ds_config=ds_config,
        use_cpu=not torch.cuda.is_available(),
        args_class=DPOConfig,
        beta=dpo.beta,
        loss_type=[dpo.loss_type],
        max_length=hp.max_length,
        include_num_input_tokens_seen="no",
        precompute_ref_log_probs=False,
    )
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=Dataset.from_dict(cols), processing_class=tokenizer
    )
    log.info(
        "DPO from %s (also the reference): %d pairs, beta %s, loss %s, prompt format %s (%s), precision %s (%s), "
        "LoRA %s, deepspeed %s",
        start,
        len(cols["prompt_ids"]),
        dpo.beta,
        dpo.loss_type,
        fmt,
        fmt_source,
        precision,
        why,
        hp.lora.enabled,
        hp.deepspeed or "off",
    )
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    last = next((e for e in reversed(trainer.state.log_history) if "rewards/accuracies" in e), {})
    summary = {
        "stage": "dpo",
        "start_model": start,
        "world_size": world_size,
        "precision": precision,
        "prompt_format": fmt,
        "pairs": len(cols["prompt_ids"]),
        "pairs_dropped": dict(dropped),
        "global_steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "reward_accuracy_last_log": last.get("rewards/accuracies"),
        "reward_margin_last_log": last.get("rewards/margins"),
        "train_seconds": time.perf_counter() - t0,
        "resumed_from": resume_from,
        "dpo": dpo.canonical(),
    }
    base_desc = {"kind": "dpo_refined", "name": start, "path": start}
    save_model(trainer, tokenizer, spec, base_desc, ds_config, summary)
    if trainer.args.should_save:
        write_metrics(trainer.state.log_history, spec, f"DPO from {Path(start).name}: {summary['global_steps']} steps")
        if not spec.checkpoint.keep:
            shutil.rmtree(spec.checkpoint.dir, ignore_errors=True)
        log.info("saved the refined optimizer to %s (DPO loss %.4f)", spec.model_dir, result.training_loss)
    return summary


def train_refined(
    preferences: str,
    start_model: str,
    outputs: dict,
    settings,
    checkpoint,
    tracking=None,
    threads: int | None = None,
) -> dict | None:
    """Rule train_refined: DPO from ``start_model`` on ``preferences`` through the SFT stage's
    launcher (one rank in process, or torchrun/srun ranks). ``settings``: RefineTrainSettings;
    ``outputs``: model, metrics and loss_curve paths."""
    from bpo.train.launch import launch_training

    spec = TrainSpec(
        settings=settings.trainer_settings(start_model),
        checkpoint=checkpoint,
        train=preferences,
        val=None,
        model_dir=outputs["model"],
        metrics=outputs["metrics"],
        loss_curve=outputs["loss_curve"],
        tracking=tracking,
        runner="bpo.refine.dpo:run",
        runner_options={"dpo": settings.dpo.canonical(), "pretrained": bool(settings.train.base_model)},
    )
    return launch_training(spec, threads=threads)
