"""``sdpa_varlen``: attention over packed sequences one sequence at a time.

Padding-free packing puts a batch in one row. FlashAttention's varlen kernel then attends
within each sequence; plain ``sdpa`` instead gets a block-diagonal mask over the whole row,
which computes (and throws away) every cross-sequence score: O(total_len^2) instead of
sum(len_i^2), and a mask that keeps sdpa off its fastest kernels. Without flash-attn (CPU,
or a GPU without the package) that extra work ate the whole gain of packing.

This implementation reads the sequence boundaries the flattening collator provides
(``cu_seq_lens_q``, as for FlashAttention) and runs causal sdpa on each sequence, with no
mask. Anything else (padded batches, generation with a KV cache) is plain ``sdpa``.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

NAME = "sdpa_varlen"


def sdpa_varlen_attention_forward(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs
):
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    n_rep = getattr(module, "num_key_value_groups", 1)
    if n_rep > 1:
        key, value = repeat_kv(key, n_rep), repeat_kv(value, n_rep)
    bounds = cu.tolist() if isinstance(cu, torch.Tensor) else list(cu)
    dtype = query.dtype
    keep = contextlib.nullcontext()
    if query.device.type == "cpu" and (dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu")):
        # CPU sdpa's backward runs 2.2x slower in bf16 than in fp32 (SmolLM2 under bf16 autocast:
        # 17% of a training step); the casts cost far less. Autocast would cast back to bf16.
        query, key, value = query.float(), key.float(), value.float()
        keep = torch.autocast("cpu", enabled=False)
    with keep:
        outs = [
            F.scaled_dot_product_attention(
                query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout, scale=scaling, is_causal=True
            )
            for s, e in zip(bounds[:-1], bounds[1:])
            if e > s
        ]
    out = torch.cat(outs, dim=2).to(dtype)  # (1, heads, total_len, head_dim)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Make ``attn_implementation="sdpa_varlen"`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, sdpa_varlen_attention_forward)
    # Padded batches and generation build the usual sdpa mask.
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def uses_seq_boundaries(attn_implementation: str | None) -> bool:
    """Whether the packing collator must pass sequence boundaries (cu_seq_lens) to attention."""
    name = attn_implementation or ""
    return name == NAME or "flash" in name
