"""Report summary: summary.md and summary.html, the same banners, method notes and tables.

When any verdict (or answer) comes from the offline stand-in, the summary says so in plain
words and marks those rows: such numbers exercise the pipeline and measure nothing about prompts.
"""

from __future__ import annotations

import html
from collections import Counter

from bpo.eval.lc_difficulty import lc_method_note
from bpo.eval.report.cells import Table, backend_label, fmt, outcome_cells, reason_counts, standin_row
from bpo.eval.report.other_tables import model_table, turn_table
from bpo.eval.report.tables import MODEL, PROMPT, backends, is_overall
from bpo.settings.evaluate import ReportSettings
from bpo.vocab import BOTH_ORDERS, SINGLE_RANDOM
from bpo.vocab import STANDIN_BACKEND as STANDIN


class Summary:
    """summary.md and summary.html: the same banners and tables."""

    def __init__(self, table, optimizer_cells, intrinsic, settings: ReportSettings, no_call_ties: int, turn_table=()):
        self.table, self.optimizer_cells, self.intrinsic = table, optimizer_cells, intrinsic
        self.turn_table = list(turn_table)  # TURN_WINRATES rows of multi-turn test sets
        self.settings, self.no_call_ties = settings, no_call_ties
        self.overall = [r for r in table if is_overall(r)]
        # the two comparison kinds (WINRATES.comparison) get separate tables
        self.prompt_rows = [r for r in self.overall if r["comparison"] == PROMPT]
        self.model_rows = [r for r in self.overall if r["comparison"] == MODEL]
        self.judge_backends = backends(r["backend"] for r in [*table, *self.turn_table])
        self.answer_backends = backends(r["answer_backend"] for r in [*table, *self.turn_table])

    # -- prose ---------------------------------------------------------------------------------

    def banners(self) -> list[str]:
        out = []
        if STANDIN in self.judge_backends:
            out.append(
                "The verdicts in this report come from the offline stand-in, not from a model. The stand-in "
                "(backend: standin) is a deterministic text generator that lets the workflow run without an "
                "API. Its win rates say nothing about the optimizer or the prompts; they only show that every "
                "stage ran. Point eval.judge.endpoint at a real model for meaningful numbers. Rows whose "
                "backend columns say standin are marked."
            )
        standin_targets = sorted({r["target"] for r in self.overall if STANDIN in r["answer_backend"].split("+")})
        if standin_targets:
            out.append(
                f"The answers of target(s) {', '.join(standin_targets)} also come from the offline stand-in, "
                "not from a model."
            )
        for opt, testsets in self._unusable_optimizers().items():
            out.append(
                f"The output of optimizer '{opt}' was unusable for every prompt of {', '.join(testsets)}: "
                "each original prompt was compared with itself, so those rows say nothing about prompt "
                "optimization."
            )
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
            judge_line = (
                f"Judge: {judges}, but no pair needed a judge call (identical answers are ties, missing ones invalid)"
            )
        protocols = {p for r in self.table for p in r["protocol"].split("+")}
        out = [f"{judge_line}; target answers from backend(s): {', '.join(sorted(self.answer_backends)) or 'none'}."]
        if BOTH_ORDERS in protocols:
            out.append(
                "Protocol both_orders: each pair is judged twice, once with each answer shown first; agreeing "
                "verdicts count, disagreeing verdicts count as a tie (MT-bench convention)."
            )
        if SINGLE_RANDOM in protocols:
            out.append(
                "Protocol single_random (the BPO paper's): each pair is judged once, in a seeded random "
                "order; position consistency cannot be measured."
            )
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

    def models_table(self) -> Table | None:
        roles = self.settings.models
        if not roles:
            return None
        real = {True: "yes", False: "NO (stand-in)", None: "–"}
        rows = [[m.role, m.name, m.model, m.source, real[m.real]] for m in roles]
        return Table(["role", "name", "model", "runs as", "real model"], rows, set(), [m.real is False for m in roles])

    def main_table(self) -> Table:
        headers = [
            "optimizer",
            "test set",
            "target",
            "n",
            "win / tie / lose %",
            "ΔWR [CI]",
            "LC ΔWR [CI]",
            "position consistency %",
            "words original → optimized",
            "invalid",
            "fallbacks",
            "judge backend",
            "answers backend",
        ]
        rows, flagged = [], []
        for r in self.prompt_rows:
            invalid = {
                "missing answer": r["n_missing_answer"],
                "judge call failed": r["n_judge_failed"],
                "unparseable": r["n_unparseable"],
            }
            invalid_text = str(r["n_invalid"]) + (
                f" ({reason_counts({k: v for k, v in invalid.items() if v})})" if r["n_invalid"] else ""
            )
            fallbacks = f" ({reason_counts(r['fallback_reasons'])})" if r["n_fallback"] else ""
            fallback_text = str(r["n_fallback"]) + fallbacks
            rows.append(
                [
                    r["optimizer"],
                    r["testset"],
                    r["target"],
                    str(r["n"]),
                    *outcome_cells(r),
                    fmt(r["position_consistency"]),
                    f"{fmt(r['mean_len_original'], 0)} → {fmt(r['mean_len_optimized'], 0)}",
                    invalid_text,
                    fallback_text,
                    backend_label(r["backend"]),
                    backend_label(r["answer_backend"]),
                ]
            )
            flagged.append(standin_row(r))
        return Table(headers, rows, {3, 7}, flagged)

    def breakdown_table(self, column: str) -> Table | None:
        """The rows of one breakdown (``category`` or ``language``), or None when there are none."""
        rows, flagged = [], []
        for r in self.table:
            if r.get(column) is None:
                continue
            rows.append(
                [
                    r["comparison"],
                    r["optimizer"],
                    r["testset"],
                    r["target"],
                    r[column],
                    str(r["n"]),
                    str(r["n_invalid"]),
                    *outcome_cells(r),
                ]
            )
            flagged.append(standin_row(r))
        if not rows:
            return None
        headers = [
            "comparison",
            "optimizer (model B)",
            "test set",
            "target (model A)",
            column,
            "n",
            "invalid",
            "win / tie / lose %",
            "ΔWR [CI]",
            "LC ΔWR [CI]",
        ]
        return Table(headers, rows, {5, 6}, flagged)

    def optimizer_table(self) -> Table:
        rows = []
        for (opt, testset), o in self.optimizer_cells.items():
            reasons = Counter(r["fallback_reason"] for r in o if r["fallback_reason"] is not None)
            kept = sum(reasons.values())
            rows.append([opt, testset, str(len(o)), str(len(o) - kept), reason_counts(reasons) or "–"])
        return Table(
            ["optimizer", "test set", "prompts", "rewritten", "kept original (reason: count)"],
            rows,
            {2, 3},
            [False] * len(rows),
        )

    def intrinsic_table(self) -> Table | None:
        rows = []
        for opt, testsets in self.intrinsic.items():
            for name, m in testsets.items():
                rows.append(
                    [
                        opt,
                        name,
                        str(m["n"]),
                        *(
                            fmt(m[k], 3)
                            for k in (
                                "token_f1",
                                "rouge_l",
                                "exact_match",
                                "baseline_token_f1",
                                "baseline_rouge_l",
                                "unchanged",
                                "fallback",
                            )
                        ),
                    ]
                )
        if not rows:
            return None
        headers = [
            "optimizer",
            "test set",
            "n",
            "token-F1",
            "ROUGE-L",
            "exact",
            "baseline token-F1",
            "baseline ROUGE-L",
            "unchanged",
            "fallback",
        ]
        return Table(headers, rows, set(range(2, 10)), [False] * len(rows))

    def sections(self) -> list[tuple[str, list[str], Table | None]]:
        """(heading, paragraphs, table) in reading order; the first heading is the title."""
        category = self.breakdown_table("category")
        language = self.breakdown_table("language")
        intrinsic = self.intrinsic_table()
        title = "BPO evaluation: answers to optimized prompts vs answers to the original prompts"
        if self.model_rows:
            title += "; SFT data: student_bpo vs student_original"
        out = [
            (
                title,
                ["The models behind these numbers: which are real and which are the offline stand-in."],
                self.models_table(),
            )
        ]
        if self.model_rows:
            out.append(
                (
                    "SFT data: student_bpo vs student_original (model B vs model A on the same prompt)",
                    [
                        "Two students fine-tuned with one recipe from one base model: student_bpo on the answers to "
                        "the BPO-rewritten instructions, student_original on the same records' original data. Both "
                        "answer the same test questions; win = the judge prefers student_bpo's answer. The method "
                        "notes below apply."
                    ],
                    model_table(self.model_rows),
                )
            )
        out.append(("Win rates", self.method(), self.main_table() if self.prompt_rows else None))
        if category is not None:
            out.append(
                ("Per category", ["The same figures for each category of the test sets that have one."], category)
            )
        if language is not None:
            out.append(
                (
                    "Per language",
                    [
                        "The same figures for each language of the test sets that have more than "
                        "one (the language of the original prompt, identified by bpo.language; "
                        "und: too short or mixed to tell)."
                    ],
                    language,
                )
            )
        turns = turn_table(self.turn_table)
        if turns is not None:
            out.append(
                (
                    "Multi-turn, per turn",
                    [
                        "Multi-turn test sets (MT-bench layout): each user message is rewritten seeing the "
                        "optimized conversation so far and answered after it; the original conversation is played "
                        "beside it. The judge compares the two replies of each turn, shown with their whole "
                        "conversations up to that turn (the user's original messages on both sides), in both "
                        "orders. Rows 'all' cover every item of the turn, "
                        "then one row per category; fallbacks are the messages the optimizer kept."
                    ],
                    turns,
                )
            )
        out.append(
            (
                "Optimizer",
                ["How often each optimizer's rewrite was used; a kept original prompt is a fallback, with its reason."],
                self.optimizer_table(),
            )
        )
        if intrinsic is not None:
            out.append(
                (
                    "Similarity to reference rewrites",
                    [
                        "Where a test set ships reference optimized prompts (BPO test), "
                        "the optimizer's output is scored against them (lower-cased word tokens). "
                        "Baseline: the original prompt scored the same way."
                    ],
                    intrinsic,
                )
            )
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
        parts = [
            "<!DOCTYPE html><html><head><meta charset=utf-8><title>BPO evaluation</title><style>"
            "body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse;margin:.5em 0}"
            "td,th{border:1px solid #bbb;padding:3px 6px}th{background:#eee}.num{text-align:right}"
            "tr.standin td{background:#fff3cd}.banner{background:#fff3cd;border:1px solid #c9a227;"
            "padding:.5em;font-weight:bold}</style></head><body>"
        ]
        for i, (heading, paragraphs, table) in enumerate(self.sections()):
            parts.append(f"<h{1 if i == 0 else 2}>{html.escape(heading)}</h{1 if i == 0 else 2}>")
            if i == 0:
                parts += [f"<p class=banner>{html.escape(b)}</p>" for b in self.banners()]
            parts += [f"<p>{html.escape(p)}</p>" for p in paragraphs]
            if table is not None:
                parts.append(table.html())
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"
