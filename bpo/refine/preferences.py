"""Rule preferences: chosen/rejected rewrite pairs from the judged outcomes, and their statistics.

A candidate's score is its wins minus its losses over its comparisons (vs_original: one, against
the original prompt's answer; round_robin: one per other candidate). Ties, order disagreements
(the MT-bench rule makes them ties) and invalid comparisons add nothing and are counted. A pair
is two candidates of one prompt whose scores differ by at least ``margin``; at most
``pairs_per_prompt`` per prompt, largest gaps first. No pair at all is not an error here: the
report says so and why, and rule train_refined refuses to train on nothing.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path

from bpo.atomic import write_json
from bpo.eval.testsets import render_question
from bpo.schemas import CANDIDATE_JUDGMENTS, CANDIDATES, PREFERENCES, read_table, write_table
from bpo.settings.refine import PreferenceSettings

log = logging.getLogger(__name__)

_POINTS = {"win": 1, "lose": -1}


def scores(judgments: list[dict]) -> dict[str, float]:
    """Each judged candidate's wins - losses (the original of vs_original is not a candidate)."""
    out: dict[str, float] = defaultdict(float)
    for j in judgments:
        out[j["a_id"]] += _POINTS.get(j["outcome"], 0)
        if not j["b_id"].endswith(":original"):
            out[j["b_id"]] -= _POINTS.get(j["outcome"], 0)
    return dict(out)


def outcome_counts(judgments: list[dict]) -> dict[str, int]:
    """Comparisons by what they count for: decisive, tie, inconsistent orders, invalid."""
    c: Counter = Counter()
    for j in judgments:
        if j["outcome"] == "tie" and j["consistent"] is False:
            c["inconsistent_orders"] += 1
        else:
            c[{"win": "decisive", "lose": "decisive"}.get(j["outcome"], j["outcome"])] += 1
    return dict(c)


def build_pairs(candidates: list[dict], score: dict[str, float], settings: PreferenceSettings) -> tuple[list, Counter]:
    """PREFERENCES rows and, per prompt without a pair, why."""
    by_prompt: dict[str, list[dict]] = {c["prompt_id"]: [] for c in candidates}  # every pool prompt, in order
    for c in candidates:
        if c["drop_reason"] is None:
            by_prompt[c["prompt_id"]].append(c)
    rows, why_none = [], Counter()
    for pid, cands in by_prompt.items():
        judged = [c for c in cands if c["candidate_id"] in score]
        if len(judged) < 2:
            why_none["fewer than 2 judged candidates"] += 1
            continue
        gaps = []
        for c in judged:
            for d in judged:
                gap = score[c["candidate_id"]] - score[d["candidate_id"]]
                if gap >= settings.margin:
                    gaps.append((gap, c["candidate_id"], d["candidate_id"], c, d))
        if not gaps:
            why_none["no score gap >= margin"] += 1
            continue
        gaps.sort(key=lambda g: (-g[0], g[1], g[2]))
        for _, _, _, c, d in gaps[: settings.pairs_per_prompt]:
            rows.append(
                {
                    "prompt_id": pid,
                    "round": c["round"],
                    "prompt": render_question(c["instruction"], c["context"]),
                    "chosen": c["completion"],
                    "rejected": d["completion"],
                    "chosen_id": c["candidate_id"],
                    "rejected_id": d["candidate_id"],
                    "chosen_score": score[c["candidate_id"]],
                    "rejected_score": score[d["candidate_id"]],
                }
            )
    return rows, why_none


def make_preferences(
    candidates_path: str | Path,
    judgments_path: str | Path,
    out_path: str | Path,
    report_path: str | Path,
    settings: PreferenceSettings,
) -> dict:
    """Write PREFERENCES and the JSON report of how they came about."""
    candidates = read_table(candidates_path, CANDIDATES).to_pylist()
    judgments = read_table(judgments_path, CANDIDATE_JUDGMENTS).to_pylist()
    score = scores(judgments)
    rows, why_none = build_pairs(candidates, score, settings)
    write_table(rows, out_path, PREFERENCES)
    prompts = len({c["prompt_id"] for c in candidates})
    report = {
        "settings": settings.canonical(),
        "prompts": prompts,
        "candidates": len(candidates),
        "candidates_dropped": dict(Counter(c["drop_reason"] for c in candidates if c["drop_reason"])),
        "comparisons": len(judgments),
        "comparison_outcomes": outcome_counts(judgments),
        "pairs": len(rows),
        "prompts_with_pairs": len({r["prompt_id"] for r in rows}),
        "prompts_without_pairs": dict(why_none),
        "message": None,
    }
    if not rows:
        report["message"] = (
            f"no preference pairs: the judge separated no two candidates of any of the {prompts} prompts "
            f"by refine.margin {settings.margin} (comparisons: {report['comparison_outcomes']}); "
            "train_refined has nothing to learn from"
        )
        log.warning("%s", report["message"])
    else:
        log.info("%d preference pairs from %d prompts: %s", len(rows), report["prompts_with_pairs"], report)
    write_json(report, report_path, indent=1, sort_keys=True)
    return report
