"""Training throughput through the real training path, two settings side by side in one run.

``--compare packing`` (default): padding-free packing vs right padding. ``--compare precision``:
bf16 autocast vs fp32. Same synthetic SFT data (user prompt + rewrite of 20-300 tokens, plus
the template), same model, seed and batch size; the real training path (``bpo.train.launch``
-> HF Trainer) with only that one setting switched. The model is a tiny Llama from scratch
(fp32), or with ``--base-model`` a real pretrained one (the demo's SmolLM2-135M-Instruct, its
chat template, ``precision: auto`` as in the demo unless compared). Throughput = non-padding
tokens per second (the Trainer's token counter over wall time between log steps), median over
the steps after warm-up; runs alternated, the best run per mode kept (least disturbed on a
shared machine). Targets: packing >= 1.5x (tiny), >= 1.3x (SmolLM2); bf16 >= 1.8x (SmolLM2).

The packing gain is bounded by the padding a padded batch carries, which grows with the batch
size: the run reports it per batch size next to the measured speed-up.

    python benchmarks/bench_train.py [--batches 4,8,16] [--steps 12] [--hidden 256] [--threads 1]
    python benchmarks/bench_train.py --base-model SmolLM2-135M-Instruct --batches 8 --steps 8 --threads 2
    python benchmarks/bench_train.py --base-model SmolLM2-135M-Instruct --compare precision \
        --batches 8 --steps 8 --threads 2
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
    ap.add_argument(
        "--base-model",
        default=None,
        help="a wheel-shipped base model name (built into .bpo-cache/models) or an HF folder; "
        "default: the tiny model from scratch",
    )
    ap.add_argument("--learning-rate", type=float, default=None, help="default 1e-3 (tiny), 1e-4 (base model)")
    ap.add_argument("--compare", choices=["packing", "precision"], default="packing")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from bpo.prompt_format import CHAT_TEMPLATE, PLAIN, encode_prompt
    from bpo.schemas import TRAIN_METRICS, read_frame
    from bpo.settings import load_config
    from bpo.settings.train import CheckpointRuntime, TrainSettings
    from bpo.train.data import encode_pairs, load_sft_pairs, prepare_tokenizer
    from bpo.train.launch import launch_training
    from bpo.train.spec import TrainSpec
    from bpo.train.tiny_model import build_tiny

    if args.threads:
        torch.set_num_threads(args.threads)
    tiny = {
        "vocab_size": 4096,
        "hidden_size": args.hidden,
        "intermediate_size": int(args.hidden * 2.75),
        "num_layers": args.layers,
        "num_heads": max(1, args.hidden // 64),
        "num_kv_heads": max(1, args.hidden // 64),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = write_pairs(tmp / "train.parquet", args.examples, seed=0)
        pairs = load_sft_pairs(train)
        if args.base_model:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from bpo.base_models import WHEEL_MODELS, materialize

            base = str(materialize(args.base_model) if args.base_model in WHEEL_MODELS else args.base_model)
            model, tok = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
            fmt, precision, lr = CHAT_TEMPLATE, "auto", args.learning_rate or 1e-4
            label = f"{Path(base).name} (pretrained), precision {'compared' if args.compare == 'precision' else 'auto'}"
        else:
            base = None
            model, tok = build_tiny([(p, o) for _, p, o in pairs], tiny, seed=0)
            fmt, precision, lr = PLAIN, "fp32", args.learning_rate or 1e-3
            label = f"tiny Llama (hidden {args.hidden}, {args.layers} layers), fp32"
        prepare_tokenizer(tok)
        examples, _ = encode_pairs(tok, pairs, 1024, prompt_format=fmt)
        lengths = sorted(len(e["input_ids"]) for e in examples)
        targets = sorted(sum(1 for t in e["labels"] if t != -100) for e in examples)
        template_len = len(encode_prompt("", fmt, tok))  # BOS + the template around an empty prompt
        user = sorted(len(e["input_ids"]) - template_len for e in examples)
        n_params = sum(p.numel() for p in model.parameters())
        del model  # each run loads its own copy through the training path
        print(
            f"model: {label}, {n_params / 1e6:.2f} M parameters, vocab {len(tok)}, "
            f"attention sdpa_varlen (padded runs: sdpa), torch threads {torch.get_num_threads()}"
        )
        print(
            f"data: {len(examples)} examples; tokens per example min/median/max "
            f"{lengths[0]}/{lengths[len(lengths) // 2]}/{lengths[-1]} (user prompt + rewrite "
            f"{user[0]}-{user[-1]} + EOS; template {template_len}); target tokens median {targets[len(targets) // 2]}"
        )
        print(f"{args.steps} steps per run, {args.repeats} runs per mode and batch size (alternated)")

        summary = []
        for batch_size in [int(b) for b in args.batches.split(",")]:
            # Real tokens in padded batches of this size, in the Trainer's (seeded random) order.
            rng = random.Random(0)
            shuffled = [len(e["input_ids"]) for e in examples]
            rng.shuffle(shuffled)
            chunks = [shuffled[i : i + batch_size] for i in range(0, len(shuffled) - batch_size + 1, batch_size)]
            useful = sum(sum(c) for c in chunks) / sum(max(c) * len(c) for c in chunks)
            modes = ("packing", "padding") if args.compare == "packing" else ("bf16", "fp32")
            results: dict[str, list[float]] = {mode: [] for mode in modes}
            for rep in range(args.repeats):
                for mode in modes:
                    root = tmp / f"b{batch_size}-{mode}{rep}"
                    config = load_config(
                        overrides={
                            "train": dict(
                                base_model=base,
                                prompt_format=fmt,
                                tiny=tiny,
                                max_length=1024,
                                max_steps=args.steps,
                                global_batch_size=batch_size,
                                per_device_batch_size=batch_size,
                                learning_rate=lr,
                                precision=mode if args.compare == "precision" else precision,
                                deepspeed=None,
                                packing=mode != "padding",
                                seed=0,
                                eval_steps=0,
                                checkpoint={"dir": str(root / "ckpt"), "save_steps": 0},
                            )
                        }
                    )
                    spec = TrainSpec(
                        settings=TrainSettings.from_config(config),
                        checkpoint=CheckpointRuntime.from_config(config),
                        train=str(train),
                        val=None,
                        model_dir=str(root / "model"),
                        metrics=str(root / "m.parquet"),
                        loss_curve=str(root / "m.png"),
                    )
                    t0 = time.perf_counter()
                    launch_training(spec)
                    wall = time.perf_counter() - t0
                    m = read_frame(spec.metrics, TRAIN_METRICS).dropna(subset=["tokens_per_second"])
                    tps = m["tokens_per_second"].iloc[args.warmup_steps :].tolist()
                    results[mode].append(statistics.median(tps))
                    print(
                        f"  batch {batch_size:2d} run {rep + 1} {mode:8s}: {results[mode][-1]:7.0f} tokens/s "
                        f"(median of {len(tps)} steps; wall {wall:.1f} s, final loss {m['loss'].iloc[-1]:.3f})"
                    )
            fast, slow = (max(results[m]) for m in modes)  # best run: least disturbed
            summary.append((batch_size, useful, fast, slow))
        a, b = modes
        if args.compare == "packing":
            print(f"batch  padded-real-tokens  bound(1/real)  {a} tok/s  {b} tok/s  speed-up")
            for batch_size, useful, fast, slow in summary:
                print(
                    f"{batch_size:5d}  {100 * useful:17.0f}%  {1 / useful:12.2f}x  {fast:13.0f}  {slow:13.0f}  "
                    f"{fast / slow:7.2f}x"
                )
        else:
            print(f"batch  {a} tok/s  {b} tok/s  speed-up")
            for batch_size, _, fast, slow in summary:
                print(f"{batch_size:5d}  {fast:10.0f}  {slow:10.0f}  {fast / slow:7.2f}x")
        target = {"packing": "1.3x (SmolLM2)" if args.base_model else "1.5x", "precision": "1.8x"}[args.compare]
        b8 = [row for row in summary if row[0] == 8] or summary
        print(
            f"RESULT training tokens/s at batch {b8[0][0]}: {a} {b8[0][2]:.0f}, {b} {b8[0][3]:.0f}, "
            f"speed-up {b8[0][2] / b8[0][3]:.2f}x (target >= {target})"
        )


if __name__ == "__main__":
    main()
