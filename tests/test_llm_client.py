"""LLMClient against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/loopback_server.py).

The real `openai` client sends every request over a socket; the server counts them, so "never
reached the endpoint" is measured, not assumed.
"""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest
from loopback_server import LoopbackServer

from bpo.llm import BudgetExceeded, ChatRequest, LLMError, MissingAPIKey, ReplayMiss, client_from_mapping, make_client
from bpo.llm.cache import Cache
from bpo.llm.limits import Limits, RateLimiter, TokenBucket

KEY_ENV = "BPO_TEST_LLM_KEY"
SECRET = "sk-bpo-loopback-SECRET-7f3a9c"


@pytest.fixture
def server():
    with LoopbackServer(latency_s=0.0, responder="echo") as srv:
        yield srv


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def endpoint(srv, **limits):
    lim = {"max_concurrency": 4, "timeout_s": 5, "max_retries": 3, "backoff_base_s": 0.01}
    lim.update(limits)
    return {"backend": "openai", "base_url": srv.base_url, "api_key_env": KEY_ENV, "limits": lim}


def reqs(n, tag="q", **kw):
    return [ChatRequest(model="gpt-test", messages=[{"role": "user", "content": f"{tag} {i}"}], **kw) for i in range(n)]


def _schema_limits(**limits):
    """An endpoint's limits with the schema's defaults (the only place they are written)."""
    from bpo.settings import LLMRuntime, endpoint_config

    return LLMRuntime.from_config(endpoint_config("x", {"backend": "standin", "limits": limits}), "x").limits


def client(srv, tmp_path, stage="test", **limits):
    return client_from_mapping(endpoint(srv, **limits), tmp_path / "llm.sqlite", stage, progress=False)


def test_answers_in_order_and_cache_hits_never_reach_the_server(server, tmp_path):
    rs = reqs(6)
    first = client(server, tmp_path).run(rs)
    assert [r.text for r in first] == [f"loopback reply to: q {i}" for i in range(6)]
    assert all(r.status == "ok" and not r.cached and r.backend == "openai" for r in first)
    assert all(r.prompt_tokens and r.completion_tokens for r in first)
    assert server.total == 6
    # a new client (a rerun) answers everything from the cache
    again = client(server, tmp_path).run(rs + reqs(2, tag="new"))
    assert server.total == 8
    assert [r.cached for r in again] == [True] * 6 + [False] * 2
    assert [r.text for r in again[:6]] == [r.text for r in first]
    assert server.count("q 0") == 1 and server.count("new 1") == 1


def test_duplicate_requests_in_one_run_are_sent_once(server, tmp_path):
    rs = reqs(3) * 3
    out = client(server, tmp_path).run(rs)
    assert server.total == 3
    assert [r.text for r in out] == [r.text for r in out[:3]] * 3
    assert [r.cached for r in out] == [False] * 3 + [True] * 6


def test_429_retry_after_is_honoured(server, tmp_path):
    server.fail("429", times=1, retry_after=0.6, match="q 0")
    out = client(server, tmp_path, backoff_base_s=0.01).run(reqs(1))
    assert out[0].status == "ok"
    assert server.count("q 0") == 2
    t = [r.t for r in server.requests]
    assert t[1] - t[0] >= 0.55, "the retry did not wait for Retry-After"


@pytest.mark.parametrize("kind", ["500", "503", "malformed", "nochoices", "drop"])
def test_transient_failures_are_retried(server, tmp_path, kind):
    server.fail(kind, times=2, match="q 1")
    c = client(server, tmp_path)
    out = c.run(reqs(3))
    assert [r.status for r in out] == ["ok"] * 3
    assert server.count("q 1") == 3 and server.count("q 0") == 1
    if kind == "drop":  # a dropped keep-alive connection gets one transparent reconnect first
        assert c.last_stats["retries"] in (1, 2)
    else:
        assert c.last_stats["retries"] == 2


def test_timeouts_are_retried(server, tmp_path):
    server.fail("hang", times=1, seconds=30, match="q 0")
    c = client(server, tmp_path, timeout_s=0.4)
    t0 = time.monotonic()
    out = c.run(reqs(2))
    assert [r.status for r in out] == ["ok", "ok"]
    assert server.count("q 0") == 2
    assert time.monotonic() - t0 < 10


def test_exhausted_retries_are_recorded_as_error_not_cached_and_retried_next_run(server, tmp_path):
    server.fail("500", times=10, match="q 0")
    out = client(server, tmp_path, max_retries=2).run(reqs(2))
    assert out[0].status == "error" and "gave up after 3 attempts" in out[0].error and "500" in out[0].error
    assert out[1].status == "ok"
    assert server.count("q 0") == 3
    with Cache(tmp_path / "llm.sqlite") as cache:
        assert set(cache.get_many([r.key for r in reqs(2)], "openai")) == {reqs(2)[1].key}
        failed = [u["failed"] for u in cache.usage()]
    assert failed == [1]
    server.reset()  # the endpoint recovers
    out = client(server, tmp_path).run(reqs(2))
    assert [r.status for r in out] == ["ok", "ok"] and out[1].cached and not out[0].cached
    assert server.total == 1


@pytest.mark.parametrize(
    "kind, status", [("length", "truncated"), ("refusal", "refused"), ("content_filter", "refused")]
)
def test_truncated_and_refused_are_recorded_once_and_cached(server, tmp_path, kind, status):
    server.fail(kind, times=5, match="q 0")
    out = client(server, tmp_path).run(reqs(2))
    assert out[0].status == status and out[1].status == "ok"
    assert server.count("q 0") == 1, "a truncated/refused reply must not be retried"
    if kind == "refusal":
        assert out[0].text == "I can't help with that." and out[0].error.startswith("refused")
    if kind == "length":
        assert out[0].finish_reason == "length"
    again = client(server, tmp_path).run(reqs(2))
    assert again[0].status == status and again[0].cached
    assert server.count("q 0") == 1


def test_bad_request_is_not_retried(server, tmp_path):
    server.fail("400", times=5, match="q 0")
    out = client(server, tmp_path).run(reqs(2))
    assert out[0].status == "error" and "HTTP 400" in out[0].error
    assert server.count("q 0") == 1


@pytest.mark.parametrize("code, match", [("401", "refused the API key"), ("404", "unknown model 'gpt-test'")])
def test_rejected_key_or_unknown_model_stops_the_run_with_a_clear_error(tmp_path, code, match):
    with LoopbackServer(responder="echo") as srv:
        srv.fail(code, times=100)
        with pytest.raises(LLMError, match=match) as err:
            client(srv, tmp_path, max_concurrency=1).run(reqs(5))
        assert SECRET not in str(err.value)
        assert srv.total == 1


def test_an_answer_that_cannot_be_stored_stops_the_run(server, tmp_path, monkeypatch):
    def broken(self, answers, failures, owner):
        if list(answers):
            raise OSError("disk full")

    monkeypatch.setattr(Cache, "store", broken)
    with pytest.raises(LLMError, match="cannot write answers to the LLM cache .*disk full"):
        client(server, tmp_path, max_concurrency=1).run(reqs(5))
    assert server.total < 5


def test_missing_key_is_an_error_before_any_request(server, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(MissingAPIKey, match=f"{KEY_ENV}.*nothing was sent"):
        client(server, tmp_path)
    # deferred check (dry-run clients): estimate works, run refuses before sending
    c = client_from_mapping(endpoint(server), tmp_path / "llm.sqlite", "test", check_key=False, progress=False)
    assert c.estimate(reqs(3)).calls == 3
    with pytest.raises(MissingAPIKey):
        c.run(reqs(3))
    monkeypatch.setenv(KEY_ENV, "   ")
    with pytest.raises(MissingAPIKey):
        client(server, tmp_path)
    assert server.total == 0


def test_replay_serves_the_cache_and_a_miss_is_a_clear_error(server, tmp_path):
    client(server, tmp_path).run(reqs(3))
    replay = client_from_mapping({"backend": "replay"}, tmp_path / "llm.sqlite", "test", progress=False)
    out = replay.run(reqs(3))
    assert [r.text for r in out] == [f"loopback reply to: q {i}" for i in range(3)]
    assert all(r.cached and r.backend == "replay" for r in out)
    with pytest.raises(ReplayMiss, match="no cached answer for 2 of 5 distinct requests") as err:
        replay.run(reqs(5))
    assert err.value.missing == 2 and err.value.total == 5
    assert server.total == 3


def test_budget_cap_stops_cleanly_and_a_rerun_continues(server, tmp_path):
    prices = {"gpt-test": {"input": 1000.0, "output": 1000.0}}  # $0.001 per token
    rs = reqs(20, max_tokens=40)
    c = client_from_mapping(
        endpoint(server, max_concurrency=2), tmp_path / "llm.sqlite", "critique", prices=prices, progress=False
    )
    est = c.estimate(rs)
    assert est.calls == 20 and est.usd is not None
    with pytest.raises(BudgetExceeded, match="budget cap of \\$0.1500 reached") as err:
        c.run(rs, budget_usd=0.15)
    exc = err.value
    assert 0 < exc.answered < 20 and exc.answered + exc.remaining == 20
    assert exc.spent_usd <= 0.15
    with Cache(tmp_path / "llm.sqlite") as cache:
        stored = cache.count()
    assert server.total == stored == exc.answered, "every answered call is cached, nothing else was sent"
    assert sum(r is not None for r in exc.results) == exc.answered
    # the rerun (no cap) sends exactly the missing calls
    out = c.run(rs)
    assert all(r.status == "ok" for r in out)
    assert server.total == 20
    assert max(server.counts.values()) == 1


def test_budget_needs_prices(server, tmp_path):
    with pytest.raises(LLMError, match="no price for model"):
        client(server, tmp_path).run(reqs(1), budget_usd=1.0)
    assert server.total == 0


def test_concurrency_is_bounded(tmp_path):
    with LoopbackServer(latency_s=0.1, responder="echo") as srv:
        out = client(srv, tmp_path, max_concurrency=3).run(reqs(12))
        assert len(out) == 12 and srv.max_inflight == 3


def test_token_bucket_and_pause():
    import asyncio

    async def go():
        bucket = TokenBucket(rate_per_s=20, capacity=1)
        t0 = time.monotonic()
        for _ in range(6):
            await bucket.acquire(1)
        slow = time.monotonic() - t0
        lim = RateLimiter(Limits.from_mapping(_schema_limits(rpm=None, tpm=None).canonical()))
        assert not lim.active
        lim.pause(0.2)
        t1 = time.monotonic()
        await lim.acquire(10)
        return slow, time.monotonic() - t1

    slow, paused = asyncio.run(go())
    assert slow >= 0.2  # 5 refills at 20/s
    assert paused >= 0.18


def test_the_api_key_never_leaks(server, tmp_path, caplog, capsys, monkeypatch):
    monkeypatch.setenv("BPO_TEST_PROXY_SECRET", "proxy-SECRET-e91d")
    caplog.set_level(logging.DEBUG)
    server.fail("429", times=1, retry_after=0.01, match="q 0")
    server.fail("400", times=1, match="q 1")
    server.fail("500", times=9, match="q 2")
    ep = endpoint(server, max_retries=1)
    ep["default_headers"] = {"X-Proxy-Auth": "${BPO_TEST_PROXY_SECRET}"}
    out = client_from_mapping(ep, tmp_path / "llm.sqlite", "test", progress=True).run(reqs(4))
    assert [r.status for r in out] == ["ok", "error", "error", "ok"]
    # the server did get the key and the header: they were really used
    assert any(r.headers.get("authorization") == f"Bearer {SECRET}" for r in server.requests)
    assert any(r.headers.get("x-proxy-auth") == "proxy-SECRET-e91d" for r in server.requests)
    Cache(tmp_path / "llm.sqlite").export_parquet(tmp_path / "export.parquet")
    blobs = {"logs": caplog.text.encode(), "stderr": capsys.readouterr().err.encode(), "results": repr(out).encode()}
    for f in tmp_path.iterdir():
        if f.is_file():
            blobs[f.name] = f.read_bytes()
    assert "export.parquet" in blobs and "llm.sqlite" in blobs
    for name, blob in blobs.items():
        assert SECRET.encode() not in blob, f"API key found in {name}"
        assert b"proxy-SECRET-e91d" not in blob, f"header secret found in {name}"


def test_cache_is_sqlite_wal_outside_results(server, tmp_path):
    path = tmp_path / "cache" / "llm.sqlite"
    client_from_mapping(endpoint(server), path, "test", progress=False).run(reqs(1))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    row = db.execute("SELECT stage, model, backend, status, prompt_tokens, request FROM calls").fetchone()
    assert row[:4] == ("test", "gpt-test", "openai", "ok") and row[4] > 0 and '"q 0"' in row[5]


def test_progress_bar_reports_cache_hits(server, tmp_path, capsys):
    client(server, tmp_path).run(reqs(2))
    client_from_mapping(endpoint(server), tmp_path / "llm.sqlite", "test", progress=True).run(reqs(4))
    err = capsys.readouterr().err
    assert "cached=2" in err and "4/4" in err


def test_make_client_from_settings(server, tmp_path):
    """The one factory: answer-relevant endpoint settings plus run-time limits, cache, prices, budget."""
    from bpo.settings import EndpointSettings, LLMRuntime, SettingsError, load_config

    config = load_config(
        overrides={
            "llm": {
                "cache": str(tmp_path / "c.sqlite"),
                "endpoints": {"local": endpoint(server, max_concurrency=3)},
                "prices": {"gpt-test": {"input": 1.0, "output": 1.0}},
            }
        }
    )
    runtime = LLMRuntime.from_config(config, "local", budget_usd=0.000001)
    c = make_client(EndpointSettings.from_config(config, "local"), runtime, "judge", progress=False)
    assert (c.cache_path, c.stage, c.name, c.base_url) == (
        str(tmp_path / "c.sqlite"),
        "judge",
        "local",
        server.base_url,
    )
    assert c.limits.max_concurrency == 3 and c.prices == {"gpt-test": {"input": 1.0, "output": 1.0}}
    with pytest.raises(BudgetExceeded):
        c.run(reqs(2))
    assert server.total == 0
    with pytest.raises(SettingsError, match="'nope' is not defined under llm.endpoints.*local"):
        EndpointSettings.from_config(config, "nope")


@pytest.mark.parametrize(
    "ep, match",
    [
        ({"backend": "gpt"}, "llm.endpoints.gpt.backend: 'gpt' is not one of"),
        ({"backend": "openai", "limitz": {}}, "unknown key"),
        ({"backend": "standin", "limits": {"max_concurency": 2}}, "unknown key"),
        (
            {"backend": "standin", "limits": {"max_concurrency": 0}},
            "limits.max_concurrency: 0 is less than the minimum of 1",
        ),
        ({"backend": "standin", "limits": {"transport": "h3"}}, "transport"),
    ],
)
def test_bad_endpoint_config_names_the_key(tmp_path, ep, match):
    with pytest.raises(LLMError, match=match):
        client_from_mapping(ep, tmp_path / "c.sqlite", "test")


def test_run_inside_an_event_loop_points_to_arun(tmp_path):
    import asyncio

    c = client_from_mapping({"backend": "standin"}, tmp_path / "c.sqlite", "test", progress=False)

    async def inside():
        with pytest.raises(LLMError, match="arun"):
            c.run(reqs(1))
        return await c.arun(reqs(1))

    assert asyncio.run(inside())[0].status == "ok"


def test_estimate_counts_cache_hits_tokens_and_cost_without_sending(server, tmp_path):
    prices = {"gpt-test": {"input": 2.0, "output": 4.0}}
    c = client_from_mapping(endpoint(server), tmp_path / "llm.sqlite", "test", prices=prices, progress=False)
    c.run(reqs(2, max_tokens=10))
    sent = server.total
    rs = reqs(4, max_tokens=10) + reqs(1, max_tokens=10)  # one duplicate
    est = c.estimate(rs)
    assert (est.requests, est.unique, est.cached, est.calls) == (5, 4, 2, 2)
    todo = rs[2:4]
    assert est.prompt_tokens == sum(r.estimated_prompt_tokens() for r in todo)
    assert est.completion_tokens == 20
    assert est.usd == pytest.approx((est.prompt_tokens * 2.0 + 20 * 4.0) / 1e6)
    assert "2 to send" in str(est)
    other = c.estimate([ChatRequest(model="unpriced-model", messages=[{"role": "user", "content": "x"}])])
    assert other.usd is None and other.unpriced_models == ["unpriced-model"]
    assert server.total == sent


def test_loopback_server_as_a_separate_process(tmp_path):
    """The mode benchmarks use: scripted through POST /control, counted through GET /stats."""
    import json
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("loopback_server.py")),
            "--responder",
            "echo",
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while not port_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        root = f"http://127.0.0.1:{int(port_file.read_text())}"

        def call(path, payload=None):
            data = json.dumps(payload).encode() if payload is not None else None
            with urllib.request.urlopen(urllib.request.Request(root + path, data=data), timeout=10) as r:
                return json.loads(r.read())

        call("/control", {"fail": [{"kind": "500", "times": 1, "match": "q 0"}], "latency_s": 0.05})
        ep = {
            "backend": "openai",
            "base_url": root + "/v1",
            "api_key_env": KEY_ENV,
            "limits": {"max_concurrency": 2, "backoff_base_s": 0.01},
        }
        out = client_from_mapping(ep, tmp_path / "c.sqlite", "test", progress=False).run(reqs(3))
        assert [r.status for r in out] == ["ok"] * 3
        stats = call("/stats")
        assert stats["total"] == 4 and stats["counts"]["q 0"] == 2
    finally:
        proc.terminate()
        proc.wait(10)
