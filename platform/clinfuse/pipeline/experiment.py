"""``clinfuse run``: cohort → splits → every planned model over the folds → metrics → MLflow → explain → report.

This is the orchestration layer: it calls the cohort, training, tracking, explain and reports libraries in
order and writes the run folder (see docs/architecture.md) that the report and the MLflow run are built from.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from clinfuse import outputs
from clinfuse.cohort import Cohort, cohort_summary, load_cohort, make_splits
from clinfuse.config import ExperimentConfig, config_to_dict
from clinfuse.errors import ConfigError
from clinfuse.logs import LOGGER, RunLog, run_log, stage
from clinfuse.pipeline.ablation import ablate_flagged
from clinfuse.pipeline.artifacts import ensure_writable_dir, log_model, write_json
from clinfuse.pipeline.callbacks import LogCallback, MlflowCallback, ProgressCallback
from clinfuse.pipeline.classical import explain_classical, run_classical
from clinfuse.pipeline.cohort_view import restrict_to_modalities
from clinfuse.pipeline.dashboard import log_dashboard
from clinfuse.privacy import load_or_create_salt, pseudonymise
from clinfuse.tracking import (
    git_commit,
    link_model_metrics,
    log_artifact,
    log_artifacts_dir,
    log_cohort_datasets,
    log_final_metrics,
    log_params_flat,
    log_tags,
    resolve_tracking_uri,
    setup_tracking,
    start_child_run,
    tracked_run,
)
from clinfuse.training.callbacks import TrainingCallback
from clinfuse.training.cpu import training_process
from clinfuse.training.data import check_inputs, input_notes, prepare_inputs
from clinfuse.training.distributed import DistContext, broadcast_object, init_from_env
from clinfuse.training.evaluate import (
    all_predictions_frame,
    compare_models,
    history_frame,
    model_metrics,
    primary_metric,
)
from clinfuse.training.models import check_names, plan_models, select_modalities
from clinfuse.training.run import TrainedModel, resolve_device, train_model


@dataclass
class RunOutcome:
    """What a finished run left behind."""

    run_id: str
    run_dir: Path
    metrics: dict[str, Any]
    comparison: Any
    report: Path | None
    trained: list[TrainedModel]


def _versions() -> dict[str, str]:
    import platform as std_platform
    from importlib.metadata import version

    return {
        **{name: version(name) for name in ("clinfuse", "torch", "monai", "shap", "mlflow")},
        "python": std_platform.python_version(),
    }


def prepare(config: ExperimentConfig) -> tuple[Cohort, list[str]]:
    """Load the cohort and restrict it to the modalities the config uses."""
    if not config.cohort.exists():
        raise ConfigError(f"config key 'cohort': folder {config.cohort} does not exist; point it at a cohort folder")
    # Opening every image now turns a corrupt file into a one-line CohortError before any run is tracked.
    cohort = load_cohort(config.cohort, verify_images=True)
    modalities = select_modalities(config, cohort.modality_names)
    check_names(config, cohort.modality_names, cohort.task)
    check_inputs(config, cohort)
    return restrict_to_modalities(cohort, modalities), modalities


def run_experiment(
    config: ExperimentConfig, resume: str | None = None, progress: Any = None, project_dir: Path | None = None
) -> RunOutcome:
    """Train, evaluate, track, explain and report one experiment.

    Stages are logged to ``logging.getLogger("clinfuse")`` and the whole run (third-party notices included)
    to ``run.log`` in the run folder, see :mod:`clinfuse.logs`.

    Args:
        config: the validated experiment config.
        resume: an MLflow run id of an interrupted run to continue (finished folds are reused).
        progress: optional callback ``(model, fold, epoch, metrics)`` for live progress.
        project_dir: where the default MLflow store lives (defaults to the current folder).
    """
    project_dir = project_dir or Path.cwd()
    ctx = init_from_env(config.device)
    device = ctx.device if ctx.distributed else resolve_device(config.device)
    with training_process(device, config.training.keep_freed_memory), run_log() as log:
        return _run(config, resume, progress, project_dir, ctx, device, log)


def _run(
    config: ExperimentConfig,
    resume: str | None,
    progress: Any,
    project_dir: Path,
    ctx: DistContext,
    device: torch.device,
    log: RunLog,
) -> RunOutcome:
    with stage("checking", cohort=config.cohort.name):
        cohort, modalities = prepare(config)
    LOGGER.info("cohort: %d patients, modalities %s, task %s", len(cohort.patient_ids), modalities, cohort.task)
    splits = make_splits(cohort.y, config.evaluation.folds, config.evaluation.test_fraction, config.seed)
    if not ctx.is_main:
        return _follow_main_rank(config, cohort, modalities, splits, ctx, project_dir)
    salt = load_or_create_salt(project_dir / config.privacy.salt_file) if config.privacy.pseudonymise else None
    pseudo_ids = pseudonymise(cohort.patient_ids, salt)
    experiment = config.tracking.experiment or config.name
    ensure_writable_dir(project_dir / config.report.out_dir, "report.out_dir")
    experiment_id = setup_tracking(resolve_tracking_uri(config.tracking.uri, project_dir), experiment)
    with tracked_run(
        run_name=config.name,
        run_id=resume,
        experiment_id=experiment_id,
        system_metrics=config.tracking.system_metrics,
    ) as run:
        run_id = broadcast_object(run.info.run_id, ctx)
        run_dir = (project_dir / config.report.out_dir / experiment / run_id).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        log.open(run_dir)
        LOGGER.info("run %s: folder %s", run_id, run_dir)
        if resume is None:
            log_params_flat(config_to_dict(config))
            log_tags(cohort.name, cohort.content_hash, config.seed, str(device), {"clinfuse.task": cohort.task})
            _log_datasets(cohort, pseudo_ids, config.privacy.pseudonymise)
        _write_inputs(run_dir, config, cohort, modalities, splits, pseudo_ids, run_id, experiment, device)
        # Logged now, not only at the end: with the fold checkpoints they let anyone resume a killed run.
        for name in outputs.INPUT_FILES:
            log_artifact(run_dir / name)
        with stage("caching", patients=len(cohort.patient_ids), modalities=len(modalities)):
            prepared = prepare_inputs(cohort, modalities, config, run_dir / outputs.CACHE)
        _add_run_info(run_dir, {"input_notes": input_notes(cohort, prepared)})
        plans = plan_models(config, modalities)
        callbacks: list[TrainingCallback] = [MlflowCallback(run_id), LogCallback(config.training.epochs)]
        if progress is not None:
            callbacks.append(ProgressCallback(progress))
        trained: list[TrainedModel] = []
        metrics: dict[str, Any] = {}
        bases: dict[Any, Any] = {}  # each fold's linear base, shared by the models on the same modalities
        for index, plan in enumerate(plans):
            # In comparison mode each model gets its own child run holding its fold runs.
            scope = start_child_run(plan.name, {"model": plan.name, "kind": plan.kind}) if len(plans) > 1 else None
            with scope or nullcontext():
                folds, epochs = len(splits.folds), config.training.epochs
                with stage(
                    f"training {plan.name}",
                    folds=folds,
                    epochs=epochs,
                    patients=len(cohort.patient_ids) - len(splits.test),
                ):
                    model = train_model(
                        plan, index, cohort, config, splits, prepared, device, run_dir, callbacks, bases=bases
                    )
                with stage(
                    f"metrics {plan.name}", test_patients=len(splits.test), bootstrap=config.evaluation.bootstrap
                ):
                    metrics[plan.name] = model_metrics(model, cohort, splits, config.evaluation, config.seed)
                if scope is not None:
                    log_final_metrics("test", metrics[plan.name]["test"])
            trained.append(model)
        primary = trained[0]
        # Logged now, before the SAGE metrics, so the run page's metric list starts with them (first logged first).
        log_final_metrics("test", metrics[primary.plan.name]["test"])
        with stage("classical baselines"):
            classical = run_classical(config, cohort, modalities, splits, prepared, metrics)
        comparison = compare_models([*trained, *classical], metrics, cohort, splits, config.evaluation, config.seed)
        write_json(run_dir / outputs.METRICS, metrics)
        comparison.to_csv(run_dir / outputs.COMPARISON, index=False)
        history_frame(trained).to_csv(run_dir / outputs.HISTORY, index=False)
        predictions = all_predictions_frame([*trained, *classical], cohort, splits, pseudo_ids)
        predictions.to_csv(run_dir / outputs.PREDICTIONS, index=False)
        if config.explain.enabled:
            from clinfuse.pipeline.explanations import explain_run

            with stage("explaining", patients=min(len(splits.test), config.explain.max_patients)):
                explain_run(primary, cohort, splits, pseudo_ids, config, run_dir, device)
                explain_classical(classical, cohort, pseudo_ids, config.explain.max_patients, run_dir)
            # Flags are known only now: models without a flagged modality join the comparison after the fact.
            ablated = ablate_flagged(
                trained,
                metrics,
                cohort=cohort,
                splits=splits,
                config=config,
                prepared=prepared,
                pseudo_ids=pseudo_ids,
                run_dir=run_dir,
                device=device,
                callbacks=callbacks,
                fitted_elsewhere=classical,
            )
            comparison = comparison if ablated is None else ablated
        report = None
        if config.report.enabled:
            from clinfuse.reports import build_report

            with stage("reporting", patient_cards=config.report.patient_cards):
                report = build_report(run_dir, n_patients=config.report.patient_cards)
        LOGGER.info("run %s finished: logging run files to MLflow", run_id)
        for path in [run_dir / name for name in outputs.LOGGED_FILES] + list(outputs.feature_files(run_dir).values()):
            if path.exists():
                log_artifact(path)
        if (run_dir / outputs.OVERLAYS).is_dir():
            log_artifacts_dir(run_dir / outputs.OVERLAYS, outputs.OVERLAYS)
        log_dashboard(run_dir)
        if config.tracking.log_model:
            example = _example_rows(cohort, modalities, splits.test)
            development = np.setdiff1d(np.arange(cohort.n), splits.test)
            with stage("logging model"):
                info = log_model(primary, cohort, config, run_dir / outputs.MODEL, example, development)
            link_model_metrics(info.model_id, metrics[primary.plan.name]["test"])
    return RunOutcome(run_id, run_dir, metrics, comparison, report, trained)


def _follow_main_rank(
    config: ExperimentConfig,
    cohort: Cohort,
    modalities: list[str],
    splits: Any,
    ctx: DistContext,
    project_dir: Path,
) -> RunOutcome:
    """A torchrun rank other than 0: trains every model beside rank 0, which alone tracks and writes."""
    run_id = broadcast_object(None, ctx)
    experiment = config.tracking.experiment or config.name
    run_dir = (project_dir / config.report.out_dir / experiment / run_id).resolve()
    prepared = prepare_inputs(cohort, modalities, config, run_dir / outputs.CACHE)
    bases: dict[Any, Any] = {}
    trained = [
        train_model(plan, index, cohort, config, splits, prepared, ctx.device, run_dir, bases=bases)
        for index, plan in enumerate(plan_models(config, modalities))
    ]
    return RunOutcome(run_id, run_dir, {}, None, None, trained)


def _add_run_info(run_dir: Path, values: dict[str, Any]) -> None:
    path = run_dir / outputs.RUN_INFO
    write_json(path, {**json.loads(path.read_text(encoding="utf-8")), **values})


def _log_datasets(cohort: Cohort, pseudo_ids: list[str], pseudonymised: bool) -> None:
    """Each table modality's feature table (pseudonymous index) as an MLflow dataset input.

    Without pseudonymisation the index holds the raw patient ids on purpose (the user said the data are not
    sensitive), so only identifier-column values are refused.
    """
    tables, sources = {}, {}
    for name, data in cohort.modalities.items():
        if data.frame is not None:
            # set_axis shares the values (copy-on-write): only the present rows are copied, once.
            tables[name] = data.frame.set_axis(pd.Index(pseudo_ids, name="patient"))[data.present]
            sources[name] = str(cohort.root / getattr(data.entry, "table", getattr(data.entry, "index", "")))
    protected = cohort.identifier_values if pseudonymised else cohort.identifier_values - set(cohort.patient_ids)
    log_cohort_datasets(tables, cohort.name, sources, cohort.content_hash, protected)


def _example_rows(cohort: Cohort, modalities: list[str], test: np.ndarray, count: int = 5) -> np.ndarray:
    """Test patients with a table modality (the model's input example leaves file columns empty)."""
    tabular = [cohort.modality_names.index(m) for m in modalities if cohort.modalities[m].paths is None]
    if not tabular:
        return test[:count]
    with_table = test[cohort.presence[test][:, tabular].any(axis=1)]
    return with_table[:count]


def _write_inputs(
    run_dir: Path,
    config: ExperimentConfig,
    cohort: Cohort,
    modalities: list[str],
    splits: Any,
    pseudo_ids: list[str],
    run_id: str,
    experiment: str,
    device: torch.device,
) -> None:
    (run_dir / outputs.CONFIG).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8")
    splits.to_frame(pseudo_ids).to_csv(run_dir / outputs.SPLITS, index=False)
    summary = cohort_summary(cohort)
    write_json(run_dir / outputs.COHORT_SUMMARY, summary)
    write_json(
        run_dir / outputs.RUN_INFO,
        outputs.RunInfo(
            run_id=run_id,
            experiment=experiment,
            run_name=config.name,
            cohort_name=cohort.name,
            cohort_hash=cohort.content_hash,
            git_commit=git_commit(),
            versions=_versions(),
            seed=config.seed,
            device=str(device),
            task=cohort.task,
            classes=cohort.classes,
            modalities=modalities,
            modality_kinds={m: cohort.modalities[m].type for m in modalities},
            model_name=plan_models(config, modalities)[0].name,
            primary_metric=primary_metric(cohort.task),
            n_test=int(len(splits.test)),
            exclusions=[e.__dict__ for e in cohort.exclusions],
        ),
    )
