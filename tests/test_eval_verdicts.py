"""Verdict parsing (the odd ways judges write verdicts) and the two-order tie rule."""

from __future__ import annotations

import pytest

from bpo.eval.verdicts import combine_orders, parse_verdict

PARSED = [
    # the requested form, with decoration
    ("[[A]]", "A"),
    ("The first answer is more complete.\n\n[[B]]", "B"),
    ("[[C]]", "C"),
    ("[[a]]", "A"),
    ("**[[B]]**", "B"),
    ("`[[A]]`", "A"),
    ("Final verdict: [[C]].", "C"),
    ("[[ Assistant A ]]", "A"),
    ("[[Assistant B]]", "B"),
    ("[[Tie]]", "C"),
    ("[[tie]]", "C"),
    ("[ [B] ]", "B"),
    # lost or foreign brackets
    ("[A]", "A"),
    ("My verdict: [B]", "B"),
    ("【A】", "A"),
    ("［［Ｂ］］", "B"),  # fullwidth
    # prose after a verdict label
    ("Final verdict: A", "A"),
    ("Final Verdict: Assistant B", "B"),
    ("Verdict: Assistant A is better.", "A"),
    ("The winner is Assistant B.", "B"),
    ("Final verdict: tie", "C"),
    ("Verdict - It's a tie.", "C"),
    ("Final verdict: a tie.", "C"),
    # a bare verdict
    ("A", "A"),
    ("B.", "B"),
    ("(A)", "A"),
    ("Tie", "C"),
    # prose without a label
    ("Assistant A is clearly better than B.", "A"),
    ("I prefer Assistant B.", "B"),
    ("Both responses are equally helpful.", "C"),
    ("Neither answer is better than the other.", "C"),
    # several tokens: the template echoed, then the choice; a labelled final choice
    ("Reply [[A]] if A is better, [[B]] if B is better, [[C]] for a tie.\n\nB is more accurate.\n[[B]]", "B"),
    ("Both [[A]] and [[B]] have merits. Final verdict: [[A]]", "A"),
    ("[[A]]\n\nAssistant A explains the steps; Assistant B skips them.", "A"),
]


@pytest.mark.parametrize("text, expected", PARSED)
def test_parse_verdict(text, expected):
    parsed = parse_verdict(text, lenient=True)
    assert parsed.verdict == expected, parsed
    assert parsed.reason is None
    strict = parse_verdict(text)  # without lenient, only a verdict token decides
    if parsed.rule.startswith("lenient:"):
        assert strict.verdict is None and strict.rule == "none"
    else:
        assert strict == parsed


UNPARSEABLE = [
    (None, "empty"),
    ("", "empty"),
    ("   \n", "empty"),
    ("Both answers discuss the history of cats.", "no verdict"),
    ("I like [[A]] but [[B]] is also nice; hard to say.", "ambiguous"),
    ("Assistant A is better in accuracy but Assistant B is better in style.", "ambiguous"),
    ("[[A]] or [[B]] -- I cannot decide between them, sorry", "ambiguous"),
    ("The verdict is a tough call between a and b", "no verdict"),  # lower-case letters are words
]


@pytest.mark.parametrize("text, reason", UNPARSEABLE)
def test_unparseable_verdict_has_a_reason(text, reason):
    parsed = parse_verdict(text, lenient=True)
    assert parsed.verdict is None
    assert parsed.reason.startswith(reason), parsed


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
