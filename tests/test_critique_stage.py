"""Critique stage end to end: template -> real openai client -> loopback HTTP server -> CRITIQUES.

The loopback server is the network boundary only; what runs is the stage's own code and the
project's LLM client over real sockets.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import copy_workflow, edit_config, snakemake
from loopback_server import LoopbackServer

from bpo.critique import CritiqueError, build_requests, estimate_critiques, run_critique
from bpo.llm import BudgetExceeded
from bpo.schemas import CRITIQUES, PAIRS, read_table, write_table
from bpo.settings import (
    CritiqueEstimateSettings,
    CritiqueSettings,
    EndpointSettings,
    LLMCall,
    LLMRuntime,
    critique_runtime,
    endpoint_config,
    load_config,
)
from bpo.templates import TemplateError, builtin_dir, load_critique, template_sha256

TEMPLATE = builtin_dir() / "critique.txt"
KEY_ENV = "BPO_TEST_CRITIQUE_KEY"
SECRET = "sk-test-critique-0123456789abcdef"


def _pair(pid, source, instruction, context, good, bad):
    return {
        "pair_id": pid,
        "source": source,
        "source_id": pid,
        "instruction": instruction,
        "context": context,
        "good_response": good,
        "bad_response": bad,
        "good_model": None,
        "bad_model": None,
        "language": "en",
        "num_turns": 1,
    }


# Written for these tests.
PAIRS_ROWS = [
    _pair(
        "a1",
        "alpaca_gpt4",
        "Give three tips for staying focused while studying.",
        "",
        "1. Put your phone in another room. 2. Work in 25-minute blocks. "
        "3. Keep a list of distractions to handle later.",
        "Just focus harder.",
    ),
    _pair(
        "a2",
        "alpaca_gpt4",
        "Classify the following animal as a mammal, bird or reptile.",
        "Penguin",
        "A penguin is a bird: it has feathers, lays eggs and has a beak, even though it cannot fly.",
        "Mammal.",
    ),
    _pair(
        "a3",
        "alpaca_gpt4",
        "Rewrite the sentence with {braces} kept.",
        "Use {context} literally: {instruction}",
        "Sure: the sentence with {braces} kept.",
        "No.",
    ),
    _pair(
        "h1",
        "hh_rlhf",
        "How do I get rid of a wasp nest near my door?",
        "",
        "Wait until evening when wasps are less active, wear protective clothing, and consider calling a pest "
        "control service, especially if anyone in the house is allergic.",
        "Just hit it with a stick.",
    ),
    _pair(
        "h2",
        "hh_rlhf",
        "What is the boiling point of water at the top of Mount Everest?",
        "",
        "About 70 degrees Celsius, because air pressure at 8,849 m is roughly a third of that at sea level.",
        "100 degrees Celsius, like everywhere.",
    ),
]
ALPACA = [p for p in PAIRS_ROWS if p["source"] == "alpaca_gpt4"]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "all.parquet"
    write_table(PAIRS_ROWS, path, PAIRS)
    return path


@pytest.fixture
def server():
    with LoopbackServer(latency_s=0.0) as srv:
        yield srv


@pytest.fixture
def endpoint(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return {
        "backend": "openai",
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "limits": {
            "max_concurrency": 4,
            "max_retries": 2,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "timeout_s": 10,
        },
    }


def _settings(endpoint, **kw) -> CritiqueSettings:
    ep = EndpointSettings(
        name="loopback",
        backend=endpoint["backend"],
        base_url=endpoint["base_url"],
        api_key_env=endpoint["api_key_env"],
        default_headers={},
        local=None,
    )
    values = {
        "model": "gpt-3.5-turbo",
        "temperature": 0.9,
        "top_p": 1.0,
        "max_tokens": 512,
        "seed": None,
        "system_prompt": None,
        **kw,
    }
    return CritiqueSettings(
        call=LLMCall(endpoint=ep, **values), template=str(TEMPLATE), template_sha256=template_sha256(TEMPLATE)
    )


def _call(**kw) -> LLMCall:
    """The loopback-free sampling of the request-building tests (gpt-3.5-turbo, 0.9, 1.0, 512)."""
    ep = EndpointSettings(name="x", backend="standin", base_url=None, api_key_env=None, default_headers={}, local=None)
    return LLMCall(
        **{
            "endpoint": ep,
            "model": "gpt-3.5-turbo",
            "temperature": 0.9,
            "top_p": 1.0,
            "max_tokens": 512,
            "seed": None,
            "system_prompt": None,
            **kw,
        }
    )


def _runtime(endpoint, cache, prices=None, budget_usd=None, max_error_fraction=0.0) -> LLMRuntime:
    config = endpoint_config("loopback", endpoint, cache=str(cache), prices=prices or {})
    return LLMRuntime.from_config(config, "loopback", budget_usd=budget_usd, max_error_fraction=max_error_fraction)


def _run(pairs_file, out, endpoint, cache, source="alpaca_gpt4", prices=None, budget_usd=None, max_error_fraction=0.0):
    return run_critique(
        _settings(endpoint),
        _runtime(endpoint, cache, prices, budget_usd, max_error_fraction),
        pairs_path=pairs_file,
        source=source,
        output=out,
    )


# ---------------------------------------------------------------- template


def test_template_renders_the_paper_structure():
    t = load_critique(TEMPLATE)
    with_ctx = t.render("Classify the animal.", "Penguin", "Mammal.", "A penguin is a bird.")
    no_ctx = t.render("Name a prime number.", "", "Nine.", "Seven is prime.")
    # instruction, context, bad response, good response, in this order
    pos = [with_ctx.index(s) for s in ("Classify the animal.", "Penguin", "Mammal.", "A penguin is a bird.")]
    assert pos == sorted(pos)
    assert "Context" in with_ctx and "Context" not in no_ctx
    assert "Penguin" not in no_ctx and "{" not in no_ctx and "{" not in with_ctx
    for text in (with_ctx, no_ctx):
        low = text.lower()
        assert low.index("correctness") < low.index("helpfulness") < low.index("harmlessness")
        assert "prompt engineer" in low and "[protected]" in low and "harmless" in low
        assert "Detailed Comparison Result:" in text and "Optimized Instruction:" in text and "[END]" in text
        assert not text.startswith("#") and "\n#" not in text  # comment lines stripped
    assert "do not change, repeat or summarise the context" in with_ctx.lower()
    # numbered rules stay consecutive in both variants
    assert "\n6. " in no_ctx and "\n7. " not in no_ctx and "\n7. " in with_ctx


def test_template_substitutes_once_and_literally():
    t = load_critique(TEMPLATE)
    text = t.render("Say {context} and {good_response}", "ctx \\1 {instruction}", "bad {bad_response}", "good")
    assert "Say {context} and {good_response}" in text
    assert "ctx \\1 {instruction}" in text and "bad {bad_response}" in text


@pytest.mark.parametrize(
    "body, message",
    [
        ("{instruction}\n{context}\n{good_response}\nOptimized Instruction:", "missing placeholder"),
        ("{instruction}\n{bad_response}\n{good_response}\nOptimized Instruction:", "no {context}"),
        ("{instruction}\n{context}\n{bad_response}\n{good_res}\n{good_response}\nOptimized Instruction:", "{good_res}"),
        (
            "{instruction}\n{if_context}\n{context}\n{bad_response}\n{good_response}\nOptimized Instruction:",
            "never closed",
        ),
        ("{instruction}\n{context}\n{bad_response}\n{good_response}\nGive the rewrite.", "Optimized Instruction:"),
    ],
)
def test_bad_templates_are_clear_errors(tmp_path, body, message):
    path = tmp_path / "t.txt"
    path.write_text(body)
    with pytest.raises(TemplateError) as err:
        load_critique(path)
    assert message in str(err.value) and str(path) in str(err.value)
    with pytest.raises(TemplateError, match="critique.template"):
        template_sha256(tmp_path / "missing.txt")


def test_template_hash_follows_content(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEMPLATE.read_text())
    before = template_sha256(path)
    path.write_text(TEMPLATE.read_text() + "\nBe concise.\n")
    assert template_sha256(path) != before


def test_requests_are_single_user_messages_with_sampling():
    reqs = build_requests(ALPACA, load_critique(TEMPLATE), _call(seed=7))
    assert len(reqs) == 3 and len({r.key for r in reqs}) == 3
    body = reqs[0].body
    assert body["model"] == "gpt-3.5-turbo" and body["temperature"] == 0.9 and body["seed"] == 7
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_settings_from_config_leave_the_runtime_out():
    """The rule's one param holds what changes answers; limits, cache, prices, budget and error
    tolerance come from the config at run time (critique_runtime)."""
    config = load_config(
        overrides={
            "llm": {
                "cache": "cache/llm.sqlite",
                "prices": {"gpt-3.5-turbo": {"input": 0.5, "output": 1.5}},
                "endpoints": {
                    "api": {
                        "backend": "openai",
                        "base_url": "http://127.0.0.1:1/v1",
                        "api_key_env": "K",
                        "limits": {"max_concurrency": 3},
                    }
                },
            },
            "critique": {
                "endpoint": "api",
                "model": "gpt-3.5-turbo",
                "template": str(TEMPLATE),
                "budget_usd": 2.0,
                "max_error_fraction": 0.2,
            },
        }
    )
    settings = CritiqueSettings.from_config(config)
    params = settings.canonical()
    assert params["endpoint"] == {
        "name": "api",
        "backend": "openai",
        "base_url": "http://127.0.0.1:1/v1",
        "api_key_env": "K",
        "default_headers": {},
    }
    assert params["template_sha256"] == template_sha256(TEMPLATE) and params["model"] == "gpt-3.5-turbo"
    assert not {"limits", "budget_usd", "max_error_fraction", "cache", "prices"} & set(params)
    assert CritiqueSettings.from_params(params) == settings
    runtime = critique_runtime(config)
    assert (
        runtime.limits.max_concurrency == 3
        and runtime.limits.max_retries == 6
        and runtime.cache_path == "cache/llm.sqlite"
    )
    assert runtime.budget_usd == 2.0 and runtime.max_error_fraction == 0.2
    assert runtime.prices == config["llm"]["prices"]
    estimate = CritiqueEstimateSettings.from_config(config)
    assert estimate.critique == settings and estimate.sources == ("hh_rlhf", "oasst1", "chatbot_arena", "alpaca_gpt4")


def test_missing_template_is_a_config_error(tmp_path):
    from bpo.settings import SettingsError

    config = load_config(overrides={"critique": {"template": str(tmp_path / "nope.txt")}})
    with pytest.raises(SettingsError, match="critique.template"):
        CritiqueSettings.from_config(config)


# ---------------------------------------------------------------- against the loopback server


def test_critique_end_to_end_and_cached_rerun(pairs_file, endpoint, server, tmp_path):
    cache = tmp_path / "cache.sqlite"
    out = tmp_path / "critiques" / "alpaca_gpt4.parquet"
    summary = _run(pairs_file, out, endpoint, cache)
    assert server.total == 3 and summary["status"] == {"ok": 3}

    # What went over the wire: the template's structure, one user message, the config's sampling.
    template = load_critique(TEMPLATE)
    bodies = [json.loads(r.body) for r in server.requests]
    sent = {b["messages"][0]["content"] for b in bodies}
    expected = {template.render(p["instruction"], p["context"], p["bad_response"], p["good_response"]) for p in ALPACA}
    assert sent == expected
    for b in bodies:
        assert b["model"] == "gpt-3.5-turbo" and b["temperature"] == 0.9 and b["max_tokens"] == 512
        assert len(b["messages"]) == 1 and b["messages"][0]["role"] == "user"
    assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in server.requests)

    rows = read_table(out, CRITIQUES).to_pylist()
    assert [r["pair_id"] for r in rows] == ["a1", "a2", "a3"]
    reqs = build_requests(ALPACA, template, _call())
    for row, req, pair in zip(rows, reqs, ALPACA):
        assert row["request_key"] == req.key
        assert row["status"] == "ok" and row["backend"] == "openai" and row["model"] == "gpt-3.5-turbo"
        assert row["raw_reply"].startswith("Detailed Comparison Result:")
        assert row["optimized_instruction"] and row["parse_error"] is None and row["comparison"]
        # the stand-in rewrite keeps the original instruction, so the parse found the right part
        assert pair["instruction"].rstrip(".") in row["optimized_instruction"]
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert SECRET.encode() not in out.read_bytes()

    # Rerun after deleting the output: every answer from the cache, zero calls.
    out.unlink()
    _run(pairs_file, out, endpoint, cache)
    assert server.total == 3
    assert read_table(out, CRITIQUES).to_pylist() == rows
    # Another source sends only its own pairs.
    _run(pairs_file, tmp_path / "critiques" / "hh_rlhf.parquet", endpoint, cache, source="hh_rlhf")
    assert server.total == 5
    # The cache holds answers, never the key.
    with sqlite3.connect(cache) as db:
        dump = "\n".join(db.iterdump())
    assert SECRET not in dump


def test_statuses_are_recorded(pairs_file, endpoint, server, tmp_path):
    server.fail("length", match="Give three tips for staying focused")
    server.fail("refusal", match="Classify the following animal")
    server.fail("400", match="Rewrite the sentence with {braces}")
    out = tmp_path / "alpaca_gpt4.parquet"
    # One failed call in three is more than allowed: nothing written, a clear error.
    with pytest.raises(CritiqueError, match="1 of 3 calls failed"):
        _run(pairs_file, out, endpoint, tmp_path / "c.sqlite", max_error_fraction=0.0)
    assert not out.exists()
    server.fail("400", match="Rewrite the sentence with {braces}")
    summary = _run(pairs_file, out, endpoint, tmp_path / "c.sqlite", max_error_fraction=0.5)
    assert summary["status"] == {"truncated": 1, "refused": 1, "error": 1}
    rows = {r["pair_id"]: r for r in read_table(out, CRITIQUES).to_pylist()}
    assert rows["a1"]["status"] == "truncated" and rows["a1"]["raw_reply"]
    assert rows["a2"]["status"] == "refused" and rows["a2"]["optimized_instruction"] is None
    assert rows["a3"]["status"] == "error" and rows["a3"]["raw_reply"] is None
    assert rows["a3"]["parse_error"].startswith("call failed:")
    # The failed call is retried on the next run; the recorded outcomes are not re-paid.
    before = server.total
    _run(pairs_file, out, endpoint, tmp_path / "c.sqlite", max_error_fraction=0.5)
    assert server.total == before + 1
    rows = {r["pair_id"]: r for r in read_table(out, CRITIQUES).to_pylist()}
    assert rows["a3"]["status"] == "ok" and rows["a1"]["status"] == "truncated"


def test_budget_cap_stops_cleanly_and_rerun_continues(pairs_file, endpoint, server, tmp_path):
    cache = tmp_path / "c.sqlite"
    out = tmp_path / "alpaca_gpt4.parquet"
    prices = {"gpt-3.5-turbo": {"input": 1000.0, "output": 1000.0}}  # absurd prices: a tiny budget bites
    endpoint["limits"]["max_concurrency"] = 1
    # The client reserves a call's upper-bound cost (prompt + max_tokens) before sending it:
    # 1.5 of those lets the first call through and stops the next.
    reqs = build_requests(ALPACA, load_critique(TEMPLATE), _call())
    one = max(r.estimated_prompt_tokens() + r.estimated_completion_tokens() for r in reqs) * 1000.0 / 1e6
    with pytest.raises(BudgetExceeded):
        _run(pairs_file, out, endpoint, cache, prices=prices, budget_usd=1.5 * one)
    assert not out.exists()
    sent_first = server.total
    assert 1 <= sent_first < 3
    _run(pairs_file, out, endpoint, cache, prices=prices, budget_usd=None)
    assert server.total == 3  # only the missing calls were made
    assert read_table(out, CRITIQUES).num_rows == 3


def test_estimate_sends_nothing_and_sees_the_cache(pairs_file, endpoint, server, tmp_path, monkeypatch):
    cache = tmp_path / "c.sqlite"
    est_path = tmp_path / "estimate.json"
    prices = {"gpt-3.5-turbo": {"input": 0.5, "output": 1.5}}
    settings = CritiqueEstimateSettings(critique=_settings(endpoint), sources=("alpaca_gpt4", "hh_rlhf"))
    args = (settings, _runtime(endpoint, cache, prices, budget_usd=1.0))
    kw = dict(pairs_path=pairs_file, output=est_path)
    monkeypatch.delenv(KEY_ENV)  # an estimate needs no key
    report = estimate_critiques(*args, **kw)
    assert server.total == 0
    assert report["sources"]["alpaca_gpt4"]["calls"] == 3 and report["sources"]["hh_rlhf"]["calls"] == 2
    assert report["total"]["calls"] == 5 and report["total"]["usd"] > 0
    assert json.loads(est_path.read_text())["total"]["calls"] == 5
    assert report["budget_usd_per_source"] == 1.0
    monkeypatch.setenv(KEY_ENV, SECRET)
    _run(pairs_file, tmp_path / "a.parquet", endpoint, cache)
    report = estimate_critiques(*args, **kw)
    assert report["sources"]["alpaca_gpt4"]["cached"] == 3 and report["sources"]["alpaca_gpt4"]["calls"] == 0
    assert report["total"]["calls"] == 2 and server.total == 3


def test_missing_key_sends_nothing(pairs_file, endpoint, server, tmp_path, monkeypatch):
    from bpo.llm import MissingAPIKey

    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(MissingAPIKey, match=KEY_ENV):
        _run(pairs_file, tmp_path / "x.parquet", endpoint, tmp_path / "c.sqlite")
    assert server.total == 0


def test_empty_source_writes_an_empty_table(pairs_file, endpoint, server, tmp_path):
    out = tmp_path / "oasst1.parquet"
    _run(pairs_file, out, endpoint, tmp_path / "c.sqlite", source="oasst1")
    assert read_table(out, CRITIQUES).num_rows == 0 and server.total == 0


# ---------------------------------------------------------------- Snakemake


@pytest.mark.slow
def test_workflow_critique_and_sft_with_the_standin(tmp_path):
    """The embedded default runs the critique stage offline; editing the template reruns it,
    editing runtime limits does not."""
    wf = copy_workflow(tmp_path / "wf")
    # a user's own copy of the template (the built-in one belongs to the installed package)
    template = wf / "config" / "critique.txt"
    template.write_bytes(TEMPLATE.read_bytes())
    cfg_path = wf / "config" / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("template: builtin:critique.txt", "template: config/critique.txt"))
    snakemake(wf, "--cores", "2", "results/demo/sft/train.parquet", "results/demo/critiques/estimate.json")
    report = json.loads((wf / "results" / "demo" / "sft" / "filter_report.json").read_text())
    assert report["records_in"] > 0 and report["kept"] > 0 and report["val"] >= 1
    assert report["records_in"] == report["kept"] + report["dropped_total"]
    rows = read_table(wf / "results" / "demo" / "critiques" / "hh_rlhf.parquet", CRITIQUES).to_pylist()
    assert rows and all(r["backend"] == "standin" and r["model"] == "bpo-standin" for r in rows)
    estimate = json.loads((wf / "results" / "demo" / "critiques" / "estimate.json").read_text())
    assert set(estimate["sources"]) == {"hh_rlhf", "oasst1", "chatbot_arena", "alpaca_gpt4"}
    assert "not a real model" in (wf / "logs" / "demo" / "critique" / "critique.hh_rlhf.log").read_text().lower()

    def planned():
        out = snakemake(wf, "-n", "--cores", "1", "results/demo/sft/train.parquet").stdout
        return {line.split()[-1] for line in out.splitlines() if line.startswith(("rule ", "localrule "))}

    assert planned() == set()

    def runtime_edit(cfg):
        cfg["llm"]["endpoints"]["standin"]["limits"]["max_concurrency"] = 3
        cfg["critique"]["budget_usd"] = 10.0

    edit_config(wf, runtime_edit)
    assert planned() == set()  # runtime settings: nothing reruns
    template.write_text(template.read_text() + "Keep the rewrite under 60 words.\n")
    assert planned() == {"critique:", "sft:"}


def test_expected_stops_end_the_script_with_one_log_line(caplog):
    """What the critique scripts do with an expected stop: one error line, exit status 1."""
    import logging

    from bpo.critique import expected_stops
    from bpo.logging_setup import exit_on

    caplog.set_level(logging.ERROR)
    with pytest.raises(SystemExit) as stop:
        with exit_on(*expected_stops(), logger="bpo.critique"):
            raise BudgetExceeded("spent 1.02 of 1.00 USD", spent_usd=1.02, budget_usd=1.0, answered=3, remaining=2)
    assert stop.value.code == 1
    assert caplog.messages == ["BudgetExceeded: spent 1.02 of 1.00 USD"]
    with pytest.raises(KeyError):  # a bug is still a traceback
        with exit_on(*expected_stops(), logger="bpo.critique"):
            raise KeyError("pair_id")
