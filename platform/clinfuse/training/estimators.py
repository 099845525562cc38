"""The classical estimators: penalised logistic or Cox regression (penalty by inner CV) and gradient boosting.

Logistic regression searches ridge (L2) penalties and, for binary labels, lasso (L1) penalties. A gene table or a
pooled image grid often carries a few informative columns among many, where the lasso's sparse fit is ahead; where
every column carries a little, ridge is. The inner cross-validation keeps the best ridge penalty unless the best
lasso penalty beats it by more than one standard error, because on a small cohort the family chosen by a noisy
inner score alone can cost more than it gains (docs/results.md, "Lasso or ridge"). Cox regression is
elastic-net.

:mod:`clinfuse.training.classical` fits them as baselines on a run's folds; :mod:`clinfuse.training.linear_base`
fits the penalised regression as the base of a deep model on the same folds.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from clinfuse.errors import ClinfuseError
from clinfuse.training.survival import concordance_index

# Penalties searched by the inner cross-validation (inverse strength C for logistic regression).
_C_GRID = np.logspace(-4, 2, 10)
_INNER_FOLDS = 3
# The lasso's weak penalties cost the most (liblinear: 4-7 CPU-s a fit at 3,333 x 2,030 and C >= 1, against
# 0.3-0.9 s at C <= 0.1) and fit like ridge there, so its grid stops at C = 1.
_C_GRID_LASSO = _C_GRID[_C_GRID <= 1.0]
# Above this many training cells (patients x features) the lasso is not searched: its fits grow with the cells
# (at 10^4 x 2,000 the search takes 74 CPU-s against ridge's 21, so about 12 minutes a fold at 10^5), and with
# that many patients per feature its sparsity gains little over ridge.
_LASSO_MAX_CELLS = 2e7

# Shortest penalty path tried last: the smallest penalty as a share of the largest (sksurv's alpha_min_ratio).
_ALPHA_MIN_RATIOS = (0.01, 0.05, 0.2, 0.5)


class ClassicalFitError(ClinfuseError):
    """A classical baseline cannot be fitted on these data."""


def _linear(task: str, seed: int, n_train: int, y_train: np.ndarray, n_features: int | None) -> Any:
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if task == "survival":
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        cox = CoxnetSurvivalAnalysis(l1_ratio=0.5, alpha_min_ratio=0.01, n_alphas=20, max_iter=20000)
        inner = KFold(min(_INNER_FOLDS, n_train), shuffle=True, random_state=seed)
        return _CoxnetCV(make_pipeline(StandardScaler(), cox), inner)
    from sklearn.linear_model import LogisticRegression

    smallest = int(np.bincount(y_train).min())
    inner = StratifiedKFold(max(2, min(_INNER_FOLDS, smallest)), shuffle=True, random_state=seed)
    ridge = LogisticRegression(max_iter=5000)
    grid: list[dict[str, Any]] = [{"logisticregression": [ridge], "logisticregression__C": _C_GRID}]
    if task == "binary" and (n_features is None or n_train * n_features <= _LASSO_MAX_CELLS):
        grid.append({"logisticregression": [_lasso_logistic(seed)], "logisticregression__C": _C_GRID_LASSO})
    scoring = "roc_auc" if task == "binary" else "neg_log_loss"
    return GridSearchCV(
        make_pipeline(StandardScaler(), ridge),
        grid,
        scoring=scoring,
        cv=inner,
        error_score=np.nan,
        refit=_ridge_unless_lasso_clearly_better,
    )


def _ridge_unless_lasso_clearly_better(results: dict[str, Any]) -> int:
    """The grid point to refit: the best ridge penalty, unless the best lasso penalty scores higher by more than
    one standard error of its inner-fold scores (the one-standard-error rule across the two families)."""
    scores = np.nan_to_num(np.asarray(results["mean_test_score"], dtype=float), nan=-np.inf)
    spread = np.nan_to_num(np.asarray(results["std_test_score"], dtype=float), nan=np.inf)
    folds = sum(key.startswith("split") and key.endswith("_test_score") for key in results)
    lasso = np.array([_is_lasso(m) for m in results["param_logisticregression"]])
    ridge_best = int(np.flatnonzero(~lasso)[np.argmax(scores[~lasso])])
    if not lasso.any():
        return ridge_best
    lasso_best = int(np.flatnonzero(lasso)[np.argmax(scores[lasso])])
    margin = spread[lasso_best] / np.sqrt(max(folds, 1))
    return lasso_best if scores[lasso_best] > scores[ridge_best] + margin else ridge_best


def _is_lasso(model: Any) -> bool:
    """Whether a logistic regression of the search is its lasso candidate (the only one liblinear solves)."""
    return getattr(model, "solver", "") == "liblinear"


def _lasso_logistic(seed: int) -> Any:
    """An L1-penalised logistic regression (liblinear's coordinate descent, far faster than saga here)."""
    import inspect

    from sklearn.linear_model import LogisticRegression

    # liblinear penalises the intercept like a coefficient; a large intercept scaling makes that penalty
    # negligible, so a rare outcome keeps its base rate. scikit-learn 1.8 reads the penalty from l1_ratio and
    # deprecates ``penalty``; earlier releases need penalty="l1".
    options: dict[str, Any] = {
        "solver": "liblinear",
        "intercept_scaling": 100.0,
        "max_iter": 5000,
        "random_state": seed,
    }
    if inspect.signature(LogisticRegression).parameters["penalty"].default == "deprecated":
        options["l1_ratio"] = 1.0
    else:
        options["penalty"] = "l1"
    return LogisticRegression(**options)


class _CoxnetCV:
    """Elastic-net Cox with the penalty chosen by inner cross-validation (Harrell's C) on the training rows.

    Each inner fold fits the whole penalty path once (coordinate descent warm-starts each penalty from the
    previous one) and scores every penalty from it, rather than one cold fit per penalty and fold: 3 path fits
    instead of 60 single-penalty fits. The model kept is the path fitted on all training rows, read at the
    chosen penalty.
    """

    def __init__(self, pipeline: Any, inner: Any) -> None:
        self.pipeline, self.inner = pipeline, inner

    def fit(self, x: np.ndarray, y: np.ndarray) -> _CoxnetCV:
        with warnings.catch_warnings():
            # The largest penalties of the path zero every coefficient by design; sksurv warns about each.
            warnings.simplefilter("ignore", UserWarning)
            self.best_ = self._path(x, y)
            alphas = self.best_.named_steps["coxnetsurvivalanalysis"].alphas_
            scores = [
                self._inner_scores(x[fit_rows], y[fit_rows], x[score_rows], y[score_rows], alphas)
                for fit_rows, score_rows in self.inner.split(x)
            ]
        # Ties go to the larger penalty (the path runs from the largest down).
        self.alpha_ = float(alphas[int(np.argmax(np.mean(scores, axis=0)))])
        return self

    def _inner_scores(
        self, x_fit: np.ndarray, y_fit: np.ndarray, x_score: np.ndarray, y_score: np.ndarray, alphas: np.ndarray
    ) -> np.ndarray:
        """Harrell's C of every penalty on one inner fold. Fewer rows than the full fit can make the smallest
        penalties diverge: the path is then cut short, and the penalties it no longer reaches score as chance."""
        from sklearn.base import clone

        scores = np.full(len(alphas), 0.5)
        for keep in _shorter_paths(len(alphas)):
            try:
                path = clone(self.pipeline).set_params(coxnetsurvivalanalysis__alphas=alphas[:keep]).fit(x_fit, y_fit)
            except ArithmeticError:
                continue
            for index, alpha in enumerate(alphas[:keep]):
                c = concordance_index(
                    y_score["time"], y_score["event"].astype(bool), path.predict(x_score, alpha=alpha)
                )
                scores[index] = 0.5 if np.isnan(c) else c
            break
        return scores

    def _path(self, x: np.ndarray, y: np.ndarray) -> Any:
        """The penalty path, cut short of the small penalties at which the fit diverges.

        With many more columns than patients (gene tables), coordinate descent overflows at the path's
        smallest penalties (sksurv's "weights are too large"); a shorter path keeps the well-posed part.
        """
        from sklearn.base import clone

        for ratio in _ALPHA_MIN_RATIOS:
            try:
                return clone(self.pipeline).set_params(coxnetsurvivalanalysis__alpha_min_ratio=ratio).fit(x, y)
            except ArithmeticError:
                continue
        raise ClassicalFitError(
            f"elastic-net Cox diverged on {len(x)} training patients x {x.shape[1]} features at every penalty "
            "down to alpha_min_ratio 0.5; set compare_classical: false or reduce the features (top_k_genes)"
        )

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self.best_.predict(x, alpha=self.alpha_)


def _shorter_paths(n_alphas: int) -> list[int]:
    """How many of the path's penalties to fit, longest first: all, then a quarter fewer at a time, down to one."""
    lengths = [n_alphas]
    while lengths[-1] > 1:
        lengths.append(max(1, (lengths[-1] * 3) // 4))
    return lengths


def _boosting(task: str, seed: int, n_train: int) -> Any:
    # Early stopping holds out part of the fold's training patients (never its validation or test patients), but
    # only once that hold-out is large enough to be more than noise.
    stop = n_train >= 200
    if task == "survival":
        return CoxBoosting(max_rounds=500 if stop else 150, early_stopping=stop, seed=seed)
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Leaves of 20 patients (scikit-learn's default) leave a cohort of a few dozen patients without a split, so
    # the leaf size follows the fold.
    return HistGradientBoostingClassifier(
        max_iter=300 if stop else 100,
        learning_rate=0.05,
        min_samples_leaf=max(5, min(20, n_train // 25)),
        early_stopping=stop,
        validation_fraction=0.2 if stop else None,
        random_state=seed,
    )


class CoxBoosting:
    """Gradient boosting of histogram trees on the Cox partial likelihood (XGBoost's ``survival:cox``).

    scikit-survival's boosting computes the Cox loss gradient over all pairs of patients: 0.6 s per round at 8,000
    training patients and 11 s at 32,000, so a registry cohort's baseline ran for hours. XGBoost's gradient is a
    sorted cumulative sum and its trees split on feature histograms, so each round costs time linear in the
    patients. ``predict`` is the log-hazard (the margin, not XGBoost's default hazard ratio).

    Args:
        max_rounds: boosting rounds (an upper bound with ``early_stopping``).
        early_stopping: hold out 20% of the training patients (stratified by event) and stop after 20 rounds
            without a better Cox loss there.
        seed: row subsampling and the hold-out draw.
    """

    def __init__(self, max_rounds: int = 150, early_stopping: bool = False, seed: int = 0) -> None:
        self.max_rounds, self.early_stopping, self.seed = max_rounds, early_stopping, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> CoxBoosting:
        from xgboost import XGBRegressor

        label = _signed_times(y["time"].astype(np.float64), y["event"].astype(bool))
        self.model_ = XGBRegressor(
            objective="survival:cox",
            tree_method="hist",
            n_estimators=self.max_rounds,
            learning_rate=0.05,
            max_depth=3,
            min_child_weight=1.0,
            subsample=0.8,
            random_state=self.seed,
            early_stopping_rounds=20 if self.early_stopping else None,
        )
        if not self.early_stopping:
            self.model_.fit(x, label, verbose=False)
            return self
        from sklearn.model_selection import train_test_split

        fit_rows, held_rows = train_test_split(
            np.arange(len(x)), test_size=0.2, stratify=y["event"], random_state=self.seed
        )
        self.model_.fit(x[fit_rows], label[fit_rows], eval_set=[(x[held_rows], label[held_rows])], verbose=False)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict(x, output_margin=True)


def _signed_times(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """XGBoost's survival label: the time for an event, minus the time for a censored patient.

    A time of 0 has no sign, so a patient censored at 0 would count as an event; zero times move to half the
    smallest positive time, which keeps every patient's order.
    """
    positive = time[time > 0]
    floor = positive.min() / 2 if len(positive) else 1.0
    time = np.where(time > 0, time, floor)
    return np.where(event, time, -time)


def make_estimator(name: str, task: str, seed: int, y_train: np.ndarray, n_features: int | None = None) -> Any:
    """An unfitted classical estimator of ``name`` (``*_regression`` or ``gradient_boosting``).

    ``n_features`` (the design matrix's columns) bounds the logistic regression's search: the lasso is left out
    above ``_LASSO_MAX_CELLS`` training cells; None searches it.
    """
    if name == "gradient_boosting":
        return _boosting(task, seed, len(y_train))
    return _linear(task, seed, len(y_train), y_train, n_features)


def chosen_penalty(estimator: Any) -> dict[str, str]:
    """The penalty a fitted penalised regression's inner CV chose (``penalty`` l1/l2 and ``C``, or the Cox
    ``alpha``); empty for gradient boosting."""
    if isinstance(estimator, _CoxnetCV):
        return {"penalty": "elastic-net", "alpha": f"{estimator.alpha_:.4g}"}
    best = getattr(estimator, "best_estimator_", None)
    if best is None:
        return {}
    model = best.named_steps["logisticregression"]
    return {"penalty": "l1" if _is_lasso(model) else "l2", "C": f"{model.C:.4g}"}


def estimator_target(task: str, y: np.ndarray, time: np.ndarray | None) -> np.ndarray:
    """What ``fit`` takes as ``y``: the labels, or a structured (event, time) array for survival."""
    if task != "survival":
        return y
    from sksurv.util import Surv

    assert time is not None
    return Surv.from_arrays(event=y.astype(bool), time=time.astype(float))


def fit_estimator(estimator: Any, x: np.ndarray, target: np.ndarray, rows: np.ndarray) -> Any:
    """Fit on the fold's training patients ``rows`` (``x`` and ``target`` already restricted to them)."""
    return estimator.fit(x, target)


def logits(estimator: Any, x: np.ndarray, n_outputs: int) -> np.ndarray:
    """``(n, n_outputs)`` log-odds (classification) or log-hazard (survival) of a fitted estimator."""
    # Classifiers give log-odds through decision_function; survival models' predict is the log-hazard.
    output = getattr(estimator, "decision_function", None) or estimator.predict
    raw = np.asarray(output(x), dtype=np.float64)
    return raw.reshape(len(x), n_outputs)
