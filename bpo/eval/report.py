"""The evaluation report: win-rate table (Parquet), Markdown summary, bar chart, intrinsic metrics.

One row per (test set, target, judge model). Percentages are over valid pairs; invalid pairs
are counted and broken down by cause. When any verdict (or answer) comes from the offline
stand-in, the summary and the chart say so in plain words: those numbers exercise the
pipeline and measure nothing about prompts.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Sequence

from bpo.atomic import save_figure, write_json, write_text
from bpo.eval.intrinsic import similarity_summary
from bpo.eval.judge import NO_CALL
from bpo.eval.testsets import render_question
from bpo.eval.verdicts import combine_orders
from bpo.eval.winrates import bootstrap_delta_interval, mean_words, position_consistency, win_rates
from bpo.schemas import ANSWERS, JUDGMENTS, OPTIMIZED, WINRATES, read_table, write_table
from bpo.settings.evaluate import ReportSettings

log = logging.getLogger(__name__)

STANDIN = "standin"


def _backends(values) -> set[str]:
    out: set[str] = set()
    for v in values:
        out.update(b for b in str(v).split("+") if b and b != NO_CALL)
    return out


def _rows(path, schema) -> list[dict]:
    return read_table(path, schema).to_pylist()  # plain dicts: nulls stay None


def invalid_breakdown(judgments: list[dict]) -> dict[str, int]:
    """Why pairs are invalid: a missing answer, a failed judge call, or an unparseable verdict."""
    counts = Counter()
    for rec in judgments:
        if rec["outcome"] != "invalid":
            continue
        if rec["backend"] == NO_CALL:
            counts["missing answer"] += 1
        elif (rec["verdict_optimized_first"] is None and rec["raw_optimized_first"] is None) or (
            rec["verdict_original_first"] is None and rec["raw_original_first"] is None
        ):
            counts["judge call failed"] += 1
        else:
            counts["unparseable verdict"] += 1
    return dict(counts)


def winrate_row(judgments: list[dict], answers: list[dict], *, samples: int, seed: int, confidence: float) -> dict:
    outcomes = [r["outcome"] for r in judgments]
    rates = win_rates(outcomes)
    low, high = bootstrap_delta_interval(outcomes, samples=samples, seed=seed, confidence=confidence)
    # Consistency only over pairs the judge actually saw in both orders.
    consistency = position_consistency(
        combine_orders(r["verdict_optimized_first"], r["verdict_original_first"]).consistent
        for r in judgments
        if r["backend"] != NO_CALL
    )
    first = judgments[0]
    return {
        "testset": first["testset"],
        "target": first["target"],
        "judge_model": first["judge_model"],
        "n": rates.n,
        "n_invalid": rates.n_invalid,
        "win": rates.win,
        "tie": rates.tie,
        "lose": rates.lose,
        "delta_wr": rates.delta_wr,
        "delta_wr_low": low,
        "delta_wr_high": high,
        "position_consistency": consistency,
        "mean_len_original": mean_words(r["answer_original"] for r in answers),
        "mean_len_optimized": mean_words(r["answer_optimized"] for r in answers),
        "backend": "+".join(sorted(_backends(r["backend"] for r in judgments))) or NO_CALL,
    }


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


def _fmt(x, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _plot(table, path: Path, title_note: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        f"{r['testset']} / {r['target']} (n={r['n'] - r['n_invalid']})\n"
        f"ΔWR {_fmt(r['delta_wr'])} [{_fmt(r['delta_wr_low'])}, {_fmt(r['delta_wr_high'])}]"
        for r in table
    ]
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.7 * max(1, len(table))))
    y = range(len(table))
    left = [0.0] * len(table)
    for col, color in (("win", "#2e7d32"), ("tie", "#9e9e9e"), ("lose", "#c62828")):
        vals = [0.0 if math.isnan(r[col]) else r[col] for r in table]
        ax.barh(list(y), vals, left=left, color=color, label=col)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of valid pairs (optimized-prompt answer vs original-prompt answer)")
    title = "BPO: win / tie / lose of answers to optimized prompts"
    if title_note:
        title += f"\n{title_note}"
    ax.set_title(title, fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def build_report(
    judgments: Sequence[str | Path],
    answers: Sequence[str | Path],
    optimized: Sequence[str | Path],
    settings: ReportSettings,
    *,
    out_table: str | Path,
    out_summary: str | Path,
    out_plot: str | Path,
    out_intrinsic: str | Path,
    out_compare_plot: str | Path | None = None,
) -> list[dict]:
    """``judgments[i]`` and ``answers[i]`` belong to the same (test set, target). Returns the rows."""
    if len(judgments) != len(answers):
        raise ValueError("report: judgments and answers lists must pair up (same test set and target)")
    rows, invalid, answer_backends, no_call_ties = [], {}, set(), 0
    for j_path, a_path in zip(judgments, answers):
        j, a = _rows(j_path, JUDGMENTS), _rows(a_path, ANSWERS)
        if not j:
            raise ValueError(f"{j_path}: no judgments")
        if {r["item_id"] for r in j} != {r["item_id"] for r in a}:
            raise ValueError(f"{j_path} and {a_path} cover different items: were they produced from the same answers?")
        rows.append(winrate_row(j, a, samples=settings.bootstrap_samples, seed=settings.seed,
                                confidence=settings.confidence))
        invalid[(rows[-1]["testset"], rows[-1]["target"])] = invalid_breakdown(j)
        no_call_ties += sum(r["backend"] == NO_CALL and r["outcome"] == "tie" for r in j)
        answer_backends |= _backends(r["backend"] for r in a)
    table = write_table(rows, out_table, WINRATES).to_pylist()

    intrinsic, fallbacks = {}, {}
    for o_path in optimized:
        o = _rows(o_path, OPTIMIZED)
        # one entry per (test set, optimizer): eval/{testset}/{optimizer}/optimized.parquet
        name = f"{o[0]['testset']}/{o[0]['optimizer']}" if o else f"{Path(o_path).parent.parent.name}/{Path(o_path).parent.name}"
        fallbacks[name] = (len(o), Counter(r["fallback_reason"] for r in o if r["fallback_reason"] is not None))
        metrics = intrinsic_metrics(o)
        if metrics is not None:
            intrinsic[name] = metrics
    write_json(intrinsic, out_intrinsic, indent=2, sort_keys=True, ensure_ascii=True)

    judge_backends = _backends(r["backend"] for r in table)
    note = None
    if STANDIN in judge_backends:
        note = "STAND-IN verdicts (offline text generator, not a model): these numbers mean nothing"
    _plot(table, Path(out_plot), note)
    if out_compare_plot is not None:  # interim: the per-optimizer comparison plot replaces this
        _plot(table, Path(out_compare_plot), note)
    write_text(_summary(table, invalid, fallbacks, intrinsic, judge_backends, answer_backends, settings,
                        no_call_ties=no_call_ties), out_summary)
    log.info("report: %d rows -> %s", len(table), out_table)
    return table


def _summary(table, invalid, fallbacks, intrinsic, judge_backends, answer_backends, settings: ReportSettings, *,
             no_call_ties=0) -> str:
    out = ["# BPO evaluation: answers to optimized prompts vs answers to the original prompts", ""]
    if STANDIN in judge_backends:
        out += [
            "> **The verdicts in this report come from the offline stand-in, not from a model.** The stand-in",
            "> (`backend: standin`) is a deterministic text generator that lets the workflow run without an",
            "> API. Its win rates say nothing about the optimizer or the prompts; they only show that every",
            "> stage ran. Point `eval.judge.endpoint` at a real model for meaningful numbers.",
            "",
        ]
    if STANDIN in answer_backends:
        out += ["> **The target answers also come from the offline stand-in, not from a model.**", ""]
    total = sum(n for n, _ in fallbacks.values())
    if total and all(sum(reasons.values()) == n for n, reasons in fallbacks.values()):
        out += [
            "> **The optimizer's output was unusable for every prompt** (see Optimizer below): each original",
            "> prompt was compared with itself, so these figures say nothing about prompt optimization.",
            "",
        ]
    judges = ", ".join(sorted({r["judge_model"] for r in table}))
    pct = round(100 * settings.confidence)
    if judge_backends:
        judge_line = f"Judge: {judges} (backend: {', '.join(sorted(judge_backends))})"
    else:
        judge_line = f"Judge: {judges}, but no pair needed a judge call (identical answers are ties, missing ones invalid)"
    out += [
        f"{judge_line}; target answers from backend(s): {', '.join(sorted(answer_backends)) or 'none'}.",
        "",
        "Each pair is judged twice, once with each answer shown first. Agreeing verdicts count; disagreeing",
        "verdicts count as a tie (MT-bench convention).",
        *([f"{no_call_ties} pair(s) had identical answers and count as ties without a judge call."] if no_call_ties else []),
        "Win / tie / lose are % of valid pairs; ΔWR = win − lose; invalid pairs (missing answer, failed",
        "judge call, unparseable verdict) are excluded from the percentages and counted below.",
        f"Interval: {pct}% percentile bootstrap of ΔWR, {settings.bootstrap_samples} resamples, seed {settings.seed}. Position consistency:",
        "% of pairs judged in both orders whose two verdicts agree. Lengths in words.",
        "",
        f"| test set | target | judge | n | invalid | win % | tie % | lose % | ΔWR | {pct}% CI | position consistency % | words original | words optimized |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in table:
        out.append(
            f"| {r['testset']} | {r['target']} | {r['judge_model']} | {r['n']} | {r['n_invalid']} | {_fmt(r['win'])} | "
            f"{_fmt(r['tie'])} | {_fmt(r['lose'])} | {_fmt(r['delta_wr'])} | [{_fmt(r['delta_wr_low'])}, "
            f"{_fmt(r['delta_wr_high'])}] | {_fmt(r['position_consistency'])} | {_fmt(r['mean_len_original'], 0)} | "
            f"{_fmt(r['mean_len_optimized'], 0)} |"
        )
    out += ["", "## Invalid pairs", ""]
    if any(invalid.values()):
        out += ["| test set | target | missing answer | judge call failed | unparseable verdict |", "|---|---|---:|---:|---:|"]
        for (ts, tg), c in invalid.items():
            out.append(f"| {ts} | {tg} | {c.get('missing answer', 0)} | {c.get('judge call failed', 0)} | {c.get('unparseable verdict', 0)} |")
    else:
        out.append("None: every pair got a verdict in both orders.")
    out += ["", "## Optimizer", "", "| test set | prompts | rewritten | kept original (reason: count) |", "|---|---:|---:|---|"]
    for name, (n, reasons) in fallbacks.items():
        kept = sum(reasons.values())
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) or "–"
        out.append(f"| {name} | {n} | {n - kept} | {detail} |")
    if intrinsic:
        out += [
            "", "## Similarity to reference rewrites", "",
            "Where a test set ships reference optimized prompts (BPO test), the optimizer's output is scored",
            "against them (lower-cased word tokens). Baseline: the original prompt scored the same way.",
            "",
            "| test set | n | token-F1 | ROUGE-L | exact | baseline token-F1 | baseline ROUGE-L | unchanged | fallback |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, m in intrinsic.items():
            out.append(
                f"| {name} | {m['n']} | {_fmt(m['token_f1'], 3)} | {_fmt(m['rouge_l'], 3)} | {_fmt(m['exact_match'], 3)} | "
                f"{_fmt(m['baseline_token_f1'], 3)} | {_fmt(m['baseline_rouge_l'], 3)} | {_fmt(m['unchanged'], 3)} | {_fmt(m['fallback'], 3)} |"
            )
    return "\n".join(out) + "\n"
