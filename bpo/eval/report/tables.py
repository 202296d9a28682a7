"""Report tables: the win-rate rows (one per optimizer × test set × target, then per category)
and the intrinsic similarity metrics, computed from the judgments, answers and optimized prompts.

Per row: win / tie / lose, ΔWR with its bootstrap interval, the length-controlled ΔWR
(:mod:`bpo.eval.length_control`) with its own, the judge's position consistency, mean answer
lengths, invalid pairs by cause and the optimizer's fallbacks by reason. Percentages are over
valid pairs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from bpo.eval.intrinsic import similarity_summary
from bpo.eval.length_control import OUTCOME_PREFERENCE, length_controlled
from bpo.eval.testsets import render_question
from bpo.eval.verdicts import combine_orders
from bpo.eval.winrates import bootstrap_delta_interval, count_outcomes, mean_words, position_consistency, win_rates
from bpo.language import UNDETERMINED, detect
from bpo.schemas import read_table
from bpo.settings.evaluate import ReportSettings
from bpo.vocab import BOTH_ORDERS, NO_CALL

# WINRATES.comparison: answers to two prompts by one model, or answers of two models to one prompt.
PROMPT, MODEL = "prompt", "model"

STANDIN_NOTE = "STAND-IN verdicts (offline text generator, not a model): these numbers mean nothing"


def backends(values) -> set[str]:
    out: set[str] = set()
    for v in values:
        out.update(b for b in str(v).split("+") if b and b != NO_CALL)
    return out


def joined(values) -> str:
    return "+".join(sorted(backends(values))) or NO_CALL


def rows_of(path, schema) -> list[dict]:
    return read_table(path, schema).to_pylist()  # plain dicts: nulls stay None


def invalid_breakdown(judgments: list[dict]) -> dict[str, int]:
    """Why pairs are invalid: a missing answer, a failed judge call, or an unparseable verdict.
    Under single_random one order is judged; the other's columns are null by design."""
    counts = Counter()
    for rec in judgments:
        if rec["outcome"] != "invalid":
            continue
        no_reply = (
            rec["verdict_optimized_first"] is None and rec["raw_optimized_first"] is None,
            rec["verdict_original_first"] is None and rec["raw_original_first"] is None,
        )
        failed = all(no_reply) if rec["protocol"] != BOTH_ORDERS else any(no_reply)
        if rec["backend"] == NO_CALL:
            counts["missing answer"] += 1
        elif failed:
            counts["judge call failed"] += 1
        else:
            counts["unparseable verdict"] += 1
    return dict(counts)


def valid_pairs(judgments: list[dict], answers: dict[str, dict]) -> list[tuple[str, float, int, int]]:
    """(item id, preference for the optimized answer, its length, the original's) of the valid pairs."""
    pairs = []
    for r in judgments:
        if r["outcome"] == "invalid":
            continue
        a = answers[r["item_id"]]
        if not (isinstance(a["answer_optimized"], str) and isinstance(a["answer_original"], str)):
            raise ValueError(
                f"{r['optimizer']}/{r['testset']}/{r['target']} item {r['item_id']}: judged "
                f"'{r['outcome']}' but an answer is missing; judgments and answers disagree"
            )
        pairs.append(
            (r["item_id"], OUTCOME_PREFERENCE[r["outcome"]], len(a["answer_optimized"]), len(a["answer_original"]))
        )
    return pairs


def _length_controlled(
    judgments: list[dict],
    answers: dict[str, dict],
    settings: ReportSettings,
    difficulty: Mapping[str, float] | None = None,
):
    """LC ΔWR over the valid pairs (answer lengths in characters), or None below lc_min_pairs;
    ``difficulty`` by item id for eval.report.lc.method alpacaeval."""
    if sum(r["outcome"] != "invalid" for r in judgments) < settings.lc_min_pairs:
        return None
    items, prefs, optimized, original = zip(*valid_pairs(judgments, answers))
    if settings.lc.method != "length_only" and difficulty is None:
        raise ValueError(f"eval.report.lc.method {settings.lc.method}: no item difficulty given for this row")
    d = None if settings.lc.method == "length_only" else [difficulty[i] for i in items]
    return length_controlled(
        prefs,
        optimized,
        original,
        samples=settings.bootstrap_samples,
        seed=settings.seed,
        confidence=settings.confidence,
        difficulty=d,
    )


def winrate_row(
    judgments: list[dict],
    answers: dict[str, dict],
    optimized: list[dict],
    settings: ReportSettings,
    *,
    category: str | None,
    difficulty: Mapping[str, float] | None = None,
    language: str | None = None,
    comparison: str = PROMPT,
) -> dict:
    """One WINRATES row from the judgments of one (optimizer, test set, target[, category]);
    ``answers`` by item id, ``optimized``: the optimizer's rows for the same items."""
    outcomes = [r["outcome"] for r in judgments]
    rates, counts = win_rates(outcomes), count_outcomes(outcomes)
    low, high = bootstrap_delta_interval(
        outcomes, samples=settings.bootstrap_samples, seed=settings.seed, confidence=settings.confidence
    )
    lc = _length_controlled(judgments, answers, settings, difficulty)
    # Consistency only over pairs the judge actually saw in both orders.
    consistency = position_consistency(
        combine_orders(r["verdict_optimized_first"], r["verdict_original_first"]).consistent
        for r in judgments
        if r["backend"] != NO_CALL and r["protocol"] == BOTH_ORDERS
    )
    invalid = invalid_breakdown(judgments)
    fallbacks = Counter(r["fallback_reason"] for r in optimized if r["fallback_reason"] is not None)
    items = [answers[r["item_id"]] for r in judgments]
    first = judgments[0]
    return {
        "comparison": comparison,
        "optimizer": first["optimizer"],
        "testset": first["testset"],
        "target": first["target"],
        "judge_model": "+".join(sorted({r["judge_model"] for r in judgments})),
        "category": category,
        "language": language,
        "protocol": "+".join(sorted({r["protocol"] for r in judgments})),
        "n": rates.n,
        "n_invalid": rates.n_invalid,
        "n_win": counts["win"],
        "n_tie": counts["tie"],
        "n_lose": counts["lose"],
        "win": rates.win,
        "tie": rates.tie,
        "lose": rates.lose,
        "delta_wr": rates.delta_wr,
        "delta_wr_low": low,
        "delta_wr_high": high,
        "lc_delta_wr": lc.delta_wr if lc else None,
        "lc_delta_wr_low": lc.low if lc else None,
        "lc_delta_wr_high": lc.high if lc else None,
        "lc_length_coef": lc.length_coef if lc else None,
        "position_consistency": consistency,
        "mean_len_original": mean_words(a["answer_original"] for a in items),
        "mean_len_optimized": mean_words(a["answer_optimized"] for a in items),
        "n_missing_answer": invalid.get("missing answer", 0),
        "n_judge_failed": invalid.get("judge call failed", 0),
        "n_unparseable": invalid.get("unparseable verdict", 0),
        "n_fallback": sum(fallbacks.values()),
        "fallback_reasons": dict(sorted(fallbacks.items())),
        "backend": joined(r["backend"] for r in judgments),
        "answer_backend": joined(a["backend"] for a in items),
    }


def cell_rows(
    judgments: list[dict],
    answers: list[dict],
    optimized: list[dict],
    settings: ReportSettings,
    difficulty: Mapping[str, float] | None = None,
    languages: Mapping[str, str] | None = None,
    comparison: str = PROMPT,
) -> list[dict]:
    """The overall row of one (optimizer, test set, target), then one row per category, then,
    where the test set's items are in more than one identified language (``languages``: item id
    -> ISO 639-1 code), one row per language ("und" included)."""
    by_item = {r["item_id"]: r for r in answers}
    kw = {"difficulty": difficulty, "comparison": comparison}
    rows = [winrate_row(judgments, by_item, optimized, settings, category=None, **kw)]
    for category in sorted({r["category"] for r in judgments if r["category"] is not None}):
        j = [r for r in judgments if r["category"] == category]
        o = [r for r in optimized if r["category"] == category]
        rows.append(winrate_row(j, by_item, o, settings, category=category, **kw))
    languages = languages or {}
    lang_of = {r["item_id"]: languages.get(r["item_id"], UNDETERMINED) for r in judgments}
    # a one-language test set (its short prompts "und" aside): its overall row says it all
    if len(set(lang_of.values()) - {UNDETERMINED}) > 1:
        for lang in sorted(set(lang_of.values())):
            j = [r for r in judgments if lang_of[r["item_id"]] == lang]
            o = [r for r in optimized if languages.get(r["item_id"], UNDETERMINED) == lang]
            rows.append(winrate_row(j, by_item, o, settings, category=None, language=lang, **kw))
    return rows


def joined_cells(judgment_paths, schema, answers: Mapping[tuple, list[dict]], cell: tuple[str, ...], what: str):
    """``(key, judgments, answers)`` per cell ``key`` (values of the ``cell`` columns) of the
    judgment files, each joined with its ``answers`` (the ``what`` rows: answers, conversations);
    a missing cell or a different item set is an error naming the file and the cell."""
    cells = []
    for path in judgment_paths:
        j = rows_of(path, schema)
        if not j:
            raise ValueError(f"{path}: no judgments")
        for key, cell_j in group_by(j, cell).items():
            a = answers.get(key)
            name = f"{'/'.join(cell).replace('testset', 'test set')} {'/'.join(map(str, key))}"
            if a is None:
                raise ValueError(f"{path}: no {what} for {name} among the inputs")
            if {r["item_id"] for r in cell_j} != {r["item_id"] for r in a}:
                raise ValueError(
                    f"{path} and the {what} of {name} cover different items: were they produced from the same {what}?"
                )
            cells.append((key, cell_j, a))
    return cells


def item_languages(optimized: Iterable[Mapping]) -> dict[str, str]:
    """Item id -> the language of its original instruction (bpo.language; "und" when unclear)."""
    return {r["item_id"]: detect(r["instruction"]) for r in optimized}


def is_overall(row: Mapping) -> bool:
    """A row over every item of its cell (not a category's or a language's)."""
    return row["category"] is None and row.get("language") is None


def intrinsic_metrics(optimized: list[dict]) -> dict | None:
    """Similarity of the rewrites to the reference rewrites, where the test set has them."""
    ref = [r for r in optimized if r["reference_optimized"] is not None]
    if not ref:
        return None
    predictions = [render_question(r["optimized_instruction"], r["context"]) for r in ref]
    originals = [render_question(r["instruction"], r["context"]) for r in ref]
    summary = similarity_summary(predictions, [r["reference_optimized"] for r in ref], originals)
    summary["fallback"] = sum(r["fallback_reason"] is not None for r in ref) / len(ref)
    return summary


def group_by(rows, key_columns) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in key_columns), []).append(r)
    return groups
