"""Throughput of the LLM layer against a slow OpenAI-compatible server.

A loopback server (tests/loopback_server.py) runs in a SEPARATE process and answers every
chat-completions call after 500 ms. Measured side by side in one run:

* LLMClient (the real path: AsyncOpenAI, cache lookups and SQLite writes, limits, progress
  bookkeeping) at concurrency 1, 64 and 256, each on a fresh cache so every call is sent;
* a bare AsyncOpenAI loop (chat.completions.create under a semaphore, default HTTP stack) at
  64 and 256, for reference;
* a one-at-a-time loop with the plain sync OpenAI client (what the original BPO code does);
* a fully cached rerun of 14,000 requests (no call reaches the server).

Prompts are critique prompts built from bpo/resources/templates/critique.txt (~2 KB each). The server
uses its lean echo responder (~0.2 ms of CPU per request; it shares the machine's CPUs with
the client, so it must stay cheap to act as "the network").
Targets: >= 90% of the ideal (concurrency / latency) at 64, >= 80% at 256, >= 50x the
one-at-a-time loop, cached rerun of 14,000 in < 10 s.

Run: python benchmarks/bench_llm_throughput.py [--latency 0.5] [--cached 14000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import openai  # noqa: E402
from bench_common import start_loopback  # noqa: E402

from bpo.llm import ChatRequest, client_from_mapping  # noqa: E402

KEY_ENV = "BPO_BENCH_API_KEY"


def start_server(latency: float, tmp: Path) -> tuple[subprocess.Popen, str]:
    proc, url = start_loopback(tmp / "port", latency)
    return proc, url + "/v1"


def process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def server_call(base_url: str, path: str, payload: dict | None = None) -> dict:
    url = base_url.rsplit("/v1", 1)[0] + path
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        url, data=data, method="POST" if data else "GET", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def critique_template() -> str:
    text = (REPO / "bpo" / "resources" / "templates" / "critique.txt").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    # no context in the benchmark pairs: drop the conditional blocks
    out, skip = [], False
    for line in body.splitlines():
        if line.strip() == "{if_context}":
            skip = True
            continue
        if line.strip() == "{end_if_context}":
            skip = False
            continue
        if not skip:
            out.append(line)
    return "\n".join(out)


def make_requests(n: int, tag: str, template: str) -> list[ChatRequest]:
    reqs = []
    for i in range(n):
        content = (
            template.replace("{instruction}", f"[{tag} {i}] Explain how a refrigerator keeps food cold.")
            .replace("{bad_response}", "It makes things cold with electricity. " * 6)
            .replace(
                "{good_response}",
                "A refrigerator moves heat out of the cabinet with a vapour-"
                "compression cycle: the refrigerant evaporates inside, absorbing heat, and the "
                "compressor and condenser release it outside. " * 3,
            )
        )
        reqs.append(
            ChatRequest(
                model="gpt-3.5-turbo",
                messages=[{"role": "user", "content": content}],
                temperature=0.9,
                top_p=1.0,
                max_tokens=1024,
            )
        )
    return reqs


def bench_client(base_url: str, cache: Path, conc: int, reqs: list[ChatRequest]) -> dict:
    endpoint = {
        "backend": "openai",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "limits": {"max_concurrency": conc, "timeout_s": 60, "max_retries": 2},
    }
    client = client_from_mapping(endpoint, cache, "bench", progress=True)  # the bar's bookkeeping is part of the cost
    c0 = time.process_time()
    t0 = time.perf_counter()
    results = client.run(reqs)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    bad = [r for r in results if r.status != "ok" or r.cached]
    if bad:
        raise SystemExit(f"benchmark run had {len(bad)} failed or cached results: {bad[0]}")
    return {"n": len(reqs), "seconds": dt, "rps": len(reqs) / dt, "cpu_ms_per_call": cpu / len(reqs) * 1e3}


def fill_cache(path: Path, reqs: list[ChatRequest]) -> None:
    from bpo.llm.cache import Cache, result_row
    from bpo.llm.standin import completion

    rows = []
    for r in reqs:
        reply = completion(r.body)
        text = reply["choices"][0]["message"]["content"]
        rows.append(
            result_row(
                key=r.key,
                backend="openai",
                stage="bench",
                model=r.model,
                request=r.body_json,
                status="ok",
                text=text,
                choices=(text,),
                finish_reason="stop",
                prompt_tokens=reply["usage"]["prompt_tokens"],
                completion_tokens=reply["usage"]["completion_tokens"],
                error=None,
                response_model=r.model,
                latency_s=0.5,
                attempts=1,
            )
        )
    with Cache(path) as cache:
        cache.put_many(rows)


def bench_bare_async(base_url: str, conc: int, reqs: list[ChatRequest]) -> dict:
    async def main():
        client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=os.environ[KEY_ENV],
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(
                limits=__import__("httpx2").Limits(max_connections=conc, max_keepalive_connections=conc)
            ),
        )
        sem = asyncio.Semaphore(conc)

        async def one(r):
            async with sem:
                out = await client.chat.completions.create(**r.body)
                return out.choices[0].message.content

        t0 = time.perf_counter()
        await asyncio.gather(*(one(r) for r in reqs))
        dt = time.perf_counter() - t0
        await client.close()
        return dt

    c0 = time.process_time()
    dt = asyncio.run(main())
    return {
        "n": len(reqs),
        "seconds": dt,
        "rps": len(reqs) / dt,
        "cpu_ms_per_call": (time.process_time() - c0) / len(reqs) * 1e3,
    }


def bench_one_at_a_time(base_url: str, reqs: list[ChatRequest]) -> dict:
    client = openai.OpenAI(base_url=base_url, api_key=os.environ[KEY_ENV], max_retries=0)
    t0 = time.perf_counter()
    for r in reqs:
        _ = client.chat.completions.create(**r.body).choices[0].message.content
    dt = time.perf_counter() - t0
    client.close()
    return {"n": len(reqs), "seconds": dt, "rps": len(reqs) / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.5, help="server latency per call, seconds")
    ap.add_argument("--cached", type=int, default=14000, help="requests in the fully cached rerun")
    ap.add_argument("--rounds", type=int, default=4, help="requests per worker at concurrency 64/256")
    ap.add_argument("--repeat", type=int, default=2, help="runs per concurrent level (best is reported)")
    args = ap.parse_args()
    os.environ[KEY_ENV] = "sk-bench-not-a-real-key"
    template = critique_template()
    lat = args.latency
    with tempfile.TemporaryDirectory(prefix="bpo-bench-") as tmp_s:
        tmp = Path(tmp_s)
        proc, base_url = start_server(lat, tmp)
        try:
            figures = {}
            print(
                f"loopback server (separate process, pid {proc.pid}) at {base_url}, latency {lat * 1000:.0f} ms; "
                f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the start"
            )
            # warm-up (imports, first connections) so no level pays it
            bench_client(base_url, tmp / "warm.sqlite", 8, make_requests(16, "warm", template))

            loop_n = 8
            figures["loop"] = bench_one_at_a_time(base_url, make_requests(loop_n, "loop", template))
            # best of --repeat runs per level: other processes on a shared machine add noise
            for conc in (1, 64, 256):
                n = 8 if conc == 1 else conc * args.rounds
                runs = [
                    bench_client(
                        base_url, tmp / f"c{conc}-{k}.sqlite", conc, make_requests(n, f"c{conc}-{k}", template)
                    )
                    for k in range(1 if conc == 1 else args.repeat)
                ]
                figures[f"client@{conc}"] = max(runs, key=lambda f: f["rps"])
            for conc in (64, 256):
                runs = [
                    bench_bare_async(base_url, conc, make_requests(conc * args.rounds, f"bare{conc}-{k}", template))
                    for k in range(args.repeat)
                ]
                figures[f"bare@{conc}"] = max(runs, key=lambda f: f["rps"])

            # fully cached rerun: the cache is filled with the rows the client writes for these
            # requests (answers from the stand-in generator the server uses; filling it through
            # the server would only add minutes), then a fresh client reruns them all
            cached_reqs = make_requests(args.cached, "cached", template)
            fill_t = time.perf_counter()
            fill_cache(tmp / "cached.sqlite", cached_reqs)
            fill_s = time.perf_counter() - fill_t
            server_cpu = process_cpu_s(proc.pid)
            before = server_call(base_url, "/stats")["total"]
            client = client_from_mapping(
                {"backend": "openai", "base_url": base_url, "api_key_env": KEY_ENV, "limits": {"max_concurrency": 64}},
                tmp / "cached.sqlite",
                "bench",
                progress=False,
            )
            t0 = time.perf_counter()
            rerun_reqs = make_requests(args.cached, "cached", template)
            build_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            results = client.run(rerun_reqs)
            run_s = time.perf_counter() - t1
            after = server_call(base_url, "/stats")["total"]
            server_requests = before
            assert all(r.cached and r.status == "ok" for r in results), "cached rerun returned uncached results"
            assert after == before, f"cached rerun sent {after - before} calls to the server"
        finally:
            proc.terminate()
            proc.wait(10)

    loop = figures["loop"]
    print()
    print(
        f"{'run':<22}{'conc':>6}{'calls':>8}{'seconds':>9}{'req/s':>9}{'ideal':>8}{'of ideal':>10}"
        f"{'x loop':>8}{'cpu ms/call':>13}"
    )
    rows = [("one-at-a-time (sync)", 1, loop)]
    rows += [("LLMClient", c, figures[f"client@{c}"]) for c in (1, 64, 256)]
    rows += [("bare AsyncOpenAI", c, figures[f"bare@{c}"]) for c in (64, 256)]
    for name, conc, f in rows:
        ideal = conc / lat
        cpu = f.get("cpu_ms_per_call")
        print(
            f"{name:<22}{conc:>6}{f['n']:>8}{f['seconds']:>9.2f}{f['rps']:>9.1f}{ideal:>8.0f}"
            f"{f['rps'] / ideal:>9.0%} {f['rps'] / loop['rps']:>7.1f}x{'' if cpu is None else f'{cpu:>12.2f}'}"
        )
    print()
    r64 = figures["client@64"]["rps"] / (64 / lat)
    r256 = figures["client@256"]["rps"] / (256 / lat)
    speedup = figures["client@256"]["rps"] / loop["rps"]
    total_cached = build_s + run_s
    print(
        f"fully cached rerun of {args.cached} requests: {run_s:.2f} s in client.run "
        f"(+ {build_s:.2f} s building the requests = {total_cached:.2f} s); 0 calls reached the server "
        f"(cache of {args.cached} rows written in {fill_s:.1f} s)"
    )
    print()
    checks = [
        (f"LLMClient at 64: {r64:.0%} of ideal", r64 >= 0.90, ">= 90%"),
        (f"LLMClient at 256: {r256:.0%} of ideal", r256 >= 0.80, ">= 80%"),
        (f"LLMClient at 256 vs one-at-a-time loop: {speedup:.0f}x", speedup >= 50, ">= 50x"),
        (f"cached rerun of {args.cached}: {total_cached:.2f} s", total_cached < 10, "< 10 s"),
    ]
    for text, ok, target in checks:
        print(f"[{'PASS' if ok else 'MISS'}] {text} (target {target})")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end; the server "
        f"process shares them ({server_cpu / max(server_requests, 1) * 1e3:.2f} ms of server CPU per request)"
    )


if __name__ == "__main__":
    main()
