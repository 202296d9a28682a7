"""Evaluation test sets, normalised to (item_id, instruction, context, reference_optimized).

The paper's four sets come in four layouts; a user file is read through a column mapping.
Each record is checked: a record the reader cannot parse (not JSON, not UTF-8, nested too
deep, not an object) or without a usable instruction is dropped and counted with its reason and
location; a file unreadable as a whole or a missing column is an error naming the file and record.
Ids taken from the row number count dropped records too, so they do not shift when a line breaks.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bpo.drops import Drops
from bpo.vocab import MULTI_TURN_FORMATS

log = logging.getLogger(__name__)


class TestSetError(ValueError):
    """A test set file or its config cannot be read as declared."""

    __test__ = False


# Column names of the built-in layouts: where each normalised field comes from.
# id None = the row number; context/reference None = not present in that layout.
FORMATS: dict[str, dict[str, str | None]] = {
    # Vicuna Eval: {question_id, text, category}
    "vicuna": {
        "id": "question_id",
        "instruction": "text",
        "context": None,
        "reference_optimized": None,
        "category": "category",
    },
    # Self-Instruct user-oriented eval: {id, category, instruction, context, output}
    "self_instruct": {
        "id": "id",
        "instruction": "instruction",
        "context": "context",
        "reference_optimized": None,
        "category": "category",
    },
    # Dolly eval: {instruction, context, response, category, idx}
    "dolly": {
        "id": "idx",
        "instruction": "instruction",
        "context": "context",
        "reference_optimized": None,
        "category": "category",
    },
    # BPO test: {prompt, optimized_prompt, good_res, bad_res}; the context is already inside prompt.
    "bpo_test": {
        "id": None,
        "instruction": "prompt",
        "context": None,
        "reference_optimized": "optimized_prompt",
        "category": None,
    },
    # MT-bench: {question_id, category, turns: [first message, second message]}; multi-turn (the
    # first turn is the instruction, every turn is in TestItem.turns).
    "mt_bench": {
        "id": "question_id",
        "instruction": "turns",
        "context": None,
        "reference_optimized": None,
        "category": "category",
    },
    # oasst1 messages (the hub's row format): the non-English root prompts of the conversation trees
    # held out of training (sources.oasst1.test_trees); see load_testset.
    "oasst1": {
        "id": "message_id",
        "instruction": "text",
        "context": None,
        "reference_optimized": None,
        "category": None,
    },
    # Alpaca SFT data: {instruction, input, output}; used by the optional SFT rewrite.
    "alpaca": {
        "id": None,
        "instruction": "instruction",
        "context": "input",
        "reference_optimized": None,
        "category": None,
    },
}
MAPPING_KEYS = ("id", "instruction", "context", "reference_optimized", "category")


@dataclass(frozen=True)
class TestItem:
    __test__ = False  # not a pytest class

    item_id: str
    instruction: str
    context: str
    reference_optimized: str | None = None
    category: str | None = None
    turns: tuple[str, ...] = ()  # a multi-turn item's user messages in order (turns[0] == instruction)

    @property
    def question(self) -> str:
        return render_question(self.instruction, self.context)


@dataclass
class TestSet:
    __test__ = False

    name: str
    items: list[TestItem]
    n_read: int
    dropped: Counter = field(default_factory=Drops)  # reason -> records dropped (located: Drops.locations)


def render_question(instruction: str, context: str | None) -> str:
    """The question a model sees: the instruction, then its context on the next line.

    The same joint the paper used for its context sets (instruction + newline + context).
    The context is appended verbatim; an empty context adds nothing.
    """
    if context is None or not context.strip():
        return instruction
    return f"{instruction}\n{context}"


def read_records(path: str | Path):
    """The records of a .json (list of objects), .jsonl[.gz], .parquet, .csv or .tsv file, with
    the reader's counted drops (the project's one reader, :func:`bpo.readers.read_records`); a
    file unreadable as a whole is a :class:`TestSetError`."""
    from bpo.readers import ReadError
    from bpo.readers import read_records as read_file_records

    try:
        return read_file_records(path)
    except ReadError as exc:
        raise TestSetError(f"test set {exc}") from exc


def column_mapping(fmt: str, columns: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """Where each normalised field comes from, for a built-in format or ``custom`` + columns."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(MAPPING_KEYS))
    if unknown:
        raise TestSetError(f"columns: unknown keys {unknown} (allowed: {list(MAPPING_KEYS)})")
    if fmt == "custom":
        if not columns.get("instruction"):
            raise TestSetError("format 'custom' needs columns.instruction (the column holding the prompt)")
        return {key: columns.get(key) for key in MAPPING_KEYS}
    if fmt not in FORMATS:
        raise TestSetError(f"unknown test set format '{fmt}' (known: {sorted(FORMATS)} or custom)")
    mapping = dict(FORMATS[fmt])
    mapping.update({k: v for k, v in columns.items()})  # a built-in layout may be adjusted
    return mapping


def _text(value: Any, *, where: str, column: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TestSetError(f"{where}: column '{column}' holds a {type(value).__name__}, expected text")


def normalise(
    rows: list[dict[str, Any]],
    mapping: Mapping[str, str | None],
    *,
    where: str,
    numbers: list[int] | None = None,
    locations: list[str] | None = None,
    conversations: bool = False,
) -> tuple[list[TestItem], Drops]:
    """Map raw rows to :class:`TestItem`; drops are counted by reason and located, never silent.
    ``conversations``: the instruction column holds a list of user messages (a multi-turn layout).
    ``numbers``: each row's record number in the file (the id when the layout has none);
    ``locations``: where each row was read (file:line, file record N), for messages."""
    items: list[TestItem] = []
    dropped = Drops()
    seen: dict[str, str] = {}
    for k, (i, row) in enumerate(zip(numbers if numbers is not None else range(len(rows)), rows)):
        rec = locations[k] if locations is not None else f"{where}: record {i}"
        for key in ("instruction", "id", "context", "reference_optimized"):
            col = mapping.get(key)
            if col is not None and col not in row:
                raise TestSetError(f"{rec}: missing column '{col}' (mapped to {key}; columns present: {sorted(row)})")
        id_col = mapping.get("id")
        item_id = _text(row[id_col], where=rec, column=id_col) if id_col else str(i)
        if item_id is None or not item_id.strip():
            raise TestSetError(f"{rec}: empty id in column '{id_col}'")
        raw = row[mapping["instruction"]]
        turns: tuple[str, ...] = ()
        if conversations and isinstance(raw, list):  # a conversation's user messages (MT-bench `turns`)
            if not raw or not all(isinstance(t, str) and t.strip() for t in raw):
                dropped.add("empty or non-text turn", rec, mapping["instruction"])
                log.warning("%s (id %s): a turn is empty or not text, dropped", rec, item_id)
                continue
            turns, raw = tuple(raw), raw[0]
        instruction = _text(raw, where=rec, column=mapping["instruction"])
        if instruction is None or not instruction.strip():
            dropped.add("empty instruction", rec, mapping["instruction"])
            log.warning("%s (id %s): empty instruction, dropped", rec, item_id)
            continue
        ctx_col = mapping.get("context")
        context = (_text(row[ctx_col], where=rec, column=ctx_col) if ctx_col else None) or ""
        ref_col = mapping.get("reference_optimized")
        reference = _text(row[ref_col], where=rec, column=ref_col) if ref_col else None
        if reference is not None and not reference.strip():
            reference = None
        cat_col = mapping.get("category")
        category = _text(row.get(cat_col), where=rec, column=cat_col) if cat_col else None
        if item_id in seen:
            raise TestSetError(f"{rec}: duplicate id '{item_id}' (also {seen[item_id]}); ids must be unique")
        seen[item_id] = rec
        items.append(TestItem(item_id, instruction, context, reference, category, turns))
    return items, dropped


def load_testset(
    name: str,
    path: str | Path,
    fmt: str,
    *,
    columns: Mapping[str, str | None] | None = None,
    sample: int = 0,
    seed: int = 42,
    test_trees: float | None = None,
) -> TestSet:
    """Read and normalise one test set; ``sample`` > 0 keeps that many items (seeded, file order).
    Format ``oasst1`` keeps the usable non-English root prompts of the trees in the test share
    ``test_trees`` (the pairs stage drops those trees: :func:`bpo.sources.oasst1.held_out`)."""
    mapping = column_mapping(fmt, columns)
    records = read_records(path)
    keep = range(len(records.rows))
    if fmt == "oasst1":
        from bpo.sources.oasst1 import held_out

        keep = [
            k
            for k, r in enumerate(records.rows)
            if r.get("role") == "prompter"
            and not r.get("parent_id")
            and not r.get("deleted")
            and r.get("review_result") is not False
            and str(r.get("lang") or "en") != "en"
            and held_out(str(r.get("message_id")), test_trees or 0.0)
        ]
    items, dropped = normalise(
        [records.rows[k] for k in keep],
        mapping,
        where=str(path),
        numbers=[records.numbers[k] for k in keep],
        locations=[records.location(k) for k in keep],
        conversations=fmt in MULTI_TURN_FORMATS,
    )
    dropped.merge(records.dropped)
    if sample and sample < len(items):
        keep = sorted(random.Random(f"{seed}:{name}").sample(range(len(items)), sample))
        items = [items[i] for i in keep]
    if not items:
        raise TestSetError(
            f"{path}: test set '{name}' has no usable items (read {records.records_read}, dropped {dict(dropped)})"
        )
    log.info(
        "test set %s: %d items from %s (%d records, dropped %s)",
        name,
        len(items),
        path,
        records.records_read,
        dict(dropped) or "none",
    )
    return TestSet(name=name, items=items, n_read=records.records_read, dropped=dropped)


def load_configured(settings) -> TestSet:
    """The test set a :class:`bpo.settings.optimize.TestsetSettings` describes (file, layout, sample)."""
    return load_testset(
        settings.name,
        settings.path,
        settings.format,
        columns=settings.columns,
        sample=settings.sample,
        seed=settings.seed,
        test_trees=getattr(settings, "test_trees", None),
    )
