"""SFT and languages: a critique in another language than its instruction is a counted
language_mismatch drop (switchable), the filter report counts per language, and sft.languages
caps or balances languages with a seeded choice."""

from __future__ import annotations

import json

from test_sft import DEFAULT_CONTEXT_FORMATS, SETTINGS, _critique, _pair

from bpo.schemas import CRITIQUES, PAIRS, SFT, read_table, write_table
from bpo.settings.sft import SFTLanguageSettings
from bpo.sft import FilterRules, build_sft_from_critiques, sft_from_critiques

ES = "¿Cuáles son los beneficios de hacer ejercicio todos los días para la salud del corazón?"
ES_OPT = (
    "Explica de forma detallada cuáles son los beneficios de hacer ejercicio todos los días para la "
    "salud del corazón, con ejemplos concretos."
)
EN_OF_ES = (
    "Explain in detail the benefits of daily exercise for heart health, with concrete examples and a "
    "short summary at the end."
)
EN = "Explain how photosynthesis works in simple words, with an example a child would understand."
EN_OPT = (
    "Explain step by step how photosynthesis works in plants, in simple words, with an everyday example a "
    "ten-year-old child would understand."
)


def _lang_pair(pid, instruction, language):
    return {**_pair(pid, instruction, source="oasst1"), "language": language}


PAIRS_ROWS = [
    _lang_pair("es1", ES, "es"),
    _lang_pair("es2", ES + " ", "es"),
    _lang_pair("en1", EN, "en"),
    _lang_pair("en2", EN + " ", "en"),
    _lang_pair("en3", EN + "  ", "en"),
]
CRITIQUES_ROWS = [
    _critique("es1", ES_OPT, source="oasst1"),
    _critique("es2", EN_OF_ES, source="oasst1"),
    _critique("en1", EN_OPT, source="oasst1"),
    _critique("en2", EN_OPT + " ", source="oasst1"),
    _critique("en3", EN_OPT + "  ", source="oasst1"),
]


def test_language_mismatch_is_a_counted_switchable_drop():
    rules = FilterRules.from_settings(SETTINGS)
    rows, report = sft_from_critiques(PAIRS_ROWS, CRITIQUES_ROWS, rules=rules, seed=42, formats=DEFAULT_CONTEXT_FORMATS)
    assert [r["pair_id"] for r in rows] == ["es1", "en1", "en2", "en3"]
    assert report.dropped == {"language_mismatch": 1} and report.examples["language_mismatch"] == ["es2"]
    off = FilterRules.from_settings(SETTINGS.replace(language_mismatch=False))
    rows, report = sft_from_critiques(PAIRS_ROWS, CRITIQUES_ROWS, rules=off, seed=42, formats=DEFAULT_CONTEXT_FORMATS)
    assert len(rows) == 5 and not report.dropped


def _build(tmp_path, **kw):
    pairs, crit = tmp_path / "pairs.parquet", tmp_path / "crit.parquet"
    write_table(PAIRS_ROWS, pairs, PAIRS)
    write_table(CRITIQUES_ROWS, crit, CRITIQUES)
    out = build_sft_from_critiques(
        SETTINGS.replace(val_fraction=0.0, **kw),
        pairs_path=pairs,
        critique_paths=[crit],
        train_path=tmp_path / "train.parquet",
        val_path=tmp_path / "val.parquet",
        report_path=tmp_path / "report.json",
    )
    assert out == json.loads((tmp_path / "report.json").read_text())
    return out, [r["pair_id"] for r in read_table(tmp_path / "train.parquet", SFT).to_pylist()]


def test_report_counts_per_language(tmp_path):
    report, ids = _build(tmp_path)
    assert report["by_language"] == {
        "en": {"in": 3, "kept": 3, "dropped": {}},
        "es": {"in": 2, "kept": 1, "dropped": {"language_mismatch": 1}},
    }
    assert report["settings"]["language_mismatch"] is True
    assert report["settings"]["languages"] == {"balance": False, "cap": None}
    assert sorted(ids) == ["en1", "en2", "en3", "es1"]


def test_cap_and_balance_are_seeded_counted_drops(tmp_path):
    report, ids = _build(tmp_path / "cap", languages=SFTLanguageSettings(cap=2, balance=False))
    assert report["dropped"]["language_cap"] == 1 and report["kept"] == 3
    assert report["by_language"]["en"] == {"in": 3, "kept": 2, "dropped": {"language_cap": 1}}
    assert report["by_source"]["oasst1"]["kept"] == 3
    assert report["records_in"] == report["kept"] + report["dropped_total"]
    again, ids_again = _build(tmp_path / "cap2", languages=SFTLanguageSettings(cap=2, balance=False))
    assert ids == ids_again  # seeded: the same records stay
    other, ids_other = _build(tmp_path / "cap3", languages=SFTLanguageSettings(cap=2, balance=False), seed=7)
    assert len(ids_other) == 3
    report, ids = _build(tmp_path / "bal", languages=SFTLanguageSettings(cap=None, balance=True))
    assert report["by_language"]["en"]["kept"] == 1 == report["by_language"]["es"]["kept"]
    assert report["dropped"]["language_cap"] == 2 and "es1" in ids
