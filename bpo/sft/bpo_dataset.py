"""A ready-made BPO-format dataset as the SFT source (no critique calls, no cost).

Records hold ``prompt`` (or ``instruction`` with an optional ``context``/``input``) and
``optimized_prompt``; ``good_res``, ``bad_res`` and ``comparison`` may be present and are
not needed. THUDM/BPO on the hub is this format (read with ``datasets.load_dataset``); a local
json/jsonl/parquet file or folder in the same format works the same way.

- ``prompt`` is taken as complete: a context, if any, is already inside it, on both sides.
- ``instruction`` + ``context``: ``optimized_prompt`` is the rewritten instruction alone, and
  the context is attached verbatim to both sides with the seeded format of :mod:`bpo.sft.core`.

Records without a prompt or an optimized prompt are counted drops. The paper's filters were
applied by the dataset's authors already; ``apply_filters`` runs ours over it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence

from bpo.language import UNDETERMINED, detect
from bpo.pairs import pair_id
from bpo.readers import ReadError, read_dataset
from bpo.settings import SFTSettings
from bpo.sft.core import (
    BPO_REASONS,
    RULE_REASONS,
    FilterReport,
    FilterRules,
    SFTError,
    check_context_formats,
    kept_row,
    write_sft,
)

log = logging.getLogger("bpo.sft")

SOURCE = "bpo_dataset"
FIELDS = ("prompt", "instruction", "context", "input", "optimized_prompt", "good_res", "bad_res", "comparison")


def _features():
    import datasets

    return datasets.Features({name: datasets.Value("string") for name in FIELDS})


def read_bpo_records(*, path: str | None, hub_id: str | None, split: str = "train") -> tuple[list[dict], str, dict]:
    """(records, origin, reader drops) from ``hub_id`` (datasets.load_dataset) or a local ``path``,
    through :func:`bpo.readers.read_dataset`."""
    if not hub_id and not path:
        raise SFTError("config sft.bpo_dataset: set hub_id (e.g. THUDM/BPO) or path when sft.source is bpo_dataset")
    try:
        raw = read_dataset(
            path=path,
            hub_id=hub_id,
            split=split,
            features=_features(),
            columns=list(FIELDS),
            what="sft.bpo_dataset",
            allow_missing=True,
        )
    except ReadError as exc:
        raise SFTError(f"config sft.bpo_dataset.{'hub_id' if hub_id else 'path'}: {exc}") from exc
    # Absent fields read as all-null columns; leave them out so the check below sees which
    # fields the dataset really has.
    table = raw.table.select([n for n in raw.table.column_names if raw.table.column(n).null_count < raw.table.num_rows])
    cols = set(table.column_names)
    if table.num_rows and not ({"prompt", "instruction"} & cols and "optimized_prompt" in cols):
        raise SFTError(
            f"{raw.origin}: not a BPO-format dataset: needs a 'prompt' or 'instruction' field and "
            f"'optimized_prompt' (found {sorted(cols)})"
        )
    return table.to_pylist(), raw.origin, dict(raw.dropped)


def _record_id(prompt: str, context: str, optimized: str, good: str | None, bad: str | None) -> str:
    if good is not None and bad is not None:
        # Same id as the data stage gives the pair (instruction, context, good, bad).
        return pair_id(prompt, context, good, bad)
    return hashlib.sha256("\x00".join(("bpo", prompt, context, optimized)).encode("utf-8")).hexdigest()[:16]


def sft_from_bpo_records(
    records: Sequence[Mapping],
    *,
    rules: FilterRules,
    seed: int,
    apply_filters: bool,
    formats: Sequence[str],
) -> tuple[list[dict], FilterReport]:
    """Kept SFT rows and the drop report from BPO-format records."""
    formats = check_context_formats(formats)
    report = FilterReport(SOURCE, BPO_REASONS + (RULE_REASONS if apply_filters else ()))
    rows, seen = [], set()
    for i, rec in enumerate(records):
        ident = f"record {i}"
        prompt = rec.get("prompt")
        if prompt is not None and prompt.strip():
            context = ""
        else:
            prompt = rec.get("instruction")
            context = rec.get("context") or rec.get("input") or ""
        report.seen(SOURCE, detect(prompt) if isinstance(prompt, str) else None)  # no language field
        optimized = rec.get("optimized_prompt")
        if prompt is None or not prompt.strip():
            report.drop(SOURCE, "missing_prompt", ident)
            continue
        if optimized is None or not optimized.strip():
            report.drop(SOURCE, "missing_optimized", ident)
            continue
        pid = _record_id(prompt, context, optimized, rec.get("good_res"), rec.get("bad_res"))
        if pid in seen:
            report.drop(SOURCE, "duplicate", f"{ident} ({pid})")
            continue
        seen.add(pid)
        if apply_filters:
            reason = rules.reason(prompt, optimized, bool(context.strip()))
            if reason:
                report.drop(SOURCE, reason, f"{ident} ({pid})")
                continue
        rows.append(
            kept_row(
                report,
                pair_id=pid,
                source=SOURCE,
                instruction=prompt,
                optimized=optimized,
                context=context,
                seed=seed,
                formats=formats,
            )
        )
    return rows, report


def build_sft_from_bpo_dataset(
    settings: SFTSettings,
    *,
    train_path: str | os.PathLike,
    val_path: str | os.PathLike,
    report_path: str | os.PathLike,
) -> dict:
    """Read the BPO-format dataset of ``settings.bpo_dataset`` and write SFT train/val and the report."""
    src = settings.bpo_dataset
    if src is None:
        raise SFTError("config sft.bpo_dataset: not set (sft.source is not bpo_dataset)")
    records, origin, reader_drops = read_bpo_records(path=src.path, hub_id=src.hub_id, split=src.split)
    log.info("sft: %d BPO-format records from %s", len(records), origin)
    rows, report = sft_from_bpo_records(
        records,
        rules=FilterRules.from_settings(settings),
        seed=settings.seed,
        apply_filters=src.apply_filters,
        formats=settings.context_formats,
    )
    for reason, n in reader_drops.items():  # unreadable records count as drops too
        report.records_in += n
        report.by_source[SOURCE]["in"] += n
        report.by_language[UNDETERMINED]["in"] += n
        report.by_language[UNDETERMINED]["dropped"][reason] += n
        report.dropped[reason] += n
        report.by_source[SOURCE]["dropped"][reason] += n
    return write_sft(
        rows,
        report,
        settings,
        inputs={"bpo_dataset": origin},
        train_path=train_path,
        val_path=val_path,
        report_path=report_path,
    )
