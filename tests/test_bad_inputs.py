"""The bad-input corpus (tests/bad_inputs/): each case states its expected outcome, either a
counted drop with its reason and location (file:line and field) in the source's stats, or a
clear error naming the record or the config key."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import yaml

from bpo.config_inputs import input_problems
from bpo.eval.testsets import TestSetError, load_testset
from bpo.pairs import build_source_pairs
from bpo.settings import ConfigError, PairsSourceSettings, load_config
from conftest import REPO

CORPUS = REPO / "tests" / "bad_inputs"


@dataclass(frozen=True)
class Drop:
    """Expected: source ``source`` read from ``file`` counts one drop ``reason`` (under the
    stats' ``other[other]`` when the record is not a candidate) located at ``location``."""

    source: str
    file: str
    reason: str
    location: str
    other: str | None = None


@dataclass(frozen=True)
class Error:
    """Expected: ``error`` raised with every piece of ``says`` in its message."""

    error: type[Exception]
    says: tuple[str, ...]


DROP_CASES = {
    "malformed JSON line": Drop("hh_rlhf", "hh_malformed_json.jsonl", "malformed_invalid_json", "{f}:2"),
    "missing field": Drop("hh_rlhf", "hh_missing_field.jsonl", "malformed_missing_field", "{f}:2 (field 'rejected')"),
    "wrong type": Drop("hh_rlhf", "hh_wrong_type.jsonl", "malformed_wrong_type", "{f}:2 (field 'chosen')"),
    "empty instruction": Drop("hh_rlhf", "hh_empty_instruction.jsonl", "empty_instruction",
                              "{f}:2 (field 'instruction')"),
    "orphan oasst1 reply": Drop("oasst1", "oasst1_orphan_reply.jsonl", "reply_parent_missing",
                                "{f}:4 (field 'parent_id')", other="messages_skipped"),
}


@pytest.mark.parametrize("case", list(DROP_CASES.values()), ids=list(DROP_CASES))
def test_bad_record_is_a_counted_located_drop(tmp_path, case):
    path = str(CORPUS / case.file)
    config = load_config(overrides={"sources": {case.source: {"path": path}}})
    stats = build_source_pairs(PairsSourceSettings.from_config(config, case.source),
                               pairs_path=tmp_path / "p.parquet", stats_path=tmp_path / "s.json")
    assert stats == json.loads((tmp_path / "s.json").read_text())
    where = case.location.format(f=path)
    if case.other:
        assert stats["other"][case.other][case.reason] == 1
        assert stats["other_locations"][case.other][case.reason] == [where]
    else:
        assert stats["dropped"][case.reason] == 1
        assert stats["locations"][case.reason] == [where]
        assert stats["pairs"] >= 1  # the good records around it are kept


def _config_file(name):
    return yaml.safe_load((CORPUS / name).read_text())


def _load(name):
    return load_config(overrides=_config_file(name))


def _inputs(overrides):
    return lambda: _raise_problems(load_config(overrides=overrides))


def _raise_problems(config):
    problems = input_problems(config)
    if problems:
        raise ConfigError("\n".join(problems))


def _testset():
    return load_testset("vicuna_eval", CORPUS / "testset_bad_line.jsonl", "vicuna")


ERROR_CASES = {
    "unknown config key": (lambda: _load("config_unknown_key.yaml"),
                           Error(ConfigError, ("config pairs.max_respnse_chars: unknown key",
                                               "did you mean 'max_response_chars'?"))),
    "wrong enum value": (lambda: _load("config_bad_enum.yaml"),
                         Error(ConfigError, ("config sft.source: 'critique' is not one of",
                                             "did you mean 'critiques'?"))),
    "missing input file": (_inputs(_config_file("config_missing_input.yaml")),
                           Error(ConfigError, ("config sources.hh_rlhf.path: tests/bad_inputs/no-such-file.jsonl "
                                               "does not exist",))),
    "bad test-set file": (_testset, Error(TestSetError, (f"{CORPUS / 'testset_bad_line.jsonl'}:2: not valid JSON",))),
    "template without placeholder": (
        _inputs({"critique": {"template": str(CORPUS / "critique_no_placeholder.txt")}}),
        Error(ConfigError, ("config critique.template:", "missing placeholder(s) {bad_response}"))),
}


@pytest.mark.parametrize("run, expected", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_bad_input_is_a_clear_error(run, expected):
    with pytest.raises(expected.error) as err:
        run()
    message = str(err.value)
    assert all(piece in message for piece in expected.says), message
    assert len(message.splitlines()) == 1  # one problem, one line: no schema dump, no traceback text
