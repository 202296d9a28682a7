"""Rule refine_estimate: what round 1 of the refinement loop would pay in LLM calls, tokens and
USD, before the optimizer has written a single candidate. Nothing is sent.

The count comes from the pool (:func:`bpo.refine.candidates.select_pool`, the candidates rule's
draw) and the settings: the target answers each pool prompt as written and its ``k`` candidates
(:func:`bpo.refine.outcomes.answer_candidates`), and the judge compares the matches of
``refine.compare`` in both orders (:func:`bpo.refine.outcomes.judge_candidates`). The requests are
built with the stages' own builders and priced by the LLM client's ``estimate()``; where a text is
not known yet (a rewrite, an answer), a stand-in of the length stated in ``notes`` takes its place.
"""

from __future__ import annotations

import logging
from collections import Counter
from itertools import combinations
from pathlib import Path

from bpo.atomic import write_json
from bpo.eval.judge import judge_request
from bpo.eval.testsets import render_question
from bpo.llm import call_request, make_client
from bpo.llm.request import count_tokens
from bpo.refine.candidates import select_pool
from bpo.settings import LLMRuntime
from bpo.settings.refine import RefineEstimateSettings
from bpo.sft.core import is_val
from bpo.templates import load_judge

log = logging.getLogger(__name__)

ROUND = 1  # later rounds pay the same calls, on prompts the next model rewrites
_NUMBERS = ("requests", "unique", "cached", "calls", "prompt_tokens", "completion_tokens")


def expected_stops() -> tuple[type[BaseException], ...]:
    """Errors that end the estimate with a one-line reason: no pool (a ValueError naming the pairs
    file), an unreadable pairs file or judge template, an endpoint the LLM layer rejects."""
    from bpo.llm import LLMError

    return (ValueError, LLMError)


def _filler(tokens: int, tag: str) -> str:
    """A text of about ``tokens`` estimate tokens (``count_tokens``), distinct per ``tag`` so no two
    stand-in answers share a request key (and none can be a cached one)."""
    unit = " answer"
    per_unit = count_tokens(unit * 100) / 100
    return f"[{tag}]" + unit * max(0, round(tokens / per_unit))


def _stage(estimates: list[tuple[str, object]], model: str) -> dict:
    """One stage's figures: the client's estimates of its request groups, summed, and the groups."""
    out: dict = {"model": model, **dict.fromkeys(_NUMBERS, 0), "usd": 0.0, "unpriced_models": []}
    for _, est in estimates:
        for key in _NUMBERS:
            out[key] += getattr(est, key)
        if est.usd is None:
            out["usd"] = None
            out["unpriced_models"] = sorted(set(out["unpriced_models"]) | set(est.unpriced_models))
        elif out["usd"] is not None:
            out["usd"] = round(out["usd"] + est.usd, 6)
        out["backend"] = est.backend
    out["parts"] = {name: {k: getattr(est, k) for k in (*_NUMBERS, "usd")} for name, est in estimates}
    return out


def estimate_refine(
    settings: RefineEstimateSettings,
    answer_runtime: LLMRuntime,
    judge_runtime: LLMRuntime,
    *,
    pairs_path: str | Path,
    output: str | Path,
) -> dict:
    """Calls, cache hits, tokens and USD of round 1's candidate_answers and candidate_judgments,
    per stage, per model and in total, written as JSON to ``output``. Sends nothing."""
    cand, target, judge = settings.candidates, settings.answers.target, settings.judgments.judge
    vf = settings.sft_val_fraction
    pool, pool_stats = select_pool(
        pairs_path, (lambda pid: is_val(pid, settings.sft_seed, vf)) if vf else (lambda pid: False), cand
    )
    k, compare = cand.k, settings.judgments.compare
    template = load_judge(judge.template, judge.template_sha256)

    originals, rewrites, judged = [], [], []
    answer_tokens = None
    for i, p in enumerate(pool):
        question = render_question(p["instruction"], p["context"])
        original = call_request(target.call, question)
        originals.append(original)
        answer_tokens = original.estimated_completion_tokens()  # the answers' bound, as sent
        # a rewrite as long as the instruction, tagged: sampled rewrites differ even where two pool
        # prompts are the same text, and a rewrite's request is not known yet (never a cache hit)
        cands = [
            call_request(target.call, render_question(f"{p['instruction']} [{i}.{j}]", p["context"])) for j in range(k)
        ]
        rewrites += cands
        answers = [_filler(answer_tokens, f"{p['pair_id']}:{j}") for j in range(k)]
        if compare == "vs_original":
            matches = [(a, _filler(answer_tokens, f"{p['pair_id']}:original")) for a in answers]
        else:
            matches = list(combinations(answers, 2))
        for a, b in matches:  # both orders, with the original question, as judge_candidates
            judged += [judge_request(judge, template, question, a, b), judge_request(judge, template, question, b, a)]

    # no API key needed to count: estimating before exporting the key is the point
    answer_client = make_client(target.call.endpoint, answer_runtime, "refine", check_key=False)
    judge_client = make_client(judge.call.endpoint, judge_runtime, "refine_judge", check_key=False)
    stages = {
        "candidate_answers": _stage(
            [("originals", answer_client.estimate(originals)), ("candidates", answer_client.estimate(rewrites))],
            target.call.model,
        ),
        "candidate_judgments": _stage([("comparisons", judge_client.estimate(judged))], judge.call.model),
    }
    by_model: dict = {}
    for stage in stages.values():
        m = by_model.setdefault(stage["model"], {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "usd": 0.0})
        for key in ("calls", "prompt_tokens", "completion_tokens"):
            m[key] += stage[key]
        m["usd"] = None if m["usd"] is None or stage["usd"] is None else round(m["usd"] + stage["usd"], 6)
    total = dict(sum((Counter({k: s[k] for k in _NUMBERS}) for s in stages.values()), Counter()))
    usds = [s["usd"] for s in stages.values()]
    total["usd"] = None if None in usds else round(sum(usds), 6)  # a model without a price: unknown
    report = {
        "round": ROUND,
        "pool": pool_stats,
        "k": k,
        "compare": compare,
        "target": {"name": target.name, "model": target.call.model},
        "judge": {"model": judge.call.model, "template": judge.template},
        "prices": {m: dict(p) for m, p in settings.prices.items()},
        "stages": stages,
        "by_model": by_model,
        "total": total,
        "notes": _notes(settings, answer_tokens, k, compare, len(pool)),
    }
    write_json(report, output, indent=2, ensure_ascii=True, default=str)
    log.info("refine estimate (round %d): %s", ROUND, {"by_model": by_model, "total": total})
    return report


def _notes(settings: RefineEstimateSettings, answer_tokens: int | None, k: int, compare: str, pool: int) -> list[str]:
    judge_calls = 2 * k if compare == "vs_original" else k * (k - 1)
    vf = settings.sft_val_fraction
    return [
        f"Upper bound on calls: {pool} pool prompts x (1 original + {k} candidates) answers and {judge_calls} "
        f"judge calls per prompt ({compare}, both orders). A real round pays fewer when candidates are dropped "
        "(fallback detector, context altered, duplicates), a rewrite or answer repeats another (one call), an "
        "answer is empty or failed (not judged), or two answers are identical and eval.judge.identical_as_tie "
        "is on (a tie without a call).",
        "Cache: the original prompts' answers are counted as cached when they are (their requests are exact); "
        "candidates' answers and judge calls cannot be keyed before the candidates exist, so they are never "
        "counted as cached.",
        "A candidate rewrite's length is approximated by its prompt's instruction (real rewrites are usually "
        f"longer, at most refine.max_tokens = {settings.candidates.generation.max_new_tokens} tokens); "
        "the context is kept verbatim as the candidates rule requires.",
        f"Completion tokens are bounded by max_tokens (target: {answer_tokens} per answer; judge: its own), "
        "and each answer in a judge prompt is taken at the target's bound: tokens and USD are upper bounds.",
        (
            f"The SFT validation set is not built yet: pairs the SFT split's hash rule (sft.seed, "
            f"sft.val_fraction = {vf}) puts in val are left out of the pool, a superset of the real val set "
            "(the critique filter drops some), so the pool may differ by a few prompts, not in size while the "
            "eligible pairs outnumber refine.pool_size."
            if vf
            else "sft.source is a ready-made dataset (or val_fraction 0): no pair of the pairs is in its "
            "validation set, so none is excluded for it."
        ),
        f"Round {ROUND} only. A later round draws the same pool, so it pays the same again less the originals' "
        "answers (cached by then).",
        "Tokens are estimated with tiktoken when installed, else ~4 characters a token; USD from llm.prices.",
    ]
