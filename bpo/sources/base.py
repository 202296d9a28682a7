"""What every source parser returns, the shared shape of earlier dialogue turns (the pair's
``history``: a list of ``{"role": "user"|"assistant", "content"}``, oldest first), the
``max_history_turns`` bound, and the reading of a source's raw data shared by the loaders."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bpo.drops import Drops, locations_of
from bpo.history import render_history
from bpo.readers import RawTable, read_dataset

# Candidate pairs carry these fields; bpo.pairs adds pair_id and source after cleaning.
CANDIDATE_FIELDS = (
    "source_id",
    "instruction",
    "context",
    "good_response",
    "bad_response",
    "good_model",
    "bad_model",
    "language",
    "num_turns",
    "history",
    "history_chars",
)

USER, ASSISTANT = "User", "Assistant"


@dataclass
class ParseResult:
    """Candidate pairs of one source and the candidates that did not make it, by reason.

    ``unit`` says what a candidate is for this source (a dialogue row, a prompter
    message, an instruction), so ``candidates == len(pairs) + sum(dropped.values())``.
    ``other`` holds counts that are not candidates (e.g. oasst1 replies skipped).

    Drops are located: ``locate`` turns a raw row index into where it was read (see
    :meth:`bpo.readers.RawTable.location`), ``rows`` holds the raw row of each pair, and
    ``other_locations`` the first locations of each ``other`` count.
    """

    unit: str
    pairs: list[dict] = field(default_factory=list)
    dropped: Drops = field(default_factory=Drops)
    other: dict = field(default_factory=dict)
    origin: list[str] = field(default_factory=list)
    records_read: int = 0
    locate: Callable[[int], str] | None = None
    rows: list[int] = field(default_factory=list)
    other_locations: dict = field(default_factory=dict)

    @property
    def candidates(self) -> int:
        return len(self.pairs) + sum(self.dropped.values())

    def where(self, row: int) -> str:
        """Where raw row ``row`` was read."""
        return self.locate(row) if self.locate else f"row {row}"

    def drop(self, reason: str, row: int, field: str | None = None) -> None:
        """Count a dropped candidate (raw row ``row``; ``field``: the field to blame)."""
        self.dropped.add(reason, lambda: self.where(row), field)

    def keep(self, row: int, candidate: dict) -> None:
        self.pairs.append(candidate)
        self.rows.append(row)

    def candidate_location(self, k: int) -> str:
        """Where candidate pair ``k`` (an index into ``pairs``) was read (pairs added without
        :meth:`keep` are named by their index)."""
        return self.where(self.rows[k]) if k < len(self.rows) else f"candidate {k}"

    def set_other(self, key: str, counts: Counter) -> None:
        """Record counts that are not candidates (sorted), with their locations when known."""
        self.other[key] = dict(sorted(counts.items()))
        located = locations_of(counts)
        if located:
            self.other_locations[key] = located


_ROLE = {USER: "user", ASSISTANT: "assistant"}


def dialogue_history(turns: Iterable[tuple[str, str]]) -> list[dict]:
    """Earlier turns of a multi-turn dialogue as the pair's ``history``, the same for every
    source (never the ``context``, which is a document attached to the instruction)."""
    return [{"role": _ROLE[role], "content": text} for role, text in turns]


def limit_history(res: ParseResult, max_turns: int | None) -> ParseResult:
    """Drop (counted as ``too_many_turns``, located, field ``history``) the pairs with more than
    ``max_turns`` earlier user turns (``sources.<name>.max_history_turns``; None = no bound)."""
    if max_turns is None:
        return res
    pairs, rows = res.pairs, res.rows
    res.pairs, res.rows = [], []
    for k, p in enumerate(pairs):
        row = rows[k] if k < len(rows) else k
        if sum(t["role"] == "user" for t in p["history"]) > max_turns:
            res.drop("too_many_turns", row, "history")
        else:
            res.keep(row, p)
    return res


def pair(
    *,
    source_id,
    instruction: str,
    good: str,
    bad: str,
    context: str = "",
    good_model: str | None = None,
    bad_model: str | None = None,
    language: str | None = None,
    num_turns: int = 1,
    history: list[dict] | None = None,
) -> dict:
    return {
        "source_id": None if source_id is None else str(source_id),
        "instruction": instruction,
        "context": context,
        "good_response": good,
        "bad_response": bad,
        "good_model": good_model,
        "bad_model": bad_model,
        "language": language,
        "num_turns": num_turns,
        "history": history or [],
        "history_chars": len(render_history(history)) if history else 0,
    }


def read_source(
    name: str, settings: Mapping, features, columns: Sequence[str] | None = None, *, data_dir: str | None = None
) -> RawTable:
    """The raw table of source ``name`` from its config section ``settings``: ``hub_id`` when
    set, else the local ``path``; errors name ``sources.<name>``."""
    return read_dataset(
        path=settings.get("path"),
        hub_id=settings.get("hub_id"),
        data_dir=data_dir,
        split=settings.get("split", "train"),
        features=features,
        columns=columns,
        what=f"sources.{name}",
    )


def record_read(res: ParseResult, raw: RawTable, *, unreadable_as: str | None = None) -> ParseResult:
    """Add one read to ``res``: its origin, the records read, and the records the reader could
    not use. Those count as dropped candidates, unless a record is not a candidate (an oasst1
    message, an Alpaca bad answer): then they are added to the counts ``res.other[unreadable_as]``."""
    res.origin.append(raw.origin)
    res.records_read += raw.records_read
    if unreadable_as is None:
        res.dropped.merge(raw.dropped)
    elif raw.dropped:
        counts = Drops(res.other.get(unreadable_as, {}))
        counts.locations = {k: list(v) for k, v in res.other_locations.get(unreadable_as, {}).items()}
        counts.merge(raw.dropped)
        res.set_other(unreadable_as, counts)
    return res
