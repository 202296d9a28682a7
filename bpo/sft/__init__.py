"""The SFT dataset for the optimizer (rule sft): prompt -> optimized prompt, filtered and split.

Two sources share one core (:mod:`bpo.sft.core`: filter rules, context formats, split, drop
report, writing): the critique stage's output (:mod:`bpo.sft.critiques`, the paper's pipeline)
or a ready-made BPO-format dataset (:mod:`bpo.sft.bpo_dataset`). :func:`build_sft` picks one by
``settings.source``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from bpo.settings import SFTSettings
from bpo.sft.bpo_dataset import build_sft_from_bpo_dataset, read_bpo_records, sft_from_bpo_records
from bpo.sft.core import (
    FilterReport,
    FilterRules,
    SFTError,
    attach_context,
    check_context_formats,
    context_format,
    is_val,
    split_rows,
    word_count,
)
from bpo.sft.critiques import build_sft_from_critiques, sft_from_critiques


def build_sft(
    settings: SFTSettings,
    *,
    train_path: str | os.PathLike,
    val_path: str | os.PathLike,
    report_path: str | os.PathLike,
    pairs_path: str | os.PathLike | None = None,
    critique_paths: Sequence[str | os.PathLike] = (),
) -> dict:
    """Entry point of the ``sft`` rule: SFT train/val and the filter report from the source that
    ``settings.source`` names (``pairs_path`` and ``critique_paths`` only in critiques mode)."""
    outputs = {"train_path": train_path, "val_path": val_path, "report_path": report_path}
    if settings.source == "critiques":
        if pairs_path is None:
            raise SFTError("sft: critiques mode needs the pairs file (results/pairs/all.parquet)")
        return build_sft_from_critiques(settings, pairs_path=pairs_path, critique_paths=list(critique_paths), **outputs)
    if settings.source == "bpo_dataset":
        return build_sft_from_bpo_dataset(settings, **outputs)
    raise SFTError(f"config sft.source: {settings.source!r} is not one of 'critiques', 'bpo_dataset'")


def expected_stops() -> tuple[type[BaseException], ...]:
    """Errors that end the sft job with a one-line reason: unusable inputs or settings."""
    from bpo.schemas import SchemaError

    return (SFTError, SchemaError)


__all__ = [
    "FilterReport",
    "FilterRules",
    "SFTError",
    "attach_context",
    "build_sft",
    "build_sft_from_bpo_dataset",
    "build_sft_from_critiques",
    "check_context_formats",
    "context_format",
    "expected_stops",
    "is_val",
    "read_bpo_records",
    "sft_from_bpo_records",
    "sft_from_critiques",
    "split_rows",
    "word_count",
]
