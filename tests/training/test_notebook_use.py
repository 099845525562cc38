"""Training called from a notebook: no MLflow run, no process-wide switch left changed; the run entry point
sets its switches and restores them."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import torch

from clinfuse.cohort import load_cohort, make_splits, synthesize_cohort
from clinfuse.config import validate_config
from clinfuse.training.callbacks import TrainingCallback
from clinfuse.training.cpu import training_process
from clinfuse.training.data import prepare_inputs
from clinfuse.training.models import plan_models
from clinfuse.training.run import train_model


class _Recorder(TrainingCallback):
    def __init__(self) -> None:
        self.epochs: list[tuple[str, int, int]] = []
        self.folds: list[tuple[str, int]] = []

    def on_epoch(self, model: str, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        # epoch 0: the fitted linear base before any training step, so validation metrics only
        assert ("train_loss" in metrics) == (epoch > 0)
        assert "val_auroc" in metrics
        self.epochs.append((model, fold, epoch))

    def on_fold_end(self, model: str, fold: int, metrics: dict[str, float], best_epoch: int) -> None:
        self.folds.append((model, fold))


def test_train_model_opens_no_run_and_changes_no_switch(tmp_path: Path) -> None:
    root = synthesize_cohort(tmp_path / "coh", patients=32, seed=3, n_genes=12, modalities={"clinical": "tabular"})
    config = validate_config(
        {"cohort": str(root), "training": {"epochs": 2, "batch_size": 8}, "evaluation": {"folds": 2}}
    )
    cohort = load_cohort(root)
    splits = make_splits(cohort.y, 2, 0.25, 0)
    modalities = cohort.modality_names
    deterministic = torch.are_deterministic_algorithms_enabled()
    recorder = _Recorder()
    trained = train_model(
        plan_models(config, modalities)[0],
        0,
        cohort,
        config,
        splits,
        prepare_inputs(cohort, modalities, config, tmp_path / "cache"),
        torch.device("cpu"),
        tmp_path / "run",
        [recorder],
    )
    assert mlflow.active_run() is None
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert recorder.folds == [("clinical_only", 0), ("clinical_only", 1)]
    assert recorder.epochs == [("clinical_only", f, e) for f in (0, 1) for e in (0, 1, 2)]
    assert trained.test is not None and np.isfinite(trained.test.logits).all()


def test_training_process_restores_what_it_sets() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    with training_process(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    try:
        with training_process(torch.device("cpu")):
            raise RuntimeError("a failing run")
    except RuntimeError:
        pass
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
