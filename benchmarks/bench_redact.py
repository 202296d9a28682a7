"""Benchmark: the cost of ``bpo.redact.redact`` on one 2 KB model reply.

redact() runs on every reply the LLM client stores or returns, every log write and (in the
proxy) every response, so it must be cheap. Side by side in one run, on the same texts:

* ``before``: the previous algorithm, restated here (every call re-read the whole environment
  for secret values, then ran a ``\\b``-led alternation of the key shapes),
* ``now``: ``bpo.redact.redact`` (secret values recomputed only when the registrations or the
  environment change and found with ``str.__contains__``; the shape regex starts at characters
  rare in prose and is skipped for text holding none of them).

Texts (2 KB each): real GPT-4 replies (../shared/data alpaca-gpt4 sample, joined and cut into
2 KB pieces; the project's demo answers where that folder is absent), the same with a
configured key and an ``sk-`` key echoed into each, and synthetic prose without any of the
characters the shapes start at ("-", "_", "A", "B"). Four configured keys are registered, as in
a config with a few endpoints.

    python benchmarks/bench_redact.py [--n 20000]

Target: well under 50 us per 2 KB reply (a reply costs ~1 s to get from a model).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import string
import time
from pathlib import Path

from bpo import redact


def _before(text: str) -> str:
    """The previous redact(): environment scan on every call, then the \\b-led shape regex."""
    found = set()
    for name, value in os.environ.items():
        if name in redact._env_names or redact._SECRET_NAME.search(name):
            if len(value.strip()) >= redact.MIN_SECRET_LEN:
                found.add(value.strip())
    for value in sorted(found | redact._values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, redact.MASK)
    return _BEFORE_SHAPES.sub(redact.MASK, text)


_BEFORE_SHAPES = re.compile(
    r"\bsk-[A-Za-z0-9_\-]{8,}|\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/\-]{8,}=*|\bhf_[A-Za-z0-9]{8,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}|\bAKIA[0-9A-Z]{16}\b"
    r"|\bAIza[0-9A-Za-z_\-]{30,}|\bxox[abprs]-[A-Za-z0-9\-]{10,}"
)

WORDS = (
    "the a of and to in how why what which give list write explain clear detailed short answer question "
    "context user assistant helpful safe correct summary reason compare prompt better specific steps example "
    "should include format tone audience length"
).split()


def _key(n: int = 40) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def _replies() -> tuple[str, list[str]]:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw" / "alpaca-gpt4" / "alpaca_gpt4.sample.json"
    if shared.exists():
        where, rows = "GPT-4 replies (shared data)", json.loads(shared.read_text())
    else:
        demo = Path(__file__).resolve().parents[1] / "resources" / "demo" / "alpaca-gpt4" / "alpaca_gpt4.json"
        where, rows = "demo answers", json.loads(demo.read_text())
    joined = "\n\n".join(str(r.get("output") or "") for r in rows)
    return where, [joined[i : i + 2048] for i in range(0, len(joined) - 2047, 2048)]


def _per_call_us(fn, texts: list[str], n: int) -> float:
    reps = max(1, n // len(texts))
    t = time.perf_counter()
    for _ in range(reps):
        for text in texts:
            fn(text)
    return (time.perf_counter() - t) / (reps * len(texts)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="calls per case")
    args = ap.parse_args()
    rng = random.Random(0)
    keys = {f"BENCH_ENDPOINT_{i}_CRED": _key() for i in range(4)}
    os.environ.update(keys)
    redact.register_env(*keys)
    where, replies = _replies()
    echo = f" key {keys['BENCH_ENDPOINT_2_CRED']} and sk-proj-{_key(32)} "
    echoed = [(r[:1000] + echo + r[1000:])[:2048] for r in replies]
    plain = [" ".join(rng.choice(WORDS) for _ in range(600))[:2048]]
    for text in echoed:
        assert _before(text) == redact.redact(text) and text.count(redact.MASK) == 0
        assert redact.redact(text).count(redact.MASK) == 2
    print(
        f"environment: {len(os.environ)} variables, {len(redact.secrets())} secret values; "
        f"{os.cpu_count()} CPUs (shared with other work: compare the columns, measured side by side)"
    )
    print(f"{'text (2 KB)':<44}{'before us':>10}{'now us':>10}{'speed-up':>10}")
    for name, texts in (
        (f"{where}, {len(replies)} pieces", replies),
        ("the same, two keys echoed", echoed),
        ("prose without - _ A B", plain),
    ):
        for t in texts:
            _before(t), redact.redact(t)  # warm up (compiles the patterns)
        b = _per_call_us(_before, texts, args.n)
        a = _per_call_us(redact.redact, texts, args.n)
        print(f"{name:<44}{b:>10.1f}{a:>10.1f}{b / a:>9.1f}x")


if __name__ == "__main__":
    main()
