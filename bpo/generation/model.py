"""A local model loaded once per process: its tokenizer at once, its transformers weights or its
vLLM engine when an engine first needs them."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")

# dtype auto on a CPU with native bf16: models from this size run in bf16. SmolLM2-135M decodes
# 1.45x faster in the lean loop at batch 32 (benchmarks/bench_inference.py); a model of a few
# million parameters is not compute-bound, and the tiny from-scratch optimizer stays fp32, as
# it does in training (bpo.train.run.resolve_precision).
CPU_BF16_MIN_PARAMS = 50_000_000

_LOADED: dict[tuple, LocalModel] = {}

# What the hub accepts as a repo id: "name" or "namespace/name", no "..", "--" or leading dot.
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
# Files a transformers tokenizer is loaded from (fast, sentencepiece, BPE/WordPiece vocabularies, tiktoken).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def is_hub_id(value: str) -> bool:
    """Whether ``value`` can be a hub repo id (a path like ``results/models/x`` or ``./x`` cannot)."""
    return bool(_HUB_ID.match(value)) and ".." not in value and "--" not in value


def model_folder_problem(value: str, *, tokenizer: bool = True) -> str | None:
    """Why a model given as a local folder or hub id cannot be loaded, in one line, or None (a
    hub id is not checked: that needs the network). The one check behind ``bpo optimize --model``,
    ``bpo serve --optimizer`` and :func:`load_model`, so all say the same."""
    path = Path(value).expanduser()
    if not path.exists():
        return None if is_hub_id(value) else f"{value} does not exist (and is not a hub id: those read namespace/name)"
    if not path.is_dir():
        return f"{value} is not a folder"
    if tokenizer and not any((path / name).is_file() for name in TOKENIZER_FILES) and not any(path.glob("*.tiktoken")):
        return f"no tokenizer files in {value} (looked for {', '.join(TOKENIZER_FILES)}, *.tiktoken)"
    return None


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(requested: str, device: str, n_params: int | None = None) -> tuple[str, str]:
    """``(dtype, why)`` of a local model's weights. ``auto``: bfloat16 on a GPU that supports it,
    and on a CPU with native bf16 (AVX512-BF16/AMX) for a model of at least
    :data:`CPU_BF16_MIN_PARAMS` parameters (``n_params``; None: not known yet); else float32."""
    import torch

    from bpo.hardware import cpu_supports_bf16

    if requested != "auto":
        return requested, "configured"
    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "auto: GPU supports bf16"
        return "float32", "auto: GPU without bf16"
    if not cpu_supports_bf16():
        return "float32", "auto: CPU without native bf16 (avx512_bf16/amx)"
    if n_params is None or n_params < CPU_BF16_MIN_PARAMS:
        return "float32", f"auto: model under {CPU_BF16_MIN_PARAMS // 1_000_000}M parameters on CPU"
    return "bfloat16", "auto: CPU with native bf16"


@dataclass
class LocalModel:
    """A causal LM folder or hub id with its tokenizer (left padding, a pad token set)."""

    name: str
    tokenizer: Any
    device: str
    dtype: str  # as asked; "auto": see resolve_dtype
    resolved_dtype: str | None = None  # the weights' dtype once loaded (transformers)
    _hf: Any = field(default=None, repr=False)
    _vllm: dict = field(default_factory=dict, repr=False)

    def hf(self):
        """The transformers model (loaded on first use)."""
        if self._hf is None:
            import torch
            from transformers import AutoModelForCausalLM

            # CPU auto depends on the model's size: load in float32, then cast if it is large.
            cpu_auto = self.dtype == "auto" and not self.device.startswith("cuda")
            dtype, why = ("float32", "") if cpu_auto else resolve_dtype(self.dtype, self.device)
            try:
                # sdpa explicitly: training may have used sdpa_varlen, which only matters for packing
                model = AutoModelForCausalLM.from_pretrained(
                    self.name, dtype=getattr(torch, dtype), attn_implementation="sdpa"
                )
            except OSError as exc:
                raise FileNotFoundError(f"cannot load the model from {self.name!r}: {exc}") from exc
            if cpu_auto:
                dtype, why = resolve_dtype("auto", self.device, sum(p.numel() for p in model.parameters()))
                model = model.to(getattr(torch, dtype))
            log.info("%s: weights in %s (%s) on %s", self.name, dtype, why, self.device)
            self.resolved_dtype = dtype
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
        problem = model_folder_problem(str(model))
        if problem:
            raise FileNotFoundError(problem)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model))
        except OSError as exc:
            raise FileNotFoundError(f"cannot load the model from {str(model)!r}: {exc}") from exc
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        tokenizer.padding_side = "left"  # generation continues every row at the same position
        _LOADED[key] = LocalModel(name=str(model), tokenizer=tokenizer, device=device, dtype=dtype)
    return _LOADED[key]
