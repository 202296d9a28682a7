"""Language identification: bpo.language (lingua-language-detector, low-accuracy mode, with its
"und" rules) against the function-word heuristic the fallback detector used before it
(``_language`` of bpo/optimizer/fallback.py, 7 Latin-script languages, reproduced here as the
baseline), on a labelled multilingual set: accuracy, undetermined rate, wrong-guess rate and
texts per second of CPU, side by side in one run.

    python benchmarks/bench_langid.py [--repeat 3] [--high-accuracy]

The set, tests/data/langid_set.jsonl: 324 texts in 18 languages (en es fr de it pt nl pl tr vi
ru uk zh ja ko ar hi el: Latin, Cyrillic, Han, kana, Hangul, Arabic, Devanagari and Greek
scripts), 12 sentences ("long") and 6 word pairs ("short") each, drawn with random.Random(21)
from lingua-rs's held-out test data (github.com/pemistahl/lingua-rs @ 77e94d1a2a8e,
``language-models/<lang>/testdata/{sentences,word-pairs}.txt``, Apache-2.0; each row names its
file and line). That data is lingua's own evaluation set (kept apart from its training text by
its author), so lingua's figures on it may be optimistic against other text. Where
../shared/data holds the oasst1 sample, its prompter/assistant messages of 20+ characters
(labelled by the dataset, all "en") are measured too, read in place, never copied.
``--high-accuracy`` adds lingua's high-accuracy mode (0.9 GB of memory) for comparison.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import time
from collections import Counter
from pathlib import Path

from bpo.language import UNDETERMINED, detect
from bpo.optimizer.script_words import _FUNCTION

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "langid_set.jsonl"
OASST = ROOT.parent / "shared" / "data" / "raw" / "oasst1" / "validation.sample.jsonl"
_WORD = re.compile(r"\w+(?:['’]\w+)*", re.U)


def heuristic(text: str) -> str:
    """The replaced function-word profile (same thresholds): the language whose distinctive
    function words cover most words, if at least 15% and twice the runner-up."""
    lower = [w.lower() for w in _WORD.findall(text) if w.isalpha()]
    if len(lower) < 6:
        return UNDETERMINED
    shares = sorted(((sum(w in fw for w in lower) / len(lower), lang) for lang, fw in _FUNCTION.items()), reverse=True)
    (s1, best), (s2, _) = shares[0], shares[1]
    return best if s1 >= 0.15 and s1 >= 2 * s2 else UNDETERMINED


def lingua_high():
    from lingua import LanguageDetectorBuilder

    det = LanguageDetectorBuilder.from_all_languages().build()

    def run(text: str) -> str:
        lang = det.detect_language_of(text)
        return lang.iso_code_639_1.name.lower() if lang else UNDETERMINED

    return run


def measure(name: str, fn, rows: list[dict], repeat: int) -> None:
    start = time.perf_counter()
    fn(rows[0]["text"])  # loading the models counts once, reported apart
    load = time.perf_counter() - start
    cpu = time.process_time()
    for _ in range(repeat):
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()  # bpo.language remembers texts: each repeat identifies every text again
        preds = [fn(r["text"]) for r in rows]
    per_s = repeat * len(rows) / max(time.process_time() - cpu, 1e-9)
    for group in sorted({r["group"] for r in rows}):
        sel = [(p, r["lang"]) for p, r in zip(preds, rows) if r["group"] == group]
        n = len(sel)
        ok = sum(p == g for p, g in sel)
        und = sum(p == UNDETERMINED for p, _ in sel)
        print(
            f"{name:<22} {group:<14} {n:>4}  accuracy {ok / n:6.1%}  undetermined {und / n:6.1%}  "
            f"wrong {(n - ok - und) / n:6.1%}"
        )
    print(
        f"{name:<22} {'speed':<14} {per_s:8.0f} texts/s CPU; first call (model load) {load:.2f} s; "
        f"peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--high-accuracy", action="store_true")
    args = ap.parse_args()
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    for r in rows:
        r["group"] = f"set/{r['length']}"
    if OASST.exists():
        msgs = [json.loads(line) for line in OASST.read_text().splitlines() if line.strip()]
        rows += [{"text": m["text"], "lang": m["lang"], "group": "oasst1/en"} for m in msgs if len(m["text"]) >= 20]
    langs = Counter(r["lang"] for r in rows)
    print(f"{len(rows)} texts, {len(langs)} languages: {dict(langs)}")
    measure("heuristic (old)", heuristic, rows, args.repeat)
    measure("bpo.language (lingua)", detect, rows, args.repeat)
    if args.high_accuracy:
        measure("lingua high-accuracy", lingua_high(), rows, 1)
    # the old heuristic only knows 7 languages: its accuracy on the others is 0 by design
    seven = [r for r in rows if r["lang"] in _FUNCTION]
    for name, fn in (("heuristic (old)", heuristic), ("bpo.language (lingua)", detect)):
        ok = sum(fn(r["text"]) == r["lang"] for r in seven)
        print(f"{name:<22} on its 7 languages only ({len(seven)} texts): accuracy {ok / len(seven):.1%}")


if __name__ == "__main__":
    main()
