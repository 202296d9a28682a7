"""The core shared by both SFT sources: filter rules, context formats, split, drop report, writing.

SFT dataset: filter critiques (or a BPO-format dataset) into train/val (prompt -> optimized prompt).

The paper's rules decide which rewrites are kept: a missing optimized instruction (parse
failure), an original more than 2x the optimized length in words, an optimized more than 6x
the original, or a leftover "[protected" marker drops the record; so does (switchable,
``sft.language_mismatch``) an optimized instruction in another language than the original.
For a multi-turn pair the rules apply to the last user message (the instruction) and its
rewrite, and a rewrite that copies an earlier turn (:func:`bpo.history_echo.copies_history`,
or role labels) is dropped as ``copies_history``. Thresholds come from config
(:class:`bpo.settings.SFTSettings`); this module has no defaults of its own.
Every drop is counted by reason in the filter report; nothing disappears silently.

The context is never rewritten. It is attached verbatim to both the original and the optimized
instruction with one of a few joining formats, chosen per pair id with a seeded hash, so the
optimizer sees context before and after the instruction, and the same pair always gets the
same format. The train/val split is a seeded hash of the pair id: a pair stays on its side
when other pairs are added or removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

from bpo.atomic import write_json
from bpo.history_echo import copies_history, writes_role_labels
from bpo.language import UNDETERMINED, mismatch
from bpo.schemas import SFT, write_table
from bpo.settings import SFTSettings

log = logging.getLogger("bpo.sft")

# Drop reasons in report order. Critique mode uses the first block, BPO-format mode the second;
# the rule reasons are shared.
CRITIQUE_REASONS = ("call_error", "refused", "truncated", "parse_failure", "no_pair", "duplicate")
BPO_REASONS = ("missing_prompt", "missing_optimized", "duplicate")
RULE_REASONS = ("original_too_long", "optimized_too_long", "protected_marker", "language_mismatch")
# sft.languages: records over a language's cap (or the balance) are dropped with this reason
LANGUAGE_CAP = "language_cap"
# Multi-turn pairs only; listed in a report only when they occur, so single-turn reports keep their keys.
HISTORY_REASONS = ("copies_history",)

_EXAMPLES = 5


class SFTError(ValueError):
    """The SFT inputs or settings are unusable (names the file, record or config key)."""


@dataclass(frozen=True)
class FilterRules:
    """The paper's filtering rules; a ratio of None switches that rule off."""

    max_original_to_optimized: float | None
    max_optimized_to_original: float | None
    protected_markers: tuple[str, ...]
    length_rules_with_context: bool
    language_mismatch: bool = False

    @classmethod
    def from_settings(cls, settings: SFTSettings) -> Self:
        return cls(
            max_original_to_optimized=settings.max_original_to_optimized,
            max_optimized_to_original=settings.max_optimized_to_original,
            protected_markers=tuple(settings.protected_markers),
            length_rules_with_context=settings.length_rules_with_context,
            language_mismatch=settings.language_mismatch,
        )

    def reason(self, original: str, optimized: str, has_context: bool, history: Sequence[dict] = ()) -> str | None:
        """The rule that drops (original instruction, optimized instruction), or None to keep;
        ``history``: the earlier turns of a multi-turn pair."""
        low = optimized.lower()
        if any(m.lower() in low for m in self.protected_markers):
            return "protected_marker"
        if history and (writes_role_labels(optimized, original) or copies_history(optimized, original, history)):
            return "copies_history"
        # the critic was asked to write in the instruction's language; a rewrite in another one
        # would teach the optimizer to translate
        if self.language_mismatch and mismatch(original, optimized):
            return "language_mismatch"
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


def hash_unit(*parts: object) -> float:
    """A uniform number in [0, 1) from a sha256 of ``parts`` (stable across processes)."""
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def check_context_formats(formats: Sequence[str]) -> tuple[str, ...]:
    formats = tuple(formats)
    if not formats:
        raise SFTError("config sft.context_formats: at least one format is needed")
    for f in formats:
        if f.count("{instruction}") != 1 or f.count("{context}") != 1:
            raise SFTError(
                f"config sft.context_formats: {f!r} must contain {{instruction}} and {{context}} exactly once"
            )
    return formats


def context_format(pair_id: str, seed: int, formats: Sequence[str]) -> str:
    """The joining format of ``pair_id``: seeded, deterministic, independent of other pairs."""
    return formats[int(hash_unit(seed, "context_format", pair_id) * len(formats))]


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
    return hash_unit(seed, "split", pair_id) < val_fraction


@dataclass
class FilterReport:
    """Records in, drops by reason (with a few example ids) and kept records, per source."""

    mode: str
    reasons: tuple[str, ...]
    records_in: int = 0
    dropped: Counter = field(default_factory=Counter)
    by_source: dict = field(default_factory=lambda: defaultdict(lambda: {"in": 0, "kept": 0, "dropped": Counter()}))
    examples: dict = field(default_factory=lambda: defaultdict(list))
    formats_used: Counter = field(default_factory=Counter)
    by_language: dict = field(default_factory=lambda: defaultdict(lambda: {"in": 0, "kept": 0, "dropped": Counter()}))
    language: str = UNDETERMINED  # the language of the record being filtered (set by seen)

    def seen(self, source: str, language: str | None = None) -> None:
        """A record comes in; its drop or keep that follows counts for ``language`` too."""
        self.records_in += 1
        self.by_source[source]["in"] += 1
        self.language = language or UNDETERMINED
        self.by_language[self.language]["in"] += 1

    def drop(self, source: str, reason: str, ident: str, language: str | None = None) -> None:
        self.dropped[reason] += 1
        self.by_source[source]["dropped"][reason] += 1
        self.by_language[language or self.language]["dropped"][reason] += 1
        if len(self.examples[reason]) < _EXAMPLES:
            self.examples[reason].append(ident)

    def keep(self, source: str) -> None:
        self.by_source[source]["kept"] += 1
        self.by_language[self.language]["kept"] += 1

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
            "by_language": {
                lang: {"in": v["in"], "kept": v["kept"], "dropped": dict(sorted(v["dropped"].items()))}
                for lang, v in sorted(self.by_language.items(), key=lambda kv: (-kv[1]["in"], kv[0]))
            },
            "drop_examples": {r: ids for r, ids in sorted(self.examples.items())},
            "context_formats_used": {formats[i]: n for i, n in sorted(self.formats_used.items())},
            "settings": settings,
        }


def kept_row(
    report: FilterReport,
    *,
    pair_id: str,
    source: str,
    instruction: str,
    optimized: str,
    context: str,
    seed: int,
    formats: Sequence[str],
    history: Sequence[dict] = (),
) -> dict:
    """The SFT row of a record that passed the filters: the context attached verbatim to both
    sides in the pair's seeded format, the history (earlier turns) carried as it is. Counts the
    record (and that format, where there is a context) in ``report``."""
    fmt = context_format(pair_id, seed, formats)
    if context.strip():
        report.formats_used[formats.index(fmt)] += 1
    report.keep(source)
    return {
        "pair_id": pair_id,
        "source": source,
        "language": report.language,  # for sft.languages; not an SFT column
        "prompt": attach_context(instruction, context, fmt),
        "optimized_prompt": attach_context(optimized.strip(), context, fmt),
        "history": [{"role": t["role"], "content": t["content"]} for t in history],
    }


def cap_languages(rows: list[dict], report: FilterReport, *, cap: int | None, balance: bool, seed: int) -> list[dict]:
    """``sft.languages``: at most ``cap`` records of each language, and with ``balance`` at most
    as many as the smallest identified language has ("und" is neither capped by the balance nor
    sets it). Which records stay is seeded (a hash of seed and pair id), not file order; the
    others are counted as ``language_cap`` drops. Input order is kept."""
    counts = Counter(r["language"] for r in rows)
    limit = {lang: cap for lang in counts} if cap is not None else {}
    known = [n for lang, n in counts.items() if lang != UNDETERMINED]
    if balance and len(known) > 1:
        floor = min(known)
        for lang in counts:
            if lang != UNDETERMINED:
                limit[lang] = min(limit.get(lang, floor), floor)
    if not limit:
        return rows
    keep: set[str] = set()
    for lang, n in counts.items():
        ids = sorted(
            (r["pair_id"] for r in rows if r["language"] == lang), key=lambda p: hash_unit(seed, "language", p)
        )
        keep.update(ids[: limit.get(lang, n)])
    out = []
    for r in rows:
        if r["pair_id"] in keep:
            out.append(r)
        else:
            report.drop(r["source"], LANGUAGE_CAP, r["pair_id"], r["language"])
            report.by_source[r["source"]]["kept"] -= 1
            report.by_language[r["language"]]["kept"] -= 1
    return out


def split_rows(rows: list[dict], *, seed: int, val_fraction: float) -> tuple[list[dict], list[dict]]:
    """Seeded hash split by pair id. With ``val_fraction`` > 0 and two or more rows, val gets at
    least the row with the smallest hash, so a tiny run still has a validation set."""
    if not 0 <= val_fraction < 1:
        raise SFTError(f"config sft.val_fraction: {val_fraction} is not in [0, 1)")
    val_ids = {r["pair_id"] for r in rows if is_val(r["pair_id"], seed, val_fraction)}
    if val_fraction > 0 and not val_ids and len(rows) >= 2:
        val_ids = {min((r["pair_id"] for r in rows), key=lambda p: hash_unit(seed, "split", p))}
    if rows and len(val_ids) == len(rows) and len(rows) >= 2:
        # Keep training data: the pair with the largest hash goes back to train.
        val_ids.discard(max(val_ids, key=lambda p: hash_unit(seed, "split", p)))
    train = [r for r in rows if r["pair_id"] not in val_ids]
    val = [r for r in rows if r["pair_id"] in val_ids]
    return train, val


def report_settings(settings: SFTSettings) -> dict:
    """The settings block of the filter report (the same keys and order in both modes)."""
    out = {
        "seed": settings.seed,
        "val_fraction": settings.val_fraction,
        "max_original_to_optimized": settings.max_original_to_optimized,
        "max_optimized_to_original": settings.max_optimized_to_original,
        "protected_markers": list(settings.protected_markers),
        "length_rules_with_context": settings.length_rules_with_context,
        "context_formats": list(settings.context_formats),
        "language_mismatch": settings.language_mismatch,
        "languages": settings.languages.canonical(),
    }
    if settings.bpo_dataset is not None:
        out["apply_filters"] = settings.bpo_dataset.apply_filters
    return out


def write_sft(
    rows: list[dict],
    report: FilterReport,
    settings: SFTSettings,
    *,
    inputs: dict,
    train_path: str | os.PathLike,
    val_path: str | os.PathLike,
    report_path: str | os.PathLike,
) -> dict:
    """Split ``rows`` and write SFT train/val and the filter report; no row left is an error."""
    if not rows:
        # An empty training set is never what anyone wants: stop here, with the counts, rather
        # than in the trainer three stages later.
        dropped = {k: v for k, v in report.dropped.items() if v}
        raise SFTError(
            f"sft: no record left for training: {report.records_in} in, dropped {dropped or 'none'}. "
            f"Check the inputs {inputs} and the filter thresholds under config sft."
        )
    rows = cap_languages(
        rows, report, cap=settings.languages.cap, balance=settings.languages.balance, seed=settings.seed
    )
    rows = [{k: v for k, v in r.items() if k != "language"} for r in rows]
    train, val = split_rows(rows, seed=settings.seed, val_fraction=settings.val_fraction)
    write_table(train, train_path, SFT)
    write_table(val, val_path, SFT)
    out = report.to_dict(len(train), len(val), report_settings(settings), inputs, settings.context_formats)
    write_json(out, report_path)
    log.info(
        "sft: %d records in, %d kept (%d train, %d val), dropped %s",
        out["records_in"],
        out["kept"],
        out["train"],
        out["val"],
        {k: v for k, v in out["dropped"].items() if v},
    )
    return out
