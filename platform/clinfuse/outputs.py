"""The run folder contract: every file a run writes, named once, and the schemas of its JSON files.

Writers (the pipeline), readers (the report, resume, explain) and tests import these names instead of spelling
file names; :class:`ModelMetrics`, :class:`RunInfo` and :class:`ModelSpec` type what ``metrics.json``,
``run_info.json`` and the logged model's ``spec.json`` hold. A run folder is ``<report.out_dir>/<experiment>/
<run_id>/``; patient columns hold pseudonymous ids only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NotRequired, TypedDict

CONFIG = "config.yaml"  # the resolved experiment config
RUN_INFO = "run_info.json"  # RunInfo
COHORT_SUMMARY = "cohort_summary.json"  # clinfuse.cohort.cohort_summary (counts only)
SPLITS = "splits.csv"  # patient, split (cv|test), fold
METRICS = "metrics.json"  # {model: ModelMetrics}
COMPARISON = "comparison.csv"  # one row per model: model, kind, metric, value, ci_low, ci_high, p-values
HISTORY = "history.csv"  # model, fold, epoch, train_loss, val_<metric>
PREDICTIONS = "predictions.csv"  # model, patient, fold, label|time+event, prob|prob_<class>|risk, prediction
CONTRIBUTIONS = "contributions.csv"  # primary model: patient, label, prob, f_x, f_empty, phi_/gate_/present_<m>
CLASSICAL_CONTRIBUTIONS = "classical_contributions.csv"  # contributions.csv layout + model, classical baselines
MODALITY_SUMMARY = "modality_summary.json"  # cohort-level modality Shapley statistics (+ usefulness, flags)
# SAGE usefulness: per game on test and per fold on validation, mean |phi|, flags (clinfuse.pipeline.usefulness)
MODALITY_IMPORTANCE = "modality_importance.json"
MODALITY_IMPORTANCE_CSV = "modality_importance.csv"  # scope, game, modality, value, ci_low, ci_high, ...
REPORT = "report.html"
RUN_LOG = "run.log"  # every log record of the run (clinfuse.logs), third-party notices included
OVERLAYS = "overlays"  # overlays/<modality>/<patient>.png
CHECKPOINTS = "checkpoints"  # checkpoints/<model>/fold<k>.pt (resume; logged as each fold ends)
CACHE = "cache"  # cache/<modality>/ (local; kinds' run-level caches)
MODEL = "model"  # the logged model's artifacts before upload

JSON_FILES = (RUN_INFO, COHORT_SUMMARY, METRICS, MODALITY_SUMMARY, MODALITY_IMPORTANCE)
# Files a resume needs besides the checkpoints: logged before training, so a killed run can be resumed elsewhere.
INPUT_FILES = (CONFIG, RUN_INFO, COHORT_SUMMARY, SPLITS)
CSV_FILES = (SPLITS, COMPARISON, HISTORY, PREDICTIONS, CONTRIBUTIONS, CLASSICAL_CONTRIBUTIONS, MODALITY_IMPORTANCE_CSV)
# Files a finished run holds and logs to MLflow as artifacts (features_<m>.csv and overlays/ come on top).
LOGGED_FILES = (CONFIG, *JSON_FILES, *CSV_FILES, REPORT, RUN_LOG)
_FEATURES_PREFIX = "features_"


def features_file(modality: str) -> str:
    """``features_<modality>.csv``: ``patient, feature, value, attribution`` of one modality."""
    return f"{_FEATURES_PREFIX}{modality}.csv"


def feature_files(run_dir: Path) -> dict[str, Path]:
    """Every ``features_<modality>.csv`` of a run folder, keyed by modality."""
    return {p.stem[len(_FEATURES_PREFIX) :]: p for p in sorted(Path(run_dir).glob(f"{_FEATURES_PREFIX}*.csv"))}


def overlay_file(run_dir: Path, modality: str, patient: str) -> Path:
    """``overlays/<modality>/<patient>.png`` of a run folder."""
    return Path(run_dir) / OVERLAYS / modality / f"{patient}.png"


def checkpoint_file(run_dir: Path, model: str, fold: int) -> Path:
    """``checkpoints/<model>/fold<k>.pt`` of a run folder."""
    return Path(run_dir) / CHECKPOINTS / model / f"fold{fold}.pt"


class ModelMetrics(TypedDict):
    """One model's entry of ``metrics.json``."""

    kind: str  # fusion | unimodal (| classical | ablation)
    modalities: list[str]
    threshold: float | None  # binary: mean of the folds' validation thresholds
    folds: list[dict[str, float]]  # validation metrics per fold (and best_epoch)
    fold_mean: dict[str, float]
    fold_sd: dict[str, float]
    test: dict[str, float]  # held-out test metrics of the fold ensemble
    test_ci: dict[str, list[float]]  # percentile bootstrap [lo, hi]


class RunInfo(TypedDict, total=False):
    """``run_info.json``: provenance and what the report needs to read the other files."""

    run_id: str
    experiment: str
    run_name: str
    cohort_name: str
    cohort_hash: str
    git_commit: str | None
    versions: dict[str, str]
    seed: int
    device: str
    task: str
    classes: list[str]
    modalities: list[str]
    modality_kinds: dict[str, str]
    model_name: str
    primary_metric: str
    n_test: int
    exclusions: list[dict[str, Any]]
    input_notes: list[str]


class ModalitySpecEntry(TypedDict):
    """One modality of a model spec: its kind and the kind's description of its raw inputs."""

    name: str
    kind: str
    description: dict[str, Any]


class ModelSpec(TypedDict):
    """The logged model's ``spec.json``: what rebuilds the fold ensemble (no patient data inside)."""

    task: str
    classes: list[str]
    model_name: str
    modalities: list[ModalitySpecEntry]
    fusion: dict[str, Any]
    n_outputs: int
    threshold: float | None
    encoders: list[dict[str, dict[str, Any]]]  # per fold: modality -> EncoderSpec.to_json()
    # Aggregates of the development (non-test) patients, for `clinfuse predict`: patients, modality
    # availability shares, numeric input column -> [mean, sd]; never a patient row.
    training_cohort: NotRequired[dict[str, Any]]
    baseline: NotRequired[dict[str, list[float]]]  # survival: Breslow event times, cumulative hazard, horizons
