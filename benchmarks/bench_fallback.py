"""CPU time of the optimizer-output check (bpo.optimizer.fallback.degenerate_reason) per output,
on the labelled calibration set in tests/data (real SmolLM2 outputs and tiny-model gibberish).

    python benchmarks/bench_fallback.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bpo.language import detect
from bpo.optimizer.fallback import degenerate_reason

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "fallback_calibration.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    degenerate_reason("Explain this.", False, "Explique isso.")  # the language models load once, not timed
    start = time.process_time()  # CPU time: robust to other jobs on shared cores
    for _ in range(args.repeat):
        detect.cache_clear()  # each repeat identifies every text again
        for r in rows:
            degenerate_reason(r["output"], r["hit_limit"], r["prompt"])
    per = (time.process_time() - start) / (args.repeat * len(rows))
    chars = sum(len(r["output"]) + len(r["prompt"]) for r in rows) / len(rows)
    print(
        f"degenerate_reason: {per * 1e3:.3f} ms CPU per output ({len(rows)} outputs x {args.repeat}, "
        f"mean prompt+output {chars:.0f} chars)"
    )


if __name__ == "__main__":
    main()
