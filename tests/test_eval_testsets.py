"""Test sets: the four paper layouts, user files through a column mapping, bad input."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from bpo.eval.testsets import TestSetError, column_mapping, load_testset, read_records, render_question

DEMO = REPO / "resources" / "demo" / "testsets"
PAPER_SETS = [
    ("vicuna_eval", "vicuna_eval.jsonl", "vicuna", 80),
    ("self_instruct", "self_instruct_eval.json", "self_instruct", 252),
    ("dolly_eval", "dolly_eval.json", "dolly", 200),
    ("bpo_test", "bpo_test.json", "bpo_test", 200),
]


def test_render_question_appends_context_verbatim():
    assert render_question("Summarize.", "") == "Summarize."
    assert render_question("Summarize.", None) == "Summarize."
    assert render_question("Summarize.", "   \n") == "Summarize."
    ctx = "  Line one.\n\nLine two {not a placeholder}  "
    assert render_question("Summarize.", ctx) == "Summarize.\n" + ctx  # not stripped, not touched


@pytest.mark.parametrize("name, filename, fmt, _", PAPER_SETS)
def test_demo_sets_load_in_paper_formats(name, filename, fmt, _):
    ts = load_testset(name, DEMO / filename, fmt)
    assert 4 <= len(ts.items) <= 10
    assert not ts.dropped
    assert len({it.item_id for it in ts.items}) == len(ts.items)
    assert all(it.instruction.strip() for it in ts.items)
    if fmt == "bpo_test":
        assert all(it.reference_optimized for it in ts.items)
    else:
        assert all(it.reference_optimized is None for it in ts.items)
    if fmt in ("self_instruct", "dolly"):
        assert any(it.context for it in ts.items) and any(not it.context for it in ts.items)


@pytest.mark.parametrize("name, filename, fmt, rows", PAPER_SETS)
def test_real_paper_sets_load(shared_data, name, filename, fmt, rows):
    path = shared_data / "testsets" / filename
    ts = load_testset(name, path, fmt)
    assert len(ts.items) == rows and ts.n_read == rows and not ts.dropped
    first = ts.items[0]
    raw = read_records(path).rows[0]
    # the category is kept for per-category results (Vicuna, Self-Instruct and Dolly have one)
    assert first.category == raw.get("category") and (fmt == "bpo_test") == (first.category is None)
    if fmt == "vicuna":
        assert first.item_id == "1" and first.instruction == raw["text"] and first.context == ""
    elif fmt == "self_instruct":
        assert first.item_id == raw["id"] and first.context == raw["context"]
        assert sum(bool(it.context) for it in ts.items) > 0
    elif fmt == "dolly":
        assert first.item_id == str(raw["idx"]) and first.context == raw["context"]
    else:
        assert first.item_id == "0" and first.reference_optimized == raw["optimized_prompt"]
        assert first.question == raw["prompt"]


def test_sample_is_seeded_and_keeps_file_order(shared_data):
    path = shared_data / "testsets" / "dolly_eval.json"
    a = load_testset("dolly_eval", path, "dolly", sample=20, seed=1)
    b = load_testset("dolly_eval", path, "dolly", sample=20, seed=1)
    c = load_testset("dolly_eval", path, "dolly", sample=20, seed=2)
    ids = [it.item_id for it in a.items]
    assert ids == [it.item_id for it in b.items] and ids != [it.item_id for it in c.items]
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)


def test_custom_file_through_column_mapping(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"qid": "a", "prompt": "Translate to German.", "passage": "Good morning."},
        {"qid": "b", "prompt": "Tell a joke.", "passage": None},
        {"qid": "c", "prompt": "   ", "passage": "x"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ts = load_testset("mine", path, "custom", columns={"id": "qid", "instruction": "prompt", "context": "passage"})
    assert [(it.item_id, it.context) for it in ts.items] == [("a", "Good morning."), ("b", "")]
    assert ts.dropped == {"empty instruction": 1}  # counted, with its reason
    assert ts.items[0].question == "Translate to German.\nGood morning."


def test_csv_user_file(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("text,notes\nWhat is 2+2?,x\nName a colour.,y\n")
    ts = load_testset("csvset", path, "custom", columns={"instruction": "text"})
    assert [it.item_id for it in ts.items] == ["0", "1"]


@pytest.mark.parametrize(
    "content, fmt, columns, match",
    [
        ('[{"text": "x"}]', "vicuna", None, r"bad.json record 1: missing column 'question_id'"),
        (
            '[{"question_id": 1, "text": "a"}, {"question_id": 1, "text": "b"}]',
            "vicuna",
            None,
            r"bad.json record 2: duplicate id '1' \(also .*bad.json record 1\)",
        ),
        ('{"a": 1, "b": 2}', "vicuna", None, "expected a JSON list"),
        ('[{"question_id": 1, "text": ["a"]}]', "vicuna", None, "column 'text' holds a list"),
        ('[{"question_id": 1, "text": "a"}]', "custom", {"id": "question_id"}, "needs columns.instruction"),
        ('[{"question_id": 1, "text": "a"}]', "alpacca", None, "unknown test set format 'alpacca'"),
        ('[{"question_id": 1, "text": ""}]', "vicuna", None, "no usable items"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, content, fmt, columns, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(TestSetError, match=match):
        load_testset("bad", path, fmt, columns=columns)


def test_bad_jsonl_line_is_a_drop_naming_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question_id": 1, "text": "a"}\n{broken\n')
    ts = load_testset("bad", path, "vicuna")
    assert [it.item_id for it in ts.items] == ["1"] and ts.n_read == 2
    assert ts.dropped.locations == {"malformed_invalid_json": [f"{path}:2"]}


def test_unknown_mapping_key_and_missing_file(tmp_path):
    with pytest.raises(TestSetError, match="unknown keys"):
        column_mapping("custom", {"instruction": "a", "answer": "b"})
    with pytest.raises(TestSetError, match="not found"):
        load_testset("x", tmp_path / "nope.json", "vicuna")
