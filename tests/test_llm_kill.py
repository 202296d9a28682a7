"""A run killed with SIGKILL mid-stage loses only its calls in flight; the rerun makes exactly
the missing calls (counted at the server)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

from loopback_server import LoopbackServer

N = 40
CONCURRENCY = 4

DRIVER = textwrap.dedent(
    """
    import sys
    from bpo.llm import ChatRequest, client_from_mapping

    base_url, cache = sys.argv[1], sys.argv[2]
    endpoint = {"backend": "openai", "base_url": base_url, "api_key_env": "BPO_KILL_KEY",
                "limits": {"max_concurrency": %d, "timeout_s": 30}}
    requests = [ChatRequest(model="gpt-test", messages=[{"role": "user", "content": f"pair {i}"}],
                            temperature=0.9) for i in range(%d)]
    results = client_from_mapping(endpoint, cache, "critique", progress=False).run(requests)
    assert all(r.status == "ok" for r in results), results
    print("done", sum(r.cached for r in results))
    """
) % (CONCURRENCY, N)


def _cached_prompts(cache) -> set[str]:
    import json

    db = sqlite3.connect(cache)  # reads the WAL too: what a rerun will see
    rows = db.execute("SELECT request FROM calls").fetchall()
    db.close()
    return {json.loads(r[0])["messages"][-1]["content"] for r in rows}


def test_kill_9_then_rerun_makes_exactly_the_missing_calls(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    cache = tmp_path / "llm.sqlite"
    env = {**os.environ, "BPO_KILL_KEY": "sk-kill-test"}
    with LoopbackServer(latency_s=0.25, responder="echo") as srv:
        proc = subprocess.Popen(
            [sys.executable, str(driver), srv.base_url, str(cache)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 60
        while srv.total < N // 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, f"driver ended early: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        time.sleep(0.3)  # let the server finish answering the dead client's last requests
        received_before = srv.total
        before = dict(srv.counts)
        cached = _cached_prompts(cache)
        assert 0 < len(cached) < N
        # everything the server received was answered and cached, except the calls in flight
        assert received_before - len(cached) <= CONCURRENCY
        assert cached <= set(before)

        rerun = subprocess.run(
            [sys.executable, str(driver), srv.base_url, str(cache)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert rerun.stdout.split() == ["done", str(len(cached))]
        sent_again = {p: c - before.get(p, 0) for p, c in srv.counts.items() if c - before.get(p, 0)}
        missing = {f"pair {i}" for i in range(N)} - cached
        assert set(sent_again) == missing, "the rerun must send exactly the calls missing from the cache"
        assert all(c == 1 for c in sent_again.values())
        assert srv.total - received_before == len(missing)
    assert len(_cached_prompts(cache)) == N
