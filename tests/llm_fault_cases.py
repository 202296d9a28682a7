"""The LLM fault cases, shared by tests/test_llm_faults.py (which asserts on them) and
benchmarks/bench_llm_faults.py (which prints their figures).

Each case runs the real client over real sockets against tests/loopback_server.py; the runs
that must be separate processes (two runs at once, kill -9) are subprocesses of DRIVER.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from loopback_server import LoopbackServer

KEY_ENV = "BPO_FAULT_TEST_KEY"
SECRET = "sk-faultPLANTED-0123456789abcdef"


def endpoint(base_url: str, **limits) -> dict:
    lim = {"max_concurrency": 8, "timeout_s": 5, "max_retries": 6, "backoff_base_s": 1.0}
    lim.update(limits)
    return {"backend": "openai", "base_url": base_url, "api_key_env": KEY_ENV, "limits": lim}


def closed_port_url() -> str:
    """A base_url on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def files_with(root: Path, needle: bytes) -> list[str]:
    """Every file under ``root`` that contains ``needle``."""
    return [str(p) for p in Path(root).rglob("*") if p.is_file() and needle in p.read_bytes()]


# ---- a run whose server echoes the key -----------------------------------------------------

PLANTED_RUN = (
    textwrap.dedent(
        """
    import sys
    from bpo.logging_setup import setup_logging

    log_path, base_url, cache, export = sys.argv[1:5]
    setup_logging(log_path)
    import logging
    from bpo.llm import ChatRequest, client_from_mapping
    from bpo.llm.cache import Cache

    ep = {"backend": "openai", "base_url": base_url, "api_key_env": "%s",
          "limits": {"max_concurrency": 2, "max_retries": 1, "backoff_base_s": 0.01}}
    reqs = [ChatRequest(model="m", messages=[{"role": "user", "content": f"q {i}"}]) for i in range(4)]
    out = client_from_mapping(ep, cache, "critique", progress=True).run(reqs)
    logging.getLogger("driver").info("results: %%r", out)
    print("stdout:", [r.error for r in out])
    Cache(cache).export_parquet(export)
    client_from_mapping(ep, cache, "critique", progress=False).run(reqs + [ChatRequest(model="m", messages=[
        {"role": "user", "content": "four-oh-one"}])])  # raises: the uncaught error goes to the log
    """
    )
    % KEY_ENV
)


def planted_key_run(tmp: Path) -> dict:
    """A stage-like script (logging set up as in the workflow) against a server that echoes the
    key in 500 and 401 error texts; its stdout/stderr are saved next to its log and cache."""
    driver = tmp / "planted.py"
    driver.write_text(PLANTED_RUN)
    run_dir = tmp / "planted-run"
    run_dir.mkdir()
    with LoopbackServer(responder="echo") as srv:
        srv.fail("500", times=4, match="q 1", echo_key=True)
        srv.fail("401", times=5, match="four-oh-one", echo_key=True)
        proc = subprocess.run(
            [
                sys.executable,
                str(driver),
                str(run_dir / "stage.log"),
                srv.base_url,
                str(run_dir / "llm.sqlite"),
                str(run_dir / "export.parquet"),
            ],
            capture_output=True,
            timeout=120,
            env={**os.environ, KEY_ENV: SECRET},
        )
        echoed = srv.count("q 1") + srv.count("four-oh-one")
    (run_dir / "stdout").write_bytes(proc.stdout)
    (run_dir / "stderr").write_bytes(proc.stderr)
    return {
        "returncode": proc.returncode,
        "echoed": echoed,
        "dir": run_dir,
        "hits": files_with(run_dir, SECRET.encode()) + files_with(run_dir, SECRET[3:].encode()),
    }


# ---- runs in separate processes --------------------------------------------------------------

DRIVER = (
    textwrap.dedent(
        """
    import os, sys, time
    from bpo.llm import ChatRequest, client_from_mapping

    base_url, cache, n, conc, tag, go = sys.argv[1:7]
    ep = {"backend": "openai", "base_url": base_url, "api_key_env": "%s",
          "default_headers": {"X-Run": tag}, "limits": {"max_concurrency": int(conc), "timeout_s": 30}}
    reqs = [ChatRequest(model="gpt-test", messages=[{"role": "user", "content": f"pair {i}"}], temperature=0.9)
            for i in range(int(n))]
    client = client_from_mapping(ep, cache, "critique", progress=False)
    while not os.path.exists(go):  # both runs start sending at the same moment
        time.sleep(0.005)
    results = client.run(reqs)
    assert all(r.status == "ok" for r in results), [r for r in results if r.status != "ok"][:3]
    print("done", client.last_stats["sent"], client.last_stats["awaited"], client.last_stats["cached"])
    """
    )
    % KEY_ENV
)


def _start(tmp: Path, srv: LoopbackServer, n: int, conc: int, tag: str) -> subprocess.Popen:
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(driver), srv.base_url, str(tmp / "llm.sqlite"), str(n), str(conc), tag, str(tmp / "go")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, KEY_ENV: SECRET},
    )


def _release(tmp: Path) -> None:
    time.sleep(1.5)  # both drivers imported and waiting
    (tmp / "go").touch()


def _content(rec) -> str:
    return json.loads(rec.body)["messages"][-1]["content"]


def _cached_contents(cache: Path) -> set[str]:
    db = sqlite3.connect(cache)  # reads the WAL too
    try:
        return {json.loads(r[0])["messages"][-1]["content"] for r in db.execute("SELECT request FROM calls")}
    finally:
        db.close()


def concurrent_runs(tmp: Path, n: int = 400, conc: int = 16, latency_s: float = 0.02) -> dict:
    """Two processes send the same ``n`` requests at the same moment."""
    with LoopbackServer(latency_s=latency_s, responder="echo") as srv:
        procs = [_start(tmp, srv, n, conc, tag) for tag in ("A", "B")]
        _release(tmp)
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_, err) in zip(procs, outs):
            if p.returncode != 0:
                raise AssertionError(f"a driver failed:\n{err[-3000:]}")
        return {
            "paid": srv.total,
            "distinct": len(srv.counts),
            "max_per_request": max(srv.counts.values()),
            "sent": [int(out.split()[1]) for out, _ in outs],
            "awaited": [int(out.split()[2]) for out, _ in outs],
            # answered by the other run before this one looked (its first cache read)
            "cached": [int(out.split()[3]) for out, _ in outs],
            "runs_seen": sorted({r.headers.get("x-run") for r in srv.requests}),
        }


def kill_owner_run(tmp: Path, n: int = 200, conc: int = 8, latency_s: float = 0.2) -> dict:
    """Runs A and B send the same ``n`` requests; A is killed with SIGKILL a third of the way in.
    ``in_flight``: the calls A had sent whose answer it had not stored when it died (read from the
    cache right after the kill, before B could have answered any of them: that takes a reply)."""
    with LoopbackServer(latency_s=latency_s, responder="echo") as srv:
        a = _start(tmp, srv, n, conc, "A")
        b = _start(tmp, srv, n, conc, "B")
        _release(tmp)
        deadline = time.time() + 60
        while srv.total < n // 3 and time.time() < deadline and a.poll() is None:
            time.sleep(0.005)
        if a.poll() is not None:
            raise AssertionError(f"run A ended before the kill: {a.communicate()}")
        os.kill(a.pid, signal.SIGKILL)
        t_kill = time.time()
        a.wait(10)
        stored_at_kill = _cached_contents(tmp / "llm.sqlite")
        sent_by_a = {_content(r) for r in list(srv.requests) if r.headers.get("x-run") == "A"}
        _, err = b.communicate(timeout=300)
        if b.returncode != 0:
            raise AssertionError(f"run B failed:\n{err[-3000:]}")
        b_done_s = time.time() - t_kill
        requests = list(srv.requests)
    counts: dict[str, int] = {}
    for r in requests:
        counts[_content(r)] = counts.get(_content(r), 0) + 1
    from_a = [r for r in requests if r.headers.get("x-run") == "A"]
    return {
        "paid": len(requests),
        "distinct": len(counts),
        "repaid": len(requests) - len(counts),
        "in_flight": len(sent_by_a - stored_at_kill),
        "unanswered_by_server": sum(1 for r in from_a if r.answered is None or r.answered > t_kill),
        "repaid_not_from_a": sorted({k for k, c in counts.items() if c > 1} - {_content(r) for r in from_a}),
        "b_done_after_kill_s": b_done_s,
        "concurrency": conc,
    }


# ---- endpoints that never give an HTTP answer ------------------------------------------------

DEAD_MODES = ("hung", "close", "garbage", "banner", "stalled_body")


class DeadEndpoint:
    """A raw TCP server on 127.0.0.1 that accepts connections and never answers HTTP:

    * hung: reads the request, never writes a byte;
    * close: closes each connection as soon as it is accepted (a non-HTTP service);
    * garbage: answers each request with bytes that are not HTTP (a TLS alert) and closes;
    * banner: writes an SSH banner on connect and waits, as an SSH server does;
    * stalled_body: sends a status line and headers promising a body that never comes (a live
      HTTP server, stuck mid-reply: not a dead endpoint).

    ``connections`` counts accepted connections."""

    def __init__(self, mode: str):
        if mode not in DEAD_MODES:
            raise ValueError(f"mode must be one of {DEAD_MODES}, got {mode!r}")
        self.mode = mode
        self.connections = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        mode = self.mode
        try:
            if mode == "close":
                writer.close()
                return
            if mode == "banner":
                writer.write(b"SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n")
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if mode == "garbage":
                    writer.write(b"\x15\x03\x01\x00\x02\x02\x46")  # a TLS "protocol version" alert
                    await writer.drain()
                    break
                if mode == "stalled_body":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{")
            writer.close()
        except (ConnectionError, asyncio.CancelledError):
            writer.close()

    def start(self) -> DeadEndpoint:
        ready = threading.Event()

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def serve():
                server = await asyncio.start_server(self._client, "127.0.0.1", 0, backlog=4096)
                self.port = server.sockets[0].getsockname()[1]
                return server

            server = loop.run_until_complete(serve())
            loop.call_soon(ready.set)
            loop.run_forever()
            server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name=f"dead-endpoint-{self.mode}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("dead endpoint did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> DeadEndpoint:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_time(base_url: str, n: int, limits: dict, cache: Path, name: str = "remote") -> dict:
    """Send ``n`` requests through LLMClient to ``base_url``: seconds until the run ended, and its
    error (None when it ended without one) and stats."""
    from bpo.llm import ChatRequest, client_from_mapping
    from bpo.llm.errors import EndpointUnreachable

    ep = {"backend": "openai", "base_url": base_url, "api_key_env": KEY_ENV, "limits": limits}
    client = client_from_mapping(ep, cache, "critique", name=name, progress=False)
    requests = [
        ChatRequest(model="gpt-3.5-turbo", messages=[{"role": "user", "content": f"pair {i}"}]) for i in range(n)
    ]
    t0 = time.monotonic()
    error = results = None
    try:
        results = client.run(requests)
    except EndpointUnreachable as exc:
        error = exc
    return {"seconds": time.monotonic() - t0, "error": error, "stats": client.last_stats, "results": results}


def critique_stage_stop(tmp: Path, base_url: str, n_pairs: int, limits: dict) -> dict:
    """The critique stage (bpo.critique.run_critique, as its Snakemake script calls it) with
    ``n_pairs`` pairs queued against ``base_url``: seconds until it stopped, and its error."""
    from bpo.critique import run_critique
    from bpo.llm.errors import EndpointUnreachable
    from bpo.schemas import PAIRS, write_table
    from bpo.settings import CritiqueSettings, EndpointSettings, LLMCall, LLMRuntime, endpoint_config
    from bpo.templates import template_sha256

    template = "builtin:critique.txt"
    pairs = tmp / "pairs.parquet"
    write_table(
        [
            {
                "pair_id": f"p{i}",
                "source": "alpaca_gpt4",
                "source_id": f"p{i}",
                "instruction": f"Give tip number {i} for studying.",
                "context": "",
                "good_response": f"Tip {i}: work in short blocks and take breaks.",
                "bad_response": "No.",
                "good_model": None,
                "bad_model": None,
                "language": "en",
                "num_turns": 1,
            }
            for i in range(n_pairs)
        ],
        pairs,
        PAIRS,
    )
    endpoint = EndpointSettings(
        name="remote", backend="openai", base_url=base_url, api_key_env=KEY_ENV, default_headers={}, local=None
    )
    call = LLMCall(
        endpoint=endpoint,
        model="gpt-3.5-turbo",
        temperature=0.9,
        top_p=1.0,
        max_tokens=512,
        seed=None,
        system_prompt=None,
    )
    settings = CritiqueSettings(call=call, template=template, template_sha256=template_sha256(template))
    ep = {"backend": "openai", "base_url": base_url, "api_key_env": KEY_ENV, "limits": dict(limits)}
    runtime = LLMRuntime.from_config(endpoint_config("remote", ep, cache=str(tmp / "llm.sqlite"), prices={}), "remote")
    t0 = time.monotonic()
    try:
        run_critique(settings, runtime, pairs_path=pairs, source="alpaca_gpt4", output=tmp / "critiques.parquet")
    except EndpointUnreachable as exc:
        return {"seconds": time.monotonic() - t0, "error": exc}
    return {"seconds": time.monotonic() - t0, "error": None}
