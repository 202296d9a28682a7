"""Targets answer the original questions once per test set and each optimizer's questions: an
OpenAI-compatible endpoint through the real client (loopback server) and a local HF model (tiny,
built here)."""

from __future__ import annotations

import json

import pytest
from eval_helpers import loopback_config
from loopback_server import LoopbackServer

from bpo.eval.answer import answer_optimized, answer_original, answer_rows, endpoint_answerer, questions
from bpo.schemas import ANSWERS, OPTIMIZED, ORIGINAL_ANSWERS, read_table, write_table
from bpo.settings import LLMRuntime, SettingsError, load_config
from bpo.settings.evaluate import EndpointTargetSettings, OriginalAnswerSettings, SFTRewriteSettings

ITEMS = [
    # (instruction, context, optimized instruction, fallback reason)
    ("Summarize the text.", "Cats sleep a lot.", "Summarize the text below in one sentence.", None),
    ("Tell me a joke", "", "Tell me a short, family-friendly joke.", None),
    ("What is 2+2?", "", "What is 2+2?", "context altered"),  # fallback: same question twice
]
TARGET = {"kind": "endpoint", "endpoint": "loop", "model": "target-model", "max_tokens": 64}


def _originals(out, settings, runtime):
    """Rule answer_original's call: the one answering flow with an endpoint answerer."""
    return answer_original(out, settings.testset, settings.target.name, endpoint_answerer(settings.target, runtime))


def _answer(optimized, originals, out, target, runtime):
    """Rule answer's call."""
    return answer_optimized(optimized, originals, out, target.name, endpoint_answerer(target, runtime))


def _testset(tmp_path) -> dict:
    """The ITEMS as a custom-format test set file, with a category column."""
    path = tmp_path / "demo.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": str(i), "instruction": ins, "context": ctx, "category": f"cat{i % 2}"}) + "\n"
            for i, (ins, ctx, _, _) in enumerate(ITEMS)
        )
    )
    return {
        "demo": {
            "format": "custom",
            "path": str(path),
            "columns": {"id": "id", "instruction": "instruction", "context": "context", "category": "category"},
        }
    }


def _target(srv, monkeypatch, tmp_path):
    """Target ``loop`` on the loopback server, its runtime and the settings of its original
    answers, built from a config like the rules do."""
    config = loopback_config(
        srv, monkeypatch, tmp_path, eval={"targets": {"loop": TARGET}, "testsets": _testset(tmp_path)}
    )
    return (
        EndpointTargetSettings.from_config(config, "loop"),
        LLMRuntime.from_config(config, "loop"),
        OriginalAnswerSettings.from_config(config, "demo", "loop"),
    )


def _optimized(path, optimizer="opt"):
    rows = [
        {
            "item_id": str(i),
            "testset": "demo",
            "optimizer": optimizer,
            "category": f"cat{i % 2}",
            "instruction": ins,
            "context": ctx,
            "optimized_instruction": opt,
            "fallback_reason": fb,
            "reference_optimized": None,
        }
        for i, (ins, ctx, opt, fb) in enumerate(ITEMS)
    ]
    write_table(rows, path, OPTIMIZED)
    return path


def test_endpoint_target_answers_originals_once_and_each_optimizer_its_questions(tmp_path, monkeypatch):
    opt = _optimized(tmp_path / "optimized.parquet")
    originals, out = tmp_path / "original_answers.parquet", tmp_path / "answers.parquet"
    with LoopbackServer(responder="echo") as srv:
        target, runtime, original_settings = _target(srv, monkeypatch, tmp_path)
        _originals(originals, original_settings, runtime)
        assert srv.total == 3
        stats = _answer(opt, originals, out, target, runtime)
        # the fallback item's question is unchanged: it reuses the original answer, no call
        assert srv.total == 5 and stats["answered"] == 2
        bodies = [json.loads(r.body) for r in srv.requests]
        assert all(b["temperature"] == 0.0 and b["model"] == "target-model" and b["max_tokens"] == 64 for b in bodies)
        sent = {b["messages"][-1]["content"] for b in bodies}
        assert "Summarize the text.\nCats sleep a lot." in sent  # context attached verbatim
        assert "Summarize the text below in one sentence.\nCats sleep a lot." in sent
        _answer(opt, originals, tmp_path / "again.parquet", target, runtime)
        assert srv.total == 5  # all from the cache
        # a second optimizer reuses the original answers: only its own changed questions are asked
        other = tmp_path / "other.parquet"
        write_table(
            [
                {**r, "optimizer": "other", "optimized_instruction": r["instruction"] + " Be brief."}
                for r in read_table(opt, OPTIMIZED).to_pylist()
            ],
            other,
            OPTIMIZED,
        )
        _answer(other, originals, tmp_path / "other_answers.parquet", target, runtime)
        assert srv.total == 8
    orig_rows = read_table(originals, ORIGINAL_ANSWERS).to_pylist()
    assert [(r["item_id"], r["category"]) for r in orig_rows] == [("0", "cat0"), ("1", "cat1"), ("2", "cat0")]
    rows = read_table(out, ANSWERS).to_pylist()
    assert [r["item_id"] for r in rows] == ["0", "1", "2"]
    for r, o in zip(rows, orig_rows):
        assert r["answer_original"] == o["answer"] == f"loopback reply to: {r['question_original']}"
        assert r["answer_optimized"] == f"loopback reply to: {r['question_optimized']}"
        assert r["status_original"] == r["status_optimized"] == "ok" and r["target"] == "loop"
        assert r["backend"] == "openai" and r["optimizer"] == "opt" and r["category"] == o["category"]
    assert rows[2]["answer_original"] == rows[2]["answer_optimized"]


def test_original_answers_must_match_the_optimized_items(tmp_path, monkeypatch):
    with LoopbackServer(responder="echo") as srv:
        target, runtime, original_settings = _target(srv, monkeypatch, tmp_path)
        originals = tmp_path / "original_answers.parquet"
        _originals(originals, original_settings, runtime)
        rows = read_table(_optimized(tmp_path / "o.parquet"), OPTIMIZED).to_pylist()
        write_table([{**rows[0], "item_id": "99"}], tmp_path / "odd.parquet", OPTIMIZED)
        with pytest.raises(ValueError, match="no original answer of item 99"):
            _answer(tmp_path / "odd.parquet", originals, tmp_path / "a.parquet", target, runtime)
        write_table([{**rows[0], "instruction": "Something else"}], tmp_path / "odd.parquet", OPTIMIZED)
        with pytest.raises(ValueError, match="item 0 was asked differently"):
            _answer(tmp_path / "odd.parquet", originals, tmp_path / "a.parquet", target, runtime)


def test_failed_calls_are_recorded_not_dropped(tmp_path, monkeypatch):
    opt = _optimized(tmp_path / "optimized.parquet")
    with LoopbackServer(responder="echo") as srv:
        srv.fail("400", times=10, match="joke")
        target, runtime, original_settings = _target(srv, monkeypatch, tmp_path)
        _originals(tmp_path / "o.parquet", original_settings, runtime)
        _answer(opt, tmp_path / "o.parquet", tmp_path / "a.parquet", target, runtime)
    rows = {r["item_id"]: r for r in read_table(tmp_path / "a.parquet", ANSWERS).to_pylist()}
    assert rows["1"]["status_original"] == rows["1"]["status_optimized"] == "error"
    assert rows["1"]["answer_original"] is None
    assert rows["0"]["status_original"] == "ok"


def test_target_settings_hold_the_endpoint_and_leave_runtime_out(tmp_path):
    """What changes answers (the endpoint's backend and URL included) is the rule's one param;
    limits, prices and the cache path are runtime settings, read when the script runs."""
    config = load_config(
        overrides={
            "llm": {
                "cache": str(tmp_path / "c.sqlite"),
                "prices": {"target-model": {"input": 1.0, "output": 2.0}},
                "endpoints": {
                    "loop": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "limits": {"max_concurrency": 2}}
                },
            },
            "eval": {"targets": {"loop": TARGET, "local": {"kind": "hf", "model": "m"}, "bare": {"model": "m"}}},
        }
    )
    target = EndpointTargetSettings.from_config(config, "loop")
    params = target.canonical()
    assert params == {
        "name": "loop",
        "model": "target-model",
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 64,
        "seed": None,
        "system_prompt": None,
        "endpoint": {
            "name": "loop",
            "backend": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key_env": "OPENAI_API_KEY",
            "default_headers": {},
        },
    }
    assert EndpointTargetSettings.from_params(params) == target
    runtime = LLMRuntime.from_config(config, target.call.endpoint.name)
    assert (runtime.cache_path, runtime.limits.max_concurrency) == (str(tmp_path / "c.sqlite"), 2)
    assert runtime.prices == {"target-model": {"input": 1.0, "output": 2.0}}
    with pytest.raises(SettingsError, match="eval.targets.local: kind 'hf' is not an LLM endpoint target"):
        EndpointTargetSettings.from_config(config, "local")
    with pytest.raises(SettingsError, match="eval.targets.bare.endpoint: kind endpoint needs a name"):
        EndpointTargetSettings.from_config(config, "bare")
    with pytest.raises(SettingsError, match="no target 'nope'"):
        EndpointTargetSettings.from_config(config, "nope")
    config["eval"]["sft_rewrite"]["target"] = "local"
    with pytest.raises(SettingsError, match="eval.sft_rewrite.target .'local'.: .*kind 'hf'"):
        SFTRewriteSettings.from_config(config)


def test_answer_rows_pair_items_with_their_answers(tmp_path):
    items = read_table(_optimized(tmp_path / "o.parquet"), OPTIMIZED).to_pylist()
    original, optimized = questions(items)
    assert original[0] == "Summarize the text.\nCats sleep a lot." and optimized[1] == ITEMS[1][2]
    rows = answer_rows(items, "t", [("a", "ok", "hf")] * 3, [(None, "error", "openai")] * 3)
    assert rows[0] == {
        "item_id": "0",
        "testset": "demo",
        "optimizer": "opt",
        "target": "t",
        "category": "cat0",
        "question_original": original[0],
        "question_optimized": optimized[0],
        "answer_original": "a",
        "answer_optimized": None,
        "status_original": "ok",
        "status_optimized": "error",
        "backend": "hf+openai",
    }
    with pytest.raises(ValueError, match="3 items but 2 original"):
        answer_rows(items, "t", [("a", "ok", "hf")] * 2, [("a", "ok", "hf")] * 3)


def _hf_settings(model, batch_size):
    from bpo.settings.generation import GenerationSettings
    from bpo.settings.hf_target import HFTargetSettings

    gen = GenerationSettings(
        engine="auto", temperature=0.0, top_p=1.0, max_new_tokens=12, batch_size=batch_size, seed=0, greedy=True
    )
    return HFTargetSettings(name="tiny", model=str(model), dtype="auto", system_prompt=None, generation=gen)


def test_local_hf_target_batched_greedy(tiny_target):
    from bpo.eval.hf_target import hf_answers

    qs = ["What is the capital of France?", "Name a colour.", "What is the capital of France?", "Hi"]
    out, engine = hf_answers(qs, _hf_settings(tiny_target, 2))
    assert len(out) == 4 and out[0] == out[2]  # same question, same greedy answer
    assert all(status in ("ok", "truncated") and isinstance(text, str) for text, status in out)
    # a random model rarely stops on its own: hitting max_tokens is reported as truncated
    assert any(status == "truncated" for _, status in out)
    assert engine.engine == "lean"
    # batching does not change greedy answers
    one_by_one, _ = hf_answers(qs, _hf_settings(tiny_target, 1))
    assert [t for t, _ in one_by_one] == [t for t, _ in out]


def test_optional_request_fields_null_are_not_sent(tmp_path, monkeypatch):
    """top_p, max_tokens and seed null leave the field out of the body (some APIs reject them);
    set, they are sent and the request key is the one a request with those fields always had."""
    from bpo.llm import ChatRequest, call_request

    with LoopbackServer(responder="echo") as srv:
        config = loopback_config(
            srv,
            monkeypatch,
            tmp_path,
            eval={
                "targets": {"loop": {**TARGET, "top_p": None, "max_tokens": None, "seed": None}},
                "testsets": _testset(tmp_path),
            },
        )
        settings = OriginalAnswerSettings.from_config(config, "demo", "loop")
        _originals(tmp_path / "o.parquet", settings, LLMRuntime.from_config(config, "loop"))
        bodies = [json.loads(r.body) for r in srv.requests]
    assert len(bodies) == 3
    for body in bodies:
        assert "top_p" not in body and "max_tokens" not in body and "seed" not in body
        assert body["temperature"] == 0.0
    call = settings.target.call.replace(model="m", top_p=0.9, max_tokens=64, seed=3)
    sent = call_request(call, "q")
    assert sent.body == {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}],
        "temperature": 0.0,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 3,
    }
    assert (
        sent.key
        == ChatRequest(
            model="m",
            messages=[{"role": "user", "content": "q"}],
            temperature=0.0,
            top_p=0.9,
            max_tokens=64,
            n=1,
            seed=3,
        ).key
    )
