"""SFT dataset: filter critiques (or a BPO-format dataset) into train/val (prompt -> optimized prompt).

The paper's rules decide which rewrites are kept: a missing optimized instruction (parse
failure), an original more than 2x the optimized length in words, an optimized more than 6x
the original, or a leftover "[protected" marker drops the record. Thresholds come from config.
Every drop is counted by reason in the filter report; nothing disappears silently.

The context is never rewritten. It is attached verbatim to both the original and the optimized
instruction with one of a few joining formats, chosen per pair id with a seeded hash, so the
optimizer sees context before and after the instruction, and the same pair always gets the
same format. The train/val split is a seeded hash of the pair id: a pair stays on its side
when other pairs are added or removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from bpo.schemas import CRITIQUES, PAIRS, SFT, read_table, write_table

log = logging.getLogger(__name__)

DEFAULT_CONTEXT_FORMATS = (
    "{instruction}\n{context}",
    "{context}\n{instruction}",
    "{instruction}\n\n{context}",
    "{context}\n\n{instruction}",
)

# Drop reasons in report order. Critique mode uses the first block, BPO-format mode the second;
# the rule reasons are shared.
CRITIQUE_REASONS = ("call_error", "refused", "truncated", "parse_failure", "no_pair", "duplicate")
BPO_REASONS = ("missing_prompt", "missing_optimized", "duplicate")
RULE_REASONS = ("original_too_long", "optimized_too_long", "protected_marker")

_EXAMPLES = 5


class SFTError(ValueError):
    """The SFT inputs or settings are unusable (names the file, record or config key)."""


@dataclass(frozen=True)
class FilterRules:
    """The paper's filtering rules; a ratio of None switches that rule off."""

    max_original_to_optimized: float | None = 2.0
    max_optimized_to_original: float | None = 6.0
    protected_markers: tuple[str, ...] = ("[protected",)
    length_rules_with_context: bool = True

    def reason(self, original: str, optimized: str, has_context: bool) -> str | None:
        """The rule that drops (original instruction, optimized instruction), or None to keep."""
        low = optimized.lower()
        if any(m.lower() in low for m in self.protected_markers):
            return "protected_marker"
        if has_context and not self.length_rules_with_context:
            return None
        n_orig, n_opt = word_count(original), word_count(optimized)
        if self.max_original_to_optimized is not None and n_orig > self.max_original_to_optimized * n_opt:
            return "original_too_long"
        if self.max_optimized_to_original is not None and n_opt > self.max_optimized_to_original * n_orig:
            return "optimized_too_long"
        return None


def word_count(text: str) -> int:
    return len(text.split())


def _hash_unit(*parts: object) -> float:
    """A uniform number in [0, 1) from a sha256 of ``parts`` (stable across processes)."""
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def check_context_formats(formats: Sequence[str]) -> tuple[str, ...]:
    formats = tuple(formats)
    if not formats:
        raise SFTError("config sft.context_formats: at least one format is needed")
    for f in formats:
        if f.count("{instruction}") != 1 or f.count("{context}") != 1:
            raise SFTError(f"config sft.context_formats: {f!r} must contain {{instruction}} and {{context}} exactly once")
    return formats


def context_format(pair_id: str, seed: int, formats: Sequence[str]) -> str:
    """The joining format of ``pair_id``: seeded, deterministic, independent of other pairs."""
    return formats[int(_hash_unit(seed, "context_format", pair_id) * len(formats))]


def attach_context(text: str, context: str, fmt: str) -> str:
    """``text`` joined with ``context`` by ``fmt``; the context is inserted byte for byte."""
    if not context or not context.strip():
        return text
    # Split on the placeholders rather than str.format, so braces in the data stay literal.
    if fmt.index("{instruction}") < fmt.index("{context}"):
        head, rest = fmt.split("{instruction}")
        mid, tail = rest.split("{context}")
        return f"{head}{text}{mid}{context}{tail}"
    head, rest = fmt.split("{context}")
    mid, tail = rest.split("{instruction}")
    return f"{head}{context}{mid}{text}{tail}"


def is_val(pair_id: str, seed: int, val_fraction: float) -> bool:
    return _hash_unit(seed, "split", pair_id) < val_fraction


@dataclass
class _Report:
    mode: str
    reasons: tuple[str, ...]
    records_in: int = 0
    dropped: Counter = field(default_factory=Counter)
    by_source: dict = field(default_factory=lambda: defaultdict(lambda: {"in": 0, "kept": 0, "dropped": Counter()}))
    examples: dict = field(default_factory=lambda: defaultdict(list))
    formats_used: Counter = field(default_factory=Counter)

    def seen(self, source: str) -> None:
        self.records_in += 1
        self.by_source[source]["in"] += 1

    def drop(self, source: str, reason: str, ident: str) -> None:
        self.dropped[reason] += 1
        self.by_source[source]["dropped"][reason] += 1
        if len(self.examples[reason]) < _EXAMPLES:
            self.examples[reason].append(ident)

    def keep(self, source: str) -> None:
        self.by_source[source]["kept"] += 1

    def to_dict(self, train: int, val: int, settings: dict, inputs: dict, formats: Sequence[str]) -> dict:
        reasons = list(self.reasons) + [r for r in sorted(self.dropped) if r not in self.reasons]
        return {
            "mode": self.mode,
            "inputs": inputs,
            "records_in": self.records_in,
            "kept": train + val,
            "train": train,
            "val": val,
            "dropped_total": sum(self.dropped.values()),
            "dropped": {r: self.dropped.get(r, 0) for r in reasons},
            "by_source": {
                s: {"in": v["in"], "kept": v["kept"], "dropped": dict(sorted(v["dropped"].items()))}
                for s, v in sorted(self.by_source.items())
            },
            "drop_examples": {r: ids for r, ids in sorted(self.examples.items())},
            "context_formats_used": {formats[i]: n for i, n in sorted(self.formats_used.items())},
            "settings": settings,
        }


def kept_row(report: _Report, *, pair_id: str, source: str, instruction: str, optimized: str, context: str,
             seed: int, formats: Sequence[str]) -> dict:
    """The SFT row of a record that passed the filters: the context attached verbatim to both
    sides in the pair's seeded format. Counts the record (and that format, where there is a
    context) in ``report``."""
    fmt = context_format(pair_id, seed, formats)
    if context.strip():
        report.formats_used[formats.index(fmt)] += 1
    report.keep(source)
    return {
        "pair_id": pair_id,
        "source": source,
        "prompt": attach_context(instruction, context, fmt),
        "optimized_prompt": attach_context(optimized.strip(), context, fmt),
    }


def split_rows(rows: list[dict], *, seed: int, val_fraction: float) -> tuple[list[dict], list[dict]]:
    """Seeded hash split by pair id. With ``val_fraction`` > 0 and two or more rows, val gets at
    least the row with the smallest hash, so a tiny run still has a validation set."""
    if not 0 <= val_fraction < 1:
        raise SFTError(f"config sft.val_fraction: {val_fraction} is not in [0, 1)")
    val_ids = {r["pair_id"] for r in rows if is_val(r["pair_id"], seed, val_fraction)}
    if val_fraction > 0 and not val_ids and len(rows) >= 2:
        val_ids = {min((r["pair_id"] for r in rows), key=lambda p: _hash_unit(seed, "split", p))}
    if rows and len(val_ids) == len(rows) and len(rows) >= 2:
        # Keep training data: the pair with the largest hash goes back to train.
        val_ids.discard(max(val_ids, key=lambda p: _hash_unit(seed, "split", p)))
    train = [r for r in rows if r["pair_id"] not in val_ids]
    val = [r for r in rows if r["pair_id"] in val_ids]
    return train, val


def _write(rows: list[dict], report: _Report, *, train_path, val_path, report_path, seed: int,
           val_fraction: float, settings: dict, inputs: dict, formats: Sequence[str]) -> dict:
    if not rows:
        # An empty training set is never what anyone wants: stop here, with the counts, rather
        # than in the trainer three stages later.
        dropped = {k: v for k, v in report.dropped.items() if v}
        raise SFTError(
            f"sft: no record left for training: {report.records_in} in, dropped {dropped or 'none'}. "
            f"Check the inputs {inputs} and the filter thresholds under config sft."
        )
    train, val = split_rows(rows, seed=seed, val_fraction=val_fraction)
    write_table(train, train_path, SFT)
    write_table(val, val_path, SFT)
    out = report.to_dict(len(train), len(val), settings, inputs, formats)
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(report_path).with_name(f".{Path(report_path).name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, report_path)
    log.info("sft: %d records in, %d kept (%d train, %d val), dropped %s",
             out["records_in"], out["kept"], out["train"], out["val"],
             {k: v for k, v in out["dropped"].items() if v})
    return out


def _settings(rules: FilterRules, seed: int, val_fraction: float, formats: Sequence[str], **extra) -> dict:
    return {
        "seed": seed,
        "val_fraction": val_fraction,
        "max_original_to_optimized": rules.max_original_to_optimized,
        "max_optimized_to_original": rules.max_optimized_to_original,
        "protected_markers": list(rules.protected_markers),
        "length_rules_with_context": rules.length_rules_with_context,
        "context_formats": list(formats),
        **extra,
    }


# ---------------------------------------------------------------- from critiques


def sft_from_critiques(
    pairs: Iterable[Mapping],
    critiques: Iterable[Mapping],
    *,
    rules: FilterRules,
    seed: int,
    formats: Sequence[str] = DEFAULT_CONTEXT_FORMATS,
) -> tuple[list[dict], _Report]:
    """Kept SFT rows (input order) and the drop report, from PAIRS rows and CRITIQUES rows."""
    formats = check_context_formats(formats)
    by_id = {p["pair_id"]: p for p in pairs}
    report = _Report("critiques", CRITIQUE_REASONS + RULE_REASONS)
    rows, seen = [], set()
    for c in critiques:
        pid, source = c["pair_id"], c["source"]
        report.seen(source)
        pair = by_id.get(pid)
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
            reason = rules.reason(pair["instruction"], optimized, bool(pair["context"].strip()))
        seen.add(pid)
        if reason:
            report.drop(source, reason, pid)
            continue
        rows.append(kept_row(report, pair_id=pid, source=source, instruction=pair["instruction"],
                             optimized=optimized, context=pair["context"], seed=seed, formats=formats))
    return rows, report


def build_sft_from_critiques(
    *,
    pairs_path: str | os.PathLike,
    critique_paths: Sequence[str | os.PathLike],
    train_path: str | os.PathLike,
    val_path: str | os.PathLike,
    report_path: str | os.PathLike,
    seed: int,
    val_fraction: float,
    rules: FilterRules,
    formats: Sequence[str] = DEFAULT_CONTEXT_FORMATS,
) -> dict:
    """Read PAIRS and CRITIQUES files, filter, attach contexts, split, write SFT + report."""
    pairs = read_table(pairs_path, PAIRS).to_pylist()
    critiques: list[dict] = []
    for path in critique_paths:
        critiques.extend(read_table(path, CRITIQUES).to_pylist())
    rows, report = sft_from_critiques(pairs, critiques, rules=rules, seed=seed, formats=formats)
    critiqued = {c["pair_id"] for c in critiques}
    sources = {c["source"] for c in critiques}
    uncritiqued = sum(1 for p in pairs if p["source"] in sources and p["pair_id"] not in critiqued)
    if uncritiqued:
        log.warning("sft: %d pair(s) of the critiqued sources have no critique row", uncritiqued)
    inputs = {"pairs": str(pairs_path), "critiques": [str(p) for p in critique_paths],
              "pairs_without_critique": uncritiqued}
    return _write(rows, report, train_path=train_path, val_path=val_path, report_path=report_path,
                  seed=seed, val_fraction=val_fraction, settings=_settings(rules, seed, val_fraction, formats),
                  inputs=inputs, formats=formats)


def build_sft(*, mode: str, **kwargs) -> dict:
    """Entry point of the ``sft`` rule: ``mode`` is config ``sft.source``."""
    if mode == "critiques":
        kwargs.pop("bpo_dataset", None)
        return build_sft_from_critiques(**kwargs)
    if mode == "bpo_dataset":
        from bpo.bpo_dataset import build_sft_from_bpo_dataset

        kwargs.pop("pairs_path", None)
        kwargs.pop("critique_paths", None)
        return build_sft_from_bpo_dataset(**kwargs.pop("bpo_dataset"), **kwargs)
    raise SFTError(f"config sft.source: {mode!r} is not one of 'critiques', 'bpo_dataset'")
