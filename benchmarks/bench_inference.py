"""Optimizer inference: batched (continuous batching, lean decoding loop) vs one prompt at a time.

One at a time is what the original BPO inference code does: one transformers ``generate``
call per prompt (engine ``hf-generate``, batch size 1). Batched is what ``auto`` picks for
these models (engine ``lean``, :mod:`bpo.generation.lean`: our decoding loop over the model's forward with a
preallocated KV cache, finished rows dropped and their slots refilled). For reference the
previous implementation, ``generate`` on static length-sorted left-padded batches, runs at
the largest batch size too. All modes go through ``bpo.optimizer.optimize_prompts`` on the
same prompts (user prompts of 20-300 tokens), the same small random Llama and the same paper
decoding (top-p 0.9, temperature 0.6, no top-k, seeded); they are alternated in one run and
the best of ``--repeats`` is kept (the least disturbed run on a shared machine). Model loading
is excluded (warmed first). Target: >= 8x prompts/s batched vs one at a time.

Random weights rarely emit EOS, so by default every prompt decodes ``--max-new-tokens``
tokens in every mode (equal work). ``--eos-rate R`` instead points the EOS embedding along
the model's mean final hidden state so that EOS is sampled at roughly rate R per step, as a
trained optimizer ends its rewrites at different lengths; every mode then stops at EOS.

Weights in the dtype ``auto`` picks (:func:`bpo.generation.model.resolve_dtype`), the same in every
mode: float32 for the tiny models, bfloat16 for SmolLM2 on a CPU with native bf16.

``--model FOLDER`` benchmarks a real optimizer instead (e.g. the demo's, fine-tuned from
SmolLM2-135M-Instruct: ``results/demo/models/optimizer``), in the prompt format its folder
records; a trained model ends its rewrites at EOS by itself, so output tokens/s are compared.

    python benchmarks/bench_inference.py [--prompts 64] [--batch-sizes 8,16,32] [--max-new-tokens 128]
        [--models 64x2,256x4 | --model FOLDER] [--repeats 3] [--threads N] [--eos-rate 0.02]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import synthetic_pairs  # noqa: E402


def make_eos_likely(model, tok, prompts, rate: float, temperature: float) -> None:
    """Set the (tied) EOS embedding to alpha * m / |m|^2, m the mean final hidden state, so its
    logit is about alpha where hidden states resemble m; alpha makes EOS's probability about
    ``rate`` against a near-uniform rest. EOS never occurs in the inputs, so only the output
    head changes."""
    import torch

    from bpo.prompt_format import PLAIN, encode_prompt

    with torch.no_grad():
        hidden = [model.model(torch.tensor([encode_prompt(p, PLAIN, tok)])).last_hidden_state[0] for p in prompts[:8]]
        m = torch.cat(hidden).mean(0)
        vocab = model.config.vocab_size
        alpha = temperature * math.log(rate * (vocab - 1) / (1 - rate))
        model.get_output_embeddings().weight[tok.eos_token_id] = alpha * m / m.dot(m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-sizes", default="8,16,32")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="config eval.optimizers.trained.max_tokens: 128")
    ap.add_argument("--models", default="64x2,256x4", help="hidden x layers of each model (64x2 = the default tiny)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--eos-rate", type=float, default=0.0, help="make EOS likely at about this rate per step")
    ap.add_argument("--model", default=None, help="a trained optimizer folder instead of the random tiny models")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import torch

    from bpo.generation import GenerationSettings
    from bpo.optimizer import optimize_prompts
    from bpo.optimizer.rewrite import load_optimizer

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = synthetic_pairs(args.prompts, seed=1)
    prompts = [r["prompt"] + " " + r["optimized_prompt"] for r in rows]  # 20-300 words of user prompt
    decode = GenerationSettings(
        engine="auto",
        temperature=0.6,
        top_p=0.9,
        max_new_tokens=args.max_new_tokens,
        batch_size=1,
        seed=0,
        greedy=False,
    )
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    # (label, engine, batch size); the first is the baseline
    modes = [
        ("one at a time (generate)", "hf-generate", 1),
        (f"generate, static batches of {max(sizes)}", "hf-generate", max(sizes)),
    ]
    modes += [(f"lean loop, batch {b}", "lean", b) for b in sizes]
    summary = []
    real = args.model is not None
    for name, folder, tok, description in _models(args, prompts, decode):
        lens = sorted(len(tok(p, add_special_tokens=False).input_ids) for p in prompts)
        for engine in ("hf-generate", "lean"):  # load + warm up both code paths
            optimize_prompts(folder, prompts[:2], decode.replace(batch_size=2, engine=engine))
        print(
            f"model: {description}, weights {load_optimizer(folder).resolved_dtype} (dtype auto), "
            f"torch threads {torch.get_num_threads()}"
        )
        print(
            f"  {len(prompts)} prompts of {lens[0]}-{lens[-1]} tokens (median {lens[len(lens) // 2]}) "
            f"+ template; top-p 0.9, temperature 0.6, up to {args.max_new_tokens} new tokens"
            + (f", EOS made likely (rate {args.eos_rate})" if args.eos_rate else "")
        )
        times: dict[str, list[float]] = {label: [] for label, _, _ in modes}
        work: dict[str, list[int]] = {label: [] for label, _, _ in modes}  # prompts or output tokens
        for rep in range(args.repeats):
            for label, engine, b in modes:
                t0 = time.perf_counter()
                res = optimize_prompts(folder, prompts, decode.replace(batch_size=b, engine=engine)).results
                dt = time.perf_counter() - t0
                out_tokens = sum(len(tok(r.raw or "", add_special_tokens=False).input_ids) for r in res)
                times[label].append(dt)
                work[label].append(out_tokens if args.eos_rate or real else len(prompts))
                print(
                    f"  run {rep + 1} {label:34s}: {len(prompts) / dt:7.2f} prompts/s, "
                    f"~{out_tokens / dt:7.0f} output tokens/s ({dt:.1f} s, mean output "
                    f"{out_tokens / len(res):.0f} tokens)"
                )
        # With EOS, sampled output lengths differ between modes: compare output tokens/s.
        rate = {label: max(work[label][i] / t for i, t in enumerate(times[label])) for label in times}
        for label, _, _ in modes[1:]:
            summary.append((name, label, rate[label], rate[modes[0][0]]))
    unit = "output tokens/s" if args.eos_rate or real else "prompts/s"
    print(f"{'model':>6s}  {'mode':34s}  {unit:>15s}  {'one at a time':>13s}  speed-up")
    for name, label, fast, slow in summary:
        print(f"{name:>6s}  {label:34s}  {fast:15.1f}  {slow:13.1f}  {fast / slow:7.1f}x")
    best = max((r for r in summary if r[1].startswith("lean")), key=lambda r: r[2] / r[3])
    print(
        f"RESULT inference {unit}: best batched/one-at-a-time {best[2] / best[3]:.1f}x ({best[0]} model, {best[1]}); "
        f"target >= {6 if real else 8}x"
    )


def _models(args, prompts, decode):
    """``(name, folder, tokenizer, description)`` per benchmarked model; a random model's
    temporary folder is removed when the next one is asked for."""
    if args.model:
        from transformers import AutoConfig, AutoTokenizer

        from bpo.prompt_format import read_format_record

        cfg = AutoConfig.from_pretrained(args.model)
        yield (
            Path(args.model).name,
            args.model,
            AutoTokenizer.from_pretrained(args.model),
            f"{args.model} ({cfg.model_type}, hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers), "
            f"prompt format {read_format_record(args.model) or 'plain'}",
        )
        return
    from bpo.train.tiny_model import build_tiny

    for spec in args.models.split(","):
        hidden, layers = (int(x) for x in spec.split("x"))
        heads = max(1, hidden // 16)
        tiny = {
            "vocab_size": 4096,
            "hidden_size": hidden,
            "intermediate_size": int(hidden * 2.75),
            "num_layers": layers,
            "num_heads": heads,
            "num_kv_heads": max(1, heads // 2),
            "max_position_embeddings": 2048,
        }
        with tempfile.TemporaryDirectory() as tmp:
            model, tok = build_tiny([(p, p) for p in prompts], tiny, seed=0)
            if args.eos_rate:
                make_eos_likely(model, tok, prompts, args.eos_rate, decode.temperature)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            n_params = sum(p.numel() for p in model.parameters())
            yield (
                f"{n_params / 1e6:.2f}M",
                tmp,
                tok,
                f"random tiny Llama, {n_params / 1e6:.2f} M parameters (hidden {hidden}, {layers} layers, "
                f"{heads} heads / {max(1, heads // 2)} kv)",
            )


if __name__ == "__main__":
    main()
