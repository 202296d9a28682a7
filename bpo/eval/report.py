"""The evaluation report: win-rate table (Parquet), Markdown and HTML summary, plots, intrinsic metrics.

Rows: optimizer × test set × target (× judge), each first over all items (category null), then
per category of the test set. Per row: win / tie / lose, ΔWR with its bootstrap interval, the
length-controlled ΔWR (:mod:`bpo.eval.length_control`) with its own, the judge's position
consistency, mean answer lengths, invalid pairs by cause and the optimizer's fallbacks by reason.
Percentages are over valid pairs. When any verdict (or answer) comes from the offline stand-in,
the tables, the plots and the summaries say so in plain words: those numbers exercise the
pipeline and measure nothing about prompts.
"""

from __future__ import annotations

import html
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from bpo.atomic import save_figure, write_json, write_text
from bpo.eval.intrinsic import similarity_summary
from bpo.eval.judge import NO_CALL
from bpo.eval.lc_difficulty import lc_method_note, report_difficulty
from bpo.eval.length_control import OUTCOME_PREFERENCE, length_controlled
from bpo.eval.testsets import render_question
from bpo.eval.verdicts import combine_orders
from bpo.eval.winrates import bootstrap_delta_interval, count_outcomes, mean_words, position_consistency, win_rates
from bpo.schemas import ANSWERS, JUDGMENTS, OPTIMIZED, WINRATES, read_table, write_table
from bpo.settings.evaluate import ReportSettings

log = logging.getLogger(__name__)

STANDIN = "standin"
BOTH_ORDERS = "both_orders"
STANDIN_NOTE = "STAND-IN verdicts (offline text generator, not a model): these numbers mean nothing"


def _backends(values) -> set[str]:
    out: set[str] = set()
    for v in values:
        out.update(b for b in str(v).split("+") if b and b != NO_CALL)
    return out


def _joined(values) -> str:
    return "+".join(sorted(_backends(values))) or NO_CALL


def _rows(path, schema) -> list[dict]:
    return read_table(path, schema).to_pylist()  # plain dicts: nulls stay None


def invalid_breakdown(judgments: list[dict]) -> dict[str, int]:
    """Why pairs are invalid: a missing answer, a failed judge call, or an unparseable verdict.
    Under single_random one order is judged; the other's columns are null by design."""
    counts = Counter()
    for rec in judgments:
        if rec["outcome"] != "invalid":
            continue
        no_reply = (rec["verdict_optimized_first"] is None and rec["raw_optimized_first"] is None,
                    rec["verdict_original_first"] is None and rec["raw_original_first"] is None)
        failed = all(no_reply) if rec["protocol"] != BOTH_ORDERS else any(no_reply)
        if rec["backend"] == NO_CALL:
            counts["missing answer"] += 1
        elif failed:
            counts["judge call failed"] += 1
        else:
            counts["unparseable verdict"] += 1
    return dict(counts)


def _valid_pairs(judgments: list[dict], answers: dict[str, dict]) -> list[tuple[str, float, int, int]]:
    """(item id, preference for the optimized answer, its length, the original's) of the valid pairs."""
    pairs = []
    for r in judgments:
        if r["outcome"] == "invalid":
            continue
        a = answers[r["item_id"]]
        if not (isinstance(a["answer_optimized"], str) and isinstance(a["answer_original"], str)):
            raise ValueError(f"{r['optimizer']}/{r['testset']}/{r['target']} item {r['item_id']}: judged "
                             f"'{r['outcome']}' but an answer is missing; judgments and answers disagree")
        pairs.append((r["item_id"], OUTCOME_PREFERENCE[r["outcome"]], len(a["answer_optimized"]),
                      len(a["answer_original"])))
    return pairs


def _length_controlled(judgments: list[dict], answers: dict[str, dict], settings: ReportSettings,
                       difficulty: Mapping[str, float] | None = None):
    """LC ΔWR over the valid pairs (answer lengths in characters), or None below lc_min_pairs;
    ``difficulty`` by item id for eval.report.lc.method alpacaeval."""
    if sum(r["outcome"] != "invalid" for r in judgments) < settings.lc_min_pairs:
        return None
    pairs = _valid_pairs(judgments, answers)
    items, prefs, optimized, original = zip(*pairs)
    if settings.lc.method != "length_only" and difficulty is None:
        raise ValueError(f"eval.report.lc.method {settings.lc.method}: no item difficulty given for this row")
    d = None if settings.lc.method == "length_only" else [difficulty[i] for i in items]
    return length_controlled(prefs, optimized, original, samples=settings.bootstrap_samples, seed=settings.seed,
                             confidence=settings.confidence, difficulty=d)


def winrate_row(judgments: list[dict], answers: dict[str, dict], optimized: list[dict], settings: ReportSettings, *,
                category: str | None, difficulty: Mapping[str, float] | None = None) -> dict:
    """One WINRATES row from the judgments of one (optimizer, test set, target[, category]);
    ``answers`` by item id, ``optimized``: the optimizer's rows for the same items."""
    outcomes = [r["outcome"] for r in judgments]
    rates, counts = win_rates(outcomes), count_outcomes(outcomes)
    low, high = bootstrap_delta_interval(outcomes, samples=settings.bootstrap_samples, seed=settings.seed,
                                         confidence=settings.confidence)
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
        "optimizer": first["optimizer"],
        "testset": first["testset"],
        "target": first["target"],
        "judge_model": "+".join(sorted({r["judge_model"] for r in judgments})),
        "category": category,
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
        "backend": _joined(r["backend"] for r in judgments),
        "answer_backend": _joined(a["backend"] for a in items),
    }


def cell_rows(judgments: list[dict], answers: list[dict], optimized: list[dict], settings: ReportSettings,
              difficulty: Mapping[str, float] | None = None) -> list[dict]:
    """The overall row of one (optimizer, test set, target), then one row per category."""
    by_item = {r["item_id"]: r for r in answers}
    rows = [winrate_row(judgments, by_item, optimized, settings, category=None, difficulty=difficulty)]
    for category in sorted({r["category"] for r in judgments if r["category"] is not None}):
        j = [r for r in judgments if r["category"] == category]
        o = [r for r in optimized if r["category"] == category]
        rows.append(winrate_row(j, by_item, o, settings, category=category, difficulty=difficulty))
    return rows


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


def _by(rows, key_columns) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in key_columns), []).append(r)
    return groups


def build_report(
    judgments: Sequence[str | Path],
    answers: Sequence[str | Path],
    optimized: Sequence[str | Path],
    settings: ReportSettings,
    *,
    out_table: str | Path,
    out_summary: str | Path,
    out_plot: str | Path,
    out_compare_plot: str | Path,
    out_intrinsic: str | Path,
    out_summary_html: str | Path | None = None,
) -> list[dict]:
    """Report on every (optimizer, test set, target) in ``judgments``; rows are matched to
    ``answers`` and ``optimized`` by their columns, not by list position. Returns the table rows."""
    cell = ("optimizer", "testset", "target")
    answer_cells = _by((r for p in answers for r in _rows(p, ANSWERS)), cell)
    optimizer_cells = _by((r for p in optimized for r in _rows(p, OPTIMIZED)), ("optimizer", "testset"))
    cells = []
    for j_path in judgments:
        j = _rows(j_path, JUDGMENTS)
        if not j:
            raise ValueError(f"{j_path}: no judgments")
        for key, cell_j in _by(j, cell).items():
            a = answer_cells.get(key)
            if a is None:
                raise ValueError(f"{j_path}: no answers for optimizer/test set/target {'/'.join(key)} among the inputs")
            if {r["item_id"] for r in cell_j} != {r["item_id"] for r in a}:
                raise ValueError(f"{j_path} and the answers of {'/'.join(key)} cover different items: "
                                 "were they produced from the same answers?")
            cells.append((key, cell_j, a))
    difficulty = {} if settings.lc.method == "length_only" else report_difficulty(
        {key: _valid_pairs(cell_j, {r["item_id"]: r for r in a}) for key, cell_j, a in cells}, settings.lc)
    rows, no_call_ties = [], 0
    for key, cell_j, a in cells:
        rows += cell_rows(cell_j, a, optimizer_cells.get(key[:2], []), settings, difficulty.get(key[1]))
        no_call_ties += sum(r["backend"] == NO_CALL and r["outcome"] == "tie" for r in cell_j)
    table = write_table(rows, out_table, WINRATES).to_pylist()

    intrinsic: dict[str, dict] = {}
    for (opt, testset), o in optimizer_cells.items():
        metrics = intrinsic_metrics(o)
        if metrics is not None:
            intrinsic.setdefault(opt, {})[testset] = metrics
    write_json(intrinsic, out_intrinsic, indent=2, sort_keys=True, ensure_ascii=True)

    overall = [r for r in table if r["category"] is None]
    judge_backends = _backends(r["backend"] for r in table)
    note = STANDIN_NOTE if STANDIN in judge_backends else None
    _plot(overall, Path(out_plot), note)
    _compare_plot(overall, Path(out_compare_plot), note, settings)
    summary = Summary(table, optimizer_cells, intrinsic, settings, no_call_ties)
    write_text(summary.markdown(), out_summary)
    if out_summary_html is not None:
        write_text(summary.html(), out_summary_html)
    log.info("report: %d rows (%d overall) -> %s", len(table), len(overall), out_table)
    return table


# --- formatting ----------------------------------------------------------------------------


def _fmt(x, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _interval(value, low, high) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{_fmt(value)} [{_fmt(low)}, {_fmt(high)}]"


def _reasons(counts) -> str:
    counts = dict(counts)  # Parquet maps read back as (key, value) pairs
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _backend_label(value: str) -> str:
    return f"{value} (stand-in, not a model)" if STANDIN in value.split("+") else value


@dataclass
class _Table:
    """One table, rendered as Markdown and as HTML from the same cells."""

    headers: list[str]
    rows: list[list[str]]
    right: set[int]  # right-aligned (numeric) columns
    flagged: list[bool]  # rows with numbers from the stand-in

    def markdown(self) -> list[str]:
        align = ["---:" if i in self.right else "---" for i in range(len(self.headers))]
        return ["| " + " | ".join(self.headers) + " |", "|" + "|".join(align) + "|",
                *("| " + " | ".join(r) + " |" for r in self.rows)]

    def html(self) -> str:
        def cells(tag, values):
            return "".join(f"<{tag}{' class=num' if i in self.right else ''}>{html.escape(v)}</{tag}>"
                           for i, v in enumerate(values))

        body = "".join(f"<tr{' class=standin' if flag else ''}>{cells('td', r)}</tr>"
                       for r, flag in zip(self.rows, self.flagged))
        return f"<table><thead><tr>{cells('th', self.headers)}</tr></thead><tbody>{body}</tbody></table>"


class Summary:
    """summary.md and summary.html: the same banners and tables."""

    def __init__(self, table, optimizer_cells, intrinsic, settings: ReportSettings, no_call_ties: int):
        self.table, self.optimizer_cells, self.intrinsic = table, optimizer_cells, intrinsic
        self.settings, self.no_call_ties = settings, no_call_ties
        self.overall = [r for r in table if r["category"] is None]
        self.judge_backends = _backends(r["backend"] for r in table)
        self.answer_backends = _backends(r["answer_backend"] for r in table)

    # -- prose ---------------------------------------------------------------------------------

    def banners(self) -> list[str]:
        out = []
        if STANDIN in self.judge_backends:
            out.append("The verdicts in this report come from the offline stand-in, not from a model. The stand-in "
                       "(backend: standin) is a deterministic text generator that lets the workflow run without an "
                       "API. Its win rates say nothing about the optimizer or the prompts; they only show that every "
                       "stage ran. Point eval.judge.endpoint at a real model for meaningful numbers. Rows whose "
                       "backend columns say standin are marked.")
        standin_targets = sorted({r["target"] for r in self.overall if STANDIN in r["answer_backend"].split("+")})
        if standin_targets:
            out.append(f"The answers of target(s) {', '.join(standin_targets)} also come from the offline stand-in, "
                       "not from a model.")
        for opt, testsets in self._unusable_optimizers().items():
            out.append(f"The output of optimizer '{opt}' was unusable for every prompt of {', '.join(testsets)}: "
                       "each original prompt was compared with itself, so those rows say nothing about prompt "
                       "optimization.")
        return out

    def _unusable_optimizers(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for (opt, testset), rows in self.optimizer_cells.items():
            if rows and all(r["fallback_reason"] is not None for r in rows):
                out.setdefault(opt, []).append(testset)
        return out

    def method(self) -> list[str]:
        s = self.settings
        pct = round(100 * s.confidence)
        judges = ", ".join(sorted({r["judge_model"] for r in self.table}))
        if self.judge_backends:
            judge_line = f"Judge: {judges} (backend: {', '.join(sorted(self.judge_backends))})"
        else:
            judge_line = (f"Judge: {judges}, but no pair needed a judge call (identical answers are ties, "
                          "missing ones invalid)")
        protocols = {p for r in self.table for p in r["protocol"].split("+")}
        out = [f"{judge_line}; target answers from backend(s): {', '.join(sorted(self.answer_backends)) or 'none'}."]
        if BOTH_ORDERS in protocols:
            out.append("Protocol both_orders: each pair is judged twice, once with each answer shown first; agreeing "
                       "verdicts count, disagreeing verdicts count as a tie (MT-bench convention).")
        if "single_random" in protocols:
            out.append("Protocol single_random (the BPO paper's): each pair is judged once, in a seeded random "
                       "order; position consistency cannot be measured.")
        if self.no_call_ties:
            out.append(f"{self.no_call_ties} pair(s) had identical answers and count as ties without a judge call.")
        out += [
            "Win / tie / lose are % of valid pairs; ΔWR = win − lose; invalid pairs (missing answer, failed judge "
            "call, unparseable verdict) are excluded from the percentages and counted.",
            lc_method_note(s.lc) + f" Only for rows with at least {s.lc_min_pairs} valid pairs (– otherwise). "
            "A raw ΔWR that the LC ΔWR does not keep came from longer answers, not better ones.",
            f"Intervals: {pct}% percentile bootstrap over pairs, {s.bootstrap_samples} resamples, seed {s.seed}. "
            "Position consistency: % of pairs judged in both orders whose two verdicts agree. Lengths in words.",
        ]
        return out

    # -- tables --------------------------------------------------------------------------------

    def models_table(self) -> _Table | None:
        roles = self.settings.models
        if not roles:
            return None
        real = {True: "yes", False: "NO (stand-in)", None: "–"}
        rows = [[m.role, m.name, m.model, m.source, real[m.real]] for m in roles]
        return _Table(["role", "name", "model", "runs as", "real model"], rows, set(), [m.real is False for m in roles])

    def main_table(self) -> _Table:
        headers = ["optimizer", "test set", "target", "n", "win / tie / lose %", "ΔWR [CI]", "LC ΔWR [CI]",
                   "position consistency %", "words original → optimized", "invalid", "fallbacks",
                   "judge backend", "answers backend"]
        rows, flagged = [], []
        for r in self.overall:
            invalid = {"missing answer": r["n_missing_answer"], "judge call failed": r["n_judge_failed"],
                       "unparseable": r["n_unparseable"]}
            invalid_text = str(r["n_invalid"]) + (f" ({_reasons({k: v for k, v in invalid.items() if v})})"
                                                  if r["n_invalid"] else "")
            fallback_text = str(r["n_fallback"]) + (f" ({_reasons(r['fallback_reasons'])})" if r["n_fallback"] else "")
            rows.append([
                r["optimizer"], r["testset"], r["target"], str(r["n"]),
                f"{_fmt(r['win'])} / {_fmt(r['tie'])} / {_fmt(r['lose'])}",
                _interval(r["delta_wr"], r["delta_wr_low"], r["delta_wr_high"]),
                _interval(r["lc_delta_wr"], r["lc_delta_wr_low"], r["lc_delta_wr_high"]),
                _fmt(r["position_consistency"]),
                f"{_fmt(r['mean_len_original'], 0)} → {_fmt(r['mean_len_optimized'], 0)}",
                invalid_text, fallback_text, _backend_label(r["backend"]), _backend_label(r["answer_backend"]),
            ])
            flagged.append(STANDIN in (r["backend"] + "+" + r["answer_backend"]).split("+"))
        return _Table(headers, rows, {3, 7}, flagged)

    def category_table(self) -> _Table | None:
        rows, flagged = [], []
        for r in self.table:
            if r["category"] is None:
                continue
            rows.append([r["optimizer"], r["testset"], r["target"], r["category"], str(r["n"]), str(r["n_invalid"]),
                         f"{_fmt(r['win'])} / {_fmt(r['tie'])} / {_fmt(r['lose'])}",
                         _interval(r["delta_wr"], r["delta_wr_low"], r["delta_wr_high"]),
                         _interval(r["lc_delta_wr"], r["lc_delta_wr_low"], r["lc_delta_wr_high"])])
            flagged.append(STANDIN in (r["backend"] + "+" + r["answer_backend"]).split("+"))
        if not rows:
            return None
        headers = ["optimizer", "test set", "target", "category", "n", "invalid", "win / tie / lose %", "ΔWR [CI]",
                   "LC ΔWR [CI]"]
        return _Table(headers, rows, {4, 5}, flagged)

    def optimizer_table(self) -> _Table:
        rows = []
        for (opt, testset), o in self.optimizer_cells.items():
            reasons = Counter(r["fallback_reason"] for r in o if r["fallback_reason"] is not None)
            kept = sum(reasons.values())
            rows.append([opt, testset, str(len(o)), str(len(o) - kept), _reasons(reasons) or "–"])
        return _Table(["optimizer", "test set", "prompts", "rewritten", "kept original (reason: count)"], rows,
                      {2, 3}, [False] * len(rows))

    def intrinsic_table(self) -> _Table | None:
        rows = []
        for opt, testsets in self.intrinsic.items():
            for name, m in testsets.items():
                rows.append([opt, name, str(m["n"]), *(_fmt(m[k], 3) for k in (
                    "token_f1", "rouge_l", "exact_match", "baseline_token_f1", "baseline_rouge_l", "unchanged",
                    "fallback"))])
        if not rows:
            return None
        headers = ["optimizer", "test set", "n", "token-F1", "ROUGE-L", "exact", "baseline token-F1",
                   "baseline ROUGE-L", "unchanged", "fallback"]
        return _Table(headers, rows, set(range(2, 10)), [False] * len(rows))

    def sections(self) -> list[tuple[str, list[str], _Table | None]]:
        """(heading, paragraphs, table) in reading order; the first heading is the title."""
        category = self.category_table()
        intrinsic = self.intrinsic_table()
        out = [
            ("BPO evaluation: answers to optimized prompts vs answers to the original prompts",
             ["The models behind these numbers: which are real and which are the offline stand-in."],
             self.models_table()),
            ("Win rates", self.method(), self.main_table()),
        ]
        if category is not None:
            out.append(("Per category", ["The same figures for each category of the test sets that have one."],
                        category))
        out.append(("Optimizer", ["How often each optimizer's rewrite was used; a kept original prompt is a "
                                  "fallback, with its reason."], self.optimizer_table()))
        if intrinsic is not None:
            out.append(("Similarity to reference rewrites", [
                "Where a test set ships reference optimized prompts (BPO test), the optimizer's output is scored "
                "against them (lower-cased word tokens). Baseline: the original prompt scored the same way."],
                intrinsic))
        return out

    # -- renderings ----------------------------------------------------------------------------

    def markdown(self) -> str:
        out = []
        for i, (heading, paragraphs, table) in enumerate(self.sections()):
            out += [("# " if i == 0 else "## ") + heading, ""]
            if i == 0:
                for banner in self.banners():
                    out += [f"> **{banner}**", ""]
            for p in paragraphs:
                out += [p, ""]
            if table is not None:
                out += [*table.markdown(), ""]
        return "\n".join(out).rstrip("\n") + "\n"

    def html(self) -> str:
        parts = ["<!DOCTYPE html><html><head><meta charset=utf-8><title>BPO evaluation</title><style>"
                 "body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse;margin:.5em 0}"
                 "td,th{border:1px solid #bbb;padding:3px 6px}th{background:#eee}.num{text-align:right}"
                 "tr.standin td{background:#fff3cd}.banner{background:#fff3cd;border:1px solid #c9a227;"
                 "padding:.5em;font-weight:bold}</style></head><body>"]
        for i, (heading, paragraphs, table) in enumerate(self.sections()):
            parts.append(f"<h{1 if i == 0 else 2}>{html.escape(heading)}</h{1 if i == 0 else 2}>")
            if i == 0:
                parts += [f"<p class=banner>{html.escape(b)}</p>" for b in self.banners()]
            parts += [f"<p>{html.escape(p)}</p>" for p in paragraphs]
            if table is not None:
                parts.append(table.html())
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


# --- plots ---------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot(table, path: Path, title_note: str | None) -> None:
    """Stacked win / tie / lose bars, one per optimizer × test set × target."""
    plt = _pyplot()
    labels = [
        f"{r['optimizer']} · {r['testset']} / {r['target']} (n={r['n'] - r['n_invalid']})\n"
        f"ΔWR {_interval(r['delta_wr'], r['delta_wr_low'], r['delta_wr_high'])}"
        for r in table
    ]
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.7 * max(1, len(table))))
    y = list(range(len(table)))
    left = [0.0] * len(table)
    for col, color in (("win", "#2e7d32"), ("tie", "#9e9e9e"), ("lose", "#c62828")):
        vals = [0.0 if math.isnan(r[col]) else r[col] for r in table]
        ax.barh(y, vals, left=left, color=color, label=col)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(y, labels, fontsize=8)
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


def _compare_plot(table, path: Path, title_note: str | None, settings: ReportSettings) -> None:
    """Optimizers at a glance: ΔWR and LC ΔWR with their intervals, one panel per test set × target."""
    plt = _pyplot()
    panels: dict[tuple[str, str], list[dict]] = {}
    for r in table:
        panels.setdefault((r["testset"], r["target"]), []).append(r)
    cols = min(2, max(1, len(panels)))
    nrows = math.ceil(max(1, len(panels)) / cols)
    optimizers = max((len(rows) for rows in panels.values()), default=1)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, 1.4 + (0.55 * optimizers + 0.8) * nrows),
                             squeeze=False)
    series = (("delta_wr", "ΔWR", "#1565c0", "o", -0.15), ("lc_delta_wr", "LC ΔWR", "#ef6c00", "s", 0.15))
    for ax, ((testset, target), rows) in zip(axes.flat, panels.items()):
        y = list(range(len(rows)))
        for col, label, color, marker, offset in series:
            pts = [(i + offset, r[col], r[f"{col}_low"], r[f"{col}_high"]) for i, r in zip(y, rows)
                   if r[col] is not None and not math.isnan(r[col])]
            if pts:
                ax.errorbar([p[1] for p in pts], [p[0] for p in pts],
                            xerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
                            fmt=marker, color=color, capsize=3, label=label)
        ax.axvline(0, color="#555", linewidth=0.8)
        labels = [r["optimizer"] + ("" if r["lc_delta_wr"] is not None else f"\n(LC: < {settings.lc_min_pairs} pairs)")
                  for r in rows]
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlim(-105, 105)
        ax.set_title(f"{testset} / {target}", fontsize=9)
        ax.set_xlabel("percentage points (optimized vs original)", fontsize=8)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    title = f"ΔWR and length-controlled ΔWR with {round(100 * settings.confidence)}% bootstrap intervals"
    if title_note:
        title += f"\n{title_note}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
