"""Faults a user meets: a dead endpoint (circuit breaker), a server that echoes the API key
(redaction), and two runs sending the same requests at once or one of them killed (claims).

Everything goes over real sockets to tests/loopback_server.py, which counts what it receives.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
from llm_fault_cases import (
    KEY_ENV,
    SECRET,
    DeadEndpoint,
    closed_port_url,
    concurrent_runs,
    critique_stage_stop,
    endpoint,
    files_with,
    kill_owner_run,
    planted_key_run,
    stop_time,
)
from loopback_server import LoopbackServer

from bpo import redact
from bpo.llm import ChatRequest, LLMError, client_from_mapping
from bpo.llm.cache import Cache, result_row
from bpo.llm.errors import EndpointUnreachable


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def reqs(n, tag="q"):
    return [
        ChatRequest(model="gpt-test", messages=[{"role": "user", "content": f"{tag} {i}"}], temperature=0.9)
        for i in range(n)
    ]


# ---- circuit breaker -------------------------------------------------------------------------


def test_unreachable_endpoint_stops_within_the_breaker_window(tmp_path):
    url = closed_port_url()
    c = client_from_mapping(
        endpoint(url, circuit_breaker_s=1.0), tmp_path / "c.sqlite", "critique", name="remote", progress=False
    )
    t0 = time.monotonic()
    with pytest.raises(EndpointUnreachable, match="endpoint 'remote'.*" + url.replace(".", r"\.")) as err:
        c.run(reqs(500))
    took = time.monotonic() - t0
    assert 1.0 <= took < 8.0, f"took {took:.1f} s"
    assert err.value.endpoint == "remote" and err.value.base_url == url
    assert "circuit_breaker_s" in str(err.value) and "connection" in str(err.value)


def test_breaker_over_tls_failure(tmp_path):
    # https to a plain-HTTP server: the TLS handshake never completes (connect timeout)
    with LoopbackServer(responder="echo") as srv:
        url = srv.base_url.replace("http://", "https://")
        c = client_from_mapping(
            endpoint(url, circuit_breaker_s=1.0, timeout_s=0.3),
            tmp_path / "c.sqlite",
            "critique",
            name="tls",
            progress=False,
        )
        t0 = time.monotonic()
        with pytest.raises(EndpointUnreachable, match="endpoint 'tls'"):
            c.run(reqs(50))
        assert time.monotonic() - t0 < 8.0
        assert srv.total == 0


def test_endpoint_dying_mid_run_keeps_received_answers(tmp_path):
    cache = tmp_path / "c.sqlite"
    srv = LoopbackServer(latency_s=0.02, responder="echo").start()
    url = srv.base_url

    def stop_after(n):
        while srv.total < n:
            time.sleep(0.005)
        srv.stop()

    killer = threading.Thread(target=stop_after, args=(30,))
    killer.start()
    try:
        c = client_from_mapping(
            endpoint(url, circuit_breaker_s=1.0, max_concurrency=4), cache, "critique", name="local", progress=False
        )
        with pytest.raises(EndpointUnreachable, match="endpoint 'local'.*unreachable"):
            c.run(reqs(400))
    finally:
        killer.join(10)
        srv.stop()
    with Cache(cache) as db:
        stored = db.count()
        assert db._db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    assert 20 <= stored <= srv.total


def test_rejected_key_names_endpoint_and_base_url(tmp_path):
    with LoopbackServer(responder="echo") as srv:
        srv.fail("401", times=100)
        with pytest.raises(EndpointUnreachable, match=f"endpoint 'api'.*{srv.base_url}.*HTTP 401"):
            client_from_mapping(endpoint(srv.base_url), tmp_path / "c.sqlite", "judge", name="api", progress=False).run(
                reqs(3)
            )


# ---- liveness: endpoints that accept connections but give no HTTP answer ----------------------
# Scaled down: circuit_breaker_s 1 (30 by default), so probes come after 1/6 s of silence and wait
# 1/3 s; the default timeout_s (120) stays, so only the probes can stop a hung endpoint in time.
# benchmarks/bench_llm_faults.py measures the same with the default limits and 2,000 requests.

SCALED = {"circuit_breaker_s": 1.0, "max_concurrency": 16}
SEEN = {"hung": "no reply in time", "close": "closed before a status line", "garbage": "not HTTP", "banner": "not HTTP"}
DETAIL = {
    "hung": "no HTTP status line within",
    "close": "server closed the connection without a response",
    "garbage": r"not an HTTP reply \(first bytes b'\\x15",
    # the banner may arrive before the request is written or after: either way it is named
    "banner": r"not an HTTP reply \((first bytes|the server spoke first:) b'SSH-2\.0-OpenSSH",
}


@pytest.mark.parametrize("transport", ["lean", "httpx"])
@pytest.mark.parametrize("mode", ["hung", "close", "garbage", "banner"])
def test_an_endpoint_that_never_answers_http_stops_the_run(tmp_path, mode, transport):
    with DeadEndpoint(mode) as srv:
        out = stop_time(srv.base_url, 400, {**SCALED, "transport": transport}, tmp_path / "c.sqlite")
    err = out["error"]
    assert err is not None, f"no stop after {out['seconds']:.1f} s"
    assert 1.0 <= out["seconds"] < 6.0, f"took {out['seconds']:.1f} s"
    message = str(err)
    assert err.endpoint == "remote" and err.base_url == srv.base_url
    assert "endpoint 'remote'" in message and f"base_url {srv.base_url}" in message
    assert "no HTTP answer for" in message and "circuit_breaker_s" in message
    if transport == "lean":  # the default httpx stack words its errors its own way
        assert SEEN[mode] in message and re.search(DETAIL[mode], message), message
    assert out["stats"]["probes"] >= 1
    with Cache(tmp_path / "c.sqlite") as db:  # nothing stored, nothing left claimed
        assert db.count() == 0
        assert db._db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def test_a_hung_endpoint_stops_even_with_calls_waiting_on_a_long_timeout(tmp_path):
    """The calls wait up to timeout_s 120 s; the probes stop the run at the breaker's window and
    the calls still waiting are ended, not left to their timeout."""
    with DeadEndpoint("hung") as srv:
        out = stop_time(srv.base_url, 50, {**SCALED, "max_concurrency": 4}, tmp_path / "c.sqlite")
        assert srv.connections >= 5  # 4 calls + probes
    assert out["error"] is not None and out["seconds"] < 6.0
    assert "4 calls in flight, ended" in str(out["error"])
    assert out["stats"]["sent"] == 4  # the queue behind them was never sent


def test_read_timeouts_without_a_byte_count_toward_the_breaker(tmp_path):
    """timeout_s shorter than the probe delay: the calls' own timeouts stop a hung endpoint."""
    with DeadEndpoint("hung") as srv:
        out = stop_time(srv.base_url, 100, {**SCALED, "timeout_s": 0.1, "backoff_base_s": 0.01}, tmp_path / "c.sqlite")
    assert out["error"] is not None and out["seconds"] < 6.0
    assert re.search(r"no reply in time x\d+", str(out["error"]))
    assert out["stats"]["retries"] > 0  # retried within the window, then stopped


def test_a_slow_but_live_server_is_not_stopped(tmp_path):
    """One answer every 2.5 s at concurrency 1 (2.5x the breaker window; the README's figure is
    50 s with the default 30 s window): the probes get HTTP answers, every call is answered."""
    with LoopbackServer(latency_s=2.5, responder="echo") as srv:
        out = stop_time(srv.base_url, 3, {**SCALED, "max_concurrency": 1}, tmp_path / "c.sqlite")
        assert srv.total == 3
    assert out["error"] is None, out["error"]
    assert [r.status for r in out["results"]] == ["ok"] * 3
    assert out["stats"]["probes"] >= 6, "silent for 7.5 s: probed every ~1/6 s"


def test_a_status_line_then_silence_is_a_live_server(tmp_path):
    """A server that sends its status line and stalls the body is alive (calls time out and are
    retried, each one fails on its own), not an unreachable endpoint."""
    with DeadEndpoint("stalled_body") as srv:
        out = stop_time(
            srv.base_url,
            3,
            {**SCALED, "timeout_s": 0.5, "max_retries": 1, "backoff_base_s": 0.01, "max_concurrency": 3},
            tmp_path / "c.sqlite",
        )
    assert out["error"] is None, out["error"]
    assert [r.status for r in out["results"]] == ["error"] * 3
    assert all("gave up after 2 attempts: timed out after 0.5 s" in r.error for r in out["results"])


def test_chat_calls_hanging_on_a_server_that_answers_probes_time_out_one_by_one(tmp_path):
    """The HTTP server is alive (GET /models answers 404) but chat calls from "pair 1" on hang:
    the breaker leaves it alone, those calls fail at their own timeout, the others are cached."""
    with LoopbackServer(responder="echo") as srv:
        srv.fail("hang", times=1000, match="pair 1")
        out = stop_time(
            srv.base_url,
            12,
            {**SCALED, "max_concurrency": 4, "timeout_s": 0.5, "max_retries": 1, "backoff_base_s": 0.01},
            tmp_path / "c.sqlite",
        )
    assert out["error"] is None, out["error"]
    failed = [r for r in out["results"] if r.status == "error"]
    assert len(failed) == 3 and all("timed out after 0.5 s" in r.error for r in failed)  # pair 1, 10, 11
    assert out["stats"]["probes"] >= 1
    with Cache(tmp_path / "c.sqlite") as db:
        assert db.count() == 9


def test_the_progress_bar_shows_the_stall_without_an_eta(tmp_path, capsys):
    with DeadEndpoint("hung") as srv:
        c = client_from_mapping(
            endpoint(srv.base_url, circuit_breaker_s=1.0),
            tmp_path / "c.sqlite",
            "critique",
            name="remote",
            progress=True,
        )
        with pytest.raises(EndpointUnreachable):
            c.run(reqs(40))
    err = capsys.readouterr().err
    assert "ETA unknown, no HTTP answer for" in err and f"probing {srv.base_url}/models" in err, err[-2000:]


def test_the_critique_stage_stops_on_a_hung_endpoint(tmp_path):
    """The stage as its script runs it, 200 pairs queued (benchmarks/bench_llm_faults.py: 2,000
    with the default limits)."""
    with DeadEndpoint("hung") as srv:
        out = critique_stage_stop(tmp_path, srv.base_url, 200, SCALED)
    assert out["error"] is not None and out["seconds"] < 8.0, out
    assert f"base_url {srv.base_url}" in str(out["error"]) and "no reply in time" in str(out["error"])
    assert not (tmp_path / "critiques.parquet").exists()


def test_breaker_setting_is_validated(tmp_path):
    with pytest.raises(LLMError, match="limits.circuit_breaker_s: 0 is less than or equal to the minimum of 0"):
        client_from_mapping(endpoint("http://x", circuit_breaker_s=0), tmp_path / "c.sqlite", "s")


# ---- redaction -------------------------------------------------------------------------------


def test_redact_masks_configured_values_and_key_shapes(monkeypatch):
    monkeypatch.setenv("MY_PROXY_VAR", "proxy-value-zz91x")
    monkeypatch.setenv("OTHER_ENDPOINT_KEY_VAR", "abc-other-endpoint-secret")
    redact.register_config(
        {
            "llm": {
                "endpoints": {
                    "a": {"backend": "openai", "default_headers": {"X-Auth": "${MY_PROXY_VAR}"}},
                    "b": {"backend": "openai", "api_key_env": "OTHER_ENDPOINT_KEY_VAR"},
                }
            }
        }
    )
    text = (
        "proxy-value-zz91x abc-other-endpoint-secret sk-proj-AbCdEf0123456789 Bearer eyJhbGciOiJIUzI1NiJ9.x.y "
        "hf_abcdefghijklmnop ghp_abcdefghijklmnopqrstuvwxyz AKIAABCDEFGHIJKLMNOP"
    )
    out = redact.redact(text)
    assert out.count(redact.MASK) == 7, out
    # ordinary text and cache keys are left alone
    plain = (
        "task-force risk-averse key 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 sk-1 "
        "ask-questionnaire Basic arithmetic. Bearer authentication"
    )  # model text stays as written
    assert redact.redact(plain) == plain
    assert str(LLMError(f"server said {SECRET}")) == f"server said {redact.MASK}"


def test_an_echoed_key_is_written_nowhere(tmp_path):
    """A server echoes the key in its error text (500s, then a 401): log, stderr, stdout, cache
    database (with its WAL), Parquet export and the uncaught error: no trace of the key."""
    run = planted_key_run(tmp_path)
    assert run["returncode"] == 1
    assert run["echoed"] >= 3, "the server must have echoed the key"
    log = (run["dir"] / "stage.log").read_text()
    assert "Incorrect API key provided: [REDACTED]" in log and "EndpointUnreachable" in log
    with Cache(run["dir"] / "llm.sqlite") as db:
        assert "[REDACTED]" in db._db.execute("SELECT error FROM failures").fetchone()[0]
    assert run["hits"] == []


SNAKEFILE = """
rule all:
    input: "results/out.txt"

rule critique:
    output: "results/out.txt"
    log: "logs/critique.log"
    script: "critique.py"
"""

SNAKE_SCRIPT = """
from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)

from bpo.llm import ChatRequest, client_from_mapping

ep = snakemake.config["llm"]["endpoints"]["remote"]
client_from_mapping(ep, ".bpo-cache/llm.sqlite", "critique", name="remote", progress=True).run(
    [ChatRequest(model="m", messages=[{"role": "user", "content": f"q {i}"}]) for i in range(3)])
"""


def test_snakemake_log_holds_no_echoed_key(tmp_path):
    """The same through Snakemake: the rule's log, .snakemake/log and the terminal."""
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(SNAKEFILE)
    (wf / "critique.py").write_text(SNAKE_SCRIPT)
    with LoopbackServer(responder="echo") as srv:
        srv.fail("401", times=10, echo_key=True)
        (wf / "config.yaml").write_text(json.dumps({"llm": {"endpoints": {"remote": endpoint(srv.base_url)}}}))
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "config.yaml"],
            cwd=wf,
            capture_output=True,
            timeout=300,
            env={**os.environ, KEY_ENV: SECRET},
        )
        assert srv.total >= 1
    assert proc.returncode != 0
    (wf / "terminal.txt").write_bytes(proc.stdout + proc.stderr)
    assert "Incorrect API key provided: [REDACTED]" in (wf / "logs" / "critique.log").read_text()
    assert list((wf / ".snakemake" / "log").glob("*.snakemake.log"))
    assert files_with(wf, SECRET.encode()) == []


# ---- in-flight claims across processes --------------------------------------------------------


def test_two_concurrent_runs_of_the_same_400_requests_pay_400(tmp_path):
    out = concurrent_runs(tmp_path, n=400, conc=16)
    assert out["paid"] == 400, f"{out['paid'] - 400} calls paid twice"
    assert out["distinct"] == 400 and out["max_per_request"] == 1
    assert sum(out["sent"]) == 400 and min(out["sent"]) > 0, "both runs sent part of the work"
    assert [sum(f) for f in zip(out["sent"], out["awaited"], out["cached"])] == [400, 400]
    assert out["runs_seen"] == ["A", "B"]
    with Cache(tmp_path / "llm.sqlite") as db:
        assert db.count() == 400
        assert db._db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def test_kill_9_of_the_claim_owner_the_other_run_takes_over(tmp_path):
    out = kill_owner_run(tmp_path, n=200, conc=8)
    assert out["distinct"] == 200, "every request answered"
    assert out["repaid_not_from_a"] == [], "only calls the killed run had sent are paid again"
    assert out["repaid"] <= out["in_flight"] <= out["concurrency"], out
    assert out["b_done_after_kill_s"] < 30, "the dead owner's claims must not wait for the lease"
    with Cache(tmp_path / "llm.sqlite") as db:
        assert db.count() == 200


def test_a_claim_held_elsewhere_is_awaited_then_taken_over_when_its_lease_ends(tmp_path):
    cache_path = tmp_path / "llm.sqlite"
    rs = reqs(2)
    with Cache(cache_path) as db:  # another host's run holds both keys
        db.claim([rs[0].key], "openai", "otherhost|1|1|a", lease_s=30)
        db.claim([rs[1].key], "openai", "otherhost|1|1|b", lease_s=0.6)

    def answer_first():
        time.sleep(0.3)
        with Cache(cache_path) as db:
            db.store(
                [
                    result_row(
                        key=rs[0].key,
                        backend="openai",
                        stage="critique",
                        model="gpt-test",
                        request=rs[0].body_json,
                        status="ok",
                        text="from the other host",
                        choices=None,
                        finish_reason="stop",
                        prompt_tokens=1,
                        completion_tokens=1,
                        error=None,
                        response_model="gpt-test",
                        latency_s=0.1,
                        attempts=1,
                    )
                ],
                [],
                "otherhost|1|1|a",
            )

    with LoopbackServer(responder="echo") as srv:
        t = threading.Thread(target=answer_first)
        t.start()
        t0 = time.monotonic()
        c = client_from_mapping(endpoint(srv.base_url), cache_path, "critique", progress=False)
        out = c.run(rs)
        t.join()
        assert out[0].text == "from the other host" and out[0].cached
        assert out[1].text == "loopback reply to: q 1" and not out[1].cached
        assert srv.count("q 0") == 0 and srv.count("q 1") == 1
        assert time.monotonic() - t0 >= 0.5  # waited for the lease
        assert c.last_stats["awaited"] == 1 and c.last_stats["sent"] == 1
