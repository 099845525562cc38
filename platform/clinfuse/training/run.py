"""Cross-validated training of every planned model on shared splits, with checkpoints for resuming.

Each fold's model is trained on the fold's training patients, early-stopped on its validation patients, and
applied to the held-out test patients. The test prediction of a model is the mean logit of its fold models
(a cross-validation ensemble); because the mean is linear, modality Shapley values of the ensemble are the
mean of the fold models' values, which keeps explanations exact.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clinfuse.cohort import Cohort, Splits
from clinfuse.config import ExperimentConfig
from clinfuse.fusion import MultimodalModel, build_model
from clinfuse.outputs import checkpoint_file
from clinfuse.training.callbacks import TrainingCallback
from clinfuse.training.data import FoldInputs, PatientDataset, encoder_specs, fit_fold_inputs, make_loader
from clinfuse.training.distributed import broadcast_object, current_context, make_train_loader
from clinfuse.training.linear_base import LinearFit, linear_fit, set_linear_base
from clinfuse.training.loop import (
    FoldResult,
    Predictions,
    evaluate_scores,
    predict,
    scores_from_logits,
    train_fold,
)
from clinfuse.training.metrics import choose_threshold
from clinfuse.training.models import ModelPlan


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (deterministic kernels are the run entry point's switch: see
    :func:`~clinfuse.training.cpu.training_process`)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def n_outputs_for(cohort: Cohort) -> int:
    """One logit for binary and survival, one per class for multiclass."""
    return len(cohort.classes) if cohort.task == "multiclass" else 1


@dataclass
class FoldModel:
    """A trained fold model with the preprocessing fitted on its training patients."""

    fold: int
    model: MultimodalModel
    inputs: FoldInputs
    threshold: float | None
    result: FoldResult
    val_metrics: dict[str, float]


@dataclass
class TrainedModel:
    """Everything one planned model produced over the folds."""

    plan: ModelPlan
    folds: list[FoldModel] = field(default_factory=list)
    test: Predictions | None = None
    threshold: float | None = None

    @property
    def fold_metrics(self) -> list[dict[str, float]]:
        return [f.val_metrics for f in self.folds]


def _fold_seed(seed: int, model_index: int, fold: int) -> int:
    return seed * 1000 + model_index * 97 + fold


def _checkpoint_path(run_dir: Path, plan: ModelPlan, fold: int) -> Path:
    return checkpoint_file(run_dir, plan.name, fold)


def _save_checkpoint(path: Path, result: FoldResult, val_metrics: dict[str, float], threshold: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": result.state_dict,
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "history": result.history,
        "val_metrics": val_metrics,
        "threshold": threshold,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _load_checkpoint(path: Path) -> tuple[FoldResult, dict[str, float], float | None]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    result = FoldResult(payload["state_dict"], payload["best_epoch"], payload["best_score"], payload["history"])
    return result, payload["val_metrics"], payload["threshold"]


def _build(plan: ModelPlan, cohort: Cohort, config: ExperimentConfig, inputs: FoldInputs) -> MultimodalModel:
    return build_model(encoder_specs(cohort, list(plan.modalities), config, inputs), plan.fusion, n_outputs_for(cohort))


def train_model(
    plan: ModelPlan,
    model_index: int,
    cohort: Cohort,
    config: ExperimentConfig,
    splits: Splits,
    prepared: dict[str, Any],
    device: torch.device,
    run_dir: Path,
    callbacks: Sequence[TrainingCallback] = (),
    predict_test: bool = True,
    bases: dict[tuple[tuple[str, ...], int], LinearFit] | None = None,
) -> TrainedModel:
    """Train one planned model on every fold (reusing finished folds' checkpoints) and predict the test set.

    Args:
        plan: the model.
        model_index: its position in the run (seeds differ per model).
        cohort: the cohort.
        config: the experiment config.
        splits: the run's splits.
        prepared: each modality's run-level preparation (:func:`~clinfuse.training.data.prepare_inputs`).
        device: where to train.
        run_dir: checkpoints go to ``<run_dir>/checkpoints``.
        callbacks: reporting hooks (MLflow, progress); none in a plain notebook call.
        predict_test: predict the test patients (tuning leaves them untouched).
        bases: each fold's linear base (``fusion.linear_base``) by (modalities, fold), filled and reused across
            the models of a run: models on the same modalities share a fold's penalised fit.
    """
    bases = {} if bases is None else bases
    trained = TrainedModel(plan)
    modalities = list(plan.modalities)
    y, time = cohort.y, cohort.time
    cfg = config.training
    pin = device.type == "cuda"
    # Under torchrun every rank trains; only rank 0 writes checkpoints (and the pipeline gives it the callbacks).
    ctx = current_context()
    for fold, (train_idx, val_idx) in enumerate(splits.folds):
        seed = _fold_seed(config.seed, model_index, fold)
        seed_everything(seed)
        inputs = fit_fold_inputs(cohort, modalities, config, train_idx, prepared)
        model = _build(plan, cohort, config, inputs).to(device)
        val_ds = PatientDataset(val_idx, cohort, modalities, inputs)
        val_loader = make_loader(val_ds, cfg.batch_size, False, seed, cfg.num_workers, pin)
        checkpoint = _checkpoint_path(run_dir, plan, fold)
        # Rank 0 decides (and reads) for all ranks: they must train the same folds, and may not share a disk.
        saved = broadcast_object(_load_checkpoint(checkpoint) if ctx.is_main and checkpoint.exists() else None)
        if saved is not None:
            # A finished fold (resume, or explaining a past run) is reloaded, never retrained or re-logged.
            result, val_metrics, threshold = saved
        else:
            with ExitStack() as scopes:
                for callback in callbacks:
                    scopes.enter_context(callback.fold_scope(plan.name, fold))
                train_ds = PatientDataset(train_idx, cohort, modalities, inputs, True, cfg.augment, seed)
                train_loader = make_train_loader(train_ds, cfg.batch_size, seed, ctx, cfg.num_workers, pin)

                def on_epoch(epoch: int, metrics: dict[str, float], fold: int = fold) -> None:
                    for callback in callbacks:
                        callback.on_epoch(plan.name, fold, epoch, metrics)

                if model.linear_terms is not None:
                    key = (tuple(modalities), fold)
                    if key not in bases:
                        bases[key] = linear_fit(
                            cohort, modalities, inputs, train_idx, n_outputs_for(cohort), config.seed + fold
                        )
                    set_linear_base(model, bases[key])
                result = train_fold(
                    model,
                    train_loader,
                    val_loader,
                    cfg,
                    cohort.task,
                    y[train_idx],
                    y[val_idx],
                    None if time is None else time[val_idx],
                    device,
                    seed,
                    n_outputs_for(cohort),
                    on_epoch,
                )
                model.load_state_dict(result.state_dict)
                val_scores = scores_from_logits(predict(model, val_loader, device).logits, cohort.task)
                threshold = None
                if cohort.task == "binary":
                    threshold = choose_threshold(
                        y[val_idx], val_scores, config.evaluation.threshold, config.evaluation.fixed_threshold
                    )
                val_metrics = evaluate_scores(
                    cohort.task, y[val_idx], val_scores, threshold, None if time is None else time[val_idx]
                )
                val_metrics["best_epoch"] = float(result.best_epoch)
                for callback in callbacks:
                    callback.on_fold_end(plan.name, fold, val_metrics, result.best_epoch)
                if ctx.is_main:
                    _save_checkpoint(checkpoint, result, val_metrics, threshold)
                    for callback in callbacks:
                        callback.on_checkpoint(plan.name, fold, checkpoint)
        model.load_state_dict(result.state_dict)
        model.eval()
        trained.folds.append(FoldModel(fold, model, inputs, threshold, result, val_metrics))
    if predict_test:
        trained.test = predict_ensemble(trained, cohort, splits.test, cfg.batch_size, device)
    thresholds = [f.threshold for f in trained.folds if f.threshold is not None]
    trained.threshold = float(np.mean(thresholds)) if thresholds else None
    return trained


def predict_ensemble(
    trained: TrainedModel, cohort: Cohort, indices: np.ndarray, batch_size: int, device: torch.device
) -> Predictions:
    """Mean logits (and gates) of the fold models on ``indices``, each with its own fold preprocessing."""
    outputs = []
    for fold in trained.folds:
        dataset = PatientDataset(indices, cohort, list(trained.plan.modalities), fold.inputs)
        outputs.append(predict(fold.model, make_loader(dataset, batch_size, False, 0), device))
    gates = None
    if all(o.gates is not None for o in outputs):
        gates = np.mean([o.gates for o in outputs], axis=0)
    return Predictions(outputs[0].index, np.mean([o.logits for o in outputs], axis=0), gates)
