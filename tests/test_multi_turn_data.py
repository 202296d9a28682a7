"""Multi-turn data (issue 20): a dozen hand-written hh-rlhf dialogues checked turn by turn through
the data stage (parse, clean, ids, max_history_turns), then the multi-turn critique request, the
stand-in's answer to it and the SFT filter on the rewrite of the last message."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bpo.critique import build_requests
from bpo.history import render_history
from bpo.pairs import assign_ids, build_source_pairs, clean_pairs
from bpo.schemas import PAIRS, SFT, read_table
from bpo.settings.config import load_config
from bpo.settings.data import PairsSourceSettings
from bpo.sft.core import FilterRules
from bpo.sources import hh_rlhf
from bpo.templates import load_critique

LIMITS = {"min_chars": 1, "max_instruction_chars": 4000, "max_context_chars": 4000, "max_response_chars": 4000}


def H(text):
    return f"\n\nHuman: {text}"


def A(text):
    return f"\n\nAssistant: {text}"


def row(prefix: str, good: str, bad: str, bad_prefix: str | None = None) -> dict:
    return {"chosen": prefix + A(good), "rejected": (prefix if bad_prefix is None else bad_prefix) + A(bad)}


# (name, raw row, expected: (history as (role, content) pairs, instruction, good, bad) or the drop reason)
DIALOGUES = [
    (
        "single turn",
        row(H("Name a primary colour."), "Red.", "Seven."),
        ([], "Name a primary colour.", "Red.", "Seven."),
    ),
    (
        "two turns",
        row(
            H("Give me a pancake recipe.") + A("Flour, eggs, milk.") + H("Make it vegan."),
            "Use oat milk and flax eggs.",
            "No.",
        ),
        (
            [("user", "Give me a pancake recipe."), ("assistant", "Flour, eggs, milk.")],
            "Make it vegan.",
            "Use oat milk and flax eggs.",
            "No.",
        ),
    ),
    (
        "three turns",
        row(
            H("Who wrote Dune?")
            + A("Frank Herbert.")
            + H("When?")
            + A("1965.")
            + H("Rewrite your previous response, starting every sentence with A."),
            "A novel from 1965, by Frank Herbert.",
            "Dune is a desert planet.",
        ),
        (
            [("user", "Who wrote Dune?"), ("assistant", "Frank Herbert."), ("user", "When?"), ("assistant", "1965.")],
            "Rewrite your previous response, starting every sentence with A.",
            "A novel from 1965, by Frank Herbert.",
            "Dune is a desert planet.",
        ),
    ),
    (
        "four turns",
        row(
            H("hi")
            + A("Hello!")
            + H("tell me a joke")
            + A("Why did the hen cross?")
            + H("why?")
            + A("To get across.")
            + H("another one"),
            "Knock knock.",
            "No more jokes.",
        ),
        (
            [
                ("user", "hi"),
                ("assistant", "Hello!"),
                ("user", "tell me a joke"),
                ("assistant", "Why did the hen cross?"),
                ("user", "why?"),
                ("assistant", "To get across."),
            ],
            "another one",
            "Knock knock.",
            "No more jokes.",
        ),
    ),
    (
        "a role word inside a turn stays text",
        row(
            H("What does 'Human: hi' mean in a log?") + A("A speaker label.") + H("And Assistant:?"),
            "The other speaker.",
            "Nothing.",
        ),
        (
            [("user", "What does 'Human: hi' mean in a log?"), ("assistant", "A speaker label.")],
            "And Assistant:?",
            "The other speaker.",
            "Nothing.",
        ),
    ),
    (
        "multi-line turns",
        row(H("List two fruits.") + A("1. Apple\n2. Pear") + H("One more,\nplease."), "3. Plum", "Carrot"),
        ([("user", "List two fruits."), ("assistant", "1. Apple\n2. Pear")], "One more,\nplease.", "3. Plum", "Carrot"),
    ),
    (
        "differ in an earlier human turn",
        row(
            H("Say hi.") + A("Hi.") + H("Again."),
            "Hi again.",
            "Bye.",
            bad_prefix=H("Say bye.") + A("Hi.") + H("Again."),
        ),
        "malformed_dialogues_differ",
    ),
    (
        "differ in an earlier assistant turn",
        row(
            H("Say hi.") + A("Hi.") + H("Again."),
            "Hi again.",
            "Bye.",
            bad_prefix=H("Say hi.") + A("Hello.") + H("Again."),
        ),
        "malformed_dialogues_differ",
    ),
    (
        "differ only in whitespace before the last turn",
        row(H("Say hi.") + A("Hi.") + H("Again."), "Hi!", "Bye.", bad_prefix=H("Say hi. ") + A("Hi.") + H("Again.")),
        "malformed_dialogues_differ",
    ),
    (
        "two human turns in a row",
        row(H("One.") + H("Two.") + A("Three.") + H("Four."), "Five.", "Six."),
        "malformed_turn_order",
    ),
    (
        "ends with a human turn",
        {"chosen": H("Q?") + A("A.") + H("More?"), "rejected": H("Q?") + A("B.") + H("More?")},
        "malformed_turn_order",
    ),
    (
        "text before the first turn",
        row("Preamble" + H("Q?") + A("A.") + H("More?"), "Yes.", "No."),
        "malformed_text_before_first_turn",
    ),
    (
        "an empty earlier assistant turn",
        row(H("Hello?") + A("") + H("Are you there?"), "Yes, sorry.", "..."),
        "empty_history_turn",
    ),
]


def _through_the_data_stage(rows):
    parsed = hh_rlhf.parse(hh_rlhf_table(rows), multi_turn=True)
    kept, cleaning = clean_pairs(parsed.pairs, locate=parsed.candidate_location, **LIMITS)
    pairs, _ = assign_ids(kept, "hh_rlhf")
    return parsed, pairs, Counter(parsed.dropped) + Counter(cleaning)


def hh_rlhf_table(rows):
    import pyarrow as pa

    return pa.table({"chosen": [r["chosen"] for r in rows], "rejected": [r["rejected"] for r in rows]})


@pytest.mark.parametrize("name, raw, expected", DIALOGUES, ids=[d[0] for d in DIALOGUES])
def test_hand_written_dialogue_turn_by_turn(name, raw, expected):
    parsed, pairs, dropped = _through_the_data_stage([raw])
    if isinstance(expected, str):
        assert pairs == [] and dropped == Counter({expected: 1}), name
        return
    history, instruction, good, bad = expected
    (p,) = pairs
    assert [(t["role"], t["content"]) for t in p["history"]] == history  # every turn, in order
    assert (p["instruction"], p["good_response"], p["bad_response"]) == (instruction, good, bad)
    assert p["context"] == ""  # a conversation is never an attached document
    assert p["num_turns"] == 1 + sum(r == "user" for r, _ in history)
    assert p["history_chars"] == len(render_history(p["history"]))
    # without multi_turn a dialogue with history is a counted drop, not a pair
    single = hh_rlhf.parse(hh_rlhf_table([raw]))
    assert (len(single.pairs), dict(single.dropped)) == ((1, {}) if not history else (0, {"multi_turn": 1}))


def test_same_last_turn_with_different_histories_are_two_pairs_and_single_turn_ids_unchanged():
    from bpo.pairs import pair_id

    a = row(H("Recipe for bread?") + A("Flour, water, yeast.") + H("How long?"), "About three hours.", "Ten.")
    b = row(H("Recipe for rice?") + A("Rice and water.") + H("How long?"), "About three hours.", "Ten.")
    single = row(H("How long?"), "About three hours.", "Ten.")
    _, pairs, dropped = _through_the_data_stage([a, b, single, a])
    assert [len(p["history"]) for p in pairs] == [2, 2, 0] and not dropped  # the repeat of a: an exact duplicate
    assert len({p["pair_id"] for p in pairs}) == 3
    assert pairs[2]["pair_id"] == pair_id("How long?", "", "About three hours.", "Ten.")  # the formula of before


def test_max_history_turns_and_stats_on_the_whole_table(tmp_path):
    rows = [d[1] for d in DIALOGUES]
    src = tmp_path / "hh.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = {}
    for bound in (None, 1):
        cfg = load_config(
            overrides={"sources": {"hh_rlhf": {"path": str(src), "multi_turn": True, "max_history_turns": bound}}}
        )
        stats = build_source_pairs(
            PairsSourceSettings.from_config(cfg, "hh_rlhf"),
            pairs_path=tmp_path / f"{bound}.parquet",
            stats_path=tmp_path / f"{bound}.json",
        )
        out[bound] = stats
    assert out[None]["pairs"] == 6 and out[None]["history"]["pairs_by_user_turns"] == {"1": 1, "2": 3, "3": 1, "4": 1}
    assert out[1]["dropped"]["too_many_turns"] == 2  # the three- and four-turn dialogues
    assert out[1]["locations"]["too_many_turns"] == [f"{src}:3 (field 'history')", f"{src}:4 (field 'history')"]
    assert out[None]["locations"]["empty_history_turn"] == [f"{src}:13 (field 'history')"]
    table = read_table(tmp_path / "None.parquet", PAIRS)
    assert table.schema.field("history").type == PAIRS.field("history").type


def test_multi_turn_critique_request_and_the_stand_in_rewrite_the_last_message_only():
    from bpo.llm.standin import find_instruction

    _, pairs, _ = _through_the_data_stage([DIALOGUES[2][1], DIALOGUES[0][1]])
    cfg = load_config()
    from bpo.settings.llm import LLMCall

    call = LLMCall.from_section(cfg, cfg["critique"], "critique", "the critique stage")
    single_t = load_critique("builtin:critique.txt")
    multi_t = load_critique("builtin:critique_multi_turn.txt", multi_turn=True)
    multi_req, single_req = build_requests(pairs, single_t, call, multi_t)
    multi_text = multi_req.messages[-1]["content"]
    assert render_history(pairs[0]["history"]) in multi_text
    assert find_instruction(multi_text) == "Rewrite your previous response, starting every sentence with A."
    assert "=== The user's last message ===" in multi_text
    # the stand-in's answer: an improved version of the last message, not of the conversation
    from bpo.critique_parse import parse_critique
    from bpo.llm.standin import _critique

    optimized = parse_critique(_critique(multi_text, seed=1)).optimized_instruction
    assert optimized.startswith(("Rewrite your previous response", "Please help", "I need"))
    assert "Who wrote Dune" not in optimized and "Frank Herbert" not in optimized
    # a single-turn pair's request is exactly the one critique.txt always made
    assert single_req == build_requests([pairs[1]], single_t, call)[0]
    from bpo.critique import CritiqueError

    with pytest.raises(CritiqueError, match="has a history but no multi-turn template"):
        build_requests(pairs, single_t, call)


def test_sft_drops_a_rewrite_that_copies_the_history():
    rules = FilterRules(
        max_original_to_optimized=2.0,
        max_optimized_to_original=6.0,
        protected_markers=("[protected",),
        length_rules_with_context=False,
    )
    history = [
        {"role": "user", "content": "Tell me about the history of the Roman empire please."},
        {"role": "assistant", "content": "The Roman empire lasted from 27 BC until the fall of Rome in 476."},
    ]
    last = "Why did it fall?"
    ok = "Explain the main reasons why the Roman empire you described fell in 476."
    copied = "The Roman empire lasted from 27 BC until the fall of Rome in 476; why did it fall?"
    labels = "User: Why did it fall?"
    assert rules.reason(last, ok, False, history) is None
    assert rules.reason(last, copied, False, history) == "copies_history"
    assert rules.reason(last, labels, False, history) == "copies_history"
    assert rules.reason(last, copied, False) != "copies_history"  # single-turn: the rule does not apply
    assert SFT.field("history").type == PAIRS.field("history").type
