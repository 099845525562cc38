"""The training callbacks the pipeline attaches: MLflow logging (main rank only) and live progress."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from clinfuse.tracking import log_artifact, log_metrics_step, start_child_run
from clinfuse.training.callbacks import TrainingCallback


class MlflowCallback(TrainingCallback):
    """Each trained fold gets a child run holding its per-epoch metrics and final validation metrics.

    Its checkpoint goes to the top-level run as ``checkpoints/<model>/fold<k>.pt`` the moment it is written,
    so a run killed later can still be resumed, explained or reported from the server alone.

    Args:
        run_id: the top-level run (the one ``--resume`` continues).
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def fold_scope(self, model: str, fold: int) -> AbstractContextManager[Any]:
        return start_child_run(f"{model}/fold{fold}", {"model": model, "fold": str(fold)})

    def on_epoch(self, model: str, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        log_metrics_step(metrics, epoch)

    def on_fold_end(self, model: str, fold: int, metrics: dict[str, float], best_epoch: int) -> None:
        log_metrics_step({f"fold_{k}": v for k, v in metrics.items()}, best_epoch)

    def on_checkpoint(self, model: str, fold: int, path: Path) -> None:
        log_artifact(path, f"checkpoints/{model}", run_id=self.run_id)


class ProgressCallback(TrainingCallback):
    """Forwards every epoch to a ``progress(model, fold, epoch, metrics)`` function (the CLI's live display)."""

    def __init__(self, progress: Callable[[str, int, int, dict[str, float]], None]) -> None:
        self.progress = progress

    def on_epoch(self, model: str, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        self.progress(model, fold, epoch, metrics)
