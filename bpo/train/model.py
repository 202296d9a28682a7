"""The model a run trains: the tiny from-scratch Llama or a pretrained base, optionally with LoRA.

The tokenizer (and the tiny model, built at once) come first; a pretrained model is loaded by
:func:`load_pretrained` only once TrainingArguments exist, so ZeRO-3 partitions it while loading
(zero.Init) instead of every rank holding a full copy.
"""

from __future__ import annotations

import logging

from bpo.settings.train import LoraSettings, TrainSettings

log = logging.getLogger(__name__)


def load_tokenizer_and_tiny(settings: TrainSettings, pairs: list[tuple[str, str, str]]):
    """(tokenizer, tiny model or None, description of the base for ``bpo_train_config.json``)."""
    from transformers import AutoTokenizer

    from bpo.train.attention import register

    register()
    if settings.base_model:
        name = settings.base_model
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except OSError as exc:
            raise RuntimeError(
                f"config train.base_model {name!r}: cannot load it ({exc}). Offline, point it to a "
                "local folder or set it to null for the tiny from-scratch model."
            ) from exc
        return tokenizer, None, {"kind": "pretrained", "name": name, "path": name}
    from bpo.train.tiny_model import build_tiny

    # Built at once (tiny: no partitioning needed), so a LoRA + ZeRO-3 run can save its init.
    model, tokenizer = build_tiny(
        [(p, o) for _, p, o, *_ in pairs], settings.tiny, settings.seed, settings.attn_implementation
    )
    return tokenizer, model, {"kind": "tiny_from_scratch", "tiny": settings.tiny.canonical()}


def load_pretrained(settings: TrainSettings, dtype):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            settings.base_model, dtype=dtype, attn_implementation=settings.attn_implementation
        )
    except (OSError, ImportError, ValueError) as exc:
        raise RuntimeError(f"config train.base_model {settings.base_model!r}: cannot load the model: {exc}") from exc


def apply_lora(model, lora: LoraSettings, gradient_checkpointing: bool):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    if gradient_checkpointing:
        # Frozen embeddings give checkpointed blocks inputs without grad; this keeps the graph.
        model.enable_input_require_grads()
    model = get_peft_model(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA r=%d on %s: %d of %d parameters trainable", lora.r, list(lora.target_modules), trainable, total)
    return model
