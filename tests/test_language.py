"""bpo.language: ISO 639-1 codes from lingua, "und" for anything short, mixed or unclear, and
dataset labels normalised; accuracy on the committed labelled set (benchmarks/bench_langid.py
prints the full figures)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bpo.language import UNDETERMINED, detect, detect_many, known_codes, normalize

SET = Path(__file__).parent / "data" / "langid_set.jsonl"


@pytest.mark.parametrize(
    "text, lang",
    [
        ("Explain how photosynthesis works in simple words, with an example a child would understand.", "en"),
        ("¿Cuáles son los beneficios de hacer ejercicio todos los días para la salud?", "es"),
        ("Quelles sont les meilleures façons d'apprendre à cuisiner à la maison ?", "fr"),
        ("Wie kann ich meine Zeit besser einteilen, wenn ich studiere und arbeite?", "de"),
        ("请用简单的语言解释一下光合作用是如何进行的。", "zh"),
        ("光合作用の仕組みを子どもにもわかるように説明してください。", "ja"),
        ("광합성이 어떻게 작동하는지 쉬운 말로 설명해 주세요.", "ko"),
        ("Объясни простыми словами, как работает фотосинтез у растений.", "ru"),
        ("اشرح لي كيف تعمل عملية التمثيل الضوئي بكلمات بسيطة.", "ar"),
    ],
)
def test_detects_prompts(text, lang):
    assert detect(text) == lang


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "OK",
        "Bonjour",  # one word: French or Tswana, no guess
        "12345 !!! ???",
        "`print(1)`",  # only code
        "Hola, ¿cómo estás? Hello how are you my friend",  # mixed: no single language is clear
        "什么是光合作用 photosynthesis",  # two scripts, neither 80% of the letters
    ],
)
def test_short_or_mixed_is_undetermined(text):
    assert detect(text) == UNDETERMINED


def test_code_and_urls_do_not_decide():
    text = "Explain what this code does, step by step. ```\nfor i in range(10):\n    print(i)\n``` https://ex.am/ple"
    assert detect(text) == "en"


def test_detect_many_keeps_order():
    assert detect_many(
        [
            "Wie kann ich meine Zeit besser einteilen, wenn ich studiere?",
            "x",
            "Explain how tides work and why there are two a day.",
        ]
    ) == ["de", UNDETERMINED, "en"]


@pytest.mark.parametrize(
    "label, code",
    [
        ("en", "en"),
        ("EN", "en"),
        ("pt-BR", "pt"),
        ("zh_Hant", "zh"),
        ("English", "en"),
        ("Chinese", "zh"),
        ("eng", "en"),
        ("spa", "es"),
        ("unknown", UNDETERMINED),
        ("", UNDETERMINED),
        (None, UNDETERMINED),
        ("und", UNDETERMINED),
        ("Norwegian", "nb"),
    ],
)
def test_normalize(label, code):
    assert normalize(label) == code


def test_known_codes_cover_cjk_and_the_set():
    codes = known_codes()
    assert {"en", "zh", "ja", "ko", "ar", "ru", "hi"} <= codes
    assert UNDETERMINED not in codes


def test_labelled_set_accuracy():
    """The committed set (18 languages, 8 scripts): sentences are identified, wrong guesses are
    rare everywhere (an unclear text is "und", never a guess that drops data)."""
    rows = [json.loads(line) for line in SET.read_text().splitlines() if line.strip()]
    assert len({r["lang"] for r in rows}) >= 10
    by = {"long": Counter(), "short": Counter()}
    for r in rows:
        p = detect(r["text"])
        by[r["length"]]["ok" if p == r["lang"] else "und" if p == UNDETERMINED else "wrong"] += 1
    long_n, short_n = sum(by["long"].values()), sum(by["short"].values())
    assert by["long"]["ok"] / long_n >= 0.9
    assert by["long"]["wrong"] / long_n <= 0.02
    assert by["short"]["wrong"] / short_n <= 0.02
