"""Cells of the report's tables: number formatting and one table rendered as Markdown and HTML."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from bpo.vocab import STANDIN_BACKEND as STANDIN


def fmt(x, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def interval(value, low, high) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"


def outcome_cells(r) -> list[str]:
    """A WINRATES row's win / tie / lose, ΔWR and LC ΔWR cells (with their intervals)."""
    return [
        f"{fmt(r['win'])} / {fmt(r['tie'])} / {fmt(r['lose'])}",
        interval(r["delta_wr"], r["delta_wr_low"], r["delta_wr_high"]),
        interval(r["lc_delta_wr"], r["lc_delta_wr_low"], r["lc_delta_wr_high"]),
    ]


def standin_row(r) -> bool:
    """A row with numbers from the offline stand-in (judge or answers): flagged in the tables."""
    return STANDIN in (r["backend"] + "+" + r["answer_backend"]).split("+")


def reason_counts(counts) -> str:
    counts = dict(counts)  # Parquet maps read back as (key, value) pairs
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def backend_label(value: str) -> str:
    return f"{value} (stand-in, not a model)" if STANDIN in value.split("+") else value


@dataclass
class Table:
    """One table, rendered as Markdown and as HTML from the same cells."""

    headers: list[str]
    rows: list[list[str]]
    right: set[int]  # right-aligned (numeric) columns
    flagged: list[bool]  # rows with numbers from the stand-in

    def markdown(self) -> list[str]:
        align = ["---:" if i in self.right else "---" for i in range(len(self.headers))]
        return [
            "| " + " | ".join(self.headers) + " |",
            "|" + "|".join(align) + "|",
            *("| " + " | ".join(r) + " |" for r in self.rows),
        ]

    def html(self) -> str:
        def cells(tag, values):
            return "".join(
                f"<{tag}{' class=num' if i in self.right else ''}>{html.escape(v)}</{tag}>"
                for i, v in enumerate(values)
            )

        body = "".join(
            f"<tr{' class=standin' if flag else ''}>{cells('td', r)}</tr>" for r, flag in zip(self.rows, self.flagged)
        )
        return f"<table><thead><tr>{cells('th', self.headers)}</tr></thead><tbody>{body}</tbody></table>"
