"""Helpers shared by the tests that build tiny models or call a loopback endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

KEY_ENV = "BPO_TEST_API_KEY"
# Small enough to build and generate with in well under a second on a CPU.
TINY_LLAMA = {
    "vocab_size": 300,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_layers": 1,
    "num_heads": 2,
    "num_kv_heads": 1,
}


def loopback_endpoint(srv, monkeypatch, *, max_concurrency: int = 4) -> dict:
    """An ``openai`` endpoint on the loopback server ``srv``, its API key set for the test."""
    monkeypatch.setenv(KEY_ENV, "sk-loopback")
    return {
        "backend": "openai",
        "base_url": srv.base_url,
        "api_key_env": KEY_ENV,
        "limits": {"max_concurrency": max_concurrency, "timeout_s": 10, "max_retries": 1},
    }


def save_tiny_model(path: str | Path, pairs: Iterable[tuple[str, str]]) -> str:
    """A randomly initialised tiny Llama, its tokenizer trained on ``pairs``, saved at ``path``
    like a hub model (no download). Returns the path as a string."""
    from bpo.train.tiny_model import build_tiny

    model, tokenizer = build_tiny(pairs, TINY_LLAMA, seed=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def save_tiny_optimizer(path: str | Path, pairs: Iterable[tuple[str, str]], *, init_std: float | None = None) -> str:
    """An optimizer folder as the trainer writes it, with random tiny weights (nothing trained) and
    a tokenizer trained on ``pairs``. ``init_std``: redraw the weight matrices with this spread
    (seed 0); the default init makes greedy decoding emit the same token for every prompt. Returns
    the path as a string."""
    import torch

    from bpo.prompt_format import TEMPLATE_VERSION
    from bpo.train.artifacts import TRAIN_CONFIG_NAME
    from bpo.train.tiny_model import build_tiny

    model, tokenizer = build_tiny(pairs, {"hidden_size": 32, "intermediate_size": 64}, seed=1)
    if init_std is not None:
        torch.manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, init_std)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (Path(path) / TRAIN_CONFIG_NAME).write_text(json.dumps({"bpo_template_version": TEMPLATE_VERSION}))
    return str(path)


def loopback_config(srv, monkeypatch, tmp_path, *, eval: dict | None = None, max_concurrency: int = 4) -> dict:
    """The validated default config with endpoint ``loop`` on the loopback server ``srv``, the LLM
    cache under ``tmp_path`` and ``eval`` merged into the eval section."""
    from bpo.settings import load_config

    llm = {
        "cache": str(tmp_path / "cache.sqlite"),
        "endpoints": {"loop": loopback_endpoint(srv, monkeypatch, max_concurrency=max_concurrency)},
    }
    return load_config(overrides={"llm": llm, "eval": eval or {}})
