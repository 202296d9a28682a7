"""From parsed candidates to the pairs artifacts: cleaning, ids, sampling, merging.

Per source (``build_source_pairs``, settings :class:`bpo.settings.PairsSourceSettings`), in this order:

1. read and parse the raw dataset (``bpo.sources``): malformed or filtered records are
   counted drops;
2. clean: strip surrounding whitespace, drop empty, too short and over-long fields and
   pairs whose two responses are the same, and multi-turn pairs with an empty earlier turn
   (``empty_history_turn``); record ``history_chars`` (the rendered history's length,
   :func:`bpo.history.render_history`);
3. id and exact dedup: ``pair_id`` hashes the content (instruction, context, both
   responses, and the history when there is one, so single-turn ids are unchanged), so an
   exact duplicate within the source has the same id and is dropped;
4. sample N pairs (config ``sources.<name>.sample``, 0 = all), seeded and after
   cleaning, so N means N usable pairs.

Across sources (``merge_pairs``): exact duplicates (same ``pair_id``) are removed,
keeping the copy from the source listed first in config. Sampling comes before this
step, so a source can end with fewer than N pairs in ``all.parquet``, by exactly the
``duplicate_across_sources`` count its stats report (exact duplicates across
different datasets are rare). Every dropped candidate is counted by reason; the
counts add up: ``candidates == pairs + sum(dropped)``. A drop for bad input also names where
the record was read and the field (the first few per reason, ``locations`` in the stats).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pyarrow as pa

from bpo.atomic import write_json
from bpo.drops import Drops, locations_of
from bpo.history import render_history
from bpo.schemas import PAIRS, read_table, write_table
from bpo.settings.data import MergeSettings, PairsSourceSettings
from bpo.sources import load_source

log = logging.getLogger(__name__)


def expected_stops() -> tuple[type[BaseException], ...]:
    """Errors that end a data-stage job with a one-line reason: an unreadable dataset, a source
    config that cannot work, a per-source file that is not what the merge expects."""
    from bpo.readers import ReadError
    from bpo.schemas import SchemaError
    from bpo.sources import ConfigError

    return (ReadError, ConfigError, SchemaError)


def pair_id(instruction: str, context: str, good: str, bad: str, history: Sequence[dict] = ()) -> str:
    """Stable id of a pair's content: sha256 over the four texts (and the history, only when
    there is one: single-turn ids stay what they were), 16 hex chars. The source is not part of
    it, so the same pair from two sources has one id (that is the dedup key)."""
    parts = [instruction, context, good, bad]
    if history:
        parts.append(json.dumps([[t["role"], t["content"]] for t in history], ensure_ascii=False))
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:16]


def clean_pairs(
    candidates: Iterable[dict],
    *,
    min_chars: int = 1,
    max_instruction_chars: int,
    max_context_chars: int,
    max_response_chars: int,
    locate: Callable[[int], str] | None = None,
) -> tuple[list[dict], Drops]:
    """Strip the texts and keep the pairs within the limits; the rest are counted by reason
    (``locate``: candidate index -> where it was read, kept for the first few of each reason)."""
    kept: list[dict] = []
    dropped = Drops()
    for k, p in enumerate(candidates):
        history = [{"role": t["role"], "content": t["content"].strip()} for t in p.get("history") or []]
        ins = p["instruction"].strip()
        ctx = (p["context"] or "").strip()
        good = p["good_response"].strip()
        bad = p["bad_response"].strip()
        response = (
            "good_response" if not good or len(good) < min_chars or len(good) > max_response_chars else "bad_response"
        )
        if not ins:
            why, field = "empty_instruction", "instruction"
        elif not good or not bad:
            why, field = "empty_response", response
        elif len(ins) < min_chars:
            why, field = "short_instruction", "instruction"
        elif len(good) < min_chars or len(bad) < min_chars:
            why, field = "short_response", response
        elif len(ins) > max_instruction_chars:
            why, field = "long_instruction", "instruction"
        elif len(ctx) > max_context_chars:
            why, field = "long_context", "context"
        elif len(good) > max_response_chars or len(bad) > max_response_chars:
            why, field = "long_response", response
        elif good == bad:
            why, field = "same_responses", None
        elif any(not t["content"] for t in history):
            why, field = "empty_history_turn", "history"
        else:
            kept.append(
                {
                    **p,
                    "instruction": ins,
                    "context": ctx,
                    "good_response": good,
                    "bad_response": bad,
                    "history": history,
                    "history_chars": len(render_history(history)),
                }
            )
            continue
        dropped.add(why, locate and (lambda k=k: locate(k)), field)
    return kept, dropped


def assign_ids(pairs: list[dict], source: str) -> tuple[list[dict], int]:
    """Add ``pair_id`` and ``source``; drop exact duplicates (first one wins). Returns the
    unique pairs and how many duplicates were dropped."""
    seen: set[str] = set()
    out = []
    for p in pairs:
        pid = pair_id(p["instruction"], p["context"], p["good_response"], p["bad_response"], p.get("history", ()))
        if pid in seen:
            continue
        seen.add(pid)
        out.append({"pair_id": pid, "source": source, **p})
    return out, len(pairs) - len(out)


def sample_pairs(pairs: list[dict], n: int, seed: int) -> list[dict]:
    """N pairs chosen by a seeded hash of their id, in their original order; n=0 keeps all.

    Ranking by hash (not shuffling) makes the choice independent of the input order and
    stable when the input grows: a pair sampled once stays sampled for the same seed
    unless new pairs outrank it."""
    if not n or len(pairs) <= n:
        return list(pairs)
    salt = f"{seed}\x00".encode()

    def rank(p):
        return hashlib.sha256(salt + p["pair_id"].encode()).digest()

    chosen = {id(p) for p in sorted(pairs, key=rank)[:n]}
    return [p for p in pairs if id(p) in chosen]


def _to_arrow(pairs: list[dict]) -> pa.Table:
    # column by column: a third faster than Table.from_pylist on 160k long rows
    return pa.table({f.name: pa.array([p[f.name] for p in pairs], f.type) for f in PAIRS}, schema=PAIRS)


def _language_counts(pairs) -> dict[str, int]:
    """Pairs per language (ISO 639-1, "und"), most first."""
    counts = Counter(p["language"] or "und" for p in pairs)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _summary(stats: dict) -> str:
    drops = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()) or "none"
    lines = [
        f"{stats['source']}: {stats['records_read']} records read from {', '.join(stats['origin'])}",
        f"{stats['source']}: {stats['candidates']} candidates ({stats['unit']}) -> {stats['pairs']} pairs; "
        f"dropped {stats['dropped_total']}: {drops}",
        f"{stats['source']}: pairs by language: "
        + (", ".join(f"{k} {v}" for k, v in stats["languages"].items()) or "none"),
    ]
    for key, counts in stats["other"].items():
        lines.append(f"{stats['source']}: {key}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def history_stats(pairs: Sequence[dict]) -> dict:
    """Turn counts and rendered history lengths (characters) of ``pairs``, for the stats JSON."""
    chars = sorted(p["history_chars"] for p in pairs if p["history"])
    turns = Counter(int(p["num_turns"]) for p in pairs)

    def quantile(q: float) -> int:
        return chars[min(len(chars) - 1, int(q * len(chars)))] if chars else 0

    return {
        "multi_turn_pairs": len(chars),
        "pairs_by_user_turns": {str(k): v for k, v in sorted(turns.items())},
        "history_chars": {
            "mean": round(sum(chars) / len(chars), 1) if chars else 0,
            "median": quantile(0.5),
            "p90": quantile(0.9),
            "max": chars[-1] if chars else 0,
        },
    }


def build_source_pairs(
    settings: PairsSourceSettings,
    *,
    pairs_path: str | os.PathLike,
    stats_path: str | os.PathLike,
) -> dict:
    """Read, parse, clean, dedup and sample one source; write its pairs and stats."""
    source, section, cleaning = settings.source.name, settings.source.section(), settings.cleaning
    limits = {f.name: getattr(cleaning, f.name) for f in dataclasses.fields(cleaning)}  # seed first
    parsed = load_source(source, section)
    dropped = Drops()
    dropped.merge(parsed.dropped)
    kept, cleaning_drops = clean_pairs(
        parsed.pairs, locate=parsed.candidate_location, **{k: v for k, v in limits.items() if k != "seed"}
    )
    dropped.merge(cleaning_drops)
    unique, duplicates = assign_ids(kept, source)
    if duplicates:
        dropped["duplicate"] = duplicates
    sampled = sample_pairs(unique, settings.source.sample, cleaning.seed)
    if len(sampled) < len(unique):
        dropped["not_sampled"] = len(unique) - len(sampled)
    write_table(_to_arrow(sampled), pairs_path, PAIRS)
    stats = {
        "source": source,
        "origin": parsed.origin,
        "unit": parsed.unit,
        "records_read": parsed.records_read,
        "candidates": parsed.candidates,
        "pairs": len(sampled),
        "languages": _language_counts(sampled),
        "dropped_total": sum(dropped.values()),
        "dropped": dict(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))),
        "other": parsed.other,
        "settings": {"source": section, "pairs": limits},
        # where the first few drops of each reason were read (file:line, file row N, hub row N)
        "locations": locations_of(dropped),
        "other_locations": parsed.other_locations,
    }
    if any(p["history"] for p in sampled):  # only multi-turn pairs add this (single-turn stats unchanged)
        stats["history"] = history_stats(sampled)
    if stats["candidates"] != stats["pairs"] + stats["dropped_total"]:  # a bug, not bad input
        raise AssertionError(f"{source}: counts do not add up: {stats}")
    write_json(stats, stats_path)
    for line in _summary(stats).splitlines():
        log.info("%s", line)
    if not sampled:
        log.warning("%s: no pairs: check the input and the filters (see the drop counts above)", source)
    return stats


def merge_pairs(
    pair_paths: Sequence[str | os.PathLike],
    stats_paths: Sequence[str | os.PathLike],
    *,
    pairs_path: str | os.PathLike,
    stats_path: str | os.PathLike,
    settings: MergeSettings,
) -> dict:
    """Concatenate per-source pairs (in the given order) into one artifact; with ``dedup``
    an exact duplicate of a pair from an earlier source is dropped and counted (``settings.dedup``)."""
    dedup = settings.dedup
    source_stats = {}
    for p in stats_paths:
        st = json.loads(Path(p).read_text())
        source_stats[st["source"]] = st
    tables, per_source = [], {}
    seen: set[str] = set()
    for path in pair_paths:
        table = read_table(path, PAIRS)
        names = set(table.column("source").to_pylist())
        if len(names) > 1:
            raise ValueError(f"{path}: pairs of several sources {sorted(names)} in one per-source file")
        source = names.pop() if names else Path(path).name.split(".")[0]
        if source in per_source:
            raise ValueError(f"{path}: source {source!r} given twice")
        ids = table.column("pair_id").to_pylist()
        keep = [pid not in seen for pid in ids] if dedup else [True] * len(ids)
        seen.update(ids)
        kept = table.filter(pa.array(keep, pa.bool_())) if not all(keep) else table
        tables.append(kept)
        st = source_stats.get(source, {})
        dropped = dict(st.get("dropped", {}))
        if kept.num_rows < table.num_rows:
            dropped["duplicate_across_sources"] = table.num_rows - kept.num_rows
        per_source[source] = {
            "records_read": st.get("records_read"),
            "candidates": st.get("candidates"),
            "pairs_in": table.num_rows,
            "pairs": kept.num_rows,
            "languages": _language_counts({"language": x} for x in kept.column("language").to_pylist()),
            "dropped": dropped,
        }
    merged = pa.concat_tables(tables) if tables else PAIRS.empty_table()
    write_table(merged, pairs_path, PAIRS)
    stats = {
        "pairs": merged.num_rows,
        "dedup": dedup,
        "duplicates_across_sources": sum(v["pairs_in"] - v["pairs"] for v in per_source.values()),
        "languages": _language_counts({"language": x} for x in merged.column("language").to_pylist()),
        "sources": per_source,
    }
    write_json(stats, stats_path)
    for source, v in per_source.items():
        log.info("%s: %d pairs in, %d kept", source, v["pairs_in"], v["pairs"])
    log.info(
        "all: %d pairs from %d sources (%d duplicates across sources dropped)",
        stats["pairs"],
        len(per_source),
        stats["duplicates_across_sources"],
    )
    return stats
