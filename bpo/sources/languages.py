"""``sources.<name>.languages`` for every source: the language of each candidate pair as an
ISO 639-1 code (the ``language`` column), from the dataset's own label where it has one and
from :func:`bpo.language.detect` on the instruction where it has none; a label that the
detector contradicts is kept and counted (``language_disagreements``, located), never resolved
silently. A candidate is dropped (``language``) only when its language is known and not
wanted: an undetermined one ("und": short or mixed text) is kept, never dropped on a guess.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial

from bpo.drops import Drops
from bpo.language import UNDETERMINED, LanguageConfigError, detect, normalize, wanted_languages

__all__ = ["LanguageConfigError", "LanguageGate", "detect_languages", "wanted_languages"]


class LanguageGate:
    """One source's language step. ``resolve`` gives a candidate's language code, or None when
    the candidate must be dropped for its language (the caller counts the drop)."""

    def __init__(self, languages, where: str) -> None:
        self.keep = wanted_languages(languages, where)
        self.disagreements = Drops()  # "label>detected": located
        self.detected = 0
        self.undetermined = 0

    def resolve(
        self, text: str, where: Callable[[], str], label: str | None = None, *, has_label: bool = False
    ) -> str | None:
        """``label``: the dataset's own label (``has_label`` when the source has a label
        field, even if this row's is empty)."""
        code = normalize(label) if has_label else UNDETERMINED
        if has_label and code != UNDETERMINED and self.keep is not None and code not in self.keep:
            return None  # the dataset's own label decides, without a detection
        found = detect(text)
        if code == UNDETERMINED:
            code = found
            self.detected += 1
        elif found not in (UNDETERMINED, code):
            self.disagreements.add(f"{code}>{found}", where, "language")
        if code == UNDETERMINED:
            self.undetermined += 1
        elif self.keep is not None and code not in self.keep:
            return None
        return code

    def record(self, res) -> None:
        """Add the step's counts to ``res`` (a ParseResult): the located disagreements, and how
        many languages came from the detector and how many stayed undetermined."""
        if self.disagreements:
            res.set_other("language_disagreements", self.disagreements)
        ident = +Counter({"detected": self.detected, "undetermined_kept": self.undetermined})
        if ident:
            res.set_other("language_identification", ident)


def detect_languages(res, languages, where: str):
    """The language step of a source without a language field (hh-rlhf, Alpaca), run on its
    parsed candidates: each pair's ``language`` from its instruction; an unwanted one becomes a
    located ``language`` drop. Returns ``res``."""
    gate = LanguageGate(languages, where)
    aligned = len(res.rows) == len(res.pairs)
    pairs, rows = [], []
    for k, cand in enumerate(res.pairs):
        place = partial(res.candidate_location, k)
        lang = gate.resolve(cand["instruction"], place)
        if lang is None:
            res.dropped.add("language", place, "instruction")
            continue
        cand["language"] = lang
        pairs.append(cand)
        if aligned:
            rows.append(res.rows[k])
    res.pairs, res.rows = pairs, (rows if aligned else res.rows)
    gate.record(res)
    return res
