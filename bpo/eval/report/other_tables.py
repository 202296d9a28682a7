"""The report's tables of its two other comparison kinds: model B vs model A on the same prompts
(the sft_data students) and multi-turn test sets per turn."""

from __future__ import annotations

from bpo.eval.report.cells import Table, backend_label, fmt, interval, reason_counts
from bpo.vocab import STANDIN_BACKEND as STANDIN


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
            f"{fmt(r['win'])} / {fmt(r['tie'])} / {fmt(r['lose'])}",
            interval(r["delta_wr"], r["delta_wr_low"], r["delta_wr_high"]),
            interval(r["lc_delta_wr"], r["lc_delta_wr_low"], r["lc_delta_wr_high"]),
            fmt(r["position_consistency"]),
            f"{fmt(r['mean_len_original'], 0)} → {fmt(r['mean_len_optimized'], 0)}",
            str(r["n_invalid"]),
            backend_label(r["backend"]),
            backend_label(r["answer_backend"]),
        ]
        for r in model_rows
    ]
    flagged = [STANDIN in (r["backend"] + "+" + r["answer_backend"]).split("+") for r in model_rows]
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
                f"{fmt(r['win'])} / {fmt(r['tie'])} / {fmt(r['lose'])}",
                interval(r["delta_wr"], r["delta_wr_low"], r["delta_wr_high"]),
                interval(r["lc_delta_wr"], r["lc_delta_wr_low"], r["lc_delta_wr_high"]),
                fallback_text,
            ]
        )
        flagged.append(STANDIN in (r["backend"] + "+" + r["answer_backend"]).split("+"))
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
