"""The report on hand-made judgments: figures, invalid breakdown, stand-in labelling, outputs."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from bpo.eval.report import build_report
from bpo.schemas import ANSWERS, JUDGMENTS, OPTIMIZED, WINRATES, read_table, write_table
from bpo.settings import load_config
from bpo.settings.evaluate import ReportSettings

# (verdict optimized first, verdict original first, outcome, raw replies present, backend)
PAIRS = [
    ("A", "B", "win", True, "standin"),
    ("A", "B", "win", True, "standin"),
    ("A", "B", "win", True, "standin"),
    ("B", "A", "lose", True, "standin"),
    ("A", "A", "tie", True, "standin"),  # inconsistent -> tie
    ("C", "C", "tie", False, "none"),  # identical answers, no call
    (None, "B", "invalid", True, "standin"),  # unparseable reply
    (None, None, "invalid", False, "standin"),  # judge calls failed
    (None, None, "invalid", False, "none"),  # an answer is missing
]


def _write_inputs(tmp_path, backend_override=None):
    answers, judgments, optimized = [], [], []
    for i, (v1, v2, outcome, raw, backend) in enumerate(PAIRS):
        item = f"q{i}"
        missing = i == len(PAIRS) - 1
        answers.append({
            "item_id": item, "testset": "demo", "optimizer": "opt", "target": "t1", "category": None,
            "question_original": f"question {i}", "question_optimized": f"better question {i}",
            "answer_original": None if missing else "one two", "answer_optimized": "one two three four",
            "status_original": "error" if missing else "ok", "status_optimized": "ok", "backend": "standin",
        })
        judgments.append({
            "item_id": item, "testset": "demo", "optimizer": "opt", "target": "t1", "category": None,
            "judge_model": "judge-x", "protocol": "both_orders",
            "rule_optimized_first": None if v1 is None else "[[X]]", "rule_original_first": None if v2 is None else "[[X]]",
            "verdict_optimized_first": v1, "verdict_original_first": v2, "outcome": outcome,
            "raw_optimized_first": ("reply" if raw else None), "raw_original_first": ("[[B]]" if raw else None),
            "backend": backend_override if (backend_override and backend != "none") else backend,
        })
        optimized.append({
            "item_id": item, "testset": "demo", "optimizer": "opt", "category": None,
            "instruction": "write a poem about the sea", "context": "",
            "optimized_instruction": "write a short poem about the sea" if i % 2 == 0 else "write a poem about the sea",
            "fallback_reason": None if i % 2 == 0 else "context altered",
            "reference_optimized": "write a short poem about the calm sea",
        })
    paths = {k: tmp_path / f"{k}.parquet" for k in ("answers", "judgments", "optimized")}
    write_table(answers, paths["answers"], ANSWERS)
    write_table(judgments, paths["judgments"], JUDGMENTS)
    write_table(optimized, paths["optimized"], OPTIMIZED)
    return paths


def _report(tmp_path, paths):
    out = {k: tmp_path / "report" / name for k, name in
           [("table", "winrates.parquet"), ("summary", "summary.md"), ("plot", "winrates.png"), ("intrinsic", "intrinsic.json"),
            ("compare_plot", "compare.png")]}
    settings = ReportSettings.from_config(load_config(overrides={"eval": {"report": {"bootstrap_samples": 500}}}))
    rows = build_report([paths["judgments"]], [paths["answers"]], [paths["optimized"]], settings,
                        out_table=out["table"], out_summary=out["summary"], out_plot=out["plot"],
                        out_intrinsic=out["intrinsic"], out_compare_plot=out["compare_plot"])
    return rows, out


def test_report_figures_hand_computed(tmp_path):
    rows, out = _report(tmp_path, _write_inputs(tmp_path))
    row = read_table(out["table"], WINRATES).to_pylist()[0]
    assert row == rows[0]
    # valid pairs: 3 win, 1 lose, 2 tie (of 6); 3 invalid of 9
    assert (row["n"], row["n_invalid"]) == (9, 3)
    assert (row["win"], row["tie"], row["lose"], row["delta_wr"]) == pytest.approx((50.0, 100 / 3, 100 / 6, 100 / 3))
    assert row["delta_wr_low"] < row["delta_wr"] < row["delta_wr_high"]
    # consistency over pairs judged in both orders with both verdicts: 4 of 5 agree
    assert row["position_consistency"] == pytest.approx(80.0)
    # lengths in words over the answers present: original 8 x 2 words, optimized 9 x 4 words
    assert (row["mean_len_original"], row["mean_len_optimized"]) == (2.0, 4.0)
    assert row["backend"] == "standin" and row["judge_model"] == "judge-x"


def test_summary_says_stand_in_and_breaks_down_invalid(tmp_path):
    _, out = _report(tmp_path, _write_inputs(tmp_path))
    text = out["summary"].read_text()
    assert "come from the offline stand-in, not from a model" in text
    assert "target answers also come from the offline stand-in" in text
    assert "| demo | t1 | 1 | 1 | 1 |" in text  # missing answer, judge call failed, unparseable
    assert "| demo/opt | 9 | 5 | context altered: 4 |" in text  # optimizer fallbacks
    assert "| demo | t1 | judge-x | 9 | 3 | 50.0 | 33.3 | 16.7 | 33.3 |" in text
    assert "95% percentile bootstrap of ΔWR, 500 resamples, seed 0." in text  # the settings, stated
    png = out["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_real_judge_backend_has_no_stand_in_banner(tmp_path):
    _, out = _report(tmp_path, _write_inputs(tmp_path, backend_override="openai"))
    text = out["summary"].read_text()
    assert "offline stand-in, not from a model.** The stand-in" not in text
    assert "Judge: judge-x (backend: openai)" in text
    assert pq.read_table(out["table"]).column("backend").to_pylist() == ["openai"]


def test_intrinsic_metrics_against_references(tmp_path):
    _, out = _report(tmp_path, _write_inputs(tmp_path))
    intrinsic = json.loads(out["intrinsic"].read_text())
    # formatting of the published file: sorted keys, two-space indent, ASCII, a final newline
    assert out["intrinsic"].read_text() == json.dumps(intrinsic, indent=2, sort_keys=True) + "\n"
    assert sorted(p.name for p in out["intrinsic"].parent.iterdir()) == [  # no temp file left behind
        "compare.png", "intrinsic.json", "summary.md", "winrates.parquet", "winrates.png"]
    m = intrinsic["demo/opt"]
    assert m["n"] == 9
    # rewritten (5 items): "write a short poem about the sea" vs ref "write a short poem about the calm sea"
    #   P 7/7, R 7/8 -> F1 14/15 (token-F1 and ROUGE-L alike)
    # kept (4 items): "write a poem about the sea" -> P 6/6, R 6/8 -> F1 12/14
    assert m["token_f1"] == pytest.approx((5 * 14 / 15 + 4 * 12 / 14) / 9)
    assert m["rouge_l"] == pytest.approx(m["token_f1"])
    assert m["baseline_token_f1"] == pytest.approx(12 / 14)
    assert m["unchanged"] == pytest.approx(4 / 9) and m["fallback"] == pytest.approx(4 / 9)


def test_mismatched_inputs_are_an_error(tmp_path):
    paths = _write_inputs(tmp_path)
    rows = read_table(paths["answers"], ANSWERS).to_pylist()[:-1]
    write_table(rows, paths["answers"], ANSWERS)
    with pytest.raises(ValueError, match="cover different items"):
        _report(tmp_path, paths)


def test_no_judge_call_and_no_usable_rewrite_are_said_plainly(tmp_path):
    paths = _write_inputs(tmp_path)
    j = read_table(paths["judgments"], JUDGMENTS).to_pylist()
    for r in j:  # every pair decided without a call (identical answers)
        r.update(verdict_optimized_first="C", verdict_original_first="C", outcome="tie", backend="none",
                 raw_optimized_first=None, raw_original_first=None)
    write_table(j, paths["judgments"], JUDGMENTS)
    o = read_table(paths["optimized"], OPTIMIZED).to_pylist()
    for r in o:
        r.update(optimized_instruction=r["instruction"], fallback_reason="truncated")
    write_table(o, paths["optimized"], OPTIMIZED)
    rows, out = _report(tmp_path, paths)
    text = out["summary"].read_text()
    assert "no pair needed a judge call" in text
    assert "9 pair(s) had identical answers and count as ties without a judge call" in text
    assert "unusable for every prompt" in text
    assert "verdicts in this report come from the offline stand-in" not in text  # no verdict came from it
    assert rows[0]["backend"] == "none" and rows[0]["position_consistency"] is None
    assert (rows[0]["tie"], rows[0]["delta_wr_low"], rows[0]["delta_wr_high"]) == (100.0, 0.0, 0.0)
