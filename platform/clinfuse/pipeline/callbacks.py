"""The training callbacks the pipeline attaches: MLflow logging (main rank only), log lines and live progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from clinfuse.logs import LOGGER, PROGRESS_FLAG
from clinfuse.metric_catalog import PRIMARY
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


# An epoch line shows the training loss and each task's primary validation metric, like the live display
# (the rest are in MLflow and history.csv).
_SHOWN = ("train_loss", *dict.fromkeys(f"val_{m}" for m in PRIMARY.values()))


class LogCallback(TrainingCallback):
    """Epoch lines in the log: the first and last epoch of a fold, and otherwise at most one every few seconds.

    Args:
        epochs: the configured epochs per fold (shown as ``epoch 3/20``).
        every_s: the least time between two lines of one fold; a scheduler's log file stays readable.
    """

    def __init__(self, epochs: int, every_s: float = 5.0) -> None:
        self.epochs = epochs
        self.every_s = every_s
        self._last: dict[tuple[str, int], float] = {}

    def on_epoch(self, model: str, fold: int, epoch: int, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        last = self._last.get((model, fold))
        if last is not None and now - last < self.every_s and epoch < self.epochs:
            return
        self._last[(model, fold)] = now
        shown = "  ".join(f"{k}={metrics[k]:.3f}" for k in _SHOWN if k in metrics)
        LOGGER.info("%s fold %d epoch %d/%d  %s", model, fold, epoch, self.epochs, shown, extra={PROGRESS_FLAG: True})

    def on_fold_end(self, model: str, fold: int, metrics: dict[str, float], best_epoch: int) -> None:
        shown = "  ".join(f"{k}={metrics[k]:.3f}" for k in (s.removeprefix("val_") for s in _SHOWN) if k in metrics)
        LOGGER.info("%s fold %d trained (best epoch %d)  %s", model, fold, best_epoch, shown)
