"""A local model loaded once per process: its tokenizer at once, its transformers weights or its
vLLM engine when an engine first needs them."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")

_LOADED: dict[tuple, "LocalModel"] = {}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class LocalModel:
    """A causal LM folder or hub id with its tokenizer (left padding, a pad token set)."""

    name: str
    tokenizer: Any
    device: str
    dtype: str  # as asked; "auto" = bf16 on a GPU that supports it, else float32
    _hf: Any = field(default=None, repr=False)
    _vllm: dict = field(default_factory=dict, repr=False)

    def hf(self):
        """The transformers model (loaded on first use)."""
        if self._hf is None:
            import torch
            from transformers import AutoModelForCausalLM

            if self.dtype == "auto":
                cuda_bf16 = self.device.startswith("cuda") and torch.cuda.is_bf16_supported()
                dtype = torch.bfloat16 if cuda_bf16 else torch.float32
            else:
                dtype = getattr(torch, self.dtype)
            try:
                # sdpa explicitly: training may have used sdpa_varlen, which only matters for packing
                model = AutoModelForCausalLM.from_pretrained(self.name, dtype=dtype, attn_implementation="sdpa")
            except OSError as exc:
                raise FileNotFoundError(f"cannot load the model from {self.name!r}: {exc}") from exc
            self._hf = model.to(self.device).eval()
        return self._hf

    def vllm(self, seed: int):
        """A vLLM engine for this model (built on first use per seed: seconds to minutes)."""
        if seed not in self._vllm:
            from vllm import LLM  # only here: vLLM lives in its own environment (envs/vllm.yaml)

            kw = {} if self.dtype == "auto" else {"dtype": self.dtype}
            self._vllm[seed] = LLM(model=self.name, seed=seed, **kw)
        return self._vllm[seed]

    @property
    def eos_ids(self) -> list[int]:
        """Tokens that end a generation: the tokenizer's EOS and the model's generation config's
        (chat models often stop at an end-of-turn token)."""
        ids = [self.tokenizer.eos_token_id]
        if self._hf is not None:
            extra = self._hf.generation_config.eos_token_id
        else:  # vLLM: the weights are not loaded here
            from transformers import GenerationConfig

            try:
                extra = GenerationConfig.from_pretrained(self.name).eos_token_id
            except OSError:  # no generation_config.json
                extra = None
        ids += extra if isinstance(extra, list) else [extra]
        return list(dict.fromkeys(i for i in ids if i is not None))

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def encode_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a conversation ending in a user turn, ready for the reply: the
        tokenizer's chat template where it has one (its special tokens come from the template),
        else the turns' texts joined by a blank line, as plain text."""
        tok = self.tokenizer
        if tok.chat_template:
            text = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
            return tok(text, add_special_tokens=False)["input_ids"]
        return tok("\n\n".join(m["content"] for m in messages))["input_ids"]


def load_model(model: str, *, dtype: str = "auto", device: str | None = None) -> LocalModel:
    """The :class:`LocalModel` for ``model`` (a folder or hub id); cached per process."""
    from transformers import AutoTokenizer

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    device = device or default_device()
    key = (str(model), dtype, device)
    if key not in _LOADED:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model))
        except OSError as exc:
            raise FileNotFoundError(f"cannot load the model from {str(model)!r}: {exc}") from exc
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        tokenizer.padding_side = "left"  # generation continues every row at the same position
        _LOADED[key] = LocalModel(name=str(model), tokenizer=tokenizer, device=device, dtype=dtype)
    return _LOADED[key]
