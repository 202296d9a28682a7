"""Per-language rows of the report: one per language of a multilingual test set (the original
prompt's language, bpo.language), none for a one-language test set; in the summary too."""

from __future__ import annotations

from test_eval_report import PAIRS, _answer, _judgment, _optimized, _report, _write

from bpo.schemas import WINRATES, read_table

PROMPTS = {
    "und": "Hi",
    "en": "Explain how photosynthesis works in simple words, with an example a child would understand.",
    "es": "¿Cuáles son los beneficios de hacer ejercicio todos los días para la salud del corazón?",
    "zh": "请用简单的语言解释一下光合作用是如何进行的，并举一个例子。",
}


def _multilingual(tmp_path, langs=("en", "es", "zh")):
    answers, judgments, optimized = [], [], []
    for i, (v1, v2, outcome, raw, backend, _category) in enumerate(PAIRS):
        item, lang = f"q{i}", langs[i % 3]
        answers.append(_answer(item, "trained", None, "one two", "one two three four"))
        judgments.append(_judgment(item, "trained", None, v1, v2, outcome, raw, backend))
        optimized.append(
            {
                **_optimized(item, "trained", None, rewritten=True),
                "instruction": PROMPTS[lang],
                "optimized_instruction": PROMPTS[lang] + " Be specific.",
            }
        )
    return _write(tmp_path, "multi", answers, judgments, optimized)


def test_language_rows_for_a_multilingual_test_set(tmp_path):
    rows, out = _report(tmp_path, _multilingual(tmp_path))
    assert read_table(out["table"], WINRATES).to_pylist() == rows
    assert [(r["category"], r["language"]) for r in rows] == [(None, None), (None, "en"), (None, "es"), (None, "zh")]
    overall, *per_lang = rows
    assert sum(r["n"] for r in per_lang) == overall["n"] == len(PAIRS)
    # q0, q3, q6 are English: win, lose, invalid (unparseable)
    en = per_lang[0]
    assert (en["n"], en["n_win"], en["n_lose"], en["n_invalid"]) == (3, 1, 1, 1)
    text = out["summary"].read_text()
    assert "## Per language" in text and "| trained | demo | t1 | zh | 3 |" in text


def test_one_language_test_set_has_no_language_rows(tmp_path):
    from test_eval_report import _trained

    rows, out = _report(tmp_path, _trained(tmp_path))
    assert all(r["language"] is None for r in rows)
    assert "## Per language" not in out["summary"].read_text()


def test_english_and_undetermined_prompts_give_no_language_rows(tmp_path):
    """Short prompts ("und") in an English test set do not make it multilingual."""
    rows, out = _report(tmp_path, _multilingual(tmp_path, langs=("en", "und", "en")))
    assert all(r["language"] is None for r in rows)
    assert "## Per language" not in out["summary"].read_text()


def test_undetermined_prompts_get_their_row_in_a_multilingual_test_set(tmp_path):
    rows, _ = _report(tmp_path, _multilingual(tmp_path, langs=("es", "und", "zh")))
    assert [r["language"] for r in rows] == [None, "es", "und", "zh"]
