"""Shared benchmark parts: synthetic SFT data (written for this project) and the loopback upstream.

Example lengths are spread over the range the issue asks for (prompt + rewrite of 20-300
tokens), so padding waste is what real BPO data of mixed sources would show.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORDS = (
    "please explain describe the a of and to in how why what which give list write story poem "
    "email code python function sort numbers history science example steps clear detailed short "
    "answer question context user assistant helpful safe correct table summary reason compare "
    "volcano ocean planet market price energy health sleep travel recipe garden music language"
).split()


def synthetic_pairs(n: int, seed: int = 0, min_words: int = 20, max_words: int = 300) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        total = rng.randint(min_words, max_words)
        n_prompt = max(3, int(total * rng.uniform(0.3, 0.6)))
        prompt = " ".join(rng.choice(WORDS) for _ in range(n_prompt))
        optimized = " ".join(rng.choice(WORDS) for _ in range(max(3, total - n_prompt)))
        rows.append(
            {
                "pair_id": hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:16],
                "source": "alpaca_gpt4",
                "prompt": prompt,
                "optimized_prompt": optimized,
            }
        )
    return rows


def write_pairs(path: Path, n: int, seed: int = 0) -> Path:
    from bpo.schemas import SFT, write_table

    write_table(synthetic_pairs(n, seed), path, SFT)
    return path


def start_loopback(port_file: Path, latency: float | None = None) -> tuple[subprocess.Popen, str]:
    """tests/loopback_server.py (echo responder, nothing recorded) in its own process; its base URL
    without ``/v1``. ``latency``: seconds before each reply (none when None)."""
    cmd = [sys.executable, str(REPO / "tests" / "loopback_server.py"), "--responder", "echo", "--no-record"]
    if latency is not None:
        cmd += ["--latency", str(latency)]
    proc = subprocess.Popen([*cmd, "--port-file", str(port_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not port_file.exists():
        if proc.poll() is not None or time.time() - t0 > 30:
            raise SystemExit("loopback server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{int(port_file.read_text())}"
