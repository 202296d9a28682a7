"""Benchmark: the hh-rlhf data stage at full size (160,800 rows, the size of the hub train split).

The input is built by repeating the real sample in ../shared/data/raw/hh-rlhf (300 rows) with
a copy tag in the first Human turn, so every row, and every pair, is unique. Each case runs
``bpo.pairs.build_source_pairs`` end to end (read with datasets, parse, clean, ids, sample,
write Parquet and stats), pinned to 2 CPUs; the read and the parse are also timed alone.

    python benchmarks/bench_pairs.py [--rows 160800] [--repeat 3]

Target: the full size in under 10 s on 2 cores (single-turn default).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from bpo.pairs import build_source_pairs
from bpo.readers import read_dataset
from bpo.settings import PairsSourceSettings, load_config
from bpo.sources import hh_rlhf

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "raw" / "hh-rlhf" / "harmless-base-test.sample.jsonl"
FULL_SIZE = 160_800
TARGET_S = 10.0
CLEANING = {
    "seed": 42,
    "min_chars": 1,
    "max_instruction_chars": 4000,
    "max_context_chars": 8000,
    "max_response_chars": 8000,
}


def source_settings(path, **options) -> PairsSourceSettings:
    config = load_config(overrides={"sources": {"hh_rlhf": {"path": str(path), **options}}, "pairs": CLEANING})
    return PairsSourceSettings.from_config(config, "hh_rlhf")


def pin_two_cores() -> str:
    pa.set_cpu_count(2)
    pa.set_io_thread_count(2)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:2]
        os.sched_setaffinity(0, cpus)
        return f"CPUs {cpus}"
    return "2 Arrow threads (no CPU affinity on this OS)"


def build_input(path: Path, rows: int, malformed: bool = False) -> None:
    sample = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            rec = sample[i % len(sample)]
            tag = f"\n\nHuman: [copy {i // len(sample)}] "
            fh.write(json.dumps({k: rec[k].replace("\n\nHuman: ", tag, 1) for k in ("chosen", "rejected")}) + "\n")
        if malformed:  # one wrong-typed record sends the reader to its record-by-record path
            fh.write(json.dumps({"chosen": 42, "rejected": "x"}) + "\n")


def timed(fn, repeat: int) -> tuple[list[tuple[float, float]], object]:
    """(wall, CPU) seconds per run; CPU time shows how much of the wall time was waiting for
    a core on a shared machine."""
    times, out = [], None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append((time.perf_counter() - w0, time.process_time() - c0))
    return times, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=FULL_SIZE)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not SAMPLE.exists():
        print(f"skipped: real sample not found at {SAMPLE}")
        return 0
    logging.basicConfig(level=logging.ERROR)
    where = pin_two_cores()
    print(f"hh-rlhf pairs benchmark: {args.rows:,} rows, {where}, best and median of {args.repeat}")
    if hasattr(os, "getloadavg"):
        print("load average before: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))

    with tempfile.TemporaryDirectory(prefix="bench-pairs-") as tmp:
        tmp = Path(tmp)
        clean, broken = tmp / "train.jsonl", tmp / "train-malformed.jsonl"
        build_input(clean, args.rows)
        build_input(broken, args.rows, malformed=True)
        print(f"input: {clean.stat().st_size / 2**20:,.0f} MiB of JSON lines")

        read_times, raw = timed(lambda: read_dataset(path=clean, hub_id=None, features=hh_rlhf.FEATURES), args.repeat)
        parse_times, parsed = timed(lambda: hh_rlhf.parse(raw.table), args.repeat)

        def run(path, **settings):
            return lambda: build_source_pairs(
                source_settings(path, **settings),
                pairs_path=tmp / "out.parquet",
                stats_path=tmp / "out.stats.json",
            )

        cases = [
            ("read only (datasets, typed)", read_times, raw.table.num_rows, None),
            ("parse only (single-turn)", parse_times, args.rows, len(parsed.pairs)),
        ]
        for label, path, settings in [
            ("end to end, single-turn (default)", clean, {}),
            ("end to end, multi_turn: true", clean, {"multi_turn": True}),
            ("end to end, 1 malformed record", broken, {}),
        ]:
            times, stats = timed(run(path, **settings), args.repeat)
            cases.append((label, times, stats["records_read"], stats["pairs"]))

    print(f"{'case':36} {'best s':>7} {'median s':>8} {'CPU s':>6} {'rows/s':>9} {'pairs':>7} {'pairs/s':>8}")
    for label, times, rows, pairs in cases:
        wall = [w for w, _ in times]
        best, med, cpu = min(wall), statistics.median(wall), statistics.median(c for _, c in times)
        pairs_s = f"{pairs / med:8,.0f}" if pairs is not None else f"{'':>8}"
        shown = pairs if pairs is not None else ""
        print(f"{label:36} {best:7.2f} {med:8.2f} {cpu:6.2f} {rows / med:9,.0f} {shown:>7} {pairs_s}")
    if hasattr(os, "getloadavg"):
        print("load average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    main_case = statistics.median(w for w, _ in cases[2][1])
    verdict = "met" if main_case < TARGET_S else "MISSED"
    print(
        f"target: {args.rows:,} rows end to end in < {TARGET_S:.0f} s on 2 cores: {main_case:.2f} s (median), {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
