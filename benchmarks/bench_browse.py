"""The results browser at paper scale: page weight and load time.

A synthetic evaluation of the paper's size (tests/browse_fixture.py, the newer layout): the four
test sets at their full sizes (Vicuna 80, Self-Instruct 252, Dolly 200, BPO test 200 items), four
optimizers (one of them ``identity``) and three targets, about 8,800 rows, with answers of
150-400 words and judge replies of 60-200 words. The benchmark builds browse.html, prints its
size raw and gzipped, then opens it from disk in headless Chromium (system chromedriver) and
prints, as the page's own performance marks measure them from navigation start: the data decoded
(gunzip + JSON parse) and the first page of rows rendered; then the time of a filter change and
of a free-text search over every row.

    python benchmarks/bench_browse.py [--scale 1.0] [--loads 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from browse_fixture import write_artifacts  # noqa: E402
from headless import chromium, missing_reason, wait_state  # noqa: E402

from bpo.browse import build_browse  # noqa: E402

PAPER_TESTSETS = {"vicuna_eval": 80, "self_instruct": 252, "dolly_eval": 200, "bpo_test": 200}
OPTIMIZERS = ["trained", "thudm_bpo", "llm_rewrite", "identity"]
TARGETS = ["gpt-3.5-turbo", "claude", "llama-2-13b-chat"]

MARKS_JS = """
const t = (n) => performance.getEntriesByName(n)[0].startTime;
return {decoded: t('bpo-decoded'), rendered: t('bpo-rendered')};
"""
FILTER_JS = """
const el = document.getElementById('f-outcome'); el.value = 'lose';
const t0 = performance.now(); el.dispatchEvent(new Event('change'));
const dt = performance.now() - t0; const n = document.getElementById('summary').dataset.n;
el.value = ''; el.dispatchEvent(new Event('change')); return [dt, Number(n)];
"""
SEARCH_JS = """
const t0 = performance.now(); const n = window.bpoBrowse.search(arguments[0]);
const dt = performance.now() - t0; window.bpoBrowse.search(''); return [dt, n];
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's test-set sizes")
    ap.add_argument("--loads", type=int, default=3, help="page loads to time (median printed)")
    ap.add_argument("--keep", help="write the artifacts and page here instead of a temporary folder")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        sizes = {ts: max(1, round(n * args.scale)) for ts, n in PAPER_TESTSETS.items()}
        t0 = time.perf_counter()
        paths = write_artifacts(
            root, sizes, OPTIMIZERS, TARGETS, layout="new", seed=0, answer_words=(150, 400), rationale_words=(60, 200)
        )
        t1 = time.perf_counter()
        html = root / "browse.html"
        size = build_browse(paths["optimized"], paths["answers"], paths["judgments"], [], html)
        t2 = time.perf_counter()
        rows = sum(sizes.values()) * len(OPTIMIZERS) * len(TARGETS)
        gz = len(gzip.compress(html.read_bytes(), 6))
        print(f"rows: {rows} ({len(sizes)} test sets x {len(OPTIMIZERS)} optimizers x {len(TARGETS)} targets)")
        print(f"synthetic artifacts written in {t1 - t0:.1f} s; browse.html built in {t2 - t1:.2f} s")
        print(f"page weight: {size:,} bytes ({size / 2**20:.1f} MiB), gzip {gz:,} bytes ({gz / 2**20:.1f} MiB)")
        reason = missing_reason()
        if reason:
            print(f"load time: skipped ({reason})")
            return 0
        decoded, rendered, filters, searches = [], [], [], []
        with chromium() as driver:
            for _ in range(args.loads):
                driver.get(html.as_uri())
                wait_state(driver, "ready", timeout=120)
                m = driver.execute_script(MARKS_JS)
                decoded.append(m["decoded"])
                rendered.append(m["rendered"])
                filters.append(driver.execute_script(FILTER_JS))
                searches.append(driver.execute_script(SEARCH_JS, "tasto"))
        med = statistics.median
        print(
            f"load time (median of {args.loads}, from navigation start): data decoded {med(decoded):.0f} ms, "
            f"first page of rows rendered {med(rendered):.0f} ms"
        )
        print(
            f"filter outcome=lose: {med(f[0] for f in filters):.0f} ms ({filters[0][1]} rows); "
            f"search over all rows: {med(s[0] for s in searches):.0f} ms ({searches[0][1]} rows match)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
