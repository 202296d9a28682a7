"""Source parsers and the reader: small fixtures (malformed records included) and the real
samples in ../shared/data/raw (skipped when absent)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO

from bpo.readers import ReadError, data_files, read_dataset
from bpo.sources import ConfigError, alpaca_gpt4, chatbot_arena, hh_rlhf, load_source, local_inputs, oasst1
from bpo.sources.base import CANDIDATE_FIELDS


def table(module, rows, features=None, columns=None):
    """Rows as the typed table a parser receives from the reader."""
    features = features or module.FEATURES
    columns = columns or getattr(module, "COLUMNS", list(features))
    schema = pa.schema([features.arrow_schema.field(c) for c in columns])
    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema)


def write_jsonl(path: Path, rows, raw_lines=()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) + "".join(line + "\n" for line in raw_lines)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def dialogue(*turns: str) -> str:
    """Alternating Human / Assistant turns in hh-rlhf markup."""
    return "".join(f"\n\n{'Human' if k % 2 == 0 else 'Assistant'}: {t}" for k, t in enumerate(turns))


def hh(*turns: str, good: str, bad: str) -> dict:
    return {"chosen": dialogue(*turns, good), "rejected": dialogue(*turns, bad)}


# ---------------------------------------------------------------- hh-rlhf


def test_hh_single_turn_pair():
    res = hh_rlhf.parse(table(hh_rlhf, [hh("How do I boil an egg?", good="Simmer it 7 minutes.", bad="Boil it.")]))
    assert res.dropped == Counter()
    (p,) = res.pairs
    assert set(p) == set(CANDIDATE_FIELDS)
    assert p["instruction"].strip() == "How do I boil an egg?"
    assert p["good_response"].strip() == "Simmer it 7 minutes."
    assert p["bad_response"].strip() == "Boil it."
    assert (p["context"], p["num_turns"], p["source_id"]) == ("", 1, "0")


def test_hh_multi_turn_dropped_by_default_kept_with_history():
    rows = [hh("I want to run.", "How much do you run now?", "None at all.", good="Start slowly.", bad="Run 10 km.")]
    res = hh_rlhf.parse(table(hh_rlhf, rows))
    assert (res.pairs, res.dropped) == ([], Counter({"multi_turn": 1}))
    (p,) = hh_rlhf.parse(table(hh_rlhf, rows), multi_turn=True).pairs
    assert p["instruction"].strip() == "None at all."
    assert p["context"] == ""  # the conversation is the history, not an attached document
    assert p["history"] == [
        {"role": "user", "content": " I want to run."},
        {"role": "assistant", "content": " How much do you run now?"},
    ]
    assert p["num_turns"] == 2
    assert p["good_response"].strip() == "Start slowly."


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"chosen": dialogue("Hi"), "rejected": dialogue("Hi")}, "malformed_no_assistant_turn"),
        (
            {"chosen": "Intro" + dialogue("Hi", "Hello"), "rejected": "Intro" + dialogue("Hi", "Go")},
            "malformed_text_before_first_turn",
        ),
        (
            {
                "chosen": dialogue("Hi", "Hello") + "\n\nAssistant: More",
                "rejected": dialogue("Hi", "Hello") + "\n\nAssistant: Less",
            },
            "malformed_turn_order",
        ),
        (
            {"chosen": dialogue("Hi", "Hello", "Bye"), "rejected": dialogue("Hi", "Hello", "Bye")},
            "malformed_turn_order",
        ),
        (
            {"chosen": dialogue("How tall is A?", "1 m"), "rejected": dialogue("How tall is B?", "1 m")},
            "malformed_dialogues_differ",
        ),
        ({"chosen": "\n\nAssistant: Hello", "rejected": "\n\nAssistant: Bye"}, "malformed_no_human_turn"),
        ({"chosen": dialogue("Hi", "Hello")}, "malformed_missing_field"),
        ({"chosen": None, "rejected": None}, "malformed_missing_field"),
    ],
)
def test_hh_malformed_dialogues_are_counted(row, reason):
    res = hh_rlhf.parse(table(hh_rlhf, [row, hh("Fine?", good="Yes, thanks.", bad="No.")]))
    assert res.dropped == Counter({reason: 1})
    assert len(res.pairs) == 1


def test_hh_broken_earlier_turns_only_matter_with_multi_turn():
    # Human, Human, Assistant...: the earlier part does not alternate
    chosen = "\n\nHuman: a\n\nHuman: b\n\nAssistant: c\n\nHuman: d\n\nAssistant: good"
    row = {"chosen": chosen, "rejected": chosen.replace("good", "bad")}
    assert hh_rlhf.parse(table(hh_rlhf, [row])).dropped == Counter({"multi_turn": 1})
    assert hh_rlhf.parse(table(hh_rlhf, [row]), multi_turn=True).dropped == Counter({"malformed_turn_order": 1})


def test_hh_wrong_type_and_invalid_json_lines_are_counted_drops(tmp_path, caplog):
    path = write_jsonl(
        tmp_path / "hh.jsonl",
        [
            hh("Name a colour.", good="Blue.", bad="Seven."),
            {"chosen": 42, "rejected": "x"},
            {"chosen": ["a"], "rejected": "x"},
        ],
        raw_lines=['{"chosen": "\\n\\nHuman: broken', "[1, 2]"],
    )
    res = load_source("hh_rlhf", {"path": str(path)})
    assert len(res.pairs) == 1
    assert res.dropped == Counter(
        {"malformed_wrong_type": 2, "malformed_invalid_json": 1, "malformed_not_an_object": 1}
    )
    assert res.records_read == res.candidates == 5
    assert f"{path}:2 (field 'chosen')" in caplog.text  # the log names file, line and field


# ---------------------------------------------------------------- oasst1


class Tree:
    """oasst1 message rows; ids m1, m2, ..."""

    def __init__(self):
        self.rows = []

    def add(self, text, role, parent=None, rank=None, lang="en", deleted=False, review=True, model=None):
        mid = f"m{len(self.rows) + 1}"
        self.rows.append(
            {
                "message_id": mid,
                "parent_id": parent,
                "text": text,
                "role": role,
                "lang": lang,
                "review_result": review,
                "deleted": deleted,
                "rank": rank,
                "model_name": model,
            }
        )
        return mid

    def prompt(self, text, replies, parent=None, **kw):
        """replies: [(text, rank, extra kwargs)]"""
        pid = self.add(text, "prompter", parent=parent, **kw)
        ids = [
            self.add(t, "assistant", parent=pid, rank=r, lang=kw.get("lang", "en"), **extra) for t, r, extra in replies
        ]
        return pid, ids

    def table(self):
        return table(oasst1, self.rows)


def test_oasst_best_and_worst_ranked_replies():
    t = Tree()
    t.prompt("What is a prime?", [("Divisible by 1 and itself.", 0, {}), ("Odd.", 2, {}), ("Any number.", 1, {})])
    (p,) = oasst1.parse(t.table()).pairs
    assert (p["instruction"], p["good_response"], p["bad_response"]) == (
        "What is a prime?",
        "Divisible by 1 and itself.",
        "Odd.",
    )
    assert (p["source_id"], p["language"], p["num_turns"], p["context"]) == ("m1", "en", 1, "")


def test_oasst_skips_deleted_and_unreviewed_messages():
    t = Tree()
    t.prompt("p-deleted", [("a", 0, {}), ("b", 1, {})], deleted=True)
    t.prompt("p-unreviewed", [("a", 0, {}), ("b", 1, {})], review=None)
    t.prompt("p-rejected", [("a", 0, {}), ("b", 1, {})], review=False)
    # best reply deleted, one failed review, one unranked: ranks 1 and 3 remain
    t.prompt(
        "p-ok",
        [
            ("gone", 0, {"deleted": True}),
            ("second", 1, {}),
            ("failed", 2, {"review": False}),
            ("last", 3, {}),
            ("free", None, {}),
        ],
    )
    t.prompt("p-one-ranked", [("only", 0, {}), ("unranked", None, {})])
    t.prompt("p-tied", [("x", 0, {}), ("y", 0, {})])
    res = oasst1.parse(t.table())
    (p,) = res.pairs
    assert (p["instruction"], p["good_response"], p["bad_response"]) == ("p-ok", "second", "last")
    assert res.dropped == Counter(
        {"deleted": 1, "not_reviewed": 1, "review_rejected": 1, "fewer_than_2_ranked_replies": 1, "tied_ranks": 1}
    )
    assert res.other["messages_skipped"] == {"reply_deleted": 1, "reply_review_rejected": 1, "reply_unranked": 2}
    assert res.candidates == 6


def test_oasst_language_filter():
    t = Tree()
    t.prompt("Hello?", [("Hi!", 0, {}), ("Go.", 1, {})])
    t.prompt("¿Hola?", [("¡Hola!", 0, {}), ("Vete.", 1, {})], lang="es")
    t.prompt("Hallo?", [("Hallo!", 0, {}), ("Geh.", 1, {})], lang="de")
    assert [p["language"] for p in oasst1.parse(t.table()).pairs] == ["en"]
    assert oasst1.parse(t.table()).dropped == Counter({"language": 2})
    assert [p["language"] for p in oasst1.parse(t.table(), languages=["es", "de"]).pairs] == ["es", "de"]
    assert len(oasst1.parse(t.table(), languages=[]).pairs) == 3  # empty list: every language


def test_oasst_follow_up_prompts_with_multi_turn():
    t = Tree()
    root, (best, worst) = t.prompt("Make green tea?", [("Use 80 C water.", 0, {}), ("Boil it.", 1, {})])
    follow, _ = t.prompt("With milk?", [("Better plain.", 0, {}), ("Never.", 1, {})], parent=best)
    _, _ = t.prompt("Under a bad one?", [("a", 0, {}), ("b", 1, {})], parent=worst)
    gone = t.add("deleted reply", "assistant", parent=root, deleted=True)
    t.prompt("Under a deleted one?", [("a", 0, {}), ("b", 1, {})], parent=gone)
    t.prompt("Orphan?", [("a", 0, {}), ("b", 1, {})], parent="no-such-message")

    res = oasst1.parse(t.table())
    assert len(res.pairs) == 1 and res.dropped == Counter({"multi_turn": 4})

    res = oasst1.parse(t.table(), multi_turn=True)
    assert res.dropped == Counter({"ancestor_skipped": 1, "ancestor_missing": 1})
    by_instruction = {p["instruction"]: p for p in res.pairs}
    p = by_instruction["With milk?"]
    assert p["context"] == ""
    assert p["history"] == [
        {"role": "user", "content": "Make green tea?"},
        {"role": "assistant", "content": "Use 80 C water."},
    ]
    assert (p["num_turns"], p["source_id"], p["good_response"]) == (2, follow, "Better plain.")
    assert by_instruction["Under a bad one?"]["history"][-1] == {"role": "assistant", "content": "Boil it."}


def test_oasst_malformed_messages_are_skipped_not_fatal():
    t = Tree()
    t.prompt("Fine?", [("Yes.", 0, {}), ("No.", 1, {})])
    t.rows.append({**t.rows[0], "message_id": "bad-role", "role": "moderator"})
    t.rows.append({**t.rows[0], "message_id": "no-text", "text": None})
    t.rows.append({**t.rows[1]})  # duplicate id
    res = oasst1.parse(t.table())
    assert len(res.pairs) == 1
    assert res.other["messages_skipped"] == {"duplicate_message_id": 1, "malformed_message": 2}


# ---------------------------------------------------------------- Chatbot Arena (synthetic rows in the hub schema)


def conv(*turns):
    return [{"content": c, "role": "user" if k % 2 == 0 else "assistant"} for k, c in enumerate(turns)]


def arena(qid, a, b, winner="model_a", language="English", flagged=False, roberta=False, t5=False, **kw):
    row = {
        "question_id": qid,
        "model_a": "model-x",
        "model_b": "model-y",
        "winner": winner,
        "judge": "synthetic_judge",
        "conversation_a": conv(*a),
        "conversation_b": conv(*b),
        "turn": len(a) // 2,
        "anony": True,
        "language": language,
        "tstamp": 1.0,
        "openai_moderation": {
            "categories": {c: flagged for c in chatbot_arena.MODERATION_CATEGORIES},
            "category_scores": {c: 0.5 if flagged else 0.0 for c in chatbot_arena.MODERATION_CATEGORIES},
            "flagged": flagged,
        },
        "toxic_chat_tag": {
            "roberta-large": {"flagged": roberta, "probability": 0.1},
            "t5-large": {"flagged": t5, "score": 0.1},
        },
    }
    row.update(kw)
    return row


def test_arena_winner_gives_the_pair():
    rows = [
        arena("q1", ["Capital of France?", "Paris."], ["Capital of France?", "Lyon."], "model_a"),
        arena("q2", ["2+2?", "5"], ["2+2?", "4"], "model_b"),
    ]
    p1, p2 = chatbot_arena.parse(table(chatbot_arena, rows)).pairs
    assert (p1["good_response"], p1["bad_response"], p1["good_model"], p1["bad_model"]) == (
        "Paris.",
        "Lyon.",
        "model-x",
        "model-y",
    )
    assert (p2["good_response"], p2["bad_response"], p2["good_model"], p2["bad_model"]) == (
        "4",
        "5",
        "model-y",
        "model-x",
    )
    assert (p2["instruction"], p2["source_id"], p2["language"], p2["num_turns"]) == (
        "2+2?",
        "q2",
        "en",
        1,
    )  # the dataset's "English" as ISO 639-1


def test_arena_filters_ties_flags_languages_and_multi_turn():
    q = ["Hi?", "Hello."]
    rows = [
        arena("tie", q, ["Hi?", "Hey."], "tie"),
        arena("bothbad", q, ["Hi?", "Hey."], "tie (bothbad)"),
        arena("es", ["¿Hola?", "Hola."], ["¿Hola?", "Adiós."], language="Spanish"),
        arena("mod", q, ["Hi?", "Go."], flagged=True),
        arena("roberta", q, ["Hi?", "Go."], roberta=True),
        arena("t5", q, ["Hi?", "Go."], t5=True),
        arena(
            "multi",
            ["Plan a picnic.", "Sandwiches.", "Vegetarian?", "Hummus wraps."],
            ["Plan a picnic.", "Chicken.", "Vegetarian?", "Chicken."],
        ),
        arena("ok", q, ["Hi?", "Go away."]),
    ]
    res = chatbot_arena.parse(table(chatbot_arena, rows))
    assert [p["source_id"] for p in res.pairs] == ["ok"]
    assert res.dropped == Counter({"tie": 2, "language": 1, "flagged": 3, "multi_turn": 1})

    res = chatbot_arena.parse(table(chatbot_arena, rows), languages=[], multi_turn=True, drop_flagged=False)
    assert res.dropped == Counter({"tie": 2})
    multi = next(p for p in res.pairs if p["source_id"] == "multi")
    assert (
        multi["history"]
        == [
            {"role": "user", "content": "Plan a picnic."},  # the winner's earlier turns
            {"role": "assistant", "content": "Sandwiches."},
        ]
        and multi["context"] == ""
    )
    assert (multi["instruction"], multi["good_response"], multi["num_turns"]) == ("Vegetarian?", "Hummus wraps.", 2)


@pytest.mark.parametrize(
    "override, reason",
    [
        ({"conversation_b": None}, "malformed_missing_field"),
        ({"winner": "model_c"}, "malformed_winner"),
        ({"conversation_a": conv("Hi?")}, "malformed_turn_order"),
        (
            {"conversation_a": [{"content": "Hello.", "role": "assistant"}, {"content": "Hi?", "role": "user"}]},
            "malformed_turn_order",
        ),
        (
            {"conversation_a": [{"content": None, "role": "user"}, {"content": "Hello.", "role": "assistant"}]},
            "malformed_turn_order",
        ),
        ({"conversation_b": conv("Bye?", "Bye.")}, "malformed_conversations_differ"),
    ],
)
def test_arena_malformed_rows_are_counted(override, reason):
    rows = [arena("bad", ["Hi?", "Hello."], ["Hi?", "Go."], **override), arena("ok", ["Hi?", "Hello."], ["Hi?", "Go."])]
    res = chatbot_arena.parse(table(chatbot_arena, rows))
    assert res.dropped == Counter({reason: 1}) and len(res.pairs) == 1


# ---------------------------------------------------------------- alpaca-gpt4


def alp(instruction, output, context=""):
    return {"instruction": instruction, "input": context, "output": output}


def test_alpaca_pair_files_join_on_instruction_and_input():
    good = [
        alp("Translate.", "Bonjour", "Good morning"),
        alp("Translate.", "Bonne nuit", "Good night"),  # same instruction, other input
        alp("Only in GPT-4.", "x"),
        alp("Twice.", "first"),
        alp("Twice.", "second"),
        {"instruction": "No input field.", "output": "GPT-4 answer."},
        {"instruction": "No output.", "input": ""},
    ]
    bad = [
        alp("Translate.", "Bonsoir", "Good night"),
        alp("Translate.", "Salut", "Good morning"),
        alp("Twice.", "davinci"),
        alp("No input field.", "davinci answer."),
        alp("Only in davinci.", "y"),
    ]
    res = alpaca_gpt4.parse_pair(table(alpaca_gpt4, good), table(alpaca_gpt4, bad))
    got = {(p["instruction"], p["context"]): (p["good_response"], p["bad_response"]) for p in res.pairs}
    assert got == {
        ("Translate.", "Good morning"): ("Bonjour", "Salut"),
        ("Translate.", "Good night"): ("Bonne nuit", "Bonsoir"),
        ("Twice.", ""): ("first", "davinci"),
        ("No input field.", ""): ("GPT-4 answer.", "davinci answer."),
    }
    assert {(p["good_model"], p["bad_model"]) for p in res.pairs} == {("gpt-4", "text-davinci-003")}
    assert res.dropped == Counter({"unmatched": 1, "duplicate_key": 1, "malformed_missing_field": 1})
    assert res.other["bad_records"] == {"bad_unmatched": 1}


def test_alpaca_comparison_format():
    rows = [
        {"instruction": "Primary colours?", "input": "", "output": ["Red, blue, yellow.", "Green."]},
        {"instruction": "Simplify.", "input": "4/16", "output": ["1/4", "4/16"]},
        {"instruction": "One answer.", "input": "", "output": ["only"]},
        {"instruction": "Three.", "input": "", "output": ["a", "b", "c"]},
        {"instruction": "Null output.", "input": "", "output": None},
    ]
    res = alpaca_gpt4.parse_comparison(table(alpaca_gpt4, rows, features=alpaca_gpt4.COMPARISON_FEATURES))
    assert [(p["instruction"], p["context"], p["good_response"], p["bad_response"]) for p in res.pairs] == [
        ("Primary colours?", "", "Red, blue, yellow.", "Green."),
        ("Simplify.", "4/16", "1/4", "4/16"),
    ]
    assert {p["good_model"] for p in res.pairs} == {None}  # the comparison file does not name models
    assert res.dropped == Counter({"malformed_output_not_a_pair": 2, "malformed_missing_field": 1})


def test_alpaca_pair_needs_both_sides():
    with pytest.raises(ConfigError, match="sources.alpaca_gpt4: set bad_path or bad_hub_id"):
        load_source("alpaca_gpt4", {"format": "pair", "path": "x.json"})
    assert local_inputs("alpaca_gpt4", {"format": "pair", "path": "g.json", "bad_path": "b.json"}) == {
        "data": "g.json",
        "bad": "b.json",
    }
    assert local_inputs("alpaca_gpt4", {"format": "comparison", "path": "c.json", "bad_path": "b.json"}) == {
        "data": "c.json"
    }
    assert local_inputs("hh_rlhf", {"path": "local.jsonl", "hub_id": "Anthropic/hh-rlhf"}) == {}  # the hub id wins


# ---------------------------------------------------------------- reader


def test_missing_file_is_a_clear_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "train.jsonl"
    with pytest.raises(ReadError, match=str(missing)):
        load_source("hh_rlhf", {"path": str(missing)})
    with pytest.raises(ReadError, match="unsupported file type"):
        data_files(tmp_path.joinpath("data.csv").touch() or tmp_path / "data.csv")
    with pytest.raises(ConfigError, match="sources.oasst1: set path or hub_id"):
        load_source("oasst1", {"path": None, "hub_id": None})


@pytest.mark.parametrize(
    "name, content",
    [
        ("garbage.jsonl", "this is not json\nneither is this\n"),
        ("broken.json", '[{"chosen": "a", "rejected": '),
        ("broken.jsonl.gz", "not gzip at all"),
        ("broken.parquet", "PAR1 not really"),
    ],
)
def test_unreadable_file_is_a_clear_error_naming_it(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ReadError, match=str(path)):
        read_dataset(path=path, hub_id=None, features=hh_rlhf.FEATURES)


def test_plain_records_of_every_file_type(tmp_path):
    """read_records: the untyped reader of the test sets and bpo optimize --input; a bad record
    is a counted, located drop, a file unreadable as a whole an error naming it."""
    from bpo.readers import read_records

    rows = [{"q": "a", "n": 1}, {"q": "b", "n": 2}]
    (tmp_path / "r.json").write_text(json.dumps({"data": rows}))
    with gzip.open(tmp_path / "r.jsonl.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.csv").write_text("q,n\na,1\nb,2\n")
    assert read_records(tmp_path / "r.json").rows == rows == read_records(tmp_path / "r.jsonl.gz").rows
    assert read_records(tmp_path / "r.csv").rows == [{"q": "a", "n": "1"}, {"q": "b", "n": "2"}]  # cells as text
    (tmp_path / "bad.jsonl").write_text('{"q": "a"}\n{broken\n')
    bad = read_records(tmp_path / "bad.jsonl")
    assert bad.rows == [{"q": "a"}] and bad.dropped.locations == {"malformed_invalid_json": [f"{tmp_path}/bad.jsonl:2"]}
    (tmp_path / "list.json").write_text('[{"q": "a"}, 3]')
    listed = read_records(tmp_path / "list.json")
    assert listed.rows == [{"q": "a"}]
    assert listed.dropped.locations == {"malformed_not_an_object": [f"{tmp_path}/list.json record 2"]}
    (tmp_path / "bytes.csv").write_bytes(b"q,n\ncaf\xe9,1\nb,2\n")
    csv = read_records(tmp_path / "bytes.csv")
    assert csv.rows == [{"q": "b", "n": "2"}] and csv.numbers == [1]
    assert csv.dropped.locations == {"malformed_not_utf8": [f"{tmp_path}/bytes.csv row 0"]}
    (tmp_path / "ragged.tsv").write_text("q\tn\na\t1\n\nb\n\ufeffc\t3\n")
    ragged = read_records(tmp_path / "ragged.tsv")
    assert ragged.rows == [{"q": "a", "n": "1"}, {"q": "\ufeffc", "n": "3"}]  # only a leading BOM is one
    assert ragged.dropped.locations == {"malformed_cell_count": [f"{tmp_path}/ragged.tsv row 1"]}
    with pytest.raises(ReadError, match="not found"):
        read_records(tmp_path / "missing.json")


def test_local_formats_and_folders(tmp_path):
    rows = [hh(f"Question {i}?", good=f"Answer {i}.", bad="No.") for i in range(4)]
    write_jsonl(tmp_path / "d" / "a.jsonl", rows[:1])
    write_jsonl(tmp_path / "d" / "sub" / "b.jsonl.gz", rows[1:2])
    (tmp_path / "d" / "c.json").write_text(json.dumps(rows[2:3]))
    pq.write_table(pa.Table.from_pylist([{**rows[3], "extra": 1}]), tmp_path / "d" / "e.parquet")
    (tmp_path / "d" / "README.md").write_text("not data")
    (tmp_path / "d" / ".hidden.jsonl").write_text("{}")
    assert [p.name for p in data_files(tmp_path / "d")] == ["a.jsonl", "c.json", "e.parquet", "b.jsonl.gz"]
    # mixed json and parquet in one folder: read record by record, nothing lost
    raw = read_dataset(path=tmp_path / "d", hub_id=None, features=hh_rlhf.FEATURES)
    assert raw.table.column("chosen").to_pylist() == [rows[i]["chosen"] for i in (0, 2, 3, 1)]
    assert raw.table.schema == hh_rlhf.FEATURES.arrow_schema and not raw.dropped
    # a parquet file with an extra column on its own (typed read)
    raw = read_dataset(path=tmp_path / "d" / "e.parquet", hub_id=None, features=hh_rlhf.FEATURES)
    assert raw.table.column_names == ["chosen", "rejected"] and raw.table.num_rows == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReadError, match="holds no data files"):
        data_files(tmp_path / "empty")


def test_typed_read_never_coerces_a_wrong_type(tmp_path):
    """datasets would JSON-encode a mixed-type column, turning every good string into '"..."'."""
    rows = [hh("Q?", good="Good.", bad="Bad."), {"chosen": 123, "rejected": "x"}]
    raw = read_dataset(path=write_jsonl(tmp_path / "m.jsonl", rows), hub_id=None, features=hh_rlhf.FEATURES)
    assert raw.table.column("chosen").to_pylist() == [rows[0]["chosen"]]
    assert raw.dropped == Counter({"malformed_wrong_type": 1})


def test_hub_path_runs_load_dataset_on_a_local_repository(tmp_path, monkeypatch):
    """The production path (hub id -> datasets.load_dataset with data_dir and split), pointed
    at a local folder laid out like the Anthropic/hh-rlhf repository."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    repo = tmp_path / "hh-rlhf-repo"
    for sub in ("harmless-base", "helpful-base"):
        for split in ("train", "test"):
            write_jsonl(
                repo / sub / f"{split}.jsonl.gz", [hh(f"{sub} {split} {i}?", good="Yes.", bad="No.") for i in range(3)]
            )
    res = load_source(
        "hh_rlhf", {"hub_id": str(repo), "hub_data_dir": "harmless-base", "split": "test", "path": "ignored.jsonl"}
    )
    assert sorted(p["instruction"].strip() for p in res.pairs) == [f"harmless-base test {i}?" for i in range(3)]
    assert res.origin == [f"hub:{repo} data_dir=harmless-base split=test"]
    assert len(load_source("hh_rlhf", {"hub_id": str(repo), "split": "train"}).pairs) == 6  # every data_dir
    with pytest.raises(ReadError, match="validation"):
        load_source("hh_rlhf", {"hub_id": str(repo), "split": "validation"})
    with pytest.raises(ReadError, match=r"no column\(s\) \['message_id'"):
        load_source("oasst1", {"hub_id": str(repo), "split": "train"})


# ---------------------------------------------------------------- real samples (../shared/data/raw)


def test_real_hh_rlhf_sample(shared_data):
    path = shared_data / "raw" / "hh-rlhf" / "harmless-base-test.sample.jsonl"
    res = load_source("hh_rlhf", {"path": str(path)})
    assert res.records_read == 300
    assert len(res.pairs) == 87 and res.dropped == Counter({"multi_turn": 213})  # README: 87 single-turn
    for p in res.pairs:
        assert p["num_turns"] == 1 and p["context"] == ""
        assert p["instruction"].strip() and "Human:" not in p["instruction"] and "Assistant:" not in p["instruction"]
        assert "\n\nHuman:" not in p["good_response"] and "\n\nHuman:" not in p["bad_response"]
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    first = res.pairs[0]
    assert raw[int(first["source_id"])]["chosen"].endswith(first["good_response"])

    multi = load_source("hh_rlhf", {"path": str(path), "multi_turn": True})
    assert len(multi.pairs) == 300 and not multi.dropped  # every row parses (one has an empty answer)
    turns = Counter(p["num_turns"] for p in multi.pairs)
    assert turns[1] == 87 and sum(turns.values()) == 300
    for p in multi.pairs:
        assert p["context"] == ""
        assert [t["role"] for t in p["history"]] == ["user", "assistant"] * (p["num_turns"] - 1)


def test_real_oasst1_sample(shared_data):
    path = shared_data / "raw" / "oasst1" / "validation.sample.jsonl"
    raw = {r["message_id"]: r for r in map(json.loads, path.read_text().splitlines())}
    res = load_source("oasst1", {"path": str(path), "languages": ["en"]})
    assert res.records_read == 300
    assert res.candidates == sum(r["role"] == "prompter" for r in raw.values())
    assert len(res.pairs) == 33  # one per complete tree: the root prompt
    for p in res.pairs:
        root = raw[p["source_id"]]
        assert root["parent_id"] is None and root["role"] == "prompter" and p["language"] == "en"
        replies = {r["text"]: r for r in raw.values() if r["parent_id"] == root["message_id"]}
        good, bad = replies[p["good_response"]], replies[p["bad_response"]]
        assert good["rank"] < bad["rank"]
        assert not good["deleted"] and not bad["deleted"] and good["review_result"] and bad["review_result"]
    multi = load_source("oasst1", {"path": str(path), "languages": ["en"], "multi_turn": True})
    assert len(multi.pairs) == 66
    assert all(p["history"][0]["role"] == "user" and not p["context"] for p in multi.pairs if p["num_turns"] > 1)


def test_real_alpaca_gpt4_samples(shared_data):
    folder = shared_data / "raw" / "alpaca-gpt4"
    gpt4 = json.loads((folder / "alpaca_gpt4.sample.json").read_text())
    davinci = json.loads((folder / "alpaca_davinci.sample.json").read_text())
    res = load_source(
        "alpaca_gpt4",
        {
            "format": "pair",
            "path": str(folder / "alpaca_gpt4.sample.json"),
            "bad_path": str(folder / "alpaca_davinci.sample.json"),
        },
    )
    shared = {(r["instruction"], r["input"]) for r in gpt4} & {(r["instruction"], r["input"]) for r in davinci}
    assert len(shared) == 95 and len(res.pairs) == 95  # README: 95 shared keys
    assert res.dropped == Counter({"unmatched": 205})
    answers = {(r["instruction"], r["input"]): r["output"] for r in davinci}
    for p in res.pairs:
        assert p["bad_response"] == answers[(p["instruction"], p["context"])]
        assert p["good_response"] == gpt4[int(p["source_id"])]["output"]
    assert any(p["context"] for p in res.pairs)

    comp = load_source("alpaca_gpt4", {"format": "comparison", "path": str(folder / "comparison_gpt4.sample.json")})
    assert len(comp.pairs) == 300 and not comp.dropped
    assert comp.pairs[0]["instruction"] == "What are the three primary colors?"
    assert comp.pairs[0]["bad_response"] == "Red, Yellow, and Green."


@pytest.mark.parametrize(
    "path, features",
    [
        ("resources/demo/oasst1/train.jsonl", oasst1.FEATURES),
        ("resources/demo/chatbot_arena/train.jsonl", chatbot_arena.FEATURES),
        ("resources/demo/alpaca-gpt4/alpaca_gpt4.json", alpaca_gpt4.FEATURES),
        ("resources/demo/alpaca-gpt4/alpaca_davinci.json", alpaca_gpt4.FEATURES),
        ("resources/demo/alpaca-gpt4/comparison_gpt4.json", alpaca_gpt4.COMPARISON_FEATURES),
    ],
)
def test_demo_files_are_in_the_exact_hub_schema(path, features, caplog):
    """The typed read (every hub column, explicit features) takes them as they are. The hh-rlhf
    demo is left out on purpose: one of its records has a wrong type."""
    raw = read_dataset(path=REPO / path, hub_id=None, features=features)
    assert "typed read failed" not in caplog.text
    assert raw.table.schema == features.arrow_schema and raw.table.num_rows > 10 and not raw.dropped


# ---------------------------------------------------------------- drop locations


def test_drops_are_located_in_every_kind_of_input(tmp_path, monkeypatch):
    """file:line (JSON lines, also over a folder of several files), file record N (a JSON array),
    file row N (Parquet, from 0), hub id + row: each with the field to blame."""
    import datasets

    good, missing = hh("Hi?", good="Hello there.", bad="Go away."), {"chosen": dialogue("Hi?", "Yes.")}
    write_jsonl(tmp_path / "d" / "a.jsonl", [good])
    write_jsonl(tmp_path / "d" / "b.jsonl", [good, missing], raw_lines=[""])
    (tmp_path / "arr.json").write_text(json.dumps([good, missing]))
    pq.write_table(
        pa.Table.from_pylist([good, good, {"chosen": good["chosen"], "rejected": None}]), tmp_path / "p.parquet"
    )
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    write_jsonl(tmp_path / "repo" / "train.jsonl", [good, missing])
    cases = {
        "d": f"{tmp_path / 'd' / 'b.jsonl'}:2",
        "arr.json": f"{tmp_path / 'arr.json'} record 2",
        "p.parquet": f"{tmp_path / 'p.parquet'} row 2",
    }
    for name, where in cases.items():
        res = load_source("hh_rlhf", {"path": str(tmp_path / name)})
        assert res.dropped == Counter({"malformed_missing_field": 1})
        assert res.dropped.locations == {"malformed_missing_field": [f"{where} (field 'rejected')"]}, name
    res = load_source("hh_rlhf", {"hub_id": str(tmp_path / "repo"), "split": "train"})
    assert res.dropped.locations == {
        "malformed_missing_field": [f"hub:{tmp_path / 'repo'} split=train row 1 (field 'rejected')"]
    }


def test_locations_are_bounded_per_reason(tmp_path):
    from bpo.drops import LOCATIONS_PER_REASON

    rows = [hh("Hi?", good="Hello there.", bad="Go away.")] + [{"chosen": dialogue("Hi?", "Yes.")}] * 50
    res = load_source("hh_rlhf", {"path": str(write_jsonl(tmp_path / "m.jsonl", rows))})
    assert res.dropped["malformed_missing_field"] == 50
    assert res.dropped.locations["malformed_missing_field"] == [
        f"{tmp_path / 'm.jsonl'}:{n} (field 'rejected')" for n in range(2, 2 + LOCATIONS_PER_REASON)
    ]
