"""Length-controlled ΔWR in the sense of AlpacaEval 2.0 (Dubois et al., 2024, "Length-Controlled
AlpacaEval"), for one comparison: answers to optimized prompts against answers to the originals.

Model (AlpacaEval's ``length_controlled_minimal`` GLM, without the instruction-difficulty term
that needs a leaderboard of other models): a binomial GLM with logit link,

    P(judge prefers the optimized answer) = σ(β₀ + θ · tanh(Δlen / sd(Δlen)))

where Δlen = characters of the optimized answer − characters of the original answer (AlpacaEval
also counts characters), scaled by its standard deviation without centring, so that zero still
means "equally long". The length-controlled preference is the prediction at Δlen = 0, σ(β₀);
LC ΔWR = 100 · (2 σ(β₀) − 1), the same scale as ΔWR = win % − lose %.

Ties enter as a preference of 0.5, as in AlpacaEval (quasi-binomial: the fractional outcome is
the GLM's response); this makes 100 · (2 · mean preference − 1) exactly win % − lose %, so the
two numbers differ only by what the length term explains. Soft preferences in [0, 1] (a judge's
verdict-token probabilities, :func:`bpo.eval.winrates.weighted_preference`) enter the same way.

Fit: statsmodels' GLM (IRLS maximum likelihood). Where the maximum-likelihood estimate does not
exist (perfect separation, e.g. in a small bootstrap resample where the longer answer always
won; or IRLS not converging to finite values), the fit falls back to statsmodels' ridge-penalised
GLM with penalty :data:`RIDGE` on θ only, and the fit is counted. Exact cases need no fit: a
constant preference is its own LC value, and without any length difference the GLM reduces to
the mean preference.

Interval: percentile bootstrap over pairs (resampled with replacement, refitted, sd recomputed).

Two methods (``eval.report.lc.method``); the one above is ``length_only``. ``alpacaeval`` is the
GLM of AlpacaEval 2.0's leaderboard (``length_controlled_v1``), fitted per row with no intercept:

    logit P(prefer) = θ · tanh(Δlen / sd(Δlen)) + γ · d_i + β · own_i

d_i is the item's difficulty (:mod:`bpo.eval.lc_difficulty`: estimated jointly over rows or read
from a file), own_i is 1 for the row's pairs; sd is the sample standard deviation (ddof 1, as
pandas computes it there; AlpacaEval writes Δlen as baseline − model, tanh is odd so only θ's sign
differs). Gamed baselines (the baseline itself prompted to be verbose or concise, against the
baseline), where they exist, enter with own_i = 0 and a total weight of λ = 0.2 split evenly
between them: they pull θ and γ towards a system whose LC must be 50 %. The length-controlled
preference is the mean over the row's items of σ(γ · d_i + β) (Δlen = 0), not σ of a mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RIDGE = 0.01  # statsmodels elastic-net alpha on θ (L1_wt 0) where the ML estimate does not exist
GAMED_LAMBDA = 0.2  # AlpacaEval's regularize_to_baseline_lambda: total weight of the gamed baselines' pairs
OUTCOME_PREFERENCE = {"win": 1.0, "tie": 0.5, "lose": 0.0}


@dataclass(frozen=True)
class LengthControlled:
    delta_wr: float  # LC ΔWR, percentage points
    low: float  # bootstrap interval
    high: float
    length_coef: float | None  # θ of the full-sample fit; None when no fit was needed
    n: int  # pairs fitted
    n_separated: int  # fits (full sample + resamples) that needed the ridge fallback


@dataclass(frozen=True)
class Gamed:
    """Pairs of a gamed baseline (the baseline prompted to be verbose or concise) against the
    baseline: ``preferences`` for the gamed answer, ``diff`` its length minus the baseline's,
    ``difficulty`` of each pair's item (as the row's)."""

    preferences: np.ndarray
    diff: np.ndarray
    difficulty: np.ndarray


@dataclass(frozen=True)
class _Fit:
    preference: float  # predicted preference at zero length difference, in [0, 1]
    length_coef: float | None
    separated: bool = False


def _fit(y: np.ndarray, diff: np.ndarray) -> _Fit:
    if np.all(y == y[0]):
        return _Fit(float(y[0]), None)
    sd = float(diff.std())
    if sd == 0.0:
        return _Fit(float(y.mean()), None)
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    x = np.tanh(diff / sd)
    model = sm.GLM(y, np.column_stack([np.ones_like(x), x]), family=sm.families.Binomial())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow on the way to a separation
        warnings.simplefilter("error", PerfectSeparationWarning)
        try:
            result = model.fit()
            params, separated = result.params, not (result.converged and np.all(np.isfinite(result.params)))
        except PerfectSeparationWarning:
            separated = True
        if separated:
            warnings.simplefilter("ignore", PerfectSeparationWarning)
            params = model.fit_regularized(alpha=np.array([0.0, RIDGE]), L1_wt=0.0).params
    return _Fit(_sigmoid(params[0]), float(params[1]), separated)


def _length_column(diff: np.ndarray) -> np.ndarray:
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    return np.tanh(diff / sd) if sd > 0 else np.zeros_like(diff)


def _fit_alpacaeval(y: np.ndarray, diff: np.ndarray, d: np.ndarray, gamed: Sequence[Gamed]) -> _Fit:
    if np.all(y == y[0]) and not gamed:
        return _Fit(float(y[0]), None)
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    x = np.vstack(
        [np.column_stack([_length_column(diff), d, np.ones_like(d)])]
        + [np.column_stack([_length_column(g.diff), g.difficulty, np.zeros_like(g.diff)]) for g in gamed]
    )
    endog = np.concatenate([y] + [g.preferences for g in gamed])
    weights = np.concatenate([np.ones_like(y)] + [np.full(len(g.diff), GAMED_LAMBDA / len(gamed)) for g in gamed])
    model = sm.GLM(endog, x, family=sm.families.Binomial(), freq_weights=weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("always", PerfectSeparationWarning)
        result = model.fit()
        # statsmodels warns whenever the fit predicts every preference exactly; that is a
        # separation only where some preference is 0 or 1 (fractional ones are fitted finitely)
        perfect = any(issubclass(w.category, PerfectSeparationWarning) for w in caught)
        params = result.params
        separated = not (result.converged and np.all(np.isfinite(params))) or (
            perfect and bool(np.any((endog == 0) | (endog == 1)))
        )
        if separated:
            params = model.fit_regularized(alpha=np.array([RIDGE, RIDGE, 0.0]), L1_wt=0.0).params
    preference = float(np.mean(0.5 * (1.0 + np.tanh(0.5 * (params[1] * d + params[2])))))
    return _Fit(preference, float(params[0]), separated)


def _sigmoid(z: float) -> float:
    return float(0.5 * (1.0 + np.tanh(0.5 * z)))  # no overflow for a diverging intercept


def _delta(preference: float) -> float:
    return 100.0 * (2.0 * preference - 1.0)


def length_controlled(
    preferences: Sequence[float],
    len_optimized: Sequence[float],
    len_original: Sequence[float],
    *,
    samples: int,
    seed: int,
    confidence: float = 0.95,
    difficulty: Sequence[float] | None = None,
    gamed: Sequence[Gamed] = (),
) -> LengthControlled | None:
    """LC ΔWR with its percentile bootstrap interval. ``preferences[i]`` is the judge's preference
    for the optimized answer of pair i (1 win, 0.5 tie, 0 lose, or a probability, kept as it is);
    lengths in characters. Without ``difficulty`` the ``length_only`` GLM; with it (one value per
    pair, its item's) AlpacaEval's, regularised by the ``gamed`` baselines given (kept whole in
    every resample). None when there is no pair."""
    if samples < 1:
        raise ValueError("bootstrap samples must be >= 1")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    y = np.asarray(preferences, dtype=float)
    diff = np.asarray(len_optimized, dtype=float) - np.asarray(len_original, dtype=float)
    if not (len(y) == len(diff) == len(len_original)):
        raise ValueError("preferences and lengths must have the same length")
    if len(y) == 0:
        return None
    if np.any((y < 0) | (y > 1)) or np.any(np.isnan(y)) or np.any(np.isnan(diff)):
        raise ValueError("preferences must lie in [0, 1] and lengths must be numbers")
    d = None if difficulty is None else np.asarray(difficulty, dtype=float)
    if d is None and gamed:
        raise ValueError("gamed baselines need the alpacaeval method (an item difficulty per pair)")
    if d is not None and (len(d) != len(y) or not np.all(np.isfinite(d))):
        raise ValueError("difficulty must be one finite number per pair")

    def fit_rows(idx) -> _Fit:
        return _fit(y[idx], diff[idx]) if d is None else _fit_alpacaeval(y[idx], diff[idx], d[idx], gamed)

    full = fit_rows(slice(None))
    rng = np.random.default_rng(seed)
    estimates = np.empty(samples)
    separated = int(full.separated)
    for s in range(samples):
        fit = fit_rows(rng.integers(0, len(y), len(y)))
        estimates[s] = _delta(fit.preference)
        separated += fit.separated
    alpha = 1.0 - confidence
    low, high = np.percentile(estimates, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return LengthControlled(_delta(full.preference), float(low), float(high), full.length_coef, len(y), separated)
