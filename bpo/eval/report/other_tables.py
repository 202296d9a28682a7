"""The report's tables of its two other comparison kinds: model B vs model A on the same prompts
(the sft_data students) and multi-turn test sets per turn."""

from __future__ import annotations

from bpo.eval.report.cells import Table, backend_label, fmt, outcome_cells, reason_counts, standin_row


def model_table(model_rows: list[dict]) -> Table | None:
    """The "model B vs model A on the same prompt" rows: win = model B's answer preferred."""
    if not model_rows:
        return None
    headers = [
        "model B",
        "model A",
        "test set",
        "n",
        "B win / tie / lose %",
        "ΔWR [CI]",
        "LC ΔWR [CI]",
        "position consistency %",
        "words A → B",
        "invalid",
        "judge backend",
        "answers backend",
    ]
    rows = [
        [
            r["optimizer"],
            r["target"],
            r["testset"],
            str(r["n"]),
            *outcome_cells(r),
            fmt(r["position_consistency"]),
            f"{fmt(r['mean_len_original'], 0)} → {fmt(r['mean_len_optimized'], 0)}",
            str(r["n_invalid"]),
            backend_label(r["backend"]),
            backend_label(r["answer_backend"]),
        ]
        for r in model_rows
    ]
    flagged = [standin_row(r) for r in model_rows]
    return Table(headers, rows, {3, 7}, flagged)


def turn_table(turn_rows: list[dict]) -> Table | None:
    """TURN_WINRATES rows (multi-turn test sets): per turn, then per category within a turn."""
    rows, flagged = [], []
    for r in turn_rows:
        fallback_text = str(r["n_fallback"]) + (f" ({reason_counts(r['fallback_reasons'])})" if r["n_fallback"] else "")
        rows.append(
            [
                r["optimizer"],
                r["testset"],
                r["target"],
                str(r["turn"]),
                r["category"] or "all",
                str(r["n"]),
                str(r["n_invalid"]),
                *outcome_cells(r),
                fallback_text,
            ]
        )
        flagged.append(standin_row(r))
    if not rows:
        return None
    headers = [
        "optimizer",
        "test set",
        "target",
        "turn",
        "category",
        "n",
        "invalid",
        "win / tie / lose %",
        "ΔWR [CI]",
        "LC ΔWR [CI]",
        "fallbacks",
    ]
    return Table(headers, rows, {3, 5, 6}, flagged)
