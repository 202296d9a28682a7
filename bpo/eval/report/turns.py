"""Report rows of multi-turn test sets: the win-rate figures per turn (then per category within
a turn), from the per-turn judgments and the conversations -> ``winrates_turns.parquet``.

Each turn is its own comparison (turn 2's pairs are the second replies, judged with the whole
conversation in view), so every figure of the single-turn table is computed per (optimizer,
test set, target, turn) with the same functions (:func:`bpo.eval.report.tables.cell_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bpo.eval.lc_difficulty import report_difficulty
from bpo.eval.report.tables import cell_rows, group_by, joined_cells, rows_of, valid_pairs
from bpo.schemas import CONVERSATIONS, TURN_JUDGMENTS
from bpo.settings.evaluate import ReportSettings

_CELL = ("optimizer", "testset", "target", "turn")


def _label(testset: str, turn: int, settings: ReportSettings) -> str:
    # joint difficulty is fitted per turn (turn 2 is another question); a difficulty file is by test set
    return f"{testset}/turn{turn}" if settings.lc.difficulty == "joint" else testset


def turn_rows(
    judgments: Sequence[str | Path], conversations: Sequence[str | Path], settings: ReportSettings
) -> list[dict]:
    """TURN_WINRATES rows: per (optimizer, test set, target, turn) the overall row, then categories."""
    conv = group_by((r for p in conversations for r in rows_of(p, CONVERSATIONS)), _CELL)
    cells = joined_cells(judgments, TURN_JUDGMENTS, conv, _CELL, "conversations")
    difficulty = (
        {}
        if settings.lc.method == "length_only"
        else report_difficulty(
            {
                (opt, _label(ts, turn, settings), tg): valid_pairs(cell_j, {r["item_id"]: r for r in c})
                for (opt, ts, tg, turn), cell_j, c in cells
            },
            settings.lc,
        )
    )
    rows = []
    for (_opt, ts, _tg, turn), cell_j, c in sorted(cells, key=lambda x: x[0]):
        for row in cell_rows(cell_j, c, c, settings, difficulty.get(_label(ts, turn, settings))):
            rows.append({**row, "turn": turn})
    return rows
