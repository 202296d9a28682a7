"""Engine choice, the record of the engine that ran, and the two engines besides ``lean``:
transformers ``generate`` on static batches (``hf-generate``) and vLLM (``vllm``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bpo.generation.model import LocalModel
from bpo.settings.generation import GenerationSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineRecord:
    """The engine that actually generated, with the version its output depends on."""

    engine: str  # lean | hf-generate | vllm (resolved, never auto)
    version: str  # e.g. bpo-0.1.0 (the lean loop is this project's code), transformers-5.23.0, vllm-0.33.0
    requested: str  # what the settings asked for (auto | lean | hf-generate | vllm)
    dtype: str | None = None  # the weights' dtype (lean, hf-generate); None: vLLM's own choice

    def __str__(self) -> str:
        return f"{self.engine} {self.version}"

    def metadata(self) -> dict[str, str]:
        """Parquet key-value metadata for an artifact written from this engine's text: the
        engine, the weights' dtype and every library version its numbers depend on."""
        from importlib.metadata import version

        meta = {"generation_engine": str(self), "generation_engine_requested": self.requested}
        if self.dtype is not None:
            meta["generation_dtype"] = self.dtype
        for pkg in ("torch", "transformers"):
            meta[f"generation_{pkg}"] = version(pkg)
        return meta


@dataclass(frozen=True)
class Generation:
    text: str  # decoded new tokens, special tokens skipped, not stripped
    hit_limit: bool  # stopped at max_new_tokens without an end-of-sequence token
    prompt_tokens: int
    completion_tokens: int  # new tokens, the end-of-sequence token included when one came


@dataclass(frozen=True)
class Generated:
    outputs: list[Generation]  # one per prompt, in input order
    engine: EngineRecord


def engine_version(engine: str) -> str:
    from importlib.metadata import version

    import bpo

    if engine == "lean":
        return f"bpo-{bpo.__version__}"
    if engine == "hf-generate":
        return f"transformers-{version('transformers')}"
    return f"vllm-{version('vllm')}"


def resolve_engine(requested: str, model: LocalModel) -> str:
    """The engine ``requested`` means for ``model``: ``auto`` is ``lean`` where the model has a
    plain full-attention KV cache (:func:`bpo.generation.lean.lean_supported`), else
    ``hf-generate``; it never picks vLLM (a different environment whose sampling differs)."""
    from bpo.generation.lean import lean_supported

    if requested == "auto":
        return "lean" if lean_supported(model.hf()) else "hf-generate"
    if requested == "lean" and not lean_supported(model.hf()):
        raise ValueError(
            f"engine lean: {model.name} has no plain full-attention KV cache "
            "(sliding window, linear attention or KV sharing); use hf-generate or auto"
        )
    if requested == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise ValueError("engine vllm: vLLM is not installed here (its environment: envs/vllm.yaml)") from exc
    return requested


def _split_at_eos(ids: list[int], eos_ids, max_new_tokens: int) -> tuple[list[int], bool, int]:
    """(ids before the first EOS, hit_limit, tokens generated incl. that EOS)."""
    for k, t in enumerate(ids):
        if t in eos_ids:
            return ids[:k], False, k + 1
    return ids, len(ids) >= max_new_tokens, len(ids)


def generation_config(model: LocalModel, settings: GenerationSettings):
    """Paper decoding: nucleus sampling only (top-k off: unset, the library would apply top-k
    50), or greedy."""
    from transformers import GenerationConfig

    greedy = settings.greedy
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=not greedy,
        temperature=None if greedy else settings.temperature,
        top_p=None if greedy else settings.top_p,
        top_k=None if greedy else 0,
        pad_token_id=model.pad_id,
        eos_token_id=model.eos_ids,
        bos_token_id=model.tokenizer.bos_token_id,
    )


def _hf_generate(model: LocalModel, encoded: list[list[int]], settings: GenerationSettings) -> list[tuple]:
    """transformers ``generate`` on static length-sorted, left-padded batches: [(new ids, hit
    limit, completion tokens)] in input order. With ``batch_size=1`` this is what the original
    BPO code does (one ``generate`` call per prompt)."""
    import torch
    from transformers import set_seed

    hf, tok, eos_ids = model.hf(), model.tokenizer, model.eos_ids
    # Longest first: similar lengths share a batch (little padding) and an OOM shows at once.
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    gen_cfg = generation_config(model, settings)
    set_seed(settings.seed)
    out: list = [None] * len(encoded)
    for start in range(0, len(order), settings.batch_size):
        idx = order[start : start + settings.batch_size]
        batch = tok.pad({"input_ids": [encoded[i] for i in idx]}, padding=True, return_tensors="pt")
        batch = {k: v.to(hf.device) for k, v in batch.items()}
        with torch.inference_mode():
            seqs = hf.generate(**batch, generation_config=gen_cfg)
        for i, ids in zip(idx, seqs[:, batch["input_ids"].shape[1] :].tolist()):
            out[i] = _split_at_eos(ids, eos_ids, settings.max_new_tokens)
    return out


def _lean(model: LocalModel, encoded: list[list[int]], settings: GenerationSettings) -> list[tuple]:
    import torch

    from bpo.generation.lean import decode

    kw = {f: getattr(settings, f) for f in ("temperature", "top_p", "max_new_tokens", "batch_size", "seed", "greedy")}
    with torch.inference_mode():
        outs = decode(model.hf(), encoded, pad_id=model.pad_id, eos_ids=set(model.eos_ids), **kw)
    return [(ids, hit_limit, len(ids) + (not hit_limit)) for ids, hit_limit in outs]


def _vllm(model: LocalModel, encoded: list[list[int]], settings: GenerationSettings) -> list[Generation]:
    """vLLM does the batching and ordering itself (continuous batching)."""
    from vllm import SamplingParams

    greedy = settings.greedy
    params = SamplingParams(
        n=1,
        temperature=0.0 if greedy else settings.temperature,
        top_p=1.0 if greedy else settings.top_p,
        max_tokens=settings.max_new_tokens,
        seed=settings.seed,
        stop_token_ids=model.eos_ids,
    )
    results = model.vllm(settings.seed).generate([{"prompt_token_ids": ids} for ids in encoded], params)
    return [
        Generation(
            text=r.outputs[0].text,
            hit_limit=r.outputs[0].finish_reason == "length",
            prompt_tokens=len(ids),
            completion_tokens=len(r.outputs[0].token_ids),
        )
        for ids, r in zip(encoded, results)
    ]


def generate(model: LocalModel, prompts: Sequence[Sequence[int]], settings: GenerationSettings) -> Generated:
    """Continue each prompt (token ids, special tokens included) with ``settings``' engine and
    decoding. Greedy output is deterministic; sampling is seeded (reproducible for the same
    prompts, batch size, engine and hardware)."""
    encoded = [list(p) for p in prompts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {i}: no tokens")
    engine = resolve_engine(settings.engine, model)
    record = EngineRecord(engine=engine, version=engine_version(engine), requested=settings.engine)
    if not encoded:
        return Generated([], record)
    if engine == "vllm":
        return Generated(_vllm(model, encoded, settings), record)
    run = _lean if engine == "lean" else _hf_generate
    outputs = [
        Generation(
            text=model.tokenizer.decode(ids, skip_special_tokens=True),
            hit_limit=hit_limit,
            prompt_tokens=len(prompt),
            completion_tokens=n_new,
        )
        for prompt, (ids, hit_limit, n_new) in zip(encoded, run(model, encoded, settings))
    ]
    record = dataclasses.replace(record, dtype=model.resolved_dtype)
    log.debug("%s (%s) generated %d texts", record, record.dtype, len(outputs))
    return Generated(outputs, record)


def generate_chat(
    model: LocalModel, conversations: Sequence[Sequence[Mapping[str, str]]], settings: GenerationSettings
) -> Generated:
    """The assistant's reply to each conversation (``[{"role", "content"}, ...]`` ending in a
    user turn), rendered by :meth:`LocalModel.encode_chat`."""
    return generate(model, [model.encode_chat(c) for c in conversations], settings)
