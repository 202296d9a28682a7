"""Rule candidates: k sampled rewrites per prompt of the refinement pool.

The pool is a seeded draw of ``pool_size`` prompts from the pairs, never one of the SFT validation
set (the SFT run measures itself on those) nor a question of an active test set (the evaluation
must not see prompts the optimizer was refined on). The optimizer sees each prompt as it does at
evaluation (``with_context``: instruction + context); a rewrite must keep the context verbatim
(:func:`bpo.eval.optimize.split_context`), pass the fallback detector and differ from the other
candidates of its prompt, else it is recorded with its drop reason and not answered.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from bpo.eval.optimize import split_context
from bpo.eval.testsets import load_configured, render_question
from bpo.optimizer import optimize_prompts
from bpo.schemas import CANDIDATES, PAIRS, SFT, read_table, write_table
from bpo.settings.refine import CandidateSettings

log = logging.getLogger(__name__)

DUPLICATE = "duplicate of an earlier candidate"


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _rank(seed: int, pair_id: str) -> str:
    return hashlib.sha256(f"{seed}\n{pair_id}".encode()).hexdigest()


def draw_pool(pairs_path: str | Path, sft_val_path: str | Path, settings: CandidateSettings) -> tuple[list[dict], dict]:
    """The pool's pairs (seeded, stable under reordering of the file) and the exclusion counts."""
    val_ids = set(read_table(sft_val_path, SFT).column("pair_id").to_pylist())
    return select_pool(pairs_path, val_ids.__contains__, settings)


def select_pool(
    pairs_path: str | Path, in_val: Callable[[str], bool], settings: CandidateSettings
) -> tuple[list[dict], dict]:
    """:func:`draw_pool` with the SFT validation set as a test on the pair id (the cost estimate
    has no SFT split yet and passes the split's hash rule instead)."""
    pairs = read_table(pairs_path, PAIRS).to_pylist()
    test_questions = set()
    for ts in settings.excluded_testsets:
        for item in load_configured(ts).items:
            test_questions |= {_norm(item.instruction), _norm(item.question)}
    excluded: Counter = Counter()
    eligible = []
    for p in pairs:
        if in_val(p["pair_id"]):
            excluded["in the SFT validation set"] += 1
        elif p["history"]:  # candidates are sampled without the conversation: single-turn prompts only
            excluded["a multi-turn pair"] += 1
        elif _norm(p["instruction"]) in test_questions or _norm(render_question(p["instruction"], p["context"])) in (
            test_questions
        ):
            excluded["a test set question"] += 1
        else:
            eligible.append(p)
    eligible.sort(key=lambda p: _rank(settings.pool_seed, p["pair_id"]))
    pool = eligible[: settings.pool_size]
    if not pool:
        raise ValueError(f"{pairs_path}: no pair is left for the refinement pool (excluded: {dict(excluded)})")
    if len(pool) < settings.pool_size:
        log.warning("refinement pool: %d prompts, fewer than refine.pool_size %d", len(pool), settings.pool_size)
    return pool, {"pairs": len(pairs), "eligible": len(eligible), "pool": len(pool), "excluded": dict(excluded)}


def candidate_rows(pool: Sequence[dict], k: int, round_: int, rewrites: Sequence) -> list[dict]:
    """CANDIDATES rows: ``rewrites`` holds k results per pool prompt, in pool order."""
    rows = []
    for i, pair in enumerate(pool):
        seen: set[str] = set()
        for j in range(k):
            res = rewrites[i * k + j]
            reason, optimized, completion = res.fallback_reason, None, None
            if reason is None:
                completion = res.text.strip()
                optimized = completion
                if pair["context"].strip():
                    optimized, reason = split_context(completion, pair["context"])
            if reason is None and _norm(optimized) in seen:
                reason = DUPLICATE
            if reason is None:
                seen.add(_norm(optimized))
            rows.append(
                {
                    "prompt_id": pair["pair_id"],
                    "candidate_id": f"{pair['pair_id']}:{j}",
                    "round": round_,
                    "instruction": pair["instruction"],
                    "context": pair["context"],
                    "completion": completion if reason is None else None,
                    "optimized_instruction": optimized if reason is None else None,
                    "drop_reason": reason,
                    "raw": res.raw,
                }
            )
    return rows


def sample_candidates(
    pairs_path: str | Path,
    sft_val_path: str | Path,
    model: str,
    out_path: str | Path,
    settings: CandidateSettings,
    round_: int,
) -> dict:
    """Sample ``settings.k`` rewrites of every pool prompt with the optimizer at ``model`` (seed
    ``seed + round``); write CANDIDATES. Returns the counts (also logged)."""
    pool, pool_stats = draw_pool(pairs_path, sft_val_path, settings)
    k = settings.k
    prompts = [render_question(p["instruction"], p["context"]) for p in pool for _ in range(k)]
    generation = settings.generation.replace(seed=settings.generation.seed + round_)
    rewrites = optimize_prompts(model, prompts, generation)
    rows = candidate_rows(pool, k, round_, rewrites.results)
    dropped = Counter(r["drop_reason"] for r in rows if r["drop_reason"] is not None)
    meta = rewrites.engine.metadata() if rewrites.engine else {}
    write_table(rows, out_path, CANDIDATES, metadata={**meta, "round": str(round_)})
    stats = {**pool_stats, "candidates": len(rows), "kept": len(rows) - sum(dropped.values()), "dropped": dict(dropped)}
    log.info("round %d candidates from %s: %s", round_, model, stats)
    return stats
