"""The evaluation report: the win-rate table (Parquet), summary.md / summary.html, two plots and
the intrinsic metrics, from every (optimizer, test set, target) the judgments cover.

The parts live beside this file: :mod:`.tables` computes the rows, :mod:`.summary` writes the
Markdown and HTML, :mod:`.plots` draws the figures. When any verdict comes from the offline
stand-in, the plots' titles and the summaries say so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from bpo.atomic import write_json, write_text
from bpo.eval.lc_difficulty import report_difficulty
from bpo.eval.report.plots import compare_plot, winrate_plot
from bpo.eval.report.summary import Summary
from bpo.eval.report.tables import (
    MODEL,
    PROMPT,
    STANDIN_NOTE,
    backends,
    cell_rows,
    group_by,
    intrinsic_metrics,
    is_overall,
    item_languages,
    joined_cells,
    rows_of,
    valid_pairs,
)
from bpo.eval.report.turns import turn_rows
from bpo.schemas import ANSWERS, JUDGMENTS, OPTIMIZED, TURN_WINRATES, WINRATES, write_table
from bpo.settings.evaluate import ReportSettings
from bpo.vocab import NO_CALL
from bpo.vocab import STANDIN_BACKEND as STANDIN

log = logging.getLogger(__name__)

__all__ = ["build_report"]


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
    turn_judgments: Sequence[str | Path] = (),
    conversations: Sequence[str | Path] = (),
    out_turn_table: str | Path | None = None,
) -> list[dict]:
    """Report on every (optimizer, test set, target) in ``judgments``; rows are matched to
    ``answers`` and ``optimized`` by their columns, not by list position. Multi-turn test sets:
    ``turn_judgments`` with their ``conversations``, per turn in ``out_turn_table`` and a section
    of the summary. Returns the table rows."""
    cell = ("optimizer", "testset", "target")
    answer_cells = group_by((r for p in answers for r in rows_of(p, ANSWERS)), cell)
    optimizer_cells = group_by((r for p in optimized for r in rows_of(p, OPTIMIZED)), ("optimizer", "testset"))
    cells = joined_cells(judgments, JUDGMENTS, answer_cells, cell, "answers")
    # eval.report.lc.method alpacaeval: item difficulty per test set, from every cell that shares it
    difficulty = (
        {}
        if settings.lc.method == "length_only"
        else report_difficulty(
            {key: valid_pairs(cell_j, {r["item_id"]: r for r in a}) for key, cell_j, a in cells}, settings.lc
        )
    )
    languages: dict[str, dict[str, str]] = {}  # test set -> item id -> language of its instruction
    for (_, testset), o in optimizer_cells.items():
        languages.setdefault(testset, {}).update(item_languages(o))
    rows, no_call_ties = [], 0
    for key, cell_j, a in cells:
        comparison = MODEL if (key[0], key[2]) in settings.model_pairs else PROMPT
        rows += cell_rows(
            cell_j,
            a,
            optimizer_cells.get(key[:2], []),
            settings,
            difficulty.get(key[1]),
            languages.get(key[1]),
            comparison,
        )
        no_call_ties += sum(r["backend"] == NO_CALL and r["outcome"] == "tie" for r in cell_j)
    table = write_table(rows, out_table, WINRATES).to_pylist()
    turn_table = turn_rows(turn_judgments, conversations, settings)
    if out_turn_table is not None:
        turn_table = write_table(turn_table, out_turn_table, TURN_WINRATES).to_pylist()

    intrinsic: dict[str, dict] = {}
    for (opt, testset), o in optimizer_cells.items():
        metrics = intrinsic_metrics(o)
        if metrics is not None:
            intrinsic.setdefault(opt, {})[testset] = metrics
    write_json(intrinsic, out_intrinsic, indent=2, sort_keys=True, ensure_ascii=True)

    overall = [r for r in table if is_overall(r)]
    judge_backends = backends(r["backend"] for r in table)
    note = STANDIN_NOTE if STANDIN in judge_backends else None
    winrate_plot(overall, Path(out_plot), note)
    compare_plot(overall, Path(out_compare_plot), note, settings)
    summary = Summary(table, optimizer_cells, intrinsic, settings, no_call_ties, turn_table)
    write_text(summary.markdown(), out_summary)
    if out_summary_html is not None:
        write_text(summary.html(), out_summary_html)
    log.info("report: %d rows (%d overall) -> %s", len(table), len(overall), out_table)
    return table
