"""Classical baselines on the same folds as the deep models: penalised regression and gradient boosting.

A reviewer's first question about a deep fusion model is how it compares with the model a researcher would
try first. Each classical model here sees exactly what the deep models see: the run's splits, each fold's
preprocessing fitted on that fold's training patients (:func:`~clinfuse.training.data.fit_fold_inputs`), and
the features each modality's kind gives a classical model (:meth:`ModalityKind.classical_features`: table
columns, or intensity statistics and a pooled grid of an image or a recording). Hyper-parameters (the
penalty) are chosen by an inner cross-validation over the fold's training patients only; validation and
test patients never reach ``fit``.

An absent modality takes its features' training means, which is also how the modality Shapley game treats a
modality outside a coalition (see :func:`design_matrix`), so deep and classical attributions answer the same
question. Test predictions are the mean logit (log-odds, or log-hazard for survival) of the fold models.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clinfuse.cohort import Cohort, Splits
from clinfuse.config import ExperimentConfig
from clinfuse.errors import ClinfuseError
from clinfuse.training.data import FoldInputs, fit_fold_inputs
from clinfuse.training.loop import FoldResult, Predictions, evaluate_scores, scores_from_logits
from clinfuse.training.metrics import choose_threshold
from clinfuse.training.models import ModelPlan
from clinfuse.training.run import TrainedModel
from clinfuse.training.survival import concordance_index

CLASSICAL = "classical"
# Penalties searched by the inner cross-validation (inverse strength C for logistic regression).
_C_GRID = np.logspace(-4, 2, 10)
_INNER_FOLDS = 3


@dataclass
class FoldFeatures:
    """One fold's classical features of every cohort patient, absent modalities at their training means.

    Args:
        modalities: model order.
        blocks: ``(n_patients, F_m)`` float32 per modality (kept per fold for explanations; the design matrix
            built from them is float64).
        means: ``(F_m,)`` training means per modality (over the fold's training patients who have it).
        names: feature names per modality.
    """

    modalities: list[str]
    blocks: dict[str, np.ndarray]
    means: dict[str, np.ndarray]
    names: dict[str, list[str]]


@dataclass
class ClassicalFold:
    """A fitted classical fold model (it takes the place of a deep ``FoldModel`` in a ``TrainedModel``)."""

    fold: int
    estimator: Any
    features: FoldFeatures
    threshold: float | None
    val_metrics: dict[str, float]
    train: np.ndarray
    result: FoldResult = field(default_factory=lambda: FoldResult({}, 0, float("nan"), []))


def classical_plans(config: ExperimentConfig, modalities: list[str], task: str) -> list[ModelPlan]:
    """The classical baselines of a run (none when ``compare_classical`` is false): a penalised linear model
    (logistic regression, or Cox for survival) and gradient boosting, each on every modality."""
    if not config.compare_classical:
        return []
    linear = "cox_regression" if task == "survival" else "logistic_regression"
    return [ModelPlan(name, CLASSICAL, tuple(modalities), config.fusion) for name in (linear, "gradient_boosting")]


def fold_features(cohort: Cohort, modalities: list[str], inputs: FoldInputs, train: np.ndarray) -> FoldFeatures:
    """Every cohort patient's features through the fold's fitted preprocessing; absent rows at training means."""
    everyone = np.arange(len(cohort.y))
    blocks, means, names = {}, {}, {}
    for name in modalities:
        data = cohort.modalities[name]
        matrix, columns = data.kind.classical_features(inputs.fitted[name], everyone)
        present_train = train[data.present[train]]
        mean = matrix[present_train].mean(axis=0) if len(present_train) else np.zeros(matrix.shape[1])
        matrix = np.where(data.present[:, None], matrix, mean[None, :])
        blocks[name], means[name] = matrix.astype(np.float32), mean
        names[name] = [f"{name}.{c}" for c in columns]
    return FoldFeatures(list(modalities), blocks, means, names)


def design_matrix(features: FoldFeatures, rows: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The model's input for cohort patients ``rows``: modality ``m`` is used where ``present[:, m]`` is True
    and sits at its training means elsewhere (an absent modality, or one outside a Shapley coalition)."""
    return combine_blocks(features, {name: features.blocks[name][rows] for name in features.modalities}, present)


def combine_blocks(features: FoldFeatures, blocks: dict[str, np.ndarray], present: np.ndarray) -> np.ndarray:
    """Concatenate per-modality feature rows ``blocks``, each at its training means where ``present`` is False.

    Args:
        features: the fold's features (training means, model order).
        blocks: ``(n, F_m)`` rows per modality.
        present: ``(n, M)`` bool, columns in model order.
    """
    parts = []
    for column, name in enumerate(features.modalities):
        parts.append(np.where(present[:, column : column + 1], blocks[name], features.means[name][None, :]))
    return np.concatenate(parts, axis=1)


# Shortest penalty path tried last: the smallest penalty as a share of the largest (sksurv's alpha_min_ratio).
_ALPHA_MIN_RATIOS = (0.01, 0.05, 0.2, 0.5)


class ClassicalFitError(ClinfuseError):
    """A classical baseline cannot be fitted on these data."""


def _linear(task: str, seed: int, n_train: int, y_train: np.ndarray) -> Any:
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
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    scoring = "roc_auc" if task == "binary" else "neg_log_loss"
    return GridSearchCV(model, {"logisticregression__C": _C_GRID}, scoring=scoring, cv=inner, error_score=np.nan)


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


def make_estimator(name: str, task: str, seed: int, y_train: np.ndarray) -> Any:
    """An unfitted classical estimator of ``name`` (``*_regression`` or ``gradient_boosting``)."""
    if name == "gradient_boosting":
        return _boosting(task, seed, len(y_train))
    return _linear(task, seed, len(y_train), y_train)


def _target(task: str, y: np.ndarray, time: np.ndarray | None) -> np.ndarray:
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


def train_classical(
    plan: ModelPlan,
    cohort: Cohort,
    config: ExperimentConfig,
    splits: Splits,
    prepared: dict[str, Any],
    shared: dict[tuple[tuple[str, ...], int], FoldFeatures] | None = None,
) -> TrainedModel:
    """Fit a classical plan on every fold (inner CV on the fold's training patients) and predict the test set.

    Args:
        plan: a plan from :func:`classical_plans`.
        cohort: the cohort.
        config: the experiment config (seed, folds' preprocessing, threshold rule).
        splits: the run's splits, shared with the deep models.
        prepared: each modality's run-level preparation.
        shared: each fold's features by (modalities, fold), filled and reused across the classical plans of a
            run: every plan on the same modalities sees the same fold preprocessing, so it is fitted once (at
            10^5 patients a fold's fit takes tens of seconds and its features hundreds of MB).
    """
    task, modalities = cohort.task, list(plan.modalities)
    n_outputs = len(cohort.classes) if task == "multiclass" else 1
    presence = np.stack([cohort.modalities[m].present for m in modalities], axis=1)
    trained = TrainedModel(plan)
    shared = {} if shared is None else shared
    test_logits = []
    for fold, (train_idx, val_idx) in enumerate(splits.folds):
        key = (tuple(modalities), fold)
        if key not in shared:
            inputs = fit_fold_inputs(cohort, modalities, config, train_idx, prepared)
            shared[key] = fold_features(cohort, modalities, inputs, train_idx)
            del inputs  # the fold's fitted inputs (a preprocessed copy of every table) are not needed again
        features = shared[key]
        y_train = cohort.y[train_idx]
        time_train = None if cohort.time is None else cohort.time[train_idx]
        estimator = make_estimator(plan.name, task, config.seed + fold, y_train)
        x_train = design_matrix(features, train_idx, presence[train_idx])
        estimator = fit_estimator(estimator, x_train, _target(task, y_train, time_train), train_idx)
        val_logits = logits(estimator, design_matrix(features, val_idx, presence[val_idx]), n_outputs)
        val_scores = scores_from_logits(val_logits, task)
        threshold = None
        if task == "binary":
            threshold = choose_threshold(
                cohort.y[val_idx], val_scores, config.evaluation.threshold, config.evaluation.fixed_threshold
            )
        val_time = None if cohort.time is None else cohort.time[val_idx]
        val_metrics = evaluate_scores(task, cohort.y[val_idx], val_scores, threshold, val_time)
        trained.folds.append(ClassicalFold(fold, estimator, features, threshold, val_metrics, train_idx))  # type: ignore[arg-type]
        test_logits.append(logits(estimator, design_matrix(features, splits.test, presence[splits.test]), n_outputs))
    trained.test = Predictions(np.asarray(splits.test), np.mean(test_logits, axis=0), None)
    thresholds = [f.threshold for f in trained.folds if f.threshold is not None]
    trained.threshold = float(np.mean(thresholds)) if thresholds else None
    return trained
