"""Optimizer inference: batched (length-sorted, left-padded) vs one prompt at a time.

One at a time is what the original BPO inference code does (one ``generate`` call per
prompt). Both modes run the same library function (``bpo.inference.optimize_prompts``) on
the same prompts (user prompts of 20-300 tokens), the same small random Llama and the same
paper decoding (top-p 0.9, temperature 0.6, seeded), alternated in one run and the best of
``--repeats`` kept (the least disturbed run on a shared machine); only ``batch_size`` differs.
Model loading is excluded (warmed first). Target: >= 8x prompts/s.
Random weights rarely emit EOS, so every prompt decodes ``--max-new-tokens`` tokens in both
modes (equal work). Two model sizes: the embedded default's tiny optimizer and a wider one.

    python benchmarks/bench_inference.py [--prompts 64] [--batch-sizes 8,16,32] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import synthetic_pairs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-sizes", default="8,16,32")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="config eval.optimizer.max_new_tokens: 128")
    ap.add_argument("--models", default="64x2,256x4", help="hidden x layers of each model (64x2 = the default tiny)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import torch

    from bpo.inference import optimize_prompts
    from bpo.train.tiny_model import build_tiny

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = synthetic_pairs(args.prompts, seed=1)
    prompts = [r["prompt"] + " " + r["optimized_prompt"] for r in rows]  # 20-300 words of user prompt
    decode = dict(temperature=0.6, top_p=0.9, max_new_tokens=args.max_new_tokens, seed=0)
    sizes = [1] + [int(b) for b in args.batch_sizes.split(",")]
    summary = []
    for spec in args.models.split(","):
        hidden, layers = (int(x) for x in spec.split("x"))
        heads = max(1, hidden // 16)
        tiny = {"vocab_size": 4096, "hidden_size": hidden, "intermediate_size": int(hidden * 2.75),
                "num_layers": layers, "num_heads": heads, "num_kv_heads": max(1, heads // 2),
                "max_position_embeddings": 2048}
        with tempfile.TemporaryDirectory() as tmp:
            model, tok = build_tiny([(p, p) for p in prompts], tiny, seed=0)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            n_params = sum(p.numel() for p in model.parameters())
            lens = sorted(len(tok(p, add_special_tokens=False).input_ids) for p in prompts)
            optimize_prompts(tmp, prompts[:2], batch_size=2, **decode)  # load + warm up
            print(f"model: random tiny Llama, {n_params / 1e6:.2f} M parameters (hidden {hidden}, {layers} layers, "
                  f"{heads} heads / {max(1, heads // 2)} kv), fp32, torch threads {torch.get_num_threads()}")
            print(f"  {len(prompts)} prompts of {lens[0]}-{lens[-1]} tokens (median {lens[len(lens) // 2]}) + template; "
                  f"top-p 0.9, temperature 0.6, {args.max_new_tokens} new tokens")
            times: dict[int, list[float]] = {b: [] for b in sizes}
            for rep in range(args.repeats):
                for b in sizes:
                    t0 = time.perf_counter()
                    res = optimize_prompts(tmp, prompts, batch_size=b, **decode)
                    dt = time.perf_counter() - t0
                    times[b].append(dt)
                    out_tokens = sum(len(tok(r.raw or "", add_special_tokens=False).input_ids) for r in res)
                    print(f"  run {rep + 1} batch {b:3d}: {len(prompts) / dt:7.2f} prompts/s, "
                          f"~{out_tokens / dt:7.0f} output tokens/s ({dt:.1f} s)")
            one = min(times[1])
            for b in sizes[1:]:
                summary.append((f"{n_params / 1e6:.2f}M", b, len(prompts) / min(times[b]),
                                len(prompts) / one, one / min(times[b])))
    print("model   batch  batched prompts/s  one-at-a-time prompts/s  speed-up")
    for name, b, fast, slow, ratio in summary:
        print(f"{name:>6s}  {b:5d}  {fast:17.2f}  {slow:23.2f}  {ratio:7.1f}x")
    best = max(summary, key=lambda r: r[4])
    print(f"RESULT inference prompts/s: best batched/one-at-a-time {best[4]:.1f}x ({best[0]} model, batch {best[1]}); "
          f"target >= 8x")


if __name__ == "__main__":
    main()
