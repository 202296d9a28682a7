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

import pyarrow as pa
from datasets import Features, List, Value

from bpo.drops import Drops
from bpo.readers import read_dataset
from bpo.sources.base import ParseResult, pair, read_source, record_read
from bpo.sources.languages import detect_languages

NAME = "alpaca_gpt4"
FEATURES = Features({"instruction": Value("string"), "input": Value("string"), "output": Value("string")})
COMPARISON_FEATURES = Features(
    {"instruction": Value("string"), "input": Value("string"), "output": List(Value("string"))}
)
COLUMNS = ["instruction", "input", "output"]
GOOD_MODEL, BAD_MODEL = "gpt-4", "text-davinci-003"


def _rows(table: pa.Table):
    return zip(*(table.column(c).to_pylist() for c in COLUMNS))


def _missing(instruction, output) -> str | None:
    return "instruction" if instruction is None else "output" if output is None else None


def parse_pair(good: pa.Table, bad: pa.Table, *, locate=None, locate_bad=None) -> ParseResult:
    """Join the GPT-4 and text-davinci-003 records on (instruction, input); a missing
    input is the empty string (some copies of Alpaca leave it out). ``locate``/``locate_bad``:
    row index -> where it was read in each file, for the drops."""
    res = ParseResult(unit="instruction", locate=locate)
    answers: dict[tuple[str, str], str] = {}
    other = Drops()
    where_bad = locate_bad or (lambda row: f"bad row {row}")
    for row, (instruction, context, output) in enumerate(_rows(bad)):
        key = (instruction, context or "")
        if _missing(instruction, output):
            other.add("bad_malformed_missing_field", where_bad(row), _missing(instruction, output))
        elif key in answers:
            other.add("bad_duplicate_key", where_bad(row))  # the first answer is the one used
        else:
            answers[key] = output
    used: set[tuple[str, str]] = set()
    for i, (instruction, context, output) in enumerate(_rows(good)):
        key = (instruction, context or "")
        if _missing(instruction, output):
            res.drop("malformed_missing_field", i, _missing(instruction, output))
        elif key in used:
            res.drop("duplicate_key", i, "instruction")
        elif key not in answers:
            res.drop("unmatched", i, "instruction")
        else:
            used.add(key)
            res.keep(
                i,
                pair(
                    source_id=i,
                    instruction=instruction,
                    context=key[1],
                    good=output,
                    bad=answers[key],
                    good_model=GOOD_MODEL,
                    bad_model=BAD_MODEL,
                ),
            )
    other["bad_unmatched"] = len(answers) - len(used)
    res.set_other("bad_records", other)
    return res


def parse_comparison(table: pa.Table, *, locate=None) -> ParseResult:
    res = ParseResult(unit="record", locate=locate)
    for i, (instruction, context, output) in enumerate(_rows(table)):
        if _missing(instruction, output):
            res.drop("malformed_missing_field", i, _missing(instruction, output))
        elif len(output) != 2 or output[0] is None or output[1] is None:
            res.drop("malformed_output_not_a_pair", i, "output")
        else:
            res.keep(
                i, pair(source_id=i, instruction=instruction, context=context or "", good=output[0], bad=output[1])
            )
    return res


def load(settings: dict) -> ParseResult:
    languages, where = settings.get("languages", "all"), f"sources.{NAME}.languages"
    if settings.get("format", "pair") == "comparison":
        raw = read_source(NAME, settings, COMPARISON_FEATURES)
        return record_read(detect_languages(parse_comparison(raw.table, locate=raw.location), languages, where), raw)
    good = read_source(NAME, settings, FEATURES)
    bad = read_dataset(
        path=settings.get("bad_path"),
        hub_id=settings.get("bad_hub_id"),
        split=settings.get("split", "train"),
        features=FEATURES,
        what=f"sources.{NAME} (bad_path/bad_hub_id)",
    )
    res = parse_pair(good.table, bad.table, locate=good.location, locate_bad=bad.location)
    res = record_read(detect_languages(res, languages, where), good)
    # an unreadable bad record is not a candidate: counted with the other bad records
    return record_read(res, bad, unreadable_as="bad_records")
