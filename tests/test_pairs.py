"""Cleaning, ids, sampling and merging of pairs; the demo data end to end (without Snakemake)."""

from __future__ import annotations

import json
import logging
import random
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO

from bpo.pairs import assign_ids, build_source_pairs, clean_pairs, merge_pairs, pair_id, sample_pairs
from bpo.readers import ReadError
from bpo.schemas import PAIRS, read_table
from bpo.settings import MergeSettings, PairsSourceSettings, load_config
from bpo.sources.base import pair

LIMITS = {"min_chars": 1, "max_instruction_chars": 50, "max_context_chars": 60, "max_response_chars": 40}
DEFAULT_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
CLEANING = {k: v for k, v in DEFAULT_CONFIG["pairs"].items() if k != "dedup"}

# the config's demo paths are relative to the repository root
pytestmark = pytest.mark.usefixtures("run_from_repo")


def cand(instruction="Name a colour.", good="Blue.", bad="Seven.", context="", **kw):
    return pair(source_id=kw.pop("source_id", "0"), instruction=instruction, good=good, bad=bad, context=context, **kw)


def test_pair_id_is_a_stable_content_hash():
    pid = pair_id("Q", "", "good", "bad")
    assert len(pid) == 16 and int(pid, 16) >= 0
    assert pid == pair_id("Q", "", "good", "bad")
    assert (
        len(
            {pid, pair_id("Q", "", "bad", "good"), pair_id("Q", "ctx", "good", "bad"), pair_id("Q2", "", "good", "bad")}
        )
        == 4
    )
    assert pair_id("ab", "c", "g", "b") != pair_id("a", "bc", "g", "b")  # fields cannot run into each other


@pytest.mark.parametrize(
    "kw, reason",
    [
        ({"instruction": "  \n\t "}, "empty_instruction"),
        ({"good": ""}, "empty_response"),
        ({"bad": "   "}, "empty_response"),
        ({"instruction": "x" * 51}, "long_instruction"),
        ({"context": "c" * 61}, "long_context"),
        ({"good": "g" * 41}, "long_response"),
        ({"bad": "b" * 41}, "long_response"),
        ({"good": " Same. ", "bad": "Same."}, "same_responses"),
    ],
)
def test_clean_drops_by_reason(kw, reason):
    kept, dropped = clean_pairs([cand(**kw), cand()], **LIMITS)
    assert dropped == Counter({reason: 1}) and len(kept) == 1


def test_clean_strips_and_limits_are_inclusive():
    kept, dropped = clean_pairs(
        [cand(instruction="  " + "x" * 50 + "\n", context=" " + "c" * 60, good="g" * 40 + "  ", bad="\nNo.")], **LIMITS
    )
    assert not dropped
    (p,) = kept
    assert (p["instruction"], p["context"], p["good_response"], p["bad_response"]) == (
        "x" * 50,
        "c" * 60,
        "g" * 40,
        "No.",
    )
    _, dropped = clean_pairs([cand(instruction="Hi", good="Yes.", bad="No")], **{**LIMITS, "min_chars": 3})
    assert dropped == Counter({"short_instruction": 1})
    _, dropped = clean_pairs([cand(instruction="Hello", good="Yes.", bad="No")], **{**LIMITS, "min_chars": 3})
    assert dropped == Counter({"short_response": 1})


def test_assign_ids_drops_exact_duplicates_first_wins():
    pairs = [cand(source_id="a"), cand(source_id="b"), cand(good="Green.", source_id="c")]
    out, dups = assign_ids(pairs, "hh_rlhf")
    assert dups == 1 and [p["source_id"] for p in out] == ["a", "c"]
    assert out[0]["pair_id"] == pair_id("Name a colour.", "", "Blue.", "Seven.") and out[0]["source"] == "hh_rlhf"


def _ided(n):
    return assign_ids([cand(instruction=f"Question {i}?") for i in range(n)], "s")[0]


def test_sampling_is_seeded_order_independent_and_keeps_file_order():
    pairs = _ided(50)
    a = sample_pairs(pairs, 10, seed=42)
    assert len(a) == 10 and a == sample_pairs(pairs, 10, seed=42)
    assert [p["source_id"] for p in a] == sorted((p["source_id"] for p in a), key=int)  # original order
    shuffled = pairs[:]
    random.Random(0).shuffle(shuffled)
    assert {p["pair_id"] for p in sample_pairs(shuffled, 10, seed=42)} == {p["pair_id"] for p in a}
    assert {p["pair_id"] for p in sample_pairs(pairs, 10, seed=7)} != {p["pair_id"] for p in a}
    assert sample_pairs(pairs, 0, seed=42) == pairs and sample_pairs(pairs, 80, seed=42) == pairs
    # growing the input keeps earlier choices unless outranked
    assert len({p["pair_id"] for p in sample_pairs(_ided(60), 10, seed=42)} & {p["pair_id"] for p in a}) >= 7


def _build(tmp_path, source, **overrides):
    settings = PairsSourceSettings.from_config(load_config(overrides={"sources": {source: overrides}}), source)
    paths = {"pairs_path": tmp_path / f"{source}.parquet", "stats_path": tmp_path / f"{source}.stats.json"}
    stats = build_source_pairs(settings, **paths)
    return stats, paths


def test_source_settings_hold_the_section_without_activate():
    config = load_config(overrides={"sources": {"oasst1": {"languages": ["en", "de"], "activate": False}}})
    settings = PairsSourceSettings.from_config(config, "oasst1")
    section = settings.source.section()
    assert section == {
        "path": "resources/demo/oasst1/train.jsonl",
        "hub_id": None,
        "split": "train",
        "sample": 0,
        "languages": ["en", "de"],
        "multi_turn": False,
        "max_history_turns": None,
        "test_trees": 0.5,
    }
    assert list(section) == [
        "path",
        "hub_id",
        "split",
        "languages",
        "multi_turn",
        "max_history_turns",
        "test_trees",
        "sample",
    ]  # the schema's order
    assert settings.cleaning.canonical() == CLEANING
    assert PairsSourceSettings.from_params(settings.canonical()) == settings
    # activate selects the source, it changes no pairs: not a setting
    on = PairsSourceSettings.from_config(load_config(), "oasst1")
    assert "activate" not in str(on.canonical())
    assert MergeSettings.from_config(config).canonical() == {"dedup": True}


@pytest.mark.parametrize("source", ["hh_rlhf", "oasst1", "chatbot_arena", "alpaca_gpt4"])
def test_demo_source_end_to_end(tmp_path, caplog, source):
    caplog.set_level(logging.INFO)
    stats, paths = _build(tmp_path, source)
    table = read_table(paths["pairs_path"], PAIRS)
    assert pq.read_schema(paths["pairs_path"]).names == PAIRS.names
    assert stats == json.loads(paths["stats_path"].read_text())
    # enough usable pairs for the later stages, and every drop accounted for
    assert table.num_rows == stats["pairs"] >= 10
    assert (
        stats["candidates"]
        == stats["pairs"] + stats["dropped_total"]
        == stats["pairs"] + sum(stats["dropped"].values())
    )
    assert stats["dropped"], "the demo exercises drops in every source"
    rows = table.to_pylist()
    assert len({r["pair_id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["source"] == source
        assert r["pair_id"] == pair_id(r["instruction"], r["context"], r["good_response"], r["bad_response"])
        assert r["instruction"] == r["instruction"].strip() != ""
        assert r["good_response"] != r["bad_response"]
        assert len(r["good_response"]) <= CLEANING["max_response_chars"]
    # the log prints the drop counts by reason
    for reason, n in stats["dropped"].items():
        assert f"{reason} {n}" in caplog.text


def test_demo_counts(tmp_path):
    expected = {
        "hh_rlhf": (
            17,
            {
                "multi_turn": 4,
                "malformed_wrong_type": 1,
                "malformed_missing_field": 1,
                "duplicate": 1,
                "long_response": 1,
            },
        ),
        # languages: all (14 en + 10 pairs in six other languages); half the non-English trees held out for test
        "oasst1": (
            24,
            {
                "held_out_for_test": 6,
                "multi_turn": 2,
                "deleted": 1,
                "not_reviewed": 1,
                "fewer_than_2_ranked_replies": 2,
            },
        ),
        "chatbot_arena": (17, {"tie": 2, "flagged": 2, "language": 2, "multi_turn": 2, "malformed_winner": 1}),
        "alpaca_gpt4": (15, {"unmatched": 2, "duplicate_key": 1, "same_responses": 1, "empty_response": 1}),
    }
    for source, (n, drops) in expected.items():
        stats, _ = _build(tmp_path, source)
        assert stats["pairs"] == n, source
        assert drops.items() <= stats["dropped"].items(), (source, stats["dropped"])
    stats, _ = _build(
        tmp_path, "alpaca_gpt4", format="comparison", path="resources/demo/alpaca-gpt4/comparison_gpt4.json"
    )
    assert stats["pairs"] == 15 and stats["dropped"] == {"malformed_output_not_a_pair": 2, "same_responses": 1}
    stats, _ = _build(tmp_path, "chatbot_arena", multi_turn=True, languages=[], drop_flagged=False)
    assert stats["pairs"] == 23


def test_sample_counts_as_not_sampled(tmp_path):
    full, _ = _build(tmp_path, "hh_rlhf")
    stats, paths = _build(tmp_path, "hh_rlhf", sample=5)
    assert stats["pairs"] == 5 and stats["dropped"]["not_sampled"] == full["pairs"] - 5
    first = read_table(paths["pairs_path"], PAIRS).column("pair_id").to_pylist()
    _build(tmp_path, "hh_rlhf", sample=5)
    assert read_table(paths["pairs_path"], PAIRS).column("pair_id").to_pylist() == first  # deterministic


def test_missing_input_fails_clearly_and_writes_nothing(tmp_path):
    with pytest.raises(ReadError, match="no/such/file.jsonl"):
        _build(tmp_path, "hh_rlhf", path="no/such/file.jsonl")
    assert not list(tmp_path.iterdir())


def _write_source(tmp_path, source, pairs):
    rows, _ = assign_ids(pairs, source)
    from bpo.schemas import write_table

    write_table(rows, tmp_path / f"{source}.parquet", PAIRS)
    (tmp_path / f"{source}.stats.json").write_text(
        json.dumps({"source": source, "records_read": len(rows), "candidates": len(rows), "dropped": {"tie": 1}})
    )
    return tmp_path / f"{source}.parquet", tmp_path / f"{source}.stats.json"


def test_merge_drops_duplicates_across_sources(tmp_path):
    shared = cand(instruction="How many minutes in a day?", good="1,440.", bad="1,000.")
    a = _write_source(tmp_path, "hh_rlhf", [cand(), shared])
    b = _write_source(tmp_path, "chatbot_arena", [shared, cand(instruction="Other?")])
    out = {"pairs_path": tmp_path / "all.parquet", "stats_path": tmp_path / "all.stats.json"}

    stats = merge_pairs([a[0], b[0]], [a[1], b[1]], **out, settings=MergeSettings(dedup=True))
    rows = read_table(out["pairs_path"], PAIRS).to_pylist()
    assert [(r["source"], r["instruction"]) for r in rows] == [
        ("hh_rlhf", "Name a colour."),
        ("hh_rlhf", "How many minutes in a day?"),  # the first source keeps the shared pair
        ("chatbot_arena", "Other?"),
    ]
    assert stats == json.loads(out["stats_path"].read_text())
    assert stats["pairs"] == 3 and stats["duplicates_across_sources"] == 1
    assert stats["sources"]["chatbot_arena"]["dropped"] == {"tie": 1, "duplicate_across_sources": 1}
    assert stats["sources"]["chatbot_arena"]["pairs_in"] == 2 and stats["sources"]["chatbot_arena"]["pairs"] == 1

    stats = merge_pairs([a[0], b[0]], [a[1], b[1]], **out, settings=MergeSettings(dedup=False))
    assert stats["pairs"] == 4 and stats["duplicates_across_sources"] == 0


def test_demo_files_match_their_generator(tmp_path):
    """resources/demo is written by make_demo.py; the committed files must be its output."""
    sys.path.insert(0, str(REPO / "resources" / "demo"))
    try:
        import make_demo
    finally:
        sys.path.pop(0)
    make_demo.main(tmp_path)
    for name in make_demo.FILES:
        assert (tmp_path / name).read_bytes() == (REPO / "resources" / "demo" / name).read_bytes(), name
