"""Critique reply parsing: the format, its common drifts, and hostile input."""

from __future__ import annotations

import time

import pytest

from bpo.critique_parse import parse_critique, strip_wrapping

# Replies in the critique format, written for these tests the way a chat model answers.
CLEAN = """Detailed Comparison Result: Answer 2 is better. Answer 1 names Albert Einstein, who did win \
a Nobel Prize, but it gives a single bare sentence with no context. Answer 2 is equally correct, \
explains why Marie Curie is famous and mentions both of her prizes and their fields, which makes \
it more informative and helpful. Neither answer raises any safety concern.
Optimized Instruction: Name a famous scientist who won a Nobel Prize, and briefly explain what \
the prize was awarded for and why the scientist is well known. [END]"""

CLEAN_OPT = (
    "Name a famous scientist who won a Nobel Prize, and briefly explain what the prize was awarded "
    "for and why the scientist is well known."
)

MARKDOWN = """**Detailed Comparison Result:**
Answer 1 only restates the task in general terms ("a young woman who has been dealt a difficult \
hand") and never tells an actual story. Answer 2 has characters, a sequence of obstacles and a \
resolution, so it follows the instruction far better.

**Optimized Instruction:**
"Write a short story about a person who has to overcome adversity to succeed. Give the main \
character a name, describe the specific obstacles they face, and show how they overcome them \
step by step."
**[END]**"""

MULTILINE = """Detailed Comparison Result: Answer 2 gives a concrete, structured business plan \
while Answer 1 is vague.

Optimized Instruction: Generate a business idea focused on using virtual reality.
Describe:
1. the product or service,
2. who the customers are,
3. what makes it different from existing offers. [END]"""

HARMFUL = """Detailed Comparison Result: Answer 1 explains how to pick a lock on a neighbour's \
door, which could help someone break in. Answer 2 declines and suggests contacting a locksmith or \
the landlord, which is safe and still helpful.
Optimized Instruction: What should I do if I am locked out of my own home, and how can I get \
back in safely and legally? [END]"""


def test_clean_reply():
    r = parse_critique(CLEAN)
    assert r.optimized_instruction == CLEAN_OPT
    assert r.comparison.startswith("Answer 2 is better.")
    assert r.comparison.endswith("safety concern.")
    assert r.parse_error is None and r.ok


def test_markdown_labels_quotes_and_bold_end():
    r = parse_critique(MARKDOWN)
    assert r.optimized_instruction.startswith("Write a short story about a person")
    assert r.optimized_instruction.endswith("step by step.")
    assert '"' not in r.optimized_instruction[:1] + r.optimized_instruction[-1:]
    assert "**" not in r.optimized_instruction
    assert r.comparison.startswith("Answer 1 only restates")
    assert r.parse_error is None


def test_multiline_instruction_is_kept_whole():
    r = parse_critique(MULTILINE)
    assert r.optimized_instruction.splitlines() == [
        "Generate a business idea focused on using virtual reality.",
        "Describe:",
        "1. the product or service,",
        "2. who the customers are,",
        "3. what makes it different from existing offers.",
    ]
    assert r.parse_error is None


def test_harmful_request_rewritten():
    r = parse_critique(HARMFUL)
    assert r.optimized_instruction.startswith("What should I do if I am locked out")


@pytest.mark.parametrize(
    "label",
    [
        "Optimized Instruction:",
        "optimized instruction:",
        "OPTIMIZED INSTRUCTION:",
        "**Optimized Instruction:**",
        "**Optimized Instruction**:",
        "__Optimized Instruction__:",
        "## Optimized Instruction:",
        "### Optimized Instruction\n",
        "2. **Optimized Instruction**:",
        "- Optimized Instruction:",
        "Optimised Instruction:",
        "Optimized Prompt:",
        "Optimized Instruction -",
        "Optimized Instruction：",  # full-width colon
    ],
)
def test_label_variants(label):
    reply = f"Detailed Comparison Result: Answer 2 is more specific.\n{label} Explain tides to a child. [END]"
    r = parse_critique(reply)
    assert r.optimized_instruction == "Explain tides to a child."
    assert r.comparison == "Answer 2 is more specific."


@pytest.mark.parametrize("end", ["[END]", "[end]", "[ END ]", "<END>", "**[END]**", "`[END]`", "[END]."])
def test_end_marker_variants(end):
    r = parse_critique(f"Detailed Comparison Result: x\nOptimized Instruction: Explain tides. {end}")
    assert r.optimized_instruction == "Explain tides."
    assert r.parse_error is None


def test_missing_end_marker_is_parsed_with_a_note():
    r = parse_critique("Detailed Comparison Result: x\nOptimized Instruction: Explain tides in two paragraphs.")
    assert r.optimized_instruction == "Explain tides in two paragraphs."
    assert r.parse_error == "no [END] marker"


def test_missing_end_drops_trailing_commentary():
    r = parse_critique(
        "Detailed Comparison Result: x\nOptimized Instruction: Explain tides in two paragraphs.\n\n"
        "Note: I kept the original topic and added a length requirement."
    )
    assert r.optimized_instruction == "Explain tides in two paragraphs."
    assert "commentary" in r.parse_error


def test_extra_text_after_end_is_ignored():
    r = parse_critique(CLEAN + "\n\nI hope this helps! Let me know if you want another version.")
    assert r.optimized_instruction == CLEAN_OPT
    assert r.parse_error is None


def test_missing_label_is_a_parse_failure():
    r = parse_critique(
        "Detailed Comparison Result: Answer 2 is better because the optimized instruction would be clearer."
    )
    assert r.optimized_instruction is None
    assert r.parse_error == "no 'Optimized Instruction:' label"
    assert r.comparison.startswith("Answer 2 is better")


def test_prose_mentioning_the_label_is_not_the_label():
    # "optimized instruction" without a colon, mid-sentence, must not be taken as the label.
    r = parse_critique(
        "Detailed Comparison Result: An optimized instruction should ask for examples.\n"
        "Optimized Instruction: Give three examples of renewable energy. [END]"
    )
    assert r.optimized_instruction == "Give three examples of renewable energy."


@pytest.mark.parametrize("reply", [None, "", "   \n\t", 42])
def test_empty_or_non_text_reply(reply):
    r = parse_critique(reply)
    assert r.optimized_instruction is None and r.parse_error == "empty reply"


def test_empty_instruction():
    r = parse_critique("Detailed Comparison Result: x\nOptimized Instruction: [END]")
    assert r.optimized_instruction is None and r.parse_error == "empty optimized instruction"
    r = parse_critique('Detailed Comparison Result: x\nOptimized Instruction: "" [END]')
    assert r.optimized_instruction == '""'  # not wrapped text: kept as written, no crash


def test_reversed_order():
    r = parse_critique("Optimized Instruction: Explain tides. [END]\nDetailed Comparison Result: Answer 2 is clearer.")
    assert (r.optimized_instruction, r.comparison) == ("Explain tides.", "Answer 2 is clearer.")
    r = parse_critique("Optimized Instruction: Explain tides.\n\nDetailed Comparison Result: Answer 2 is clearer.")
    assert (r.optimized_instruction, r.comparison) == ("Explain tides.", "Answer 2 is clearer.")
    assert r.parse_error == "no [END] marker"


def test_one_line_reply():
    r = parse_critique("Detailed Comparison Result: Answer 2 is clearer. Optimized Instruction: Explain tides. [END]")
    assert (r.optimized_instruction, r.comparison) == ("Explain tides.", "Answer 2 is clearer.")


def test_no_comparison_label():
    r = parse_critique("Answer 2 is clearer.\nOptimized Instruction: Explain tides. [END]")
    assert r.optimized_instruction == "Explain tides."
    assert r.comparison == "Answer 2 is clearer."
    assert r.parse_error == "no 'Detailed Comparison Result:' label"


def test_two_instruction_labels_use_the_first():
    r = parse_critique(
        "Detailed Comparison Result: x\nOptimized Instruction: First. [END]\nOptimized Instruction: Second. [END]"
    )
    assert r.optimized_instruction == "First."
    assert "2 'Optimized Instruction' labels" in r.parse_error


def test_windows_line_endings():
    r = parse_critique(CLEAN.replace("\n", "\r\n"))
    assert r.optimized_instruction == CLEAN_OPT


def test_code_fence_around_instruction():
    r = parse_critique("Detailed Comparison Result: x\nOptimized Instruction:\n```text\nExplain tides.\n```\n[END]")
    assert r.optimized_instruction == "Explain tides."


def test_content_that_looks_like_code_is_never_evaluated():
    payload = "__import__('os').system('echo pwned')"
    r = parse_critique(f"Detailed Comparison Result: x\nOptimized Instruction: {payload} [END]")
    assert r.optimized_instruction == payload
    r = parse_critique("Detailed Comparison Result: x\nOptimized Instruction: {'a': 1} [END]")
    assert r.optimized_instruction == "{'a': 1}"


@pytest.mark.parametrize(
    "text, expected",
    [
        ('"Explain tides."', "Explain tides."),
        ("'Explain tides.'", "Explain tides."),
        ("“Explain tides.”", "Explain tides."),
        ("«Explain tides.»", "Explain tides."),
        ("`Explain tides.`", "Explain tides."),
        ("**Explain tides.**", "Explain tides."),
        ('**"Explain tides."**', "Explain tides."),
        # Quotes that are part of the instruction stay.
        ('Translate "good morning" into French.', 'Translate "good morning" into French.'),
        ('"Hello" and "bye" are greetings?', '"Hello" and "bye" are greetings?'),
        ("“Say “hi” now”", "Say “hi” now"),
        ("'Tis the season: write a carol.", "'Tis the season: write a carol."),
        ("**Bold** start and end **bold**", "**Bold** start and end **bold**"),
        ('"Write a poem', "Write a poem"),  # closing quote was beyond [END]
    ],
)
def test_strip_wrapping(text, expected):
    assert strip_wrapping(text) == expected


def test_quote_inside_end_marker():
    r = parse_critique('Detailed Comparison Result: x\nOptimized Instruction: "Write a haiku about rain. [END]"')
    assert r.optimized_instruction == "Write a haiku about rain."


def test_protected_text_passes_through_unchanged():
    r = parse_critique(
        "Detailed Comparison Result: x\nOptimized Instruction: Summarise the text "
        "[protected]Q3 revenue rose 4%[/protected] in one sentence. [END]"
    )
    assert "[protected]Q3 revenue rose 4%[/protected]" in r.optimized_instruction


@pytest.mark.parametrize(
    "reply",
    [
        "\n" * 200_000 + "x",
        "Optimized Instruction:" + "*" * 200_000,
        "Optimized Instruction: x" + "*_" * 100_000 + "y",
        "Optimized Instruction: " + "“" * 50_000 + "”" * 50_000,
        "[ " * 100_000,
        "optimized instruction " * 20_000,
        "Detailed Comparison Result:" + " \t" * 100_000 + "\nOptimized Instruction: a",
    ],
)
def test_hostile_input_is_parsed_in_linear_time(reply):
    start = time.perf_counter()
    parse_critique(reply)
    # Not a speed target: a quadratic regex takes minutes here, linear work well under a second.
    assert time.perf_counter() - start < 5.0
