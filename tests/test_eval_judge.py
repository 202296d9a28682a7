"""Judging through the real LLM client against the loopback server: both orders, the tie rule,
invalid pairs counted, the judge template, and no call paid twice."""

from __future__ import annotations

import json
import re

import pytest
from eval_helpers import loopback_config
from loopback_server import LoopbackServer

from bpo.eval.judge import judge_answers
from bpo.schemas import ANSWERS, JUDGMENTS, read_table, write_table
from bpo.settings import LLMRuntime, SettingsError, load_config
from bpo.settings.evaluate import JudgeSettings
from bpo.templates import TemplateError, builtin_dir, fill_judge, load_judge

TEMPLATE = builtin_dir() / "judge.txt"
JUDGE = {"endpoint": "loop", "model": "judge-model", "max_tokens": 256, "template": str(TEMPLATE)}


def _judge(srv, monkeypatch, tmp_path, **judge):
    """The judge on the loopback server and its runtime, built from a config like the rule does."""
    config = loopback_config(srv, monkeypatch, tmp_path, eval={"judge": {**JUDGE, **judge}}, max_concurrency=8)
    return JudgeSettings.from_config(config), LLMRuntime.from_config(config, "loop")


_A = re.compile(r"=== Answer from Assistant A ===\n(.*?)\n=== End of answer A ===", re.S)
_B = re.compile(r"=== Answer from Assistant B ===\n(.*?)\n=== End of answer B ===", re.S)


def _answers(path, rows):
    full = []
    for i, (orig, opt) in enumerate(rows):
        full.append(
            {
                "item_id": f"i{i}",
                "testset": "demo",
                "optimizer": "opt",
                "target": "t",
                "category": None,
                "question_original": f"Question {i}?",
                "question_optimized": f"Better question {i}?",
                "answer_original": orig,
                "answer_optimized": opt,
                "status_original": "ok" if orig else "error",
                "status_optimized": "ok" if opt else "error",
                "backend": "openai",
            }
        )
    write_table(full, path, ANSWERS)
    return path


def _sent(srv):
    """(answer shown as A, answer shown as B, question) of every request the server saw."""
    out = []
    for req in srv.requests:
        body = json.loads(req.body)
        text = body["messages"][-1]["content"]
        out.append((_A.search(text).group(1), _B.search(text).group(1), body))
    return out


def test_template_has_placeholders_and_tokens(tmp_path):
    template = load_judge(TEMPLATE)
    text = template.user
    assert template.system is None
    assert not any(line.startswith("#") for line in text.splitlines())
    filled = fill_judge(text, question="Q {answer_b}", answer_a="ans {question}", answer_b="B")
    assert "Q {answer_b}" in filled and "ans {question}" in filled  # single pass: data never substituted
    bad = tmp_path / "bad.txt"
    bad.write_text("Compare {question} {answer_a} {answer_b} and answer A or B.")
    with pytest.raises(TemplateError, match="verdict tokens"):
        load_judge(bad)
    bad.write_text("{question} {answer_a} [[A]] [[B]] [[C]]")
    with pytest.raises(TemplateError, match=r"\{answer_b\} must appear exactly once"):
        load_judge(bad)


def test_judge_sees_both_orders_and_caches(tmp_path, monkeypatch):
    answers = _answers(
        tmp_path / "answers.parquet",
        [
            ("short original answer", "longer optimized answer with detail"),
            ("another original", "another optimized"),
            ("same text", "same text"),  # identical -> tie without a call
            (None, "optimized only"),  # missing answer -> invalid, no call
        ],
    )
    out = tmp_path / "judgments.parquet"
    with LoopbackServer() as srv:  # stand-in responder: a verdict for judge prompts
        judge, runtime = _judge(srv, monkeypatch, tmp_path)
        stats = judge_answers(answers, out, judge, runtime)
        sent = _sent(srv)
        assert len(sent) == 4  # two pairs x two orders
        shown = {(a, b) for a, b, _ in sent}
        for orig, opt in [
            ("short original answer", "longer optimized answer with detail"),
            ("another original", "another optimized"),
        ]:
            assert (opt, orig) in shown and (orig, opt) in shown  # both orders
        for _, _, body in sent:
            assert body["model"] == "judge-model" and body["temperature"] == 0.0
            assert (
                "Question" in body["messages"][-1]["content"]
                and "Better question" not in body["messages"][-1]["content"]
            )
        # second run: every call from the cache
        judge_answers(answers, tmp_path / "again.parquet", judge, runtime)
        assert srv.total == 4
    rows = read_table(out, JUDGMENTS).to_pylist()
    assert read_table(tmp_path / "again.parquet", JUDGMENTS).to_pylist() == rows
    by_id = {r["item_id"]: r for r in rows}
    assert by_id["i2"]["outcome"] == "tie" and by_id["i2"]["backend"] == "none"
    assert by_id["i2"]["rule_optimized_first"] == by_id["i2"]["rule_original_first"] == "identical_answers"
    assert by_id["i3"]["rule_optimized_first"] is None  # not judged
    assert by_id["i3"]["outcome"] == "invalid" and by_id["i3"]["verdict_optimized_first"] is None
    for r in (by_id["i0"], by_id["i1"]):
        assert r["verdict_optimized_first"] in "ABC" and r["verdict_original_first"] in "ABC"
        assert r["raw_optimized_first"] and r["raw_original_first"]
        assert r["backend"] == "openai" and r["protocol"] == "both_orders" and r["optimizer"] == "opt"
        assert (
            r["rule_optimized_first"] == r["rule_original_first"] == "sole_token"
        )  # the stand-in names one verdict token
    assert stats["calls"] == 4


def _scripted(rule):
    """A loopback responder that judges by the answers' content, like a model would."""

    def respond(body):
        text = body["messages"][-1]["content"]
        return rule(_A.search(text).group(1), _B.search(text).group(1)), "stop"

    return respond


@pytest.mark.parametrize(
    "rule, outcomes",
    [
        # a judge that prefers the answer containing GOOD, whatever its position: real wins/losses
        (
            lambda a, b: "Reasoning...\n[[A]]" if "GOOD" in a else ("[[B]]" if "GOOD" in b else "[[C]]"),
            {"i0": "win", "i1": "lose", "i2": "tie"},
        ),
        # a judge that always picks the first answer: pure position bias -> every pair a tie
        (lambda a, b: "Final verdict: [[A]]", {"i0": "tie", "i1": "tie", "i2": "tie"}),
        # unparseable replies are invalid, not dropped and not ties
        (
            lambda a, b: "I cannot decide." if "GOOD" in a + b else "[[C]]",
            {"i0": "invalid", "i1": "invalid", "i2": "tie"},
        ),
    ],
)
def test_two_order_outcomes_from_scripted_judges(tmp_path, monkeypatch, rule, outcomes):
    answers = _answers(
        tmp_path / "answers.parquet",
        [
            ("plain", "GOOD detailed"),  # optimized better
            ("GOOD original", "weak"),  # original better
            ("fine one", "fine two"),  # equal
        ],
    )
    with LoopbackServer(responder=_scripted(rule)) as srv:
        stats = judge_answers(answers, tmp_path / "j.parquet", *_judge(srv, monkeypatch, tmp_path))
    rows = read_table(tmp_path / "j.parquet", JUDGMENTS).to_pylist()
    assert {r["item_id"]: r["outcome"] for r in rows} == outcomes
    if "invalid" in outcomes.values():
        assert stats["unparseable"] == {"no verdict": 4}


def test_judge_settings_track_the_template_by_content(tmp_path):
    """The template is in the settings by path and content hash: an edit changes the rule's param
    (a rerun), a touch does not; a file edited after planning is refused, not silently used."""
    template = tmp_path / "judge.txt"
    template.write_text(TEMPLATE.read_text())
    config = load_config(overrides={"eval": {"judge": {"template": str(template)}}})
    judge = JudgeSettings.from_config(config)
    assert judge.call.endpoint.name == "standin" and judge.canonical()["endpoint"]["backend"] == "standin"
    assert JudgeSettings.from_params(judge.canonical()) == judge
    template.touch()
    assert JudgeSettings.from_config(config) == judge
    template.write_text(TEMPLATE.read_text() + "\nBe brief.\n")
    assert JudgeSettings.from_config(config).template_sha256 != judge.template_sha256
    with pytest.raises(TemplateError, match="changed after the workflow was planned"):
        load_judge(judge.template, judge.template_sha256)
    config["eval"]["judge"]["template"] = str(tmp_path / "missing.txt")
    with pytest.raises(SettingsError, match="eval.judge.template: .*missing.txt: no such file"):
        JudgeSettings.from_config(config)


_GOOD_JUDGE = _scripted(lambda a, b: "Reasoning...\n[[A]]" if "GOOD" in a else ("[[B]]" if "GOOD" in b else "[[C]]"))


def test_single_random_judges_one_seeded_order_per_item(tmp_path, monkeypatch):
    rows = [("plain", f"GOOD {i}") for i in range(12)]
    answers = _answers(tmp_path / "answers.parquet", rows)

    def run(seed, name):
        with LoopbackServer(responder=_GOOD_JUDGE) as srv:
            judge, runtime = _judge(srv, monkeypatch, tmp_path / name, protocol="single_random", order_seed=seed)
            stats = judge_answers(answers, tmp_path / f"{name}.parquet", judge, runtime)
            assert srv.total == len(rows) == stats["calls"]  # exactly one call per item
        return read_table(tmp_path / f"{name}.parquet", JUDGMENTS).to_pylist()

    first, again, other = run(7, "a"), run(7, "b"), run(8, "c")
    for r in first:
        judged = [side for side in ("optimized_first", "original_first") if r[f"verdict_{side}"] is not None]
        assert len(judged) == 1  # the other order's verdict, raw reply and rule are null
        (side,) = judged
        unjudged = "original_first" if side == "optimized_first" else "optimized_first"
        assert r[f"raw_{unjudged}"] is None and r[f"rule_{unjudged}"] is None and r[f"raw_{side}"]
        assert r["protocol"] == "single_random" and r["outcome"] == "win"  # the judge finds GOOD wherever it is

    def order(rs):
        return [r["verdict_optimized_first"] is not None for r in rs]

    assert order(first) == order(again)  # same seed, same orders
    assert len(set(order(first))) == 2  # both orders occur
    assert order(first) != order(other)  # another seed draws again


def test_template_with_a_system_message(tmp_path, monkeypatch):
    """FastChat-style: the instructions (and the verdict tokens) in a system message, the data in
    the user message."""
    template = tmp_path / "pairwise.txt"
    template.write_text(
        "# a pairwise prompt with a system part\n"
        "=== system ===\n"
        "Compare two answers. End with [[A]], [[B]] or [[C]] for a tie.\n"
        "=== user ===\n"
        "Question: {question}\n"
        "=== Answer from Assistant A ===\n{answer_a}\n=== End of answer A ===\n"
        "=== Answer from Assistant B ===\n{answer_b}\n=== End of answer B ===\n"
    )
    loaded = load_judge(template)
    assert loaded.system == "Compare two answers. End with [[A]], [[B]] or [[C]] for a tie."
    assert loaded.user.startswith("Question: {question}")
    answers = _answers(tmp_path / "answers.parquet", [("plain", "GOOD one")])
    with LoopbackServer(responder=_GOOD_JUDGE) as srv:
        judge, runtime = _judge(srv, monkeypatch, tmp_path, template=str(template))
        judge_answers(answers, tmp_path / "j.parquet", judge, runtime)
        bodies = [json.loads(r.body) for r in srv.requests]
    assert len(bodies) == 2
    for body in bodies:
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert body["messages"][0]["content"] == loaded.system
        assert body["messages"][1]["content"].startswith("Question: Question 0?")
    assert read_table(tmp_path / "j.parquet", JUDGMENTS).to_pylist()[0]["outcome"] == "win"
    # a misplaced marker is an error naming the file
    template.write_text("=== user ===\n{question} {answer_a} {answer_b}\n=== system ===\n[[A]] [[B]] [[C]]\n")
    with pytest.raises(TemplateError, match="starts with a '=== system ===' line"):
        load_judge(template)


@pytest.mark.parametrize("lenient, outcome, rule", [(False, "invalid", "none"), (True, "tie", "lenient:prose")])
def test_prose_verdicts_only_when_lenient(tmp_path, monkeypatch, lenient, outcome, rule):
    answers = _answers(tmp_path / "answers.parquet", [("one answer", "another answer")])
    with LoopbackServer(responder=_scripted(lambda a, b: "Assistant A is better.")) as srv:
        judge, runtime = _judge(srv, monkeypatch, tmp_path, lenient_verdicts=lenient)
        judge_answers(answers, tmp_path / "j.parquet", judge, runtime)
    (row,) = read_table(tmp_path / "j.parquet", JUDGMENTS).to_pylist()
    assert row["outcome"] == outcome  # lenient: A in both orders = position bias = tie
    assert row["rule_optimized_first"] == row["rule_original_first"] == rule


def test_identical_answers_judged_both_orders_are_a_tie(tmp_path, monkeypatch):
    """Without the identical-answers rule the judge sees the same text twice: a judge that picks
    a side by position gives A in both orders, which both_orders counts as a tie."""
    answers = _answers(tmp_path / "answers.parquet", [("same text", "same text")] * 3)
    with LoopbackServer(responder=_scripted(lambda a, b: "[[A]]")) as srv:
        judge, runtime = _judge(srv, monkeypatch, tmp_path, identical_as_tie=False)
        stats = judge_answers(answers, tmp_path / "j.parquet", judge, runtime)
    assert stats["outcomes"] == {"tie": 3} and stats["calls"] == 6
