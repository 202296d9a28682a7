"""Win-rate, interval, length-control and similarity arithmetic on hand-computed and synthetic cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bpo.eval.intrinsic import lcs_length, rouge_l, similarity_summary, token_f1
from bpo.eval.length_control import OUTCOME_PREFERENCE, length_controlled
from bpo.eval.winrates import (
    bootstrap_delta_interval,
    mean_words,
    position_consistency,
    verdict_probabilities,
    weighted_delta_wr,
    weighted_preference,
    win_rates,
)


def test_win_rates_hand_computed():
    # 10 pairs: 5 win, 2 tie, 2 lose, 1 invalid -> percentages over the 9 valid pairs
    r = win_rates(["win"] * 5 + ["tie"] * 2 + ["lose"] * 2 + ["invalid"])
    assert (r.n, r.n_invalid, r.n_valid) == (10, 1, 9)
    assert r.win == pytest.approx(500 / 9) and r.tie == pytest.approx(200 / 9) and r.lose == pytest.approx(200 / 9)
    assert r.delta_wr == pytest.approx(300 / 9)  # 33.33


def test_paper_headline_arithmetic():
    # Vicuna Eval, gpt-3.5-turbo + BPO: 48 / 7 / 25 of 80 -> 60.0 / 8.75 / 31.25, ΔWR 28.75
    r = win_rates(["win"] * 48 + ["tie"] * 7 + ["lose"] * 25)
    assert (r.win, r.tie, r.lose, r.delta_wr) == pytest.approx((60.0, 8.75, 31.25, 28.75))


def test_win_rates_all_invalid_is_nan_not_zero():
    r = win_rates(["invalid", "invalid"])
    assert r.n_invalid == 2 and math.isnan(r.win) and math.isnan(r.delta_wr)
    assert all(math.isnan(x) for x in bootstrap_delta_interval(["invalid"], samples=10, seed=0))


def test_unknown_outcome_is_an_error():
    with pytest.raises(ValueError, match="unknown outcome"):
        win_rates(["win", "draw"])


def test_bootstrap_degenerate_sample_has_zero_width():
    assert bootstrap_delta_interval(["win"] * 7, samples=500, seed=3) == (100.0, 100.0)
    assert bootstrap_delta_interval(["tie"] * 4 + ["invalid"], samples=500, seed=3) == (0.0, 0.0)


@pytest.mark.parametrize(
    "outcomes, expected",
    [
        # two pairs (win, lose): resample deltas -100 (p=1/4), 0 (1/2), +100 (1/4) -> 95% [-100, 100]
        (["win", "lose"], (-100.0, 100.0)),
        # (win, tie): 0 (1/4), 50 (1/2), 100 (1/4) -> [0, 100]
        (["win", "tie"], (0.0, 100.0)),
    ],
)
def test_bootstrap_two_pairs_exact(outcomes, expected):
    assert bootstrap_delta_interval(outcomes, samples=4000, seed=0) == expected


def test_bootstrap_matches_normal_approximation():
    # 400 pairs, 60% win, 10% tie, 30% lose: score s in {+1, 0, -1}, E[s] = 0.3, E[s^2] = 0.9,
    # sd = sqrt(0.9 - 0.09) = 0.9, se of ΔWR = 100 * 0.9 / sqrt(400) = 4.5 -> 95% half-width 8.82
    outcomes = ["win"] * 240 + ["tie"] * 40 + ["lose"] * 120
    low, high = bootstrap_delta_interval(outcomes, samples=20000, seed=7)
    assert (low + high) / 2 == pytest.approx(30.0, abs=0.6)
    assert (high - low) / 2 == pytest.approx(1.96 * 4.5, abs=0.6)


def test_bootstrap_is_seeded_and_confidence_widens():
    outcomes = ["win"] * 30 + ["tie"] * 10 + ["lose"] * 20
    a = bootstrap_delta_interval(outcomes, samples=1000, seed=11)
    assert a == bootstrap_delta_interval(outcomes, samples=1000, seed=11)
    assert a != bootstrap_delta_interval(outcomes, samples=1000, seed=12)
    narrow = bootstrap_delta_interval(outcomes, samples=1000, seed=11, confidence=0.5)
    assert a[0] < narrow[0] < narrow[1] < a[1]
    with pytest.raises(ValueError):
        bootstrap_delta_interval(outcomes, samples=0, seed=1)


def test_position_consistency_and_lengths():
    assert position_consistency([True, False, True, None]) == pytest.approx(200 / 3)
    assert position_consistency([None]) is None
    assert mean_words(["one two three", None, "four"]) == 2.0
    assert mean_words([None]) is None


def test_token_f1_hand_computed():
    # pred tokens: the cat sat ; ref: the cat sat down -> P = 3/3, R = 3/4, F1 = 6/7
    assert token_f1("The cat sat.", "the cat sat down") == pytest.approx(6 / 7)
    # bag of words: counts clip ("the the" vs "the") -> common 1, P 1/2, R 1 -> 2/3
    assert token_f1("the the", "the") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("a", "") == 0.0 and token_f1("x y", "z") == 0.0


def test_rouge_l_hand_computed():
    assert lcs_length("a b c d e".split(), "a c e f".split()) == 3
    # pred "a b c d e" (5), ref "a c e f" (4): LCS 3 -> P 3/5, R 3/4, F 2PR/(P+R) = 2/3
    assert rouge_l("a b c d e", "a c e f") == pytest.approx(2 / 3)
    # order matters for ROUGE-L, not for token-F1
    assert rouge_l("c b a", "a b c") == pytest.approx(1 / 3) and token_f1("c b a", "a b c") == 1.0


def test_similarity_summary_has_a_baseline():
    s = similarity_summary(
        ["Explain photosynthesis simply for a child"],
        ["Explain photosynthesis simply for a child"],
        ["photosynthesis?"],
    )
    assert s["n"] == 1 and s["token_f1"] == 1.0 and s["exact_match"] == 1.0 and s["unchanged"] == 0.0
    assert s["baseline_token_f1"] == pytest.approx(2 * (1 * 1 / 6) / (1 + 1 / 6))


# --- length control ----------------------------------------------------------------------


def _synthetic(seed: int, *, n: int, quality: float, length_shift: float):
    """Judgments of a judge that prefers longer answers: P(optimized preferred) =
    σ(quality + 2 tanh(Δlen / 300)), 15% ties. Returns (outcomes, optimized lengths, original lengths)."""
    rng = np.random.default_rng(seed)
    original = rng.integers(200, 1200, n).astype(float)
    optimized = np.maximum(original + rng.normal(length_shift, 300, n), 20.0)
    p = 1.0 / (1.0 + np.exp(-(quality + 2.0 * np.tanh((optimized - original) / 300))))
    won = rng.random(n) < p
    tie = rng.random(n) < 0.15
    outcomes = np.where(tie, "tie", np.where(won, "win", "lose")).tolist()
    return outcomes, optimized, original


def _lc(outcomes, optimized, original, samples=200):
    return length_controlled([OUTCOME_PREFERENCE[o] for o in outcomes], optimized, original, samples=samples, seed=0)


def test_longer_but_no_better_raw_gain_vanishes_under_length_control():
    # The optimized answers are longer on average (+150 characters) and no better: the judge
    # only rewards length. Raw ΔWR is clearly positive; the LC interval covers 0.
    outcomes, optimized, original = _synthetic(3, n=200, quality=0.0, length_shift=150.0)
    raw = win_rates(outcomes).delta_wr
    raw_low, _ = bootstrap_delta_interval(outcomes, samples=2000, seed=0)
    lc = _lc(outcomes, optimized, original)
    assert raw > 20 and raw_low > 0
    assert lc.low <= 0 <= lc.high
    assert abs(lc.delta_wr) < raw / 2 and lc.length_coef > 0.5 and lc.n == 200


def test_better_at_equal_length_stays_positive():
    # Same length on average (differences symmetric around 0), genuinely better: LC ΔWR > 0.
    outcomes, optimized, original = _synthetic(0, n=200, quality=0.8, length_shift=0.0)
    lc = _lc(outcomes, optimized, original)
    assert lc.low > 0 and lc.delta_wr > 20


def test_length_control_exact_cases():
    # identity optimizer: every pair a tie, no length difference -> 0 with a zero-width interval
    lc = _lc(["tie"] * 10, [50] * 10, [50] * 10)
    assert (lc.delta_wr, lc.low, lc.high, lc.length_coef, lc.n_separated) == (0.0, 0.0, 0.0, None, 0)
    # no length difference at all: the intercept-only GLM is the mean preference -> LC == raw
    outcomes = ["win"] * 6 + ["tie"] * 2 + ["lose"] * 2
    lc = _lc(outcomes, [80] * 10, [80] * 10)
    assert lc.delta_wr == pytest.approx(win_rates(outcomes).delta_wr) and lc.length_coef is None
    assert lc.low <= lc.delta_wr <= lc.high
    assert length_controlled([], [], [], samples=5, seed=0) is None


def test_length_control_matches_the_glm_and_is_seeded():
    import statsmodels.api as sm

    outcomes, optimized, original = _synthetic(5, n=120, quality=0.3, length_shift=100.0)
    y = np.array([OUTCOME_PREFERENCE[o] for o in outcomes])
    diff = optimized - original
    x = np.tanh(diff / diff.std())
    fit = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit()
    lc = _lc(outcomes, optimized, original, samples=50)
    assert lc.delta_wr == pytest.approx(100 * (2 / (1 + np.exp(-fit.params[0])) - 1))
    assert lc.length_coef == pytest.approx(fit.params[1])
    assert lc == _lc(outcomes, optimized, original, samples=50)
    other = length_controlled(y, optimized, original, samples=50, seed=1)
    assert (other.low, other.high) != (lc.low, lc.high) and other.delta_wr == lc.delta_wr


def test_length_control_survives_perfect_separation():
    # the longer answer always wins: no ML estimate exists; the ridge fallback gives a finite,
    # answer (length differences ±100, ±200: symmetric, so σ(β₀) = 0.5) and the fits that needed it
    # are counted
    lc = _lc(["win", "win", "lose", "lose"], [300, 200, 100, 50], [100, 100, 200, 250], samples=50)
    assert lc.n_separated >= 1 and abs(lc.delta_wr) < 1e-6
    assert -100 <= lc.low <= lc.high <= 100


def test_length_control_rejects_bad_input():
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        length_controlled([1.5], [1], [1], samples=5, seed=0)
    with pytest.raises(ValueError, match="same length"):
        length_controlled([1.0, 0.0], [1], [1], samples=5, seed=0)


# --- probability-weighted win rate ---------------------------------------------------------


def test_verdict_probabilities_pool_and_renormalise():
    probs = verdict_probabilities(
        {"A": math.log(0.6), " a": math.log(0.1), "B": math.log(0.2), "tie": math.log(0.05), "The": math.log(0.05)}
    )
    assert probs == pytest.approx({"A": 0.7 / 0.95, "B": 0.2 / 0.95, "C": 0.05 / 0.95})
    assert verdict_probabilities({"Sure": -0.1}) is None


def test_weighted_preference_and_delta():
    # optimized first: P(A) .7, P(C) .2 -> .8 ; original first: P(B) .5, P(C) .2 -> .6 ; mean .7
    first = {"A": 0.7, "B": 0.1, "C": 0.2}
    second = {"A": 0.3, "B": 0.5, "C": 0.2}
    assert weighted_preference(first, second) == pytest.approx(0.7)
    assert weighted_preference(None, second) == pytest.approx(0.6)  # single_random: one order
    assert weighted_preference(None, None) is None
    # hard verdicts reproduce win − lose: prefs 1, 1, .5, 0 -> mean .625 -> ΔWR 25 (= 50 − 25)
    assert weighted_delta_wr([1.0, 1.0, 0.5, 0.0, None]) == pytest.approx(25.0)
    assert math.isnan(weighted_delta_wr([None]))
