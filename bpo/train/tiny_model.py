"""A tiny Llama-architecture model and byte-level BPE tokenizer built from scratch.

The embedded default has no reachable weights offline, so it trains this model
instead of a hub checkpoint: same architecture family as the paper's
Llama-2-7b-chat (RMSNorm, RoPE, SwiGLU, causal LM head), so every code path
(tokenization, packing, DeepSpeed, LoRA target modules, saving, generation) is
the one a real run takes. The tokenizer is trained on the SFT texts themselves
in well under a second.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from bpo.prompt_format import build_prompt
from bpo.settings.train import TinySettings

log = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE trained on ``texts``, wrapped as a transformers fast tokenizer.

    Byte-level means every input string is encodable (no unknown token). BOS is
    added by the post-processor, as Llama tokenizers do, so
    ``tokenizer(text).input_ids`` starts with BOS for both kinds of base model.
    """
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def _tiny(tiny: TinySettings | Mapping) -> TinySettings:
    # A hand-sized mapping (tests, benchmarks) takes the schema's defaults for the rest.
    return tiny if isinstance(tiny, TinySettings) else TinySettings.sized(tiny)


def tiny_llama_config(tokenizer, tiny: TinySettings | Mapping):
    """A small :class:`LlamaConfig` sized by the ``train.tiny`` config section."""
    from transformers import LlamaConfig

    cfg = _tiny(tiny).canonical()
    if cfg["hidden_size"] % cfg["num_heads"]:
        raise ValueError(
            f"config train.tiny: hidden_size {cfg['hidden_size']} is not divisible by num_heads {cfg['num_heads']}"
        )
    if cfg["num_heads"] % cfg["num_kv_heads"]:
        raise ValueError(
            f"config train.tiny: num_heads {cfg['num_heads']} is not divisible by num_kv_heads {cfg['num_kv_heads']}"
        )
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_layers"],
        num_attention_heads=cfg["num_heads"],
        num_key_value_heads=cfg["num_kv_heads"],
        max_position_embeddings=cfg["max_position_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,  # halves the parameters of a model this small
    )


def build_tiny(
    pairs: Iterable[tuple[str, str]], tiny: TinySettings | Mapping, seed: int, attn_implementation: str = "sdpa_varlen"
):
    """Tokenizer trained on the SFT pairs (rendered as the optimizer sees them) and a
    randomly initialised tiny Llama. Returns ``(model, tokenizer)``."""
    import torch
    from transformers import AutoModelForCausalLM

    tiny = _tiny(tiny)
    texts = []
    for prompt, optimized in pairs:
        texts.append(build_prompt(prompt))
        texts.append(optimized)
    if not texts:
        raise ValueError("tiny model: no SFT text to train the tokenizer on")
    tokenizer = train_tokenizer(texts, tiny.vocab_size)
    config = tiny_llama_config(tokenizer, tiny)
    from bpo.train.attention import register

    register()
    torch.manual_seed(seed)  # the random init is part of the result
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    log.info(
        "tiny Llama from scratch: %d parameters, vocab %d (tokenizer trained on %d texts)",
        sum(p.numel() for p in model.parameters()),
        len(tokenizer),
        len(texts),
    )
    return model, tokenizer
