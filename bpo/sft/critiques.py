"""SFT rows from the critique stage: PAIRS + CRITIQUES -> filtered, context re-attached,
history (the earlier turns of a multi-turn pair) carried into the SFT row."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence

from bpo.schemas import CRITIQUES, PAIRS, read_table
from bpo.settings import SFTSettings
from bpo.sft.core import (
    CRITIQUE_REASONS,
    RULE_REASONS,
    FilterReport,
    FilterRules,
    check_context_formats,
    kept_row,
    write_sft,
)

log = logging.getLogger("bpo.sft")


def sft_from_critiques(
    pairs: Iterable[Mapping],
    critiques: Iterable[Mapping],
    *,
    rules: FilterRules,
    seed: int,
    formats: Sequence[str],
) -> tuple[list[dict], FilterReport]:
    """Kept SFT rows (input order) and the drop report, from PAIRS rows and CRITIQUES rows."""
    formats = check_context_formats(formats)
    by_id = {p["pair_id"]: p for p in pairs}
    report = FilterReport("critiques", CRITIQUE_REASONS + RULE_REASONS)
    rows, seen = [], set()
    for c in critiques:
        pid, source = c["pair_id"], c["source"]
        pair = by_id.get(pid)
        report.seen(source, pair["language"] if pair else None)
        status = c["status"]
        optimized = c["optimized_instruction"]
        if pid in seen:
            reason = "duplicate"
        elif pair is None:
            reason = "no_pair"
        elif status == "error":
            reason = "call_error"
        elif status == "refused":
            reason = "refused"
        elif status == "truncated":
            reason = "truncated"
        elif status != "ok":
            reason = f"status_{status}"
        elif optimized is None or not optimized.strip():
            reason = "parse_failure"
        else:
            reason = rules.reason(
                pair["instruction"], optimized, bool(pair["context"].strip()), pair.get("history") or ()
            )
        seen.add(pid)
        if reason:
            report.drop(source, reason, pid)
            continue
        rows.append(
            kept_row(
                report,
                pair_id=pid,
                source=source,
                instruction=pair["instruction"],
                optimized=optimized,
                context=pair["context"],
                seed=seed,
                formats=formats,
                history=pair.get("history") or (),
            )
        )
    return rows, report


def build_sft_from_critiques(
    settings: SFTSettings,
    *,
    pairs_path: str | os.PathLike,
    critique_paths: Sequence[str | os.PathLike],
    train_path: str | os.PathLike,
    val_path: str | os.PathLike,
    report_path: str | os.PathLike,
) -> dict:
    """Read PAIRS and CRITIQUES files, filter, attach contexts, split, write SFT + report."""
    pairs = read_table(pairs_path, PAIRS).to_pylist()
    critiques: list[dict] = []
    for path in critique_paths:
        critiques.extend(read_table(path, CRITIQUES).to_pylist())
    rows, report = sft_from_critiques(
        pairs,
        critiques,
        rules=FilterRules.from_settings(settings),
        seed=settings.seed,
        formats=settings.context_formats,
    )
    critiqued = {c["pair_id"] for c in critiques}
    sources = {c["source"] for c in critiques}
    uncritiqued = sum(1 for p in pairs if p["source"] in sources and p["pair_id"] not in critiqued)
    if uncritiqued:
        log.warning("sft: %d pair(s) of the critiqued sources have no critique row", uncritiqued)
    inputs = {
        "pairs": str(pairs_path),
        "critiques": [str(p) for p in critique_paths],
        "pairs_without_critique": uncritiqued,
    }
    return write_sft(
        rows, report, settings, inputs=inputs, train_path=train_path, val_path=val_path, report_path=report_path
    )
