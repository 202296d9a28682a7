"""A ready-made BPO-format dataset as the SFT source (no critique calls, no cost).

Records hold ``prompt`` (or ``instruction`` with an optional ``context``/``input``) and
``optimized_prompt``; ``good_res``, ``bad_res`` and ``comparison`` may be present and are
not needed. THUDM/BPO on the hub is this format (read with ``datasets.load_dataset``); a local
json/jsonl/parquet file or folder in the same format works the same way.

- ``prompt`` is taken as complete: a context, if any, is already inside it, on both sides.
- ``instruction`` + ``context``: ``optimized_prompt`` is the rewritten instruction alone, and
  the context is attached verbatim to both sides with the seeded format of :mod:`bpo.sft`.

Records without a prompt or an optimized prompt are counted drops. The paper's filters were
applied by the dataset's authors already; ``apply_filters`` runs ours over it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Mapping, Sequence

import pyarrow as pa

from bpo.sft import (
    BPO_REASONS,
    DEFAULT_CONTEXT_FORMATS,
    RULE_REASONS,
    FilterRules,
    SFTError,
    _Report,
    _settings,
    _write,
    check_context_formats,
    kept_row,
)

log = logging.getLogger(__name__)

SOURCE = "bpo_dataset"
FIELDS = ("prompt", "instruction", "context", "input", "optimized_prompt", "good_res", "bad_res", "comparison")


def _features():
    import datasets

    return datasets.Features({name: datasets.Value("string") for name in FIELDS})


def _as_strings(table: pa.Table, origin: str) -> pa.Table:
    cols, names = [], []
    for name in FIELDS:
        if name not in table.column_names:
            continue
        col = table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_null(col.type)):
            raise SFTError(f"{origin}: column {name!r} has type {col.type}, expected text")
        cols.append(col.cast(pa.string()))
        names.append(name)
    return pa.Table.from_arrays(cols, names=names)


def read_bpo_records(*, path: str | None, hub_id: str | None, split: str = "train") -> tuple[list[dict], str, dict]:
    """(records, origin, reader drops) from ``hub_id`` (datasets.load_dataset) or a local ``path``."""
    from bpo.readers import ReadError, read_local

    if hub_id:
        import datasets

        origin = f"hub:{hub_id} split={split}"
        try:
            ds = datasets.load_dataset(hub_id, split=split)
        except Exception as exc:  # network, unknown id or split, auth: all end here
            raise SFTError(f"config sft.bpo_dataset.hub_id: {origin}: load_dataset failed: {type(exc).__name__}: {exc}") from exc
        table = ds.with_format("arrow")[:] if len(ds) else ds.data.table
        table = _as_strings(table, origin)
        dropped: dict = {}
    elif path:
        origin = str(path)
        try:
            raw = read_local(path, features=_features(), columns=list(FIELDS))
        except ReadError as exc:
            raise SFTError(f"config sft.bpo_dataset.path: {exc}") from exc
        table, dropped = raw.table, dict(raw.dropped)
        # The local reader fills absent columns with nulls; drop all-null ones so the check
        # below sees which fields the file really has.
        keep = [n for n in table.column_names if table.column(n).null_count < table.num_rows]
        table = table.select(keep)
    else:
        raise SFTError("config sft.bpo_dataset: set hub_id (e.g. THUDM/BPO) or path when sft.source is bpo_dataset")

    cols = set(table.column_names)
    if table.num_rows and not ({"prompt", "instruction"} & cols and "optimized_prompt" in cols):
        raise SFTError(
            f"{origin}: not a BPO-format dataset: needs a 'prompt' or 'instruction' field and "
            f"'optimized_prompt' (found {sorted(cols)})"
        )
    return table.to_pylist(), origin, dropped


def _record_id(prompt: str, context: str, optimized: str, good: str | None, bad: str | None) -> str:
    if good is not None and bad is not None:
        # Same id as the data stage gives the pair (instruction, context, good, bad).
        from bpo.pairs import pair_id

        return pair_id(prompt, context, good, bad)
    return hashlib.sha256("\x00".join(("bpo", prompt, context, optimized)).encode("utf-8")).hexdigest()[:16]


def sft_from_bpo_records(
    records: Sequence[Mapping],
    *,
    rules: FilterRules,
    seed: int,
    apply_filters: bool,
    formats: Sequence[str] = DEFAULT_CONTEXT_FORMATS,
) -> tuple[list[dict], _Report]:
    formats = check_context_formats(formats)
    report = _Report(SOURCE, BPO_REASONS + (RULE_REASONS if apply_filters else ()))
    rows, seen = [], set()
    for i, rec in enumerate(records):
        report.seen(SOURCE)
        ident = f"record {i}"
        prompt = rec.get("prompt")
        if prompt is not None and prompt.strip():
            context = ""
        else:
            prompt = rec.get("instruction")
            context = rec.get("context") or rec.get("input") or ""
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
        rows.append(kept_row(report, pair_id=pid, source=SOURCE, instruction=prompt, optimized=optimized,
                             context=context, seed=seed, formats=formats))
    return rows, report


def build_sft_from_bpo_dataset(
    *,
    path: str | None,
    hub_id: str | None,
    split: str,
    apply_filters: bool,
    train_path: str | os.PathLike,
    val_path: str | os.PathLike,
    report_path: str | os.PathLike,
    seed: int,
    val_fraction: float,
    rules: FilterRules,
    formats: Sequence[str] = DEFAULT_CONTEXT_FORMATS,
) -> dict:
    """Read a BPO-format dataset and write SFT train/val and the filter report."""
    records, origin, reader_drops = read_bpo_records(path=path, hub_id=hub_id, split=split)
    log.info("sft: %d BPO-format records from %s", len(records), origin)
    rows, report = sft_from_bpo_records(records, rules=rules, seed=seed, apply_filters=apply_filters, formats=formats)
    for reason, n in reader_drops.items():  # unreadable records count as drops too
        report.records_in += n
        report.by_source[SOURCE]["in"] += n
        report.dropped[reason] += n
        report.by_source[SOURCE]["dropped"][reason] += n
    settings = _settings(rules, seed, val_fraction, formats, apply_filters=apply_filters)
    return _write(rows, report, train_path=train_path, val_path=val_path, report_path=report_path, seed=seed,
                  val_fraction=val_fraction, settings=settings, inputs={"bpo_dataset": origin}, formats=formats)
