"""AlpacaEval 2.0's published annotations through this project's LC methods, against its leaderboard.

    python benchmarks/bench_alpacaeval_lc.py ALPACA_EVAL_FOLDER

ALPACA_EVAL_FOLDER is a checkout (or partial copy) of github.com/tatsu-lab/alpaca_eval holding
``results/<model>/weighted_alpaca_eval_gpt4_turbo/annotations.json`` (the large files are Git
LFS objects: ``git lfs pull`` in a clone, or copy the ones you have) and
``src/alpaca_eval/leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv``.
Every model with annotations and a leaderboard row is scored (the baseline gpt4_1106_preview,
50 by definition, is left out) with

- ``alpacaeval`` (difficulty ``joint``, estimated over all those models at once; gamed-baseline
  regularisation when ``results/gpt4_1106_preview_verbose`` and ``_concise`` annotations are
  present, else none), and
- ``length_only`` (the project's default),

and, as a diagnosis, ``alpacaeval`` with each model's length slope θ fixed at the one AlpacaEval
published (``src/alpaca_eval/metrics/weights/.../baseline_gpt4_1106_preview.csv``: fitted with
the gamed-baseline regularisation), γ and β refitted,

on AlpacaEval's 0-100 win-rate scale (LC ΔWR = 2 · LC − 100), and compared with the leaderboard's
``length_controlled_winrate``: mean absolute error, max, share within 1.5 points. Preferences are
AlpacaEval's weighted ones (p ∈ [1, 2] → p − 1; 0, a tie, → 0.5; missing ones dropped), kept
fractional. Lengths are characters, as there.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from bpo.eval.lc_difficulty import joint_difficulty
from bpo.eval.length_control import Gamed, length_controlled

ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
BASELINE = "gpt4_1106_preview"
LEADERBOARD = f"src/alpaca_eval/leaderboards/data_AlpacaEval_2/{ANNOTATOR}_leaderboard.csv"
WEIGHTS = f"src/alpaca_eval/metrics/weights/{ANNOTATOR}/length_controlled_v1/baseline_{BASELINE}.csv"
WITHIN = 1.5


def load(folder: Path, model: str) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(instructions, preference for the model, model length − baseline length) of one model."""
    path = folder / "results" / model / ANNOTATOR / "annotations.json"
    if not path.is_file():
        return None
    items, prefs, diff = [], [], []
    for rec in json.loads(path.read_text()):
        p = rec.get("preference")
        if p is None or not np.isfinite(p) or p < 0 or not isinstance(rec.get("output_2"), str):
            continue
        items.append(rec["instruction"])
        prefs.append(0.5 if p == 0 else p - 1.0)
        diff.append(len(rec["output_2"]) - len(rec["output_1"] or ""))
    return items, np.asarray(prefs), np.asarray(diff, dtype=float)


def published_slope_lc(y: np.ndarray, diff: np.ndarray, d: np.ndarray, theta: float) -> float:
    """LC (0-100) of the alpacaeval GLM with θ fixed (AlpacaEval's sign: baseline − model length)."""
    import statsmodels.api as sm

    offset = theta * np.tanh(-diff / diff.std(ddof=1))
    fit = sm.GLM(y, np.column_stack([d, np.ones_like(d)]), family=sm.families.Binomial(), offset=offset).fit()
    return 100.0 * float(np.mean(1.0 / (1.0 + np.exp(-(fit.params[0] * d + fit.params[1])))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    args = ap.parse_args()
    board_path = args.folder / LEADERBOARD
    if not board_path.is_file():
        raise SystemExit(f"{board_path}: no leaderboard; see this script's docstring for where to get it")
    with open(board_path, newline="") as fh:
        board = {
            r[""]: float(r["length_controlled_winrate"])
            for r in csv.DictReader(fh)
            if r.get("length_controlled_winrate")
        }
    data = {m: d for m in sorted(board) if m != BASELINE and (d := load(args.folder, m)) is not None}
    if len(data) < 2:
        raise SystemExit(f"{args.folder}: fewer than 2 models with annotations and a leaderboard row")
    gamed_data = [load(args.folder, f"{BASELINE}_{kind}") for kind in ("verbose", "concise")]
    gamed_data = [g for g in gamed_data if g is not None]

    start = time.process_time()
    difficulty = joint_difficulty(list(data.values()))
    joint_s = time.process_time() - start
    gamed = [Gamed(y, diff, np.array([difficulty.get(i, 0.0) for i in items])) for items, y, diff in gamed_data]
    slopes = {}
    if (args.folder / WEIGHTS).is_file():
        with open(args.folder / WEIGHTS, newline="") as fh:
            slopes = {r[""]: float(r["np.tanh(std_delta_len)"]) for r in csv.DictReader(fh)}
    errors: dict[str, list[float]] = {"alpacaeval": [], "length_only": [], "published θ": []}
    print(f"{'model':40s} {'board':>6s} {'alpacaeval':>10s} {'length_only':>11s} {'published θ':>11s}")
    for model, (items, y, diff) in data.items():
        d = np.array([difficulty[i] for i in items])
        ours = {}
        if model in slopes:
            ours["published θ"] = published_slope_lc(y, diff, d, slopes[model])
            errors["published θ"].append(abs(ours["published θ"] - board[model]))
        for method in ("alpacaeval", "length_only"):
            lc = length_controlled(
                y,
                diff,
                np.zeros_like(diff),
                samples=1,
                seed=0,
                difficulty=d if method == "alpacaeval" else None,
                gamed=gamed if method == "alpacaeval" else (),
            )
            ours[method] = (lc.delta_wr + 100.0) / 2.0
            errors[method].append(abs(ours[method] - board[model]))
        print(
            f"{model:40s} {board[model]:6.1f} {ours['alpacaeval']:10.1f} {ours['length_only']:11.1f} "
            f"{ours.get('published θ', float('nan')):11.1f}"
        )
    print(
        f"\n{len(data)} models; joint difficulty over {sum(len(v[0]) for v in data.values())} pairs, "
        f"{len(difficulty)} items (L1, cross-validated): {joint_s:.1f} s CPU; gamed baselines: "
        f"{len(gamed)} ({'regularised' if gamed else 'absent, no regularisation'})"
    )
    for method, err in errors.items():
        if not err:
            print(f"{method:12s} no published weights file ({WEIGHTS})")
            continue
        e = np.asarray(err)
        print(
            f"{method:12s} MAE {e.mean():5.2f}  max {e.max():5.2f}  within {WITHIN}: "
            f"{np.mean(e <= WITHIN) * 100:5.1f} % ({int(np.sum(e <= WITHIN))}/{len(e)})"
        )


if __name__ == "__main__":
    main()
