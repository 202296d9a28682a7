"""SFT dataset: the paper's filters, verbatim context, determinism, report counts, BPO-format import."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter

import pytest

from bpo.schemas import CRITIQUES, PAIRS, SFT, read_table, write_table
from bpo.settings import BPODatasetSettings, SFTSettings, load_config
from bpo.sft import (
    FilterRules,
    SFTError,
    attach_context,
    build_sft,
    build_sft_from_bpo_dataset,
    build_sft_from_critiques,
    check_context_formats,
    context_format,
    read_bpo_records,
    sft_from_bpo_records,
    sft_from_critiques,
    split_rows,
)

# The schema's defaults are the paper's settings.
SETTINGS = SFTSettings.from_config(load_config())
RULES = FilterRules.from_settings(SETTINGS)
DEFAULT_CONTEXT_FORMATS = SETTINGS.context_formats


def _bpo_settings(path, **kw):
    bpo = BPODatasetSettings(hub_id=None, path=str(path), split="train", apply_filters=False)
    return SETTINGS.replace(source="bpo_dataset", bpo_dataset=bpo, **kw)


# ---------------------------------------------------------------- fixture (written for these tests)


def _pair(pid, instruction, context="", source="alpaca_gpt4"):
    return {
        "pair_id": pid,
        "source": source,
        "source_id": None,
        "instruction": instruction,
        "context": context,
        "good_response": "A careful, complete answer.",
        "bad_response": "A short answer.",
        "good_model": None,
        "bad_model": None,
        "language": "en",
        "num_turns": 1,
    }


def _critique(pid, optimized, status="ok", source="alpaca_gpt4", parse_error=None):
    return {
        "pair_id": pid,
        "source": source,
        "request_key": "k" + pid,
        "model": "m",
        "status": status,
        "raw_reply": None
        if optimized is None
        else f"Detailed Comparison Result: x\nOptimized Instruction: {optimized} [END]",
        "comparison": "x",
        "optimized_instruction": optimized,
        "parse_error": parse_error,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "backend": "standin",
    }


TABLE_CTX = "Name | Score\nAda | 98\nBob | {91}\n  (trailing spaces kept)  "

PAIRS_ROWS = [
    _pair("p_keep", "Summarise the history of the printing press."),
    _pair("p_ctx", "Find the person with the highest score in the table.", TABLE_CTX),
    _pair("p_short", "Explain in detail how vaccines train the immune system to recognise pathogens quickly."),
    _pair("p_long", "Define entropy."),
    _pair("p_marker", "Summarise this quote for me."),
    _pair("p_parse", "Write a limerick about a cat."),
    _pair("p_err", "List three prime numbers.", source="oasst1"),
    _pair("p_ref", "Tell me how to pick a lock.", source="hh_rlhf"),
    _pair("p_trunc", "Describe the water cycle.", source="hh_rlhf"),
    _pair("p_two", "Say hello in French please."),  # 5 words
]

CRITIQUE_ROWS = [
    _critique("p_keep", "Summarise the history of the printing press, covering its invention and impact."),
    _critique("p_ctx", "Identify the person with the highest score in the given table and state the score."),
    _critique("p_short", "Explain vaccines."),  # 13 words vs 2: original > 2x optimized
    _critique("p_long", " ".join(["Define entropy clearly"] * 3)),  # 9 words vs 2: kept (<= 6x)
    _critique("p_marker", "Summarise [PROTECTED]the quote[/protected] in one sentence."),
    _critique("p_parse", None, parse_error="no 'Optimized Instruction:' label"),
    _critique("p_err", None, status="error", source="oasst1", parse_error="call failed: 500"),
    _critique("p_ref", None, status="refused", source="hh_rlhf"),
    _critique("p_trunc", "Describe the water cycle and", status="truncated", source="hh_rlhf"),
    _critique("p_two", "Say hello in French please, " + "and explain the greeting " * 7),  # 5 -> 33 words: > 6x
    _critique("p_keep", "A duplicate row for p_keep."),
    _critique("p_ghost", "A critique whose pair is not in the pairs file."),
]


def test_filter_rules_thresholds():
    assert RULES.reason("a b c d", "a b", False) is None  # exactly 2x: kept
    assert RULES.reason("a b c d e", "a b", False) == "original_too_long"
    assert RULES.reason("a", "a b c d e f", False) is None  # exactly 6x: kept
    assert RULES.reason("a", "a b c d e f g", False) == "optimized_too_long"
    assert RULES.reason("a b", "keep [Protected]x[/protected]", False) == "protected_marker"
    off = dataclasses.replace(
        RULES, max_original_to_optimized=None, max_optimized_to_original=None, protected_markers=()
    )
    assert off.reason("a b c d e", "a", False) is None
    assert off.reason("a", "a b c d e f g h", False) is None
    assert off.reason("a", "a [protected", False) is None
    strict = dataclasses.replace(RULES, max_original_to_optimized=1.0, max_optimized_to_original=1.5)
    assert strict.reason("a b", "a", False) == "original_too_long"
    assert strict.reason("a b", "a b c d", False) == "optimized_too_long"
    paper = dataclasses.replace(RULES, length_rules_with_context=False)
    assert paper.reason("a b c d e", "a", True) is None  # length rules: no-context records only
    assert paper.reason("a b c d e", "a", False) == "original_too_long"
    assert paper.reason("a", "[protected] a", True) == "protected_marker"  # markers always


def test_sft_from_critiques_counts_every_reason_and_keeps_the_rest():
    rows, report = sft_from_critiques(PAIRS_ROWS, CRITIQUE_ROWS, rules=RULES, seed=42, formats=DEFAULT_CONTEXT_FORMATS)
    assert [r["pair_id"] for r in rows] == ["p_keep", "p_ctx", "p_long"]
    assert report.records_in == len(CRITIQUE_ROWS)
    assert dict(report.dropped) == {
        "original_too_long": 1,
        "protected_marker": 1,
        "parse_failure": 1,
        "call_error": 1,
        "refused": 1,
        "truncated": 1,
        "optimized_too_long": 1,
        "duplicate": 1,
        "no_pair": 1,
    }
    assert report.examples["original_too_long"] == ["p_short"]
    assert report.by_source["hh_rlhf"]["dropped"] == Counter({"refused": 1, "truncated": 1})
    assert report.by_source["alpaca_gpt4"]["kept"] == 3
    keep = rows[0]
    assert keep["prompt"] == "Summarise the history of the printing press."
    assert keep["optimized_prompt"].startswith("Summarise the history of the printing press, covering")


def test_context_is_reattached_verbatim_to_both_sides():
    rows, _ = sft_from_critiques(PAIRS_ROWS, CRITIQUE_ROWS, rules=RULES, seed=42, formats=DEFAULT_CONTEXT_FORMATS)
    ctx = next(r for r in rows if r["pair_id"] == "p_ctx")
    fmt = context_format("p_ctx", 42, DEFAULT_CONTEXT_FORMATS)
    instr = "Find the person with the highest score in the table."
    opt = "Identify the person with the highest score in the given table and state the score."
    assert ctx["prompt"] == attach_context(instr, TABLE_CTX, fmt)
    assert ctx["optimized_prompt"] == attach_context(opt, TABLE_CTX, fmt)
    for side in (ctx["prompt"], ctx["optimized_prompt"]):
        assert side.count(TABLE_CTX) == 1  # byte for byte, braces and spaces included
    # Same joining format on both sides: removing the instruction leaves the same frame.
    assert ctx["prompt"].replace(instr, "@") == ctx["optimized_prompt"].replace(opt, "@")


def test_attach_context_formats_and_literal_braces():
    assert attach_context("Do X.", "", "{context}\n{instruction}") == "Do X."
    assert attach_context("Do X.", "  \n", "{context}\n{instruction}") == "Do X."
    assert attach_context("Do {X}.", "C {instruction}", "{instruction}\n{context}") == "Do {X}.\nC {instruction}"
    assert attach_context("Do X.", "C", "{context}\n\n{instruction}") == "C\n\nDo X."
    assert attach_context("Do X.", "C", "Input: {context} | Task: {instruction}!") == "Input: C | Task: Do X.!"


def test_context_format_is_seeded_per_pair_and_spread():
    ids = [f"{i:016x}" for i in range(400)]
    a = [context_format(p, 42, DEFAULT_CONTEXT_FORMATS) for p in ids]
    assert a == [context_format(p, 42, DEFAULT_CONTEXT_FORMATS) for p in ids]
    counts = Counter(a)
    assert set(counts) == set(DEFAULT_CONTEXT_FORMATS)
    assert min(counts.values()) > 60  # roughly uniform over 4 formats
    b = [context_format(p, 7, DEFAULT_CONTEXT_FORMATS) for p in ids]
    assert a != b


@pytest.mark.parametrize("bad", [[], ["{instruction} only"], ["{instruction} {context} {context}"]])
def test_bad_context_formats_are_errors(bad):
    with pytest.raises(SFTError, match="sft.context_formats"):
        check_context_formats(bad)


def test_split_is_deterministic_stable_and_sized():
    rows = [{"pair_id": f"{i:016x}"} for i in range(2000)]
    train, val = split_rows(rows, seed=42, val_fraction=0.1)
    assert 150 < len(val) < 250 and len(train) + len(val) == 2000
    val_ids = {r["pair_id"] for r in val}
    # Order of the input does not matter, and adding pairs never moves an existing one.
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    more = shuffled + [{"pair_id": f"new{i}"} for i in range(300)]
    _, val2 = split_rows(more, seed=42, val_fraction=0.1)
    assert {r["pair_id"] for r in val2} & val_ids == val_ids
    # A different seed gives a different split.
    _, val3 = split_rows(rows, seed=1, val_fraction=0.1)
    assert {r["pair_id"] for r in val3} != val_ids


def test_split_small_sets_get_one_val_and_keep_train():
    rows = [{"pair_id": p} for p in ("a", "b", "c")]
    train, val = split_rows(rows, seed=42, val_fraction=0.05)
    assert len(val) == 1 and len(train) == 2
    train, val = split_rows(rows, seed=42, val_fraction=0.0)
    assert not val and len(train) == 3
    train, val = split_rows(rows, seed=42, val_fraction=0.99)
    assert len(train) >= 1
    assert split_rows([{"pair_id": "a"}], seed=42, val_fraction=0.05) == ([{"pair_id": "a"}], [])
    with pytest.raises(SFTError, match="val_fraction"):
        split_rows(rows, seed=42, val_fraction=1.0)


def _write_inputs(tmp_path):
    pairs = tmp_path / "pairs.parquet"
    write_table(PAIRS_ROWS, pairs, PAIRS)
    paths = []
    for source in ("alpaca_gpt4", "oasst1", "hh_rlhf"):
        path = tmp_path / f"{source}.parquet"
        write_table([c for c in CRITIQUE_ROWS if c["source"] == source], path, CRITIQUES)
        paths.append(path)
    return pairs, paths


def _build(tmp_path, out, **kw):
    pairs, paths = _write_inputs(tmp_path)
    kw.setdefault("seed", 42)
    kw.setdefault("val_fraction", 0.3)
    return build_sft_from_critiques(
        SETTINGS.replace(**kw),
        pairs_path=pairs,
        critique_paths=paths,
        train_path=out / "train.parquet",
        val_path=out / "val.parquet",
        report_path=out / "filter_report.json",
    )


def test_build_sft_from_critiques_writes_schema_files_and_report(tmp_path):
    report = _build(tmp_path, tmp_path / "sft")
    train = read_table(tmp_path / "sft" / "train.parquet", SFT).to_pylist()
    val = read_table(tmp_path / "sft" / "val.parquet", SFT).to_pylist()
    on_disk = json.loads((tmp_path / "sft" / "filter_report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["records_in"] == 12 and on_disk["kept"] == 3 == len(train) + len(val)
    assert on_disk["records_in"] == on_disk["kept"] + on_disk["dropped_total"]
    assert on_disk["dropped"]["duplicate"] == 1 and on_disk["dropped"]["no_pair"] == 1
    assert on_disk["dropped"]["parse_failure"] == 1
    assert set(on_disk["by_source"]) == {"alpaca_gpt4", "oasst1", "hh_rlhf"}
    assert sum(s["in"] for s in on_disk["by_source"].values()) == 12
    assert on_disk["settings"]["max_original_to_optimized"] == 2.0
    assert on_disk["inputs"]["pairs_without_critique"] == 0
    assert sum(on_disk["context_formats_used"].values()) == 1  # one kept pair has a context
    assert len(val) >= 1 and {r["pair_id"] for r in train} | {r["pair_id"] for r in val} == {
        "p_keep",
        "p_ctx",
        "p_long",
    }


def test_build_sft_is_byte_identical_on_rerun(tmp_path):
    _build(tmp_path / "a", tmp_path / "out1")
    _build(tmp_path / "b", tmp_path / "out2")
    for name in ("train.parquet", "val.parquet"):
        t1 = read_table(tmp_path / "out1" / name, SFT)
        t2 = read_table(tmp_path / "out2" / name, SFT)
        assert t1.equals(t2)
    r1 = json.loads((tmp_path / "out1" / "filter_report.json").read_text())
    r2 = json.loads((tmp_path / "out2" / "filter_report.json").read_text())
    r1.pop("inputs"), r2.pop("inputs")
    assert r1 == r2


def test_build_sft_dispatch_rejects_unknown_mode(tmp_path):
    with pytest.raises(SFTError, match="sft.source"):
        build_sft(
            SETTINGS.replace(source="magic"),
            train_path=tmp_path / "t.parquet",
            val_path=tmp_path / "v.parquet",
            report_path=tmp_path / "r.json",
        )


def test_build_sft_dispatches_on_the_settings_source(tmp_path):
    pairs, paths = _write_inputs(tmp_path)
    out = tmp_path / "sft"
    kw = {"train_path": out / "train.parquet", "val_path": out / "val.parquet", "report_path": out / "r.json"}
    report = build_sft(SETTINGS, pairs_path=pairs, critique_paths=paths, **kw)
    assert report["mode"] == "critiques" and report["records_in"] == 12
    bpo = tmp_path / "bpo.json"
    bpo.write_text(json.dumps(BPO_RECORDS))
    report = build_sft(_bpo_settings(bpo), **kw)
    assert report["mode"] == "bpo_dataset" and report["records_in"] == 8
    assert report["settings"]["apply_filters"] is False


# ---------------------------------------------------------------- BPO-format datasets

BPO_RECORDS = [
    {
        "prompt": "Tell me a joke about cats.",
        "optimized_prompt": "Tell me a short, family-friendly joke about cats.",
        "good_res": "Why did the cat sit on the computer? To keep an eye on the mouse!",
        "bad_res": "Cats.",
    },
    {
        "instruction": "Classify the following words.",
        "context": "Tomato, pineapple, mango",
        "optimized_prompt": "Classify each of the following words as a fruit or a vegetable and explain briefly.",
    },
    {
        "instruction": "Translate to German.",
        "input": "Good morning",
        "optimized_prompt": "Translate the given phrase into German.",
    },
    {"prompt": "What is 2+2?", "optimized_prompt": ""},
    {"prompt": "   ", "optimized_prompt": "Something"},
    {
        "prompt": "Tell me a joke about cats.",
        "optimized_prompt": "Tell me a short, family-friendly joke about cats.",
        "good_res": "Why did the cat sit on the computer? To keep an eye on the mouse!",
        "bad_res": "Cats.",
    },
    {
        "prompt": "Hi",
        "optimized_prompt": "Greet me back warmly and ask how my day is going, in one friendly sentence please.",
    },
    {"prompt": "Summarise it.", "optimized_prompt": "Summarise [protected]the article[/protected]."},
]


def test_sft_from_bpo_records_without_filters():
    rows, report = sft_from_bpo_records(
        BPO_RECORDS, rules=RULES, seed=42, apply_filters=False, formats=DEFAULT_CONTEXT_FORMATS
    )
    assert dict(report.dropped) == {"missing_optimized": 1, "missing_prompt": 1, "duplicate": 1}
    assert len(rows) == 5 and report.records_in == 8
    assert all(r["source"] == "bpo_dataset" for r in rows)
    assert rows[0]["prompt"] == "Tell me a joke about cats."
    classify = rows[1]
    assert classify["prompt"].count("Tomato, pineapple, mango") == 1
    assert classify["optimized_prompt"].count("Tomato, pineapple, mango") == 1
    fmt = context_format(classify["pair_id"], 42, DEFAULT_CONTEXT_FORMATS)
    assert classify["prompt"] == attach_context("Classify the following words.", "Tomato, pineapple, mango", fmt)
    assert "Good morning" in rows[2]["prompt"] and "Good morning" in rows[2]["optimized_prompt"]
    assert len({r["pair_id"] for r in rows}) == 5


def test_sft_from_bpo_records_with_filters():
    _, report = sft_from_bpo_records(
        BPO_RECORDS, rules=RULES, seed=42, apply_filters=True, formats=DEFAULT_CONTEXT_FORMATS
    )
    assert report.dropped["optimized_too_long"] == 1  # "Hi" -> 16 words
    assert report.dropped["protected_marker"] == 1


def test_bpo_pair_id_matches_the_data_stage():
    from bpo.pairs import pair_id

    rows, _ = sft_from_bpo_records(
        BPO_RECORDS[:1], rules=RULES, seed=42, apply_filters=False, formats=DEFAULT_CONTEXT_FORMATS
    )
    rec = BPO_RECORDS[0]
    assert rows[0]["pair_id"] == pair_id(rec["prompt"], "", rec["good_res"], rec["bad_res"])


def test_local_json_and_jsonl_with_a_malformed_record(tmp_path):
    as_json = tmp_path / "bpo.json"
    as_json.write_text(json.dumps(BPO_RECORDS))
    records, origin, dropped = read_bpo_records(path=str(as_json), hub_id=None)
    assert len(records) == 8 and not dropped
    as_jsonl = tmp_path / "bpo.jsonl"
    lines = [json.dumps(r) for r in BPO_RECORDS] + ['{"prompt": 5, "optimized_prompt": "x"}', "{not json"]
    as_jsonl.write_text("\n".join(lines) + "\n")
    out = tmp_path / "sft"
    report = build_sft_from_bpo_dataset(
        _bpo_settings(as_jsonl, seed=42, val_fraction=0.2),
        train_path=out / "train.parquet",
        val_path=out / "val.parquet",
        report_path=out / "filter_report.json",
    )
    assert report["records_in"] == 10
    assert report["kept"] == 5
    assert report["dropped"]["malformed_wrong_type"] == 1 and report["dropped"]["malformed_invalid_json"] == 1
    assert report["records_in"] == report["kept"] + report["dropped_total"]
    n = read_table(out / "train.parquet", SFT).num_rows + read_table(out / "val.parquet", SFT).num_rows
    assert n == 5


def test_not_a_bpo_dataset_is_a_clear_error(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([{"instruction": "x", "output": "y"}]))
    with pytest.raises(SFTError, match="not a BPO-format dataset"):
        read_bpo_records(path=str(path), hub_id=None)
    with pytest.raises(SFTError, match="sft.bpo_dataset.path"):
        read_bpo_records(path=str(tmp_path / "missing.json"), hub_id=None)
    with pytest.raises(SFTError, match="hub_id"):
        read_bpo_records(path=None, hub_id=None)


def test_hub_path_via_load_dataset_on_a_local_repo(tmp_path, monkeypatch):
    """The hub code path (datasets.load_dataset(hub_id, split=...)) against a local folder laid
    out like a hub dataset repository."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    repo = tmp_path / "THUDM_BPO"
    repo.mkdir()
    keep = [r for r in BPO_RECORDS if "prompt" in r]
    (repo / "train.json").write_text(json.dumps(keep))
    (repo / "test.json").write_text(json.dumps(keep[:2]))
    records, origin, _ = read_bpo_records(path=None, hub_id=str(repo), split="train")
    assert origin.startswith("hub:") and len(records) == len(keep)
    records, _, _ = read_bpo_records(path=None, hub_id=str(repo), split="test")
    assert len(records) == 2
    with pytest.raises(SFTError, match="load_dataset failed"):
        read_bpo_records(path=None, hub_id=str(tmp_path / "no_such_repo"), split="train")


def test_real_bpo_test_set(shared_data, tmp_path):
    """The paper's own BPO-format records (bpo_test.json) as a ready-made SFT source."""
    path = shared_data / "testsets" / "bpo_test.json"
    out = tmp_path / "sft"
    report = build_sft_from_bpo_dataset(
        _bpo_settings(path, seed=42, val_fraction=0.05),
        train_path=out / "train.parquet",
        val_path=out / "val.parquet",
        report_path=out / "filter_report.json",
    )
    raw = json.loads(path.read_text())
    assert report["records_in"] == len(raw) == 200
    assert report["kept"] + report["dropped_total"] == 200
    assert report["dropped"]["missing_prompt"] == report["dropped"]["missing_optimized"] == 0
    train = read_table(out / "train.parquet", SFT).to_pylist()
    val = read_table(out / "val.parquet", SFT).to_pylist()
    by_prompt = {r["prompt"]: r["optimized_prompt"] for r in raw}
    for row in train + val:
        assert row["optimized_prompt"] == by_prompt[row["prompt"]].strip()  # taken as is, no context to attach
    assert 3 <= len(val) <= 25
    # The paper's rules over the authors' filtered data drop little.
    _, filtered = sft_from_bpo_records(raw, rules=RULES, seed=42, apply_filters=True, formats=DEFAULT_CONTEXT_FORMATS)
    assert sum(filtered.dropped.values()) < 0.2 * len(raw)


def test_nothing_left_is_a_clear_error(tmp_path):
    pairs = tmp_path / "pairs.parquet"
    write_table(PAIRS_ROWS[:1], pairs, PAIRS)
    crit = tmp_path / "c.parquet"
    write_table([_critique("p_keep", None, parse_error="empty reply")], crit, CRITIQUES)
    with pytest.raises(SFTError, match=r"no record left for training: 1 in, dropped \{'parse_failure': 1\}"):
        build_sft_from_critiques(
            SETTINGS.replace(seed=1, val_fraction=0.1),
            pairs_path=pairs,
            critique_paths=[crit],
            train_path=tmp_path / "t.parquet",
            val_path=tmp_path / "v.parquet",
            report_path=tmp_path / "r.json",
        )
    assert not (tmp_path / "t.parquet").exists()
