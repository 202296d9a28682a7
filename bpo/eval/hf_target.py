"""A local Hugging Face causal LM as a target: batched generation with ``transformers``.

Greedy at temperature 0 (the paper's target decoding), seeded sampling otherwise. A model
with a chat template gets the question as a user turn; a base model gets the plain text.
"""

from __future__ import annotations

import logging
from typing import Sequence

log = logging.getLogger(__name__)


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def generate_answers(
    model_name_or_path: str,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    system_prompt: str | None = None,
    dtype: str = "auto",
) -> list[tuple[str, str]]:
    """``(answer, status)`` per question; status "ok", or "truncated" when generation hit
    ``max_new_tokens`` before the end-of-sequence token. Identical questions run once."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    device = _device()
    model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype=torch_dtype).to(device).eval()

    def render(q: str) -> str:
        if tokenizer.chat_template:
            msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [{"role": "user", "content": q}]
            return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return f"{system_prompt}\n\n{q}" if system_prompt else q

    sampling = temperature > 0
    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else None,
        top_p=top_p if sampling else None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=model.generation_config.eos_token_id or tokenizer.eos_token_id,
    )
    eos_ids = gen_cfg.eos_token_id if isinstance(gen_cfg.eos_token_id, list) else [gen_cfg.eos_token_id]

    distinct = list(dict.fromkeys(questions))
    # Similar lengths per batch: less padding, and results do not depend on input order.
    order = sorted(range(len(distinct)), key=lambda i: (len(distinct[i]), distinct[i]))
    answers: dict[str, tuple[str, str]] = {}
    torch.manual_seed(seed)
    chat = bool(tokenizer.chat_template)
    for start in range(0, len(order), batch_size):
        batch = [distinct[i] for i in order[start : start + batch_size]]
        enc = tokenizer([render(q) for q in batch], return_tensors="pt", padding=True,
                        add_special_tokens=not chat).to(device)
        with torch.no_grad():
            out = model.generate(**enc, generation_config=gen_cfg)
        new = out[:, enc["input_ids"].shape[1]:]
        for q, ids in zip(batch, new):
            ids = ids.tolist()
            ended = any(t in eos_ids for t in ids)
            text = tokenizer.decode(ids, skip_special_tokens=True).strip()
            answers[q] = (text, "ok" if ended or len(ids) < max_new_tokens else "truncated")
        log.info("local target %s: %d/%d questions answered", model_name_or_path, min(start + batch_size, len(order)), len(order))
    return [answers[q] for q in questions]
