"""The bad-input corpus (tests/bad_inputs/): each case states its expected outcome, either a
counted drop with its reason and location (file:line and field) in the source's stats, or a
clear one-line error naming the file, the record or the config key. Every reader is covered:
the sources' (json, jsonl, jsonl.gz), the test sets' and ``bpo optimize --input``; the model
folder checks of ``bpo optimize`` and ``bpo serve`` too."""

from __future__ import annotations

import functools
import gzip
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO

from bpo.cli import main as bpo_main
from bpo.config_inputs import input_problems
from bpo.eval.testsets import TestSetError, load_testset
from bpo.pairs import build_source_pairs
from bpo.readers import ReadError, read_dataset, read_records
from bpo.settings import ConfigError, PairsSourceSettings, load_config
from bpo.sources import hh_rlhf

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
    pairs: int = 2  # the good records around it, all kept


@dataclass(frozen=True)
class Error:
    """Expected: ``error`` raised with every piece of ``says`` in its message."""

    error: type[Exception]
    says: tuple[str, ...]


DROP_CASES = {
    "malformed JSON line": Drop("hh_rlhf", "hh_malformed_json.jsonl", "malformed_invalid_json", "{f}:2"),
    "missing field": Drop("hh_rlhf", "hh_missing_field.jsonl", "malformed_missing_field", "{f}:2 (field 'rejected')"),
    "wrong type": Drop("hh_rlhf", "hh_wrong_type.jsonl", "malformed_wrong_type", "{f}:2 (field 'chosen')"),
    "empty instruction": Drop(
        "hh_rlhf", "hh_empty_instruction.jsonl", "empty_instruction", "{f}:2 (field 'instruction')"
    ),
    "orphan oasst1 reply": Drop(
        "oasst1",
        "oasst1_orphan_reply.jsonl",
        "reply_parent_missing",
        "{f}:4 (field 'parent_id')",
        other="messages_skipped",
        pairs=1,
    ),
    "oasst1 message its own parent": Drop(
        "oasst1", "oasst1_self_parent.jsonl", "self_parent", "{f}:4 (field 'parent_id')", pairs=1
    ),
    "bytes that are not UTF-8": Drop("hh_rlhf", "hh_bad_bytes.jsonl", "malformed_not_utf8", "{f}:2"),
    "JSON escape of a lone surrogate": Drop("hh_rlhf", "hh_lone_surrogate.jsonl", "malformed_not_utf8", "{f}:2"),
    "bytes that are not UTF-8, JSON array": Drop(
        "hh_rlhf", "hh_bad_bytes_array.json", "malformed_not_utf8", "{f} record 2"
    ),
    "deeply nested line": Drop("hh_rlhf", "hh_deep_nesting.jsonl", "malformed_too_deep", "{f}:2"),
    "deeply nested item, JSON array": Drop(
        "hh_rlhf", "hh_deep_nesting_array.json", "malformed_too_deep", "{f} record 2"
    ),
    "BOM and a bad line": Drop("hh_rlhf", "hh_bom_bad_line.jsonl", "malformed_invalid_json", "{f}:2"),
    "BOM and a bad line, gzip": Drop("hh_rlhf", "hh_bom.jsonl.gz", "malformed_invalid_json", "{f}:2"),
    "valid JSON, not an object": Drop("hh_rlhf", "hh_not_an_object.jsonl", "malformed_not_an_object", "{f}:2"),
    "truncated gzip": Drop("hh_rlhf", "hh_truncated.jsonl.gz", "malformed_truncated", "{f}:{line}", pairs=-1),
}


@pytest.mark.parametrize("case", list(DROP_CASES.values()), ids=list(DROP_CASES))
def test_bad_record_is_a_counted_located_drop(tmp_path, case):
    path = str(CORPUS / case.file)
    config = load_config(overrides={"sources": {case.source: {"path": path}}})
    stats = build_source_pairs(
        PairsSourceSettings.from_config(config, case.source),
        pairs_path=tmp_path / "p.parquet",
        stats_path=tmp_path / "s.json",
    )
    assert stats == json.loads((tmp_path / "s.json").read_text())
    where = case.location.format(f=path, line=stats["pairs"] + 1)  # truncated: the line after the last whole one
    if case.other:
        assert stats["other"][case.other][case.reason] == 1
        assert stats["other_locations"][case.other][case.reason] == [where]
    else:
        assert stats["dropped"] == {case.reason: 1}
        assert stats["locations"][case.reason] == [where]
    if case.pairs >= 0:
        assert stats["pairs"] == case.pairs  # the good records around it are kept
    else:  # a truncated file: every whole line before the cut is kept
        assert 10 < stats["pairs"] < 40


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


def _source(name):
    return lambda: read_dataset(path=CORPUS / name, hub_id=None, features=hh_rlhf.FEATURES)


ERROR_CASES = {
    "unknown config key": (
        lambda: _load("config_unknown_key.yaml"),
        Error(ConfigError, ("config pairs.max_respnse_chars: unknown key", "did you mean 'max_response_chars'?")),
    ),
    "wrong enum value": (
        lambda: _load("config_bad_enum.yaml"),
        Error(ConfigError, ("config sft.source: 'critique' is not one of", "did you mean 'critiques'?")),
    ),
    "missing input file": (
        _inputs(_config_file("config_missing_input.yaml")),
        Error(ConfigError, ("config sources.hh_rlhf.path: tests/bad_inputs/no-such-file.jsonl does not exist",)),
    ),
    "empty source file": (_source("hh_empty.jsonl"), Error(ReadError, (f"{CORPUS / 'hh_empty.jsonl'}: no records",))),
    "empty test-set file": (
        lambda: load_testset("t", CORPUS / "hh_empty.jsonl", "vicuna"),
        Error(TestSetError, (f"{CORPUS / 'hh_empty.jsonl'}: test set 't' has no usable items",)),
    ),
    "truncated gzip JSON array": (
        lambda: read_records(_truncated_array()),
        Error(ReadError, ("a truncated gzip file: its JSON array is cut off",)),
    ),
    "template without placeholder": (
        _inputs({"critique": {"template": str(CORPUS / "critique_no_placeholder.txt")}}),
        Error(ConfigError, ("config critique.template:", "missing placeholder(s) {bad_response}")),
    ),
}


@pytest.mark.parametrize("run, expected", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_bad_input_is_a_clear_error(run, expected):
    with pytest.raises(expected.error) as err:
        run()
    message = str(err.value)
    assert all(piece in message for piece in expected.says), message
    assert len(message.splitlines()) == 1  # one problem, one line: no schema dump, no traceback text


@functools.lru_cache(maxsize=1)
def _truncated_array() -> Path:
    """A .json.gz holding a JSON array, cut off: unreadable as a whole (made once, in a temp dir)."""
    path = Path(tempfile.mkdtemp(prefix="bpo-bad-")) / "cut.json.gz"
    data = gzip.compress(json.dumps([{"q": f"question {i}"} for i in range(50)]).encode())
    path.write_bytes(data[: len(data) // 2])
    return path


# ---------------------------------------------------------------- test-set files


@pytest.mark.parametrize(
    "name, reason",
    [("testset_bad_line.jsonl", "malformed_invalid_json"), ("testset_bad_bytes.jsonl", "malformed_not_utf8")],
)
def test_bad_testset_line_is_a_counted_located_drop(name, reason):
    path = CORPUS / name
    ts = load_testset("vicuna_eval", path, "vicuna")
    assert dict(ts.dropped) == {reason: 1}
    assert ts.dropped.locations[reason] == [f"{path}:2"]
    assert ts.n_read == len(ts.items) + 1
    assert [it.instruction for it in ts.items][0] == "Fine question?"


def test_testset_ids_from_record_numbers_do_not_shift_past_a_dropped_record(tmp_path):
    """Layouts without an id column number the records; a dropped record keeps its number, so
    the SFT rewrite's lookup of the source record by id stays right."""
    path = tmp_path / "alpaca.jsonl"
    path.write_bytes(
        b'{"instruction": "first", "input": "", "output": "a"}\n'
        b'{"instruction": "caf\xe9", "input": "", "output": "b"}\n'
        b'{"instruction": "third", "input": "", "output": "c"}\n'
    )
    ts = load_testset("alpaca", path, "alpaca")
    assert [(it.item_id, it.instruction) for it in ts.items] == [("0", "first"), ("2", "third")]
    records = read_records(path)
    assert dict(zip(records.numbers, records.rows))[2]["output"] == "c"


# ---------------------------------------------------------------- every reader, the same faults


def _plain_cases():
    return [
        ("hh_bad_bytes.jsonl", "malformed_not_utf8", "{f}:2"),
        ("hh_deep_nesting.jsonl", "malformed_too_deep", "{f}:2"),
        ("hh_bom_bad_line.jsonl", "malformed_invalid_json", "{f}:2"),
        ("hh_bom.jsonl.gz", "malformed_invalid_json", "{f}:2"),
        ("hh_not_an_object.jsonl", "malformed_not_an_object", "{f}:2"),
        ("hh_lone_surrogate.jsonl", "malformed_not_utf8", "{f}:2"),
        ("hh_bad_bytes_array.json", "malformed_not_utf8", "{f} record 2"),
        ("hh_deep_nesting_array.json", "malformed_too_deep", "{f} record 2"),
    ]


@pytest.mark.parametrize("name, reason, location", _plain_cases(), ids=[c[0] for c in _plain_cases()])
def test_plain_reader_drops_the_same_records(name, reason, location):
    """read_records (test sets, bpo optimize --input) drops what the typed reader drops, and keeps
    the first good record (a BOM does not spoil it)."""
    path = CORPUS / name
    records = read_records(path)
    assert dict(records.dropped) == {reason: 1}
    assert records.dropped.locations[reason] == [location.format(f=path)]
    assert records.numbers == [0, 2]
    assert records.rows[0]["chosen"].endswith("Red is a primary colour.")


def test_parquet_text_that_is_not_utf8_is_a_counted_drop(tmp_path):
    """The Parquet reader takes any bytes as text; the row holding bad ones is dropped, the rest kept."""
    good = "\n\nHuman: Name a primary colour.\n\nAssistant: Red."
    chosen = pa.array([good.encode(), b"\n\nHuman: caf\xe9?\n\nAssistant: Yes.", good.encode()]).view(pa.string())
    rejected = pa.array([good.replace("Red", "No")] * 3)
    path = tmp_path / "hh.parquet"
    pq.write_table(pa.table({"chosen": chosen, "rejected": rejected}), path)
    raw = read_dataset(path=path, hub_id=None, features=hh_rlhf.FEATURES)
    assert raw.table.num_rows == 2 and dict(raw.dropped) == {"malformed_not_utf8": 1}
    assert raw.dropped.locations["malformed_not_utf8"] == [f"{path} row 1"]
    records = read_records(path)
    assert records.numbers == [0, 2] and records.dropped.locations["malformed_not_utf8"] == [f"{path} row 1"]


# ---------------------------------------------------------------- bpo optimize and bpo serve


@pytest.fixture(scope="module")
def optimizer_dir(tmp_path_factory):
    """A tiny optimizer folder as the trainer writes it (random weights: only the plumbing counts)."""
    from eval_helpers import save_tiny_optimizer

    pairs = [(f"prompt {i}", f"A better prompt {i}.") for i in range(16)]
    return save_tiny_optimizer(tmp_path_factory.mktemp("optimizer"), pairs)


def test_optimize_input_with_a_bad_line_drops_it_and_rewrites_the_rest(optimizer_dir, tmp_path, capsys):
    from bpo.schemas import OPTIMIZED, read_frame

    src, out = CORPUS / "optimize_bad_line.jsonl", tmp_path / "o.parquet"
    rc = bpo_main(
        [
            "optimize",
            "--model",
            optimizer_dir,
            "--input",
            str(src),
            "--output",
            str(out),
            "--max-new-tokens",
            "4",
            "--greedy",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"bpo optimize: dropped 1 record(s) of --input as malformed_invalid_json: {src}:2" in err.splitlines()
    assert "1 record(s) dropped" in err
    got = read_frame(out, OPTIMIZED)
    assert got["item_id"].tolist() == ["0", "2"]  # record numbers in the file: the dropped one keeps its own
    assert got["instruction"].tolist() == ["explain tides", "what is recursion"]


@pytest.mark.parametrize(
    "content, says",
    [
        (b'{"prompt": 3}\n{"prompt": "ok"}\n', "malformed_wrong_type: {f}:1 (field 'prompt')"),
        (b'{"text": "x"}\n{"prompt": "ok"}\n', "malformed_missing_field: {f}:1 (field 'prompt')"),
        (b'{"prompt": "caf\xe9"}\n{"prompt": "ok"}\n', "malformed_not_utf8: {f}:1"),
    ],
)
def test_optimize_input_bad_records_are_counted_located_drops(content, says, tmp_path):
    from bpo.cli import read_prompt_file

    src = tmp_path / "p.jsonl"
    src.write_bytes(content)
    df, dropped = read_prompt_file(str(src), "prompt", None)
    assert df["prompt"].tolist() == ["ok"] and df.index.tolist() == [1]
    reason, where = says.format(f=src).split(": ", 1)
    assert dict(dropped) == {reason: 1} and dropped.locations[reason] == [where]


@pytest.mark.parametrize(
    "name, content, says",
    [
        ("p.json", b'[{"prompt": "a"}, {"prompt": ', "{f}: not valid JSON (Expecting value at line 1)"),
        ("p.jsonl", b"", "{f}: no records (the file is empty)"),
        ("p.jsonl.gz", b"not gzip at all", "{f}: unreadable: not a gzip file"),
        ("p.txt", b"prompt", "{f}: unknown file type"),
    ],
)
def test_optimize_input_unreadable_as_a_whole_is_one_line_naming_it(
    optimizer_dir, name, content, says, tmp_path, capsys
):
    src = tmp_path / name
    src.write_bytes(content)
    rc = bpo_main(["optimize", "--model", optimizer_dir, "--input", str(src), "--output", str(tmp_path / "o.parquet")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"bpo optimize: --input {src}") and says.format(f=src) in err[0]
    assert not (tmp_path / "o.parquet").exists()


MISSING = "tests/bad_inputs/no-such-optimizer"
NO_TOKENIZER = str(CORPUS / "model_no_tokenizer")


@pytest.mark.parametrize(
    "folder, says",
    [
        (MISSING, f"{MISSING} does not exist (and is not a hub id: those read namespace/name)"),
        (NO_TOKENIZER, f"no tokenizer files in {NO_TOKENIZER} (looked for tokenizer.json"),
    ],
)
def test_model_folder_errors_say_what_is_missing_the_same_in_optimize_and_serve(folder, says, capsys):
    assert bpo_main(["optimize", "--model", folder, "Tell me a joke"]) == 1
    optimize_err = capsys.readouterr().err.strip().splitlines()
    assert len(optimize_err) == 1 and optimize_err[0].startswith(f"bpo: error: --model {says}")
    assert bpo_main(["serve", "--optimizer", folder, "--upstream", "http://127.0.0.1:9/v1"]) == 2
    serve_err = capsys.readouterr().err.strip().splitlines()
    assert len(serve_err) == 1 and serve_err[0].startswith(f"bpo serve: rewriter.optimizer (--optimizer): {says}")
