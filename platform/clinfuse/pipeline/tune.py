"""``clinfuse tune``: search the primary model's hyper-parameters on the training folds only, with Optuna.

Each trial trains the primary model fold by fold on the run's own cross-validation folds and is scored by the
mean validation metric (AUROC, or C-index for survival); the held-out test patients are never predicted, so
tuning cannot leak into the test estimate a later ``clinfuse run`` reports. After each fold the running mean
is reported to a median pruner, which stops trials that trail the others. Every trial is an MLflow child run
of one tuning run. The study lives in an SQLite file in the tuning folder, so an interrupted search resumes
where it stopped, and the sampler is seeded by the config's seed. The best trial's settings are written as a
config beside the original (``<name>.tuned.yaml``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from clinfuse.cohort import Cohort, Splits, make_splits
from clinfuse.config import ExperimentConfig, config_to_dict, load_config, validate_config
from clinfuse.errors import ConfigError
from clinfuse.pipeline.experiment import prepare
from clinfuse.tracking import (
    log_final_metrics,
    log_params_flat,
    resolve_tracking_uri,
    setup_tracking,
    start_child_run,
    tracked_run,
)
from clinfuse.training.cpu import training_process
from clinfuse.training.data import prepare_inputs
from clinfuse.training.evaluate import primary_metric
from clinfuse.training.models import plan_models
from clinfuse.training.run import resolve_device, train_model

# Choices per setting; numbers on a log scale where their effect is multiplicative.
_EMBED_DIMS = (8, 16, 32, 64)
_WIDTHS = (16, 32, 64, 128)
_TOP_K_GENES = (50, 100, 200, 500, 1000)


@dataclass
class TuneOutcome:
    """What a search left behind: the best trial's settings and score, and where the tuned config is."""

    best_params: dict[str, Any]
    best_value: float
    trials: int
    tuned_config: Path
    folder: Path


def suggest(trial: Any, config: ExperimentConfig, modalities: list[str]) -> ExperimentConfig:
    """The config of one trial: the searched settings drawn by ``trial``, everything else as in ``config``."""
    data = config_to_dict(config)
    training = data["training"]
    training["lr"] = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    training["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
    training["modality_dropout"] = trial.suggest_float("modality_dropout", 0.0, 0.5)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    embed_dim = trial.suggest_categorical("embed_dim", _EMBED_DIMS)
    width = trial.suggest_categorical("encoder_width", _WIDTHS)
    top_k = trial.suggest_categorical("top_k_genes", _TOP_K_GENES)
    for modality in modalities:
        encoder = data["encoders"].setdefault(modality, {})
        # top_k_genes is read only by kinds that filter genes; the others ignore it.
        encoder.update({"embed_dim": embed_dim, "dropout": dropout, "hidden": [width], "top_k_genes": top_k})
    data["fusion"].update({"hidden": trial.suggest_categorical("fusion_hidden", _WIDTHS), "dropout": dropout})
    return validate_config(data, "tuning trial")


def _fold_splits(splits: Splits, fold: int) -> Splits:
    return Splits(test=np.zeros(0, dtype=int), folds=[splits.folds[fold]])


def tune(
    config_path: Path, trials: int, *, overrides: list[str] | None = None, project_dir: Path | None = None
) -> TuneOutcome:
    """Run ``trials`` more trials of the study of ``config_path`` (resuming its stored study) and write the best.

    Args:
        config_path: the experiment YAML.
        trials: trials to add in this call.
        overrides: ``key=value`` config overrides, as ``clinfuse run --set``.
        project_dir: where the MLflow store and ``reports/`` live (default: the current folder).
    """
    import optuna

    if trials < 1:
        raise ConfigError(f"tune --trials {trials}: run at least one trial")
    project_dir = project_dir or Path.cwd()
    config = load_config(config_path, overrides or [])
    device = resolve_device(config.device)
    experiment = config.tracking.experiment or config.name
    folder = (project_dir / config.report.out_dir / experiment / "tune").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=config.name,
        storage=f"sqlite:///{(folder / 'optuna.db').as_posix()}",
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )
    with training_process(device, config.training.keep_freed_memory):
        cohort, modalities = prepare(config)
        splits = make_splits(cohort.y, config.evaluation.folds, config.evaluation.test_fraction, config.seed)
        prepared = prepare_inputs(cohort, modalities, config, folder / "cache")
        metric = primary_metric(cohort.task)
        experiment_id = setup_tracking(resolve_tracking_uri(config.tracking.uri, project_dir), experiment)
        with tracked_run(run_name=f"{config.name}-tune", experiment_id=experiment_id):
            log_params_flat({"tune.trials": trials, "tune.metric": f"val_{metric}", "tune.seed": config.seed})

            def objective(trial: Any) -> float:
                trial_config = suggest(trial, config, modalities)
                with start_child_run(f"trial{trial.number}", {"trial": str(trial.number)}):
                    log_params_flat(trial.params)
                    try:
                        value = _score(trial, trial_config, cohort, modalities, splits, prepared, metric, folder)
                    except optuna.TrialPruned:
                        log_final_metrics("", {"pruned": 1.0})
                        raise
                    log_final_metrics("val", {f"{metric}_mean": value})
                return value

            study.optimize(objective, n_trials=trials)
            best = study.best_trial
            log_final_metrics("best", {f"val_{metric}_mean": best.value})
            log_params_flat({f"best.{k}": v for k, v in best.params.items()})
    tuned = _write_best(config_path, overrides or [], best, modalities)
    return TuneOutcome(dict(best.params), float(best.value), len(study.trials), tuned, folder)


def _score(
    trial: Any,
    config: ExperimentConfig,
    cohort: Cohort,
    modalities: list[str],
    splits: Splits,
    prepared: dict[str, Any],
    metric: str,
    folder: Path,
) -> float:
    """Mean validation ``metric`` of the primary model over the folds, reported fold by fold for pruning."""
    import optuna

    plan = plan_models(config, modalities)[0]
    scores = []
    work = folder / f"trial{trial.number}"
    try:
        for fold in range(len(splits.folds)):
            # One fold per call, each in its own folder: checkpoints are never reused across folds or trials.
            trained = train_model(
                plan,
                0,
                cohort,
                config,
                _fold_splits(splits, fold),
                prepared,
                resolve_device(config.device),
                work / f"fold{fold}",
                predict_test=False,
            )
            scores.append(float(np.nan_to_num(trained.folds[0].val_metrics.get(metric, np.nan), nan=0.0)))
            trial.report(float(np.mean(scores)), fold)
            if trial.should_prune():
                raise optuna.TrialPruned()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return float(np.mean(scores))


def _write_best(config_path: Path, overrides: list[str], best: Any, modalities: list[str]) -> Path:
    """``<config>.tuned.yaml`` beside the original: the original (with overrides) and the best trial's settings."""
    import optuna

    fixed = optuna.trial.FixedTrial(best.params)
    config = suggest(fixed, load_config(config_path, overrides), modalities)
    data = config_to_dict(config)
    data["cohort"] = str(config.cohort)
    out = config_path.with_name(f"{config_path.stem}.tuned.yaml")
    header = f"# Tuned by `clinfuse tune` from {config_path.name}: best mean validation score {best.value:.4f}\n"
    out.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out
