"""Win rates of optimized-prompt answers over original-prompt answers, with a bootstrap interval.

Percentages are over the valid pairs (outcome win/tie/lose); invalid pairs (an unparseable
verdict, a failed call, a missing answer) are counted separately and reported, never mixed in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bpo.vocab import OUTCOMES


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


# --- probability-weighted win rate ------------------------------------------------------
#
# Input contract (no judge in this project records it yet): for each judged order, the judge
# endpoint's top log-probabilities at the position of the verdict letter (the token after
# "[["), as a mapping token -> natural-log probability, e.g. {"A": -0.05, "B": -3.2, " C": -6.0}
# (OpenAI ``logprobs=True, top_logprobs=k``: ``choices[0].logprobs.content[i].top_logprobs``).

_VERDICT_TOKEN = {"a": "A", "b": "B", "c": "C", "tie": "C"}


def verdict_probabilities(top_logprobs: Mapping[str, float]) -> dict[str, float] | None:
    """P(A), P(B), P(C) at the verdict position, renormalised over the three verdicts (tokens
    differing in case or surrounding space pool; "tie" counts as C). None when the top
    log-probabilities name no verdict at all."""
    mass = {"A": 0.0, "B": 0.0, "C": 0.0}
    for token, logprob in top_logprobs.items():
        verdict = _VERDICT_TOKEN.get(token.strip().lower())
        if verdict is not None:
            mass[verdict] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0.0:
        return None
    return {k: v / total for k, v in mass.items()}


def weighted_preference(
    probs_optimized_first: Mapping[str, float] | None, probs_original_first: Mapping[str, float] | None
) -> float | None:
    """Expected preference for the optimized answer (1 = surely preferred, 0.5 = tie), from the
    verdict probabilities of each judged order (None = not judged in that order): with the
    optimized answer shown first P(A) + P(C)/2, shown second P(B) + P(C)/2; the mean of the
    orders judged. None when neither order has probabilities."""
    prefs = []
    if probs_optimized_first is not None:
        prefs.append(probs_optimized_first["A"] + probs_optimized_first["C"] / 2)
    if probs_original_first is not None:
        prefs.append(probs_original_first["B"] + probs_original_first["C"] / 2)
    return sum(prefs) / len(prefs) if prefs else None


def weighted_delta_wr(preferences: Iterable[float | None]) -> float:
    """Probability-weighted ΔWR = 100 · (2 · mean preference − 1) over the pairs with a preference:
    the expected win % − lose % (ties count half to each side). NaN when no pair has one. Its
    length-controlled form: :func:`bpo.eval.length_control.length_controlled` on the same
    preferences."""
    prefs = [p for p in preferences if p is not None]
    if not prefs:
        return float("nan")
    return 100.0 * (2.0 * float(np.mean(prefs)) - 1.0)
