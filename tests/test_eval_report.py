"""The report on hand-made judgments: figures, categories, optimizers side by side, length
control, invalid and fallback breakdowns, stand-in labelling, outputs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from bpo.eval.report import build_report
from bpo.schemas import ANSWERS, JUDGMENTS, OPTIMIZED, WINRATES, read_table, write_table
from bpo.settings import load_config
from bpo.settings.evaluate import ReportSettings

# (verdict optimized first, verdict original first, outcome, raw replies present, backend, category)
PAIRS = [
    ("A", "B", "win", True, "standin", "writing"),
    ("A", "B", "win", True, "standin", "writing"),
    ("A", "B", "win", True, "standin", "math"),
    ("B", "A", "lose", True, "standin", "math"),
    ("A", "A", "tie", True, "standin", "math"),  # inconsistent -> tie
    ("C", "C", "tie", False, "none", "writing"),  # identical answers, no call
    (None, "B", "invalid", True, "standin", "writing"),  # unparseable reply
    (None, None, "invalid", False, "standin", "math"),  # judge calls failed
    (None, None, "invalid", False, "none", "math"),  # an answer is missing
]
OUTPUTS = [
    ("table", "winrates.parquet"),
    ("summary", "summary.md"),
    ("plot", "winrates.png"),
    ("compare_plot", "compare.png"),
    ("intrinsic", "intrinsic.json"),
    ("summary_html", "summary.html"),
]


def _answer(item, optimizer, category, original, optimized, *, testset="demo", backend="standin"):
    return {
        "item_id": item,
        "testset": testset,
        "optimizer": optimizer,
        "category": category,
        "target": "t1",
        "question_original": f"question {item}",
        "question_optimized": f"better question {item}",
        "answer_original": original,
        "answer_optimized": optimized,
        "status_original": "ok" if original is not None else "error",
        "status_optimized": "ok",
        "backend": backend,
    }


def _judgment(item, optimizer, category, v1, v2, outcome, raw, backend, *, testset="demo", protocol="both_orders"):
    return {
        "item_id": item,
        "testset": testset,
        "optimizer": optimizer,
        "category": category,
        "target": "t1",
        "judge_model": "judge-x",
        "protocol": protocol,
        "verdict_optimized_first": v1,
        "verdict_original_first": v2,
        "outcome": outcome,
        "raw_optimized_first": ("reply" if raw else None),
        "raw_original_first": ("[[B]]" if raw else None),
        "rule_optimized_first": "sole_token" if v1 else None,
        "rule_original_first": "sole_token" if v2 else None,
        "backend": backend,
    }


def _optimized(item, optimizer, category, rewritten, *, testset="demo"):
    return {
        "item_id": item,
        "testset": testset,
        "optimizer": optimizer,
        "category": category,
        "instruction": "write a poem about the sea",
        "context": "",
        "optimized_instruction": "write a short poem about the sea" if rewritten else "write a poem about the sea",
        "fallback_reason": None if rewritten else "context altered",
        "reference_optimized": "write a short poem about the calm sea",
    }


def _write(tmp_path, name, answers, judgments, optimized):
    paths = {k: tmp_path / f"{name}_{k}.parquet" for k in ("answers", "judgments", "optimized")}
    write_table(answers, paths["answers"], ANSWERS)
    write_table(judgments, paths["judgments"], JUDGMENTS)
    write_table(optimized, paths["optimized"], OPTIMIZED)
    return paths


def _trained(tmp_path, backend_override=None):
    answers, judgments, optimized = [], [], []
    for i, (v1, v2, outcome, raw, backend, category) in enumerate(PAIRS):
        item = f"q{i}"
        missing = i == len(PAIRS) - 1
        answers.append(_answer(item, "trained", category, None if missing else "one two", "one two three four"))
        backend = backend_override if (backend_override and backend != "none") else backend
        judgments.append(_judgment(item, "trained", category, v1, v2, outcome, raw, backend))
        optimized.append(_optimized(item, "trained", category, rewritten=i % 2 == 0))
    return _write(tmp_path, "trained", answers, judgments, optimized)


def _identity(tmp_path):
    """The sanity row: no rewrite, identical answers, every pair a tie without a judge call."""
    answers, judgments, optimized = [], [], []
    for i, (*_, category) in enumerate(PAIRS):
        item = f"q{i}"
        answers.append(_answer(item, "identity", category, "same answer", "same answer"))
        judgments.append(_judgment(item, "identity", category, "C", "C", "tie", False, "none"))
        row = _optimized(item, "identity", category, rewritten=False)
        optimized.append({**row, "fallback_reason": None})
    return _write(tmp_path, "identity", answers, judgments, optimized)


def _report(tmp_path, *cells, **report):
    out = {k: tmp_path / "report" / name for k, name in OUTPUTS}
    report = {"bootstrap_samples": 500, **report}
    settings = ReportSettings.from_config(load_config(overrides={"eval": {"report": report}}))
    rows = build_report(
        [c["judgments"] for c in cells],
        [c["answers"] for c in reversed(cells)],
        [c["optimized"] for c in cells],
        settings,
        out_table=out["table"],
        out_summary=out["summary"],
        out_plot=out["plot"],
        out_compare_plot=out["compare_plot"],
        out_intrinsic=out["intrinsic"],
        out_summary_html=out["summary_html"],
    )
    return rows, out


def test_report_figures_hand_computed(tmp_path):
    rows, out = _report(tmp_path, _trained(tmp_path))
    assert read_table(out["table"], WINRATES).to_pylist() == rows
    row = rows[0]
    assert (row["optimizer"], row["testset"], row["target"], row["category"], row["protocol"]) == (
        "trained",
        "demo",
        "t1",
        None,
        "both_orders",
    )
    # valid pairs: 3 win, 1 lose, 2 tie (of 6); 3 invalid of 9
    assert (row["n"], row["n_invalid"], row["n_win"], row["n_tie"], row["n_lose"]) == (9, 3, 3, 2, 1)
    assert (row["win"], row["tie"], row["lose"], row["delta_wr"]) == pytest.approx((50.0, 100 / 3, 100 / 6, 100 / 3))
    assert row["delta_wr_low"] < row["delta_wr"] < row["delta_wr_high"]
    # consistency over pairs judged in both orders with both verdicts: 4 of 5 agree
    assert row["position_consistency"] == pytest.approx(80.0)
    # lengths in words over the answers present: original 8 x 2 words, optimized 9 x 4 words
    assert (row["mean_len_original"], row["mean_len_optimized"]) == (2.0, 4.0)
    assert (row["n_missing_answer"], row["n_judge_failed"], row["n_unparseable"]) == (1, 1, 1)
    assert (row["n_fallback"], row["fallback_reasons"]) == (4, [("context altered", 4)])
    assert (row["backend"], row["answer_backend"], row["judge_model"]) == ("standin", "standin", "judge-x")
    # 6 valid pairs is below the default lc_min_pairs (20): no length-controlled fit
    assert row["lc_delta_wr"] is None and row["lc_delta_wr_low"] is None


def test_per_category_rows(tmp_path):
    rows, out = _report(tmp_path, _trained(tmp_path))
    assert [r["category"] for r in rows] == [None, "math", "writing"]
    math_row, writing = rows[1], rows[2]
    # math: q2 win, q3 lose, q4 tie (inconsistent), q7 failed, q8 missing answer
    assert (math_row["n"], math_row["n_win"], math_row["n_tie"], math_row["n_lose"]) == (5, 1, 1, 1)
    assert (math_row["n_judge_failed"], math_row["n_missing_answer"], math_row["delta_wr"]) == (1, 1, 0.0)
    assert math_row["position_consistency"] == pytest.approx(200 / 3)
    # writing: q0, q1 win, q5 tie without a call, q6 unparseable
    assert (writing["n"], writing["n_win"], writing["n_tie"], writing["n_unparseable"]) == (4, 2, 1, 1)
    assert writing["delta_wr"] == pytest.approx(200 / 3)
    # fallbacks of the optimizer counted per category: odd items kept the original (q1, q5 | q3, q7)
    assert (writing["n_fallback"], math_row["n_fallback"]) == (2, 2)
    text = out["summary"].read_text()
    assert "## Per category" in text
    assert "| trained | demo | t1 | math | 5 | 2 | 33.3 / 33.3 / 33.3 | 0.0 [" in text


def test_optimizers_side_by_side_and_identity_is_all_ties(tmp_path):
    rows, out = _report(tmp_path, _trained(tmp_path), _identity(tmp_path))
    overall = [r for r in rows if r["category"] is None]
    assert [r["optimizer"] for r in overall] == ["trained", "identity"]
    identity = overall[1]
    assert (identity["tie"], identity["delta_wr"], identity["delta_wr_low"], identity["delta_wr_high"]) == (
        100.0,
        0.0,
        0.0,
        0.0,
    )
    assert identity["backend"] == "none" and identity["position_consistency"] is None
    text = out["summary"].read_text()
    assert "| identity | demo | t1 | 9 | 0.0 / 100.0 / 0.0 | 0.0 [0.0, 0.0] |" in text
    assert "| trained | demo | t1 | 9 | 50.0 / 33.3 / 16.7 | 33.3 [" in text
    intrinsic = json.loads(out["intrinsic"].read_text())
    assert sorted(intrinsic) == ["identity", "trained"]
    assert intrinsic["identity"]["demo"]["unchanged"] == 1.0 and intrinsic["identity"]["demo"]["fallback"] == 0.0
    for key in ("plot", "compare_plot"):
        png = out[key].read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_summary_says_stand_in_and_labels_rows(tmp_path):
    _, out = _report(tmp_path, _trained(tmp_path))
    text = out["summary"].read_text()
    assert "come from the offline stand-in, not from a model" in text
    assert "answers of target(s) t1 also come from the offline stand-in" in text
    assert "| 3 (judge call failed: 1, missing answer: 1, unparseable: 1) | 4 (context altered: 4) |" in text
    assert "| standin (stand-in, not a model) | standin (stand-in, not a model) |" in text
    assert "| trained | demo | 9 | 5 | context altered: 4 |" in text  # optimizer section
    assert "95% percentile bootstrap over pairs, 500 resamples, seed 0." in text  # the settings, stated
    assert "at least 20 valid pairs" in text
    page = out["summary_html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<tr class=standin>" in page
    assert "come from the offline stand-in, not from a model" in page and "<h2>Per category</h2>" in page


def test_first_page_names_real_and_standin_models(tmp_path):
    """The demo's models: the optimizer fine-tuned from SmolLM2 and the SmolLM2 target are real;
    the stand-in target, the critic and the judge are not. Said before the win rates."""
    settings = ReportSettings.from_config(load_config())
    roles = {(m.role, m.name): m for m in settings.models}
    assert set(roles) == {
        ("optimizer", "trained"),
        ("optimizer", "identity"),
        ("critic", "critic"),
        ("target", "standin"),
        ("target", "smollm2"),
        ("judge", "judge"),
    }
    assert roles["optimizer", "trained"].real is True
    assert "fine-tuned from .bpo-cache/models/SmolLM2-135M-Instruct" in roles["optimizer", "trained"].source
    assert roles["target", "smollm2"].real is True and roles["target", "smollm2"].model.endswith(
        "SmolLM2-135M-Instruct"
    )
    assert [roles[k].real for k in (("target", "standin"), ("critic", "critic"), ("judge", "judge"))] == [False] * 3
    assert roles["optimizer", "identity"].real is None
    assert ReportSettings.from_params(settings.canonical()) == settings  # what the rule passes round-trips
    tiny = ReportSettings.from_config(load_config(overrides={"train": {"base_model": None}}))
    assert next(m for m in tiny.models if m.name == "trained").real is False
    # paper.yaml lists only what differs: it is merged over config.yaml, as snakemake --configfile does
    paper = {
        (m.role, m.name): m
        for m in ReportSettings.from_config(load_config("config/config.yaml", "config/paper.yaml")).models
    }
    assert paper["judge", "judge"].model == "gpt-4" and paper["judge", "judge"].source.startswith("API endpoint openai")
    assert all(m.real is not False for m in paper.values())  # no stand-in anywhere in the paper recipe

    _, out = _report(tmp_path, _trained(tmp_path))
    text = out["summary"].read_text()
    models_at, winrates_at = text.index("| role | name | model | runs as | real model |"), text.index("## Win rates")
    assert models_at < winrates_at
    assert "| target | smollm2 | .bpo-cache/models/SmolLM2-135M-Instruct | local model (kind hf) | yes |" in text
    assert (
        "| judge | judge | bpo-standin-judge | offline stand-in: deterministic text, NOT a model | NO (stand-in) |"
        in text
    )
    page = out["summary_html"].read_text()
    assert page.index("<th>real model</th>") < page.index("<h2>Win rates</h2>")


def test_real_judge_backend_has_no_stand_in_banner(tmp_path):
    _, out = _report(tmp_path, _trained(tmp_path, backend_override="openai"))
    text = out["summary"].read_text()
    assert "The verdicts in this report come from the offline stand-in" not in text
    assert "Judge: judge-x (backend: openai)" in text
    assert set(pq.read_table(out["table"]).column("backend").to_pylist()) == {"openai"}


def test_intrinsic_metrics_against_references(tmp_path):
    _, out = _report(tmp_path, _trained(tmp_path))
    intrinsic = json.loads(out["intrinsic"].read_text())
    # formatting of the published file: sorted keys, two-space indent, ASCII, a final newline
    assert out["intrinsic"].read_text() == json.dumps(intrinsic, indent=2, sort_keys=True) + "\n"
    assert sorted(p.name for p in out["intrinsic"].parent.iterdir()) == sorted(name for _, name in OUTPUTS)
    m = intrinsic["trained"]["demo"]
    assert m["n"] == 9
    # rewritten (5 items): "write a short poem about the sea" vs ref "write a short poem about the calm sea"
    #   P 7/7, R 7/8 -> F1 14/15 (token-F1 and ROUGE-L alike)
    # kept (4 items): "write a poem about the sea" -> P 6/6, R 6/8 -> F1 12/14
    assert m["token_f1"] == pytest.approx((5 * 14 / 15 + 4 * 12 / 14) / 9)
    assert m["rouge_l"] == pytest.approx(m["token_f1"])
    assert m["baseline_token_f1"] == pytest.approx(12 / 14)
    assert m["unchanged"] == pytest.approx(4 / 9) and m["fallback"] == pytest.approx(4 / 9)


def test_mismatched_inputs_are_an_error(tmp_path):
    paths = _trained(tmp_path)
    rows = read_table(paths["answers"], ANSWERS).to_pylist()[:-1]
    write_table(rows, paths["answers"], ANSWERS)
    with pytest.raises(ValueError, match="cover different items"):
        _report(tmp_path, paths)
    identity = _identity(tmp_path)
    with pytest.raises(ValueError, match="no answers for optimizer/test set/target identity/demo/t1"):
        build_report(
            [identity["judgments"]],
            [],
            [],
            ReportSettings.from_config(load_config()),
            **{f"out_{k}": tmp_path / name for k, name in OUTPUTS},
        )


def test_no_judge_call_and_no_usable_rewrite_are_said_plainly(tmp_path):
    paths = _trained(tmp_path)
    j = read_table(paths["judgments"], JUDGMENTS).to_pylist()
    for r in j:  # every pair decided without a call (identical answers)
        r.update(
            verdict_optimized_first="C",
            verdict_original_first="C",
            outcome="tie",
            backend="none",
            raw_optimized_first=None,
            raw_original_first=None,
        )
    write_table(j, paths["judgments"], JUDGMENTS)
    o = read_table(paths["optimized"], OPTIMIZED).to_pylist()
    for r in o:
        r.update(optimized_instruction=r["instruction"], fallback_reason="truncated")
    write_table(o, paths["optimized"], OPTIMIZED)
    rows, out = _report(tmp_path, paths)
    text = out["summary"].read_text()
    assert "no pair needed a judge call" in text
    assert "9 pair(s) had identical answers and count as ties without a judge call" in text
    assert "The output of optimizer 'trained' was unusable for every prompt of demo" in text
    assert "verdicts in this report come from the offline stand-in" not in text  # no verdict came from it
    assert rows[0]["backend"] == "none" and rows[0]["position_consistency"] is None
    assert (rows[0]["tie"], rows[0]["delta_wr_low"], rows[0]["delta_wr_high"]) == (100.0, 0.0, 0.0)


def test_single_random_protocol(tmp_path):
    # one order judged per pair; the other order's columns are null
    judgments = [
        _judgment("q0", "trained", None, "A", None, "win", True, "standin", protocol="single_random"),
        _judgment("q1", "trained", None, None, "A", "lose", True, "standin", protocol="single_random"),
        _judgment("q2", "trained", None, None, "B", "win", True, "standin", protocol="single_random"),
        {**_judgment("q3", "trained", None, None, None, "invalid", False, "standin", protocol="single_random")},
        {
            **_judgment("q4", "trained", None, None, None, "invalid", False, "standin", protocol="single_random"),
            "raw_original_first": "I cannot decide",
        },
    ]
    for j in judgments[:3]:  # the order not judged has no reply
        j.update(
            raw_optimized_first=j["raw_optimized_first"] if j["verdict_optimized_first"] else None,
            raw_original_first=j["raw_original_first"] if j["verdict_original_first"] else None,
        )
    answers = [_answer(f"q{i}", "trained", None, "a b", "a b c") for i in range(5)]
    optimized = [_optimized(f"q{i}", "trained", None, True) for i in range(5)]
    rows, out = _report(tmp_path, _write(tmp_path, "single", answers, judgments, optimized))
    row = rows[0]
    assert (row["protocol"], row["n_win"], row["n_lose"], row["n_invalid"]) == ("single_random", 2, 1, 2)
    assert (row["n_judge_failed"], row["n_unparseable"]) == (1, 1)
    assert row["position_consistency"] is None and len(rows) == 1  # no categories: the overall row only
    assert "Protocol single_random" in out["summary"].read_text()


def test_length_controlled_column_removes_a_pure_length_preference(tmp_path):
    # 60 pairs: the optimized answer is longer in 40 of them and wins exactly those; in the other
    # 20 it is shorter and loses. Raw ΔWR 33; the length term explains it all.
    rng = np.random.default_rng(0)
    answers, judgments, optimized = [], [], []
    for i in range(60):
        longer = i % 3 != 0
        extra = int(rng.integers(5, 40))
        original = "word " * 30
        opt = original + "more " * extra if longer else "word " * (30 - extra // 2)
        win = longer if rng.random() < 0.8 else not longer  # a judge swayed by length, with noise
        outcome = "win" if win else "lose"
        answers.append(_answer(f"q{i}", "trained", None, original, opt, backend="openai"))
        judgments.append(
            _judgment(f"q{i}", "trained", None, "A" if win else "B", "B" if win else "A", outcome, True, "openai")
        )
        optimized.append(_optimized(f"q{i}", "trained", None, True))
    rows, out = _report(
        tmp_path, _write(tmp_path, "lc", answers, judgments, optimized), lc_min_pairs=20, bootstrap_samples=200
    )
    row = rows[0]
    assert row["delta_wr"] > 15 and row["lc_length_coef"] > 1
    assert row["lc_delta_wr_low"] <= 0 <= row["lc_delta_wr_high"]
    assert row["lc_delta_wr"] < row["delta_wr"]
    assert f"| {row['delta_wr']:.1f} [" in out["summary"].read_text()
