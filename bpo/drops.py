"""Counted drops with where they came from: a count per reason plus the first few locations
(``file:line``, ``file row N``, ``hub:<id> split=<s> row N``; with the field when one is to
blame), so a million drops stay a count and a short list."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

# Locations kept per reason: enough to find the pattern, bounded for any input size.
LOCATIONS_PER_REASON = 5


class Drops(Counter):
    """A Counter of drop reasons that also keeps the first :data:`LOCATIONS_PER_REASON`
    locations of each reason in ``locations``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.locations: dict[str, list[str]] = {}

    def add(self, reason: str, where: str | Callable[[], str] | None = None, field: str | None = None) -> None:
        """Count one drop; ``where`` (or a function giving it, called only while there is room
        for it) and ``field`` locate it."""
        self[reason] += 1
        if where is not None:
            seen = self.locations.setdefault(reason, [])
            if len(seen) < LOCATIONS_PER_REASON:
                where = where() if callable(where) else where
                seen.append(f"{where} (field {field!r})" if field else where)

    def merge(self, other: Counter) -> None:
        """Add ``other``'s counts, and its locations while there is room."""
        self.update(other)
        for reason, places in getattr(other, "locations", {}).items():
            seen = self.locations.setdefault(reason, [])
            seen.extend(places[: LOCATIONS_PER_REASON - len(seen)])


def locations_of(counts: Counter) -> dict[str, list[str]]:
    """The located reasons of ``counts`` (empty for a plain Counter), sorted by reason."""
    return {k: list(v) for k, v in sorted(getattr(counts, "locations", {}).items()) if v}
