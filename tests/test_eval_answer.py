"""Targets answer original and optimized questions: an OpenAI-compatible endpoint through the
real client (loopback server) and a local HF model (tiny, built here)."""

from __future__ import annotations

import json

import pytest

from bpo.eval.answer import answer_questions, answer_testset, target_runtime_kwargs
from bpo.schemas import ANSWERS, OPTIMIZED, read_table, write_table
from eval_helpers import loopback_endpoint, save_tiny_model
from loopback_server import LoopbackServer

ITEMS = [
    # (instruction, context, optimized instruction, fallback reason)
    ("Summarize the text.", "Cats sleep a lot.", "Summarize the text below in one sentence.", None),
    ("Tell me a joke", "", "Tell me a short, family-friendly joke.", None),
    ("What is 2+2?", "", "What is 2+2?", "context altered"),  # fallback: same question twice
]
TARGET = {"kind": "endpoint", "endpoint": "loop", "model": "target-model", "temperature": 0.0, "top_p": 1.0,
          "max_tokens": 64, "seed": None, "system_prompt": None}


def _optimized(path):
    rows = [
        {"item_id": str(i), "testset": "demo", "instruction": ins, "context": ctx, "optimized_instruction": opt,
         "fallback_reason": fb, "reference_optimized": None}
        for i, (ins, ctx, opt, fb) in enumerate(ITEMS)
    ]
    write_table(rows, path, OPTIMIZED)
    return path


def test_endpoint_target_answers_both_questions_once(tmp_path, monkeypatch):
    opt = _optimized(tmp_path / "optimized.parquet")
    out = tmp_path / "answers.parquet"
    cache = str(tmp_path / "cache.sqlite")
    with LoopbackServer(responder="echo") as srv:
        endpoint = loopback_endpoint(srv, monkeypatch)
        answer_testset(opt, out, target_name="loop", target=TARGET, endpoint=endpoint, cache_path=cache)
        # 3 originals + 3 optimized, but the fallback item's two questions are one call
        assert srv.total == 5
        bodies = [json.loads(r.body) for r in srv.requests]
        assert all(b["temperature"] == 0.0 and b["model"] == "target-model" and b["max_tokens"] == 64 for b in bodies)
        sent = {b["messages"][-1]["content"] for b in bodies}
        assert "Summarize the text.\nCats sleep a lot." in sent  # context attached verbatim
        assert "Summarize the text below in one sentence.\nCats sleep a lot." in sent
        answer_testset(opt, tmp_path / "again.parquet", target_name="loop", target=TARGET, endpoint=endpoint, cache_path=cache)
        assert srv.total == 5  # all from the cache
    rows = read_table(out, ANSWERS).to_pylist()
    assert [r["item_id"] for r in rows] == ["0", "1", "2"]
    for r in rows:
        assert r["answer_original"] == f"loopback reply to: {r['question_original']}"
        assert r["answer_optimized"] == f"loopback reply to: {r['question_optimized']}"
        assert r["status_original"] == r["status_optimized"] == "ok" and r["target"] == "loop"
        assert r["backend"] == "openai"
    assert rows[2]["answer_original"] == rows[2]["answer_optimized"]


def test_failed_calls_are_recorded_not_dropped(tmp_path, monkeypatch):
    opt = _optimized(tmp_path / "optimized.parquet")
    with LoopbackServer(responder="echo") as srv:
        srv.fail("400", times=10, match="joke")
        answer_testset(opt, tmp_path / "a.parquet", target_name="loop", target=TARGET,
                       endpoint=loopback_endpoint(srv, monkeypatch), cache_path=str(tmp_path / "c.sqlite"))
    rows = {r["item_id"]: r for r in read_table(tmp_path / "a.parquet", ANSWERS).to_pylist()}
    assert rows["1"]["status_original"] == rows["1"]["status_optimized"] == "error"
    assert rows["1"]["answer_original"] is None
    assert rows["0"]["status_original"] == "ok"


def test_target_runtime_kwargs_come_from_the_llm_config():
    llm = {"cache": "cache/llm.sqlite", "prices": {"target-model": {"input": 1.0, "output": 2.0}},
           "endpoints": {"loop": {"backend": "openai", "limits": {"max_concurrency": 2}}}}
    assert target_runtime_kwargs(TARGET, llm) == {"endpoint": llm["endpoints"]["loop"],
                                                  "cache_path": "cache/llm.sqlite", "prices": llm["prices"]}
    assert target_runtime_kwargs({"kind": "hf", "model": "m"}, {"cache": "c", "endpoints": {}})["endpoint"] is None


def test_unknown_target_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown kind 'vllm'"):
        answer_questions(["q"], {"kind": "vllm", "model": "m"}, name="x")


@pytest.fixture(scope="module")
def tiny_target(tmp_path_factory):
    """A randomly initialised tiny Llama saved like a hub model (no download)."""
    pairs = [("What is the capital of France?", "Paris is the capital of France."),
             ("Name a colour.", "Blue is a colour.")] * 4
    return save_tiny_model(tmp_path_factory.mktemp("tiny_target"), pairs)


def test_local_hf_target_batched_greedy(tiny_target):
    target = {"kind": "hf", "model": tiny_target, "temperature": 0.0, "max_tokens": 12, "batch_size": 2, "seed": 0}
    questions = ["What is the capital of France?", "Name a colour.", "What is the capital of France?", "Hi"]
    out = answer_questions(questions, target, name="tiny")
    assert len(out) == 4 and out[0] == out[2]  # same question, same greedy answer
    assert all(status in ("ok", "truncated") and backend == "hf" for _, status, backend in out)
    assert all(isinstance(text, str) for text, _, _ in out)
    # a random model rarely stops on its own: hitting max_tokens is reported as truncated
    assert any(status == "truncated" for _, status, _ in out)
    # batching does not change greedy answers
    one_by_one = answer_questions(questions, {**target, "batch_size": 1}, name="tiny")
    assert [t for t, _, _ in one_by_one] == [t for t, _, _ in out]


def test_sft_rewrite_writes_alpaca_reproduce(tmp_path, monkeypatch):
    """BPO for SFT data: the target answers the optimized instructions; failed answers are
    counted and left out; the original instruction and input are kept."""
    from bpo.eval.sft_rewrite import answer_sft

    source = tmp_path / "alpaca.json"
    records = [{"instruction": "Name a fruit.", "input": "", "output": "Apple."},
               {"instruction": "Translate.", "input": "Bonjour", "output": "Hello"},
               {"instruction": "Fail me.", "input": "", "output": "x"}]
    source.write_text(json.dumps(records))
    opt = tmp_path / "optimized.parquet"
    write_table([
        {"item_id": str(i), "testset": "sft_rewrite", "instruction": r["instruction"], "context": r["input"],
         "optimized_instruction": r["instruction"] + " Answer precisely.", "fallback_reason": None,
         "reference_optimized": None}
        for i, r in enumerate(records)
    ], opt, OPTIMIZED)
    with LoopbackServer(responder="echo") as srv:
        srv.fail("400", times=5, match="Fail me")
        stats = answer_sft(opt, source, out_reproduce=tmp_path / "reproduce.json", out_sft=tmp_path / "train.json",
                           target_name="loop", target=TARGET, endpoint=loopback_endpoint(srv, monkeypatch),
                           cache_path=str(tmp_path / "c.sqlite"))
    reproduce = json.loads((tmp_path / "reproduce.json").read_text())
    sft = json.loads((tmp_path / "train.json").read_text())
    assert stats["written"] == 2 and stats["dropped"] == {"answer error": 1}
    assert reproduce[1] == {"instruction": "Translate.", "input": "Bonjour", "output": "Hello",
                            "optimized_prompt": "Translate. Answer precisely.",
                            "res": "loopback reply to: Translate. Answer precisely.\nBonjour"}
    assert sft[1] == {"instruction": "Translate.", "input": "Bonjour", "output": reproduce[1]["res"]}
