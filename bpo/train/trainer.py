"""Supervised fine-tuning of the prompt optimizer with the HF Trainer (+ DeepSpeed, LoRA).

Entry points:
- :func:`run_spec` trains from a job spec (dict, see :func:`make_spec`); every rank of a
  distributed run calls it (``python -m bpo.train.trainer --spec spec.json`` under torchrun).
- :func:`prepare_checkpoint_dir` runs once before the ranks start: it keeps checkpoints of
  an interrupted run with the same settings (resume after SLURM requeue) and wipes those of
  a run with different settings (never resume into a different experiment).

Outputs: the model folder (weights, tokenizer, ``bpo_train_config.json``), the metrics
Parquet (``TRAIN_METRICS``) and a loss-curve PNG.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from bpo.prompt_format import TEMPLATE_VERSION
from bpo.schemas import TRAIN_METRICS, write_table

log = logging.getLogger("bpo.train.trainer")  # also when run as __main__ under torchrun

TRAIN_CONFIG_NAME = "bpo_train_config.json"
FINGERPRINT_NAME = "bpo_fingerprint.json"

# Result-relevant settings (the `train` config section minus `checkpoint`): all of them are
# rule params, so an edit retrains. Defaults mirror config/schema.yaml.
HPARAM_DEFAULTS: dict[str, Any] = {
    "base_model": None,
    "tiny": {},
    "attn_implementation": "sdpa_varlen",
    "max_length": 512,
    "epochs": 3,
    "max_steps": -1,
    "global_batch_size": 32,
    "per_device_batch_size": 4,
    "learning_rate": 2e-5,
    "warmup_ratio": 0.1,
    "lr_scheduler": "linear",
    "weight_decay": 0.01,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "max_grad_norm": 1.0,
    "precision": "auto",
    "seed": 42,
    "deepspeed": None,
    "packing": True,
    "gradient_checkpointing": False,
    "lora": {"enabled": False, "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
    "logging_steps": 1,
    "eval_steps": 0,
    "cpu_ranks": 1,
}

# Throughput/bookkeeping settings: changing them never changes the model.
CHECKPOINT_DEFAULTS: dict[str, Any] = {
    "dir": "results/models/optimizer_checkpoints",
    "save_steps": 500,
    "save_total_limit": 2,
    "keep": False,
}


def make_spec(
    *,
    train: str,
    val: str | None,
    model_dir: str,
    metrics: str,
    loss_curve: str,
    hparams: Mapping,
    checkpoint: Mapping | None = None,
) -> dict:
    """A JSON-serialisable description of one training job (what every rank needs)."""
    unknown = sorted(set(hparams) - set(HPARAM_DEFAULTS))
    if unknown:
        raise ValueError(f"config train: unknown keys {unknown}")
    unknown = sorted(set(checkpoint or {}) - set(CHECKPOINT_DEFAULTS))
    if unknown:
        raise ValueError(f"config train.checkpoint: unknown keys {unknown}")
    hp = {**HPARAM_DEFAULTS, **dict(hparams)}
    hp["lora"] = {**HPARAM_DEFAULTS["lora"], **dict(hparams.get("lora") or {})}
    return {
        "train": str(train),
        "val": str(val) if val else None,
        "model_dir": str(model_dir),
        "metrics": str(metrics),
        "loss_curve": str(loss_curve),
        "hparams": json.loads(json.dumps(hp)),
        "checkpoint": {**CHECKPOINT_DEFAULTS, **dict(checkpoint or {})},
    }


def _file_digest(path: str | None) -> str | None:
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(spec: Mapping, world_size: int) -> dict:
    """What a checkpoint must match to be resumed: settings, data and rank layout."""
    ds_path = spec["hparams"].get("deepspeed")
    return {
        "hparams": spec["hparams"],
        "train": _file_digest(spec["train"]),
        "val": _file_digest(spec["val"]),
        "deepspeed": _file_digest(ds_path) if ds_path else None,
        "world_size": world_size,
        "template_version": TEMPLATE_VERSION,
        # The code that turns data into tokens and builds the tiny model: a checkpoint made by
        # other code (an upgrade between requeues) would not load, so it is not resumed.
        "code": _code_digest(),
    }


def _code_digest() -> str:
    from bpo import prompt_format
    from bpo.train import data, tiny_model

    h = hashlib.sha256()
    for module in (prompt_format, data, tiny_model):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


def last_complete_checkpoint(ckpt_dir: str | os.PathLike) -> str | None:
    """Newest ``checkpoint-N`` folder that was written to the end (trainer_state.json is the
    Trainer's last write), so a job killed mid-save resumes from the previous one."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    found = []
    for p in ckpt_dir.iterdir():
        if p.is_dir() and p.name.startswith("checkpoint-") and p.name.split("-")[-1].isdigit():
            if (p / "trainer_state.json").exists():
                found.append((int(p.name.split("-")[-1]), p))
    return str(max(found)[1]) if found else None


def prepare_checkpoint_dir(spec: Mapping, world_size: int) -> str | None:
    """Run once before training starts. Returns the checkpoint to resume from, if any."""
    ckpt_dir = Path(spec["checkpoint"]["dir"])
    fp = fingerprint(spec, world_size)
    fp_path = ckpt_dir / FINGERPRINT_NAME
    if ckpt_dir.exists() and any(ckpt_dir.iterdir()):
        try:
            old = json.loads(fp_path.read_text())
        except (OSError, ValueError):
            old = None
        if old != fp:
            log.warning("checkpoints in %s belong to different settings or data: removed", ckpt_dir)
            shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    fp_path.write_text(json.dumps(fp, indent=1, sort_keys=True))
    last = last_complete_checkpoint(ckpt_dir)
    if last:
        log.info("resuming from %s", last)
    return last


def resolve_precision(precision: str) -> str:
    """``auto`` -> bf16 on a GPU that supports it, else fp32 (CPU bf16 autocast is slow
    without AMX and buys nothing for a tiny model)."""
    import torch

    if precision == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision == "bf16" and not torch.cuda.is_available():
        log.warning("precision bf16 requested on CPU: CPU autocast in bf16 (slow without AMX)")
    if precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("config train.precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
    return precision


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


def _load_tokenizer_and_tiny(hp: Mapping, pairs: list[tuple[str, str, str]]):
    """(tokenizer, tiny model or None, description). A pretrained model is loaded later, by
    :func:`_load_pretrained`, once TrainingArguments exist: ZeRO-3 then partitions it while
    loading (zero.Init) instead of every rank holding a full copy."""
    from transformers import AutoTokenizer

    from bpo.train.attention import register

    register()
    if hp["base_model"]:
        name = hp["base_model"]
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except OSError as exc:
            raise RuntimeError(
                f"config train.base_model {name!r}: cannot load it ({exc}). Offline, point it to a "
                "local folder or set it to null for the tiny from-scratch model."
            ) from exc
        return tokenizer, None, {"kind": "pretrained", "name": name, "path": name}
    from bpo.train.tiny_model import TINY_DEFAULTS, build_tiny

    # Built at once (tiny: no partitioning needed), so a LoRA + ZeRO-3 run can save its init.
    model, tokenizer = build_tiny(
        [(p, o) for _, p, o in pairs], hp["tiny"], hp["seed"], hp["attn_implementation"]
    )
    return tokenizer, model, {"kind": "tiny_from_scratch", "tiny": {**TINY_DEFAULTS, **hp["tiny"]}}


def _load_pretrained(hp: Mapping, dtype):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            hp["base_model"], dtype=dtype, attn_implementation=hp["attn_implementation"]
        )
    except (OSError, ImportError, ValueError) as exc:
        raise RuntimeError(f"config train.base_model {hp['base_model']!r}: cannot load the model: {exc}") from exc


def _apply_lora(model, lora: Mapping, gradient_checkpointing: bool):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=list(lora["target_modules"]),
        task_type="CAUSAL_LM",
    )
    if gradient_checkpointing:
        # Frozen embeddings give checkpointed blocks inputs without grad; this keeps the graph.
        model.enable_input_require_grads()
    model = get_peft_model(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA r=%d on %s: %d of %d parameters trainable", lora["r"], lora["target_modules"], trainable, total)
    return model


def _make_trainer_class():
    from transformers import Trainer, TrainerCallback

    class _Clock(TrainerCallback):
        def __init__(self):
            self.t = None
            self.tokens = 0

        def on_step_begin(self, args, state, control, **kwargs):
            if self.t is None:  # first step of this session (also after a resume)
                self.t = time.perf_counter()
                self.tokens = state.num_input_tokens_seen

    class BPOTrainer(Trainer):
        """Adds tokens/s over each logging interval (non-padding tokens, all ranks) to the
        training logs, so it lands in ``state.log_history`` and survives a resume."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._clock = _Clock()
            self.add_callback(self._clock)

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


def metrics_rows(log_history: list[dict]) -> list[dict]:
    """One TRAIN_METRICS row per logged step; eval losses join the row of their step."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None or not ("loss" in entry or "eval_loss" in entry):
            continue
        row = rows.setdefault(
            int(step),
            {"step": int(step), "epoch": None, "loss": None, "eval_loss": None, "learning_rate": None,
             "grad_norm": None, "tokens_per_second": None},
        )
        for key in ("epoch", "loss", "eval_loss", "learning_rate", "grad_norm", "tokens_per_second"):
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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _zero_stage(ds_config: Mapping | None) -> int:
    return int((ds_config or {}).get("zero_optimization", {}).get("stage", 0) or 0)


def _save_final(trainer, tokenizer, spec, hp, base_desc, ds_config, extra: dict) -> None:
    """Weights + tokenizer + training config in ``model_dir`` (a full model even for LoRA,
    so inference loads one folder with no base-model lookup)."""
    model_dir = Path(spec["model_dir"])
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if hp["lora"]["enabled"] and _zero_stage(ds_config) == 3:
        # ZeRO-3 shards the base weights: gather the adapter, then merge it on rank 0 into
        # a fresh copy of the base.
        adapter_dir = Path(spec["checkpoint"]["dir"]) / "final_adapter"
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
    elif hp["lora"]["enabled"]:
        if trainer.args.should_save:
            merged = unwrapped.merge_and_unload()  # full weights are local below ZeRO-3
            merged.config.use_cache = True
            merged.save_pretrained(model_dir)
    else:
        unwrapped.config.use_cache = True  # Trainer turned it off for training
        trainer.save_model(str(model_dir))
    if trainer.args.should_save:
        tokenizer.save_pretrained(model_dir)
        record = {
            "bpo_template_version": TEMPLATE_VERSION,
            "base": {k: v for k, v in base_desc.items() if k != "path"},
            "hparams": hp,
            **extra,
        }
        (model_dir / TRAIN_CONFIG_NAME).write_text(json.dumps(record, indent=1, sort_keys=True))


def run_spec(spec: Mapping, resume_from: str | None = None) -> dict:
    """Train as one rank of the job described by ``spec``. Returns a summary (rank 0 writes
    the outputs). Distributed state (RANK, WORLD_SIZE, ...) comes from the environment."""
    import torch
    from transformers import TrainingArguments, set_seed

    from bpo.train.data import encode_pairs, load_sft_pairs, make_collator, prepare_tokenizer, to_dataset

    hp = spec["hparams"]
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    set_seed(hp["seed"])
    precision = resolve_precision(hp["precision"])
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    accum = grad_accumulation(hp["global_batch_size"], hp["per_device_batch_size"], world_size)

    train_pairs = load_sft_pairs(spec["train"])
    val_pairs = load_sft_pairs(spec["val"]) if spec.get("val") else []
    if not train_pairs:
        raise ValueError(f"{spec['train']}: no SFT pairs to train on")

    ds_config = load_deepspeed_config(hp["deepspeed"])
    tokenizer, model, base_desc = _load_tokenizer_and_tiny(hp, train_pairs)
    prepare_tokenizer(tokenizer)
    train_ex, train_report = encode_pairs(tokenizer, train_pairs, hp["max_length"], what=spec["train"])
    val_ex, val_report = encode_pairs(tokenizer, val_pairs, hp["max_length"], what=str(spec.get("val")))
    if not train_ex:
        raise ValueError(
            f"{spec['train']}: every pair was dropped ({dict(train_report.dropped)}); "
            f"raise config train.max_length ({hp['max_length']})?"
        )
    use_cpu = not torch.cuda.is_available()
    has_eval = bool(val_ex)
    ckpt = spec["checkpoint"]
    args = TrainingArguments(
        output_dir=ckpt["dir"],
        per_device_train_batch_size=hp["per_device_batch_size"],
        per_device_eval_batch_size=hp["per_device_batch_size"],
        gradient_accumulation_steps=accum,
        num_train_epochs=hp["epochs"],
        max_steps=hp["max_steps"],
        learning_rate=hp["learning_rate"],
        lr_scheduler_type=hp["lr_scheduler"],
        warmup_steps=float(hp["warmup_ratio"]),  # a float in [0, 1) is a ratio of total steps
        optim="adamw_torch" if use_cpu else "adamw_torch_fused",  # (offload configs: DeepSpeed's CPU Adam)
        weight_decay=hp["weight_decay"],
        adam_beta1=hp["adam_beta1"],
        adam_beta2=hp["adam_beta2"],
        adam_epsilon=hp["adam_epsilon"],
        max_grad_norm=hp["max_grad_norm"],
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=hp["gradient_checkpointing"],
        activation_checkpointing_kwargs={"use_reentrant": False} if hp["gradient_checkpointing"] else None,
        seed=hp["seed"],
        data_seed=hp["seed"],
        deepspeed=ds_config,
        use_cpu=use_cpu,  # several CPU ranks need it (else a batch-size assertion fails)
        ddp_find_unused_parameters=False,  # every trainable parameter gets a gradient
        logging_steps=hp["logging_steps"],
        logging_first_step=True,
        eval_strategy="steps" if has_eval and hp["eval_steps"] > 0 else "no",
        eval_steps=hp["eval_steps"] if has_eval and hp["eval_steps"] > 0 else None,
        save_strategy="steps" if ckpt["save_steps"] > 0 else "no",
        save_steps=ckpt["save_steps"] if ckpt["save_steps"] > 0 else 500,
        save_total_limit=ckpt["save_total_limit"],
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )
    if model is None:
        # Without DeepSpeed, bf16 is autocast over fp32 weights (fp32 master weights); DeepSpeed's
        # bf16 optimizer keeps its own fp32 master copy, so there the base loads in bf16 (half the RAM).
        model = _load_pretrained(hp, dtype if ds_config is not None and precision != "fp32" else torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if hp["lora"]["enabled"]:
        if _zero_stage(ds_config) == 3 and base_desc["kind"] != "pretrained":
            # The merge after training reloads the base from a folder: keep the random init.
            base_desc["path"] = str(Path(spec["checkpoint"]["dir"]) / "tiny_base")
            if int(os.environ.get("RANK", "0")) == 0:
                model.save_pretrained(base_desc["path"])
        model = _apply_lora(model, hp["lora"], hp["gradient_checkpointing"])
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        train_dataset=to_dataset(train_ex),
        eval_dataset=to_dataset(val_ex) if has_eval else None,
        data_collator=make_collator(tokenizer, hp["packing"], hp["attn_implementation"]),
        processing_class=tokenizer,
    )
    log.info(
        "training: %d examples, world size %d, per-device batch %d x accumulation %d = global %d, "
        "precision %s, deepspeed %s, packing %s, LoRA %s",
        len(train_ex), world_size, hp["per_device_batch_size"], accum, hp["global_batch_size"],
        precision, hp["deepspeed"] or "off", hp["packing"], hp["lora"]["enabled"],
    )
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - t0
    final_eval = trainer.evaluate() if has_eval else {}

    rows = metrics_rows(trainer.state.log_history)
    summary = {
        "world_size": world_size,
        "gradient_accumulation_steps": accum,
        "precision": precision,
        "global_steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "eval_loss": final_eval.get("eval_loss"),
        "train_seconds": train_seconds,
        "tokens_seen": trainer.state.num_input_tokens_seen,
        "resumed_from": resume_from,
        "data": {"train": train_report.as_dict(), "val": val_report.as_dict()},
    }
    _save_final(trainer, tokenizer, spec, hp, base_desc, ds_config, summary)
    if trainer.args.should_save:
        write_table(rows, spec["metrics"], TRAIN_METRICS)
        title = f"{base_desc.get('name', 'tiny Llama from scratch')}: {summary['global_steps']} steps"
        plot_loss_curve(rows, spec["loss_curve"], title)
        if not ckpt["keep"]:
            shutil.rmtree(ckpt["dir"], ignore_errors=True)  # 7B optimizer states are ~80 GB
        log.info("saved the optimizer to %s (train loss %.4f)", spec["model_dir"], result.training_loss)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Per-rank entry point used by torchrun: ``python -m bpo.train.trainer --spec FILE``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="job spec JSON written by bpo.launch")
    parser.add_argument("--resume-from", default=None)
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
        format=f"%(asctime)s rank{os.environ.get('RANK', '0')} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    spec = json.loads(Path(ns.spec).read_text())
    try:
        run_spec(spec, resume_from=ns.resume_from)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
