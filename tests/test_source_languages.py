"""sources.<name>.languages on every source: the dataset's label as ISO 639-1 where it has one
(a detector disagreement counted and located, never resolved silently), detection where it has
none, undetermined kept, unwanted languages dropped and located, config errors named; the
per-language counts of the pairs stats."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from test_sources import Tree, alp, arena, hh, table

from bpo.language import UNDETERMINED
from bpo.pairs import build_source_pairs, merge_pairs
from bpo.settings.config import load_config
from bpo.settings.data import MergeSettings, PairsSourceSettings
from bpo.sources import alpaca_gpt4, chatbot_arena, hh_rlhf, oasst1
from bpo.sources.languages import LanguageConfigError, wanted_languages

ES = "¿Cuáles son los beneficios de hacer ejercicio todos los días para la salud del corazón?"
ZH = "请用简单的语言解释一下光合作用是如何进行的，并举一个例子。"
EN = "Explain how photosynthesis works in simple words, with an example a child would understand."


def test_oasst_label_decides_and_a_disagreement_is_counted_and_located():
    t = Tree()
    t.prompt(EN, [("a", 0, {}), ("b", 1, {})])
    t.prompt(ES, [("a", 0, {}), ("b", 1, {})], lang="en")  # mislabelled: kept as en, counted
    t.prompt(ES, [("c", 0, {}), ("d", 1, {})], lang="pt-BR")  # a region: pt
    res = oasst1.parse(t.table(), languages="all", locate=lambda i: f"f.jsonl:{i + 1}")
    assert [p["language"] for p in res.pairs] == ["en", "en", "pt"]
    assert res.other["language_disagreements"] == {"en>es": 1, "pt>es": 1}
    assert res.other_locations["language_disagreements"]["en>es"] == ["f.jsonl:4 (field 'language')"]
    # the label decides the filter, not the detector
    res = oasst1.parse(t.table(), languages=["pt"])
    assert [p["language"] for p in res.pairs] == ["pt"] and res.dropped == Counter({"language": 2})


def test_arena_language_names_are_codes():
    rows = [
        arena("q1", [ES, "x"], [ES, "y"], language="Spanish"),
        arena("q2", [EN, "x"], [EN, "y"], language="English"),
        arena("q3", [ZH, "x"], [ZH, "y"], language="unknown"),
    ]  # no usable label: detected
    res = chatbot_arena.parse(table(chatbot_arena, rows), languages=["es", "zh"])
    assert [(p["source_id"], p["language"]) for p in res.pairs] == [("q1", "es"), ("q3", "zh")]
    assert res.dropped == Counter({"language": 1})
    assert res.other["language_identification"] == {"detected": 1}


def test_unlabelled_sources_are_detected_and_filtered_with_locations():
    res = hh_rlhf.parse(
        table(hh_rlhf, [hh(EN, good="g", bad="b"), hh(ZH, good="g", bad="b"), hh("Hi?", good="g", bad="b")]),
        locate=lambda i: f"hh row {i}",
    )
    from bpo.sources.languages import detect_languages

    detect_languages(res, ["en"], "sources.hh_rlhf.languages")
    # the short "Hi?" is undetermined: kept, never dropped on a guess
    assert [p["language"] for p in res.pairs] == ["en", UNDETERMINED]
    assert res.dropped == Counter({"language": 1})
    assert res.dropped.locations["language"] == ["hh row 1 (field 'instruction')"]
    assert res.other["language_identification"] == {"detected": 3, "undetermined_kept": 1}
    assert res.candidates == 3


def test_alpaca_load_detects(tmp_path):
    path = tmp_path / "cmp.json"
    path.write_text(
        json.dumps(
            [
                {"instruction": ES, "input": "", "output": ["a", "b"]},
                {"instruction": EN, "input": "", "output": ["a", "b"]},
            ]
        )
    )
    res = alpaca_gpt4.load({"format": "comparison", "path": str(path), "languages": ["es"]})
    assert [p["language"] for p in res.pairs] == ["es"] and res.dropped == Counter({"language": 1})
    assert alp  # the shared fixture helper stays importable for other tests


@pytest.mark.parametrize(
    "value, codes", [("all", None), ([], None), (["all"], None), (["English", "zh-TW"], {"en", "zh"})]
)
def test_wanted_languages(value, codes):
    assert wanted_languages(value, "sources.x.languages") == (None if codes is None else frozenset(codes))


@pytest.mark.parametrize("value", [["klingon"], "en"])
def test_bad_languages_config_names_the_key(value):
    with pytest.raises(LanguageConfigError, match=r"sources\.oasst1\.languages"):
        wanted_languages(value, "sources.oasst1.languages")


def test_every_source_has_the_languages_key():
    config = load_config()
    for name in ("hh_rlhf", "oasst1", "chatbot_arena", "alpaca_gpt4"):
        assert "languages" in config["sources"][name], name


def test_stats_count_pairs_per_language(tmp_path):
    t = Tree()
    t.prompt(EN, [("a", 0, {}), ("b", 1, {})])
    t.prompt(ES, [("c", 0, {}), ("d", 1, {})], lang="es")
    t.prompt(ZH, [("e", 0, {}), ("f", 1, {})], lang="zh")
    src = tmp_path / "oasst.jsonl"
    src.write_text("".join(json.dumps({**r, "created_date": None}) + "\n" for r in t.rows))
    config = load_config(overrides={"sources": {"oasst1": {"path": str(src), "languages": "all"}}})
    settings = PairsSourceSettings.from_config(config, "oasst1")
    stats = build_source_pairs(settings, pairs_path=tmp_path / "p.parquet", stats_path=tmp_path / "s.json")
    assert stats["languages"] == {"en": 1, "es": 1, "zh": 1}
    merged = merge_pairs(
        [tmp_path / "p.parquet"],
        [tmp_path / "s.json"],
        pairs_path=tmp_path / "all.parquet",
        stats_path=tmp_path / "all.json",
        settings=MergeSettings.from_config(config),
    )
    assert merged["languages"] == {"en": 1, "es": 1, "zh": 1}
    assert merged["sources"]["oasst1"]["languages"] == {"en": 1, "es": 1, "zh": 1}


def test_unknown_language_fails_at_config_time():
    from bpo.settings.base import SettingsError

    config = load_config(overrides={"sources": {"hh_rlhf": {"languages": ["english", "xx"]}}})
    with pytest.raises(SettingsError, match=r"sources\.hh_rlhf\.languages: unknown language 'xx'"):
        PairsSourceSettings.from_config(config, "hh_rlhf")


def test_multilingual_example_config_validates():
    from bpo.settings import SFTSettings
    from bpo.settings.config import DEFAULT_CONFIG_PATH

    config = load_config(DEFAULT_CONFIG_PATH, "config/examples/multilingual.yaml")
    for name in ("hh_rlhf", "oasst1", "chatbot_arena", "alpaca_gpt4"):
        PairsSourceSettings.from_config(config, name)  # every languages value is known
    assert SFTSettings.from_config(config).languages.balance is True


def test_oasst1_test_set_is_held_out_of_training_by_tree(tmp_path):
    """sources.oasst1.test_trees: the trees in the test share give no training pair (a counted
    held_out_for_test drop, follow-ups included) and their non-English roots are the oasst1 test
    set; no prompt is in both."""
    from bpo.eval.testsets import load_testset
    from bpo.sources.oasst1 import held_out

    t = Tree()
    roots = []
    for i in range(40):
        lang = ("es", "de", "zh", "en")[i % 4]
        text = {
            "es": ES,
            "de": "Wie kann ich meine Zeit besser einteilen, wenn ich studiere und arbeite?",
            "zh": ZH,
            "en": EN,
        }[lang] + f" ({i})"
        root, (first, _) = t.prompt(text, [("a", 0, {}), ("b", 1, {})], lang=lang)
        t.prompt(text + " más", [("c", 0, {}), ("d", 1, {})], parent=first, lang=lang)  # a follow-up in the tree
        roots.append((root, lang))
    share = 0.3
    held = {r for r, lang in roots if held_out(r, share) and lang != "en"}  # English trees all stay in training
    assert 0 < len(held) < len(roots)
    res = oasst1.parse(t.table(), languages="all", multi_turn=True, test_trees=share)
    trained = {p["source_id"] for p in res.pairs}
    assert res.dropped["held_out_for_test"] == 2 * len(held)  # root and follow-up of each held-out tree
    path = tmp_path / "msgs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in t.rows))
    ts = load_testset("oasst1_heldout", path, "oasst1", test_trees=share)
    tested = {item.item_id for item in ts.items}
    assert tested == held
    assert not tested & trained
    assert {r for r, lang in roots if lang == "en"} <= trained
