"""Training throughput: padding-free packing vs right padding, side by side in one run.

Same synthetic SFT data (user prompt + rewrite of 20-300 tokens, plus the template), same
tiny Llama, same seed and batch size; the real training path (``bpo.train.launch`` ->
HF Trainer) with only ``packing`` switched. Throughput = non-padding tokens per second
(the Trainer's token counter over wall time between log steps), median over the steps
after warm-up; runs alternated, the best run per mode kept (least disturbed on a shared
machine). Target: packing >= 1.5x.

The gain is bounded by the padding a padded batch carries, which grows with the batch size:
the run reports it per batch size next to the measured speed-up.

    python benchmarks/bench_train.py [--batches 4,8,16] [--steps 12] [--hidden 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import write_pairs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batches", default="4,8,16", help="examples per step (one rank, no accumulation)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--warmup-steps", type=int, default=2, help="logged steps left out of the median")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from bpo.settings import load_config
    from bpo.settings.train import CheckpointRuntime, TrainSettings
    from bpo.schemas import TRAIN_METRICS, read_frame
    from bpo.prompt_format import PLAIN, encode_prompt
    from bpo.train.data import encode_pairs, load_sft_pairs, prepare_tokenizer
    from bpo.train.tiny_model import build_tiny
    from bpo.train.launch import launch_training
    from bpo.train.spec import TrainSpec

    if args.threads:
        torch.set_num_threads(args.threads)
    tiny = {"vocab_size": 4096, "hidden_size": args.hidden, "intermediate_size": int(args.hidden * 2.75),
            "num_layers": args.layers, "num_heads": max(1, args.hidden // 64), "num_kv_heads": max(1, args.hidden // 64)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = write_pairs(tmp / "train.parquet", args.examples, seed=0)
        pairs = load_sft_pairs(train)
        model, tok = build_tiny([(p, o) for _, p, o in pairs], tiny, seed=0)
        prepare_tokenizer(tok)
        examples, _ = encode_pairs(tok, pairs, 1024, prompt_format=PLAIN)
        lengths = sorted(len(e["input_ids"]) for e in examples)
        targets = sorted(sum(1 for t in e["labels"] if t != -100) for e in examples)
        template_len = len(encode_prompt("", PLAIN, tok))  # BOS + the template around an empty prompt
        user = sorted(len(e["input_ids"]) - template_len for e in examples)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"model: tiny Llama, {n_params / 1e6:.2f} M parameters (hidden {args.hidden}, {args.layers} layers), "
              f"vocab {len(tok)}, attention sdpa_varlen (padded runs: sdpa), fp32, torch threads {torch.get_num_threads()}")
        print(f"data: {len(examples)} examples; tokens per example min/median/max "
              f"{lengths[0]}/{lengths[len(lengths) // 2]}/{lengths[-1]} (user prompt + rewrite "
              f"{user[0]}-{user[-1]} + EOS; template {template_len}); target tokens median {targets[len(targets) // 2]}")
        print(f"{args.steps} steps per run, {args.repeats} runs per mode and batch size (alternated)")

        summary = []
        for batch_size in [int(b) for b in args.batches.split(",")]:
            # Real tokens in padded batches of this size, in the Trainer's (seeded random) order.
            rng = random.Random(0)
            shuffled = [len(e["input_ids"]) for e in examples]
            rng.shuffle(shuffled)
            chunks = [shuffled[i : i + batch_size] for i in range(0, len(shuffled) - batch_size + 1, batch_size)]
            useful = sum(sum(c) for c in chunks) / sum(max(c) * len(c) for c in chunks)
            results: dict[str, list[float]] = {"packing": [], "padding": []}
            for rep in range(args.repeats):
                for mode in ("packing", "padding"):
                    root = tmp / f"b{batch_size}-{mode}{rep}"
                    config = load_config(overrides={"train": dict(
                        base_model=None, prompt_format="plain", tiny=tiny, max_length=1024, max_steps=args.steps, global_batch_size=batch_size,
                        per_device_batch_size=batch_size, learning_rate=1e-3, deepspeed=None,
                        packing=mode == "packing", seed=0, eval_steps=0,
                        checkpoint={"dir": str(root / "ckpt"), "save_steps": 0})})
                    spec = TrainSpec(
                        settings=TrainSettings.from_config(config), checkpoint=CheckpointRuntime.from_config(config),
                        train=str(train), val=None, model_dir=str(root / "model"), metrics=str(root / "m.parquet"),
                        loss_curve=str(root / "m.png"),
                    )
                    t0 = time.perf_counter()
                    launch_training(spec)
                    wall = time.perf_counter() - t0
                    m = read_frame(spec.metrics, TRAIN_METRICS).dropna(subset=["tokens_per_second"])
                    tps = m["tokens_per_second"].iloc[args.warmup_steps :].tolist()
                    results[mode].append(statistics.median(tps))
                    print(f"  batch {batch_size:2d} run {rep + 1} {mode:8s}: {results[mode][-1]:7.0f} tokens/s "
                          f"(median of {len(tps)} steps; wall {wall:.1f} s, final loss {m['loss'].iloc[-1]:.3f})")
            pack, pad = max(results["packing"]), max(results["padding"])  # best run: least disturbed
            summary.append((batch_size, useful, pack, pad))
        print("batch  padded-real-tokens  bound(1/real)  packing tok/s  padding tok/s  speed-up")
        for batch_size, useful, pack, pad in summary:
            print(f"{batch_size:5d}  {100 * useful:17.0f}%  {1 / useful:12.2f}x  {pack:13.0f}  {pad:13.0f}  {pack / pad:7.2f}x")
        b8 = [row for row in summary if row[0] == 8] or summary
        print(f"RESULT training tokens/s at batch {b8[0][0]}: packing {b8[0][2]:.0f}, padding {b8[0][3]:.0f}, "
              f"speed-up {b8[0][2] / b8[0][3]:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
