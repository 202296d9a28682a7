"""Rewrite prompts with a trained optimizer: batched, length-sorted, left-padded generation.

:func:`optimize_prompts` is the library entry point (the evaluation stage calls it);
:func:`cli_optimize` backs ``bpo optimize``. Decoding follows the paper (top-p 0.9,
temperature 0.6) unless told otherwise. Where the optimizer's output is unusable (empty,
cut off at the token limit, degenerate repetition, an echo of the template) the original
prompt is returned with the reason, so no prompt is ever lost or silently replaced by junk.

Engines: ``hf`` (transformers ``generate``, CPU or GPU) and ``vllm`` (used by ``auto`` when
vLLM is importable and a GPU is present).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

# Reasons for returning the original prompt (the `fallback_reason` column).
EMPTY_INPUT = "empty_input"
EMPTY = "empty_output"
TRUNCATED = "truncated"  # hit max_new_tokens without EOS: a cut rewrite loses information
REPETITION = "repetition"
TEMPLATE_ECHO = "template_echo"


@dataclass(frozen=True)
class OptimizeResult:
    text: str  # the optimized prompt, or the original one when fallback_reason is set
    fallback_reason: str | None = None
    raw: str | None = None  # the optimizer's decoded output, kept for inspection


_RUN = re.compile(r"(.{1,30}?)\1{7,}", re.S)  # a 1-30 char unit repeated 8+ times in a row
_LONG_CHAR_RUN = 40  # "=====" rules and "-----" separators are text; 40 of one character are not


def degenerate_reason(text: str, hit_limit: bool) -> str | None:
    """Why an optimizer output should not be used, or None when it is fine."""
    from bpo.prompt_format import TEMPLATE

    stripped = text.strip()
    if not stripped:
        return EMPTY
    if hit_limit:
        return TRUNCATED
    for m in _RUN.finditer(stripped):
        if len(set(m.group(1))) > 1 or len(m.group(0)) >= _LONG_CHAR_RUN:
            return REPETITION
    words = stripped.split()
    if len(words) >= 12:
        trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        if len(set(trigrams)) / len(trigrams) < 0.5:
            return REPETITION
    markers = [line for line in TEMPLATE.splitlines() if line.startswith("[") and line.endswith("]")]
    if any(m in stripped for m in markers):
        return TEMPLATE_ECHO
    return None


_LOADED: dict = {}


def check_template_version(model_dir: str) -> None:
    """Refuse an optimizer trained on another version of the input template: it would see
    text it was never trained on and degrade silently."""
    from bpo.prompt_format import TEMPLATE_VERSION
    from bpo.train.trainer import TRAIN_CONFIG_NAME

    cfg_path = Path(model_dir) / TRAIN_CONFIG_NAME
    if cfg_path.exists():
        version = json.loads(cfg_path.read_text()).get("bpo_template_version")
        if version != TEMPLATE_VERSION:
            raise ValueError(
                f"{model_dir}: trained with prompt template v{version}, this code builds v{TEMPLATE_VERSION}; retrain"
            )
    elif Path(model_dir).exists():
        log.warning("%s has no %s: assuming it was trained on bpo.prompt_format's template", model_dir, TRAIN_CONFIG_NAME)


def load_optimizer(model_dir: str, device: str | None = None):
    """(model, tokenizer, device) for a trained optimizer folder or hub id; cached per process."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (str(model_dir), device)
    if key in _LOADED:
        return _LOADED[key]
    check_template_version(model_dir)
    dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # sdpa explicitly: training may have used sdpa_varlen, which only matters for packing.
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa").to(device).eval()
    except OSError as exc:
        raise FileNotFoundError(f"cannot load the optimizer from {model_dir!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation continues every row at the same position
    _LOADED[key] = (model, tokenizer, device)
    return _LOADED[key]


def generation_config(tokenizer, *, temperature, top_p, max_new_tokens, greedy):
    """Paper decoding: nucleus sampling only (top-k off: left unset, the library would apply
    top-k 50), or greedy."""
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        temperature=None if greedy else temperature,
        top_p=None if greedy else top_p,
        top_k=None if greedy else 0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def _generate_hf(model_dir, prompts, *, temperature, top_p, max_new_tokens, batch_size, seed, greedy):
    """[(decoded text, hit_limit)] in input order."""
    import torch
    from transformers import set_seed

    from bpo.train.data import encode_prompt

    model, tokenizer, device = load_optimizer(model_dir)
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    # Longest first: similar lengths share a batch (little padding) and an OOM shows at once.
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    gen_cfg = generation_config(tokenizer, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                greedy=greedy)
    set_seed(seed)
    out: list = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, padding=True, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.inference_mode():
            seqs = model.generate(**batch, generation_config=gen_cfg)
        new = seqs[:, batch["input_ids"].shape[1] :].tolist()
        for i, ids in zip(idx, new):
            if tokenizer.eos_token_id in ids:
                ids, hit_limit = ids[: ids.index(tokenizer.eos_token_id)], False
            else:
                hit_limit = len(ids) >= max_new_tokens
            out[i] = (tokenizer.decode(ids, skip_special_tokens=True), hit_limit)
    return out


def _generate_vllm(model_dir, prompts, *, temperature, top_p, max_new_tokens, seed, greedy):
    """vLLM engine: continuous batching does the batching and ordering itself."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    from bpo.train.data import encode_prompt

    key = (str(model_dir), "vllm")
    if key not in _LOADED:  # one engine per process: building it costs seconds to minutes
        check_template_version(model_dir)
        _LOADED[key] = (AutoTokenizer.from_pretrained(model_dir), LLM(model=str(model_dir), seed=seed))
    tokenizer, llm = _LOADED[key]
    params = SamplingParams(
        n=1,
        temperature=0.0 if greedy else temperature,
        top_p=1.0 if greedy else top_p,
        max_tokens=max_new_tokens,
        seed=seed,
    )
    requests = [{"prompt_token_ids": encode_prompt(tokenizer, p)} for p in prompts]
    outputs = llm.generate(requests, params)
    return [(o.outputs[0].text, o.outputs[0].finish_reason == "length") for o in outputs]


def _vllm_usable() -> bool:
    try:
        import torch
        import vllm  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def optimize_prompts(
    model_dir: str,
    prompts: Sequence[str],
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    greedy: bool = False,
    engine: str = "auto",
) -> list[OptimizeResult]:
    """Rewrite ``prompts`` with the optimizer in ``model_dir``; one result per prompt, in order.

    ``greedy`` decodes deterministically (then batched == one-at-a-time output); otherwise
    top-p sampling seeded with ``seed`` (reproducible for the same prompts, batch size and
    hardware). ``engine``: ``auto`` (vLLM if usable, else ``hf``), ``hf`` or ``vllm``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    prompts = list(prompts)
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i}: expected a str, got {type(p).__name__}")
    todo = [i for i, p in enumerate(prompts) if p.strip()]
    results: list[OptimizeResult | None] = [
        None if p.strip() else OptimizeResult(p, EMPTY_INPUT) for p in prompts
    ]
    if todo:
        if engine == "auto":
            engine = "vllm" if _vllm_usable() else "hf"
        kw = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, greedy=greedy)
        if engine == "hf":
            outs = _generate_hf(model_dir, [prompts[i] for i in todo], batch_size=batch_size, **kw)
        elif engine == "vllm":
            outs = _generate_vllm(model_dir, [prompts[i] for i in todo], **kw)
        else:
            raise ValueError(f"engine must be auto, hf or vllm, got {engine!r}")
        for i, (raw, hit_limit) in zip(todo, outs):
            reason = degenerate_reason(raw, hit_limit)
            results[i] = OptimizeResult(prompts[i] if reason else raw.strip(), reason, raw)
    n_fallback = sum(r.fallback_reason is not None for r in results)
    if n_fallback:
        reasons: dict[str, int] = {}
        for r in results:
            if r.fallback_reason:
                reasons[r.fallback_reason] = reasons.get(r.fallback_reason, 0) + 1
        log.warning("optimizer output unusable for %d of %d prompts (original kept): %s", n_fallback, len(prompts), reasons)
    return results  # type: ignore[return-value]


# --------------------------------------------------------------------------- CLI


def read_prompt_file(path: str, column: str, context_column: str | None):
    """Rows of a jsonl/json/parquet file as a DataFrame with the prompt (and context) columns
    checked. JSON may be a list of objects or ``{"data": [...]}``."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--input {path}: no such file")
    suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    if suffix in (".jsonl", ".jsonl.gz"):
        df = pd.read_json(p, lines=True, dtype=False)
    elif suffix == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise ValueError(f"--input {path}: a JSON object must hold exactly one list of records")
            data = lists[0]
        df = pd.DataFrame(data)
    elif suffix == ".parquet":
        df = pd.read_parquet(p)
    else:
        raise ValueError(f"--input {path}: unsupported format {suffix!r} (jsonl, json or parquet)")
    for col in [column] + ([context_column] if context_column else []):
        if col not in df.columns:
            raise ValueError(f"--input {path}: no column {col!r} (columns: {list(df.columns)})")
    for i, v in enumerate(df[column]):
        if not isinstance(v, str):
            raise ValueError(f"--input {path}: row {i}: {column!r} is {type(v).__name__}, not text")
    if context_column:
        for i, v in enumerate(df[context_column]):
            if not (v is None or isinstance(v, str) or (isinstance(v, float) and v != v)):
                raise ValueError(f"--input {path}: row {i}: {context_column!r} is {type(v).__name__}, not text or null")
    return df


def _first_column(df, names):
    return next((n for n in names if n in df.columns), None)


def cli_optimize(args) -> int:
    """``bpo optimize``: prompts on the command line (printed) or a file (Parquet out)."""
    from bpo.logging_setup import setup_logging

    setup_logging(None)
    decoding = dict(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, seed=args.seed, greedy=args.greedy,
    )
    if args.input:
        if args.prompts:
            print("bpo optimize: give prompts or --input, not both", file=sys.stderr)
            return 2
        if not args.output:
            print("bpo optimize: --input needs --output FILE.parquet", file=sys.stderr)
            return 2
        try:
            df = read_prompt_file(args.input, args.column, args.context_column)
        except (OSError, ValueError) as exc:
            print(f"bpo optimize: {exc}", file=sys.stderr)
            return 2
        n_fb = optimize_file(df, args, decoding)
        print(f"wrote {len(df)} rows to {args.output} ({n_fb} kept the original prompt)", file=sys.stderr)
        return 0
    if not args.prompts:
        print("bpo optimize: give one or more prompts, or --input FILE", file=sys.stderr)
        return 2
    results = optimize_prompts(args.model, args.prompts, **decoding)
    for prompt, r in zip(args.prompts, results):
        if len(args.prompts) > 1:
            print(f"### {prompt}")
        print(r.text)
        if r.fallback_reason:
            print(f"(optimizer output unusable: {r.fallback_reason}; original prompt kept)", file=sys.stderr)
    return 0


def optimize_file(df, args, decoding: dict) -> int:
    """Rewrite the rows of ``df`` and write the OPTIMIZED schema to ``args.output``; returns
    the number of fallbacks.

    Rows go through the evaluation stage's code (``bpo.eval.optimize.optimize_items``,
    ``with_context`` mode), so a file rewritten here matches what the workflow produces:
    the optimizer sees instruction + context and the context must come back verbatim.
    Ids come from an ``item_id``/``id``/``question_id``/``idx`` column (else the row number),
    ``testset`` is the input file's stem, the reference rewrite comes from a
    ``reference_optimized``/``optimized_prompt`` column when present.
    """
    from bpo.eval.optimize import optimize_items
    from bpo.eval.testsets import TestItem
    from bpo.schemas import OPTIMIZED, write_table

    id_col = _first_column(df, ["item_id", "id", "question_id", "idx"])
    ref_col = _first_column(df, ["reference_optimized", "optimized_prompt"])
    testset = Path(args.input).name.split(".")[0]
    items = []
    for i in range(len(df)):
        ctx = df[args.context_column].iloc[i] if args.context_column else ""
        ref = df[ref_col].iloc[i] if ref_col else None
        items.append(
            TestItem(
                item_id=str(df[id_col].iloc[i]) if id_col else str(i),
                instruction=df[args.column].iloc[i],
                context=ctx if isinstance(ctx, str) else "",
                reference_optimized=ref if isinstance(ref, str) else None,
            )
        )
    rewritten = optimize_items(items, args.model, context_mode="with_context", **decoding)
    rows = [
        {
            "item_id": it.item_id, "testset": testset, "instruction": it.instruction, "context": it.context,
            "optimized_instruction": opt, "fallback_reason": reason, "reference_optimized": it.reference_optimized,
        }
        for it, (opt, reason) in zip(items, rewritten)
    ]
    write_table(rows, args.output, OPTIMIZED)
    return sum(reason is not None for _, reason in rewritten)
