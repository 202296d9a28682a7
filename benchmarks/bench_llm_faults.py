"""Figures for the LLM layer's fault handling (issues 11 and 18), in about five minutes.

* unreachable endpoint: seconds from start to the error for 2,000 requests through LLMClient
  (connection refused; the limits are the schema defaults: concurrency 16, timeout 120 s,
  6 retries, circuit_breaker_s 30);
* endpoints that accept connections but never answer HTTP (hung; accept and close; garbage
  bytes), the same 2,000 requests and limits: seconds to the error; and the critique stage with
  2,000 pairs against the hung one;
* a slow but live server (one answer every 50 s at concurrency 1, default limits otherwise):
  not stopped, every call answered;
* planted key: files containing the key after a run whose server echoes it in error texts
  (log, stdout, stderr, cache database and WAL, Parquet export);
* two processes sending the same 400 requests at once: calls paid;
* kill -9 of one of two runs mid-way: calls re-paid vs the killed run's calls in flight.

The cases themselves live in tests/llm_fault_cases.py (tests/test_llm_faults.py asserts on them).

Run: python benchmarks/bench_llm_faults.py [--pairs 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from llm_fault_cases import (  # noqa: E402
    KEY_ENV,
    SECRET,
    DeadEndpoint,
    closed_port_url,
    concurrent_runs,
    critique_stage_stop,
    kill_owner_run,
    planted_key_run,
    stop_time,
)
from loopback_server import LoopbackServer  # noqa: E402

from bpo.llm import ChatRequest, client_from_mapping  # noqa: E402
from bpo.llm.errors import EndpointUnreachable  # noqa: E402
from bpo.settings.config import load_schema  # noqa: E402


def schema_limits() -> dict:
    """The defaults bpo/resources/schema.yaml gives an endpoint's limits."""
    llm = load_schema()["properties"]["llm"]["properties"]
    props = llm["endpoints"]["additionalProperties"]["properties"]["limits"]["properties"]
    return {name: spec["default"] for name, spec in props.items() if "default" in spec}


def unreachable(tmp: Path, n: int) -> tuple[float, dict, str]:
    limits = schema_limits()
    endpoint = {"backend": "openai", "base_url": closed_port_url(), "api_key_env": KEY_ENV, "limits": limits}
    client = client_from_mapping(endpoint, tmp / "unreachable.sqlite", "critique", name="remote", progress=False)
    requests = [
        ChatRequest(model="gpt-3.5-turbo", messages=[{"role": "user", "content": f"pair {i}"}]) for i in range(n)
    ]
    t0 = time.monotonic()
    try:
        client.run(requests)
    except EndpointUnreachable as exc:
        return time.monotonic() - t0, limits, str(exc)
    raise SystemExit("no error from an unreachable endpoint")


def liveness(tmp: Path, n: int, slow_s: float) -> None:
    limits = schema_limits()
    for mode in ("hung", "close", "garbage"):
        with DeadEndpoint(mode) as srv:
            out = stop_time(srv.base_url, n, limits, tmp / f"{mode}.sqlite")
        verdict = f"error after {out['seconds']:.1f} s" if out["error"] else f"NO STOP ({out['seconds']:.1f} s)"
        print(f"{mode} endpoint, {n} requests through LLMClient (default limits): {verdict}")
        print(f"  {out['error']}")
    (tmp / "stage").mkdir()
    with DeadEndpoint("hung") as srv:
        out = critique_stage_stop(tmp / "stage", srv.base_url, n, limits)
    verdict = f"stopped after {out['seconds']:.1f} s" if out["error"] else f"NO STOP ({out['seconds']:.1f} s)"
    print(f"critique stage, {n} pairs queued, hung endpoint (default limits): {verdict}")
    with LoopbackServer(latency_s=slow_s, responder="echo") as srv:
        out = stop_time(srv.base_url, 2, {**limits, "max_concurrency": 1}, tmp / "slow.sqlite")
    statuses = [r.status for r in out["results"] or []]
    verdict = f"stopped: {out['error']}" if out["error"] else f"not stopped, answers {statuses}"
    print(
        f"slow live server, one answer every {slow_s:g} s at concurrency 1 (default limits otherwise), 2 requests: "
        f"{verdict} after {out['seconds']:.1f} s, {out['stats'].get('probes')} liveness probes"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2000, help="requests sent to the unreachable endpoint")
    ap.add_argument("--slow-s", type=float, default=50.0, help="seconds per answer of the slow live server")
    ap.add_argument("--only-liveness", action="store_true", help="only the unreachable/hung/non-HTTP/slow cases")
    args = ap.parse_args()
    os.environ[KEY_ENV] = SECRET
    with tempfile.TemporaryDirectory(prefix="bpo-faults-") as tmp_s:
        tmp = Path(tmp_s)
        for sub in ("unreachable", "liveness", "planted", "concurrent", "kill"):
            (tmp / sub).mkdir()
        seconds, limits, message = unreachable(tmp / "unreachable", args.pairs)
        print(
            f"unreachable endpoint, {args.pairs} requests through LLMClient (limits {limits}): "
            f"error after {seconds:.1f} s"
        )
        print(f"  {message}")
        liveness(tmp / "liveness", args.pairs, args.slow_s)
        if args.only_liveness:
            return
        planted = planted_key_run(tmp / "planted")
        files = sorted(p.name for p in planted["dir"].iterdir())
        print(
            f"planted key echoed by the server in {planted['echoed']} replies: {len(planted['hits'])} hits "
            f"in {len(files)} files the run wrote ({', '.join(files)})"
        )
        both = concurrent_runs(tmp / "concurrent", n=400, conc=16)
        print(
            f"two concurrent runs of the same 400 requests: {both['paid']} calls paid "
            f"(sent / awaited from the other run / found cached at the start: run A {both['sent'][0]} / "
            f"{both['awaited'][0]} / {both['cached'][0]}, run B {both['sent'][1]} / {both['awaited'][1]} / "
            f"{both['cached'][1]})"
        )
        kill = kill_owner_run(tmp / "kill", n=200, conc=8)
        print(
            f"kill -9 of one of two runs of the same 200 requests (concurrency 8): the other completed "
            f"{kill['b_done_after_kill_s']:.1f} s after the kill; {kill['repaid']} calls re-paid, "
            f"{kill['in_flight']} of the killed run's calls were in flight at the kill (sent, answer not "
            f"stored; {kill['unanswered_by_server']} not yet answered by the server) "
            f"({kill['paid']} paid for {kill['distinct']} distinct)"
        )


if __name__ == "__main__":
    main()
