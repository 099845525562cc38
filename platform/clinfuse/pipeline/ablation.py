"""Acting on the influence-without-usefulness flags: the primary model retrained without each flagged modality.

Flags are known only after the explanations, so this runs after them: each ablation model is trained on the
run's splits like any other (its own MLflow child run, checkpoints for resuming), added to ``metrics.json``,
``comparison.csv`` (kind ``ablation``), ``history.csv`` and ``predictions.csv``, and compared with the primary
model by a paired bootstrap on the same test patients (``diff_vs_primary`` = ablation minus primary,
``p_vs_primary``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from clinfuse import outputs
from clinfuse.cohort import Cohort, Splits
from clinfuse.config import ExperimentConfig
from clinfuse.metric_catalog import primary_metric
from clinfuse.pipeline.artifacts import write_json
from clinfuse.pipeline.usefulness import read_flags
from clinfuse.tracking import log_final_metrics, start_child_run
from clinfuse.training.callbacks import TrainingCallback
from clinfuse.training.distributed import current_context
from clinfuse.training.evaluate import all_predictions_frame, compare_models, history_frame, model_metrics, test_scores
from clinfuse.training.metrics import paired_bootstrap_test
from clinfuse.training.models import ModelPlan, ablation_plan
from clinfuse.training.run import TrainedModel, train_model


def ablation_enabled(config: ExperimentConfig) -> bool:
    """``explain.ablate_flagged``, which defaults to on in comparison runs (``compare`` non-empty).

    Off under torchrun: the other ranks have left the run before the flags exist, and training needs them.
    """
    if current_context().world_size > 1:
        return False
    setting = config.explain.ablate_flagged
    return bool(config.compare) if setting is None else setting


def ablation_plans(primary: ModelPlan, flagged: Sequence[str]) -> list[ModelPlan]:
    """One plan per flagged modality of the primary model that leaves at least one other modality."""
    return [ablation_plan(primary, m) for m in flagged if m in primary.modalities and len(primary.modalities) > 1]


def compare_with_primary(
    comparison: pd.DataFrame,
    models: Sequence[TrainedModel],
    cohort: Cohort,
    splits: Splits,
    config: ExperimentConfig,
) -> pd.DataFrame:
    """``comparison`` with ``diff_vs_primary`` and ``p_vs_primary`` filled for the ablation rows.

    Args:
        comparison: :func:`~clinfuse.training.evaluate.compare_models`'s table, one row per model.
        models: the run's trained models, the primary first.
        cohort: the cohort.
        splits: the run's splits.
        config: the experiment config (bootstrap resamples, seed).
    """
    primary, test = models[0], splits.test
    time = None if cohort.time is None else cohort.time[test]
    frame = comparison.assign(diff_vs_primary=np.nan, p_vs_primary=np.nan)
    for trained in models:
        if trained.plan.kind != "ablation":
            continue
        result = paired_bootstrap_test(
            cohort.y[test],
            test_scores(trained, cohort.task),
            test_scores(primary, cohort.task),
            metric=primary_metric(cohort.task),
            n_boot=max(config.evaluation.bootstrap, 1),
            seed=config.seed,
            task=cohort.task,  # type: ignore[arg-type]
            time=time,
        )
        row = frame["model"] == trained.plan.name
        frame.loc[row, "diff_vs_primary"] = result["diff"]
        frame.loc[row, "p_vs_primary"] = result["p_value"]
    return frame


def ablate_flagged(
    trained: list[TrainedModel],
    metrics: dict[str, Any],
    *,
    cohort: Cohort,
    splits: Splits,
    config: ExperimentConfig,
    prepared: dict[str, Any],
    pseudo_ids: list[str],
    run_dir: Path,
    device: torch.device,
    callbacks: Sequence[TrainingCallback] = (),
    fitted_elsewhere: Sequence[TrainedModel] = (),
) -> pd.DataFrame | None:
    """Train ``<primary>_without_<m>`` for each flagged modality ``m`` and rewrite the comparison files.

    Reads the flags from the run folder's ``modality_importance.json`` (so call it after the explanations).
    ``trained`` and ``metrics`` gain the ablation models.

    Args:
        trained: the run's trained models, the primary first.
        metrics: ``metrics.json``'s content, keyed by model name.
        cohort: the cohort.
        splits: the run's splits.
        config: the experiment config.
        prepared: each modality's run-level preparation.
        pseudo_ids: pseudonymous patient ids (``predictions.csv``).
        run_dir: the run folder.
        device: where to train.
        callbacks: training callbacks (MLflow, progress).
        fitted_elsewhere: models of the comparison not trained here (the classical baselines): they stay rows of
            the rewritten comparison and predictions.

    Returns:
        The new comparison table, or ``None`` when ablation is off or nothing was flagged.
    """
    plans = ablation_plans(trained[0].plan, read_flags(run_dir)) if ablation_enabled(config) else []
    if not plans:
        return None
    for plan in plans:
        with start_child_run(plan.name, {"model": plan.name, "kind": plan.kind}):
            model = train_model(plan, len(trained), cohort, config, splits, prepared, device, run_dir, callbacks)
            metrics[plan.name] = model_metrics(model, cohort, splits, config.evaluation, config.seed)
            log_final_metrics("test", metrics[plan.name]["test"])
        trained.append(model)
    everything = [*trained, *fitted_elsewhere]
    comparison = compare_models(everything, metrics, cohort, splits, config.evaluation, config.seed)
    comparison = compare_with_primary(comparison, everything, cohort, splits, config)
    write_json(run_dir / outputs.METRICS, metrics)
    comparison.to_csv(run_dir / outputs.COMPARISON, index=False)
    history_frame(trained).to_csv(run_dir / outputs.HISTORY, index=False)
    all_predictions_frame(everything, cohort, splits, pseudo_ids).to_csv(run_dir / outputs.PREDICTIONS, index=False)
    return comparison
