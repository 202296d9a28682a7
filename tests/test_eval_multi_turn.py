"""Multi-turn evaluation (MT-bench layout) through the real `openai` client against the loopback
server: the original and the optimized conversations (turn 2 rewritten and answered after the
OPTIMIZED turn 1 and its answer), per-turn judging with both conversations in view, identity ties
on every turn, report rows per turn and category, and the browser's side-by-side conversations."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import pytest
from eval_helpers import loopback_config
from loopback_server import LoopbackServer

from bpo.eval.conversation import (
    SKIPPED,
    chat_answerer,
    load_conversations,
    optimized_conversations,
    turn_rewriter,
    write_optimized,
    write_original,
)
from bpo.eval.judge import judge_turns
from bpo.eval.testsets import TestSetError, load_testset
from bpo.schemas import CONVERSATIONS, ORIGINAL_CONVERSATIONS, TURN_JUDGMENTS, TURN_WINRATES, read_table
from bpo.settings import LLMRuntime
from bpo.settings.evaluate import EndpointTargetSettings, JudgeSettings, ReportSettings
from bpo.settings.optimize import optimizer_settings
from bpo.settings.plan import Plan
from bpo.settings.testsets import TestsetSettings as TsSettings

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources/demo/testsets/mt_bench.jsonl"
SHARED = Path("/work/shared/data/testsets/mt_bench_question.jsonl")
ITEMS = [
    {"question_id": 7, "category": "writing", "turns": ["Write a haiku about rain.", "Now make it about snow."]},
    {"question_id": 8, "category": "math", "turns": ["What is 12 times 7?", "Divide your result by 4."]},
]


def _file(tmp_path, items=ITEMS) -> Path:
    path = tmp_path / "mt.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return path


def _config(srv, monkeypatch, tmp_path, path, **judge):
    ev = {
        "testsets": {"mt": {"format": "mt_bench", "path": str(path)}},
        "optimizers": {
            "rw": {"kind": "llm_rewrite", "endpoint": "loop", "model": "rewriter", "max_tokens": 64},
            "identity": {"kind": "identity"},
        },
        "targets": {"tg": {"kind": "endpoint", "endpoint": "loop", "model": "target-model", "max_tokens": 64}},
        "judge": {"endpoint": "loop", "model": "judge-model", "max_tokens": 256, **judge},
    }
    return loopback_config(srv, monkeypatch, tmp_path, eval=ev, max_concurrency=8)


def _bodies(srv, model):
    return [b for b in (json.loads(r.body) for r in srv.requests) if b["model"] == model]


def _play(config, tmp_path, optimizer):
    """converse_original then converse, as the rules call them; returns the two artifacts."""
    ts = TsSettings.from_config(config, "mt")
    target = {"kind": "endpoint", **EndpointTargetSettings.from_config(config, "tg").canonical()}
    answer = chat_answerer(config, target)
    original = tmp_path / "original_conversations.parquet"
    write_original(original, ts, "tg", answer)
    params = optimizer_settings(config, "mt", optimizer).canonical()
    out = tmp_path / f"{optimizer}_conversations.parquet"
    write_optimized(out, original, ts, optimizer, "tg", turn_rewriter(config, params), answer)
    return original, out


def test_mt_bench_layout_reads_turns_and_counts_bad_rows(tmp_path):
    if SHARED.exists():
        full = load_testset("mt_bench", SHARED, "mt_bench")
        assert len(full.items) == 80 and all(len(it.turns) == 2 for it in full.items)
        assert {it.category for it in full.items} >= {"writing", "math", "coding", "reasoning"}
    demo = load_testset("mt_bench", DEMO, "mt_bench")
    assert all(len(it.turns) == 2 and it.instruction == it.turns[0] for it in demo.items)
    bad = _file(
        tmp_path,
        ITEMS
        + [
            {"question_id": 9, "category": "x", "turns": ["fine", "  "]},
            {"question_id": 10, "category": "x", "turns": []},
        ],
    )
    ts = load_testset("mt", bad, "mt_bench")
    assert [it.item_id for it in ts.items] == ["7", "8"]
    assert ts.dropped["empty or non-text turn"] == 2 and ts.dropped.locations["empty or non-text turn"]
    # a flat layout read as conversations is an error naming the file
    flat = tmp_path / "flat.jsonl"
    flat.write_text(json.dumps({"question_id": 1, "category": "c", "turns": "one string"}) + "\n")
    settings = TsSettings(name="flat", path=str(flat), format="mt_bench", columns={}, sample=0, seed=1, test_trees=None)
    with pytest.raises(TestSetError, match="no list of turns"):
        load_conversations(settings)


def test_plan_splits_multi_turn_testsets(tmp_path, monkeypatch):
    with LoopbackServer() as srv:
        config = _config(srv, monkeypatch, tmp_path, _file(tmp_path))
    plan = Plan.from_config(config)
    assert "mt" in plan.multi_turn_testsets and "mt" not in plan.testsets
    assert ("mt", "identity", "tg") in plan.turn_triples() and not any(t[0] == "mt" for t in plan.triples())


def test_turn_two_is_rewritten_and_answered_after_the_optimized_turn_one(tmp_path, monkeypatch):
    with LoopbackServer() as srv:
        config = _config(srv, monkeypatch, tmp_path, _file(tmp_path))
        original, out = _play(config, tmp_path, "rw")
        rewrites, answers = _bodies(srv, "rewriter"), _bodies(srv, "target-model")
    conv = {(r["item_id"], r["turn"]): r for r in read_table(out, CONVERSATIONS).to_pylist()}
    orig = {(r["item_id"], r["turn"]): r for r in read_table(original, ORIGINAL_CONVERSATIONS).to_pylist()}
    assert sorted(conv) == [("7", 1), ("7", 2), ("8", 1), ("8", 2)] and sorted(orig) == sorted(conv)
    for item in ("7", "8"):
        t1, t2 = conv[(item, 1)], conv[(item, 2)]
        assert t1["question_optimized"] != t1["question_original"] and t1["fallback_reason"] is None
        # the rewriter of turn 2 saw the optimized turn 1 and the target's answer to it, then the message
        rw = next(b for b in rewrites if t2["question_original"] in b["messages"][-1]["content"])
        assert rw["messages"][:-1] == [
            {"role": "user", "content": t1["question_optimized"]},
            {"role": "assistant", "content": t1["answer_optimized"]},
        ]
        # the target answered turn 2 after the same optimized history
        ans = next(b for b in answers if b["messages"][-1]["content"] == t2["question_optimized"])
        assert ans["messages"][:-1] == rw["messages"][:-1]
        # the original conversation: turn 2 asked after the original turn 1 and its answer
        o = next(b for b in answers if b["messages"][-1]["content"] == orig[(item, 2)]["question"])
        assert o["messages"][:-1] == [
            {"role": "user", "content": orig[(item, 1)]["question"]},
            {"role": "assistant", "content": orig[(item, 1)]["answer"]},
        ]
        assert t2["answer_original"] == orig[(item, 2)]["answer"]
    # no call paid twice: 4 original + 4 optimized answers, 4 rewrites
    assert len(answers) == 8 and len(rewrites) == 4


def test_identity_ties_on_every_turn_without_a_judge_call(tmp_path, monkeypatch):
    with LoopbackServer() as srv:
        config = _config(srv, monkeypatch, tmp_path, _file(tmp_path))
        _, out = _play(config, tmp_path, "identity")
        n_answers = len(_bodies(srv, "target-model"))
        judge = JudgeSettings.from_config(config, multi_turn=True)
        stats = judge_turns(out, tmp_path / "j.parquet", judge, LLMRuntime.from_config(config, "loop"))
        assert not _bodies(srv, "judge-model")
    assert n_answers == 4  # only the original conversations were asked
    rows = read_table(out, CONVERSATIONS).to_pylist()
    assert all(
        r["answer_optimized"] == r["answer_original"] and r["question_optimized"] == r["question_original"]
        for r in rows
    )
    judged = read_table(tmp_path / "j.parquet", TURN_JUDGMENTS).to_pylist()
    assert sorted((r["turn"], r["outcome"]) for r in judged) == [(1, "tie"), (1, "tie"), (2, "tie"), (2, "tie")]
    assert stats["calls"] == 0


_CONV = re.compile(r"=== Conversation with Assistant ([AB]) ===\n(.*?)\n=== End of conversation \1 ===", re.S)


def test_judge_sees_each_whole_conversation_per_turn_in_both_orders(tmp_path, monkeypatch):
    with LoopbackServer() as srv:
        config = _config(srv, monkeypatch, tmp_path, _file(tmp_path))
        _, out = _play(config, tmp_path, "rw")
        judge = JudgeSettings.from_config(config, multi_turn=True)
        assert judge.template.endswith("judge_multi_turn.txt")
        judge_turns(out, tmp_path / "j.parquet", judge, LLMRuntime.from_config(config, "loop"))
        judge_turns(out, tmp_path / "j2.parquet", judge, LLMRuntime.from_config(config, "loop"))  # cached
        sent = [b["messages"][-1]["content"] for b in _bodies(srv, "judge-model")]
    conv = {(r["item_id"], r["turn"]): r for r in read_table(out, CONVERSATIONS).to_pylist()}
    judged = read_table(tmp_path / "j.parquet", TURN_JUDGMENTS).to_pylist()
    assert len(judged) == 4 and all(r["outcome"] in ("win", "tie", "lose") for r in judged)
    assert len(sent) == 8  # 4 turns x 2 orders, the second run answered from the cache
    t1, t2 = conv[("7", 1)], conv[("7", 2)]
    turn2 = [s for s in sent if f"=== The user's final message ===\n{t2['question_original']}\n" in s]
    assert len(turn2) == 2
    shown = [dict((side, text) for side, text in _CONV.findall(s)) for s in turn2]
    optimized_side = (
        f"User: {t1['question_original']}\n\nAssistant: {t1['answer_optimized']}\n\n"
        f"User: {t2['question_original']}\n\nAssistant: {t2['answer_optimized']}"
    )
    original_side = (
        f"User: {t1['question_original']}\n\nAssistant: {t1['answer_original']}\n\n"
        f"User: {t2['question_original']}\n\nAssistant: {t2['answer_original']}"
    )
    # both orders; the judge reads the user's ORIGINAL messages on both sides
    assert {(s["A"], s["B"]) for s in shown} == {(optimized_side, original_side), (original_side, optimized_side)}
    assert all(t1["question_optimized"] not in s for s in turn2)


def test_a_missing_answer_skips_the_later_turns(tmp_path, monkeypatch):
    with LoopbackServer() as srv:
        config = _config(srv, monkeypatch, tmp_path, _file(tmp_path))
        srv.fail("400", times=5, match="What is 12 times 7?")
        original, _ = _play(config, tmp_path, "identity")
    rows = {(r["item_id"], r["turn"]): r for r in read_table(original, ORIGINAL_CONVERSATIONS).to_pylist()}
    assert rows[("8", 1)]["answer"] is None and rows[("8", 2)]["status"] == SKIPPED
    assert rows[("7", 2)]["status"] == "ok"


def test_optimized_conversations_check_the_originals_match():
    from bpo.eval.testsets import TestItem

    items = [TestItem("1", "a", "", None, None, ("a", "b"))]
    original = [
        {"item_id": "1", "turn": 1, "question": "a", "target": "t", "answer": "x", "status": "ok", "backend": "openai"}
    ]
    with pytest.raises(ValueError, match="no original answer of item 1 turn 2"):
        optimized_conversations(
            items,
            original,
            testset="mt",
            optimizer="o",
            target="t",
            rewrite=lambda i, h: ([], None),
            answer=lambda c: ([], None),
        )


def _report(config, tmp_path, judgments, conversations):
    from bpo.eval.report import build_report

    out = {
        k: tmp_path / f"report_{k}"
        for k in (
            "table.parquet",
            "summary.md",
            "plot.png",
            "compare.png",
            "intrinsic.json",
            "turns.parquet",
            "summary.html",
        )
    }
    build_report(
        [],
        [],
        [],
        ReportSettings.from_config(config),
        out_table=out["table.parquet"],
        out_summary=out["summary.md"],
        out_plot=out["plot.png"],
        out_compare_plot=out["compare.png"],
        out_intrinsic=out["intrinsic.json"],
        out_summary_html=out["summary.html"],
        turn_judgments=judgments,
        conversations=conversations,
        out_turn_table=out["turns.parquet"],
    )
    return out


def _multi_turn_run(tmp_path, monkeypatch):
    """Both optimizers' conversations and per-turn judgments, the report and the browser page."""
    from bpo.browse import build_browse

    with LoopbackServer() as srv:
        config = _config(srv, monkeypatch, tmp_path, _file(tmp_path))
        runtime = LLMRuntime.from_config(config, "loop")
        judge = JudgeSettings.from_config(config, multi_turn=True)
        convs, judgments = [], []
        for opt in ("rw", "identity"):
            _, c = _play(config, tmp_path, opt)
            judge_turns(c, tmp_path / f"{opt}_j.parquet", judge, runtime)
            convs.append(c)
            judgments.append(tmp_path / f"{opt}_j.parquet")
    out = _report(config, tmp_path, judgments, convs)
    html_path = tmp_path / "browse.html"
    build_browse(
        [],
        [],
        [],
        [out["table.parquet"], out["turns.parquet"]],
        html_path,
        conversations=convs,
        turn_judgments=judgments,
    )
    return out, convs, html_path


def test_report_rows_per_turn_and_category_and_browser_side_by_side(tmp_path, monkeypatch):
    out, convs, html_path = _multi_turn_run(tmp_path, monkeypatch)
    rows = read_table(out["turns.parquet"], TURN_WINRATES).to_pylist()
    overall = {(r["optimizer"], r["turn"]): r for r in rows if r["category"] is None}
    assert sorted(overall) == [("identity", 1), ("identity", 2), ("rw", 1), ("rw", 2)]
    for turn in (1, 2):
        ident = overall[("identity", turn)]
        assert (ident["n"], ident["tie"], ident["delta_wr"]) == (2, 100.0, 0.0)
    cats = {(r["optimizer"], r["turn"], r["category"]) for r in rows if r["category"] is not None}
    assert ("rw", 2, "math") in cats and ("rw", 1, "writing") in cats
    summary = out["summary.md"].read_text()
    assert "## Multi-turn, per turn" in summary and "| identity | mt | tg | 2 | all |" in summary
    page = html_path.read_text()
    blob = re.search(r'<script id="bpo-data" type="application/octet-stream">(.*?)</script>', page, re.S).group(1)
    data = json.loads(gzip.decompress(base64.b64decode(blob)))
    f = {name: i for i, name in enumerate(data["fields"])}
    s = data["strings"]
    turn2 = [r for r in data["rows"] if s[r[f["optimizer"]]] == "rw" and s[r[f["turn"]]] == "2"]
    assert len(turn2) == 2
    conv = {(r["item_id"], r["turn"]): r for r in read_table(convs[0], CONVERSATIONS).to_pylist()}
    for r in turn2:
        t1 = conv[(s[r[f["item_id"]]], 1)]
        assert (
            s[r[f["history_optimized"]]] == f"User: {t1['question_optimized']}\n\nAssistant: {t1['answer_optimized']}"
        )
        assert s[r[f["history_original"]]] == f"User: {t1['question_original']}\n\nAssistant: {t1['answer_original']}"
    assert 'id="f-turn"' in page and "optimized conversation so far" in page
    assert any(w.get("turn") == 2 for w in data["winrates"])


def test_paper_keeps_single_turn_and_the_multi_turn_example_adds_mt_bench():
    from bpo.settings import load_config

    paper = load_config(REPO / "config/config.yaml", REPO / "config/paper.yaml")
    multi = load_config(
        REPO / "config/config.yaml", REPO / "config/paper.yaml", REPO / "config/examples/multi-turn.yaml"
    )
    assert Plan.from_config(paper).multi_turn_testsets == ()
    assert Plan.from_config(paper).testsets == Plan.from_config(multi).testsets  # the four single-turn sets stay
    assert Plan.from_config(multi).multi_turn_testsets == ("mt_bench",)
    url = multi["eval"]["testsets"]["mt_bench"]["url"]
    assert url.startswith("https://raw.githubusercontent.com/lm-sys/FastChat/") and url.endswith("question.jsonl")
    assert all(multi["sources"][s]["multi_turn"] for s in ("hh_rlhf", "oasst1", "chatbot_arena"))
    assert not any(paper["sources"][s]["multi_turn"] for s in ("hh_rlhf", "oasst1", "chatbot_arena"))


def test_a_local_optimizer_rewrites_turn_two_seeing_its_own_turn_one(tmp_path, monkeypatch):
    """kind model (a local folder, as the trained one): the optimizer's input of turn 2 is built
    from the optimized turn 1 and the target's answer (observed at the encoder, which still runs)."""
    from eval_helpers import save_tiny_model

    import bpo.prompt_format as prompt_format

    model = save_tiny_model(tmp_path / "tiny", [(t, t) for it in ITEMS for t in it["turns"]])
    seen = []
    real = prompt_format.encode_conversation

    def spy(user_prompt, fmt, tokenizer, history=None, *args, **kwargs):
        seen.append((user_prompt, [dict(m) for m in history or []]))
        return real(user_prompt, fmt, tokenizer, history, *args, **kwargs)

    monkeypatch.setattr(prompt_format, "encode_conversation", spy)
    with LoopbackServer() as srv:
        config = _config(srv, monkeypatch, tmp_path, _file(tmp_path))
        config["eval"]["optimizers"]["local"] = {
            **config["eval"]["optimizers"]["rw"],
            "kind": "model",
            "model": model,
            "prompt_format": "plain",
            "max_tokens": 8,
            "greedy": True,
            "engine": "hf-generate",
        }
        config = __import__("bpo.settings", fromlist=["validate_config"]).validate_config(config)
        _, out = _play(config, tmp_path, "local")
    conv = {(r["item_id"], r["turn"]): r for r in read_table(out, CONVERSATIONS).to_pylist()}
    for item in ("7", "8"):
        t1, t2 = conv[(item, 1)], conv[(item, 2)]
        history = next(h for p, h in seen if p == t2["question_original"])
        assert history == [
            {"role": "user", "content": t1["question_optimized"]},
            {"role": "assistant", "content": t1["answer_optimized"]},
        ]
        assert next(h for p, h in seen if p == t1["question_original"]) == []


def test_browser_page_shows_both_conversations_per_turn(tmp_path, monkeypatch):
    from headless import chromium, missing_reason, wait_state
    from selenium.webdriver.support.ui import Select

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    out, convs, html_path = _multi_turn_run(tmp_path, monkeypatch)
    conv = {(r["item_id"], r["turn"]): r for r in read_table(convs[0], CONVERSATIONS).to_pylist()}
    report = next(
        r
        for r in read_table(out["turns.parquet"], TURN_WINRATES).to_pylist()
        if (r["optimizer"], r["turn"], r["category"]) == ("rw", 2, None)
    )
    with chromium() as driver:
        driver.get(html_path.as_uri())
        wait_state(driver, "ready")
        assert driver.get_log("browser") == []
        for name, value in (("testset", "mt"), ("optimizer", "rw"), ("target", "tg"), ("turn", "2")):
            Select(driver.find_element("id", f"f-{name}")).select_by_value(value)
        summary = driver.execute_script("return Object.assign({}, document.getElementById('summary').dataset)")
        assert int(summary["n"]) == report["n"] == 2
        assert float(summary["deltaWr"]) == pytest.approx(report["delta_wr"])
        assert "report: ΔWR" in driver.find_element("id", "summary").text  # the per-turn report row
        articles = driver.find_elements("css selector", "article.row")
        assert len(articles) == 2
        for article in articles:
            t1 = conv[(article.get_attribute("data-item"), 1)]
            original, optimized = article.find_elements("css selector", "pre.conv")
            assert t1["answer_original"].split()[0] in original.text and t1["question_original"] in original.text
            assert t1["question_optimized"][:40] in optimized.text and "turn 2" in article.text
