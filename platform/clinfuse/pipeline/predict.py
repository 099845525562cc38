"""``clinfuse predict``: apply a trained model to a new cohort, and validate it externally when labels exist.

The model is fetched from MLflow (a run id, ``runs:/...`` or ``models:/NAME@ALIAS``) and rebuilt with
``clinfuse.training.inference`` (never through the bundled copy of clinfuse). Before anything is predicted,
each modality's kind compares the cohort with what the model was trained on (:meth:`ModalityKind.compatibility`);
errors stop with one line each, warnings are said and kept in the output's metadata. The new cohort is read
through the same input frame the logged pyfunc takes, so ``predict`` and the served model give one answer.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from clinfuse import outputs
from clinfuse.cohort import Cohort, cohort_summary, load_cohort
from clinfuse.config import ExperimentConfig, validate_config
from clinfuse.errors import CohortError, RunError
from clinfuse.kinds import Mismatch, get_kind
from clinfuse.pipeline.artifacts import write_json
from clinfuse.pipeline.predict_features import PatientFeatures, explain_features
from clinfuse.privacy import load_or_create_salt, pseudonymise
from clinfuse.tracking import (
    Predictor,
    build_predictor,
    download_run_artifacts,
    log_artifact,
    log_cohort_datasets,
    log_final_metrics,
    resolve_tracking_uri,
    setup_tracking,
    tracked_run,
)
from clinfuse.tracking.models import download_model, model_run_id, model_uri_of
from clinfuse.tracking.store import use_store
from clinfuse.training.inference import (
    FoldEnsemble,
    PreparedInputs,
    ensemble_inputs,
    fold_mean_logits,
    model_from_spec,
    output_frame,
)
from clinfuse.training.loop import evaluate_scores, scores_from_logits
from clinfuse.training.metrics import bootstrap_all, calibration_intercept_slope

EXTERNAL_FILE = "external.json"
# What predict reads of the training run (never the checkpoints or patient-level files).
RUN_FILES = (outputs.CONFIG, outputs.METRICS, outputs.COHORT_SUMMARY, outputs.CONTRIBUTIONS)


@dataclass
class TrainedRun:
    """A logged model and what its training run left: the rebuilt ensemble, config and internal metrics."""

    uri: str
    run_id: str
    predictor: Predictor
    config: ExperimentConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    contributions: pd.DataFrame | None = None
    cohort_summary: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> dict[str, Any]:
        """The model spec (task, classes, modalities, threshold, training-cohort facts)."""
        return self.predictor.spec


@dataclass
class PredictionOutcome:
    """What ``predict`` wrote: the per-patient frame, its file, warnings and, when labelled, the validation."""

    frame: pd.DataFrame
    out: Path
    warnings: list[str]
    features: Path | None = None
    external: dict[str, Any] | None = None
    report: Path | None = None
    run_id: str | None = None


def load_trained_run(model: str, tracking_uri: str) -> TrainedRun:
    """Fetch the model at ``model`` (run id or URI) and its training run's config and metrics from the store."""
    use_store(tracking_uri)
    uri = model_uri_of(model)
    run_id = model_run_id(uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = download_model(uri, Path(tmp) / "model")
        predictor = build_predictor(folder / "artifacts", model_from_spec)
        files = Path(tmp) / "run"
        for name in RUN_FILES:
            _fetch(run_id, files, name)
        config_file = files / outputs.CONFIG
        if not config_file.is_file():
            raise RunError(f"run {run_id}: config.yaml is not among its artifacts; is it a clinfuse run?")
        config = validate_config(yaml.safe_load(config_file.read_text(encoding="utf-8")), source=str(config_file))
        metrics = _json(files / outputs.METRICS)
        summary = _json(files / outputs.COHORT_SUMMARY)
        table = files / outputs.CONTRIBUTIONS
        contributions = pd.read_csv(table) if table.is_file() else None
    return TrainedRun(uri, run_id, predictor, config, metrics, contributions, summary)


def _fetch(run_id: str, folder: Path, name: str) -> None:
    """Download one artifact of the training run into ``folder``; a file the run lacks is simply absent."""
    try:
        download_run_artifacts(run_id, folder, name)
    except RunError:
        raise
    except Exception:  # noqa: BLE001  (MLflow raises store-specific errors for an absent file)
        return


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def check_compatibility(spec: dict[str, Any], states: dict[str, Any], cohort: Cohort, max_missing: float) -> list[str]:
    """Compare the cohort with the model; return the warnings, raise every error at once.

    Raises:
        CohortError: one line per difference that makes prediction impossible.
    """
    found: list[Mismatch] = []
    trained = {entry["name"]: entry for entry in spec["modalities"]}
    for name in cohort.modality_names:
        if name not in trained:
            found.append(Mismatch(f"modality '{name}': not used by the model; ignored"))
    for name, entry in trained.items():
        data = cohort.modalities.get(name)
        if data is None:
            found.append(Mismatch(f"modality '{name}' of the model is not in the cohort; absent for every patient"))
            continue
        if data.type != entry["kind"]:
            found.append(
                Mismatch(
                    f"modality '{name}': the model was trained on kind '{entry['kind']}', the cohort declares "
                    f"'{data.type}'; rename one of them",
                    error=True,
                )
            )
            continue
        fold_states = [states[fold][name] for fold in sorted(states) if name in states[fold]]
        found += get_kind(entry["kind"]).compatibility(
            name, entry["description"], fold_states, data, max_missing=max_missing
        )
    errors = [m.message for m in found if m.error]
    if errors:
        raise CohortError.from_list(errors)
    return [m.message for m in found]


def cohort_frame(spec: dict[str, Any], cohort: Cohort) -> pd.DataFrame:
    """The model's input frame for every cohort patient.

    A column the cohort lacks (a gene, once :func:`check_compatibility` allowed it) holds the training
    patients' mean on the rows where its modality is present, from the means the model spec keeps; without
    one it stays empty, which the fold's fitted imputer fills. Every column of a modality the cohort lacks is
    empty: the modality is absent.
    """
    columns: dict[str, Any] = {}
    rows = np.arange(cohort.n)
    means = spec.get("training_cohort", {}).get("numeric", {})
    for entry in spec["modalities"]:
        name = entry["name"]
        data = cohort.modalities.get(name)
        if data is not None:
            columns.update(data.kind.to_frame(name, data, rows))
        for column in get_kind(entry["kind"]).frame_columns(name, entry["description"]):
            if column in columns:
                continue
            if data is not None and column in means:
                columns[column] = np.where(data.present, means[column][0], None).tolist()
            else:
                columns[column] = [None] * cohort.n
    return pd.DataFrame(columns)


def predict_cohort(
    model: str,
    cohort_dir: Path,
    out: Path | None = None,
    *,
    explain: bool = False,
    explain_max: int | None = None,
    report: bool = False,
    keep_ids: bool = False,
    max_missing: float = 0.2,
    tracking_uri: str | None = None,
    project_dir: Path | None = None,
) -> PredictionOutcome:
    """Predict every patient of ``cohort_dir`` with ``model``; with labels, validate externally and track it.

    Args:
        model: a run id, ``runs:/<id>/model`` or ``models:/NAME@ALIAS``.
        cohort_dir: a cohort folder (cohort.yaml contract; its label table is optional).
        out: the per-patient CSV (default ``predictions_<cohort>.csv`` in ``project_dir``); its metadata
            (threshold, model, warnings) goes to ``<out>.json``.
        explain: add each patient's modality Shapley values (logit scale) as ``shapley_<modality>`` and the
            largest feature attributions of each feature-attributing modality as ``top_features_<modality>``;
            every attribution goes to ``<out stem>_features.csv`` (a local file, never logged), image
            saliency figures to ``<out stem>_overlays/`` (see :mod:`clinfuse.pipeline.predict_features`).
        explain_max: top features for at most this many patients, the first in cohort order (default: the
            run's ``explain.max_patients``); modality Shapley values cover every patient.
        report: write the external-validation report (labelled cohorts).
        keep_ids: write raw patient ids instead of pseudonyms (this local file only; nothing is logged then).
        max_missing: share of a modality's input features (genes) that may be missing and imputed.
        tracking_uri: MLflow store (default ``MLFLOW_TRACKING_URI`` or ``./mlflow.db``).
        project_dir: where the salt file and default store live (default: the current folder).
    """
    project_dir = project_dir or Path.cwd()
    store = resolve_tracking_uri(tracking_uri, project_dir)
    trained = load_trained_run(model, store)
    spec, states = trained.spec, trained.predictor.preprocessors
    cohort = load_cohort(cohort_dir, verify_images=True, require_labels=False)
    if cohort.labelled and cohort.task != spec["task"]:
        raise CohortError(f"cohort task is {cohort.task}, the model predicts {spec['task']}; use a matching cohort")
    warnings = check_compatibility(spec, states, cohort, max_missing)
    frame = cohort_frame(spec, cohort)
    model_obj: FoldEnsemble = trained.predictor.model  # type: ignore[assignment]
    # Preparing a cohort's inputs (reading and resampling every image) costs more than the forward passes, so
    # the predictions and both explanations share one preparation.
    prepared = ensemble_inputs(model_obj, states, frame)
    logits = fold_mean_logits(model_obj, prepared)
    result = output_frame(spec, logits)
    privacy = trained.config.privacy
    salt = load_or_create_salt(project_dir / privacy.salt_file) if privacy.pseudonymise else None
    pseudo_ids = pseudonymise(cohort.patient_ids, salt)
    result.insert(0, "patient", cohort.patient_ids if keep_ids else pseudo_ids)
    shapley = _modality_shapley(model_obj, prepared, spec) if explain else None
    if shapley is not None:
        for column, name in enumerate(shapley["modalities"]):
            result[f"shapley_{name}"] = shapley["phi"][:, column]
    out = out or project_dir / f"predictions_{cohort.name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    features, features_path = None, out.with_name(f"{out.stem}_features.csv")
    if explain:
        limit = explain_max or trained.config.explain.max_patients
        features = _features(trained, prepared, cohort, logits, list(result["patient"]), out, limit)
        for name, text in features.top.items():
            result[f"top_features_{name}"] = text
        features.long.to_csv(features_path, index=False)
    result.to_csv(out, index=False)
    metadata = {
        "model": trained.uri,
        "training_run": trained.run_id,
        "cohort": cohort.name,
        "task": spec["task"],
        "classes": spec["classes"],
        "threshold": spec.get("threshold"),
        "horizons": (spec.get("baseline") or {}).get("horizons"),
        "patients": cohort.n,
        "ids": "raw (local file only)" if keep_ids else ("pseudonymous" if salt else "as in the cohort"),
        "warnings": warnings,
    }
    outcome = PredictionOutcome(result, out, warnings)
    if features is not None:
        outcome.features = features_path
        metadata["features"] = features_path.name
        metadata["features_patients"] = min(cohort.n, limit)
        # What each modality's attributions add up to, so the file can be read without the docs.
        metadata["attributions"] = {
            e["name"]: get_kind(e["kind"]).attribution for e in spec["modalities"] if e["name"] in features.top
        }
    write_json(Path(f"{out}.json"), metadata)
    if cohort.labelled:
        ranking = features.ranking() if features is not None else None
        _validate_externally(outcome, trained, cohort, logits, pseudo_ids, shapley, ranking, report, keep_ids, store)
    return outcome


def _features(
    trained: TrainedRun,
    prepared: PreparedInputs,
    cohort: Cohort,
    logits: np.ndarray,
    patients: list[str],
    out: Path,
    max_patients: int,
) -> PatientFeatures:
    """Every patient's feature attributions for the explained logit column (as ``clinfuse run`` chooses it)."""
    spec, config = trained.spec, trained.config
    scores = scores_from_logits(logits, spec["task"])
    classes = logits.argmax(axis=1) if spec["task"] == "multiclass" else np.zeros(len(logits), dtype=int)
    prob = scores if scores.ndim == 1 else scores[np.arange(len(scores)), classes]
    model: FoldEnsemble = trained.predictor.model  # type: ignore[assignment]
    return explain_features(
        model,
        trained.predictor.preprocessors,
        prepared,
        cohort,
        patients=patients,
        classes=classes,
        prob=prob,
        overlays=out.with_name(f"{out.stem}_overlays"),
        seed=config.seed,
        max_panels=config.explain.saliency_patients,
        max_patients=max_patients,
    )


def _modality_shapley(model: FoldEnsemble, prepared: PreparedInputs, spec: dict[str, Any]) -> dict[str, Any]:
    """Exact modality Shapley values per patient, averaged over the fold models (as ``clinfuse run`` does).

    ``prepared``: each fold's inputs and the presence, from :func:`~clinfuse.training.inference.ensemble_inputs`.
    """
    from clinfuse.explain.modality import model_modality_shapley

    per_fold, present = prepared
    output = "predicted" if spec["task"] == "multiclass" else 0
    results = [
        model_modality_shapley(fold, (inputs, present), output_index=output)
        for fold, inputs in zip(model.folds, per_fold, strict=True)
    ]
    return {"modalities": results[0].modalities, "phi": np.mean([r.phi for r in results], axis=0)}


def _validate_externally(
    outcome: PredictionOutcome,
    trained: TrainedRun,
    cohort: Cohort,
    logits: np.ndarray,
    pseudo_ids: list[str],
    shapley: dict[str, Any] | None,
    ranking: dict[str, list[dict[str, Any]]] | None,
    report: bool,
    keep_ids: bool,
    store: str,
) -> None:
    """External metrics with CIs, calibration, comparison with the internal test, an MLflow run and a report."""
    spec, config = trained.spec, trained.config
    task = spec["task"]
    scores = scores_from_logits(logits, task)
    threshold = spec.get("threshold")
    y, time = cohort.y, cohort.time
    external = evaluate_scores(task, y, scores, threshold, time)
    ci = bootstrap_all(
        y, scores, threshold, task, config.evaluation.bootstrap, config.evaluation.ci_level, config.seed, time=time
    )
    internal = trained.metrics.get(spec.get("model_name", ""), {})
    facts: dict[str, Any] = {
        "cohort": cohort.name,
        "cohort_hash": cohort.content_hash,
        "patients": cohort.n,
        "task": task,
        "classes": spec["classes"],
        "model": trained.uri,
        "training_run": trained.run_id,
        "threshold": threshold,
        "external": external,
        "external_ci": {k: list(v) for k, v in ci.items()},
        "internal": internal.get("test", {}),
        "internal_ci": internal.get("test_ci", {}),
        "warnings": outcome.warnings,
        "case_mix": _case_mix(spec, cohort, cohort_frame(spec, cohort)),
    }
    if task == "binary":
        intercept, slope = calibration_intercept_slope(y, scores)
        facts["calibration"] = {"intercept": intercept, "slope": slope}
        facts["curve"] = {"y": y.tolist(), "prob": np.asarray(scores).tolist()}
    if shapley is not None:
        phi = shapley["phi"]
        facts["contributions"] = {
            "modalities": shapley["modalities"],
            "external_mean_abs": np.abs(phi).mean(axis=0).tolist(),
        }
        if trained.contributions is not None:
            facts["contributions"]["training"] = _training_contributions(trained.contributions, shapley["modalities"])
    if ranking:
        facts["features"] = ranking
    folder = outcome.out.parent / f"{outcome.out.stem}_external"
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / EXTERNAL_FILE, facts)
    if report:
        from clinfuse.reports.external import build_external_report

        outcome.report = build_external_report(folder)
    outcome.external = facts
    outcome.run_id = _track(trained, cohort, facts, folder, outcome, pseudo_ids, keep_ids, store)


def _training_contributions(contributions: pd.DataFrame, modalities: list[str]) -> list[float | None]:
    """The training run's mean |phi| per modality from its contributions.csv (NaN where not found)."""
    values = []
    for name in modalities:
        column = next((c for c in (f"phi_{name}", name) if c in contributions.columns), None)
        values.append(float(contributions[column].abs().mean()) if column else None)
    return values


def _case_mix(spec: dict[str, Any], cohort: Cohort, frame: pd.DataFrame) -> dict[str, Any]:
    """How the new cohort differs from the training one: modality availability and numeric input shifts.

    The shift of a numeric input is its standardised mean difference against the training patients' mean and
    sd stored in the model (aggregates only).
    """
    training = spec.get("training_cohort", {})
    availability = {
        entry["name"]: {
            "training": training.get("availability", {}).get(entry["name"]),
            "external": float(cohort.modalities[entry["name"]].present.mean())
            if entry["name"] in cohort.modalities
            else 0.0,
        }
        for entry in spec["modalities"]
    }
    shifts = []
    for column, (mean, sd) in training.get("numeric", {}).items():
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().sum() < 2:
            continue
        smd = (float(values.mean()) - mean) / sd if sd and sd > 0 else float("nan")
        shifts.append({"input": column, "training_mean": mean, "external_mean": float(values.mean()), "smd": smd})
    shifts.sort(key=lambda s: -abs(s["smd"]) if s["smd"] == s["smd"] else 0.0)
    return {"availability": availability, "shifts": shifts, "summary": cohort_summary(cohort)}


def _track(
    trained: TrainedRun,
    cohort: Cohort,
    facts: dict[str, Any],
    folder: Path,
    outcome: PredictionOutcome,
    pseudo_ids: list[str],
    keep_ids: bool,
    store: str,
) -> str:
    """A new MLflow run in the training run's experiment, tagged with it; the cohort as a dataset input."""
    config = trained.config
    experiment = config.tracking.experiment or config.name
    experiment_id = setup_tracking(store, experiment)
    tags = {
        "clinfuse.kind": "external_validation",
        "clinfuse.training_run": trained.run_id,
        "clinfuse.model_uri": trained.uri,
        "clinfuse.cohort": cohort.name,
        "clinfuse.cohort_hash": cohort.content_hash,
        "clinfuse.task": cohort.task,
    }
    description = f"External validation of run {trained.run_id} on cohort {cohort.name}"
    with tracked_run(
        run_name=f"external-{cohort.name}", tags=tags, experiment_id=experiment_id, description=description
    ) as run:
        log_final_metrics("external", facts["external"])
        log_final_metrics("external", {k: tuple(v) for k, v in facts["external_ci"].items()})
        if "calibration" in facts:
            log_final_metrics("external_calibration", facts["calibration"])
        log_final_metrics("internal", facts["internal"])
        tables, sources = {}, {}
        for name, data in cohort.modalities.items():
            if data.frame is not None:
                table = data.frame.copy()
                table.index = pd.Index(pseudo_ids, name="patient")
                tables[name] = table[data.present]
                sources[name] = str(cohort.root / getattr(data.entry, "table", ""))
        # As in training: without pseudonymisation the index holds the raw ids on purpose (config choice).
        pseudonymised = pseudo_ids != cohort.patient_ids
        raw = set(cohort.patient_ids)
        protected = cohort.identifier_values | raw if pseudonymised else cohort.identifier_values - raw
        log_cohort_datasets(tables, cohort.name, sources, cohort.content_hash, protected, context="external_validation")
        for path in [folder / EXTERNAL_FILE, folder / "report.html", Path(f"{outcome.out}.json")]:
            if path.is_file():
                log_artifact(path)
        if not keep_ids:
            log_artifact(outcome.out)
        return str(run.info.run_id)
