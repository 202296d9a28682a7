"""Win-rate, interval and similarity arithmetic on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from bpo.eval.intrinsic import lcs_length, rouge_l, similarity_summary, token_f1
from bpo.eval.winrates import bootstrap_delta_interval, mean_words, position_consistency, win_rates


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
    s = similarity_summary(["Explain photosynthesis simply for a child"], ["Explain photosynthesis simply for a child"], ["photosynthesis?"])
    assert s["n"] == 1 and s["token_f1"] == 1.0 and s["exact_match"] == 1.0 and s["unchanged"] == 0.0
    assert s["baseline_token_f1"] == pytest.approx(2 * (1 * 1 / 6) / (1 + 1 / 6))
