"""Verdict parsing (strict by default, the deciding rule recorded) and the two-order tie rule."""

from __future__ import annotations

import pytest

from bpo.eval.verdicts import combine_orders, parse_verdict

# (reply, verdict, rule) under the strict default
STRICT = [
    # the requested form, with decoration
    ("[[A]]", "A", "sole_token"),
    ("The first answer is more complete.\n\n[[B]]", "B", "sole_token"),
    ("[[C]]", "C", "sole_token"),
    ("[[a]]", "A", "sole_token"),
    ("**[[B]]**", "B", "sole_token"),
    ("`[[A]]`", "A", "sole_token"),
    ("Final verdict: [[C]].", "C", "sole_token"),
    ("[[ Assistant A ]]", "A", "sole_token"),
    ("[[Assistant B]]", "B", "sole_token"),
    ("[[Tie]]", "C", "sole_token"),
    ("[ [B] ]", "B", "sole_token"),
    ("[[B]] ... as said, [[B]]", "B", "sole_token"),
    ("【A】", "A", "sole_token"),
    ("［［Ｂ］］", "B", "sole_token"),  # fullwidth
    # lost brackets
    ("[A]", "A", "single_bracket:sole_token"),
    ("My verdict: [B]", "B", "single_bracket:sole_token"),
    # several tokens, one explicit rule decides
    (
        "Reply [[A]] if A is better, [[B]] if B is better, [[C]] for a tie.\n\nB is more accurate.\n[[B]]",
        "B",
        "final_token",
    ),
    ("Both [[A]] and [[B]] have merits. Final verdict: [[A]]", "A", "verdict_line"),
    ("My verdict: [[A]]\nHad the user asked for brevity, I would have chosen [[B]].", "A", "verdict_line"),
    ("Output your final verdict as [[A]], [[B]] or [[C]].\n\nA is right, B is wrong.\n**[[A]]**.", "A", "final_token"),
    # no token: a bare verdict, or a label followed by nothing but the verdict
    ("A", "A", "bare"),
    ("B.", "B", "bare"),
    ("(A)", "A", "bare"),
    ("Tie", "C", "bare"),
    ("Final verdict: A", "A", "label"),
    ("Final Verdict: Assistant B", "B", "label"),
    ("Verdict: Assistant A is better.", "A", "label"),
    ("The winner is Assistant B.", "B", "label"),
    ("Final verdict: tie", "C", "label"),
    ("Verdict - It's a tie.", "C", "label"),
    ("Final verdict: a tie.", "C", "label"),
]


@pytest.mark.parametrize("text, expected, rule", STRICT)
def test_strict_verdicts_and_their_rule(text, expected, rule):
    parsed = parse_verdict(text)
    assert (parsed.verdict, parsed.rule, parsed.reason) == (expected, rule, None)


# The two inverting cases of issue 12, and their neighbours: never read as a verdict.
INVERTING = [
    ("Assistant A is not better than Assistant B.", "none"),
    ("My verdict: [[A]] … would have chosen [[B]].", "ambiguous"),
    ("My verdict: [[A]] ... but I would have chosen [[B]] if it were shorter.", "ambiguous"),
    ("Verdict: Assistant A is not better than Assistant B.", "none"),
    ("Final verdict: [[A]]\nFinal verdict: [[B]]", "ambiguous"),  # two verdict lines disagree
    ("Final verdict: [[A]]\n[[B]]", "ambiguous"),  # a verdict line and the final token disagree
]


@pytest.mark.parametrize("text, rule", INVERTING)
def test_inverting_replies_are_not_read(text, rule):
    for lenient in (False, True):
        parsed = parse_verdict(text, lenient=lenient)
        assert parsed.verdict is None, (lenient, parsed)
    assert parse_verdict(text).rule == rule


def test_negated_prose_is_refused_when_lenient():
    parsed = parse_verdict("Assistant A is not better than Assistant B.", lenient=True)
    assert (parsed.verdict, parsed.rule, parsed.reason) == (None, "lenient:negation", "negated preference")
    parsed = parse_verdict("I would not choose Assistant A here.", lenient=True)
    assert (parsed.verdict, parsed.rule) == (None, "lenient:negation")


# Prose: nothing under the strict default, a verdict when lenient parsing is switched on.
PROSE = [
    ("Assistant A is clearly better than B.", "A", "lenient:prose"),
    ("I prefer Assistant B.", "B", "lenient:prose"),
    ("Both responses are equally helpful.", "C", "lenient:prose"),
    ("Neither answer is better than the other.", "C", "lenient:prose"),
    ("Final verdict: Assistant A, because it cites its sources.", "A", "lenient:label"),
]


@pytest.mark.parametrize("text, expected, rule", PROSE)
def test_prose_only_when_lenient(text, expected, rule):
    strict = parse_verdict(text)
    assert (strict.verdict, strict.rule, strict.reason) == (None, "none", "no verdict")
    lenient = parse_verdict(text, lenient=True)
    assert (lenient.verdict, lenient.rule) == (expected, rule)


UNPARSEABLE = [
    (None, "empty", "empty"),
    ("", "empty", "empty"),
    ("   \n", "empty", "empty"),
    ("Both answers discuss the history of cats.", "none", "no verdict"),
    ("I like [[A]] but [[B]] is also nice; hard to say.", "ambiguous", "ambiguous (A/B)"),
    ("[[A]] or [[B]] -- I cannot decide between them, sorry", "ambiguous", "ambiguous (A/B)"),
    ("Assistant A is better in accuracy but Assistant B is better in style.", "none", "no verdict"),
    ("The verdict is a tough call between a and b", "none", "no verdict"),  # lower-case letters are words
    ("[A] or [B]?", "single_bracket:ambiguous", "ambiguous (A/B)"),
]


@pytest.mark.parametrize("text, rule, reason", UNPARSEABLE)
def test_unparseable_verdict_has_a_rule_and_reason(text, rule, reason):
    parsed = parse_verdict(text)
    assert (parsed.verdict, parsed.rule, parsed.reason) == (None, rule, reason)


def test_lenient_prose_that_disagrees_is_ambiguous():
    parsed = parse_verdict("Assistant A is better in accuracy but Assistant B is better in style.", lenient=True)
    assert (parsed.verdict, parsed.rule, parsed.reason) == (None, "lenient:ambiguous", "ambiguous (A/B)")


def test_tokens_are_never_overridden_by_prose():
    # a token decides; lenient parsing does not reinterpret it with the prose around it
    parsed = parse_verdict("Assistant A is clearly better.\n\n[[B]]", lenient=True)
    assert (parsed.verdict, parsed.rule) == ("B", "sole_token")


# (verdict with the optimized answer first, verdict with the original answer first) -> outcome
TWO_ORDERS = [
    ("A", "B", "win", True),  # optimized preferred both times
    ("B", "A", "lose", True),  # original preferred both times
    ("C", "C", "tie", True),
    ("A", "A", "tie", False),  # position bias: always the first answer -> disagree -> tie
    ("B", "B", "tie", False),  # always the second answer
    ("A", "C", "tie", False),  # one order prefers, the other ties -> tie
    ("C", "B", "tie", False),
    ("B", "C", "tie", False),
    (None, "B", "invalid", None),
    ("A", None, "invalid", None),
    (None, None, "invalid", None),
]


@pytest.mark.parametrize("first, second, outcome, consistent", TWO_ORDERS)
def test_two_order_rule(first, second, outcome, consistent):
    result = combine_orders(first, second)
    assert (result.outcome, result.consistent) == (outcome, consistent)


def test_combine_rejects_unknown_verdicts():
    with pytest.raises(ValueError, match="verdict must be one of"):
        combine_orders("D", "A")
