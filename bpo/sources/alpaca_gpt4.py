"""Alpaca-GPT4: GPT-4 answers to the Alpaca instructions are the good responses, the
original text-davinci-003 answers the bad ones. ``input`` is the context.

Two layouts:

- ``pair``: a GPT-4 file (``instruction, input, output``; e.g. vicgalle/alpaca-gpt4) and
  a text-davinci-003 file in the same columns (e.g. tatsu-lab/alpaca), joined on the
  exact (instruction, input). A candidate is a GPT-4 record.
- ``comparison``: one file of ``{instruction, input, output: [better, worse]}`` (the
  GPT-4-LLM comparison data). A candidate is a record; the models are not named there.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
from datasets import Features, List, Value

from bpo.readers import read_dataset
from bpo.sources.base import ParseResult, pair, read_source, record_read

NAME = "alpaca_gpt4"
FEATURES = Features({"instruction": Value("string"), "input": Value("string"), "output": Value("string")})
COMPARISON_FEATURES = Features(
    {"instruction": Value("string"), "input": Value("string"), "output": List(Value("string"))}
)
COLUMNS = ["instruction", "input", "output"]
GOOD_MODEL, BAD_MODEL = "gpt-4", "text-davinci-003"


def _rows(table: pa.Table):
    return zip(*(table.column(c).to_pylist() for c in COLUMNS))


def parse_pair(good: pa.Table, bad: pa.Table) -> ParseResult:
    """Join the GPT-4 and text-davinci-003 records on (instruction, input); a missing
    input is the empty string (some copies of Alpaca leave it out)."""
    res = ParseResult(unit="instruction")
    answers: dict[tuple[str, str], str] = {}
    other: Counter = Counter()
    for instruction, context, output in _rows(bad):
        key = (instruction, context or "")
        if instruction is None or output is None:
            other["bad_malformed_missing_field"] += 1
        elif key in answers:
            other["bad_duplicate_key"] += 1  # the first answer is the one used
        else:
            answers[key] = output
    used: set[tuple[str, str]] = set()
    for i, (instruction, context, output) in enumerate(_rows(good)):
        key = (instruction, context or "")
        if instruction is None or output is None:
            res.dropped["malformed_missing_field"] += 1
        elif key in used:
            res.dropped["duplicate_key"] += 1
        elif key not in answers:
            res.dropped["unmatched"] += 1
        else:
            used.add(key)
            res.pairs.append(
                pair(
                    source_id=i,
                    instruction=instruction,
                    context=key[1],
                    good=output,
                    bad=answers[key],
                    good_model=GOOD_MODEL,
                    bad_model=BAD_MODEL,
                )
            )
    other["bad_unmatched"] = len(answers) - len(used)
    res.other["bad_records"] = dict(sorted(other.items()))
    return res


def parse_comparison(table: pa.Table) -> ParseResult:
    res = ParseResult(unit="record")
    for i, (instruction, context, output) in enumerate(_rows(table)):
        if instruction is None or output is None:
            res.dropped["malformed_missing_field"] += 1
        elif len(output) != 2 or output[0] is None or output[1] is None:
            res.dropped["malformed_output_not_a_pair"] += 1
        else:
            res.pairs.append(pair(source_id=i, instruction=instruction, context=context or "", good=output[0], bad=output[1]))
    return res


def load(settings: dict) -> ParseResult:
    if settings.get("format", "pair") == "comparison":
        raw = read_source(NAME, settings, COMPARISON_FEATURES)
        return record_read(parse_comparison(raw.table), raw)
    good = read_source(NAME, settings, FEATURES)
    bad = read_dataset(
        path=settings.get("bad_path"), hub_id=settings.get("bad_hub_id"), split=settings.get("split", "train"),
        features=FEATURES, what=f"sources.{NAME} (bad_path/bad_hub_id)",
    )
    res = record_read(parse_pair(good.table, bad.table), good)
    # an unreadable bad record is not a candidate: counted with the other bad records
    return record_read(res, bad, unreadable_as="bad_records")
