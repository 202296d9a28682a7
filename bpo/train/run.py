"""One rank of a training run: the HF Trainer (+ DeepSpeed, LoRA) on the SFT pairs of a
:class:`~bpo.train.spec.TrainSpec`.

:func:`run` is called in process by :func:`bpo.train.launch.launch_training` for a world of one,
and by every torchrun rank through :func:`main` (``python -m bpo.train.run --spec FILE``).
Distributed state (RANK, WORLD_SIZE, ...) comes from the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from bpo.hardware import cpu_supports_bf16
from bpo.settings.train import TrainSettings
from bpo.train.artifacts import save_model, write_metrics, zero_stage
from bpo.train.model import apply_lora, load_pretrained, load_tokenizer_and_tiny
from bpo.train.spec import TrainSpec

log = logging.getLogger("bpo.train.run")  # also when run as __main__ under torchrun


def resolve_precision(precision: str, pretrained: bool = True) -> tuple[str, str]:
    """``(precision, why)``. ``auto`` -> bf16 on a GPU that supports it, bf16 autocast on a CPU
    with native bf16 (AVX512-BF16/AMX) for a pretrained base, else fp32. The tiny from-scratch
    model stays fp32 on CPU: at its size bf16 buys nothing, and its demo stays bit-identical."""
    import torch

    if precision == "auto":
        if torch.cuda.is_available():
            if torch.cuda.is_bf16_supported():
                return "bf16", "auto: GPU supports bf16"
            return "fp32", "auto: GPU without bf16"
        if not cpu_supports_bf16():
            return "fp32", "auto: CPU without native bf16 (avx512_bf16/amx)"
        if not pretrained:
            return "fp32", "auto: tiny from-scratch model on CPU (bf16 buys nothing at its size)"
        return "bf16", "auto: CPU with native bf16 (autocast over fp32 weights)"
    if precision == "bf16" and not torch.cuda.is_available() and not cpu_supports_bf16():
        log.warning("precision bf16 requested on a CPU without native bf16: emulated, slower than fp32")
    if precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("config train.precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
    return precision, "configured"


def grad_accumulation(global_batch: int, per_device: int, world_size: int) -> int:
    """Accumulation steps that keep the global batch fixed whatever the number of ranks."""
    per_step = per_device * world_size
    if global_batch % per_step:
        raise ValueError(
            f"config train.global_batch_size {global_batch} is not a multiple of "
            f"per_device_batch_size {per_device} x {world_size} rank(s)"
        )
    return global_batch // per_step


def load_deepspeed_config(path: str | None) -> dict | None:
    if not path:
        return None
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config train.deepspeed: {path}: no such file")
    try:
        return json.loads(p.read_text())
    except ValueError as exc:
        raise ValueError(f"config train.deepspeed: {path} is not valid JSON: {exc}") from exc


def _make_trainer_class():
    from transformers import Trainer, TrainerCallback

    from bpo.train.loss import target_logits_loss

    class _Clock(TrainerCallback):
        def __init__(self):
            self.t = None
            self.tokens = 0

        def on_step_begin(self, args, state, control, **kwargs):
            if self.t is None:  # first step of this session (also after a resume)
                self.t = time.perf_counter()
                self.tokens = state.num_input_tokens_seen

    class BPOTrainer(Trainer):
        """Computes the training loss from the scored positions' logits only, and adds tokens/s
        over each logging interval (non-padding tokens, all ranks) to the training logs, so it
        lands in ``state.log_history`` and survives a resume."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._clock = _Clock()
            self.add_callback(self._clock)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """Training steps take the logits of the scored positions only (bpo.train.loss);
            evaluation and anything unusual go the Trainer's way."""
            if (
                return_outputs
                or not model.training
                or "labels" not in inputs
                or self.label_smoother is not None
                or not self.model_accepts_loss_kwargs
            ):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = target_logits_loss(model, inputs, num_items_in_batch)
            if loss is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                # as Trainer.compute_loss: num_items_in_batch counts every rank's tokens
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            return loss

        def log(self, logs, start_time=None):
            if "loss" in logs and self._clock.t is not None:
                now = time.perf_counter()
                seen = self.state.num_input_tokens_seen
                dt = now - self._clock.t
                if dt > 0:
                    logs["tokens_per_second"] = (seen - self._clock.tokens) / dt
                self._clock.t, self._clock.tokens = now, seen
            super().log(logs, start_time)

    return BPOTrainer


def _attach_tracking(trainer, spec: TrainSpec) -> None:
    """Point TensorBoard at the run's folder and log the settings to the tracker (rank 0)."""
    from transformers import TrainerCallback
    from transformers.integrations import TensorBoardCallback

    if spec.tracking is None or spec.tracking.report_to == "none":
        return
    tensorboard = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TensorBoardCallback)), None)
    if tensorboard is not None and spec.tracking.logging_dir:
        # The Trainer's default is inside the checkpoint folder, which a finished run removes.
        tensorboard.logging_dir = spec.tracking.logging_dir
    settings = spec.settings.canonical()
    report_to = spec.tracking.report_to

    class _LogSettings(TrainerCallback):
        # after the integration's own on_train_begin (callbacks run in order): its run is open
        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            if report_to == "tensorboard" and tensorboard is not None and tensorboard.tb_writer is not None:
                tensorboard.tb_writer.add_text("bpo_settings", f"```\n{json.dumps(settings, indent=1)}\n```")
            elif report_to == "wandb":
                import wandb

                if wandb.run is not None:
                    wandb.config.update({"bpo_settings": settings}, allow_val_change=True)
            elif report_to == "mlflow":
                import mlflow

                if mlflow.active_run() is not None:
                    mlflow.log_dict(settings, "bpo_settings.json")

    trainer.add_callback(_LogSettings())


def training_arguments(
    hp: TrainSettings,
    spec: TrainSpec,
    *,
    accum: int,
    precision: str,
    has_eval: bool,
    ds_config: dict | None,
    use_cpu: bool,
    args_class=None,
    **overrides,
):
    """The Trainer's arguments (``args_class``: TrainingArguments or a subclass such as TRL's
    DPOConfig, with ``overrides`` over these values)."""
    from transformers import TrainingArguments

    ckpt = spec.checkpoint
    evaluate = has_eval and hp.eval_steps > 0
    kwargs = dict(
        output_dir=ckpt.dir,
        per_device_train_batch_size=hp.per_device_batch_size,
        per_device_eval_batch_size=hp.per_device_batch_size,
        gradient_accumulation_steps=accum,
        num_train_epochs=hp.epochs,
        max_steps=hp.max_steps,
        learning_rate=hp.learning_rate,
        lr_scheduler_type=hp.lr_scheduler,
        warmup_steps=float(hp.warmup_ratio),  # a float in [0, 1) is a ratio of total steps
        optim="adamw_torch" if use_cpu else "adamw_torch_fused",  # (offload configs: DeepSpeed's CPU Adam)
        weight_decay=hp.weight_decay,
        adam_beta1=hp.adam_beta1,
        adam_beta2=hp.adam_beta2,
        adam_epsilon=hp.adam_epsilon,
        max_grad_norm=hp.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=hp.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if hp.gradient_checkpointing else None,
        seed=hp.seed,
        data_seed=hp.seed,
        deepspeed=ds_config,
        use_cpu=use_cpu,  # several CPU ranks need it (else a batch-size assertion fails)
        ddp_find_unused_parameters=False,  # every trainable parameter gets a gradient
        logging_steps=hp.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=hp.eval_steps if evaluate else None,
        save_strategy="steps" if ckpt.save_steps > 0 else "no",
        save_steps=ckpt.save_steps if ckpt.save_steps > 0 else 500,
        save_total_limit=ckpt.save_total_limit,
        include_num_input_tokens_seen="non_padding",
        report_to=[spec.tracking.report_to] if spec.tracking and spec.tracking.report_to != "none" else "none",
        run_name=spec.tracking.run_name if spec.tracking else None,
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )
    return (args_class or TrainingArguments)(**{**kwargs, **overrides})


def run(spec: TrainSpec, resume_from: str | None = None) -> dict:
    """Train as one rank of the job described by ``spec``. Returns a summary (rank 0 writes
    the outputs)."""
    import torch
    from transformers import set_seed

    from bpo.train.data import encode_pairs, load_sft_pairs, make_collator, prepare_tokenizer, to_dataset

    hp = spec.settings
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    set_seed(hp.seed)
    precision, precision_why = resolve_precision(hp.precision, pretrained=bool(hp.base_model))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    accum = grad_accumulation(hp.global_batch_size, hp.per_device_batch_size, world_size)

    train_pairs = load_sft_pairs(spec.train)
    val_pairs = load_sft_pairs(spec.val) if spec.val else []
    if not train_pairs:
        raise ValueError(f"{spec.train}: no SFT pairs to train on")

    ds_config = load_deepspeed_config(hp.deepspeed)
    tokenizer, model, base_desc = load_tokenizer_and_tiny(hp, train_pairs)
    prepare_tokenizer(tokenizer)
    fmt = {"prompt_format": hp.prompt_format, "history_tokens": hp.history_tokens}
    train_ex, train_report = encode_pairs(tokenizer, train_pairs, hp.max_length, what=spec.train, **fmt)
    val_ex, val_report = encode_pairs(tokenizer, val_pairs, hp.max_length, what=str(spec.val), **fmt)
    if not train_ex:
        raise ValueError(
            f"{spec.train}: every pair was dropped ({dict(train_report.dropped)}); "
            f"raise config train.max_length ({hp.max_length})?"
        )
    has_eval = bool(val_ex)
    args = training_arguments(
        hp,
        spec,
        accum=accum,
        precision=precision,
        has_eval=has_eval,
        ds_config=ds_config,
        use_cpu=not torch.cuda.is_available(),
    )
    if model is None:
        # Without DeepSpeed, bf16 is autocast over fp32 weights (fp32 master weights); DeepSpeed's
        # bf16 optimizer keeps its own fp32 master copy, so there the base loads in bf16 (half the RAM).
        model = load_pretrained(hp, dtype if ds_config is not None and precision != "fp32" else torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if hp.lora.enabled:
        if zero_stage(ds_config) == 3 and base_desc["kind"] != "pretrained":
            # The merge after training reloads the base from a folder: keep the random init.
            base_desc["path"] = str(Path(spec.checkpoint.dir) / "tiny_base")
            if int(os.environ.get("RANK", "0")) == 0:
                model.save_pretrained(base_desc["path"])
        model = apply_lora(model, hp.lora, hp.gradient_checkpointing)
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        train_dataset=to_dataset(train_ex),
        eval_dataset=to_dataset(val_ex) if has_eval else None,
        data_collator=make_collator(tokenizer, hp.packing, hp.attn_implementation),
        processing_class=tokenizer,
    )
    _attach_tracking(trainer, spec)
    log.info(
        "training: %d examples, world size %d, per-device batch %d x accumulation %d = global %d, "
        "precision %s (%s), prompt format %s, deepspeed %s, packing %s, LoRA %s",
        len(train_ex),
        world_size,
        hp.per_device_batch_size,
        accum,
        hp.global_batch_size,
        precision,
        precision_why,
        hp.prompt_format,
        hp.deepspeed or "off",
        hp.packing,
        hp.lora.enabled,
    )
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - t0
    final_eval = trainer.evaluate() if has_eval else {}

    summary = {
        "world_size": world_size,
        "gradient_accumulation_steps": accum,
        "precision": precision,
        "precision_reason": precision_why,
        "prompt_format": hp.prompt_format,
        "global_steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "eval_loss": final_eval.get("eval_loss"),
        "train_seconds": train_seconds,
        "tokens_seen": trainer.state.num_input_tokens_seen,
        "resumed_from": resume_from,
        "data": {"train": train_report.as_dict(), "val": val_report.as_dict()},
    }
    save_model(trainer, tokenizer, spec, base_desc, ds_config, summary)
    if trainer.args.should_save:
        title = f"{base_desc.get('name', 'tiny Llama from scratch')}: {summary['global_steps']} steps"
        write_metrics(trainer.state.log_history, spec, title)
        if not spec.checkpoint.keep:
            shutil.rmtree(spec.checkpoint.dir, ignore_errors=True)  # 7B optimizer states are ~80 GB
        log.info("saved the optimizer to %s (train loss %.4f)", spec.model_dir, result.training_loss)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Per-rank entry point used by torchrun: ``python -m bpo.train.run --spec FILE``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="TrainSpec JSON written by bpo.train.launch")
    parser.add_argument("--resume-from", default=None)
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
        format=f"%(asctime)s rank{os.environ.get('RANK', '0')} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    spec = TrainSpec.read(ns.spec)
    try:
        spec.run_function()(spec, resume_from=ns.resume_from)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
