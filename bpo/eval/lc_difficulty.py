"""Per-item difficulty for AlpacaEval's length-controlled GLM (``eval.report.lc.difficulty``).

``joint``: AlpacaEval estimates an instruction's difficulty once, by one logistic GLM fitted
jointly over every model compared with the same baseline on the same instructions:

    logit P(prefer) = θ_r · tanh(Δlen / sd_r(Δlen)) + β_r + δ_i

with a length slope θ_r and an intercept β_r per row r (here: per optimizer × target on one test
set) and one term δ_i per item, shared by all rows; δ is the difficulty (sd_r: the row's sample
standard deviation, uncentred, as in the per-row fit). Only differences between items matter
downstream (the per-row fit has its own scale γ and intercept β), so δ is returned centred.
The fit is AlpacaEval's own (its notebook ``instruction_difficulty.ipynb``): scikit-learn's
L1-penalised logistic regression (liblinear, no global intercept), the penalty strength chosen
from 10 values by 5-fold cross-validation over pairs (GroupKFold) on the fractional log-loss,
with fractional preferences entered as two weighted copies of each pair (label 1 with weight p,
label 0 with weight 1 − p). As there, the items are dummy-coded against the first item (the first
row's first item), and a column of ones shared by all rows sits beside the per-row intercepts
(AlpacaEval's ``not_gamed_baseline`` term; with an L1 penalty it is not redundant). The L1 penalty
also keeps δ finite where an item is won or lost by every row (separation).

File: a CSV with a header naming ``item_id`` and ``difficulty`` (and optionally ``testset``,
for a file that covers several test sets); one row per item.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

JOINT_FOLDS = 5  # AlpacaEval's n_splits
JOINT_SEED = 123  # AlpacaEval's random_state for liblinear


def joint_difficulty(rows: Sequence[tuple[Sequence[str], Sequence[float], Sequence[float]]]) -> dict[str, float]:
    """Item difficulty δ (centred) from the joint GLM over ``rows``: each row is (item ids,
    preferences for the row's answer in [0, 1], fractional ones kept, length differences in
    characters). Needs at least two rows: with one, δ and the row's own terms are the same thing."""
    import scipy.sparse

    if len(rows) < 2:
        raise ValueError(f"a joint difficulty needs at least 2 rows sharing the items, got {len(rows)}")
    items = list(dict.fromkeys(i for r in rows for i in r[0]))  # first item: the dummy coding's reference
    col = {item: k for k, item in enumerate(items)}
    n_rows = len(rows)
    ys, xs, row_of, item_of = [], [], [], []
    for r, (ids, prefs, diff) in enumerate(rows):
        diff = np.asarray(diff, dtype=float)
        y = np.asarray(prefs, dtype=float)
        if not (len(ids) == len(y) == len(diff)) or len(y) == 0:
            raise ValueError(
                f"row {r}: item ids, preferences and length differences must be non-empty and of one length"
            )
        if np.any(~np.isfinite(y) | (y < 0) | (y > 1)) or np.any(~np.isfinite(diff)):
            raise ValueError(f"row {r}: preferences must lie in [0, 1] and lengths must be numbers")
        sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
        ys.append(y)
        xs.append(np.tanh(diff / sd) if sd > 0 else np.zeros_like(diff))
        row_of.append(np.full(len(y), r))
        item_of.append(np.array([col[i] for i in ids]))
    y, x, row_of, item_of = (np.concatenate(v) for v in (ys, xs, row_of, item_of))
    n = len(y)
    # columns: θ_r (n_rows), β_r (n_rows), the shared ones column, δ_i of every item but the first
    other = item_of > 0
    design = scipy.sparse.csr_matrix(
        (
            np.concatenate([x, np.ones(n), np.ones(n), np.ones(int(other.sum()))]),
            (
                np.concatenate([np.tile(np.arange(n), 3), np.flatnonzero(other)]),
                np.concatenate([row_of, n_rows + row_of, np.full(n, 2 * n_rows), 2 * n_rows + item_of[other]]),
            ),
        ),
        shape=(n, 2 * n_rows + len(items)),
    )
    coef = _fit_l1_cv(design, y)
    delta = np.concatenate([[0.0], coef[2 * n_rows + 1 :]])
    delta = delta - delta.mean()
    return {item: float(v) for item, v in zip(items, delta)}


def _fit_l1_cv(design, y: np.ndarray) -> np.ndarray:
    """Coefficients of AlpacaEval's fit_LogisticRegressionCV for fractional labels: every pair twice
    (label 1 weighted p, label 0 weighted 1 − p), both copies in one fold, scored by the log-loss
    against p."""
    import scipy.sparse
    from sklearn import config_context
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    n = len(y)
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    weight = np.concatenate([y, 1.0 - y])  # the probability of each copy's label
    with config_context(enable_metadata_routing=True):  # the scorer needs each copy's probability
        scorer = make_scorer(_fractional_log_loss, response_method="predict_proba", greater_is_better=False)
        model = LogisticRegressionCV(
            cv=GroupKFold(n_splits=JOINT_FOLDS),
            scoring=scorer.set_score_request(label_prob=True),
            l1_ratios=(1.0,),
            solver="liblinear",
            fit_intercept=False,
            random_state=JOINT_SEED,
            use_legacy_attributes=False,
        )
        model.fit(
            scipy.sparse.vstack([design, design]).tocsr(),
            labels,
            sample_weight=weight,
            groups=np.tile(np.arange(n), 2),
            label_prob=weight,
        )
    return model.coef_[0]


def _fractional_log_loss(y_true, y_pred, label_prob, **_) -> float:
    """Log-loss of the predicted probability of label 1 against the preference behind each copy
    (``**_``: the class labels scikit-learn passes to probability scorers)."""
    p = np.clip(y_pred, 1e-15, 1 - 1e-15)
    y = np.where(y_true == 1, label_prob, 1.0 - label_prob)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def read_difficulty(path: str | Path) -> dict[tuple[str | None, str], float]:
    """A difficulty file as {(test set or None, item id): difficulty}; errors name file and line."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "item_id" not in fields or "difficulty" not in fields:
            raise ValueError(
                f"{path}: the header must name item_id and difficulty (and optionally testset), got {fields}"
            )
        out: dict[tuple[str | None, str], float] = {}
        for rec in reader:
            where = f"{path}:{reader.line_num}"
            key = (rec.get("testset") or None, (rec["item_id"] or "").strip())
            if not key[1]:
                raise ValueError(f"{where}: empty item_id")
            try:
                value = float(rec["difficulty"])
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"{where}: difficulty {rec['difficulty']!r} is not a finite number")
            if key in out:
                raise ValueError(f"{where}: item {key[1]!r} appears twice")
            out[key] = value
    if not out:
        raise ValueError(f"{path}: no difficulty rows")
    return out


def difficulty_of(
    table: Mapping[tuple[str | None, str], float], testset: str, item_ids: Sequence[str], source: str
) -> dict[str, float]:
    """The file's difficulty of each item of ``testset`` (a row without testset serves every test
    set); an item without one is an error naming it."""
    out = {}
    for item in item_ids:
        value = table.get((testset, item), table.get((None, item)))
        if value is None:
            raise ValueError(f"{source}: no difficulty for test set {testset!r} item {item!r}")
        out[item] = value
    return out


def report_difficulty(
    pairs: Mapping[tuple[str, str, str], Sequence[tuple[str, float, int, int]]], lc
) -> dict[str, dict[str, float]]:
    """Item difficulty by test set, then item id, for the report's (optimizer, test set, target)
    cells given as their valid pairs (item id, preference, optimized length, original length);
    ``lc``: :class:`bpo.settings.evaluate.LCSettings`. Empty for the length_only method."""
    if lc.method == "length_only":
        return {}
    by_testset: dict[str, list[Sequence[tuple[str, float, int, int]]]] = {}
    for (_, testset, _), cell in pairs.items():
        by_testset.setdefault(testset, []).append(cell)
    if lc.difficulty != "joint":
        table = read_difficulty(lc.difficulty)
        return {
            ts: difficulty_of(
                table,
                ts,
                sorted({p[0] for cell in cells for p in cell}),
                f"eval.report.lc.difficulty ({lc.difficulty})",
            )
            for ts, cells in by_testset.items()
        }
    out = {}
    for ts, cells in by_testset.items():
        rows = [([p[0] for p in c], [p[1] for p in c], [p[2] - p[3] for p in c]) for c in cells if c]
        if len(rows) < 2:
            raise ValueError(
                f"config eval.report.lc.difficulty: joint needs at least 2 optimizer x target rows "
                f"with valid pairs on test set {ts!r}, found {len(rows)}; add optimizers or targets, "
                "or give a difficulty file"
            )
        out[ts] = joint_difficulty(rows)
    return out


def lc_method_note(lc) -> str:
    """The report's sentence on how its LC ΔWR was computed, naming the method exactly."""
    base = (
        "LC ΔWR (method {m}): a logistic GLM of the judge's preference for the optimized answer (win 1, tie "
        "0.5, lose 0) on tanh(Δ characters / sd)"
    )
    if lc.method == "length_only":
        return (
            base.format(m="length_only") + " with an intercept, predicted at equal length: AlpacaEval 2.0's "
            "length term only (Dubois et al. 2024), without its per-item difficulty term or gamed-baseline "
            "regularisation, so it is not AlpacaEval 2.0's LC."
        )
    source = (
        "estimated jointly over every optimizer × target row of the test set"
        if lc.difficulty == "joint"
        else f"read from {lc.difficulty}"
    )
    return (
        base.format(m="alpacaeval") + f" plus a per-item difficulty term ({source}) and a per-row intercept, "
        "averaged over the items at equal length: AlpacaEval 2.0's length_controlled_v1 GLM (Dubois et al. "
        "2024), without its gamed-baseline regularisation (this run has no gamed-baseline answers)."
    )
