"""AlpacaEval's length-controlled GLM (eval.report.lc.method alpacaeval): the joint item difficulty
recovers a known structure, fractional preferences stay fractional, gamed baselines pull the length
slope, and the report and settings name and check the method and its difficulty source."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from test_eval_report import _answer, _judgment, _optimized, _report, _write

from bpo.eval.lc_difficulty import joint_difficulty, read_difficulty
from bpo.eval.length_control import GAMED_LAMBDA, Gamed, length_controlled
from bpo.settings import load_config
from bpo.settings.base import SettingsError
from bpo.settings.evaluate import ReportSettings


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _rows(seed, n_rows, n_items, *, sample):
    """Rows of (items, preferences, Δlen) from logit = θ_r tanh(Δlen/sd) + β_r + δ_i with known δ."""
    rng = np.random.default_rng(seed)
    delta = rng.normal(0, 1.0, n_items)
    delta -= delta.mean()
    items = [f"i{k}" for k in range(n_items)]
    rows = []
    for _ in range(n_rows):
        theta, beta = rng.uniform(-2, 2), rng.normal(0, 1)
        diff = rng.normal(rng.uniform(-300, 300), 400, n_items)
        p = _sigmoid(theta * np.tanh(diff / diff.std(ddof=1)) + beta + delta)
        rows.append((items, rng.binomial(1, p).astype(float) if sample else p, diff))
    return delta, rows


def test_joint_difficulty_recovers_known_item_terms_from_fractional_preferences():
    # preferences are the model's exact probabilities: the joint fit gives back δ (centred), shrunk
    # by the cross-validated L1 penalty, the more the fewer rows there are to estimate it from
    for n_rows, shrink in ((6, (0.4, 0.8)), (30, (0.85, 1.0))):
        delta, rows = _rows(0, n_rows=n_rows, n_items=80, sample=False)
        got = joint_difficulty(rows)
        est = np.array([got[f"i{k}"] for k in range(80)])
        assert np.corrcoef(delta, est)[0, 1] > (0.95 if n_rows == 6 else 0.998)
        assert shrink[0] < est.std() / delta.std() < shrink[1]
        assert sum(got.values()) == pytest.approx(0.0, abs=1e-9)


def test_joint_difficulty_from_sampled_verdicts_orders_the_items():
    delta, rows = _rows(1, n_rows=20, n_items=100, sample=True)
    got = joint_difficulty(rows)
    assert np.corrcoef(delta, [got[f"i{k}"] for k in range(100)])[0, 1] > 0.8


def test_joint_difficulty_survives_items_every_row_wins_and_refuses_one_row():
    delta, rows = _rows(2, n_rows=20, n_items=30, sample=True)
    rows = [(items, np.where(np.arange(30) == 5, 1.0, y), d) for items, y, d in rows]  # i5 always won
    got = joint_difficulty(rows)
    assert np.isfinite(list(got.values())).all() and got["i5"] == max(got.values()) > 1.0
    # with 4 rows of 30 sampled verdicts the cross-validated L1 penalty keeps no item term at all
    assert set(joint_difficulty(rows[:4]).values()) == {0.0}
    with pytest.raises(ValueError, match="at least 2 rows"):
        joint_difficulty(rows[:1])
    with pytest.raises(ValueError, match=r"row 1: preferences must lie in \[0, 1\]"):
        joint_difficulty([rows[0], (rows[1][0], rows[1][1] + 2, rows[1][2])])


def test_alpacaeval_fit_keeps_fractional_preferences():
    # exact probabilities from known θ, γ, β: LC is the mean σ(γ d + β) at equal length, exactly;
    # rounding the preferences to 0/1 would not give it
    rng = np.random.default_rng(3)
    d = rng.normal(0, 1, 200)
    diff = rng.normal(150, 300, 200)
    theta, gamma, beta = 1.2, 0.8, 0.3
    y = _sigmoid(theta * np.tanh(diff / diff.std(ddof=1)) + gamma * d + beta)
    lc = length_controlled(y, diff, np.zeros(200), samples=20, seed=0, difficulty=d)
    expected = 100 * (2 * np.mean(_sigmoid(gamma * d + beta)) - 1)
    assert lc.delta_wr == pytest.approx(expected, abs=1e-6) and lc.length_coef == pytest.approx(theta, abs=1e-6)
    rounded = length_controlled(np.round(y), diff, np.zeros(200), samples=20, seed=0, difficulty=d)
    assert abs(rounded.delta_wr - expected) > 1.0
    # and it is not the length_only figure (that has no item term and takes σ of the intercept)
    assert abs(length_controlled(y, diff, np.zeros(200), samples=20, seed=0).delta_wr - expected) > 0.5


def test_gamed_baselines_pull_the_length_slope_with_their_weight():
    rng = np.random.default_rng(4)
    n = 300
    d = rng.normal(0, 1, n)
    diff = rng.normal(-200, 300, n)
    y = rng.binomial(1, _sigmoid(2.5 * np.tanh(diff / diff.std(ddof=1)) + d - 0.5)).astype(float)
    g_diff = rng.normal(0, 400, n)  # the baseline prompted to vary its length, slope 0.5, no intercept
    gamed = [Gamed(rng.binomial(1, _sigmoid(0.5 * np.tanh(g_diff / g_diff.std(ddof=1)) + d)).astype(float), g_diff, d)]
    alone = length_controlled(y, diff, np.zeros(n), samples=5, seed=0, difficulty=d)
    pulled = length_controlled(y, diff, np.zeros(n), samples=5, seed=0, difficulty=d, gamed=gamed)
    assert 0.5 < pulled.length_coef < alone.length_coef
    # the same fit by hand: gamed pairs weigh GAMED_LAMBDA in all and have no intercept
    x = np.vstack(
        [
            np.column_stack([np.tanh(diff / diff.std(ddof=1)), d, np.ones(n)]),
            np.column_stack([np.tanh(g_diff / g_diff.std(ddof=1)), d, np.zeros(n)]),
        ]
    )
    fit = sm.GLM(
        np.concatenate([y, gamed[0].preferences]),
        x,
        family=sm.families.Binomial(),
        freq_weights=np.concatenate([np.ones(n), np.full(n, GAMED_LAMBDA)]),
    ).fit()
    assert pulled.length_coef == pytest.approx(fit.params[0])
    assert pulled.delta_wr == pytest.approx(100 * (2 * np.mean(_sigmoid(fit.params[1] * d + fit.params[2])) - 1))
    with pytest.raises(ValueError, match="gamed baselines need the alpacaeval method"):
        length_controlled(y, diff, np.zeros(n), samples=5, seed=0, gamed=gamed)
    with pytest.raises(ValueError, match="one finite number per pair"):
        length_controlled(y, diff, np.zeros(n), samples=5, seed=0, difficulty=d[:-1])


# --- settings and report -------------------------------------------------------------------


def test_missing_difficulty_file_fails_at_parse_time(tmp_path):
    lc = {"method": "alpacaeval", "difficulty": str(tmp_path / "nope.csv")}
    with pytest.raises(SettingsError, match=r"eval\.report\.lc\.difficulty: .*nope\.csv: no such file"):
        ReportSettings.from_config(load_config(overrides={"eval": {"report": {"lc": lc}}}))
    default = ReportSettings.from_config(load_config())
    assert (default.lc.method, default.lc.difficulty, default.lc.difficulty_sha256) == ("length_only", "joint", None)
    path = tmp_path / "d.csv"
    path.write_text("item_id,difficulty\nq0,0.5\n")
    s = ReportSettings.from_config(load_config(overrides={"eval": {"report": {"lc": {**lc, "difficulty": str(path)}}}}))
    assert len(s.lc.difficulty_sha256) == 64 and ReportSettings.from_params(s.canonical()) == s


def test_difficulty_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("item_id,difficulty\nq0,0.5\nq1,high\n")
    with pytest.raises(ValueError, match=r"d\.csv:3: difficulty 'high' is not a finite number"):
        read_difficulty(path)
    path.write_text("item,score\nq0,0.5\n")
    with pytest.raises(ValueError, match="header must name item_id and difficulty"):
        read_difficulty(path)
    path.write_text("testset,item_id,difficulty\ndemo,q0,0.5\ndemo,q0,0.7\n")
    with pytest.raises(ValueError, match=r"d\.csv:3: item 'q0' appears twice"):
        read_difficulty(path)


def _cell(tmp_path, optimizer, seed, n=30):
    rng = np.random.default_rng(seed)
    answers, judgments, optimized = [], [], []
    for i in range(n):
        item = f"q{i}"
        original, better = "w " * int(rng.integers(5, 60)), "w " * int(rng.integers(5, 90))
        outcome = ["win", "tie", "lose"][int(rng.integers(0, 3))] if i % 5 else "win"
        answers.append(_answer(item, optimizer, None, original, better))
        judgments.append(_judgment(item, optimizer, None, "A", "B", outcome, True, "standin"))
        optimized.append(_optimized(item, optimizer, None, rewritten=True))
    return _write(tmp_path, optimizer, answers, judgments, optimized)


def test_report_alpacaeval_joint_names_its_method_and_needs_two_rows(tmp_path):
    cells = [_cell(tmp_path, "trained", 0), _cell(tmp_path, "other", 1)]
    lc = {"method": "alpacaeval", "difficulty": "joint"}
    rows, out = _report(tmp_path, *cells, bootstrap_samples=50, lc=lc)
    overall = [r for r in rows if r["category"] is None]
    assert len(overall) == 2 and all(r["lc_delta_wr"] is not None for r in overall)
    text = out["summary"].read_text()
    assert "LC ΔWR (method alpacaeval)" in text and "estimated jointly" in text
    base, out = _report(tmp_path, *cells, bootstrap_samples=50)  # the default: length_only
    assert [r["lc_delta_wr"] for r in base if r["category"] is None] != [r["lc_delta_wr"] for r in overall]
    text = out["summary"].read_text()
    assert "LC ΔWR (method length_only)" in text and "not AlpacaEval 2.0's LC" in text
    with pytest.raises(
        ValueError,
        match=r"eval\.report\.lc\.difficulty: joint needs at least 2 optimizer x target "
        r"rows with valid pairs on test set 'demo', found 1",
    ):
        _report(tmp_path, cells[0], bootstrap_samples=50, lc=lc)


def test_report_difficulty_file_gives_the_joint_figures_and_names_missing_items(tmp_path):
    cells = [_cell(tmp_path, "trained", 0), _cell(tmp_path, "other", 1)]
    joint, _ = _report(tmp_path, *cells, bootstrap_samples=50, lc={"method": "alpacaeval", "difficulty": "joint"})
    # the joint difficulty written to a file and read back gives the same figures
    from bpo.eval.lc_difficulty import joint_difficulty as jd
    from bpo.eval.report.tables import valid_pairs as _valid_pairs
    from bpo.schemas import ANSWERS, JUDGMENTS, read_table

    rows = []
    for c in cells:
        answers = {r["item_id"]: r for r in read_table(c["answers"], ANSWERS).to_pylist()}
        pairs = _valid_pairs(read_table(c["judgments"], JUDGMENTS).to_pylist(), answers)
        rows.append(([p[0] for p in pairs], [p[1] for p in pairs], [p[2] - p[3] for p in pairs]))
    path = tmp_path / "difficulty.csv"
    path.write_text("item_id,difficulty\n" + "".join(f"{k},{v!r}\n" for k, v in jd(rows).items()))
    from_file, out = _report(
        tmp_path, *cells, bootstrap_samples=50, lc={"method": "alpacaeval", "difficulty": str(path)}
    )
    assert [r["lc_delta_wr"] for r in from_file] == pytest.approx([r["lc_delta_wr"] for r in joint])
    assert f"read from {path}" in out["summary"].read_text()
    path.write_text("item_id,difficulty\nq0,0.1\n")
    with pytest.raises(ValueError, match=r"no difficulty for test set 'demo' item 'q1'"):
        _report(tmp_path, *cells, bootstrap_samples=50, lc={"method": "alpacaeval", "difficulty": str(path)})
