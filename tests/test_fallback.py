"""The degenerate-output detector (bpo.optimizer.fallback): each reason on hand-written cases,
precision/recall per reason on a labelled set of real optimizer outputs, the false-positive rate
on the BPO release's reference rewrites (../shared/data, skipped when absent), and its speed.

tests/data/fallback_calibration.jsonl: outputs for this project's own prompts (75, written for
it, 15 of them in zh/es/de/fr/ru/ja/pt/it) of SmolLM2-135M-Instruct (chat-template format;
nucleus sampling as in the paper) before fine-tuning (``smollm2-base``) and after the demo's
fine-tune (``smollm2-ft``, written by tests/data/calibration_outputs.py), and of the tiny
from-scratch model after 12 and 48 steps on BPO pairs. Each row: {source, index, prompt,
output, hit_limit, label[, note]}; label is what the TEXT is ("good" or a reason), proposed by
the detector and then checked by hand (the note says why where it is not obvious), so the text
checks are scored on every row, also those cut at the token limit; the full expected reason
puts ``truncated`` first.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bpo.optimizer import fallback as fb
from bpo.optimizer.fallback import REASONS, degenerate_reason

CALIBRATION = Path(__file__).parent / "data" / "fallback_calibration.jsonl"
GOOD = "good"


@pytest.mark.parametrize(
    "text, original, reason",
    [
        # the tiny model's gibberish from issue 10, with and without the prompt
        ("twolineSuggest string", None, fb.GIBBERISH),
        ("twolineSuggest string", "What are some simple ways to drink more water?", fb.GIBBERISH),
        ("product fallingrain some\n 1SuggestatsSuggest nonPlease spider Keep answer", None, fb.GIBBERISH),
        ("water drink glass bottle morning tips daily hydration habit routine", None, fb.GIBBERISH),
        # loops: word n-grams, repeated sentences, one word filling the text
        (
            "Explain tides. Explain tides and the moon. Explain tides and the moon and the sun and the moon and "
            "the sun and the moon and the sun and the moon and the sun.",
            "tides",
            fb.REPETITION,
        ),
        (
            "Tell me about Harry Potter.\nTell me about Harry Potter.\nTell me about Harry Potter.",
            "Tell me about Harry Potter",
            fb.REPETITION,
        ),
        ("Suggest water Suggest more Suggest water Suggest glass Suggest daily Suggest", None, fb.REPETITION),
        # another script or language than the prompt's
        (
            "What are the most interesting facts about the history of the Great Wall of China?",
            "请给我介绍一下长城的历史。",
            fb.WRONG_SCRIPT,
        ),
        (
            "What are the benefits of exercising every day, and how should I start?",
            "¿Cuáles son los beneficios de hacer ejercicio todos los días?",
            fb.WRONG_LANGUAGE,
        ),
        # lost names, numbers, quoted strings, code spans
        (
            "Tell me about the main characters and plot of the famous book series.",
            "Tell me about Harry Potter",
            fb.LOST_ENTITIES,
        ),
        ("Give me a recipe for banana bread.", "Give me a recipe for banana bread that uses 2 eggs.", fb.LOST_ENTITIES),
        (
            "Explain the difference between the two Python list methods.",
            "What is the difference between `list.append` and `list.extend` in Python?",
            fb.LOST_ENTITIES,
        ),
        # an answer, not a rewrite
        (
            "Sure! Here are some tips: carry a bottle, set reminders and eat fruit.",
            "How can I drink more water?",
            fb.ANSWER,
        ),
        (
            "Harry Potter is a series of seven fantasy novels written by British author J. K. Rowling. "
            "The novels chronicle the lives of a young wizard, Harry Potter, "
            "and his friends Hermione Granger and Ron Weasley, "
            "all of whom are students at Hogwarts School of Witchcraft and Wizardry.",
            "Tell me about Harry Potter",
            fb.ANSWER,
        ),
        # the prompt's own words are never held against the rewrite
        ("Rewrite [Original prompt] markers as headings.", "Rewrite [Original prompt] markers as headings.", None),
        (
            "Please explain who Harry Potter is, and summarise the plot of the seven books for a new reader.",
            "Tell me about Harry Potter",
            None,
        ),
        ("请详细介绍长城的历史，包括它的建造时间、目的和重要意义。", "请给我介绍一下长城的历史。", None),
        (
            "¿Cuáles son los beneficios para la salud de hacer ejercicio todos los días? Explica cada uno.",
            "¿Cuáles son los beneficios de hacer ejercicio todos los días?",
            None,
        ),
        (
            "Write a JavaScript function `reverseString(s)` that returns the reversed string; explain each step.",
            "Write a function in JavaScript that reverses a string.",
            None,
        ),
        (
            'Translate the English greeting "good morning" into Japanese and show its romanization.',
            'Translate "good morning" into Japanese.',
            None,
        ),
    ],
)
def test_each_reason(text, original, reason):
    assert degenerate_reason(text, False, original) == reason


def test_reasons_are_the_documented_strings():
    doc = fb.__doc__
    assert len(set(REASONS)) == len(REASONS)
    for reason in REASONS:
        assert f"``{reason}``" in doc, reason
    arch = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    for reason in REASONS:
        assert f"`{reason}`" in arch, reason


def _load() -> list[dict]:
    rows = [json.loads(line) for line in CALIBRATION.read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, r in enumerate(rows):
        assert r["label"] == GOOD or r["label"] in REASONS, f"row {i}: unknown label {r['label']!r}"
    return rows


def per_reason_scores(rows: list[dict]) -> tuple[dict, dict]:
    """``({reason: (precision, recall, support)}, {"good": ..., "degenerate": ...})`` of the
    detector against the labels; a degenerate output caught under another reason counts as a
    catch in the binary scores, not in the per-reason ones."""
    pred = [degenerate_reason(r["output"], False, r["prompt"]) or GOOD for r in rows]
    gold = [r["label"] for r in rows]
    scores = {}
    for reason in sorted(set(gold) | set(pred)):
        tp = sum(p == g == reason for p, g in zip(pred, gold))
        n_pred, n_gold = pred.count(reason), gold.count(reason)
        scores[reason] = (tp / n_pred if n_pred else 1.0, tp / n_gold if n_gold else 1.0, n_gold)
    bad_gold = [g != GOOD for g in gold]
    bad_pred = [p != GOOD for p in pred]
    tp = sum(a and b for a, b in zip(bad_gold, bad_pred))
    binary = {
        "degenerate_precision": tp / max(sum(bad_pred), 1),
        "degenerate_recall": tp / max(sum(bad_gold), 1),
        "good_kept": sum(not a and not b for a, b in zip(bad_gold, bad_pred)) / max(bad_gold.count(False), 1),
    }
    return scores, binary


def test_calibration_set_precision_recall():
    rows = _load()
    assert 225 <= len(rows) and CALIBRATION.stat().st_size < 200_000
    sources = Counter(r["source"].split("/")[0] for r in rows)
    assert {"smollm2-base", "smollm2-ft", "tiny"} <= set(sources), sources
    scores, binary = per_reason_scores(rows)
    print("\nreason            precision  recall  support")
    for reason, (p, r, n) in scores.items():
        print(f"{reason:<17} {p:9.2f} {r:7.2f} {n:8d}")
    print({k: round(v, 3) for k, v in binary.items()})
    # Most junk is caught, almost only junk is rejected. The untuned model rarely rewrites, so the
    # set has few good rows (a title-only rewrite counts as an answer); the false-positive rate
    # that matters is on real rewrites, test_release_reference_rewrites_are_kept.
    assert binary["good_kept"] >= 0.85
    assert binary["degenerate_precision"] >= 0.95
    assert binary["degenerate_recall"] >= 0.9
    for reason, (p, r, n) in scores.items():
        if reason != GOOD and n >= 5:
            assert p >= 0.75 and r >= 0.6, (reason, p, r, n)


def test_truncation_comes_first():
    for r in _load():
        if r["hit_limit"] and r["output"].strip():
            assert degenerate_reason(r["output"], True, r["prompt"]) == fb.TRUNCATED


def test_release_reference_rewrites_are_kept(shared_data):
    """False positives on good rewrites: the BPO release's reference rewrites of its test set."""
    rows = json.loads((shared_data / "testsets" / "bpo_test.json").read_text(encoding="utf-8"))
    reasons = Counter(degenerate_reason(r["optimized_prompt"], False, r["prompt"]) for r in rows)
    rejected = sum(n for reason, n in reasons.items() if reason is not None)
    print(f"\nreference rewrites rejected: {rejected}/{len(rows)} {dict(reasons)}")
    assert rejected / len(rows) <= 0.04, reasons  # 6 of 200 at calibration: most drop a number or name


def test_calibration_set_covers_other_languages():
    """Rows 230+ are SmolLM2-135M-Instruct's outputs (the demo's decoding, labels checked by
    hand) on 16 prompts in 13 other languages, CJK, Cyrillic and Arabic included: wrong_language
    and wrong_script are scored beyond the Latin-script languages the old heuristic knew."""
    from bpo.language import detect

    langs = Counter(detect(r["prompt"]) for r in _load())
    other = {lang: n for lang, n in langs.items() if lang not in ("en", "und")}
    assert sum(other.values()) >= 30 and {"zh", "ja", "ko", "ru", "ar", "pl", "tr"} <= set(other)
