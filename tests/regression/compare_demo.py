#!/usr/bin/env python3
"""Run the demo (`snakemake --cores N`, the embedded default config) on two versions of the repo and
compare every Parquet artifact row for row.

    python3 tests/regression/compare_demo.py c37fa41            # that commit vs the working tree
    python3 tests/regression/compare_demo.py c37fa41 main       # two commits
    python3 tests/regression/compare_demo.py --old-tree /tmp/old --reuse-cache HEAD
        # an already-run tree as the old side; the new side starts from its LLM cache and the script
        # reports how many LLM calls the new version paid (0 when request keys did not change)

Each version runs in its own temp copy with its own LLM cache and imports its own ``bpo`` package.
Columns that measure wall time (``tokens_per_second``) are left out of the comparison: they differ
between any two runs. Parquet key-value metadata (provenance) is not compared either.
Exit status 0 when every artifact matches.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
TIMING_COLUMNS = {"tokens_per_second"}


def checkout(rev: str, dest: Path) -> None:
    """``rev`` (a commit) or ``WORKTREE`` (tracked + untracked, not ignored) copied into ``dest``."""
    dest.mkdir(parents=True)
    if rev == "WORKTREE":
        files = (
            subprocess.run(
                ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True, capture_output=True
            )
            .stdout.decode()
            .split("\0")
        )
        for name in filter(None, files):
            src = REPO / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
        return
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def run_demo(tree: Path, cores: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores)], cwd=tree, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"demo failed in {tree}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return time.monotonic() - start


def cached_calls(tree: Path) -> int:
    """Rows in the LLM cache's ``calls`` table (one per answered request key)."""
    import sqlite3

    path = tree / ".bpo-cache" / "llm.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def artifacts(tree: Path) -> dict[str, Path]:
    """Parquet files under results/, keyed by their path below the results root. A tree that writes
    under a per-config root (results/<run_name>/...) is keyed without that level."""
    root = tree / "results"
    found = {str(p.relative_to(root)): p for p in root.rglob("*.parquet")}
    return found


def align(old: dict[str, Path], new: dict[str, Path]) -> dict[str, Path]:
    """Map new keys onto old ones when the new tree adds a leading results level (results/<run>/)."""
    if set(old) & set(new):
        return new
    prefixes = {k.split("/", 1)[0] for k in new}
    for prefix in prefixes:
        stripped = {k.split("/", 1)[1]: v for k, v in new.items() if k.startswith(prefix + "/")}
        if set(stripped) & set(old):
            return stripped
    return new


def compare(a: Path, b: Path) -> tuple[int, str]:
    ta, tb = pq.read_table(a), pq.read_table(b)
    cols_a = [c for c in ta.column_names if c not in TIMING_COLUMNS]
    cols_b = [c for c in tb.column_names if c not in TIMING_COLUMNS]
    if cols_a != cols_b:
        return ta.num_rows, f"columns differ: {cols_a} vs {cols_b}"
    if ta.num_rows != tb.num_rows:
        return ta.num_rows, f"rows differ: {ta.num_rows} vs {tb.num_rows}"
    ra, rb = ta.select(cols_a).to_pylist(), tb.select(cols_b).to_pylist()
    for i, (x, y) in enumerate(zip(ra, rb)):
        if x != y:
            diff = [c for c in cols_a if x[c] != y[c]]
            return ta.num_rows, f"row {i} differs in {diff}"
    return ta.num_rows, "identical"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", nargs="?", help="commit to compare against (or --old-tree)")
    ap.add_argument("--old-tree", type=Path, help="an already-run tree (e.g. one kept with --keep) as the old side")
    ap.add_argument(
        "--reuse-cache",
        action="store_true",
        help="start the new run from the old tree's LLM cache and report the calls it paid",
    )
    ap.add_argument("new", nargs="?", default="WORKTREE", help="commit, or WORKTREE (default)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temp trees")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="bpo-compare-"))
    if args.old_tree is not None and args.old is not None and args.new == "WORKTREE":
        args.old, args.new = None, args.old  # with --old-tree, the one positional is the new side
    if (args.old is None) == (args.old_tree is None):
        ap.error("give either OLD (a commit) or --old-tree")
    trees = {}
    for label, rev in (("old", args.old), ("new", args.new)):
        if label == "old" and args.old_tree:
            trees["old"] = args.old_tree.resolve()
            print(f"old: {trees['old']} (already run)", flush=True)
            continue
        trees[label] = base / label
        checkout(rev, trees[label])
        before = 0
        if label == "new" and args.reuse_cache:
            (trees["new"] / ".bpo-cache").mkdir(exist_ok=True)
            for f in (trees["old"] / ".bpo-cache").glob("llm.sqlite*"):
                shutil.copy2(f, trees["new"] / ".bpo-cache" / f.name)
            before = cached_calls(trees["new"])
        print(f"{label}: {rev}: demo ran in {run_demo(trees[label], args.cores):.0f} s", flush=True)
        if label == "new" and args.reuse_cache:
            print(
                f"new: LLM calls paid with the old cache: {cached_calls(trees['new']) - before} (cache held {before})",
                flush=True,
            )
    old, new = artifacts(trees["old"]), artifacts(trees["new"])
    new = align(old, new)
    bad = 0
    print(f"\n{'artifact':<55} {'rows':>6}  result")
    for key in sorted(set(old) | set(new)):
        if key not in old or key not in new:
            bad += 1
            print(f"{key:<55} {'':>6}  only in {'new' if key in new else 'old'}")
            continue
        rows, verdict = compare(old[key], new[key])
        bad += verdict != "identical"
        print(f"{key:<55} {rows:>6}  {verdict}")
    print(f"\n{len(set(old) & set(new))} artifacts compared, {bad} differ")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"trees kept in {base}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
