"""Win rates of optimized-prompt answers over original-prompt answers, with a bootstrap interval.

Percentages are over the valid pairs (outcome win/tie/lose); invalid pairs (an unparseable
verdict, a failed call, a missing answer) are counted separately and reported, never mixed in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

OUTCOMES = ("win", "tie", "lose", "invalid")


@dataclass(frozen=True)
class WinRates:
    n: int  # all pairs
    n_invalid: int
    win: float  # % of valid pairs
    tie: float
    lose: float

    @property
    def n_valid(self) -> int:
        return self.n - self.n_invalid

    @property
    def delta_wr(self) -> float:
        return self.win - self.lose


def count_outcomes(outcomes: Iterable[str]) -> Counter:
    counts = Counter()
    for o in outcomes:
        if o not in OUTCOMES:
            raise ValueError(f"unknown outcome {o!r} (expected one of {OUTCOMES})")
        counts[o] += 1
    return counts


def win_rates(outcomes: Sequence[str]) -> WinRates:
    counts = count_outcomes(outcomes)
    n = sum(counts.values())
    valid = n - counts["invalid"]
    if valid == 0:
        nan = float("nan")
        return WinRates(n, counts["invalid"], nan, nan, nan)
    pct = lambda k: 100.0 * counts[k] / valid  # noqa: E731
    return WinRates(n, counts["invalid"], pct("win"), pct("tie"), pct("lose"))


def bootstrap_delta_interval(
    outcomes: Sequence[str], *, samples: int, seed: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ΔWR = win% − lose% over the valid pairs.

    Resampling n pairs with replacement only changes how many wins, ties and losses a
    resample holds, so the resample counts are drawn directly from Multinomial(n, observed
    shares): the same distribution as index resampling, in O(samples) memory.
    """
    if samples < 1:
        raise ValueError("bootstrap samples must be >= 1")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    counts = count_outcomes(outcomes)
    n = counts["win"] + counts["tie"] + counts["lose"]
    if n == 0:
        return float("nan"), float("nan")
    shares = np.array([counts["win"], counts["tie"], counts["lose"]], dtype=float) / n
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, shares, size=samples)
    deltas = 100.0 * (draws[:, 0] - draws[:, 2]) / n
    alpha = 1.0 - confidence
    low, high = np.percentile(deltas, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def position_consistency(pairs: Iterable[bool | None]) -> float | None:
    """% of pairs judged in both orders whose two verdicts name the same preference.

    ``None`` entries (not judged in both orders, or unparseable) are left out; None when no
    pair qualifies.
    """
    judged = [c for c in pairs if c is not None]
    if not judged:
        return None
    return 100.0 * sum(judged) / len(judged)


def mean_words(texts: Iterable[str | None]) -> float | None:
    """Mean answer length in whitespace-separated words over the answers present."""
    lengths = [len(t.split()) for t in texts if isinstance(t, str)]
    return float(np.mean(lengths)) if lengths else None
