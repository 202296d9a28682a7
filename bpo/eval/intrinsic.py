"""Cheap intrinsic metrics: how close the optimizer's rewrites are to reference rewrites.

Only the BPO test set ships references (the rewrites its authors' pipeline produced). Two
overlap scores on lower-cased word tokens: token-F1 (bag of words, as in SQuAD) and ROUGE-L
F1 (longest common subsequence). The original prompt scored against the same reference is
the do-nothing baseline the optimizer should beat.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokens(text: str | None) -> list[str]:
    return _TOKEN.findall(text.lower()) if text else []


def token_f1(prediction: str | None, reference: str | None) -> float:
    pred, ref = tokens(prediction), tokens(reference)
    if not pred and not ref:
        return 1.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence length, O(len(a)*len(b)) time, O(len(b)) memory."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str | None, reference: str | None) -> float:
    pred, ref = tokens(prediction), tokens(reference)
    if not pred and not ref:
        return 1.0
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def similarity_summary(predictions: Sequence[str], references: Sequence[str], originals: Sequence[str]) -> dict:
    """Mean similarity of optimizer outputs (and of the unrewritten prompts) to the references."""
    if not (len(predictions) == len(references) == len(originals)):
        raise ValueError("predictions, references and originals must have the same length")
    n = len(references)
    if n == 0:
        return {"n": 0}
    mean = lambda xs: sum(xs) / n  # noqa: E731
    return {
        "n": n,
        "token_f1": mean([token_f1(p, r) for p, r in zip(predictions, references)]),
        "rouge_l": mean([rouge_l(p, r) for p, r in zip(predictions, references)]),
        "exact_match": mean([float(p.strip() == r.strip()) for p, r in zip(predictions, references)]),
        "baseline_token_f1": mean([token_f1(o, r) for o, r in zip(originals, references)]),
        "baseline_rouge_l": mean([rouge_l(o, r) for o, r in zip(originals, references)]),
        "unchanged": mean([float(p.strip() == o.strip()) for p, o in zip(predictions, originals)]),
    }
