"""Report plots: stacked win / tie / lose bars, and ΔWR with LC ΔWR per test set × target."""

from __future__ import annotations

import math
from pathlib import Path

from bpo.atomic import save_figure
from bpo.eval.report.cells import interval
from bpo.settings.evaluate import ReportSettings


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def winrate_plot(table, path: Path, title_note: str | None) -> None:
    """Stacked win / tie / lose bars, one per optimizer × test set × target."""
    plt = _pyplot()
    labels = [
        f"{r['optimizer']} · {r['testset']} / {r['target']} (n={r['n'] - r['n_invalid']})\n"
        f"ΔWR {interval(r['delta_wr'], r['delta_wr_low'], r['delta_wr_high'])}"
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


def compare_plot(table, path: Path, title_note: str | None, settings: ReportSettings) -> None:
    """Optimizers at a glance: ΔWR and LC ΔWR with their intervals, one panel per test set × target."""
    plt = _pyplot()
    panels: dict[tuple[str, str], list[dict]] = {}
    for r in table:
        panels.setdefault((r["testset"], r["target"]), []).append(r)
    cols = min(2, max(1, len(panels)))
    nrows = math.ceil(max(1, len(panels)) / cols)
    optimizers = max((len(rows) for rows in panels.values()), default=1)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, 1.4 + (0.55 * optimizers + 0.8) * nrows), squeeze=False)
    series = (("delta_wr", "ΔWR", "#1565c0", "o", -0.15), ("lc_delta_wr", "LC ΔWR", "#ef6c00", "s", 0.15))
    for ax, ((testset, target), rows) in zip(axes.flat, panels.items()):
        y = list(range(len(rows)))
        for col, label, color, marker, offset in series:
            pts = [
                (i + offset, r[col], r[f"{col}_low"], r[f"{col}_high"])
                for i, r in zip(y, rows)
                if r[col] is not None and not math.isnan(r[col])
            ]
            if pts:
                ax.errorbar(
                    [p[1] for p in pts],
                    [p[0] for p in pts],
                    xerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
                    fmt=marker,
                    color=color,
                    capsize=3,
                    label=label,
                )
        ax.axvline(0, color="#555", linewidth=0.8)
        labels = [
            r["optimizer"] + ("" if r["lc_delta_wr"] is not None else f"\n(LC: < {settings.lc_min_pairs} pairs)")
            for r in rows
        ]
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlim(-105, 105)
        ax.set_title(f"{testset} / {target}", fontsize=9)
        ax.set_xlabel("percentage points (optimized vs original)", fontsize=8)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    title = f"ΔWR and length-controlled ΔWR with {round(100 * settings.confidence)}% bootstrap intervals"
    if title_note:
        title += f"\n{title_note}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
